"""parse_money / parse_installment / parse_decimal_amount: exact Decimal expectations."""

from decimal import Decimal

import pytest

from smartbuy_pipeline.domain.money import (
    currency_code,
    parse_decimal_amount,
    parse_installment,
    parse_money,
)
from smartbuy_pipeline.domain.types import ExtractionError, FailureReason, Money

D = Decimal

# (text, locale, default_currency, expected amount, expected currency)
OK_CASES = [
    ("R$ 1.299,90", "pt_BR", None, "1299.90", "BRL"),
    ("R$1.899,00", "pt_BR", None, "1899.00", "BRL"),
    ("R$ 12,90 no Pix", "pt_BR", None, "12.90", "BRL"),
    ("R$ 12,9", "pt_BR", None, "12.90", "BRL"),
    ("10x de R$ 129,99 sem juros", "pt_BR", None, "129.99", "BRL"),
    ("12x R$ 100,00", "pt_BR", None, "100.00", "BRL"),
    ("3× de R$ 33,33", "pt_BR", None, "33.33", "BRL"),
    ("R$ 1.299,90 à vista ou 10x de R$ 129,99", "pt_BR", None, "1299.90", "BRL"),
    ("1.299", "pt_BR", "BRL", "1299.00", "BRL"),
    ("1.299", "en", "USD", "1.30", "USD"),
    ("1,299", "pt_BR", "BRL", "1.30", "BRL"),
    ("1,299", "en", "USD", "1299.00", "USD"),
    ("1,299.90", "en", "USD", "1299.90", "USD"),
    ("1,299.90", "pt_BR", "BRL", "1299.90", "BRL"),
    ("1.299,90", "en", "EUR", "1299.90", "EUR"),
    ("BRL 1299.9", "pt_BR", None, "1299.90", "BRL"),
    ("1299.90 BRL", "pt_BR", None, "1299.90", "BRL"),
    ("1299.90 BRL", "en", None, "1299.90", "BRL"),
    ("15,00 BRL", "pt_BR", None, "15.00", "BRL"),
    ("2879.2", "pt_BR", "BRL", "2879.20", "BRL"),
    ("2879,20", "pt_BR", "BRL", "2879.20", "BRL"),
    ("R$ 1.299.999,00", "pt_BR", None, "1299999.00", "BRL"),
    ("1.299.999", "pt_BR", "BRL", "1299999.00", "BRL"),
    ("1,299,999", "en", "USD", "1299999.00", "USD"),
    ("R$ 1 299,90", "pt_BR", None, "1299.90", "BRL"),
    ("R$\u00a01.299,90", "pt_BR", None, "1299.90", "BRL"),
    ("US$ 10.50", "en", None, "10.50", "USD"),
    ("US$ 10,50", "pt_BR", None, "10.50", "USD"),
    ("$ 19.99", "en", None, "19.99", "USD"),
    ("$19.99", "en", "CAD", "19.99", "CAD"),
    ("€ 5,99", "pt_BR", None, "5.99", "EUR"),
    ("5,99 €", "pt_BR", None, "5.99", "EUR"),
    ("EUR 12,50", "pt_BR", None, "12.50", "EUR"),
    ("£ 7.25", "en", None, "7.25", "GBP"),
    ("USD 1,000.00", "en", None, "1000.00", "USD"),
    ("Notebook - R$ 3.499,00", "pt_BR", None, "3499.00", "BRL"),
    ("por R$ 1.899,00", "pt_BR", None, "1899.00", "BRL"),
    ("de R$ 2.599,00", "pt_BR", None, "2599.00", "BRL"),
    ("R$ 0,01", "pt_BR", None, "0.01", "BRL"),
    ("R$ 0,015", "pt_BR", None, "0.02", "BRL"),  # quantized half-even to cents by Money
    ("1299", "pt_BR", "BRL", "1299.00", "BRL"),
    ("R$ 99", "pt_BR", None, "99.00", "BRL"),
    ("  R$ 49,90  ", "pt_BR", None, "49.90", "BRL"),
    ("R$ 12,90 no Pix", "pt_BR", "USD", "12.90", "BRL"),  # declared currency beats the default
]

FAIL_CASES = [
    ("R$ 0,00", "pt_BR", None, FailureReason.NON_POSITIVE_PRICE),
    ("0", "pt_BR", "BRL", FailureReason.NON_POSITIVE_PRICE),
    ("-5,00", "pt_BR", "BRL", FailureReason.NON_POSITIVE_PRICE),
    ("-R$ 5,00", "pt_BR", None, FailureReason.NON_POSITIVE_PRICE),
    ("R$ -5,00", "pt_BR", None, FailureReason.NON_POSITIVE_PRICE),
    ("R$ 0,004", "pt_BR", None, FailureReason.NON_POSITIVE_PRICE),
    ("R$ 0,005", "pt_BR", None, FailureReason.NON_POSITIVE_PRICE),  # rounds to 0.00
    ("grátis", "pt_BR", "BRL", FailureReason.UNPARSEABLE_PRICE),
    ("", "pt_BR", "BRL", FailureReason.UNPARSEABLE_PRICE),
    ("   ", "pt_BR", "BRL", FailureReason.UNPARSEABLE_PRICE),
    ("Consulte o preço", "pt_BR", "BRL", FailureReason.UNPARSEABLE_PRICE),
    ("R$", "pt_BR", None, FailureReason.UNPARSEABLE_PRICE),
    ("1.299,90", "pt_BR", None, FailureReason.CURRENCY_MISSING),
    ("1299", "en", None, FailureReason.CURRENCY_MISSING),
]


@pytest.mark.parametrize(("text", "locale", "default", "amount", "currency"), OK_CASES)
def test_parse_money_ok(text, locale, default, amount, currency):
    assert parse_money(text, locale=locale, default_currency=default) == Money(D(amount), currency)


@pytest.mark.parametrize(("text", "locale", "default", "reason"), FAIL_CASES)
def test_parse_money_failures(text, locale, default, reason):
    with pytest.raises(ExtractionError) as info:
        parse_money(text, locale=locale, default_currency=default)
    assert info.value.reason is reason
    assert repr(text) in info.value.detail  # what was refused is in the detail


def test_parse_money_rejects_non_string():
    with pytest.raises(ExtractionError) as info:
        parse_money(None)  # type: ignore[arg-type]
    assert info.value.reason is FailureReason.UNPARSEABLE_PRICE


def test_money_amount_is_decimal_never_float():
    money = parse_money("R$ 1.299,90")
    assert type(money.amount) is Decimal
    assert money.amount.as_tuple() == D("1299.90").as_tuple()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10x de R$ 129,99 sem juros", (10, Money(D("129.99"), "BRL"))),
        ("12x R$ 100,00", (12, Money(D("100.00"), "BRL"))),
        ("10X sem juros de R$ 209,90", (10, Money(D("209.90"), "BRL"))),
        ("ou 6x de R$ 50,00", (6, Money(D("50.00"), "BRL"))),
        ("R$ 1.299,90 à vista ou 10x de R$ 129,99", (10, Money(D("129.99"), "BRL"))),
        ("R$ 1.299,90", None),
        ("grátis", None),
        ("10x", None),
    ],
)
def test_parse_installment(text, expected):
    assert parse_installment(text) == expected


def test_parse_installment_bad_amount_raises():
    with pytest.raises(ExtractionError) as info:
        parse_installment("10x de R$ 0,00")
    assert info.value.reason is FailureReason.NON_POSITIVE_PRICE


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2879.2", "2879.20"),
        ("2879.20", "2879.20"),
        (2879, "2879.00"),
        (D("2879.2"), "2879.20"),
        (D("2879.199"), "2879.20"),
        ("1.299,90", "1299.90"),
        ("1,299.90", "1299.90"),
        ("1.299", "1.30"),  # schema.org: "." is the decimal separator
        ("1299,9", "1299.90"),
        (" 15 ", "15.00"),
        ("R$ 1.299,90", "1299.90"),
    ],
)
def test_parse_decimal_amount(value, expected):
    assert parse_decimal_amount(value) == D(expected)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("0", FailureReason.NON_POSITIVE_PRICE),
        (0, FailureReason.NON_POSITIVE_PRICE),
        ("-1", FailureReason.NON_POSITIVE_PRICE),
        (D("-0.5"), FailureReason.NON_POSITIVE_PRICE),
        ("abc", FailureReason.UNPARSEABLE_PRICE),
        ("", FailureReason.UNPARSEABLE_PRICE),
        ("1e3", FailureReason.UNPARSEABLE_PRICE),
        ("NaN", FailureReason.UNPARSEABLE_PRICE),
        (D("NaN"), FailureReason.UNPARSEABLE_PRICE),
        (D("Infinity"), FailureReason.UNPARSEABLE_PRICE),
        (True, FailureReason.UNPARSEABLE_PRICE),
        (12.5, FailureReason.UNPARSEABLE_PRICE),
        (None, FailureReason.UNPARSEABLE_PRICE),
    ],
)
def test_parse_decimal_amount_failures(value, reason):
    with pytest.raises(ExtractionError) as info:
        parse_decimal_amount(value)
    assert info.value.reason is reason


def test_parse_decimal_amount_allow_zero_for_free_shipping():
    assert parse_decimal_amount("0.00", allow_zero=True) == D("0.00")
    with pytest.raises(ExtractionError):
        parse_decimal_amount("-1", allow_zero=True)


@pytest.mark.parametrize(
    ("symbol", "default", "expected"),
    [("R$", None, "BRL"), ("US$", None, "USD"), ("€", None, "EUR"), ("brl", None, "BRL"),
     ("$", None, "USD"), ("$", "ARS", "ARS"), ("XYZ", None, None), ("", None, None)],
)
def test_currency_code(symbol, default, expected):
    assert currency_code(symbol, default_currency=default) == expected
