"""Price extraction from one product page: every price on it, each with its PriceKind.

Order (the first source that yields a full-payment price wins `Extracted.method`):

1. **jsonld** (fast path): selectolax/Lexbor picks the `<script type="application/ld+json">` tags
   and `json.loads(..., parse_float=Decimal)` reads each one separately, so a malformed block
   does not hide a valid one. schema.org `Product` / `Offer` / `AggregateOffer` are found inside
   `@graph`, top-level lists, nested objects and `@id` references; `offers` may be an object or a
   list; `priceSpecification` (incl. `UnitPriceSpecification`) with `priceType`
   StrikethroughPrice / ListPrice / MSRP / SRP is REFERENCE, SalePrice is SALE.
2. **opengraph**: `og:price:amount` / `product:price:amount` (REGULAR), `product:sale_price:amount`
   (SALE), `product:original_price:amount` (REFERENCE), `...:currency`, `og|product:availability`.
3. **microdata**: `itemprop="price"` elements (value in `content` or in the text),
   `itemprop="priceCurrency"`, `itemprop="availability"`, `itemprop="gtin13"`...; a visible pt-BR
   label in the element (or its short parent) sets the kind: "no Pix"/"à vista"/"boleto" = CASH,
   "no cartão" = CARD, "10x de" = INSTALLMENT, a leading "de" = REFERENCE.

The fallbacks (2, 3) use selectolax lookups, not extruct: same answers, measured faster (see
bench/bench_extraction.py).

Multi-price convention (what the simulator emits; always read, merged with any source):

    <span data-price-kind="reference">de R$ 2.599,00</span>
    <span data-price-kind="cash">R$ 1.899,00 no Pix</span>
    <span data-price-kind="card">R$ 2.099,00 no cartão</span>
    <span data-price-kind="installment" data-installments="10">10x de R$ 209,90 sem juros</span>

`data-price-kind` is one of cash | card | installment | reference | regular | sale. The amount is
taken from a `content` or `data-price` attribute when present (machine format, "1899.00"), else
parsed from the visible text with the page locale. The instalment count comes from
`data-installments`, else from the text ("10x"). Currency: the symbol in the text, else
`data-currency`, else the page's `itemprop=priceCurrency` / `og:price:currency`, else the shop
default (then `extra["currency_defaulted"]` is True and `raw_currency` is None).

Identical quotes (same kind, amount after quantizing to cents, count) collapse to one: "2879.2"
and "2879.20" are one price, never an error.

Outcomes when no full-payment price is found: a bot wall (captcha / access denied markers) raises
BOT_WALL; an out-of-stock page returns `Extracted` with availability OUT_OF_STOCK (or
DISCONTINUED) and no full-payment quote; a price that failed to parse raises that failure
(UNPARSEABLE_PRICE, NON_POSITIVE_PRICE, CURRENCY_MISSING); otherwise NO_PRICE.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterator

from selectolax.lexbor import LexborHTMLParser, LexborNode

from smartbuy_pipeline.domain.gtin import is_valid_gtin
from smartbuy_pipeline.domain.money import (
    _INSTALLMENT,
    _NUMBER_TOKEN,
    currency_code,
    parse_decimal_amount,
    parse_money,
)
from smartbuy_pipeline.domain.types import (
    FULL_PAYMENT_KINDS,
    Availability,
    ExtractionError,
    Extracted,
    FailureReason,
    Money,
    PriceKind,
    PriceQuote,
)

__all__ = [
    "extract_page",
    "classify_price_label",
    "parse_availability",
    "PRICE_KIND_ATTR",
    "BOT_WALL_MARKERS",
    "BOT_WALL_MARKUP_MARKERS",
    "OUT_OF_STOCK_MARKERS",
]

PRICE_KIND_ATTR = "data-price-kind"

BOT_WALL_MARKERS = (
    "captcha",
    "verifique que você é humano",
    "verifique se você é humano",
    "confirme que você é humano",
    "não sou um robô",
    "verify you are human",
    "are you a robot",
    "are you human",
    "access denied",
    "acesso negado",
    "unusual traffic",
    "pardon our interruption",
    "attention required! | cloudflare",
    "cf-challenge",
    "cf-chl-",
    "just a moment...",
    "request blocked",
    "requisição bloqueada",
)

# Looked for in the raw markup (attributes, script URLs), not only in the visible text.
BOT_WALL_MARKUP_MARKERS = (
    "g-recaptcha",
    "h-captcha",
    "cf-chl-",
    "challenge-platform",
    "px-captcha",
    "/_captcha/",
    "datadome",
)

OUT_OF_STOCK_MARKERS = (
    "esgotado",
    "produto indisponível",
    "produto indisponivel",
    "fora de estoque",
    "sem estoque",
    "avise-me quando chegar",
    "out of stock",
    "sold out",
)

_PRODUCT_TYPES = frozenset({"product", "productmodel", "individualproduct", "productgroup"})
_OFFER_TYPES = frozenset({"offer", "aggregateoffer"})
_GTIN_KEYS = ("gtin13", "gtin", "gtin14", "gtin8", "gtin12", "ean")

_KIND_ALIASES: dict[str, PriceKind] = {
    **{k.value: k for k in PriceKind},
    "pix": PriceKind.CASH,
    "boleto": PriceKind.CASH,
    "avista": PriceKind.CASH,
    "list": PriceKind.REFERENCE,
    "de": PriceKind.REFERENCE,
    "strikethrough": PriceKind.REFERENCE,
    "parcelado": PriceKind.INSTALLMENT,
}

_PRICE_TYPE_KIND = {
    "strikethroughprice": PriceKind.REFERENCE,
    "listprice": PriceKind.REFERENCE,
    "msrp": PriceKind.REFERENCE,
    "srp": PriceKind.REFERENCE,
    "saleprice": PriceKind.SALE,
}

# Best first: the offer's availability is the best one among its sources/offers.
_AVAILABILITY_RANK = (
    Availability.IN_STOCK,
    Availability.PREORDER,
    Availability.BACKORDER,
    Availability.OUT_OF_STOCK,
    Availability.DISCONTINUED,
    Availability.UNKNOWN,
)

_AVAILABILITY_WORDS: dict[str, Availability] = {
    "instock": Availability.IN_STOCK,
    "limitedavailability": Availability.IN_STOCK,
    "onlineonly": Availability.IN_STOCK,
    "instoreonly": Availability.IN_STOCK,
    "available": Availability.IN_STOCK,
    "availablefororder": Availability.IN_STOCK,
    "emestoque": Availability.IN_STOCK,
    "disponivel": Availability.IN_STOCK,
    "outofstock": Availability.OUT_OF_STOCK,
    "oos": Availability.OUT_OF_STOCK,
    "soldout": Availability.OUT_OF_STOCK,
    "esgotado": Availability.OUT_OF_STOCK,
    "indisponivel": Availability.OUT_OF_STOCK,
    "preorder": Availability.PREORDER,
    "presale": Availability.PREORDER,
    "prevenda": Availability.PREORDER,
    "backorder": Availability.BACKORDER,
    "discontinued": Availability.DISCONTINUED,
}


def _fold(text: str) -> str:
    """Lower-case and strip accents: "À Vista no Cartão" -> "a vista no cartao"."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def parse_availability(value: Any) -> Availability:
    """schema.org URL ("https://schema.org/InStock"), OG word ("instock", "oos") or feed value."""
    if not isinstance(value, str) or not value.strip():
        return Availability.UNKNOWN
    last = value.strip().rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    key = re.sub(r"[^a-z]", "", _fold(last))
    return _AVAILABILITY_WORDS.get(key, Availability.UNKNOWN)


def _best_availability(values: list[Availability]) -> Availability:
    known = [v for v in values if v is not Availability.UNKNOWN]
    if not known:
        return Availability.UNKNOWN
    return min(known, key=_AVAILABILITY_RANK.index)


def _installment_first(text: str) -> int | None:
    """The instalment count when the text starts with one ("10x de R$ 209,90"), else None."""
    first = _NUMBER_TOKEN.search(text)
    m = _INSTALLMENT.search(text)
    if m and first and m.start() == first.start() and _NUMBER_TOKEN.search(m.group("rest")):
        count = int(m.group("count"))
        return count if count >= 1 else None
    return None


def classify_price_label(text: str) -> PriceKind | None:
    """The PriceKind a visible pt-BR label implies, or None when it says nothing.

    "10x de R$ 209,90" -> INSTALLMENT; "no Pix" / "à vista" / "boleto" -> CASH;
    "no cartão" -> CARD; "de R$ 2.599,00" (leading "de") -> REFERENCE; "por R$ ..." -> REGULAR.
    """
    folded = _fold(text).strip()
    if _installment_first(folded) is not None or re.search(r"\bparcelas?\b", folded):
        return PriceKind.INSTALLMENT
    if re.search(r"\bpix\b|\ba vista\b|\bavista\b|\bboleto\b", folded):
        return PriceKind.CASH
    if re.search(r"\bcartao\b|\bcredito\b", folded):
        return PriceKind.CARD
    if re.match(r"^(de|era|antes)\b[:\s]", folded) or "preco original" in folded:
        return PriceKind.REFERENCE
    if re.match(r"^por\b", folded):
        return PriceKind.REGULAR
    return None


# --------------------------------------------------------------------------------------------
# Collection state


@dataclass
class _Found:
    """Quotes and facts gathered by one or more sources."""

    locale: str
    default_currency: str | None
    quotes: list[PriceQuote] = field(default_factory=list)
    declared: list[bool] = field(default_factory=list)  # per quote: currency stated by the page
    availability: list[Availability] = field(default_factory=list)
    gtin: str | None = None
    gtin_invalid: str | None = None
    freight: Money | None = None
    errors: list[ExtractionError] = field(default_factory=list)
    jsonld_errors: list[str] = field(default_factory=list)
    has_product: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, kind: PriceKind, money: Money, *, declared: bool, installments: int | None = None):
        if kind is not PriceKind.INSTALLMENT:
            installments = None
        self.quotes.append(PriceQuote(kind, money, installments))
        self.declared.append(declared)

    def add_gtin(self, raw: Any) -> None:
        if self.gtin is not None or raw is None or isinstance(raw, (dict, list, bool)):
            return
        text = str(raw).strip()
        if not text:
            return
        if is_valid_gtin(text):
            self.gtin = text
        elif self.gtin_invalid is None:
            self.gtin_invalid = text

    def has_full_payment(self) -> bool:
        return any(q.kind in FULL_PAYMENT_KINDS for q in self.quotes)

    def money_from_machine(self, amount: Any, currency: Any, where: str, *, allow_zero=False):
        """(Money, declared) from a machine amount and an optional declared currency."""
        try:
            value = parse_decimal_amount(amount, allow_zero=allow_zero)
        except ExtractionError as exc:
            self.errors.append(ExtractionError(exc.reason, f"{where}: {exc.detail}"))
            return None
        code = currency_code(currency) if isinstance(currency, str) else None
        if code is not None:
            return Money(value, code), True
        if self.default_currency is not None:
            return Money(value, self.default_currency), False
        self.errors.append(
            ExtractionError(
                FailureReason.CURRENCY_MISSING,
                f"{where}: amount {amount!r} has no currency ({currency!r}) and no shop default",
            )
        )
        return None

    def money_from_text(self, text: str, fallback_currency: str | None, where: str):
        """(Money, declared) from displayed text; the page currency, then the shop default."""
        try:
            return parse_money(text, locale=self.locale), True
        except ExtractionError as exc:
            if exc.reason is not FailureReason.CURRENCY_MISSING:
                self.errors.append(ExtractionError(exc.reason, f"{where}: {exc.detail}"))
                return None
        currency = fallback_currency or self.default_currency
        if currency is None:
            self.errors.append(
                ExtractionError(
                    FailureReason.CURRENCY_MISSING,
                    f"{where}: price text {text!r} has no currency and no shop default",
                )
            )
            return None
        try:
            return parse_money(text, locale=self.locale, default_currency=currency), (
                fallback_currency is not None
            )
        except ExtractionError as exc:  # pragma: no cover - same text parsed above
            self.errors.append(ExtractionError(exc.reason, f"{where}: {exc.detail}"))
            return None


# --------------------------------------------------------------------------------------------
# JSON-LD


def _types(node: dict[str, Any]) -> set[str]:
    raw = node.get("@type")
    items = raw if isinstance(raw, list) else [raw]
    out = set()
    for item in items:
        if isinstance(item, str):
            out.add(item.rsplit("/", 1)[-1].rsplit(":", 1)[-1].lower())
    return out


def _walk(obj: Any, depth: int = 0) -> Iterator[dict[str, Any]]:
    """Every dict in a JSON-LD document, parents before children (document order)."""
    if depth > 40:
        return
    if isinstance(obj, dict):
        yield obj
        for value in obj.values():
            if isinstance(value, (dict, list)):
                yield from _walk(value, depth + 1)
    elif isinstance(obj, list):
        for value in obj:
            yield from _walk(value, depth + 1)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _load_jsonld(text: str) -> Any:
    text = text.strip()
    if text.startswith("<!--"):
        text = text[4:]
    if text.endswith("-->"):
        text = text[:-3]
    text = text.replace("//<![CDATA[", "").replace("//]]>", "").strip()
    return json.loads(text, parse_float=Decimal, strict=False)


def _jsonld_documents(tree: LexborHTMLParser, found: _Found) -> list[Any]:
    docs = []
    for index, node in enumerate(tree.css('script[type="application/ld+json"]')):
        raw = node.text(deep=True)
        if not raw or not raw.strip():
            continue
        try:
            docs.append(_load_jsonld(raw))
        except (ValueError, RecursionError) as exc:
            found.jsonld_errors.append(f"ld+json block #{index}: {exc}")
    return docs


def _resolve(value: Any, ids: dict[str, dict[str, Any]]) -> Any:
    if isinstance(value, dict) and "@id" in value and len(value) == 1:
        return ids.get(value["@id"], value)
    return value


def _label_of(node: dict[str, Any]) -> str:
    parts = []
    for key in ("name", "description", "acceptedPaymentMethod", "priceComponentType"):
        for v in _as_list(node.get(key)):
            if isinstance(v, str):
                parts.append(v.rsplit("/", 1)[-1].rsplit("#", 1)[-1])
            elif isinstance(v, dict) and isinstance(v.get("name"), str):
                parts.append(v["name"])
    return " ".join(parts)


def _spec_kind(spec: dict[str, Any], default: PriceKind) -> tuple[PriceKind, int | None]:
    price_type = spec.get("priceType")
    if isinstance(price_type, str):
        key = price_type.rsplit("/", 1)[-1].rsplit(":", 1)[-1].lower()
        if key in _PRICE_TYPE_KIND:
            return _PRICE_TYPE_KIND[key], None
    label = _label_of(spec)
    kind = classify_price_label(label) if label else None
    count = _installment_first(_fold(label)) if label else None
    duration = spec.get("billingDuration")
    if isinstance(duration, (int, Decimal)) and not isinstance(duration, bool) and duration > 1:
        if kind in (None, PriceKind.INSTALLMENT):
            return PriceKind.INSTALLMENT, int(duration)
    if kind is None:
        return default, None
    return kind, count if kind is PriceKind.INSTALLMENT else None


def _offer(offer: dict[str, Any], currency: Any, found: _Found, ids: dict, where: str) -> None:
    types = _types(offer)
    currency = offer.get("priceCurrency") or currency
    found.availability.append(parse_availability(offer.get("availability")))
    for key in _GTIN_KEYS:
        found.add_gtin(offer.get(key))
    for details in _as_list(_resolve(offer.get("shippingDetails"), ids)):
        details = _resolve(details, ids)
        if found.freight is None and isinstance(details, dict):
            rate = _resolve(details.get("shippingRate"), ids)
            if isinstance(rate, dict) and rate.get("value") is not None:
                got = found.money_from_machine(
                    rate.get("value"), rate.get("currency") or currency,
                    f"{where}.shippingRate", allow_zero=True,
                )
                if got:
                    found.freight = got[0]
    if "aggregateoffer" in types:
        before = len(found.quotes)
        for i, sub in enumerate(_as_list(offer.get("offers"))):
            sub = _resolve(sub, ids)
            if isinstance(sub, dict):
                _offer(sub, currency, found, ids, f"{where}.offers[{i}]")
        if len(found.quotes) == before and offer.get("lowPrice") is not None:
            got = found.money_from_machine(offer.get("lowPrice"), currency, f"{where}.lowPrice")
            if got:
                found.add(PriceKind.REGULAR, got[0], declared=got[1])
        if offer.get("highPrice") is not None:
            found.extra.setdefault("high_price", str(offer.get("highPrice")))
        if offer.get("offerCount") is not None:
            found.extra.setdefault("offer_count", str(offer.get("offerCount")))
        return
    label = _label_of(offer)
    offer_kind = (classify_price_label(label) if label else None) or PriceKind.REGULAR
    if offer.get("price") is not None:
        got = found.money_from_machine(offer.get("price"), currency, f"{where}.price")
        if got:
            count = _installment_first(_fold(label)) if offer_kind is PriceKind.INSTALLMENT else None
            found.add(offer_kind, got[0], declared=got[1], installments=count)
    for i, spec in enumerate(_as_list(offer.get("priceSpecification"))):
        spec = _resolve(spec, ids)
        if not isinstance(spec, dict) or spec.get("price") is None:
            continue
        kind, count = _spec_kind(spec, offer_kind)
        got = found.money_from_machine(
            spec.get("price"), spec.get("priceCurrency") or currency,
            f"{where}.priceSpecification[{i}]",
        )
        if got:
            found.add(kind, got[0], declared=got[1], installments=count)


def _from_jsonld(tree: LexborHTMLParser, found: _Found) -> None:
    docs = _jsonld_documents(tree, found)
    if not docs:
        return
    nodes = [n for doc in docs for n in _walk(doc)]
    ids = {n["@id"]: n for n in nodes if isinstance(n.get("@id"), str) and len(n) > 1}
    products = [n for n in nodes if _types(n) & _PRODUCT_TYPES]
    found.has_product = bool(products)
    for p_index, product in enumerate(products):
        for key in _GTIN_KEYS:
            found.add_gtin(product.get(key))
        before = len(found.quotes)
        offers = _as_list(_resolve(product.get("offers"), ids))
        for o_index, offer in enumerate(offers):
            offer = _resolve(offer, ids)
            if isinstance(offer, dict):
                _offer(offer, None, found, ids, f"jsonld Product[{p_index}].offers[{o_index}]")
        if len(found.quotes) > before:
            if isinstance(product.get("name"), str):
                found.extra.setdefault("title", product["name"])
            return  # the first product with prices is the page's product
    # No Product with prices: stand-alone Offer / AggregateOffer nodes.
    for o_index, node in enumerate(n for n in nodes if _types(n) & _OFFER_TYPES):
        _offer(node, None, found, ids, f"jsonld Offer[{o_index}]")
        if found.quotes:
            return


# --------------------------------------------------------------------------------------------
# OpenGraph / product meta


def _meta(tree: LexborHTMLParser) -> dict[str, str]:
    out: dict[str, str] = {}
    for node in tree.css("meta"):
        attrs = node.attributes
        key = attrs.get("property") or attrs.get("name")
        value = attrs.get("content")
        if key and value is not None:
            out.setdefault(key.strip().lower(), value.strip())
    return out


def _from_opengraph(meta: dict[str, str], found: _Found) -> None:
    currency = meta.get("product:price:currency") or meta.get("og:price:currency")
    pairs = (
        ("product:price:amount", PriceKind.REGULAR, currency),
        ("og:price:amount", PriceKind.REGULAR, currency),
        ("product:sale_price:amount", PriceKind.SALE,
         meta.get("product:sale_price:currency") or currency),
        ("product:original_price:amount", PriceKind.REFERENCE,
         meta.get("product:original_price:currency") or currency),
    )
    for key, kind, cur in pairs:
        if meta.get(key):
            got = found.money_from_machine(meta[key], cur, f"meta {key}")
            if got:
                found.add(kind, got[0], declared=got[1])
    found.availability.append(
        parse_availability(meta.get("product:availability") or meta.get("og:availability"))
    )
    for key in ("product:ean", "product:gtin", "product:gtin13", "og:upc"):
        found.add_gtin(meta.get(key))


# --------------------------------------------------------------------------------------------
# HTML: data-price-kind convention and microdata


def _node_value(node: LexborNode) -> str:
    attrs = node.attributes
    for key in ("content", "href", "value"):
        if attrs.get(key):
            return attrs[key]  # type: ignore[return-value]
    return node.text(deep=True, separator=" ", strip=True)


def _page_currency(tree: LexborHTMLParser, meta: dict[str, str] | None, text: str) -> str | None:
    node = tree.css_first('[itemprop="priceCurrency"]') if "priceCurrency" in text else None
    if node is not None:
        code = currency_code(_node_value(node))
        if code:
            return code
    if meta:
        return currency_code(meta.get("product:price:currency") or meta.get("og:price:currency"))
    return None


def _priced_node(node: LexborNode, kind_hint: PriceKind | None, currency: str | None,
                 found: _Found, where: str) -> None:
    attrs = node.attributes
    text = node.text(deep=True, separator=" ", strip=True)
    machine = attrs.get("content") or attrs.get("data-price")
    label = text
    if kind_hint is None and not classify_price_label(text):
        parent = node.parent
        if parent is not None:
            parent_text = parent.text(deep=True, separator=" ", strip=True)
            if len(parent_text) <= 120 and len(_NUMBER_TOKEN.findall(parent_text)) <= 2:
                label = parent_text
    kind = kind_hint or classify_price_label(label) or PriceKind.REGULAR
    count: int | None = None
    if kind is PriceKind.INSTALLMENT:
        raw_count = attrs.get("data-installments")
        if raw_count and raw_count.strip().isdigit() and int(raw_count) >= 1:
            count = int(raw_count)
        else:
            count = _installment_first(_fold(label))
    declared_cur = currency_code(attrs.get("data-currency")) if attrs.get("data-currency") else None
    if machine:
        text_cur = None
        if text:
            try:
                text_cur = parse_money(text, locale=found.locale).currency
            except ExtractionError:
                text_cur = None
        got = found.money_from_machine(machine, text_cur or declared_cur or currency, where)
        if got and not (text_cur or declared_cur or currency):
            got = (got[0], False)
    elif text:
        got = found.money_from_text(text, declared_cur or currency, where)
    else:
        found.errors.append(
            ExtractionError(FailureReason.UNPARSEABLE_PRICE, f"{where}: empty price element")
        )
        got = None
    if got:
        found.add(kind, got[0], declared=got[1], installments=count)


def _from_price_kind_elements(tree: LexborHTMLParser, currency: str | None,
                              found: _Found) -> None:
    for i, node in enumerate(tree.css(f"[{PRICE_KIND_ATTR}]")):
        raw = (node.attributes.get(PRICE_KIND_ATTR) or "").strip().lower()
        hint = _KIND_ALIASES.get(raw)
        _priced_node(node, hint, currency, found, f'[{PRICE_KIND_ATTR}="{raw}"] #{i}')


def _is_product_scope(node: LexborNode) -> bool:
    attrs = node.attributes
    return "itemscope" in attrs and "product" in (attrs.get("itemtype") or "").lower()


def _inside_other_product(node: LexborNode, root: LexborNode | None) -> bool:
    """True when a Product itemscope other than `root` encloses `node` (a related product)."""
    parent = node.parent
    while parent is not None and parent is not root:
        if root is not None and parent.mem_id == root.mem_id:
            return False
        if _is_product_scope(parent):
            return True
        parent = parent.parent
    return False


def _from_microdata(tree: LexborHTMLParser, currency: str | None, found: _Found) -> None:
    # The page's product is the first Product itemscope; prices inside another (nested or later)
    # Product scope belong to related products and are ignored.
    root = next((n for n in tree.css("[itemscope][itemtype]") if _is_product_scope(n)), None)
    scope = root if root is not None else tree
    for i, node in enumerate(scope.css('[itemprop="price"]')):
        if PRICE_KIND_ATTR in node.attributes:
            continue  # already read by the data-price-kind pass
        if _inside_other_product(node, root):
            continue
        _priced_node(node, None, currency, found, f'[itemprop="price"] #{i}')
    for node in tree.css('[itemprop="availability"]'):
        found.availability.append(parse_availability(_node_value(node)))
    for key in _GTIN_KEYS:
        node = tree.css_first(f'[itemprop="{key}"]')
        if node is not None:
            found.add_gtin(_node_value(node))


# --------------------------------------------------------------------------------------------


def _decode(html: bytes | str) -> str:
    if isinstance(html, str):
        return html
    if html.startswith(b"\xef\xbb\xbf"):
        return html[3:].decode("utf-8", errors="replace")
    try:
        return html.decode("utf-8")
    except UnicodeDecodeError:
        head = html[:4096].lower()
        m = re.search(rb'charset=["\']?([a-z0-9_\-]+)', head)
        encoding = m.group(1).decode("ascii") if m else "cp1252"
        try:
            return html.decode(encoding, errors="replace")
        except LookupError:
            return html.decode("cp1252", errors="replace")


def _dedupe(found: _Found) -> tuple[tuple[PriceQuote, ...], bool, str | None]:
    """(unique quotes in order, any currency defaulted, declared currency of the first price)."""
    seen: set[PriceQuote] = set()
    quotes: list[PriceQuote] = []
    defaulted = False
    raw_currency = None
    for quote, declared in zip(found.quotes, found.declared):
        if not declared:
            defaulted = True
        elif raw_currency is None:
            raw_currency = quote.money.currency
        if quote not in seen:
            seen.add(quote)
            quotes.append(quote)
    return tuple(quotes), defaulted, raw_currency


def _page_text(tree: LexborHTMLParser) -> str:
    parts = []
    title = tree.css_first("title")
    if title is not None:
        parts.append(title.text())
    body = tree.body
    if body is not None:
        parts.append(body.text(deep=True, separator=" "))
    return " ".join(parts).casefold()


def _oos_method(found: _Found, meta: dict[str, str] | None) -> str:
    if found.has_product:
        return "jsonld"
    if meta and (meta.get("product:availability") or meta.get("og:availability")):
        return "opengraph"
    return "microdata"


def extract_page(
    html: bytes | str, *, locale: str = "pt_BR", default_currency: str | None = None
) -> Extracted:
    """Every price on a product page, with its kind; see the module docstring for the rules."""
    source = _decode(html)
    tree = LexborHTMLParser(source)
    found = _Found(locale=locale, default_currency=default_currency)
    method = ""

    _from_jsonld(tree, found)
    if found.has_full_payment():
        method = "jsonld"
    meta: dict[str, str] | None = None
    if not method:
        meta = _meta(tree)
        _from_opengraph(meta, found)
        if found.has_full_payment():
            method = "opengraph"
    has_kind_attr = PRICE_KIND_ATTR in source  # skip a full-tree selector scan when absent
    page_currency = (
        _page_currency(tree, meta, source) if (has_kind_attr or not method) else None
    )
    if page_currency is None and has_kind_attr:
        # e.g. "1.899,00 no Pix" without a symbol on a JSON-LD page: the currency it declared
        page_currency = next(
            (q.money.currency for q, d in zip(found.quotes, found.declared) if d), None
        )
    before = len(found.quotes)
    if has_kind_attr:
        _from_price_kind_elements(tree, page_currency, found)
    if not method:
        _from_microdata(tree, page_currency, found)
        if found.has_full_payment():
            method = "microdata"
    elif len(found.quotes) > before:
        found.extra["html_price_kinds"] = True
    availability = _best_availability(found.availability)
    if availability is Availability.UNKNOWN and method == "jsonld":
        meta = meta if meta is not None else _meta(tree)
        availability = parse_availability(
            meta.get("product:availability") or meta.get("og:availability")
        )

    quotes, defaulted, raw_currency = _dedupe(found)
    extra: dict[str, Any] = dict(found.extra)
    if defaulted:
        extra["currency_defaulted"] = True
    if found.jsonld_errors:
        extra["jsonld_errors"] = found.jsonld_errors
    if found.errors:
        extra["price_errors"] = [f"{e.reason.value}: {e.detail}" for e in found.errors]
    if found.gtin_invalid and not found.gtin:
        extra["gtin_invalid"] = found.gtin_invalid

    if method:
        return Extracted(
            quotes=quotes, availability=availability, gtin=found.gtin, freight=found.freight,
            method=method, raw_currency=raw_currency, extra=extra,
        )

    # No full-payment price anywhere.
    text = _page_text(tree)
    if not found.has_product and not quotes:
        marker = next((m for m in BOT_WALL_MARKERS if m in text), None)
        if marker is None:
            markup = source.casefold()
            marker = next((m for m in BOT_WALL_MARKUP_MARKERS if m in markup), None)
        if marker is not None:
            raise ExtractionError(
                FailureReason.BOT_WALL,
                f"page has no product data and shows the bot-wall marker {marker!r}",
            )
    if availability not in (Availability.OUT_OF_STOCK, Availability.DISCONTINUED):
        if availability is Availability.UNKNOWN and any(m in text for m in OUT_OF_STOCK_MARKERS):
            availability = Availability.OUT_OF_STOCK
    if availability in (Availability.OUT_OF_STOCK, Availability.DISCONTINUED):
        return Extracted(
            quotes=quotes, availability=availability, gtin=found.gtin, freight=found.freight,
            method=_oos_method(found, meta),
            raw_currency=raw_currency, extra=extra,
        )
    if found.errors:
        first = found.errors[0]
        raise ExtractionError(first.reason, f"no usable price on the page; {first.detail}")
    detail = "no JSON-LD, OpenGraph or microdata price on the page"
    if quotes:
        detail += f" (only {', '.join(sorted({q.kind.value for q in quotes}))} quotes)"
    if found.jsonld_errors:
        detail += f"; malformed JSON-LD: {found.jsonld_errors[0]}"
    raise ExtractionError(FailureReason.NO_PRICE, detail)
