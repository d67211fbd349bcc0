"""What every `smartbuy` command shares: consoles, one-line errors, quiet in-process runs."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import TypeVar

import typer
from rich.console import Console

# Dagster flags parameters it still calls beta (e.g. backfill_policy) on every import: noise
# for someone running the CLI, not something they can act on.
warnings.filterwarnings("ignore", message=r".*is currently in beta.*")

console = Console()
err_console = Console(stderr=True)

# In-process Dagster runs started by the CLI keep their full logs in the UI; the command prints
# its own summary.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

F = TypeVar("F", bound=Callable)


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors whose message is meant for a person; anything else is a bug and keeps its traceback."""
    import psycopg

    from smartbuy_pipeline.db.engine import DatabaseConfigError
    from smartbuy_pipeline.db.migrations import MigrationError

    return (DatabaseConfigError, MigrationError, ValueError, FileNotFoundError, psycopg.OperationalError)


def one_line_errors(fn: F) -> F:
    """Turn a user error into one line on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except user_errors() as exc:
            message = " ".join(str(exc).split())
            err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]
