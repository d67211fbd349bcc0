"""The Dagster job `check_risk` (runbook procedure B) and `smartbuy ops check-risk`."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import psycopg
import pytest
from typer.testing import CliRunner

from smartbuy_pipeline.defs.resources import Database
from smartbuy_pipeline.defs.risk import actor_of
from smartbuy_pipeline.simulator import scenarios as S
from tests.integration.test_risk_scores import NOW, load_demo, materialize


@pytest.fixture()
def demo_db(db_url):
    ids = load_demo(db_url)
    return db_url, ids


def run_check(definitions, instance, db_url, *, offer_ids=(), gtin="", tags=None, as_of=NOW):
    job = definitions.resolve_job_def("check_risk")
    return job.execute_in_process(
        run_config={"ops": {"check_risk_offers": {"config": {
            "offer_ids": list(offer_ids), "gtin": gtin, "as_of": as_of.isoformat()}}}},
        instance=instance, resources={"database": Database(url=db_url.url)},
        tags=tags or {}, raise_on_error=False,
    )


def audit_rows(url, action="CALC_RISK") -> list[tuple]:
    with psycopg.connect(url.url) as conn:
        return conn.execute("select actor, entity_type, entity_id, payload from ops_audit_logs"
                            " where action_type = %s order by id", (action,)).fetchall()


def test_check_risk_writes_one_audit_row_per_offer_with_before_and_after(definitions, instance, demo_db):
    url, ids = demo_db
    assert materialize(url).success  # every offer has a score: "before" exists
    fake, scam = ids[S.DEMO_BF_FAKE], ids[S.DEMO_SCAM]
    # the Black Friday fake's "de" price is gone since: Check Risk must flip its bucket now
    with psycopg.connect(url.url) as conn:
        conn.execute("update offers set reference_price = null, last_changed_at = %s where id = %s",
                     (NOW + timedelta(minutes=10), fake))
    result = run_check(definitions, instance, url, offer_ids=[fake, scam],
                       tags={"dagster/user": "ana@smartbuy.example", "smartbuy/actor": "cli-user"},
                       as_of=NOW + timedelta(minutes=20))
    assert result.success
    rows = audit_rows(url)
    assert len(rows) == 2
    by_offer = {int(r[2]): r for r in rows}
    assert set(by_offer) == {fake, scam}
    for actor, entity_type, _, payload in rows:
        assert actor == "ana@smartbuy.example"  # the UI's user wins over smartbuy/actor
        assert entity_type == "offer"
        assert payload["run_id"] == result.run_id
        assert {"before", "after", "reasons", "model_version"} <= set(payload)
    p_fake = by_offer[fake][3]
    assert p_fake["before"]["bucket"] == "C"
    assert "FAKE_REFERENCE_PRICE" not in {r["code"] for r in p_fake["reasons"]}
    with psycopg.connect(url.url) as conn:
        bucket, score = conn.execute("select bucket, score from offer_risk_scores where offer_id = %s",
                                     (fake,)).fetchone()
        hist = conn.execute("select count(*) from offer_risk_score_history where offer_id = %s",
                            (fake,)).fetchone()[0]
    # the new bucket is what readers see, committed with the audit row
    assert p_fake["after"] == {"score": score, "bucket": bucket}
    assert p_fake["before"]["score"] != score and hist == 2
    p_scam = by_offer[scam][3]
    assert p_scam["before"] == p_scam["after"] and p_scam["after"]["bucket"] == "C"
    assert "TOO_GOOD_TO_BE_TRUE" in {r["code"] for r in p_scam["reasons"]}
    # the op's output carries the before/after table (the CLI prints it)
    out = result.output_for_node("check_risk_offers")
    assert [r["offer_id"] for r in out] == sorted([fake, scam])


def test_check_risk_by_gtin_and_actor_fallbacks(definitions, instance, demo_db):
    url, ids = demo_db
    gtin = S.demo_scenario().product_by_key["iphone-15"].gtin
    with psycopg.connect(url.url) as conn:
        n = conn.execute("select count(*) from offers o join products p on p.id = o.product_id"
                         " where p.gtin = lpad(%s, 14, '0')", (gtin,)).fetchone()[0]
    result = run_check(definitions, instance, url, gtin=gtin, tags={"smartbuy/actor": "ops-cli"})
    assert result.success
    rows = audit_rows(url)
    assert len(rows) == n >= 3
    assert {r[0] for r in rows} == {"ops-cli"}
    assert all(r[3]["before"] is None for r in rows)  # never scored before
    assert ids[S.DEMO_SCAM] in {int(r[2]) for r in rows}
    assert actor_of({}) == "unknown"
    assert actor_of({"dagster/user": " ", "smartbuy/actor": "x"}) == "x"


def test_check_risk_unknown_offer_fails_and_writes_nothing(definitions, instance, demo_db):
    url, ids = demo_db
    result = run_check(definitions, instance, url, offer_ids=[ids[S.DEMO_SCAM], 999_999])
    assert not result.success
    assert audit_rows(url) == []
    with psycopg.connect(url.url) as conn:
        assert conn.execute("select count(*) from offer_risk_scores").fetchone()[0] == 0
    bad_gtin = run_check(definitions, instance, url, gtin="7890000000000")
    assert not bad_gtin.success


def test_cli_check_risk_runs_the_job_and_prints_before_after(demo_db, new_database, monkeypatch, tmp_path):
    from smartbuy_pipeline.cli_ops import ops_app

    url, ids = demo_db
    # prepare_environment() exports these: monkeypatch restores them after the test
    monkeypatch.setenv("SMARTBUY_DATABASE_URL", url.url)
    monkeypatch.setenv("SMARTBUY_DAGSTER_DATABASE_URL", new_database().url)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    runner = CliRunner()
    res = runner.invoke(ops_app, ["check-risk", str(ids[S.DEMO_SCAM]), "--actor", "maria",
                                  "--as-of", NOW.isoformat()])
    assert res.exit_code == 0, res.output
    assert "Super Ofertas" in res.output and "C" in res.output
    rows = audit_rows(url)
    assert [(r[0], int(r[2])) for r in rows] == [("maria", ids[S.DEMO_SCAM])]
    # the run is recorded by Dagster (shows in the UI)
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(job_name="check_risk"))
    assert len(runs) == 1 and runs[0].tags.get("smartbuy/actor") == "maria"

    bad = runner.invoke(ops_app, ["check-risk", "999999", "--actor", "maria"])
    assert bad.exit_code == 1
    assert "unknown offer id(s): 999999" in bad.output
    assert len(bad.output.strip().splitlines()) == 1
    bad_gtin = runner.invoke(ops_app, ["check-risk", "--gtin", "7890000000000", "--actor", "maria"])
    assert bad_gtin.exit_code == 1 and "GTIN" in bad_gtin.output
