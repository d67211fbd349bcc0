"""The Dagster side of notifications: the dispatch sensor's cursor, the dispatch and re-drive
jobs through Dagster's machinery, the ops alert on a failed run. Real PostgreSQL, real local
receivers (LocalInbox), a throwaway Dagster instance."""

from __future__ import annotations

import json

import dagster as dg
import psycopg
import pytest

from smartbuy_pipeline.defs.notifications import (
    ALLOW_PRIVATE_NETWORK_ENV, OPS_ALERT_SECRET_ENV, OPS_ALERT_URL_ENV, SMTP_PORT_ENV, UI_URL_ENV, Notifier,
    OpsAlerts,
)
from smartbuy_pipeline.defs.resources import Database
from smartbuy_pipeline.notifications.inbox import LocalInbox
from tests.integration.test_notification_dispatch import SECRET, catalog, channel, events, household

OPS_SECRET = "ops-hmac-secret"


@pytest.fixture()
def inbox():
    with LocalInbox() as box:
        yield box


@pytest.fixture()
def world(db_url, inbox):
    with psycopg.connect(db_url.url, autocommit=True) as conn:
        ha = household(conn, "ana@example.com")
        product, offer = catalog(conn)
        channel(conn, ha, "webhook", inbox.webhook_url("ana", secret=SECRET), SECRET)
        channel(conn, ha, "email", "ana@example.com")
        return {"conn_url": db_url, "household": ha, "product": product, "offer": offer}


@pytest.fixture()
def env(monkeypatch, inbox):
    monkeypatch.setenv(ALLOW_PRIVATE_NETWORK_ENV, "true")
    monkeypatch.setenv(SMTP_PORT_ENV, str(inbox.smtp_port))


def add_events(db_url, world, n):
    with psycopg.connect(db_url.url, autocommit=True) as conn:
        return events(conn, world["household"], world["product"], world["offer"], n)


def tick(definitions, instance, db_url, cursor=None):
    sensor = definitions.resolve_sensor_def("notification_dispatch")
    with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=definitions,
                                 resources={"database": Database(url=db_url.url)}) as ctx:
        return sensor.evaluate_tick(ctx)


def test_two_sensor_ticks_over_the_same_events_launch_one_dispatch(definitions, instance, db_url, world):
    first = tick(definitions, instance, db_url)
    assert first.run_requests == [] and first.skip_message == "nothing pending or due"
    ids = add_events(db_url, world, 3)
    second = tick(definitions, instance, db_url, cursor=first.cursor)
    assert [r.run_key for r in second.run_requests] == [f"events-through-{max(ids)}"]
    assert json.loads(second.cursor) == {"event": max(ids)}
    # the same events on the next tick: the cursor has passed them, no second run
    third = tick(definitions, instance, db_url, cursor=second.cursor)
    assert third.run_requests == [] and third.skip_message == "nothing pending or due"
    # a run that died before releasing them: a minute later the sensor launches a catch-up run
    with psycopg.connect(db_url.url, autocommit=True) as conn:
        conn.execute("update alert_events set release_at = release_at - interval '2 minutes'")
    fourth = tick(definitions, instance, db_url, cursor=second.cursor)
    assert [r.run_key[:4] for r in fourth.run_requests] == ["due-"]


def test_dispatch_job_sends_and_reports_numeric_metadata_without_secrets(definitions, instance, db_url, world,
                                                                        inbox, env):
    add_events(db_url, world, 4)
    result = definitions.resolve_job_def("dispatch_notifications").execute_in_process(
        instance=instance, resources={"database": Database(url=db_url.url), "notifier": Notifier()})
    assert result.success
    output = next(e for e in result.all_events if e.event_type_value == "STEP_OUTPUT")
    md = {k: v.value for k, v in output.step_output_data.metadata.items()}
    assert (md["events_released"], md["deliveries_created"], md["sent"], md["failed"], md["dead_lettered"]) == (
        4, 8, 8, 0, 0)
    assert isinstance(md["latency_p95_s"], float)
    assert inbox.unique("ana") == 4 and len(inbox.messages) == 4
    # neither the webhook's secret nor the channel targets reach the event log
    logs = json.dumps([str(e) for e in instance.all_logs(result.run_id)])
    for sensitive in (SECRET, inbox.webhook_url("ana"), "ana@example.com"):
        assert sensitive not in logs


def test_malformed_setting_fails_the_run_with_the_variable_named(definitions, instance, db_url, world,
                                                                 monkeypatch):
    monkeypatch.setenv(SMTP_PORT_ENV, "twenty-five")
    result = definitions.resolve_job_def("dispatch_notifications").execute_in_process(
        instance=instance, resources={"database": Database(url=db_url.url), "notifier": Notifier()},
        raise_on_error=False)
    assert not result.success
    failure = result.failure_data_for_node("send_notifications")
    assert f"{SMTP_PORT_ENV} must be a TCP port (1-65535), got 'twenty-five'" in failure.error.message


def test_redrive_job_audits_the_actor(definitions, instance, db_url, world, inbox, env):
    add_events(db_url, world, 1)
    inbox.down("ana")
    resources = {"database": Database(url=db_url.url), "notifier": Notifier()}
    run_config = {"ops": {"send_notifications": {"config": {"max_attempts": 1}}}}
    job = definitions.resolve_job_def("dispatch_notifications")
    assert job.execute_in_process(instance=instance, resources=resources, run_config=run_config).success
    with psycopg.connect(db_url.url) as conn:
        dead = [r[0] for r in conn.execute("select id from notification_deliveries where status = 'dead'")]
    assert len(dead) == 1  # the webhook; the e-mail went out
    result = definitions.resolve_job_def("redrive_notifications").execute_in_process(
        instance=instance, resources={"database": Database(url=db_url.url)},
        run_config={"ops": {"redrive_dead_letters": {"config": {"delivery_ids": dead, "reason": "receiver back"}}}},
        tags={"dagster/user": "maria@smartbuy.example"})
    assert result.success
    with psycopg.connect(db_url.url) as conn:
        actor, payload = conn.execute("select actor, payload from ops_audit_logs"
                                      " where action_type = 'REDRIVE_NOTIFICATIONS'").fetchone()
        assert conn.execute("select status from notification_deliveries where id = %s", (dead[0],)).fetchone() == (
            "pending",)
    assert actor == "maria@smartbuy.example" and payload["delivery_ids"] == dead
    inbox.up("ana")
    assert job.execute_in_process(instance=instance, resources=resources).success
    assert inbox.unique("ana") == 1


def report_failure(definitions, instance, failed) -> None:
    """Run the ops_run_failure_alert sensor on a failed in-process run."""
    sensor = definitions.resolve_sensor_def("ops_run_failure_alert")
    ctx = dg.build_run_status_sensor_context(
        sensor_name=sensor.name, dagster_instance=instance, dagster_run=failed.dagster_run,
        dagster_event=failed.get_run_failure_event(), resources={"ops_alerts": OpsAlerts()},
    ).for_run_failure()
    sensor(ctx)


def test_failed_run_is_reported_to_the_ops_webhook(definitions, instance, db_url, world, inbox, monkeypatch):
    monkeypatch.setenv(SMTP_PORT_ENV, "0")  # a broken deployment setting: the dispatch run fails
    failed = definitions.resolve_job_def("dispatch_notifications").execute_in_process(
        instance=instance, resources={"database": Database(url=db_url.url), "notifier": Notifier()},
        raise_on_error=False)
    assert not failed.success
    monkeypatch.setenv(OPS_ALERT_URL_ENV, inbox.webhook_url("ops", secret=OPS_SECRET))
    monkeypatch.setenv(OPS_ALERT_SECRET_ENV, OPS_SECRET)
    monkeypatch.setenv(ALLOW_PRIVATE_NETWORK_ENV, "true")
    monkeypatch.setenv(UI_URL_ENV, "http://dagster.ops.example:3000/")
    report_failure(definitions, instance, failed)
    assert inbox.unique("ops") == 1
    body = inbox.hooks("ops")[0].body
    assert body["job"] == "dispatch_notifications"
    assert body["url"] == f"http://dagster.ops.example:3000/runs/{failed.run_id}"
    assert body["run_id"] == failed.run_id and "SMARTBUY_SMTP_PORT" in body["body"]
    assert inbox.hooks("ops")[0].headers["Idempotency-Key"] == f"run-failure-{failed.run_id}"


def test_failed_partitioned_run_is_reported_through_an_apprise_url(definitions, instance, db_url, inbox, monkeypatch):
    # an alert evaluation of one 15-minute window, given an instant without an offset: it fails
    failed = definitions.resolve_job_def("alert_evaluation").execute_in_process(
        instance=instance, partition_key="2026-11-26-12:30", raise_on_error=False,
        resources={"database": Database(url=db_url.url)},
        run_config={"ops": {"alert_candidates": {"config": {"as_of": "2026-11-26T12:30:00"}}}})
    assert not failed.success
    monkeypatch.setenv(OPS_ALERT_URL_ENV, inbox.apprise_url("ops"))  # json:// : Apprise posts it here
    monkeypatch.setenv(ALLOW_PRIVATE_NETWORK_ENV, "true")
    monkeypatch.setenv(UI_URL_ENV, "http://dagster.ops.example:3000")
    report_failure(definitions, instance, failed)
    (notice,) = inbox.apprise("ops")
    assert notice.title == "SmartBuy: run failed: alert_evaluation [2026-11-26-12:30]"
    assert "as_of must carry a UTC offset" in notice.message
    assert f"http://dagster.ops.example:3000/runs/{failed.run_id}" in notice.message
