"""Process environment for the CLI: the database, and a Dagster home that uses it.

`prepare_environment()` resolves the data database (starting the embedded server when
SMARTBUY_DATABASE_URL is unset), makes sure Dagster's own database exists beside it, writes
$DAGSTER_HOME/dagster.yaml from the project's `dagster.yaml`, and exports the variables so that
`dagster dev`, the daemon and every run process see the same setup.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from smartbuy_pipeline.db.embedded import resolve_database_url
from smartbuy_pipeline.db.engine import (
    DAGSTER_DATABASE_URL_ENV,
    DATABASE_URL_ENV,
    DatabaseUrl,
    ensure_database,
    smartbuy_home,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Environment:
    database_url: DatabaseUrl
    dagster_database_url: DatabaseUrl
    dagster_home: Path


def prepare_environment() -> Environment:
    data_url = resolve_database_url()
    raw_dagster = os.environ.get(DAGSTER_DATABASE_URL_ENV)
    if raw_dagster:
        dagster_url = DatabaseUrl.parse(raw_dagster, source=DAGSTER_DATABASE_URL_ENV)
    else:
        # Same server, separate database: Dagster's event log never mixes with analysts' tables.
        dagster_url = ensure_database(data_url.with_database("postgres"), f"{data_url.database}_dagster")
    home = Path(os.environ.get("DAGSTER_HOME") or smartbuy_home() / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    os.environ[DATABASE_URL_ENV] = data_url.url
    # dagster-postgres is written for psycopg2, while SQLAlchemy 2.1 defaults postgresql:// to
    # psycopg 3 (whose server-side binding breaks Dagster's `NOTIFY run_events, %s`).
    os.environ[DAGSTER_DATABASE_URL_ENV] = dagster_url.with_driver("psycopg2")
    os.environ["DAGSTER_HOME"] = str(home)
    return Environment(data_url, dagster_url, home)
