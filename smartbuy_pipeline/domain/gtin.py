"""GTIN (EAN-8/UPC-A/EAN-13/GTIN-14) normalisation and GS1 check-digit validation.

Products are keyed by the GTIN-14 form (left-padded with zeros), so an EAN-13 and the same
code written as GTIN-14 are one product. Brazilian EAN-13 codes start with 789/790.
"""

from __future__ import annotations

VALID_LENGTHS = (8, 12, 13, 14)


class InvalidGtin(ValueError):
    pass


def gs1_check_digit(body: str) -> int:
    """Check digit for the digits before it (GS1 mod-10, weights 3,1,3,... from the right)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def normalize_gtin(raw: str) -> str:
    """Return the 14-digit GTIN for `raw`, or raise InvalidGtin saying why."""
    digits = "".join(ch for ch in str(raw).strip() if ch not in " -")
    if not digits.isdigit():
        raise InvalidGtin(f"GTIN {raw!r} has non-digit characters")
    if len(digits) not in VALID_LENGTHS:
        raise InvalidGtin(f"GTIN {raw!r} has {len(digits)} digits; expected 8, 12, 13 or 14")
    expected = gs1_check_digit(digits[:-1])
    if int(digits[-1]) != expected:
        raise InvalidGtin(f"GTIN {raw!r} has check digit {digits[-1]}, expected {expected}")
    return digits.zfill(14)


def is_valid_gtin(raw: str) -> bool:
    try:
        normalize_gtin(raw)
    except InvalidGtin:
        return False
    return True


def make_gtin13(prefix: str, serial: int) -> str:
    """Build a valid EAN-13 from a prefix (e.g. '789') and a serial number (demo catalogs)."""
    body = f"{prefix}{serial:0{12 - len(prefix)}d}"
    if len(body) != 12:
        raise ValueError(f"prefix {prefix!r} and serial {serial} do not fit 12 digits")
    return body + str(gs1_check_digit(body))
