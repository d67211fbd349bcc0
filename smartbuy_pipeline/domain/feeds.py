"""Streaming parser for Google Merchant Center product feeds (RSS 2.0 / Atom XML, or TSV).

`iter_feed_items` yields one `FeedItem` per good item and one `FeedRowError` per bad one, and
keeps going: a malformed row never stops the feed.

XML: `lxml.etree.iterparse` on `<item>` (RSS) and `<entry>` (Atom) end events; each element is
cleared after use and its already-processed previous siblings are deleted, so memory stays
bounded whatever the feed size. Entities are not resolved and the network is never touched.
A truncated or otherwise broken document yields every item that was complete before the break,
then ONE `FeedRowError(None, line, PARSE_ERROR, ...)` naming lxml's message and line, and stops
(lxml's `recover` mode is deliberately NOT used: it would hand over a half-written last item,
e.g. a price cut from "1299.90 BRL" to "129").

TSV: first line is the header with the attribute names (`id`, `title`, `price`, `sale_price`,
`sale_price_effective_date`, `availability`, `gtin`, `shipping`, ...; a `g:` prefix, spaces or
upper case are tolerated). `shipping` uses Google's `country:region:service:price` form, several
separated by ",". A row with the wrong number of cells is a `FeedRowError`.

Format: `fmt="xml" | "tsv"`, or sniffed from the first non-blank byte ("<" means XML).

Prices: `g:price` "1299.90 BRL" (machine format, "." decimal). `g:sale_price` applies only
inside `g:sale_price_effective_date` ("start/end", ISO 8601; a bound without an offset is UTC;
no date means always effective): then the quotes are SALE (sale price) + REFERENCE (price);
outside it, REGULAR (price) only and `extra["sale_price_inactive"]` is set. An out-of-stock item
without a price is a `FeedItem` with no quotes; any other item without a price is a NO_PRICE row
error.

Speed (a feed repeats a few price points, rates, windows and tags thousands of times): successful
price / availability / sale-window parses and tag splits are memoised (bounded; errors never are;
Money and PriceQuote are immutable, so instances are shared); `wanted_ids` is checked as soon as
an item's first g:id is reached, before anything else of it is built.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, Any, BinaryIO, Iterator

from lxml import etree

from smartbuy_pipeline.domain.extraction import parse_availability
from smartbuy_pipeline.domain.gtin import is_valid_gtin
from smartbuy_pipeline.domain.money import currency_code, parse_decimal_amount, parse_money
from smartbuy_pipeline.domain.types import (
    Availability,
    ExtractionError,
    Extracted,
    FailureReason,
    Money,
    PriceKind,
    PriceQuote,
)

__all__ = ["FeedItem", "FeedRowError", "iter_feed_items", "parse_effective_interval", "G_NS"]

G_NS = "http://base.google.com/ns/1.0"
ATOM_NS = "http://www.w3.org/2005/Atom"
_G = f"{{{G_NS}}}"
_ATOM = f"{{{ATOM_NS}}}"
_ITEM_TAGS = ("item", f"{_ATOM}entry", f"{_ATOM}item")


@dataclass(frozen=True, slots=True)
class FeedItem:
    item_id: str
    extracted: Extracted


@dataclass(frozen=True, slots=True)
class FeedRowError:
    item_id: str | None
    line_or_index: int  # XML: source line of the item (or of the break); TSV: 1-based file line
    reason: FailureReason
    detail: str


def _parse_bound(text: str) -> datetime:
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def parse_effective_interval(text: str) -> tuple[datetime, datetime]:
    """"2026-11-20T00:00-03:00/2026-11-30T23:59-03:00" -> (start, end), timezone-aware.

    Raises ValueError when it is not a "start/end" pair of ISO 8601 datetimes with start <= end.
    """
    parts = text.strip().split("/")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise ValueError(f"effective date {text!r} is not a 'start/end' ISO 8601 interval")
    start, end = _parse_bound(parts[0]), _parse_bound(parts[1])
    if end < start:
        raise ValueError(f"effective date {text!r} ends before it starts")
    return start, end


_GOOGLE_PRICE = re.compile(r"^\s*([0-9][0-9.,]*)\s*([A-Za-z]{3})\s*$|^\s*([A-Za-z]{3})\s*([0-9][0-9.,]*)\s*$")


def _feed_money(
    text: str, default_currency: str | None, field: str, *, allow_zero: bool = False
) -> tuple[Money, bool]:
    """(Money, currency declared) from Google's "1299.90 BRL" (also "BRL 1299.90", "R$ 12,90")."""
    try:
        m = _GOOGLE_PRICE.match(text)
        if m:
            number = m.group(1) or m.group(4)
            code = currency_code(m.group(2) or m.group(3))
            amount = parse_decimal_amount(number, allow_zero=allow_zero)
            if code is None:
                raise ExtractionError(
                    FailureReason.CURRENCY_MISSING, f"unknown currency code in {text!r}"
                )
            return Money(amount, code), True
        try:
            return parse_money(text, locale="en"), True
        except ExtractionError as exc:
            if exc.reason is not FailureReason.CURRENCY_MISSING or default_currency is None:
                raise
        return parse_money(text, locale="en", default_currency=default_currency), False
    except ExtractionError as exc:
        raise ExtractionError(exc.reason, f"{field} {text!r}: {exc.detail}") from None


# Memo of successful `_feed_money` parses. A feed repeats the same few price points and shipping
# rates thousands of times; Money is immutable, so one instance can be shared. Bounded; failures
# are never cached (their message names the field).
_MONEY_MEMO: dict[tuple[str, str | None, bool], tuple[Money, bool]] = {}
_MEMO_MAX = 4096
# price text -> its (REGULAR quote,) tuple: PriceQuote is immutable too, so it is shared.
_REGULAR_MEMO: dict[Money, tuple[PriceQuote, ...]] = {}


def _feed_money_memo(
    text: str, default_currency: str | None, field: str, *, allow_zero: bool = False
) -> tuple[Money, bool]:
    key = (text, default_currency, allow_zero)
    hit = _MONEY_MEMO.get(key)
    if hit is None:
        hit = _feed_money(text, default_currency, field, allow_zero=allow_zero)
        if len(_MONEY_MEMO) >= _MEMO_MAX:
            _MONEY_MEMO.clear()
        _MONEY_MEMO[key] = hit
    return hit


def _regular_quotes(price: Money) -> tuple[PriceQuote, ...]:
    hit = _REGULAR_MEMO.get(price)
    if hit is None:
        hit = (PriceQuote(PriceKind.REGULAR, price),)
        if len(_REGULAR_MEMO) >= _MEMO_MAX:
            _REGULAR_MEMO.clear()
        _REGULAR_MEMO[price] = hit
    return hit


_INTERVAL_MEMO: dict[str, tuple[datetime, datetime]] = {}


def _effective_interval(text: str) -> tuple[datetime, datetime]:
    hit = _INTERVAL_MEMO.get(text)
    if hit is None:
        hit = parse_effective_interval(text)  # ValueError: not cached
        if len(_INTERVAL_MEMO) >= _MEMO_MAX:
            _INTERVAL_MEMO.clear()
        _INTERVAL_MEMO[text] = hit
    return hit


_AVAILABILITY_MEMO: dict[str, Availability] = {}


def _availability(text: str) -> Availability:
    hit = _AVAILABILITY_MEMO.get(text)
    if hit is None:
        hit = parse_availability(text)
        if len(_AVAILABILITY_MEMO) >= _MEMO_MAX:
            _AVAILABILITY_MEMO.clear()
        _AVAILABILITY_MEMO[text] = hit
    return hit


_GTIN_LENGTHS = frozenset((8, 12, 13, 14))


def _valid_gtin(raw: str) -> bool:
    """`is_valid_gtin`, with a fast path for the usual plain-ASCII-digits case."""
    if raw.isascii() and raw.isdigit() and len(raw) in _GTIN_LENGTHS:
        # GS1 mod-10: weight 3 on the digit just before the check digit, then alternating 1, 3
        # (summed over the ASCII codes, minus 48 per digit).
        digits = raw.encode()
        threes, ones = digits[-2::-2], digits[-3::-2]
        total = 3 * (sum(threes) - 48 * len(threes)) + sum(ones) - 48 * len(ones)
        return (10 - total % 10) % 10 == digits[-1] - 48
    return is_valid_gtin(raw)


def _tsv_shipping(value: str) -> list[dict[str, str]]:
    out = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        pieces = part.split(":")
        entry = {"price": pieces[-1]}
        if len(pieces) >= 2:
            entry["country"] = pieces[0]
        out.append(entry)
    return out


_EXTRA_KEYS = ("title", "link", "brand", "condition")


def _build(
    fields: dict[str, Any], where: int, now: datetime, default_currency: str | None
) -> FeedItem | FeedRowError:
    item_id = (fields.get("id") or "").strip() or None
    if item_id is None:
        return FeedRowError(None, where, FailureReason.PARSE_ERROR, f"item at {where} has no id")
    try:
        availability = Availability.UNKNOWN
        raw_availability = fields.get("availability")
        if raw_availability:
            availability = _availability(raw_availability)
        extra: dict[str, Any] = {}
        for key in _EXTRA_KEYS:
            value = fields.get(key)
            if value:
                extra[key] = value.strip()
        gtin = None
        raw_gtin = (fields.get("gtin") or "").strip()
        if raw_gtin:
            if _valid_gtin(raw_gtin):
                gtin = raw_gtin
            else:
                extra["gtin_invalid"] = raw_gtin
        freight = None
        shipping = fields.get("shipping") or []
        if len(shipping) < 2:
            preferred = shipping  # BR or not, a lone rate is the one to use
        else:
            preferred = [s for s in shipping if (s.get("country") or "").upper() == "BR"] or shipping
        for entry in preferred:
            if entry.get("price"):
                # A free rate "0.00 BRL" is valid freight.
                freight = _feed_money_memo(entry["price"], default_currency, "shipping price",
                                           allow_zero=True)[0]
                break

        price_text = (fields.get("price") or "").strip()
        quotes: tuple[PriceQuote, ...] = ()
        raw_currency = None
        if price_text:
            price, declared = _feed_money_memo(price_text, default_currency, "price")
            if declared:
                raw_currency = price.currency
            else:
                extra["currency_defaulted"] = True
            sale_text = (fields.get("sale_price") or "").strip()
            if sale_text:
                sale = _feed_money_memo(sale_text, default_currency, "sale_price")[0]
                window = (fields.get("sale_price_effective_date") or "").strip()
                active = True
                if window:
                    try:
                        start, end = _effective_interval(window)
                    except ValueError as exc:
                        raise ExtractionError(FailureReason.PARSE_ERROR, str(exc)) from None
                    active = start <= now <= end
                    extra["sale_price_effective"] = [start.isoformat(), end.isoformat()]
                if active:
                    quotes = (PriceQuote(PriceKind.SALE, sale), PriceQuote(PriceKind.REFERENCE, price))
                else:
                    quotes = _regular_quotes(price)
                    extra["sale_price_inactive"] = str(sale.amount)
            else:
                quotes = _regular_quotes(price)
        elif availability not in (Availability.OUT_OF_STOCK, Availability.DISCONTINUED):
            raise ExtractionError(FailureReason.NO_PRICE, "item has no price and is not out of stock")
    except ExtractionError as exc:
        return FeedRowError(item_id, where, exc.reason, f"item {item_id!r} at {where}: {exc.detail}")
    # positional: (quotes, availability, gtin, freight, method, raw_currency, extra)
    return FeedItem(item_id, Extracted(quotes, availability, gtin, freight, "feed", raw_currency, extra))


# --------------------------------------------------------------------------------------------
# XML


def _local(tag: Any) -> tuple[str, str]:
    if not isinstance(tag, str):
        return "", ""
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return ns, name
    return "", tag


# What `_xml_fields` does with a child, by tag (a feed uses a handful of tags: each is split
# once; bounded): (action, local name).
_SKIP, _G_FIELD, _PLAIN_FIELD, _SHIPPING, _ATOM_LINK = range(5)
_TAG_MEMO: dict[Any, tuple[int, str]] = {}


def _tag_action(tag: Any) -> tuple[int, str]:
    hit = _TAG_MEMO.get(tag)
    if hit is None:
        ns, name = _local(tag)
        if not name:
            hit = (_SKIP, "")
        elif name == "shipping":
            hit = (_SHIPPING, name)
        elif name == "link" and ns == ATOM_NS:
            hit = (_ATOM_LINK, name)
        else:
            hit = (_G_FIELD if ns == G_NS else _PLAIN_FIELD, name)
        if len(_TAG_MEMO) < 1024:
            _TAG_MEMO[tag] = hit
    return hit


def _xml_fields(elem: etree._Element, wanted: set[str] | None = None) -> dict[str, Any] | None:
    """The item's fields (g: ones win), or None when `wanted` is given and the item's first
    g:id is not in it (or it has none): decided as soon as that child is reached, so an
    unwanted item costs little more than its id when g:id comes first, as it usually does."""
    fields: dict[str, Any] = {}
    plain: dict[str, Any] = {}
    shipping: list[dict[str, str]] = []
    memo = _TAG_MEMO
    for child in elem:
        action, name = memo.get(child.tag) or _tag_action(child.tag)
        if action == _G_FIELD:  # first one wins
            if name not in fields:
                value = child.text or ""
                if wanted is not None and name == "id" and value.strip() not in wanted:
                    return None
                fields[name] = value
            continue
        if action == _PLAIN_FIELD:
            if name not in plain:
                plain[name] = child.text or ""
            continue
        if action == _SKIP:
            continue
        if action == _SHIPPING:
            entry = {}
            for sub in child:
                sub_name = (memo.get(sub.tag) or _tag_action(sub.tag))[1]
                if sub_name:
                    entry[sub_name] = (sub.text or "").strip()
            if not len(child) and child.text and child.text.strip():
                entry = _tsv_shipping(child.text)[0] if _tsv_shipping(child.text) else {}
            if entry:
                shipping.append(entry)
            continue
        # _ATOM_LINK: its href (else its text), as a plain field
        if name not in plain:
            plain[name] = child.get("href") or child.text or ""
    if wanted is not None and "id" not in fields:
        return None  # no g:id: cannot be a wanted item
    for key, value in plain.items():  # g: fields win over RSS/Atom ones (title, link)
        fields.setdefault(key, value)
    fields["shipping"] = shipping
    return fields


def _iter_xml(stream: IO[bytes], wanted: set[str] | None, now: datetime,
              default_currency: str | None) -> Iterator[FeedItem | FeedRowError]:
    context = etree.iterparse(
        stream, events=("end",), tag=_ITEM_TAGS, resolve_entities=False, no_network=True,
        huge_tree=False, remove_comments=True,
    )
    index = 0
    last_line = 0
    try:
        for _event, elem in context:
            index += 1
            last_line = elem.sourceline or last_line
            try:
                fields = _xml_fields(elem, wanted)
                if fields is not None:
                    yield _build(fields, last_line or index, now, default_currency)
            finally:
                elem.clear(keep_tail=False)
                parent = elem.getparent()
                if parent is not None:
                    while elem.getprevious() is not None:
                        del parent[0]
    except etree.XMLSyntaxError as exc:
        line = exc.lineno or last_line
        yield FeedRowError(
            None, line, FailureReason.PARSE_ERROR,
            f"feed XML is broken at line {line} after {index} items: {exc.msg}",
        )


# --------------------------------------------------------------------------------------------
# TSV


def _norm_header(name: str) -> str:
    name = name.strip().lower()
    if name.startswith("g:"):
        name = name[2:]
    return name.replace(" ", "_")


def _iter_tsv(stream: IO[bytes], wanted: set[str] | None, now: datetime,
              default_currency: str | None) -> Iterator[FeedItem | FeedRowError]:
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline="")
    reader = csv.reader(text, delimiter="\t")
    try:
        header = [_norm_header(h) for h in next(reader)]
    except StopIteration:
        return
    except csv.Error as exc:
        yield FeedRowError(None, 1, FailureReason.PARSE_ERROR, f"TSV header unreadable: {exc}")
        return
    if "id" not in header:
        yield FeedRowError(None, 1, FailureReason.PARSE_ERROR, f"TSV header has no id column: {header}")
        return
    id_col = header.index("id")
    while True:
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield FeedRowError(None, line, FailureReason.PARSE_ERROR, f"TSV line {line}: {exc}")
            continue
        if not row or all(not c.strip() for c in row):
            continue
        item_id = row[id_col].strip() if len(row) > id_col else None
        if wanted is not None and item_id not in wanted:
            continue
        if len(row) != len(header):
            yield FeedRowError(
                item_id or None, line, FailureReason.PARSE_ERROR,
                f"TSV line {line} has {len(row)} cells, header has {len(header)}",
            )
            continue
        fields: dict[str, Any] = dict(zip(header, row))
        fields["shipping"] = _tsv_shipping(fields.get("shipping") or "")
        yield _build(fields, line, now, default_currency)


# --------------------------------------------------------------------------------------------


class _Prefixed(io.RawIOBase):
    """A non-seekable stream with its sniffed head put back in front."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        return n


def _sniff(stream: IO[bytes]) -> tuple[str, IO[bytes]]:
    head = stream.read(4096)
    if stream.seekable():
        stream.seek(-len(head), os.SEEK_CUR)
        out: IO[bytes] = stream
    else:
        out = io.BufferedReader(_Prefixed(head, stream))
    stripped = head.lstrip(codecs.BOM_UTF8).lstrip()
    return ("xml" if stripped.startswith(b"<") else "tsv"), out


def iter_feed_items(
    source: BinaryIO | str | os.PathLike,
    *,
    wanted_ids: set[str] | None = None,
    now: datetime | None = None,
    default_currency: str | None = None,
    fmt: str | None = None,
) -> Iterator[FeedItem | FeedRowError]:
    """Stream a Merchant Center feed (path or binary file object); see the module docstring.

    `wanted_ids` skips every other item cheaply (before its prices are parsed). `now` decides
    whether a sale price is effective (default: the current UTC time; naive means UTC).
    `fmt` is "xml" or "tsv"; None sniffs the content.
    """
    if fmt not in (None, "xml", "tsv"):
        raise ValueError(f"fmt must be 'xml', 'tsv' or None, got {fmt!r}")
    moment = now or datetime.now(timezone.utc)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    owned = None
    if isinstance(source, (str, os.PathLike)):
        owned = open(source, "rb")  # noqa: SIM115 - closed in finally
        stream: IO[bytes] = owned
    else:
        stream = source
    try:
        sniffed, stream = _sniff(stream)
        kind = fmt or sniffed
        if kind == "xml":
            yield from _iter_xml(stream, wanted_ids, moment, default_currency)
        else:
            yield from _iter_tsv(stream, wanted_ids, moment, default_currency)
    finally:
        if owned is not None:
            owned.close()
