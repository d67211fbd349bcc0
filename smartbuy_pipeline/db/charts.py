"""The series behind `smartbuy chart`: one offer, or every offer of a GTIN, over a window.

Three set-based statements, each for all the chart's offers at once (never one per offer or row):

* SERIES_SQL: the price steps per offer from the accepted `public.price_history` rows in
  (start - 30 days, end] - an index scan of each overlapping partition's primary key
  (offer_id, observed_at), the other partitions pruned. Only the rows a step chart needs come
  back: the state in effect at `start` (moved to `start`), each observation whose price,
  reference price, availability or currency differs from the offer's previous one, and the last
  observation (where the line ends).
* LOW_30D_SQL: the rolling 30-day low over the same rows, in SQL (`min() over (range between
  interval '30 days' preceding and current row)`): at each observation, the lowest price any of the
  chart's offers showed in the 30 days up to it (for one offer: that offer's own low; for a GTIN:
  the lowest price at any of its shops). Again only its changes come back.
* BUCKET_CHANGES_SQL: the risk bucket flips from `offer_risk_score_history` (index
  `offer_risk_score_history_offer_idx`), plus an offer's first score when it falls in the window.

Money is Decimal (numeric) all the way; `smartbuy_pipeline.charts` converts it for the axis only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg.rows import dict_row

from smartbuy_pipeline.charts import (
    BucketChange,
    ChartData,
    LowPoint,
    PricePoint,
    ShopSeries,
)
from smartbuy_pipeline.domain.gtin import normalize_gtin

DEFAULT_DAYS = 90
MAX_DAYS = 3660
LOW_WINDOW = timedelta(days=30)


@dataclass(frozen=True)
class ChartTarget:
    """What the chart is of: the product and the offers (with their shop names) to draw."""

    kind: str  # "offer" or "gtin"
    label: str  # as the user wrote it (digits), for messages and the default file name
    product: str
    gtin: str
    offers: tuple[tuple[int, str], ...]  # (offer id, shop name), ordered by shop name, id


OFFER_SQL = """
select o.id, s.name as shop, p.name as product, p.gtin
from public.offers o
join public.products p on p.id = o.product_id
join public.shops s on s.id = o.shop_id
where o.id = %(offer_id)s
"""

PRODUCT_SQL = "select id, name, gtin from public.products where gtin = %(gtin)s"

PRODUCT_OFFERS_SQL = """
select o.id, s.name as shop
from public.offers o
join public.shops s on s.id = o.shop_id
where o.product_id = %(product_id)s
order by s.name, o.id
"""

# Rows in (start - 30 days, end]: the lookback gives the state at `start` and the 30-day low there.
_OBSERVATIONS = """
select h.offer_id, h.observed_at, h.price, h.currency, h.reference_price, h.availability
from public.price_history h
where h.offer_id = any(%(offer_ids)s::bigint[])
  and h.status = 'accepted'
  and h.observed_at > %(lookback)s and h.observed_at <= %(end)s
"""

SERIES_SQL = f"""
with obs as ({_OBSERVATIONS}),
steps as (
    select obs.*,
           lag(price) over w           as prev_price,
           lag(reference_price) over w as prev_reference_price,
           lag(availability) over w    as prev_availability,
           lag(currency) over w        as prev_currency,
           lead(observed_at) over w    as next_at
    from obs
    window w as (partition by offer_id order by observed_at)
)
select offer_id, greatest(observed_at, %(start)s) as at, price, currency, reference_price, availability
from steps
where (observed_at <= %(start)s and (next_at is null or next_at > %(start)s))  -- in effect at start
   or (observed_at > %(start)s and (next_at is null                             -- where the line ends
        or prev_availability is null
        or price is distinct from prev_price
        or reference_price is distinct from prev_reference_price
        or availability is distinct from prev_availability
        or currency is distinct from prev_currency))
order by offer_id, observed_at
"""

LOW_30D_SQL = f"""
with obs as ({_OBSERVATIONS}),
lows as (
    -- RANGE frame: rows observed at the same instant are peers and get the same low
    select distinct observed_at, currency,
           min(price) over (partition by currency order by observed_at
                            range between interval '30 days' preceding and current row) as low
    from obs
    where price is not null
),
marked as (
    select observed_at, currency, low,
           lag(low) over w          as prev_low,
           lead(observed_at) over w as next_at
    from lows
    window w as (partition by currency order by observed_at)
)
select greatest(observed_at, %(start)s) as at, currency, low
from marked
where (observed_at <= %(start)s and (next_at is null or next_at > %(start)s))
   or (observed_at > %(start)s and (next_at is null or low is distinct from prev_low))
order by currency, observed_at
"""

BUCKET_CHANGES_SQL = """
select offer_id, computed_at, bucket, previous_bucket, score
from (
    select offer_id, computed_at, bucket, score,
           lag(bucket) over (partition by offer_id order by computed_at, id) as previous_bucket
    from public.offer_risk_score_history
    where offer_id = any(%(offer_ids)s::bigint[]) and computed_at <= %(end)s
) r
where computed_at > %(start)s and bucket is distinct from previous_bucket
order by computed_at, offer_id
"""


def parse_target(raw: str) -> tuple[str, str]:
    """("offer", "42") or ("gtin", "7891000100103") from what the user typed.

    8, 12, 13 or 14 digits are a GTIN (its check digit must be right); other digit strings are
    an offer id. `offer:N` / `gtin:N` force the reading (an offer id with 8+ digits)."""
    text = raw.strip()
    kind, sep, rest = text.partition(":")
    forced = kind.lower() if sep and kind.lower() in ("offer", "gtin") else None
    if forced:
        text = rest.strip()
    digits = "".join(ch for ch in text if ch not in " -") if forced != "offer" else text
    if not digits.isdigit():
        raise ValueError(f"TARGET must be an offer id or a GTIN (8, 12, 13 or 14 digits), got {raw!r}")
    if forced == "gtin" or (forced is None and len(digits) in (8, 12, 13, 14)):
        try:
            normalize_gtin(digits)
        except ValueError as exc:
            hint = f" (for offer id {int(digits)} write offer:{int(digits)})" if forced is None else ""
            raise ValueError(f"invalid GTIN: {exc}{hint}") from None
        return "gtin", digits
    if int(digits) <= 0 or int(digits) > 2**63 - 1:
        raise ValueError(f"offer id must be a positive integer, got {raw!r}")
    return "offer", str(int(digits))


def resolve_target(conn: psycopg.Connection, raw: str) -> ChartTarget:
    """The product and offers for `raw`; ValueError (one line) for an unknown offer or GTIN."""
    kind, value = parse_target(raw)
    with conn.cursor(row_factory=dict_row) as cur:
        if kind == "offer":
            row = cur.execute(OFFER_SQL, {"offer_id": int(value)}).fetchone()
            if row is None:
                raise ValueError(f"unknown offer id: {value}")
            return ChartTarget("offer", value, row["product"], row["gtin"], ((row["id"], row["shop"]),))
        product = cur.execute(PRODUCT_SQL, {"gtin": normalize_gtin(value)}).fetchone()
        if product is None:
            raise ValueError(f"unknown GTIN: {value}")
        offers = cur.execute(PRODUCT_OFFERS_SQL, {"product_id": product["id"]}).fetchall()
    if not offers:
        raise ValueError(f"GTIN {value} has no offers")
    return ChartTarget("gtin", value, product["name"], product["gtin"],
                       tuple((r["id"], r["shop"]) for r in offers))


def window(days: int, end: datetime | None = None) -> tuple[datetime, datetime]:
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"--days must be between 1 and {MAX_DAYS}, got {days}")
    end = (end or datetime.now(UTC))
    if end.tzinfo is None:
        raise ValueError("the end of the window must be timezone-aware (UTC)")
    end = end.astimezone(UTC)
    return end - timedelta(days=days), end


def series_params(offer_ids: Sequence[int], start: datetime, end: datetime) -> dict:
    return {"offer_ids": [int(i) for i in offer_ids], "start": start, "end": end,
            "lookback": start - LOW_WINDOW}


def load_chart_data(conn: psycopg.Connection, target: ChartTarget, *, days: int = DEFAULT_DAYS,
                    end: datetime | None = None) -> ChartData:
    """The chart's series over the `days` up to `end` (default now); ValueError when the window
    has no accepted observation of any of the target's offers."""
    start, end = window(days, end)
    params = series_params([oid for oid, _ in target.offers], start, end)
    with conn.cursor() as cur:
        steps = cur.execute(SERIES_SQL, params).fetchall()
        lows = cur.execute(LOW_30D_SQL, params).fetchall()
        flips = cur.execute(BUCKET_CHANGES_SQL, params).fetchall()

    what = (f"offer {target.label}" if target.kind == "offer"
            else f"GTIN {target.label} ({len(target.offers)} offer(s))")
    if not steps:
        raise ValueError(f"no price history for {what} in the last {days} days "
                         f"(to {end:%Y-%m-%d %H:%M} UTC); try a larger --days")
    currencies = sorted({r[3] for r in steps})
    if len(currencies) > 1:
        raise ValueError(f"{what} is priced in several currencies ({', '.join(currencies)}) in the window; "
                         "chart one offer at a time")
    currency = currencies[0]

    by_offer: dict[int, list[PricePoint]] = {}
    for offer_id, at, price, _currency, reference_price, availability in steps:
        by_offer.setdefault(offer_id, []).append(PricePoint(at, price, reference_price, availability))
    names = dict(target.offers)
    shop_counts: dict[str, int] = {}
    for oid in by_offer:
        shop_counts[names[oid]] = shop_counts.get(names[oid], 0) + 1
    series = tuple(
        ShopSeries(oid, names[oid] if shop_counts[names[oid]] == 1 else f"{names[oid]} (#{oid})",
                   tuple(by_offer[oid]))
        for oid, _ in target.offers if oid in by_offer
    )
    return ChartData(
        product=target.product,
        gtin=target.gtin,
        currency=currency,
        start=start,
        end=end,
        series=series,
        low_30d=tuple(LowPoint(at, low) for at, cur_, low in lows if cur_ == currency),
        bucket_changes=tuple(BucketChange(oid, at, bucket, prev, score)
                             for oid, at, bucket, prev, score in flips if oid in by_offer),
    )
