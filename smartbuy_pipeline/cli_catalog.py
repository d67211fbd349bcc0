"""`smartbuy catalog ...`: import and export the catalog (runbook procedure A, docs/catalog.md),
and `smartbuy ops deactivate-offer`.

Registered in cli.py with `app.add_typer(catalog_app, name="catalog")`; importing this module
also adds `deactivate-offer` to the `ops` sub-app (it runs the Dagster job `deactivate_offer` in
process, like `ops check-risk`).

`catalog import` exit codes: 0 every row landed (or would, with --dry-run); 1 some rows were
rejected (the valid ones landed), or an error such as an unreachable database ("error: ..." on
stderr, as everywhere in the CLI); 2 unusable input (missing file, unknown format, bad CSV
header, broken JSON array): one line on stderr, nothing applied.
"""

from __future__ import annotations

import csv
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from smartbuy_pipeline.cli_ops import _default_actor, ops_app
from smartbuy_pipeline.cli_support import QUIET_RUN_CONFIG, console, err_console, one_line_errors

catalog_app = typer.Typer(help="Catalog import and export (runbook procedure A).", no_args_is_help=True)

EXIT_OK, EXIT_REJECTED, EXIT_UNUSABLE = 0, 1, 2
PROGRESS_MIN_BYTES = 1 << 20  # show the progress bar (on a terminal) for files from 1 MiB
PROGRESS_EVERY = 2_000  # rows between progress updates
SHOW_REJECTED = 200  # rejected rows printed; --rejects FILE writes them all


def cli_actor(actor: str) -> str:
    """--actor as given, else the OS user prefixed "cli:"."""
    return actor.strip() or f"cli:{_default_actor()}"


def _unusable(message: str) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {escape(' '.join(message.split()))}", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_UNUSABLE)


def _with_progress(reader, items: Iterable, progress, task) -> Iterator:
    n = 0
    for item in items:
        yield item
        n += 1
        if n % PROGRESS_EVERY == 0:
            progress.update(task, completed=reader.bytes_read, rows=n)
    progress.update(task, completed=reader.total_bytes or reader.bytes_read, rows=n,
                    description="writing to the database")


def _counts_table(result, title: str) -> Table:
    table = Table(title=title)
    table.add_column("entity")
    for col in ("inserted", "updated", "unchanged"):
        table.add_column(col, justify="right")
    for name, c in result.counts().items():
        table.add_row(name, str(c["inserted"]), str(c["updated"]), str(c["unchanged"]))
    return table


@catalog_app.command("import", short_help="Import a catalog file (shops, products, offers) with audit rows.")
@one_line_errors
def import_cmd(
    file: Annotated[Path, typer.Argument(help="Catalog file: .csv, .json or .jsonl (docs/catalog.md).",
                                         show_default=False)],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and count the changes, then roll back.")] = False,
    actor: Annotated[str, typer.Option(help="Who imports (audit log); default cli:<OS user>.")] = "",
    fmt: Annotated[str, typer.Option("--format", help="csv, json or jsonl; default from the extension.")] = "",
    rejects: Annotated[Path | None, typer.Option(help="Also write every rejected row (line, kind, key, "
                                                      "reason) to this CSV file.")] = None,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress",
                                                  help="Progress bar; default: on a terminal, files from 1 MiB.",
                                                  show_default=False)] = None,
) -> None:
    """Import shops, products and offers: valid rows land with one UPSERT_* audit row per
    change; rejected rows are printed with their line. Exit 0: all landed; 1: some rejected;
    2: unusable file."""
    import psycopg
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

    from smartbuy_pipeline.db.catalog import import_catalog
    from smartbuy_pipeline.db.embedded import resolve_database_url
    from smartbuy_pipeline.domain.catalog_file import CatalogFileError, open_catalog

    who = cli_actor(actor)
    try:
        with open_catalog(file, fmt or None) as reader:
            url = resolve_database_url()
            show = progress if progress is not None else (
                console.is_terminal and (reader.total_bytes or 0) >= PROGRESS_MIN_BYTES)
            bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                           TextColumn("{task.fields[rows]:,} rows"), TimeElapsedColumn(),
                           console=console, transient=True, disable=not show)
            with bar, psycopg.connect(url.url, application_name="smartbuy-catalog-import") as conn:
                task = bar.add_task(f"reading {file.name}", total=reader.total_bytes or None, rows=0)
                result = import_catalog(conn, _with_progress(reader, reader, bar, task), actor=who,
                                        dry_run=dry_run, source=file.name)
    except CatalogFileError as exc:
        raise _unusable(str(exc)) from None

    verb = "would land (dry run, rolled back)" if dry_run else "landed"
    console.print(_counts_table(result, f"catalog import of {file.name} by {who}"))
    console.print(f"{result.rows_read:,} row(s) read: {result.landed:,} {verb}, "
                  f"{len(result.rejected):,} rejected; {result.audit_rows:,} audit row(s)"
                  f"{' (rolled back)' if dry_run else ''}", highlight=False)
    if rejects is not None:
        with rejects.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(("line", "kind", "key", "reason"))
            writer.writerows((e.line, e.kind, e.key or "", e.reason) for e in result.rejected)
    if result.rejected:
        console.print(f"rejected rows{f' (first {SHOW_REJECTED})' if len(result.rejected) > SHOW_REJECTED else ''}:")
        for e in result.rejected[:SHOW_REJECTED]:
            console.print(f"  line {e.line}: {escape(e.reason)} [dim]({e.kind})[/]", highlight=False, soft_wrap=True)
        if len(result.rejected) > SHOW_REJECTED:
            console.print(f"  ... {len(result.rejected) - SHOW_REJECTED:,} more"
                          f"{f' in {rejects}' if rejects else ' (--rejects FILE writes them all)'}")
        raise typer.Exit(EXIT_REJECTED)


@catalog_app.command("export", short_help="Export the catalog in the import format.")
@one_line_errors
def export_cmd(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write; default stdout.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="csv or json (JSON Lines); default from --output's "
                                                      "extension, else csv.")] = "",
) -> None:
    """Write every shop, product and offer in the import format (export then import = no change)."""
    import psycopg

    from smartbuy_pipeline.db.catalog import export_catalog
    from smartbuy_pipeline.db.embedded import resolve_database_url
    from smartbuy_pipeline.domain.catalog_file import CatalogFileError, detect_format, write_catalog

    try:
        kind = detect_format(output or "stdout.csv", fmt or (None if output else "csv"))
    except CatalogFileError as exc:
        raise _unusable(str(exc)) from None
    url = resolve_database_url()
    with psycopg.connect(url.url, application_name="smartbuy-catalog-export") as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ  # one snapshot for the whole file
        conn.read_only = True
        if output is None:
            n = write_catalog(export_catalog(conn), sys.stdout, kind)
            sys.stdout.flush()
            err_console.print(f"exported {n:,} record(s)", highlight=False)
            return
        target = output.resolve()
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
                n = write_catalog(export_catalog(conn), fh, kind)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    console.print(f"exported {n:,} record(s) to {output} ({kind})", highlight=False)


# -- ops deactivate-offer ------------------------------------------------------------------------


@ops_app.command("deactivate-offer", short_help="Deactivate offers with a reason (DEACTIVATE_OFFER audit rows).")
@one_line_errors
def deactivate_offer(
    offer_ids: Annotated[list[int] | None, typer.Argument(help="Offer ids to deactivate.", show_default=False)] = None,
    reason: Annotated[str, typer.Option(help="Why (written to the audit log).", show_default=False)] = "",
    shop: Annotated[str, typer.Option(help="Also: offers of this shop domain with --locator ...")] = "",
    locator: Annotated[list[str] | None, typer.Option(help="Locator (page URL or item id) of an offer of "
                                                           "--shop; repeatable.", show_default=False)] = None,
    actor: Annotated[str, typer.Option(help="Who asks (audit log); default cli:<OS user>.")] = "",
) -> None:
    """Deactivate offers (offers.active = false) with one DEACTIVATE_OFFER audit row per offer,
    through the Dagster job `deactivate_offer`."""
    import dagster as dg
    import psycopg

    from smartbuy_pipeline.db.catalog import resolve_offers
    from smartbuy_pipeline.runtime import prepare_environment

    if not reason.strip():
        raise ValueError("--reason is required (it is written to the audit log)")
    ids, locators = list(offer_ids or []), list(locator or [])
    who = cli_actor(actor)
    env = prepare_environment()
    with psycopg.connect(env.database_url.url) as conn:  # an unknown id is a typo, not a failed run
        resolve_offers(conn, offer_ids=ids, shop_domain=shop or None, locators=locators)

    from smartbuy_pipeline.definitions import defs

    job = defs().resolve_job_def("deactivate_offer")
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance,
            run_config={"ops": {"deactivate_offers": {"config": {
                "offer_ids": ids, "shop_domain": shop, "locators": locators, "reason": reason}}},
                **QUIET_RUN_CONFIG},
            tags={"smartbuy/actor": who},
            raise_on_error=False,
        )
    if not result.success:
        failure = next((e for e in result.all_events if e.is_step_failure), None)
        detail = failure.step_failure_data.error.message.strip() if failure and failure.step_failure_data.error else ""
        raise ValueError(f"the deactivate_offer run {result.run_id} failed: {detail or 'see the Dagster UI'}")
    out = result.output_for_node("deactivate_offers")
    table = Table(title="deactivate offers")
    for col in ("offer", "shop", "source", "locator", "result"):
        table.add_column(col)
    done = set(out["deactivated"])
    for o in out["offers"]:
        table.add_row(str(o["id"]), o["domain"], o["source_kind"], o["locator"],
                      "deactivated" if o["id"] in done else "already inactive")
    console.print(table)
    console.print(f"run deactivate_offer {result.run_id} by {who}: {len(done)} deactivated, "
                  f"{len(out['already_inactive'])} already inactive; {len(done)} DEACTIVATE_OFFER audit row(s)",
                  highlight=False)
