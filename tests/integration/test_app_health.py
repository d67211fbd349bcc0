"""The app-health checks run through Dagster for real: `app_health_checks` executed in process on
an ephemeral instance against a migrated test database.

feed_canary (runbook severity 1) and signup_completed (severity 2): healthy -> pass; a feed
function that raises, or returns nothing while offers match -> fail naming the household; an
auth user whose signup trigger did not run -> fail naming the user.
"""

from __future__ import annotations

import dagster as dg
import psycopg
import pytest
from psycopg.rows import dict_row

from smartbuy_pipeline.definitions import defs
from smartbuy_pipeline.defs.app_health import app_health_schedule
from smartbuy_pipeline.defs.resources import Database
from tests.integration.test_feed_candidates import Catalog, new_user, wish

pytestmark = pytest.mark.integration

FEED_CHECK = dg.AssetCheckKey(dg.AssetKey("household_feed"), "feed_canary")
SIGNUP_CHECK = dg.AssetCheckKey(dg.AssetKey("auth_users"), "signup_completed")


@pytest.fixture(scope="module")
def definitions() -> dg.Definitions:
    return defs()


@pytest.fixture()
def conn(db_url):
    with psycopg.connect(db_url.url, autocommit=True, row_factory=dict_row) as c:
        yield c


@pytest.fixture()
def shop_world(conn) -> dict:
    """Household A wishes for an air fryer that has a safe offer; household B for something the
    catalog does not have (a legitimately empty feed)."""
    c = Catalog(conn)
    shop = c.shop("Loja A")
    fryer = c.product("Fritadeira Air Fryer Mondial 4L", "Mondial")
    c.offer(fryer, shop, "449.90")
    _, ha = new_user(conn, "ana@example.com")
    _, hb = new_user(conn, "bruno@example.com")
    wish(conn, ha, "Air Fryer")
    wish(conn, hb, "Bicicleta aro 29")
    return {"ha": ha, "hb": hb}


def run_checks(definitions: dg.Definitions, db_url) -> dict[dg.AssetCheckKey, dg.AssetCheckEvaluation]:
    with dg.instance_for_test() as instance:
        result = definitions.resolve_job_def("app_health_checks").execute_in_process(
            instance=instance, resources={"database": Database(url=db_url.url)}, raise_on_error=False)
    assert result.success  # failed checks are results, not run failures
    return {e.asset_check_key: e for e in result.get_asset_check_evaluations()}


def meta(evaluation: dg.AssetCheckEvaluation, key: str):
    return evaluation.metadata[key].value


# ------------------------------------------------------------------------------ feed canary
def test_both_checks_pass_on_a_healthy_database(definitions, db_url, shop_world):
    evals = run_checks(definitions, db_url)
    assert set(evals) == {FEED_CHECK, SIGNUP_CHECK}
    feed = evals[FEED_CHECK]
    assert feed.passed, feed.metadata
    assert feed.severity == dg.AssetCheckSeverity.ERROR
    assert (meta(feed, "households_checked"), meta(feed, "candidates"), meta(feed, "failures")) == (2, 1, 0)
    signup = evals[SIGNUP_CHECK]
    assert signup.passed, signup.metadata
    assert (meta(signup, "incomplete_users"), meta(signup, "signup_trigger")) == (0, "enabled")


def test_no_wishes_anywhere_passes(definitions, db_url):
    feed = run_checks(definitions, db_url)[FEED_CHECK]
    assert feed.passed and meta(feed, "households_checked") == 0


def test_feed_canary_fails_when_the_function_raises(definitions, db_url, conn, shop_world):
    conn.execute("alter function public.fn_get_feed_candidates(uuid) rename to fn_get_feed_candidates_real")
    conn.execute("""
        create function public.fn_get_feed_candidates(p_household_id uuid) returns table (wish_id bigint)
        language plpgsql set search_path = '' as $$
        begin
            raise exception 'column w.titel does not exist';
        end $$""")
    feed = run_checks(definitions, db_url)[FEED_CHECK]
    assert not feed.passed
    assert meta(feed, "failures") == 2 and meta(feed, "households_checked") == 2
    table = meta(feed, "failed_households")
    for household in (shop_world["ha"], shop_world["hb"]):
        assert household in table
    assert "fn_get_feed_candidates raised: column w.titel does not exist (SQLSTATE P0001)" in table


def test_feed_canary_fails_when_the_function_is_missing(definitions, db_url, conn, shop_world):
    conn.execute("drop function public.fn_get_feed_candidates(uuid)")
    feed = run_checks(definitions, db_url)[FEED_CHECK]
    assert not feed.passed and meta(feed, "failures") == 2
    assert "SQLSTATE 42883" in meta(feed, "failed_households")  # undefined_function


def test_feed_canary_fails_when_the_feed_is_empty_while_offers_match(definitions, db_url, conn, shop_world):
    conn.execute("drop function public.fn_get_feed_candidates(uuid)")
    conn.execute("""
        create function public.fn_get_feed_candidates(p_household_id uuid) returns table (wish_id bigint)
        language sql stable set search_path = '' as $$ select 1::bigint where false $$""")
    feed = run_checks(definitions, db_url)[FEED_CHECK]
    assert not feed.passed
    assert meta(feed, "failures") == 1  # B's feed is empty and should be: no failure for B
    table = meta(feed, "failed_households")
    assert shop_world["ha"] in table and shop_world["hb"] not in table
    assert "empty feed while 1 eligible offer(s) match its wishes" in table


def test_empty_feed_because_of_filters_is_not_a_failure(definitions, db_url, conn, shop_world):
    # Everything filtered out: the offer's shop is blocked for A. The feed is rightly empty.
    shop_id = conn.execute("select id from shops").fetchone()["id"]
    conn.execute("insert into household_profiles (household_id, blocked_shop_ids) values (%s, %s)",
                 (shop_world["ha"], [shop_id]))
    feed = run_checks(definitions, db_url)[FEED_CHECK]
    assert feed.passed and meta(feed, "candidates") == 0


# ------------------------------------------------------------------------- signup completed
def test_signup_check_names_a_user_whose_trigger_did_not_run(definitions, db_url, conn):
    new_user(conn, "ok@example.com")
    conn.execute("alter table auth.users disable trigger smartbuy_on_auth_user_created")
    lost = conn.execute("insert into auth.users (email) values ('lost@example.com') returning id::text as id"
                        ).fetchone()["id"]
    signup = run_checks(definitions, db_url)[SIGNUP_CHECK]
    assert not signup.passed
    assert signup.severity == dg.AssetCheckSeverity.ERROR
    assert meta(signup, "incomplete_users") == 1 and meta(signup, "users_listed") == 1
    assert meta(signup, "signup_trigger") == "disabled"
    users = meta(signup, "users")
    assert lost in users and "lost@example.com" in users and "profile, membership" in users
    assert "ok@example.com" not in users

    # Trigger back on: the user signed up meanwhile is still broken, and still named.
    conn.execute("alter table auth.users enable trigger smartbuy_on_auth_user_created")
    signup = run_checks(definitions, db_url)[SIGNUP_CHECK]
    assert not signup.passed and meta(signup, "signup_trigger") == "enabled"
    assert lost in meta(signup, "users")
    assert meta(signup, "reasons") == "1 auth user(s) without profile or household membership"

    # Repaired by hand (what the trigger would have done): the check passes.
    conn.execute("insert into profiles (id, email) values (%s, 'lost@example.com')", (lost,))
    household = conn.execute("insert into households (created_by) values (%s) returning id", (lost,)
                             ).fetchone()["id"]
    conn.execute("insert into household_members (household_id, user_id, role) values (%s, %s, 'owner')",
                 (household, lost))
    assert run_checks(definitions, db_url)[SIGNUP_CHECK].passed


def test_signup_check_fails_on_a_missing_membership_alone(definitions, db_url, conn):
    user_id, _ = new_user(conn, "left@example.com")
    conn.execute("delete from household_members where user_id = %s", (user_id,))
    signup = run_checks(definitions, db_url)[SIGNUP_CHECK]
    assert not signup.passed
    users = meta(signup, "users")
    assert user_id in users and "| membership |" in users


def test_signup_check_fails_when_the_trigger_is_disabled_before_anyone_signs_up(definitions, db_url, conn):
    conn.execute("alter table auth.users disable trigger smartbuy_on_auth_user_created")
    signup = run_checks(definitions, db_url)[SIGNUP_CHECK]
    assert not signup.passed and meta(signup, "incomplete_users") == 0
    assert meta(signup, "reasons") == "signup trigger smartbuy_on_auth_user_created is disabled"


def test_signup_lists_at_most_50_users_but_counts_all(definitions, db_url, conn):
    conn.execute("alter table auth.users disable trigger smartbuy_on_auth_user_created")
    conn.execute("insert into auth.users (email) select 'u' || i || '@example.com' from generate_series(1, 60) i")
    conn.execute("alter table auth.users enable trigger smartbuy_on_auth_user_created")
    signup = run_checks(definitions, db_url)[SIGNUP_CHECK]
    assert (meta(signup, "incomplete_users"), meta(signup, "users_listed")) == (60, 50)


def test_pipeline_role_can_run_both_probes(conn, shop_world):
    """The probes need no privilege the pipeline role lacks (auth.users is read through
    fn_incomplete_signups; the trigger state through the catalogs)."""
    from smartbuy_pipeline.db import app_health

    with conn.transaction(force_rollback=True):
        conn.execute("set local role smartbuy_pipeline")
        conn.row_factory = psycopg.rows.tuple_row
        probes = app_health.probe_feeds(conn, 20)
        assert sorted((p.candidates, p.error) for p in probes) == [(0, None), (1, None)]
        assert app_health.incomplete_signups(conn, 50) == (0, [])
        assert app_health.signup_trigger_state(conn) == "O"


# ---------------------------------------------------------------------------- job, schedule
def test_job_selects_only_the_two_checks_and_runs_every_15_minutes(definitions):
    job = definitions.resolve_job_def("app_health_checks")
    assert job.asset_layer.asset_graph.asset_check_keys >= {FEED_CHECK, SIGNUP_CHECK}
    schedule = definitions.resolve_schedule_def("app_health_every_15_minutes")
    assert schedule.cron_schedule == "*/15 * * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert app_health_schedule.job_name == "app_health_checks"
