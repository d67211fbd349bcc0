"""`risk_scores` against a real database and the simulator's scripted trajectories.

The demo catalog is loaded with `upsert_catalog`; 120 days of hourly observations sampled from
`price_state(offer, t)` are COPYed into price_history and the offers' current state set to the
last tracked hour. NOW is during the Black Friday 2026 sale, when the fake "de" prices show.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import dagster as dg
import psycopg
import pytest

from smartbuy_pipeline.db import risk as risk_db
from smartbuy_pipeline.db.catalog import upsert_catalog
from smartbuy_pipeline.defs.resources import Database
from smartbuy_pipeline.defs.risk import risk_scores
from smartbuy_pipeline.simulator import scenarios as S

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DAYS = 120
BASE_URL = "http://127.0.0.1:8765"
STEADY = "galaxy-a55-casa-eletro"


def load_demo(url, now: datetime = NOW, days: int = DAYS) -> dict[str, int]:
    """Demo catalog + hourly history up to now - 1 h; returns {offer key: offer id}."""
    demo = S.demo_scenario()
    rows = demo.catalog_rows(BASE_URL, now=now)
    with psycopg.connect(url.url) as conn, conn.transaction():
        upsert_catalog(conn, rows["shops"], rows["products"], rows["offers"])
        ids = dict(conn.execute(
            "select s.domain || ' ' || o.locator, o.id from offers o join shops s on s.id = o.shop_id"
        ).fetchall())
        key_to_id = {r["offer_key"]: ids[f"{r['shop_domain']} {r['locator']}"] for r in rows["offers"]}
        current = []
        with conn.cursor().copy(
                "copy price_history (offer_id, observed_at, price, currency, reference_price, freight,"
                " availability, status, source_kind) from stdin") as copy:
            for o in demo.offers:
                kind = demo.shop_of(o).source_kind
                oid = key_to_id[o.key]
                changed_at, prev = None, None
                for i in range(days * 24, 0, -1):
                    at = now - timedelta(hours=i)
                    st = S.price_state(o, at)
                    copy.write_row((oid, at, st.price, "BRL", st.reference_price, st.freight,
                                    st.availability.value, "accepted", kind))
                    key = (st.price, st.reference_price, st.availability.value)
                    if key != prev:
                        changed_at, prev = at, key
                last_price = st.price if st.price is not None else None
                current.append((oid, last_price, st.reference_price if st.price else None, st.freight,
                                st.availability.value, at, changed_at))
        conn.execute("create temporary table cur (id bigint, price numeric, ref numeric, freight numeric,"
                     " availability text, seen timestamptz, changed timestamptz) on commit drop")
        with conn.cursor().copy("copy cur from stdin") as copy:
            for row in current:
                copy.write_row(row)
        conn.execute(
            "update offers o set price = coalesce(c.price, o.price), reference_price = c.ref,"
            " freight = c.freight, availability = c.availability, currency = 'BRL',"
            " last_changed_at = c.changed"
            " from cur c where c.id = o.id")
        conn.execute(
            "update offer_checks k set last_checked_at = c.seen, last_success_at = c.seen"
            " from cur c where c.id = k.offer_id")
    return key_to_id


@pytest.fixture()
def demo_db(db_url):
    return db_url, load_demo(db_url)


def materialize(url, *, full: bool = False, as_of: datetime = NOW) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [risk_scores], resources={"database": Database(url=url.url)},
        run_config={"ops": {"risk_scores": {"config": {"full": full, "as_of": as_of.isoformat()}}}},
    )


def meta(result) -> dict:
    (m,) = result.asset_materializations_for_node("risk_scores")
    return {k: v.value for k, v in m.metadata.items()}


def scores(url, ids) -> dict[int, dict]:
    with psycopg.connect(url.url) as conn:
        return risk_db.scores_of(conn, ids)


def codes(row) -> list[str]:
    return [r["code"] for r in row["reasons"]]


def scalar(url, query, params=None):
    with psycopg.connect(url.url) as conn:
        return conn.execute(query, params).fetchone()[0]


def test_scripted_trajectories_land_in_the_expected_buckets(demo_db):
    url, ids = demo_db
    result = materialize(url)
    assert result.success
    m = meta(result)
    n_offers = len(ids)
    assert m["offers_scored"] == m["dagster/row_count"] == m["first_scores"] == n_offers
    assert m["bucket_a"] + m["bucket_b"] + m["bucket_c"] == n_offers
    assert m["history_rows"] == n_offers  # every first score is a change
    got = scores(url, ids.values())
    bf = got[ids[S.DEMO_BF_FAKE]]
    assert bf["bucket"] == "C"
    assert {"FAKE_REFERENCE_PRICE", "PRE_SALE_SPIKE"} <= set(codes(bf))
    assert bf["model_version"] == "risk-v1.0"
    assert bf["computed_at"] == NOW
    # input figures are Decimal strings (money never as float)
    assert bf["inputs"]["current_price"] == "2754.05"
    assert Decimal(bf["inputs"]["low_before_reduction"]) == Decimal("3438.05")
    assert got[ids[S.DEMO_BF_FAKE_FEED]]["bucket"] == "C"
    drop = got[ids[S.DEMO_GENUINE_DROP]]
    assert drop["bucket"] == "A" and "GOOD_DEAL" in codes(drop)
    scam = got[ids[S.DEMO_SCAM]]
    assert scam["bucket"] == "C" and "TOO_GOOD_TO_BE_TRUE" in codes(scam)
    assert got[ids[STEADY]]["bucket"] == "A"
    # the buckets match the database rule and the history holds the same first rows
    assert scalar(url, "select count(*) from offer_risk_score_history") == n_offers
    assert scalar(url, "select count(*) from offer_risk_scores where bucket = 'C'") == m["bucket_c"]


def test_incremental_rescoring_only_changed_offers(demo_db):
    url, ids = demo_db
    assert materialize(url).success
    # nothing changed since: nothing to score, nothing written
    again = materialize(url, as_of=NOW + timedelta(minutes=30))
    assert meta(again)["offers_scored"] == 0
    assert scalar(url, "select count(*) from offer_risk_score_history") == len(ids)
    # two offers change after their score: the steady one drops its price by R$ 1 and the Black
    # Friday fake goes out of stock; the genuine drop is only re-observed (no change: not rescored)
    later = NOW + timedelta(hours=1)
    steady, drop, fake = ids[STEADY], ids[S.DEMO_GENUINE_DROP], ids[S.DEMO_BF_FAKE]
    with psycopg.connect(url.url) as conn:
        conn.execute("update offers set price = price - 1.00, last_changed_at = %s where id = %s",
                     (later, steady))
        conn.execute("update offer_checks set last_success_at = %s where offer_id = %s", (later, steady))
        conn.execute("update offers set availability = 'out_of_stock', last_changed_at = %s where id = %s",
                     (later, fake))
        conn.execute("update offer_checks set last_success_at = %s, last_checked_at = %s where offer_id = %s",
                     (later, later, drop))
    before = scores(url, ids.values())
    result = materialize(url, as_of=later + timedelta(minutes=5))
    m = meta(result)
    assert m["offers_selected"] == m["offers_scored"] == 2
    assert m["first_scores"] == 0
    after = scores(url, ids.values())
    rescored = {i for i in ids.values() if after[i]["computed_at"] != before[i]["computed_at"]}
    assert rescored == {steady, fake}
    assert after[steady]["computed_at"] == later + timedelta(minutes=5)
    # the fake out of stock has no price signals any more: its bucket flipped, with a history row
    assert before[fake]["bucket"] == "C" and after[fake]["bucket"] in ("A", "B")
    assert m["bucket_flips"] == 1
    assert scalar(url, "select count(*) from offer_risk_score_history where offer_id = %s", (fake,)) == 2
    flipped = scalar(url, "select reasons from offer_risk_score_history where offer_id = %s"
                     " order by computed_at desc limit 1", (fake,))
    assert "FAKE_REFERENCE_PRICE" not in {r["code"] for r in flipped}
    # a full run rescores all; unchanged scores add no history rows
    hist_before = scalar(url, "select count(*) from offer_risk_score_history")
    full = meta(materialize(url, full=True, as_of=later + timedelta(minutes=5)))
    assert full["offers_scored"] == len(ids)
    assert full["history_rows"] == scalar(url, "select count(*) from offer_risk_score_history") - hist_before
    assert full["history_rows"] == full["score_changes"] + full["first_scores"]


def test_an_app_user_cannot_write_risk_scores(demo_db):
    url, ids = demo_db
    assert materialize(url).success
    oid = ids[S.DEMO_SCAM]
    claims = '{"sub": "00000000-0000-0000-0000-000000000001", "role": "authenticated"}'
    for stmt in (
        "update offer_risk_scores set score = 100, bucket = 'A' where offer_id = %s",
        "insert into offer_risk_score_history (offer_id, score, bucket, model_version) values (%s, 100, 'A', 'x')",
        "delete from offer_risk_scores where offer_id = %s",
    ):
        with psycopg.connect(url.url) as conn:
            conn.execute("select set_config('request.jwt.claims', %s, false)", (claims,))
            conn.execute("set role authenticated")
            assert conn.execute("select bucket from offer_risk_scores where offer_id = %s",
                                (oid,)).fetchone()[0] == "C"  # reading is allowed
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(stmt, (oid,))
    assert scores(url, [oid])[oid]["bucket"] == "C"


def test_risk_summary_distribution_and_named_reasons(demo_db):
    url, ids = demo_db
    assert materialize(url).success
    with psycopg.connect(url.url) as conn:
        dist, reasons = risk_db.risk_summary(conn)
    assert [d["bucket"] for d in dist] == ["A", "B", "C"]
    assert sum(d["offers"] for d in dist) == len(ids)
    by_label: dict[str, list[dict]] = {}
    for r in reasons:
        by_label.setdefault(r["label"], []).append(r)
    assert set(by_label) == {S.DEMO_BF_FAKE, S.DEMO_BF_FAKE_FEED, S.DEMO_SCAM, S.DEMO_GENUINE_DROP}
    assert {r["offer_id"] for r in by_label[S.DEMO_BF_FAKE]} == {ids[S.DEMO_BF_FAKE]}
    assert {r["offer_id"] for r in by_label[S.DEMO_BF_FAKE_FEED]} == {ids[S.DEMO_BF_FAKE_FEED]}
    assert "PRE_SALE_SPIKE" in {r["code"] for r in by_label[S.DEMO_BF_FAKE]}
    assert "TOO_GOOD_TO_BE_TRUE" in {r["code"] for r in by_label[S.DEMO_SCAM]}
    assert all(r["message"] for r in reasons if r["code"])


def test_history_is_read_in_chunks_with_the_same_result(demo_db):
    url, ids = demo_db
    with psycopg.connect(url.url) as conn:
        all_ids = sorted(ids.values())
        one = risk_db.compute_scores(conn, all_ids, now=NOW)
        chunked = risk_db.compute_scores(conn, all_ids, now=NOW, chunk_offers=7)
        # read-ahead on a second connection, on this transaction's snapshot
        ahead = risk_db.compute_scores(conn, all_ids, now=NOW, chunk_offers=5,
                                       connect=lambda: psycopg.connect(url.url))
        history = risk_db.load_history(conn, all_ids[:3], now=NOW)
    assert one[["offer_id", "score", "bucket"]].equals(chunked[["offer_id", "score", "bucket"]])
    assert list(one["reasons"]) == list(chunked["reasons"])
    assert one[["offer_id", "score", "bucket"]].equals(ahead[["offer_id", "score", "bucket"]])
    assert list(one["inputs"]) == list(ahead["inputs"])
    assert history["price"].dtype == "int64" and str(history["observed_at"].dt.tz) == "UTC"
    assert history["offer_id"].is_monotonic_increasing
    assert history["observed_at"].max() <= NOW


def test_chunks_written_on_a_thread_equal_one_chunk_written_in_line(demo_db):
    """score_and_write with read-ahead and small chunks (each chunk COPYed and applied by the
    writer thread while the next is scored) writes the same rows as one chunk in line."""
    url, ids = demo_db
    all_ids = sorted(ids.values())
    cols = "offer_id, score, bucket, reasons, inputs, model_version, computed_at"

    def snapshot(conn):
        return (conn.execute(f"select {cols} from offer_risk_scores order by offer_id").fetchall(),
                conn.execute(f"select {cols} from offer_risk_score_history order by offer_id, id")
                .fetchall())

    with psycopg.connect(url.url) as conn, conn.transaction():
        one = risk_db.score_and_write(conn, all_ids, now=NOW)
        inline = snapshot(conn)
        raise psycopg.Rollback()
    with psycopg.connect(url.url) as conn:
        with conn.transaction():
            threaded = risk_db.score_and_write(conn, all_ids, now=NOW, chunk_offers=3,
                                               connect=lambda: psycopg.connect(url.url))
            assert snapshot(conn) == inline
        # a second pass: nothing changed, so no history rows; computed_at moves
        with conn.transaction():
            again = risk_db.score_and_write(conn, all_ids, now=NOW + timedelta(hours=1),
                                            chunk_offers=4, connect=lambda: psycopg.connect(url.url))
            scores, history = snapshot(conn)
    assert (threaded.scored, threaded.history_rows, threaded.first_scores) == (
        one.scored, one.history_rows, one.first_scores) == (len(all_ids), len(all_ids), len(all_ids))
    assert (again.scored, again.history_rows, again.flips, again.first_scores) == (len(all_ids), 0, 0, 0)
    assert {r[6] for r in scores} == {NOW + timedelta(hours=1)}
    assert history == inline[1]
