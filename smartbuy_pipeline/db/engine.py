"""Where the database is, and how to connect to it.

One setting, SMARTBUY_DATABASE_URL. When it is unset, the embedded PostgreSQL under `.smartbuy/`
is started (see `embedded.py`). There is no SQLite fallback: every feature relies on PostgreSQL
(row-level security, partitioning, COPY).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import sqlalchemy as sa
from sqlalchemy.engine import Engine

DATABASE_URL_ENV = "SMARTBUY_DATABASE_URL"
DAGSTER_DATABASE_URL_ENV = "SMARTBUY_DAGSTER_DATABASE_URL"
HOME_ENV = "SMARTBUY_HOME"  # where embedded data and the Dagster home live; default ./.smartbuy
DEFAULT_DATABASE = "smartbuy"


class DatabaseConfigError(RuntimeError):
    """The database setting is malformed or the server cannot be reached. Message is one line."""


@dataclass(frozen=True)
class DatabaseUrl:
    """A libpq-style URL (postgresql://user@host:port/db?host=/socket) with a few conveniences."""

    url: str

    @classmethod
    def parse(cls, raw: str, *, source: str = DATABASE_URL_ENV) -> "DatabaseUrl":
        raw = raw.strip()
        try:
            parts = urlsplit(raw)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise DatabaseConfigError(f"{source} is not a valid URL: {exc}") from None
        scheme = parts.scheme.split("+", 1)[0]
        if scheme not in ("postgresql", "postgres"):
            raise DatabaseConfigError(
                f"{source} must be a postgresql:// URL, got scheme {parts.scheme or '(none)'!r}"
            )
        has_socket = "host" in parse_qs(parts.query)
        if not parts.hostname and not has_socket:
            raise DatabaseConfigError(f"{source} has no host (expected postgresql://user@host:port/db)")
        if not parts.path.strip("/"):
            raise DatabaseConfigError(f"{source} has no database name (expected .../dbname)")
        return cls(urlunsplit(("postgresql",) + tuple(parts[1:])))

    @property
    def database(self) -> str:
        return urlsplit(self.url).path.lstrip("/")

    def with_database(self, name: str) -> "DatabaseUrl":
        parts = urlsplit(self.url)
        return DatabaseUrl(urlunsplit(parts._replace(path="/" + name)))

    def with_driver(self, driver: str) -> str:
        """The URL with an explicit SQLAlchemy driver, e.g. postgresql+psycopg://..."""
        return f"postgresql+{driver}" + self.url[len("postgresql") :]

    @property
    def sqlalchemy(self) -> str:
        return self.with_driver("psycopg")

    def redacted(self) -> str:
        """The URL with any password replaced, safe for logs and error messages."""
        parts = urlsplit(self.url)
        if not parts.password:
            return self.url.replace(":@", "@", 1) if ":@" in parts.netloc else self.url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))


def smartbuy_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path.cwd() / ".smartbuy").resolve()


def configured_database_url() -> DatabaseUrl | None:
    raw = os.environ.get(DATABASE_URL_ENV)
    return DatabaseUrl.parse(raw) if raw else None


def make_engine(url: DatabaseUrl, **kwargs) -> Engine:
    """SQLAlchemy engine on psycopg 3. Pre-ping so a restarted server is not a failed run."""
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("connect_args", {"connect_timeout": 10, "application_name": "smartbuy"})
    return sa.create_engine(url.sqlalchemy, **kwargs)


def check_connection(url: DatabaseUrl) -> None:
    """Connect once, turning any failure into a one-line DatabaseConfigError."""
    import psycopg

    try:
        with psycopg.connect(url.url, connect_timeout=10) as conn:
            conn.execute("select 1")
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseConfigError(f"cannot connect to {url.redacted()}: {reason}") from None


def ensure_database(admin_url: DatabaseUrl, name: str) -> DatabaseUrl:
    """Create database `name` on the server of `admin_url` if it does not exist."""
    import psycopg
    from psycopg import sql

    try:
        with psycopg.connect(admin_url.url, autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
            if not exists:
                try:
                    conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
                except psycopg.errors.DuplicateDatabase:
                    pass  # created concurrently by another process
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseConfigError(f"cannot create database {name!r} on {admin_url.redacted()}: {reason}") from None
    return admin_url.with_database(name)
