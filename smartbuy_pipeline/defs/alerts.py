"""Alert evaluation: `alert_candidates` on 15-minute windows, every 15 minutes and whenever a
price batch lands.

Thin: the rules and their set-based SQL live in `smartbuy_pipeline.db.alerts` (docs/alerts.md).
The schedule is the safety net (a full evaluation); the `alert_candidates_on_price_batch`
sensor evaluates, within seconds of a committed price batch, only the alerts whose offers
changed, so a good price reaches the household in about a minute.
"""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg

from smartbuy_pipeline.db import alerts as alerts_db
from smartbuy_pipeline.defs.resources import Database

ALERT_WINDOWS = dg.TimeWindowPartitionsDefinition(
    cron_schedule="*/15 * * * *", start="2026-11-01-00:00", fmt="%Y-%m-%d-%H:%M", end_offset=1,
)


def window_key(at: datetime) -> str:
    """The 15-minute window containing `at` (what a triggered evaluation materializes)."""
    return ALERT_WINDOWS.get_partition_key_for_timestamp(at.timestamp())


# Offers of a batch are stamped when fetched, before the batch commits, and shards commit in
# parallel: a triggered evaluation looks back this much before the previous trigger.
TRIGGER_OVERLAP = timedelta(minutes=5)

# What the trigger watches, in commit order: every committed price batch adds one to its run's
# checkpoint row (`batches`), so the sum only grows, whenever the batch's transaction started (a
# timestamp such as updated_at = now() is the transaction's start: a batch that began before
# another but committed after it would look older than what the cursor had seen). A rescoring
# that changes a score or bucket adds offer_risk_score_history rows; a household creates alerts.
# All reads are cheap: the checkpoint table has a row per shard and hour, max(id) is a
# primary-key probe. (An alert whose insert commits after a newer one was seen waits for the
# schedule.)
LANDED_SQL = """
select (select coalesce(sum(batches), 0) from price_tracking_progress) as price_batches,
       (select coalesce(max(id), 0) from offer_risk_score_history) as risk_changes,
       (select coalesce(max(id), 0) from alerts) as newest_alert,
       now() as seen_at
"""


def _instant(value: str, field: str) -> datetime | None:
    if not value:
        return None
    at = datetime.fromisoformat(value)
    if at.tzinfo is None:
        raise dg.Failure(description=f"{field} must carry a UTC offset: {value!r}", allow_retries=False)
    return at.astimezone(UTC)


class AlertEvaluationConfig(dg.Config):
    changed_since: str = ""  # ISO-8601: only alerts whose offers changed since (the trigger sets it); empty = all
    new_alerts_after: int = -1  # with changed_since: also the alerts with a greater id (created since); -1 = none
    as_of: str = ""  # ISO-8601 instant to evaluate at (replays, tests); empty = now


@dg.asset(
    partitions_def=ALERT_WINDOWS,
    deps=["risk_scores"],
    group_name="alerts",
    kinds={"postgres"},
    owners=["team:data"],
    retry_policy=dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS),
    description=(
        "alert_events (the outbox): every active household alert evaluated set-based against current "
        "offers, price statistics and risk scores; a firing alert inserts one pending event with a "
        "unique dedupe key, in the transaction that records the evaluation (alert_evaluations). The "
        "partition is the 15-minute window the evaluation ran in."
    ),
)
def alert_candidates(context: dg.AssetExecutionContext, config: AlertEvaluationConfig,
                     database: Database) -> dg.MaterializeResult:
    now = _instant(config.as_of, "as_of") or datetime.now(UTC)
    changed_since = _instant(config.changed_since, "changed_since")
    try:
        with database.transaction() as conn:
            evaluation = alerts_db.evaluate_alerts(
                conn, now=now, partition_key=context.partition_key, run_id=context.run.run_id,
                changed_since=changed_since,
                new_alerts_after=config.new_alerts_after if config.new_alerts_after >= 0 else None)
    except psycopg.OperationalError:
        raise  # transient: the RetryPolicy re-runs; nothing was committed
    mode = "triggered" if changed_since else "full"
    context.log.info(f"alert evaluation ({mode}): {evaluation.alerts_evaluated} alert(s), "
                     f"{evaluation.matched} matching, {evaluation.events_created} new event(s)")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": evaluation.events_created, "mode": mode, **evaluation.metadata(),
    })


alert_evaluation_job = dg.define_asset_job(
    "alert_evaluation", selection=dg.AssetSelection.assets(alert_candidates),
    description="Evaluate household alerts into the notification outbox.", tags={"smartbuy/kind": "alerts"},
)

alert_candidates_schedule = dg.build_schedule_from_partitioned_job(
    alert_evaluation_job, name="alert_candidates_every_15_min", default_status=dg.DefaultScheduleStatus.RUNNING,
)


@dg.sensor(job=alert_evaluation_job, minimum_interval_seconds=5, default_status=dg.DefaultSensorStatus.RUNNING,
           description="When a price batch (or a risk rescoring) commits, or alerts are created, evaluate the "
                       "alerts whose offers changed and the new alerts.")
def alert_candidates_on_price_batch(context: dg.SensorEvaluationContext, database: Database):
    with psycopg.connect(database.database_url.url, application_name="smartbuy-sensor") as conn:
        batches, risk, newest_alert, seen_at = conn.execute(LANDED_SQL).fetchone()
    if not batches and not risk:
        return dg.SkipReason("no price batch has landed yet")
    previous = json.loads(context.cursor) if context.cursor else {}
    landed = {"price_batches": batches, "risk_changes": risk, "newest_alert": newest_alert}
    if all(previous.get(k) == v for k, v in landed.items()):
        return dg.SkipReason("no new price batch")
    waiting = context.instance.get_runs_count(dg.RunsFilter(
        job_name=alert_evaluation_job.name,
        statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING]))
    if waiting:  # the cursor stays: the next tick covers these batches too
        return dg.SkipReason("an alert evaluation is already waiting to start")
    # Everything counted at the previous tick was committed by then; what landed since was fetched
    # at most TRIGGER_OVERLAP before it. The first trigger looks back one schedule window more.
    previous_at = datetime.fromisoformat(previous["seen_at"]) if "seen_at" in previous \
        else seen_at - timedelta(minutes=15)
    since = previous_at - TRIGGER_OVERLAP
    config = {"changed_since": since.isoformat()}
    if previous.get("newest_alert") is not None:  # alerts created since the previous tick
        config["new_alerts_after"] = previous["newest_alert"]
    return dg.SensorResult(
        run_requests=[dg.RunRequest(
            run_key=f"prices-{batches}-risk-{risk}-alerts-{newest_alert}",
            partition_key=window_key(seen_at),
            run_config={"ops": {"alert_candidates": {"config": config}}},
            tags={"smartbuy/trigger": "price_batch"},
        )],
        cursor=json.dumps({**landed, "seen_at": seen_at.isoformat()}),
    )
