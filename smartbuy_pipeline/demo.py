"""`smartbuy demo`: the main job once, end to end, on the configured (default: embedded) database.

Steps: start the database, apply migrations, start the simulated marketplace, load its demo
catalog through the Dagster job (so the run shows in the UI later), fetch every offer once
through the real acquisition path, and print what the catalog and the prices look like.
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
from rich.console import Console
from rich.table import Table

from smartbuy_pipeline.db.catalog import catalog_status, recent_changes
from smartbuy_pipeline.db.migrations import migrate
from smartbuy_pipeline.runtime import prepare_environment


# The demo prints its own summary; full run logs stay in the Dagster UI (`make ui`).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def run_demo(console: Console, *, simulator_port: int) -> None:
    import dagster as dg

    from smartbuy_pipeline.definitions import defs
    from smartbuy_pipeline.defs.prices import SHARDS
    from smartbuy_pipeline.simulator.scenarios import demo_scenario
    from smartbuy_pipeline.simulator.server import SimulatorServer

    env = prepare_environment()
    console.print(f"[bold]database[/] {env.database_url.redacted()}")
    applied = migrate(env.database_url)
    console.print(f"[bold]migrations[/] applied {len(applied)} file(s)" if applied else "[bold]migrations[/] up to date")

    with SimulatorServer(demo_scenario(), port=simulator_port) as sim:
        console.print(f"[bold]simulator[/] {sim.base_url}")
        job = defs().resolve_job_def("seed_demo_catalog")
        with dg.DagsterInstance.get() as instance:
            result = job.execute_in_process(
                instance=instance,
                run_config={"ops": {"load_demo_catalog": {"config": {"simulator_url": sim.base_url}}},
                            **QUIET},
                tags={"smartbuy/actor": "demo"},
            )
        if not result.success:
            raise RuntimeError("the seed_demo_catalog run failed; see the Dagster UI (`make ui`)")
        console.print(f"[bold]run[/] seed_demo_catalog {result.run_id} succeeded")

        hour = datetime.now(UTC).strftime("%Y-%m-%d-%H:00")
        tracking = defs().resolve_job_def("price_tracking")
        started = datetime.now(UTC)
        with dg.DagsterInstance.get() as instance:
            for shard in SHARDS.get_partition_keys():
                run = tracking.execute_in_process(
                    instance=instance, partition_key=dg.MultiPartitionKey({"hour": hour, "shard": shard}),
                    run_config=QUIET,
                    tags={"smartbuy/actor": "demo"}, raise_on_error=False,
                )
                meta = {k: v.value for m in run.asset_materializations_for_node("price_history")
                        for k, v in m.metadata.items()}
                console.print(
                    f"[bold]run[/] price_tracking hour {hour} shard {shard}: "
                    + ("[green]success[/]" if run.success else "[red]failed[/]")
                    + f", {meta.get('offers_processed', 0)} offers, {meta.get('observations', 0)} observations, "
                    f"{meta.get('changed', 0)} changed, {meta.get('failed', 0)} failed"
                )
        with psycopg.connect(env.database_url.url) as conn:
            rows = catalog_status(conn)
            changes = recent_changes(conn, started)
    console.print(status_table(rows))
    console.print(changes_table(changes, started))


def changes_table(rows: list[dict], since: datetime) -> Table:
    table = Table(title=f"What changed in this run (observations since {since:%H:%M:%S} UTC)")
    for col, justify in (("offer", "right"), ("shop", "left"), ("product", "left"), ("before", "right"),
                         ("now", "right"), ("de (reference)", "right"), ("availability", "left")):
        table.add_column(col, justify=justify)
    if not rows:
        table.add_row("-", "nothing due: every offer was checked within its interval", "", "", "", "", "")
    for r in rows:
        table.add_row(str(r["offer_id"]), r["shop"], r["product"], _brl(r["before"]), _brl(r["price"]),
                      _brl(r["reference_price"]), r["availability"])
    return table


def _brl(amount) -> str:
    if amount is None:
        return "-"
    whole, cents = f"{amount:,.2f}".split(".")
    return f"R$ {whole.replace(',', '.')},{cents}"


def status_table(rows: list[dict]) -> Table:
    table = Table(title="SmartBuy catalog")
    for col, justify in (("shop", "left"), ("domain", "left"), ("reputation", "right"),
                         ("source kind", "left"), ("offers", "right"), ("priced", "right"),
                         ("last checked", "left")):
        table.add_column(col, justify=justify)
    for r in rows:
        table.add_row(r["shop"], r["domain"], str(r["reputation_score"]), r["source_kind"] or "-",
                      str(r["offers"]), str(r["priced"]),
                      r["last_checked_at"].isoformat(timespec="seconds") if r["last_checked_at"] else "never")
    return table
