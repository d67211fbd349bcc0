"""choose_price and validate_observation."""

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from smartbuy_pipeline.domain.extraction import extract_page
from smartbuy_pipeline.domain.types import (
    Availability,
    Extracted,
    FailureReason,
    FetchFailure,
    Money,
    Observation,
    ObservationStatus,
    PriceKind,
    PriceQuote,
    SourceKind,
)
from smartbuy_pipeline.domain.validation import (
    QUARANTINE_RULE,
    QuarantineRule,
    choose_price,
    validate_observation,
)

AT = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


def brl(amount: str) -> Money:
    return Money(Decimal(amount), "BRL")


def q(kind, amount, n=None, currency="BRL"):
    return PriceQuote(kind, Money(Decimal(amount), currency), n)


MULTI = Extracted(
    quotes=(
        q(PriceKind.REFERENCE, "2599.00"),
        q(PriceKind.CARD, "2099.00"),
        q(PriceKind.INSTALLMENT, "209.90", 10),
        q(PriceKind.CASH, "1899.00"),
        q(PriceKind.REGULAR, "2099.00"),
    ),
    availability=Availability.IN_STOCK,
    method="jsonld",
    raw_currency="BRL",
)


def validate(extracted, **kw):
    args = dict(observed_at=AT, source_kind=SourceKind.PAGE, expected_currency="BRL",
                last_good_price=None, quarantined_price=None)
    args.update(kw)
    return validate_observation(42, extracted, **args)


def test_choose_lowest_full_payment_never_installment_or_reference():
    assert choose_price(MULTI, price_kind=None) == q(PriceKind.CASH, "1899.00")


def test_choose_configured_kind():
    assert choose_price(MULTI, price_kind=PriceKind.CARD) == q(PriceKind.CARD, "2099.00")
    assert choose_price(MULTI, price_kind=PriceKind.REGULAR) == q(PriceKind.REGULAR, "2099.00")


def test_choose_configured_kind_missing_falls_back_to_lowest():
    assert choose_price(MULTI, price_kind=PriceKind.SALE) == q(PriceKind.CASH, "1899.00")


def test_choose_is_deterministic_under_reordering():
    tie = Extracted(quotes=(q(PriceKind.REGULAR, "100.00"), q(PriceKind.CARD, "100.00")))
    rev = Extracted(quotes=tuple(reversed(tie.quotes)))
    assert choose_price(tie, price_kind=None) == choose_price(rev, price_kind=None) \
        == q(PriceKind.CARD, "100.00")
    for _ in range(3):
        assert choose_price(MULTI, price_kind=None) == q(PriceKind.CASH, "1899.00")


def test_choose_none_when_only_installment_and_reference():
    only = Extracted(quotes=(q(PriceKind.INSTALLMENT, "10.00", 10), q(PriceKind.REFERENCE, "150")))
    assert choose_price(only, price_kind=None) is None


def test_choose_rejects_non_full_payment_config():
    with pytest.raises(ValueError):
        choose_price(MULTI, price_kind=PriceKind.INSTALLMENT)


def test_accepted_observation_details_are_json():
    obs = validate(MULTI)
    assert isinstance(obs, Observation)
    assert obs.status is ObservationStatus.ACCEPTED
    assert obs.price == brl("1899.00")
    assert obs.reference_price == brl("2599.00")
    assert obs.availability is Availability.IN_STOCK
    assert obs.observed_at == AT
    assert obs.details == {
        "method": "jsonld",
        "price_kind": "cash",
        "quotes": [
            {"kind": "reference", "amount": "2599.00", "currency": "BRL"},
            {"kind": "card", "amount": "2099.00", "currency": "BRL"},
            {"kind": "installment", "amount": "209.90", "currency": "BRL", "installments": 10},
            {"kind": "regular", "amount": "2099.00", "currency": "BRL"},
        ],
    }
    json.dumps(obs.details)


def test_observed_at_normalised_to_utc():
    local = AT.astimezone(timezone(timedelta(hours=-3)))
    obs = validate(MULTI, observed_at=local)
    assert obs.observed_at.tzinfo == timezone.utc and obs.observed_at == AT


def test_currency_mismatch():
    usd = Extracted(quotes=(q(PriceKind.REGULAR, "10.00", currency="USD"),), raw_currency="USD")
    got = validate(usd)
    assert isinstance(got, FetchFailure)
    assert got.reason is FailureReason.CURRENCY_MISMATCH
    assert got.offer_id == 42 and got.observed_at == AT
    assert "USD" in got.detail


def test_currency_missing_unless_default_applied():
    missing = Extracted(quotes=(q(PriceKind.REGULAR, "10.00"),), raw_currency=None)
    assert validate(missing).reason is FailureReason.CURRENCY_MISSING
    defaulted = Extracted(quotes=(q(PriceKind.REGULAR, "10.00"),), raw_currency=None,
                          extra={"currency_defaulted": True})
    assert validate(defaulted).price == brl("10.00")


def test_non_positive_price():
    zero = Extracted(quotes=(q(PriceKind.REGULAR, "0"),), raw_currency="BRL")
    assert validate(zero).reason is FailureReason.NON_POSITIVE_PRICE


def test_no_full_payment_price_in_stock_is_no_price():
    only = Extracted(quotes=(q(PriceKind.INSTALLMENT, "10.00", 10),), raw_currency="BRL",
                     availability=Availability.IN_STOCK)
    got = validate(only)
    assert got.reason is FailureReason.NO_PRICE
    assert "installment" in got.detail


def test_out_of_stock_keeps_price_none():
    oos = Extracted(quotes=(), availability=Availability.OUT_OF_STOCK, method="jsonld")
    obs = validate(oos, last_good_price=brl("100.00"))
    assert isinstance(obs, Observation)
    assert obs.price is None
    assert obs.availability is Availability.OUT_OF_STOCK
    assert obs.status is ObservationStatus.ACCEPTED


def test_quarantine_75_percent_drop_then_confirmed():
    drop = Extracted(quotes=(q(PriceKind.REGULAR, "25.00"),), raw_currency="BRL")
    first = validate(drop, last_good_price=brl("100.00"))
    assert first.status is ObservationStatus.QUARANTINED
    assert first.price == brl("25.00")
    assert first.details["quarantine"] == {"reason": "drop", "last_good": "100.00", "ratio": "0.2500"}
    second = validate(drop, last_good_price=brl("100.00"), quarantined_price=first.price)
    assert second.status is ObservationStatus.ACCEPTED
    assert second.details["quarantine"]["confirmed_by"] == "25.00"


def test_quarantine_not_confirmed_by_a_different_amount():
    drop = Extracted(quotes=(q(PriceKind.REGULAR, "25.00"),), raw_currency="BRL")
    got = validate(drop, last_good_price=brl("100.00"), quarantined_price=brl("24.00"))
    assert got.status is ObservationStatus.QUARANTINED


def test_quarantine_rise_above_3x():
    rise = Extracted(quotes=(q(PriceKind.REGULAR, "350.00"),), raw_currency="BRL")
    got = validate(rise, last_good_price=brl("100.00"))
    assert got.status is ObservationStatus.QUARANTINED
    assert got.details["quarantine"]["reason"] == "rise"


@pytest.mark.parametrize("amount", ["40.00", "30.00", "300.00", "100.00", "120.00"])
def test_plausible_changes_accepted(amount):
    # 60% drop, exactly 70% drop, exactly 3x, no change, +20%
    got = validate(Extracted(quotes=(q(PriceKind.REGULAR, amount),), raw_currency="BRL"),
                   last_good_price=brl("100.00"))
    assert got.status is ObservationStatus.ACCEPTED
    assert "quarantine" not in got.details


def test_quarantine_rule_is_frozen_with_documented_thresholds():
    assert QUARANTINE_RULE == QuarantineRule(max_drop=Decimal("0.70"), max_rise=Decimal("3"))
    with pytest.raises(AttributeError):
        QUARANTINE_RULE.max_drop = Decimal("0.5")  # type: ignore[misc]


def test_end_to_end_page_to_observation():
    html = """<script type="application/ld+json">{"@type":"Product","offers":
      {"@type":"Offer","price":"2099.00","priceCurrency":"BRL",
       "availability":"https://schema.org/InStock"}}</script>
      <span data-price-kind="cash">R$ 1.899,00 no Pix</span>
      <span data-price-kind="installment">10x de R$ 209,90 sem juros</span>"""
    obs = validate(extract_page(html), price_kind=PriceKind.CARD)
    assert obs.price == brl("1899.00")  # CARD not on the page: lowest full-payment price
    assert obs.details["price_kind"] == "cash"
    assert {"kind": "installment", "amount": "209.90", "currency": "BRL", "installments": 10} \
        in obs.details["quotes"]
