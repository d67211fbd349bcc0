"""Alert rules, pure: params validation, dedupe keys and the re-arm state machine.

The set-based evaluator (`smartbuy_pipeline.db.alerts`) runs these rules in SQL; this module is
their reference in Python, for the CLI and ops (clear errors before an INSERT), for the tests,
and for docs/alerts.md. `parse_alert_params` applies exactly the rules of the SQL function
`public.fn_alert_params_valid` (the CHECK `alerts_params_valid`); the integration tests run both
on one table of good and bad params.

Money is Decimal, never float. Params arrive as decoded JSON (`json.loads`), so a JSON number is an
int or a float: a float is read through its shortest repr ("149.9"), which is the number the JSON
text spelled.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from collections.abc import Mapping
from typing import Any

TARGET_PRICE = "TARGET_PRICE"
TOTAL_PRICE = "TOTAL_PRICE"
PERCENT_DROP = "PERCENT_DROP"
NEW_LOW = "NEW_LOW"
BACK_IN_STOCK = "BACK_IN_STOCK"
ALERT_TYPES = (TARGET_PRICE, TOTAL_PRICE, PERCENT_DROP, NEW_LOW, BACK_IN_STOCK)
PRICE_TYPES = (TARGET_PRICE, TOTAL_PRICE, PERCENT_DROP, NEW_LOW)

REFERENCE_CREATED = "created"
REFERENCE_MEDIAN_30D = "median_30d"
REFERENCES = (REFERENCE_CREATED, REFERENCE_MEDIAN_30D)

DEFAULT_MIN_HISTORY_DAYS = 7
MAX_DAYS = 3650
MAX_MONEY = Decimal("10000000000")  # numeric(12, 2) holds < 10^10
CENT = Decimal("0.01")
_MONEY_STRING = re.compile(r"^[0-9]{1,10}(\.[0-9]{1,2})?$")  # ASCII digits only, as in SQL

# Availability values that make an offer ineligible for every alert type.
UNAVAILABLE = ("out_of_stock", "discontinued")


class AlertParamsError(ValueError):
    """Invalid alert params. `field` names the offending key (None: the params as a whole)."""

    def __init__(self, alert_type: str, field: str | None, message: str) -> None:
        self.alert_type = alert_type
        self.field = field
        where = f"{alert_type} params" + (f" field '{field}'" if field else "")
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class TargetPriceParams:
    target: Decimal  # price <= target


@dataclass(frozen=True)
class TotalPriceParams:
    target: Decimal  # price + freight <= target (unknown freight never matches)


@dataclass(frozen=True)
class PercentDropParams:
    percent: Decimal        # 0 < percent < 100
    reference: str = REFERENCE_CREATED


@dataclass(frozen=True)
class NewLowParams:
    days: int | None = None  # None: all time
    min_history_days: int = DEFAULT_MIN_HISTORY_DAYS

    @property
    def required_history_days(self) -> int:
        """How far back the offer's history must reach: min(days, min_history_days)."""
        return self.min_history_days if self.days is None else min(self.days, self.min_history_days)

    @property
    def reference_kind(self) -> str:
        return "low_all_time" if self.days is None else f"low_{self.days}d"


@dataclass(frozen=True)
class BackInStockParams:
    pass


AlertParams = TargetPriceParams | TotalPriceParams | PercentDropParams | NewLowParams | BackInStockParams

_KEYS: dict[str, tuple[str, ...]] = {
    TARGET_PRICE: ("target",),
    TOTAL_PRICE: ("target",),
    PERCENT_DROP: ("percent", "reference"),
    NEW_LOW: ("days", "min_history_days"),
    BACK_IN_STOCK: (),
}


def _number(value: Any) -> Decimal | None:
    """A JSON number as Decimal (None if `value` is not a finite JSON number)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    return None


def _money(alert_type: str, field: str, value: Any) -> Decimal:
    if isinstance(value, str):
        if not _MONEY_STRING.match(value):
            raise AlertParamsError(alert_type, field, f"must be a decimal string like '149.90', got {value!r}")
        amount = Decimal(value)
    else:
        amount = _number(value)
        if amount is None:
            raise AlertParamsError(alert_type, field, f"must be a number or a decimal string, got {value!r}")
    if amount <= 0:
        raise AlertParamsError(alert_type, field, f"must be greater than 0, got {value!r}")
    if amount >= MAX_MONEY:
        raise AlertParamsError(alert_type, field, f"must be less than 10000000000, got {value!r}")
    if amount != amount.quantize(CENT):
        raise AlertParamsError(alert_type, field, f"must have at most 2 decimal places, got {value!r}")
    return amount.quantize(CENT)


def _integer(alert_type: str, field: str, value: Any, lo: int, hi: int) -> int:
    number = _number(value)
    if number is None or number != number.to_integral_value():
        raise AlertParamsError(alert_type, field, f"must be an integer, got {value!r}")
    if not lo <= number <= hi:
        raise AlertParamsError(alert_type, field, f"must be between {lo} and {hi}, got {value!r}")
    return int(number)


def parse_alert_params(alert_type: str, params: Mapping[str, Any] | Any) -> AlertParams:
    """Validate `params` (decoded JSON) for `alert_type` and return the typed params.

    Raises AlertParamsError naming the field. Optional fields may be absent or None (JSON null);
    unknown keys are errors (a typo must not silently fall back to a default).
    """
    if alert_type not in ALERT_TYPES:
        raise AlertParamsError(str(alert_type), None, f"unknown alert type; expected one of {', '.join(ALERT_TYPES)}")
    if not isinstance(params, Mapping):
        raise AlertParamsError(alert_type, None, f"must be a JSON object, got {type(params).__name__}")
    unknown = sorted(set(params) - set(_KEYS[alert_type]))
    if unknown:
        allowed = ", ".join(_KEYS[alert_type]) or "none"
        raise AlertParamsError(alert_type, unknown[0], f"unknown field (allowed: {allowed})")

    if alert_type in (TARGET_PRICE, TOTAL_PRICE):
        if params.get("target") is None:
            raise AlertParamsError(alert_type, "target", "is required")
        target = _money(alert_type, "target", params["target"])
        return TargetPriceParams(target) if alert_type == TARGET_PRICE else TotalPriceParams(target)

    if alert_type == PERCENT_DROP:
        if params.get("percent") is None:
            raise AlertParamsError(alert_type, "percent", "is required")
        raw = params["percent"]
        percent = _number(raw)
        if percent is None:
            raise AlertParamsError(alert_type, "percent", f"must be a number, got {raw!r}")
        if not 0 < percent < 100:
            raise AlertParamsError(alert_type, "percent", f"must be greater than 0 and less than 100, got {raw!r}")
        if percent != percent.quantize(CENT):
            raise AlertParamsError(alert_type, "percent", f"must have at most 2 decimal places, got {raw!r}")
        reference = params.get("reference")
        if reference is None:
            reference = REFERENCE_CREATED
        if reference not in REFERENCES:
            raise AlertParamsError(alert_type, "reference",
                                   f"must be one of {', '.join(REFERENCES)}, got {reference!r}")
        return PercentDropParams(percent, reference)

    if alert_type == NEW_LOW:
        days = params.get("days")
        if days is not None:
            days = _integer(alert_type, "days", days, 1, MAX_DAYS)
        history = params.get("min_history_days")
        history = (DEFAULT_MIN_HISTORY_DAYS if history is None
                   else _integer(alert_type, "min_history_days", history, 0, MAX_DAYS))
        return NewLowParams(days, history)

    return BackInStockParams()


def is_valid_params(alert_type: str, params: Any) -> bool:
    try:
        parse_alert_params(alert_type, params)
    except AlertParamsError:
        return False
    return True


# -- matching (the SQL's per-offer rule, for one offer) -----------------------------------------

def compared_figure(alert_type: str, price: Decimal, freight: Decimal | None) -> Decimal | None:
    """The figure a rule compares and dedupes on: the total for TOTAL_PRICE (None if freight is
    unknown), else the price."""
    if alert_type == TOTAL_PRICE:
        return None if freight is None else price + freight
    return price


def percent_threshold(reference: Decimal, percent: Decimal) -> Decimal:
    """PERCENT_DROP matches when price <= reference * (1 - percent / 100) (exact decimal)."""
    return reference * (1 - percent / 100)


# -- dedupe keys --------------------------------------------------------------------------------

def money_str(amount: Decimal) -> str:
    """Money as the outbox writes it: two decimals, no exponent ('149.90')."""
    return f"{amount.quantize(CENT):f}"


def dedupe_key(alert_type: str, alert_id: int, offer_id: int, *, figure: Decimal | None = None,
               episode: int | None = None) -> str:
    """The outbox key: never the same alert for the same offer at the same compared figure twice.

    Price types: 'alert:<id>:offer:<offer_id>:price:<figure>' (absolute: a price oscillating
    around the target never re-notifies a figure already sent). BACK_IN_STOCK:
    'alert:<id>:offer:<offer_id>:restock:<episode>' (each restock is news).
    """
    if alert_type == BACK_IN_STOCK:
        if episode is None:
            raise ValueError("BACK_IN_STOCK dedupe key needs the episode")
        return f"alert:{alert_id}:offer:{offer_id}:restock:{episode}"
    if figure is None:
        raise ValueError(f"{alert_type} dedupe key needs the compared figure")
    return f"alert:{alert_id}:offer:{offer_id}:price:{money_str(figure)}"


# -- re-arm state machine -----------------------------------------------------------------------

@dataclass(frozen=True)
class AlertState:
    matched: bool = False
    episode: int = 0
    notified_episode: int | None = None
    last_notified_price: Decimal | None = None
    last_notified_at: datetime | None = None


@dataclass(frozen=True)
class Decision:
    matched: bool
    episode: int
    notify: bool              # wanted: a new episode or a better figure, cooldown over
    held_by_cooldown: bool    # would notify, but the cooldown has not ended


def decide(state: AlertState, figure: Decimal | None, *, now: datetime, cooldown: timedelta) -> Decision:
    """One evaluation of one alert. `figure` is the best match's compared figure (None: no match).

    matched_now = a best match exists; the episode grows on each false -> true flip (the first
    match included). Notify when matched and (this episode was not notified yet, or the figure
    is below the last notified one) and the cooldown since the last notification has ended.
    During the cooldown nothing is sent; afterwards the then-current best figure is, if it still
    qualifies. The outbox dedupe key may still turn a notification into a duplicate.
    """
    matched_now = figure is not None
    episode = state.episode + 1 if matched_now and not state.matched else state.episode
    wanted = matched_now and (
        state.notified_episode != episode
        or (state.last_notified_price is not None and figure < state.last_notified_price)
    )
    cooled = state.last_notified_at is None or now >= state.last_notified_at + cooldown
    return Decision(matched_now, episode, wanted and cooled, wanted and not cooled)
