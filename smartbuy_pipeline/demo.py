"""`smartbuy demo`: the main job once, end to end, on the configured (default: embedded) database.

Steps: start the database, apply migrations, start the simulated marketplace, load its demo
catalog through the Dagster job (so the run shows in the UI later), fetch every offer once
through the real acquisition path, and print what the catalog and the prices look like.
"""

from __future__ import annotations

import psycopg
from rich.console import Console
from rich.table import Table

from smartbuy_pipeline.db.catalog import catalog_status
from smartbuy_pipeline.db.migrations import migrate
from smartbuy_pipeline.runtime import prepare_environment


def run_demo(console: Console, *, simulator_port: int) -> None:
    import dagster as dg

    from smartbuy_pipeline.definitions import defs
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
                run_config={"ops": {"load_demo_catalog": {"config": {"simulator_url": sim.base_url}}}},
                tags={"smartbuy/actor": "demo"},
            )
        if not result.success:
            raise RuntimeError("the seed_demo_catalog run failed; see the Dagster UI (`make ui`)")
        console.print(f"[bold]run[/] seed_demo_catalog {result.run_id} succeeded")

        with psycopg.connect(env.database_url.url) as conn:
            rows = catalog_status(conn)
    console.print(status_table(rows))


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
