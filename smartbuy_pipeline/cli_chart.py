"""`smartbuy chart OFFER_ID|GTIN`: a PNG price-history chart (Keepa / camelcamelcamel style).

Registered in cli.py with `app.command("chart")(chart)`. Reads only (a read-only, repeatable-read
transaction: the three series come from one snapshot). Errors are one clear line on stderr and
exit code 1, like the rest of the CLI.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from smartbuy_pipeline.cli_support import console, one_line_errors


def _parse_until(raw: str) -> datetime | None:
    if not raw.strip():
        return None
    try:
        at = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise ValueError(f"--until must be an ISO-8601 instant (e.g. 2026-11-26T12:00:00Z), got {raw!r}") from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def check_output(path: Path) -> None:
    """Fail before any query when the file obviously cannot be written (write_file still checks)."""
    target = path.expanduser()
    if target.is_dir():
        raise ValueError(f"cannot write {path}: it is a directory")
    parent = target.parent
    if not parent.exists():
        raise ValueError(f"cannot write {path}: No such file or directory")
    if not parent.is_dir():
        raise ValueError(f"cannot write {path}: Not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {path}: Permission denied")


def write_file(path: Path, payload: bytes) -> None:
    """Write atomically (temporary file beside it, then rename); ValueError with one line if not possible."""
    check_output(path)
    target = path.expanduser()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent.resolve())
    except OSError as exc:
        raise ValueError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ValueError(f"cannot write {path}: {exc.strerror or exc}") from None


@one_line_errors
def chart(
    target: Annotated[str, typer.Argument(
        metavar="OFFER_ID|GTIN", show_default=False,
        help="Offer id, or GTIN (8/12/13/14 digits) for all its shops; offer:N / gtin:N force the reading.")],
    days: Annotated[int, typer.Option(help="Days of history up to --until.")] = 90,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="PNG file to write; default "
                                                "chart-<TARGET>.png.", show_default=False)] = None,
    until: Annotated[str, typer.Option(help="End of the window, ISO-8601 (UTC if no offset); default now.",
                                       show_default=False)] = "",
) -> None:
    """Price-history chart as PNG: a step line per shop, the "de" (reference) price dashed, the
    30-day low dotted, and markers where the risk bucket changed (A green, B orange, C red)."""
    import psycopg

    from smartbuy_pipeline.charts import render_png
    from smartbuy_pipeline.db.charts import (
        load_chart_data,
        parse_target,
        resolve_target,
        window,
    )
    from smartbuy_pipeline.db.embedded import resolve_database_url

    end = _parse_until(until)
    window(days, end)  # validate --days before touching the database
    _, label = parse_target(target)  # a malformed TARGET or a bad check digit: no database needed
    path = output if output is not None else Path(f"chart-{label}.png")
    check_output(path)
    url = resolve_database_url()
    with psycopg.connect(url.url, application_name="smartbuy-chart") as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        resolved = resolve_target(conn, target)
        data = load_chart_data(conn, resolved, days=days, end=end)
    png = render_png(data)
    write_file(path, png)
    console.print(f"wrote {escape(str(path))} ({len(png):,} bytes): {escape(data.product)}, "
                  f"{len(data.series)} shop(s), "
                  f"{data.points:,} price point(s), {len(data.bucket_changes)} bucket change(s), "
                  f"{data.start:%Y-%m-%d %H:%M} to {data.end:%Y-%m-%d %H:%M} UTC",
                  highlight=False, soft_wrap=True)
