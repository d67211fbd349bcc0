"""Value types shared by extraction, validation, the pipeline and the simulator.

Plain dataclasses: no Dagster, no database. Money is always Decimal plus an ISO 4217 code.
The types that cross the parse pool (Money, PriceQuote, Extracted, FetchFailure, Observation)
pickle through `__reduce__` (constructor + field values): far cheaper than the generated
__getstate__/__setstate__ of slots dataclasses, and unpickling re-runs Money's checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in one currency, quantized to cents (the database stores NUMERIC(12,2))."""

    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal):
            raise TypeError(f"Money.amount must be Decimal, got {type(self.amount).__name__}")
        if len(self.currency) != 3 or not self.currency.isalpha() or not self.currency.isupper():
            raise ValueError(f"Money.currency must be an ISO 4217 code, got {self.currency!r}")
        # 2879.2 and 2879.20 are the same price: normalise once, here.
        object.__setattr__(self, "amount", self.amount.quantize(CENT))

    def __str__(self) -> str:
        return f"{self.currency} {self.amount}"

    # Pickling (parse-pool results): rebuild through __init__ from primitives. Much cheaper than
    # the dataclass-generated __getstate__/__setstate__ of slots classes, and re-validates.
    def __reduce__(self) -> tuple:
        return Money, (self.amount, self.currency)


class SourceKind(StrEnum):
    PAGE = "page"
    MERCHANT_FEED = "merchant_feed"
    MARKETPLACE_API = "marketplace_api"


class Availability(StrEnum):
    IN_STOCK = "in_stock"
    OUT_OF_STOCK = "out_of_stock"
    PREORDER = "preorder"
    BACKORDER = "backorder"
    DISCONTINUED = "discontinued"
    UNKNOWN = "unknown"

    @property
    def purchasable(self) -> bool:
        return self in (Availability.IN_STOCK, Availability.PREORDER, Availability.BACKORDER)


class PriceKind(StrEnum):
    """Which of a page's several prices a figure is."""

    CASH = "cash"  # Pix / boleto / "à vista": full payment, usually the lowest
    CARD = "card"  # full payment by card ("no cartão")
    INSTALLMENT = "installment"  # one instalment of "10x de R$ 129,99"; total is amount x count
    REGULAR = "regular"  # a single full-payment price with no qualifier
    SALE = "sale"  # a feed's sale_price while effective
    REFERENCE = "reference"  # the struck "de" / list / StrikethroughPrice


FULL_PAYMENT_KINDS = frozenset({PriceKind.CASH, PriceKind.CARD, PriceKind.REGULAR, PriceKind.SALE})


@dataclass(frozen=True, slots=True)
class PriceQuote:
    kind: PriceKind
    money: Money
    installments: int | None = None  # only for INSTALLMENT

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind.value,
            "amount": str(self.money.amount),
            "currency": self.money.currency,
        }
        if self.installments is not None:
            out["installments"] = self.installments
        return out

    def __reduce__(self) -> tuple:
        return PriceQuote, (self.kind, self.money, self.installments)


@dataclass(frozen=True, slots=True)
class Extracted:
    """What one source yielded for one offer, before validation.

    `quotes` holds every price found (cash, card, installments, reference); the chosen price is
    decided by `domain.validation`, deterministically, from the shop's configured price kind.
    """

    quotes: tuple[PriceQuote, ...]
    availability: Availability = Availability.UNKNOWN
    gtin: str | None = None
    freight: Money | None = None
    method: str = ""  # jsonld | opengraph | microdata | feed | items_api
    raw_currency: str | None = None  # currency as declared by the source, if any
    extra: dict[str, Any] = field(default_factory=dict)

    def __reduce__(self) -> tuple:
        return Extracted, (self.quotes, self.availability, self.gtin, self.freight, self.method,
                           self.raw_currency, self.extra)


class FailureReason(StrEnum):
    """Why a fetch produced no price. A failure is never a price change."""

    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    HTTP_4XX = "http_4xx"
    HTTP_5XX = "http_5xx"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    BOT_WALL = "bot_wall"
    BODY_TOO_LARGE = "body_too_large"
    SSRF_REFUSED = "ssrf_refused"
    PARSE_ERROR = "parse_error"
    NO_PRICE = "no_price"
    UNPARSEABLE_PRICE = "unparseable_price"
    NON_POSITIVE_PRICE = "non_positive_price"
    CURRENCY_MISSING = "currency_missing"
    CURRENCY_MISMATCH = "currency_mismatch"
    ITEM_MISSING = "item_missing"  # feed / API answered but did not list this offer


@dataclass(frozen=True, slots=True)
class FetchFailure:
    offer_id: int
    reason: FailureReason
    detail: str  # what, where, why; never contains secrets
    observed_at: datetime | None = None

    def __reduce__(self) -> tuple:
        return FetchFailure, (self.offer_id, self.reason, self.detail, self.observed_at)


class ObservationStatus(StrEnum):
    ACCEPTED = "accepted"
    QUARANTINED = "quarantined"  # implausible jump awaiting a confirming observation


@dataclass(frozen=True, slots=True)
class Observation:
    """A validated price observation of one offer at one instant (UTC)."""

    offer_id: int
    observed_at: datetime
    price: Money | None  # None only when out of stock with no price shown
    reference_price: Money | None
    freight: Money | None
    availability: Availability
    status: ObservationStatus
    source_kind: SourceKind
    details: dict[str, Any] = field(default_factory=dict)  # other quotes, method, etc.

    def __reduce__(self) -> tuple:
        return Observation, (self.offer_id, self.observed_at, self.price, self.reference_price,
                             self.freight, self.availability, self.status, self.source_kind,
                             self.details)


class ExtractionError(Exception):
    """A source answered but yielded no usable price; carries a typed reason."""

    def __init__(self, reason: FailureReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
