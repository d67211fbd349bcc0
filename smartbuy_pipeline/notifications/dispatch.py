"""One dispatch pass: release the outbox, then claim, send and settle due deliveries in rounds.

The Dagster job `dispatch_notifications` calls `dispatch`; so do the tests and the benchmark.
Each round claims at most `claim_size` deliveries (committed: the claim is a lease, renewed every
quarter lease while the round sends), sends them through `channels.deliver_all`, and settles the
results in small transactions as they finish, so a killed run loses at most the attempts in
flight (re-claimed after the lease, deduplicated by the receiver's Idempotency-Key).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from time import perf_counter

import psycopg

from smartbuy_pipeline.db import notifications as db
from smartbuy_pipeline.notifications.channels import (
    ChannelSettings, DeliveryResult, Outcome, deliver_all,
)

CHANNEL_DISABLED = "channel disabled"


@dataclass(frozen=True)
class DispatchSettings:
    rate_limit_per_hour: int = db.DEFAULT_RATE_LIMIT_PER_HOUR
    max_attempts: int = db.DEFAULT_MAX_ATTEMPTS
    claim_lease: timedelta = db.DEFAULT_CLAIM_LEASE
    claim_size: int = 1000
    max_deliveries: int = 50_000  # per run; the sensor launches another run for the rest

    def __post_init__(self) -> None:
        if self.rate_limit_per_hour < 1:
            raise ValueError(f"rate_limit_per_hour must be >= 1, got {self.rate_limit_per_hour}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.claim_size < 1 or self.max_deliveries < 1:
            raise ValueError("claim_size and max_deliveries must be >= 1")
        if self.claim_lease < timedelta(0):
            raise ValueError(f"claim_lease must not be negative, got {self.claim_lease}")


@dataclass
class DispatchReport:
    released: db.Release = field(default_factory=db.Release)
    claimed: int = 0
    sent: int = 0
    failed: int = 0  # failed attempts that will be retried
    retried: int = 0  # attempts after the first (retries) made in this run
    dead_lettered: int = 0
    invalid: int = 0
    gone: int = 0
    stale: int = 0
    channels_disabled: int = 0
    rounds: int = 0
    duration_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)  # price observation (or alert creation) -> delivered
    errors: Counter = field(default_factory=Counter)  # one-line, secret-free error -> count

    def latency_percentile(self, q: float) -> float | None:
        if not self.latencies_s:
            return None
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    def metadata(self) -> dict[str, float | int]:
        md: dict[str, float | int] = {
            "events_released": self.released.dispatched,
            "events_digested": self.released.digested,
            "events_suppressed_no_channel": self.released.suppressed,
            "digests_released": self.released.digests_released,
            "deliveries_created": self.released.deliveries_created,
            "claimed": self.claimed, "sent": self.sent, "failed": self.failed, "retried": self.retried,
            "dead_lettered": self.dead_lettered, "invalid": self.invalid, "gone": self.gone,
            "stale_claims": self.stale, "channels_disabled": self.channels_disabled,
            "rounds": self.rounds, "duration_s": round(self.duration_s, 3),
            "sent_per_s": round(self.sent / self.duration_s, 1) if self.duration_s > 0 else 0.0,
        }
        for name, q in (("latency_p50_s", 0.50), ("latency_p95_s", 0.95)):
            value = self.latency_percentile(q)
            if value is not None:
                md[name] = round(value, 3)
        return md


def dispatch(connect: Callable[[], psycopg.Connection], *, run_id: str, channels: ChannelSettings,
             settings: DispatchSettings = DispatchSettings(), now_fn: Callable[[], datetime] = lambda: datetime.now(UTC),
             log: Callable[[str], None] = lambda _msg: None) -> DispatchReport:
    """Release pending events and deliver everything due. `connect` opens a new connection."""
    started = perf_counter()
    report = DispatchReport()
    with connect() as conn:
        with conn.transaction():
            report.released = db.release_events(conn, now=now_fn(), rate_limit=settings.rate_limit_per_hour)
        r = report.released
        if r.dispatched or r.digested or r.suppressed or r.digests_released:
            log(f"outbox: {r.dispatched} event(s) released into {r.deliveries_created} delivery(ies), "
                f"{r.digested} held for a digest (rate limit {settings.rate_limit_per_hour}/h), "
                f"{r.suppressed} without an enabled channel, {r.digests_released} digest(s) released")
        while report.claimed < settings.max_deliveries:
            with conn.transaction():
                claimed = db.claim_due(conn, now=now_fn(), run_id=run_id, lease=settings.claim_lease,
                                       limit=min(settings.claim_size, settings.max_deliveries - report.claimed))
            if not claimed:
                break
            report.rounds += 1
            report.claimed += len(claimed)
            _send_round(conn, claimed, run_id=run_id, channels=channels, settings=settings, report=report,
                        now_fn=now_fn)
            log(f"round {report.rounds}: {len(claimed)} claimed; totals sent {report.sent}, "
                f"retry later {report.failed}, dead {report.dead_lettered}")
    report.duration_s = perf_counter() - started
    return report


def _send_round(conn: psycopg.Connection, claimed: list[db.Claimed], *, run_id: str, channels: ChannelSettings,
                settings: DispatchSettings, report: DispatchReport, now_fn: Callable[[], datetime]) -> None:
    attempts = {c.delivery.delivery_id: c.delivery.attempt for c in claimed}
    due_since = {c.delivery.delivery_id: c.due_since for c in claimed}

    def settle(results: list[DeliveryResult]) -> None:
        with conn.transaction():
            rec = db.record_results(conn, results, attempts=attempts, run_id=run_id, now=now_fn(),
                                    max_attempts=settings.max_attempts)
        report.sent += rec.sent
        report.failed += rec.failed
        report.dead_lettered += rec.dead
        report.stale += rec.stale
        report.channels_disabled += rec.channels_disabled
        for res in results:
            if attempts[res.delivery_id] > 1:
                report.retried += 1
            if res.outcome == Outcome.INVALID:
                report.invalid += 1
            elif res.outcome == Outcome.GONE:
                report.gone += 1
            if res.outcome != Outcome.SENT and res.error:
                report.errors[f"{res.error}"] += 1
            seen = due_since.get(res.delivery_id)
            if res.outcome == Outcome.SENT and seen is not None:
                report.latencies_s.append((res.finished_at - seen).total_seconds())

    # A channel disabled after its delivery was created is not contacted: the delivery is dead.
    disabled = [c for c in claimed if not c.channel_enabled]
    if disabled:
        at = datetime.now(UTC)
        settle([DeliveryResult(delivery_id=c.delivery.delivery_id, channel_id=c.delivery.channel_id,
                               outcome=Outcome.INVALID, error=CHANNEL_DISABLED, status_code=None,
                               started_at=at, finished_at=at) for c in disabled])
    live = [c.delivery for c in claimed if c.channel_enabled]
    if live:
        live_ids = [d.delivery_id for d in live]

        def renew() -> None:  # a round may outlast the lease (slow receivers): keep what we hold
            with conn.transaction():
                db.renew_claims(conn, live_ids, run_id=run_id, now=now_fn())

        # groups of up to 500 results or half a second: few small transactions, little lost to a kill
        lease_s = settings.claim_lease.total_seconds()
        deliver_all(live, channels, on_results=settle, flush_every=500, flush_interval_s=0.5,
                    heartbeat=renew if lease_s > 0 else None, heartbeat_every_s=max(lease_s, 1.0) / 4)
