"""domain.offer_state: which check outcomes must write the offers row (changes_offer), and which
are price changes as analytics.price_changes counts them (is_price_change)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from smartbuy_pipeline.domain.offer_state import OfferState, changes_offer, is_price_change
from smartbuy_pipeline.domain.types import Availability, Money, Observation, ObservationStatus, SourceKind

AT = datetime(2026, 11, 26, 12, tzinfo=UTC)
STATE = OfferState(price=Decimal("100.00"), reference_price=Decimal("120.00"), freight=Decimal("9.90"),
                   currency="BRL", availability="in_stock", quarantined_price=None)


def brl(amount: str | None) -> Money | None:
    return Money(Decimal(amount), "BRL") if amount is not None else None


def obs(price: str | None = "100.00", reference: str | None = "120.00", freight: str | None = "9.90",
        availability: Availability = Availability.IN_STOCK,
        status: ObservationStatus = ObservationStatus.ACCEPTED) -> Observation:
    return Observation(1, AT, brl(price), brl(reference), brl(freight), availability, status, SourceKind.PAGE)


@pytest.mark.parametrize(("observation", "state", "currency", "expected"), [
    (obs(), STATE, "BRL", False),                               # the same page again
    (obs(price="100.0"), STATE, "BRL", False),                  # same amount, other scale
    (obs(freight=None), STATE, "BRL", False),                   # freight not shown: kept
    (obs(price="99.90"), STATE, "BRL", True),
    (obs(reference="130.00"), STATE, "BRL", True),
    (obs(reference=None), STATE, "BRL", True),                  # "de" price gone
    (obs(freight="0.00"), STATE, "BRL", True),
    (obs(availability=Availability.BACKORDER), STATE, "BRL", True),
    (obs(), STATE, "USD", True),                                # currency differs
    (obs(), None, "BRL", True),                                 # unknown state: write
    # out of stock without a price keeps price and reference: only availability counts
    (obs(price=None, reference=None, availability=Availability.OUT_OF_STOCK),
     OfferState(Decimal("100.00"), Decimal("120.00"), Decimal("9.90"), "BRL", "out_of_stock", None), "BRL", False),
    (obs(price=None, reference=None, availability=Availability.OUT_OF_STOCK), STATE, "BRL", True),
    # an accepted observation drops a pending quarantined price
    (obs(), OfferState(Decimal("100.00"), Decimal("120.00"), Decimal("9.90"), "BRL", "in_stock", Decimal("10.00")),
     "BRL", True),
    # quarantined: only the pending price (and the currency) are written
    (obs(price="10.00", status=ObservationStatus.QUARANTINED),
     OfferState(Decimal("100.00"), Decimal("120.00"), Decimal("9.90"), "BRL", "in_stock", Decimal("10.00")),
     "BRL", False),
    (obs(price="10.00", status=ObservationStatus.QUARANTINED), STATE, "BRL", True),
    (obs(price="100.00", availability=Availability.BACKORDER, status=ObservationStatus.QUARANTINED),
     OfferState(Decimal("100.00"), Decimal("120.00"), Decimal("9.90"), "BRL", "in_stock", Decimal("100.00")),
     "BRL", False),
    # a never-priced offer (catalog row only) gets its first price
    (obs(), OfferState(None, None, None, None, "unknown", None), "BRL", True),
])
def test_changes_offer(observation: Observation, state: OfferState | None, currency: str, expected: bool) -> None:
    assert changes_offer(state, observation, currency) is expected


@pytest.mark.parametrize(("observation", "state", "expected"), [
    (obs(), STATE, False),                                      # the same page again
    (obs(price="100.0"), STATE, False),                         # same amount, other scale
    (obs(freight="0.00"), STATE, False),                        # freight is not charted
    (obs(price="99.90"), STATE, True),
    (obs(reference="130.00"), STATE, True),
    (obs(reference=None), STATE, True),                         # "de" price gone
    (obs(availability=Availability.OUT_OF_STOCK), STATE, True),
    (obs(price=None, reference=None, availability=Availability.IN_STOCK), STATE, True),  # price no longer shown
    (obs(), None, True),                                        # first observation
    (obs(price="10.00", status=ObservationStatus.QUARANTINED), STATE, False),  # not published
    (obs(price="10.00", status=ObservationStatus.QUARANTINED), None, False),
])
def test_is_price_change(observation: Observation, state: OfferState | None, expected: bool) -> None:
    assert is_price_change(state, observation) is expected
