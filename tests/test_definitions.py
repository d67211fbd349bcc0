"""The code location loads, and its lists of assets, jobs, schedules and sensors are as expected.

A change to these lists is a change to what ops see in the UI: update the snapshot on purpose.
"""

from __future__ import annotations

import dagster as dg

from smartbuy_pipeline.definitions import defs

EXPECTED = {
    "assets": ["alert_candidates", "auth_users", "household_feed", "offer_price_stats", "price_changes", "price_daily",
               "price_history", "risk_scores"],
    "asset_checks": ["auth_users:signup_completed", "household_feed:feed_canary", "price_history:observations_quality",
                     "price_history:offers_checked_recently"],
    "jobs": ["alert_evaluation", "app_health_checks", "catalog_import", "check_risk", "deactivate_offer",
             "dispatch_notifications", "price_daily_rollup", "price_tracking", "redrive_notifications",
             "risk_scores_refresh", "seed_demo_catalog"],
    "schedules": ["alert_candidates_every_15_min", "app_health_every_15_minutes", "price_daily_after_midnight",
                  "price_tracking_hourly", "risk_scores_hourly"],
    "sensors": ["alert_candidates_on_price_batch", "notification_dispatch", "ops_run_failure_alert"],
    "resources": ["acquisition", "database", "notifier", "ops_alerts"],
}


def snapshot(d: dg.Definitions) -> dict[str, list[str]]:
    repo = d.get_repository_def()
    return {
        "assets": sorted(k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()),
        "asset_checks": sorted(k.to_user_string() for k in repo.asset_graph.asset_check_keys),
        "jobs": sorted(j.name for j in repo.get_all_jobs() if not j.name.startswith("__")),
        "schedules": sorted(s.name for s in repo.schedule_defs),
        "sensors": sorted(s.name for s in repo.sensor_defs),
        "resources": sorted(d.resources or {}),
    }


def test_definitions_load_and_validate():
    d = defs()
    dg.Definitions.validate_loadable(d)


def test_definitions_snapshot():
    assert snapshot(defs()) == EXPECTED


def test_database_url_is_an_env_var_not_a_value():
    # The UI and run metadata show the variable's name; the secret stays in the environment.
    database = defs().resources["database"]
    assert database.url == dg.EnvVar("SMARTBUY_DATABASE_URL")
