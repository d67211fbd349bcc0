"""Schema `analytics` (migration 0008) and its set-based refreshes, against real PostgreSQL.

A scripted trajectory for one product at three shops (plus an inactive fourth offer) is COPied
into public.price_history; the refreshes must produce exactly the changes, daily OHLC / in-stock
shares and stats worked out by hand below.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

import psycopg
import pytest
from psycopg import errors, sql

from smartbuy_pipeline.db.analytics import (
    refresh_offer_price_stats,
    refresh_price_changes,
    refresh_price_daily,
)
from smartbuy_pipeline.domain.gtin import make_gtin13, normalize_gtin

pytestmark = pytest.mark.integration


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


T0 = utc(2026, 1, 1)            # hourly observations from here ...
T_END = utc(2026, 2, 10)        # ... to here (exclusive): 40 days
NOW = T_END                     # "now" of the stats refresh
OLD = utc(2025, 10, 1)          # three old observations of offer A (outside 90 days)
FULL_START, FULL_END = OLD, T_END
ANALYTICS_TABLES = ("analytics.price_changes", "analytics.price_daily", "analytics.offer_price_stats")
ANALYTICS_OBJECTS = ("analytics.price_history", *ANALYTICS_TABLES)


def hourly(start: datetime, end: datetime) -> Iterator[datetime]:
    t = start
    while t < end:
        yield t
        t += timedelta(hours=1)


def trajectory() -> dict[str, list[tuple]]:
    """name -> [(observed_at, price, reference_price, availability, status)]."""
    a = [(t, D("50.00"), D("150.00"), "in_stock", "accepted") for t in hourly(OLD, OLD + timedelta(hours=3))]
    for t in hourly(T0, T_END):
        if utc(2026, 1, 25, 10) <= t <= utc(2026, 1, 25, 15):
            a.append((t, None, D("150.00"), "out_of_stock", "accepted"))
        else:
            a.append((t, D("100.00") if t < utc(2026, 1, 21) else D("80.00"), D("150.00"), "in_stock", "accepted"))
    # quarantined outlier: must be ignored everywhere
    a.append((utc(2026, 1, 10, 12, 30), D("1.00"), D("150.00"), "in_stock", "quarantined"))

    b = [(t, D("90.00"), None, "in_stock", "accepted") for t in hourly(T0, utc(2026, 2, 2))]
    b += [(utc(2026, 2, 2, 0), D("90.00"), None, "in_stock", "accepted"),
          (utc(2026, 2, 2, 6), None, None, "out_of_stock", "accepted"),
          (utc(2026, 2, 2, 8), D("90.00"), None, "in_stock", "accepted"),
          (utc(2026, 2, 2, 22), None, None, "out_of_stock", "accepted")]
    b += [(t, D("90.00"), None, "in_stock", "accepted") for t in hourly(utc(2026, 2, 3, 3), T_END)]

    c = []
    for t in hourly(T0, T_END):
        price = D("95.00") if t < utc(2026, 1, 31) else D("85.00") if t < utc(2026, 2, 5, 12) else D("99.00")
        ref = D("120.00") if t < utc(2026, 2, 7) else D("130.00")
        c.append((t, price, ref, "in_stock", "accepted"))

    d = [(t, D("10.00"), None, "in_stock", "accepted") for t in hourly(utc(2026, 2, 9, 12), T_END)]
    return {"A": a, "B": b, "C": c, "D": d}


@pytest.fixture()
def conn(db_url) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url.url, autocommit=True) as c:
        yield c


@pytest.fixture()
def world(conn) -> dict[str, int]:
    """Offers A, B, C (active, one product, shops a/b/c) and D (inactive, shop d); their history."""
    conn.execute("select fn_ensure_price_history_partitions('2025-10-01', 5)")
    product = conn.execute("insert into products (gtin, name) values (%s, 'Air fryer') returning id",
                           (normalize_gtin(make_gtin13("789", 424242)),)).fetchone()[0]
    ids: dict[str, int] = {"product": product}
    for name in "ABCD":
        shop = conn.execute("insert into shops (name, domain) values (%s, %s) returning id",
                            (f"Loja {name}", f"{name.lower()}.example")).fetchone()[0]
        ids[name] = conn.execute(
            "insert into offers (product_id, shop_id, source_kind, locator, currency, active)"
            " values (%s, %s, 'page', %s, 'BRL', %s) returning id",
            (product, shop, f"https://{name.lower()}.example/p/1", name != "D")).fetchone()[0]
        ids[f"shop_{name}"] = shop
    with conn.cursor() as cur:
        with cur.copy("copy price_history (offer_id, observed_at, price, currency, reference_price,"
                      " availability, status, source_kind) from stdin") as cp:
            for name, rows in trajectory().items():
                for observed_at, price, ref, availability, status in rows:
                    cp.write_row((ids[name], observed_at, price, "BRL", ref, availability, status, "page"))
    return ids


def refresh_all(conn) -> tuple[int, list[int], int]:
    changes = refresh_price_changes(conn, FULL_START, FULL_END)
    days = [refresh_price_daily(conn, OLD.date() + timedelta(days=i)) for i in range(3)]
    day = T0.date()
    while day < T_END.date():
        days.append(refresh_price_daily(conn, day))
        day += timedelta(days=1)
    stats = refresh_offer_price_stats(conn, now=NOW)
    return changes, days, stats


def changes_of(conn, ids) -> list[tuple]:
    names = {v: k for k, v in ids.items() if len(k) == 1}
    rows = conn.execute("select offer_id, changed_at, price, previous_price, currency, reference_price,"
                        " previous_reference_price, availability, previous_availability"
                        " from analytics.price_changes order by offer_id, changed_at").fetchall()
    return [(names[r[0]], *r[1:]) for r in rows]


EXPECTED_CHANGES = [
    ("A", utc(2025, 10, 1), D("50.00"), None, "BRL", D("150.00"), None, "in_stock", None),
    ("A", utc(2026, 1, 1), D("100.00"), D("50.00"), "BRL", D("150.00"), D("150.00"), "in_stock", "in_stock"),
    ("A", utc(2026, 1, 21), D("80.00"), D("100.00"), "BRL", D("150.00"), D("150.00"), "in_stock", "in_stock"),
    ("A", utc(2026, 1, 25, 10), None, D("80.00"), "BRL", D("150.00"), D("150.00"), "out_of_stock", "in_stock"),
    ("A", utc(2026, 1, 25, 16), D("80.00"), None, "BRL", D("150.00"), D("150.00"), "in_stock", "out_of_stock"),
    ("B", utc(2026, 1, 1), D("90.00"), None, "BRL", None, None, "in_stock", None),
    ("B", utc(2026, 2, 2, 6), None, D("90.00"), "BRL", None, None, "out_of_stock", "in_stock"),
    ("B", utc(2026, 2, 2, 8), D("90.00"), None, "BRL", None, None, "in_stock", "out_of_stock"),
    ("B", utc(2026, 2, 2, 22), None, D("90.00"), "BRL", None, None, "out_of_stock", "in_stock"),
    ("B", utc(2026, 2, 3, 3), D("90.00"), None, "BRL", None, None, "in_stock", "out_of_stock"),
    ("C", utc(2026, 1, 1), D("95.00"), None, "BRL", D("120.00"), None, "in_stock", None),
    ("C", utc(2026, 1, 31), D("85.00"), D("95.00"), "BRL", D("120.00"), D("120.00"), "in_stock", "in_stock"),
    ("C", utc(2026, 2, 5, 12), D("99.00"), D("85.00"), "BRL", D("120.00"), D("120.00"), "in_stock", "in_stock"),
    ("C", utc(2026, 2, 7), D("99.00"), D("99.00"), "BRL", D("130.00"), D("120.00"), "in_stock", "in_stock"),
    ("D", utc(2026, 2, 9, 12), D("10.00"), None, "BRL", None, None, "in_stock", None),
]


def dump(conn) -> dict[str, list[tuple]]:
    return {t: conn.execute(f"select * from {t} order by 1, 2").fetchall() for t in ANALYTICS_TABLES}


# ------------------------------------------------------------------------------ price_changes
def test_price_changes_are_exactly_the_changes(conn, world):
    assert refresh_price_changes(conn, FULL_START, FULL_END) == len(EXPECTED_CHANGES)
    assert changes_of(conn, world) == EXPECTED_CHANGES


def test_price_changes_in_hourly_windows_in_any_order_match_one_big_window(conn, world):
    """Windows refreshed newest first: each window's first change is against an older observation
    (seed) and each refresh fixes the following window's first row (tail)."""
    windows = [(t, t + timedelta(hours=1)) for t in hourly(T0, T_END)]
    total = refresh_price_changes(conn, OLD, T0)
    for start, end in reversed(windows):
        total += refresh_price_changes(conn, start, end)
    assert changes_of(conn, world) == EXPECTED_CHANGES
    assert total == len(EXPECTED_CHANGES)


def test_price_changes_window_leaves_other_offers_and_windows_alone(conn, world):
    refresh_price_changes(conn, FULL_START, FULL_END)
    conn.execute("delete from analytics.price_changes where offer_id in (%s, %s)", (world["A"], world["C"]))
    # Only offer A, only January 21-26: A's two changes in it come back, nothing else.
    assert refresh_price_changes(conn, utc(2026, 1, 21), utc(2026, 1, 26), offer_ids=[world["A"]]) == 3
    got = changes_of(conn, world)
    assert [r for r in got if r[0] == "A"] == [r for r in EXPECTED_CHANGES if r[0] == "A"][2:]
    assert not [r for r in got if r[0] == "C"]
    assert [r for r in got if r[0] in "BD"] == [r for r in EXPECTED_CHANGES if r[0] in "BD"]


# -------------------------------------------------------------------------------- price_daily
def daily(conn, ids, name: str, day: date) -> tuple:
    return conn.execute("select product_id, shop_id, currency, open, close, min, max, observations, in_stock_share"
                        " from analytics.price_daily where offer_id = %s and day = %s",
                        (ids[name], day)).fetchone()


def test_price_daily_ohlc_and_time_weighted_in_stock_share(conn, world):
    assert refresh_price_daily(conn, date(2026, 2, 2)) == 3      # A, B, C observed that day
    assert refresh_price_daily(conn, date(2026, 2, 3)) == 3
    assert refresh_price_daily(conn, date(2026, 2, 5)) == 3
    assert refresh_price_daily(conn, date(2026, 1, 25)) == 3
    assert refresh_price_daily(conn, date(2026, 1, 10)) == 3
    assert refresh_price_daily(conn, date(2026, 2, 9)) == 4      # D too (inactive offers keep history)
    assert refresh_price_daily(conn, date(2025, 10, 1)) == 1
    assert refresh_price_daily(conn, date(2025, 10, 2)) == 0      # nothing observed: no row
    p, w = world["product"], world
    # out of stock 10:00-16:00 (six hourly observations): 18 h of 24 in stock
    assert daily(conn, w, "A", date(2026, 1, 25)) == (p, w["shop_A"], "BRL", D("80.00"), D("80.00"), D("80.00"),
                                                      D("80.00"), 24, D("0.7500"))
    # the quarantined 1.00 at 12:30 is not an observation
    assert daily(conn, w, "A", date(2026, 1, 10)) == (p, w["shop_A"], "BRL", D("100.00"), D("100.00"),
                                                      D("100.00"), D("100.00"), 24, D("1.0000"))
    # drop at noon, open/close differ
    assert daily(conn, w, "C", date(2026, 2, 5)) == (p, w["shop_C"], "BRL", D("85.00"), D("99.00"), D("85.00"),
                                                     D("99.00"), 24, D("1.0000"))
    # 00 in, 06 out, 08 in, 22 out: in stock 6 + 14 = 20 h of 24 (by count it would be 2/4)
    assert daily(conn, w, "B", date(2026, 2, 2)) == (p, w["shop_B"], "BRL", D("90.00"), D("90.00"), D("90.00"),
                                                     D("90.00"), 4, D("0.8333"))
    # first observation at 03:00; out of stock since 22:00 the day before: 21 of 24 h
    assert daily(conn, w, "B", date(2026, 2, 3)) == (p, w["shop_B"], "BRL", D("90.00"), D("90.00"), D("90.00"),
                                                     D("90.00"), 21, D("0.8750"))
    # first-ever observation at noon: the unknown morning is not counted as out of stock
    assert daily(conn, w, "D", date(2026, 2, 9)) == (p, w["shop_D"], "BRL", D("10.00"), D("10.00"), D("10.00"),
                                                     D("10.00"), 12, D("1.0000"))
    assert daily(conn, w, "A", date(2025, 10, 1)) == (p, w["shop_A"], "BRL", D("50.00"), D("50.00"), D("50.00"),
                                                      D("50.00"), 3, D("1.0000"))


def test_price_daily_for_some_offers_only(conn, world):
    assert refresh_price_daily(conn, date(2026, 2, 2), offer_ids=[world["B"], world["D"]]) == 1
    assert conn.execute("select offer_id from analytics.price_daily").fetchall() == [(world["B"],)]


# -------------------------------------------------------------------------- offer_price_stats
STATS_COLUMNS = ("currency, current_price, low_30d, median_30d, low_90d, median_90d, low_all_time,"
                 " median_all_time, typical_low, typical_high, market_median, market_shops, observations_90d,"
                 " first_observed_at, last_observed_at, refreshed_at")


def stats(conn, ids) -> dict[str, tuple]:
    names = {v: k for k, v in ids.items() if len(k) == 1}
    rows = conn.execute(f"select offer_id, product_id, shop_id, {STATS_COLUMNS} from analytics.offer_price_stats"
                        " order by offer_id").fetchall()
    out = {}
    for offer_id, product_id, shop_id, *rest in rows:
        assert product_id == ids["product"] and shop_id == ids[f"shop_{names[offer_id]}"]
        out[names[offer_id]] = tuple(rest)
    return out


def test_offer_price_stats_exact(conn, world):
    assert refresh_offer_price_stats(conn, now=NOW) == 3            # D is inactive: no row
    last = utc(2026, 2, 9, 23)
    assert stats(conn, world) == {
        # 30 d: 239 x 100 + 474 x 80 -> median 80; 90 d: 474 x 80 + 480 x 100 -> median 100;
        # all time adds three 50s (October). Market: B 90 and C 99 -> 94.50 (D is inactive).
        "A": ("BRL", D("80.00"), D("80.00"), D("80.00"), D("80.00"), D("100.00"), D("50.00"), D("100.00"),
              D("80.00"), D("100.00"), D("94.50"), 2, 960, utc(2025, 10, 1), last, NOW),
        # always 90 when priced; 937 accepted observations (2 of them out of stock). Market: 80, 99.
        "B": ("BRL", D("90.00"), D("90.00"), D("90.00"), D("90.00"), D("90.00"), D("90.00"), D("90.00"),
              D("90.00"), D("90.00"), D("89.50"), 2, 937, T0, last, NOW),
        # 90 d: 132 x 85, 720 x 95, 108 x 99: p10 85, median 95, p90 99. Market: A 80, B 90 -> 85.00.
        "C": ("BRL", D("99.00"), D("85.00"), D("95.00"), D("85.00"), D("95.00"), D("85.00"), D("95.00"),
              D("85.00"), D("99.00"), D("85.00"), 2, 960, T0, last, NOW),
    }


def test_offer_price_stats_as_of_an_earlier_time_and_for_some_offers(conn, world):
    # As of Jan 25 13:00 (A out of stock since 10:00), A only: no current price, lows still there.
    as_of = utc(2026, 1, 25, 13)
    assert refresh_offer_price_stats(conn, now=as_of, offer_ids=[world["A"], world["D"]]) == 1
    row = conn.execute("select current_price, low_30d, low_90d, market_median, market_shops, observations_90d,"
                       " last_observed_at from analytics.offer_price_stats").fetchall()
    # observations since Jan 1: 24 full days + 00:00..13:00 (14); market: B 90, C 95 -> 92.50
    assert row == [(None, D("80.00"), D("80.00"), D("92.50"), 2, 24 * 24 + 14, as_of)]
    # The stats row of an offer that became inactive goes away on its next refresh.
    conn.execute("update offers set active = false where id = %s", (world["A"],))
    assert refresh_offer_price_stats(conn, now=NOW) == 2
    assert world["A"] not in [r[0] for r in conn.execute("select offer_id from analytics.offer_price_stats")]


# ---------------------------------------------------------------------------------- idempotent
def test_refreshes_are_idempotent_and_rewrite_nothing(conn, world):
    first_counts = refresh_all(conn)
    first = dump(conn)
    xmins = {t: conn.execute(f"select array_agg(xmin::text order by 1, 2) from {t}").fetchone()[0]
             for t in ("analytics.price_changes", "analytics.price_daily")}
    assert refresh_all(conn) == first_counts
    assert dump(conn) == first
    # no row of price_changes / price_daily was rewritten by the second run
    for table, before in xmins.items():
        assert conn.execute(f"select array_agg(xmin::text order by 1, 2) from {table}").fetchone()[0] == before
    assert first_counts[0] == len(EXPECTED_CHANGES) and first_counts[2] == 3
    assert sum(first_counts[1]) == conn.execute("select count(*) from analytics.price_daily").fetchone()[0]


def test_pipeline_role_can_run_every_refresh(conn, world):
    with conn.transaction(force_rollback=True):
        conn.execute("set local role smartbuy_pipeline")
        changes, days, n_stats = refresh_all(conn)
        assert (changes, n_stats) == (len(EXPECTED_CHANGES), 3)


def test_naive_datetimes_are_refused(conn):
    with pytest.raises(ValueError, match="timezone-aware"):
        refresh_price_changes(conn, datetime(2026, 1, 1), datetime(2026, 1, 2))
    with pytest.raises(ValueError, match="timezone-aware"):
        refresh_offer_price_stats(conn, now=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="empty window"):
        refresh_price_changes(conn, T0, T0)


# ------------------------------------------------------------------------------ analyst queries
PRICE_AT = ("select price, currency, availability from analytics.price_changes"
            " where offer_id = {offer} and changed_at <= {t} order by changed_at desc limit 1")
LOW_30D = ("select min(price) from analytics.price_history"
           " where offer_id = {offer} and observed_at > {since} and observed_at <= {now}")
OHLC = ("select day, shop_id, open, max, min, close, in_stock_share from analytics.price_daily"
        " where product_id = {product} and day between {first} and {last} order by day, shop_id")
FAKE_DE = ("select s.offer_id, c.reference_price, s.current_price, s.low_30d, s.typical_high"
           " from analytics.offer_price_stats s"
           " cross join lateral (select p.reference_price from analytics.price_changes p"
           "     where p.offer_id = s.offer_id and p.changed_at <= s.last_observed_at"
           "     order by p.changed_at desc limit 1) c"
           " where s.product_id = {product} and c.reference_price > s.typical_high"
           " order by s.offer_id")


def load_other_offers(conn, n_products: int = 1000) -> None:
    """3 shops x n_products other offers, an observation every 6 h for 40 days, their daily rows
    and some change rows; then ANALYZE, so the planner's choices are the ones of a real table."""
    shops = [conn.execute("insert into shops (name, domain) values (%s, %s) returning id",
                          (f"Outra {i}", f"outra{i}.example")).fetchone()[0] for i in range(3)]
    with conn.cursor() as cur:
        with cur.copy("copy products (gtin, name) from stdin") as cp:
            for i in range(n_products):
                cp.write_row((normalize_gtin(make_gtin13("790", i)), f"Produto {i}"))
    conn.execute("""
        insert into offers (product_id, shop_id, source_kind, locator, currency)
        select p.id, s.id, 'page', 'https://x.example/' || p.id || '/' || s.id, 'BRL'
        from products p cross join unnest(%s::bigint[]) as s(id)
        where p.gtin like '0790%%'
    """, (shops,))
    conn.execute("""
        insert into price_history (offer_id, observed_at, price, currency, availability, status, source_kind)
        select o.id, t, 50 + (o.id %% 97) + extract(day from t)::int, 'BRL', 'in_stock', 'accepted', 'page'
        from offers o
        cross join generate_series(%s::timestamptz, %s::timestamptz - interval '1 second', interval '6 hours') t
        where o.locator like 'https://x.example/%%'
    """, (T0, T_END))
    conn.execute("""
        insert into analytics.price_daily
            (offer_id, day, product_id, shop_id, currency, open, close, min, max, observations, in_stock_share)
        select o.id, d::date, o.product_id, o.shop_id, 'BRL', 60, 61, 59, 62, 4, 1
        from offers o cross join generate_series(%s::date, %s::date - 1, interval '1 day') d
        where o.locator like 'https://x.example/%%'
    """, (T0.date(), T_END.date()))
    conn.execute("""
        insert into analytics.price_changes (offer_id, changed_at, price, currency, availability)
        select o.id, t, 60, 'BRL', 'in_stock'
        from offers o cross join generate_series(%s::timestamptz, %s::timestamptz, interval '4 days') t
        where o.locator like 'https://x.example/%%'
    """, (T0, T_END))
    conn.execute("analyze")


def plan_nodes(conn, query: sql.Composable) -> list[dict]:
    plan = conn.execute(sql.SQL("explain (format json) ") + query).fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    nodes, todo = [], [plan[0]["Plan"]]
    while todo:
        node = todo.pop()
        nodes.append(node)
        todo.extend(node.get("Plans", []))
    return nodes


def test_analyst_queries_are_index_scans(conn, world):
    refresh_all(conn)
    load_other_offers(conn)
    # every active offer (3,003, 480k observations) in one statement; then the stats table is real too
    assert refresh_offer_price_stats(conn, now=NOW) == 3 + 3000
    conn.execute("analyze analytics.offer_price_stats")
    L = sql.Literal
    queries = {
        "price at T": sql.SQL(PRICE_AT).format(offer=L(world["A"]), t=L(utc(2026, 1, 25, 12))),
        "30-day low": sql.SQL(LOW_30D).format(offer=L(world["A"]), since=L(NOW - timedelta(days=30)), now=L(NOW)),
        "daily OHLC": sql.SQL(OHLC).format(product=L(world["product"]), first=L(date(2026, 1, 20)),
                                           last=L(date(2026, 2, 9))),
        "fake de": sql.SQL(FAKE_DE).format(product=L(world["product"])),
    }
    for label, query in queries.items():
        nodes = plan_nodes(conn, query)
        relations = {n.get("Relation Name") for n in nodes if "Relation Name" in n}
        seq = [n["Relation Name"] for n in nodes if n["Node Type"] == "Seq Scan"
               and n["Relation Name"].startswith(("price_", "offer_price_stats"))]
        assert seq == [], (label, seq)
        index_nodes = [n for n in nodes if n["Node Type"] in ("Index Scan", "Index Only Scan", "Bitmap Index Scan")]
        assert index_nodes, (label, nodes)
        if label == "30-day low":
            # only the January and February partitions (pruned), each through its primary key
            assert {r for r in relations if r.startswith("price_history")} == {
                "price_history_y2026m01", "price_history_y2026m02"}
    # and they answer what the trajectory says
    assert conn.execute(queries["price at T"]).fetchall() == [(None, "BRL", "out_of_stock")]
    assert conn.execute(queries["30-day low"]).fetchall() == [(D("80.00"),)]
    ohlc = conn.execute(queries["daily OHLC"]).fetchall()
    assert len(ohlc) == 21 * 3 + 1  # A, B, C on 21 days; D (inactive) observed on Feb 9
    assert (date(2026, 2, 5), world["shop_C"], D("85.00"), D("99.00"), D("85.00"), D("99.00"), D("1.0000")) in ohlc
    # "de 150 por 80" while 100 was the most it cost in 90 days; C's "de 130" was never charged either
    assert conn.execute(queries["fake de"]).fetchall() == [
        (world["A"], D("150.00"), D("80.00"), D("80.00"), D("100.00")),
        (world["C"], D("130.00"), D("99.00"), D("85.00"), D("99.00")),
    ]


# ---------------------------------------------------------------------------------- privileges
def test_analyst_reads_every_analytics_object_and_writes_none(conn, world):
    refresh_all(conn)
    for obj in ANALYTICS_OBJECTS:
        with conn.transaction(force_rollback=True):
            conn.execute("set local role smartbuy_analyst")
            assert conn.execute(f"select count(*) from {obj}").fetchone()[0] > 0
    statements = []
    for obj in ANALYTICS_OBJECTS:
        statements += [f"insert into {obj} (offer_id) values (1)",
                       f"update {obj} set offer_id = offer_id",
                       f"delete from {obj}",
                       f"truncate {obj}"]
    failures = []
    for statement in statements:
        with conn.transaction(force_rollback=True):
            conn.execute("set local role smartbuy_analyst")
            try:
                conn.execute(statement)
            except errors.InsufficientPrivilege:
                continue
            except (errors.ObjectNotInPrerequisiteState, errors.WrongObjectType):
                # the view is not updatable at all (and is not a table for TRUNCATE)
                if "analytics.price_history" in statement:
                    continue
                raise
            failures.append(statement)
    assert failures == []


def test_grants_are_explicit(conn):
    rows = conn.execute("""
        select c.relname, r.rolname,
               has_table_privilege(r.rolname, c.oid, 'SELECT'), has_table_privilege(r.rolname, c.oid, 'INSERT'),
               has_table_privilege(r.rolname, c.oid, 'UPDATE'), has_table_privilege(r.rolname, c.oid, 'DELETE'),
               has_table_privilege(r.rolname, c.oid, 'TRUNCATE')
        from pg_class c cross join pg_roles r
        where c.relnamespace = 'analytics'::regnamespace and c.relkind in ('r', 'v')
          and r.rolname in ('smartbuy_analyst', 'smartbuy_pipeline', 'smartbuy_ops', 'authenticated', 'anon')
        order by 1, 2
    """).fetchall()
    got = {(t, r): tuple(p) for t, r, *p in rows}
    for table in ("price_changes", "price_daily", "offer_price_stats"):
        assert got[(table, "smartbuy_pipeline")] == (True, True, True, True, False)
        assert got[(table, "smartbuy_analyst")] == (True, False, False, False, False)
        assert got[(table, "smartbuy_ops")] == (True, False, False, False, False)
        assert got[(table, "authenticated")] == (False,) * 5
        assert got[(table, "anon")] == (False,) * 5
    assert got[("price_history", "smartbuy_pipeline")] == (True, False, False, False, False)
    assert got[("price_history", "smartbuy_analyst")] == (True, False, False, False, False)
    assert got[("price_history", "authenticated")] == (False,) * 5
