"""Verdicts of the app-health checks (runbook severity 1 "feed down", severity 2 "login failure").

Pure: the database probes (`smartbuy_pipeline.db.app_health`) produce these records; the Dagster
checks (`smartbuy_pipeline.defs.app_health`) turn the verdicts into check results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

# pg_trigger.tgenabled: 'O' fires in origin (normal) sessions, 'A' always, 'R' only in replica
# sessions, 'D' never. Signups happen in normal sessions.
TRIGGER_FIRES = frozenset({"O", "A"})
TRIGGER_STATES = {"O": "enabled", "A": "enabled (always)", "R": "replica only", "D": "disabled"}


@dataclass(frozen=True)
class FeedProbe:
    """One household's feed as the canary saw it.

    candidates: rows fn_get_feed_candidates returned (0 when it raised).
    error: the error it raised, if any.
    matching_offers: eligible (wish, offer) pairs a plain query finds for the household; only
    looked up when the feed came back empty (None: not looked up, or the lookup itself failed).
    """

    household_id: str
    candidates: int
    error: str | None = None
    matching_offers: int | None = None

    @property
    def failure(self) -> str | None:
        """Why this household's feed is broken, or None when it is healthy."""
        if self.error is not None:
            return f"fn_get_feed_candidates raised: {self.error}"
        if self.candidates == 0 and self.matching_offers:
            return f"empty feed while {self.matching_offers} eligible offer(s) match its wishes"
        return None


@dataclass(frozen=True)
class FeedVerdict:
    passed: bool
    households_checked: int
    candidates: int
    failures: list[tuple[str, str]]  # (household id, reason)


def judge_feed(probes: Sequence[FeedProbe]) -> FeedVerdict:
    """The canary fails when any sampled household's feed errors or is wrongly empty. No sampled
    household (no active wishes anywhere) passes: there is nothing a user could miss."""
    failures = [(p.household_id, p.failure) for p in probes if p.failure is not None]
    return FeedVerdict(
        passed=not failures,
        households_checked=len(probes),
        candidates=sum(p.candidates for p in probes),
        failures=failures,
    )


@dataclass(frozen=True)
class IncompleteSignup:
    user_id: str
    email: str | None
    signed_up_at: datetime | None
    missing: tuple[str, ...]  # of "profile", "membership"


@dataclass(frozen=True)
class SignupVerdict:
    passed: bool
    incomplete_users: int
    trigger_state: str  # "enabled", "disabled", "missing", ...
    reasons: list[str]


def judge_signups(incomplete_total: int, trigger_tgenabled: str | None) -> SignupVerdict:
    """Fails when any auth user lacks a profile or a household membership, or when the signup
    trigger would not fire for the next user (missing or disabled)."""
    state = "missing" if trigger_tgenabled is None else TRIGGER_STATES.get(trigger_tgenabled, trigger_tgenabled)
    reasons = []
    if incomplete_total > 0:
        reasons.append(f"{incomplete_total} auth user(s) without profile or household membership")
    if trigger_tgenabled not in TRIGGER_FIRES:
        reasons.append(f"signup trigger smartbuy_on_auth_user_created is {state}")
    return SignupVerdict(passed=not reasons, incomplete_users=incomplete_total, trigger_state=state,
                         reasons=reasons)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A small Markdown table for check metadata ("(none)" when empty); pipes are escaped."""
    if not rows:
        return "(none)"

    def cell(value: object) -> str:
        return ("" if value is None else str(value)).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
