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


# -- rerun and redrive: through the Dagster webserver's GraphQL API (cli_graphql.py) --------------

URL_OPTION = typer.Option("--url", help="The Dagster webserver (`make ui`).", envvar="SMARTBUY_UI_URL")


def _wait_and_report(server, run_ids: list[str], timeout_s: float) -> None:
    def done(run_id: str, status: str) -> None:
        colour = "green" if status == "SUCCESS" else "red"
        console.print(f"run {run_id}: [{colour}]{status}[/]  {server.run_link(run_id)}")

    statuses = server.wait(run_ids, timeout_s=timeout_s, on_done=done)
    failed = [r for r, s in statuses.items() if s != "SUCCESS"]
    if failed:
        raise ValueError(f"{len(failed)} of {len(run_ids)} run(s) did not succeed: {server.run_link(failed[0])}")


@ops_app.command("rerun", short_help="Re-run one partition, one shard of an hour, or backfill a range (via the webserver).")
@one_line_errors
def rerun(
    job: Annotated[str, typer.Argument(help="Job to launch, e.g. price_tracking.", show_default=False)],
    partition: Annotated[str | None, typer.Option(help="Exact partition key, e.g. '2026-11-26-10:00|2'.")] = None,
    hour: Annotated[str | None, typer.Option(help="Hour partition, e.g. 2026-11-26-10:00 (with --shard or --all-shards).")] = None,
    shard: Annotated[str | None, typer.Option(help="Shard (0-3); with --hour, or with --from/--to.")] = None,
    all_shards: Annotated[bool, typer.Option("--all-shards", help="One run per shard of --hour.")] = False,
    from_: Annotated[str | None, typer.Option("--from", help="Backfill: first hour (or day) of the range.")] = None,
    to: Annotated[str | None, typer.Option(help="Backfill: last hour (or day) of the range, inclusive.")] = None,
    per_partition: Annotated[bool, typer.Option("--per-partition", help="Backfill as one run per partition "
                                                "instead of one run over the range.")] = False,
    config_json: Annotated[str, typer.Option(help="Run config as JSON (as in the Launchpad).")] = "",
    actor: Annotated[str, typer.Option(help="Who asks (tag smartbuy/actor).")] = "",
    url: Annotated[str, URL_OPTION] = "http://127.0.0.1:3000",
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the runs to finish (exit 1 if one fails).")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait at most.")] = 1800,
) -> None:
    """Re-run a job (severity 3, "job stuck"): one partition, one shard of one hour, every shard
    of an hour, or a backfill of a range, launched on the running webserver like the UI does."""
    import json

    from smartbuy_pipeline.cli_graphql import RANGE_END_TAG, RANGE_START_TAG, connect, plan_partitions

    try:
        run_config = json.loads(config_json) if config_json.strip() else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"--config-json is not valid JSON: {exc}") from None
    if not isinstance(run_config, dict):
        raise ValueError("--config-json must be a JSON object")
    actor = (actor or _default_actor()).strip() or "unknown"
    server = connect(url)
    partition_set = server.job_partition_set(job)
    valid = server.partition_keys(partition_set) if partition_set else None
    plan = plan_partitions(job, valid, partition=partition, hour=hour, shard=shard, all_shards=all_shards,
                           from_=from_, to=to, per_partition=per_partition)
    base_tags = {"smartbuy/actor": actor}
    launches: list[tuple[str, dict[str, str]]] = []
    if plan.range_:
        start, end = plan.range_
        launches.append((f"{start}..{end}", {**base_tags, RANGE_START_TAG: start, RANGE_END_TAG: end}))
    elif plan.keys:
        for key in plan.keys:
            launches.append((key, {**server.partition_tags(partition_set, key), **base_tags}))
    else:
        launches.append(("", base_tags))
    run_ids = []
    for label, tags in launches:
        run_id = server.submit(job, run_config=run_config, tags=tags)
        run_ids.append(run_id)
        console.print(f"launched {job}{' [' + label + ']' if label else ''} run {run_id} by {actor}: "
                      f"{server.run_link(run_id)}", soft_wrap=True)
    if wait:
        _wait_and_report(server, run_ids, timeout)


@ops_app.command("redrive", short_help="Re-drive dead notifications (REDRIVE_NOTIFICATIONS audit row).")
@one_line_errors
def redrive(
    delivery_ids: Annotated[list[int] | None, typer.Argument(help="Dead deliveries to re-drive (none: every dead "
                                                             "letter matching the filters).", show_default=False)] = None,
    household: Annotated[str, typer.Option(help="Only this household's dead letters (UUID).")] = "",
    dead_since: Annotated[str, typer.Option(help="Only those dead since (ISO-8601 with offset).")] = "",
    reason: Annotated[str, typer.Option(help="Why (kept in the REDRIVE_NOTIFICATIONS audit row).")] = "",
    actor: Annotated[str, typer.Option(help="Who asks (written to the audit log).")] = "",
    url: Annotated[str, URL_OPTION] = "http://127.0.0.1:3000",
    in_process: Annotated[bool, typer.Option("--in-process", help="Run the job in this process (no webserver "
                                             "needed) instead of launching it on the webserver.")] = False,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the run to finish.")] = True,
) -> None:
    """Re-drive dead notifications (runbook procedure D): they go back to pending, the
    notification_dispatch sensor sends them, and one REDRIVE_NOTIFICATIONS audit row records it."""
    import uuid
    from datetime import datetime

    if not reason.strip():
        raise ValueError("give --reason TEXT (it is kept in the audit row)")
    if household:
        try:
            household = str(uuid.UUID(household))
        except ValueError:
            raise ValueError(f"--household must be a UUID, got {household!r}") from None
    if dead_since:
        try:
            parsed = datetime.fromisoformat(dead_since)
        except ValueError:
            raise ValueError(f"--dead-since must be ISO-8601, got {dead_since!r}") from None
        if parsed.tzinfo is None:
            raise ValueError(f"--dead-since needs a UTC offset, e.g. {dead_since}+00:00")
    actor = (actor or _default_actor()).strip() or "unknown"
    run_config = {"ops": {"redrive_dead_letters": {"config": {
        "delivery_ids": list(delivery_ids or []), "household_id": household, "dead_since": dead_since,
        "reason": reason.strip()}}}}
    tags = {"smartbuy/actor": actor}
    if in_process:
        _redrive_in_process(run_config, tags, actor)
        return
    from smartbuy_pipeline.cli_graphql import connect

    server = connect(url)
    server.job_partition_set("redrive_notifications")  # the code location is there and has the job
    run_id = server.submit("redrive_notifications", run_config=run_config, tags=tags)
    console.print(f"launched redrive_notifications run {run_id} by {actor}: {server.run_link(run_id)}",
                  soft_wrap=True)
    if wait:
        _wait_and_report(server, [run_id], 600)
        count = server.output_metadata(run_id).get("redriven")
        if count is not None:
            console.print(f"{count} dead letter(s) back to pending; one REDRIVE_NOTIFICATIONS audit row")


def _redrive_in_process(run_config: dict, tags: dict[str, str], actor: str) -> None:
    import dagster as dg

    from smartbuy_pipeline.definitions import defs
    from smartbuy_pipeline.runtime import prepare_environment

    prepare_environment()
    job = defs().resolve_job_def("redrive_notifications")
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(instance=instance, run_config={**run_config, **QUIET_RUN_CONFIG},
                                        tags=tags, raise_on_error=False)
    if not result.success:
        failure = next((e for e in result.all_events if e.is_step_failure), None)
        detail = failure.step_failure_data.error.message.strip() if failure and failure.step_failure_data.error else ""
        raise ValueError(f"the redrive_notifications run {result.run_id} failed: {detail or 'see the Dagster UI'}")
    count = next((e.event_specific_data.metadata["redriven"].value for e in result.all_events
                  if e.is_successful_output and "redriven" in e.event_specific_data.metadata), 0)
    console.print(f"run redrive_notifications {result.run_id} by {actor}: {count} dead letter(s) back to "
                  "pending; one REDRIVE_NOTIFICATIONS audit row")
