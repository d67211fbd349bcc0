"""App health: the app-side objects as external assets, and the checks ops watch for the
runbook's severity 1 ("feed down") and severity 2 ("login failure").

Thin: the probes are in `smartbuy_pipeline.db.app_health`, the verdicts in
`smartbuy_pipeline.domain.app_health`. `app_health_every_15_minutes` runs both checks.
"""

import dagster as dg

from smartbuy_pipeline.db import app_health as health_db
from smartbuy_pipeline.defs.resources import Database
from smartbuy_pipeline.domain.app_health import judge_feed, judge_signups, markdown_table

FEED_CANARY_SAMPLE = 20  # households with active wishes probed per run
SIGNUP_USERS_LISTED = 50  # incomplete users named in the metadata (the count is always exact)

household_feed = dg.AssetSpec(
    "household_feed",
    deps=["risk_scores"],
    group_name="app",
    kinds={"postgres"},
    owners=["team:data"],
    description="What the app's home screen shows: public.fn_get_feed_candidates(household), wishes matched "
                "to the catalog with each product's best safe offer after the household's hard filters. "
                "Computed by the app on demand; not materialized here.",
)

auth_users = dg.AssetSpec(
    "auth_users",
    group_name="app",
    kinds={"postgres"},
    owners=["team:data"],
    description="auth.users (Supabase): every signup, and through the smartbuy_on_auth_user_created trigger its "
                "profile, household 'Meu Lar' and owner membership. Written by the app, not materialized here.",
)


@dg.asset_check(
    asset=household_feed.key,
    blocking=False,
    description="Severity 1 'feed down': calls fn_get_feed_candidates for up to 20 households with active wishes; "
                "fails when it raises, or returns nothing while a plain query finds eligible offers for the "
                "household's wishes.",
)
def feed_canary(database: Database) -> dg.AssetCheckResult:
    with database.transaction() as conn:
        probes = health_db.probe_feeds(conn, FEED_CANARY_SAMPLE)
    verdict = judge_feed(probes)
    return dg.AssetCheckResult(
        passed=verdict.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "households_checked": verdict.households_checked,
            "candidates": verdict.candidates,
            "failures": len(verdict.failures),
            "failed_households": dg.MetadataValue.md(markdown_table(["household_id", "reason"], verdict.failures)),
        },
    )


@dg.asset_check(
    asset=auth_users.key,
    blocking=False,
    description="Severity 2 'login failure': fails when any auth user has no profile or no household membership "
                "(the signup trigger did not run for them), or the signup trigger is missing or disabled.",
)
def signup_completed(database: Database) -> dg.AssetCheckResult:
    with database.transaction() as conn:
        total, users = health_db.incomplete_signups(conn, SIGNUP_USERS_LISTED)
        trigger = health_db.signup_trigger_state(conn)
    verdict = judge_signups(total, trigger)
    rows = [(u.user_id, u.email, u.signed_up_at.isoformat() if u.signed_up_at else None, ", ".join(u.missing))
            for u in users]
    return dg.AssetCheckResult(
        passed=verdict.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "incomplete_users": verdict.incomplete_users,
            "signup_trigger": verdict.trigger_state,
            "reasons": "; ".join(verdict.reasons) or "(none)",
            "users": dg.MetadataValue.md(markdown_table(["user_id", "email", "signed_up_at", "missing"], rows)),
            "users_listed": len(rows),
        },
    )


app_health_job = dg.define_asset_job(
    "app_health_checks",
    selection=dg.AssetSelection.checks(feed_canary, signup_completed),
    description="The app-health checks: feed canary (severity 1) and completed signups (severity 2).",
    tags={"smartbuy/kind": "app_health"},
)

app_health_schedule = dg.ScheduleDefinition(
    name="app_health_every_15_minutes",
    cron_schedule="*/15 * * * *",
    job=app_health_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
