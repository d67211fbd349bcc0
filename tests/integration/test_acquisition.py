"""Source adapters end to end against the real simulated marketplace over HTTP."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from smartbuy_pipeline.acquisition.http import FetchEngine, FetchSettings, ParsePool
from smartbuy_pipeline.acquisition.politeness import ShopPolicy
from smartbuy_pipeline.acquisition.sources import Acquired, FeedState, NotModified, OfferTarget, ShopTarget, acquire
from smartbuy_pipeline.domain.types import (
    Availability,
    FailureReason,
    FetchFailure,
    Money,
    Observation,
    ObservationStatus,
    SourceKind,
)
from smartbuy_pipeline.simulator.scenarios import DEMO_BF_FAKE, DEMO_SCAM, Fault, FaultKind, demo_scenario
from smartbuy_pipeline.simulator.server import SimulatorServer

AT = datetime(2026, 11, 27, 12, tzinfo=UTC)  # Black Friday: the fake discount is on show


@pytest.fixture(scope="module")
def scenario():
    return demo_scenario()


@pytest.fixture()
def sim(scenario):
    with SimulatorServer(scenario) as server:
        server.clock.set(AT)
        yield server


@pytest.fixture(scope="module")
def pool():
    with ParsePool(2) as p:
        yield p


def targets_for(scenario, base_url: str):
    """Shops and offers as the pipeline reads them from the database (ids by position)."""
    rows = scenario.catalog_rows(base_url)
    shops: dict[int, ShopTarget] = {}
    shop_id_by_domain: dict[str, int] = {}
    for i, s in enumerate(rows["shops"], start=1):
        shop_id_by_domain[s["domain"]] = i
        shops[i] = ShopTarget(
            policy=ShopPolicy(i, s["max_concurrent_requests"], s["min_interval_ms"] / 1000, True),
            currency=s["currency"], locale=s["locale"], feed_url=s.get("feed_url"),
            api_base_url=s.get("api_base_url"),
        )
    offers = [
        OfferTarget(offer_id=i, shop_id=shop_id_by_domain[o["shop_domain"]],
                    source_kind=SourceKind(o["source_kind"]), locator=o["locator"])
        for i, o in enumerate(rows["offers"], start=1)
    ]
    keys = {i: o["offer_key"] for i, o in enumerate(rows["offers"], start=1)}
    return shops, offers, keys


def run(offers, shops, pool, *, now=AT, feed_states=None) -> dict[int, Acquired]:
    async def go():
        settings = FetchSettings(backoff_base=0.01, backoff_cap=0.05)
        async with FetchEngine(settings) as engine:
            return {a.offer_id: a async for a in acquire(offers, shops, engine=engine, pool=pool, now=now,
                                                           feed_states=feed_states)}

    return asyncio.run(go())


def test_every_source_kind_yields_the_simulated_price(sim, scenario, pool):
    shops, offers, keys = targets_for(scenario, sim.base_url)
    results = run(offers, shops, pool)
    assert set(results) == {o.offer_id for o in offers}, "every offer gets exactly one outcome"
    kinds_seen = set()
    for offer in offers:
        state = scenario.state(keys[offer.offer_id], AT)
        outcome = results[offer.offer_id].outcome
        if keys[offer.offer_id] == "iphone-15-loja-vitoria":
            # Scripted bot wall on its first requests: a typed failure, never a price.
            assert isinstance(outcome, FetchFailure) and outcome.reason is FailureReason.BOT_WALL
            continue
        assert isinstance(outcome, Observation), (keys[offer.offer_id], outcome)
        kinds_seen.add(offer.source_kind)
        if state.price is None:
            # Pages show no price while out of stock; feeds and the items API keep listing one.
            assert outcome.availability is Availability.OUT_OF_STOCK, keys[offer.offer_id]
            if offer.source_kind is SourceKind.PAGE:
                assert outcome.price is None
        else:
            assert outcome.price == Money(state.price, "BRL"), keys[offer.offer_id]
        expected_ref = Money(state.reference_price, "BRL") if state.reference_price else None
        assert outcome.reference_price == expected_ref, keys[offer.offer_id]
    assert kinds_seen == set(SourceKind)


def test_named_offers_show_the_fake_discount_and_the_scam(sim, scenario, pool):
    shops, offers, keys = targets_for(scenario, sim.base_url)
    by_key = {keys[o.offer_id]: o for o in offers}
    picked = [by_key[DEMO_BF_FAKE], by_key[DEMO_SCAM]]
    results = run(picked, shops, pool)
    bf = results[by_key[DEMO_BF_FAKE].offer_id].outcome
    scam = results[by_key[DEMO_SCAM].offer_id].outcome
    # "de R$ 4.349,00 por R$ 2.899,00" cash price 5% off by Pix.
    assert bf.reference_price == Money(Decimal("4349.00"), "BRL")
    assert bf.price == Money(scenario.state(DEMO_BF_FAKE, AT).price, "BRL")
    assert {q["kind"] for q in bf.details["quotes"]} >= {"card", "installment"}
    assert scam.price == Money(Decimal("2399.00"), "BRL")
    assert scam.status is ObservationStatus.ACCEPTED


def test_second_run_with_validators_is_not_modified(sim, scenario, pool):
    shops, offers, keys = targets_for(scenario, sim.base_url)
    first = run(offers, shops, pool)
    feed_states: list[FeedState] = []
    run(offers, shops, pool, feed_states=feed_states)  # collect feed validators
    assert feed_states, "feed shops report their ETag / Last-Modified"
    shops2 = dict(shops)
    for fs in feed_states:
        s = shops2[fs.shop_id]
        shops2[fs.shop_id] = ShopTarget(s.policy, s.currency, s.locale, s.price_kind, s.feed_url,
                                        s.api_base_url, fs.etag, fs.last_modified)
    page_offers = [
        OfferTarget(o.offer_id, o.shop_id, o.source_kind, o.locator, etag=first[o.offer_id].etag,
                    last_modified=first[o.offer_id].last_modified)
        for o in offers if o.source_kind in (SourceKind.PAGE, SourceKind.MERCHANT_FEED)
        and isinstance(first[o.offer_id].outcome, Observation)
    ]
    sim.reset_stats()
    second = run(page_offers, shops2, pool)
    not_modified = [a for a in second.values() if isinstance(a.outcome, NotModified)]
    assert len(not_modified) == len(page_offers)
    assert sum(sim.stats(s)["not_modified"] for s in sim.all_stats()) >= 1


def test_a_failed_fetch_is_a_typed_failure_never_a_price(sim, scenario, pool):
    shops, offers, keys = targets_for(scenario, sim.base_url)
    page_offer = next(o for o in offers if o.source_kind is SourceKind.PAGE and keys[o.offer_id] != "iphone-15-loja-vitoria")
    # Not the feed's first item: the malformed feed breaks right after its first item.
    feed_offer = [o for o in offers if o.source_kind is SourceKind.MERCHANT_FEED][-1]
    api_offer = next(o for o in offers if o.source_kind is SourceKind.MARKETPLACE_API)
    sim.set_faults(offer=keys[page_offer.offer_id], faults=[Fault(FaultKind.SERVER_ERROR_BURST, count=100)])
    feed_shop = scenario.shop_of(scenario.offer(keys[feed_offer.offer_id])).slug
    sim.set_faults(shop=feed_shop, faults=[Fault(FaultKind.MALFORMED, count=100)])
    results = run([page_offer, feed_offer, api_offer], shops, pool)
    page = results[page_offer.offer_id].outcome
    assert isinstance(page, FetchFailure) and page.reason is FailureReason.HTTP_5XX
    assert page_offer.locator in page.detail
    feed = results[feed_offer.offer_id].outcome
    assert isinstance(feed, FetchFailure), feed
    assert feed.reason is FailureReason.PARSE_ERROR and "not reached" in feed.detail
    assert isinstance(results[api_offer.offer_id].outcome, Observation)


def test_politeness_is_measured_at_the_server(sim, scenario, pool):
    shops, offers, keys = targets_for(scenario, sim.base_url)
    # Many requests to one shop: repeat its page offers under fresh ids.
    shop_id, shop = next((sid, s) for sid, s in shops.items() if not s.feed_url and not s.api_base_url)
    own = [o for o in offers if o.shop_id == shop_id]
    strict = ShopTarget(ShopPolicy(shop_id, 2, 0.05, True), shop.currency, shop.locale)
    many = [OfferTarget(10_000 + n, shop_id, SourceKind.PAGE, own[n % len(own)].locator) for n in range(16)]
    slug = scenario.shop_of(scenario.offer(keys[own[0].offer_id])).slug
    sim.reset_stats()
    run(many, {shop_id: strict}, pool)
    stats = sim.stats(slug)
    assert stats["requests"] >= 16
    assert stats["max_in_flight"] <= 2
    starts = sorted(stats["request_starts"])
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    # Measured where the requests arrive: on a loaded machine one delayed arrival can land close
    # to the next (seen: 17 ms), so a single gap proves little. The span of all arrivals cannot
    # shrink by more than one such delay, and the typical gap stays at the interval.
    assert starts[-1] - starts[0] >= (len(starts) - 1) * 0.05 - 0.05
    assert sorted(gaps)[len(gaps) // 2] >= 0.05 - 0.005
