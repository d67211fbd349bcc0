"""Benchmark: catalog import (runbook procedure A) of N offers through the real path.

Creates a scratch database (benchlib: SMARTBUY_BENCH_DATABASE_URL's server, else the local server
postgresql://postgres@127.0.0.1:5432/postgres), applies the migrations, and writes a catalog CSV
of 1,000 shops, N/5 products and N offers (page offers with an https URL and a pt-BR price, every
tenth a merchant-feed item id; 0.5 % bad rows: invalid GTIN check digit, non-http locator,
malformed price). It prints, in the same run:

  baseline  the same offers' CSV lines COPYed as-is into a plain table (no parsing, no index,
            no join): what moving the bytes into PostgreSQL costs
  import    open_catalog + db.catalog.import_catalog, committed: parse and validate every row in
            Python, COPY the valid rows into staging, unknown-reference anti-joins, plan tables
            with before/after, inserts and one UPSERT_* audit row per new entity
  re-import the same file again: every row unchanged, no audit row (the steady state)

and rows/s, the ratio import / baseline, peak RSS of this process, and whether the import took
at most 60 s.

Run: .venv/bin/python bench/bench_catalog_import.py [n_offers]   (default 100000)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from benchlib import peak_rss_mib, scratch_databases
from smartbuy_pipeline.db.catalog import import_catalog
from smartbuy_pipeline.db.migrations import migrate
from smartbuy_pipeline.domain.catalog_file import CSV_HEADER, open_catalog
from smartbuy_pipeline.domain.gtin import gs1_check_digit

N_SHOPS = 1_000
LIMIT_S = 60.0


def gtin(i: int) -> str:
    body = f"790{i:09d}"
    return body + str(gs1_check_digit(body))


def write_file(path: Path, n: int) -> tuple[int, int]:
    """The catalog CSV; returns (offer lines, bad lines)."""
    n_products = max(1, n // 5)
    col = {c: i for i, c in enumerate(CSV_HEADER)}
    width = len(CSV_HEADER)

    def line(**values) -> str:
        cells = [""] * width
        for k, v in values.items():
            cells[col[k]] = v
        return ",".join(cells) + "\n"

    bad = 0
    with path.open("w", encoding="utf-8") as fh:
        fh.write(",".join(CSV_HEADER) + "\n")
        for s in range(1, N_SHOPS + 1):
            fh.write(line(type="shop", domain=f"loja{s}.bench.example.com.br", name=f"Loja {s}",
                          reputation_score=str(40 + s % 60)))
        for p in range(1, n_products + 1):
            fh.write(line(type="product", gtin=gtin(p), name=f"Produto {p}", brand=f"Marca {p % 97}",
                          category="bench"))
        for i in range(1, n + 1):
            shop = f"loja{1 + i % N_SHOPS}.bench.example.com.br"
            product = gtin(1 + i % n_products)
            price = f'"{1 + i % 50}.{i % 1000:03d},{i % 100:02d}"' if i % 3 else f"{10 + i % 900}.90"
            kind, locator = ("merchant_feed", f"SKU-{i}") if i % 10 == 0 else (
                "page", f"https://{shop}/p/{i}")
            if i % 200 == 17:  # 0.5 % bad rows
                bad += 1
                which = (i // 200) % 3
                if which == 0:
                    product = product[:-1] + str((int(product[-1]) + 1) % 10)
                elif which == 1 and kind == "page":
                    locator = f"ftp://{shop}/p/{i}"
                else:
                    price = '"12,3,4"'
            fh.write(line(type="offer", shop=shop, gtin=product, source_kind=kind, locator=locator,
                          price=price))
    return n, bad


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with scratch_databases(f"smartbuy_bench_catalog_{os.getpid()}") as (url,):
        run(url, n)


def run(url, n: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="smartbuy-bench-catalog-"))
    path = tmp / "catalog.csv"
    try:
        migrate(url)
        t0 = time.perf_counter()
        offers, bad = write_file(path, n)
        size_mb = path.stat().st_size / 1e6
        print(f"catalog file: {N_SHOPS:,} shops, {max(1, n // 5):,} products, {offers:,} offers "
              f"({bad:,} bad), {size_mb:.1f} MB, written in {time.perf_counter() - t0:.1f} s")

        # baseline: the offers' lines, COPYed as-is (CSV) into a plain table
        offer_lines = [ln for ln in path.read_text(encoding="utf-8").splitlines(keepends=True)
                       if ln.startswith("offer,")]
        with psycopg.connect(url.url) as conn:
            cols = ", ".join(f"{c} text" for c in CSV_HEADER)
            conn.execute(f"create table bench_raw_offers ({cols})")
            conn.commit()
            t0 = time.perf_counter()
            with conn.cursor().copy("copy bench_raw_offers from stdin (format csv)") as copy:
                for chunk in range(0, len(offer_lines), 10_000):
                    copy.write("".join(offer_lines[chunk:chunk + 10_000]))
            conn.commit()
            baseline_s = time.perf_counter() - t0
            conn.execute("drop table bench_raw_offers")
            conn.commit()
        del offer_lines

        with psycopg.connect(url.url) as conn:
            t0 = time.perf_counter()
            with open_catalog(path) as reader:
                result = import_catalog(conn, reader, actor="bench", source=path.name)
            conn.commit()
            import_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            with open_catalog(path) as reader:
                again = import_catalog(conn, reader, actor="bench", source=path.name)
            conn.commit()
            again_s = time.perf_counter() - t0
            stored = conn.execute("select count(*) from offers").fetchone()[0]
            audit = conn.execute("select count(*) from ops_audit_logs").fetchone()[0]

        c = result.counts()
        print(f"\nbaseline (raw COPY of the {n:,} offer lines into a plain table): {baseline_s:.2f} s "
              f"= {n / baseline_s:,.0f} rows/s")
        print(f"import   ({result.rows_read:,} rows): {import_s:.2f} s = {result.rows_read / import_s:,.0f} rows/s; "
              f"offers +{c['offers']['inserted']:,}, shops +{c['shops']['inserted']:,}, products "
              f"+{c['products']['inserted']:,}; {len(result.rejected):,} rejected; {result.audit_rows:,} audit rows")
        print(f"re-import (all unchanged): {again_s:.2f} s; offers unchanged {again.offers.unchanged:,}, "
              f"{again.audit_rows} audit rows, {len(again.rejected):,} rejected")
        print(f"stored offers {stored:,}; ops_audit_logs {audit:,}")
        print(f"ratio import / baseline: {import_s / baseline_s:.1f}x")
        print(f"peak RSS (this process): {peak_rss_mib():,.0f} MiB")
        print(f"within {LIMIT_S:.0f} s: {'yes' if import_s <= LIMIT_S else 'NO'}")
        assert stored == n - len(result.rejected) and len(result.rejected) == bad
    finally:
        path.unlink(missing_ok=True)
        tmp.rmdir()


if __name__ == "__main__":
    main()
