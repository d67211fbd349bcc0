"""Hourly price tracking: `price_history` on (hour x shard) partitions, its checks and schedule."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd
import psycopg

from smartbuy_pipeline.acquisition.http import FetchSettings
from smartbuy_pipeline.db import analytics, prices
from smartbuy_pipeline.defs.resources import Database
from smartbuy_pipeline.tracking import TrackingReport, TrackingSettings, track_window

SHARD_COUNT = 4
HOURLY = dg.HourlyPartitionsDefinition(start_date="2026-11-01-00:00", end_offset=1)
SHARDS = dg.StaticPartitionsDefinition([str(i) for i in range(SHARD_COUNT)])
PRICE_PARTITIONS = dg.MultiPartitionsDefinition({"hour": HOURLY, "shard": SHARDS})

# "Prices flatline" (runbook, severity 3) must show as failed freshness within 2 hours.
PRICE_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=2), warn_window=timedelta(minutes=90))
STALE_OFFERS_MAX_SHARE = 0.05
STALE_OFFERS_AFTER = timedelta(hours=3)

QUALITY_CHECK = "observations_quality"
STALE_CHECK = "offers_checked_recently"


class Acquisition(dg.ConfigurableResource):
    """How the tracker fetches: global limits and timeouts (per-shop politeness is in `shops`)."""

    global_concurrency: int = 200
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 15.0
    total_timeout_s: float = 30.0
    max_retries: int = 3
    parse_workers: int = 0  # 0: one per core

    def settings(self, batch_size: int) -> TrackingSettings:
        return TrackingSettings(
            batch_size=batch_size,
            parse_workers=self.parse_workers or None,
            fetch=FetchSettings(global_concurrency=self.global_concurrency,
                                connect_timeout=self.connect_timeout_s, read_timeout=self.read_timeout_s,
                                total_timeout=self.total_timeout_s, max_retries=self.max_retries),
        )


class PriceTrackingConfig(dg.Config):
    batch_size: int = 1000


def shard_windows(context: dg.AssetExecutionContext) -> list[prices.ShardWindow]:
    """The run's partitions as one window per shard (a single-run backfill may span hours)."""
    by_shard: dict[int, list[str]] = {}
    for key in context.partition_keys:
        dims = key.keys_by_dimension
        by_shard.setdefault(int(dims["shard"]), []).append(dims["hour"])
    windows = []
    for shard, hours in sorted(by_shard.items()):
        hours.sort()
        label = hours[0] if len(hours) == 1 else f"{hours[0]}..{hours[-1]}"
        end = HOURLY.time_window_for_partition_key(hours[-1]).end
        windows.append(prices.ShardWindow(label, shard, SHARD_COUNT, end))
    return windows


def windows_start(windows: list[prices.ShardWindow]) -> datetime:
    """Start of the earliest hour the run covers (a window's key is an hour or "first..last")."""
    return min(HOURLY.time_window_for_partition_key(w.partition_key.split("..")[0]).start for w in windows)


def _quality(database: Database, windows: list[prices.ShardWindow]) -> dg.AssetCheckResult:
    from smartbuy_pipeline.quality.price_checks import validate_observations

    first_start = windows_start(windows)
    with psycopg.connect(database.database_url.url) as conn:
        rows = prices.observations_of_windows(conn, windows, first_start)
    frame = pd.DataFrame(rows, columns=list(prices.OBSERVATION_CHECK_COLUMNS))
    # Catch-up runs observe after their window: the observation time is when we looked, never faked.
    report = validate_observations(frame, window_start=first_start, window_end=datetime.now(UTC))
    metadata = report.to_metadata()
    metadata["failing_rows_sample"] = dg.MetadataValue.md(metadata.get("failing_rows_sample") or "(none)")
    return dg.AssetCheckResult(check_name=QUALITY_CHECK, passed=report.passed,
                               severity=dg.AssetCheckSeverity.ERROR, metadata=metadata)


def _staleness(database: Database) -> dg.AssetCheckResult:
    with psycopg.connect(database.database_url.url) as conn:
        active, stale = conn.execute(prices.STALE_OFFERS_SQL, {"age": STALE_OFFERS_AFTER}).fetchone()
    share = stale / active if active else 0.0
    return dg.AssetCheckResult(
        check_name=STALE_CHECK, passed=share <= STALE_OFFERS_MAX_SHARE, severity=dg.AssetCheckSeverity.WARN,
        metadata={"active_offers": active, "stale_offers": stale, "stale_share": round(share, 4),
                  "threshold_share": STALE_OFFERS_MAX_SHARE},
    )


@dg.asset(
    partitions_def=PRICE_PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="prices",
    kinds={"postgres", "python"},
    owners=["team:data"],
    pool="price_tracking",
    freshness_policy=PRICE_FRESHNESS,
    retry_policy=dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS),
    check_specs=[
        dg.AssetCheckSpec(QUALITY_CHECK, asset="price_history", blocking=True,
                          description="Great Expectations suite over the run's observations"),
        dg.AssetCheckSpec(STALE_CHECK, asset="price_history",
                          description="warns when more than 5% of active offers were not checked in 3 hours"),
    ],
    description="Every due offer of the shard fetched and recorded in price_history, in committed batches.",
)
def price_history(context: dg.AssetExecutionContext, config: PriceTrackingConfig, database: Database,
                  acquisition: Acquisition):
    started = datetime.now(UTC)
    settings = acquisition.settings(config.batch_size)
    reports: list[TrackingReport] = []
    windows = shard_windows(context)
    try:
        for window in windows:
            reports.append(track_window(database.database_url, window, settings, log=context.log.info))
    except psycopg.OperationalError:
        raise  # transient database trouble: the RetryPolicy re-runs; committed batches are kept
    except Exception as exc:  # a bug or bad data: retrying will not help
        raise dg.Failure(description=f"price tracking failed: {exc}", allow_retries=False) from exc
    total = TrackingReport.combine(reports, duration_s=(datetime.now(UTC) - started).total_seconds())
    for line in total.failures_sample:  # each failure names the offer, the reason and the URL
        context.log.warning(line)
    yield dg.MaterializeResult(metadata={"dagster/row_count": total.observations, **total.metadata()})
    yield _staleness(database)  # first: a failing blocking check ends the step
    yield _quality(database, windows)


def _observed_offers(context: dg.AssetExecutionContext, database: Database) -> tuple[list[int], datetime]:
    windows = shard_windows(context)
    since = windows_start(windows)
    with psycopg.connect(database.database_url.url) as conn:
        return prices.offers_observed(conn, windows, since), since


# The tables derived from a tracking run: same partitions, refreshed for the offers it observed.
DERIVED_FROM_RUN = dict(
    partitions_def=PRICE_PARTITIONS, backfill_policy=dg.BackfillPolicy.single_run(), deps=[price_history],
    group_name="prices", kinds={"postgres"}, owners=["team:data"],
)


@dg.asset(
    **DERIVED_FROM_RUN,
    description="analytics.price_changes: only the observations where price, 'de' price or availability changed.",
)
def price_changes(context: dg.AssetExecutionContext, database: Database) -> dg.MaterializeResult:
    offer_ids, since = _observed_offers(context, database)
    if not offer_ids:
        return dg.MaterializeResult(metadata={"offers": 0, "changes": 0})
    with database.transaction() as conn:
        changes = analytics.refresh_price_changes(conn, since, datetime.now(UTC), offer_ids)
    return dg.MaterializeResult(metadata={"offers": len(offer_ids), "changes": changes})


@dg.asset(
    **DERIVED_FROM_RUN,
    description="analytics.offer_price_stats: current price, 30/90-day and all-time lows and medians, market median.",
)
def offer_price_stats(context: dg.AssetExecutionContext, database: Database) -> dg.MaterializeResult:
    offer_ids, _ = _observed_offers(context, database)
    if not offer_ids:
        return dg.MaterializeResult(metadata={"offers": 0})
    with database.transaction() as conn:
        rows = analytics.refresh_offer_price_stats(conn, now=datetime.now(UTC), offer_ids=offer_ids)
    return dg.MaterializeResult(metadata={"offers": len(offer_ids), "dagster/row_count": rows})


DAILY = dg.DailyPartitionsDefinition(start_date="2026-11-01")


@dg.asset(
    partitions_def=DAILY,
    deps=[price_history],
    group_name="prices",
    kinds={"postgres"},
    owners=["team:data"],
    description="analytics.price_daily: per offer per UTC day open/close/min/max, count, share of time in stock.",
)
def price_daily(context: dg.AssetExecutionContext, database: Database) -> dg.MaterializeResult:
    day = DAILY.time_window_for_partition_key(context.partition_key).start.date()
    with database.transaction() as conn:
        rows = analytics.refresh_price_daily(conn, day)
    context.log.info(f"price_daily {day}: {rows} offer-days")
    return dg.MaterializeResult(metadata={"dagster/row_count": rows})


price_daily_job = dg.define_asset_job(
    "price_daily_rollup", selection=dg.AssetSelection.assets(price_daily), tags={"smartbuy/kind": "prices"},
)

price_daily_schedule = dg.build_schedule_from_partitioned_job(
    price_daily_job, name="price_daily_after_midnight", hour_of_day=0, minute_of_hour=30,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)


price_tracking_job = dg.define_asset_job(
    "price_tracking",
    selection=dg.AssetSelection.assets(price_history, price_changes, offer_price_stats),
    description="Hourly: every due offer, per shard, then the tables derived from the new prices.",
    tags={"smartbuy/kind": "prices"},
)

price_tracking_schedule = dg.build_schedule_from_partitioned_job(
    price_tracking_job, name="price_tracking_hourly", minute_of_hour=0,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
