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
