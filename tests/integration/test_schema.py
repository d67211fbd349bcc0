"""Constraints, partitioning and invariants of the schema, against real PostgreSQL."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from psycopg import errors

from smartbuy_pipeline.domain.gtin import gs1_check_digit, make_gtin13, normalize_gtin

pytestmark = pytest.mark.integration


@pytest.fixture()
def conn(db_url) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url.url, autocommit=True) as c:
        yield c


@pytest.fixture()
def offer(conn) -> int:
    product_id = conn.execute("insert into products (gtin, name) values (%s, 'Cafeteira') returning id",
                              (normalize_gtin(make_gtin13("789", 1)),)).fetchone()[0]
    shop_id = conn.execute("insert into shops (name, domain) values ('Loja', 'loja.example') returning id").fetchone()[0]
    return conn.execute("insert into offers (product_id, shop_id, source_kind, locator, price, currency)"
                        " values (%s, %s, 'page', 'https://loja.example/p/1', 199.90, 'BRL') returning id",
                        (product_id, shop_id)).fetchone()[0]


def constraint_of(exc: pytest.ExceptionInfo) -> str:
    return exc.value.diag.constraint_name


def add_months(d: date, months: int) -> date:
    index = d.year * 12 + d.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def partition_name(d: date) -> str:
    return f"price_history_y{d.year:04d}m{d.month:02d}"


def insert_history(conn, offer_id: int, observed_at, price="10.00") -> str:
    return conn.execute(
        "insert into price_history (offer_id, observed_at, price, currency, availability, status, source_kind)"
        " values (%s, %s, %s, 'BRL', 'in_stock', 'accepted', 'page') returning tableoid::regclass::text",
        (offer_id, observed_at, price)).fetchone()[0]


# ------------------------------------------------------------------------------------- GTIN
def test_gtin_function_agrees_with_python_rule(conn):
    rng = random.Random(20261126)
    bodies = [f"{rng.randrange(10**13):013d}" for _ in range(300)]
    codes = [b + str(gs1_check_digit(b)) for b in bodies]
    wrong = [b + str((gs1_check_digit(b) + 1) % 10) for b in bodies]
    got = conn.execute("select array_agg(public.fn_gtin_is_valid(c) order by o)"
                       " from unnest(%s::text[]) with ordinality as t(c, o)", (codes + wrong,)).fetchone()[0]
    assert got == [True] * 300 + [False] * 300


@pytest.mark.parametrize("code, valid", [
    ("07891234567895", True),    # EAN-13 7891234567895 padded to 14
    ("07891234567896", False),   # wrong check digit
    ("00000000000000", True),
    ("7891234567895", False),    # 13 digits: products store GTIN-14
    ("0789123456789X", False),
    ("0789 123456789", False),
])
def test_gtin_function_cases(conn, code, valid):
    assert conn.execute("select public.fn_gtin_is_valid(%s)", (code,)).fetchone() == (valid,)


def test_products_reject_bad_check_digit(conn):
    with pytest.raises(errors.CheckViolation) as exc:
        conn.execute("insert into products (gtin, name) values ('07891234567896', 'X')")
    assert constraint_of(exc) == "products_gtin_valid"
    conn.execute("insert into products (gtin, name) values ('07891234567895', 'X')")
    with pytest.raises(errors.UniqueViolation) as exc:
        conn.execute("insert into products (gtin, name) values ('07891234567895', 'Y')")
    assert constraint_of(exc) == "products_gtin_key"


def test_products_reject_short_gtin(conn):
    # char(14) pads '7891234567895' with a space: not 14 digits.
    with pytest.raises(errors.CheckViolation) as exc:
        conn.execute("insert into products (gtin, name) values ('7891234567895', 'X')")
    assert constraint_of(exc) == "products_gtin_valid"


# ------------------------------------------------------------------------------------ money
# Per-check bookkeeping lives in offer_checks (0015), keyed by offer_id; the rest on offers.
@pytest.mark.parametrize("table, assignment, constraint", [
    ("offers", "price = 0", "offers_price_positive"),
    ("offers", "price = -1.00", "offers_price_positive"),
    ("offers", "reference_price = 0", "offers_reference_price_positive"),
    ("offers", "freight = -0.01", "offers_freight_non_negative"),
    ("offers", "quarantined_price = 0", "offers_quarantined_price_positive"),
    ("offers", "currency = 'brl'", "offers_currency_format"),
    ("offers", "currency = 'R$'", "offers_currency_format"),
    ("offers", "currency = null", "offers_money_has_currency"),
    ("offers", "availability = 'available'", "offers_availability_valid"),
    ("offers", "price_kind = 'installment'", "offers_price_kind_valid"),
    ("offer_checks", "last_failure_reason = 'oops'", "offer_checks_last_failure_reason_valid"),
    ("offer_checks", "consecutive_failures = -1", "offer_checks_consecutive_failures_non_negative"),
])
def test_offer_checks(conn, offer, table, assignment, constraint):
    key = {"offers": "id", "offer_checks": "offer_id"}[table]
    with pytest.raises(errors.CheckViolation) as exc:
        conn.execute(f"update {table} set {assignment} where {key} = %s", (offer,))
    assert constraint_of(exc) == constraint


def test_every_offer_has_one_offer_checks_row(conn, offer):
    """0015's statement-level triggers: rows appear with each inserted offer (never checked) and go
    with each deleted one."""
    shop_id, product_id = conn.execute("select shop_id, product_id from offers where id = %s", (offer,)).fetchone()
    more = [r[0] for r in conn.execute(
        "insert into offers (product_id, shop_id, source_kind, locator)"
        " select %s, %s, 'page', 'https://loja.example/p/x' || i from generate_series(1, 3) i returning id",
        (product_id, shop_id))]
    rows = conn.execute("select offer_id, last_checked_at, consecutive_failures from offer_checks order by offer_id")
    assert rows.fetchall() == [(o, None, 0) for o in sorted([offer, *more])]
    conn.execute("delete from offers where id = any(%s)", (more[:2],))
    assert conn.execute("select array_agg(offer_id order by offer_id) from offer_checks").fetchone()[0] == \
        sorted([offer, more[2]])


def test_offer_accepts_valid_values_and_rounds_to_cents(conn, offer):
    row = conn.execute("update offers set price = 2879.2, freight = 0, reference_price = 3199.999,"
                       " price_kind = 'cash', availability = 'out_of_stock'"
                       " where id = %s returning price::text, reference_price::text, freight::text",
                       (offer,)).fetchone()
    assert row == ("2879.20", "3200.00", "0.00")
    checks = conn.execute("update offer_checks set last_failure_reason = 'bot_wall' where offer_id = %s"
                          " returning last_failure_reason", (offer,)).fetchall()
    assert checks == [("bot_wall",)]
    conn.execute("update offers set price = null, currency = null, reference_price = null, freight = null"
                 " where id = %s", (offer,))


def test_offer_locator_is_unique_per_shop_and_source(conn, offer):
    product_id, shop_id = conn.execute("select product_id, shop_id from offers where id = %s", (offer,)).fetchone()
    with pytest.raises(errors.UniqueViolation) as exc:
        conn.execute("insert into offers (product_id, shop_id, source_kind, locator)"
                     " values (%s, %s, 'page', 'https://loja.example/p/1')", (product_id, shop_id))
    assert constraint_of(exc) == "offers_locator_key"
    conn.execute("insert into offers (product_id, shop_id, source_kind, locator)"
                 " values (%s, %s, 'merchant_feed', 'https://loja.example/p/1')", (product_id, shop_id))


@pytest.mark.parametrize("values, constraint", [
    ("('X', 'Loja.Example')", "shops_domain_lower"),
    ("('X', 'x.example', 101)", "shops_reputation_range"),
])
def test_shop_checks(conn, values, constraint):
    columns = "(name, domain)" if values.count(",") == 1 else "(name, domain, reputation_score)"
    with pytest.raises(errors.CheckViolation) as exc:
        conn.execute(f"insert into shops {columns} values {values}")
    assert constraint_of(exc) == constraint


@pytest.mark.parametrize("column, value, constraint", [
    ("max_concurrent_requests", 0, "shops_max_concurrent_positive"),
    ("min_interval_ms", -1, "shops_min_interval_non_negative"),
    ("currency", "usd", "shops_currency_format"),
    ("price_kind", "reference", "shops_price_kind_valid"),
])
def test_shop_config_checks(conn, column, value, constraint):
    with pytest.raises(errors.CheckViolation) as exc:
        conn.execute(f"insert into shops (name, domain, {column}) values ('X', 'x.example', %s)", (value,))
    assert constraint_of(exc) == constraint


def test_shop_defaults(conn):
    row = conn.execute("insert into shops (name, domain) values ('X', 'x.example') returning locale, currency,"
                       " max_concurrent_requests, min_interval_ms, check_interval::text, price_kind,"
                       " allow_private_network, active").fetchone()
    assert row == ("pt_BR", "BRL", 4, 250, "01:00:00", None, False, True)


def test_money_columns_are_numeric_12_2_and_timestamps_have_time_zone(conn):
    bad_numeric = conn.execute("""
        select table_name || '.' || column_name from information_schema.columns
        where table_schema = 'public' and data_type = 'numeric'
          and (numeric_precision, numeric_scale) is distinct from (12, 2)
    """).fetchall()
    naive = conn.execute("""
        select table_name || '.' || column_name from information_schema.columns
        where table_schema = 'public' and data_type = 'timestamp without time zone'
    """).fetchall()
    assert bad_numeric == []
    assert naive == []


def test_tables_with_money_have_a_currency_column(conn):
    rows = conn.execute("""
        select c.table_name from information_schema.columns c
        where c.table_schema = 'public' and c.data_type = 'numeric'
        group by c.table_name
        having not bool_or(exists (
            select 1 from information_schema.columns x
            where x.table_schema = 'public' and x.table_name = c.table_name and x.column_name = 'currency'))
    """).fetchall()
    assert rows == []


def test_every_updated_at_column_has_a_trigger(conn):
    rows = conn.execute("""
        select c.table_name,
               exists (select 1 from pg_trigger t
                       where t.tgrelid = ('public.' || c.table_name)::regclass
                         and t.tgfoid = 'public.fn_set_updated_at()'::regprocedure)
        from information_schema.columns c
        where c.table_schema = 'public' and c.column_name = 'updated_at'
        order by 1
    """).fetchall()
    assert rows == [("household_profiles", True), ("offers", True), ("price_tracking_progress", True),
                    ("products", True), ("shops", True)]


def test_updated_at_moves_on_update(conn, offer):
    conn.execute("update offers set updated_at = '2020-01-01T00:00:00Z' where id = %s", (offer,))
    before = conn.execute("select updated_at from offers where id = %s", (offer,)).fetchone()[0]
    # The trigger overrides even an explicit value.
    assert before > datetime(2025, 1, 1, tzinfo=UTC)
    conn.execute("update offers set price = 189.90 where id = %s", (offer,))
    after = conn.execute("select updated_at from offers where id = %s", (offer,)).fetchone()[0]
    assert after >= before


# ------------------------------------------------------------------------------- risk scores
@pytest.mark.parametrize("score, bucket, ok", [
    (100, "A", True), (80, "A", True), (79, "A", False), (79, "B", True), (60, "B", True),
    (59, "B", False), (59, "C", True), (0, "C", True), (80, "B", False), (0, "A", False),
])
def test_bucket_must_match_score(conn, offer, score, bucket, ok):
    for table in ("offer_risk_scores", "offer_risk_score_history"):
        statement = (f"insert into {table} (offer_id, score, bucket, model_version)"
                     " values (%s, %s, %s, 'v1')")
        if ok:
            conn.execute(statement, (offer, score, bucket))
        else:
            with pytest.raises(errors.CheckViolation) as exc:
                conn.execute(statement, (offer, score, bucket))
            assert constraint_of(exc) == f"{table}_bucket_matches_score"


@pytest.mark.parametrize("score", [101, -1])
def test_score_range(conn, offer, score):
    with pytest.raises(errors.CheckViolation) as exc:
        conn.execute("insert into offer_risk_scores (offer_id, score, bucket, model_version)"
                     " values (%s, %s, 'C', 'v1')", (offer, score))
    assert constraint_of(exc) in ("offer_risk_scores_score_range", "offer_risk_scores_bucket_matches_score")
    # 101 'A' isolates the range check
    with pytest.raises(errors.CheckViolation) as exc:
        conn.execute("insert into offer_risk_scores (offer_id, score, bucket, model_version)"
                     " values (%s, %s, %s, 'v1')", (offer, score, "A" if score > 0 else "C"))
    assert constraint_of(exc) == "offer_risk_scores_score_range"


def test_one_current_score_per_offer_upsert(conn, offer):
    statement = ("insert into offer_risk_scores (offer_id, score, bucket, model_version) values (%s, %s, %s, 'v1')"
                 " on conflict (offer_id) do update set score = excluded.score, bucket = excluded.bucket")
    conn.execute(statement, (offer, 85, "A"))
    conn.execute(statement, (offer, 40, "C"))
    assert conn.execute("select score, bucket from offer_risk_scores").fetchall() == [(40, "C")]


# ----------------------------------------------------------------------------- price_history
def test_partitions_exist_for_current_month_minus_two_to_plus_three(conn):
    this_month = datetime.now(UTC).date().replace(day=1)
    rows = conn.execute("""
        select c.relname, pg_get_expr(c.relpartbound, c.oid)
        from pg_inherits i join pg_class c on c.oid = i.inhrelid
        where i.inhparent = 'public.price_history'::regclass order by 1
    """).fetchall()
    expected = [partition_name(add_months(this_month, k)) for k in range(-2, 4)]
    assert [name for name, _ in rows] == sorted(expected + ["price_history_default"])
    bounds = dict(rows)
    assert bounds["price_history_default"] == "DEFAULT"
    m = this_month
    assert bounds[partition_name(m)] == (
        f"FOR VALUES FROM ('{m.isoformat()} 00:00:00+00') TO ('{add_months(m, 1).isoformat()} 00:00:00+00')")


def test_rows_land_in_their_utc_month_partition(conn, offer):
    conn.execute("set timezone = 'America/Sao_Paulo'")
    m = datetime.now(UTC).date().replace(day=1)
    nxt = add_months(m, 1)
    start = datetime(m.year, m.month, 1, tzinfo=UTC)
    boundary = datetime(nxt.year, nxt.month, 1, tzinfo=UTC)
    assert insert_history(conn, offer, start) == partition_name(m)
    assert insert_history(conn, offer, boundary - timedelta(microseconds=1)) == partition_name(m)
    assert insert_history(conn, offer, boundary) == partition_name(nxt)
    # 22:00 in São Paulo on the last day of the month is already next month in UTC.
    assert insert_history(conn, offer, f"{(boundary - timedelta(days=1)).date().isoformat()} 22:00:00-03") \
        == partition_name(nxt)
    assert insert_history(conn, offer, datetime(2099, 6, 1, tzinfo=UTC)) == "price_history_default"
    assert insert_history(conn, offer, datetime(2001, 1, 1, tzinfo=UTC)) == "price_history_default"
    assert conn.execute("select count(*) from price_history").fetchone() == (6,)


def test_ensure_partitions_is_idempotent(conn):
    ensure = "select public.fn_ensure_price_history_partitions(%s, %s)"
    assert conn.execute(ensure, (date(2030, 1, 15), 3)).fetchone() == (3,)
    assert conn.execute(ensure, (date(2030, 1, 15), 3)).fetchone() == (0,)
    assert conn.execute(ensure, (date(2029, 12, 31), 3)).fetchone() == (1,)
    names = [r[0] for r in conn.execute(
        "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid"
        " where i.inhparent = 'public.price_history'::regclass and c.relname like 'price_history_y20%%'"
        " and c.relname >= 'price_history_y2029' order by 1").fetchall()]
    assert names == ["price_history_y2029m12", "price_history_y2030m01", "price_history_y2030m02",
                     "price_history_y2030m03"]


def test_ensure_partitions_moves_rows_out_of_the_default_partition(conn, offer):
    assert insert_history(conn, offer, "2031-05-10T10:00:00Z", "11.00") == "price_history_default"
    assert insert_history(conn, offer, "2031-06-10T10:00:00Z", "12.00") == "price_history_default"
    assert conn.execute("select public.fn_ensure_price_history_partitions('2031-05-01', 1)").fetchone() == (1,)
    rows = conn.execute("select tableoid::regclass::text, price::text from price_history order by observed_at"
                        ).fetchall()
    assert rows == [("price_history_y2031m05", "11.00"), ("price_history_default", "12.00")]
    # The moved-into partition has the parent's append-only trigger.
    with pytest.raises(errors.InsufficientPrivilege, match="append-only"):
        conn.execute("update price_history_y2031m05 set price = 1")


def test_new_partitions_inherit_append_only_trigger_and_indexes(conn, offer):
    conn.execute("select public.fn_ensure_price_history_partitions('2032-03-01', 1)")
    insert_history(conn, offer, "2032-03-02T00:00:00Z")
    with pytest.raises(errors.InsufficientPrivilege, match="append-only"):
        conn.execute("update price_history set price = 1 where observed_at >= '2032-03-01'")
    indexes = {r[0] for r in conn.execute(
        "select indexdef from pg_indexes where tablename = 'price_history_y2032m03'").fetchall()}
    assert any("(offer_id, observed_at)" in i and "UNIQUE" in i for i in indexes)
    assert any("brin (observed_at)" in i for i in indexes)


@pytest.mark.parametrize("months", [0, -1, 121, None])
def test_ensure_partitions_rejects_bad_arguments(conn, months):
    with pytest.raises(errors.InvalidParameterValue):
        conn.execute("select public.fn_ensure_price_history_partitions('2030-01-01', %s)", (months,))


def test_price_history_checks(conn, offer):
    with pytest.raises(errors.CheckViolation) as exc:
        insert_history(conn, offer, "2031-01-01T00:00:00Z", "0")
    assert constraint_of(exc) == "price_history_price_positive"
    with pytest.raises(errors.CheckViolation) as exc:
        conn.execute("insert into price_history (offer_id, observed_at, price, currency, availability, status,"
                     " source_kind) values (%s, now(), 1, 'BRL', 'in_stock', 'maybe', 'page')", (offer,))
    assert constraint_of(exc) == "price_history_status_valid"
    insert_history(conn, offer, "2031-01-01T00:00:00Z")
    with pytest.raises(errors.UniqueViolation):
        insert_history(conn, offer, "2031-01-01T00:00:00Z")


def test_single_offer_history_query_uses_the_primary_key(conn, offer):
    conn.execute("set enable_seqscan = off")
    plan = "\n".join(r[0] for r in conn.execute(
        "explain select * from price_history where offer_id = %s order by observed_at desc limit 30",
        (offer,)).fetchall())
    assert "Seq Scan" not in plan


# ---------------------------------------------------------------------------- alerts / outbox
@pytest.fixture()
def household(conn) -> str:
    user_id = conn.execute("insert into auth.users (email) values ('d@example.com') returning id").fetchone()[0]
    return conn.execute("select household_id::text from household_members where user_id = %s",
                        (user_id,)).fetchone()[0]


@pytest.fixture()
def alert(conn, household, offer) -> int:
    return conn.execute("insert into alerts (household_id, alert_type, offer_id, params)"
                        " values (%s, 'TARGET_PRICE', %s, '{\"target\": \"150.00\"}') returning id",
                        (household, offer)).fetchone()[0]


def test_alert_needs_exactly_one_subject(conn, household, offer):
    product_id = conn.execute("select product_id from offers where id = %s", (offer,)).fetchone()[0]
    for subject in ("null, null", f"{product_id}, {offer}"):
        with pytest.raises(errors.CheckViolation) as exc:
            conn.execute(f"insert into alerts (household_id, alert_type, product_id, offer_id)"
                         f" values (%s, 'NEW_LOW', {subject})", (household,))
        assert constraint_of(exc) == "alerts_exactly_one_subject"
    with pytest.raises(errors.CheckViolation) as exc:
        conn.execute("insert into alerts (household_id, alert_type, offer_id) values (%s, 'PRICE', %s)",
                     (household, offer))
    assert constraint_of(exc) == "alerts_alert_type_valid"
    row = conn.execute("insert into alerts (household_id, alert_type, product_id) values (%s, 'NEW_LOW', %s)"
                       " returning safe_only, cooldown::text, active, currency", (household, product_id)).fetchone()
    assert row == (True, "06:00:00", True, "BRL")


def test_alert_event_dedupe_key_is_unique(conn, household, offer, alert):
    statement = ("insert into alert_events (alert_id, household_id, offer_id, dedupe_key, price, currency)"
                 " values (%s, %s, %s, %s, 149.90, 'BRL')")
    conn.execute(statement, (alert, household, offer, f"alert:{alert}:offer:{offer}:149.90"))
    with pytest.raises(errors.UniqueViolation) as exc:
        conn.execute(statement, (alert, household, offer, f"alert:{alert}:offer:{offer}:149.90"))
    assert constraint_of(exc) == "alert_events_dedupe_key_key"
    cur = conn.execute(statement + " on conflict (dedupe_key) do nothing",
                       (alert, household, offer, f"alert:{alert}:offer:{offer}:149.90"))
    assert cur.rowcount == 0
    assert conn.execute("select count(*), min(status) from alert_events").fetchone() == (1, "pending")


def test_alert_event_references(conn, household, offer, alert):
    """The alert and household are foreign keys (their deletes cascade to the events); the offer is
    a soft reference since 0016 (no per-event lock of the offer row), as in price_history."""
    foreign_keys = conn.execute(
        "select a.attname, c.confrelid::regclass::text, c.confdeltype from pg_constraint c"
        " join pg_attribute a on a.attrelid = c.conrelid and a.attnum = c.conkey[1]"
        " where c.conrelid = 'alert_events'::regclass and c.contype = 'f' order by 1").fetchall()
    assert foreign_keys == [("alert_id", "alerts", "c"), ("digest_id", "alert_events", "n"),
                            ("household_id", "households", "c")]
    product_id = conn.execute("select product_id from offers where id = %s", (offer,)).fetchone()[0]
    product_alert = conn.execute("insert into alerts (household_id, alert_type, product_id) values (%s, 'NEW_LOW', %s)"
                                 " returning id", (household, product_id)).fetchone()[0]
    for alert_id in (alert, product_alert):
        conn.execute("insert into alert_events (alert_id, household_id, offer_id, dedupe_key, price, currency)"
                     " values (%s, %s, %s, %s, 149.90, 'BRL')", (alert_id, household, offer, f"k{alert_id}"))
    conn.execute("delete from offers where id = %s", (offer,))
    # The offer-level alert went with its offer, and its event with it; the product-level alert's
    # event keeps the gone offer's id, as its price history would.
    assert conn.execute("select alert_id, offer_id from alert_events").fetchall() == [(product_alert, offer)]
    conn.execute("delete from households where id = %s", (household,))
    assert conn.execute("select count(*) from alert_events").fetchone() == (0,)


def test_one_delivery_per_event_and_channel(conn, household, offer, alert):
    event = conn.execute("insert into alert_events (alert_id, household_id, dedupe_key, currency)"
                         " values (%s, %s, 'k', 'BRL') returning id", (alert, household)).fetchone()[0]
    channel = conn.execute("insert into notification_channels (household_id, kind, target)"
                           " values (%s, 'email', 'd@example.com') returning id", (household,)).fetchone()[0]
    conn.execute("insert into notification_deliveries (event_id, channel_id) values (%s, %s)", (event, channel))
    with pytest.raises(errors.UniqueViolation) as exc:
        conn.execute("insert into notification_deliveries (event_id, channel_id) values (%s, %s)", (event, channel))
    assert constraint_of(exc) == "notification_deliveries_event_channel_key"
    with pytest.raises(errors.CheckViolation) as exc:
        conn.execute("update notification_deliveries set status = 'lost'")
    assert constraint_of(exc) == "notification_deliveries_status_valid"
    with pytest.raises(errors.CheckViolation) as exc:
        conn.execute("insert into notification_channels (household_id, kind, target) values (%s, 'sms', '+55')",
                     (household,))
    assert constraint_of(exc) == "notification_channels_kind_valid"


def test_wish_checks(conn, household):
    for values, constraint in [
        ("'x', 'buy_later', 'low'", "wishes_intent_valid"),
        ("'x', 'buy_now', 'urgent'", "wishes_urgency_valid"),
        ("' ', 'buy_now', 'low'", "wishes_title_not_blank"),
    ]:
        with pytest.raises(errors.CheckViolation) as exc:
            conn.execute(f"insert into wishes (household_id, title, intent, urgency) values (%s, {values})",
                         (household,))
        assert constraint_of(exc) == constraint
    with pytest.raises(errors.CheckViolation) as exc:
        conn.execute("insert into wishes (household_id, title, min_price, max_price) values (%s, 'x', 500, 100)",
                     (household,))
    assert constraint_of(exc) == "wishes_price_range"


def test_deleting_auth_user_cascades_profile_and_membership(conn, household):
    user_id = conn.execute("select user_id from household_members where household_id = %s", (household,)).fetchone()[0]
    conn.execute("delete from auth.users where id = %s", (user_id,))
    assert conn.execute("select count(*) from profiles where id = %s", (user_id,)).fetchone() == (0,)
    assert conn.execute("select count(*) from household_members where user_id = %s", (user_id,)).fetchone() == (0,)
    assert conn.execute("select created_by from households where id = %s", (household,)).fetchone() == (None,)


def test_concurrent_ensure_partitions_calls_do_not_collide(db_url):
    import threading

    results: list[int] = []
    failures: list[BaseException] = []
    barrier = threading.Barrier(4)

    def call() -> None:
        try:
            with psycopg.connect(db_url.url, autocommit=True) as c:
                barrier.wait()
                results.append(c.execute("select public.fn_ensure_price_history_partitions('2033-01-01', 6)"
                                         ).fetchone()[0])
        except BaseException as exc:  # noqa: BLE001 - asserted below
            failures.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert sorted(results) == [0, 0, 0, 6]
