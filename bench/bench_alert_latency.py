"""Benchmark: latency from the commit of a price observation to its receipt at a webhook, on the
triggered path, with the Dagster daemon running.

Sets up a scratch data database and a scratch Dagster storage database (benchlib:
SMARTBUY_BENCH_DATABASE_URL's server, else the local one), a catalog of OFFERS offers (risk
bucket A) and one offer-level TARGET_PRICE alert per offer (target 10% below the price) spread
over 10 households, each with a signed webhook channel at a LocalInbox receiver. It stops the
price-tracking, daily and risk schedules (the simulator is not running: they would only add
noise), starts `dagster-daemon run` on the project's workspace and dagster.yaml (sensors and the
queued run coordinator as in production), then SAMPLES times, every INTERVAL seconds, commits a
price batch of 5 offers through the real write path (`db.prices.record_batch`, prices dropped
below target) and records the commit instant. The chain is entirely Dagster's: the
`alert_candidates_on_price_batch` sensor launches a triggered `alert_evaluation` run, the
`notification_dispatch` sensor a `dispatch_notifications` run, which posts to the receiver.

Prints the per-notification latencies (p50, p95, max), and as the same-run baseline the floor the
chain cannot beat: the median queue-to-success time of the alert_evaluation runs plus that of the
dispatch runs (two Dagster runs launched one after the other), and the ratio p95 / baseline.
Target: p95 at most 60 s.

Run: .venv/bin/python bench/bench_alert_latency.py [samples] [interval_s]   (default 12 10)
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg

from benchlib import scratch_databases
from smartbuy_pipeline.acquisition.sources import Acquired
from smartbuy_pipeline.db import prices
from smartbuy_pipeline.db.engine import DatabaseUrl
from smartbuy_pipeline.db.migrations import migrate
from smartbuy_pipeline.domain.gtin import gs1_check_digit
from smartbuy_pipeline.domain.types import Availability, Money, Observation, ObservationStatus, SourceKind
from smartbuy_pipeline.notifications.inbox import LocalInbox

ROOT = Path(__file__).resolve().parents[1]
OFFERS = 200
PER_SAMPLE = 5
SECRET = "bench-latency-secret"
QUIET_SCHEDULES = ("price_tracking_hourly", "price_daily_after_midnight", "risk_scores_hourly")

SEED_SQL = """
insert into shops (id, name, domain, reputation_score) values (1, 'Loja Bench', 'bench.example', 90);
insert into products (id, gtin, name)
    select i, g.gtin, 'Produto ' || i from unnest(%(gtins)s::text[]) with ordinality g(gtin, i);
insert into offers (id, product_id, shop_id, source_kind, locator, price, currency, availability, last_changed_at)
    select i, i, 1, 'page', 'https://bench.example/p/' || i, 1000.00, 'BRL', 'in_stock', now() - interval '1 day'
    from generate_series(1, %(n)s) i;
insert into offer_risk_scores (offer_id, score, bucket, model_version, computed_at)
    select id, 90, 'A', 'bench', now() - interval '1 day' from offers;
insert into auth.users (email) select 'casa' || i || '@bench.example' from generate_series(1, 10) i;
insert into notification_channels (household_id, kind, target, secret)
    select household_id, 'webhook', %(hook)s, %(secret)s from household_members;
insert into alerts (household_id, alert_type, offer_id, params)
    select (array(select household_id from household_members order by household_id))[1 + o.id %% 10],
           'TARGET_PRICE', o.id, '{"target": 900}'
    from offers o;
"""


def run(cmd: list[str], env: dict) -> None:
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def commit_drop(url: DatabaseUrl, offer_ids: list[int], sample: int) -> float:
    at = datetime.now(UTC)
    results = [Acquired(oid, Observation(oid, at, Money(Decimal("849.90") - sample, "BRL"), None, None,
                                         Availability.IN_STOCK, ObservationStatus.ACCEPTED, SourceKind.PAGE))
               for oid in offer_ids]
    window = prices.ShardWindow(f"bench-{sample}", 0, 1, at)
    with psycopg.connect(url.url) as conn, conn.transaction():
        prices.ensure_partitions(conn, at)
        prices.record_batch(conn, results, window=window, phase=prices.REST, last_offer_id=max(offer_ids),
                            currency_of={oid: "BRL" for oid in offer_ids})
    return time.time()


def main() -> None:
    samples = int(sys.argv[1]) if len(sys.argv) > 1 else 12
    interval = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    name = f"sb_bench_latency_{uuid.uuid4().hex[:8]}"
    with scratch_databases(name, f"{name}_dagster") as (url, dagster_url):
        measure(url, dagster_url, samples, interval)


def measure(url: DatabaseUrl, dagster_url: DatabaseUrl, samples: int, interval: float) -> None:
    home = Path(tempfile.mkdtemp(prefix="sb-latency-home-"))
    shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "SMARTBUY_DATABASE_URL": url.url, "DAGSTER_HOME": str(home),
           "SMARTBUY_DAGSTER_DATABASE_URL": dagster_url.with_driver("psycopg2"),
           "SMARTBUY_NOTIFY_ALLOW_PRIVATE_NETWORK": "true"}
    daemon = None
    try:
        migrate(url)
        with LocalInbox() as inbox:
            hook = inbox.webhook_url("latency", secret=SECRET)
            bodies = [f"0789{100000 + i:06d}000" for i in range(1, OFFERS + 1)]
            gtins = [b + str(gs1_check_digit(b)) for b in bodies]
            with psycopg.connect(url.url) as conn, conn.transaction():
                for statement in SEED_SQL.split(";\n"):
                    if statement.strip():
                        conn.execute(statement, {"n": OFFERS, "hook": hook, "secret": SECRET, "gtins": gtins})
            dagster = str(Path(sys.executable).with_name("dagster"))
            for schedule in QUIET_SCHEDULES:
                run([dagster, "schedule", "stop", schedule, "-w", "workspace.yaml"], env)
            daemon = subprocess.Popen([str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w",
                                       "workspace.yaml", "--log-level", "warning"], cwd=ROOT, env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            print(f"daemon started; {OFFERS} offers with one TARGET_PRICE alert each, 10 households; "
                  f"{samples} batches of {PER_SAMPLE} price drops, one every {interval:.0f} s")
            time.sleep(20)  # the daemon loads the code location and the sensors start ticking
            committed: dict[int, float] = {}
            for s in range(samples):
                ids = list(range(1 + s * PER_SAMPLE, 1 + (s + 1) * PER_SAMPLE))
                at = commit_drop(url, ids, s)
                committed.update({oid: at for oid in ids})
                time.sleep(interval)
            deadline = time.time() + 180
            while time.time() < deadline and inbox.unique("latency") < len(committed):
                time.sleep(0.5)
            received = {}
            for h in inbox.hooks("latency"):
                received.setdefault(int(h.body["offer_id"]), h.received_at.timestamp())
            latencies = sorted(received[o] - committed[o] for o in committed if o in received)
            missing = len(committed) - len(latencies)
        os.environ["DAGSTER_HOME"] = str(home)
        os.environ["SMARTBUY_DAGSTER_DATABASE_URL"] = env["SMARTBUY_DAGSTER_DATABASE_URL"]
        import dagster as dg

        with dg.DagsterInstance.get() as instance:
            durations: dict[str, list[float]] = {}
            for job in ("alert_evaluation", "dispatch_notifications"):
                records = instance.get_run_records(dg.RunsFilter(job_name=job, statuses=[dg.DagsterRunStatus.SUCCESS]))
                durations[job] = [r.end_time - r.create_timestamp.timestamp() for r in records if r.end_time]
        floor = sum(statistics.median(v) for v in durations.values() if v)
        p50 = statistics.median(latencies)
        p95 = latencies[max(0, round(0.95 * len(latencies)) - 1)]
        print(f"notifications received {len(latencies)}/{len(committed)} (missing {missing}); "
              f"latency commit -> webhook: p50 {p50:.1f} s, p95 {p95:.1f} s, max {latencies[-1]:.1f} s")
        print(f"baseline (same run): median queue-to-success of alert_evaluation "
              f"{statistics.median(durations['alert_evaluation']):.1f} s ({len(durations['alert_evaluation'])} runs) + "
              f"dispatch_notifications {statistics.median(durations['dispatch_notifications']):.1f} s "
              f"({len(durations['dispatch_notifications'])} runs) = {floor:.1f} s; ratio p95/baseline {p95 / floor:.2f}")
        print(f"target p95 <= 60 s: {'met' if p95 <= 60 and not missing else 'MISSED'}")
    finally:
        if daemon is not None and daemon.poll() is None:
            os.killpg(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
