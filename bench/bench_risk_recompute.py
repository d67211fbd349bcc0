"""Benchmark: incremental risk-score recompute through the database path, N offers x D days.

Creates a fresh database (on SMARTBUY_BENCH_DATABASE_URL's server, else the local server
postgresql://postgres@127.0.0.1:5432/postgres), applies the migrations, and generates
server-side with generate_series: 1,000 shops, N/5 products, N offers (5 shops per product) and
D daily accepted observations per offer in price_history (a mix of steady, drifting, genuine
drop, Black-Friday fake, volatile and scam trajectories), then ANALYZE. It prints the table
sizes and times, in the same run:

  baseline   select offer_id, min(price), percentile_cont(0.5) within group (order by price)
             from price_history where <same window> group by offer_id   (server-side only)
  recompute  db.risk.refresh_risk_scores(full=False): every offer is "changed" (never scored),
             context + market in one query, history in chunks of 100k offers (one binary COPY
             each, decoded with numpy, read ahead on a 2nd connection), the vectorized model,
             per chunk one COPY into a chunk table + upsert + history insert (on a writer
             thread, overlapping the next chunk's scoring); committed.

and offers/s, peak RSS of this process, and the ratio recompute / baseline; then the steady
state: 1 % of the offers (sparse ids) changed since their score, rescored the same way.

Run: .venv/bin/python bench/bench_risk_recompute.py [n_offers] [days] [--keep] [--reuse NAME]
     (default 1000000 90; --keep leaves the database for a re-run with --reuse NAME or
     SMARTBUY_BENCH_REUSE=NAME, which skips the ~6 min generation and never drops it; the
     re-run truncates the score tables first, so every run starts from "never scored")
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta

import psycopg

from benchlib import close_bench_database, open_bench_database, peak_rss_mib, reuse_arg

from smartbuy_pipeline.db import risk as risk_db
from smartbuy_pipeline.db.engine import DatabaseUrl
from smartbuy_pipeline.db.migrations import migrate
from smartbuy_pipeline.domain.gtin import gs1_check_digit

N_SHOPS = 1_000
GEN_CHUNK = 100_000  # offers per generate_series insert

SHOPS_SQL = """
insert into shops (name, domain, reputation_score, created_at)
select 'Loja ' || i, 'shop' || i || '.bench.example.com.br',
       case when i %% 50 = 0 then 15 else 40 + (i * 37) %% 60 end,
       case when i %% 50 = 0 then %(now)s - interval '10 days' else %(now)s - interval '1000 days' end
from generate_series(1::bigint, %(n)s::bigint) i
"""

# kind by offer: 0-69 steady, 70-84 drift, 85-89 genuine drop, 90-93 Black-Friday fake,
# 94-97 volatile, 98-99 scam (priced at 40 % of base, from a low-reputation shop)
OFFERS_SQL = """
insert into offers (id, product_id, shop_id, source_kind, locator, currency, price, reference_price,
                    freight, availability, last_changed_at)
select i, 1 + (i - 1) %% %(n_products)s,
       case when (i * 7919) %% 100 >= 98 then 50 * (1 + i %% 20)
            else 1 + ((i - 1) %% %(n_products)s + ((i - 1) / %(n_products)s) * 7) %% %(n_shops)s end,
       'page', 'https://bench.example/o/' || i, 'BRL', null, null,
       case when i %% 4 = 0 then 19.90 else 0 end, 'in_stock', %(now)s - interval '2 days'
from generate_series(1::bigint, %(n)s::bigint) i
"""

# the check bookkeeping (0015): the offers' insert trigger made one offer_checks row each
CHECKS_SQL = """
update offer_checks c set last_checked_at = %(now)s - interval '1 hour',
                          last_success_at = %(now)s - interval '1 hour'
from offers o
where o.id = c.offer_id
"""

# one accepted observation a day per offer, the last one 1 hour before now; price in cents
HISTORY_SQL = """
insert into price_history (offer_id, observed_at, price, currency, reference_price, freight,
                           availability, status, source_kind)
select o, %(now)s - interval '1 hour' - (%(days)s - 1 - d) * interval '1 day',
       round(p / 100.0, 2), 'BRL',
       case when k between 90 and 93 and d >= %(days)s - 1 then round(base * 1.5 / 100.0, 2) end,
       0, 'in_stock', 'accepted', 'page'
from (
    select o, d, k, base,
           case
             when k < 70 then base
             when k < 85 then base + (base * (((o + d) %% 29) - 14)) / 200
             when k < 90 then case when d >= %(days)s / 2 + o %% 30 then base * 3 / 4 else base end
             when k < 94 then case when d >= %(days)s - 36 and d < %(days)s - 1 then base * 5 / 4 else base end
             when k < 98 then case when (o + d) %% 3 = 0 then base * 13 / 10 else base end
             else base * 2 / 5
           end as p
    from (select o, (o * 7919) %% 100 as k, 9990 + (o * 104729) %% 890000 as base
          from generate_series(%(lo)s::bigint, %(hi)s::bigint) o) off
    cross join generate_series(0, %(days)s - 1) d
) g
order by o, d
"""

CURRENT_SQL = """
update offers o set price = h.price, reference_price = h.reference_price
from price_history h
where h.offer_id = o.id and h.observed_at = %(now)s - interval '1 hour'
"""

BASELINE_SQL = """
select count(*), sum(m)
from (select offer_id, min(price) as m, percentile_cont(0.5) within group (order by price) as med
      from price_history
      where observed_at > %(since)s and observed_at <= %(now)s and status = 'accepted'
        and price is not null
      group by offer_id) s
"""

SIZES_SQL = """
select 'price_history (all partitions)', sum(c.reltuples)::bigint,
       pg_size_pretty(sum(pg_total_relation_size(c.oid)))
from pg_inherits i join pg_class c on c.oid = i.inhrelid
where i.inhparent = 'public.price_history'::regclass
union all
select relname, reltuples::bigint, pg_size_pretty(pg_total_relation_size(oid))
from pg_class where oid in ('public.offers'::regclass, 'public.offer_checks'::regclass,
                            'public.products'::regclass,
                            'public.shops'::regclass, 'public.offer_risk_scores'::regclass,
                            'public.offer_risk_score_history'::regclass)
"""


def gtin(i: int) -> str:
    body = f"790{i:010d}"
    return body + str(gs1_check_digit(body))


def generate(url: DatabaseUrl, n: int, days: int, now: datetime) -> None:
    n_products = max(1, n // 5)
    with psycopg.connect(url.url) as conn:
        conn.execute("select public.fn_ensure_price_history_partitions(%s::date - %s, %s)",
                     (now.date(), days + 31, days // 28 + 3))
        conn.execute(SHOPS_SQL, {"n": N_SHOPS, "now": now})
        with conn.cursor().copy("copy products (id, gtin, name) from stdin") as copy:
            for i in range(1, n_products + 1):
                copy.write_row((i, gtin(i), f"Produto {i}"))
        conn.execute(OFFERS_SQL, {"n": n, "n_products": n_products, "n_shops": N_SHOPS, "now": now})
        conn.execute(CHECKS_SQL, {"now": now})
        conn.commit()
        t0 = time.perf_counter()
        for lo in range(1, n + 1, GEN_CHUNK):
            hi = min(n, lo + GEN_CHUNK - 1)
            conn.execute(HISTORY_SQL, {"lo": lo, "hi": hi, "days": days, "now": now})
            conn.commit()
            print(f"  history offers {lo:,}-{hi:,}: {time.perf_counter() - t0:.0f} s", flush=True)
        conn.execute(CURRENT_SQL, {"now": now})
        conn.commit()
    with psycopg.connect(url.url, autocommit=True) as conn:
        conn.execute("vacuum analyze")


def main() -> None:
    argv = sys.argv[1:]
    reuse = reuse_arg(argv)
    args = [a for a in argv if not a.startswith("--")]
    keep = "--keep" in argv
    n = int(args[0]) if args else 1_000_000
    days = int(args[1]) if len(args) > 1 else 90
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    url = open_bench_database("smartbuy_bench_risk", reuse)
    name = url.database
    try:
        if not reuse:
            migrate(url)
            t0 = time.perf_counter()
            print(f"generating {n:,} offers x {days} days in {name} ...", flush=True)
            generate(url, n, days, now)
            print(f"generated and analyzed in {time.perf_counter() - t0:.0f} s")
        with psycopg.connect(url.url) as conn:
            print("\ntable                              rows (est.)     size")
            for rel, rows, size in conn.execute(SIZES_SQL):
                print(f"{rel:<34} {rows:>12,} {size:>10}")

            since = now.replace(year=now.year - 1)
            t0 = time.perf_counter()
            groups, _ = conn.execute(BASELINE_SQL, {"since": since, "now": now}).fetchone()
            baseline_s = time.perf_counter() - t0
            conn.rollback()

            conn.execute("truncate offer_risk_score_history, offer_risk_scores")
            conn.commit()
            selected = len(risk_db.changed_offer_ids(conn))
            conn.commit()  # the recompute runs in its own top-level transaction (snapshot export)
            t0 = time.perf_counter()
            with conn.transaction():
                run = risk_db.refresh_risk_scores(conn, now=now, connect=lambda: psycopg.connect(url.url))
            recompute_s = time.perf_counter() - t0

            # steady state: 1 % of the offers changed since their score (sparse ids)
            later = now + timedelta(hours=1)
            conn.execute("update offers set last_changed_at = %s where id %% 100 = 7",
                         (now + timedelta(minutes=30),))
            conn.commit()
            t0 = time.perf_counter()
            with conn.transaction():
                small = risk_db.refresh_risk_scores(conn, now=later,
                                                    connect=lambda: psycopg.connect(url.url))
            small_s = time.perf_counter() - t0
        print(f"\nbaseline  (min + median per offer, server-side): {groups:,} offers in {baseline_s:.1f} s "
              f"= {groups / baseline_s:,.0f} offers/s")
        print(f"recompute (incremental, {selected:,} changed offers, {run.history_observations:,} "
              f"observations): {run.scored:,} offers in {recompute_s:.1f} s = "
              f"{run.scored / recompute_s:,.0f} offers/s")
        print(f"  context + market {run.context_s:.1f} s; history read {run.load_s:.1f} s (binary COPY + "
              f"decode, summed over chunks, read ahead on a 2nd connection); score {run.score_s:.1f} s; "
              f"write {run.write_s:.1f} s (COPY text + COPY {run.write_s - run.apply_s:.1f} s + "
              f"upsert/history {run.apply_s:.1f} s; on a writer thread, overlapping scoring)")
        print(f"  buckets A {run.bucket_a:,} / B {run.bucket_b:,} / C {run.bucket_c:,}; "
              f"history rows {run.history_rows:,}")
        print(f"ratio recompute / baseline: {recompute_s / baseline_s:.1f}x")
        print(f"steady state (1 % changed, sparse ids): {small.scored:,} offers in {small_s:.1f} s "
              f"= {small.scored / small_s:,.0f} offers/s; {small.flips:,} bucket flips, "
              f"{small.history_rows:,} history rows")
        print(f"peak RSS (this process): {peak_rss_mib():,.0f} MiB")
        print(f"within 60 s: {'yes' if recompute_s <= 60 else 'NO'}")
    finally:
        close_bench_database(url, reuse=reuse, keep=keep)


if __name__ == "__main__":
    main()
