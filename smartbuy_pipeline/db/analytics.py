"""Set-based maintenance of the analysts' tables in schema `analytics` (migration 0008).

Every refresh is one SQL statement over all the offers concerned (no loop per offer), idempotent
(re-running it for the same window gives the same rows; price_changes and price_daily rows whose
values did not change are not rewritten) and reads only `status = 'accepted'` observations. The
caller owns the transaction.

- `refresh_price_changes`: after each tracking run, for the run's window and the offers it observed.
- `refresh_price_daily`: once per UTC day (a daily partition), after the day has ended.
- `refresh_offer_price_stats`: after each tracking run, for the offers it observed (or all active
  offers).

Definitions (lows, medians, time-weighted in-stock share, market median) are in docs/analytics.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg

# ------------------------------------------------------------------------------- price_changes
# An observation is a change when price, reference price, availability or currency differ from
# the offer's previous accepted observation (IS DISTINCT FROM: NULL = "no price shown" counts),
# or when it is the offer's first accepted observation. The previous observation of the first one
# in the window may lie before `start` (seed: one backward PK probe per offer); the first
# observation at or after `end` (tail) is re-evaluated too, so a late or backfilled window leaves
# the following change row right. Window rows that are no longer changes are deleted; rows whose
# values did not change are not rewritten.
REFRESH_PRICE_CHANGES_SQL = """
with win as materialized (
    select h.offer_id, h.observed_at, h.price, h.currency, h.reference_price, h.availability, 1 as part
    from public.price_history h
    where h.status = 'accepted'
      and h.observed_at >= %(start)s and h.observed_at < %(end)s
      and (%(offer_ids)s::bigint[] is null or h.offer_id = any(%(offer_ids)s::bigint[]))
),
touched as (
    select distinct offer_id from win
),
seed as (
    select t.offer_id, p.observed_at, p.price, p.currency, p.reference_price, p.availability, 0 as part
    from touched t
    cross join lateral (
        select h.observed_at, h.price, h.currency, h.reference_price, h.availability
        from public.price_history h
        where h.offer_id = t.offer_id and h.status = 'accepted' and h.observed_at < %(start)s
        order by h.observed_at desc
        limit 1
    ) p
),
tail as (
    select t.offer_id, p.observed_at, p.price, p.currency, p.reference_price, p.availability, 2 as part
    from touched t
    cross join lateral (
        select h.observed_at, h.price, h.currency, h.reference_price, h.availability
        from public.price_history h
        where h.offer_id = t.offer_id and h.status = 'accepted' and h.observed_at >= %(end)s
        order by h.observed_at
        limit 1
    ) p
),
seq as (
    select s.offer_id, s.observed_at, s.price, s.currency, s.reference_price, s.availability, s.part,
           lag(s.observed_at) over w as previous_observed_at,
           lag(s.price) over w as previous_price,
           lag(s.currency) over w as previous_currency,
           lag(s.reference_price) over w as previous_reference_price,
           lag(s.availability) over w as previous_availability
    from (select * from seed union all select * from win union all select * from tail) s
    window w as (partition by s.offer_id order by s.observed_at)
),
calc as materialized (
    select q.*,
           (q.previous_observed_at is null
            or q.price is distinct from q.previous_price
            or q.reference_price is distinct from q.previous_reference_price
            or q.availability is distinct from q.previous_availability
            or q.currency is distinct from q.previous_currency) as is_change
    from seq q
    where q.part > 0
),
removed as (
    delete from analytics.price_changes c
    where ((c.changed_at >= %(start)s and c.changed_at < %(end)s
            and (%(offer_ids)s::bigint[] is null or c.offer_id = any(%(offer_ids)s::bigint[])))
           or (c.offer_id, c.changed_at) in (select k.offer_id, k.observed_at from calc k where k.part = 2))
      and not exists (
          select 1 from calc k where k.is_change and k.offer_id = c.offer_id and k.observed_at = c.changed_at)
    returning 1
),
written as (
    insert into analytics.price_changes as c
        (offer_id, changed_at, price, previous_price, currency, reference_price, previous_reference_price,
         availability, previous_availability)
    select k.offer_id, k.observed_at, k.price, k.previous_price, k.currency, k.reference_price,
           k.previous_reference_price, k.availability, k.previous_availability
    from calc k
    where k.is_change
    on conflict (offer_id, changed_at) do update set
        price = excluded.price, previous_price = excluded.previous_price, currency = excluded.currency,
        reference_price = excluded.reference_price,
        previous_reference_price = excluded.previous_reference_price,
        availability = excluded.availability, previous_availability = excluded.previous_availability
    where (c.price, c.previous_price, c.currency, c.reference_price, c.previous_reference_price,
           c.availability, c.previous_availability)
          is distinct from
          (excluded.price, excluded.previous_price, excluded.currency, excluded.reference_price,
           excluded.previous_reference_price, excluded.availability, excluded.previous_availability)
    returning 1
)
select (select count(*) from calc where is_change and part = 1) as changes_in_window,
       (select count(*) from written) as written,
       (select count(*) from removed) as removed
"""

# --------------------------------------------------------------------------------- price_daily
# One row per offer with at least one accepted observation in the UTC day [day_start, day_end).
# OHLC over the priced observations in the currency of the day's last observation. in_stock_share
# is time-weighted: each observation's state holds until the offer's next observation (or the end
# of the day); the state at midnight is the one of the last observation before the day (seed), and
# before the offer's first-ever observation the time is unknown and left out of the denominator.
REFRESH_PRICE_DAILY_SQL = """
with obs as materialized (
    select h.offer_id, h.observed_at, h.price, h.currency, h.availability, 1 as part
    from public.price_history h
    where h.status = 'accepted'
      and h.observed_at >= %(day_start)s and h.observed_at < %(day_end)s
      and (%(offer_ids)s::bigint[] is null or h.offer_id = any(%(offer_ids)s::bigint[]))
),
touched as (
    select distinct offer_id from obs
),
seed as (
    select t.offer_id, p.observed_at, p.price, p.currency, p.availability, 0 as part
    from touched t
    cross join lateral (
        select h.observed_at, h.price, h.currency, h.availability
        from public.price_history h
        where h.offer_id = t.offer_id and h.status = 'accepted' and h.observed_at < %(day_start)s
        order by h.observed_at desc
        limit 1
    ) p
),
seg as (
    select s.*,
           extract(epoch from
               coalesce(lead(s.observed_at) over (partition by s.offer_id order by s.observed_at),
                        %(day_end)s::timestamptz)
               - greatest(s.observed_at, %(day_start)s::timestamptz)) as seconds
    from (select * from seed union all select * from obs) s
),
day_currency as (
    select distinct on (offer_id) offer_id, currency
    from obs
    order by offer_id, observed_at desc
),
agg as (
    select g.offer_id, dc.currency,
           (array_agg(g.price order by g.observed_at)
                filter (where g.part = 1 and g.price is not null and g.currency = dc.currency))[1] as open,
           (array_agg(g.price order by g.observed_at desc)
                filter (where g.part = 1 and g.price is not null and g.currency = dc.currency))[1] as close,
           min(g.price) filter (where g.part = 1 and g.currency = dc.currency) as min,
           max(g.price) filter (where g.part = 1 and g.currency = dc.currency) as max,
           count(*) filter (where g.part = 1) as observations,
           round(coalesce(sum(g.seconds) filter (where g.availability = 'in_stock'), 0)
                 / nullif(sum(g.seconds), 0), 4) as in_stock_share
    from seg g
    join day_currency dc on dc.offer_id = g.offer_id
    group by g.offer_id, dc.currency
),
day_rows as materialized (
    select a.offer_id, %(day)s::date as day, o.product_id, o.shop_id, a.currency, a.open, a.close,
           a.min, a.max, a.observations::int as observations, coalesce(a.in_stock_share, 0) as in_stock_share
    from agg a
    join public.offers o on o.id = a.offer_id
),
written as (
    insert into analytics.price_daily as d
        (offer_id, day, product_id, shop_id, currency, open, close, min, max, observations, in_stock_share)
    select * from day_rows
    on conflict (offer_id, day) do update set
        product_id = excluded.product_id, shop_id = excluded.shop_id, currency = excluded.currency,
        open = excluded.open, close = excluded.close, min = excluded.min, max = excluded.max,
        observations = excluded.observations, in_stock_share = excluded.in_stock_share
    where (d.product_id, d.shop_id, d.currency, d.open, d.close, d.min, d.max, d.observations,
           d.in_stock_share)
          is distinct from
          (excluded.product_id, excluded.shop_id, excluded.currency, excluded.open, excluded.close,
           excluded.min, excluded.max, excluded.observations, excluded.in_stock_share)
    returning 1
)
select (select count(*) from day_rows) as day_rows, (select count(*) from written) as written
"""

# --------------------------------------------------------------------------- offer_price_stats
# Targets: active offers (all, or those given) with an accepted observation at or before `now`.
# Current = the latest accepted observation; lows/medians/percentiles over the priced accepted
# observations in the current currency, windows (now - N days, now]. Medians are exact: the mean
# of the two middle values (percentile_disc ascending + descending, / 2), rounded to the cent;
# p10/p90 are nearest-rank (percentile_disc: an actually observed price). Market median: the
# median over the OTHER shops (shop_id <> this offer's) of each shop's lowest current price of the
# same product in the same currency, from active offers whose latest observation has a price.
# Stats rows of target offers that are inactive or have no observation are deleted.
REFRESH_OFFER_PRICE_STATS_SQL = """
with targets as materialized (
    select o.id as offer_id, o.product_id, o.shop_id
    from public.offers o
    where o.active and (%(offer_ids)s::bigint[] is null or o.id = any(%(offer_ids)s::bigint[]))
),
latest as materialized (
    select t.offer_id, t.product_id, t.shop_id, l.observed_at, l.price, l.currency
    from targets t
    cross join lateral (
        select h.observed_at, h.price, h.currency
        from public.price_history h
        where h.offer_id = t.offer_id and h.status = 'accepted' and h.observed_at <= %(now)s
        order by h.observed_at desc
        limit 1
    ) l
),
agg as (
    select l.offer_id,
           min(h.price) filter (where h.currency = l.currency and h.observed_at > %(since_30d)s) as low_30d,
           percentile_disc(0.5) within group (order by h.price)
               filter (where h.currency = l.currency and h.observed_at > %(since_30d)s) as med_30d_lo,
           percentile_disc(0.5) within group (order by h.price desc)
               filter (where h.currency = l.currency and h.observed_at > %(since_30d)s) as med_30d_hi,
           min(h.price) filter (where h.currency = l.currency and h.observed_at > %(since_90d)s) as low_90d,
           percentile_disc(0.5) within group (order by h.price)
               filter (where h.currency = l.currency and h.observed_at > %(since_90d)s) as med_90d_lo,
           percentile_disc(0.5) within group (order by h.price desc)
               filter (where h.currency = l.currency and h.observed_at > %(since_90d)s) as med_90d_hi,
           percentile_disc(0.1) within group (order by h.price)
               filter (where h.currency = l.currency and h.observed_at > %(since_90d)s) as typical_low,
           percentile_disc(0.9) within group (order by h.price)
               filter (where h.currency = l.currency and h.observed_at > %(since_90d)s) as typical_high,
           min(h.price) filter (where h.currency = l.currency) as low_all_time,
           percentile_disc(0.5) within group (order by h.price)
               filter (where h.currency = l.currency) as med_all_lo,
           percentile_disc(0.5) within group (order by h.price desc)
               filter (where h.currency = l.currency) as med_all_hi,
           count(*) filter (where h.observed_at > %(since_90d)s) as observations_90d,
           min(h.observed_at) as first_observed_at
    from latest l
    join public.price_history h on h.offer_id = l.offer_id
    where h.status = 'accepted' and h.observed_at <= %(now)s
    group by l.offer_id
),
shop_prices as (
    -- each shop's lowest current price per product and currency, for the products concerned
    select o.product_id, o.shop_id, c.currency, min(c.price) as price
    from public.offers o
    cross join lateral (
        select h.price, h.currency
        from public.price_history h
        where h.offer_id = o.id and h.status = 'accepted' and h.observed_at <= %(now)s
        order by h.observed_at desc
        limit 1
    ) c
    where o.active
      and o.product_id in (select product_id from latest)
      and c.price is not null
    group by o.product_id, o.shop_id, c.currency
),
market as (
    select l.offer_id,
           round((percentile_disc(0.5) within group (order by s.price)
                  + percentile_disc(0.5) within group (order by s.price desc)) / 2, 2) as market_median,
           count(*) as market_shops
    from latest l
    join shop_prices s on s.product_id = l.product_id and s.currency = l.currency and s.shop_id <> l.shop_id
    group by l.offer_id
),
stat_rows as materialized (
    select l.offer_id, l.product_id, l.shop_id, l.currency, l.price as current_price,
           a.low_30d, round((a.med_30d_lo + a.med_30d_hi) / 2, 2) as median_30d,
           a.low_90d, round((a.med_90d_lo + a.med_90d_hi) / 2, 2) as median_90d,
           a.low_all_time, round((a.med_all_lo + a.med_all_hi) / 2, 2) as median_all_time,
           a.typical_low, a.typical_high,
           m.market_median, coalesce(m.market_shops, 0)::int as market_shops,
           a.observations_90d::int as observations_90d,
           a.first_observed_at, l.observed_at as last_observed_at,
           %(now)s::timestamptz as refreshed_at
    from latest l
    join agg a on a.offer_id = l.offer_id
    left join market m on m.offer_id = l.offer_id
),
removed as (
    delete from analytics.offer_price_stats s
    where (%(offer_ids)s::bigint[] is null or s.offer_id = any(%(offer_ids)s::bigint[]))
      and not exists (select 1 from latest l where l.offer_id = s.offer_id)
    returning 1
),
written as (
    insert into analytics.offer_price_stats as s
        (offer_id, product_id, shop_id, currency, current_price, low_30d, median_30d, low_90d, median_90d,
         low_all_time, median_all_time, typical_low, typical_high, market_median, market_shops,
         observations_90d, first_observed_at, last_observed_at, refreshed_at)
    select * from stat_rows
    on conflict (offer_id) do update set
        product_id = excluded.product_id, shop_id = excluded.shop_id, currency = excluded.currency,
        current_price = excluded.current_price, low_30d = excluded.low_30d, median_30d = excluded.median_30d,
        low_90d = excluded.low_90d, median_90d = excluded.median_90d, low_all_time = excluded.low_all_time,
        median_all_time = excluded.median_all_time, typical_low = excluded.typical_low,
        typical_high = excluded.typical_high, market_median = excluded.market_median,
        market_shops = excluded.market_shops, observations_90d = excluded.observations_90d,
        first_observed_at = excluded.first_observed_at, last_observed_at = excluded.last_observed_at,
        refreshed_at = excluded.refreshed_at
    returning 1
)
select (select count(*) from written) as written, (select count(*) from removed) as removed
"""


def _aware(name: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (got naive {value!r})")
    return value


def _ids(offer_ids: Sequence[int] | None) -> list[int] | None:
    return None if offer_ids is None else [int(i) for i in offer_ids]


def _one(conn: psycopg.Connection, query: str, params: dict[str, Any]) -> tuple:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row


def refresh_price_changes(conn: psycopg.Connection, start: datetime, end: datetime,
                          offer_ids: Sequence[int] | None = None) -> int:
    """Recompute analytics.price_changes for accepted observations in [start, end).

    Returns the number of change rows in the window (the same on every re-run).
    """
    start, end = _aware("start", start), _aware("end", end)
    if end <= start:
        raise ValueError(f"empty window: end {end} is not after start {start}")
    row = _one(conn, REFRESH_PRICE_CHANGES_SQL, {"start": start, "end": end, "offer_ids": _ids(offer_ids)})
    return int(row[0])


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """[start, end) of the UTC calendar day (the unit of price_daily and of the partitions)."""
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


def refresh_price_daily(conn: psycopg.Connection, day: date, offer_ids: Sequence[int] | None = None) -> int:
    """Upsert analytics.price_daily for one UTC day; returns the number of rows for that day."""
    if isinstance(day, datetime):
        raise TypeError("day must be a date, not a datetime")
    day_start, day_end = day_bounds(day)
    row = _one(conn, REFRESH_PRICE_DAILY_SQL, {
        "day": day, "day_start": day_start, "day_end": day_end, "offer_ids": _ids(offer_ids)})
    return int(row[0])


def refresh_offer_price_stats(conn: psycopg.Connection, *, now: datetime,
                              offer_ids: Sequence[int] | None = None) -> int:
    """Upsert analytics.offer_price_stats as of `now` (offer_ids None = all active offers).

    Returns the number of stats rows written.
    """
    now = _aware("now", now)
    row = _one(conn, REFRESH_OFFER_PRICE_STATS_SQL, {
        "now": now, "since_30d": now - timedelta(days=30), "since_90d": now - timedelta(days=90),
        "offer_ids": _ids(offer_ids)})
    return int(row[0])
