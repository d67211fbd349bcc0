"""Roles, grants and row-level security of the schema, proven against real PostgreSQL.

Each check connects as postgres (the migration owner) and, inside a transaction that is always
rolled back, does `SET LOCAL ROLE <role>` and sets the JWT claims the way PostgREST does.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import errors, sql

from tests.support import acting_as, sign_up

pytestmark = pytest.mark.integration

GTIN = "07891234567895"  # EAN-13 7891234567895 as GTIN-14 (valid check digit)


# --------------------------------------------------------------------------------------- helpers
@pytest.fixture()
def conn(db_url) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url.url, autocommit=True) as c:
        yield c


def as_user(conn: psycopg.Connection, user_id: str):
    return acting_as(conn, "authenticated", user_id)


def new_user(conn: psycopg.Connection, email: str) -> tuple[str, str]:
    """Sign a user up (insert into auth.users); return (user_id, household_id)."""
    return sign_up(conn, email, display_name=email.split("@")[0].title())


def seed_catalog(conn: psycopg.Connection) -> tuple[int, int]:
    """One product and one offer (as the migration owner); returns (product_id, offer_id)."""
    product_id = conn.execute(
        "insert into products (gtin, name) values (%s, 'Air Fryer 4L') returning id", (GTIN,)
    ).fetchone()[0]
    shop_id = conn.execute(
        "insert into shops (name, domain) values ('Loja', 'loja.example') returning id"
    ).fetchone()[0]
    offer_id = conn.execute(
        "insert into offers (product_id, shop_id, source_kind, locator, price, currency)"
        " values (%s, %s, 'page', 'https://loja.example/p/1', 399.90, 'BRL') returning id",
        (product_id, shop_id),
    ).fetchone()[0]
    return product_id, offer_id


def seed_household_rows(conn: psycopg.Connection, user_id: str, household_id: str, product_id: int,
                        offer_id: int) -> dict[str, int]:
    """A wish, an alert, a channel, an event and a delivery for a household (as the owner)."""
    ids = {}
    ids["wishes"] = conn.execute(
        "insert into wishes (household_id, title, intent, max_price) values (%s, 'Air fryer', 'buy_now', 450)"
        " returning id", (household_id,)).fetchone()[0]
    ids["alerts"] = conn.execute(
        "insert into alerts (household_id, created_by, alert_type, product_id, params)"
        " values (%s, %s, 'TARGET_PRICE', %s, '{\"target\": \"350.00\"}') returning id",
        (household_id, user_id, product_id)).fetchone()[0]
    ids["notification_channels"] = conn.execute(
        "insert into notification_channels (household_id, kind, target, secret)"
        " values (%s, 'webhook', 'https://hooks.example/' || %s, 's3cr3t') returning id",
        (household_id, household_id)).fetchone()[0]
    ids["alert_events"] = conn.execute(
        "insert into alert_events (alert_id, household_id, offer_id, dedupe_key, price, currency)"
        " values (%s, %s, %s, %s, 349.90, 'BRL') returning id",
        (ids["alerts"], household_id, offer_id, f"k-{household_id}")).fetchone()[0]
    ids["notification_deliveries"] = conn.execute(
        "insert into notification_deliveries (event_id, channel_id) values (%s, %s) returning id",
        (ids["alert_events"], ids["notification_channels"])).fetchone()[0]
    conn.execute("insert into household_profiles (household_id, budget_monthly) values (%s, 1500)",
                 (household_id,))
    return ids


@pytest.fixture()
def world(conn) -> dict:
    """Two signed-up users A and B, each with a household full of rows."""
    a, ha = new_user(conn, "ana@example.com")
    b, hb = new_user(conn, "bruno@example.com")
    product_id, offer_id = seed_catalog(conn)
    return {
        "a": a, "ha": ha, "b": b, "hb": hb, "product_id": product_id, "offer_id": offer_id,
        "rows_a": seed_household_rows(conn, a, ha, product_id, offer_id),
        "rows_b": seed_household_rows(conn, b, hb, product_id, offer_id),
    }


def count(conn: psycopg.Connection, query: str, params=()) -> int:
    return conn.execute(query, params).fetchone()[0]


HOUSEHOLD_ROW_TABLES = ["wishes", "alerts", "notification_channels"]


# ------------------------------------------------------------------------------ signup trigger
def test_new_auth_user_gets_profile_household_and_owner_membership(conn):
    user_id, household_id = new_user(conn, "carla@example.com")
    profile = conn.execute("select email, display_name, role from profiles where id = %s", (user_id,)).fetchone()
    assert profile == ("carla@example.com", "Carla", "user")
    household = conn.execute("select name, created_by::text from households where id = %s",
                             (household_id,)).fetchone()
    assert household == ("Meu Lar", user_id)
    members = conn.execute("select user_id::text, role from household_members where household_id = %s",
                           (household_id,)).fetchall()
    assert members == [(user_id, "owner")]
    # ... and the user sees exactly that through RLS.
    with as_user(conn, user_id) as c:
        assert c.execute("select id::text, name from households").fetchall() == [(household_id, "Meu Lar")]
        assert c.execute("select id::text from profiles").fetchall() == [(user_id,)]
        assert c.execute("select public.fn_is_household_member(%s)", (household_id,)).fetchone()[0] is True


# ---------------------------------------------------------------------- isolation between homes
@pytest.mark.parametrize("table", HOUSEHOLD_ROW_TABLES + ["alert_events", "notification_deliveries",
                                                           "household_profiles"])
def test_user_sees_only_own_household_rows(conn, world, table):
    with as_user(conn, world["a"]) as c:
        if table == "notification_deliveries":
            rows = c.execute("select id from notification_deliveries order by id").fetchall()
            assert rows == [(world["rows_a"]["notification_deliveries"],)]
        elif table == "household_profiles":
            rows = c.execute("select household_id::text from household_profiles").fetchall()
            assert rows == [(world["ha"],)]
        else:
            rows = c.execute(sql.SQL("select id, household_id::text from {} order by id")
                             .format(sql.Identifier(table))).fetchall()
            assert rows == [(world["rows_a"][table], world["ha"])]


@pytest.mark.parametrize("table", HOUSEHOLD_ROW_TABLES)
def test_user_cannot_update_or_delete_other_household_rows(conn, world, table):
    other_id = world["rows_b"][table]
    with as_user(conn, world["a"]) as c:
        cur = c.execute(sql.SQL("update {} set active = false where id = %s" if table != "notification_channels"
                                else "update {} set enabled = false where id = %s")
                        .format(sql.Identifier(table)), (other_id,))
        assert cur.rowcount == 0
        cur = c.execute(sql.SQL("delete from {} where id = %s").format(sql.Identifier(table)), (other_id,))
        assert cur.rowcount == 0
    # B's row is untouched.
    flag = "enabled" if table == "notification_channels" else "active"
    assert conn.execute(sql.SQL("select {} from {} where id = %s").format(sql.Identifier(flag), sql.Identifier(table)),
                        (other_id,)).fetchone() == (True,)


INSERT_FOR_HOUSEHOLD = {
    "wishes": "insert into wishes (household_id, title) values (%(h)s, 'x')",
    "alerts": "insert into alerts (household_id, created_by, alert_type, product_id)"
              " values (%(h)s, %(u)s, 'NEW_LOW', %(p)s)",
    "notification_channels": "insert into notification_channels (household_id, kind, target)"
                             " values (%(h)s, 'email', 'a@example.com')",
    "household_profiles": "insert into household_profiles (household_id) values (%(h)s)"
                          " on conflict (household_id) do nothing",
}


@pytest.mark.parametrize("table", list(INSERT_FOR_HOUSEHOLD))
def test_user_cannot_insert_rows_for_other_household(conn, world, table):
    with as_user(conn, world["a"]) as c:
        with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
            c.execute(INSERT_FOR_HOUSEHOLD[table], {"h": world["hb"], "u": world["a"], "p": world["product_id"]})


@pytest.mark.parametrize("table", ["wishes", "alerts", "notification_channels"])
def test_user_can_insert_for_own_household(conn, world, table):
    with as_user(conn, world["a"]) as c:
        cur = c.execute(INSERT_FOR_HOUSEHOLD[table], {"h": world["ha"], "u": world["a"], "p": world["product_id"]})
        assert cur.rowcount == 1
        assert count(c, sql.SQL("select count(*) from {}").format(sql.Identifier(table))) == 2


def test_user_can_read_update_and_delete_own_rows(conn, world):
    rows = world["rows_a"]
    with as_user(conn, world["a"]) as c:
        assert c.execute("update wishes set title = 'Fritadeira' where id = %s", (rows["wishes"],)).rowcount == 1
        assert c.execute("update alerts set params = '{\"target\": \"300.00\"}' where id = %s",
                         (rows["alerts"],)).rowcount == 1
        assert c.execute("update notification_channels set enabled = false where id = %s",
                         (rows["notification_channels"],)).rowcount == 1
        assert c.execute("update household_profiles set budget_monthly = 2000 where household_id = %s",
                         (world["ha"],)).rowcount == 1
        assert c.execute("update households set name = 'Casa' where id = %s", (world["ha"],)).rowcount == 1
        assert c.execute("select title from wishes").fetchall() == [("Fritadeira",)]
        assert c.execute("delete from wishes where id = %s", (rows["wishes"],)).rowcount == 1
        assert c.execute("delete from alerts where id = %s", (rows["alerts"],)).rowcount == 1
        assert count(c, "select count(*) from wishes") == 0


def test_a_channel_secret_is_write_only_for_its_household(conn, world):
    channel = world["rows_a"]["notification_channels"]
    with as_user(conn, world["a"]) as c:
        # the member sees the channel and its own target, and may rotate the secret...
        assert c.execute("select kind, target, enabled from notification_channels where id = %s",
                         (channel,)).fetchone() == ("webhook", f"https://hooks.example/{world['ha']}", True)
        assert c.execute("update notification_channels set secret = 'rotated' where id = %s", (channel,)).rowcount == 1
        assert c.execute("insert into notification_channels (household_id, kind, target, secret)"
                         " values (%s, 'webhook', 'https://hooks.example/2', 'new')", (world["ha"],)).rowcount == 1
    # ... but never reads it back, not even through `*` or a returning clause
    for statement in ("select secret from notification_channels",
                      "select * from notification_channels",
                      "update notification_channels set enabled = true returning secret"):
        with as_user(conn, world["a"]) as c:
            with pytest.raises(errors.InsufficientPrivilege, match="permission denied"):
                c.execute(statement)
    # the dispatcher still does
    with acting_as(conn, "smartbuy_pipeline") as c:
        assert c.execute("select secret from notification_channels where id = %s", (channel,)).fetchone() == ("s3cr3t",)


def test_user_cannot_move_own_row_into_other_household(conn, world):
    with as_user(conn, world["a"]) as c:
        with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
            c.execute("update wishes set household_id = %s where id = %s", (world["hb"], world["rows_a"]["wishes"]))


def test_user_cannot_forge_alert_creator(conn, world):
    with as_user(conn, world["a"]) as c:
        with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
            c.execute("insert into alerts (household_id, created_by, alert_type, product_id)"
                      " values (%s, %s, 'NEW_LOW', %s)", (world["ha"], world["b"], world["product_id"]))
    with as_user(conn, world["a"]) as c:  # created_by defaults to the caller
        created_by = c.execute("insert into alerts (household_id, alert_type, offer_id) values (%s, 'NEW_LOW', %s)"
                               " returning created_by::text", (world["ha"], world["offer_id"])).fetchone()[0]
        assert created_by == world["a"]


def test_user_cannot_set_evaluator_columns_of_alerts(conn, world):
    with as_user(conn, world["a"]) as c:
        with pytest.raises(errors.InsufficientPrivilege, match="permission denied for table alerts"):
            c.execute("update alerts set last_notified_at = now() where id = %s", (world["rows_a"]["alerts"],))


def test_households_and_memberships_of_others_are_invisible(conn, world):
    with as_user(conn, world["a"]) as c:
        assert c.execute("select id::text from households").fetchall() == [(world["ha"],)]
        assert c.execute("select household_id::text, user_id::text, role from household_members").fetchall() == [
            (world["ha"], world["a"], "owner")]
        assert c.execute("select public.fn_is_household_member(%s)", (world["hb"],)).fetchone()[0] is False
        assert c.execute("update households set name = 'hacked' where id = %s", (world["hb"],)).rowcount == 0
        with pytest.raises(errors.InsufficientPrivilege, match="permission denied for table household_members"):
            c.execute("insert into household_members (household_id, user_id, role) values (%s, %s, 'member')",
                      (world["hb"], world["a"]))


def test_profile_own_row_only_and_role_is_not_self_service(conn, world):
    with as_user(conn, world["a"]) as c:
        assert c.execute("select id::text from profiles").fetchall() == [(world["a"],)]
        assert c.execute("update profiles set display_name = 'Ana B.' where id = %s", (world["a"],)).rowcount == 1
        assert c.execute("update profiles set display_name = 'x' where id = %s", (world["b"],)).rowcount == 0
    with as_user(conn, world["a"]) as c:
        with pytest.raises(errors.InsufficientPrivilege, match="permission denied for table profiles"):
            c.execute("update profiles set role = 'admin' where id = %s", (world["a"],))
    assert conn.execute("select role from profiles where id = %s", (world["a"],)).fetchone() == ("user",)


def test_app_roles_cannot_assume_privileged_roles(conn):
    for app_role in ("anon", "authenticated"):
        for privileged in ("smartbuy_pipeline", "smartbuy_ops", "smartbuy_analyst", "postgres"):
            assert conn.execute("select pg_has_role(%s, %s, 'MEMBER')", (app_role, privileged)).fetchone() == (False,)
        attrs = conn.execute("select rolsuper, rolbypassrls, rolcreaterole, rolcanlogin from pg_roles"
                             " where rolname = %s", (app_role,)).fetchone()
        assert attrs == (False, False, False, False)


@pytest.mark.parametrize("statement", [
    "insert into offer_risk_scores (offer_id, score, bucket, model_version) values (%(o)s, 95, 'A', 'forged')",
    "insert into offer_risk_score_history (offer_id, score, bucket, model_version) values (%(o)s, 95, 'A', 'x')",
    "insert into alert_events (alert_id, household_id, dedupe_key, currency) values (%(al)s, %(h)s, 'forged', 'BRL')",
    "insert into notification_deliveries (event_id, channel_id) values (%(ev)s, %(ch)s)",
    "insert into ops_audit_logs (actor, action_type) values ('me', 'UPSERT_OFFER')",
    "insert into price_history (offer_id, observed_at, price, currency, availability, status, source_kind)"
    " values (%(o)s, now(), 1.00, 'BRL', 'in_stock', 'accepted', 'page')",
    "insert into products (gtin, name) values ('00000000000000', 'x')",
    "update offers set price = 1.00 where id = %(o)s",
    "update offer_risk_scores set score = 100, bucket = 'A'",
    "update alert_events set status = 'dispatched'",
    "update notification_deliveries set status = 'sent'",
    "select * from ops_audit_logs",
    "select feed_url from shops",
    "select * from auth.users",
])
def test_authenticated_cannot_touch_pipeline_tables(conn, world, statement):
    params = {"o": world["offer_id"], "h": world["ha"], "al": world["rows_a"]["alerts"],
              "ev": world["rows_a"]["alert_events"], "ch": world["rows_a"]["notification_channels"]}
    with as_user(conn, world["a"]) as c:
        with pytest.raises(errors.InsufficientPrivilege, match="permission denied"):
            c.execute(statement, params)


def test_authenticated_reads_catalog_prices_and_risk(conn, world):
    conn.execute("insert into offer_risk_scores (offer_id, score, bucket, model_version)"
                 " values (%s, 85, 'A', 'v1')", (world["offer_id"],))
    with as_user(conn, world["a"]) as c:
        assert count(c, "select count(*) from products") == 1
        assert count(c, "select count(*) from offers") == 1
        assert count(c, "select count(id) from shops") == 1
        assert count(c, "select count(*) from price_history") == 0
        assert c.execute("select score, bucket from offer_risk_scores").fetchall() == [(85, "A")]


def test_anon_sees_no_household_data(conn, world):
    for statement in ("select * from wishes", "select * from households", "select * from profiles",
                      "select * from notification_channels", "select * from alerts"):
        with acting_as(conn, "anon") as c:
            with pytest.raises(errors.InsufficientPrivilege, match="permission denied"):
                c.execute(statement)


# ------------------------------------------------------------------------------------- analyst
def all_tables(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    """(schema, table, first column) of every table and partitioned table in public and analytics."""
    return conn.execute("""
        select n.nspname, c.relname, a.attname
        from pg_class c
        join pg_namespace n on n.oid = c.relnamespace
        join pg_attribute a on a.attrelid = c.oid and a.attnum = 1
        where n.nspname in ('public', 'analytics') and c.relkind in ('r', 'p')
        order by 1, 2
    """).fetchall()


def test_analyst_cannot_write_any_table(conn, world):
    conn.execute("create table analytics.daily_lowest (day date, product_id bigint, price numeric(12,2))")
    tables = all_tables(conn)
    names = {t for _, t, _ in tables}
    assert {"products", "offers", "price_history", "price_history_default", "ops_audit_logs",
            "daily_lowest", "wishes"} <= names
    failures = []
    for schema, table, column in tables:
        target = sql.Identifier(schema, table)
        statements = [
            sql.SQL("insert into {} default values").format(target),
            sql.SQL("update {} set {} = {} where false").format(target, sql.Identifier(column), sql.Identifier(column)),
            sql.SQL("delete from {} where false").format(target),
            sql.SQL("truncate {}").format(target),
        ]
        for statement in statements:
            with acting_as(conn, "smartbuy_analyst"):
                try:
                    conn.execute(statement)
                except errors.InsufficientPrivilege:
                    continue
                failures.append(statement.as_string(conn))
    assert failures == []


def test_analyst_reads_catalog_prices_risk_and_analytics(conn, world):
    conn.execute("create table analytics.daily_lowest (day date, product_id bigint, price numeric(12,2))")
    with acting_as(conn, "smartbuy_analyst") as c:
        for table in ("products", "shops", "offers", "price_history", "offer_risk_scores",
                      "offer_risk_score_history", "analytics.daily_lowest"):
            assert count(c, f"select count(*) from {table}") >= 0


@pytest.mark.parametrize("statement", [
    "select * from notification_channels",
    "select * from profiles",
    "select * from auth.users",
    "select * from households",
    "select * from household_members",
    "select * from household_profiles",
    "select * from wishes",
    "select * from alerts",
    "select * from alert_events",
    "select * from notification_deliveries",
    "select * from ops_audit_logs",
    "select public.fn_is_household_member(gen_random_uuid())",
    "select public.fn_ensure_price_history_partitions(current_date, 1)",
])
def test_analyst_cannot_read_household_or_identity_data(conn, world, statement):
    with acting_as(conn, "smartbuy_analyst") as c:
        with pytest.raises(errors.InsufficientPrivilege, match="permission denied"):
            c.execute(statement)


# ------------------------------------------------------------------------------- pipeline / ops
def test_pipeline_role_can_do_its_job(conn, world):
    with acting_as(conn, "smartbuy_pipeline") as c:
        assert c.execute("select public.fn_ensure_price_history_partitions('2035-01-01', 2)").fetchone() == (2,)
        product = c.execute("insert into products (gtin, name) values ('07891000100103', 'Leite')"
                            " on conflict (gtin) do update set name = excluded.name returning id").fetchone()[0]
        shop = c.execute("insert into shops (name, domain) values ('B', 'b.example') returning id").fetchone()[0]
        offer = c.execute("insert into offers (product_id, shop_id, source_kind, locator) values (%s, %s,"
                          " 'merchant_feed', 'sku-1') returning id", (product, shop)).fetchone()[0]
        with c.cursor().copy("copy price_history (offer_id, observed_at, price, currency, availability, status,"
                             " source_kind) from stdin") as copy:
            copy.write_row((offer, "2035-01-10T12:00:00+00:00", "10.50", "BRL", "in_stock", "accepted",
                            "merchant_feed"))
        c.execute("update offers set price = 10.50, currency = 'BRL' where id = %s", (offer,))
        # the check bookkeeping lives in offer_checks (0015); its row came from the insert trigger
        assert c.execute("update offer_checks set last_checked_at = now() where offer_id = %s",
                         (offer,)).rowcount == 1
        c.execute("insert into offer_risk_scores (offer_id, score, bucket, model_version) values (%s, 70, 'B', 'v1')"
                  " on conflict (offer_id) do update set score = excluded.score, bucket = excluded.bucket", (offer,))
        c.execute("insert into offer_risk_score_history (offer_id, score, bucket, model_version)"
                  " values (%s, 70, 'B', 'v1')", (offer,))
        # RLS lets the pipeline see every household's alerts and channels (targets and secrets).
        assert count(c, "select count(*) from alerts where active") == 2
        assert count(c, "select count(secret) from notification_channels") == 2
        event = c.execute("insert into alert_events (alert_id, household_id, offer_id, dedupe_key, price, currency)"
                          " values (%s, %s, %s, 'k-new', 10.50, 'BRL') returning id",
                          (world["rows_b"]["alerts"], world["hb"], offer)).fetchone()[0]
        c.execute("insert into notification_deliveries (event_id, channel_id) values (%s, %s)",
                  (event, world["rows_b"]["notification_channels"]))
        c.execute("update notification_deliveries set status = 'sent', sent_at = now() where event_id = %s", (event,))
        c.execute("update alerts set last_notified_price = 10.50, last_notified_at = now() where id = %s",
                  (world["rows_b"]["alerts"],))
        c.execute("insert into ops_audit_logs (actor, action_type, entity_type, entity_id)"
                  " values ('pipeline', 'CALC_RISK', 'offer', %s)", (str(offer),))
    for statement in ("delete from price_history", "select * from ops_audit_logs", "select * from profiles",
                      "update alerts set params = '{}'", "delete from alert_events"):
        with acting_as(conn, "smartbuy_pipeline") as c:
            with pytest.raises(errors.InsufficientPrivilege, match="permission denied"):
                c.execute(statement)


def test_ops_reads_audit_but_not_channel_secrets(conn, world):
    conn.execute("insert into ops_audit_logs (actor, action_type) values ('ops:maria', 'UPSERT_OFFER')")
    with acting_as(conn, "smartbuy_ops") as c:  # a catalog edit, audited
        c.execute("update products set name = 'Air Fryer 5L' where id = %s", (world["product_id"],))
        c.execute("insert into products (gtin, name) values ('07891000100103', 'Leite')")
        c.execute("insert into ops_audit_logs (actor, action_type, entity_type, entity_id)"
                  " values ('ops:maria', 'UPSERT_PRODUCT', 'product', %s)", (str(world["product_id"]),))
    with acting_as(conn, "smartbuy_ops") as c:
        assert c.execute("select actor from ops_audit_logs").fetchall() == [("ops:maria",)]
        assert count(c, "select count(*) from notification_channels") == 2  # ids and kinds only
        c.execute("update notification_deliveries set status = 'pending', next_attempt_at = now()")
    for statement in ("select target from notification_channels", "select secret from notification_channels",
                      "select * from profiles", "update ops_audit_logs set actor = 'x'"):
        with acting_as(conn, "smartbuy_ops") as c:
            with pytest.raises(errors.InsufficientPrivilege, match="permission denied"):
                c.execute(statement)


# ------------------------------------------------------------------------------- append-only
@pytest.mark.parametrize("replica", [False, True], ids=["origin", "replica-mode"])
@pytest.mark.parametrize("statement", [
    "update ops_audit_logs set actor = 'someone else'",
    "delete from ops_audit_logs",
    "truncate ops_audit_logs",
])
def test_nobody_can_rewrite_the_audit_log_not_even_postgres(conn, statement, replica):
    conn.execute("insert into ops_audit_logs (actor, action_type, payload) values"
                 " ('ops:maria', 'TOGGLE_BETA_PAUSE', '{\"paused\": true}')")
    assert conn.execute("select rolsuper from pg_roles where rolname = current_user").fetchone() == (True,)
    with conn.transaction(force_rollback=True):
        if replica:
            conn.execute("set local session_replication_role = replica")
        with pytest.raises(errors.InsufficientPrivilege, match="ops_audit_logs is append-only"):
            conn.execute(statement)
    assert conn.execute("select actor from ops_audit_logs").fetchall() == [("ops:maria",)]


def test_price_history_update_raises_for_everyone(conn, world):
    conn.execute("insert into price_history (offer_id, observed_at, price, currency, availability, status,"
                 " source_kind) values (%s, now(), 399.90, 'BRL', 'in_stock', 'accepted', 'page')",
                 (world["offer_id"],))
    with conn.transaction(force_rollback=True):
        with pytest.raises(errors.InsufficientPrivilege, match="price_history is append-only"):
            conn.execute("update price_history set price = 1.00")
    with acting_as(conn, "smartbuy_pipeline") as c:
        with pytest.raises(errors.InsufficientPrivilege, match="permission denied for table price_history"):
            c.execute("update price_history set price = 1.00")
    assert conn.execute("select price::text from price_history").fetchall() == [("399.90",)]


# ------------------------------------------------------------------------ functions and grants
def test_household_member_helper_is_pinned_and_not_public(conn):
    row = conn.execute("""
        select p.proconfig, p.prosecdef, p.provolatile,
               has_function_privilege('public', p.oid, 'EXECUTE'),
               has_function_privilege('anon', p.oid, 'EXECUTE'),
               has_function_privilege('smartbuy_analyst', p.oid, 'EXECUTE'),
               has_function_privilege('authenticated', p.oid, 'EXECUTE')
        from pg_proc p where p.oid = 'public.fn_is_household_member(uuid)'::regprocedure
    """).fetchone()
    assert row == (['search_path=""'], True, "s", False, False, False, True)


def test_every_function_has_fixed_search_path_and_no_public_execute(conn):
    rows = conn.execute("""
        select p.oid::regprocedure::text, p.proconfig, has_function_privilege('public', p.oid, 'EXECUTE')
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname in ('public', 'analytics', 'auth')
        order by 1
    """).fetchall()
    names = [r[0] for r in rows]
    assert "fn_gtin_is_valid(text)" in names and "auth.uid()" in names
    unpinned = [name for name, config, _ in rows if not any(c.startswith("search_path=") for c in (config or []))]
    public_exec = [name for name, _, public in rows if public]
    assert unpinned == []
    assert public_exec == []


def test_security_definer_functions_are_the_expected_few(conn):
    rows = conn.execute("""
        select p.oid::regprocedure::text from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'public' and p.prosecdef order by 1
    """).fetchall()
    assert [r[0] for r in rows] == [
        "fn_ensure_price_history_partitions(date,integer)",
        "fn_handle_new_user()",
        "fn_incomplete_signups(integer)",  # 0013: reads auth.users for the onboarding check
        "fn_is_household_member(uuid)",
    ]


def test_no_table_grants_to_public(conn):
    rows = conn.execute("""
        select n.nspname || '.' || c.relname, acl.privilege_type
        from pg_class c
        join pg_namespace n on n.oid = c.relnamespace
        cross join lateral aclexplode(c.relacl) acl
        where n.nspname in ('public', 'analytics', 'auth') and acl.grantee = 0
    """).fetchall()
    assert rows == []


HOUSEHOLD_TABLES = ["profiles", "households", "household_members", "household_profiles", "wishes", "alerts",
                    "notification_channels", "alert_events", "notification_deliveries", "notification_attempts"]
FORCED = {"household_profiles", "wishes", "alerts", "notification_channels", "alert_events",
          "notification_deliveries", "notification_attempts"}


def test_rls_enabled_on_every_household_table(conn):
    rows = dict((name, (rls, force)) for name, rls, force in conn.execute(
        "select relname, relrowsecurity, relforcerowsecurity from pg_class"
        " where relnamespace = 'public'::regnamespace and relname = any(%s)", (HOUSEHOLD_TABLES,)).fetchall())
    assert rows == {t: (True, t in FORCED) for t in HOUSEHOLD_TABLES}
    # Exactly these tables are writable or readable by app users, apart from the public catalog.
    granted = {r[0] for r in conn.execute("""
        select distinct table_name from information_schema.role_table_grants
        where grantee = 'authenticated' and table_schema = 'public'
        union
        select distinct table_name from information_schema.role_column_grants
        where grantee = 'authenticated' and table_schema = 'public'
    """).fetchall()}
    assert granted == set(HOUSEHOLD_TABLES) | {"products", "shops", "offers", "price_history",
                                               "offer_risk_scores", "offer_risk_score_history"}


def test_deliveries_visible_through_their_event_household_only(conn, world):
    with as_user(conn, world["b"]) as c:
        rows = c.execute("select d.id, e.household_id::text from notification_deliveries d"
                         " join alert_events e on e.id = d.event_id").fetchall()
        assert rows == [(world["rows_b"]["notification_deliveries"], world["hb"])]


def test_delivery_attempts_visible_through_their_household_only_and_append_only(conn, world):
    delivery_a = world["rows_a"]["notification_deliveries"]
    delivery_b = world["rows_b"]["notification_deliveries"]
    for delivery in (delivery_a, delivery_b):
        conn.execute("insert into notification_attempts (delivery_id, attempt, outcome, status_code, error,"
                     " started_at, finished_at, run_id) values (%s, 1, 'retry', 503, 'webhook: HTTP 503', now(), now(),"
                     " 'r1')", (delivery,))
    with as_user(conn, world["a"]) as c:
        assert [r[0] for r in c.execute("select delivery_id from notification_attempts")] == [delivery_a]
    for statement in ("update notification_attempts set error = 'x'", "delete from notification_attempts",
                      "truncate notification_attempts"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            with conn.transaction():
                conn.execute(statement)
    # deleting a household (its deliveries cascade) still removes its attempts
    conn.execute("delete from households where id = %s", (world["hb"],))
    assert count(conn, "select count(*) from notification_attempts") == 1


def test_policies_do_not_recurse(conn, world):
    # The earlier implementation's household_members policy queried household_members through RLS.
    with as_user(conn, world["a"]) as c:
        assert count(c, "select count(*) from household_members m join households h on h.id = m.household_id") == 1
        assert count(c, "select count(*) from wishes w join household_members m using (household_id)") == 1


# ------------------------------------------------------------------- Supabase compatibility
def test_existing_supabase_auth_objects_are_not_replaced(empty_db_url):
    """On Supabase auth.users and auth.uid() exist already: the migrations must use, not replace, them."""
    from smartbuy_pipeline.db.migrations import migrate

    with psycopg.connect(empty_db_url.url, autocommit=True) as c:
        c.execute("create schema auth")
        c.execute("create table auth.users (id uuid primary key default gen_random_uuid(), email text,"
                  " raw_user_meta_data jsonb, created_at timestamptz default now(), phone text)")
        c.execute("create function auth.uid() returns uuid language sql stable as"
                  " $$ select nullif(current_setting('request.jwt.claim.sub', true), '')::uuid $$")
        c.execute("comment on function auth.uid() is 'supabase original'")
    migrate(empty_db_url)
    with psycopg.connect(empty_db_url.url, autocommit=True) as c:
        assert c.execute("select obj_description('auth.uid()'::regprocedure, 'pg_proc')").fetchone() == (
            "supabase original",)
        assert c.execute("select count(*) from information_schema.columns where table_schema = 'auth'"
                         " and table_name = 'users' and column_name = 'phone'").fetchone() == (1,)
        user_id = c.execute("insert into auth.users (email, phone) values ('e@example.com', '+55')"
                            " returning id::text").fetchone()[0]
        assert c.execute("select h.name from households h join household_members m on m.household_id = h.id"
                         " where m.user_id = %s and m.role = 'owner'", (user_id,)).fetchone() == ("Meu Lar",)


def test_auth_uid_reads_both_postgrest_settings(conn):
    uid = str(uuid.uuid4())
    with conn.transaction(force_rollback=True):
        conn.execute("select set_config('request.jwt.claim.sub', %s, true)", (uid,))
        assert conn.execute("select auth.uid()::text").fetchone() == (uid,)
    with conn.transaction(force_rollback=True):
        conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps({"sub": uid}),))
        assert conn.execute("select auth.uid()::text").fetchone() == (uid,)
    with conn.transaction(force_rollback=True):
        assert conn.execute("select auth.uid()").fetchone() == (None,)
