"""The SQL of alert evaluation: every active alert against its subject's offers, set-based.

`evaluate_alerts` runs a few statements in the caller's transaction (see docs/alerts.md):

1. (triggered mode) the ids of the alerts whose subject has an offer changed or rescored since
   `changed_since`, into a temporary table;
2. `BEST_SQL`: one pass over alerts x subject offers. Offer-level eligibility (offer and shop
   active, priced, not out of stock/discontinued, risk bucket, price stats) and the event's offer
   fields are joined once per offer; each offer probes the alerts' hash by product and by offer
   (one hash join for product- and offer-level alerts); the alert-level filters (currency, allowed/blocked shops, the
   household's blocked shops, safe_only) and the rule leave the matching pairs, and DISTINCT ON
   keeps each alert's best one (lowest compared figure, then lowest offer id) into a temporary
   table. PERCENT_DROP alerts waiting for their baseline keep their cheapest eligible offer too,
   and alerts matched until now leave a marker row (no offer) so flips are found by id.
3. `APPLY_SQL`: one statement with data-modifying CTEs: the re-arm state machine over the best
   matches, the outbox INSERT ... ON CONFLICT (dedupe_key) DO NOTHING, the UPDATE of only the
   alerts whose state changes (flips, notifications, baselines; HOT: no indexed column, 0011's
   fillfactor), and the counts;
4. the `alert_evaluations` row.

An advisory transaction lock serializes evaluations (a full and a triggered run never race on
the same alert's state). Nothing loops over alerts or offers in Python.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime

import psycopg

from smartbuy_pipeline.domain.alerts import ALERT_TYPES, UNAVAILABLE

FULL = "full"
TRIGGERED = "triggered"
# hashtext('smartbuy.alerts.evaluate') would do as well; a fixed constant needs no round trip.
ADVISORY_LOCK_KEY = 0x736D616C657274  # "smalert"
# The pair join hashes ~1M offers and sorts the matching pairs: give it memory for this
# transaction only (restored at the end of evaluate_alerts).
WORK_MEM = "256MB"
# JIT compiles BEST_SQL's expressions for ~3 s at 1M alerts and saves less than that (measured
# with bench/bench_alert_eval.py): off for the evaluation, restored afterwards.
JIT = "off"
# BEST_SQL's pair join key comes from a LATERAL VALUES the planner cannot estimate (it expects
# ~30x the real pairs) and then prefers a merge join that sorts ~2M offer rows on disk (2x slower
# than the hash join, measured): merge joins are off for the evaluation, restored afterwards.
# The evaluation's settings, set for the transaction and restored at the end of evaluate_alerts:
SETTINGS = {"work_mem": WORK_MEM, "jit": JIT, "enable_mergejoin": "off"}
# The full evaluation's pair join runs in parallel workers (BEST_SQL 12.3 -> 6.6 s on 2 cores at
# 1M alerts, bench/bench_alert_eval.py) only if the planner sees no cost in moving tuples to the leader: with
# the default costs it gathers the 2.6M unfiltered pairs and filters them in the leader. Full mode
# only: the triggered statements read temporary tables, which workers cannot, and these costs
# turned their plans 20x slower.
PARALLEL_COSTS = {"parallel_setup_cost": "0", "parallel_tuple_cost": "0"}

LOCK_SQL = "select pg_advisory_xact_lock(%(key)s)"


def _get_settings_sql(n: int) -> str:
    return "select " + ", ".join(["current_setting(%s)"] * n)


def _set_settings_sql(n: int) -> str:
    return "select " + ", ".join(["set_config(%s, %s, true)"] * n)

# -- which alerts (triggered mode) -------------------------------------------------------------

CREATE_IDS_SQL = """
create temporary table if not exists alert_eval_ids (id bigint primary key) on commit drop
"""

# Alerts whose subject has an offer whose state changed (tracker: price, availability, "de"
# price) or whose risk score was recomputed since `changed_since`, and alerts created after
# `new_after` (an id; NULL: none), so a new alert is evaluated (its PERCENT_DROP baseline taken,
# a first match at creation notified) within the trigger's seconds rather than at the next
# schedule. Both change scans are sequential: an index on offers.last_changed_at would make the
# tracker's hourly updates non-HOT (see 0010); the new alerts are a primary-key range.
TRIGGERED_IDS_SQL = """
insert into alert_eval_ids (id)
with changed as (
    select o.id, o.product_id from offers o where o.last_changed_at >= %(since)s
    union
    select o.id, o.product_id
    from offer_risk_scores r join offers o on o.id = r.offer_id
    where r.computed_at >= %(since)s
)
select a.id from alerts a where a.active and a.offer_id in (select id from changed)
union
select a.id from alerts a where a.active and a.product_id in (select product_id from changed)
union
select a.id from alerts a where a.id > %(new_after)s and a.active
on conflict (id) do nothing
"""

# -- best match per alert ----------------------------------------------------------------------

# The active alerts (scoped in triggered mode), params extracted once per alert, keyed for the pair
# join: (by_offer, a_key) is (false, product_id) for product-level alerts and (true, offer_id) for
# offer-level ones. Params are read without validation: the CHECK alerts_params_valid guarantees
# their shape (days may be "30.0": via numeric). The household's blocked shops are joined per
# alert (OFFSET 0 keeps that join below the pair join; flattened, the planner probes
# household_profiles once per pair); most alerts have no profile and keep their own array.
_ALERTS_SQL = """
    select al.id as alert_id, al.alert_type, al.offer_id is not null as by_offer,
           coalesce(al.product_id, al.offer_id) as a_key,
           al.currency as a_currency, al.safe_only, al.allowed_shop_ids as allowed,
           case when hp.blocked_shop_ids is null then al.blocked_shop_ids
                else al.blocked_shop_ids || hp.blocked_shop_ids end as blocked,
           -- TARGET_PRICE, TOTAL_PRICE: target; PERCENT_DROP: the share of the reference to reach
           case when al.alert_type in ('TARGET_PRICE', 'TOTAL_PRICE') then (al.params ->> 'target')::numeric
                when al.alert_type = 'PERCENT_DROP' then 1 - (al.params ->> 'percent')::numeric / 100
           end as factor,
           case when al.alert_type = 'PERCENT_DROP' then coalesce(al.params ->> 'reference', 'created') end as ref,
           al.baseline_price,
           case when al.alert_type = 'NEW_LOW' then (al.params ->> 'days')::numeric::integer end as days,
           case when al.alert_type = 'NEW_LOW'
                then make_interval(days => least(coalesce((al.params ->> 'days')::numeric::integer, 7000),
                                                 coalesce((al.params ->> 'min_history_days')::numeric::integer, 7)))
           end as history
    from alerts al
    left join household_profiles hp on hp.household_id = al.household_id
    where al.active{scope}{kind}{barrier}"""

# NEW_LOW's low: offer_price_stats has 30 and 90 days and all time; any other N ("custom") is the
# lowest accepted, priced observation in (now - N days, now] from price_history (primary key
# (offer_id, observed_at)), computed only for the pairs of those alerts (CASE evaluates lazily).
# That correlated subquery would keep the pair join out of parallel workers, so the alerts with a
# custom N are evaluated by a second, small statement (CUSTOM_LOW), driven by their subject offers.
CUSTOM_LOW = ("(al.alert_type = 'NEW_LOW'"
              " and coalesce((al.params ->> 'days')::numeric::integer not in (30, 90), false))")
_LOW_STATS = """case when a.days is null then o.low_all_time when a.days = 30 then o.low_30d
                     when a.days = 90 then o.low_90d end"""
_LOW = """case when a.days is null then o.low_all_time when a.days = 30 then o.low_30d
                     when a.days = 90 then o.low_90d
                     else (select min(h.price) from price_history h
                           where h.offer_id = o.offer_id
                             and h.observed_at > %(now)s - make_interval(days => a.days)
                             and h.observed_at <= %(now)s
                             and h.status = 'accepted' and h.price is not null) end"""

# One pass over alerts x subject offers. `o`, the offer-level eligibility, figures, risk bucket,
# price stats and the event's offer fields, is computed once per offer and probes the alerts'
# hash twice (by product, by offer: the LATERAL VALUES), so it needs no materialization. The
# alert-level filters and the rule leave only the matching pairs (and pairs of PERCENT_DROP
# alerts waiting for their baseline), and DISTINCT ON keeps each alert's best one.
BEST_SQL = """
{into}
with
a as not materialized ({alerts}),
o as not materialized (
    select o.id as offer_id, o.product_id, o.shop_id, o.price, o.freight, o.currency, o.availability,
           r.bucket, r.score, st.median_30d, st.low_30d, st.low_90d, st.low_all_time, st.first_observed_at,
           case when o.source_kind = 'page' then o.locator end as url,
           -- the last change; for an offer priced but never seen changing, its last good check
           -- (coalesce evaluates the subquery only for those)
           coalesce(o.last_changed_at,
                    (select c.last_success_at from offer_checks c where c.offer_id = o.id)) as observed_at
    from offers o
    join shops s on s.id = o.shop_id
    left join offer_risk_scores r on r.offer_id = o.id
    left join analytics.offer_price_stats st on st.offer_id = o.id
    where o.active and s.active and o.price is not null
      and o.availability <> all (%(unavailable)s::text[]){offer_scope}{barrier}
)
select distinct on (alert_id)
       alert_id, offer_id, offer_id is not null and not needs_baseline as matched, figure, reference, price,
       needs_baseline, product_id, shop_id, currency, freight, availability, bucket, score, url, observed_at
from (
    select a.alert_id, o.offer_id, o.price,
           case when a.alert_type = 'TOTAL_PRICE' then o.price + o.freight else o.price end as figure,
           -- the figure the rule compares against
           case a.alert_type
               when 'PERCENT_DROP' then case when a.ref = 'created' then a.baseline_price else o.median_30d end
               when 'NEW_LOW' then {low}
               when 'BACK_IN_STOCK' then null
               else a.factor
           end as reference,
           (a.alert_type = 'PERCENT_DROP' and a.ref = 'created' and a.baseline_price is null) as needs_baseline,
           o.product_id, o.shop_id, o.currency, o.freight, o.availability, o.bucket, o.score, o.url,
           o.observed_at
    from o
    cross join lateral (values (false, o.product_id), (true, o.offer_id)) k (by_offer, key)
    join a on a.by_offer = k.by_offer and a.a_key = k.key
    where o.currency = a.a_currency
      and (cardinality(a.allowed) = 0 or o.shop_id = any(a.allowed))
      and o.shop_id <> all(a.blocked)
      and (not a.safe_only or o.bucket <> 'C')  -- unscored (NULL) is not known safe
      and case a.alert_type
              when 'TARGET_PRICE' then o.price <= a.factor
              when 'TOTAL_PRICE' then o.price + o.freight <= a.factor  -- unknown freight: NULL, no match
              when 'PERCENT_DROP' then
                  case when a.ref = 'created'
                       then a.baseline_price is null or o.price <= a.baseline_price * a.factor
                       else o.price <= o.median_30d * a.factor end
              when 'NEW_LOW' then o.first_observed_at <= %(now)s - a.history and o.price <= {low}
              when 'BACK_IN_STOCK' then o.availability = 'in_stock'
          end
    union all
    -- alerts matched until now, as markers (no offer; sorted after any real match): APPLY_SQL
    -- finds the true -> false flips here, by alert id, whatever the planner thinks of `matched`
    select al.id, null::bigint, null::numeric, null::numeric, null::numeric, false,
           null::bigint, null::bigint, null::bpchar, null::numeric, null::text, null::bpchar, null::smallint,
           null::text, null::timestamptz
    from alerts al
    where al.active and al.matched{scope}{kind}
) j
order by alert_id, figure, offer_id
"""


# Only the subject offers of the alerts to evaluate (not all 1M offers): triggered mode, and the
# custom-N NEW_LOW statement.
_OFFER_SCOPE = """
      and o.id in (select so.id from {alerts} join offers so on so.product_id = al.product_id or so.id = al.offer_id
                   where al.active)"""
_ALERTS_TRIGGERED = "alert_eval_ids i join alerts al on al.id = i.id"  # driven from the (analyzed) ids
_CREATE_BEST = "create temporary table alert_eval_best on commit drop as"
_INSERT_BEST = "insert into alert_eval_best"
# `offset 0` keeps a subquery a planning barrier (the household join below the pair join, `o`
# computed once per offer). The full evaluation's main statement goes without: its parallel plan
# is better, and no barrier can run in a parallel worker.
_BARRIER = "\n    offset 0"


# The custom-N NEW_LOW alerts to evaluate (few): their ids, analyzed, so that the planner drives
# their statement from them (index lookups of their offers, not hash joins over every offer).
CUSTOM_IDS_SQL = f"""
create temporary table alert_eval_custom on commit drop as
select al.id from alerts al where al.active{{scope}} and {CUSTOM_LOW}
"""
_SCOPE_CUSTOM = " and al.id in (select id from alert_eval_custom)"
_ALERTS_CUSTOM = "alert_eval_custom i join alerts al on al.id = i.id"


def best_sql(scope: str, custom_low: bool = False) -> str:
    """BEST_SQL: full (scope '') or triggered (scope _SCOPE_TRIGGERED); the main statement (every
    alert but the custom-N NEW_LOW ones: creates alert_eval_best) or the custom-N one (adds to it;
    scoped by alert_eval_custom, whatever the mode)."""
    if custom_low:
        scope, kind, into, low, barrier = _SCOPE_CUSTOM, "", _INSERT_BEST, _LOW, _BARRIER
        offer_scope = _OFFER_SCOPE.format(alerts=_ALERTS_CUSTOM)
    else:
        kind, into, low = f" and not {CUSTOM_LOW}", _CREATE_BEST, _LOW_STATS
        barrier = _BARRIER if scope else ""
        offer_scope = _OFFER_SCOPE.format(alerts=_ALERTS_TRIGGERED) if scope else ""
    return BEST_SQL.format(
        into=into,
        offer_scope=offer_scope,
        alerts=_ALERTS_SQL.format(scope=scope, kind=kind, barrier=barrier),
        scope=scope,
        kind=kind,
        low=low,
        barrier=barrier,
    )

# -- state machine, outbox, counts -------------------------------------------------------------

_MONEY = "to_char({0}, 'FM9999999999990.00')"

# The offer's fields come from alert_eval_best (read once, in BEST_SQL): only products and shops
# are joined for the payload. The evaluator's UPDATEs touch no indexed column of alerts, so with
# 0011's fillfactor they are HOT.
APPLY_SQL = """
with r as (
    select b.alert_id, b.offer_id, b.figure, b.reference, b.price, b.product_id, b.shop_id, b.currency,
           b.freight, b.availability, b.bucket, b.score, b.url, b.observed_at,
           a.household_id, a.alert_type, a.params, a.matched as was_matched,
           a.notified_episode, a.last_notified_price, a.last_notified_at,
           a.episode + case when a.matched then 0 else 1 end as episode_now,
           (a.last_notified_at is null or %(now)s >= a.last_notified_at + a.cooldown) as cooled
    from alert_eval_best b
    join alerts a on a.id = b.alert_id
    where b.matched
),
n as (
    select r.*,
           (r.notified_episode is distinct from r.episode_now
            or r.figure < r.last_notified_price) as wanted
    from r
),
sent as (
    select n.* from n where n.wanted and n.cooled
),
ins as (
    insert into alert_events (alert_id, household_id, offer_id, dedupe_key, price, currency,
                              observed_at, payload, status)
    select x.alert_id, x.household_id, x.offer_id,
           'alert:' || x.alert_id || ':offer:' || x.offer_id
               || case when x.alert_type = 'BACK_IN_STOCK' then ':restock:' || x.episode_now
                       else ':price:' || {figure_money} end,
           x.price, x.currency, x.observed_at,
           jsonb_build_object(
               'kind', 'alert',
               'alert_id', x.alert_id,
               'alert_type', x.alert_type,
               'household_id', x.household_id::text,
               'product_id', x.product_id,
               'product_name', p.name,
               'gtin', p.gtin::text,
               'offer_id', x.offer_id,
               'shop_id', x.shop_id,
               'shop_name', s.name,
               'url', x.url,
               'price', {price_money},
               'currency', x.currency::text,
               'freight', {freight_money},
               'total', {total_money},
               'reference_price', {reference_money},
               'reference_kind', case x.alert_type
                   when 'TARGET_PRICE' then 'target'
                   when 'TOTAL_PRICE' then 'target'
                   when 'PERCENT_DROP' then coalesce(x.params ->> 'reference', 'created')
                   when 'NEW_LOW' then case when x.params ->> 'days' is null then 'low_all_time'
                                            else 'low_' || ((x.params ->> 'days')::numeric::integer) || 'd' end
               end,
               'previous_notified_price', {previous_money},
               'risk_bucket', x.bucket::text,
               'risk_score', x.score,
               'availability', x.availability,
               'observed_at', to_char(x.observed_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
           ),
           'pending'
    from sent x
    join products p on p.id = x.product_id
    join shops s on s.id = x.shop_id
    on conflict (dedupe_key) do nothing
    returning alert_id
),
changed as (
    select n.alert_id, n.offer_id, n.figure, n.episode_now,
           (n.wanted and n.cooled) as notified,
           n.alert_id in (select i.alert_id from ins i) as inserted
    from n
    where not n.was_matched or (n.wanted and n.cooled)
),
upd as (
    update alerts a
       set matched = true,
           episode = c.episode_now,
           notified_episode = case when c.notified then c.episode_now else a.notified_episode end,
           last_notified_price = case when c.notified then c.figure else a.last_notified_price end,
           last_notified_offer_id = case when c.notified then c.offer_id else a.last_notified_offer_id end,
           last_notified_at = case when c.inserted then %(now)s else a.last_notified_at end,
           state_changed_at = %(now)s
      from changed c
     where a.id = c.alert_id
    returning a.id
),
-- true -> false flips (the markers of BEST_SQL), and PERCENT_DROP baselines (their alerts cannot
-- match this time): driven from alert_eval_best, one row per alert
flips as (
    select b.alert_id as id, case when b.needs_baseline then b.price end as baseline,
           a.matched as was_matched
    from alert_eval_best b
    join alerts a on a.id = b.alert_id
    where not b.matched and (a.matched or b.needs_baseline)
),
upd_flips as (
    update alerts a
       set matched = false,
           baseline_price = coalesce(a.baseline_price, f.baseline),
           state_changed_at = %(now)s
      from flips f
     where a.id = f.id
    returning a.id
)
select
    (select count(*) from {evaluated} a where a.active) as alerts_evaluated,
    (select count(*) from n) as matched,
    (select count(*) from ins) as events_created,
    (select count(*) from n where not was_matched) as rearmed,
    (select count(*) from flips where was_matched) as unmatched,
    (select count(*) from n where wanted and not cooled) as suppressed_cooldown,
    (select count(*) from changed where notified and not inserted) as suppressed_duplicate,
    (select count(*) from flips where baseline is not null) as baselines_set,
    (select coalesce(jsonb_object_agg(alert_type, c), jsonb_build_object())
       from (select n.alert_type, count(*) as c from ins join n on n.alert_id = ins.alert_id
             group by n.alert_type) t) as by_type,
    (select count(*) from upd) + (select count(*) from upd_flips) as alerts_updated
""".format(
    figure_money=_MONEY.format("x.figure"),
    price_money=_MONEY.format("x.price"),
    freight_money=_MONEY.format("x.freight"),
    total_money=_MONEY.format("x.price + x.freight"),
    reference_money=_MONEY.format("x.reference"),
    previous_money=_MONEY.format("x.last_notified_price"),
    evaluated="{evaluated}",
)

RECORD_SQL = """
insert into alert_evaluations (partition_key, mode, run_id, changed_since, evaluated_at, started_at,
                               finished_at, alerts_evaluated, matched, events_created, counts)
values (%(partition_key)s, %(mode)s, %(run_id)s, %(changed_since)s, %(now)s, %(started_at)s,
        greatest(clock_timestamp(), %(started_at)s), %(alerts_evaluated)s, %(matched)s,
        %(events_created)s, %(counts)s)
returning id
"""

_SCOPE_TRIGGERED = " and al.id in (select id from alert_eval_ids)"
# APPLY_SQL's evaluated alerts: all, or driven from the (analyzed) id table
_EVALUATED_FULL = "alerts"
_EVALUATED_TRIGGERED = "(select al.* from alert_eval_ids i join alerts al on al.id = i.id)"


@dataclass
class AlertEvaluation:
    """What one evaluation did. `matched` counts alerts with a best match now; `rearmed` and
    `unmatched` the false -> true and true -> false flips; a notification wanted during the
    cooldown counts as `suppressed_cooldown`, one whose dedupe key already existed as
    `suppressed_duplicate` (the alert's state records it anyway)."""

    mode: str
    alerts_evaluated: int = 0
    matched: int = 0
    events_created: int = 0
    rearmed: int = 0
    unmatched: int = 0
    suppressed_cooldown: int = 0
    suppressed_duplicate: int = 0
    baselines_set: int = 0
    alerts_updated: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    evaluation_id: int | None = None

    COUNTERS = ("alerts_evaluated", "matched", "events_created", "rearmed", "unmatched",
                "suppressed_cooldown", "suppressed_duplicate", "baselines_set", "alerts_updated")

    def counts(self) -> dict:
        """The jsonb `counts` of alert_evaluations: every counter and by_type."""
        out: dict = {name: getattr(self, name) for name in self.COUNTERS}
        out["by_type"] = dict(self.by_type)
        return out

    def metadata(self) -> dict[str, int | float]:
        """Flat numeric metadata (Dagster): every counter, events by type, duration."""
        out: dict[str, int | float] = {name: getattr(self, name) for name in self.COUNTERS}
        for alert_type in ALERT_TYPES:
            out[f"events_{alert_type.lower()}"] = self.by_type.get(alert_type, 0)
        out["duration_s"] = round(self.duration_s, 3)
        return out

    def as_dict(self) -> dict:
        return asdict(self)


def evaluate_alerts(conn: psycopg.Connection, *, now: datetime, partition_key: str, run_id: str | None,
                    changed_since: datetime | None = None, new_alerts_after: int | None = None) -> AlertEvaluation:
    """Evaluate active alerts at `now` and write the outbox; the caller owns the transaction.

    changed_since None: every active alert ('full'). Otherwise ('triggered') only the alerts with
    a subject offer whose last_changed_at, or whose risk score's computed_at, is >= changed_since,
    and (when `new_alerts_after` is given) the alerts with a greater id; those are evaluated fully
    (all their subject offers). Records an `alert_evaluations` row in the same transaction.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if changed_since is not None and changed_since.tzinfo is None:
        raise ValueError("changed_since must be timezone-aware")
    mode = FULL if changed_since is None else TRIGGERED
    started_at = datetime.now(now.tzinfo)
    t0 = time.perf_counter()
    conn.execute(LOCK_SQL, {"key": ADVISORY_LOCK_KEY})
    settings = SETTINGS | (PARALLEL_COSTS if mode == FULL else {})
    names = list(settings)
    previous = conn.execute(_get_settings_sql(len(names)), names).fetchone()
    conn.execute(_set_settings_sql(len(names)), [v for kv in zip(names, settings.values(), strict=True) for v in kv])
    try:
        scope, evaluated = "", _EVALUATED_FULL
        if mode == TRIGGERED:
            conn.execute(CREATE_IDS_SQL)
            conn.execute("truncate alert_eval_ids")
            conn.execute(TRIGGERED_IDS_SQL, {"since": changed_since, "new_after": new_alerts_after})
            conn.execute("analyze alert_eval_ids")  # temporary tables get no statistics otherwise
            scope, evaluated = _SCOPE_TRIGGERED, _EVALUATED_TRIGGERED
        conn.execute("drop table if exists pg_temp.alert_eval_best")
        conn.execute("drop table if exists pg_temp.alert_eval_custom")
        params = {"now": now, "unavailable": list(UNAVAILABLE)}
        conn.execute(best_sql(scope), params)
        if conn.execute(CUSTOM_IDS_SQL.format(scope=scope)).rowcount:
            conn.execute("analyze alert_eval_custom")
            conn.execute(best_sql(scope, custom_low=True), params)
        # APPLY_SQL joins it to alerts by id; temporary tables get no statistics unless asked.
        conn.execute("alter table alert_eval_best add primary key (alert_id)")
        conn.execute("analyze alert_eval_best")
        row = conn.execute(APPLY_SQL.format(evaluated=evaluated), {"now": now}).fetchone()
    finally:
        conn.execute(_set_settings_sql(len(names)), [v for kv in zip(names, previous, strict=True) for v in kv])
    result = AlertEvaluation(
        mode=mode, alerts_evaluated=row[0], matched=row[1], events_created=row[2], rearmed=row[3],
        unmatched=row[4], suppressed_cooldown=row[5], suppressed_duplicate=row[6], baselines_set=row[7],
        by_type={k: int(v) for k, v in sorted(row[8].items())}, alerts_updated=row[9])
    result.duration_s = time.perf_counter() - t0
    result.evaluation_id = conn.execute(RECORD_SQL, {
        "partition_key": partition_key, "mode": mode, "run_id": run_id, "changed_since": changed_since,
        "now": now, "started_at": started_at, "alerts_evaluated": result.alerts_evaluated,
        "matched": result.matched, "events_created": result.events_created,
        "counts": json.dumps(result.counts()),
    }).fetchone()[0]
    return result
