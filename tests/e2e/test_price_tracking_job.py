"""The real Dagster job `price_tracking` on hour x shard partitions, against the simulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg

from smartbuy_pipeline.defs.prices import SHARD_COUNT, Acquisition
from smartbuy_pipeline.defs.resources import Database


def resources(db_url) -> dict:
    return {"database": Database(url=db_url.url), "acquisition": Acquisition(max_retries=1, parse_workers=1)}


def current_hour() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d-%H:00")


def scalar(url, sql, params=None):
    with psycopg.connect(url.url) as conn:
        return conn.execute(sql, params).fetchone()[0]


def run_partition(definitions, instance, db_url, hour: str, shard: str, **kwargs):
    job = definitions.resolve_job_def("price_tracking")
    return job.execute_in_process(
        partition_key=dg.MultiPartitionKey({"hour": hour, "shard": shard}),
        instance=instance, resources=resources(db_url), raise_on_error=False, **kwargs,
    )


def materialization(result, key: str) -> dg.AssetMaterialization:
    mats = [m for m in result.asset_materializations_for_node(key)]
    assert len(mats) == 1, mats
    return mats[0]


def check_results(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {
        e.event_specific_data.check_name: e.event_specific_data
        for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def test_one_partition_end_to_end(definitions, instance, db_url, catalog):
    expected = scalar(db_url, "select count(*) from offers where id %% %s = 1", (SHARD_COUNT,))
    result = run_partition(definitions, instance, db_url, current_hour(), "1")
    assert result.success
    meta = materialization(result, "price_history").metadata
    assert meta["offers_due"].value == expected
    assert meta["offers_processed"].value == expected
    assert meta["batches"].value == 1
    assert meta["observations"].value + meta["failed"].value + meta["not_modified"].value == expected
    assert meta["offers_fetched"].value == meta["observations"].value + meta["not_modified"].value
    assert meta["dagster/row_count"].value == meta["observations"].value
    assert meta["fetch_latency_p95_s"].value >= meta["fetch_latency_p50_s"].value > 0
    checks = check_results(result)
    assert checks["observations_quality"].passed
    assert checks["observations_quality"].metadata["rows"].value == meta["observations"].value
    # Only shard 1 was checked; the rest of the catalog is untouched.
    assert scalar(db_url, "select count(*) from offers o join offer_checks c on c.offer_id = o.id"
                  " where c.last_checked_at is not null and o.id %% %s <> 1", (SHARD_COUNT,)) == 0
    # Re-running the same partition finds nothing due and writes nothing.
    again = run_partition(definitions, instance, db_url, current_hour(), "1")
    assert again.success
    assert materialization(again, "price_history").metadata["offers_processed"].value == 0
    assert scalar(db_url, "select count(*) from price_history") == meta["observations"].value


def test_a_bad_batch_is_stopped_by_the_blocking_check(definitions, instance, db_url, catalog):
    hour = current_hour()
    # A corrupt row in this run's window (a currency we do not track) must fail the suite.
    offer_id = scalar(db_url, "select min(id) from offers where id %% %s = 2", (SHARD_COUNT,))
    with psycopg.connect(db_url.url) as conn:
        conn.execute(
            "insert into price_history (offer_id, observed_at, price, currency, availability, status, source_kind, run_key)"
            " values (%s, now() - interval '1 second', 10.00, 'USD', 'in_stock', 'accepted', 'page', %s)",
            (offer_id, hour),
        )
        conn.execute("update offer_checks set last_checked_at = now() where offer_id = %s", (offer_id,))
    result = run_partition(definitions, instance, db_url, hour, "2")
    checks = check_results(result)
    assert checks["observations_quality"].passed is False
    failed = checks["observations_quality"].metadata
    assert failed["failed_expectation_count"].value == 1
    assert "USD" in failed["failing_rows_sample"].value
    assert not result.success
    # The staleness warning is still reported (it runs before the blocking suite).
    assert "offers_checked_recently" in checks
    # price_history itself landed (its rows are committed), but nothing downstream ran.
    assert len(result.asset_materializations_for_node("price_history")) == 1
    for node in ("price_changes", "offer_price_stats"):
        assert result.asset_materializations_for_node(node) == []


def test_staleness_check_warns_when_over_5_percent_of_active_offers_went_unchecked(definitions, instance, db_url,
                                                                                     catalog):
    n_offers = len(catalog["offers"])
    hour = current_hour()
    shard_1 = scalar(db_url, "select count(*) from offers where id %% %s = 1", (SHARD_COUNT,))
    result = run_partition(definitions, instance, db_url, hour, "1")
    stale = check_results(result)["offers_checked_recently"]
    # The other shards were never checked: a warning, not a failure of the run.
    assert result.success and stale.passed is False and stale.severity == dg.AssetCheckSeverity.WARN
    assert stale.metadata["active_offers"].value == n_offers
    assert stale.metadata["stale_offers"].value == n_offers - shard_1
    for shard in ("0", "2", "3"):
        result = run_partition(definitions, instance, db_url, hour, shard)
    stale = check_results(result)["offers_checked_recently"]
    assert stale.passed is True and stale.metadata["stale_offers"].value == 0
    # 2 of 43 offers (4.7%) last checked over 3 hours ago pass; 3 (7.0%) warn. Inactive offers
    # do not count. (Stale offers of shard 0; the runs below re-check shard 1.)
    assert n_offers == 43
    with psycopg.connect(db_url.url) as conn:
        stale_ids = [r[0] for r in conn.execute("select id from offers where id %% %s = 0 order by id limit 3",
                                                (SHARD_COUNT,))]
        conn.execute("update offer_checks set last_checked_at = now() - interval '3 hours 1 minute'"
                     " where offer_id = any(%s)", (stale_ids,))
        conn.execute("update offers set active = false where id = %s", (stale_ids[0],))
    stale = check_results(run_partition(definitions, instance, db_url, hour, "1"))["offers_checked_recently"]
    assert stale.passed is True
    assert (stale.metadata["active_offers"].value, stale.metadata["stale_offers"].value) == (42, 2)
    with psycopg.connect(db_url.url) as conn:
        conn.execute("update offers set active = true")
    stale = check_results(run_partition(definitions, instance, db_url, hour, "1"))["offers_checked_recently"]
    assert stale.passed is False
    assert (stale.metadata["active_offers"].value, stale.metadata["stale_offers"].value) == (43, 3)
    assert stale.metadata["stale_share"].value == round(3 / 43, 4)


def test_six_hour_backfill_in_a_single_run(definitions, instance, db_url, catalog):
    now_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    first = (now_hour - timedelta(hours=5)).strftime("%Y-%m-%d-%H:00")
    last = now_hour.strftime("%Y-%m-%d-%H:00")
    job = definitions.resolve_job_def("price_tracking")
    result = job.execute_in_process(
        instance=instance, resources=resources(db_url), raise_on_error=False,
        tags={"dagster/asset_partition_range_start": f"{first}|0",
              "dagster/asset_partition_range_end": f"{last}|{SHARD_COUNT - 1}"},
    )
    assert result.success
    # One run, one pass: every offer fetched exactly once, whatever the number of hours.
    n_offers = len(catalog["offers"])
    mats = result.asset_materializations_for_node("price_history")
    assert len(mats) == 6 * SHARD_COUNT  # one event per partition, all from this run
    assert {m.metadata["offers_processed"].value for m in mats} == {n_offers}
    # an offer without its offer_checks row counts as never checked
    assert scalar(db_url, "select count(*) from offers o left join offer_checks c on c.offer_id = o.id"
                  " where c.last_checked_at is null") == 0
    assert scalar(db_url, "select count(*) from price_history") == scalar(
        db_url, "select count(distinct offer_id) from price_history")
    # Dagster records all 6 x 4 partitions as materialized by that run.
    materialized = instance.get_materialized_partitions(dg.AssetKey("price_history"))
    assert len(materialized) == 6 * SHARD_COUNT
    # The checkpoint rows name the range per shard.
    assert scalar(db_url, "select count(*) from price_tracking_progress where partition_key = %s and completed_at is not null",
                  (f"{first}..{last}",)) == SHARD_COUNT


def test_freshness_fails_when_runs_stop(definitions, instance):
    """"Prices flatline" (runbook severity 3): Dagster's own evaluator of the price_history policy
    passes right after a materialization, warns after 90 minutes and fails after 2 hours."""
    import asyncio

    from dagster._core.definitions.freshness import FreshnessState
    from dagster._core.definitions.freshness_evaluator import TimeWindowFreshnessPolicyEvaluator
    from dagster._core.loader import LoadingContextForTest
    from dagster._core.test_utils import freeze_time

    node = definitions.get_repository_def().asset_graph.get(dg.AssetKey("price_history"))
    last_run = datetime(2026, 11, 26, 10, 5, tzinfo=UTC)
    with freeze_time(last_run):
        instance.report_runless_asset_event(dg.AssetMaterialization("price_history"))

    def state_at(at: datetime) -> FreshnessState:
        with freeze_time(at):
            return asyncio.run(TimeWindowFreshnessPolicyEvaluator().evaluate_freshness(
                LoadingContextForTest(instance), node))

    assert state_at(last_run + timedelta(minutes=59)) is FreshnessState.PASS
    assert state_at(last_run + timedelta(minutes=95)) is FreshnessState.WARN
    assert state_at(last_run + timedelta(hours=2, minutes=1)) is FreshnessState.FAIL
