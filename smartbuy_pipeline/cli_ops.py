"""`smartbuy ops ...`: runbook procedures, each run through Dagster so it shows in the UI.

Registered in cli.py with `app.add_typer(ops_app, name="ops")`. Errors are one clear line on
stderr and exit code 1, like the rest of the CLI.
"""

from __future__ import annotations

import getpass
from typing import Annotated

import typer
from rich.table import Table

from smartbuy_pipeline.cli_support import QUIET_RUN_CONFIG, console, one_line_errors

ops_app = typer.Typer(help="Operations procedures (runbook).", no_args_is_help=True)


@ops_app.callback()
def _ops() -> None:
    """Operations procedures (runbook), each run as a Dagster job recorded for the UI."""

def _default_actor() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (containers): the audit log still needs an actor
        return "unknown"


def before_after_table(rows: list[dict]) -> Table:
    table = Table(title="Check Risk: before -> after")
    for col, justify in (("offer", "right"), ("shop", "left"), ("product", "left"),
                         ("before", "center"), ("after", "center"), ("reasons", "left")):
        table.add_column(col, justify=justify)
    colour = {"A": "green", "B": "yellow", "C": "red"}
    for r in rows:
        before = "-" if r["prev_score"] is None else f"{r['prev_score']} {r['prev_bucket']}"
        after = f"[{colour.get(r['bucket'], 'white')}]{r['score']} {r['bucket']}[/]"
        if r["prev_bucket"] is not None and r["prev_bucket"] != r["bucket"]:
            after += " [bold](flipped)[/]"
        table.add_row(str(r["offer_id"]), r["shop"], r["product"], before, after, r["reasons"] or "-")
    return table


@ops_app.command("check-risk")
@one_line_errors
def check_risk(
    offer_ids: Annotated[list[int] | None, typer.Argument(help="Offer ids to recompute.", show_default=False)] = None,
    gtin: Annotated[str | None, typer.Option(help="Also recompute every offer of this GTIN.")] = None,
    actor: Annotated[str, typer.Option(help="Who asks (written to the audit log).")] = "",
    as_of: Annotated[str, typer.Option(help="ISO-8601 instant to score as of (replays); default now.",
                                       hidden=True)] = "",
) -> None:
    """Check Risk (runbook procedure B): recompute the offers' risk now, update their bucket and
    write one CALC_RISK audit row per offer, through the Dagster job `check_risk`."""
    import dagster as dg
    import psycopg

    from smartbuy_pipeline.db import risk as risk_db
    from smartbuy_pipeline.runtime import prepare_environment

    ids = list(offer_ids or [])
    if not ids and not gtin:
        raise ValueError("give at least one OFFER_ID or --gtin")
    actor = (actor or _default_actor()).strip() or "unknown"
    env = prepare_environment()
    # Validate before launching: an unknown id or GTIN is a typo, not a failed run.
    with psycopg.connect(env.database_url.url) as conn:
        risk_db.resolve_offer_ids(conn, ids, gtin)

    from smartbuy_pipeline.definitions import defs

    job = defs().resolve_job_def("check_risk")
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance,
            run_config={"ops": {"check_risk_offers": {"config": {
                "offer_ids": ids, "gtin": gtin or "", "as_of": as_of}}}, **QUIET_RUN_CONFIG},
            tags={"smartbuy/actor": actor},
            raise_on_error=False,
        )
    if not result.success:
        failure = next((e for e in result.all_events if e.is_step_failure), None)
        detail = failure.step_failure_data.error.message.strip() if failure and failure.step_failure_data.error else ""
        raise ValueError(f"the check_risk run {result.run_id} failed: {detail or 'see the Dagster UI'}")
    rows = result.output_for_node("check_risk_offers")
    console.print(before_after_table(rows))
    console.print(f"run check_risk {result.run_id} by {actor}: {len(rows)} offer(s), "
                  f"{len(rows)} CALC_RISK audit row(s)")
