"""What every benchmark here shares: the server it runs on, scratch databases, peak RSS.

Scripts import it as `benchlib` (they run as `python bench/<script>.py`, so bench/ is on sys.path).
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from smartbuy_pipeline.db.engine import DatabaseUrl

BENCH_URL_ENV = "SMARTBUY_BENCH_DATABASE_URL"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def admin_url() -> DatabaseUrl:
    """The maintenance database of the benchmark server (SMARTBUY_BENCH_DATABASE_URL, else local)."""
    return DatabaseUrl.parse(os.environ.get(BENCH_URL_ENV, DEFAULT_URL), source=BENCH_URL_ENV)


def peak_rss_mib() -> float:
    """This process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def create_database(name: str) -> DatabaseUrl:
    admin = admin_url()
    with psycopg.connect(admin.url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return admin.with_database(name)


def drop_database(name: str) -> None:
    with psycopg.connect(admin_url().url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@contextmanager
def scratch_databases(*names: str, keep: bool = False) -> Iterator[list[DatabaseUrl]]:
    """Create empty databases on the benchmark server; drop them afterwards unless `keep`."""
    urls = [create_database(name) for name in names]
    try:
        yield urls
    finally:
        if not keep:
            for name in names:
                drop_database(name)


def reuse_arg(argv: list[str]) -> str | None:
    """`--reuse NAME` (taken out of argv) or SMARTBUY_BENCH_REUSE: a database kept by an earlier
    `--keep` run, to measure again without generating the data."""
    reuse = os.environ.get("SMARTBUY_BENCH_REUSE")
    if "--reuse" in argv:
        at = argv.index("--reuse")
        if at + 1 >= len(argv):
            raise SystemExit("--reuse needs a database name")
        reuse = argv[at + 1]
        del argv[at:at + 2]
    return reuse


def open_bench_database(prefix: str, reuse: str | None) -> DatabaseUrl:
    """The reused database, or a new one named after the prefix and this process."""
    return admin_url().with_database(reuse) if reuse else create_database(f"{prefix}_{os.getpid()}")


def close_bench_database(url: DatabaseUrl, *, reuse: str | None, keep: bool) -> None:
    """Drop what this run created, unless asked to keep it; a reused database is never dropped."""
    if keep:
        print(f"kept database {url.database} (--reuse {url.database} to re-run without generating)")
    elif not reuse:
        drop_database(url.database)
