"""Parse a Mercado-Livre-style multiget items API response (`GET /items?ids=A,B`).

The body is a JSON list of `{"code": 200, "body": {...item...}}` entries, one per requested id;
unknown ids come back as `{"code": 404, "body": {...}}`. JSON numbers are read with
`parse_float=Decimal`: prices never pass through float.

Mapping of one item:
* `price` -> REGULAR quote; `original_price` (when present and different) -> REFERENCE;
* `currency_id` -> currency (missing -> CURRENCY_MISSING: the API always states it);
* availability: `status` "active" with `available_quantity` > 0 (or absent) -> IN_STOCK,
  "active" with 0 -> OUT_OF_STOCK, "paused" -> OUT_OF_STOCK, "closed" -> DISCONTINUED;
* `shipping.free_shipping` true -> freight 0.00 in the item currency (false: unknown, None);
* `attributes[id=GTIN]` -> gtin when its check digit is valid;
* `seller_id`, `status`, `available_quantity` -> `extra`.
An item with no price is an out-of-stock `Extracted` (no quotes) when it is not purchasable,
else ExtractionError(NO_PRICE). Entries with code 404 -> ExtractionError(NOT_FOUND); other
codes -> HTTP_4XX / HTTP_5XX. Entries whose id cannot be determined are skipped (they cannot be
keyed); the caller sees the id as missing from the dict.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any, Iterable

from smartbuy_pipeline.domain.gtin import is_valid_gtin
from smartbuy_pipeline.domain.money import currency_code, parse_decimal_amount
from smartbuy_pipeline.domain.types import (
    Availability,
    ExtractionError,
    Extracted,
    FailureReason,
    Money,
    PriceKind,
    PriceQuote,
)

__all__ = ["parse_items_response", "parse_item", "chunk_ids", "MAX_IDS_PER_REQUEST"]

MAX_IDS_PER_REQUEST = 20
_ID_IN_MESSAGE = re.compile(r"\bid\s+([A-Za-z0-9_-]+)")


def chunk_ids(ids: Iterable[str], size: int = MAX_IDS_PER_REQUEST) -> list[list[str]]:
    """Split ids into request-sized groups, dropping duplicates and blanks, keeping order."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    seen: set[str] = set()
    unique: list[str] = []
    for raw in ids:
        item = str(raw).strip()
        if item and item not in seen:
            seen.add(item)
            unique.append(item)
    return [unique[i : i + size] for i in range(0, len(unique), size)]


def _entry_id(entry: dict[str, Any]) -> str | None:
    body = entry.get("body")
    for candidate in (body.get("id") if isinstance(body, dict) else None, entry.get("id")):
        if isinstance(candidate, (str, int)) and not isinstance(candidate, bool):
            return str(candidate)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        m = _ID_IN_MESSAGE.search(body["message"])
        if m:
            return m.group(1)
    return None


def _availability(body: dict[str, Any]) -> Availability:
    status = body.get("status")
    qty = body.get("available_quantity")
    if status == "closed":
        return Availability.DISCONTINUED
    if status == "paused":
        return Availability.OUT_OF_STOCK
    if status == "active":
        if isinstance(qty, (int, Decimal)) and not isinstance(qty, bool) and qty <= 0:
            return Availability.OUT_OF_STOCK
        return Availability.IN_STOCK
    return Availability.UNKNOWN


def _gtin(body: dict[str, Any]) -> str | None:
    for attr in body.get("attributes") or []:
        if isinstance(attr, dict) and str(attr.get("id", "")).upper() in ("GTIN", "EAN"):
            value = attr.get("value_name")
            if isinstance(value, str):
                for candidate in value.split(","):
                    if is_valid_gtin(candidate.strip()):
                        return candidate.strip()
    return None


def parse_item(body: dict[str, Any]) -> Extracted:
    """One item body (already decoded with parse_float=Decimal) into Extracted."""
    item_id = body.get("id")
    where = f"item {item_id!r}"
    currency_raw = body.get("currency_id")
    currency = currency_code(currency_raw) if isinstance(currency_raw, str) else None
    availability = _availability(body)
    extra: dict[str, Any] = {}
    for key in ("seller_id", "status", "available_quantity"):
        if body.get(key) is not None:
            value = body[key]
            extra[key] = str(value) if isinstance(value, Decimal) else value
    price_raw = body.get("price")
    if price_raw is None:
        if availability.purchasable:
            raise ExtractionError(FailureReason.NO_PRICE, f"{where}: price is null")
        return Extracted(quotes=(), availability=availability, gtin=_gtin(body),
                         method="items_api", raw_currency=currency, extra=extra)
    if currency is None:
        raise ExtractionError(
            FailureReason.CURRENCY_MISSING, f"{where}: currency_id {currency_raw!r} is missing or unknown"
        )
    try:
        price = Money(parse_decimal_amount(price_raw), currency)
        quotes = [PriceQuote(PriceKind.REGULAR, price)]
        original = body.get("original_price")
        if original is not None:
            reference = Money(parse_decimal_amount(original), currency)
            if reference != price:
                quotes.append(PriceQuote(PriceKind.REFERENCE, reference))
    except ExtractionError as exc:
        raise ExtractionError(exc.reason, f"{where}: {exc.detail}") from None
    shipping = body.get("shipping")
    freight = None
    if isinstance(shipping, dict) and shipping.get("free_shipping") is True:
        freight = Money(Decimal("0"), currency)
    return Extracted(
        quotes=tuple(quotes), availability=availability, gtin=_gtin(body), freight=freight,
        method="items_api", raw_currency=currency, extra=extra,
    )


def parse_items_response(body: bytes) -> dict[str, Extracted | ExtractionError]:
    """Every entry of a multiget response, keyed by item id (see the module docstring).

    Raises ExtractionError(PARSE_ERROR) when the body as a whole is not a JSON list.
    """
    try:
        data = json.loads(body, parse_float=Decimal)
    except (ValueError, RecursionError) as exc:
        raise ExtractionError(FailureReason.PARSE_ERROR, f"items API body is not JSON: {exc}") from None
    if not isinstance(data, list):
        raise ExtractionError(
            FailureReason.PARSE_ERROR, f"items API body is a {type(data).__name__}, expected a list"
        )
    out: dict[str, Extracted | ExtractionError] = {}
    for index, entry in enumerate(data):
        if not isinstance(entry, dict):
            continue
        item_id = _entry_id(entry)
        if item_id is None:
            continue
        code = entry.get("code")
        item = entry.get("body")
        if code == 200 and isinstance(item, dict):
            try:
                out[item_id] = parse_item(item)
            except ExtractionError as exc:
                out[item_id] = exc
        elif code == 404:
            out[item_id] = ExtractionError(
                FailureReason.NOT_FOUND, f"item {item_id!r}: the API answered 404 (entry #{index})"
            )
        elif isinstance(code, int) and 500 <= code < 600:
            out[item_id] = ExtractionError(
                FailureReason.HTTP_5XX, f"item {item_id!r}: the API answered {code} (entry #{index})"
            )
        elif isinstance(code, int) and 400 <= code < 500:
            reason = FailureReason.RATE_LIMITED if code == 429 else FailureReason.HTTP_4XX
            out[item_id] = ExtractionError(
                reason, f"item {item_id!r}: the API answered {code} (entry #{index})"
            )
        else:
            out[item_id] = ExtractionError(
                FailureReason.PARSE_ERROR,
                f"item {item_id!r}: entry #{index} has code {code!r} and body {type(item).__name__}",
            )
    return out
