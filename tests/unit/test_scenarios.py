"""Scripted price trajectories and the demo / scale catalogs of the simulator."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from smartbuy_pipeline.domain.gtin import is_valid_gtin
from smartbuy_pipeline.domain.types import Availability
from smartbuy_pipeline.simulator.scenarios import (
    BLACK_FRIDAY_2026,
    DEMO_BF_FAKE,
    DEMO_BF_FAKE_FEED,
    DEMO_FLAPPING,
    DEMO_GENUINE_DROP,
    DEMO_SCAM,
    MAX_PRICE,
    MIN_PRICE,
    SimOffer,
    TrajectoryKind,
    demo_scenario,
    format_brl,
    iter_hours,
    price_point,
    price_state,
    scale_scenario,
)

D = Decimal


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture(scope="module")
def demo():
    return demo_scenario()


# -- determinism --------------------------------------------------------------------------------


def test_same_offer_and_hour_give_the_same_state(demo) -> None:
    again = demo_scenario()
    assert list(again.offers) == list(demo.offers)
    for offer in demo.offers:
        a = price_state(offer, utc(2026, 11, 27, 5, 0))
        b = price_state(offer, utc(2026, 11, 27, 5, 59, 59))  # same hour
        c = price_state(again.offer(offer.key), utc(2026, 11, 27, 5, 30))
        assert a == b == c


def test_states_do_not_depend_on_the_process_hash_seed(demo) -> None:
    code = (
        "from datetime import datetime, UTC;"
        "from smartbuy_pipeline.simulator.scenarios import demo_scenario, price_state;"
        "sc = demo_scenario();"
        "print([(o.key, str(price_state(o, datetime(2026, 11, 20, 7, tzinfo=UTC)).price)) "
        "for o in sc.offers])"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            env={"PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outs) == 1
    here = [(o.key, str(price_state(o, utc(2026, 11, 20, 7)).price)) for o in demo.offers]
    assert outs.pop().strip() == repr(here)


def test_naive_datetimes_are_refused(demo) -> None:
    with pytest.raises(ValueError):
        price_state(demo.offers[0], datetime(2026, 11, 27, 5))


def test_non_utc_timezones_are_converted(demo) -> None:
    from zoneinfo import ZoneInfo

    offer = demo.offer(DEMO_BF_FAKE)
    brt = datetime(2026, 11, 27, 0, 0, tzinfo=ZoneInfo("America/Sao_Paulo"))  # = 03:00 UTC
    assert price_state(offer, brt) == price_state(offer, utc(2026, 11, 27, 3))


# -- trajectories with exact figures ------------------------------------------------------------


def test_black_friday_fake_trajectory(demo) -> None:
    offer = demo.offer(DEMO_BF_FAKE)
    assert offer.trajectory is TrajectoryKind.BLACK_FRIDAY_FAKE
    assert demo.shop_of(offer).slug == "mega-tech"
    assert BLACK_FRIDAY_2026 == utc(2026, 11, 27, 3)

    before = price_state(offer, utc(2026, 10, 23, 2))
    assert (before.card_price, before.price, before.reference_price) == (
        D("2899.00"), D("2754.05"), None)
    assert before.installments == 10 and before.installment_amount == D("289.90")

    raised = price_state(offer, utc(2026, 10, 23, 3))  # 35 days before Black Friday
    assert (raised.card_price, raised.price, raised.reference_price) == (
        D("3619.00"), D("3438.05"), None)
    assert raised.card_price >= before.card_price * D("1.20")  # raised by 20 %+
    assert raised.since == utc(2026, 10, 23, 3)
    assert price_state(offer, utc(2026, 11, 27, 2)).card_price == D("3619.00")

    sale = price_state(offer, utc(2026, 11, 27, 3))
    assert (sale.card_price, sale.price, sale.reference_price) == (
        D("2899.00"), D("2754.05"), D("4349.00"))
    assert sale.since == utc(2026, 11, 27, 3) and sale.until == utc(2026, 12, 1, 3)
    # the "de" is well above anything charged (any price kind) in the 30 days before the sale
    charged = [
        p
        for h in iter_hours(utc(2026, 10, 28, 3), utc(2026, 11, 27, 3))
        for s in [price_state(offer, h)]
        for p in (s.price, s.card_price)
    ]
    assert sale.reference_price > max(charged) * D("1.15")
    # and the "sale" price is simply the original level
    assert sale.card_price == before.card_price

    after = price_state(offer, utc(2026, 12, 1, 3))
    assert (after.card_price, after.reference_price) == (D("2899.00"), None)


def test_black_friday_anchor_is_configurable(demo) -> None:
    from dataclasses import replace

    offer = replace(demo.offer(DEMO_BF_FAKE), anchor=utc(2025, 11, 28, 3))
    assert price_state(offer, utc(2025, 11, 28, 2)).card_price == D("3619.00")
    assert price_state(offer, utc(2025, 11, 28, 3)).reference_price == D("4349.00")
    assert price_state(offer, utc(2026, 11, 27, 3)).reference_price is None


def test_black_friday_fake_through_the_feed_shop(demo) -> None:
    offer = demo.offer(DEMO_BF_FAKE_FEED)
    assert demo.shop_of(offer).source_kind == "merchant_feed"
    assert offer.cash_discount_pct == 0
    assert price_state(offer, utc(2026, 11, 1)).price == D("2749.00")
    sale = price_state(offer, utc(2026, 11, 28))
    assert (sale.price, sale.reference_price) == (D("2199.00"), D("3299.00"))


def test_scam_offer(demo) -> None:
    offer = demo.offer(DEMO_SCAM)
    shop = demo.shop_of(offer)
    assert (shop.slug, shop.reputation_score, shop.created_days_ago) == ("super-ofertas-br", 15, 10)
    product = demo.product_of(offer)
    assert product.base_price == D("5999.00")
    for at in (utc(2026, 6, 1), utc(2026, 11, 27, 3), utc(2027, 1, 1)):
        st = price_state(offer, at)
        assert (st.price, st.card_price, st.reference_price) == (
            D("2399.00"), D("2399.00"), D("5999.00"))
        assert st.installments == 12 and st.installment_amount == D("199.92")
    # ~40 % of the market median of the other shops
    others = sorted(
        price_state(o, utc(2026, 11, 27, 3)).card_price
        for o in demo.offers
        if o.product_key == offer.product_key and o.key != offer.key
    )
    median = others[len(others) // 2]
    assert D("0.35") < D("2399.00") / median < D("0.45")


def test_genuine_drop(demo) -> None:
    offer = demo.offer(DEMO_GENUINE_DROP)
    before = price_state(offer, utc(2026, 11, 20, 12, 59))
    assert (before.card_price, before.price, before.reference_price) == (
        D("3799.00"), D("3609.05"), None)
    drop = price_state(offer, utc(2026, 11, 20, 13))
    assert (drop.card_price, drop.price, drop.reference_price) == (
        D("2849.00"), D("2706.55"), D("3799.00"))  # an honest "de": charged for months
    assert drop.since == utc(2026, 11, 20, 13)
    later = price_state(offer, utc(2026, 12, 20, 13))  # lasting; the "de" goes after 30 days
    assert (later.card_price, later.reference_price) == (D("2849.00"), None)
    assert price_state(offer, utc(2027, 3, 1)).card_price == D("2849.00")


def test_flapping_alternates_every_few_hours_and_hides_the_price(demo) -> None:
    offer = demo.offer(DEMO_FLAPPING)
    assert offer.flap_hours == 3
    states = [price_state(offer, h) for h in iter_hours(utc(2026, 11, 26), utc(2026, 11, 28))]
    runs: list[tuple[Availability, int]] = []
    for st in states:
        if runs and runs[-1][0] is st.availability:
            runs[-1] = (st.availability, runs[-1][1] + 1)
        else:
            runs.append((st.availability, 1))
        if st.availability is Availability.OUT_OF_STOCK:
            assert st.price is None and st.card_price is None and st.reference_price is None
        else:
            assert st.price is not None
    assert all(n == 3 for _, n in runs[1:-1])  # whole runs of exactly 3 hours
    assert len(runs) >= 15


def test_steady_is_constant(demo) -> None:
    offer = next(o for o in demo.offers if o.trajectory is TrajectoryKind.STEADY)
    figures = {price_state(offer, utc(2026, m, 15, 12)).price for m in range(1, 13)}
    assert len(figures) == 1


def test_drift_is_slow_and_bounded(demo) -> None:
    offer = next(o for o in demo.offers if o.trajectory is TrajectoryKind.DRIFT)
    hours = list(iter_hours(utc(2026, 9, 1), utc(2026, 12, 1)))
    cards = [price_state(offer, h).card_price for h in hours]
    changes = [i for i in range(1, len(cards)) if cards[i] != cards[i - 1]]
    assert len(changes) > 20  # it moves ...
    assert all((hours[i].hour - offer.phase_hours) % 24 == 0 for i in changes)  # once a day
    for i in changes:  # ... by at most ~1 % a day (4 % a week) ...
        assert abs(cards[i] / cards[i - 1] - 1) < D("0.015")
    lo, hi = min(cards), max(cards)  # ... within +-8 % of the base (+ price-point rounding)
    assert lo >= offer.base_price * D("0.91") and hi <= offer.base_price * D("1.09")
    weekly = [abs(cards[i + 168] / cards[i] - 1) for i in range(0, len(cards) - 168, 24)]
    assert max(weekly) <= D("0.06")


def test_hourly_steps_are_deterministic(demo) -> None:
    offer = demo.offer(DEMO_BF_FAKE)
    for minute in (0, 1, 30, 59):
        assert price_state(offer, utc(2026, 11, 27, 2, minute)).reference_price is None
        assert price_state(offer, utc(2026, 11, 27, 3, minute)).reference_price == D("4349.00")


# -- derived price kinds ------------------------------------------------------------------------


def test_price_variants_are_derived_consistently(demo) -> None:
    for offer in demo.offers:
        for at in (utc(2026, 10, 1), utc(2026, 11, 27, 4), utc(2026, 12, 10)):
            st = price_state(offer, at)
            assert st.currency == "BRL"
            assert st.freight == st.freight.quantize(D("0.01")) and st.freight >= 0
            if st.price is None:
                continue
            for amount in (st.price, st.card_price, st.installment_amount, st.reference_price):
                if amount is not None:
                    assert isinstance(amount, Decimal)
                    assert amount == amount.quantize(D("0.01"))
            assert MIN_PRICE * D("0.9") <= st.price <= MAX_PRICE
            assert st.card_price is not None and st.installments in (10, 12)
            shop = demo.shop_of(offer)
            if shop.source_kind == "page" and offer.trajectory is not TrajectoryKind.SCAM:
                assert 5 <= offer.cash_discount_pct <= 10
                assert st.price < st.card_price
            assert st.price == (st.card_price * (100 - offer.cash_discount_pct) / 100).quantize(
                D("0.01"))
            assert abs(st.installment_amount * st.installments - st.card_price) <= D("0.06")
            if st.reference_price is not None:
                assert st.reference_price > st.card_price


def test_price_points_and_brl_format() -> None:
    assert price_point(D("2623.75")) == D("2619.00")
    assert price_point(D("129.43")) == D("128.90")
    assert price_point(D("5")) == MIN_PRICE
    assert price_point(D("20000")) == MAX_PRICE
    assert format_brl(D("2599")) == "R$ 2.599,00"
    assert format_brl(D("209.9")) == "R$ 209,90"
    assert format_brl(D("1234567.5")) == "R$ 1.234.567,50"


# -- demo catalog -------------------------------------------------------------------------------


def test_demo_catalog_covers_everything(demo) -> None:
    assert 6 <= len(demo.shops) <= 8
    assert 10 <= len(demo.products) <= 14
    assert 36 <= len(demo.offers) <= 48
    assert {s.source_kind for s in demo.shops} == {"page", "merchant_feed", "marketplace_api"}
    page_variants = {s.page_variant for s in demo.shops if s.source_kind == "page"}
    assert page_variants == {"jsonld", "opengraph", "microdata", "mixed"}
    assert {s.jsonld_style for s in demo.shops if s.page_variant in ("jsonld", "mixed")} == {
        "offer", "graph", "aggregate"}
    assert {o.trajectory for o in demo.offers} == set(TrajectoryKind)
    low = [s for s in demo.shops if s.reputation_score <= 20]
    assert [(s.reputation_score, s.created_days_ago) for s in low] == [(15, 10)]
    assert any(s.faults for s in demo.shops)  # a scripted 503 burst
    for key in (DEMO_BF_FAKE, DEMO_SCAM, DEMO_GENUINE_DROP, DEMO_FLAPPING):
        assert key in demo.notes


def test_demo_gtins_and_keys(demo) -> None:
    gtins = [p.gtin for p in demo.products]
    assert all(len(g) == 13 and g.startswith("789") and is_valid_gtin(g) for g in gtins)
    assert len(set(gtins)) == len(gtins)
    assert len({o.key for o in demo.offers}) == len(demo.offers)
    assert len({o.external_id for o in demo.offers}) == len(demo.offers)
    for o in demo.offers:
        assert o.shop_slug in demo.shop_by_slug and o.product_key in demo.product_by_key
        if demo.shop_of(o).source_kind == "marketplace_api":
            assert o.external_id.startswith("MLB") and o.external_id[3:].isdigit()


def test_every_demo_product_is_sold_by_at_least_three_shops(demo) -> None:
    shops_of: dict[str, set[str]] = defaultdict(set)
    for o in demo.offers:
        shops_of[o.product_key].add(o.shop_slug)
    assert set(shops_of) == set(demo.product_by_key)
    assert all(len(s) >= 3 for s in shops_of.values()), shops_of


def test_catalog_rows(demo) -> None:
    base = "http://127.0.0.1:9999"
    now = utc(2026, 11, 26, 12)
    rows = demo.catalog_rows(base, now=now)
    shops = {r["domain"]: r for r in rows["shops"]}
    assert len(shops) == len(demo.shops)
    for r in rows["shops"]:
        assert r["check_interval_seconds"] == 3600 and r["allow_private_network"] is True
        assert r["locale"] == "pt_BR" and r["currency"] == "BRL"
        assert r["created_at"].tzinfo is not None
    scam_shop = shops["superofertas-br.example.com"]
    assert scam_shop["created_at"] == now - timedelta(days=10)
    feed_shop = shops["atacadoeletronicos.example.com.br"]
    assert feed_shop["feed_url"] == f"{base}/s/atacado-eletronicos/feed.xml"
    assert shops["mercadosim.example.com.br"]["api_base_url"] == f"{base}/api"
    assert all(len(p["gtin"]) == 13 for p in rows["products"])
    by_key = {r["offer_key"]: r for r in rows["offers"]}
    assert by_key[DEMO_BF_FAKE]["locator"] == f"{base}/s/mega-tech/p/{DEMO_BF_FAKE}"
    assert by_key[DEMO_BF_FAKE]["source_kind"] == "page"
    feed_row = by_key[DEMO_BF_FAKE_FEED]
    assert feed_row["source_kind"] == "merchant_feed"
    assert feed_row["locator"] == demo.offer(DEMO_BF_FAKE_FEED).external_id
    api_rows = [r for r in rows["offers"] if r["source_kind"] == "marketplace_api"]
    assert api_rows and all(r["locator"].startswith("MLB") for r in api_rows)
    assert {r["product_gtin"] for r in rows["offers"]} == {p["gtin"] for p in rows["products"]}


# -- scale catalog ------------------------------------------------------------------------------


def test_scale_scenario_is_consistent() -> None:
    # Its speed is the benchmarks' business (bench/bench_acquisition.py), not a timed test's:
    # a 2 s bound failed on a loaded CI machine.
    sc = scale_scenario(100_000, seed=3)
    offers = sc.offers
    assert len(offers) == 100_000
    assert isinstance(offers[0], SimOffer)
    assert len({o.key for o in offers[:5000]}) == 5000
    assert {o.trajectory for o in offers} == set(TrajectoryKind)
    assert {s.source_kind for s in sc.shops} == {"page", "merchant_feed", "marketplace_api"}
    assert all(is_valid_gtin(p.gtin) for p in sc.products[:1000])
    # each product at 5 distinct shops
    shops_of: dict[str, set[str]] = defaultdict(set)
    for o in offers[:50_000]:
        shops_of[o.product_key].add(o.shop_slug)
    for o in offers[50_000:]:
        shops_of[o.product_key].add(o.shop_slug)
    assert min(len(s) for s in shops_of.values()) == 5
    # deterministic per seed
    again = scale_scenario(100_000, seed=3)
    assert again.offers[12345] == offers[12345]
    assert scale_scenario(1000, seed=4).offers[5] != scale_scenario(1000, seed=3).offers[5]
    st = price_state(offers[777], utc(2026, 11, 27, 3))
    assert st.currency == "BRL"
