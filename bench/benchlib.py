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


@contextmanager
def scratch_databases(*names: str, keep: bool = False) -> Iterator[list[DatabaseUrl]]:
    """Create empty databases on the benchmark server; drop them afterwards unless `keep`."""
    admin = admin_url()
    with psycopg.connect(admin.url, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        yield [admin.with_database(name) for name in names]
    finally:
        if not keep:
            with psycopg.connect(admin.url, autocommit=True) as conn:
                for name in names:
                    conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
