"""Notification dispatch: the sensor over the outbox, the dispatch job, re-driving dead letters,
and the ops alert on failed runs.

Thin: the outbox SQL lives in `smartbuy_pipeline.db.notifications`, the dispatch pass in
`smartbuy_pipeline.notifications.dispatch`, the channels in `smartbuy_pipeline.notifications.channels`.
Channel settings and secrets come from the environment when a run starts (`Notifier`), so they
never appear in run config, metadata or the UI.
"""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg

from smartbuy_pipeline.db import notifications as notifications_db
from smartbuy_pipeline.defs.resources import Database
from smartbuy_pipeline.defs.risk import actor_of
from smartbuy_pipeline.notifications.channels import ChannelSettings, Delivery, DeliveryResult, Outcome, deliver_all
from smartbuy_pipeline.notifications.dispatch import DispatchSettings, dispatch

# Environment variables the channels read when a run starts (docs/notifications.md).
SMTP_HOST_ENV = "SMARTBUY_SMTP_HOST"
SMTP_PORT_ENV = "SMARTBUY_SMTP_PORT"
SMTP_STARTTLS_ENV = "SMARTBUY_SMTP_STARTTLS"
SMTP_USERNAME_ENV = "SMARTBUY_SMTP_USERNAME"
SMTP_PASSWORD_ENV = "SMARTBUY_SMTP_PASSWORD"  # secret
MAIL_FROM_ENV = "SMARTBUY_MAIL_FROM"
VAPID_PRIVATE_KEY_ENV = "SMARTBUY_VAPID_PRIVATE_KEY"  # secret
VAPID_SUBJECT_ENV = "SMARTBUY_VAPID_SUBJECT"
ALLOW_PRIVATE_NETWORK_ENV = "SMARTBUY_NOTIFY_ALLOW_PRIVATE_NETWORK"
OPS_ALERT_URL_ENV = "SMARTBUY_OPS_ALERT_URL"  # secret: an Apprise URL or an https webhook
OPS_ALERT_SECRET_ENV = "SMARTBUY_OPS_ALERT_SECRET"  # secret: the ops webhook's HMAC key
UI_URL_ENV = "SMARTBUY_UI_URL"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class NotifierConfigError(ValueError):
    """A channel setting in the environment is malformed (the message names the variable)."""


def _env(name: str) -> str | None:
    value = dg.EnvVar(name).get_value()
    return value.strip() if value is not None and value.strip() else None


def _env_bool(name: str, default: bool) -> bool:
    value = _env(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise NotifierConfigError(f"{name} must be true or false, got {value!r}")


def _env_port(name: str, default: int) -> int:
    value = _env(name)
    if value is None:
        return default
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise NotifierConfigError(f"{name} must be a TCP port (1-65535), got {value!r}")
    return int(value)


class Notifier(dg.ConfigurableResource):
    """How notifications are sent. Deployment settings and secrets are read from the environment
    (SMARTBUY_SMTP_*, SMARTBUY_MAIL_FROM, SMARTBUY_VAPID_*, SMARTBUY_NOTIFY_ALLOW_PRIVATE_NETWORK)
    when the run starts; only tuning lives in config."""

    timeout_s: float = 10.0
    concurrency: int = 64

    def settings(self) -> ChannelSettings:
        return ChannelSettings(
            smtp_host=_env(SMTP_HOST_ENV) or "localhost",
            smtp_port=_env_port(SMTP_PORT_ENV, 25),
            smtp_starttls=_env_bool(SMTP_STARTTLS_ENV, False),
            smtp_username=_env(SMTP_USERNAME_ENV),
            smtp_password=_env(SMTP_PASSWORD_ENV),
            mail_from=_env(MAIL_FROM_ENV) or ChannelSettings.mail_from,
            vapid_private_key=_env(VAPID_PRIVATE_KEY_ENV),
            vapid_subject=_env(VAPID_SUBJECT_ENV) or ChannelSettings.vapid_subject,
            allow_private_network=_env_bool(ALLOW_PRIVATE_NETWORK_ENV, False),
            timeout_s=self.timeout_s,
            concurrency=self.concurrency,
        )


class DispatchConfig(dg.Config):
    rate_limit_per_hour: int = notifications_db.DEFAULT_RATE_LIMIT_PER_HOUR  # per household; the rest -> one digest
    max_attempts: int = notifications_db.DEFAULT_MAX_ATTEMPTS  # then the delivery is a dead letter
    claim_lease_s: int = int(notifications_db.DEFAULT_CLAIM_LEASE.total_seconds())  # re-claim a dead run's work after
    claim_size: int = 1000
    max_deliveries: int = 50_000


@dg.op(tags={"smartbuy/kind": "notifications"})
def send_notifications(context: dg.OpExecutionContext, config: DispatchConfig, database: Database,
                       notifier: Notifier) -> dg.Output:
    """Release the outbox (rate limit, digests), then send every due delivery through the
    household's channels and record each attempt."""
    try:
        settings = DispatchSettings(rate_limit_per_hour=config.rate_limit_per_hour, max_attempts=config.max_attempts,
                                    claim_lease=timedelta(seconds=config.claim_lease_s),
                                    claim_size=config.claim_size, max_deliveries=config.max_deliveries)
        channels = notifier.settings()
    except ValueError as exc:  # a malformed setting: say which, don't retry
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    report = dispatch(lambda: psycopg.connect(database.database_url.url, application_name="smartbuy-dispatch"),
                      run_id=context.run.run_id, channels=channels, settings=settings, log=context.log.info)
    for error, count in report.errors.most_common(10):  # secret-free by construction (channels.py)
        context.log.warning(f"{count} attempt(s) failed: {error}")
    return dg.Output(None, metadata=report.metadata())


@dg.job(
    description="Send pending notifications and due retries through each household's channels "
                "(webhook, e-mail, Apprise, Web Push); launched by the notification_dispatch sensor.",
    tags={"smartbuy/kind": "notifications"},
)
def dispatch_notifications():
    send_notifications()


def _active_runs(context: dg.SensorEvaluationContext, job_name: str) -> int:
    return context.instance.get_runs_count(dg.RunsFilter(
        job_name=job_name,
        statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING],
    ))


@dg.sensor(job=dispatch_notifications, minimum_interval_seconds=5, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Launches a dispatch run for new outbox events (run_key: the newest event id) and, "
                       "at most once a minute, for due retries, due digests and expired claims.")
def notification_dispatch(context: dg.SensorEvaluationContext, database: Database):
    cursor = json.loads(context.cursor) if context.cursor else {"event": 0}
    with psycopg.connect(database.database_url.url, application_name="smartbuy-sensor") as conn:
        state = notifications_db.dispatch_state(conn)
    newest = state.last_pending_event or 0
    if _active_runs(context, dispatch_notifications.name):
        return dg.SkipReason("a dispatch run is already waiting to start; it will take the new work")
    if newest > cursor["event"]:
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=f"events-through-{newest}", tags={"smartbuy/trigger": "outbox"})],
            cursor=json.dumps({**cursor, "event": newest}),
        )
    if state.work_due:  # retries, digests, expired claims, or events an earlier run left pending
        minute = datetime.now(UTC).strftime("%Y%m%dT%H%M")
        return dg.RunRequest(run_key=f"due-{minute}", tags={"smartbuy/trigger": "due"})
    return dg.SkipReason("nothing pending or due")


class RedriveConfig(dg.Config):
    delivery_ids: list[int] = []  # these dead letters; empty = every dead letter matching the filters
    household_id: str = ""  # only this household's
    dead_since: str = ""  # ISO-8601 with offset: only those dead since
    reason: str = ""  # why (kept in the audit row)


@dg.op(tags={"smartbuy/kind": "notifications"})
def redrive_dead_letters(context: dg.OpExecutionContext, config: RedriveConfig, database: Database) -> dg.Output:
    """Dead deliveries back to pending (attempts reset); one REDRIVE_NOTIFICATIONS audit row."""
    actor = actor_of(dict(context.run.tags))
    dead_since = None
    if config.dead_since:
        dead_since = datetime.fromisoformat(config.dead_since)
        if dead_since.tzinfo is None:
            raise dg.Failure(description=f"dead_since must carry a UTC offset: {config.dead_since!r}",
                             allow_retries=False)
    try:
        with database.transaction() as conn:
            redrive = notifications_db.redrive_dead(
                conn, actor=actor, reason=config.reason, now=datetime.now(UTC), delivery_ids=config.delivery_ids,
                household_id=config.household_id or None, dead_since=dead_since)
    except (ValueError, psycopg.errors.InvalidTextRepresentation) as exc:
        raise dg.Failure(description=f"redrive refused: {exc}", allow_retries=False) from exc
    context.log.info(f"{actor} re-drove {redrive.count} dead letter(s); the dispatch sensor sends them next")
    return dg.Output(None, metadata={"actor": actor, "redriven": redrive.count,
                                     "delivery_ids": dg.MetadataValue.json(redrive.delivery_ids[:1000])})


@dg.job(description="Re-drive dead notification deliveries (audited as REDRIVE_NOTIFICATIONS).",
        tags={"smartbuy/kind": "notifications"})
def redrive_notifications():
    redrive_dead_letters()


class OpsAlerts(dg.ConfigurableResource):
    """Where failed runs are reported: SMARTBUY_OPS_ALERT_URL (an Apprise URL such as ntfy://,
    tgram://, slack://, or an http(s) webhook signed with SMARTBUY_OPS_ALERT_SECRET), read when
    the sensor runs. SMARTBUY_UI_URL is the base of the run links."""

    timeout_s: float = 10.0

    def target(self) -> tuple[str, str, str | None] | None:
        url = _env(OPS_ALERT_URL_ENV)
        if url is None:
            return None
        kind = "webhook" if url.lower().startswith(("http://", "https://")) else "apprise"
        return kind, url, _env(OPS_ALERT_SECRET_ENV)

    def ui_url(self) -> str:
        return (_env(UI_URL_ENV) or "http://127.0.0.1:3000").rstrip("/")


def run_failure_payload(run: dg.DagsterRun, error: str, ui_url: str) -> dict:
    partition = run.tags.get("dagster/partition") or (
        f"{run.tags['dagster/asset_partition_range_start']}..{run.tags['dagster/asset_partition_range_end']}"
        if "dagster/asset_partition_range_start" in run.tags else None)
    return {"kind": "ops", "title": f"SmartBuy: run failed: {run.job_name}" + (f" [{partition}]" if partition else ""),
            "body": (error or "no error message").strip()[:1500], "job": run.job_name, "partition": partition,
            "run_id": run.run_id, "url": f"{ui_url}/runs/{run.run_id}"}


def _failure_text(context: dg.RunFailureSensorContext) -> str:
    """The run's failure message plus its failed steps' errors (what ops need to triage)."""
    lines = [context.failure_event.message or "run failed"]
    for record in context.instance.all_logs(context.dagster_run.run_id,
                                            of_type=dg.DagsterEventType.STEP_FAILURE)[:3]:
        event = record.dagster_event
        error = event.step_failure_data.error if event and event.step_failure_data else None
        if error is not None:
            lines.append(f"{event.step_key}: {error.message.strip()}")
    return "\n".join(lines)


@dg.run_failure_sensor(monitor_all_code_locations=True, default_status=dg.DefaultSensorStatus.RUNNING,
                       minimum_interval_seconds=30,
                       description="Reports every failed run (job, partition, error, link) to the ops channel.")
def ops_run_failure_alert(context: dg.RunFailureSensorContext, ops_alerts: OpsAlerts):
    target = ops_alerts.target()
    if target is None:
        context.log.warning(f"{OPS_ALERT_URL_ENV} is not set: failed run {context.dagster_run.run_id} not reported")
        return
    kind, url, secret = target
    payload = run_failure_payload(context.dagster_run, _failure_text(context), ops_alerts.ui_url())
    results: list[DeliveryResult] = []
    delivery = Delivery(delivery_id=0, attempt=1, channel_id=0, kind=kind, target=url, secret=secret, payload=payload,
                        idempotency_key=f"run-failure-{context.dagster_run.run_id}")
    deliver_all([delivery], ChannelSettings(timeout_s=ops_alerts.timeout_s,
                                            allow_private_network=_env_bool(ALLOW_PRIVATE_NETWORK_ENV, False)),
                on_results=results.extend)
    outcome = results[0] if results else None
    if outcome is None or outcome.outcome != Outcome.SENT:
        # Fail the tick so it shows in the UI; the error is secret-free (channels.py).
        raise RuntimeError(f"ops alert for run {context.dagster_run.run_id} not delivered: "
                           f"{outcome.error if outcome else 'no result'}")
    context.log.info(f"ops alerted: run {context.dagster_run.run_id} ({context.dagster_run.job_name}) failed")
