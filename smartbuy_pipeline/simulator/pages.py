"""Product pages, bot walls, merchant feeds and items-API bodies for the simulator.

Pages are realistic in size (100-300 KB: inline CSS/JS, nav, description, specs, reviews,
related products). The filler is generated ONCE per (shop, variant) and cached as bytes together
with its pre-compressed raw-deflate form; per request only the small dynamic parts (title,
structured data, breadcrumbs, price block) are rendered. A gzip body is then assembled from the
cached deflate segments plus the freshly compressed dynamic ones (each segment ends with a full
flush, so the concatenation is one valid deflate stream): gzip costs ~0.1 ms instead of ~1 ms.

Visible price block convention (the extractor reads it):

    <div class="price-box">
      <span class="price" data-price-kind="reference"><s>de R$ 2.599,00</s></span>
      <span class="price" data-price-kind="cash">R$ 1.899,00 <small>no Pix</small></span>
      <span class="price" data-price-kind="card">R$ 2.099,00 no cartão</span>
      <span class="price" data-price-kind="installment">10x de R$ 209,90 sem juros</span>
    </div>

Out of stock: no price anywhere on the page, the box says "Produto indisponível".
Related products in the filler DO show other prices (class "related-price"), as real pages do.
"""

from __future__ import annotations

import csv
import io
import json
import random
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Iterable, Iterator
from xml.sax.saxutils import escape as _xml_escape

from smartbuy_pipeline.domain.types import Availability
from smartbuy_pipeline.simulator.scenarios import (
    PriceState,
    Scenario,
    SimOffer,
    SimProduct,
    SimShop,
    format_brl,
    price_state,
)

__all__ = [
    "PageParts",
    "PageRenderer",
    "bot_wall_page",
    "feed_chunks",
    "items_api_body",
    "ITEMS_API_MAX_IDS",
    "FEED_CONTENT_TYPES",
]

ITEMS_API_MAX_IDS = 20
SCHEMA_AVAIL = {
    Availability.IN_STOCK: "https://schema.org/InStock",
    Availability.OUT_OF_STOCK: "https://schema.org/OutOfStock",
    Availability.PREORDER: "https://schema.org/PreOrder",
    Availability.BACKORDER: "https://schema.org/BackOrder",
    Availability.DISCONTINUED: "https://schema.org/Discontinued",
    Availability.UNKNOWN: "https://schema.org/InStock",
}
OG_AVAIL = {Availability.IN_STOCK: "in stock", Availability.OUT_OF_STOCK: "out of stock"}
FEED_AVAIL = {Availability.IN_STOCK: "in_stock", Availability.OUT_OF_STOCK: "out_of_stock"}
FEED_CONTENT_TYPES = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
    "tsv": "text/tab-separated-values; charset=utf-8",
}


def _h(s: str) -> str:
    return (
        s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def _num(d: Decimal) -> str:
    return f"{d:.2f}"


# ----------------------------------------------------------------------------------------------
# deflate segments


def _deflate_segment(data: bytes, level: int = 6) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, -15, 8)
    return c.compress(data) + c.flush(zlib.Z_FULL_FLUSH)


_DEFLATE_END = zlib.compressobj(1, zlib.DEFLATED, -15).flush()  # an empty final block
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


@dataclass(frozen=True, slots=True)
class _Static:
    raw: bytes
    deflated: bytes


@dataclass(slots=True)
class PageParts:
    """A page as a list of segments: cached static ones and per-request dynamic ones."""

    parts: list[_Static | bytes]

    def body(self) -> bytes:
        return b"".join(p.raw if isinstance(p, _Static) else p for p in self.parts)

    def gzip(self) -> bytes:
        out = [_GZIP_HEADER]
        crc = 0
        size = 0
        for p in self.parts:
            if isinstance(p, _Static):
                out.append(p.deflated)
                crc = zlib.crc32(p.raw, crc)
                size += len(p.raw)
            else:
                out.append(_deflate_segment(p, 1))
                crc = zlib.crc32(p, crc)
                size += len(p)
        out.append(_DEFLATE_END)
        out.append(crc.to_bytes(4, "little") + (size & 0xFFFFFFFF).to_bytes(4, "little"))
        return b"".join(out)


# ----------------------------------------------------------------------------------------------
# filler

_WORDS = (
    "produto entrega garantia frete grátis avaliação cliente qualidade excelente recomendo "
    "bateria tela câmera processador memória design leve potente rápido compra loja "
    "parcelamento cartão oferta desconto embalagem chegou antes prazo funciona perfeitamente "
    "atendimento nota fiscal original lacrado manual instruções voltagem bivolt cor preto "
    "branco prata acabamento resistente durável prático fácil limpar silencioso economia "
    "energia selo procel eficiência consumo mensal família casa cozinha sala quarto presente "
    "natal aniversário custo benefício vale pena comprei novamente indico amigos"
).split()
_CATEGORIES = (
    "Celulares e Smartphones", "Informática", "TVs e Vídeo", "Áudio", "Eletrodomésticos",
    "Eletroportáteis", "Games", "Casa e Decoração", "Ferramentas", "Esporte e Lazer",
    "Beleza e Perfumaria", "Brinquedos", "Automotivo", "Livros", "Moda", "Pet Shop",
)


def _sentence(r: random.Random, n: int) -> str:
    w = [r.choice(_WORDS) for _ in range(n)]
    return (" ".join(w)).capitalize() + "."


def _ident(r: random.Random) -> str:
    return "".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(r.randint(1, 3)))


def _css(r: random.Random, size: int) -> str:
    out: list[str] = []
    n = 0
    props = ("margin", "padding", "color", "background", "border", "font-size", "line-height",
             "display", "flex", "gap", "width", "max-width", "z-index", "opacity")
    while n < size:
        sel = f".{_ident(r)}-{r.choice(_WORDS)[:6]}-{r.randint(0, 999)}"
        body = ";".join(
            f"{r.choice(props)}:{r.choice(['#%06x' % r.randrange(16**6), f'{r.randint(0, 64)}px', 'auto', 'none', '1', f'{r.randint(1, 100)}%'])}"
            for _ in range(r.randint(2, 7))
        )
        rule = f"{sel}{{{body}}}"
        out.append(rule)
        n += len(rule)
    return "".join(out)


def _js(r: random.Random, size: int) -> str:
    out: list[str] = ["!function(){\"use strict\";var __m={};"]
    n = 0
    while n < size:
        a, b, c = _ident(r), _ident(r), _ident(r)
        chunk = (
            f"__m[{r.randint(1000, 99999)}]=function({a},{b},{c}){{var {a}{r.randint(0, 9)}="
            f"{c}({r.randint(0, 999)}),{b}{r.randint(0, 9)}=\"{r.choice(_WORDS)}-{r.randint(0, 9999)}\";"
            f"return {a}.exports={{init:function(){{return {b}&&{b}.{r.choice(_WORDS)[:5]}"
            f"({a}{r.randint(0, 9)},{r.randint(0, 4096)})}},track:\"{_ident(r)}{r.randint(0, 99)}\"}}}};"
        )
        out.append(chunk)
        n += len(chunk)
    out.append("}();")
    return "".join(out)


def _filler(shop: SimShop, variant: str) -> tuple[bytes, bytes, bytes]:
    """(after_title_head, header, after_product) filler for a shop, deterministic per shop."""
    r = random.Random(f"{shop.slug}:{variant}")
    total = 120_000 + r.randrange(120_000)  # 120-240 KB of filler
    css = _css(r, total * 22 // 100)
    js = _js(r, total * 38 // 100)
    head = (
        f"<link rel=\"preconnect\" href=\"https://cdn.{shop.domain}\">"
        f"<link rel=\"icon\" href=\"/favicon.ico\"><style>{css}</style>"
        f"<script>{js}</script></head>\n<body class=\"pdp\">\n"
    )
    nav_items = "".join(
        f"<li class=\"menu-item\"><a href=\"/c/{i}\">{_h(cat)}</a><ul class=\"submenu\">"
        + "".join(
            f"<li><a href=\"/c/{i}/{j}\">{_h(r.choice(_WORDS).capitalize())} "
            f"{_h(r.choice(_WORDS))}</a></li>"
            for j in range(r.randint(8, 16))
        )
        + "</ul></li>"
        for i, cat in enumerate(_CATEGORIES)
    )
    header = (
        f"<header class=\"site-header\"><div class=\"topbar\">Frete grátis nas compras acima de "
        f"R$ 299,00 para todo o Brasil</div><a class=\"logo\" href=\"/\">{_h(shop.name)}</a>"
        f"<form class=\"search\" action=\"/busca\"><input name=\"q\" placeholder=\"O que você "
        f"procura?\"><button>Buscar</button></form><nav class=\"main-nav\"><ul>{nav_items}</ul>"
        f"</nav></header>\n<main class=\"container\">\n"
    )
    desc = "".join(f"<p>{_h(_sentence(r, r.randint(18, 40)))}</p>" for _ in range(r.randint(10, 18)))
    specs = "".join(
        f"<tr><th>{_h(r.choice(_WORDS).capitalize())}</th><td>{_h(_sentence(r, 3))}</td></tr>"
        for _ in range(r.randint(15, 30))
    )
    reviews = "".join(
        f"<article class=\"review\"><header><span class=\"stars\" data-rating=\"{r.randint(1, 5)}\">"
        f"</span><strong>{_h(r.choice(['Ana', 'Bruno', 'Carla', 'Diego', 'Eduarda', 'Felipe', 'Gabriela', 'Henrique']))}"
        f" {r.choice('ABCDEFGHIJLMNOPRST')}.</strong> <time>{r.randint(1, 28):02d}/"
        f"{r.randint(1, 12):02d}/2026</time></header><p>{_h(_sentence(r, r.randint(20, 60)))}</p>"
        f"<footer>{r.randint(0, 80)} pessoas acharam útil</footer></article>"
        for _ in range(r.randint(15, 30))
    )
    related = "".join(
        f"<li class=\"related-item\"><a href=\"/p/rel-{r.randint(1000, 99999)}\"><img src=\""
        f"/img/{r.randint(1000, 99999)}.webp\" alt=\"\" loading=\"lazy\"><span class=\"related-name\">"
        f"{_h(r.choice(_WORDS).capitalize())} {_h(r.choice(_WORDS))}</span><span class="
        f"\"related-price\">{format_brl(Decimal(r.randint(50, 5000)) - Decimal('0.10'))}</span>"
        f"<span class=\"related-installment\">ou {r.choice([10, 12])}x sem juros</span></a></li>"
        for _ in range(12)
    )
    footer_links = "".join(
        f"<li><a href=\"/institucional/{i}\">{_h(_sentence(r, 2)[:-1])}</a></li>" for i in range(60)
    )
    after = (
        f"<section class=\"description\"><h2>Descrição do produto</h2>{desc}</section>\n"
        f"<section class=\"specs\"><h2>Especificações técnicas</h2><table>{specs}</table></section>\n"
        f"<section class=\"reviews\"><h2>Avaliações dos clientes</h2>{reviews}</section>\n"
        f"<section class=\"related\"><h2>Quem viu este produto também viu</h2><ul>{related}</ul>"
        f"</section>\n</main>\n<footer class=\"site-footer\"><ul>{footer_links}</ul><p>"
        f"{_h(shop.name)} — CNPJ 00.000.000/0001-{r.randint(10, 99)} — Todos os direitos "
        f"reservados. Preços e condições válidos apenas para compras no site.</p></footer>\n"
        f"</body>\n</html>\n"
    )
    return head.encode(), header.encode(), after.encode()


# ----------------------------------------------------------------------------------------------
# dynamic parts


def _jsonld(
    shop: SimShop, product: SimProduct, offer: SimOffer, st: PriceState, url: str
) -> dict[str, object]:
    avail = SCHEMA_AVAIL[st.availability]
    seller = {"@type": "Organization", "name": shop.name}
    prod: dict[str, object] = {
        "@type": "Product",
        "name": product.name,
        "gtin13": product.gtin,
        "sku": offer.external_id,
        "brand": {"@type": "Brand", "name": product.brand},
        "category": product.category,
        "image": f"https://cdn.{shop.domain}/img/{offer.external_id}.webp",
        "url": url,
    }
    o: dict[str, object]
    if shop.jsonld_style == "aggregate":
        o = {"@type": "AggregateOffer", "priceCurrency": st.currency, "offerCount": 1,
             "availability": avail, "seller": seller}
        if st.price is not None:
            o["lowPrice"] = _num(st.price)
            o["highPrice"] = _num(st.card_price or st.price)
    else:
        o = {"@type": "Offer", "url": url, "priceCurrency": st.currency, "availability": avail,
             "seller": seller, "itemCondition": "https://schema.org/NewCondition"}
        if st.price is not None:
            o["price"] = _num(st.price)
    if st.price is not None:
        specs: list[dict[str, object]] = [
            {"@type": "UnitPriceSpecification", "price": _num(st.price),
             "priceCurrency": st.currency}
        ]
        if st.reference_price is not None:
            specs.append({"@type": "UnitPriceSpecification",
                          "priceType": "https://schema.org/StrikethroughPrice",
                          "price": _num(st.reference_price), "priceCurrency": st.currency})
        o["priceSpecification"] = specs
        o["shippingDetails"] = {
            "@type": "OfferShippingDetails",
            "shippingRate": {"@type": "MonetaryAmount", "value": _num(st.freight),
                             "currency": st.currency},
            "shippingDestination": {"@type": "DefinedRegion", "addressCountry": "BR"},
        }
    prod["offers"] = o
    if shop.jsonld_style == "graph":
        return {
            "@context": "https://schema.org",
            "@graph": [
                {"@type": "WebSite", "name": shop.name, "url": f"https://{shop.domain}/"},
                {"@type": "BreadcrumbList", "itemListElement": [
                    {"@type": "ListItem", "position": 1, "name": "Início"},
                    {"@type": "ListItem", "position": 2, "name": product.category},
                    {"@type": "ListItem", "position": 3, "name": product.name},
                ]},
                prod,
            ],
        }
    return {"@context": "https://schema.org", **prod}


def _price_box(st: PriceState) -> str:
    if st.price is None:
        return (
            "<div class=\"price-box unavailable\"><span class=\"unavailable\">Produto "
            "indisponível</span><button class=\"notify\">Avise-me quando chegar</button></div>"
        )
    parts = ["<div class=\"price-box\">"]
    if st.reference_price is not None:
        parts.append(
            f"<span class=\"price\" data-price-kind=\"reference\"><s>de "
            f"{format_brl(st.reference_price)}</s></span>"
        )
    parts.append(
        f"<span class=\"price\" data-price-kind=\"cash\">{format_brl(st.price)} "
        f"<small>no Pix</small></span>"
    )
    if st.card_price is not None:
        parts.append(
            f"<span class=\"price\" data-price-kind=\"card\">{format_brl(st.card_price)} "
            f"no cartão</span>"
        )
    if st.installments and st.installment_amount is not None:
        parts.append(
            f"<span class=\"price\" data-price-kind=\"installment\">{st.installments}x de "
            f"{format_brl(st.installment_amount)} sem juros</span>"
        )
    parts.append("</div>")
    freight = "Frete grátis" if st.freight == 0 else f"Frete: {format_brl(st.freight)}"
    parts.append(f"<div class=\"shipping\" data-freight=\"{_num(st.freight)}\">{freight}</div>")
    parts.append("<button class=\"buy\">Comprar</button>")
    return "".join(parts)


class PageRenderer:
    """Renders product pages for one scenario; caches filler per (shop, variant)."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self._filler: dict[tuple[str, str], tuple[_Static, _Static, _Static, _Static]] = {}

    def filler(self, shop: SimShop) -> tuple[_Static, _Static, _Static, _Static]:
        key = (shop.slug, shop.page_variant)
        f = self._filler.get(key)
        if f is None:
            head, header, after = _filler(shop, shop.page_variant)
            open_ = b"<!DOCTYPE html>\n<html lang=\"pt-BR\">\n<head><meta charset=\"utf-8\">" \
                b"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f = tuple(_Static(b, _deflate_segment(b)) for b in (open_, head, header, after))  # type: ignore[assignment]
            self._filler[key] = f  # type: ignore[assignment]
        return f  # type: ignore[return-value]

    def render(
        self,
        offer: SimOffer,
        st: PriceState,
        url: str,
        *,
        malformed: bool = False,
    ) -> PageParts:
        sc = self.scenario
        shop = sc.shop_by_slug[offer.shop_slug]
        product = sc.product_by_key[offer.product_key]
        variant = shop.page_variant
        open_, head, header, after = self.filler(shop)
        name = _h(product.name)

        h: list[str] = [f"<title>{name} | {_h(shop.name)}</title>"]
        if variant in ("opengraph", "mixed"):
            h.append(
                f"<meta property=\"og:type\" content=\"product\">"
                f"<meta property=\"og:title\" content=\"{name}\">"
                f"<meta property=\"og:url\" content=\"{_h(url)}\">"
                f"<meta property=\"og:site_name\" content=\"{_h(shop.name)}\">"
            )
            if st.price is not None:
                amount = "" if malformed else _num(st.price)
                h.append(
                    f"<meta property=\"og:price:amount\" content=\"{amount}\">"
                    f"<meta property=\"og:price:currency\" content=\"{st.currency}\">"
                )
                if st.reference_price is not None:
                    h.append(
                        f"<meta property=\"product:original_price:amount\" "
                        f"content=\"{_num(st.reference_price)}\">"
                        f"<meta property=\"product:original_price:currency\" "
                        f"content=\"{st.currency}\">"
                    )
            h.append(
                f"<meta property=\"product:availability\" "
                f"content=\"{OG_AVAIL.get(st.availability, 'in stock')}\">"
                f"<meta property=\"product:retailer_item_id\" content=\"{_h(offer.external_id)}\">"
            )
        if variant in ("jsonld", "mixed"):
            text = json.dumps(_jsonld(shop, product, offer, st, url), ensure_ascii=False)
            text = text.replace("</", "<\\/")
            if malformed:
                # a trailing comma and a missing closing brace: not JSON
                text = text[:-1] + ', "offers": }'
            h.append(f"<script type=\"application/ld+json\">{text}</script>")

        micro = variant in ("microdata", "mixed")
        b: list[str] = [
            "<nav class=\"breadcrumbs\"><a href=\"/\">Início</a> › "
            f"<a href=\"/c/{_h(product.category)}\">{_h(product.category)}</a> › "
            f"<span>{name}</span></nav>"
        ]
        if micro:
            b.append("<section class=\"product\" itemscope itemtype=\"https://schema.org/Product\">")
            b.append(f"<h1 itemprop=\"name\">{name}</h1>")
            b.append(
                f"<meta itemprop=\"gtin13\" content=\"{product.gtin}\">"
                f"<meta itemprop=\"sku\" content=\"{_h(offer.external_id)}\">"
                f"<div itemprop=\"brand\" itemscope itemtype=\"https://schema.org/Brand\">"
                f"<meta itemprop=\"name\" content=\"{_h(product.brand)}\"></div>"
            )
        else:
            b.append("<section class=\"product\">")
            b.append(f"<h1>{name}</h1>")
        b.append(
            f"<div class=\"product-meta\">Marca: {_h(product.brand)} · Código: "
            f"{_h(offer.external_id)} · Vendido e entregue por {_h(shop.name)}</div>"
            f"<div class=\"gallery\"><img src=\"https://cdn.{shop.domain}/img/"
            f"{_h(offer.external_id)}.webp\" alt=\"{name}\"></div>"
        )
        b.append(_price_box(st))
        if micro:
            b.append(
                "<div itemprop=\"offers\" itemscope itemtype=\"https://schema.org/Offer\">"
            )
            if st.price is not None:
                amount = "NaN" if malformed else _num(st.price)
                b.append(
                    f"<meta itemprop=\"price\" content=\"{amount}\">"
                    f"<meta itemprop=\"priceCurrency\" content=\"{st.currency}\">"
                )
            b.append(
                f"<link itemprop=\"availability\" href=\"{SCHEMA_AVAIL[st.availability]}\">"
                "</div>"
            )
        b.append("</section>\n")
        return PageParts(
            [open_, "".join(h).encode(), head, header, "".join(b).encode(), after]
        )


def truncate_page(body: bytes) -> bytes:
    """Cut a page mid-way: in the middle of the JSON-LD when there is one."""
    i = body.find(b"application/ld+json")
    if i >= 0:
        end = body.find(b"</script>", i)
        if end > i:
            return body[: (i + end) // 2]
    return body[: len(body) // 2]


def bot_wall_page(challenge: str = "0") -> bytes:
    return (
        "<!DOCTYPE html>\n<html lang=\"pt-BR\"><head><meta charset=\"utf-8\">"
        "<title>Verificação de segurança</title><meta name=\"robots\" content=\"noindex\"></head>"
        "<body class=\"challenge\"><main><h1>Verifique que você é humano</h1>"
        "<p>Detectamos um tráfego incomum vindo da sua rede. Para continuar, confirme que você "
        "não é um robô.</p>"
        "<form id=\"challenge-form\" method=\"post\" action=\"/_captcha/verify\">"
        f"<input type=\"hidden\" name=\"challenge\" value=\"{_h(challenge)}\">"
        "<div class=\"captcha\" data-sitekey=\"6Lc-sim-captcha\"><label><input type=\"checkbox\" "
        "name=\"not_a_robot\"> Não sou um robô</label></div>"
        "<button type=\"submit\">Continuar</button></form></main></body></html>\n"
    ).encode()


# ----------------------------------------------------------------------------------------------
# feeds


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _feed_fields(
    sc: Scenario, offer: SimOffer, st: PriceState, base_url: str
) -> tuple[str, str | None, str | None]:
    """(price, sale_price, sale_price_effective_date) as feed text."""
    cur = st.currency
    if st.price is None:  # out of stock: feeds still carry the regular price
        return f"{_num(offer.base_price)} {cur}", None, None
    if st.reference_price is not None:
        until = st.until or (st.since + timedelta(days=365))
        return (
            f"{_num(st.reference_price)} {cur}",
            f"{_num(st.price)} {cur}",
            f"{_iso(st.since)}/{_iso(until)}",
        )
    return f"{_num(st.price)} {cur}", None, None


def _rss_item(sc: Scenario, offer: SimOffer, st: PriceState, base_url: str, atom: bool) -> str:
    product = sc.product_by_key[offer.product_key]
    price, sale, eff = _feed_fields(sc, offer, st, base_url)
    link = _xml_escape(Scenario.page_url(base_url, offer))
    title = _xml_escape(product.name)
    parts = [
        "<entry>" if atom else "<item>",
        f"<g:id>{_xml_escape(offer.external_id)}</g:id>",
        f"<title>{title}</title><link href=\"{link}\"/>" if atom else f"<g:title>{title}</g:title>",
        f"<g:link>{link}</g:link>",
        f"<g:price>{price}</g:price>",
    ]
    if sale:
        parts.append(f"<g:sale_price>{sale}</g:sale_price>")
        parts.append(f"<g:sale_price_effective_date>{eff}</g:sale_price_effective_date>")
    parts.append(f"<g:availability>{FEED_AVAIL.get(st.availability, 'in_stock')}</g:availability>")
    parts.append(
        f"<g:gtin>{product.gtin}</g:gtin><g:brand>{_xml_escape(product.brand)}</g:brand>"
        f"<g:condition>new</g:condition>"
        f"<g:shipping><g:country>BR</g:country><g:price>{_num(st.freight)} {st.currency}"
        f"</g:price></g:shipping>"
    )
    parts.append("</entry>\n" if atom else "</item>\n")
    return "".join(parts)


def feed_chunks(
    sc: Scenario,
    shop: SimShop,
    offers: Iterable[SimOffer],
    at: datetime,
    base_url: str,
    fmt: str,
    *,
    malformed: bool = False,
    truncate_after: int | None = None,
    chunk_items: int = 500,
) -> Iterator[bytes]:
    """Stream a merchant feed (rss | atom | tsv) in chunks of `chunk_items` items.

    `malformed`: an unescaped "&" and a stray tag after the first item (not well-formed XML; for
    TSV a row with the wrong number of columns). `truncate_after`: stop after that many items
    without closing the document.
    """
    now = _iso(at)
    if fmt == "rss":
        yield (
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rss version=\"2.0\" "
            "xmlns:g=\"http://base.google.com/ns/1.0\">\n<channel>\n"
            f"<title>{_xml_escape(shop.name)}</title><link>https://{shop.domain}/</link>"
            f"<description>Feed de produtos {_xml_escape(shop.name)}</description>"
            f"<lastBuildDate>{now}</lastBuildDate>\n"
        ).encode()
        close = b"</channel>\n</rss>\n"
    elif fmt == "atom":
        yield (
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\""
            " xmlns:g=\"http://base.google.com/ns/1.0\">\n"
            f"<title>{_xml_escape(shop.name)}</title><link rel=\"self\" href=\""
            f"{_xml_escape(base_url)}/s/{shop.slug}/feed.atom\"/><id>urn:sim:{shop.slug}</id>"
            f"<updated>{now}</updated>\n"
        ).encode()
        close = b"</feed>\n"
    elif fmt == "tsv":
        yield (
            "id\ttitle\tlink\tprice\tsale_price\tsale_price_effective_date\tavailability\tgtin"
            "\tbrand\tshipping\n"
        ).encode()
        close = b""
    else:
        raise ValueError(f"unknown feed format {fmt!r}")

    buf: list[str] = []
    n = 0
    sio = io.StringIO()
    writer = csv.writer(sio, delimiter="\t", lineterminator="\n")
    for offer in offers:
        if truncate_after is not None and n >= truncate_after:
            if buf:
                yield "".join(buf).encode()
            return
        st = price_state(offer, at)
        if fmt == "tsv":
            product = sc.product_by_key[offer.product_key]
            price, sale, eff = _feed_fields(sc, offer, st, base_url)
            writer.writerow([
                offer.external_id, product.name, Scenario.page_url(base_url, offer), price,
                sale or "", eff or "", FEED_AVAIL.get(st.availability, "in_stock"), product.gtin,
                product.brand, f"BR:::{_num(st.freight)} {st.currency}",
            ])
            if malformed and n == 0:
                sio.write("broken row without\tenough columns\n")
            if n % chunk_items == chunk_items - 1:
                yield sio.getvalue().encode()
                sio.seek(0)
                sio.truncate()
        else:
            buf.append(_rss_item(sc, offer, st, base_url, fmt == "atom"))
            if malformed and n == 0:
                buf.append("<item><g:title>Cabo & Adaptador <b></g:title></item>\n")
            if len(buf) >= chunk_items:
                yield "".join(buf).encode()
                buf.clear()
        n += 1
    if fmt == "tsv":
        rest = sio.getvalue()
        if rest:
            yield rest.encode()
    elif buf:
        yield "".join(buf).encode()
    if close:
        yield close


# ----------------------------------------------------------------------------------------------
# items API


def _item_body(sc: Scenario, offer: SimOffer, st: PriceState) -> str:
    shop = sc.shop_by_slug[offer.shop_slug]
    product = sc.product_by_key[offer.product_key]
    in_stock = st.price is not None
    price = st.price if st.price is not None else offer.base_price
    qty = (zlib.crc32(offer.key.encode()) % 50) + 1 if in_stock else 0
    original = _num(st.reference_price) if st.reference_price is not None else "null"
    seller = shop.seller_id or (zlib.crc32(shop.slug.encode()) % 900_000_000 + 100_000_000)
    return (
        f"{{\"id\":{json.dumps(offer.external_id)},\"title\":{json.dumps(product.name, ensure_ascii=False)},"
        f"\"price\":{_num(price)},\"original_price\":{original},\"currency_id\":\"{st.currency}\","
        f"\"available_quantity\":{qty},\"status\":\"{'active' if in_stock else 'paused'}\","
        f"\"seller_id\":{seller},\"condition\":\"new\",\"permalink\":"
        f"{json.dumps(f'https://{shop.domain}/p/{offer.external_id}')},"
        f"\"shipping\":{{\"free_shipping\":{'true' if st.freight == 0 else 'false'}}},"
        f"\"attributes\":[{{\"id\":\"GTIN\",\"value_name\":\"{product.gtin}\"}}]}}"
    )


def items_api_body(sc: Scenario, ids: list[str], at: datetime, *, malformed: bool = False) -> bytes:
    """The multiget answer for up to ITEMS_API_MAX_IDS ids (caller checks the limit).

    Amounts are JSON numbers written exactly ("price":1899.90): parse with
    json.loads(..., parse_float=Decimal) to keep them exact.
    """
    by_ext = sc.offer_by_external_id
    out = []
    for i in ids:
        offer = by_ext.get(i)
        if offer is None or sc.shop_by_slug[offer.shop_slug].source_kind != "marketplace_api":
            out.append(
                "{\"code\":404,\"body\":{\"message\":\"item not found\",\"error\":\"not_found\","
                f"\"status\":404,\"cause\":[],\"id\":{json.dumps(i)}}}}}"
            )
        else:
            out.append(f"{{\"code\":200,\"body\":{_item_body(sc, offer, price_state(offer, at))}}}")
    text = "[" + ",".join(out) + "]"
    if malformed:
        text = text[: len(text) // 2] + "}{"
    return text.encode()
