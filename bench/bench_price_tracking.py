"""Issue 4 benchmarks: the batch write path vs raw COPY, and one hourly run over a large catalog.

    .venv/bin/python bench/bench_price_tracking.py write [--rows 1000000] [--offers 100000]
    .venv/bin/python bench/bench_price_tracking.py hourly [--offers 100000]

Both create a throwaway database on SMARTBUY_BENCH_DATABASE_URL (default: the local server,
postgresql://postgres@127.0.0.1:5432/postgres), apply the migrations and drop it at the end.

write:  the same observation rows go (A) through a raw COPY into price_history and (B) through
        `db.prices.record_batch` (one COPY into the staging table, INSERT ... SELECT into
        price_history, UPDATE ... FROM of offer_checks, UPDATE of the offers whose content
        changed, checkpoint; one transaction per 1,000-offer batch), interleaved A B A B; each
        round 1 offer in 20 has a new price. Medians of rows/s and the B/A ratio. Target: B >=
        65% of A.
hourly: the simulator (scale scenario) in its own process, the catalog bulk-loaded, then every
        shard window of one hour tracked (`tracking.track_window`, the shops' own politeness);
        wall time, offers/s, peak RSS. Same-run baseline: plain aiohttp downloading the same
        requests (a page per page offer, each feed once, an items-API call per 20 offers) from
        the same simulator at concurrency 50, nothing parsed or written, once before and once
        after the run (mean); the ratio is the run's offers/s to the baseline's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchlib import (  # noqa: E402
    ChildRssSampler,
    build_targets,
    peak_rss_mib,
    raw_fetch,
    start_simulator,
    urls_for,
)

from smartbuy_pipeline.acquisition.sources import Acquired  # noqa: E402
from smartbuy_pipeline.db import prices  # noqa: E402
from smartbuy_pipeline.db.catalog import upsert_catalog  # noqa: E402
from smartbuy_pipeline.db.engine import DatabaseUrl, ensure_database  # noqa: E402
from smartbuy_pipeline.db.migrations import migrate  # noqa: E402
from smartbuy_pipeline.domain.gtin import make_gtin13  # noqa: E402
from smartbuy_pipeline.domain.offer_state import OfferState  # noqa: E402
from smartbuy_pipeline.domain.types import (  # noqa: E402
    Availability,
    Money,
    Observation,
    ObservationStatus,
    SourceKind,
)

BATCH = 1000


def bench_database() -> tuple[DatabaseUrl, DatabaseUrl]:
    admin = DatabaseUrl.parse(os.environ.get("SMARTBUY_BENCH_DATABASE_URL",
                                             "postgresql://postgres@127.0.0.1:5432/postgres"))
    url = ensure_database(admin, f"smartbuy_bench_{uuid.uuid4().hex[:8]}")
    migrate(url)
    return admin, url


def drop(admin: DatabaseUrl, url: DatabaseUrl) -> None:
    with psycopg.connect(admin.url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{url.database}" with (force)')


def seed_offers(url: DatabaseUrl, n_offers: int) -> None:
    """n offers over 50 shops and n/5 products, generated server-side (set-based)."""
    with psycopg.connect(url.url) as conn:
        conn.execute("insert into shops (name, domain) select 'Loja ' || i, 'loja' || i || '.example.com.br'"
                     " from generate_series(1, 50) i")
        with conn.cursor().copy("copy products (gtin, name) from stdin") as copy:
            for i in range(max(1, n_offers // 5)):
                copy.write_row((make_gtin13("789", i).zfill(14), f"Produto {i}"))
        conn.execute("""
            insert into offers (product_id, shop_id, source_kind, locator, currency, price)
            select 1 + (i %% %(products)s), 1 + (i %% 50), 'page', 'https://loja.example.com.br/p/' || i, 'BRL', 100.00
            from generate_series(0, %(n)s - 1) i
        """, {"n": n_offers, "products": max(1, n_offers // 5)})
        conn.execute("analyze")


CHANGE_EVERY = 20  # each round, 1 offer in 20 shows a new price (the rest: the same as last round)


def observation_batches(offer_ids: list[int], round_no: int, at: datetime):
    """Yield (observed_at, [Acquired...]) batches: every offer once, observed at `at`. Offer i's
    price drops by 1.00 in the rounds where (round_no + i) % CHANGE_EVERY == 0."""
    ref = Money(Decimal("2199.00"), "BRL")
    prices_by_step = [Money(Decimal("1899.90") - step, "BRL") for step in range(round_no // CHANGE_EVERY + 2)]
    for i in range(0, len(offer_ids), BATCH):
        yield at, [
            Acquired(oid, Observation(oid, at, prices_by_step[(round_no + oid % CHANGE_EVERY) // CHANGE_EVERY],
                                      ref, None, Availability.IN_STOCK, ObservationStatus.ACCEPTED, SourceKind.PAGE,
                                      {"method": "jsonld"}),
                     etag='"e"', last_modified=None, latency_s=0.01)
            for oid in offer_ids[i:i + BATCH]
        ]


def raw_copy(conn: psycopg.Connection, batches) -> int:
    n = 0
    for _, batch in batches:
        with conn.transaction(), conn.cursor().copy(
                f"copy price_history ({', '.join(prices.PRICE_HISTORY_COLUMNS)}) from stdin") as copy:
            for a in batch:
                o = a.outcome
                copy.write_row((o.offer_id, o.observed_at, o.price.amount, "BRL", o.reference_price.amount, None,
                                "in_stock", "accepted", "page", '{"method": "jsonld"}', "bench"))
                n += 1
    return n


def offer_states(conn: psycopg.Connection) -> tuple[dict[int, OfferState], dict[int, str]]:
    """What the tracker's due-offers query hands each batch (OfferTarget.state and .check_row),
    read untimed."""
    states, check_rows = {}, {}
    for r in conn.execute("select o.id, o.price, o.reference_price, o.freight, o.currency, o.availability,"
                          " o.quarantined_price, c.ctid from offers o join offer_checks c on c.offer_id = o.id"):
        states[r[0]] = OfferState(*r[1:7])
        check_rows[r[0]] = r[7]
    conn.commit()
    return states, check_rows


def write_path(conn: psycopg.Connection, batches, window: prices.ShardWindow,
               read: tuple[dict[int, OfferState], dict[int, str]]) -> int:
    n = 0
    states, check_rows = read
    for _, batch in batches:
        with conn.transaction():
            prices.record_batch(conn, batch, window=window, phase=prices.REST, last_offer_id=batch[-1].offer_id,
                                currency_of={}, current=states, check_rows=check_rows)
        n += len(batch)
    return n


def cmd_write(args) -> None:
    admin, url = bench_database()
    try:
        seed_offers(url, args.offers)
        with psycopg.connect(url.url) as conn:
            offer_ids = [r[0] for r in conn.execute("select id from offers order by id")]
            prices.ensure_partitions(conn, datetime.now(UTC))
            conn.commit()
            prices.prepare_session(conn)  # as the tracker does once per run
            rounds_total = max(2, args.rows // len(offer_ids))
            per_side = rounds_total // 2
            start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=6)
            window = prices.ShardWindow("bench", 0, 1, start)
            raw_rates, path_rates = [], []
            rows_a = rows_b = 0
            for k in range(per_side):  # A B A B ...: raw COPY rounds at even minutes, write path odd
                t0 = time.perf_counter()
                n = raw_copy(conn, observation_batches(offer_ids, k, start + timedelta(minutes=2 * k)))
                raw_rates.append(n / (time.perf_counter() - t0))
                rows_a += n
                states = offer_states(conn)
                t0 = time.perf_counter()
                n = write_path(conn, observation_batches(offer_ids, k, start + timedelta(minutes=2 * k + 1)), window,
                               states)
                path_rates.append(n / (time.perf_counter() - t0))
                rows_b += n
            conn.execute("analyze price_history")
            size = conn.execute("select pg_size_pretty(sum(pg_total_relation_size(inhrelid))) from pg_inherits"
                                " where inhparent = 'price_history'::regclass").fetchone()[0]
            total = conn.execute("select count(*) from price_history").fetchone()[0]
        raw, path = statistics.median(raw_rates), statistics.median(path_rates)
        print(f"offers table: {len(offer_ids):,} rows (PK, unique (shop, kind, locator), product_id index); "
              f"each round 1 offer in {CHANGE_EVERY} shows a new price (the first round: all of them)")
        print(f"price_history: partitioned by month, PK (offer_id, observed_at), BRIN (observed_at); "
              f"{total:,} rows, {size} at the end")
        print(f"rows through each side: raw COPY {rows_a:,}, write path {rows_b:,} "
              f"(batches of {BATCH}, one transaction each)")
        print(f"raw COPY     : {raw:12,.0f} rows/s  (rounds: {', '.join(f'{r:,.0f}' for r in raw_rates)})")
        print(f"write path   : {path:12,.0f} rows/s  (rounds: {', '.join(f'{r:,.0f}' for r in path_rates)})")
        print(f"ratio path/raw: {path / raw:.3f}  (target >= 0.65)")
        print(f"peak RSS: {peak_rss_mib():,.0f} MiB")
    finally:
        drop(admin, url)


def raw_download_rate(rows: dict) -> tuple[float, int]:
    """Offers/s of plain aiohttp fetching every request the run makes, and the request count."""
    shops, targets = build_targets(rows)
    urls = [u for kind, ts in targets.items() for u in urls_for(kind, ts, shops)]
    t0 = time.perf_counter()
    asyncio.run(raw_fetch(urls))
    return len(rows["offers"]) / (time.perf_counter() - t0), len(urls)


def cmd_hourly(args) -> None:
    from smartbuy_pipeline.defs.prices import SHARD_COUNT
    from smartbuy_pipeline.simulator.scenarios import scale_scenario
    from smartbuy_pipeline.tracking import TrackingSettings, track_window

    admin, url = bench_database()
    sim, base = start_simulator(args.offers)
    try:
        t0 = time.perf_counter()
        rows = scale_scenario(args.offers).catalog_rows(base)
        with psycopg.connect(url.url) as conn, conn.transaction():
            upsert_catalog(conn, rows["shops"], rows["products"], rows["offers"])
        print(f"catalog: {len(rows['offers']):,} offers, {len(rows['shops'])} shops loaded in "
              f"{time.perf_counter() - t0:.1f}s")
        raw_before, requests = raw_download_rate(rows)
        hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        settings = TrackingSettings(batch_size=args.batch_size)
        started = time.perf_counter()
        total = failed = observations = 0
        with ChildRssSampler(exclude=(sim.pid,)) as children:
            for shard in range(SHARD_COUNT):
                window = prices.ShardWindow(hour.strftime("%Y-%m-%d-%H:%M"), shard, SHARD_COUNT, hour + timedelta(hours=1))
                report = track_window(url, window, settings)
                total += report.processed
                failed += report.failed
                observations += report.observations
                print(f"  shard {shard}: {report.processed:,} offers in {report.duration_s:.1f}s, "
                      f"{report.batches} batches, p50 {report.percentile(50):.3f}s p95 {report.percentile(95):.3f}s "
                      f"fetch latency, failures {dict(report.failed_by_reason)}")
            wall = time.perf_counter() - started
        raw_after, _ = raw_download_rate(rows)
        raw = (raw_before + raw_after) / 2
        print(f"hourly run: {total:,} offers ({observations:,} observations, {failed:,} failed) in {wall:.1f}s "
              f"= {total / wall:,.0f} offers/s")
        print(f"baseline, plain aiohttp download of the same {requests:,} requests: {raw:,.0f} offers/s "
              f"(before {raw_before:,.0f}, after {raw_after:,.0f}); ratio run/baseline {total / wall / raw:.3f}")
        print(f"peak RSS: this process {peak_rss_mib():,.0f} MiB; largest parse worker {children.largest_mib:,.0f} MiB; "
              f"all parse processes together at most {children.total_mib:,.0f} MiB")
    finally:
        sim.terminate()
        sim.wait(10)
        drop(admin, url)


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("--rows", type=int, default=1_000_000, help="rows per side (A and B each)")
    w.add_argument("--offers", type=int, default=100_000)
    h = sub.add_parser("hourly")
    h.add_argument("--offers", type=int, default=100_000)
    h.add_argument("--batch-size", type=int, default=1000)
    args = ap.parse_args()
    if args.cmd == "write":
        args.rows *= 2  # both sides get --rows
        cmd_write(args)
    else:
        cmd_hourly(args)


if __name__ == "__main__":
    main()
