"""Domain types cross the parse pool by pickle: round trips must be exact (and Money stays Decimal)."""

import copy
import pickle
from datetime import datetime, timezone
from decimal import Decimal

import pytest

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

AT = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
BRL = Money(Decimal("1899.00"), "BRL")

VALUES = [
    BRL,
    Money(Decimal("0.00"), "USD"),
    PriceQuote(PriceKind.CASH, BRL),
    PriceQuote(PriceKind.INSTALLMENT, Money(Decimal("189.90"), "BRL"), 10),
    Extracted(
        quotes=(PriceQuote(PriceKind.SALE, BRL), PriceQuote(PriceKind.REFERENCE, Money(Decimal("2599"), "BRL"))),
        availability=Availability.IN_STOCK, gtin="7891234567895", freight=Money(Decimal("19.9"), "BRL"),
        method="feed", raw_currency="BRL", extra={"title": "TV", "sale_price_effective": ["a", "b"]},
    ),
    Extracted(quotes=()),
    FetchFailure(7, FailureReason.NO_PRICE, "feed x: item 'A' at 3: no price", AT),
    FetchFailure(8, FailureReason.TIMEOUT, "timeout"),
    Observation(42, AT, BRL, Money(Decimal("2599.00"), "BRL"), None, Availability.IN_STOCK,
                ObservationStatus.QUARANTINED, SourceKind.MERCHANT_FEED,
                {"method": "feed", "price_kind": "sale", "quotes": [{"kind": "reference", "amount": "2599.00",
                                                                      "currency": "BRL"}],
                 "quarantine": {"reason": "drop", "last_good": "9999.00", "ratio": "0.1899"}}),
    Observation(43, AT, None, None, None, Availability.OUT_OF_STOCK, ObservationStatus.ACCEPTED,
                SourceKind.PAGE),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL])
def test_pickle_round_trip_is_equal(value, protocol):
    back = pickle.loads(pickle.dumps(value, protocol=protocol))
    assert type(back) is type(value)
    assert back == value
    assert copy.deepcopy(value) == value and copy.copy(value) == value


def test_money_stays_decimal_and_quantized_after_round_trip():
    back = pickle.loads(pickle.dumps(Money(Decimal("2879.2"), "BRL")))
    assert isinstance(back.amount, Decimal) and str(back.amount) == "2879.20"


def test_enums_and_nested_values_keep_their_types():
    obs = pickle.loads(pickle.dumps(VALUES[-2]))
    assert obs.availability is Availability.IN_STOCK
    assert obs.status is ObservationStatus.QUARANTINED
    assert obs.source_kind is SourceKind.MERCHANT_FEED
    assert isinstance(obs.price.amount, Decimal)
    ext = pickle.loads(pickle.dumps(VALUES[4]))
    assert ext.quotes[0].kind is PriceKind.SALE and ext.extra == VALUES[4].extra


def test_unpickling_still_validates_money():
    # a forged pickle cannot smuggle a float amount in: Money is rebuilt through __init__
    forged = pickle.dumps(Money(Decimal("1.00"), "BRL")).replace(b"BRL", b"brl")
    with pytest.raises(ValueError):
        pickle.loads(forged)


def test_shared_instances_stay_shared_within_one_pickle():
    a = Observation(1, AT, BRL, None, BRL, Availability.IN_STOCK, ObservationStatus.ACCEPTED,
                    SourceKind.MERCHANT_FEED, {"method": "feed"})
    b = Observation(2, AT, BRL, None, BRL, Availability.IN_STOCK, ObservationStatus.ACCEPTED,
                    SourceKind.MERCHANT_FEED, {"method": "feed"})
    back = pickle.loads(pickle.dumps([a, b]))
    assert back == [a, b]
    assert back[0].details is not back[1].details  # dicts are never shared
