"""The Dagster UI for real: `dagster dev` (webserver and daemon) on a demo database, driven by
headless Chromium, and the same launches through the GraphQL client and `smartbuy ops`.

One `dagster dev` serves the whole module (starting it costs ~30 s). The browser is Debian's
`chromium` (/usr/bin/chromium, or SMARTBUY_CHROMIUM) driven by Playwright; no browser is
downloaded. Screenshots land in docs/img/ (the runbook shows them) when SMARTBUY_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from smartbuy_pipeline.db.engine import DatabaseUrl

REPO_ROOT = Path(__file__).resolve().parents[2]
# The runbook's screenshots: refreshed with SMARTBUY_UPDATE_SCREENSHOTS=1; otherwise a test run
# writes them to a temporary folder and leaves the checkout clean.
IMG = REPO_ROOT / "docs" / "img" if os.environ.get("SMARTBUY_UPDATE_SCREENSHOTS") == "1" else Path(
    tempfile.mkdtemp(prefix="smartbuy-ui-shots-"))
VIEWPORT = {"width": 1400, "height": 900}
CHROMIUM_ENV = "SMARTBUY_CHROMIUM"
INSTALL_HINT = ("install Debian's browser with `sudo apt-get install -y --no-install-recommends chromium` "
                f"(CI's .ci/run does), or point {CHROMIUM_ENV} at a Chromium binary")
RUN_TIMEOUT_S = 300

# Both tests share one `dagster dev`: keep them on one xdist worker (effective with --dist loadgroup).
pytestmark = [
    pytest.mark.ui, pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("dagster_ui"),
    # Dagster's own per-dimension partition tags, and gql's notice to dagster-graphql: not ours to fix.
    pytest.mark.filterwarnings("ignore:Non-compliant tag keys:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Using variable_values and operation_name:DeprecationWarning"),
]


@dataclass
class DagsterUI:
    url: str
    data_url: DatabaseUrl
    simulator_url: str
    log: Path

    def server(self):
        from smartbuy_pipeline.cli_graphql import connect

        return connect(self.url)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _seed_demo(url: DatabaseUrl, simulator_url: str) -> None:
    """What `smartbuy demo` loads first: the simulator's catalog and its scripted past."""
    from smartbuy_pipeline.db.catalog import upsert_catalog
    from smartbuy_pipeline.demo import seed_simulated_history
    from smartbuy_pipeline.simulator.scenarios import demo_scenario

    rows = demo_scenario().catalog_rows(simulator_url)
    with psycopg.connect(url.url) as conn:
        upsert_catalog(conn, rows["shops"], rows["products"], rows["offers"])
        conn.execute("update shops set min_interval_ms = 0, max_concurrent_requests = 8")
        seed_simulated_history(conn, demo_scenario(), simulator_url, datetime.now(UTC))


def _stop(proc: subprocess.Popen) -> None:
    """The whole process group: webserver, daemon, code servers and run workers. A code server
    may outlive `dagster dev`'s SIGTERM, so the group gets SIGKILL once dagster dev is gone."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


@pytest.fixture(scope="module")
def dagster_ui(new_database, template_database, tmp_path_factory) -> DagsterUI:
    from smartbuy_pipeline.cli_graphql import WebserverError, connect
    from smartbuy_pipeline.simulator.scenarios import demo_scenario
    from smartbuy_pipeline.simulator.server import SimulatorServer

    data_url = new_database(template=template_database)
    dagster_url = new_database()
    with ExitStack() as stack:
        sim = stack.enter_context(SimulatorServer(demo_scenario()))
        _seed_demo(data_url, sim.base_url)
        home = tmp_path_factory.mktemp("dagster_home")
        shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBUY_OPS_ALERT")}
        env.update({"SMARTBUY_DATABASE_URL": data_url.url,
                    "SMARTBUY_DAGSTER_DATABASE_URL": dagster_url.with_driver("psycopg2"),
                    "DAGSTER_HOME": str(home), "SMARTBUY_UI_URL": url})
        log = home / "dagster-dev.log"
        out = stack.enter_context(open(log, "wb"))
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-w", str(REPO_ROOT / "workspace.yaml"),
             "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        stack.callback(_stop, proc)
        ui = DagsterUI(url=url, data_url=data_url, simulator_url=sim.base_url, log=log)
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"dagster dev exited with {proc.returncode}:\n{ui.log_tail()}")
            try:
                connect(url, timeout_s=2).jobs()  # webserver up and the code location loaded
                break
            except WebserverError:
                if time.monotonic() > deadline:
                    pytest.fail(f"dagster dev did not serve {url} within 180 s:\n{ui.log_tail()}")
                time.sleep(1)
        yield ui


# -- test 1: the UI in a real browser --------------------------------------------------------------

def _chromium() -> str:
    path = os.environ.get(CHROMIUM_ENV) or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail(f"no Chromium at {path}: {INSTALL_HINT}", pytrace=False)
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.fail("the Python package playwright is missing: `pip install -e '.[dev]'` "
                    "(never `playwright install`: the tests use Debian's chromium)", pytrace=False)
    return path


def test_ui_renders_assets_checks_automation_and_runs_a_materialization(dagster_ui):
    chromium = _chromium()
    from playwright.sync_api import expect, sync_playwright

    IMG.mkdir(parents=True, exist_ok=True)
    server = dagster_ui.server()
    base = dagster_ui.url
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(90_000)
            expect.set_options(timeout=90_000)
            # Dagster's first-visit "Join the community" dialog: dismissed whenever it shows.

            # Launch first: the run works while the other pages are checked.
            page.goto(f"{base}/assets/risk_scores")
            # Dagster's first-visit "Join the community" dialog (a fresh browser profile always gets it).
            skip = page.get_by_role("button", name="Skip")
            skip.wait_for()
            skip.click()
            skip.wait_for(state="hidden")
            page.get_by_role("button", name="Materialize").first.click()
            view = page.locator('a[href*="/runs/"]').first  # the "Launched run ... View" toast
            confirm = page.get_by_role("button", name="Confirm")  # "upstream never materialized" warning
            confirm.or_(view).first.wait_for(state="attached")
            if confirm.is_visible():
                confirm.click()
            view.wait_for(state="attached")
            href = view.get_attribute("href") or ""
            match = re.search(r"/runs/([0-9a-f-]{36})", href)
            assert match, f"no run link after Materialize: {href!r}"
            run_id = match.group(1)

            # The global lineage: the four groups.
            page.goto(f"{base}/asset-groups")
            graph = page.locator("#root")
            for group in ("prices", "risk", "alerts", "app"):
                expect(graph.get_by_text(group, exact=True).first).to_be_visible()
            # The prices group's graph: the tracked assets and what they feed.
            page.goto(f"{base}/locations/smartbuy/asset-groups/prices")
            for asset in ("price_history", "price_changes", "offer_price_stats", "price_daily", "risk_scores"):
                expect(page.get_by_text(asset, exact=True).first).to_be_visible()
            page.wait_for_timeout(1500)  # let the layout settle before the picture
            page.screenshot(path=str(IMG / "ui-asset-graph.png"))
            # The catalog lists every asset, including the alerting ones.
            page.goto(f"{base}/assets")
            for asset in ("alert_candidates", "household_feed", "auth_users", "price_history", "risk_scores"):
                expect(page.get_by_text(asset, exact=True).first).to_be_visible()

            # price_history: its metadata plots and its two checks.
            page.goto(f"{base}/assets/price_history")
            expect(page.get_by_text("Every due offer of the shard", exact=False).first).to_be_visible()
            page.goto(f"{base}/assets/price_history?view=checks")
            for check in ("observations_quality", "offers_checked_recently"):
                expect(page.get_by_text(check, exact=True).first).to_be_visible()
            expect(page.get_by_text("This is a blocking asset check.").first).to_be_visible()
            page.wait_for_timeout(1000)
            page.screenshot(path=str(IMG / "ui-price-history.png"))

            # Automation: every schedule and sensor of the code location.
            page.goto(f"{base}/automation")
            for name in ("price_tracking_hourly", "alert_candidates_every_15_min", "risk_scores_hourly",
                         "price_daily_after_midnight", "app_health_every_15_minutes", "notification_dispatch",
                         "alert_candidates_on_price_batch", "ops_run_failure_alert"):
                expect(page.get_by_text(name, exact=True).first).to_be_visible()
            page.screenshot(path=str(IMG / "ui-automation.png"))

            # The run launched from the UI succeeds, and its page says so.
            statuses = server.wait([run_id], timeout_s=RUN_TIMEOUT_S)
            assert statuses[run_id] == "SUCCESS", f"run {run_id}: {statuses[run_id]}\n{dagster_ui.log_tail()}"
            page.goto(f"{base}/runs/{run_id}")
            expect(page.get_by_text("Success", exact=True).first).to_be_visible()
            expect(page.get_by_text("risk_scores").first).to_be_visible()
            page.wait_for_timeout(1000)
            page.screenshot(path=str(IMG / "ui-run.png"))
        finally:
            browser.close()
    with psycopg.connect(dagster_ui.data_url.url) as conn:
        assert conn.execute("select count(*) from offer_risk_scores").fetchone()[0] > 0


# -- test 2: the same through the GraphQL client and `smartbuy ops` --------------------------------

SCHEDULES_AND_SENSORS = """
query { repositoryOrError(repositorySelector: {repositoryLocationName: "smartbuy", repositoryName: "__repository__"}) {
  __typename ... on Repository { schedules { name scheduleState { status } } sensors { name } } } }"""


def _launched_run_ids(output: str) -> list[str]:
    return re.findall(r"run ([0-9a-f]{8}-[0-9a-f-]{27})", output)


def test_graphql_client_and_ops_cli_launch_runs(dagster_ui):
    from smartbuy_pipeline.cli_ops import ops_app
    from smartbuy_pipeline.defs.prices import SHARDS

    server = dagster_ui.server()
    jobs = server.jobs()
    assert {"price_tracking", "risk_scores_refresh", "redrive_notifications", "seed_demo_catalog"} <= set(jobs)
    assert jobs["price_tracking"] == "price_tracking_partition_set" and jobs["risk_scores_refresh"] is None
    repo = server.query(SCHEDULES_AND_SENSORS)["repositoryOrError"]
    assert {s["name"]: s["scheduleState"]["status"] for s in repo["schedules"]}["price_tracking_hourly"] == "RUNNING"
    assert {"notification_dispatch", "ops_run_failure_alert"} <= {s["name"] for s in repo["sensors"]}

    # Launched side by side: the daemon dequeues them together.
    seed = server.submit("seed_demo_catalog", tags={"smartbuy/actor": "ui-test"}, run_config={
        "ops": {"load_demo_catalog": {"config": {"simulator_url": dagster_ui.simulator_url}}}})
    hour = datetime.now(UTC).strftime("%Y-%m-%d-%H:00")
    runner = CliRunner()
    res = runner.invoke(ops_app, ["rerun", "price_tracking", "--hour", hour, "--shard", "2", "--actor", "ana",
                                  "--url", dagster_ui.url, "--no-wait"])
    assert res.exit_code == 0, res.output
    (tracking,) = _launched_run_ids(res.output)
    assert f"{dagster_ui.url}/runs/{tracking}" in res.output.replace("\n", "")

    statuses = server.wait([seed, tracking], timeout_s=RUN_TIMEOUT_S)
    assert statuses == {seed: "SUCCESS", tracking: "SUCCESS"}, dagster_ui.log_tail()
    run = server.run(tracking)
    assert run["job"] == "price_tracking"
    assert run["tags"]["dagster/partition"] == f"{hour}|2"
    assert run["tags"]["dagster/partition/hour"] == hour and run["tags"]["dagster/partition/shard"] == "2"
    assert run["tags"]["smartbuy/actor"] == "ana"
    with psycopg.connect(dagster_ui.data_url.url) as conn:
        # the shard's offers were fetched from the simulator, recorded under the hour's run key
        fetched = conn.execute("select count(*) from price_history where run_key = %s and offer_id %% %s = 2",
                               (hour, len(SHARDS.get_partition_keys()))).fetchone()[0]
    assert fetched > 0

    # Procedure D through the webserver: one REDRIVE_NOTIFICATIONS audit row with the actor.
    res = runner.invoke(ops_app, ["redrive", "--reason", "receiver fixed", "--actor", "maria",
                                  "--url", dagster_ui.url])
    assert res.exit_code == 0, res.output
    assert "SUCCESS" in res.output and "0 dead letter(s) back to pending" in res.output
    with psycopg.connect(dagster_ui.data_url.url) as conn:
        rows = conn.execute("select actor, payload from ops_audit_logs where action_type = 'REDRIVE_NOTIFICATIONS'"
                            ).fetchall()
    assert [(r[0], r[1]["reason"], r[1]["count"]) for r in rows] == [("maria", "receiver fixed", 0)]

    # Clear one-line errors.
    bad = runner.invoke(ops_app, ["rerun", "price_tracking", "--hour", hour, "--shard", "7", "--url", dagster_ui.url])
    assert bad.exit_code == 1 and "bad --shard '7'" in bad.output
    bad = runner.invoke(ops_app, ["rerun", "price_trackin", "--url", dagster_ui.url])
    assert bad.exit_code == 1 and "unknown job 'price_trackin'" in bad.output
    down = runner.invoke(ops_app, ["rerun", "risk_scores_refresh", "--url", f"http://127.0.0.1:{_free_port()}"])
    assert down.exit_code == 1 and "no Dagster webserver at" in down.output and "make ui" in down.output
    assert len(down.output.strip().splitlines()) == 1
