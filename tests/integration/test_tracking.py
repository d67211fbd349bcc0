"""Hourly tracking of a shard window against the simulator and a real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from smartbuy_pipeline.acquisition.http import FetchSettings
from smartbuy_pipeline.db import prices
from smartbuy_pipeline.simulator.scenarios import demo_scenario
from smartbuy_pipeline.tracking import TrackingSettings, track_window

FAST = TrackingSettings(batch_size=10, parse_workers=1,
                        fetch=FetchSettings(backoff_base=0.01, backoff_cap=0.05, max_retries=1))


def window(hours_ahead: int = 1, shard: int = 0, count: int = 1) -> prices.ShardWindow:
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return prices.ShardWindow(hour.strftime("%Y-%m-%d-%H:%M"), shard, count, hour + timedelta(hours=hours_ahead))


# Check bookkeeping lives on offer_checks (0015); an offer without its row counts as unchecked.
UNCHECKED_SQL = ("select count(*) from offers o left join offer_checks c on c.offer_id = o.id"
                 " where c.last_checked_at is null")


def scalar(url, sql, params=None):
    with psycopg.connect(url.url) as conn:
        return conn.execute(sql, params).fetchone()[0]


def test_window_tracks_every_due_offer_once_and_rerun_is_idempotent(db_url, catalog):
    n_offers = len(catalog["offers"])
    w = window()
    report = track_window(db_url, w, FAST)
    assert report.offers_due == n_offers
    assert report.processed == n_offers
    assert report.batches == -(-n_offers // 10)
    assert report.observations + report.failed + report.not_modified == n_offers
    assert scalar(db_url, UNCHECKED_SQL) == 0
    observed = scalar(db_url, "select count(*) from price_history")
    assert observed == report.observations
    assert scalar(db_url, "select count(distinct offer_id) from price_history") == observed

    again = track_window(db_url, w, FAST)
    assert again.offers_due == 0 and again.processed == 0
    assert scalar(db_url, "select count(*) from price_history") == observed
    progress = scalar(db_url, "select completed_at is not null from price_tracking_progress where partition_key = %s",
                      (w.partition_key,))
    assert progress is True


def test_shards_partition_the_catalog(db_url, catalog):
    reports = [track_window(db_url, window(shard=s, count=3), FAST) for s in range(3)]
    assert sum(r.processed for r in reports) == len(catalog["offers"])
    assert scalar(db_url, UNCHECKED_SQL) == 0


def test_crash_after_a_batch_resumes_without_duplicates_or_gaps(db_url, catalog):
    w = window()
    partial = track_window(db_url, w, FAST, stop_after_batches=2)
    assert partial.processed == 20
    rest = track_window(db_url, w, FAST)
    assert rest.processed == len(catalog["offers"]) - 20
    assert scalar(db_url, UNCHECKED_SQL) == 0
    dupes = scalar(db_url, "select count(*) from (select offer_id from price_history group by offer_id having count(*) > 1) d")
    assert dupes == 0


def test_failures_keep_the_last_good_price(db_url, catalog, sim):
    from smartbuy_pipeline.simulator.scenarios import Fault, FaultKind

    w1 = window()
    track_window(db_url, w1, FAST)
    offer_key = "ideapad-3-casa-eletro"
    offer_id, price_before = psycopg.connect(db_url.url).execute(
        "select id, price from offers where locator like %s", (f"%/{offer_key}",)).fetchone()
    assert price_before is not None
    sim.set_faults(offer=offer_key, faults=[Fault(FaultKind.SERVER_ERROR_BURST, count=100)])
    with psycopg.connect(db_url.url) as conn:
        conn.execute("update offer_checks set last_checked_at = now() - interval '2 hours', etag = null"
                     " where offer_id = %s", (offer_id,))
    report = track_window(db_url, window(hours_ahead=2), FAST)
    assert any(line.startswith(f"offer {offer_id}: http_5xx: ") for line in report.failures_sample)
    with psycopg.connect(db_url.url) as conn:
        price, failures, reason = conn.execute(
            "select o.price, c.consecutive_failures, c.last_failure_reason from offers o"
            " join offer_checks c on c.offer_id = o.id where o.id = %s", (offer_id,)).fetchone()
    assert (price, failures, reason) == (price_before, 1, "http_5xx")
    assert scalar(db_url, "select count(*) from price_history where offer_id = %s", (offer_id,)) == 1


KILLABLE_RUN = """
import sys
from datetime import datetime
from smartbuy_pipeline.acquisition.http import FetchSettings
from smartbuy_pipeline.db import prices
from smartbuy_pipeline.db.engine import DatabaseUrl
from smartbuy_pipeline.tracking import TrackingSettings, track_window
url, key, cutoff = sys.argv[1], sys.argv[2], datetime.fromisoformat(sys.argv[3])
track_window(DatabaseUrl.parse(url), prices.ShardWindow(key, 0, 1, cutoff),
             TrackingSettings(batch_size=5, parse_workers=1, fetch=FetchSettings(max_retries=0)))
"""


def test_sigkill_mid_run_then_rerun_has_exact_counts(db_url, catalog, sim):
    import signal
    import subprocess
    import sys
    import time

    from smartbuy_pipeline.simulator.scenarios import Fault, FaultKind

    # Slow pages so the kill lands while batches are still in flight.
    for shop in demo_scenario().shops:
        sim.set_faults(shop=shop.slug, faults=[Fault(FaultKind.SLOW, delay_ms=150)])
    w = window()
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE_RUN, db_url.url, w.partition_key, w.cutoff.isoformat()])
    try:
        deadline = time.monotonic() + 60
        batches = 0
        while time.monotonic() < deadline and batches < 2:
            time.sleep(0.05)
            batches = scalar(db_url, "select coalesce(max(batches), 0) from price_tracking_progress") or 0
        assert batches >= 2, "the child committed two batches before the kill"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    committed = scalar(db_url, "select count(*) from offers o join offer_checks c on c.offer_id = o.id"
                               " where c.last_checked_at is not null")
    n_offers = len(catalog["offers"])
    assert 10 <= committed < n_offers, "killed mid-run: some but not all batches committed"
    assert committed % 5 == 0, "only whole batches are committed"
    sim.clear_faults()
    rest = track_window(db_url, w, FAST)
    assert rest.processed == n_offers - committed
    assert scalar(db_url, UNCHECKED_SQL) == 0
    assert scalar(db_url, "select count(*) from price_history") == scalar(
        db_url, "select count(distinct offer_id) from price_history")
    observed = scalar(db_url, "select count(*) from price_history")
    failed = scalar(db_url, "select count(*) from offers o join offer_checks c on c.offer_id = o.id"
                            " where c.consecutive_failures > 0")
    assert observed + failed == n_offers


def test_offers_wished_for_go_first(db_url, catalog):
    with psycopg.connect(db_url.url) as conn:
        # The last offer by id: without priority it would be in the last batch.
        offer_id, product_id = conn.execute("select id, product_id from offers order by id desc limit 1").fetchone()
        conn.execute("insert into auth.users (email) values ('ana@example.com')")  # trigger: household
        household = conn.execute("select id from households").fetchone()[0]
        conn.execute("insert into wishes (household_id, title, product_id) values (%s, 'quero', %s)",
                     (household, product_id))
        wished = conn.execute("select count(*) from offers where product_id = %s", (product_id,)).fetchone()[0]
    report = track_window(db_url, window(), FAST, stop_after_batches=1)
    assert report.priority_due == wished
    checked = scalar(db_url, "select array_agg(o.id order by o.id) from offers o"
                             " join offer_checks c on c.offer_id = o.id where c.last_checked_at is not null")
    assert offer_id in checked
    assert scalar(db_url, "select count(*) from offers o left join offer_checks c on c.offer_id = o.id"
                          " where o.product_id = %s and c.last_checked_at is null", (product_id,)) == 0


def test_repeated_failures_back_the_offer_off(db_url, catalog, sim):
    from smartbuy_pipeline.simulator.scenarios import Fault, FaultKind

    key = "ideapad-3-casa-eletro"
    offer_id = scalar(db_url, "select id from offers where locator like %s", (f"%/{key}",))
    sim.set_faults(offer=key, faults=[Fault(FaultKind.SERVER_ERROR_BURST, count=1000)])
    with psycopg.connect(db_url.url) as conn:
        conn.execute("update offer_checks set consecutive_failures = 4 where offer_id = %s", (offer_id,))
    track_window(db_url, window(), FAST)
    with psycopg.connect(db_url.url) as conn:
        failures, until, checked = conn.execute(
            "select consecutive_failures, unhealthy_until, last_checked_at from offer_checks where offer_id = %s",
            (offer_id,)).fetchone()
    assert failures == 5
    assert until == checked + timedelta(hours=1)  # 2^(5-5) hours after the 5th failure
    # Due again by its check interval, but backed off: the next window skips it.
    with psycopg.connect(db_url.url) as conn:
        conn.execute("update offer_checks set last_checked_at = last_checked_at - interval '2 hours'")
    again = track_window(db_url, window(hours_ahead=1), FAST)
    assert again.offers_due == len(catalog["offers"]) - 1


def test_a_shops_feed_is_downloaded_once_per_run_across_batches(db_url, catalog, sim):
    scenario = demo_scenario()
    feed_shop = next(s for s in scenario.shops if s.source_kind == "merchant_feed")
    feed_offers = len(scenario.offers_of_shop(feed_shop.slug))
    assert feed_offers > 2
    sim.reset_stats()
    small = TrackingSettings(batch_size=2, parse_workers=1, fetch=FAST.fetch)
    report = track_window(db_url, window(), small)
    assert report.processed == len(catalog["offers"])
    # The feed's offers were spread over several batches of 2; the feed crossed the wire once.
    assert sim.stats(feed_shop.slug)["requests"] == 1
    assert scalar(db_url, "select count(*) from offers o join shops s on s.id = o.shop_id "
                          "join offer_checks c on c.offer_id = o.id "
                          "where s.feed_url is not null and c.last_checked_at is not null") == feed_offers


def checked_offers(url) -> set[int]:
    with psycopg.connect(url.url) as conn:
        return {r[0] for r in conn.execute("select offer_id from offer_checks where last_checked_at is not null")}


def test_an_offer_is_due_by_its_own_or_its_shops_check_interval(db_url, catalog):
    w = window()
    with psycopg.connect(db_url.url) as conn:
        # Every offer last checked 90 minutes before the window's end: due at the 1-hour default.
        conn.execute("update offer_checks set last_checked_at = %s", (w.cutoff - timedelta(minutes=90),))
        slow_shop = conn.execute("select id from shops order by id limit 1").fetchone()[0]
        conn.execute("update shops set check_interval = interval '6 hours' where id = %s", (slow_shop,))
        shop_offers = [r[0] for r in conn.execute("select id from offers where shop_id = %s order by id", (slow_shop,))]
        eager = shop_offers[0]  # its own interval overrides the shop's
        conn.execute("update offers set check_interval = interval '30 minutes' where id = %s", (eager,))
        lazy = conn.execute("select min(id) from offers where shop_id <> %s", (slow_shop,)).fetchone()[0]
        conn.execute("update offers set check_interval = interval '2 hours' where id = %s", (lazy,))
        all_offers = {r[0] for r in conn.execute("select id from offers")}
    assert len(shop_offers) >= 2
    expected = all_offers - set(shop_offers[1:]) - {lazy}
    report = track_window(db_url, w, FAST)
    assert report.offers_due == report.processed == len(expected)
    with psycopg.connect(db_url.url) as conn:
        checked = {r[0] for r in conn.execute("select offer_id from offer_checks where last_checked_at > %s",
                                              (w.cutoff - timedelta(minutes=90),))}
    assert checked == expected


def test_offers_of_active_alerts_go_first(db_url, catalog):
    from tests.support import sign_up

    with psycopg.connect(db_url.url) as conn:
        last_offer = conn.execute("select max(id) from offers").fetchone()[0]
        # An inactive alert's product gives no priority; the product must not share the alerted offer's.
        idle_product = conn.execute("select product_id from offers where product_id <> (select product_id from offers"
                                    " where id = %s) order by id desc limit 1", (last_offer,)).fetchone()[0]
        _, household = sign_up(conn, "bia@example.com")
        conn.execute("insert into alerts (household_id, alert_type, offer_id) values (%s, 'NEW_LOW', %s)",
                     (household, last_offer))
        conn.execute("insert into alerts (household_id, alert_type, product_id, active) values (%s, 'NEW_LOW', %s, false)",
                     (household, idle_product))
    report = track_window(db_url, window(), FAST, stop_after_batches=1)
    assert report.priority_due == 1
    # The first batch is the priority phase: the alerted offer alone, although it is last by id.
    assert checked_offers(db_url) == {last_offer}


def test_inactive_offers_and_shops_are_skipped(db_url, catalog):
    with psycopg.connect(db_url.url) as conn:
        off_offer = conn.execute("select min(id) from offers").fetchone()[0]
        conn.execute("update offers set active = false where id = %s", (off_offer,))
        off_shop = conn.execute("select shop_id from offers where id <> %s order by id desc limit 1",
                                (off_offer,)).fetchone()[0]
        conn.execute("update shops set active = false where id = %s", (off_shop,))
        skipped = {off_offer} | {r[0] for r in conn.execute("select id from offers where shop_id = %s", (off_shop,))}
        all_offers = {r[0] for r in conn.execute("select id from offers")}
    report = track_window(db_url, window(), FAST)
    assert report.offers_due == report.processed == len(all_offers - skipped)
    assert checked_offers(db_url) == all_offers - skipped
    assert scalar(db_url, "select count(*) from price_history where offer_id = any(%s)", (list(skipped),)) == 0


def test_two_sessions_never_track_one_shard_at_once(db_url, catalog):
    import threading
    import time

    w = window()
    logs: list[str] = []
    reports = []
    with psycopg.connect(db_url.url, autocommit=True) as holder:
        # Another session (a run launched outside Dagster's per-shard limit) holds the shard.
        holder.execute("select pg_advisory_lock(%s, %s)", (prices.SHARD_LOCK_CLASS, w.shard))
        waiting = threading.Thread(target=lambda: reports.append(track_window(db_url, w, FAST, log=logs.append)))
        waiting.start()
        deadline = time.monotonic() + 30
        while not logs and time.monotonic() < deadline:
            time.sleep(0.05)
        assert logs and f"backend pid {holder.info.backend_pid}" in logs[0] and "waiting" in logs[0], logs
        time.sleep(0.3)
        assert checked_offers(db_url) == set(), "nothing is fetched while the shard is held"
        holder.execute("select pg_advisory_unlock(%s, %s)", (prices.SHARD_LOCK_CLASS, w.shard))
        waiting.join(60)
    assert reports[0].processed == len(catalog["offers"])

    # Two sessions started together on a fresh hour: one tracks everything, the other waits and
    # then finds nothing due; every offer observed once.
    with psycopg.connect(db_url.url) as conn:
        conn.execute("update offer_checks set last_checked_at = last_checked_at - interval '1 hour'")
    before = scalar(db_url, "select max(observed_at) from price_history")
    threads = [threading.Thread(target=lambda: reports.append(track_window(db_url, w, FAST))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(r.processed for r in reports[1:]) == [0, len(catalog["offers"])]
    tracked = max(reports[1:], key=lambda r: r.processed)
    with psycopg.connect(db_url.url) as conn:
        new_rows, new_offers = conn.execute("select count(*), count(distinct offer_id) from price_history"
                                            " where observed_at > %s", (before,)).fetchone()
    assert new_rows == new_offers == tracked.observations  # (unchanged pages answer 304: no row)


def test_changed_and_fetched_count_what_the_price_chart_shows(db_url, catalog, sim):
    from smartbuy_pipeline.simulator.scenarios import Fault, FaultKind

    w = window()
    sim.clock.set(datetime(2026, 11, 20, 12, tzinfo=UTC))  # the marketplace a week before Black Friday
    first = track_window(db_url, w, FAST)
    assert first.fetched == first.observations + first.not_modified == len(catalog["offers"]) - first.failed
    # Black Friday an hour later (scripted prices move), every page fetched again in full (no
    # validators); one page fails this time.
    sim.clock.set(datetime(2026, 11, 27, 3, tzinfo=UTC))
    key = "ideapad-3-casa-eletro"
    sim.set_faults(offer=key, faults=[Fault(FaultKind.SERVER_ERROR_BURST, count=1000)])
    with psycopg.connect(db_url.url) as conn:
        conn.execute("update offer_checks set last_checked_at = last_checked_at - interval '1 hour',"
                     " etag = null, last_modified = null")
        conn.execute("update shops set feed_etag = null, feed_last_modified = null")
        since = conn.execute("select max(observed_at) from price_history").fetchone()[0]
    second = track_window(db_url, w, FAST)
    assert second.failed >= 1 and second.fetched == len(catalog["offers"]) - second.failed
    # `changed` = this run's accepted observations whose price, 'de' price or availability differ
    # from the offer's previous accepted observation, as analytics.price_changes counts them.
    expected = scalar(db_url, """
        select count(*) from price_history h
        cross join lateral (select p.price, p.reference_price, p.availability from price_history p
                            where p.offer_id = h.offer_id and p.status = 'accepted' and p.observed_at < h.observed_at
                            order by p.observed_at desc limit 1) prev
        where h.observed_at > %s and h.status = 'accepted'
          and (h.price is distinct from prev.price or h.reference_price is distinct from prev.reference_price
               or h.availability is distinct from prev.availability)""", (since,))
    assert second.changed == expected > 0
