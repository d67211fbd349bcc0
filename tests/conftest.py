"""Test databases.

The server is SMARTBUY_TEST_DATABASE_URL when set (CI: the local PostgreSQL), otherwise the
embedded server under .smartbuy/test-pgdata. Each pytest process (and each xdist worker) makes a
template database with all migrations applied, then clones it per test, so tests are isolated
and parallel runs never collide. No database means the suite errors; it never skips.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from smartbuy_pipeline.db.engine import DatabaseUrl, check_connection
from smartbuy_pipeline.db.migrations import migrate

TEST_URL_ENV = "SMARTBUY_TEST_DATABASE_URL"
REPO_ROOT = Path(__file__).resolve().parents[1]
RUN_ID = uuid.uuid4().hex[:10]


def _admin_url() -> DatabaseUrl:
    raw = os.environ.get(TEST_URL_ENV)
    if raw:
        url = DatabaseUrl.parse(raw, source=TEST_URL_ENV)
    else:
        from smartbuy_pipeline.db.embedded import start_embedded

        url = start_embedded(REPO_ROOT / ".smartbuy" / "test-pgdata")
    check_connection(url)
    return url


def _create_database(admin: DatabaseUrl, name: str, template: str | None = None) -> DatabaseUrl:
    with psycopg.connect(admin.url, autocommit=True) as conn:
        stmt = sql.SQL("create database {}").format(sql.Identifier(name))
        if template:
            stmt = sql.SQL("create database {} template {}").format(sql.Identifier(name), sql.Identifier(template))
        conn.execute(stmt)
    return admin.with_database(name)


def _drop_database(admin: DatabaseUrl, name: str) -> None:
    with psycopg.connect(admin.url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def pg_admin_url() -> DatabaseUrl:
    """A URL to the test server's maintenance database (for creating and dropping databases)."""
    return _admin_url()


@pytest.fixture(scope="session")
def new_database(pg_admin_url: DatabaseUrl) -> Iterator:
    """Factory: an empty database, dropped at the end of the session."""
    created: list[str] = []
    counter = iter(range(1_000_000))

    def make(template: str | None = None) -> DatabaseUrl:
        name = f"sbt_{RUN_ID}_{next(counter)}"
        created.append(name)
        return _create_database(pg_admin_url, name, template)

    yield make
    for name in reversed(created):
        _drop_database(pg_admin_url, name)


@pytest.fixture(scope="session")
def template_database(new_database) -> str:
    """A database with every migration applied; cloned by `db_url`."""
    url = new_database()
    migrate(url)
    return url.database


@pytest.fixture()
def db_url(new_database, template_database: str) -> DatabaseUrl:
    """A fresh, fully migrated database of this test's own."""
    return new_database(template=template_database)


@pytest.fixture()
def empty_db_url(new_database) -> DatabaseUrl:
    """A fresh database with no migrations applied."""
    return new_database()


@pytest.fixture()
def sim():
    """The simulated marketplace (demo scenario), in-process on a free port."""
    from smartbuy_pipeline.simulator.scenarios import demo_scenario
    from smartbuy_pipeline.simulator.server import SimulatorServer

    with SimulatorServer(demo_scenario()) as server:
        yield server


@pytest.fixture()
def catalog(db_url, sim) -> dict:
    """The demo catalog loaded into `db_url`, pointing at `sim`; shops unthrottled (politeness
    is tested on its own)."""
    from smartbuy_pipeline.db.catalog import upsert_catalog
    from smartbuy_pipeline.simulator.scenarios import demo_scenario

    rows = demo_scenario().catalog_rows(sim.base_url)
    with psycopg.connect(db_url.url) as conn, conn.transaction():
        upsert_catalog(conn, rows["shops"], rows["products"], rows["offers"])
        conn.execute("update shops set min_interval_ms = 0, max_concurrent_requests = 8")
    return rows
