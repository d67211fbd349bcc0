"""Chart rendering from in-memory series (no database): a real PNG of the fixed size, the same
bytes for the same data, different bytes when the data changes; plus TARGET parsing and the
pt-BR money labels."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from smartbuy_pipeline.charts import (
    PNG_SIGNATURE,
    PNG_SIZE,
    BucketChange,
    ChartData,
    LowPoint,
    PricePoint,
    ShopSeries,
    display_gtin,
    format_money,
    png_size,
    render_png,
)
from smartbuy_pipeline.db.charts import parse_target
from smartbuy_pipeline.domain.gtin import make_gtin13, normalize_gtin

START = datetime(2026, 9, 6, tzinfo=UTC)
END = START + timedelta(days=90)
GTIN13 = make_gtin13("789", 1_000_104)


def day(n: float) -> datetime:
    return START + timedelta(days=n)


def sample(megatech_drop: D = D("2754.05")) -> ChartData:
    megatech = ShopSeries(1, "MegaTech", (
        PricePoint(day(0), D("2754.05"), None, "in_stock"),
        PricePoint(day(47), D("3438.05"), None, "in_stock"),
        PricePoint(day(81), megatech_drop, D("4349.00"), "in_stock"),
        PricePoint(day(85), megatech_drop, None, "in_stock"),
        PricePoint(day(89.75), megatech_drop, None, "in_stock"),
    ))
    casa = ShopSeries(2, "Casa Eletro", (
        PricePoint(day(0), D("2679.00"), D("2999.00"), "in_stock"),
        PricePoint(day(30), None, D("2999.00"), "out_of_stock"),  # a gap
        PricePoint(day(33), D("2679.00"), D("2999.00"), "in_stock"),
        PricePoint(day(60), D("2599.00"), D("2999.00"), "out_of_stock"),  # price shown, not buyable: a gap
        PricePoint(day(61), D("2599.00"), D("2999.00"), "in_stock"),
        PricePoint(day(89.75), D("2599.00"), D("2999.00"), "in_stock"),
    ))
    return ChartData(
        product='Smart TV LG 55" 4K', gtin=normalize_gtin(GTIN13), currency="BRL", start=START, end=END,
        series=(casa, megatech),
        low_30d=(LowPoint(day(0), D("2679.00")), LowPoint(day(61), D("2599.00")),
                 LowPoint(day(89.75), D("2599.00"))),
        bucket_changes=(BucketChange(1, day(65), "B", "A", 70), BucketChange(2, day(31), "C", "A", 40),
                        BucketChange(1, day(82), "A", "B", 100)),
    )


def test_png_signature_and_dimensions():
    png = render_png(sample())
    assert png[:8] == PNG_SIGNATURE
    assert png_size(png) == PNG_SIZE == (1200, 600)
    assert b"Software" not in png and b"matplotlib" not in png.lower()  # no version/tool metadata


def test_identical_data_gives_identical_bytes():
    assert render_png(sample()) == render_png(sample())


def test_bytes_change_with_the_data():
    base = render_png(sample())
    assert render_png(sample(megatech_drop=D("2899.00"))) != base
    data = sample()
    assert render_png(dataclasses.replace(data, bucket_changes=data.bucket_changes[:1])) != base
    assert render_png(dataclasses.replace(data, low_30d=())) != base


def test_single_offer_without_reference_low_or_flips_renders():
    series = ShopSeries(7, "Loja", (PricePoint(day(0), D("99.90"), None, "in_stock"),
                                    PricePoint(day(10), D("89.90"), None, "in_stock")))
    png = render_png(ChartData("Fone", normalize_gtin(GTIN13), "BRL", START, END, (series,)))
    assert png_size(png) == PNG_SIZE


def test_bucket_change_while_out_of_stock_is_drawn():
    data = sample()
    flip_in_gap = BucketChange(2, day(31), "C", "A", 40)  # Casa Eletro shows no price on day 31
    assert render_png(dataclasses.replace(data, bucket_changes=(flip_in_gap,))) != \
        render_png(dataclasses.replace(data, bucket_changes=()))


def test_no_series_is_an_error():
    with pytest.raises(ValueError, match="nothing to chart"):
        render_png(dataclasses.replace(sample(), series=()))


def test_gap_availability_hides_the_price():
    assert PricePoint(day(0), D("10.00"), None, "out_of_stock").shown_price is None
    assert PricePoint(day(0), D("10.00"), None, "preorder").shown_price == D("10.00")
    assert PricePoint(day(0), None, None, "in_stock").shown_price is None


def test_money_and_gtin_labels():
    assert format_money(D("1234.56")) == "R$ 1.234,56"
    assert format_money(D("99.9")) == "R$ 99,90"
    assert display_gtin("07890010001042") == "7890010001042"
    assert display_gtin("00000096385074") == "96385074"       # EAN-8
    assert display_gtin("00012345678905") == "012345678905"   # UPC-A keeps its 12 digits
    assert display_gtin("17890010001049") == "17890010001049"


@pytest.mark.parametrize(("raw", "expected"), [
    ("42", ("offer", "42")),
    (" 0042 ", ("offer", "42")),
    ("12345678901", ("offer", "12345678901")),   # 11 digits: not a GTIN length
    ("offer:12345678", ("offer", "12345678")),   # 8 digits, forced to an offer id
    (GTIN13, ("gtin", GTIN13)),
    (f"gtin:{GTIN13}", ("gtin", GTIN13)),
    ("96385074", ("gtin", "96385074")),          # EAN-8
    ("789-0010-001042", ("gtin", "7890010001042")),
])
def test_parse_target(raw, expected):
    assert parse_target(raw) == expected


@pytest.mark.parametrize(("raw", "message"), [
    ("7890010001043", ("invalid GTIN: GTIN '7890010001043' has check digit 3, expected 2 "
                       "(for offer id 7890010001043 write offer:7890010001043)")),
    ("gtin:42", "invalid GTIN: GTIN '42' has 2 digits"),
    ("abc", "TARGET must be an offer id or a GTIN"),
    ("", "TARGET must be an offer id or a GTIN"),
    ("0", "offer id must be a positive integer"),
    ("offer:-3", "TARGET must be an offer id or a GTIN"),
])
def test_parse_target_errors(raw, message):
    with pytest.raises(ValueError) as exc:
        parse_target(raw)
    assert str(exc.value).startswith(message)
