"""The Dagster jobs `catalog_import` and `deactivate_offer` (runbook procedure A), and
`smartbuy ops deactivate-offer`."""

from __future__ import annotations

import dagster as dg
import psycopg
from typer.testing import CliRunner

from smartbuy_pipeline.defs.resources import Database
from tests.integration.test_catalog_import import MIXED, audit, seed_old_shop


def run_import(definitions, instance, db_url, path, *, dry_run=False, tags=None, fmt=""):
    job = definitions.resolve_job_def("catalog_import")
    return job.execute_in_process(
        run_config={"ops": {"import_catalog_file": {"config": {
            "path": str(path), "format": fmt, "dry_run": dry_run}}}},
        instance=instance, resources={"database": Database(url=db_url.url)},
        tags=tags or {}, raise_on_error=False,
    )


def metadata_of(result) -> dict:
    event = next(e for e in result.all_events if e.event_type_value == "STEP_OUTPUT")
    return {k: v.value for k, v in event.event_specific_data.metadata.items()}


def test_catalog_import_job_lands_valid_rows_and_reports_rejected(definitions, instance, db_url, tmp_path):
    with psycopg.connect(db_url.url) as conn:
        seed_old_shop(conn)
    path = tmp_path / "mixed.csv"
    path.write_text(MIXED)
    dry = run_import(definitions, instance, db_url, path, dry_run=True)
    assert dry.success
    with psycopg.connect(db_url.url) as conn:
        assert audit(conn) == []
    result = run_import(definitions, instance, db_url, path,
                        tags={"dagster/user": "ana@smartbuy.example", "smartbuy/actor": "cli:x"})
    assert result.success
    md = metadata_of(result)
    assert (md["shops_inserted"], md["products_inserted"], md["offers_inserted"], md["offers_updated"],
            md["offers_unchanged"], md["rejected"], md["audit_rows"]) == (1, 1, 2, 0, 0, 8, 4)
    assert md["actor"] == "ana@smartbuy.example" and md["dry_run"] is False
    table = md["rejected_rows"]
    assert "| 4 | invalid_gtin |" in table and "| 10 | duplicate |" in table and "duplicate of line 5" in table
    out = result.output_for_node("import_catalog_file")
    assert [e["line"] for e in out["rejected"]] == [4, 7, 8, 9, 10, 11, 12, 13]
    with psycopg.connect(db_url.url) as conn:
        rows = audit(conn)
    assert len(rows) == 4 and {r[0] for r in rows} == {"ana@smartbuy.example"}
    assert {r[4]["run_id"] for r in rows} == {result.run_id}
    # the same file again: everything that landed is unchanged, no new audit row
    again = run_import(definitions, instance, db_url, path, tags={"smartbuy/actor": "cli:x"})
    md2 = metadata_of(again)
    assert (md2["offers_unchanged"], md2["shops_unchanged"], md2["audit_rows"], md2["actor"]) == (2, 1, 0, "cli:x")


def test_catalog_import_job_fails_clearly_on_unusable_input(definitions, instance, db_url, tmp_path):
    missing = run_import(definitions, instance, db_url, tmp_path / "nope.csv")
    assert not missing.success
    failure = next(e for e in missing.all_events if e.is_step_failure)
    assert "no such file" in failure.step_failure_data.error.message
    odd = tmp_path / "catalog.xlsx"
    odd.write_text("x")
    assert not run_import(definitions, instance, db_url, odd).success
    assert run_import(definitions, instance, db_url, odd, fmt="csv").success is False  # no type column


def run_deactivate(definitions, instance, db_url, config, tags=None):
    job = definitions.resolve_job_def("deactivate_offer")
    return job.execute_in_process(
        run_config={"ops": {"deactivate_offers": {"config": config}}}, instance=instance,
        resources={"database": Database(url=db_url.url)}, tags=tags or {}, raise_on_error=False)


def test_deactivate_offer_job(definitions, instance, db_url, tmp_path):
    with psycopg.connect(db_url.url) as conn:
        seed_old_shop(conn)
    path = tmp_path / "mixed.csv"
    path.write_text(MIXED)
    assert run_import(definitions, instance, db_url, path).success
    with psycopg.connect(db_url.url) as conn:
        ids = dict(conn.execute("select locator, id from offers").fetchall())
    res = run_deactivate(definitions, instance, db_url,
                         {"shop_domain": "antiga.example.com.br", "locators": ["SKU-1"], "reason": "fora de linha"},
                         tags={"dagster/user": "ana"})
    assert res.success
    out = res.output_for_node("deactivate_offers")
    assert out["deactivated"] == [ids["SKU-1"]]
    with psycopg.connect(db_url.url) as conn:
        rows = audit(conn, "DEACTIVATE_OFFER")
        assert conn.execute("select active from offers where id = %s", (ids["SKU-1"],)).fetchone()[0] is False
    assert [(r[0], int(r[3]), r[4]["reason"]) for r in rows] == [("ana", ids["SKU-1"], "fora de linha")]
    unknown = run_deactivate(definitions, instance, db_url, {"offer_ids": [999_999], "reason": "x"})
    assert not unknown.success


def test_cli_deactivate_offer_runs_the_job(db_url, new_database, monkeypatch, tmp_path):
    from smartbuy_pipeline.cli import app

    with psycopg.connect(db_url.url) as conn:
        seed_old_shop(conn)
        conn.commit()
        from smartbuy_pipeline.db.catalog import import_catalog
        from tests.integration.test_catalog_import import reader

        import_catalog(conn, reader(MIXED), actor="seed")
        conn.commit()
        offer_id = conn.execute("select id from offers where locator = 'SKU-1'").fetchone()[0]
    monkeypatch.setenv("SMARTBUY_DATABASE_URL", db_url.url)
    monkeypatch.setenv("SMARTBUY_DAGSTER_DATABASE_URL", new_database().url)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    runner = CliRunner()
    res = runner.invoke(app, ["ops", "deactivate-offer", str(offer_id), "--reason", "link quebrado",
                              "--actor", "maria"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    # rich wraps at the console's width, fixed when the CLI module was first imported
    assert "1 deactivated, 0 already inactive; 1 DEACTIVATE_OFFER audit row(s)" in " ".join(res.output.split())
    with psycopg.connect(db_url.url) as conn:
        rows = audit(conn, "DEACTIVATE_OFFER")
    assert [(r[0], int(r[3])) for r in rows] == [("maria", offer_id)]
    with dg.DagsterInstance.get() as inst:
        runs = inst.get_runs(filters=dg.RunsFilter(job_name="deactivate_offer"))
    assert len(runs) == 1 and runs[0].tags.get("smartbuy/actor") == "maria"
    no_reason = runner.invoke(app, ["ops", "deactivate-offer", str(offer_id)])
    assert no_reason.exit_code == 1 and "--reason is required" in no_reason.output
    unknown = runner.invoke(app, ["ops", "deactivate-offer", "999999", "--reason", "x"], env={"COLUMNS": "200"})
    assert unknown.exit_code == 1 and "unknown offer id(s): 999999" in unknown.output
