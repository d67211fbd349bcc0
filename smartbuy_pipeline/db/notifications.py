"""The SQL of notification dispatch: release the outbox, claim deliveries, record attempts.

1. `release_events` (one transaction): pending alert events become deliveries, one per enabled
   channel of their household, unless the household already had `rate_limit` events in the last
   hour: the excess is folded into one digest event per household, released when the hour has
   room. Events of a household without an enabled channel are `suppressed`. Due digests are
   released in the same transaction. Releases are serialized (a transaction-level advisory lock):
   dispatch runs overlap by design, and two concurrent releases would each count the other's
   uncommitted dispatches as none (rate limit exceeded), open two digests for one household, or
   fold events into a digest the other had just sent.
2. `claim_due` (one committed statement): due deliveries (pending, failed and due for retry, or
   claimed by a run whose lease expired) become `sending`, attempts + 1, claimed by this run.
   While it sends, the run renews the lease of what it still holds (`renew_claims`), so a slow
   round is never re-claimed and sent twice by another run; only a dead run's claims expire.
3. `record_results` (one transaction per group of results): one COPY, then one UPDATE of the
   deliveries (sent / failed with exponential backoff / dead), one INSERT into the append-only
   `notification_attempts`, and Web Push channels whose subscription is gone are disabled.

Delivery is at least once: a run killed between sending and recording leaves `sending` rows
that another run re-claims after the lease; the receiver drops the repeat by its
Idempotency-Key (the delivery id). Everything is set-based: no statement per delivery.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from smartbuy_pipeline.notifications.channels import Delivery, DeliveryResult, Outcome

DEFAULT_RATE_LIMIT_PER_HOUR = 10
DEFAULT_MAX_ATTEMPTS = 10  # 1+2+4+...+256 minutes of backoff: about 8.5 hours before a dead letter
DEFAULT_CLAIM_LEASE = timedelta(minutes=2)
DIGEST_MAX_ITEMS = 50  # a digest lists at most this many alerts (its count says how many there were)
REDRIVE_NOTIFICATIONS = "REDRIVE_NOTIFICATIONS"

# -- 1. release ------------------------------------------------------------------------------------

CREATE_RELEASE_BATCH = """
create temporary table if not exists release_batch (
    id bigint primary key,
    household_id uuid not null,
    decision text            -- dispatched | digested | suppressed
) on commit delete rows
"""

RELEASE_LOCK_SQL = "select pg_advisory_xact_lock(hashtextextended('smartbuy.notification_release', 0))"

LOCK_PENDING_EVENTS = """
insert into release_batch (id, household_id)
select e.id, e.household_id
from alert_events e
where e.status = 'pending' and e.kind = 'alert' and e.release_at <= %(now)s
order by e.id
limit %(max_events)s
for update skip locked
"""

# nth = this event's place in its household's last hour, counting what was already dispatched.
DECIDE_RELEASE = """
update release_batch b set decision = case
        when not exists (select 1 from notification_channels c where c.household_id = b.household_id and c.enabled)
            then 'suppressed'
        when r.nth <= %(rate_limit)s then 'dispatched'
        else 'digested' end
from (
    select p.id, coalesce(w.n, 0) + row_number() over (partition by p.household_id order by p.id) as nth
    from release_batch p
    left join (
        select e.household_id, count(*) as n
        from alert_events e
        where e.kind = 'alert' and e.dispatched_at > %(now)s - interval '1 hour'
          and e.household_id in (select household_id from release_batch)
        group by e.household_id
    ) w on w.household_id = p.household_id
) r
where r.id = b.id
"""

# One open digest per household; it goes out when the oldest event dispatched in the household's
# last hour is an hour old (the window has room again).
OPEN_DIGESTS = """
insert into alert_events (kind, household_id, dedupe_key, currency, status, release_at)
select 'digest', h.household_id, 'digest:' || h.household_id || ':' || h.first_id, h.currency, 'pending',
       coalesce((select min(e.dispatched_at) from alert_events e
                 where e.household_id = h.household_id and e.kind = 'alert'
                   and e.dispatched_at > %(now)s - interval '1 hour'), %(now)s) + interval '1 hour'
from (
    select b.household_id, min(b.id) as first_id, min(e.currency) as currency
    from release_batch b join alert_events e on e.id = b.id
    where b.decision = 'digested'
    group by b.household_id
) h
where not exists (select 1 from alert_events d
                  where d.kind = 'digest' and d.status = 'pending' and d.household_id = h.household_id)
on conflict (dedupe_key) do nothing
"""

APPLY_RELEASE = """
update alert_events e set
    status = b.decision,
    dispatched_at = case when b.decision = 'dispatched' then %(now)s end,
    digest_id = case when b.decision = 'digested' then d.id end
from release_batch b
left join (select household_id, max(id) as id from alert_events
           where kind = 'digest' and status = 'pending' group by household_id) d
       on d.household_id = b.household_id
where e.id = b.id
"""

CREATE_DELIVERIES = """
insert into notification_deliveries (event_id, channel_id, next_attempt_at)
select b.id, c.id, %(now)s
from release_batch b
join notification_channels c on c.household_id = b.household_id and c.enabled
where b.decision = 'dispatched'
on conflict (event_id, channel_id) do nothing
"""

# Due digests: their payload (the held-back alerts, oldest first) is built now, then they are
# delivered like any event. A digest never counts against the rate limit (it is the limit's outlet).
RELEASE_DIGESTS = """
with due as (
    select d.id, d.household_id
    from alert_events d
    where d.kind = 'digest' and d.status = 'pending' and d.release_at <= %(now)s
    for update skip locked
),
items as (
    select e.digest_id, count(*) as n, min(e.created_at) as first_at,
           (jsonb_agg(e.payload order by e.id) filter (where e.rn <= %(max_items)s)) as items
    from (select e.*, row_number() over (partition by e.digest_id order by e.id) as rn
          from alert_events e where e.digest_id in (select id from due)) e
    group by e.digest_id
),
released as (
    update alert_events d set
        status = 'dispatched', dispatched_at = %(now)s,
        payload = jsonb_build_object(
            'kind', 'digest', 'household_id', d.household_id::text, 'count', i.n, 'items', i.items,
            'window_start', to_char(i.first_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
            'window_end', to_char(%(now)s::timestamptz at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
    from due join items i on i.digest_id = due.id
    where d.id = due.id
    returning d.id, d.household_id
),
deliveries as (
    insert into notification_deliveries (event_id, channel_id, next_attempt_at)
    select r.id, c.id, %(now)s
    from released r join notification_channels c on c.household_id = r.household_id and c.enabled
    on conflict (event_id, channel_id) do nothing
    returning 1
)
select (select count(*) from released), (select count(*) from deliveries)
"""

RELEASE_COUNTS = "select decision, count(*) from release_batch group by decision"


@dataclass(frozen=True)
class Release:
    dispatched: int = 0
    digested: int = 0
    suppressed: int = 0
    digests_released: int = 0
    deliveries_created: int = 0


def release_events(conn: psycopg.Connection, *, now: datetime, rate_limit: int = DEFAULT_RATE_LIMIT_PER_HOUR,
                   max_events: int = 100_000) -> Release:
    """Turn pending outbox events into deliveries (or a digest), in the caller's transaction."""
    if rate_limit < 1:
        raise ValueError(f"rate_limit must be at least 1 event per hour, got {rate_limit}")
    params = {"now": now, "rate_limit": rate_limit, "max_events": max_events, "max_items": DIGEST_MAX_ITEMS}
    with conn.cursor() as cur:
        cur.execute(RELEASE_LOCK_SQL)  # until the caller's transaction ends
        cur.execute(CREATE_RELEASE_BATCH)
        cur.execute(LOCK_PENDING_EVENTS, params)
        cur.execute(DECIDE_RELEASE, params)
        cur.execute(OPEN_DIGESTS, params)
        cur.execute(APPLY_RELEASE, params)
        cur.execute(CREATE_DELIVERIES, params)
        created = cur.rowcount
        counts = dict(cur.execute(RELEASE_COUNTS).fetchall())
        digests, digest_deliveries = cur.execute(RELEASE_DIGESTS, params).fetchone()
        cur.execute("truncate release_batch")
    return Release(dispatched=counts.get("dispatched", 0), digested=counts.get("digested", 0),
                   suppressed=counts.get("suppressed", 0), digests_released=digests,
                   deliveries_created=created + digest_deliveries)


# -- 2. claim --------------------------------------------------------------------------------------

CLAIM_DUE = """
with due as (
    select d.id
    from notification_deliveries d
    where (d.status in ('pending', 'failed') and d.next_attempt_at <= %(now)s)
       or (d.status = 'sending' and d.claimed_at <= %(now)s - %(lease)s::interval)
    order by d.next_attempt_at, d.id
    limit %(limit)s
    for update skip locked
),
claimed as (
    update notification_deliveries d
    set status = 'sending', attempts = d.attempts + 1, claimed_at = %(now)s, claimed_by = %(run_id)s
    from due where d.id = due.id
    returning d.id, d.attempts, d.channel_id, d.event_id
)
select c.id, c.attempts, c.channel_id, ch.kind, ch.target, ch.secret, ch.enabled, e.payload,
       greatest(e.observed_at, al.created_at) as due_since
from claimed c
join notification_channels ch on ch.id = c.channel_id
join alert_events e on e.id = c.event_id
left join alerts al on al.id = e.alert_id
order by c.id
"""


@dataclass(frozen=True)
class Claimed:
    delivery: Delivery
    channel_enabled: bool
    # Since when the household should have it: the price observation behind the event, or the
    # alert's creation when that is later (a new alert on a price seen days ago). Latency is
    # measured from it; None for digests.
    due_since: datetime | None


def claim_due(conn: psycopg.Connection, *, now: datetime, run_id: str, limit: int,
              lease: timedelta = DEFAULT_CLAIM_LEASE) -> list[Claimed]:
    """Claim up to `limit` due deliveries for this run. Commit right after: the claim is the lease."""
    rows = conn.execute(CLAIM_DUE, {"now": now, "run_id": run_id, "limit": limit, "lease": lease}).fetchall()
    return [
        Claimed(Delivery(delivery_id=r[0], attempt=r[1], channel_id=r[2], kind=r[3], target=r[4], secret=r[5],
                         payload=r[7]), channel_enabled=r[6], due_since=r[8])
        for r in rows
    ]


# Only rows this run still holds: settled ones are no longer 'sending', and a claim another run
# took over (after this one's lease lapsed) names that run.
RENEW_CLAIMS = """
update notification_deliveries set claimed_at = %(now)s
where id = any(%(ids)s) and status = 'sending' and claimed_by = %(run_id)s
"""


def renew_claims(conn: psycopg.Connection, delivery_ids: Sequence[int], *, run_id: str, now: datetime) -> int:
    """Extend this run's lease on the deliveries it is still sending (one statement); how many."""
    return conn.execute(RENEW_CLAIMS, {"ids": list(delivery_ids), "run_id": run_id, "now": now}).rowcount


# -- 3. record -------------------------------------------------------------------------------------

CREATE_RESULTS_STAGING = """
create temporary table if not exists delivery_results (
    delivery_id bigint not null, channel_id bigint not null, attempt integer not null, outcome text not null,
    status_code integer, error text, started_at timestamptz not null, finished_at timestamptz not null
) on commit delete rows
"""
RESULT_COLUMNS = ("delivery_id", "channel_id", "attempt", "outcome", "status_code", "error", "started_at",
                  "finished_at")

# Only the claim this run holds is settled: if the lease expired and another run re-claimed the
# delivery, that run settles it (the attempt number tells the claims apart).
# Backoff: 1, 2, 4, 8 ... minutes after the failed attempt was settled, at most 24 hours; dead after
# max_attempts; an invalid target or a gone subscription is dead at once.
APPLY_RESULTS = """
update notification_deliveries d set
    status = case
        when r.outcome = 'sent' then 'sent'
        when r.outcome = 'retry' and d.attempts < %(max_attempts)s then 'failed'
        else 'dead' end,
    sent_at = case when r.outcome = 'sent' then r.finished_at else d.sent_at end,
    next_attempt_at = case
        when r.outcome = 'retry'
        then %(now)s + least(interval '24 hours', interval '1 minute' * power(2, d.attempts - 1))
        else d.next_attempt_at end,
    dead_at = case
        when r.outcome in ('invalid', 'gone') or (r.outcome = 'retry' and d.attempts >= %(max_attempts)s)
        then %(now)s end,
    last_error = case when r.outcome = 'sent' then null else r.error end,
    last_status_code = r.status_code,
    claimed_at = null, claimed_by = null
from delivery_results r
where d.id = r.delivery_id and d.status = 'sending' and d.claimed_by = %(run_id)s and d.attempts = r.attempt
returning d.status
"""

LOG_ATTEMPTS = """
insert into notification_attempts (delivery_id, attempt, outcome, status_code, error, started_at, finished_at, run_id)
select delivery_id, attempt, outcome, status_code, error, started_at, finished_at, %(run_id)s
from delivery_results
"""

DISABLE_GONE_CHANNELS = """
update notification_channels c
set enabled = false, disabled_at = r.finished_at,
    disabled_reason = 'web push subscription gone (push service answered ' || coalesce(r.status_code::text, '410') || ')'
from (select distinct on (channel_id) channel_id, finished_at, status_code
      from delivery_results where outcome = 'gone' order by channel_id, finished_at) r
where c.id = r.channel_id and c.enabled
"""


@dataclass(frozen=True)
class Recorded:
    sent: int = 0
    failed: int = 0  # will be retried
    dead: int = 0
    stale: int = 0  # results for claims this run no longer held (re-claimed elsewhere)
    channels_disabled: int = 0


def record_results(conn: psycopg.Connection, results: Sequence[DeliveryResult], *, attempts: dict[int, int],
                   run_id: str, now: datetime, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> Recorded:
    """Settle one group of attempts in the caller's transaction. `attempts` maps delivery id to
    the attempt number this run claimed; retries are scheduled from `now`."""
    if not results:
        return Recorded()
    with conn.cursor() as cur:
        cur.execute(CREATE_RESULTS_STAGING)
        with cur.copy(f"copy delivery_results ({', '.join(RESULT_COLUMNS)}) from stdin") as copy:
            for r in results:
                copy.write_row((r.delivery_id, r.channel_id, attempts[r.delivery_id], Outcome(r.outcome).value,
                                r.status_code, r.error, r.started_at, r.finished_at))
        statuses = [row[0] for row in cur.execute(APPLY_RESULTS, {"run_id": run_id, "now": now,
                                                                       "max_attempts": max_attempts})]
        cur.execute(LOG_ATTEMPTS, {"run_id": run_id})
        cur.execute(DISABLE_GONE_CHANNELS)
        disabled = cur.rowcount
    return Recorded(sent=statuses.count("sent"), failed=statuses.count("failed"), dead=statuses.count("dead"),
                    stale=len(results) - len(statuses), channels_disabled=disabled)


# -- what the dispatch sensor looks at ---------------------------------------------------------------

DISPATCH_STATE = """
select
    (select max(id) from alert_events where status = 'pending') as last_pending_event,
    exists (select 1 from alert_events where status = 'pending' and kind = 'alert'
            and release_at <= now() - interval '1 minute') as events_waiting,
    exists (select 1 from alert_events where status = 'pending' and kind = 'digest'
            and release_at <= now()) as digest_due,
    exists (select 1 from notification_deliveries where status in ('pending', 'failed')
            and next_attempt_at <= now()) as deliveries_due,
    exists (select 1 from notification_deliveries where status = 'sending'
            and claimed_at <= now() - %(lease)s::interval) as claims_expired
"""


@dataclass(frozen=True)
class DispatchState:
    last_pending_event: int | None
    events_waiting: bool  # released-but-not-dispatched events older than a minute (a run died early)
    digest_due: bool
    deliveries_due: bool
    claims_expired: bool

    @property
    def work_due(self) -> bool:
        return self.events_waiting or self.digest_due or self.deliveries_due or self.claims_expired


def dispatch_state(conn: psycopg.Connection, lease: timedelta = DEFAULT_CLAIM_LEASE) -> DispatchState:
    return DispatchState(*conn.execute(DISPATCH_STATE, {"lease": lease}).fetchone())


# -- re-drive dead letters (ops) -------------------------------------------------------------------

REDRIVE = """
with redriven as (
    update notification_deliveries d
    set status = 'pending', attempts = 0, next_attempt_at = %(now)s, dead_at = null, claimed_at = null,
        claimed_by = null
    where d.status = 'dead'
      and (cardinality(%(ids)s::bigint[]) = 0 or d.id = any(%(ids)s::bigint[]))
      and (%(household)s::uuid is null
           or exists (select 1 from alert_events e where e.id = d.event_id and e.household_id = %(household)s::uuid))
      and (%(since)s::timestamptz is null or d.dead_at >= %(since)s::timestamptz)
    returning d.id, d.last_error
)
insert into ops_audit_logs (actor, action_type, entity_type, entity_id, payload)
select %(actor)s::text, %(action)s::text, 'notification_deliveries', count(*)::text,
       jsonb_build_object('delivery_ids', coalesce(jsonb_agg(id order by id), '[]'::jsonb),
                          'count', count(*), 'filter', %(filter)s::jsonb, 'reason', %(reason)s::text,
                          'before', jsonb_build_object('status', 'dead'),
                          'after', jsonb_build_object('status', 'pending', 'attempts', 0),
                          'last_errors', coalesce(jsonb_object_agg(id, last_error)
                                                  filter (where last_error is not null), '{}'::jsonb))
from redriven
returning (payload ->> 'count')::int, payload -> 'delivery_ids'
"""


@dataclass(frozen=True)
class Redrive:
    count: int
    delivery_ids: list[int]


def redrive_dead(conn: psycopg.Connection, *, actor: str, reason: str, now: datetime,
                 delivery_ids: Sequence[int] = (), household_id: str | None = None,
                 dead_since: datetime | None = None) -> Redrive:
    """Dead letters back to pending (attempts reset), with one REDRIVE_NOTIFICATIONS audit row
    naming them, in the caller's transaction. No filter = every dead letter."""
    if not actor.strip():
        raise ValueError("redrive needs an actor")
    filt = {"delivery_ids": list(delivery_ids), "household_id": household_id,
            "dead_since": dead_since.isoformat() if dead_since else None}
    count, ids = conn.execute(REDRIVE, {
        "now": now, "ids": list(delivery_ids), "household": household_id, "since": dead_since,
        "actor": actor, "action": REDRIVE_NOTIFICATIONS, "filter": json.dumps(filt), "reason": reason,
    }).fetchone()
    return Redrive(count=count, delivery_ids=list(ids))
