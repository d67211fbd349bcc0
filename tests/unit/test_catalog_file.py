"""The catalog file reader: typed rows, RowErrors with the file's own line numbers, unusable input."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest

from smartbuy_pipeline.domain import catalog_file as cf
from smartbuy_pipeline.domain.catalog_file import (
    CatalogFileError, CatalogReader, OfferRow, ProductRow, RowError, ShopRow,
)

GOOD = "7891234567895"  # valid EAN-13
BAD = "7891234567890"  # check digit should be 5


def read(text: str | bytes, fmt: str = "csv") -> list:
    data = text.encode() if isinstance(text, str) else text
    return list(CatalogReader(io.BufferedReader(io.BytesIO(data)), fmt))


def errors(rows) -> dict[int, RowError]:
    return {r.line: r for r in rows if isinstance(r, RowError)}


MIXED_CSV = f"""type,domain,name,gtin,brand,shop,source_kind,locator,price,currency,active
shop,Loja.Example.com.br,Loja,,,,,,,,
product,,Fone,{GOOD},Acme,,,,,,
product,,Bad,{BAD},,,,,,,
offer,,,{GOOD},,loja.example.com.br,page,https://loja.example.com.br/p/1,"1.234,56",,
offer,,,{GOOD},,loja.example.com.br,page,ftp://loja.example.com.br/p/2,10,,

offer,,,{GOOD},,loja.example.com.br,page,https://loja.example.com.br/p/1,9,,
offer,,,{GOOD},,loja.example.com.br,feed,SKU-1,12abc,,
offer,,,{GOOD},,loja.example.com.br,api,MLB-1,"1,234.50",usd,no
"product",,"Multi
line name",7891000100103,,,,,,,
product,,Repeat,0{GOOD},,,,,,,
widget,,,,,,,,,,
offer,,,{GOOD},,loja.example.com.br,page,,,,
"""


def test_csv_mixed_rows_with_line_numbers():
    rows = read(MIXED_CSV)
    assert rows[0] == ShopRow(2, "loja.example.com.br", "Loja")
    assert rows[1] == ProductRow(3, "0" + GOOD, "Fone", "Acme")
    assert rows[3] == OfferRow(5, "loja.example.com.br", "0" + GOOD, "page",
                               "https://loja.example.com.br/p/1", Decimal("1234.56"))
    offer_api = next(r for r in rows if isinstance(r, OfferRow) and r.line == 10)
    assert (offer_api.source_kind, offer_api.price, offer_api.currency, offer_api.active) == (
        "marketplace_api", Decimal("1234.50"), "USD", False)
    multi = next(r for r in rows if isinstance(r, ProductRow) and r.line == 11)  # starts on line 11
    assert multi.name == "Multi\nline name" and multi.gtin == "07891000100103"
    errs = errors(rows)
    assert {line: e.kind for line, e in errs.items()} == {
        4: "invalid_gtin", 6: "invalid_locator", 8: "duplicate", 9: "malformed_price",
        13: "duplicate", 14: "unknown_type", 15: "missing_field"}
    assert errs[4].reason == f"invalid GTIN: GTIN '{BAD}' has check digit 0, expected 5"
    assert errs[6].reason == "locator of a page offer must be an http(s) URL, got 'ftp://loja.example.com.br/p/2'"
    assert errs[8].reason == "duplicate of line 5"
    assert errs[8].key == "loja.example.com.br page https://loja.example.com.br/p/1"
    assert errs[9].reason == "malformed price '12abc'"
    assert errs[13].reason == "duplicate of line 3"  # the GTIN-14 form of the same product
    assert errs[15].reason == "missing locator"
    assert len(rows) == 12  # the blank line 7 is no record; lines 11-12 are one


@pytest.mark.parametrize(("text", "amount"), [
    ("1.234,56", "1234.56"), ("1234.56", "1234.56"), ("1234,5", "1234.50"), ("1.234", "1234.00"),
    ("1,234.56", "1234.56"), ("12", "12.00"), ("0,99", "0.99"), ("1.299.999,00", "1299999.00"),
    (" 79.9 ", "79.90"),
])
def test_price_accepted(text, amount):
    assert cf.parse_price(text) == Decimal(amount)


@pytest.mark.parametrize("text", ["abc", "12abc", "R$ 10", "1,234", "1.23.4", "-5", "0", "0,00",
                                  "1e3", "12.345,678", "1 234", "10000000000"])
def test_price_malformed(text):
    with pytest.raises(cf._Invalid) as info:
        cf.parse_price(text)
    assert info.value.kind == "malformed_price"


def test_json_numbers_for_price():
    assert cf.parse_price(Decimal("12.5")) == Decimal("12.50")
    assert cf.parse_price(12) == Decimal("12.00")
    for bad in (Decimal("12.345"), True, 0):
        with pytest.raises(cf._Invalid):
            cf.parse_price(bad)


def test_field_checks():
    rows = read(
        "type,domain,name,reputation_score,currency,feed_url,locale,price_kind,brand,gtin\n"
        "shop,a.example.com,A,101,BRL,,,,,\n"
        "shop,http://b.example.com,B,,,,,,,\n"
        "shop,c.example.com,C,,ZZZ,ftp://c/feed,ptbr,cheap,,\n"
        "shop,d.example.com,,50,brl,https://d.example.com/feed.xml,en_US,cash,Acme,\n"
        "shop,e.example.com,E,50,brl,https://e.example.com/feed.xml,en_US,cash,,\n"
    )
    errs = errors(rows)
    assert errs[2].reason == "reputation_score must be between 0 and 100, got 101"
    assert errs[3].kind == "invalid_value" and "not a domain name" in errs[3].reason
    assert errs[4].reason.count(";") == 3  # every problem of the row, in one reason
    assert errs[5].kind == "invalid_value"  # brand does not apply to shops, name missing
    assert "do not apply to shop rows" in errs[5].reason and "missing name" in errs[5].reason
    assert rows[4] == ShopRow(6, "e.example.com", "E", 50, "en_US", "BRL", None, None, None, "cash",
                              "https://e.example.com/feed.xml")


def test_wrong_field_count_is_a_row_error():
    rows = read(f"type,gtin,name\nproduct,{GOOD}\nproduct,7891000100103,X\n")
    assert errors(rows)[2].kind == "malformed_row"
    assert rows[1] == ProductRow(3, "07891000100103", "X")


def test_jsonl_lines_blank_lines_and_malformed_json():
    text = (
        '{"type": "shop", "domain": "a.example.com", "name": "A", "reputation_score": 80}\n'
        "\n"
        '{"type": "offer", "shop": "a.example.com", "gtin": ' + GOOD + ', "source_kind": "merchant_feed",'
        ' "locator": "SKU-1", "price": 10.5, "currency": "BRL", "active": true}\n'
        '{"type": "offer", "shop": "a.example.com"\n'
        '["not", "an", "object"]\n'
        '{"type": "product", "gtin": "' + GOOD + '", "name": "Fone", "colour": "red"}\n'
    )
    rows = read(text, "jsonl")
    assert rows[0] == ShopRow(1, "a.example.com", "A", 80)
    assert rows[1] == OfferRow(3, "a.example.com", "0" + GOOD, "merchant_feed", "SKU-1",
                               Decimal("10.50"), "BRL", True)
    errs = errors(rows)
    assert errs[4].kind == "malformed_row" and errs[4].reason.startswith("not valid JSON")
    assert errs[5].reason == "not a JSON object"
    assert errs[6].reason == "field(s) colour do not apply to product rows"


def test_json_array_line_of_each_record():
    text = ('[\n  {"type": "product", "gtin": "' + GOOD + '", "name": "Fone"},\n'
            '  {"type": "product",\n   "gtin": "' + BAD + '", "name": "Bad"},\n'
            '  {"type": "product", "gtin": "' + GOOD + '", "name": "Again"}\n]\n')
    rows = read(text, "json")
    assert rows[0] == ProductRow(2, "0" + GOOD, "Fone")
    assert errors(rows)[3].kind == "invalid_gtin"
    assert errors(rows)[5].reason == "duplicate of line 2"
    # .json not starting with "[" is JSON Lines
    assert read('{"type": "product", "gtin": "' + GOOD + '", "name": "F"}\n', "json") == [
        ProductRow(1, "0" + GOOD, "F")]
    assert read("[]", "json") == []


@pytest.mark.parametrize(("text", "fmt", "message"), [
    ("domain,name\nshop,a\n", "csv", "has no 'type' column"),
    ("type,domain,pirce\n", "csv", "unknown column(s) in the CSV header: pirce"),
    ("type,name,name\n", "csv", "repeated column(s)"),
    ("", "csv", "empty file"),
    ('[\n{"type": "shop"},\n{"type": \n', "json", "line 3: broken JSON array"),
    ('[{"type": "shop"}] x', "json", "text after the JSON array"),
    (b"type,name\nshop,\xff\xfe\n", "csv", "not UTF-8"),
])
def test_unusable_input_raises(text, fmt, message):
    with pytest.raises(CatalogFileError, match=None) as info:
        read(text, fmt)
    assert message in str(info.value)


def test_detect_format_and_missing_file(tmp_path):
    assert cf.detect_format("a/b.CSV") == "csv"
    assert cf.detect_format("x.ndjson") == "jsonl"
    assert cf.detect_format("x.txt", "json") == "json"
    with pytest.raises(CatalogFileError, match="must end in"):
        cf.detect_format("x.xlsx")
    with pytest.raises(CatalogFileError, match="no such file"):
        with cf.open_catalog(tmp_path / "missing.csv"):
            pass
    path = tmp_path / "c.csv"
    path.write_text(f"type,gtin,name\nproduct,{GOOD},Fone\n")
    with cf.open_catalog(path) as reader:
        assert list(reader) == [ProductRow(2, "0" + GOOD, "Fone")]
        assert reader.bytes_read == reader.total_bytes == path.stat().st_size and reader.rows == 1


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_write_then_read_round_trip(fmt):
    records = [
        {"type": "shop", "domain": "a.example.com", "name": 'Loja "A", Ltda', "reputation_score": 80,
         "locale": "pt_BR", "currency": "BRL", "max_concurrent_requests": 4, "min_interval_ms": 250,
         "check_interval_seconds": 3600, "price_kind": None, "feed_url": None, "api_base_url": None},
        {"type": "product", "gtin": "0" + GOOD, "name": "Fone\nBT", "brand": None, "category": "audio"},
        {"type": "offer", "shop": "a.example.com", "gtin": "0" + GOOD, "source_kind": "page",
         "locator": "https://a.example.com/p?id=1,2", "price": Decimal("1234.50"), "currency": "BRL",
         "active": False},
    ]
    out = io.StringIO()
    assert cf.write_catalog(records, out, fmt) == 3
    rows = read(out.getvalue(), fmt)
    assert not errors(rows)
    assert rows[0] == ShopRow(2 if fmt == "csv" else 1, "a.example.com", 'Loja "A", Ltda', 80, "pt_BR", "BRL",
                              4, 250, 3600)
    assert rows[1].name == "Fone\nBT" and rows[1].category == "audio"
    assert rows[2].price == Decimal("1234.50") and rows[2].active is False
