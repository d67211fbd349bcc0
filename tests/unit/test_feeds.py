"""Merchant Center feeds: RSS, Atom, TSV, sale windows, bad rows, truncation, bounded memory."""

import gc
import io
import os
import tracemalloc
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from smartbuy_pipeline.domain.feeds import (
    FeedItem,
    FeedRowError,
    iter_feed_items,
    parse_effective_interval,
)
from smartbuy_pipeline.domain.types import Availability, FailureReason, Money, PriceKind, PriceQuote

FEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "feeds"
INSIDE = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
AFTER = datetime(2026, 12, 5, tzinfo=timezone.utc)


def brl(amount: str) -> Money:
    return Money(Decimal(amount), "BRL")


def by_id(results):
    return {r.item_id: r for r in results}


def test_rss_sale_inside_window():
    results = list(iter_feed_items(FEEDS / "merchant_rss.xml", now=INSIDE))
    assert [type(r).__name__ for r in results] == [
        "FeedItem", "FeedItem", "FeedRowError", "FeedItem", "FeedItem"]
    items = by_id(results)
    tv = items["SKU-1"].extracted
    assert tv.quotes == (PriceQuote(PriceKind.SALE, brl("1899.00")),
                         PriceQuote(PriceKind.REFERENCE, brl("2599.00")))
    assert tv.availability is Availability.IN_STOCK
    assert tv.gtin == "7891234567895"
    assert tv.freight == brl("0.00")
    assert tv.method == "feed"
    assert tv.raw_currency == "BRL"
    assert tv.extra["title"] == "Smart TV 55 4K"
    assert tv.extra["link"] == "https://loja.example/p/tv55"
    fryer = items["SKU-2"].extracted
    assert fryer.quotes == (PriceQuote(PriceKind.REGULAR, brl("399.90")),)
    assert fryer.availability is Availability.OUT_OF_STOCK
    assert fryer.freight == brl("19.90")
    bad = items["SKU-3"]
    assert isinstance(bad, FeedRowError)
    assert bad.reason is FailureReason.UNPARSEABLE_PRICE
    assert bad.line_or_index == 31
    assert "grátis" in bad.detail
    assert items["SKU-4"].extracted.availability is Availability.PREORDER
    oos = items["SKU-5"].extracted
    assert oos.quotes == ()
    assert oos.availability is Availability.OUT_OF_STOCK


def test_rss_sale_outside_window_is_regular_price():
    items = by_id(iter_feed_items(FEEDS / "merchant_rss.xml", now=AFTER))
    tv = items["SKU-1"].extracted
    assert tv.quotes == (PriceQuote(PriceKind.REGULAR, brl("2599.00")),)
    assert tv.extra["sale_price_inactive"] == "1899.00"


def test_sale_window_bounds_in_local_offset():
    # 2026-11-20T00:00-03:00 is 03:00 UTC: one minute before it the sale is not on yet.
    before = datetime(2026, 11, 20, 2, 59, tzinfo=timezone.utc)
    start = datetime(2026, 11, 20, 3, 0, tzinfo=timezone.utc)
    assert by_id(iter_feed_items(FEEDS / "merchant_rss.xml", now=before))["SKU-1"] \
        .extracted.quotes[0].kind is PriceKind.REGULAR
    assert by_id(iter_feed_items(FEEDS / "merchant_rss.xml", now=start))["SKU-1"] \
        .extracted.quotes[0].kind is PriceKind.SALE


def test_atom_feed_with_open_ended_sale():
    items = by_id(iter_feed_items(FEEDS / "merchant_atom.xml", now=AFTER))
    coffee = items["A-1"].extracted
    assert coffee.quotes == (PriceQuote(PriceKind.SALE, brl("499.90")),
                             PriceQuote(PriceKind.REFERENCE, brl("549.90")))
    assert coffee.extra["link"] == "https://loja.example/p/cafeteira"
    assert coffee.gtin == "7894900011517"
    assert items["A-2"].extracted.availability is Availability.BACKORDER


def test_tsv_feed_with_malformed_rows():
    results = list(iter_feed_items(FEEDS / "merchant.tsv", now=INSIDE))
    assert [(type(r).__name__, r.item_id) for r in results] == [
        ("FeedItem", "T-1"), ("FeedRowError", "T-2"), ("FeedItem", "T-3"),
        ("FeedRowError", "T-4"), ("FeedRowError", "T-5")]
    t1 = results[0].extracted
    assert t1.quotes == (PriceQuote(PriceKind.SALE, brl("2099.00")),
                         PriceQuote(PriceKind.REFERENCE, brl("2599.00")))
    assert t1.freight == brl("29.90")
    assert results[1].reason is FailureReason.PARSE_ERROR and results[1].line_or_index == 3
    assert results[2].extracted.freight == brl("0.00")
    assert results[3].reason is FailureReason.NON_POSITIVE_PRICE
    assert results[4].reason is FailureReason.PARSE_ERROR
    assert "amanhã" in results[4].detail


def test_tsv_outside_window_and_explicit_fmt():
    with open(FEEDS / "merchant.tsv", "rb") as fh:
        results = list(iter_feed_items(fh, now=AFTER, fmt="tsv"))
    assert results[0].extracted.quotes == (PriceQuote(PriceKind.REGULAR, brl("2599.00")),)


def test_tsv_header_variants_and_default_currency():
    data = "G:ID\tPrice\tAvailability\nX1\t10.50\tin stock\n".encode()
    (item,) = iter_feed_items(io.BytesIO(data), default_currency="BRL")
    assert item.extracted.quotes == (PriceQuote(PriceKind.REGULAR, brl("10.50")),)
    assert item.extracted.raw_currency is None
    assert item.extracted.extra["currency_defaulted"] is True


def test_missing_currency_without_default_is_row_error():
    data = "id\tprice\nX1\t10.50\n".encode()
    (err,) = iter_feed_items(io.BytesIO(data))
    assert isinstance(err, FeedRowError)
    assert err.reason is FailureReason.CURRENCY_MISSING


def test_wanted_ids_filter():
    ids = [r.item_id for r in iter_feed_items(FEEDS / "merchant_rss.xml", wanted_ids={"SKU-2", "SKU-3"})]
    assert ids == ["SKU-2", "SKU-3"]


def test_truncated_xml_yields_items_so_far_then_one_error():
    data = (FEEDS / "merchant_rss.xml").read_bytes()
    cut = data[: data.index(b"<g:id>SKU-4") + 20]
    results = list(iter_feed_items(io.BytesIO(cut), now=INSIDE))
    assert [getattr(r, "item_id", None) for r in results] == ["SKU-1", "SKU-2", "SKU-3", None]
    last = results[-1]
    assert isinstance(last, FeedRowError)
    assert last.reason is FailureReason.PARSE_ERROR
    assert "broken" in last.detail


def test_non_seekable_stream_is_sniffed():
    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._buf = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:
            chunk = self._buf.read(len(b))
            b[: len(chunk)] = chunk
            return len(chunk)

    data = (FEEDS / "merchant_atom.xml").read_bytes()
    assert [r.item_id for r in iter_feed_items(Pipe(data))] == ["A-1", "A-2"]


def test_entities_are_not_expanded():
    data = b"""<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<rss xmlns:g="http://base.google.com/ns/1.0"><channel><item>
<g:id>E1</g:id><title>&xxe;</title><g:price>10.00 BRL</g:price></item></channel></rss>"""
    (item,) = iter_feed_items(io.BytesIO(data))
    assert isinstance(item, FeedItem)
    assert "root" not in str(item.extracted.extra.get("title", ""))


def test_parse_effective_interval():
    start, end = parse_effective_interval("2026-11-20T00:00-03:00/2026-11-30T23:59-03:00")
    assert start == datetime(2026, 11, 20, 3, 0, tzinfo=timezone.utc)
    assert end == datetime(2026, 12, 1, 2, 59, tzinfo=timezone.utc)
    with pytest.raises(ValueError):
        parse_effective_interval("2026-11-30T00:00Z/2026-11-20T00:00Z")
    with pytest.raises(ValueError):
        parse_effective_interval("2026-11-30")


ITEM = (
    "<item><g:id>SKU-{i}</g:id><title>Produto de teste número {i} com um título longo o "
    "bastante para parecer real</title><link>https://loja.example/p/{i}</link>"
    "<description>{pad}</description><g:price>{i}.90 BRL</g:price>"
    "<g:availability>in_stock</g:availability><g:gtin>7891234567895</g:gtin>"
    "<g:shipping><g:country>BR</g:country><g:price>19.90 BRL</g:price></g:shipping></item>\n"
)


@pytest.mark.slow
def test_large_feed_streams_in_bounded_memory(tmp_path):
    path = tmp_path / "big.xml"
    pad = "x" * 300
    target = 50 * 1024 * 1024
    written = 0
    count = 0
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('<?xml version="1.0"?>\n<rss xmlns:g="http://base.google.com/ns/1.0"><channel>\n')
        while written < target:
            chunk = "".join(ITEM.format(i=count + k + 1, pad=pad) for k in range(1000))
            fh.write(chunk)
            written += len(chunk)
            count += 1000
        fh.write("</channel></rss>\n")
    assert path.stat().st_size >= target
    gc.collect()
    # tracemalloc sees Python objects only; libxml2's tree lives in C memory, so the resident
    # set size is sampled too (without clearing, this feed's tree takes about 300 MB of RSS).
    rss_before = _rss_bytes()
    rss_peak = rss_before
    tracemalloc.start()
    try:
        seen = 0
        last = None
        for result in iter_feed_items(path):
            assert isinstance(result, FeedItem)
            seen += 1
            last = result
            if seen % 5000 == 0:
                rss_peak = max(rss_peak, _rss_bytes())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == count
    assert last.extracted.quotes[0].money == brl(f"{count}.90")
    assert peak < 30 * 1024 * 1024, f"tracemalloc peak {peak / 1e6:.1f} MB"
    if rss_before:
        assert rss_peak - rss_before < 60 * 1024 * 1024, f"RSS grew {(rss_peak - rss_before) / 1e6:.0f} MB"


def _rss_bytes() -> int:
    """Current resident set size (Linux /proc), 0 where unavailable."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


# --------------------------------------------------------------------------------------------
# Fast paths (memos, early skip of unwanted items, GTIN check) and the pool-side feed function


def test_fast_gtin_check_agrees_with_gs1_module():
    import random

    from smartbuy_pipeline.domain.feeds import _valid_gtin
    from smartbuy_pipeline.domain.gtin import is_valid_gtin, make_gtin13

    rnd = random.Random(7)
    cases = ["7891234567895", "7891234567894", "96385074", "96385075", "036000291452", "00012345600012",
             "0001234560001", "789123456789", "78912345678951", "", "abc", "789 1234 56789 5", "７８９",
             "٣٣٣٣٣٣٣٣"]
    cases += [make_gtin13("790", rnd.randrange(10**9)) for _ in range(200)]
    cases += ["".join(rnd.choice("0123456789") for _ in range(rnd.choice((8, 12, 13, 14)))) for _ in range(500)]
    for raw in cases:
        assert _valid_gtin(raw) == is_valid_gtin(raw), raw


def test_wanted_ids_decided_on_the_first_g_id_wherever_it_is():
    data = b"""<?xml version="1.0"?>
<rss xmlns:g="http://base.google.com/ns/1.0"><channel>
<item><title>no g:id at all</title><id>A</id><g:price>1.00 BRL</g:price></item>
<item><title>late id</title><g:price>2.00 BRL</g:price><g:id> B </g:id><g:id>X</g:id></item>
<item><g:id>C</g:id><g:price>3.00 BRL</g:price></item>
<item><g:id>X</g:id><g:id>C</g:id><g:price>4.00 BRL</g:price></item>
</channel></rss>"""
    got = [(r.item_id, r.extracted.quotes[0].money.amount)
           for r in iter_feed_items(io.BytesIO(data), wanted_ids={"A", "B", "C"})]
    assert got == [("B", Decimal("2.00")), ("C", Decimal("3.00"))]
    # without a filter a plain <id> still names the item (as before)
    assert [r.item_id for r in iter_feed_items(io.BytesIO(data))] == ["A", "B", "C", "X"]


def test_memoised_prices_do_not_leak_between_currency_defaults():
    data = "id\tprice\nX1\t10.50\n".encode()
    (ok,) = iter_feed_items(io.BytesIO(data), default_currency="BRL")
    (err,) = iter_feed_items(io.BytesIO(data))  # same text, no default: still an error
    (usd,) = iter_feed_items(io.BytesIO(data), default_currency="USD")
    assert ok.extracted.quotes[0].money == brl("10.50")
    assert isinstance(err, FeedRowError) and err.reason is FailureReason.CURRENCY_MISSING
    assert usd.extracted.quotes[0].money == Money(Decimal("10.50"), "USD")
    # a bad price is reported with its own field name every time (errors are not memoised)
    bad = "id\tprice\tshipping\nY1\tgrátis\tBR:::grátis\nY2\t5.00 BRL\tBR:::grátis\n".encode()
    details = [r.detail for r in iter_feed_items(io.BytesIO(bad))]
    assert "price 'grátis'" in details[0] and "shipping price 'grátis'" in details[1]


def test_pool_side_feed_function_matches_validating_each_item(tmp_path):
    import pickle

    from smartbuy_pipeline.acquisition.sources import _unpack_feed_outcome, parse_and_validate_feed
    from smartbuy_pipeline.domain.types import FetchFailure, Observation, SourceKind
    from smartbuy_pipeline.domain.validation import validate_observation

    for name, now in (("merchant_rss.xml", INSIDE), ("merchant_rss.xml", AFTER), ("merchant_atom.xml", AFTER),
                      ("merchant.tsv", INSIDE)):
        path = FEEDS / name
        results = list(iter_feed_items(path, now=now, default_currency="BRL"))
        ids = [r.item_id for r in results if r.item_id] + ["MISSING-1"]
        last_good = {ids[0]: brl("9999.00")}  # one quarantined drop
        offers = [(100 + i, item, None, last_good.get(item), None) for i, item in enumerate(ids)]
        packed = pickle.loads(pickle.dumps(
            parse_and_validate_feed(str(path), offers, "BRL", "https://feed", now)))
        money: dict = {}
        outcomes = [_unpack_feed_outcome(o[0], p, money) for o, p in zip(offers, packed)]
        assert len(outcomes) == len(offers)
        by_item = {r.item_id: r for r in results if r.item_id}
        for (offer_id, item, _, good, _), outcome in zip(offers, outcomes):
            entry = by_item.get(item)
            if isinstance(entry, FeedItem):
                expected = validate_observation(
                    offer_id, entry.extracted, observed_at=now, source_kind=SourceKind.MERCHANT_FEED,
                    expected_currency="BRL", last_good_price=good, quarantined_price=None)
                assert outcome == expected
                assert type(outcome) is type(expected)
                if isinstance(outcome, Observation) and outcome.price is not None:
                    assert isinstance(outcome.price.amount, Decimal)
                    assert outcome.availability is expected.availability
            else:
                assert isinstance(outcome, FetchFailure) and outcome.offer_id == offer_id
                if entry is None:
                    assert outcome.reason is FailureReason.ITEM_MISSING and item in outcome.detail
                else:
                    assert outcome.reason is entry.reason and f"row {entry.line_or_index}" in outcome.detail


def test_pool_side_feed_function_on_truncated_feed(tmp_path):
    from smartbuy_pipeline.acquisition.sources import parse_and_validate_feed
    from smartbuy_pipeline.domain.types import FetchFailure

    data = (FEEDS / "merchant_rss.xml").read_bytes()
    path = tmp_path / "cut.xml"
    path.write_bytes(data[: data.index(b"<g:id>SKU-4") + 20])
    offers = [(1, "SKU-1", None, None, None), (4, "SKU-4", None, None, None)]
    first, fourth = parse_and_validate_feed(str(path), offers, "BRL", "https://feed", INSIDE)
    assert not isinstance(first, FetchFailure)
    assert isinstance(fourth, FetchFailure) and fourth.reason is FailureReason.PARSE_ERROR
    assert "not reached" in fourth.detail
