"""`smartbuy`: the command line. Errors are one clear line on stderr and a non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Annotated

import typer
from rich.table import Table

from smartbuy_pipeline.cli_catalog import catalog_app
from smartbuy_pipeline.cli_chart import chart
from smartbuy_pipeline.cli_ops import ops_app
from smartbuy_pipeline.cli_support import console, one_line_errors

app = typer.Typer(help="SmartBuy price-intelligence pipeline.", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(ops_app, name="ops")
app.add_typer(catalog_app, name="catalog")
app.command("chart")(chart)


@db_app.command("migrate")
@one_line_errors
def db_migrate() -> None:
    """Apply pending migrations from sql/ (each once, in its own transaction)."""
    from smartbuy_pipeline.db.embedded import resolve_database_url
    from smartbuy_pipeline.db.migrations import migrate

    url = resolve_database_url()
    applied = migrate(url)
    if not applied:
        console.print(f"database {url.database} is up to date; nothing to apply")
    for mig in applied:
        console.print(f"applied {mig.filename}")


@db_app.command("status")
@one_line_errors
def db_status() -> None:
    """List applied and pending migrations."""
    from smartbuy_pipeline.db.embedded import resolve_database_url
    from smartbuy_pipeline.db.migrations import status

    url = resolve_database_url()
    state = status(url)
    table = Table(title=f"migrations on {url.redacted()}")
    table.add_column("version", justify="right")
    table.add_column("file")
    table.add_column("state")
    table.add_column("applied at")
    edited = {m.version for m in state.edited}
    for a in state.applied:
        label = "[red]EDITED after apply[/]" if a.version in edited else "applied"
        if a.version in {m.version for m in state.missing}:
            label = "[red]missing from sql/[/]"
        table.add_row(f"{a.version:04d}", f"{a.version:04d}_{a.name}.sql", label, a.applied_at.isoformat())
    for p in state.pending:
        table.add_row(f"{p.version:04d}", p.filename, "[yellow]pending[/]", "")
    console.print(table)
    if state.edited or state.missing:
        raise typer.Exit(1)


@app.command("demo")
@one_line_errors
def demo(
    simulator_port: Annotated[int, typer.Option(help="Port of the built-in simulated marketplace.")] = 8765,
) -> None:
    """Run the main job once end to end on the configured (default: embedded) database."""
    from smartbuy_pipeline.demo import run_demo

    run_demo(console, simulator_port=simulator_port)


@app.command("dev")
@one_line_errors
def dev(
    port: Annotated[int, typer.Option(help="Webserver port.")] = 3000,
    host: Annotated[str, typer.Option(help="Webserver host.")] = "127.0.0.1",
    simulator: Annotated[bool, typer.Option(help="Also serve the simulated marketplace the demo catalog points at.")] = True,
    simulator_port: Annotated[int, typer.Option(help="Port of the simulated marketplace.")] = 8765,
) -> None:
    """The Dagster UI with its daemon, on the same database (embedded by default)."""
    from smartbuy_pipeline.db.migrations import migrate
    from smartbuy_pipeline.runtime import PROJECT_ROOT, prepare_environment

    env = prepare_environment()
    migrate(env.database_url)
    console.print(f"data: {env.database_url.redacted()}  dagster: {env.dagster_database_url.redacted()}")
    console.print(f"DAGSTER_HOME={env.dagster_home}; UI on http://{host}:{port}")
    cmd = [sys.executable, "-m", "dagster", "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"),
           "-h", host, "-p", str(port)]
    sim = None
    if simulator:
        sim = subprocess.Popen([sys.executable, "-m", "smartbuy_pipeline.simulator.server",
                                "--port", str(simulator_port)])
        console.print(f"simulated marketplace on http://127.0.0.1:{simulator_port}/")
    try:
        # This process keeps the embedded server alive while the UI runs.
        code = subprocess.call(cmd, env=os.environ.copy())
    finally:
        if sim is not None:
            sim.terminate()
            sim.wait(10)
    raise typer.Exit(code)


@app.command("simulator")
@one_line_errors
def simulator(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    host: Annotated[str, typer.Option(help="Address to bind (keep it on loopback).")] = "127.0.0.1",
) -> None:
    """Serve the simulated marketplace (pages, Merchant feeds, items API) until interrupted."""
    from smartbuy_pipeline.simulator.scenarios import demo_scenario
    from smartbuy_pipeline.simulator.server import run_forever

    console.print(f"simulated marketplace on http://{host}:{port}/ (Ctrl+C to stop)")
    run_forever(demo_scenario(), host, port)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
