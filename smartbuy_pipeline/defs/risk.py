"""Anti-cilada risk scores: the `risk_scores` asset, its refresh job, and the ops job Check Risk.

Thin: the selection, loading, scoring and write path live in `smartbuy_pipeline.db.risk`; the
model in `smartbuy_pipeline.domain.risk` (docs/risk.md). `risk_scores_hourly` rescores the offers
that changed, half an hour after each hourly price-tracking tick.
"""

from datetime import UTC, datetime
from time import perf_counter

import dagster as dg
import psycopg

from smartbuy_pipeline.db import risk as risk_db
from smartbuy_pipeline.defs.resources import Database

ACTOR_TAGS = ("dagster/user", "smartbuy/actor")  # the UI's user first, then the CLI's actor
UNKNOWN_ACTOR = "unknown"


def _as_of(value: str) -> datetime:
    """The instant the scores describe: empty = now; otherwise an ISO-8601 time with offset."""
    if not value:
        return datetime.now(UTC)
    at = datetime.fromisoformat(value)
    if at.tzinfo is None:
        raise dg.Failure(description=f"as_of must carry a UTC offset: {value!r}", allow_retries=False)
    return at.astimezone(UTC)


def actor_of(tags: dict[str, str]) -> str:
    for tag in ACTOR_TAGS:
        value = (tags.get(tag) or "").strip()
        if value:
            return value
    return UNKNOWN_ACTOR


class RiskScoresConfig(dg.Config):
    full: bool = False  # rescore every active offer, not only those changed since their score
    as_of: str = ""  # ISO-8601 instant the scores describe (replays, tests); empty = now
    chunk_offers: int = risk_db.DEFAULT_CHUNK_OFFERS  # offers whose history is loaded at once


@dg.asset(
    deps=[dg.AssetDep("offer_price_stats", partition_mapping=dg.AllPartitionMapping())],
    group_name="risk",
    kinds={"postgres", "pandas"},
    owners=["team:data"],
    pool="risk_scores",
    description=(
        "offer_risk_scores: anti-cilada score 0-100, bucket A/B/C, reasons and input figures per "
        "offer, recomputed for offers whose price, availability or 'de' price changed since their "
        "last score (config full=true: every offer). offer_risk_score_history gets a row only when "
        "an offer's score or bucket changed."
    ),
)
def risk_scores(context: dg.AssetExecutionContext, config: RiskScoresConfig,
                database: Database) -> dg.MaterializeResult:
    started = perf_counter()
    now = _as_of(config.as_of)
    with database.transaction() as conn:
        # a second connection reads the next chunk's history while this one scores (same snapshot)
        run = risk_db.refresh_risk_scores(
            conn, full=config.full, now=now, chunk_offers=config.chunk_offers,
            connect=lambda: psycopg.connect(database.database_url.url, application_name="smartbuy-risk-reader"))
    duration = perf_counter() - started
    context.log.info(
        f"risk_scores ({'full' if config.full else 'incremental'}): {run.scored} offers scored, "
        f"A {run.bucket_a} / B {run.bucket_b} / C {run.bucket_c}, {run.flips} bucket flips"
    )
    return dg.MaterializeResult(metadata={
        "dagster/row_count": run.scored,
        "mode": "full" if config.full else "incremental",
        **run.metadata(),
        "duration_s": round(duration, 3),
        "offers_per_s": round(run.scored / duration, 1) if duration > 0 else 0.0,
    })


risk_scores_refresh_job = dg.define_asset_job(
    "risk_scores_refresh",
    selection=dg.AssetSelection.assets(risk_scores),
    description="Rescore offers changed since their last risk score (config full=true: all).",
    tags={"smartbuy/kind": "risk"},
)

risk_scores_schedule = dg.ScheduleDefinition(
    name="risk_scores_hourly", job=risk_scores_refresh_job, cron_schedule="30 * * * *",
    execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING,
)


class CheckRiskConfig(dg.Config):
    offer_ids: list[int] = []  # offers to recompute now
    gtin: str = ""  # or/and every offer of this GTIN
    as_of: str = ""  # ISO-8601 instant the scores describe; empty = now


def _md_table(rows: list[dict]) -> str:
    lines = ["| offer | shop | before | after | reasons |", "|---|---|---|---|---|"]
    for r in rows:
        before = f"{r['prev_score']} {r['prev_bucket']}" if r["prev_score"] is not None else "-"
        lines.append(f"| {r['offer_id']} | {r['shop']} | {before} | {r['score']} {r['bucket']} "
                     f"| {r['reasons'] or '-'} |")
    return "\n".join(lines)


@dg.op(tags={"smartbuy/kind": "risk"}, out=dg.Out(list, description="before/after per offer"))
def check_risk_offers(context: dg.OpExecutionContext, config: CheckRiskConfig, database: Database):
    """Recompute the offers' risk now, update their bucket and audit it (runbook procedure B)."""
    actor = actor_of(dict(context.run.tags))
    if not config.offer_ids and not config.gtin:
        raise dg.Failure(description="Check Risk needs offer_ids or a gtin", allow_retries=False)
    try:
        with database.transaction() as conn:
            run = risk_db.check_risk(conn, offer_ids=config.offer_ids, gtin=config.gtin or None,
                                     actor=actor, run_id=context.run.run_id, now=_as_of(config.as_of))
    except ValueError as exc:  # unknown offer id or GTIN: a clear message, no retry
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    context.log.info(f"Check Risk by {actor}: {run.scored} offer(s), {run.flips} bucket flip(s), "
                     f"{run.audit_rows} CALC_RISK audit row(s)")
    return dg.Output(run.before_after, metadata={
        "actor": actor, "offers_scored": run.scored, "bucket_flips": run.flips,
        "audit_rows": run.audit_rows, "before_after": dg.MetadataValue.md(_md_table(run.before_after)),
    })


@dg.job(
    description="Check Risk (runbook procedure B): recompute the given offers (ids or a GTIN) now, "
                "update their bucket and write one CALC_RISK audit row per offer.",
    tags={"smartbuy/kind": "risk"},
)
def check_risk():
    check_risk_offers()
