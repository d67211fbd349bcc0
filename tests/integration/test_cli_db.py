"""`smartbuy db ...` as a person runs it: real process, real database, exit codes and messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def smartbuy(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBUY_")}
    full_env.update(env)
    full_env["COLUMNS"] = "200"  # keep rich from wrapping the one-line errors in narrow CI logs
    return subprocess.run(
        [sys.executable, "-m", "smartbuy_pipeline.cli", *args],
        cwd=REPO_ROOT, env=full_env, capture_output=True, text=True, timeout=120,
    )


def test_migrate_twice_then_status(empty_db_url):
    env = {"SMARTBUY_DATABASE_URL": empty_db_url.url}
    first = smartbuy("db", "migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_" in first.stdout
    second = smartbuy("db", "migrate", env=env)
    assert second.returncode == 0, second.stderr
    assert "is up to date; nothing to apply" in second.stdout
    assert "applied" not in second.stdout.replace("nothing to apply", "")
    status = smartbuy("db", "status", env=env)
    assert status.returncode == 0, status.stderr
    assert "pending" not in status.stdout
    assert "0001_" in status.stdout


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@127.0.0.1/x", "error: SMARTBUY_DATABASE_URL must be a postgresql:// URL, got scheme 'mysql'"),
        ("postgresql://postgres@127.0.0.1:notaport/x", "error: SMARTBUY_DATABASE_URL is not a valid URL"),
        ("postgresql://postgres@127.0.0.1:5432", "error: SMARTBUY_DATABASE_URL has no database name"),
        ("postgresql://postgres@127.0.0.1:1/smartbuy", "error: cannot connect to postgresql://postgres@127.0.0.1:1/smartbuy:"),
    ],
)
def test_bad_database_url_is_one_clear_line(url, message):
    result = smartbuy("db", "migrate", env={"SMARTBUY_DATABASE_URL": url})
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(message)


def test_password_is_redacted_in_errors():
    result = smartbuy("db", "status", env={"SMARTBUY_DATABASE_URL": "postgresql://u:s3cr3t@127.0.0.1:1/db"})
    assert result.returncode == 1
    assert "s3cr3t" not in result.stderr + result.stdout
    assert "postgresql://u:***@127.0.0.1:1/db" in result.stderr
