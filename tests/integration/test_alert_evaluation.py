"""Set-based alert evaluation (db.alerts.evaluate_alerts) against real PostgreSQL.

Each test scripts a trajectory by writing offers' current state (and price_history /
analytics.offer_price_stats rows) directly, then evaluates at successive `now`s, one committed
transaction per evaluation, and checks the outbox and the alerts' state with exact figures.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from psycopg import errors

from smartbuy_pipeline.db.alerts import AlertEvaluation, evaluate_alerts
from smartbuy_pipeline.domain.alerts import is_valid_params
from smartbuy_pipeline.domain.gtin import gs1_check_digit
from tests.unit.test_alert_rules import PARAMS_CASES

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
D = Decimal

PAYLOAD_KEYS = {"kind", "alert_id", "alert_type", "household_id", "product_id", "product_name", "gtin",
                "offer_id", "shop_id", "shop_name", "url", "price", "currency", "freight", "total",
                "reference_price", "reference_kind", "previous_notified_price", "risk_bucket", "risk_score",
                "availability", "observed_at"}


class World:
    """Catalog, households and alerts written directly; evaluations committed one by one."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.n = 0

    def _next(self) -> int:
        self.n += 1
        return self.n

    def household(self) -> str:
        i = self._next()
        user = self.conn.execute("insert into auth.users (email) values (%s) returning id",
                                 (f"u{i}@example.com",)).fetchone()[0]
        return self.conn.execute("select household_id::text from household_members where user_id = %s",
                                 (user,)).fetchone()[0]

    def shop(self, name: str | None = None, active: bool = True) -> int:
        i = self._next()
        return self.conn.execute("insert into shops (name, domain, active) values (%s, %s, %s) returning id",
                                 (name or f"Loja {i}", f"loja{i}.example", active)).fetchone()[0]

    def product(self, name: str = "Air Fryer 4L") -> int:
        body = f"0789{self._next():09d}"
        return self.conn.execute("insert into products (gtin, name) values (%s, %s) returning id",
                                 (body + str(gs1_check_digit(body)), name)).fetchone()[0]

    def offer(self, product: int, shop: int, price: str | None, *, freight: str | None = "0.00",
              availability: str = "in_stock", currency: str = "BRL", bucket: str | None = "A",
              source_kind: str = "page", changed_at: datetime = T0 - 2 * H) -> int:
        i = self._next()
        locator = f"https://shop.example/p/{i}" if source_kind == "page" else f"sku-{i}"
        offer = self.conn.execute(
            "insert into offers (product_id, shop_id, source_kind, locator, price, freight, currency, availability,"
            " last_changed_at) values (%s, %s, %s, %s, %s, %s, %s, %s, %s) returning id",
            (product, shop, source_kind, locator, price, freight, currency, availability, changed_at),
        ).fetchone()[0]
        # the offer_checks row is created by the insert trigger on offers (0015)
        self.conn.execute("update offer_checks set last_success_at = %s where offer_id = %s", (changed_at, offer))
        if bucket is not None:
            self.score(offer, bucket, at=T0 - 10 * H)
        return offer

    def score(self, offer: int, bucket: str, at: datetime) -> None:
        score = {"A": 90, "B": 70, "C": 30}[bucket]
        self.conn.execute(
            "insert into offer_risk_scores (offer_id, score, bucket, model_version, computed_at)"
            " values (%s, %s, %s, 'v1', %s) on conflict (offer_id) do update"
            " set score = excluded.score, bucket = excluded.bucket, computed_at = excluded.computed_at",
            (offer, score, bucket, at))

    def set_offer(self, offer: int, at: datetime, **cols) -> None:
        cols.setdefault("last_changed_at", at)
        assignments = ", ".join(f"{k} = %({k})s" for k in cols)
        self.conn.execute(f"update offers set {assignments} where id = %(id)s", {**cols, "id": offer})

    def stats(self, offer: int, *, first_observed_at: datetime, low_30d=None, median_30d=None, low_90d=None,
              low_all_time=None) -> None:
        self.conn.execute(
            "insert into analytics.offer_price_stats (offer_id, product_id, shop_id, currency, current_price,"
            " low_30d, median_30d, low_90d, low_all_time, first_observed_at, last_observed_at, refreshed_at)"
            " select o.id, o.product_id, o.shop_id, o.currency, o.price, %s, %s, %s, %s, %s, %s, %s"
            " from offers o where o.id = %s",
            (low_30d, median_30d, low_90d, low_all_time, first_observed_at, T0 - H, T0 - H, offer))

    def alert(self, household: str, alert_type: str, params: dict, *, product: int | None = None,
              offer: int | None = None, cooldown: str = "0", **cols) -> int:
        names = ["household_id", "alert_type", "params", "product_id", "offer_id", "cooldown", *cols]
        values = [household, alert_type, json.dumps(params), product, offer, cooldown, *cols.values()]
        return self.conn.execute(
            f"insert into alerts ({', '.join(names)}) values ({', '.join(['%s'] * len(names))}) returning id",
            values).fetchone()[0]

    def evaluate(self, now: datetime, changed_since: datetime | None = None,
                 new_alerts_after: int | None = None) -> AlertEvaluation:
        with self.conn.transaction():
            return evaluate_alerts(self.conn, now=now, partition_key=now.strftime("%Y-%m-%d-%H:%M"),
                                   run_id="test", changed_since=changed_since, new_alerts_after=new_alerts_after)

    def events(self, alert: int | None = None) -> list[tuple]:
        """(offer_id, price, dedupe_key) in creation order."""
        where, args = ("where alert_id = %s", (alert,)) if alert else ("", ())
        return self.conn.execute(f"select offer_id, price, dedupe_key from alert_events {where} order by id",
                                 args).fetchall()

    def payloads(self, alert: int) -> list[dict]:
        return [r[0] for r in self.conn.execute(
            "select payload from alert_events where alert_id = %s order by id", (alert,)).fetchall()]

    def state(self, alert: int) -> tuple:
        return self.conn.execute(
            "select matched, episode, notified_episode, last_notified_price, last_notified_offer_id,"
            " baseline_price from alerts where id = %s", (alert,)).fetchone()


@pytest.fixture()
def conn(db_url) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url.url, autocommit=True) as c:
        yield c


@pytest.fixture()
def w(conn) -> World:
    return World(conn)


@pytest.fixture()
def hh(w) -> str:
    return w.household()


def key(alert: int, offer: int, figure: str) -> str:
    return f"alert:{alert}:offer:{offer}:price:{figure}"


# --------------------------------------------------------------------------- TARGET_PRICE
def test_target_price_trajectory_first_match_oscillation_improvement_rearm(w, hh):
    shop, product = w.shop("Casa"), w.product()
    offer = w.offer(product, shop, "120.00")
    alert = w.alert(hh, "TARGET_PRICE", {"target": "100.00"}, offer=offer)

    r = w.evaluate(T0)
    assert (r.alerts_evaluated, r.matched, r.events_created, r.alerts_updated) == (1, 0, 0, 0)
    assert w.state(alert) == (False, 0, None, None, None, None)

    w.set_offer(offer, T0 + H, price="99.90")
    r = w.evaluate(T0 + H)
    assert (r.matched, r.events_created, r.rearmed, r.by_type) == (1, 1, 1, {"TARGET_PRICE": 1})
    assert w.events(alert) == [(offer, D("99.90"), key(alert, offer, "99.90"))]
    assert w.state(alert) == (True, 1, 1, D("99.90"), offer, None)

    # above the target: the episode ends; back at the same price: nothing new to say
    w.set_offer(offer, T0 + 2 * H, price="101.00")
    r = w.evaluate(T0 + 2 * H)
    assert (r.matched, r.unmatched, r.events_created) == (0, 1, 0)
    w.set_offer(offer, T0 + 3 * H, price="99.90")
    r = w.evaluate(T0 + 3 * H)
    assert (r.rearmed, r.events_created, r.suppressed_duplicate) == (1, 0, 1)
    assert w.state(alert) == (True, 2, 2, D("99.90"), offer, None)
    r = w.evaluate(T0 + 3 * H + timedelta(minutes=5))  # the duplicate is recorded, not retried
    assert (r.matched, r.events_created, r.suppressed_duplicate, r.alerts_updated) == (1, 0, 0, 0)

    # improvement below the last notified price fires; a rise within the episode does not
    w.set_offer(offer, T0 + 4 * H, price="95.00")
    assert w.evaluate(T0 + 4 * H).events_created == 1
    w.set_offer(offer, T0 + 5 * H, price="98.00")
    assert w.evaluate(T0 + 5 * H).events_created == 0

    # false -> true with a new (higher) price fires
    w.set_offer(offer, T0 + 6 * H, price="150.00")
    w.evaluate(T0 + 6 * H)
    w.set_offer(offer, T0 + 7 * H, price="97.50")
    r = w.evaluate(T0 + 7 * H)
    assert (r.rearmed, r.events_created) == (1, 1)
    assert [e[2] for e in w.events(alert)] == [key(alert, offer, p) for p in ("99.90", "95.00", "97.50")]
    assert w.state(alert) == (True, 3, 3, D("97.50"), offer, None)
    assert [p["previous_notified_price"] for p in w.payloads(alert)] == [None, "99.90", "95.00"]


def test_first_match_at_creation_fires_with_the_full_payload(w, hh):
    shop, product = w.shop("Casa Eletro"), w.product("Fritadeira Air Fryer 4L")
    offer = w.offer(product, shop, "349.90", freight="19.90", bucket="B")
    alert = w.alert(hh, "TARGET_PRICE", {"target": 350}, product=product)
    r = w.evaluate(T0)
    assert (r.alerts_evaluated, r.matched, r.events_created, r.rearmed) == (1, 1, 1, 1)
    gtin = w.conn.execute("select gtin from products where id = %s", (product,)).fetchone()[0]
    row = w.conn.execute("select household_id::text, offer_id, dedupe_key, price, currency, observed_at, status"
                         " from alert_events where alert_id = %s", (alert,)).fetchone()
    assert row == (hh, offer, key(alert, offer, "349.90"), D("349.90"), "BRL", T0 - 2 * H, "pending")
    locator = w.conn.execute("select locator from offers where id = %s", (offer,)).fetchone()[0]
    assert locator.startswith("https://shop.example/p/")
    [payload] = w.payloads(alert)
    assert set(payload) == PAYLOAD_KEYS
    assert payload == {
        "kind": "alert", "alert_id": alert, "alert_type": "TARGET_PRICE", "household_id": hh,
        "product_id": product, "product_name": "Fritadeira Air Fryer 4L", "gtin": gtin, "offer_id": offer,
        "shop_id": shop, "shop_name": "Casa Eletro", "url": locator, "price": "349.90", "currency": "BRL",
        "freight": "19.90", "total": "369.80", "reference_price": "350.00", "reference_kind": "target",
        "previous_notified_price": None, "risk_bucket": "B", "risk_score": 70, "availability": "in_stock",
        "observed_at": "2026-03-10T10:00:00Z",
    }


def test_url_is_null_for_feed_offers(w, hh):
    offer = w.offer(w.product(), w.shop(), "10.00", source_kind="merchant_feed")
    alert = w.alert(hh, "TARGET_PRICE", {"target": 10}, offer=offer)
    w.evaluate(T0)
    assert w.payloads(alert)[0]["url"] is None


def test_rerunning_the_same_evaluation_creates_nothing(w, hh):
    product = w.product()
    w.offer(product, w.shop(), "80.00")
    w.alert(hh, "TARGET_PRICE", {"target": 100}, product=product)
    w.alert(hh, "BACK_IN_STOCK", {}, product=product)
    first = w.evaluate(T0)
    assert (first.events_created, first.alerts_updated) == (2, 2)
    again = w.evaluate(T0)
    assert (again.matched, again.events_created, again.alerts_updated, again.suppressed_duplicate) == (2, 0, 0, 0)
    assert len(w.events()) == 2
    assert w.conn.execute("select count(*), sum(events_created) from alert_evaluations").fetchone() == (2, 2)


# ---------------------------------------------------------------------------- TOTAL_PRICE
def test_total_price_uses_price_plus_freight_and_unknown_freight_never_matches(w, hh):
    product = w.product()
    offer = w.offer(product, w.shop(), "180.00", freight=None)
    alert = w.alert(hh, "TOTAL_PRICE", {"target": "200.00"}, offer=offer)
    assert w.evaluate(T0).matched == 0
    w.set_offer(offer, T0 + H, freight="25.00")
    assert w.evaluate(T0 + H).matched == 0  # 205.00
    w.set_offer(offer, T0 + 2 * H, freight="19.90")
    r = w.evaluate(T0 + 2 * H)
    assert (r.matched, r.events_created) == (1, 1)
    assert w.events(alert) == [(offer, D("180.00"), key(alert, offer, "199.90"))]
    payload = w.payloads(alert)[0]
    assert (payload["price"], payload["freight"], payload["total"], payload["reference_price"]) == (
        "180.00", "19.90", "199.90", "200.00")
    assert w.state(alert)[3] == D("199.90")  # last_notified_price is the compared figure


def test_total_price_product_level_picks_the_lowest_total(w, hh):
    product = w.product()
    w.offer(product, w.shop(), "150.00", freight="45.00")  # cheaper price, total 195.00
    cheap_total = w.offer(product, w.shop(), "160.00", freight="0.00")  # total 160.00
    alert = w.alert(hh, "TOTAL_PRICE", {"target": 200}, product=product)
    w.evaluate(T0)
    assert w.events(alert) == [(cheap_total, D("160.00"), key(alert, cheap_total, "160.00"))]


# --------------------------------------------------------------------------- PERCENT_DROP
def test_percent_drop_created_sets_the_baseline_then_fires(w, hh):
    product = w.product()
    a = w.offer(product, w.shop(), "200.00")
    b = w.offer(product, w.shop(), "210.00")
    w.offer(product, w.shop(), "150.00", bucket="C")  # not eligible (safe_only): not the baseline
    alert = w.alert(hh, "PERCENT_DROP", {"percent": 10}, product=product)
    r = w.evaluate(T0)
    assert (r.baselines_set, r.matched, r.events_created) == (1, 0, 0)
    assert w.state(alert) == (False, 0, None, None, None, D("200.00"))
    w.set_offer(a, T0 + H, price="181.00")  # threshold 180.00
    assert w.evaluate(T0 + H).matched == 0
    w.set_offer(b, T0 + 2 * H, price="180.00")
    r = w.evaluate(T0 + 2 * H)
    assert (r.baselines_set, r.matched, r.events_created) == (0, 1, 1)
    assert w.events(alert) == [(b, D("180.00"), key(alert, b, "180.00"))]
    payload = w.payloads(alert)[0]
    assert (payload["reference_price"], payload["reference_kind"]) == ("200.00", "created")


def test_percent_drop_baseline_waits_for_an_eligible_price(w, hh):
    product = w.product()
    offer = w.offer(product, w.shop(), None, freight=None, availability="out_of_stock")
    alert = w.alert(hh, "PERCENT_DROP", {"percent": 5}, product=product)
    assert w.evaluate(T0).baselines_set == 0
    assert w.state(alert)[5] is None
    w.set_offer(offer, T0 + H, price="99.99", availability="in_stock")
    assert w.evaluate(T0 + H).baselines_set == 1
    assert w.state(alert)[5] == D("99.99")


def test_percent_drop_against_median_30d(w, hh):
    product = w.product()
    offer = w.offer(product, w.shop(), "175.01")
    w.stats(offer, first_observed_at=T0 - timedelta(days=60), median_30d="200.00")
    alert = w.alert(hh, "PERCENT_DROP", {"percent": 12.5, "reference": "median_30d"}, offer=offer)
    assert w.evaluate(T0).matched == 0  # threshold 175.00
    w.set_offer(offer, T0 + H, price="175.00")
    r = w.evaluate(T0 + H)
    assert (r.matched, r.events_created, r.baselines_set) == (1, 1, 0)
    payload = w.payloads(alert)[0]
    assert (payload["price"], payload["reference_price"], payload["reference_kind"]) == (
        "175.00", "200.00", "median_30d")


# -------------------------------------------------------------------------------- NEW_LOW
def test_new_low_30d_and_all_time_from_offer_price_stats(w, hh):
    product = w.product()
    offer = w.offer(product, w.shop(), "95.00")
    w.stats(offer, first_observed_at=T0 - timedelta(days=200), low_30d="95.00", low_90d="90.00",
            low_all_time="80.00")
    a30 = w.alert(hh, "NEW_LOW", {"days": 30}, offer=offer)
    a90 = w.alert(hh, "NEW_LOW", {"days": 90}, offer=offer)
    aall = w.alert(hh, "NEW_LOW", {}, offer=offer)
    r = w.evaluate(T0)
    assert (r.matched, r.events_created) == (1, 1)
    assert [p["reference_kind"] for p in w.payloads(a30)] == ["low_30d"]
    w.set_offer(offer, T0 + H, price="79.90")
    r = w.evaluate(T0 + H)
    assert r.events_created == 3
    assert [(p["price"], p["reference_price"], p["reference_kind"]) for p in w.payloads(aall)] == [
        ("79.90", "80.00", "low_all_time")]
    assert w.payloads(a90)[0]["reference_price"] == "90.00"


def test_new_low_needs_enough_history(w, hh):
    product = w.product()
    offer = w.offer(product, w.shop(), "50.00")
    w.stats(offer, first_observed_at=T0 - timedelta(days=2), low_30d="50.00", low_all_time="50.00")
    strict = w.alert(hh, "NEW_LOW", {"days": 30}, offer=offer)  # needs min(30, 7) = 7 days
    lenient = w.alert(hh, "NEW_LOW", {"days": 30, "min_history_days": 2}, offer=offer)
    r = w.evaluate(T0)
    assert r.matched == 1
    assert [e[0] for e in w.events(lenient)] == [offer] and w.events(strict) == []
    assert w.evaluate(T0 + timedelta(days=5)).events_created == 1  # 7 days of history now
    assert len(w.events(strict)) == 1


def test_new_low_over_custom_days_reads_price_history(w, hh):
    product = w.product()
    offer = w.offer(product, w.shop(), "100.00", source_kind="merchant_feed")
    other = w.offer(product, w.shop(), "300.00")
    w.stats(offer, first_observed_at=T0 - timedelta(days=40), low_30d="70.00", low_all_time="70.00")
    w.stats(other, first_observed_at=T0 - timedelta(days=40), low_30d="300.00", low_all_time="300.00")
    rows = [(offer, T0 - timedelta(days=20), "70.00", "accepted"),   # outside 14 days
            (offer, T0 - timedelta(days=10), "105.00", "accepted"),
            (offer, T0 - timedelta(days=3), "60.00", "quarantined"),  # not accepted
            (offer, T0 - timedelta(days=1), "100.00", "accepted"),
            (other, T0 - timedelta(days=1), "300.00", "accepted")]
    with w.conn.cursor().copy("copy price_history (offer_id, observed_at, price, currency, availability, status,"
                              " source_kind) from stdin") as copy:
        for offer_id, at, price, status in rows:
            copy.write_row((offer_id, at, price, "BRL", "in_stock", status, "page"))
    alert = w.alert(hh, "NEW_LOW", {"days": 14}, product=product)
    r = w.evaluate(T0)
    assert (r.matched, r.events_created) == (1, 1)  # 100.00 <= low_14d 100.00; `other` is its own low too
    payloads = w.payloads(alert)
    assert [(p["offer_id"], p["price"], p["reference_price"], p["reference_kind"]) for p in payloads] == [
        (offer, "100.00", "100.00", "low_14d")]
    # above its 14-day low (100.00): `other` (300.00, its own low) is the best match now, but the
    # episode goes on and 300.00 is no improvement: nothing is sent
    w.set_offer(offer, T0 + H, price="101.00")
    r = w.evaluate(T0 + H)
    assert (r.matched, r.events_created, r.unmatched) == (1, 0, 0)
    w.set_offer(other, T0 + 2 * H, price="301.00")  # no offer at its 14-day low: the episode ends
    assert w.evaluate(T0 + 2 * H).unmatched == 1
    w.set_offer(offer, T0 + 3 * H, price="99.00")
    r = w.evaluate(T0 + 3 * H)
    assert (r.rearmed, r.events_created) == (1, 1)
    assert w.payloads(alert)[-1]["reference_price"] == "100.00"


# --------------------------------------------------------------------------- BACK_IN_STOCK
def test_back_in_stock_fires_on_each_restock(w, hh):
    product = w.product()
    offer = w.offer(product, w.shop(), None, freight=None, availability="out_of_stock")
    alert = w.alert(hh, "BACK_IN_STOCK", {}, offer=offer)
    assert w.evaluate(T0).matched == 0
    w.set_offer(offer, T0 + H, price="500.00", availability="preorder")  # priced but not in stock
    assert w.evaluate(T0 + H).matched == 0
    w.set_offer(offer, T0 + 2 * H, availability="in_stock")
    assert w.evaluate(T0 + 2 * H).events_created == 1
    w.set_offer(offer, T0 + 3 * H, price=None, availability="out_of_stock")
    assert w.evaluate(T0 + 3 * H).unmatched == 1
    w.set_offer(offer, T0 + 4 * H, price="500.00", availability="in_stock")  # same price: still news
    r = w.evaluate(T0 + 4 * H)
    assert (r.rearmed, r.events_created, r.by_type) == (1, 1, {"BACK_IN_STOCK": 1})
    assert [e[2] for e in w.events(alert)] == [f"alert:{alert}:offer:{offer}:restock:1",
                                               f"alert:{alert}:offer:{offer}:restock:2"]
    payload = w.payloads(alert)[1]
    assert (payload["reference_price"], payload["reference_kind"], payload["availability"]) == (
        None, None, "in_stock")


# ----------------------------------------------------------------------------------- cooldown
def test_cooldown_holds_then_releases_the_then_current_best_price(w, hh):
    product = w.product()
    a = w.offer(product, w.shop(), "90.00")
    b = w.offer(product, w.shop(), "120.00")
    alert = w.alert(hh, "TARGET_PRICE", {"target": 100}, product=product, cooldown="6 hours")
    assert w.evaluate(T0).events_created == 1
    w.set_offer(a, T0 + H, price="85.00")
    r = w.evaluate(T0 + H)
    assert (r.events_created, r.suppressed_cooldown) == (0, 1)
    w.set_offer(b, T0 + 2 * H, price="80.00")
    assert w.evaluate(T0 + 2 * H).suppressed_cooldown == 1
    w.set_offer(b, T0 + 5 * H, price="82.00")
    assert w.evaluate(T0 + 5 * H).suppressed_cooldown == 1
    r = w.evaluate(T0 + 6 * H)  # cooldown over: the best price now (82.00 at b) is sent
    assert (r.events_created, r.suppressed_cooldown) == (1, 0)
    assert w.events(alert) == [(a, D("90.00"), key(alert, a, "90.00")), (b, D("82.00"), key(alert, b, "82.00"))]
    assert w.state(alert) == (True, 1, 1, D("82.00"), b, None)
    last = w.conn.execute("select last_notified_at from alerts where id = %s", (alert,)).fetchone()[0]
    assert last == T0 + 6 * H


# --------------------------------------------------------------------------------- eligibility
def test_safe_only_excludes_bucket_c_and_unscored_offers(w, hh):
    product = w.product()
    c = w.offer(product, w.shop(), "50.00", bucket="C")
    unscored = w.offer(product, w.shop(), "60.00", bucket=None)
    b = w.offer(product, w.shop(), "70.00", bucket="B")
    safe = w.alert(hh, "TARGET_PRICE", {"target": 100}, product=product)
    any_risk = w.alert(hh, "TARGET_PRICE", {"target": 100}, product=product, safe_only=False)
    w.evaluate(T0)
    assert [e[0] for e in w.events(safe)] == [b]
    assert [e[0] for e in w.events(any_risk)] == [c]
    # a rescore to C removes b; the unscored offer is still not known safe
    w.score(b, "C", at=T0 + H)
    r = w.evaluate(T0 + H, changed_since=T0 + H)
    assert (r.alerts_evaluated, r.unmatched) == (2, 1)
    assert w.state(safe)[0] is False
    assert w.conn.execute("select count(*) from offer_risk_scores where offer_id = %s", (unscored,)).fetchone() == (0,)


def test_allowed_blocked_and_household_blocked_shops(w, hh):
    product = w.product()
    s1, s2, s3 = w.shop(), w.shop(), w.shop()
    o1 = w.offer(product, s1, "10.00")
    o2 = w.offer(product, s2, "20.00")
    o3 = w.offer(product, s3, "30.00")
    allowed = w.alert(hh, "TARGET_PRICE", {"target": 100}, product=product, allowed_shop_ids=[s2, s3])
    blocked = w.alert(hh, "TARGET_PRICE", {"target": 100}, product=product, blocked_shop_ids=[s1])
    plain = w.alert(hh, "TARGET_PRICE", {"target": 100}, product=product)
    other_hh = w.household()
    w.conn.execute("insert into household_profiles (household_id, blocked_shop_ids) values (%s, %s)",
                   (other_hh, [s1, s2]))
    house_blocked = w.alert(other_hh, "TARGET_PRICE", {"target": 100}, product=product)
    house_and_alert = w.alert(other_hh, "TARGET_PRICE", {"target": 100}, product=product, blocked_shop_ids=[s3])
    w.evaluate(T0)
    assert [e[0] for e in w.events(allowed)] == [o2]
    assert [e[0] for e in w.events(blocked)] == [o2]
    assert [e[0] for e in w.events(plain)] == [o1]
    assert [e[0] for e in w.events(house_blocked)] == [o3]
    assert w.events(house_and_alert) == []


def test_inactive_shop_and_offer_and_unavailable_offers_are_ineligible(w, hh):
    product = w.product()
    w.offer(product, w.shop(active=False), "10.00")
    inactive = w.offer(product, w.shop(), "11.00")
    w.conn.execute("update offers set active = false where id = %s", (inactive,))
    w.offer(product, w.shop(), "12.00", availability="discontinued")
    w.offer(product, w.shop(), "13.00", availability="out_of_stock")
    backorder = w.offer(product, w.shop(), "14.00", availability="backorder")
    alert = w.alert(hh, "TARGET_PRICE", {"target": 100}, product=product)
    restock = w.alert(hh, "BACK_IN_STOCK", {}, product=product)
    w.evaluate(T0)
    assert [e[0] for e in w.events(alert)] == [backorder]
    assert w.events(restock) == []


def test_currency_mismatch_never_matches(w, hh):
    product = w.product()
    usd = w.offer(product, w.shop(), "10.00", currency="USD")
    brl = w.offer(product, w.shop(), "90.00")
    alert = w.alert(hh, "TARGET_PRICE", {"target": 100}, product=product)
    usd_alert = w.alert(hh, "TARGET_PRICE", {"target": 100}, product=product, currency="USD")
    w.evaluate(T0)
    assert [e[0] for e in w.events(alert)] == [brl]
    assert [(e[0], e[1]) for e in w.events(usd_alert)] == [(usd, D("10.00"))]
    assert w.payloads(usd_alert)[0]["currency"] == "USD"


def test_product_level_picks_the_cheapest_eligible_offer_ties_to_lowest_id(w, hh):
    product = w.product()
    first = w.offer(product, w.shop(), "75.00")
    second = w.offer(product, w.shop(), "75.00")
    w.offer(product, w.shop(), "70.00", bucket="C")
    w.offer(product, w.shop(), "80.00")
    w.offer(w.product("Other"), w.shop(), "1.00")  # another product
    alert = w.alert(hh, "TARGET_PRICE", {"target": 100}, product=product)
    r = w.evaluate(T0)
    assert (r.matched, r.events_created) == (1, 1)  # at most one event per alert and evaluation
    assert w.events(alert) == [(first, D("75.00"), key(alert, first, "75.00"))]
    assert second > first


# ---------------------------------------------------------------------------- triggered mode
def test_triggered_mode_evaluates_only_alerts_touching_changed_offers(w, hh):
    p1, p2, p3 = w.product(), w.product(), w.product()
    o1 = w.offer(p1, w.shop(), "200.00")
    o2 = w.offer(p2, w.shop(), "200.00")
    w.offer(p3, w.shop(), "200.00")
    o3b = w.offer(p3, w.shop(), "90.00", bucket=None)  # unscored: ineligible until scored
    by_offer = w.alert(hh, "TARGET_PRICE", {"target": 100}, offer=o1)
    by_product = w.alert(hh, "TARGET_PRICE", {"target": 100}, product=p2)
    scored_later = w.alert(hh, "TARGET_PRICE", {"target": 100}, product=p3)
    untouched = w.alert(hh, "TARGET_PRICE", {"target": 300}, offer=o2)  # matches, but o2 unchanged later
    assert w.evaluate(T0).events_created == 1  # `untouched`
    since = T0 + H
    w.set_offer(o1, since, price="99.00")
    w.set_offer(o2, since - timedelta(minutes=1), price="98.00")  # before the batch: not a trigger
    w.score(o3b, "A", at=since)
    r = w.evaluate(since + timedelta(minutes=5), changed_since=since)
    assert (r.mode, r.alerts_evaluated, r.matched, r.events_created) == ("triggered", 2, 2, 2)
    assert [e[0] for e in w.events(by_offer)] == [o1]
    assert [e[0] for e in w.events(scored_later)] == [o3b]
    assert w.events(by_product) == [] and len(w.events(untouched)) == 1
    row = w.conn.execute("select mode, changed_since, alerts_evaluated, matched, events_created, counts"
                         " from alert_evaluations order by id desc limit 1").fetchone()
    assert row[:5] == ("triggered", since, 2, 2, 2)
    assert row[5]["by_type"] == {"TARGET_PRICE": 2} and row[5]["rearmed"] == 2
    # a full run sees the p2 change too
    r = w.evaluate(since + H)
    assert (r.mode, r.alerts_evaluated, r.events_created) == ("full", 4, 2)  # by_product 98.00; untouched 98.00


def test_triggered_mode_takes_new_alerts_baselines_and_first_matches(w, hh):
    p1, p2 = w.product(), w.product()
    o1 = w.offer(p1, w.shop(), "200.00")
    w.offer(p2, w.shop(), "150.00")
    old = w.alert(hh, "TARGET_PRICE", {"target": 300}, offer=o1)
    assert w.evaluate(T0).events_created == 1
    newest_seen = old
    # created after the last trigger, prices unchanged: a first match at creation, and a
    # PERCENT_DROP whose baseline is the price when it was created
    at_creation = w.alert(hh, "TARGET_PRICE", {"target": 250}, offer=o1)
    drop = w.alert(hh, "PERCENT_DROP", {"percent": 10}, product=p2)
    r = w.evaluate(T0 + H, changed_since=T0 + H, new_alerts_after=newest_seen)
    assert (r.mode, r.alerts_evaluated, r.events_created, r.baselines_set) == ("triggered", 2, 1, 1)
    assert [e[0] for e in w.events(at_creation)] == [o1]
    assert w.state(drop)[-1] == Decimal("150.00")
    assert len(w.events(old)) == 1  # not re-evaluated
    # without new_alerts_after, a triggered run with nothing changed evaluates nothing
    assert w.evaluate(T0 + 2 * H, changed_since=T0 + 2 * H).alerts_evaluated == 0


# --------------------------------------------------------------------------- households / RLS
def test_events_carry_their_own_household(w, conn):
    ha, hb = w.household(), w.household()
    product = w.product()
    w.offer(product, w.shop(), "10.00")
    alert_a = w.alert(ha, "TARGET_PRICE", {"target": 20}, product=product)
    alert_b = w.alert(hb, "TARGET_PRICE", {"target": 20}, product=product)
    w.evaluate(T0)
    rows = conn.execute("select alert_id, household_id::text, payload ->> 'household_id' from alert_events"
                        " order by alert_id").fetchall()
    assert rows == [(alert_a, ha, ha), (alert_b, hb, hb)]
    user_a = conn.execute("select user_id::text from household_members where household_id = %s",
                          (ha,)).fetchone()[0]
    with conn.transaction(force_rollback=True):  # household A's member sees A's event only (RLS)
        conn.execute("set local role authenticated")
        conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps({"sub": user_a}),))
        assert conn.execute("select alert_id from alert_events").fetchall() == [(alert_a,)]


def test_the_pipeline_role_can_evaluate_and_app_users_cannot_touch_state(w, conn, hh):
    product = w.product()
    w.offer(product, w.shop(), "10.00")
    alert = w.alert(hh, "PERCENT_DROP", {"percent": 10}, product=product)
    w.alert(hh, "TARGET_PRICE", {"target": 20}, product=product)
    with conn.transaction(force_rollback=True):
        conn.execute("set local role smartbuy_pipeline")
        r = evaluate_alerts(conn, now=T0, partition_key="p", run_id=None)
        assert (r.events_created, r.baselines_set) == (1, 1)
    user = conn.execute("select user_id::text from household_members where household_id = %s",
                        (hh,)).fetchone()[0]
    for column in ("matched = true", "episode = 5", "notified_episode = 1", "last_notified_offer_id = 1",
                   "state_changed_at = now()", "baseline_price = 1"):
        with conn.transaction(force_rollback=True):
            conn.execute("set local role authenticated")
            conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps({"sub": user}),))
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(f"update alerts set {column} where id = %s", (alert,))
    with conn.transaction(force_rollback=True):
        conn.execute("set local role authenticated")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("select * from alert_evaluations")
    for role in ("smartbuy_ops", "smartbuy_analyst"):
        with conn.transaction(force_rollback=True):
            conn.execute(f"set local role {role}")
            conn.execute("select * from alert_evaluations")
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute("insert into alert_evaluations (partition_key, mode, evaluated_at, started_at,"
                             " finished_at, alerts_evaluated, matched, events_created)"
                             " values ('x', 'full', now(), now(), now(), 0, 0, 0)")


# ------------------------------------------------------------------------ only changed rows
def test_evaluation_updates_only_alerts_whose_state_changes(w, hh):
    product = w.product()
    w.offer(product, w.shop(), "50.00")
    matching = w.alert(hh, "TARGET_PRICE", {"target": 60}, product=product)
    for _ in range(3):
        w.alert(hh, "TARGET_PRICE", {"target": 10}, product=product)
    w.evaluate(T0)
    xmins = dict(w.conn.execute("select id, xmin::text from alerts").fetchall())
    r = w.evaluate(T0 + H)
    assert (r.alerts_evaluated, r.matched, r.alerts_updated) == (4, 1, 0)
    assert dict(w.conn.execute("select id, xmin::text from alerts").fetchall()) == xmins
    assert w.conn.execute("select array_agg(id) from alerts where state_changed_at is not null").fetchone() == (
        [matching],)


# ------------------------------------------------------------------------ params validation
@pytest.mark.parametrize(("alert_type", "params", "valid", "field"), PARAMS_CASES)
def test_sql_params_check_agrees_with_python(conn, alert_type, params, valid, field):
    sql_valid = conn.execute("select public.fn_alert_params_valid(%s, %s::jsonb)", (alert_type, params)).fetchone()[0]
    assert sql_valid is valid
    assert is_valid_params(alert_type, json.loads(params)) is valid


def test_invalid_params_are_rejected_by_the_check_constraint(w, conn, hh):
    product = w.product()
    for alert_type, params in [("TARGET_PRICE", '{"target": -1}'), ("PERCENT_DROP", '{"percent": 100}'),
                               ("NEW_LOW", '{"days": 0}'), ("BACK_IN_STOCK", '{"x": 1}'),
                               ("TOTAL_PRICE", "{}")]:
        with pytest.raises(errors.CheckViolation) as exc:
            conn.execute("insert into alerts (household_id, alert_type, product_id, params) values (%s, %s, %s, %s)",
                         (hh, alert_type, product, params))
        assert exc.value.diag.constraint_name == "alerts_params_valid"
    alert = w.alert(hh, "TARGET_PRICE", {"target": 10}, product=product)
    with pytest.raises(errors.CheckViolation) as exc:
        conn.execute("update alerts set params = '{\"target\": \"abc\"}' where id = %s", (alert,))
    assert exc.value.diag.constraint_name == "alerts_params_valid"
    with pytest.raises(errors.CheckViolation) as exc:  # changing the type must bring matching params
        conn.execute("update alerts set alert_type = 'PERCENT_DROP' where id = %s", (alert,))
    assert exc.value.diag.constraint_name == "alerts_params_valid"
    volatility = conn.execute("select provolatile, proconfig from pg_proc"
                              " where oid = 'public.fn_alert_params_valid(text, jsonb)'::regprocedure").fetchone()
    assert volatility == ("i", ["search_path=\"\""])


# --------------------------------------------------------------------------------- atomicity
def test_rollback_leaves_neither_events_nor_evaluation_nor_state(w, conn, hh):
    product = w.product()
    w.offer(product, w.shop(), "10.00")
    alert = w.alert(hh, "TARGET_PRICE", {"target": 20}, product=product)
    with conn.transaction(force_rollback=True):
        r = evaluate_alerts(conn, now=T0, partition_key="2026-03-10-12:00", run_id="r1")
        assert r.events_created == 1
        assert conn.execute("select count(*) from alert_evaluations").fetchone() == (1,)
    assert conn.execute("select (select count(*) from alert_events), (select count(*) from alert_evaluations)"
                        ).fetchone() == (0, 0)
    assert w.state(alert)[0] is False
    r = w.evaluate(T0)
    assert r.events_created == 1
    row = conn.execute("select partition_key, mode, run_id, changed_since, evaluated_at, alerts_evaluated, matched,"
                       " events_created, counts, finished_at >= started_at from alert_evaluations").fetchone()
    assert row == ("2026-03-10-12:00", "full", "test", None, T0, 1, 1, 1,
                   {**{k: 0 for k in AlertEvaluation.COUNTERS}, "alerts_evaluated": 1, "matched": 1,
                    "events_created": 1, "rearmed": 1, "alerts_updated": 1, "by_type": {"TARGET_PRICE": 1}}, True)


def test_metadata_is_flat_and_numeric(w, hh):
    product = w.product()
    w.offer(product, w.shop(), "10.00")
    w.alert(hh, "TARGET_PRICE", {"target": 20}, product=product)
    meta = w.evaluate(T0).metadata()
    assert all(isinstance(v, int | float) and not isinstance(v, bool) for v in meta.values())
    assert (meta["events_created"], meta["events_target_price"], meta["events_new_low"]) == (1, 1, 0)
    assert set(AlertEvaluation.COUNTERS) <= set(meta) and "duration_s" in meta
