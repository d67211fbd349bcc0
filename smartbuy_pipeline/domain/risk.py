"""Anti-cilada risk model: pure, vectorized domain logic (no Dagster, no database).

Pipeline: ``compute_features`` (one row per offer) -> ``signal_*`` (rows only where a signal
fires) -> ``score_offers`` (score 0-100, bucket A/B/C, reasons, inputs). ``score_history`` chains
them. Everything works on many offers at once with numpy segment reductions over a history sorted
by (offer, observed_at); there is no Python loop per offer except to format the output rows of
offers a signal fired for (messages and evidence are Python objects by nature).

Money
-----
Every money column in the input and feature frames is **int64 cents** (pandas ``int64`` or
nullable ``Int64``); float money columns are refused. In the feature frame ``0`` means "no value"
for prices, references, lows and medians (the database forbids a zero price or reference:
``CHECK (price > 0)``). Evidence amounts are reported as Decimal strings ("1899.00").

Inputs (column names)
---------------------
history : offer_id, observed_at (tz-aware UTC), price (cents, NULL when out of stock),
          optional reference_price, availability, freight, status ('quarantined' rows ignored).
offers  : offer_id, current_price, current_reference_price, current_freight (cents, nullable),
          availability, reputation_score (0-100, nullable), shop_first_seen_at, last_good_at
          (tz-aware, nullable); optional product_id / gtin / shop_id (carried, not used).
market  : offer_id, market_median_price, market_median_total (cents: medians of the current
          price and of price + freight over the OTHER shops quoting the same GTIN), market_shops
          (number of shops quoting it, this one included). ``market_figures`` builds it from an
          offers frame. Offers missing from ``market`` have no market.

See docs/risk.md for the definition, threshold, penalty and evidence of each signal.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Callable

import numpy as np
import pandas as pd

__all__ = [
    "RiskConfig",
    "DEFAULT_CONFIG",
    "SIGNAL_CODES",
    "compute_features",
    "market_figures",
    "signal_fake_reference_price",
    "signal_pre_sale_spike",
    "signal_too_good_to_be_true",
    "signal_shop_reputation",
    "signal_volatility",
    "signal_freight_trap",
    "signal_stale_price",
    "signal_good_deal",
    "SIGNALS",
    "compute_signals",
    "score_offers",
    "score_history",
    "bucket_of",
    "cents_to_decimal_str",
]

DAY = 86_400
HOUR = 3_600
_BIG = np.iinfo(np.int64).max
#: Relative slack for comparing cents with a threshold computed in floating point, so that a
#: value exactly at a threshold behaves as documented (1e-9 of R$ 1.000.000 is 0.01 cent: a
#: one-cent difference is always seen).
_EPS = 1e-9


def _ge(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a >= b for non-negative figures, exact at the threshold."""
    return a >= b * (1 - _EPS)


def _le(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a <= b * (1 + _EPS)


def _gt(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a > b * (1 + _EPS)


def _lt(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a < b * (1 - _EPS)


@dataclass(frozen=True, slots=True)
class RiskConfig:
    """Every threshold and penalty of the model, in one place. Tune here (docs/risk.md)."""

    model_version: str = "risk-v1.0"

    # -- FAKE_REFERENCE_PRICE ------------------------------------------------------------------
    # EU Price Indication Directive art. 6a (since 28 May 2022): the prior price of an announced
    # reduction is the lowest price applied in at least the 30 days before the reduction; the EU
    # Court (C-330/23 Aldi Sud, 26 Sep 2024) requires the advertised % to be computed from it.
    prior_low_days: int = 30
    # Which? 2023: 6 in 10 "was" prices had applied less than half of the year -> we look back
    # 365 days for whether the "de" price was ever charged.
    reference_lookback_days: int = 365
    # "charged" = an observed price >= reference - 1 % (rounding / price-point noise).
    reference_tolerance: float = 0.01
    # The "de" shown on Brazilian pages is the card / list price while the tracked price is often
    # the Pix (cash) price, 5-10 % lower (the simulator uses 5-10 %). Before comparing a tracked
    # price with a "de" price we gross it up by 1 / (1 - gap). 0 = same price kind on both sides.
    payment_kind_gap: float = 0.10
    # strong penalty when the claimed discount is >= 2x the real one (vs the 30-day low) or the
    # reference was never charged in the lookback (Park, Xie & Xie 2023: 22 % of Amazon list-price
    # displays hid a net increase of ~23 %).
    fake_reference_strong_ratio: float = 2.0
    # the reference counts as "rarely charged" below this share of time (Which? "less than half
    # of the year"); reported as evidence, strong penalty only when never charged.
    reference_min_share: float = 0.5
    penalty_fake_reference: int = 25
    penalty_fake_reference_strong: int = 45

    # -- PRE_SALE_SPIKE ------------------------------------------------------------------------
    # Field heuristic: a rise of >= 10 % within 7-45 days before a "sale" ("Black Fraude": prices
    # raised weeks before Black Friday; Zoom/Buscape +4.67 % on smartphones 29 Oct-11 Nov).
    spike_min_rise: float = 0.10
    spike_window_min_days: int = 7
    spike_window_max_days: int = 45
    # the drop brings the price back within 3 % of its level before the rise
    spike_back_tolerance: float = 0.03
    penalty_pre_sale_spike: int = 30

    # -- TOO_GOOD_TO_BE_TRUE -------------------------------------------------------------------
    # Field heuristic: price below 50 % of the market median for the same GTIN; needs >= 3 shops
    # quoting it (this one included) so the median means something.
    too_good_ratio: float = 0.50
    min_market_shops: int = 3
    penalty_too_good: int = 40
    penalty_too_good_strong: int = 55  # new (< new_shop_days) or low-reputation shop

    # -- SHOP_REPUTATION -----------------------------------------------------------------------
    # reputation_score 0-100 bands (marketplace seller levels); lower bound inclusive of next band
    reputation_bands: tuple[tuple[int, int], ...] = ((30, 30), (50, 15), (70, 5))  # (< bound, pen)
    low_reputation_below: int = 50  # "low reputation" for TOO_GOOD_TO_BE_TRUE's strong penalty
    penalty_reputation_unknown: int = 10
    new_shop_days: int = 30  # a shop first seen < 30 days ago is "new"
    penalty_new_shop: int = 15

    # -- VOLATILITY ----------------------------------------------------------------------------
    # Proteste measured up to 20 % day-to-day variation on one site: a move > 20 % between two
    # consecutive daily closes is "large". One large move is a price change (judged by the other
    # signals); instability is >= 2 large moves in the window, or a 30-day coefficient of
    # variation above 0.15 (a single lasting 25 % step gives a CV of at most 0.143).
    volatility_days: int = 30
    volatility_dod: float = 0.20
    volatility_min_large_moves: int = 2
    volatility_cv: float = 0.15
    penalty_volatility: int = 10

    # -- FREIGHT_TRAP --------------------------------------------------------------------------
    # Field heuristic: price + freight above the market median total while the price alone is
    # below the market median price.
    penalty_freight_trap: int = 10

    # -- STALE_PRICE ---------------------------------------------------------------------------
    stale_hours: int = 24  # the hourly tracker should have refreshed it many times over
    penalty_stale: int = 5
    low_confidence_history_days: int = 7  # less history than this also lowers confidence

    # -- GOOD_DEAL (positive marker) -----------------------------------------------------------
    # camelcamelcamel "good deal": within 5 % of the lowest recorded price with >= 5 weeks of
    # history; we use the 90-day low (Keepa-style window) and 35 days of history.
    good_deal_within: float = 0.05
    good_deal_low_days: int = 90
    good_deal_min_history_days: int = 35
    bonus_good_deal: int = 5
    # no bonus (the marker is dropped) once an offer's penalties reach this: a scam at its
    # all-time low is not a good deal.
    good_deal_max_penalty: int = 20

    # -- buckets (same as the database CHECK constraint and the earlier implementation) --------
    bucket_a_min: int = 80
    bucket_b_min: int = 60

    # time-weighting of "share of time at/above the reference": an observation holds until the
    # next one, at most this long (a gap in tracking is not evidence either way)
    max_hold_hours: int = 48

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


DEFAULT_CONFIG = RiskConfig()

SIGNAL_CODES = (
    "FAKE_REFERENCE_PRICE",
    "PRE_SALE_SPIKE",
    "TOO_GOOD_TO_BE_TRUE",
    "SHOP_REPUTATION",
    "VOLATILITY",
    "FREIGHT_TRAP",
    "STALE_PRICE",
    "GOOD_DEAL",
)

SIGNAL_COLUMNS = ["offer_id", "code", "penalty", "message_pt", "evidence"]


# ==============================================================================================
# conversions


def cents_to_decimal_str(cents: int) -> str:
    """1899 00 cents -> "1899.00" (exact; the Decimal text of the amount)."""
    c = int(cents)
    sign = "-" if c < 0 else ""
    c = abs(c)
    return f"{sign}{c // 100}.{c % 100:02d}"


def _decimal_strs(cents: np.ndarray) -> list[str | None]:
    """Many non-negative cents at once -> Decimal strings; None where <= 0 (no value)."""
    q, r = np.divmod(np.maximum(cents, 0), 100)
    return [f"{a}.{b:02d}" if c > 0 else None
            for a, b, c in zip(q.tolist(), r.tolist(), cents.tolist())]


def _brl(cents: int) -> str:
    """pt-BR money text: 289900 -> 'R$ 2.899,00'."""
    c = int(cents)
    return "R$ " + f"{c // 100:,}".replace(",", ".") + f",{c % 100:02d}"


def _pct(x: float) -> str:
    return f"{x * 100:.1f}"


def _pct_pt(x: float) -> str:
    return f"{x * 100:.1f}".replace(".", ",") + " %"


def _cents(frame: pd.DataFrame, col: str, n: int) -> np.ndarray:
    """A money column as int64 cents, 0 where missing (or the column is absent)."""
    if col not in frame.columns:
        return np.zeros(n, dtype=np.int64)
    s = frame[col]
    if s.dtype.kind == "f":
        raise TypeError(f"{col}: money must be int64 cents, not float ({s.dtype})")
    if isinstance(s.dtype, pd.api.extensions.ExtensionDtype) and s.dtype.kind in "iu":
        return s.to_numpy(dtype=np.int64, na_value=0)  # nullable Int64: NA -> 0
    if s.dtype.kind in "iu":
        return s.to_numpy(dtype=np.int64, copy=False)
    raise TypeError(f"{col}: money must be int64 cents, got {s.dtype}")


def _epoch_s(frame: pd.DataFrame, col: str, n: int) -> np.ndarray:
    """A tz-aware timestamp column as int64 Unix seconds; missing -> INT64 min."""
    missing = np.iinfo(np.int64).min
    if col not in frame.columns:
        return np.full(n, missing, dtype=np.int64)
    s = frame[col]
    if not isinstance(s.dtype, pd.DatetimeTZDtype):
        if s.dtype.kind == "M" and not s.notna().any():
            return np.full(n, missing, dtype=np.int64)  # all NaT: nothing to misread
        if s.dtype.kind == "M":
            raise ValueError(f"{col}: timestamps must be timezone-aware (UTC)")
        s = pd.to_datetime(s, utc=True)
    arr = s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[s]")
    out = arr.astype(np.int64)
    out[np.isnat(arr)] = missing
    return out


def _now_s(now: datetime) -> int:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return int(now.timestamp())


def _from_epoch(sec: np.ndarray) -> pd.Series:
    valid = sec > np.iinfo(np.int64).min
    arr = np.where(valid, sec, 0).astype("datetime64[s]").astype("datetime64[ns]")
    arr[~valid] = np.datetime64("NaT")
    return pd.Series(arr).dt.tz_localize(UTC)


# ==============================================================================================
# segment reductions over a history sorted by (offer position, observed_at)


class _Seg:
    """Per-offer reductions over rows grouped contiguously by `gid` (offer position)."""

    def __init__(self, gid: np.ndarray, n_groups: int) -> None:
        self.gid = gid
        self.n = n_groups
        if len(gid):
            self.starts = np.flatnonzero(np.r_[True, gid[1:] != gid[:-1]])
        else:
            self.starts = np.zeros(0, dtype=np.int64)
        self.groups = gid[self.starts]

    def reduce(self, ufunc: np.ufunc, values: np.ndarray, fill: Any) -> np.ndarray:
        out = np.full(self.n, fill, dtype=values.dtype)
        if len(values):
            out[self.groups] = ufunc.reduceat(values, self.starts)
        return out

    def min_where(self, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Min of int64 values where mask, per group; 0 when none."""
        out = self.reduce(np.minimum, np.where(mask, values, _BIG), _BIG)
        out[out == _BIG] = 0
        return out

    def max_where(self, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Max of non-negative int64 values where mask, per group; 0 when none."""
        return self.reduce(np.maximum, np.where(mask, values, 0), np.int64(0))

    def last_row_where(self, mask: np.ndarray) -> np.ndarray:
        """Row index of the last row (in time) where mask, per group; -1 when none."""
        out = np.full(self.n, -1, dtype=np.int64)
        idx = np.flatnonzero(mask)  # ascending, so the last hit of each group comes last
        if len(idx):
            g = self.gid[idx]
            last = np.r_[g[1:] != g[:-1], True]
            out[g[last]] = idx[last]
        return out

    def sum_where(self, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        zero = np.zeros((), dtype=values.dtype)
        return self.reduce(np.add, np.where(mask, values, zero), zero)


def _take(values: np.ndarray, rows: np.ndarray, fill: Any = 0) -> np.ndarray:
    """values[rows] with `fill` where rows == -1."""
    ok = rows >= 0
    out = np.full(len(rows), fill, dtype=values.dtype)
    out[ok] = values[rows[ok]]
    return out


@dataclass(slots=True)
class _Hist:
    """The usable history, sorted by (offer position, observed_at)."""

    gid: np.ndarray  # offer position in `offers`
    t: np.ndarray  # Unix seconds
    price: np.ndarray  # cents, > 0
    seg: _Seg
    now: int


def _prepare_history(
    history: pd.DataFrame, offer_ids: pd.Index, now: int, cfg: RiskConfig
) -> _Hist:
    """Keep rows with a price (> 0), not quarantined, observed in (now - lookback, now]."""
    n = len(history)
    price = _cents(history, "price", n)
    t = _epoch_s(history, "observed_at", n)
    horizon = max(cfg.reference_lookback_days, cfg.good_deal_low_days,
                  cfg.spike_window_max_days + cfg.prior_low_days + 90)
    keep = (price > 0) & (t <= now) & (t > now - horizon * DAY)
    if "status" in history.columns:
        keep &= history["status"].to_numpy() != "quarantined"
    pos = _positions(history["offer_id"].to_numpy(), offer_ids)
    keep &= pos >= 0
    if not keep.all():
        pos, t, price = pos[keep], t[keep], price[keep]
    if len(pos) and not _is_sorted(pos, t):
        order = np.lexsort((t, pos))
        pos, t, price = pos[order], t[order], price[order]
    return _Hist(pos, t, price, _Seg(pos, len(offer_ids)), now)


def _positions(ids: np.ndarray, offer_ids: pd.Index) -> np.ndarray:
    """Position of each history row's offer in `offers` (-1 = not scored).

    Looks up each run of equal ids once: a history read ORDER BY offer_id has one run per
    offer, so the hash lookup touches 1 value per offer instead of 1 per row.
    """
    n = len(ids)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    run_pos = offer_ids.get_indexer(ids[starts]).astype(np.int64)
    return np.repeat(run_pos, np.diff(np.r_[starts, n]))


def _is_sorted(pos: np.ndarray, t: np.ndarray) -> bool:
    """True when rows are already ordered by (pos, t) with each offer's rows contiguous."""
    dp = np.diff(pos)
    return bool(np.all((dp > 0) | ((dp == 0) & (np.diff(t) > 0))))


def _with_current_price(h: _Hist, current: np.ndarray) -> _Hist:
    """Append the current price as an observation at `now` where it differs from the offer's
    last observed price (or the offer has no history): the context may be fresher than the
    history, and a current price below the last observed one is a reduction."""
    last_row = np.full(h.seg.n, -1, dtype=np.int64)
    if len(h.gid):
        ends = np.r_[h.seg.starts[1:], len(h.gid)] - 1
        last_row[h.seg.groups] = ends
    last_price = _take(h.price, last_row)
    add = np.flatnonzero((current > 0) & (current != last_price))
    if len(add) == 0:
        return h
    at = np.searchsorted(h.gid, add, side="right")  # after the offer's rows, order kept
    gid = np.insert(h.gid, at, add)
    t = np.insert(h.t, at, np.full(len(add), h.now, dtype=np.int64))
    price = np.insert(h.price, at, current[add])
    return _Hist(gid, t, price, _Seg(gid, h.seg.n), h.now)


# ==============================================================================================
# features: one small function per group, each returns {column: array of len(offers)}


def _basic_features(h: _Hist) -> dict[str, np.ndarray]:
    seg = h.seg
    first_t = seg.reduce(np.minimum, h.t, _BIG)
    n_obs = seg.reduce(np.add, np.ones(len(h.t), dtype=np.int64), np.int64(0))
    span = np.where(n_obs > 0, (h.now - first_t) / DAY, 0.0)
    return {"n_observations": n_obs, "history_days": span}


def _reduction_features(h: _Hist, cfg: RiskConfig) -> dict[str, np.ndarray]:
    """The last reduction and the lowest price in the 30 days before it.

    Reduction = the most recent observation whose price is strictly lower than the previous
    usable observation of the same offer. With no reduction the window is the 30 days up to
    and including `now` (the "reduction" is the current price itself).
    """
    seg, t, p = h.seg, h.t, h.price
    same = np.r_[False, h.gid[1:] == h.gid[:-1]]
    prev = np.r_[np.int64(0), p[:-1]]
    dec = same & (p < prev)
    red_row = seg.last_row_where(dec)
    has_red = red_row >= 0
    red_t = np.where(has_red, _take(t, red_row), h.now)
    price_after = _take(p, red_row)
    price_before = _take(p, np.where(has_red, red_row - 1, -1))
    anchor = red_t[h.gid]  # per row
    end_excl = np.where(has_red, red_t, h.now + 1)[h.gid]
    in_win = (t >= anchor - cfg.prior_low_days * DAY) & (t < end_excl)
    low = seg.min_where(p, in_win)
    # a reduction right after a tracking gap > 30 days: the last price before it is all we know
    low = np.where(has_red & (low == 0), price_before, low)
    return {
        "has_reduction": has_red,
        "last_reduction_s": np.where(has_red, red_t, np.iinfo(np.int64).min),
        "price_before_reduction": price_before,
        "price_at_reduction": price_after,
        "low_before_reduction": low,
    }


def _reference_features(
    h: _Hist, current_reference: np.ndarray, cfg: RiskConfig
) -> dict[str, np.ndarray]:
    """Whether the current "de" price was charged in the last 365 days, and the share of time.

    Charged = an observed price, grossed up by the payment-kind gap, >= reference x (1 - 1 %).
    Time-weighted: an observation holds until the next one (or now), at most max_hold_hours.
    """
    seg, t, p = h.seg, h.t, h.price
    ref = current_reference[h.gid]
    in_year = t > h.now - cfg.reference_lookback_days * DAY
    # p / (1 - gap) >= ref * (1 - tol)   <=>   p >= ref * (1 - tol) * (1 - gap)
    level = (1 - cfg.reference_tolerance) * (1 - cfg.payment_kind_gap)
    at_or_above = (ref > 0) & _ge(p, ref * level)
    next_t = np.r_[t[1:], np.int64(0)]
    last_of_group = np.r_[h.gid[1:] != h.gid[:-1], True] if len(t) else np.zeros(0, bool)
    next_t = np.where(last_of_group, h.now, next_t)
    hold = np.minimum(next_t - t, cfg.max_hold_hours * HOUR).astype(np.int64)
    total = seg.sum_where(hold, in_year)
    above = seg.sum_where(hold, in_year & at_or_above)
    charged = seg.reduce(np.logical_or, in_year & at_or_above, False)
    max_year = seg.max_where(p, in_year)
    share = np.divide(above, total, out=np.zeros(len(total)), where=total > 0)
    return {"reference_charged_365d": charged, "reference_share_365d": share,
            "max_price_365d": max_year}


def _spike_features(h: _Hist, red: dict[str, np.ndarray], cfg: RiskConfig) -> dict[str, np.ndarray]:
    """The peak 7-45 days before the last reduction against the level before the rise.

    level before the rise = the last price observed more than 45 days before the reduction;
    peak = the highest price observed 7-45 days before the reduction.
    """
    seg, t, p = h.seg, h.t, h.price
    has_red = red["has_reduction"]
    red_t = np.where(has_red, red["last_reduction_s"], 0)[h.gid]
    lo = red_t - cfg.spike_window_max_days * DAY
    hi = red_t - cfg.spike_window_min_days * DAY
    row_has = has_red[h.gid]
    base_row = seg.last_row_where(row_has & (t < lo))
    baseline = _take(p, base_row)
    peak = seg.max_where(p, row_has & (t >= lo) & (t <= hi))
    ok = (baseline > 0) & (peak > 0)
    rise = np.divide(peak, baseline, out=np.zeros(len(peak)), where=ok) - np.where(ok, 1.0, 0.0)
    return {"level_before_rise": baseline, "peak_before_reduction": peak,
            "rise_before_reduction": rise}


def _volatility_features(h: _Hist, cfg: RiskConfig) -> dict[str, np.ndarray]:
    """Moves between consecutive daily closes (last price of each UTC day) and the CV over the
    last 30 days of daily closes (population standard deviation / mean)."""
    t, p = h.t, h.price
    day = t // DAY
    if len(t):
        close = np.r_[(h.gid[1:] != h.gid[:-1]) | (day[1:] != day[:-1]), True]
    else:
        close = np.zeros(0, dtype=bool)
    g, d, c = h.gid[close], day[close], p[close].astype(np.float64)
    keep = d > (h.now // DAY) - cfg.volatility_days
    g, d, c = g[keep], d[keep], c[keep]
    seg = _Seg(g, h.seg.n)
    same = np.r_[False, g[1:] == g[:-1]]
    prev = np.r_[1.0, c[:-1]]
    diff = np.where(same, np.abs(c - prev), 0.0)
    move = diff / prev
    max_move = seg.reduce(np.maximum, move, 0.0)
    large = same & _gt(diff, prev * cfg.volatility_dod)
    n_large = seg.reduce(np.add, large.astype(np.int64), np.int64(0))
    n = seg.reduce(np.add, np.ones(len(c)), 0.0)
    s1 = seg.reduce(np.add, c, 0.0)
    s2 = seg.reduce(np.add, c * c, 0.0)
    mean = np.divide(s1, n, out=np.zeros(len(n)), where=n > 0)
    var = np.divide(s2, n, out=np.zeros(len(n)), where=n > 0) - mean * mean
    cv = np.divide(np.sqrt(np.maximum(var, 0.0)), mean, out=np.zeros(len(n)), where=mean > 0)
    return {"max_daily_move_30d": max_move, "large_moves_30d": n_large, "cv_30d": cv,
            "daily_closes_30d": n.astype(np.int64)}


def _low_features(h: _Hist, cfg: RiskConfig) -> dict[str, np.ndarray]:
    in90 = h.t > h.now - cfg.good_deal_low_days * DAY
    return {"low_90d": h.seg.min_where(h.price, in90), "high_90d": h.seg.max_where(h.price, in90)}


def _context_features(offers: pd.DataFrame, now: int) -> dict[str, np.ndarray]:
    n = len(offers)
    cur = _cents(offers, "current_price", n)
    if "availability" in offers.columns:
        avail = offers["availability"].astype("string").fillna("unknown").to_numpy(dtype=object)
        # no current price while out of stock / discontinued: price signals must not fire
        sold_out = np.isin(avail, ["out_of_stock", "discontinued"])
        cur = np.where(sold_out, 0, cur)
    else:
        avail = np.full(n, "unknown", dtype=object)
    ref = _cents(offers, "current_reference_price", n)
    ref = np.where((cur > 0) & (ref > cur), ref, 0)  # a "de" only means something above the price
    rep = (pd.to_numeric(offers["reputation_score"], errors="coerce").to_numpy(dtype=np.float64,
                                                                                na_value=np.nan)
           if "reputation_score" in offers.columns else np.full(n, np.nan))
    first = _epoch_s(offers, "shop_first_seen_at", n)
    good = _epoch_s(offers, "last_good_at", n)
    missing = np.iinfo(np.int64).min
    shop_age = np.where(first > missing, (now - first) / DAY, np.nan)
    good_age = np.where(good > missing, (now - good) / HOUR, np.nan)
    return {
        "current_price": cur,
        "current_reference_price": ref,
        "current_freight": _cents(offers, "current_freight", n),
        "availability": avail,
        "reputation_score": rep,
        "shop_age_days": shop_age,
        "last_good_age_hours": good_age,
        "last_good_s": good,
    }


def _market_features(offers: pd.DataFrame, market: pd.DataFrame | None) -> dict[str, np.ndarray]:
    n = len(offers)
    if market is None or len(market) == 0:
        z = np.zeros(n, dtype=np.int64)
        return {"market_median_price": z, "market_median_total": z.copy(), "market_shops": z.copy()}
    # keyed by offer (leave-one-out medians, see market_figures) or, failing that, by product
    # (then the median includes the offer's own shop: an approximation, see docs/risk.md)
    key = next((k for k in ("offer_id", "product_id", "gtin")
                if k in market.columns and k in offers.columns), None)
    if key is None:
        raise ValueError("market: needs an offer_id, product_id or gtin column shared with offers")
    m_idx = pd.Index(market[key])
    if m_idx.has_duplicates:
        raise ValueError(f"market: {key} must be unique")
    pos = m_idx.get_indexer(offers[key])
    ok = pos >= 0
    out = {}
    for col in ("market_median_price", "market_median_total", "market_shops"):
        vals = _cents(market, col, len(market)) if col != "market_shops" else (
            market[col].to_numpy(dtype=np.int64, na_value=0) if col in market.columns
            else np.zeros(len(market), dtype=np.int64))
        arr = np.zeros(n, dtype=np.int64)
        arr[ok] = vals[pos[ok]]
        out[col] = arr
    return out


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    ok = (num > 0) & (den > 0)
    return np.divide(num, den, out=np.full(len(num), np.nan), where=ok)


def compute_features(
    history: pd.DataFrame,
    offers: pd.DataFrame,
    market: pd.DataFrame | None = None,
    *,
    now: datetime,
    config: RiskConfig = DEFAULT_CONFIG,
) -> pd.DataFrame:
    """One row per offer (in `offers` order) with every figure the signals use.

    Cents columns are int64 with 0 = no value; ratios are float64 (NaN = not computable).
    """
    cfg = config
    now_s = _now_s(now)
    offer_ids = pd.Index(offers["offer_id"].to_numpy())
    if offer_ids.has_duplicates:
        raise ValueError("offers: offer_id must be unique")
    ctx = _context_features(offers, now_s)
    h = _prepare_history(history, offer_ids, now_s, cfg)
    # no last-good time in the context: the last usable observation in the history is one
    last_obs = h.seg.reduce(np.maximum, h.t, np.iinfo(np.int64).min)
    h = _with_current_price(h, ctx["current_price"])
    red = _reduction_features(h, cfg)
    cols: dict[str, Any] = {"offer_id": offers["offer_id"].to_numpy()}
    cols.update(ctx)
    cols.update(_basic_features(h))
    no_good = ctx["last_good_s"] == np.iinfo(np.int64).min
    cols["last_good_s"] = np.where(no_good, last_obs, ctx["last_good_s"])
    cols["last_good_age_hours"] = np.where(
        cols["last_good_s"] > np.iinfo(np.int64).min, (now_s - cols["last_good_s"]) / HOUR, np.nan)
    cols.update(red)
    cols.update(_reference_features(h, ctx["current_reference_price"], cfg))
    cols.update(_spike_features(h, red, cfg))
    cols.update(_volatility_features(h, cfg))
    cols.update(_low_features(h, cfg))
    cols.update(_market_features(offers, market))
    cur, ref = cols["current_price"], cols["current_reference_price"]
    low = cols["low_before_reduction"]
    cols["claimed_discount"] = np.where(ref > 0, 1.0 - _ratio(cur, ref), np.nan)
    cols["real_discount"] = np.where((cur > 0) & (low > 0), 1.0 - _ratio(cur, low), np.nan)
    cols["price_to_market"] = _ratio(cur, cols["market_median_price"])
    frame = pd.DataFrame(cols)
    frame["last_reduction_at"] = _from_epoch(frame.pop("last_reduction_s").to_numpy())
    frame["last_good_at"] = _from_epoch(frame.pop("last_good_s").to_numpy())
    frame.attrs["now"] = now
    return frame


# ==============================================================================================
# market figures from an offers frame (leave-one-out medians, vectorized)


def _loo_median(group: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median of the OTHER members' values per row (int64 cents, half-up), and their count."""
    n = len(values)
    order = np.lexsort((values, group))
    g, v = group[order], values[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]]) if n else np.zeros(0, np.int64)
    sizes = np.diff(np.r_[starts, n])
    start_of = np.repeat(starts, sizes)
    size_of = np.repeat(sizes, sizes)
    rank = np.arange(n) - start_of
    m = size_of - 1  # others
    k_lo = (m - 1) // 2
    k_hi = m // 2

    def idx(k: np.ndarray) -> np.ndarray:  # k-th of the others -> sorted position
        return start_of + np.where(k < rank, k, k + 1)

    ok = m > 0
    lo = np.where(ok, v[np.clip(idx(k_lo), 0, max(n - 1, 0))], 0)
    hi = np.where(ok, v[np.clip(idx(k_hi), 0, max(n - 1, 0))], 0)
    med = (lo + hi + 1) // 2
    out_med = np.empty(n, dtype=np.int64)
    out_cnt = np.empty(n, dtype=np.int64)
    out_med[order] = med
    out_cnt[order] = m
    return out_med, out_cnt


def market_figures(offers: pd.DataFrame) -> pd.DataFrame:
    """Market medians per offer over the OTHER offers of the same product with a current price.

    `offers`: offer_id, product_id (or gtin), current_price, current_freight, optional
    availability. One offer per shop and product is assumed (the catalog's unique key).
    Returns offer_id, market_median_price, market_median_total, market_shops (this offer's shop
    included when it has a price, i.e. others + 1).
    """
    n = len(offers)
    key = "product_id" if "product_id" in offers.columns else "gtin"
    price = _cents(offers, "current_price", n)
    if "availability" in offers.columns:
        price = np.where(offers["availability"].isin(["out_of_stock", "discontinued"]).to_numpy(),
                         0, price)
    freight = _cents(offers, "current_freight", n)
    has = price > 0
    codes = pd.factorize(offers[key])[0].astype(np.int64)
    med_p = np.zeros(n, dtype=np.int64)
    med_t = np.zeros(n, dtype=np.int64)
    shops = np.zeros(n, dtype=np.int64)
    idx = np.flatnonzero(has & (codes >= 0))
    mp, cnt = _loo_median(codes[idx], price[idx])
    mt, _ = _loo_median(codes[idx], price[idx] + freight[idx])
    med_p[idx], med_t[idx], shops[idx] = mp, mt, cnt + 1
    return pd.DataFrame({"offer_id": offers["offer_id"].to_numpy(), "market_median_price": med_p,
                         "market_median_total": med_t, "market_shops": shops})


# ==============================================================================================
# signals: each a pure function of the feature frame, rows only where it fires


def _emit(
    f: pd.DataFrame,
    mask: np.ndarray,
    code: str,
    penalty: np.ndarray | int,
    build: Callable[[dict[str, Any]], tuple[str, dict[str, str]]],
    columns: list[str],
) -> pd.DataFrame:
    """Rows for offers where `mask`; `build(row)` -> (message_pt, evidence) per firing offer."""
    mask = np.asarray(mask, dtype=bool)
    idx = np.flatnonzero(mask)
    pen = np.broadcast_to(np.asarray(penalty, dtype=np.int64), (len(f),))[idx]
    sub = {c: f[c].iloc[idx].tolist() for c in columns}
    msgs, evs = [], []
    for i in range(len(idx)):
        m, e = build({c: sub[c][i] for c in columns})
        msgs.append(m)
        evs.append(e)
    return pd.DataFrame({
        "offer_id": f["offer_id"].to_numpy()[idx],
        "code": code,
        "penalty": pen.astype(np.int64),
        "message_pt": pd.Series(msgs, dtype=object),
        "evidence": pd.Series(evs, dtype=object),
    }, columns=SIGNAL_COLUMNS)


def _col(f: pd.DataFrame, c: str) -> np.ndarray:
    return f[c].to_numpy()


def signal_fake_reference_price(
    f: pd.DataFrame, config: RiskConfig = DEFAULT_CONFIG
) -> pd.DataFrame:
    """The "de" price is above the lowest price of the 30 days before the reduction.

    Fires when reference x (1 - gap) > low x (1 + tol) (gap = payment-kind gap, tol = 1 %).
    Strong when the claimed discount >= 2x the real one or the reference was never charged.
    """
    cfg = config
    ref, low = _col(f, "current_reference_price"), _col(f, "low_before_reduction")
    cur = _col(f, "current_price")
    fires = (cur > 0) & (ref > 0) & (low > 0) & (
        _gt(ref * (1 - cfg.payment_kind_gap), low * (1 + cfg.reference_tolerance)))
    claimed = np.nan_to_num(_col(f, "claimed_discount").astype(float), nan=0.0)
    real = np.nan_to_num(_col(f, "real_discount").astype(float), nan=0.0)
    inflated = _ge(claimed, cfg.fake_reference_strong_ratio * np.maximum(real, 0.0))
    never = ~_col(f, "reference_charged_365d").astype(bool)
    strong = inflated | never
    pen = np.where(strong, cfg.penalty_fake_reference_strong, cfg.penalty_fake_reference)

    def build(r: dict[str, Any]) -> tuple[str, dict[str, str]]:
        real_d = max(r["real_discount"], 0.0) if r["real_discount"] == r["real_discount"] else 0.0
        window = (f"nos {cfg.prior_low_days} dias antes da redução" if r["has_reduction"]
                  else f"nos últimos {cfg.prior_low_days} dias")
        msg = (f"Desconto anunciado de {_pct_pt(r['claimed_discount'])} sobre "
               f"\"de {_brl(r['current_reference_price'])}\", "
               f"mas o menor preço {window} foi "
               f"{_brl(r['low_before_reduction'])}: desconto real de {_pct_pt(real_d)}.")
        if not r["reference_charged_365d"]:
            msg += (f" O preço \"de\" não foi cobrado nos últimos "
                    f"{cfg.reference_lookback_days} dias.")
        ev = {
            "reference_price": cents_to_decimal_str(r["current_reference_price"]),
            "current_price": cents_to_decimal_str(r["current_price"]),
            "low_before_reduction": cents_to_decimal_str(r["low_before_reduction"]),
            "claimed_discount_pct": _pct(r["claimed_discount"]),
            "real_discount_pct": _pct(real_d),
            "reference_charged_365d": str(bool(r["reference_charged_365d"])).lower(),
            "reference_share_365d_pct": _pct(r["reference_share_365d"]),
            "max_price_365d": cents_to_decimal_str(r["max_price_365d"]),
        }
        return msg, ev

    return _emit(f, fires, "FAKE_REFERENCE_PRICE", pen, build,
                 ["current_reference_price", "current_price", "low_before_reduction",
                  "claimed_discount", "real_discount", "reference_charged_365d",
                  "reference_share_365d", "max_price_365d", "has_reduction"])


def signal_pre_sale_spike(f: pd.DataFrame, config: RiskConfig = DEFAULT_CONFIG) -> pd.DataFrame:
    """A rise >= 10 % held 7-45 days before the last reduction, which brings the price back
    within 3 % of the level before the rise (the price was still raised just before the cut)."""
    cfg = config
    base = _col(f, "level_before_rise")
    before, after = _col(f, "price_before_reduction"), _col(f, "price_at_reduction")
    fires = (
        _col(f, "has_reduction").astype(bool) & (base > 0) & (after > 0)
        & _ge(_col(f, "peak_before_reduction"), base * (1 + cfg.spike_min_rise))
        & _ge(before, base * (1 + cfg.spike_min_rise))
        & _le(after, base * (1 + cfg.spike_back_tolerance))
    )

    def build(r: dict[str, Any]) -> tuple[str, dict[str, str]]:
        when = pd.Timestamp(r["last_reduction_at"]).strftime("%d/%m/%Y")
        msg = (f"Preço subiu {_pct_pt(r['rise_before_reduction'])} "
               f"(de {_brl(r['level_before_rise'])} "
               f"para {_brl(r['peak_before_reduction'])}) entre {cfg.spike_window_max_days} e "
               f"{cfg.spike_window_min_days} dias antes da \"promoção\" de {when}, que só o trouxe "
               f"de volta a {_brl(r['price_at_reduction'])}.")
        ev = {
            "level_before_rise": cents_to_decimal_str(r["level_before_rise"]),
            "peak_before_reduction": cents_to_decimal_str(r["peak_before_reduction"]),
            "price_before_reduction": cents_to_decimal_str(r["price_before_reduction"]),
            "price_at_reduction": cents_to_decimal_str(r["price_at_reduction"]),
            "rise_pct": _pct(r["rise_before_reduction"]),
            "last_reduction_at": pd.Timestamp(r["last_reduction_at"]).isoformat(),
        }
        return msg, ev

    return _emit(f, fires, "PRE_SALE_SPIKE", cfg.penalty_pre_sale_spike, build,
                 ["level_before_rise", "peak_before_reduction", "price_before_reduction",
                  "price_at_reduction", "rise_before_reduction", "last_reduction_at"])


def _new_or_low_rep(f: pd.DataFrame, cfg: RiskConfig) -> tuple[np.ndarray, np.ndarray]:
    rep = _col(f, "reputation_score").astype(float)
    age = _col(f, "shop_age_days").astype(float)
    new = age < cfg.new_shop_days  # NaN -> False
    low = rep < cfg.low_reputation_below  # NaN -> False
    return new, low


def signal_too_good_to_be_true(
    f: pd.DataFrame, config: RiskConfig = DEFAULT_CONFIG
) -> pd.DataFrame:
    """Price below 50 % of the median over the other shops for the same GTIN (>= 3 shops)."""
    cfg = config
    cur, med = _col(f, "current_price"), _col(f, "market_median_price")
    fires = (cur > 0) & (med > 0) & (_col(f, "market_shops") >= cfg.min_market_shops) & (
        _lt(cur, med * cfg.too_good_ratio))
    new, low = _new_or_low_rep(f, cfg)
    pen = np.where(new | low, cfg.penalty_too_good_strong, cfg.penalty_too_good)

    def build(r: dict[str, Any]) -> tuple[str, dict[str, str]]:
        ratio = r["current_price"] / r["market_median_price"]
        msg = (f"Preço {_brl(r['current_price'])} é {_pct_pt(ratio)} da mediana de mercado "
               f"({_brl(r['market_median_price'])} em {r['market_shops'] - 1} outras lojas): "
               f"bom demais para ser verdade.")
        ev = {
            "current_price": cents_to_decimal_str(r["current_price"]),
            "market_median_price": cents_to_decimal_str(r["market_median_price"]),
            "price_to_market_pct": _pct(ratio),
            "market_shops": str(r["market_shops"]),
        }
        return msg, ev

    return _emit(f, fires, "TOO_GOOD_TO_BE_TRUE", pen, build,
                 ["current_price", "market_median_price", "market_shops"])


def signal_shop_reputation(f: pd.DataFrame, config: RiskConfig = DEFAULT_CONFIG) -> pd.DataFrame:
    """Low reputation band (or unknown), plus a penalty for a shop first seen < 30 days ago."""
    cfg = config
    rep = _col(f, "reputation_score").astype(float)
    band = np.zeros(len(f), dtype=np.int64)
    assigned = np.isnan(rep)
    band[assigned] = cfg.penalty_reputation_unknown
    for bound, pen in sorted(cfg.reputation_bands):
        hit = ~assigned & (rep < bound)
        band[hit] = pen
        assigned |= hit
    new, _ = _new_or_low_rep(f, cfg)
    total = band + np.where(new, cfg.penalty_new_shop, 0)
    bounds = sorted(b for b, _ in cfg.reputation_bands)
    words = ("muito baixa", "baixa", "moderada")

    def build(r: dict[str, Any]) -> tuple[str, dict[str, str]]:
        rep_v = r["reputation_score"]
        parts = []
        if rep_v != rep_v:
            parts.append("Reputação da loja desconhecida")
        elif rep_v < bounds[-1]:
            word = words[min(bisect_right(bounds, rep_v), 2)]
            parts.append(f"Reputação da loja {word} ({rep_v:.0f}/100)")
        if r["shop_age_days"] == r["shop_age_days"] and r["shop_age_days"] < cfg.new_shop_days:
            parts.append(f"loja nova (vista pela primeira vez há {int(r['shop_age_days'])} dias)")
        msg = "; ".join(parts) + "."
        msg = msg[0].upper() + msg[1:]
        ev = {
            "reputation_score": "unknown" if rep_v != rep_v else f"{rep_v:.0f}",
            "shop_age_days": "unknown" if r["shop_age_days"] != r["shop_age_days"]
            else f"{r['shop_age_days']:.1f}",
        }
        return msg, ev

    return _emit(f, total > 0, "SHOP_REPUTATION", total, build,
                 ["reputation_score", "shop_age_days"])


def signal_volatility(f: pd.DataFrame, config: RiskConfig = DEFAULT_CONFIG) -> pd.DataFrame:
    """>= 2 moves > 20 % between consecutive daily closes, or a 30-day CV > 0.15."""
    cfg = config
    fires = (_col(f, "large_moves_30d") >= cfg.volatility_min_large_moves) | (
        _col(f, "cv_30d") > cfg.volatility_cv)

    def build(r: dict[str, Any]) -> tuple[str, dict[str, str]]:
        msg = (f"Preço instável nos últimos {cfg.volatility_days} dias: {r['large_moves_30d']} "
               f"variações diárias acima de {_pct_pt(cfg.volatility_dod)} (máxima "
               f"{_pct_pt(r['max_daily_move_30d'])}), coeficiente de variação "
               f"{_pct_pt(r['cv_30d'])}.")
        ev = {
            "max_daily_move_pct": _pct(r["max_daily_move_30d"]),
            "large_moves_30d": str(r["large_moves_30d"]),
            "cv_30d_pct": _pct(r["cv_30d"]),
        }
        return msg, ev

    return _emit(f, fires, "VOLATILITY", cfg.penalty_volatility, build,
                 ["large_moves_30d", "max_daily_move_30d", "cv_30d"])


def signal_freight_trap(f: pd.DataFrame, config: RiskConfig = DEFAULT_CONFIG) -> pd.DataFrame:
    """Price below the market median price, but price + freight above the market median total."""
    cfg = config
    cur, fr = _col(f, "current_price"), _col(f, "current_freight")
    med_p, med_t = _col(f, "market_median_price"), _col(f, "market_median_total")
    fires = (cur > 0) & (med_p > 0) & (med_t > 0) & (cur < med_p) & (cur + fr > med_t)

    def build(r: dict[str, Any]) -> tuple[str, dict[str, str]]:
        total = r["current_price"] + r["current_freight"]
        msg = (f"Preço {_brl(r['current_price'])} parece barato "
               f"(mediana {_brl(r['market_median_price'])}), mas com frete de "
               f"{_brl(r['current_freight'])} o total {_brl(total)} passa a mediana "
               f"de mercado com frete ({_brl(r['market_median_total'])}).")
        ev = {
            "current_price": cents_to_decimal_str(r["current_price"]),
            "freight": cents_to_decimal_str(r["current_freight"]),
            "total": cents_to_decimal_str(total),
            "market_median_price": cents_to_decimal_str(r["market_median_price"]),
            "market_median_total": cents_to_decimal_str(r["market_median_total"]),
        }
        return msg, ev

    return _emit(f, fires, "FREIGHT_TRAP", cfg.penalty_freight_trap, build,
                 ["current_price", "current_freight", "market_median_price", "market_median_total"])


def signal_stale_price(f: pd.DataFrame, config: RiskConfig = DEFAULT_CONFIG) -> pd.DataFrame:
    """The last good observation is older than 24 h (or there is none)."""
    cfg = config
    age = _col(f, "last_good_age_hours").astype(float)
    fires = ~(age <= cfg.stale_hours)  # NaN (never observed) fires too

    def build(r: dict[str, Any]) -> tuple[str, dict[str, str]]:
        a = r["last_good_age_hours"]
        if a != a:
            return ("Preço nunca confirmado por uma leitura válida.",
                    {"last_good_age_hours": "unknown"})
        return (f"Preço pode estar desatualizado: última leitura válida há {a:.0f} h.",
                {"last_good_age_hours": f"{a:.1f}",
                 "last_good_at": pd.Timestamp(r["last_good_at"]).isoformat()})

    return _emit(f, fires, "STALE_PRICE", cfg.penalty_stale, build,
                 ["last_good_age_hours", "last_good_at"])


def signal_good_deal(f: pd.DataFrame, config: RiskConfig = DEFAULT_CONFIG) -> pd.DataFrame:
    """Within 5 % of the 90-day low with >= 35 days of history. Penalty = -bonus (a bonus)."""
    cfg = config
    cur, low = _col(f, "current_price"), _col(f, "low_90d")
    fires = (cur > 0) & (low > 0) & _le(cur, low * (1 + cfg.good_deal_within)) & (
        _col(f, "history_days") >= cfg.good_deal_min_history_days)

    def build(r: dict[str, Any]) -> tuple[str, dict[str, str]]:
        msg = (f"Bom negócio: {_brl(r['current_price'])} está a até "
               f"{_pct_pt(cfg.good_deal_within)} "
               f"do menor preço dos últimos {cfg.good_deal_low_days} dias ({_brl(r['low_90d'])}).")
        ev = {
            "current_price": cents_to_decimal_str(r["current_price"]),
            "low_90d": cents_to_decimal_str(r["low_90d"]),
            "above_low_pct": _pct(r["current_price"] / r["low_90d"] - 1),
            "history_days": f"{r['history_days']:.1f}",
        }
        return msg, ev

    return _emit(f, fires, "GOOD_DEAL", -cfg.bonus_good_deal, build,
                 ["current_price", "low_90d", "history_days"])


SIGNALS: tuple[Callable[[pd.DataFrame, RiskConfig], pd.DataFrame], ...] = (
    signal_fake_reference_price,
    signal_pre_sale_spike,
    signal_too_good_to_be_true,
    signal_shop_reputation,
    signal_volatility,
    signal_freight_trap,
    signal_stale_price,
    signal_good_deal,
)


def compute_signals(features: pd.DataFrame, config: RiskConfig = DEFAULT_CONFIG) -> pd.DataFrame:
    """Every signal's rows, concatenated (offer_id, code, penalty, message_pt, evidence)."""
    parts = [s(features, config) for s in SIGNALS]
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object if c in ("code", "message_pt", "evidence")
                                          else np.int64) for c in SIGNAL_COLUMNS})
    return pd.concat(parts, ignore_index=True)


# ==============================================================================================
# score


def bucket_of(score: np.ndarray, config: RiskConfig = DEFAULT_CONFIG) -> np.ndarray:
    s = np.asarray(score)
    return np.where(s >= config.bucket_a_min, "A", np.where(s >= config.bucket_b_min, "B", "C"))


_INPUT_CENTS = ("current_price", "current_reference_price", "current_freight",
                "low_before_reduction", "low_90d", "market_median_price", "market_median_total")
_INPUT_RATIOS = ("claimed_discount", "real_discount", "reference_share_365d",
                 "rise_before_reduction", "max_daily_move_30d", "cv_30d", "price_to_market")


def score_offers(
    features: pd.DataFrame,
    config: RiskConfig = DEFAULT_CONFIG,
    signals: pd.DataFrame | None = None,
    *,
    json_text: bool = False,
) -> pd.DataFrame:
    """score = clamp(100 - sum(penalties) + bonuses, 0, 100); A >= 80, B 60-79, C < 60.

    GOOD_DEAL's bonus (and its reason) is dropped when the offer's penalties reach
    `good_deal_max_penalty`. Returns offer_id, score, bucket, reasons (list of
    {code, message, penalty, evidence}, penalty desc then code), inputs (dict), confidence
    ("high" | "low"), model_version.

    `json_text`: reasons and inputs as compact JSON text instead (exactly
    ``json.dumps(value, ensure_ascii=False, separators=(",", ":"))`` of the objects), for a
    writer that stores them as jsonb: the inputs text is assembled column-wise, without a dict
    per offer.
    """
    cfg = config
    sig = compute_signals(features, cfg) if signals is None else signals
    n = len(features)
    offer_ids = features["offer_id"].to_numpy()
    idx = pd.Index(offer_ids)
    if len(sig):
        sig = sig[idx.get_indexer(sig["offer_id"].to_numpy()) >= 0]  # offers not scored here
    pos = idx.get_indexer(sig["offer_id"].to_numpy()) if len(sig) else np.zeros(0, np.int64)
    pen = sig["penalty"].to_numpy(dtype=np.int64) if len(sig) else np.zeros(0, np.int64)
    is_bonus = pen < 0
    penalties = np.bincount(pos[~is_bonus], weights=pen[~is_bonus], minlength=n).astype(np.int64)
    allow_bonus = penalties < cfg.good_deal_max_penalty
    keep = ~is_bonus | allow_bonus[pos]
    b = keep & is_bonus
    bonuses = np.bincount(pos[b], weights=-pen[b], minlength=n).astype(np.int64)
    score = np.clip(100 - penalties + bonuses, 0, 100).astype(np.int64)

    # reasons, ordered by penalty desc (bonus last), then code
    reasons: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    if len(sig):
        s = sig.loc[keep].assign(_pos=pos[keep])
        s = s.sort_values(["_pos", "penalty", "code"], ascending=[True, False, True], kind="stable")
        for p, code, msg, pe, ev in zip(s["_pos"].tolist(), s["code"].tolist(),
                                        s["message_pt"].tolist(), s["penalty"].tolist(),
                                        s["evidence"].tolist()):
            reasons[p].append({"code": code, "message": msg, "penalty": int(pe), "evidence": ev})

    age = features["last_good_age_hours"].to_numpy(dtype=float)
    low_conf = ~(age <= cfg.stale_hours) | (
        features["history_days"].to_numpy(dtype=float) < cfg.low_confidence_history_days)
    if json_text:
        dumps = _JSON.encode
        reasons = [dumps(r) if r else "[]" for r in reasons]
        inputs: list[Any] = _inputs_json(features)
    else:
        inputs = _inputs(features)
    return pd.DataFrame({
        "offer_id": offer_ids,
        "score": score,
        "bucket": bucket_of(score, cfg),
        "reasons": pd.Series(reasons, dtype=object),
        "inputs": pd.Series(inputs, dtype=object),
        "confidence": np.where(low_conf, "low", "high"),
        "model_version": cfg.model_version,
    })


def _inputs(f: pd.DataFrame) -> list[dict[str, Any]]:
    """The figures each offer was scored on, JSON-serialisable (money as Decimal strings)."""
    cols: dict[str, list[Any]] = {}
    for c in _INPUT_CENTS:
        cols[c] = _decimal_strs(f[c].to_numpy(dtype=np.int64))
    for c in _INPUT_RATIOS:
        v = np.round(f[c].to_numpy(dtype=float), 4)
        cols[c] = [None if x != x else x for x in v.tolist()]
    cols["market_shops"] = f["market_shops"].to_numpy().tolist()
    cols["history_days"] = np.round(f["history_days"].to_numpy(dtype=float), 2).tolist()
    cols["reference_charged_365d"] = f["reference_charged_365d"].to_numpy(dtype=bool).tolist()
    rep = f["reputation_score"].to_numpy(dtype=float)
    cols["reputation_score"] = [None if x != x else x for x in rep.tolist()]
    names = list(cols)
    return [dict(zip(names, row)) for row in zip(*(cols[k] for k in names))]


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _json_floats(values: np.ndarray, nan: str) -> list[str]:
    """Floats as json.dumps writes them (float repr; Infinity / -Infinity), NaN as `nan`."""
    out = list(map(float.__repr__, values.tolist()))
    bad = ~np.isfinite(values)
    if not bad.any():
        return out
    arr = np.array(out, dtype=object)
    arr[np.isnan(values)] = nan
    arr[values == np.inf] = "Infinity"
    arr[values == -np.inf] = "-Infinity"
    return arr.tolist()


def _json_scalars(values: list[Any]) -> list[str]:
    """Scalars of one type (ints, bools) as json.dumps writes them."""
    text = {v: _JSON.encode(v) for v in set(values)}
    return [text[v] for v in values]


def _inputs_json(f: pd.DataFrame) -> list[str]:
    """_inputs(f) as JSON text, column by column: the same text as encoding each dict."""
    cols: dict[str, list[str]] = {}
    for c in _INPUT_CENTS:
        cols[c] = ["null" if x is None else f'"{x}"'
                   for x in _decimal_strs(f[c].to_numpy(dtype=np.int64))]
    for c in _INPUT_RATIOS:
        cols[c] = _json_floats(np.round(f[c].to_numpy(dtype=float), 4), "null")
    cols["market_shops"] = _json_scalars(f["market_shops"].to_numpy().tolist())
    cols["history_days"] = _json_floats(np.round(f["history_days"].to_numpy(dtype=float), 2), "NaN")
    cols["reference_charged_365d"] = _json_scalars(
        f["reference_charged_365d"].to_numpy(dtype=bool).tolist())
    cols["reputation_score"] = _json_floats(f["reputation_score"].to_numpy(dtype=float), "null")
    template = "{" + ",".join(f"{_JSON.encode(k)}:%s" for k in cols) + "}"
    return [template % row for row in zip(*cols.values())]


def score_history(
    history: pd.DataFrame,
    offers: pd.DataFrame,
    market: pd.DataFrame | None = None,
    *,
    now: datetime,
    config: RiskConfig = DEFAULT_CONFIG,
    json_text: bool = False,
) -> pd.DataFrame:
    """compute_features -> signals -> score_offers, in one call (`json_text`: see score_offers)."""
    feats = compute_features(history, offers, market, now=now, config=config)
    return score_offers(feats, config, json_text=json_text)
