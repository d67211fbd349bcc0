"""The simulated marketplace over real HTTP (in-process server on port 0, aiohttp client).

No database needed. Each test gets a fresh server; scripted faults are cleared unless the test
is about them.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import json
import re
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import brotli
import pytest
from lxml import etree
from selectolax.lexbor import LexborHTMLParser

from smartbuy_pipeline.domain.types import Availability, ExtractionError, FailureReason, PriceKind
from smartbuy_pipeline.simulator import (
    DEMO_BF_FAKE,
    DEMO_BF_FAKE_FEED,
    DEMO_FLAPPING,
    DEMO_GENUINE_DROP,
    DEMO_SCAM,
    Fault,
    FaultKind,
    SimulatorServer,
    demo_scenario,
    format_brl,
    price_state,
    scale_scenario,
)

D = Decimal
G = "{http://base.google.com/ns/1.0}"
ATOM = "{http://www.w3.org/2005/Atom}"
BF_SALE = datetime(2026, 11, 27, 5, tzinfo=UTC)
SCENARIO = demo_scenario()


@pytest.fixture()
def sim():
    with SimulatorServer(SCENARIO) as server:
        server.clear_faults()
        server.clock.set(BF_SALE)
        yield server


@pytest.fixture()
def scripted_sim():
    with SimulatorServer(SCENARIO) as server:
        server.clock.set(BF_SALE)
        yield server


class Resp:
    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


async def _get_many(urls: list[str], headers: dict[str, str] | None = None,
                    decompress: bool = True, limit: int = 100) -> list[Resp]:
    conn = aiohttp.TCPConnector(limit=limit)
    async with aiohttp.ClientSession(connector=conn, auto_decompress=decompress) as s:
        async def one(url: str) -> Resp:
            async with s.get(url, headers=headers or {}) as r:
                return Resp(r.status, r.headers, await r.read())

        return await asyncio.gather(*(one(u) for u in urls))


def get(url: str, headers: dict[str, str] | None = None, decompress: bool = True) -> Resp:
    return asyncio.run(_get_many([url], headers, decompress))[0]


def post_json(url: str, data: dict[str, Any]) -> tuple[int, Any]:
    async def go() -> tuple[int, Any]:
        async with aiohttp.ClientSession() as s:
            async with s.post(url, json=data) as r:
                return r.status, await r.json()

    return asyncio.run(go())


def page_url(sim: SimulatorServer, key: str) -> str:
    return SCENARIO.page_url(sim.base_url, SCENARIO.offer(key))


def in_stock_offer_of(shop: str):
    return next(
        o for o in SCENARIO.offers_of_shop(shop)
        if price_state(o, BF_SALE).availability is Availability.IN_STOCK
    )


def ld_json_docs(html: str) -> list[Any]:
    tree = LexborHTMLParser(html)
    return [json.loads(n.text(), parse_float=D)
            for n in tree.css('script[type="application/ld+json"]')]


def product_node(doc: Any) -> dict[str, Any]:
    if "@graph" in doc:
        return next(n for n in doc["@graph"] if n.get("@type") == "Product")
    return doc


def price_box(html: str) -> dict[str, str]:
    tree = LexborHTMLParser(html)
    return {n.attributes["data-price-kind"]: " ".join(n.text().split())
            for n in tree.css(".price-box span.price")}


def meta(html: str, prop: str) -> str | None:
    node = LexborHTMLParser(html).css_first(f'meta[property="{prop}"]')
    return node.attributes.get("content") if node else None


# -- pages --------------------------------------------------------------------------------------


def _check_price_box(html: str, st) -> None:
    box = price_box(html)
    assert box["cash"] == f"{format_brl(st.price)} no Pix"
    assert box["card"] == f"{format_brl(st.card_price)} no cartão"
    assert box["installment"] == (
        f"{st.installments}x de {format_brl(st.installment_amount)} sem juros")
    if st.reference_price is None:
        assert "reference" not in box
    else:
        assert box["reference"] == f"de {format_brl(st.reference_price)}"
    assert '<small>no Pix</small>' in html


@pytest.mark.parametrize("shop", ["casa-eletro", "mega-tech", "loja-vitoria", "ponto-digital",
                                  "super-ofertas-br", "atacado-eletronicos"])
def test_page_variants_size_structured_data_and_price_block(sim, shop: str) -> None:
    s = SCENARIO.shop_by_slug[shop]
    offer = in_stock_offer_of(shop)
    st = price_state(offer, BF_SALE)
    r = get(SCENARIO.page_url(sim.base_url, offer))
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/html")
    assert 100_000 <= len(r.body) <= 300_000, len(r.body)
    html = r.text
    _check_price_box(html, st)
    product = SCENARIO.product_of(offer)
    price = f"{st.price:.2f}"

    has_ld = 'application/ld+json' in html
    has_og = 'og:price:amount' in html
    has_md = 'itemprop=' in html
    assert (has_ld, has_og, has_md) == {
        "jsonld": (True, False, False), "opengraph": (False, True, False),
        "microdata": (False, False, True), "mixed": (True, True, True),
    }[s.page_variant]

    if has_ld:
        docs = ld_json_docs(html)
        assert len(docs) == 1
        if s.jsonld_style == "graph":
            assert "@graph" in docs[0]
        p = product_node(docs[0])
        assert p["@type"] == "Product" and p["gtin13"] == product.gtin
        assert p["name"] == product.name and p["sku"] == offer.external_id
        o = p["offers"]
        if s.jsonld_style == "aggregate":
            assert o["@type"] == "AggregateOffer" and o["lowPrice"] == price
        else:
            assert o["@type"] == "Offer" and o["price"] == price
        assert o["priceCurrency"] == "BRL"
        assert o["availability"] == "https://schema.org/InStock"
        strike = [x for x in o["priceSpecification"]
                  if x.get("priceType") == "https://schema.org/StrikethroughPrice"]
        if st.reference_price is None:
            assert strike == []
        else:
            assert strike[0]["price"] == f"{st.reference_price:.2f}"
        assert o["shippingDetails"]["shippingRate"]["value"] == f"{st.freight:.2f}"
    if has_og:
        assert meta(html, "og:price:amount") == price
        assert meta(html, "og:price:currency") == "BRL"
        assert meta(html, "product:availability") == "in stock"
        if st.reference_price is not None:
            assert meta(html, "product:original_price:amount") == f"{st.reference_price:.2f}"
    if has_md:
        tree = LexborHTMLParser(html)
        scope = tree.css_first('[itemtype="https://schema.org/Product"]')
        assert scope is not None
        assert scope.css_first('[itemprop="price"]').attributes["content"] == price
        assert scope.css_first('[itemprop="priceCurrency"]').attributes["content"] == "BRL"
        assert scope.css_first('[itemprop="availability"]').attributes["href"] == (
            "https://schema.org/InStock")
        assert scope.css_first('[itemprop="gtin13"]').attributes["content"] == product.gtin


def test_fake_discount_page_at_black_friday(sim) -> None:
    html = get(page_url(sim, DEMO_BF_FAKE)).text
    assert price_box(html) == {
        "reference": "de R$ 4.349,00",
        "cash": "R$ 2.754,05 no Pix",
        "card": "R$ 2.899,00 no cartão",
        "installment": "10x de R$ 289,90 sem juros",
    }
    sim.clock.set(datetime(2026, 11, 1, 12, tzinfo=UTC))
    html = get(page_url(sim, DEMO_BF_FAKE)).text
    assert price_box(html) == {
        "cash": "R$ 3.438,05 no Pix",
        "card": "R$ 3.619,00 no cartão",
        "installment": "10x de R$ 361,90 sem juros",
    }


def test_out_of_stock_page_shows_no_price(sim) -> None:
    offer = SCENARIO.offer(DEMO_FLAPPING)
    hour = next(datetime(2026, 11, 27, h, tzinfo=UTC) for h in range(24)
                if price_state(offer, datetime(2026, 11, 27, h, tzinfo=UTC)).price is None)
    sim.clock.set(hour)
    html = get(page_url(sim, DEMO_FLAPPING)).text
    assert "Produto indisponível" in html
    assert "data-price-kind" not in html
    assert meta(html, "og:price:amount") is None
    assert meta(html, "product:availability") == "out of stock"


def test_unknown_offer_or_wrong_shop_is_404(sim) -> None:
    assert get(f"{sim.base_url}/s/casa-eletro/p/nope").status == 404
    assert get(f"{sim.base_url}/s/casa-eletro/p/{DEMO_BF_FAKE}").status == 404  # mega-tech's
    assert get(f"{sim.base_url}/s/nope/feed.xml").status == 404


# -- conditional requests and encodings ---------------------------------------------------------


def test_etag_and_last_modified_give_304(sim) -> None:
    url = page_url(sim, DEMO_BF_FAKE)
    first = get(url)
    etag = first.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert first.headers["Last-Modified"] == "Fri, 27 Nov 2026 03:00:00 GMT"
    again = get(url, {"If-None-Match": etag})
    assert again.status == 304 and again.body == b""
    assert get(url, {"If-None-Match": '"other", ' + etag}).status == 304
    assert get(url, {"If-None-Match": '"other"'}).status == 200
    assert get(url, {"If-Modified-Since": "Fri, 27 Nov 2026 04:00:00 GMT"}).status == 304
    assert get(url, {"If-Modified-Since": "Fri, 27 Nov 2026 02:00:00 GMT"}).status == 200
    # same state an hour later: still 304; once the sale ends the ETag changes
    sim.clock.advance(hours=1)
    assert get(url, {"If-None-Match": etag}).status == 304
    sim.clock.set(datetime(2026, 12, 1, 3, tzinfo=UTC))
    after = get(url, {"If-None-Match": etag})
    assert after.status == 200 and after.headers["ETag"] != etag
    st = sim.stats("mega-tech")
    assert st["not_modified"] == 4 and st["statuses"]["304"] == 4


def test_gzip_and_brotli(sim) -> None:
    url = page_url(sim, DEMO_GENUINE_DROP)
    plain = get(url, {"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers
    gz = get(url, {"Accept-Encoding": "gzip"}, decompress=False)
    assert gz.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(gz.body) == plain.body
    assert len(gz.body) < len(plain.body) / 2
    br = get(url, {"Accept-Encoding": "br"}, decompress=False)
    assert br.headers["Content-Encoding"] == "br"
    assert brotli.decompress(br.body) == plain.body
    both = get(url, {"Accept-Encoding": "gzip;q=0.5, br"}, decompress=False)
    assert both.headers["Content-Encoding"] == "br"
    # aiohttp's own decoding agrees
    assert get(url).body == plain.body
    assert gz.headers["ETag"] == plain.headers["ETag"]
    assert "Accept-Encoding" in plain.headers["Vary"]


# -- faults -------------------------------------------------------------------------------------


def test_rate_limit_then_ok(sim) -> None:
    sim.set_faults(shop="casa-eletro", faults=[Fault(FaultKind.RATE_LIMIT, count=2,
                                                     retry_after=7)])
    url = SCENARIO.page_url(sim.base_url, in_stock_offer_of("casa-eletro"))
    rs = [get(url) for _ in range(3)]
    assert [r.status for r in rs] == [429, 429, 200]
    assert rs[0].headers["Retry-After"] == "7"
    assert sim.stats("casa-eletro")["statuses"] == {"200": 1, "429": 2}


def test_rate_limit_time_window(sim) -> None:
    sim.set_faults(shop="casa-eletro", faults=[Fault(FaultKind.RATE_LIMIT, duration_s=0.3)])
    url = SCENARIO.page_url(sim.base_url, in_stock_offer_of("casa-eletro"))
    assert get(url).status == 429
    time.sleep(0.4)
    assert get(url).status == 200


def test_server_error_burst_then_ok(sim) -> None:
    sim.set_faults(offer=DEMO_SCAM, faults=[Fault(FaultKind.SERVER_ERROR_BURST, count=3,
                                                  status=500)])
    url = page_url(sim, DEMO_SCAM)
    assert [get(url).status for _ in range(4)] == [500, 500, 500, 200]


def test_scripted_faults_of_the_demo(scripted_sim) -> None:
    sim = scripted_sim
    # MegaTech: requests 11-12 of every 25 answer 503
    url = page_url(sim, DEMO_BF_FAKE)
    statuses = [get(url).status for _ in range(13)]
    assert statuses == [200] * 10 + [503, 503, 200]
    # one Loja Vitória page is behind a bot wall for its first two requests
    url = page_url(sim, "iphone-15-loja-vitoria")
    first = get(url)
    assert "Verifique que você é humano" in first.text and "price-box" not in first.text
    assert "Verifique" in get(url).text
    assert "price-box" in get(url).text


def test_bot_wall(sim) -> None:
    sim.set_faults(shop="ponto-digital", faults=[Fault(FaultKind.BOT_WALL, status=403)])
    r = get(page_url(sim, DEMO_GENUINE_DROP))
    assert r.status == 403
    assert "Verifique que você é humano" in r.text and "<form" in r.text
    assert "itemprop" not in r.text and "price-box" not in r.text and "ld+json" not in r.text


def test_malformed_and_truncated_pages(sim) -> None:
    url = page_url(sim, DEMO_BF_FAKE)
    sim.set_faults(offer=DEMO_BF_FAKE, faults=[Fault(FaultKind.MALFORMED)])
    r = get(url)
    node = LexborHTMLParser(r.text).css_first('script[type="application/ld+json"]')
    with pytest.raises(json.JSONDecodeError):
        json.loads(node.text())
    assert "price-box" in r.text  # the visible block is still there

    sim.set_faults(offer=DEMO_BF_FAKE, faults=[Fault(FaultKind.TRUNCATED)])
    r = get(url)
    assert r.status == 200 and "</html>" not in r.text
    assert r.text.rfind("application/ld+json") > r.text.rfind("</script>")  # cut inside it

    sim.set_faults(offer=DEMO_BF_FAKE, faults=[Fault(FaultKind.TRUNCATED,
                                                     abort_connection=True)])
    with pytest.raises(aiohttp.ClientPayloadError):
        get(url, {"Accept-Encoding": "identity"})


def test_slow_fault_and_max_concurrency(sim) -> None:
    sim.set_faults(shop="casa-eletro", faults=[Fault(FaultKind.SLOW, delay_ms=300)])
    urls = [SCENARIO.page_url(sim.base_url, o) for o in SCENARIO.offers_of_shop("casa-eletro")]
    assert len(urls) >= 6
    t0 = time.perf_counter()
    rs = asyncio.run(_get_many(urls[:6]))
    assert all(r.status == 200 for r in rs)
    assert time.perf_counter() - t0 >= 0.3
    st = sim.stats("casa-eletro")
    assert st["requests"] == 6 and st["max_in_flight"] == 6 and st["in_flight"] == 0

    # a polite client (2 connections) never has more than 2 in flight
    sim.set_faults(shop="loja-vitoria", faults=[Fault(FaultKind.SLOW, delay_ms=100)])
    urls = [SCENARIO.page_url(sim.base_url, o) for o in SCENARIO.offers_of_shop("loja-vitoria")]
    asyncio.run(_get_many(urls, limit=2))
    st = sim.stats("loja-vitoria")
    assert st["requests"] == len(urls) and st["max_in_flight"] == 2


def test_request_start_timestamps_show_the_interval(sim) -> None:
    url = page_url(sim, DEMO_GENUINE_DROP)

    async def paced() -> None:
        async with aiohttp.ClientSession() as s:
            for _ in range(4):
                async with s.get(url) as r:
                    await r.read()
                await asyncio.sleep(0.15)

    asyncio.run(paced())
    st = sim.stats("ponto-digital")
    starts = st["request_starts"]
    assert len(starts) == 4
    assert min(b - a for a, b in zip(starts, starts[1:])) >= 0.14
    assert st["min_interval_ms"] >= 140
    stats = json.loads(get(f"{sim.base_url}/_sim/stats?shop=ponto-digital&starts=1").body)
    assert stats["shops"]["ponto-digital"]["requests"] == 4
    assert len(stats["shops"]["ponto-digital"]["request_starts"]) == 4


def test_faults_and_clock_over_http(sim) -> None:
    status, body = post_json(f"{sim.base_url}/_sim/faults", {
        "shop": "casa-eletro", "faults": [{"kind": "rate_limit", "count": 1, "retry_after": 2}]})
    assert status == 200 and body["shop:casa-eletro"][0]["kind"] == "rate_limit"
    url = SCENARIO.page_url(sim.base_url, in_stock_offer_of("casa-eletro"))
    assert get(url).status == 429 and get(url).status == 200
    status, body = post_json(f"{sim.base_url}/_sim/faults", {"shop": "casa-eletro",
                                                             "faults": []})
    assert status == 200 and body == {}
    assert post_json(f"{sim.base_url}/_sim/faults", {"shop": "x", "faults": [
        {"kind": "nope"}]})[0] == 400

    status, body = post_json(f"{sim.base_url}/_sim/clock", {"at": "2026-11-27T02:00:00Z"})
    assert status == 200 and body == {"now": "2026-11-27T02:00:00+00:00", "fixed": True}
    assert "reference" not in price_box(get(page_url(sim, DEMO_BF_FAKE)).text)
    status, body = post_json(f"{sim.base_url}/_sim/clock", {"advance_hours": 1})
    assert body["now"] == "2026-11-27T03:00:00+00:00"
    assert price_box(get(page_url(sim, DEMO_BF_FAKE)).text)["reference"] == "de R$ 4.349,00"
    assert json.loads(get(f"{sim.base_url}/_sim/clock").body)["fixed"] is True


def test_clock_replays_trajectories_hour_by_hour(sim) -> None:
    offer = SCENARIO.offer(DEMO_FLAPPING)
    sim.clock.set(datetime(2026, 11, 26, 0, tzinfo=UTC))
    seen = []
    for _ in range(12):
        html = get(page_url(sim, DEMO_FLAPPING)).text
        st = price_state(offer, sim.clock.now())
        if st.price is None:
            assert "Produto indisponível" in html
        else:
            assert price_box(html)["cash"] == f"{format_brl(st.price)} no Pix"
        seen.append(st.availability)
        sim.clock.advance(hours=1)
    assert len(set(seen)) == 2


def test_robots_txt(sim) -> None:
    r = get(f"{sim.base_url}/robots.txt")
    assert r.status == 200 and "User-agent: *" in r.text and "Allow: /s/" in r.text


# -- feeds --------------------------------------------------------------------------------------


def _feed_expectations(shop: str):
    out = {}
    for o in SCENARIO.offers_of_shop(shop):
        st = price_state(o, BF_SALE)
        if st.price is None:
            out[o.external_id] = (f"{o.base_price:.2f} BRL", None, "out_of_stock")
        elif st.reference_price is not None:
            out[o.external_id] = (f"{st.reference_price:.2f} BRL", f"{st.price:.2f} BRL",
                                  "in_stock")
        else:
            out[o.external_id] = (f"{st.price:.2f} BRL", None, "in_stock")
    return out


def test_rss_feed(sim) -> None:
    r = get(f"{sim.base_url}/s/atacado-eletronicos/feed.xml")
    assert r.status == 200 and "rss" in r.headers["Content-Type"]
    assert "Content-Length" not in r.headers  # streamed (chunked)
    root = etree.fromstring(r.body)
    items = root.findall("./channel/item")
    expected = _feed_expectations("atacado-eletronicos")
    assert len(items) == len(expected)
    for item in items:
        iid = item.findtext(f"{G}id")
        price, sale, avail = expected[iid]
        assert item.findtext(f"{G}price") == price
        assert item.findtext(f"{G}sale_price") == sale
        assert item.findtext(f"{G}availability") == avail
        assert item.find(f"{G}shipping/{G}country").text == "BR"
        assert item.findtext(f"{G}link").startswith(f"{sim.base_url}/s/atacado-eletronicos/p/")
    bf = SCENARIO.offer(DEMO_BF_FAKE_FEED).external_id
    item = next(i for i in items if i.findtext(f"{G}id") == bf)
    assert item.findtext(f"{G}price") == "3299.00 BRL"
    assert item.findtext(f"{G}sale_price") == "2199.00 BRL"
    assert item.findtext(f"{G}sale_price_effective_date") == (
        "2026-11-27T03:00:00Z/2026-12-01T03:00:00Z")
    assert item.findtext(f"{G}gtin") == SCENARIO.product_of(SCENARIO.offer(bf and
                                                                           DEMO_BF_FAKE_FEED)).gtin


def test_atom_and_tsv_feeds(sim) -> None:
    expected = _feed_expectations("atacado-eletronicos")
    r = get(f"{sim.base_url}/s/atacado-eletronicos/feed.atom")
    root = etree.fromstring(r.body)
    assert root.tag == f"{ATOM}feed"
    entries = root.findall(f"{ATOM}entry")
    assert {e.findtext(f"{G}id"): (e.findtext(f"{G}price"), e.findtext(f"{G}sale_price"),
                                   e.findtext(f"{G}availability")) for e in entries} == expected

    r = get(f"{sim.base_url}/s/atacado-eletronicos/feed.tsv")
    assert r.headers["Content-Type"].startswith("text/tab-separated-values")
    rows = list(csv.DictReader(io.StringIO(r.text), delimiter="\t"))
    assert {row["id"]: (row["price"], row["sale_price"] or None, row["availability"])
            for row in rows} == expected
    assert all(row["shipping"].startswith("BR:::") for row in rows)


def test_feed_conditional_and_compressed(sim) -> None:
    url = f"{sim.base_url}/s/atacado-eletronicos/feed.xml"
    r = get(url, {"Accept-Encoding": "gzip"}, decompress=False)
    assert r.headers["Content-Encoding"] == "gzip"
    etree.fromstring(gzip.decompress(r.body))
    assert get(url, {"If-None-Match": r.headers["ETag"]}).status == 304
    sim.clock.advance(hours=1)
    assert get(url, {"If-None-Match": r.headers["ETag"]}).status == 200


def test_malformed_and_truncated_feeds(sim) -> None:
    url = f"{sim.base_url}/s/atacado-eletronicos/feed.xml"
    sim.set_faults(shop="atacado-eletronicos", faults=[Fault(FaultKind.MALFORMED, count=1)])
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(get(url).body)
    etree.fromstring(get(url).body)  # once only
    sim.set_faults(shop="atacado-eletronicos", faults=[Fault(FaultKind.TRUNCATED, count=1)])
    body = get(url).body
    assert b"</rss>" not in body
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(body)


def test_large_feed_is_streamed() -> None:
    sc = scale_scenario(30_000)
    with SimulatorServer(sc) as server:
        server.clock.set(BF_SALE)
        shop = next(s for s in sc.shops if s.source_kind == "merchant_feed")
        n = len(sc.offers_of_shop(shop.slug))
        assert n >= 1000

        async def count() -> tuple[int, int, bool]:
            async with aiohttp.ClientSession() as s:
                async with s.get(f"{server.base_url}/s/{shop.slug}/feed.tsv") as r:
                    chunks = 0
                    lines = 0
                    async for chunk in r.content.iter_any():
                        chunks += 1
                        lines += chunk.count(b"\n")
                    return chunks, lines, "Content-Length" in r.headers

        chunks, lines, has_length = asyncio.run(count())
        assert not has_length and lines == n + 1 and chunks > 1


# -- items API ----------------------------------------------------------------------------------


def _api_ids() -> list[str]:
    return [o.external_id for o in SCENARIO.offers
            if SCENARIO.shop_of(o).source_kind == "marketplace_api"]


def test_items_api_batch_and_404(sim) -> None:
    ids = _api_ids()
    r = get(f"{sim.base_url}/api/items?ids={','.join(ids + ['MLB999'])}")
    assert r.status == 200 and r.headers["Content-Type"].startswith("application/json")
    data = json.loads(r.body, parse_float=D)
    assert [e["code"] for e in data] == [200] * len(ids) + [404]
    assert data[-1]["body"]["message"] == "item not found"
    for entry, iid in zip(data, ids):
        body = entry["body"]
        offer = SCENARIO.offer_by_external_id[iid]
        st = price_state(offer, BF_SALE)
        assert body["id"] == iid and body["currency_id"] == "BRL"
        assert body["title"] == SCENARIO.product_of(offer).name
        if st.price is None:
            assert body["available_quantity"] == 0
        else:
            assert body["price"] == st.price and body["status"] == "active"
            assert body["available_quantity"] > 0
            assert body["original_price"] == st.reference_price
        assert body["shipping"]["free_shipping"] is (st.freight == 0)
        assert isinstance(body["seller_id"], int)
    assert re.search(rb'"price":\d+\.\d\d,', r.body)  # exact decimal JSON numbers
    assert sim.stats("mercado-sim")["requests"] == 1


def test_items_api_rejects_more_than_20_ids(sim) -> None:
    ids = ",".join(f"MLB{i}" for i in range(21))
    r = get(f"{sim.base_url}/api/items?ids={ids}")
    assert r.status == 400
    assert "at most 20" in json.loads(r.body)["message"]
    assert get(f"{sim.base_url}/api/items").status == 400
    twenty = ",".join(f"MLB{i}" for i in range(20))
    assert get(f"{sim.base_url}/api/items?ids={twenty}").status == 200


def test_items_api_faults(sim) -> None:
    ids = ",".join(_api_ids()[:3])
    sim.set_faults(shop="mercado-sim", faults=[Fault(FaultKind.RATE_LIMIT, count=1),
                                               Fault(FaultKind.MALFORMED, count=2)])
    assert get(f"{sim.base_url}/api/items?ids={ids}").status == 429
    with pytest.raises(json.JSONDecodeError):
        json.loads(get(f"{sim.base_url}/api/items?ids={ids}").body)
    json.loads(get(f"{sim.base_url}/api/items?ids={ids}").body)


# -- the extractors over the simulator's output -------------------------------------------------


def test_extract_page_reads_every_page_like_price_state(sim) -> None:
    from smartbuy_pipeline.domain.extraction import extract_page

    hours = [datetime(2026, 10, 1, 12, tzinfo=UTC), BF_SALE, datetime(2026, 11, 28, 1, tzinfo=UTC)]
    page_offers = [o for o in SCENARIO.offers]  # every shop serves pages
    checked = oos = 0
    for at in hours:
        sim.clock.set(at)
        pages = asyncio.run(_get_many([SCENARIO.page_url(sim.base_url, o) for o in page_offers]))
        for offer, r in zip(page_offers, pages):
            assert r.status == 200, offer.key
            st = price_state(offer, at)
            ex = extract_page(r.body, locale="pt_BR", default_currency="BRL")
            by_kind = {}
            for q in ex.quotes:
                by_kind.setdefault(q.kind, set()).add((q.money.amount, q.money.currency))
            if st.price is None:
                assert ex.availability is Availability.OUT_OF_STOCK, offer.key
                assert not any(k in by_kind for k in (PriceKind.CASH, PriceKind.CARD,
                                                      PriceKind.REGULAR)), offer.key
                oos += 1
                continue
            assert ex.availability is Availability.IN_STOCK, offer.key
            assert by_kind[PriceKind.CASH] == {(st.price, "BRL")}, (offer.key, ex.quotes)
            assert by_kind[PriceKind.CARD] == {(st.card_price, "BRL")}, offer.key
            inst = [q for q in ex.quotes if q.kind is PriceKind.INSTALLMENT]
            assert [(q.money.amount, q.installments) for q in inst] == [
                (st.installment_amount, st.installments)], offer.key
            if st.reference_price is None:
                assert PriceKind.REFERENCE not in by_kind, offer.key
            else:
                assert by_kind[PriceKind.REFERENCE] == {(st.reference_price, "BRL")}, offer.key
            # the machine-readable figure (REGULAR from OpenGraph / microdata) is the cash price
            assert by_kind.get(PriceKind.REGULAR, {(st.price, "BRL")}) == {(st.price, "BRL")}
            assert ex.gtin in (None, SCENARIO.product_of(offer).gtin,
                               SCENARIO.product_of(offer).gtin.zfill(14))
            checked += 1
    assert checked > 100 and oos >= 1


def test_extract_page_classifies_bot_wall(sim) -> None:
    from smartbuy_pipeline.domain.extraction import extract_page

    sim.set_faults(offer=DEMO_SCAM, faults=[Fault(FaultKind.BOT_WALL)])
    with pytest.raises(ExtractionError) as e:
        extract_page(get(page_url(sim, DEMO_SCAM)).body, default_currency="BRL")
    assert e.value.reason is FailureReason.BOT_WALL


def test_iter_feed_items_reads_feeds_like_price_state(sim) -> None:
    from smartbuy_pipeline.domain.feeds import FeedItem, iter_feed_items

    for at in (datetime(2026, 11, 1, tzinfo=UTC), BF_SALE):
        sim.clock.set(at)
        for ext in ("xml", "atom", "tsv"):
            body = get(f"{sim.base_url}/s/atacado-eletronicos/feed.{ext}").body
            items = list(iter_feed_items(io.BytesIO(body), now=at, default_currency="BRL"))
            assert all(isinstance(i, FeedItem) for i in items), items
            assert len(items) == len(SCENARIO.offers_of_shop("atacado-eletronicos"))
            for item in items:
                offer = SCENARIO.offer_by_external_id[item.item_id]
                st = price_state(offer, at)
                ex = item.extracted
                kinds = {q.kind: q.money.amount for q in ex.quotes}
                if st.price is None:
                    assert ex.availability is Availability.OUT_OF_STOCK
                    continue
                assert ex.availability is Availability.IN_STOCK
                if st.reference_price is None:
                    assert kinds == {PriceKind.REGULAR: st.price}, (ext, item)
                else:
                    assert kinds == {PriceKind.SALE: st.price,
                                     PriceKind.REFERENCE: st.reference_price}, (ext, item)
                assert ex.freight is not None and ex.freight.amount == st.freight
                assert ex.gtin is not None and ex.gtin.endswith(SCENARIO.product_of(offer).gtin)


def test_parse_items_response_reads_the_api_like_price_state(sim) -> None:
    from smartbuy_pipeline.domain.items_api import parse_items_response

    ids = _api_ids()
    for at in (datetime(2026, 10, 1, tzinfo=UTC), BF_SALE, datetime(2026, 11, 28, 2, tzinfo=UTC)):
        sim.clock.set(at)
        out = parse_items_response(get(f"{sim.base_url}/api/items?ids={','.join(ids)},MLB1").body)
        assert isinstance(out["MLB1"], ExtractionError)
        assert out["MLB1"].reason is FailureReason.NOT_FOUND
        for iid in ids:
            offer = SCENARIO.offer_by_external_id[iid]
            st = price_state(offer, at)
            ex = out[iid]
            assert not isinstance(ex, ExtractionError), ex
            kinds = {q.kind: q.money.amount for q in ex.quotes}
            if st.price is None:
                assert ex.availability is Availability.OUT_OF_STOCK
                continue
            assert ex.availability is Availability.IN_STOCK
            expected = {PriceKind.REGULAR: st.price}
            if st.reference_price is not None:
                expected[PriceKind.REFERENCE] = st.reference_price
            assert kinds == expected
