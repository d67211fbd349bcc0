"""Ordered plain-SQL migrations from `sql/` (`0001_description.sql`, ...).

Properties (why a small runner rather than a library: none of the well-kept tools we tried
records checksums *and* refuses edited files *and* rejects numbering gaps):
- each file is applied once, in its own transaction, recorded with its SHA-256 checksum;
- the whole run holds a PostgreSQL advisory lock, so two runners cannot interleave;
- an applied file whose content changed is refused, naming the file, before anything runs;
- a folder with a gap or a duplicate number is refused before anything runs;
- a file with an SQL error is rolled back whole; the error names the file and the statement.
"""

from __future__ import annotations

import getpass
import hashlib
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg

from .engine import DatabaseUrl

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "sql"
FILE_PATTERN = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
# Arbitrary but fixed: "smartbuy" in ASCII, folded to a bigint. All runners must agree on it.
ADVISORY_LOCK_KEY = 0x736D61727462

HISTORY_TABLE_DDL = """
create table if not exists public.smartbuy_schema_migrations (
    version     integer primary key,
    name        text not null,
    checksum    text not null,
    applied_at  timestamptz not null default now(),
    applied_by  text not null,
    duration_ms integer not null
)
"""


class MigrationError(RuntimeError):
    """A migration could not be applied or the folder is inconsistent. Message is one line."""


@dataclass(frozen=True)
class MigrationFile:
    version: int
    name: str
    path: Path
    checksum: str

    @property
    def filename(self) -> str:
        return self.path.name

    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


@dataclass(frozen=True)
class AppliedMigration:
    version: int
    name: str
    checksum: str
    applied_at: datetime


@dataclass(frozen=True)
class MigrationStatus:
    applied: list[AppliedMigration]
    pending: list[MigrationFile]
    edited: list[MigrationFile]  # applied, but the file on disk differs
    missing: list[AppliedMigration]  # applied, but no longer on disk


def discover(migrations_dir: Path = MIGRATIONS_DIR) -> list[MigrationFile]:
    """The migration files in order; refuses stray names, duplicates and gaps."""
    if not migrations_dir.is_dir():
        raise MigrationError(f"migrations folder {migrations_dir} does not exist")
    files: dict[int, MigrationFile] = {}
    for path in sorted(migrations_dir.glob("*.sql")):
        match = FILE_PATTERN.match(path.name)
        if not match:
            raise MigrationError(
                f"{path.name}: migration file names must look like 0001_lower_case_description.sql"
            )
        version = int(match["version"])
        if version in files:
            raise MigrationError(
                f"duplicate migration number {version:04d}: {files[version].filename} and {path.name}"
            )
        checksum = hashlib.sha256(path.read_bytes()).hexdigest()
        files[version] = MigrationFile(version, match["name"], path, checksum)
    ordered = [files[v] for v in sorted(files)]
    for expected, mig in enumerate(ordered, start=1):
        if mig.version != expected:
            raise MigrationError(f"gap in migration numbers: {expected:04d} is missing before {mig.filename}")
    return ordered


def _applied(conn: psycopg.Connection) -> dict[int, AppliedMigration]:
    exists = conn.execute("select to_regclass('public.smartbuy_schema_migrations')").fetchone()[0]
    if exists is None:
        return {}
    rows = conn.execute(
        "select version, name, checksum, applied_at from public.smartbuy_schema_migrations order by version"
    ).fetchall()
    return {r[0]: AppliedMigration(*r) for r in rows}


def _status(files: list[MigrationFile], applied: dict[int, AppliedMigration]) -> MigrationStatus:
    on_disk = {f.version: f for f in files}
    return MigrationStatus(
        applied=list(applied.values()),
        pending=[f for f in files if f.version not in applied],
        edited=[f for f in files if f.version in applied and applied[f.version].checksum != f.checksum],
        missing=[a for v, a in applied.items() if v not in on_disk],
    )


def _connect(url: DatabaseUrl) -> psycopg.Connection:
    try:
        return psycopg.connect(url.url, connect_timeout=10, application_name="smartbuy-migrate")
    except psycopg.Error as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise MigrationError(f"cannot connect to {url.redacted()}: {reason}") from None


def status(url: DatabaseUrl, migrations_dir: Path = MIGRATIONS_DIR) -> MigrationStatus:
    files = discover(migrations_dir)
    with _connect(url) as conn:
        return _status(files, _applied(conn))


def _describe_sql_error(mig: MigrationFile, exc: psycopg.Error) -> str:
    diag = exc.diag
    message = diag.message_primary or str(exc).strip().splitlines()[0]
    where = ""
    if diag.statement_position:
        # Position is a 1-based character offset into the file's text: turn it into a line number.
        line = mig.sql()[: int(diag.statement_position)].count("\n") + 1
        where = f" at line {line}"
    return f"{mig.filename} failed{where}: {message}; nothing from this file was applied"


def migrate(url: DatabaseUrl, migrations_dir: Path = MIGRATIONS_DIR) -> list[MigrationFile]:
    """Apply pending migrations in order; return what was applied (empty when up to date)."""
    files = discover(migrations_dir)
    applied_now: list[MigrationFile] = []
    with _connect(url) as conn:
        conn.autocommit = True
        # Session-level lock: held across the per-file transactions below, released on close.
        conn.execute("select pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        try:
            conn.execute(HISTORY_TABLE_DDL)
            state = _status(files, _applied(conn))
            if state.edited:
                names = ", ".join(f.filename for f in state.edited)
                raise MigrationError(f"applied migration(s) were edited after being applied: {names}; "
                                     "add a new migration instead of changing an applied one")
            if state.missing:
                names = ", ".join(f"{m.version:04d}_{m.name}.sql" for m in state.missing)
                raise MigrationError(f"the database has migration(s) not present in {migrations_dir}: {names}")
            actor = getpass.getuser()
            for mig in state.pending:
                started = time.monotonic()
                try:
                    with conn.transaction():
                        conn.execute(mig.sql())
                        conn.execute(
                            "insert into public.smartbuy_schema_migrations"
                            " (version, name, checksum, applied_by, duration_ms) values (%s, %s, %s, %s, %s)",
                            (mig.version, mig.name, mig.checksum, actor,
                             int((time.monotonic() - started) * 1000)),
                        )
                except psycopg.Error as exc:
                    raise MigrationError(_describe_sql_error(mig, exc)) from None
                applied_now.append(mig)
        finally:
            if not conn.closed:
                conn.execute("select pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
    return applied_now
