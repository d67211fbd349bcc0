"""The migration runner against real PostgreSQL."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import psycopg
import pytest

from smartbuy_pipeline.db.migrations import MIGRATIONS_DIR, MigrationError, discover, migrate, status


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    write(tmp_path, "0001_create_things.sql", "create table things (id int primary key, label text);")
    write(tmp_path, "0002_seed_things.sql", "insert into things values (1, 'um'), (2, 'dois');")
    return tmp_path


def count(url, query: str) -> int:
    with psycopg.connect(url.url) as conn:
        return conn.execute(query).fetchone()[0]


def test_applies_in_order_then_second_run_is_noop(empty_db_url, folder):
    applied = migrate(empty_db_url, folder)
    assert [m.filename for m in applied] == ["0001_create_things.sql", "0002_seed_things.sql"]
    assert migrate(empty_db_url, folder) == []
    assert count(empty_db_url, "select count(*) from things") == 2
    state = status(empty_db_url, folder)
    assert [a.version for a in state.applied] == [1, 2]
    assert state.pending == [] and state.edited == [] and state.missing == []


def test_status_lists_pending(empty_db_url, folder):
    migrate(empty_db_url, folder)
    write(folder, "0003_more.sql", "alter table things add column extra int;")
    state = status(empty_db_url, folder)
    assert [m.filename for m in state.pending] == ["0003_more.sql"]


def test_edited_applied_migration_is_refused_by_name(empty_db_url, folder):
    migrate(empty_db_url, folder)
    write(folder, "0002_seed_things.sql", "insert into things values (3, 'três');")
    write(folder, "0003_more.sql", "alter table things add column extra int;")
    with pytest.raises(MigrationError, match=r"edited after being applied: 0002_seed_things\.sql"):
        migrate(empty_db_url, folder)
    # Nothing ran: 0003 is still pending and the data is unchanged.
    assert count(empty_db_url, "select count(*) from things") == 2
    assert [m.filename for m in status(empty_db_url, folder).pending] == ["0003_more.sql"]


def test_sql_error_rolls_back_that_file_and_names_it(empty_db_url, folder):
    write(folder, "0003_broken.sql", "create table half (id int);\nselect * from no_such_table;\n")
    with pytest.raises(MigrationError, match=r"0003_broken\.sql failed at line 2: relation \"no_such_table\""):
        migrate(empty_db_url, folder)
    assert count(empty_db_url, "select count(*) from pg_tables where tablename = 'half'") == 0
    assert [a.version for a in status(empty_db_url, folder).applied] == [1, 2]


def test_gap_and_duplicate_and_bad_names_are_refused(tmp_path):
    write(tmp_path, "0001_a.sql", "select 1;")
    write(tmp_path, "0003_c.sql", "select 1;")
    with pytest.raises(MigrationError, match="gap in migration numbers: 0002 is missing before 0003_c.sql"):
        discover(tmp_path)
    write(tmp_path, "0002_b.sql", "select 1;")
    write(tmp_path, "0002_b_again.sql", "select 1;")
    with pytest.raises(MigrationError, match="duplicate migration number 0002"):
        discover(tmp_path)
    (tmp_path / "0002_b_again.sql").unlink()
    write(tmp_path, "4_Bad Name.sql", "select 1;")
    with pytest.raises(MigrationError, match="4_Bad Name.sql: migration file names must look like"):
        discover(tmp_path)


def test_concurrent_runners_do_not_interleave(empty_db_url, tmp_path):
    # Slow migrations widen the window in which an unlocked runner would apply a file twice.
    write(tmp_path, "0001_slow.sql", "select pg_sleep(0.3); create table t1 (id int);")
    write(tmp_path, "0002_slow.sql", "select pg_sleep(0.3); create table t2 (id int);")
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append([m.filename for m in migrate(empty_db_url, tmp_path)])
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results, key=len) == [[], [], ["0001_slow.sql", "0002_slow.sql"]]


def test_unreachable_database_is_one_clear_line(tmp_path):
    from smartbuy_pipeline.db.engine import DatabaseUrl

    url = DatabaseUrl.parse("postgresql://postgres@127.0.0.1:1/nowhere")
    write(tmp_path, "0001_a.sql", "select 1;")
    with pytest.raises(MigrationError) as info:
        migrate(url, tmp_path)
    assert str(info.value).startswith("cannot connect to postgresql://postgres@127.0.0.1:1/nowhere:")
    assert "\n" not in str(info.value)


def test_project_migrations_apply_cleanly_and_are_idempotent(empty_db_url):
    files = discover(MIGRATIONS_DIR)
    assert files, "sql/ must hold the schema migrations"
    assert [m.version for m in migrate(empty_db_url)] == [m.version for m in files]
    assert migrate(empty_db_url) == []


def test_0015_moves_each_offers_check_state_to_offer_checks(empty_db_url, tmp_path):
    """Applied to a database tracked before 0015: every offer's check state arrives unchanged."""
    for m in discover(MIGRATIONS_DIR):
        if m.version < 15:
            shutil.copy(MIGRATIONS_DIR / m.filename, tmp_path / m.filename)
    migrate(empty_db_url, tmp_path)
    with psycopg.connect(empty_db_url.url, autocommit=True) as conn:
        conn.execute("insert into products (gtin, name) values ('07891234567895', 'Cafeteira')")
        conn.execute("insert into shops (name, domain) values ('Loja', 'loja.example')")
        conn.execute("""
            insert into offers (product_id, shop_id, source_kind, locator, price, currency, etag, last_modified,
                                last_checked_at, last_success_at, consecutive_failures, last_failure_reason,
                                unhealthy_until)
            values (1, 1, 'page', 'https://loja.example/a', 10.00, 'BRL', '"v1"', 'Mon', '2026-11-01 10:00Z',
                    '2026-11-01 09:00Z', 5, 'http_5xx', '2026-11-01 12:00Z'),
                   (1, 1, 'page', 'https://loja.example/b', null, null, null, null, null, null, 0, null, null)
        """)
    shutil.copy(MIGRATIONS_DIR / "0015_offer_checks.sql", tmp_path / "0015_offer_checks.sql")
    assert [m.version for m in migrate(empty_db_url, tmp_path)] == [15]
    with psycopg.connect(empty_db_url.url) as conn:
        conn.execute("set time zone 'UTC'")
        rows = conn.execute("""
            select o.locator, c.etag, c.last_modified, c.last_checked_at::text, c.last_success_at::text,
                   c.consecutive_failures, c.last_failure_reason, c.unhealthy_until::text
            from offers o join offer_checks c on c.offer_id = o.id order by o.locator
        """).fetchall()
        dropped = conn.execute("select count(*) from information_schema.columns where table_name = 'offers'"
                               " and column_name in ('etag', 'last_checked_at', 'consecutive_failures')").fetchone()
    assert rows == [
        ("https://loja.example/a", '"v1"', "Mon", "2026-11-01 10:00:00+00", "2026-11-01 09:00:00+00", 5, "http_5xx",
         "2026-11-01 12:00:00+00"),
        ("https://loja.example/b", None, None, None, None, 0, None, None),
    ]
    assert dropped == (0,)
