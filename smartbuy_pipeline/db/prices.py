"""The SQL of hourly price tracking: which offers are due, and the batch write path.

A batch is written in ONE transaction: the batch COPYed once (text COPY) into the temporary table
`tracking_batch`, then on the server the observations inserted into `price_history` (INSERT ...
SELECT), every checked offer's narrow `offer_checks` row updated (check time, validators,
failures and back-off; one `UPDATE ... FROM` per kind of outcome present), the `offers` row
updated only where the outcome changes the offer's content (price, availability, ...: the
`changed` flag, from the state the batch read), feed validators stored, and the run's checkpoint
moved forward. A crash loses at most the batch in flight; a re-run skips what is committed
because those offers are no longer due in the window, and a replayed batch fails as a whole on
the (offer_id, observed_at) key instead of duplicating.

Cost (bench/bench_price_tracking.py write, per row, steady state, 2-core VM, 100k offers): staging
COPY ~4-5 us (with the Python row building, ~0.8 us), INSERT ... SELECT ~4 us, offer_checks UPDATE
~2 us (HOT, found by address: CHECK_SUCCESS_BY_ROW), the changed offers ~0.8 us amortized,
progress ~0.35 us, commit ~1 us; a raw COPY of the same rows ~7-8 us (docs/design.md).
"""

from __future__ import annotations

import json
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg
from psycopg.rows import dict_row

from smartbuy_pipeline.acquisition.politeness import ShopPolicy
from smartbuy_pipeline.acquisition.sources import Acquired, FeedState, NotModified, OfferTarget, ShopTarget
from smartbuy_pipeline.domain.offer_state import OfferState, changes_offer
from smartbuy_pipeline.domain.types import (
    Availability,
    FetchFailure,
    Money,
    Observation,
    ObservationStatus,
    PriceKind,
    SourceKind,
)

PRIORITY = "priority"  # offers referenced by active alerts or wishes, first
REST = "rest"
DONE = "done"
PHASES = (PRIORITY, REST)

# After this many consecutive failures an offer is unhealthy and backed off: 2^(n - N) hours,
# capped at 24 hours, so a dead page stops costing a request every hour.
UNHEALTHY_AFTER_FAILURES = 5
MAX_BACKOFF = timedelta(hours=24)

# Offers whose product or offer id an active alert or wish references (the "priority" phase).
_PRIORITY_PREDICATE = """
    (exists (select 1 from alerts a where a.active and (a.offer_id = o.id or a.product_id = o.product_id))
     or exists (select 1 from wishes w where w.active and w.product_id = o.product_id))
"""

# Keyset page of due offers in one shard. `cutoff` is the window's end: an offer is due when its
# last check is at least one check interval (the offer's, else the shop's) before it.
DUE_OFFERS_SQL = """
select o.id, o.shop_id, o.source_kind, o.locator, o.price_kind, c.etag, c.last_modified,
       o.price, o.currency, o.quarantined_price, o.reference_price, o.freight, o.availability, c.ctid
from offers o
join shops s on s.id = o.shop_id
join offer_checks c on c.offer_id = o.id
where o.active and s.active
  and o.id > %(after)s
  and o.id %% %(shard_count)s = %(shard)s
  and (c.last_checked_at is null
       or c.last_checked_at <= %(cutoff)s - coalesce(o.check_interval, s.check_interval))
  and (c.unhealthy_until is null or c.unhealthy_until <= %(now)s)
  and ({phase_predicate})
order by o.id
limit %(limit)s
"""

DUE_COUNT_SQL = f"""
select count(*) filter (where {_PRIORITY_PREDICATE}) as priority, count(*) as total
from offers o
join shops s on s.id = o.shop_id
join offer_checks c on c.offer_id = o.id
where o.active and s.active
  and o.id %% %(shard_count)s = %(shard)s
  and (c.last_checked_at is null
       or c.last_checked_at <= %(cutoff)s - coalesce(o.check_interval, s.check_interval))
  and (c.unhealthy_until is null or c.unhealthy_until <= %(now)s)
"""

SHOPS_SQL = """
select id, currency, locale, price_kind, max_concurrent_requests, min_interval_ms, allow_private_network,
       feed_url, api_base_url, feed_etag, feed_last_modified
from shops where id = any(%(ids)s)
"""

ENSURE_PARTITIONS_SQL = "select public.fn_ensure_price_history_partitions(%(day)s::date - 31, 3)"

PRICE_HISTORY_COLUMNS = (
    "offer_id", "observed_at", "price", "currency", "reference_price", "freight", "availability",
    "status", "source_kind", "details", "run_key",
)  # what the raw-COPY baseline of bench/bench_price_tracking.py writes

# The batch is COPYed once into this staging table; observations and offer state are then
# written from it on the server (INSERT ... SELECT and UPDATE ... FROM), so each row crosses
# the wire once. (A second COPY straight into price_history measured no faster: its text
# parsing costs the server more than INSERT ... SELECT from already-typed rows, and the client
# pays for two streams.)
CREATE_BATCH_STAGING = """
create temporary table if not exists tracking_batch (
    offer_id bigint not null,
    outcome text not null,             -- accepted | quarantined | not_modified | failure
    changed boolean not null,          -- the outcome changes the offer's row (domain.offer_state)
    check_row tid,                     -- where the offer's offer_checks row was when the batch read it
    observed_at timestamptz not null,
    price numeric(12,2), reference_price numeric(12,2), freight numeric(12,2), currency char(3),
    availability text, source_kind text, details jsonb, etag text, last_modified text, failure_reason text
) on commit delete rows
"""
BATCH_COLUMNS = (
    "offer_id", "outcome", "changed", "check_row", "observed_at", "price", "reference_price", "freight", "currency",
    "availability", "source_kind", "details", "etag", "last_modified", "failure_reason",
)
COPY_BATCH = f"copy tracking_batch ({', '.join(BATCH_COLUMNS)}) from stdin"

INSERT_OBSERVATIONS = """
insert into price_history (offer_id, observed_at, price, currency, reference_price, freight, availability,
                           status, source_kind, details, run_key)
select offer_id, observed_at, price, currency, reference_price, freight, availability,
       outcome, source_kind, details, %(run_key)s
from tracking_batch
where outcome in ('accepted', 'quarantined')
"""

# Every check updates the offer's narrow `offer_checks` row (0015); `offers` only for the outcomes
# that change its content (`changed`, decided by domain.offer_state.changes_offer from the state
# the batch read; True when unknown). Statements run only for the outcomes present in the batch.
# The offers statements set updated_at = now() themselves, so the WHEN clause of the
# offers_set_updated_at trigger skips the PL/pgSQL call. The rules:
# - accepted: the new current state; an out-of-stock page without a price keeps the last price
#   (and its reference price); last_changed_at moves when price, availability or (with a price)
#   the reference price changed; a pending quarantined price is dropped;
# - quarantined: the published price stays; the suspicious one waits for confirmation;
# - not_modified: content unchanged (304): only the check time and validators move;
# - failure: never a price change, validators kept; count it, and back off after repeated
#   failures (2^(n - N) hours, capped).
#
# A successful check updates its row by the row's address as the batch read it (`check_row`, the
# ctid): a TID scan instead of a primary-key descent, ~0.7 us of the write path's ~14 us a row.
# The offer id is checked too, so a stale address (the row moved: another update, VACUUM FULL)
# never touches another offer's row (`+ 0` keeps that check a filter: as an index condition the
# planner would rather descend the primary key on small tables); when fewer rows than successes
# were updated, the keyed statement then updates the rest (the rows this check has not stamped).
_CHECK_SUCCESS_SET = """
    etag = u.etag, last_modified = u.last_modified,
    last_checked_at = u.observed_at, last_success_at = u.observed_at,
    consecutive_failures = 0, unhealthy_until = null"""
CHECK_SUCCESS_BY_ROW = f"""
update offer_checks c set{_CHECK_SUCCESS_SET}
from tracking_batch u
where c.ctid = u.check_row and c.offer_id + 0 = u.offer_id and u.outcome <> 'failure'
"""
CHECK_SUCCESS = f"""
update offer_checks c set{_CHECK_SUCCESS_SET}
from tracking_batch u
where c.offer_id = u.offer_id and u.outcome <> 'failure'
  and c.last_checked_at is distinct from u.observed_at
"""
CHECK_FAILURE = """
update offer_checks c set
    last_checked_at = u.observed_at,
    consecutive_failures = c.consecutive_failures + 1,
    last_failure_reason = u.failure_reason,
    unhealthy_until = case
        when c.consecutive_failures + 1 >= %(unhealthy_after)s
        then u.observed_at + least(%(max_backoff)s::interval,
                                   interval '1 hour' * power(2, c.consecutive_failures + 1 - %(unhealthy_after)s))
        else c.unhealthy_until end
from tracking_batch u
where c.offer_id = u.offer_id and u.outcome = 'failure'
"""
APPLY_ACCEPTED = """
update offers o set
    price = coalesce(u.price, o.price),
    reference_price = case when u.price is not null then u.reference_price else o.reference_price end,
    freight = coalesce(u.freight, o.freight),
    currency = coalesce(u.currency, o.currency),
    availability = u.availability,
    last_changed_at = case
        when coalesce(u.price, o.price) is distinct from o.price
             or u.availability is distinct from o.availability
             or (u.price is not null and u.reference_price is distinct from o.reference_price)
        then u.observed_at else o.last_changed_at end,
    quarantined_price = null,
    updated_at = now()
from tracking_batch u
where o.id = u.offer_id and u.outcome = 'accepted' and u.changed
"""
APPLY_QUARANTINED = """
update offers o set
    currency = coalesce(u.currency, o.currency),
    quarantined_price = u.price,
    updated_at = now()
from tracking_batch u
where o.id = u.offer_id and u.outcome = 'quarantined' and u.changed
"""

# Every join of the write path is a batch (about a thousand rows) against a big keyed table, and
# the right plan is always a nested loop driven by the batch (key or TID lookups). The planner
# cannot know the staging table's size (a temporary table without statistics: it guesses a few
# hundred rows whatever the batch) and, below ~50k offers, chose hash joins that scanned the whole
# offer_checks/offers table for every batch (6 ms a batch of 10 rows at 20k offers). So the batch's
# transaction turns hash and merge joins off (SET LOCAL: until the caller commits).
NESTED_LOOPS_ONLY = "select set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)"

UPDATE_FEED_STATE = """
update shops s set feed_etag = v.etag, feed_last_modified = v.last_modified
from (select unnest(%(ids)s::bigint[]) as id, unnest(%(etags)s::text[]) as etag,
             unnest(%(lms)s::text[]) as last_modified) v
where s.id = v.id
"""

UPSERT_PROGRESS = """
insert into price_tracking_progress as p
    (partition_key, shard, shard_count, phase, last_offer_id, batches, offers_done, counts)
values (%(partition_key)s, %(shard)s, %(shard_count)s, %(phase)s, %(last_offer_id)s, 1, %(offers)s, %(counts)s)
on conflict (partition_key, shard) do update set
    phase = excluded.phase, last_offer_id = excluded.last_offer_id, batches = p.batches + 1,
    offers_done = p.offers_done + excluded.offers_done,
    counts = (select coalesce(jsonb_object_agg(k, coalesce((p.counts ->> k)::int, 0)
                                                  + coalesce((excluded.counts ->> k)::int, 0)), '{}'::jsonb)
              from (select jsonb_object_keys(p.counts) union select jsonb_object_keys(excluded.counts)) keys(k)),
    updated_at = now()
"""

READ_PROGRESS = """
select phase, last_offer_id, batches, offers_done, counts, completed_at
from price_tracking_progress where partition_key = %(partition_key)s and shard = %(shard)s
"""

START_PROGRESS = """
insert into price_tracking_progress (partition_key, shard, shard_count) values (%(partition_key)s, %(shard)s, %(shard_count)s)
on conflict (partition_key, shard) do update set completed_at = null, updated_at = now()
"""

ADVANCE_PHASE = """
update price_tracking_progress set phase = %(phase)s, last_offer_id = 0, updated_at = now()
where partition_key = %(partition_key)s and shard = %(shard)s
"""

# One tracking session per shard at a time, whatever launched it (a scheduled run, a single-run
# backfill whose range tags escape Dagster's per-shard run limit, the CLI, a test): a session-level
# advisory lock on the tracker's connection. The server releases it when the connection ends, a
# killed worker's included, so there is no lease to expire and no lock table to clean up. A second
# session waits, then finds the offers the first one checked no longer due: nothing is fetched or
# recorded twice. Keys: (SHARD_LOCK_CLASS, shard number); production always uses SHARD_COUNT shards.
SHARD_LOCK_CLASS = 7_301  # the advisory-lock namespace of price tracking (an arbitrary constant)
TRY_SHARD_LOCK_SQL = "select pg_try_advisory_lock(%(lock_class)s, %(shard)s)"
SHARD_LOCK_SQL = "select pg_advisory_lock(%(lock_class)s, %(shard)s)"
SHARD_LOCK_HOLDER_SQL = """
select l.pid, a.application_name, a.backend_start from pg_locks l left join pg_stat_activity a on a.pid = l.pid
where l.locktype = 'advisory' and l.granted and l.database = (select oid from pg_database where datname = current_database())
  and l.classid = %(lock_class)s and l.objid = %(shard)s and l.objsubid = 2
"""

COMPLETE_PROGRESS = """
update price_tracking_progress set phase = 'done', completed_at = now(), updated_at = now()
where partition_key = %(partition_key)s and shard = %(shard)s
"""


@dataclass(frozen=True)
class ShardWindow:
    """One unit of tracking work: a shard of the catalog, due as of `cutoff`."""

    partition_key: str
    shard: int
    shard_count: int
    cutoff: datetime  # the window's end

    @property
    def keys(self) -> dict:
        return {"partition_key": self.partition_key, "shard": self.shard, "shard_count": self.shard_count}

    def params(self, now: datetime) -> dict:
        return {**self.keys, "cutoff": self.cutoff, "now": now}


@dataclass
class Progress:
    phase: str = PRIORITY
    last_offer_id: int = 0
    batches: int = 0
    offers_done: int = 0
    counts: dict = field(default_factory=dict)
    completed: bool = False


def _money(amount, currency) -> Money | None:
    return Money(amount, currency) if amount is not None and currency else None


def ensure_partitions(conn: psycopg.Connection, day: datetime) -> None:
    conn.execute(ENSURE_PARTITIONS_SQL, {"day": day.date()})


def lock_shard(conn: psycopg.Connection, window: ShardWindow, log: Callable[[str], None]) -> bool:
    """Take the shard's tracking lock for the rest of the session (autocommit connection), waiting
    while another session holds it; True when it had to wait."""
    params = {"lock_class": SHARD_LOCK_CLASS, "shard": window.shard}
    if conn.execute(TRY_SHARD_LOCK_SQL, params).fetchone()[0]:
        return False
    holder = conn.execute(SHARD_LOCK_HOLDER_SQL, params).fetchone()
    who = f"backend pid {holder[0]} ({holder[1] or 'no application name'}, connected {holder[2]:%Y-%m-%d %H:%M:%S})" \
        if holder and holder[2] is not None else "another session"
    log(f"shard {window.shard}/{window.shard_count} is being tracked by {who}; waiting for it to finish")
    conn.execute(SHARD_LOCK_SQL, params)
    return True


def count_due(conn: psycopg.Connection, window: ShardWindow, now: datetime) -> tuple[int, int]:
    row = conn.execute(DUE_COUNT_SQL, window.params(now)).fetchone()
    return int(row[0]), int(row[1])


def start_progress(conn: psycopg.Connection, window: ShardWindow) -> Progress:
    conn.execute(START_PROGRESS, window.keys)
    row = conn.execute(READ_PROGRESS, window.keys).fetchone()
    phase, last_id, batches, done, counts, _ = row
    if phase == DONE:  # a re-run of a finished partition: look again for anything still due
        phase, last_id = PRIORITY, 0
    return Progress(phase, last_id, batches, done, dict(counts))


def advance_phase(conn: psycopg.Connection, window: ShardWindow, phase: str) -> None:
    conn.execute(ADVANCE_PHASE, {**window.keys, "phase": phase})


def complete_progress(conn: psycopg.Connection, window: ShardWindow) -> None:
    conn.execute(COMPLETE_PROGRESS, window.keys)


def due_offers(conn: psycopg.Connection, window: ShardWindow, *, phase: str, after: int, limit: int,
               now: datetime) -> list[OfferTarget]:
    predicate = _PRIORITY_PREDICATE if phase == PRIORITY else f"not {_PRIORITY_PREDICATE}"
    sql = DUE_OFFERS_SQL.replace("{phase_predicate}", predicate)
    rows = conn.execute(sql, {**window.params(now), "after": after, "limit": limit}).fetchall()
    return [
        OfferTarget(
            offer_id=r[0], shop_id=r[1], source_kind=SourceKind(r[2]), locator=r[3],
            price_kind=PriceKind(r[4]) if r[4] else None, etag=r[5], last_modified=r[6],
            last_good_price=_money(r[7], r[8]), quarantined_price=_money(r[9], r[8]),
            state=OfferState(price=r[7], reference_price=r[10], freight=r[11], currency=r[8],
                             availability=r[12], quarantined_price=r[9]),
            check_row=r[13],
        )
        for r in rows
    ]


def load_shops(conn: psycopg.Connection, shop_ids: Iterable[int]) -> dict[int, ShopTarget]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(SHOPS_SQL, {"ids": sorted(set(shop_ids))}).fetchall()
    return {
        r["id"]: ShopTarget(
            policy=ShopPolicy(r["id"], r["max_concurrent_requests"], r["min_interval_ms"] / 1000,
                              r["allow_private_network"]),
            currency=r["currency"], locale=r["locale"],
            price_kind=PriceKind(r["price_kind"]) if r["price_kind"] else None,
            feed_url=r["feed_url"], api_base_url=r["api_base_url"], feed_etag=r["feed_etag"],
            feed_last_modified=r["feed_last_modified"],
        )
        for r in rows
    }


def outcome_label(a: Acquired) -> str:
    o = a.outcome
    if isinstance(o, Observation):
        return "quarantined" if o.status is ObservationStatus.QUARANTINED else "accepted"
    if isinstance(o, NotModified):
        return "not_modified"
    return "failure"


@dataclass(frozen=True)
class BatchResult:
    observations: int
    counts: Counter
    offers_changed: int = 0  # observations that changed the offer's row
    checks_by_key: int = 0  # successful checks whose offer_checks row was not where the batch read it


def record_batch(
    conn: psycopg.Connection,
    results: Sequence[Acquired],
    *,
    window: ShardWindow,
    phase: str,
    last_offer_id: int,
    currency_of: Mapping[int, str],
    current: Mapping[int, OfferState] | None = None,
    check_rows: Mapping[int, str] | None = None,
    feed_states: Sequence[FeedState] = (),
) -> BatchResult:
    """Write one batch in the caller's transaction (set-based: one COPY, then one statement per
    table and outcome present).

    `currency_of` maps offer id to its shop's currency: an out-of-stock observation without any
    amount still records the currency it was expected in. `current` maps offer id to the state
    the batch read (OfferTarget.state): observations that change nothing skip the `offers` row;
    offers missing from it are written. `check_rows` maps offer id to its offer_checks row's ctid
    as the batch read it (OfferTarget.check_row): a hint, see CHECK_SUCCESS_BY_ROW."""
    accepted = quarantined = not_modified = failed = changed = 0
    failed_by: Counter = Counter()
    state_of = (current or {}).get
    row_of = (check_rows or {}).get
    with conn.cursor() as cur, conn.cursor() as by_row:
        if conn not in _STAGED:
            cur.execute(CREATE_BATCH_STAGING)
        with cur.copy(COPY_BATCH) as copy:
            write = copy.write_row
            for a in results:
                o = a.outcome
                kind = type(o)
                if kind is Observation or isinstance(o, Observation):
                    if o.status is ObservationStatus.QUARANTINED:
                        label = "quarantined"
                        quarantined += 1
                    else:
                        label = "accepted"
                        accepted += 1
                    price, reference, freight = o.price, o.reference_price, o.freight
                    money = price or reference or freight
                    currency = money.currency if money is not None else currency_of[o.offer_id]
                    change = changes_offer(state_of(o.offer_id), o, currency)
                    changed += change
                    write((o.offer_id, label, change, row_of(o.offer_id), o.observed_at,
                           price.amount if price is not None else None,
                           reference.amount if reference is not None else None,
                           freight.amount if freight is not None else None,
                           currency, _VALUE[o.availability], _VALUE[o.source_kind], _details_json(o.details),
                           a.etag, a.last_modified, None))
                elif kind is NotModified or isinstance(o, NotModified):
                    not_modified += 1
                    write((o.offer_id, "not_modified", False, row_of(o.offer_id), o.observed_at,
                           None, None, None, None, None, None, None, a.etag, a.last_modified, None))
                else:
                    if not isinstance(o, FetchFailure):
                        raise TypeError(f"unexpected outcome {o!r}")
                    failed += 1
                    failed_by[o.reason.value] += 1
                    write((o.offer_id, "failure", False, None, o.observed_at,
                           None, None, None, None, None, None, None, None, None, o.reason.value))
        counts = Counter({k: v for k, v in (("accepted", accepted), ("quarantined", quarantined),
                                            ("not_modified", not_modified), ("failure", failed)) if v})
        for reason, n in failed_by.items():
            counts[f"failed_{reason}"] = n
        # The statements after the COPY go in one round trip (pipeline mode: sent together, one
        # sync); an error in any of them still fails the batch's transaction as a whole.
        successes = accepted + quarantined + not_modified
        hinted = bool(successes and check_rows)
        with conn.pipeline():
            cur.execute(NESTED_LOOPS_ONLY)
            if accepted or quarantined:
                cur.execute(INSERT_OBSERVATIONS, {"run_key": window.partition_key})
            if hinted:
                by_row.execute(CHECK_SUCCESS_BY_ROW)
            elif successes:
                cur.execute(CHECK_SUCCESS)
            if failed:
                cur.execute(CHECK_FAILURE, {"unhealthy_after": UNHEALTHY_AFTER_FAILURES, "max_backoff": MAX_BACKOFF})
            if changed:
                if accepted:
                    cur.execute(APPLY_ACCEPTED)
                if quarantined:
                    cur.execute(APPLY_QUARANTINED)
            if feed_states:
                cur.execute(UPDATE_FEED_STATE, {"ids": [f.shop_id for f in feed_states],
                                                "etags": [f.etag for f in feed_states],
                                                "lms": [f.last_modified for f in feed_states]})
            cur.execute(UPSERT_PROGRESS, {**window.keys, "phase": phase,
                                          "last_offer_id": last_offer_id, "offers": len(results),
                                          "counts": json.dumps(dict(counts))})
        by_key = successes - by_row.rowcount if hinted else successes
        if hinted and by_key:  # some rows moved since the batch read them (or had no hint)
            cur.execute(CHECK_SUCCESS)
    return BatchResult(observations=counts["accepted"] + counts["quarantined"], counts=counts,
                       offers_changed=changed, checks_by_key=by_key)


# Connections whose session already has the staging table (prepare_session): record_batch then
# skips the CREATE ... IF NOT EXISTS, a round trip and ~1 ms per batch.
_STAGED: weakref.WeakSet[psycopg.Connection] = weakref.WeakSet()


# The tracker's statements are short (a keyset page of due offers, a batch's writes), but the
# planner's estimate for the due-offers page (a LIMIT over per-offer subplans, millions of cost
# units) crosses jit_above_cost: JIT compilation took ~0.3 s of a 0.33 s page at 100k offers.
JIT_OFF = "select set_config('jit', 'off', false)"


def prepare_session(conn: psycopg.Connection) -> None:
    """Prepare a tracking session once: JIT off, and the staging table created, committed (call
    outside any transaction, or in autocommit; record_batch otherwise creates the table inside
    every batch's transaction)."""
    with conn.transaction():
        conn.execute(JIT_OFF)
        conn.execute(CREATE_BATCH_STAGING)
    _STAGED.add(conn)


_VALUE = {m: m.value for enum in (Availability, SourceKind) for m in enum}  # faster than Enum.value
_encode_json = json.JSONEncoder(default=str).encode  # = json.dumps(details, default=str), built once
_DETAILS_MEMO: dict[tuple, str] = {}
_LAST_DETAILS: list[tuple[dict, str] | None] = [None]  # the last memoizable details and their text


def _details_json(details: dict) -> str:
    """`json.dumps(details, default=str)`, memoized for the usual small details (string keys, string
    values or an empty list): most observations of a batch share one of a few such dicts, and
    consecutive ones often equal (checked first: one dict comparison)."""
    last = _LAST_DETAILS[0]
    if last is not None and details == last[0]:
        return last[1]
    key = []
    all_str = True
    for k, v in details.items():
        t = type(v)
        if type(k) is not str or not (t is str or (t is list and not v)):
            return _encode_json(details)
        all_str = all_str and t is str
        key.append((k, v if t is str else None))
    memo_key = tuple(key)
    text = _DETAILS_MEMO.get(memo_key)
    if text is None:
        text = _encode_json(details)
        if len(_DETAILS_MEMO) < 4096:
            _DETAILS_MEMO[memo_key] = text
    if all_str:  # a copy of immutable values: later changes to `details` cannot make it stale
        _LAST_DETAILS[0] = (dict(details), text)
    return text


# The observations a tracking run wrote (for its data-quality check). Bounded by time so the
# BRIN index on observed_at prunes history; run_key and shard select the run's own rows.
OBSERVATION_CHECK_COLUMNS = ("offer_id", "observed_at", "price", "currency", "reference_price", "freight",
                             "availability", "status", "source_kind")
OBSERVATIONS_OF_WINDOWS_SQL = """
select offer_id, observed_at, price, currency, reference_price, freight, availability, status, source_kind
from price_history
where observed_at >= %(since)s
  and run_key = any(%(run_keys)s)
  and offer_id %% %(shard_count)s = any(%(shards)s)
"""

STALE_OFFERS_SQL = """
select count(*) as active,
       count(*) filter (where c.last_checked_at is null or c.last_checked_at < now() - %(age)s::interval) as stale
from offers o join shops s on s.id = o.shop_id join offer_checks c on c.offer_id = o.id
where o.active and s.active
"""


def observations_of_windows(conn: psycopg.Connection, windows: Sequence[ShardWindow], since: datetime) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(OBSERVATIONS_OF_WINDOWS_SQL, {
            "since": since, "run_keys": [w.partition_key for w in windows],
            "shards": [w.shard for w in windows], "shard_count": windows[0].shard_count,
        }).fetchall()


def offers_observed(conn: psycopg.Connection, windows: Sequence[ShardWindow], since: datetime) -> list[int]:
    """Ids of the offers a tracking run recorded observations for (what derived tables refresh)."""
    return sorted({r["offer_id"] for r in observations_of_windows(conn, windows, since)})
