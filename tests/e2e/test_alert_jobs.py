"""The Dagster side of alerts: the price-batch trigger sensor, the 15-minute schedule, and a good
price travelling alert_evaluation -> outbox -> dispatch_notifications -> a real local webhook."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
import pytest

from smartbuy_pipeline.defs.alerts import TRIGGER_OVERLAP, window_key
from smartbuy_pipeline.defs.notifications import ALLOW_PRIVATE_NETWORK_ENV, Notifier
from smartbuy_pipeline.defs.resources import Database
from smartbuy_pipeline.notifications.inbox import LocalInbox
from tests.integration.test_notification_dispatch import SECRET, catalog, channel, household


@pytest.fixture()
def inbox():
    with LocalInbox() as box:
        yield box


def tick(definitions, instance, db_url, cursor=None):
    sensor = definitions.resolve_sensor_def("alert_candidates_on_price_batch")
    with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=definitions,
                                 resources={"database": Database(url=db_url.url)}) as ctx:
        return sensor.evaluate_tick(ctx)


def land_batch(db_url, started_at: datetime, partition: str) -> None:
    with psycopg.connect(db_url.url, autocommit=True) as conn:
        # a committed batch adds one to its run's checkpoint; updated_at is its transaction's start
        conn.execute("insert into price_tracking_progress (partition_key, shard, shard_count, batches, updated_at)"
                     " values (%s, 0, 4, 1, %s)", (partition, started_at))


def seen_at(result) -> datetime:
    return datetime.fromisoformat(json.loads(result.cursor)["seen_at"])


def test_a_landed_price_batch_triggers_a_scoped_evaluation_once(definitions, instance, db_url):
    first = tick(definitions, instance, db_url)
    assert first.run_requests == [] and first.skip_message == "no price batch has landed yet"
    t1 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    land_batch(db_url, t1, "2026-11-26-10:00")
    before = datetime.now(UTC)
    second = tick(definitions, instance, db_url)
    (request,) = second.run_requests
    assert request.run_key == "prices-1-risk-0-alerts-0"
    assert before <= seen_at(second) <= datetime.now(UTC)
    assert request.partition_key == window_key(seen_at(second))
    config = request.run_config["ops"]["alert_candidates"]["config"]
    assert datetime.fromisoformat(config["changed_since"]) == seen_at(second) - timedelta(minutes=15) - TRIGGER_OVERLAP
    assert "new_alerts_after" not in config  # no earlier tick to tell which alerts are new
    # the same batch on the next tick: nothing new
    third = tick(definitions, instance, db_url, cursor=second.cursor)
    assert third.run_requests == [] and third.skip_message == "no new price batch"
    # A batch whose transaction started before the first one's but committed after the tick that
    # saw it (shards commit in parallel): still news. Evaluated since the previous trigger, with
    # the overlap for what it fetched before committing.
    land_batch(db_url, t1 - timedelta(seconds=20), "2026-11-26-10:00-b")
    fourth = tick(definitions, instance, db_url, cursor=second.cursor)
    (request,) = fourth.run_requests
    assert request.run_key == "prices-2-risk-0-alerts-0"
    config = request.run_config["ops"]["alert_candidates"]["config"]
    assert datetime.fromisoformat(config["changed_since"]) == seen_at(second) - TRIGGER_OVERLAP
    assert config["new_alerts_after"] == 0
    assert {k: v for k, v in json.loads(fourth.cursor).items() if k != "seen_at"} == {
        "price_batches": 2, "risk_changes": 0, "newest_alert": 0}
    # a rescoring that changed a score is news too
    with psycopg.connect(db_url.url, autocommit=True) as conn:
        _, offer = catalog(conn)
        conn.execute("insert into offer_risk_score_history (offer_id, score, bucket, model_version)"
                     " values (%s, 40, 'C', 't')", (offer,))
    fifth = tick(definitions, instance, db_url, cursor=fourth.cursor)
    (request,) = fifth.run_requests
    assert request.run_key.startswith("prices-2-risk-") and request.run_key != "prices-2-risk-0-alerts-0"
    # a household creates an alert: evaluated on the next tick (a first match at creation), not at
    # the next schedule
    with psycopg.connect(db_url.url, autocommit=True) as conn:
        ha = household(conn, "ana@example.com")
        alert = conn.execute("insert into alerts (household_id, alert_type, offer_id) values (%s, 'NEW_LOW', %s)"
                             " returning id", (ha, offer)).fetchone()[0]
    sixth = tick(definitions, instance, db_url, cursor=fifth.cursor)
    (request,) = sixth.run_requests
    assert request.run_key.endswith(f"-alerts-{alert}")
    assert request.run_config["ops"]["alert_candidates"]["config"]["new_alerts_after"] == 0  # none before it


def test_schedule_evaluates_the_window_it_runs_in(definitions, instance):
    schedule = definitions.resolve_schedule_def("alert_candidates_every_15_min")
    assert schedule.cron_schedule == "*/15 * * * *"
    at = datetime(2026, 11, 26, 12, 30, tzinfo=UTC)
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=at) as ctx:
        result = schedule.evaluate_tick(ctx)
    assert [r.partition_key for r in result.run_requests] == ["2026-11-26-12:30"]


def test_good_price_reaches_the_household_webhook_through_dagster_once(definitions, instance, db_url, inbox,
                                                                       monkeypatch):
    monkeypatch.setenv(ALLOW_PRIVATE_NETWORK_ENV, "true")
    with psycopg.connect(db_url.url, autocommit=True) as conn:
        ha = household(conn, "ana@example.com")
        hb = household(conn, "bruno@example.com")
        product, offer = catalog(conn)  # Air Fryer at R$ 349,90
        conn.execute("insert into offer_risk_scores (offer_id, score, bucket, model_version) values (%s, 91, 'A', 't')",
                     (offer,))
        conn.execute("update offers set availability = 'in_stock', last_changed_at = now() where id = %s", (offer,))
        channel(conn, ha, "webhook", inbox.webhook_url("ana", secret=SECRET), SECRET)
        channel(conn, hb, "webhook", inbox.webhook_url("bruno", secret=SECRET), SECRET)
        conn.execute("insert into alerts (household_id, alert_type, product_id, params)"
                     " values (%s, 'TARGET_PRICE', %s, '{\"target\": 350}')", (ha, product))
        conn.execute("insert into alerts (household_id, alert_type, product_id, params)"
                     " values (%s, 'TARGET_PRICE', %s, '{\"target\": 300}')", (hb, product))
    resources = {"database": Database(url=db_url.url), "notifier": Notifier()}
    partition = window_key(datetime.now(UTC))
    evaluate = definitions.resolve_job_def("alert_evaluation")
    result = evaluate.execute_in_process(instance=instance, partition_key=partition, resources=resources)
    assert result.success
    (mat,) = result.asset_materializations_for_node("alert_candidates")
    md = {k: v.value for k, v in mat.metadata.items()}
    assert (md["mode"], md["alerts_evaluated"], md["matched"], md["events_created"]) == ("full", 2, 1, 1)
    assert mat.partition == partition

    dispatch = definitions.resolve_job_def("dispatch_notifications")
    assert dispatch.execute_in_process(instance=instance, resources=resources).success
    (hook,) = inbox.hooks("ana")
    assert (hook.body["alert_type"], hook.body["price"], hook.body["reference_price"]) == ("TARGET_PRICE", "349.90",
                                                                                          "350.00")
    assert hook.signature_ok is True and inbox.received("bruno") == 0  # bruno's target is 300

    # evaluated again: the same price is never notified twice
    again = evaluate.execute_in_process(instance=instance, partition_key=partition, resources=resources)
    (mat,) = again.asset_materializations_for_node("alert_candidates")
    assert mat.metadata["events_created"].value == 0
    assert dispatch.execute_in_process(instance=instance, resources=resources).success
    assert inbox.received("ana") == 1
