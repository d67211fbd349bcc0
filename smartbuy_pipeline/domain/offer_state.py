"""Does a check's outcome change the offer's published state? (Pure; no database.)

The tracker reads each due offer's current state with the batch (`OfferState`) and writes the
`offers` row only for outcomes that change it; every check still updates the offer's narrow
`offer_checks` row. The rules mirror the write path's (db/prices.py APPLY_ACCEPTED and
APPLY_QUARANTINED): an outcome "changes" the offer exactly when applying it would store a
different value in some column. Unknown state (None) counts as a change, so the row is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from smartbuy_pipeline.domain.types import Observation, ObservationStatus


@dataclass(frozen=True, slots=True)
class OfferState:
    """An offer's published state as read from `offers` (amounts in `currency`)."""

    price: Decimal | None
    reference_price: Decimal | None
    freight: Decimal | None
    currency: str | None
    availability: str  # Availability's value
    quarantined_price: Decimal | None


def changes_offer(state: OfferState | None, observation: Observation, currency: str) -> bool:
    """Whether writing `observation` (recorded in `currency`) changes the offer's row.

    accepted: price and reference price (only when the page shows a price: out of stock without
    one keeps them), freight (when shown), currency, availability, and a pending quarantined
    price (dropped). quarantined: the pending price and the currency.
    """
    if state is None or currency != state.currency:
        return True
    price = observation.price
    if observation.status is ObservationStatus.QUARANTINED:
        return (price.amount if price is not None else None) != state.quarantined_price
    # Availability is a StrEnum: compared with the stored text as is
    if state.quarantined_price is not None or observation.availability != state.availability:
        return True
    if price is not None:
        reference = observation.reference_price
        if price.amount != state.price or (reference.amount if reference is not None else None) != state.reference_price:
            return True
    freight = observation.freight
    return freight is not None and freight.amount != state.freight


def is_price_change(state: OfferState | None, observation: Observation) -> bool:
    """Whether an observation changes what a price chart shows, against the published state it
    was read with: an accepted observation whose price (a missing price counts), 'de' price or
    availability differs, as analytics.price_changes counts changes. Quarantined observations are
    not published, so they never are; unknown state (a first observation) always is."""
    if observation.status is ObservationStatus.QUARANTINED:
        return False
    if state is None:
        return True
    price, reference = observation.price, observation.reference_price
    return ((price.amount if price is not None else None) != state.price
            or (reference.amount if reference is not None else None) != state.reference_price
            or observation.availability != state.availability)
