"""Turn an `Extracted` into a validated `Observation`, or a typed `FetchFailure`.

A failed fetch is never a price change: every problem becomes a FetchFailure with a reason.

Chosen price (`choose_price`, deterministic): the configured price kind if the source has it
(lowest amount among quotes of that kind), otherwise the LOWEST full-payment price (CASH, CARD,
REGULAR, SALE). Never an instalment amount, never the reference ("de") price. Ties are broken
by kind order (cash, card, regular, sale) so the same input always gives the same quote.

Checks, in order:
1. CURRENCY_MISSING: quotes exist, the source declared no currency (`raw_currency` is None) and
   the parser did not apply the shop default (`extra["currency_defaulted"]` is not True).
2. CURRENCY_MISMATCH: any quote's currency differs from the expected one.
3. NON_POSITIVE_PRICE: the chosen amount is zero or negative.
4. No chosen price: OUT_OF_STOCK / DISCONTINUED -> Observation with price None (the pipeline
   keeps the last known price); anything else -> NO_PRICE.
5. Quarantine (`QuarantineRule`): against `last_good_price`, a drop of MORE than 70% or a rise
   to MORE than 3x gives status QUARANTINED, unless `quarantined_price` (the previous,
   itself quarantined observation) has the same amount: two consecutive equal observations
   confirm the jump -> ACCEPTED. Exactly -70% or exactly 3x is accepted.

`Observation.details`: "method", "price_kind" (of the chosen quote), "quotes" (every OTHER quote
as JSON-serialisable dicts, amounts as strings, instalments with their count) and, when the rule
fired, "quarantine" {"reason", "last_good", "ratio"} (or "confirmed_by" when confirmed).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

from smartbuy_pipeline.domain.types import (
    FULL_PAYMENT_KINDS,
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

__all__ = ["QuarantineRule", "QUARANTINE_RULE", "choose_price", "validate_observation"]


@dataclass(frozen=True, slots=True)
class QuarantineRule:
    """A jump against the last good price that needs a confirming second observation."""

    max_drop: Decimal = Decimal("0.70")  # new < last x (1 - 0.70) is implausible
    max_rise: Decimal = Decimal("3")  # new > last x 3 is implausible

    def check(self, new: Money, last_good: Money | None) -> tuple[str, Decimal] | None:
        """("drop" | "rise", ratio new/last) when the jump is implausible, else None."""
        if last_good is None or last_good.currency != new.currency or last_good.amount <= 0:
            return None
        ratio = new.amount / last_good.amount
        if ratio < 1 - self.max_drop:
            return "drop", ratio
        if ratio > self.max_rise:
            return "rise", ratio
        return None


QUARANTINE_RULE = QuarantineRule()

_KIND_ORDER = (PriceKind.CASH, PriceKind.CARD, PriceKind.REGULAR, PriceKind.SALE)
_REFERENCE = PriceKind.REFERENCE


def choose_price(
    extracted: Extracted, *, price_kind: PriceKind | None = None, currency: str | None = None
) -> PriceQuote | None:
    """The quote that is "the price" (see module doc); None when no full-payment quote exists.

    `price_kind` must be a full-payment kind (CASH, CARD, REGULAR, SALE) or None.
    `currency`, when given, only considers quotes in that currency.
    """
    if price_kind is not None and price_kind not in FULL_PAYMENT_KINDS:
        raise ValueError(f"price_kind must be one of {sorted(k.value for k in FULL_PAYMENT_KINDS)}")
    if currency is None:
        candidates = [q for q in extracted.quotes if q.kind in FULL_PAYMENT_KINDS]
    else:
        candidates = [
            q for q in extracted.quotes if q.kind in FULL_PAYMENT_KINDS and q.money.currency == currency
        ]
    if price_kind is not None and len(candidates) > 1:
        configured = [q for q in candidates if q.kind is price_kind]
        if configured:
            candidates = configured
    if len(candidates) < 2:
        return candidates[0] if candidates else None
    return min(
        candidates, key=lambda q: (q.money.amount, _KIND_ORDER.index(q.kind), q.money.currency)
    )


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def validate_observation(
    offer_id: int,
    extracted: Extracted,
    *,
    observed_at: datetime,
    source_kind: SourceKind,
    expected_currency: str,
    price_kind: PriceKind | None = None,
    last_good_price: Money | None,
    quarantined_price: Money | None,
    rule: QuarantineRule = QUARANTINE_RULE,
) -> Observation | FetchFailure:
    """Validate one extraction for `offer_id`; see the module docstring for the rules.

    `observed_at` is converted to UTC (a naive datetime is taken as UTC).
    """
    at = observed_at if observed_at.tzinfo is timezone.utc else _utc(observed_at)
    quotes = extracted.quotes

    def fail(reason: FailureReason, detail: str) -> FetchFailure:
        where = f"offer {offer_id} ({source_kind.value}, {extracted.method or 'unknown method'})"
        return FetchFailure(offer_id, reason, f"{where}: {detail}", at)

    if quotes and extracted.raw_currency is None and not extracted.extra.get("currency_defaulted"):
        return fail(
            FailureReason.CURRENCY_MISSING,
            "the source declared no currency and no shop default was applied",
        )
    for quote in quotes:
        if quote.money.currency != expected_currency:
            foreign = sorted({q.money.currency for q in quotes} - {expected_currency})
            return fail(
                FailureReason.CURRENCY_MISMATCH,
                f"expected {expected_currency}, the source gave {', '.join(foreign)}",
            )
    chosen = choose_price(extracted, price_kind=price_kind)
    if chosen is not None and chosen.money.amount <= 0:
        return fail(FailureReason.NON_POSITIVE_PRICE, f"chosen price {chosen.money} is not positive")
    references = [q.money for q in quotes if q.kind is _REFERENCE]
    if not references:
        reference = None
    elif len(references) == 1:
        reference = references[0]
    else:
        reference = max(references, key=lambda m: m.amount)
    details: dict = {"method": extracted.method}
    if chosen is None:
        if extracted.availability in (Availability.OUT_OF_STOCK, Availability.DISCONTINUED):
            details["quotes"] = [q.to_json() for q in extracted.quotes]
            return Observation(
                offer_id=offer_id, observed_at=at, price=None, reference_price=reference,
                freight=extracted.freight, availability=extracted.availability,
                status=ObservationStatus.ACCEPTED, source_kind=source_kind, details=details,
            )
        kinds = sorted({q.kind.value for q in extracted.quotes})
        return fail(
            FailureReason.NO_PRICE,
            "no full-payment price"
            + (f" (only {', '.join(kinds)} quotes)" if kinds else "")
            + f"; availability {extracted.availability.value}",
        )
    details["price_kind"] = chosen.kind.value
    details["quotes"] = [q.to_json() for q in quotes if q is not chosen and q != chosen]
    status = ObservationStatus.ACCEPTED
    jump = rule.check(chosen.money, last_good_price)
    if jump is not None:
        reason, ratio = jump
        info = {
            "reason": reason,
            "last_good": str(last_good_price.amount),  # type: ignore[union-attr]
            "ratio": str(ratio.quantize(Decimal("0.0001"))),
        }
        if quarantined_price is not None and quarantined_price == chosen.money:
            info["confirmed_by"] = str(quarantined_price.amount)
        else:
            status = ObservationStatus.QUARANTINED
        details["quarantine"] = info
    return Observation(
        offer_id=offer_id, observed_at=at, price=chosen.money, reference_price=reference,
        freight=extracted.freight, availability=extracted.availability, status=status,
        source_kind=source_kind, details=details,
    )
