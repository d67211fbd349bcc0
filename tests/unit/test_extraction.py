"""extract_page on realistic fixtures under tests/fixtures/pages/."""

from decimal import Decimal
from pathlib import Path

import pytest

from smartbuy_pipeline.domain.extraction import classify_price_label, extract_page, parse_availability
from smartbuy_pipeline.domain.types import (
    Availability,
    ExtractionError,
    FailureReason,
    Money,
    PriceKind,
    PriceQuote,
)

PAGES = Path(__file__).resolve().parents[1] / "fixtures" / "pages"


def page(name: str) -> bytes:
    return (PAGES / name).read_bytes()


def q(kind: PriceKind, amount: str, installments: int | None = None, currency: str = "BRL"):
    return PriceQuote(kind, Money(Decimal(amount), currency), installments)


def test_jsonld_product_with_nested_offer():
    got = extract_page(page("jsonld_product_offer.html"))
    assert got.method == "jsonld"
    assert got.quotes == (q(PriceKind.REGULAR, "2879.20"),)
    assert got.availability is Availability.IN_STOCK
    assert got.gtin == "7891234567895"
    assert got.freight == Money(Decimal("19.90"), "BRL")
    assert got.raw_currency == "BRL"
    assert "currency_defaulted" not in got.extra


def test_jsonld_graph_with_id_reference():
    got = extract_page(page("jsonld_graph.html"))
    assert got.method == "jsonld"
    assert got.quotes == (q(PriceKind.REGULAR, "399.90"),)
    assert got.availability is Availability.IN_STOCK
    assert got.gtin == "7894900011517"


def test_jsonld_aggregate_offer_low_price():
    got = extract_page(page("jsonld_aggregate.html"))
    assert got.quotes == (q(PriceKind.REGULAR, "3199.00"),)
    assert got.extra["high_price"] == "3899.90"
    assert got.extra["offer_count"] == "4"
    assert got.gtin == "07891234567895"


def test_jsonld_top_level_list_with_offer_list():
    got = extract_page(page("jsonld_toplevel_list.html"))
    assert got.quotes == (q(PriceKind.REGULAR, "149.90"), q(PriceKind.REGULAR, "159.90"))
    assert got.availability is Availability.IN_STOCK  # best of OutOfStock and InStock
    assert got.gtin == "96385074"


def test_jsonld_price_specification_strikethrough_card_installments():
    got = extract_page(page("jsonld_strikethrough.html"))
    assert got.method == "jsonld"
    assert got.quotes == (
        q(PriceKind.REGULAR, "1899.00"),
        q(PriceKind.REFERENCE, "2599.00"),  # StrikethroughPrice and ListPrice collapse
        q(PriceKind.CARD, "2099.00"),
        q(PriceKind.INSTALLMENT, "209.90", 10),
    )
    assert got.availability is Availability.PREORDER


def test_opengraph_only():
    got = extract_page(page("opengraph_only.html"))
    assert got.method == "opengraph"
    assert got.quotes == (
        q(PriceKind.REGULAR, "549.90"),
        q(PriceKind.SALE, "499.90"),
        q(PriceKind.REFERENCE, "699.00"),
    )
    assert got.availability is Availability.IN_STOCK
    assert got.raw_currency == "BRL"


def test_microdata_content_attribute():
    got = extract_page(page("microdata_content.html"))
    assert got.method == "microdata"
    assert got.quotes == (q(PriceKind.REGULAR, "189.90"),)
    assert got.availability is Availability.IN_STOCK
    assert got.gtin == "7891234567895"
    assert got.raw_currency == "BRL"


def test_microdata_text_value():
    got = extract_page(page("microdata_text.html"))
    assert got.method == "microdata"
    assert got.quotes == (q(PriceKind.REGULAR, "1299.90"),)
    assert got.availability is Availability.IN_STOCK


def test_multi_price_page_with_data_price_kind_convention():
    got = extract_page(page("multi_price.html"))
    assert got.method == "jsonld"
    assert got.quotes == (
        q(PriceKind.REGULAR, "2099.00"),
        q(PriceKind.REFERENCE, "2599.00"),
        q(PriceKind.CASH, "1899.00"),
        q(PriceKind.CARD, "2099.00"),
        q(PriceKind.INSTALLMENT, "209.90", 10),
    )
    assert got.extra["html_price_kinds"] is True


def test_multi_price_page_with_visible_labels_only():
    got = extract_page(page("multi_price_labels.html"))
    assert got.method == "microdata"
    assert got.quotes == (
        q(PriceKind.CASH, "749.90"),
        q(PriceKind.CARD, "799.90"),
        q(PriceKind.INSTALLMENT, "79.99", 10),
    )


def test_malformed_jsonld_does_not_hide_valid_block():
    got = extract_page(page("malformed_plus_valid.html"))
    assert got.method == "jsonld"
    assert got.quotes == (q(PriceKind.REGULAR, "3999.90"),)
    assert len(got.extra["jsonld_errors"]) == 1
    assert got.extra["jsonld_errors"][0].startswith("ld+json block #0:")


def test_malformed_only_jsonld_falls_back_to_opengraph():
    got = extract_page(page("malformed_only_og.html"))
    assert got.method == "opengraph"
    assert got.quotes == (q(PriceKind.REGULAR, "1599.00"),)
    assert got.availability is Availability.IN_STOCK
    assert "jsonld_errors" in got.extra


def test_no_price_raises_no_price():
    with pytest.raises(ExtractionError) as info:
        extract_page(page("no_price.html"))
    assert info.value.reason is FailureReason.NO_PRICE


def test_out_of_stock_without_price_jsonld():
    got = extract_page(page("out_of_stock.html"))
    assert got.quotes == ()
    assert got.availability is Availability.OUT_OF_STOCK
    assert got.method == "jsonld"
    assert got.gtin == "7891234567895"


def test_out_of_stock_visible_text_only():
    got = extract_page(page("out_of_stock_text.html"))
    assert got.quotes == ()
    assert got.availability is Availability.OUT_OF_STOCK


def test_bot_wall():
    with pytest.raises(ExtractionError) as info:
        extract_page(page("bot_wall.html"))
    assert info.value.reason is FailureReason.BOT_WALL


def test_bot_wall_access_denied_str_input():
    html = "<html><head><title>Access Denied</title></head><body>Reference #18.abc</body></html>"
    with pytest.raises(ExtractionError) as info:
        extract_page(html)
    assert info.value.reason is FailureReason.BOT_WALL


def test_formatting_duplicates_collapse():
    html = """<html><head>
    <script type="application/ld+json">{"@type":"Product","offers":[
      {"@type":"Offer","price":2879.2,"priceCurrency":"BRL"},
      {"@type":"Offer","price":"2879.20","priceCurrency":"BRL"}]}</script>
    <meta property="product:price:amount" content="2879.20"></head><body></body></html>"""
    got = extract_page(html)
    assert got.quotes == (q(PriceKind.REGULAR, "2879.20"),)


def test_currency_default_applied_and_flagged():
    html = """<script type="application/ld+json">
    {"@type":"Product","offers":{"@type":"Offer","price":"99.90"}}</script>"""
    got = extract_page(html, default_currency="BRL")
    assert got.quotes == (q(PriceKind.REGULAR, "99.90"),)
    assert got.raw_currency is None
    assert got.extra["currency_defaulted"] is True


def test_currency_missing_without_default():
    html = """<script type="application/ld+json">
    {"@type":"Product","offers":{"@type":"Offer","price":"99.90"}}</script>"""
    with pytest.raises(ExtractionError) as info:
        extract_page(html)
    assert info.value.reason is FailureReason.CURRENCY_MISSING
    assert "offers[0].price" in info.value.detail


def test_zero_price_is_non_positive_not_a_price():
    html = """<script type="application/ld+json">
    {"@type":"Product","offers":{"@type":"Offer","price":"0.00","priceCurrency":"BRL",
     "availability":"https://schema.org/InStock"}}</script>"""
    with pytest.raises(ExtractionError) as info:
        extract_page(html)
    assert info.value.reason is FailureReason.NON_POSITIVE_PRICE


def test_zero_price_out_of_stock_is_out_of_stock():
    html = """<script type="application/ld+json">
    {"@type":"Product","offers":{"@type":"Offer","price":"0","priceCurrency":"BRL",
     "availability":"https://schema.org/OutOfStock"}}</script>"""
    got = extract_page(html)
    assert got.quotes == ()
    assert got.availability is Availability.OUT_OF_STOCK


def test_latin1_bytes_are_decoded():
    html = ('<html><head><meta charset="iso-8859-1"></head><body>'
            '<span data-price-kind="cash">R$ 1.899,00 à vista</span></body></html>').encode("latin-1")
    got = extract_page(html)
    assert got.quotes == (q(PriceKind.CASH, "1899.00"),)


def test_data_price_attribute_and_currency_attribute():
    html = ('<div><span data-price-kind="card" data-price="2099.00" data-currency="BRL">'
            '2.099,00 no cartão</span></div>')
    got = extract_page(html)
    assert got.quotes == (q(PriceKind.CARD, "2099.00"),)
    assert got.raw_currency == "BRL"


@pytest.mark.parametrize(
    ("label", "kind"),
    [
        ("R$ 1.899,00 no Pix", PriceKind.CASH),
        ("à vista no boleto", PriceKind.CASH),
        ("R$ 2.099,00 no cartão", PriceKind.CARD),
        ("10x de R$ 209,90 sem juros", PriceKind.INSTALLMENT),
        ("de R$ 2.599,00", PriceKind.REFERENCE),
        ("por R$ 1.899,00", PriceKind.REGULAR),
        ("R$ 1.899,00", None),
    ],
)
def test_classify_price_label(label, kind):
    assert classify_price_label(label) is kind


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://schema.org/InStock", Availability.IN_STOCK),
        ("http://schema.org/OutOfStock", Availability.OUT_OF_STOCK),
        ("https://schema.org/PreOrder", Availability.PREORDER),
        ("https://schema.org/BackOrder", Availability.BACKORDER),
        ("https://schema.org/Discontinued", Availability.DISCONTINUED),
        ("schema:SoldOut", Availability.OUT_OF_STOCK),
        ("instock", Availability.IN_STOCK),
        ("oos", Availability.OUT_OF_STOCK),
        ("in_stock", Availability.IN_STOCK),
        ("out of stock", Availability.OUT_OF_STOCK),
        ("", Availability.UNKNOWN),
        (None, Availability.UNKNOWN),
    ],
)
def test_parse_availability(value, expected):
    assert parse_availability(value) is expected


def test_price_kind_text_without_symbol_uses_jsonld_currency():
    html = """<script type="application/ld+json">{"@type":"Product","offers":
      {"@type":"Offer","price":"2099.00","priceCurrency":"BRL"}}</script>
      <span data-price-kind="cash">1.899,00 no Pix</span>"""
    got = extract_page(html)
    assert got.quotes == (q(PriceKind.REGULAR, "2099.00"), q(PriceKind.CASH, "1899.00"))
    assert "currency_defaulted" not in got.extra


def test_bot_wall_detected_from_markup_only():
    html = ('<html><head><script src="/cdn-cgi/challenge-platform/h/b/orchestrate/jsch/v1">'
            '</script></head><body><div id="cf-chl-widget"></div></body></html>')
    with pytest.raises(ExtractionError) as info:
        extract_page(html)
    assert info.value.reason is FailureReason.BOT_WALL


def test_simulator_price_box_shape():
    # Exactly what smartbuy_pipeline/simulator/pages.py emits: label in <small>, count in text.
    html = """<div class="price-box">
      <span class="price" data-price-kind="reference"><s>de R$ 2.599,00</s></span>
      <span class="price" data-price-kind="cash">R$ 1.899,00 <small>no Pix</small></span>
      <span class="price" data-price-kind="card">R$ 2.099,00 no cartão</span>
      <span class="price" data-price-kind="installment">12x de R$ 174,92 sem juros</span>
    </div>"""
    got = extract_page(html.encode())
    assert got.method == "microdata"
    assert got.quotes == (
        q(PriceKind.REFERENCE, "2599.00"),
        q(PriceKind.CASH, "1899.00"),
        q(PriceKind.CARD, "2099.00"),
        q(PriceKind.INSTALLMENT, "174.92", 12),
    )
    assert got.raw_currency == "BRL"


def test_related_products_prices_are_ignored():
    html = """<script type="application/ld+json">{"@type":"Product","offers":
      {"@type":"Offer","price":"1899.00","priceCurrency":"BRL"}}</script>
      <div class="related"><span class="related-price">R$ 99,90</span></div>"""
    assert extract_page(html).quotes == (q(PriceKind.REGULAR, "1899.00"),)


def test_microdata_related_product_price_is_ignored():
    html = """<div itemscope itemtype="https://schema.org/Product">
      <h1 itemprop="name">Principal</h1>
      <div itemprop="offers" itemscope itemtype="https://schema.org/Offer">
        <meta itemprop="priceCurrency" content="BRL">
        <span itemprop="price" content="1899.00">R$ 1.899,00</span></div>
      <div itemprop="isRelatedTo" itemscope itemtype="https://schema.org/Product">
        <span itemprop="price" content="99.90">R$ 99,90</span></div>
    </div>
    <div itemscope itemtype="https://schema.org/Product">
      <span itemprop="price" content="49.90">R$ 49,90</span></div>"""
    assert extract_page(html).quotes == (q(PriceKind.REGULAR, "1899.00"),)
