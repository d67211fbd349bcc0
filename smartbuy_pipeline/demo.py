"""`smartbuy demo`: the main job once, end to end, on the configured (default: embedded) database.

Steps: start the database, apply migrations, start the simulated marketplace, load its demo
catalog through the Dagster job (so the run shows in the UI later); on the first run, load the
simulator's scripted past (`simulator/history.py`) so there is history to judge; then one hourly
price-tracking run per shard (real HTTP fetches) and a risk-score refresh, and print the
catalog, what changed, the risk buckets and the reasons behind the scripted ciladas; last, a demo
household's alerts are evaluated and delivered to a local inbox (`demo_alerts.py`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
from rich.console import Console
from rich.table import Table

from smartbuy_pipeline.cli_support import QUIET_RUN_CONFIG
from smartbuy_pipeline.db.catalog import catalog_status, recent_changes
from smartbuy_pipeline.db.migrations import migrate
from smartbuy_pipeline.db.risk import risk_summary
from smartbuy_pipeline.demo_alerts import run_alerts_and_dispatch
from smartbuy_pipeline.runtime import prepare_environment


HISTORY_DAYS = 120


def seed_simulated_history(conn: psycopg.Connection, scenario, base_url: str, now: datetime) -> int:
    """Load the scripted past once (skipped when it is already there); returns rows loaded."""
    from smartbuy_pipeline.db.prices import PRICE_HISTORY_COLUMNS
    from smartbuy_pipeline.simulator.history import SIMULATED_RUN_KEY, history_rows

    if conn.execute("select exists (select 1 from price_history where run_key = %s)",
                    (SIMULATED_RUN_KEY,)).fetchone()[0]:
        return 0
    ids = {(domain, locator): oid for oid, domain, locator in conn.execute(
        "select o.id, s.domain, o.locator from offers o join shops s on s.id = o.shop_id")}
    offer_ids = {o["offer_key"]: ids[(o["shop_domain"], o["locator"])]
                 for o in scenario.catalog_rows(base_url)["offers"]}
    start = (now - timedelta(days=HISTORY_DAYS)).replace(minute=0, second=0, microsecond=0)
    end = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    conn.execute("select fn_ensure_price_history_partitions(%s::date, 6)", (start.date(),))
    rows = 0
    with conn.cursor().copy(f"copy price_history ({', '.join(PRICE_HISTORY_COLUMNS)}) from stdin") as copy:
        for row in history_rows(scenario, offer_ids, start, end):
            copy.write_row(row)
            rows += 1
    # The offers' current state is the last scripted observation, as if we had tracked them.
    conn.execute(SEED_CURRENT_STATE_FROM_HISTORY, {"run_key": SIMULATED_RUN_KEY})
    return rows


SEED_CURRENT_STATE_FROM_HISTORY = """
update offers o set price = coalesce(h.price, o.price), reference_price = h.reference_price, freight = h.freight,
       currency = h.currency, availability = h.availability, last_changed_at = h.observed_at
from (select distinct on (offer_id) offer_id, observed_at, price, reference_price, freight, currency, availability
      from price_history where run_key = %(run_key)s order by offer_id, observed_at desc) h
where o.id = h.offer_id
"""


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
                            **QUIET_RUN_CONFIG},
                tags={"smartbuy/actor": "demo"},
            )
        if not result.success:
            raise RuntimeError("the seed_demo_catalog run failed; see the Dagster UI (`make ui`)")
        console.print(f"[bold]run[/] seed_demo_catalog {result.run_id} succeeded")
        with psycopg.connect(env.database_url.url) as conn:
            loaded = seed_simulated_history(conn, demo_scenario(), sim.base_url, datetime.now(UTC))
        if loaded:
            console.print(f"[bold]history[/] loaded {loaded:,} observations of the simulator's last "
                          f"{HISTORY_DAYS} days (run_key 'simulated-history')")

        hour = datetime.now(UTC).strftime("%Y-%m-%d-%H:00")
        tracking = defs().resolve_job_def("price_tracking")
        started = datetime.now(UTC)
        with dg.DagsterInstance.get() as instance:
            for shard in SHARDS.get_partition_keys():
                run = tracking.execute_in_process(
                    instance=instance, partition_key=dg.MultiPartitionKey({"hour": hour, "shard": shard}),
                    run_config=QUIET_RUN_CONFIG,
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
        with dg.DagsterInstance.get() as instance:
            risk = defs().resolve_job_def("risk_scores_refresh").execute_in_process(
                instance=instance, run_config=QUIET_RUN_CONFIG, tags={"smartbuy/actor": "demo"},
                raise_on_error=False)
        meta = {k: v.value for m in risk.asset_materializations_for_node("risk_scores") for k, v in m.metadata.items()}
        console.print("[bold]run[/] risk_scores_refresh: " + ("[green]success[/]" if risk.success else "[red]failed[/]")
                      + f", {meta.get('offers_scored', 0)} offers scored")
        with psycopg.connect(env.database_url.url) as conn:
            rows = catalog_status(conn)
            changes = recent_changes(conn, started)
            distribution, reasons = risk_summary(conn)
    console.print(status_table(rows))
    console.print(changes_table(changes, started))
    console.print(buckets_table(distribution))
    console.print(reasons_table(reasons))
    # last: the household's alerts evaluated and delivered to a local webhook receiver and SMTP server
    run_alerts_and_dispatch(console, env.database_url, demo_scenario(), instance_factory=dg.DagsterInstance.get,
                            defs=defs(), quiet_config=QUIET_RUN_CONFIG)


def buckets_table(rows: list[dict]) -> Table:
    table = Table(title="Risk buckets (A safe >= 80, B attention 60-79, C risk < 60)")
    for col in ("bucket", "offers", "share"):
        table.add_column(col, justify="right" if col != "bucket" else "center")
    for r in rows:
        table.add_row(r["bucket"], str(r["offers"]), f"{r['share_pct']}%")
    return table


def reasons_table(rows: list[dict]) -> Table:
    table = Table(title="Why: the scripted ciladas and the genuine drop",
                  caption="The Black Friday fakes are raised ~25% from 2026-10-23 and show the inflated "
                          "'de' price from 2026-11-27 03:00 UTC; before that they are not yet a fake discount.")
    for col, justify in (("offer", "left"), ("shop", "left"), ("score", "right"), ("reason", "left"),
                         ("penalty", "right"), ("message", "left")):
        table.add_column(col, justify=justify)
    for r in rows:
        table.add_row(r["label"], r["shop"], f"{r['score']} {r['bucket']}", r["code"] or "-",
                      "" if r["penalty"] is None else str(r["penalty"]), r["message"] or "")
    return table


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
