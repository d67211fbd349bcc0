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


def _build(
    fields: dict[str, Any], where: int, now: datetime, default_currency: str | None
) -> FeedItem | FeedRowError:
    item_id = (fields.get("id") or "").strip() or None
    if item_id is None:
        return FeedRowError(None, where, FailureReason.PARSE_ERROR, f"item at {where} has no id")
    try:
        availability = Availability.UNKNOWN
        if fields.get("availability"):
            availability = parse_availability(fields["availability"])
        extra: dict[str, Any] = {}
        for key in ("title", "link", "brand", "condition"):
            if fields.get(key):
                extra[key] = fields[key].strip()
        gtin = None
        raw_gtin = (fields.get("gtin") or "").strip()
        if raw_gtin:
            if is_valid_gtin(raw_gtin):
                gtin = raw_gtin
            else:
                extra["gtin_invalid"] = raw_gtin
        freight = None
        shipping = fields.get("shipping") or []
        preferred = [s for s in shipping if (s.get("country") or "").upper() == "BR"] or shipping
        for entry in preferred:
            if entry.get("price"):
                # A free rate "0.00 BRL" is valid freight.
                freight = _feed_money(entry["price"], default_currency, "shipping price",
                                      allow_zero=True)[0]
                break

        price_text = (fields.get("price") or "").strip()
        quotes: list[PriceQuote] = []
        raw_currency = None
        if price_text:
            price, declared = _feed_money(price_text, default_currency, "price")
            if declared:
                raw_currency = price.currency
            else:
                extra["currency_defaulted"] = True
            sale_text = (fields.get("sale_price") or "").strip()
            if sale_text:
                sale = _feed_money(sale_text, default_currency, "sale_price")[0]
                window = (fields.get("sale_price_effective_date") or "").strip()
                active = True
                if window:
                    try:
                        start, end = parse_effective_interval(window)
                    except ValueError as exc:
                        raise ExtractionError(FailureReason.PARSE_ERROR, str(exc)) from None
                    active = start <= now <= end
                    extra["sale_price_effective"] = [start.isoformat(), end.isoformat()]
                if active:
                    quotes = [PriceQuote(PriceKind.SALE, sale), PriceQuote(PriceKind.REFERENCE, price)]
                else:
                    quotes = [PriceQuote(PriceKind.REGULAR, price)]
                    extra["sale_price_inactive"] = str(sale.amount)
            else:
                quotes = [PriceQuote(PriceKind.REGULAR, price)]
        elif availability not in (Availability.OUT_OF_STOCK, Availability.DISCONTINUED):
            raise ExtractionError(FailureReason.NO_PRICE, "item has no price and is not out of stock")
    except ExtractionError as exc:
        return FeedRowError(item_id, where, exc.reason, f"item {item_id!r} at {where}: {exc.detail}")
    return FeedItem(
        item_id,
        Extracted(
            quotes=tuple(quotes), availability=availability, gtin=gtin, freight=freight,
            method="feed", raw_currency=raw_currency, extra=extra,
        ),
    )


# --------------------------------------------------------------------------------------------
# XML


def _local(tag: Any) -> tuple[str, str]:
    if not isinstance(tag, str):
        return "", ""
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return ns, name
    return "", tag


def _xml_fields(elem: etree._Element) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    plain: dict[str, Any] = {}
    shipping: list[dict[str, str]] = []
    for child in elem:
        ns, name = _local(child.tag)
        if not name:
            continue
        if name == "shipping":
            entry = {}
            for sub in child:
                sub_name = _local(sub.tag)[1]
                if sub_name:
                    entry[sub_name] = (sub.text or "").strip()
            if not len(child) and child.text and child.text.strip():
                entry = _tsv_shipping(child.text)[0] if _tsv_shipping(child.text) else {}
            if entry:
                shipping.append(entry)
            continue
        if name == "link" and ns == ATOM_NS and child.get("href"):
            value = child.get("href")
        else:
            value = child.text or ""
        target = fields if ns == G_NS else plain
        target.setdefault(name, value)
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
                if wanted is not None:
                    id_node = elem.find(f"{_G}id")
                    item_id = (id_node.text or "").strip() if id_node is not None else None
                    if item_id not in wanted:
                        continue
                yield _build(_xml_fields(elem), last_line or index, now, default_currency)
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
