"""The catalog file (runbook procedure A): read and validate shops, products and offers.

Pure: no database, no Dagster. A streaming reader yields one typed row (`ShopRow`,
`ProductRow`, `OfferRow`) or one `RowError(line, kind, key, reason)` per record, in file
order; whatever cannot be read at all (missing file, unknown format, bad CSV header, broken
JSON array) raises `CatalogFileError`. The format is documented in docs/catalog.md:

* CSV (`.csv`): a header (line 1) with a `type` column and any of the columns below; one
  record per row, empty cell = not given.
* JSON Lines (`.jsonl`, `.ndjson`, or `.json` not starting with `[`): one object per line.
* JSON array (`.json` starting with `[`): one object per element; its line is the line of
  its opening `{`.

Every record has `type` = shop | product | offer. Offers reference their shop by domain and
their product by GTIN. Line numbers are the file's own (CSV header = line 1). A key seen on an
earlier valid line makes the later line a duplicate ("duplicate of line N"). Whether a
referenced shop or product exists is for the database layer (it knows what is stored).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, BinaryIO, TextIO

from smartbuy_pipeline.domain.gtin import InvalidGtin, normalize_gtin
from smartbuy_pipeline.domain.money import currency_code, parse_decimal_amount
from smartbuy_pipeline.domain.types import CENT, ExtractionError

__all__ = [
    "CSV_HEADER", "FORMATS", "OFFER_FIELDS", "PRODUCT_FIELDS", "SHOP_FIELDS", "SOURCE_KINDS",
    "CatalogFileError", "CatalogReader", "CatalogRow", "OfferRow", "ProductRow", "RowError",
    "ShopRow", "detect_format", "open_catalog", "read_catalog", "write_catalog",
]

FORMATS = ("csv", "json", "jsonl")
EXTENSIONS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}

SHOP_FIELDS = ("domain", "name", "reputation_score", "locale", "currency",
               "max_concurrent_requests", "min_interval_ms", "check_interval_seconds",
               "price_kind", "feed_url", "api_base_url")
PRODUCT_FIELDS = ("gtin", "name", "brand", "category")
OFFER_FIELDS = ("shop", "gtin", "source_kind", "locator", "price", "currency", "active")
FIELDS_BY_TYPE = {"shop": SHOP_FIELDS, "product": PRODUCT_FIELDS, "offer": OFFER_FIELDS}
_ALLOWED = {t: frozenset(("type", *f)) for t, f in FIELDS_BY_TYPE.items()}
# the superset header: `type`, then every field once, in this order (what export writes)
CSV_HEADER: tuple[str, ...] = ("type", *dict.fromkeys(SHOP_FIELDS + PRODUCT_FIELDS + OFFER_FIELDS))

SOURCE_KINDS = ("page", "merchant_feed", "marketplace_api")
SOURCE_KIND_ALIASES = {"feed": "merchant_feed", "api": "marketplace_api"}
PRICE_KINDS = ("cash", "card", "regular", "sale")
MAX_PRICE = Decimal("9999999999.99")  # numeric(12, 2)
MAX_TEXT = 2048

# Error kinds (RowError.kind). unknown_shop / unknown_product come from the database layer.
INVALID_GTIN = "invalid_gtin"
INVALID_LOCATOR = "invalid_locator"
MALFORMED_PRICE = "malformed_price"
DUPLICATE = "duplicate"
MISSING_FIELD = "missing_field"
INVALID_VALUE = "invalid_value"
UNKNOWN_TYPE = "unknown_type"
MALFORMED_ROW = "malformed_row"
UNKNOWN_SHOP = "unknown_shop"
UNKNOWN_PRODUCT = "unknown_product"

_DOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
                     r"(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$")
_LOCALE = re.compile(r"^[a-z]{2,3}(?:_[A-Z]{2})?$")
# Accepted price shapes (anything else is a malformed price, never a guess):
#   1234 | 1234.5 | 1234,56          one separator followed by 1-2 digits: decimal
#   1.234 | 1.234.567 | 1.234,56     pt-BR grouping with "." (optional ",dd" decimals)
#   1,234.56                         en grouping, decimals required ("1,234" alone is ambiguous)
_PRICE_SHAPE = re.compile(r"^(?:\d+(?:[.,]\d{1,2})?"
                          r"|\d{1,3}(?:\.\d{3})+(?:,\d{1,2})?"
                          r"|\d{1,3}(?:,\d{3})+\.\d{1,2})$")
# scheme, a non-empty host (optionally user@ and :port), then a path/query/fragment; no whitespace
_HTTP_URL = re.compile(r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#@]*@?[^\s/?#@:]+(?::\d{1,5})?(?:[/?#]\S*)?$")
# pt-BR thousands without decimals ("1.234", "1.234.567"): "." groups, it is no decimal point
_PT_GROUPING_ONLY = re.compile(r"^\d{1,3}(?:\.\d{3})+$")
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


class CatalogFileError(ValueError):
    """The file cannot be used at all (missing, unknown format, bad header, broken JSON)."""


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    kind: str
    key: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class ShopRow:
    line: int
    domain: str
    name: str
    reputation_score: int | None = None
    locale: str | None = None
    currency: str | None = None
    max_concurrent_requests: int | None = None
    min_interval_ms: int | None = None
    check_interval_seconds: int | None = None
    price_kind: str | None = None
    feed_url: str | None = None
    api_base_url: str | None = None

    @property
    def key(self) -> str:
        return self.domain


@dataclass(frozen=True, slots=True)
class ProductRow:
    line: int
    gtin: str  # GTIN-14
    name: str
    brand: str | None = None
    category: str | None = None

    @property
    def key(self) -> str:
        return self.gtin


@dataclass(frozen=True, slots=True)
class OfferRow:
    line: int
    shop: str  # the shop's domain
    gtin: str  # the product's GTIN-14
    source_kind: str
    locator: str
    price: Decimal | None = None  # initial price (see docs/catalog.md)
    currency: str | None = None
    active: bool | None = None

    @property
    def key(self) -> str:
        return offer_key(self.shop, self.source_kind, self.locator)


CatalogRow = ShopRow | ProductRow | OfferRow


def offer_key(shop: str, source_kind: str, locator: str) -> str:
    return f"{shop} {source_kind} {locator}"


# -- values --------------------------------------------------------------------------------------


class _Invalid(Exception):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind, self.reason = kind, reason


def _text(value: Any, field: str, single_line: bool = False) -> str | None:
    """A text value: None / "" / whitespace = not given. JSON numbers are accepted as text.
    NUL is never accepted; tabs and line breaks only in free text (not `single_line`)."""
    if value is None or value == "":
        return None
    if type(value) is not str and (isinstance(value, bool) or not isinstance(value, (int, Decimal))):
        raise _Invalid(INVALID_VALUE, f"{field} must be text, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        return None
    if len(text) > MAX_TEXT:
        raise _Invalid(INVALID_VALUE, f"{field} is longer than {MAX_TEXT} characters")
    if "\x00" in text or (single_line and any(ch in text for ch in "\r\n\t")):
        raise _Invalid(INVALID_VALUE, f"{field} contains a control character")
    return text


def _required(value: Any, field: str, single_line: bool = False) -> str:
    text = _text(value, field, single_line)
    if text is None:
        raise _Invalid(MISSING_FIELD, f"missing {field}")
    return text


def _int(value: Any, field: str, *, lo: int, hi: int) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise _Invalid(INVALID_VALUE, f"{field} must be an integer, got {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, Decimal) and value == value.to_integral_value():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"[+-]?\d{1,12}", value.strip()):
        number = int(value.strip())
    else:
        raise _Invalid(INVALID_VALUE, f"{field} must be an integer, got {value!r}")
    if not lo <= number <= hi:
        raise _Invalid(INVALID_VALUE, f"{field} must be between {lo} and {hi}, got {number}")
    return number


def _bool(value: Any, field: str) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if not text:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _Invalid(INVALID_VALUE, f"{field} must be true or false, got {value!r}")


def _domain(value: Any, field: str) -> str:
    text = _required(value, field, True).lower().rstrip(".")
    if not _DOMAIN.match(text):
        raise _Invalid(INVALID_VALUE, f"{field} {text!r} is not a domain name (no scheme, path or port)")
    return text


@lru_cache(maxsize=1 << 16)
def _normalized_gtin(text: str) -> tuple[str | None, str | None]:
    """(GTIN-14, None) or (None, why): offers repeat their products' GTINs, so cached."""
    try:
        return normalize_gtin(text), None
    except InvalidGtin as exc:
        return None, str(exc)


def _gtin(value: Any) -> str:
    gtin, error = _normalized_gtin(_required(value, "gtin", True))
    if gtin is None:
        raise _Invalid(INVALID_GTIN, f"invalid GTIN: {error}")
    return gtin


def _http_url(value: Any, field: str, kind: str = INVALID_VALUE) -> str | None:
    text = _text(value, field, True)
    if text is None:
        return None
    if not _HTTP_URL.match(text):
        raise _Invalid(kind, f"{field} must be an http(s) URL, got {text!r}")
    return text


def _currency(value: Any, field: str = "currency") -> str | None:
    text = _text(value, field)
    if text is None:
        return None
    code = currency_code(text) if len(text) == 3 else None
    if code is None:
        raise _Invalid(INVALID_VALUE, f"{field} must be an ISO 4217 code such as BRL, got {text!r}")
    return code


def parse_price(value: Any) -> Decimal | None:
    """An offer's price: a JSON number, or text "1234.56" / "1234,56" / "1.234,56" / "1,234.56"
    (pt-BR rules of domain.money: "1.234" is 1234). Malformed or not positive: _Invalid."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    shown = value if isinstance(value, str) else str(value)
    try:
        if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
            amount = parse_decimal_amount(value)
            if Decimal(value) != amount:
                raise _Invalid(MALFORMED_PRICE, f"malformed price {shown!r}: more than 2 decimal places")
        elif isinstance(value, str):
            text = value.strip()
            if not _PRICE_SHAPE.match(text):
                raise _Invalid(MALFORMED_PRICE, f"malformed price {shown!r}")
            # money.parse_decimal_amount applies the separator rule; the one case where pt-BR
            # and machine text disagree ("1.234" = 1234 in pt-BR) is resolved by the shape
            amount = parse_decimal_amount(text.replace(".", "") if _PT_GROUPING_ONLY.match(text) else text)
        else:
            raise _Invalid(MALFORMED_PRICE, f"malformed price {shown!r}")
    except ExtractionError as exc:
        raise _Invalid(MALFORMED_PRICE, f"malformed price {shown!r}: {exc.detail}") from None
    if amount <= 0:
        raise _Invalid(MALFORMED_PRICE, f"malformed price {shown!r}: not positive")
    if amount > MAX_PRICE:
        raise _Invalid(MALFORMED_PRICE, f"malformed price {shown!r}: too large")
    return amount.quantize(CENT)


# -- records -------------------------------------------------------------------------------------


class _Validator:
    """Record (field -> raw value) -> typed row or RowError; remembers keys for duplicates."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], int] = {}

    def validate(self, line: int, record: Mapping[str, Any]) -> CatalogRow | RowError:
        raw_type = record.get("type")
        rtype = raw_type.strip().lower() if isinstance(raw_type, str) else None
        if not rtype:
            return RowError(line, MISSING_FIELD, None, "missing type (shop, product or offer)")
        fields = FIELDS_BY_TYPE.get(rtype)
        if fields is None:
            return RowError(line, UNKNOWN_TYPE, None,
                            f"unknown type {raw_type!r}: expected shop, product or offer")
        key: str | None = None
        problems: list[_Invalid] = []
        allowed = _ALLOWED[rtype]
        extra = [f for f, v in record.items()
                 if v is not None and v != "" and f not in allowed and str(v).strip() != ""]
        if extra:
            problems.append(_Invalid(INVALID_VALUE, f"field(s) {', '.join(extra)} do not apply to {rtype} rows"))
        row: CatalogRow | None = None
        try:
            if rtype == "shop":
                row, key = self._shop(line, record, problems)
            elif rtype == "product":
                row, key = self._product(line, record, problems)
            else:
                row, key = self._offer(line, record, problems)
        except _Invalid as exc:  # the key itself is unusable
            problems.insert(0, exc)
        if problems:
            return RowError(line, problems[0].kind, key, "; ".join(p.reason for p in problems))
        assert row is not None
        first = self.seen.setdefault((rtype, row.key), line)
        if first != line:
            return RowError(line, DUPLICATE, row.key, f"duplicate of line {first}")
        return row

    @staticmethod
    def _collect(problems: list[_Invalid], fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except _Invalid as exc:
            problems.append(exc)
            return None

    def _shop(self, line: int, r: Mapping[str, Any], problems: list[_Invalid]) -> tuple[ShopRow | None, str]:
        domain = _domain(r.get("domain"), "domain")
        c = self._collect
        values = dict(
            name=c(problems, _required, r.get("name"), "name"),
            reputation_score=c(problems, _int, r.get("reputation_score"), "reputation_score", lo=0, hi=100),
            locale=c(problems, _text, r.get("locale"), "locale"),
            currency=c(problems, _currency, r.get("currency")),
            max_concurrent_requests=c(problems, _int, r.get("max_concurrent_requests"),
                                      "max_concurrent_requests", lo=1, hi=1000),
            min_interval_ms=c(problems, _int, r.get("min_interval_ms"), "min_interval_ms", lo=0, hi=86_400_000),
            check_interval_seconds=c(problems, _int, r.get("check_interval_seconds"),
                                     "check_interval_seconds", lo=1, hi=31_536_000),
            price_kind=c(problems, _text, r.get("price_kind"), "price_kind"),
            feed_url=c(problems, _http_url, r.get("feed_url"), "feed_url"),
            api_base_url=c(problems, _http_url, r.get("api_base_url"), "api_base_url"),
        )
        if values["locale"] is not None and not _LOCALE.match(values["locale"]):
            problems.append(_Invalid(INVALID_VALUE, f"locale must look like pt_BR, got {values['locale']!r}"))
        if values["price_kind"] is not None:
            values["price_kind"] = values["price_kind"].lower()
            if values["price_kind"] not in PRICE_KINDS:
                problems.append(_Invalid(INVALID_VALUE, f"price_kind must be one of {', '.join(PRICE_KINDS)}"))
        if problems:
            return None, domain
        return ShopRow(line, domain, **values), domain

    def _product(self, line: int, r: Mapping[str, Any], problems: list[_Invalid]) -> tuple[ProductRow | None, str]:
        gtin = _gtin(r.get("gtin"))
        c = self._collect
        name = c(problems, _required, r.get("name"), "name")
        brand = c(problems, _text, r.get("brand"), "brand")
        category = c(problems, _text, r.get("category"), "category")
        if problems:
            return None, gtin
        return ProductRow(line, gtin, name, brand, category), gtin

    def _offer(self, line: int, r: Mapping[str, Any], problems: list[_Invalid]) -> tuple[OfferRow | None, str | None]:
        c = self._collect
        shop = c(problems, _domain, r.get("shop"), "shop")
        gtin = c(problems, _gtin, r.get("gtin"))
        kind = c(problems, _required, r.get("source_kind"), "source_kind")
        if kind is not None:
            kind = SOURCE_KIND_ALIASES.get(kind.lower(), kind.lower())
            if kind not in SOURCE_KINDS:
                problems.append(_Invalid(INVALID_VALUE, f"source_kind must be one of {', '.join(SOURCE_KINDS)}, "
                                                        f"got {r.get('source_kind')!r}"))
                kind = None
        locator = raw_locator = c(problems, _required, r.get("locator"), "locator", True)
        if locator is not None and kind == "page":
            locator = c(problems, _http_url, locator, "locator of a page offer", INVALID_LOCATOR)
        price = c(problems, parse_price, r.get("price"))
        currency = c(problems, _currency, r.get("currency"))
        active = c(problems, _bool, r.get("active"), "active")
        key = offer_key(shop, kind, raw_locator) if shop and kind and raw_locator else None
        if problems:
            return None, key
        return OfferRow(line, shop, gtin, kind, locator, price, currency, active), key


# -- readers -------------------------------------------------------------------------------------


def detect_format(path: str | Path, fmt: str | None = None) -> str:
    """csv | json | jsonl, from `fmt` when given, else from the file's extension."""
    if fmt:
        value = fmt.strip().lower()
        value = "jsonl" if value in ("ndjson", "json-lines", "jsonlines") else value
        if value not in FORMATS:
            raise CatalogFileError(f"unknown format {fmt!r}: use csv, json or jsonl")
        return value
    suffix = Path(path).suffix.lower()
    if suffix not in EXTENSIONS:
        raise CatalogFileError(f"unknown format of {Path(path).name!r}: the name must end in "
                               f".csv, .json, .jsonl or .ndjson")
    return EXTENSIONS[suffix]


def _json_loads(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


class CatalogReader:
    """Iterate a catalog stream: one typed row or RowError per record, in file order.

    `bytes_read` is how far into the stream the reader is (for a progress bar); `rows` counts
    the records read so far."""

    def __init__(self, stream: BinaryIO, fmt: str, *, name: str = "<stream>",
                 total_bytes: int | None = None) -> None:
        if fmt not in FORMATS:
            raise CatalogFileError(f"unknown format {fmt!r}: use csv, json or jsonl")
        self.stream, self.fmt, self.name, self.total_bytes = stream, fmt, name, total_bytes
        self.rows = 0
        self._pos = 0  # for sources read whole (JSON array)
        self._validator = _Validator()

    @property
    def bytes_read(self) -> int:
        try:
            return max(self._pos, self.stream.tell())
        except (OSError, ValueError):
            return self._pos

    def __iter__(self) -> Iterator[CatalogRow | RowError]:
        if self.fmt == "csv":
            records = self._csv_records()
        else:
            records = self._json_records()
        validate = self._validator.validate
        for line, record in records:
            self.rows += 1
            yield record if isinstance(record, RowError) else validate(line, record)

    # CSV: the header names the columns; a record's line is its first physical line.
    def _csv_records(self) -> Iterator[tuple[int, Mapping[str, Any] | RowError]]:
        text = io.TextIOWrapper(self.stream, encoding="utf-8-sig", newline="")
        try:
            reader = csv.reader(text)
            try:
                header = next(reader, None)
            except csv.Error as exc:
                raise CatalogFileError(f"{self.name}: line 1: {exc}") from None
            if not header:
                raise CatalogFileError(f"{self.name}: empty file (expected a CSV header with a type column)")
            columns = [h.strip().lower() for h in header]
            unknown = [c for c in columns if c not in CSV_HEADER]
            if "type" not in columns:
                raise CatalogFileError(f"{self.name}: the CSV header (line 1) has no 'type' column")
            if unknown:
                raise CatalogFileError(f"{self.name}: unknown column(s) in the CSV header: {', '.join(unknown)}")
            dupes = sorted({c for c in columns if columns.count(c) > 1})
            if dupes:
                raise CatalogFileError(f"{self.name}: repeated column(s) in the CSV header: {', '.join(dupes)}")
            width = len(columns)
            last = reader.line_num
            while True:
                start = last + 1
                try:
                    values = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    raise CatalogFileError(f"{self.name}: line {start}: {exc}") from None
                last = reader.line_num
                if not values or (len(values) == 1 and not values[0].strip()):
                    continue  # blank line
                if len(values) != width:
                    yield start, RowError(start, MALFORMED_ROW, None,
                                          f"{len(values)} fields, the header has {width}")
                    continue
                yield start, dict(zip(columns, values))
        except UnicodeDecodeError as exc:
            raise CatalogFileError(f"{self.name}: not UTF-8 text ({exc.reason} after line {reader.line_num})") from None
        finally:
            text.detach()

    def _json_records(self) -> Iterator[tuple[int, Mapping[str, Any] | RowError]]:
        first = self.stream.peek(64)[:64] if hasattr(self.stream, "peek") else b""
        head = first.lstrip(codecs.BOM_UTF8).lstrip()
        if not first and hasattr(self.stream, "seekable") and self.stream.seekable():
            pos = self.stream.tell()
            head = self.stream.read(64).lstrip(codecs.BOM_UTF8).lstrip()
            self.stream.seek(pos)
        if self.fmt == "json" and head.startswith(b"["):
            yield from self._json_array()
        else:
            yield from self._json_lines()

    def _json_lines(self) -> Iterator[tuple[int, Mapping[str, Any] | RowError]]:
        for line, raw in enumerate(self.stream, start=1):
            try:
                text = raw.decode("utf-8-sig" if line == 1 else "utf-8").strip()
            except UnicodeDecodeError:
                raise CatalogFileError(f"{self.name}: line {line}: not UTF-8 text") from None
            if not text:
                continue
            try:
                record = _json_loads(text)
            except ValueError as exc:
                yield line, RowError(line, MALFORMED_ROW, None, f"not valid JSON: {exc}")
                continue
            if not isinstance(record, dict):
                yield line, RowError(line, MALFORMED_ROW, None, "not a JSON object")
                continue
            yield line, record

    def _json_array(self) -> Iterator[tuple[int, Mapping[str, Any] | RowError]]:
        try:
            text = self.stream.read().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise CatalogFileError(f"{self.name}: not UTF-8 text") from None
        decoder = json.JSONDecoder(parse_float=Decimal)
        ws = re.compile(r"\s*")
        line, counted = 1, 0

        def line_at(pos: int) -> int:
            nonlocal line, counted
            line += text.count("\n", counted, pos)
            counted = pos
            return line

        pos = ws.match(text, 0).end() + 1  # past "["
        pos = ws.match(text, pos).end()
        if text.startswith("]", pos):
            self._pos = len(text)
            return
        while True:
            at = line_at(pos)
            try:
                record, pos = decoder.raw_decode(text, pos)
            except ValueError as exc:
                raise CatalogFileError(f"{self.name}: line {at}: broken JSON array ({exc})") from None
            self._pos = pos
            if isinstance(record, dict):
                yield at, record
            else:
                yield at, RowError(at, MALFORMED_ROW, None, "not a JSON object")
            pos = ws.match(text, pos).end()
            if text.startswith(",", pos):
                pos = ws.match(text, pos + 1).end()
                continue
            if text.startswith("]", pos):
                if text[pos + 1:].strip():
                    raise CatalogFileError(f"{self.name}: line {line_at(pos)}: text after the JSON array")
                self._pos = len(text)
                return
            raise CatalogFileError(f"{self.name}: line {line_at(pos)}: broken JSON array (expected , or ])")


def read_catalog(stream: BinaryIO, fmt: str, *, name: str = "<stream>") -> Iterator[CatalogRow | RowError]:
    """Rows and RowErrors of a binary stream (see CatalogReader)."""
    return iter(CatalogReader(stream, fmt, name=name))


@contextmanager
def open_catalog(path: str | Path, fmt: str | None = None) -> Iterator[CatalogReader]:
    """Open a catalog file (format from `fmt` or the extension). CatalogFileError when it
    cannot be read."""
    p = Path(path)
    kind = detect_format(p, fmt)
    try:
        stream = p.open("rb")
    except FileNotFoundError:
        raise CatalogFileError(f"no such file: {p}") from None
    except IsADirectoryError:
        raise CatalogFileError(f"{p} is a directory, not a catalog file") from None
    except OSError as exc:
        raise CatalogFileError(f"cannot read {p}: {exc.strerror or exc}") from None
    try:
        yield CatalogReader(stream, kind, name=p.name, total_bytes=p.stat().st_size)
    finally:
        stream.close()


# -- writing (export) ----------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # money as text: exact, re-imported as-is
    return value


def write_catalog(records: Iterable[Mapping[str, Any]], out: TextIO | IO[str], fmt: str) -> int:
    """Write records ({"type": ..., field: value}) in the import format; returns how many.
    csv: the superset header, empty cell for None. json/jsonl: JSON Lines, None omitted."""
    count = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        for rec in records:
            writer.writerow([_cell(rec.get(col)) for col in CSV_HEADER])
            count += 1
    elif fmt in ("json", "jsonl"):
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        for rec in records:
            obj = {"type": rec["type"]}
            obj.update((k, _json_value(v)) for k, v in rec.items()
                       if k != "type" and v is not None and k in FIELDS_BY_TYPE[rec["type"]])
            out.write(dumps(obj) + "\n")
            count += 1
    else:
        raise CatalogFileError(f"unknown format {fmt!r}: use csv or json")
    return count
