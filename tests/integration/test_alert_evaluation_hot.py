"""The evaluator's UPDATEs of alerts are HOT: they touch no indexed column, and 0011 leaves room on
alerts' pages (fillfactor 80) so a first evaluation that notifies many alerts adds no index entries."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from smartbuy_pipeline.db.alerts import evaluate_alerts
from tests.integration.test_alert_evaluation import T0, World

pytestmark = pytest.mark.integration

# every column the evaluator writes (docs/alerts.md, "Re-arm semantics")
EVALUATOR_COLUMNS = {"matched", "episode", "notified_episode", "last_notified_price", "last_notified_offer_id",
                     "last_notified_at", "baseline_price", "state_changed_at"}


@pytest.fixture()
def w(db_url) -> Iterator[World]:
    with psycopg.connect(db_url.url, autocommit=True) as conn:
        yield World(conn)


def test_alerts_leave_room_for_hot_updates_and_index_no_evaluator_column(w):
    options = w.conn.execute("select reloptions from pg_class where oid = 'public.alerts'::regclass").fetchone()[0]
    assert "fillfactor=80" in (options or [])
    indexed = {row[0] for row in w.conn.execute(
        "select a.attname from pg_index i"
        " join pg_attribute a on a.attrelid = i.indrelid"
        " and (a.attnum = any(i.indkey) or pg_get_expr(i.indexprs, i.indrelid) like '%' || a.attname || '%'"
        "      or pg_get_expr(i.indpred, i.indrelid) like '%' || a.attname || '%')"
        " where i.indrelid = 'public.alerts'::regclass and a.attnum > 0")}
    assert indexed and not indexed & EVALUATOR_COLUMNS


def test_evaluator_updates_are_hot(w):
    hh = w.household()
    product = w.product()
    w.offer(product, w.shop(), "50.00")
    for _ in range(10):
        w.alert(hh, "TARGET_PRICE", {"target": 60}, product=product)  # first match: notified
    for _ in range(5):
        w.alert(hh, "PERCENT_DROP", {"percent": 10}, product=product)  # baseline set
    with w.conn.transaction():
        r = evaluate_alerts(w.conn, now=T0, partition_key="p", run_id=None)
        updated, hot = w.conn.execute("select pg_stat_get_xact_tuples_updated('public.alerts'::regclass),"
                                      " pg_stat_get_xact_tuples_hot_updated('public.alerts'::regclass)").fetchone()
    assert (r.events_created, r.baselines_set, r.alerts_updated) == (10, 5, 15)
    assert (updated, hot) == (15, 15)
