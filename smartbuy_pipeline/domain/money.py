"""Locale-correct parsing of human and machine price text into `Money`.

Pure functions, no I/O. Amounts are `Decimal` end to end: nothing here calls `float()`.

Separator rule (the recurring peer bug is reading "1.234,56" as 1.23456 or 1.23):

* both "." and "," present  -> the LAST one is the decimal separator ("1.299,90", "1,299.90");
* one separator, repeated   -> digit grouping ("1.299.999");
* one separator, once, followed by anything but exactly 3 digits -> decimal ("12,9", "2879.20");
* one separator, once, followed by exactly 3 digits -> ambiguous, the locale decides
  (pt_BR: "1.299" is 1299 and "1,299" is 1.299; en: "1,299" is 1299 and "1.299" is 1.299).

The decimal separator of a locale comes from babel's CLDR data; the number and currency are then
extracted by `price_parser.Price.fromstring` with that explicit `decimal_separator`.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from babel.core import UnknownLocaleError
from babel.numbers import get_decimal_symbol, list_currencies
from price_parser import Price

from smartbuy_pipeline.domain.types import CENT, ExtractionError, FailureReason, Money

__all__ = [
    "parse_money",
    "parse_installment",
    "parse_decimal_amount",
    "currency_code",
    "locale_decimal_separator",
]

_ISO_CODES = frozenset(list_currencies())

# Symbol (as price-parser returns it) -> ISO 4217 code. "$" alone is ambiguous: see currency_code.
_SYMBOLS: dict[str, str] = {
    "R$": "BRL",
    "US$": "USD",
    "U$": "USD",
    "U$S": "USD",
    "€": "EUR",
    "EUR€": "EUR",
    "£": "GBP",
    "AR$": "ARS",
    "CA$": "CAD",
    "C$": "CAD",
    "AU$": "AUD",
    "A$": "AUD",
    "MX$": "MXN",
    "CL$": "CLP",
    "CO$": "COP",
    "$U": "UYU",
    "¥": "JPY",
    "₲": "PYG",
}

# "10x de R$ 129,99", "12 x R$ 99,90", "10X sem juros de R$ 129,99", "3× de 33,33"
_INSTALLMENT = re.compile(
    r"(?<![\d.,])(?P<count>\d{1,3})\s*[xX×]\s*(?:sem\s+juros\s+)?(?:de\s+)?(?P<rest>.*)$",
    re.DOTALL,
)
_EXPONENT = re.compile(r"\d[eE][+-]?\d")
_MACHINE_NUMBER = re.compile(r"^[+-]?\d+(?:\.\d+)?$")
# A minus sign glued to the number or to its symbol: "-5,00", "-R$ 5,00", "R$ -5,00" (not the
# " - " of "Notebook - R$ 1.299,00").
_NEGATIVE = re.compile(r"(?:^|[\s(])[-−](?:[A-Za-z]{0,3}\$|€|£)?\s?\d")


def locale_decimal_separator(locale: str) -> str:
    """The decimal separator for `locale` per CLDR ("pt_BR" -> ",", "en" -> ".")."""
    try:
        return get_decimal_symbol(locale.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return "."


def currency_code(symbol_or_code: str | None, *, default_currency: str | None = None) -> str | None:
    """ISO 4217 code for a symbol ("R$", "US$", "€") or a code ("brl"); None when unknown.

    A bare "$" is ambiguous (USD, ARS, MXN, ...): it maps to `default_currency` when one is given,
    else to USD.
    """
    if not symbol_or_code:
        return None
    raw = symbol_or_code.strip()
    if raw in _SYMBOLS:
        return _SYMBOLS[raw]
    if raw == "$":
        return default_currency or "USD"
    upper = raw.upper()
    if len(upper) == 3 and upper.isalpha() and upper in _ISO_CODES:
        return upper
    return None


def _decimal_separator_for(number_text: str, locale_sep: str) -> str | None:
    """Decide which character is the decimal separator in `number_text` (see module doc)."""
    dots, commas = number_text.count("."), number_text.count(",")
    if dots and commas:
        return "." if number_text.rfind(".") > number_text.rfind(",") else ","
    sep = "." if dots else "," if commas else None
    if sep is None:
        return locale_sep  # no separator at all: irrelevant
    if (dots or commas) > 1:
        return "," if sep == "." else "."  # repeated: grouping, so the other one is decimal
    after = number_text.rsplit(sep, 1)[1]
    digits_after = len(after) - len(after.lstrip("0123456789"))
    if digits_after != 3:
        return sep
    return locale_sep  # "1.299" / "1,299": the locale decides


_NUMBER_TOKEN = re.compile(r"\d[\d.,\s\u00a0]*\d|\d")


def parse_money(
    text: str, *, locale: str = "pt_BR", default_currency: str | None = None
) -> Money:
    """Parse a displayed price ("R$ 1.299,90", "1299.90 BRL", "10x de R$ 129,99") into Money.

    For an instalment text the amount of ONE instalment is returned (use `parse_installment` for
    the count). Raises ExtractionError with UNPARSEABLE_PRICE (no number), NON_POSITIVE_PRICE
    (zero or negative) or CURRENCY_MISSING (no symbol/code and no `default_currency`).
    """
    if text is None or not isinstance(text, str):
        raise ExtractionError(
            FailureReason.UNPARSEABLE_PRICE, f"price text must be a string, got {text!r}"
        )
    cleaned = text.replace("\u00a0", " ").strip()
    first = _NUMBER_TOKEN.search(cleaned)
    inst = _INSTALLMENT.search(cleaned)
    # Only when the instalment count is the first number ("10x de R$ 129,99"), not in
    # "R$ 1.299,90 ou 10x de R$ 129,99", which is the full price.
    if inst and first and inst.start() == first.start() and _NUMBER_TOKEN.search(inst.group("rest")):
        cleaned = inst.group("rest")
    token = _NUMBER_TOKEN.search(cleaned)
    if token is None:
        raise ExtractionError(
            FailureReason.UNPARSEABLE_PRICE, f"no number in price text {text!r}"
        )
    sep = _decimal_separator_for(token.group(0).replace(" ", ""), locale_decimal_separator(locale))
    price = Price.fromstring(cleaned, decimal_separator=sep)
    if price.amount is None:
        raise ExtractionError(
            FailureReason.UNPARSEABLE_PRICE, f"price-parser found no amount in {text!r}"
        )
    amount = price.amount
    if _NEGATIVE.search(cleaned[: token.end()]):
        amount = -amount
    if amount.quantize(CENT) <= 0:
        raise ExtractionError(
            FailureReason.NON_POSITIVE_PRICE, f"price {amount} parsed from {text!r} is not positive"
        )
    code = currency_code(price.currency, default_currency=default_currency)
    if code is None and price.currency is None:
        code = default_currency
    if code is None:
        raise ExtractionError(
            FailureReason.CURRENCY_MISSING,
            f"no recognised currency in {text!r} (found {price.currency!r}) and no shop default",
        )
    return Money(amount, code)


def parse_installment(
    text: str, *, locale: str = "pt_BR", default_currency: str | None = None
) -> tuple[int, Money] | None:
    """("10x de R$ 129,99 sem juros") -> (10, Money(129.99, BRL)); None when not an instalment.

    Raises ExtractionError like `parse_money` when it IS an instalment text but the amount is bad.
    A count below 1 is not an instalment (returns None).
    """
    if not isinstance(text, str):
        return None
    cleaned = text.replace("\u00a0", " ").strip()
    m = _INSTALLMENT.search(cleaned)
    if m is None or not _NUMBER_TOKEN.search(m.group("rest")):
        return None
    count = int(m.group("count"))
    if count < 1:
        return None
    return count, parse_money(m.group("rest"), locale=locale, default_currency=default_currency)


def parse_decimal_amount(value: str | int | Decimal, *, allow_zero: bool = False) -> Decimal:
    """A machine-formatted amount (JSON-LD, meta content, feeds) as Decimal quantized to cents.

    schema.org uses "." as the decimal separator ("2879.2", "2879.20", 2879). Human formats are
    tolerated by the separator rule in the module doc, with "." taken as decimal when ambiguous
    (so "1.299,90" is 1299.90 and "1.299" is 1.30, per schema.org). Floats are refused: parse
    JSON with `parse_float=Decimal`. Raises UNPARSEABLE_PRICE / NON_POSITIVE_PRICE
    (zero is accepted with `allow_zero=True`, e.g. a free shipping rate).
    """
    if isinstance(value, bool):
        raise ExtractionError(FailureReason.UNPARSEABLE_PRICE, f"amount {value!r} is a boolean")
    if isinstance(value, float):
        raise ExtractionError(
            FailureReason.UNPARSEABLE_PRICE,
            f"amount {value!r} is a float; parse JSON with parse_float=Decimal",
        )
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, Decimal):
        amount = value
    elif isinstance(value, str):
        text = value.replace("\u00a0", " ").strip()
        if _MACHINE_NUMBER.match(text):
            amount = Decimal(text)
        elif _EXPONENT.search(text):
            raise ExtractionError(
                FailureReason.UNPARSEABLE_PRICE, f"amount {value!r} uses an exponent"
            )
        else:
            token = _NUMBER_TOKEN.search(text)
            if token is None:
                raise ExtractionError(
                    FailureReason.UNPARSEABLE_PRICE, f"no number in amount {value!r}"
                )
            number = token.group(0).replace(" ", "")
            sep = _decimal_separator_for(number, ".")
            other = "," if sep == "." else "."
            normalized = number.replace(other, "").replace(sep, ".")
            try:
                amount = Decimal(normalized)
            except InvalidOperation:
                raise ExtractionError(
                    FailureReason.UNPARSEABLE_PRICE, f"amount {value!r} is not a number"
                ) from None
            if _NEGATIVE.search(text[: token.end()]):
                amount = -amount
    else:
        raise ExtractionError(
            FailureReason.UNPARSEABLE_PRICE,
            f"amount {value!r} has unsupported type {type(value).__name__}",
        )
    if not amount.is_finite():
        raise ExtractionError(FailureReason.UNPARSEABLE_PRICE, f"amount {value!r} is not finite")
    amount = amount.quantize(CENT)
    if amount < 0 or (amount == 0 and not allow_zero):
        raise ExtractionError(
            FailureReason.NON_POSITIVE_PRICE, f"amount {value!r} is not positive"
        )
    return amount
