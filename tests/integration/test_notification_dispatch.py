"""Notification dispatch against a real PostgreSQL and real local receivers (LocalInbox: an
aiohttp webhook receiver and an aiosmtpd SMTP server). The one stand-in: LocalInbox's /push
endpoint plays the remote Web Push service (a browser vendor's push server cannot run here), so
the 404/410 "subscription gone" answer comes from it; everything else is the real component."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from smartbuy_pipeline.db import notifications as db
from smartbuy_pipeline.notifications.dispatch import DispatchSettings, dispatch
from smartbuy_pipeline.notifications.inbox import LocalInbox
from tests.support import sign_up

SECRET = "hmac-secret-do-not-log"
NOW = datetime.now(UTC).replace(microsecond=0)  # latency is measured against the real clock


@pytest.fixture()
def inbox():
    with LocalInbox() as box:
        yield box


@pytest.fixture()
def conn(db_url):
    with psycopg.connect(db_url.url, autocommit=True) as c:
        yield c


def connector(db_url):
    return lambda: psycopg.connect(db_url.url)


def household(conn, email: str) -> str:
    return sign_up(conn, email)[1]


def catalog(conn) -> tuple[int, int]:
    product = conn.execute("insert into products (gtin, name) values ('07891234567895', 'Air Fryer 4L') returning id"
                           ).fetchone()[0]
    shop = conn.execute("insert into shops (name, domain) values ('Loja Boa', 'lojaboa.example') returning id").fetchone()[0]
    offer = conn.execute(
        "insert into offers (product_id, shop_id, source_kind, locator, price, currency)"
        " values (%s, %s, 'page', 'https://lojaboa.example/p/1', 349.90, 'BRL') returning id",
        (product, shop)).fetchone()[0]
    return product, offer


def channel(conn, household_id: str, kind: str, target: str, secret: str | None = None) -> int:
    return conn.execute("insert into notification_channels (household_id, kind, target, secret) values (%s, %s, %s, %s)"
                        " returning id", (household_id, kind, target, secret)).fetchone()[0]


def payload(household_id: str, alert_id: int, offer_id: int, product_id: int, price: str) -> dict:
    return {"kind": "alert", "alert_id": alert_id, "alert_type": "TARGET_PRICE", "household_id": household_id,
            "product_id": product_id, "product_name": "Air Fryer 4L", "gtin": "07891234567895",
            "offer_id": offer_id, "shop_id": 1, "shop_name": "Loja Boa", "url": "https://lojaboa.example/p/1",
            "price": price, "currency": "BRL", "freight": None, "total": None, "reference_price": "350.00",
            "reference_kind": "target", "previous_notified_price": None, "risk_bucket": "A", "risk_score": 91,
            "availability": "in_stock", "observed_at": "2026-11-27T11:59:00Z"}


def events(conn, household_id: str, product: int, offer: int, n: int, *, created_at: datetime = NOW) -> list[int]:
    # the alert is older than the observations: latency counts from them
    alert = conn.execute(
        "insert into alerts (household_id, alert_type, product_id, params, created_at) values (%s, 'TARGET_PRICE', %s,"
        " '{\"target\": 350}', %s) returning id", (household_id, product, created_at - timedelta(minutes=2))).fetchone()[0]
    ids = []
    for i in range(n):
        price = f"{349 - i}.90"
        ids.append(conn.execute(
            "insert into alert_events (alert_id, household_id, offer_id, dedupe_key, price, currency, observed_at,"
            " payload, created_at, release_at) values (%s, %s, %s, %s, %s, 'BRL', %s, %s, %s, %s) returning id",
            (alert, household_id, offer, f"test:{alert}:{i}", price, created_at - timedelta(minutes=1),
             json.dumps(payload(household_id, alert, offer, product, price)), created_at, created_at)).fetchone()[0])
    return ids


def statuses(conn, table: str) -> dict[str, int]:
    return dict(conn.execute(f"select status, count(*) from {table} group by status").fetchall())


def run(db_url, inbox, *, at: datetime = NOW, run_id: str = "run-1", **settings):
    return dispatch(connector(db_url), run_id=run_id, channels=inbox.channel_settings(),
                    settings=DispatchSettings(**settings), now_fn=lambda: at)


def test_events_reach_every_enabled_channel_of_their_household_once(conn, db_url, inbox):
    ha, hb = household(conn, "ana@example.com"), household(conn, "bruno@example.com")
    product, offer = catalog(conn)
    channel(conn, ha, "webhook", inbox.webhook_url("ana", secret=SECRET), SECRET)
    channel(conn, ha, "email", "ana@example.com")
    channel(conn, hb, "webhook", inbox.webhook_url("bruno", secret="bruno-secret"), "bruno-secret")
    off = channel(conn, hb, "email", "bruno@example.com")
    conn.execute("update notification_channels set enabled = false where id = %s", (off,))
    events(conn, ha, product, offer, 3)
    events(conn, hb, product, offer, 2)

    report = run(db_url, inbox)

    assert (report.released.dispatched, report.released.deliveries_created) == (5, 3 * 2 + 2 * 1)
    assert (report.sent, report.failed, report.dead_lettered) == (8, 0, 0)
    assert inbox.unique("ana") == 3 and inbox.received("ana") == 3
    assert inbox.unique("bruno") == 2 and inbox.received("bruno") == 2
    # household A's alerts never reach household B's channels, and the other way round
    assert {h.body["household_id"] for h in inbox.hooks("ana")} == {ha}
    assert {h.body["household_id"] for h in inbox.hooks("bruno")} == {hb}
    assert sorted(str(m["To"]) for m in inbox.messages) == ["ana@example.com"] * 3
    assert statuses(conn, "notification_deliveries") == {"sent": 8}
    assert statuses(conn, "alert_events") == {"dispatched": 5}
    assert conn.execute("select count(*), min(attempt), max(attempt) from notification_attempts"
                        " where outcome = 'sent'").fetchone() == (8, 1, 1)
    # a second pass finds nothing to do: nothing is sent twice
    again = run(db_url, inbox, run_id="run-2")
    assert (again.released.dispatched, again.claimed) == (0, 0)
    assert inbox.received("ana") == 3
    # the events' price observations are a minute older than the release: latency counts from them
    # (NOW is fixed when this module is imported: the test may run a while later)
    since_now = (datetime.now(UTC) - NOW).total_seconds()
    assert report.metadata()["sent"] == 8 and 60.0 <= report.metadata()["latency_p95_s"] <= 61.0 + since_now


def test_receiver_down_then_up_every_notification_arrives_exactly_once(conn, db_url, inbox):
    ha = household(conn, "ana@example.com")
    product, offer = catalog(conn)
    channel(conn, ha, "webhook", inbox.webhook_url("ana", secret=SECRET), SECRET)
    events(conn, ha, product, offer, 4)
    inbox.fail_next("ana", 4 * 3, status=503)  # three full attempts fail

    at = NOW
    first = run(db_url, inbox, at=at)
    assert (first.sent, first.failed) == (0, 4)
    # exponential backoff: 1, 2, 4 minutes after each failed attempt
    delays = []
    for attempt in (2, 3):
        due = conn.execute("select min(next_attempt_at) from notification_deliveries").fetchone()[0]
        delays.append(round((due - at).total_seconds() / 60))
        early = run(db_url, inbox, at=due - timedelta(seconds=1), run_id=f"early-{attempt}")
        assert early.claimed == 0  # not due yet
        at = due
        rep = run(db_url, inbox, at=at, run_id=f"retry-{attempt}")
        assert rep.failed == 4 and rep.retried == 4
    due = conn.execute("select min(next_attempt_at) from notification_deliveries").fetchone()[0]
    delays.append(round((due - at).total_seconds() / 60))
    assert delays == [1, 2, 4]
    last = run(db_url, inbox, at=due, run_id="retry-4")
    assert (last.sent, last.retried) == (4, 4)
    assert inbox.unique("ana") == 4 and inbox.duplicates("ana") == 0
    assert inbox.statuses("ana")[503] == 12
    assert conn.execute("select array_agg(distinct attempts) from notification_deliveries").fetchone()[0] == [4]
    assert dict(conn.execute("select outcome, count(*) from notification_attempts group by outcome").fetchall()) == {
        "retry": 12, "sent": 4}
    errors = {r[0] for r in conn.execute("select error from notification_attempts where outcome = 'retry'")}
    assert errors and all("503" in e and SECRET not in e and "/hooks/" not in e for e in errors)


def test_malformed_target_fails_that_delivery_clearly_while_the_others_proceed(conn, db_url, inbox):
    ha = household(conn, "ana@example.com")
    product, offer = catalog(conn)
    good = channel(conn, ha, "webhook", inbox.webhook_url("ana", secret=SECRET), SECRET)
    bad_url = channel(conn, ha, "webhook", "htp:/broken url", SECRET)
    bad_mail = channel(conn, ha, "email", "not-an-address")
    events(conn, ha, product, offer, 2)

    report = run(db_url, inbox)

    assert (report.sent, report.dead_lettered, report.invalid) == (2, 4, 4)
    rows = conn.execute("select channel_id, status, attempts, last_error from notification_deliveries"
                        " order by channel_id, id").fetchall()
    assert [(c, s, a) for c, s, a, _ in rows] == [(good, "sent", 1)] * 2 + [(bad_url, "dead", 1)] * 2 + [
        (bad_mail, "dead", 1)] * 2
    for _, _, _, error in rows[2:]:
        assert error and "broken" not in error and "not-an-address" not in error
    assert inbox.unique("ana") == 2


def test_rate_limit_folds_the_excess_into_one_digest_released_an_hour_later(conn, db_url, inbox):
    ha = household(conn, "ana@example.com")
    product, offer = catalog(conn)
    channel(conn, ha, "webhook", inbox.webhook_url("ana", secret=SECRET), SECRET)
    events(conn, ha, product, offer, 13)

    report = run(db_url, inbox, rate_limit_per_hour=10)
    assert (report.released.dispatched, report.released.digested, report.sent) == (10, 3, 10)
    digest_id, release_at = conn.execute(
        "select id, release_at from alert_events where kind = 'digest' and status = 'pending'").fetchone()
    assert release_at == NOW + timedelta(hours=1)
    assert conn.execute("select count(*) from alert_events where digest_id = %s", (digest_id,)).fetchone()[0] == 3

    # two more alerts within the hour join the same digest
    events(conn, ha, product, offer, 2, created_at=NOW + timedelta(minutes=30))
    mid = run(db_url, inbox, at=NOW + timedelta(minutes=30), run_id="mid")
    assert (mid.released.digested, mid.released.digests_released, mid.sent) == (2, 0, 0)

    later = run(db_url, inbox, at=NOW + timedelta(hours=1), run_id="later")
    assert (later.released.digests_released, later.sent) == (1, 1)
    digest = inbox.hooks("ana")[-1].body
    assert digest["kind"] == "digest" and digest["count"] == 5 and len(digest["items"]) == 5
    assert inbox.unique("ana") == 11


def test_household_without_enabled_channel_is_suppressed(conn, db_url, inbox):
    ha = household(conn, "ana@example.com")
    product, offer = catalog(conn)
    events(conn, ha, product, offer, 2)
    report = run(db_url, inbox)
    assert (report.released.suppressed, report.claimed) == (2, 0)
    assert statuses(conn, "alert_events") == {"suppressed": 2}


def test_dead_letter_then_redrive_is_audited_and_delivered(conn, db_url, inbox):
    ha = household(conn, "ana@example.com")
    product, offer = catalog(conn)
    channel(conn, ha, "webhook", inbox.webhook_url("ana", secret=SECRET), SECRET)
    events(conn, ha, product, offer, 1)
    inbox.fail_next("ana", 2, status=500)
    run(db_url, inbox, max_attempts=2)
    due = conn.execute("select next_attempt_at from notification_deliveries").fetchone()[0]
    second = run(db_url, inbox, at=due, run_id="second", max_attempts=2)
    assert second.dead_lettered == 1
    assert conn.execute("select status, attempts, dead_at is not null from notification_deliveries").fetchone() == (
        "dead", 2, True)

    with psycopg.connect(db_url.url) as c, c.transaction():
        redrive = db.redrive_dead(c, actor="ops:maria", reason="receiver fixed", now=due)
    assert redrive.count == 1
    audit = conn.execute("select actor, action_type, payload from ops_audit_logs"
                         " where action_type = 'REDRIVE_NOTIFICATIONS'").fetchall()
    assert len(audit) == 1 and audit[0][0] == "ops:maria"
    assert audit[0][2]["delivery_ids"] == redrive.delivery_ids and audit[0][2]["reason"] == "receiver fixed"
    third = run(db_url, inbox, at=due, run_id="third", max_attempts=2)
    assert third.sent == 1 and inbox.unique("ana") == 1


def test_gone_push_subscription_disables_the_channel(conn, db_url, inbox):
    ha = household(conn, "ana@example.com")
    product, offer = catalog(conn)
    sub = json.dumps({"endpoint": inbox.push_endpoint("phone"),
                      "keys": {"p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM",
                               "auth": "tBHItJI5svbpez7KI4CCXg"}})
    push = channel(conn, ha, "webpush", sub)
    inbox.push_status("phone", 410)
    events(conn, ha, product, offer, 1)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    report = dispatch(connector(db_url), run_id="push", channels=inbox.channel_settings(vapid_private_key=key),
                      now_fn=lambda: NOW)
    assert (report.gone, report.channels_disabled, report.dead_lettered) == (1, 1, 1)
    enabled, reason = conn.execute("select enabled, disabled_reason from notification_channels where id = %s",
                                   (push,)).fetchone()
    assert enabled is False and "410" in reason


KILL_SCRIPT = """
import sys, psycopg
from smartbuy_pipeline.notifications.channels import ChannelSettings
from smartbuy_pipeline.notifications.dispatch import DispatchSettings, dispatch
dispatch(lambda: psycopg.connect(sys.argv[1]), run_id="killed-run",
         channels=ChannelSettings(allow_private_network=True, concurrency=8),
         settings=DispatchSettings(claim_size=40, rate_limit_per_hour=100))
"""


def test_kill_mid_dispatch_then_rerun_sends_the_rest_and_nothing_twice(conn, db_url, inbox):
    ha = household(conn, "ana@example.com")
    product, offer = catalog(conn)
    channel(conn, ha, "webhook", inbox.webhook_url("fast", secret=SECRET), SECRET)
    channel(conn, ha, "webhook", inbox.webhook_url("slow", secret=SECRET), SECRET)
    events(conn, ha, product, offer, 30)
    inbox.hold_next("slow", 1000)  # the slow receiver takes requests in and never answers
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, db_url.url], env={**os.environ})
    try:
        # all 8 request slots end up stuck on the slow receiver: the worker is mid-round
        assert inbox.wait_for(lambda: inbox.held("slow") == 8, timeout=60)
        time.sleep(1.0)  # let the finished results be recorded
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    held = inbox.held("slow")
    inbox.release()
    sent_before = conn.execute("select count(*) from notification_deliveries where status = 'sent'").fetchone()[0]
    in_flight = conn.execute("select count(*) from notification_deliveries where status = 'sending'").fetchone()[0]
    assert 0 < sent_before < 60 and in_flight >= held == 8

    # the re-run takes over the dead run's claims (lease 0 here; the default is 2 minutes)
    rerun = dispatch(connector(db_url), run_id="rerun", channels=inbox.channel_settings(),
                     settings=DispatchSettings(claim_lease=timedelta(0)))
    assert rerun.sent == 60 - sent_before
    assert statuses(conn, "notification_deliveries") == {"sent": 60}
    # the receivers count: every notification processed once per Idempotency-Key; the only repeats
    # are the requests that were in flight when the worker died
    assert (inbox.unique("fast"), inbox.unique("slow")) == (30, 30)
    assert (inbox.duplicates("fast"), inbox.duplicates("slow")) == (0, held)


def test_a_round_slower_than_the_lease_keeps_its_claims(conn, db_url, inbox):
    import threading

    ha = household(conn, "ana@example.com")
    product, offer = catalog(conn)
    channel(conn, ha, "webhook", inbox.webhook_url("ana", secret=SECRET), SECRET)
    events(conn, ha, product, offer, 3)
    inbox.hold_next("ana", 3)  # a slow receiver: the round lasts longer than the lease
    settings = DispatchSettings(claim_lease=timedelta(seconds=1))
    reports = []
    slow = threading.Thread(target=lambda: reports.append(
        dispatch(connector(db_url), run_id="slow-run", channels=inbox.channel_settings(), settings=settings)))
    slow.start()
    try:
        assert inbox.wait_for(lambda: inbox.held("ana") == 3, timeout=30)
        time.sleep(2.5)  # over twice the lease: the sending run renews it every quarter lease
        assert conn.execute("select count(*) from notification_deliveries where status = 'sending'"
                            " and claimed_by = 'slow-run' and claimed_at > now() - interval '1 second'").fetchone()[0] == 3
        other = dispatch(connector(db_url), run_id="other-run", channels=inbox.channel_settings(), settings=settings)
        assert other.claimed == 0
    finally:
        inbox.release()
        slow.join(30)
    assert reports[0].sent == 3 and reports[0].stale == 0
    assert (inbox.received("ana"), inbox.unique("ana"), inbox.duplicates("ana")) == (3, 3, 0)
    assert conn.execute("select count(*), count(distinct run_id) from notification_attempts").fetchone() == (3, 1)


def test_concurrent_releases_keep_the_rate_limit_and_one_digest(conn, db_url):
    import threading

    ha = household(conn, "ana@example.com")
    product, offer = catalog(conn)
    channel(conn, ha, "email", "ana@example.com")
    events(conn, ha, product, offer, 30)
    # Two dispatch runs release at once; the batches of pending events are split between them.
    barrier = threading.Barrier(2)
    released = []

    def release(max_events: int) -> None:
        with psycopg.connect(db_url.url) as c, c.transaction():
            barrier.wait()
            released.append(db.release_events(c, now=NOW, rate_limit=10, max_events=max_events))
            time.sleep(0.3)  # hold the transaction open: the other release must not decide meanwhile

    threads = [threading.Thread(target=release, args=(15,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(r.dispatched for r in released) == 10 and sum(r.digested for r in released) == 20
    assert conn.execute("select count(*) from alert_events where kind = 'alert' and status = 'dispatched'"
                        ).fetchone()[0] == 10
    digests = conn.execute("select id from alert_events where kind = 'digest' and status = 'pending'").fetchall()
    assert len(digests) == 1
    assert conn.execute("select count(*) from alert_events where digest_id = %s", (digests[0][0],)).fetchone()[0] == 20


def test_latency_counts_from_the_alerts_creation_when_it_is_later_than_the_price(conn, db_url, inbox):
    ha = household(conn, "ana@example.com")
    product, offer = catalog(conn)
    channel(conn, ha, "webhook", inbox.webhook_url("ana", secret=SECRET), SECRET)
    events(conn, ha, product, offer, 2)
    # a price seen three days ago, an alert created 5 seconds ago that it satisfies at once
    conn.execute("update alert_events set observed_at = now() - interval '3 days'")
    conn.execute("update alerts set created_at = now() - interval '5 seconds'")
    started = time.monotonic()
    report = run(db_url, inbox, at=datetime.now(UTC))
    assert report.sent == 2
    assert 5.0 <= report.metadata()["latency_p95_s"] <= 5.0 + (time.monotonic() - started) + 1.0
