"""Mercado-Livre-style multiget items API parsing."""

import json
from decimal import Decimal

import pytest

from smartbuy_pipeline.domain.items_api import chunk_ids, parse_items_response
from smartbuy_pipeline.domain.types import (
    Availability,
    ExtractionError,
    Extracted,
    FailureReason,
    Money,
    PriceKind,
    PriceQuote,
)

BODY = b"""[
 {"code": 200, "body": {"id": "MLB100", "price": 2879.2, "original_price": 3299.00,
   "currency_id": "BRL", "available_quantity": 12, "status": "active", "seller_id": 555,
   "shipping": {"free_shipping": true},
   "attributes": [{"id": "GTIN", "value_name": "7891234567895"}]}},
 {"code": 200, "body": {"id": "MLB200", "price": 149.9, "original_price": null,
   "currency_id": "BRL", "available_quantity": 0, "status": "active", "seller_id": 7,
   "shipping": {"free_shipping": false}}},
 {"code": 200, "body": {"id": "MLB300", "price": 99, "original_price": 99,
   "currency_id": "BRL", "available_quantity": 3, "status": "paused", "seller_id": 7}},
 {"code": 200, "body": {"id": "MLB400", "price": null, "currency_id": "BRL",
   "available_quantity": 0, "status": "closed", "seller_id": 7}},
 {"code": 404, "body": {"message": "Item with id MLB999 not found", "error": "not_found",
   "status": 404, "cause": []}},
 {"code": 200, "body": {"id": "MLB500", "price": 0, "currency_id": "BRL", "status": "active"}},
 {"code": 200, "body": {"id": "MLB600", "price": 10.5, "status": "active"}},
 {"code": 200, "body": {"id": "MLB700", "price": null, "currency_id": "BRL", "status": "active",
   "available_quantity": 5}},
 {"code": 500, "body": {"id": "MLB800"}}
]"""


@pytest.fixture(scope="module")
def parsed():
    return parse_items_response(BODY)


def brl(amount: str) -> Money:
    return Money(Decimal(amount), "BRL")


def test_active_item_with_original_price(parsed):
    item = parsed["MLB100"]
    assert isinstance(item, Extracted)
    assert item.quotes == (PriceQuote(PriceKind.REGULAR, brl("2879.20")),
                           PriceQuote(PriceKind.REFERENCE, brl("3299.00")))
    assert type(item.quotes[0].money.amount) is Decimal
    assert item.availability is Availability.IN_STOCK
    assert item.freight == brl("0.00")
    assert item.gtin == "7891234567895"
    assert item.method == "items_api"
    assert item.raw_currency == "BRL"
    assert item.extra == {"seller_id": 555, "status": "active", "available_quantity": 12}


def test_zero_quantity_is_out_of_stock_with_price(parsed):
    item = parsed["MLB200"]
    assert item.quotes == (PriceQuote(PriceKind.REGULAR, brl("149.90")),)
    assert item.availability is Availability.OUT_OF_STOCK
    assert item.freight is None


def test_paused_item_and_equal_original_price(parsed):
    item = parsed["MLB300"]
    assert item.quotes == (PriceQuote(PriceKind.REGULAR, brl("99.00")),)
    assert item.availability is Availability.OUT_OF_STOCK


def test_closed_item_without_price(parsed):
    item = parsed["MLB400"]
    assert item.quotes == ()
    assert item.availability is Availability.DISCONTINUED


def test_404_entry_keyed_by_id_from_message(parsed):
    err = parsed["MLB999"]
    assert isinstance(err, ExtractionError)
    assert err.reason is FailureReason.NOT_FOUND


@pytest.mark.parametrize(
    ("item_id", "reason"),
    [("MLB500", FailureReason.NON_POSITIVE_PRICE), ("MLB600", FailureReason.CURRENCY_MISSING),
     ("MLB700", FailureReason.NO_PRICE), ("MLB800", FailureReason.HTTP_5XX)],
)
def test_bad_entries_are_typed_errors(parsed, item_id, reason):
    err = parsed[item_id]
    assert isinstance(err, ExtractionError)
    assert err.reason is reason
    assert item_id in err.detail


def test_all_ids_present(parsed):
    assert sorted(parsed) == ["MLB100", "MLB200", "MLB300", "MLB400", "MLB500", "MLB600",
                              "MLB700", "MLB800", "MLB999"]


def test_big_number_is_exact():
    body = json.dumps([{"code": 200, "body": {"id": "X", "price": 0, "currency_id": "BRL"}}])
    body = body.replace('"price": 0', '"price": 123456789.10').encode()
    assert parse_items_response(body)["X"].quotes[0].money == brl("123456789.10")


@pytest.mark.parametrize("body", [b"", b"{not json", b'{"code": 200}', b"[1, 2", b"null"])
def test_malformed_body_raises_parse_error(body):
    with pytest.raises(ExtractionError) as info:
        parse_items_response(body)
    assert info.value.reason is FailureReason.PARSE_ERROR


def test_chunk_ids():
    ids = [f"MLB{i}" for i in range(45)] + ["MLB0", " ", "MLB1"]
    chunks = chunk_ids(ids)
    assert [len(c) for c in chunks] == [20, 20, 5]
    assert chunks[0][0] == "MLB0" and chunks[-1][-1] == "MLB44"
    assert chunk_ids(["a", "b", "c"], size=2) == [["a", "b"], ["c"]]
    assert chunk_ids([]) == []
    with pytest.raises(ValueError):
        chunk_ids(["a"], size=0)
