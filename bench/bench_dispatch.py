"""Benchmark: notification dispatch to a local webhook receiver, through the real path.

Creates a scratch database (benchlib: SMARTBUY_BENCH_DATABASE_URL's server, else the local one), applies the migrations and generates H
households (signed-up users), each with one signed-webhook channel pointing at a LocalInbox
receiver, one alert and E pending alert events (H x E notifications). Then, in the same run:

  baseline   raw aiohttp: the same number of signed JSON POSTs (same body size) to the same
             receiver, 64 in flight
  dispatch   notifications.dispatch.dispatch(): release the outbox (rate limit raised above E so
             nothing is digested), claim in rounds of 1,000, send through channels.deliver_all
             (httpx on the httpx-aiohttp transport, HMAC-signed, SSRF-checked), settle each group
             of results (COPY + UPDATE + attempts log) in its own transaction

and prints notifications, seconds, notifications/s, the receiver's unique Idempotency-Keys, peak
RSS, and the ratio dispatch / baseline. Target: at least 500 notifications/s.

Run: .venv/bin/python bench/bench_dispatch.py [households] [events_per_household]   (default 1000 10)
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid

import aiohttp
import psycopg
from benchlib import peak_rss_mib, scratch_databases

from smartbuy_pipeline.db.migrations import migrate
from smartbuy_pipeline.domain.notifications import sign_webhook
from smartbuy_pipeline.notifications.dispatch import DispatchSettings, dispatch
from smartbuy_pipeline.notifications.inbox import LocalInbox

SECRET = "bench-webhook-secret"

SEED_SQL = """
insert into products (id, gtin, name) values (1, '07891234567895', 'Smart TV 55" 4K');
insert into shops (id, name, domain) values (1, 'Loja Bench', 'bench.example');
insert into offers (id, product_id, shop_id, source_kind, locator, price, currency)
    values (1, 1, 1, 'page', 'https://bench.example/p/1', 2999.90, 'BRL');
insert into auth.users (email) select 'user' || i || '@bench.example' from generate_series(1, %(households)s) i;
insert into notification_channels (household_id, kind, target, secret)
    select household_id, 'webhook', %(url)s, %(secret)s from household_members;
insert into alerts (household_id, alert_type, product_id, params)
    select household_id, 'TARGET_PRICE', 1, '{"target": 3000}' from household_members;
insert into alert_events (alert_id, household_id, offer_id, dedupe_key, price, currency, observed_at, payload)
select a.id, a.household_id, 1, 'bench:' || a.id || ':' || e, 2999.90 - e, 'BRL', now(),
       jsonb_build_object(
           'kind', 'alert', 'alert_id', a.id, 'alert_type', 'TARGET_PRICE', 'household_id', a.household_id::text,
           'product_id', 1, 'product_name', 'Smart TV 55" 4K', 'gtin', '07891234567895', 'offer_id', 1,
           'shop_id', 1, 'shop_name', 'Loja Bench', 'url', 'https://bench.example/p/1',
           'price', (2999.90 - e)::text, 'currency', 'BRL', 'freight', null, 'total', null,
           'reference_price', '3000.00', 'reference_kind', 'target', 'previous_notified_price', null,
           'risk_bucket', 'A', 'risk_score', 90, 'availability', 'in_stock',
           'observed_at', to_char(now() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
from alerts a cross join generate_series(1, %(events)s) e;
analyze;
"""


async def raw_posts(url: str, bodies: list[bytes], concurrency: int = 64) -> float:
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:
        async def post(i: int, body: bytes) -> None:
            ts = int(time.time())
            headers = {"Content-Type": "application/json", "Idempotency-Key": f"raw-{i}",
                       "X-SmartBuy-Timestamp": str(ts), "X-SmartBuy-Signature": sign_webhook(SECRET, ts, body)}
            async with sem, session.post(url, data=body, headers=headers) as resp:
                assert resp.status == 200, resp.status

        started = time.perf_counter()
        await asyncio.gather(*(post(i, b) for i, b in enumerate(bodies)))
        return time.perf_counter() - started


def main() -> None:
    households = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    per_household = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    total = households * per_household
    with scratch_databases(f"sb_bench_dispatch_{uuid.uuid4().hex[:8]}") as (url,):
        migrate(url)
        with LocalInbox() as inbox:
            hook = inbox.webhook_url("households", secret=SECRET)
            raw_hook = inbox.webhook_url("raw", secret=SECRET)
            t0 = time.perf_counter()
            with psycopg.connect(url.url) as conn, conn.transaction():
                for statement in SEED_SQL.split(";\n"):
                    if statement.strip():
                        conn.execute(statement, {"households": households, "events": per_household, "url": hook,
                                                 "secret": SECRET})
                sample = conn.execute("select payload from alert_events limit 1").fetchone()[0]
            print(f"setup: {households:,} households x {per_household} events = {total:,} pending notifications "
                  f"({time.perf_counter() - t0:.1f} s); tables: alert_events {total:,} rows, "
                  f"notification_channels {households:,}; indexes per sql/0006 + 0012")
            body = json.dumps({"delivery_id": 1, "attempt": 1, **sample}, separators=(",", ":")).encode()
            baseline_s = asyncio.run(raw_posts(raw_hook, [body] * total))
            assert inbox.unique("raw") == total
            print(f"baseline  raw aiohttp POST x {total:,}: {baseline_s:.2f} s, {total / baseline_s:,.0f}/s "
                  f"(body {len(body)} bytes)")

            started = time.perf_counter()
            report = dispatch(lambda: psycopg.connect(url.url), run_id="bench",
                              channels=inbox.channel_settings(concurrency=64),
                              settings=DispatchSettings(rate_limit_per_hour=per_household + 1, claim_size=1000,
                                                        max_deliveries=total))
            seconds = time.perf_counter() - started
            assert report.sent == total and inbox.unique("households") == total, (report.metadata(), inbox.unique("households"))
            rate = total / seconds
            print(f"dispatch  {report.sent:,} sent in {seconds:.2f} s: {rate:,.0f} notifications/s "
                  f"({report.rounds} rounds; release {report.released.deliveries_created:,} deliveries); "
                  f"receiver unique keys {inbox.unique('households'):,}, duplicates {inbox.duplicates('households')}")
            print(f"ratio dispatch/baseline throughput: {rate / (total / baseline_s):.2f}; peak RSS {peak_rss_mib():.0f} MiB; "
                  f"target >= 500/s: {'met' if rate >= 500 else 'MISSED'}")


if __name__ == "__main__":
    main()
