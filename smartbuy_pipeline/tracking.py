"""Hourly price tracking of one shard window: due offers, in committed batches, with no cap.

Keyset pagination over due offers (alert/wish offers first, then the rest), one acquisition per
batch, one transaction per batch (`db.prices.record_batch`). Dagster calls `track_window` from
the `price_history` asset; the benchmark and the tests call it directly.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from smartbuy_pipeline.acquisition.http import FetchEngine, FetchSettings, ParsePool
from smartbuy_pipeline.acquisition.sources import Acquired, FeedCache, FeedState, ShopTarget, acquire
from smartbuy_pipeline.db import prices
from smartbuy_pipeline.db.engine import DatabaseUrl
from smartbuy_pipeline.domain.offer_state import is_price_change
from smartbuy_pipeline.domain.types import FetchFailure, Observation, ObservationStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class TrackingSettings:
    batch_size: int = 1000
    parse_workers: int | None = None  # default: one per core
    fetch: FetchSettings = field(default_factory=FetchSettings)

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, int) or not 1 <= self.batch_size <= 100_000:
            raise ValueError(f"batch_size must be an int in [1, 100000], got {self.batch_size!r}")


@dataclass
class TrackingReport:
    partition_key: str
    shard: int
    offers_due: int = 0
    priority_due: int = 0
    processed: int = 0
    fetched: int = 0  # checks that got an answer: an observation or "not modified"
    observations: int = 0
    changed: int = 0  # observations that changed the published price, 'de' price or availability
    quarantined: int = 0
    not_modified: int = 0
    failed: int = 0
    failed_by_reason: Counter = field(default_factory=Counter)
    batches: int = 0
    duration_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failures_sample: list[str] = field(default_factory=list)  # "offer 12: http_5xx: ..." (first few)

    COUNTS = ("offers_due", "priority_due", "processed", "fetched", "observations", "changed", "quarantined",
              "not_modified", "failed", "batches")

    @classmethod
    def combine(cls, reports: list["TrackingReport"], *, duration_s: float) -> "TrackingReport":
        """One report for a run that tracked several shard windows."""
        total = cls(partition_key=",".join(r.partition_key for r in reports), shard=-1, duration_s=duration_s)
        for r in reports:
            for attr in cls.COUNTS:
                setattr(total, attr, getattr(total, attr) + getattr(r, attr))
            total.failed_by_reason.update(r.failed_by_reason)
            total.latencies.extend(r.latencies)
            total.failures_sample.extend(r.failures_sample)
        return total

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        if len(self.latencies) == 1:
            return self.latencies[0]
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[int(q) - 1]

    def metadata(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {
            "offers_due": self.offers_due, "priority_offers_due": self.priority_due,
            "offers_processed": self.processed, "offers_fetched": self.fetched, "observations": self.observations,
            "changed": self.changed, "quarantined": self.quarantined, "not_modified": self.not_modified,
            "failed": self.failed, "batches": self.batches, "duration_s": round(self.duration_s, 3),
            "fetch_latency_p50_s": round(self.percentile(50), 4),
            "fetch_latency_p95_s": round(self.percentile(95), 4),
        }
        for reason, n in sorted(self.failed_by_reason.items()):
            out[f"failed_{reason}"] = n
        return out


def _tally(report: TrackingReport, batch: list[Acquired], targets: dict) -> None:
    for a in batch:
        o = a.outcome
        if a.latency_s is not None:
            report.latencies.append(a.latency_s)
        if isinstance(o, Observation):
            report.fetched += 1
            report.observations += 1
            report.quarantined += o.status is ObservationStatus.QUARANTINED
            report.changed += is_price_change(targets[o.offer_id].state, o)
        elif isinstance(o, FetchFailure):
            report.failed += 1
            report.failed_by_reason[o.reason.value] += 1
            if len(report.failures_sample) < 20:
                report.failures_sample.append(f"offer {o.offer_id}: {o.reason.value}: {o.detail}")
        else:
            report.fetched += 1
            report.not_modified += 1


@dataclass
class _BatchLoop:
    """The batches of one shard window: keyset over due offers, phase by phase."""

    conn: psycopg.Connection
    window: prices.ShardWindow
    settings: TrackingSettings
    engine: FetchEngine
    pool: ParsePool
    feed_cache: FeedCache  # each shop's feed is downloaded once per run
    report: TrackingReport
    log: Callable[[str], None]
    shops: dict[int, ShopTarget] = field(default_factory=dict)

    async def phases(self, progress: prices.Progress, now_fn: Callable[[], datetime],
                     stop_after_batches: int | None) -> bool:
        """Run every remaining batch; False when stopped early (`stop_after_batches`)."""
        for phase in prices.PHASES[prices.PHASES.index(progress.phase):]:
            after = progress.last_offer_id if phase == progress.phase else 0
            if phase != progress.phase:
                prices.advance_phase(self.conn, self.window, phase)
            while (after := await self.batch(phase, after, now_fn())) is not None:
                if stop_after_batches is not None and self.report.batches >= stop_after_batches:
                    return False
        return True

    async def batch(self, phase: str, after: int, now: datetime) -> int | None:
        """Fetch and commit the next batch; its last offer id, or None when nothing is due."""
        targets = prices.due_offers(self.conn, self.window, phase=phase, after=after,
                                    limit=self.settings.batch_size, now=now)
        if not targets:
            return None
        missing = {t.shop_id for t in targets} - self.shops.keys()
        if missing:
            self.shops.update(prices.load_shops(self.conn, missing))
        feed_states: list[FeedState] = []
        started = time.monotonic()
        batch = [a async for a in acquire(targets, self.shops, engine=self.engine, pool=self.pool, now=now,
                                          feed_states=feed_states, feed_cache=self.feed_cache)]
        last = targets[-1].offer_id
        with self.conn.transaction():
            result = prices.record_batch(
                self.conn, batch, window=self.window, phase=phase, last_offer_id=last,
                currency_of={t.offer_id: self.shops[t.shop_id].currency for t in targets},
                current={t.offer_id: t.state for t in targets if t.state is not None},
                check_rows={t.offer_id: t.check_row for t in targets if t.check_row is not None},
                feed_states=feed_states,
            )
        _tally(self.report, batch, {t.offer_id: t for t in targets})
        self.report.processed += len(batch)
        self.report.batches += 1
        self.log(f"batch {self.report.batches} ({phase}): {len(batch)} offers up to id {last} in "
                 f"{time.monotonic() - started:.1f}s; "
                 + ", ".join(f"{k} {v}" for k, v in sorted(result.counts.items())))
        return last


async def _track(url: DatabaseUrl, window: prices.ShardWindow, settings: TrackingSettings,
                 log: Callable[[str], None], now_fn: Callable[[], datetime],
                 stop_after_batches: int | None) -> TrackingReport:
    report = TrackingReport(window.partition_key, window.shard)
    started = time.monotonic()
    with psycopg.connect(url.url, application_name="smartbuy-tracking") as conn:
        conn.autocommit = True
        prices.lock_shard(conn, window, log)  # held until the connection closes
        prices.ensure_partitions(conn, now_fn())
        prices.prepare_session(conn)
        report.priority_due, report.offers_due = prices.count_due(conn, window, now_fn())
        progress = prices.start_progress(conn, window)
        log(f"shard {window.shard}/{window.shard_count} window ending {window.cutoff.isoformat()}: "
            f"{report.offers_due} offers due ({report.priority_due} referenced by alerts or wishes)"
            + (f"; resuming after offer {progress.last_offer_id} ({progress.phase})" if progress.last_offer_id else ""))
        async with FetchEngine(settings.fetch) as engine, ParsePool(settings.parse_workers) as pool:
            with tempfile.TemporaryDirectory(prefix="smartbuy-feeds-") as feed_dir:
                run = _BatchLoop(conn, window, settings, engine, pool, FeedCache(Path(feed_dir)), report, log)
                finished = await run.phases(progress, now_fn, stop_after_batches)
        if not finished:
            report.duration_s = time.monotonic() - started
            return report
        prices.complete_progress(conn, window)
    report.duration_s = time.monotonic() - started
    return report


def track_window(
    url: DatabaseUrl,
    window: prices.ShardWindow,
    settings: TrackingSettings | None = None,
    *,
    log: Callable[[str], None] = lambda _msg: None,
    now_fn: Callable[[], datetime] = utcnow,
    stop_after_batches: int | None = None,
) -> TrackingReport:
    """Track every due offer of one shard window; return what happened."""
    return asyncio.run(_track(url, window, settings or TrackingSettings(), log, now_fn, stop_after_batches))
