"""validate_observations: the Great Expectations suite over a price_history batch (no database)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from smartbuy_pipeline.quality import QualityReport, validate_observations
from smartbuy_pipeline.quality import price_checks

D = Decimal
WINDOW_START = datetime(2026, 11, 25, tzinfo=UTC)
WINDOW_END = WINDOW_START + timedelta(days=1)

SUITE_ORDER = [
    "offer_id_not_null",
    "observed_at_not_null",
    "currency_not_null",
    "availability_not_null",
    "status_not_null",
    "price_positive",
    "currency_allowed",
    "observed_at_in_window",
    "offer_observed_at_unique",
    "status_allowed",
    "availability_allowed",
]


def _rows(n: int = 6) -> list[dict[str, Any]]:
    """A clean batch: distinct offers, inside the window, Decimal prices, one out-of-stock row."""
    rows = []
    for i in range(n):
        rows.append(
            {
                "offer_id": 100 + i,
                "observed_at": WINDOW_START + timedelta(hours=i + 1, microseconds=i),
                "price": D("1299.90") + i,
                "currency": "BRL",
                "reference_price": D("1499.00"),
                "freight": D("0.00"),
                "availability": "in_stock",
                "status": "accepted",
                "source_kind": "page",
            }
        )
    rows[-1].update(price=None, reference_price=None, availability="out_of_stock")
    return rows


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df["offer_id"] = df["offer_id"].astype("Int64")
    df["observed_at"] = pd.to_datetime(df["observed_at"], utc=True)
    return df


def _validate(df: pd.DataFrame, **kwargs: Any) -> QualityReport:
    return validate_observations(df, window_start=WINDOW_START, window_end=WINDOW_END, **kwargs)


def _checks(report: QualityReport) -> list[str]:
    return [f["check"] for f in report.failed_expectations]


def _walk(value: Any):
    if isinstance(value, dict):
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)
    else:
        yield value


# --------------------------------------------------------------------------- clean batches


def test_clean_batch_passes() -> None:
    report = _validate(_frame(_rows()))
    assert report.passed
    assert report.rows == 6
    assert report.failed_expectations == []
    assert report.failing_rows_sample == []
    meta = report.to_metadata()
    assert meta["passed"] is True
    assert meta["rows"] == 6
    assert meta["failed_expectation_count"] == 0
    assert meta["failing_rows_sample"] == ""


def test_window_is_inclusive_at_both_ends() -> None:
    rows = _rows(3)
    rows[0]["observed_at"] = WINDOW_START
    rows[1]["observed_at"] = WINDOW_END
    assert _validate(_frame(rows)).passed


def test_out_of_stock_row_may_have_null_price() -> None:
    rows = _rows(2)
    rows[0].update(price=None, availability="out_of_stock")
    assert _validate(_frame(rows)).passed


def test_empty_frame_passes() -> None:
    assert _validate(pd.DataFrame()) == QualityReport(passed=True, rows=0)
    empty = _frame(_rows()).iloc[0:0]
    report = _validate(empty)
    assert report.passed and report.rows == 0
    assert report.to_metadata()["rows"] == 0


def test_object_column_of_aware_datetimes_in_other_zone_is_converted() -> None:
    rows = _rows(2)
    sp = ZoneInfo("America/Sao_Paulo")
    rows[0]["observed_at"] = datetime(2026, 11, 24, 21, 0, tzinfo=sp)  # 00:00 UTC: window start
    rows[1]["observed_at"] = datetime(2026, 11, 24, 20, 59, tzinfo=sp)  # 23:59 UTC the day before
    df = pd.DataFrame(rows)
    df["observed_at"] = pd.Series([r["observed_at"] for r in rows], dtype=object)
    report = _validate(df)
    assert _checks(report) == ["observed_at_in_window"]
    assert [r["row"] for r in report.failing_rows_sample] == [1]


# --------------------------------------------------------------------------- single violations

# (id, row index to break, changes, expected check, expected unexpected count, offending rows)
VIOLATIONS = [
    ("null offer_id", 1, {"offer_id": None}, "offer_id_not_null", 1, [1]),
    ("price 0", 2, {"price": D("0.00")}, "price_positive", 1, [2]),
    ("price -1", 0, {"price": D("-1")}, "price_positive", 1, [0]),
    ("price rounds to 0.00", 3, {"price": D("0.004")}, "price_positive", 1, [3]),
    ("price NaN", 3, {"price": D("NaN")}, "price_positive", 1, [3]),
    ("currency USD", 4, {"currency": "USD"}, "currency_allowed", 1, [4]),
    ("null currency", 4, {"currency": None}, "currency_not_null", 1, [4]),
    (
        "observed_at before window",
        1,
        {"observed_at": WINDOW_START - timedelta(microseconds=1)},
        "observed_at_in_window",
        1,
        [1],
    ),
    (
        "observed_at after window",
        5,
        {"observed_at": WINDOW_END + timedelta(microseconds=1)},
        "observed_at_in_window",
        1,
        [5],
    ),
    ("bad status", 2, {"status": "rejected"}, "status_allowed", 1, [2]),
    ("null status", 2, {"status": None}, "status_not_null", 1, [2]),
    ("bad availability", 0, {"availability": "sold_out"}, "availability_allowed", 1, [0]),
]


@pytest.mark.parametrize(
    ("row", "changes", "check", "count", "offending"),
    [v[1:] for v in VIOLATIONS],
    ids=[v[0] for v in VIOLATIONS],
)
def test_single_violation_fails_exactly_that_expectation(
    row: int, changes: dict[str, Any], check: str, count: int, offending: list[int]
) -> None:
    rows = _rows()
    rows[row].update(changes)
    report = _validate(_frame(rows))

    assert not report.passed
    assert _checks(report) == [check]
    [failure] = report.failed_expectations
    assert failure["unexpected_count"] == count
    assert failure["unexpected_percent"] == pytest.approx(100 * count / 6)
    assert [r["row"] for r in report.failing_rows_sample] == offending
    for sample_row in report.failing_rows_sample:
        assert sample_row["failed"] == [check]
        assert sample_row["offer_id"] == rows[sample_row["row"]]["offer_id"]


def test_duplicate_offer_and_time_fails_uniqueness_with_both_rows() -> None:
    rows = _rows()
    rows[3]["offer_id"] = rows[1]["offer_id"]
    rows[3]["observed_at"] = rows[1]["observed_at"]
    report = _validate(_frame(rows))

    assert _checks(report) == ["offer_observed_at_unique"]
    [failure] = report.failed_expectations
    assert failure["expectation"] == "expect_compound_columns_to_be_unique"
    assert failure["columns"] == ["offer_id", "observed_at"]
    assert failure["unexpected_count"] == 2  # every row of the duplicated pair
    assert [r["row"] for r in report.failing_rows_sample] == [1, 3]


def test_same_offer_at_different_times_is_not_a_duplicate() -> None:
    rows = _rows()
    rows[3]["offer_id"] = rows[1]["offer_id"]
    assert _validate(_frame(rows)).passed


def test_price_failure_reports_the_price_column_not_the_helper() -> None:
    rows = _rows()
    rows[0]["price"] = D("0")
    [failure] = _validate(_frame(rows)).failed_expectations
    assert failure == {
        "check": "price_positive",
        "expectation": "expect_column_values_to_be_between",
        "columns": ["price"],
        "unexpected_count": 1,
        "unexpected_percent": pytest.approx(100 / 6, abs=1e-5),
        # 5 non-null prices (the out-of-stock row has none)
        "unexpected_percent_nonmissing": pytest.approx(20.0),
    }


def test_smallest_positive_amount_passes() -> None:
    rows = _rows()
    rows[0]["price"] = D("0.01")
    rows[1]["price"] = D("0.005")  # numeric(12, 2) stores 0.01 (half away from zero)
    assert _validate(_frame(rows)).passed


# --------------------------------------------------------------------------- parameters


def test_allowed_currencies_is_per_call_although_the_suite_is_cached() -> None:
    rows = _rows()
    rows[0]["currency"] = "USD"
    df = _frame(rows)
    assert _validate(df, allowed_currencies=frozenset({"BRL", "USD"})).passed
    assert _checks(_validate(df)) == ["currency_allowed"]
    assert _checks(_validate(df, allowed_currencies=frozenset({"USD"}))) == ["currency_allowed"]
    [failure] = _validate(df, allowed_currencies=frozenset({"USD"})).failed_expectations
    assert failure["unexpected_count"] == 5


def test_window_is_per_call() -> None:
    df = _frame(_rows())
    later = validate_observations(
        df, window_start=WINDOW_END, window_end=WINDOW_END + timedelta(days=1)
    )
    assert _checks(later) == ["observed_at_in_window"]
    assert later.failed_expectations[0]["unexpected_count"] == 6
    assert _validate(df).passed


def test_invalid_arguments_raise() -> None:
    df = _frame(_rows())
    with pytest.raises(ValueError, match="tz-aware"):
        validate_observations(df, window_start=datetime(2026, 11, 25), window_end=WINDOW_END)
    with pytest.raises(ValueError, match="after"):
        validate_observations(df, window_start=WINDOW_END, window_end=WINDOW_START)
    with pytest.raises(ValueError, match="missing column"):
        _validate(df.drop(columns=["status"]))
    naive = df.assign(observed_at=df["observed_at"].dt.tz_localize(None))
    with pytest.raises(TypeError, match="tz-aware"):
        _validate(naive)


# --------------------------------------------------------------------------- mixed batches + sample


def test_mixed_batch_reports_every_failing_expectation() -> None:
    rows = _rows(12)
    rows[0]["offer_id"] = None
    rows[1]["price"] = D("0")
    rows[2]["price"] = D("-1")
    rows[3]["currency"] = "USD"
    rows[4]["observed_at"] = WINDOW_START - timedelta(seconds=1)
    rows[5]["observed_at"] = WINDOW_END + timedelta(seconds=1)
    rows[7].update(offer_id=rows[6]["offer_id"], observed_at=rows[6]["observed_at"])
    rows[8]["status"] = "pending"
    rows[9]["availability"] = "gone"
    report = _validate(_frame(rows), sample_size=20)

    assert not report.passed
    counts = {f["check"]: f["unexpected_count"] for f in report.failed_expectations}
    assert counts == {
        "offer_id_not_null": 1,
        "price_positive": 2,
        "currency_allowed": 1,
        "observed_at_in_window": 2,
        "offer_observed_at_unique": 2,
        "status_allowed": 1,
        "availability_allowed": 1,
    }
    assert _checks(report) == [c for c in SUITE_ORDER if c in counts]  # suite order
    failed = {r["row"]: r["failed"] for r in report.failing_rows_sample}
    assert failed == {
        0: ["offer_id_not_null"],
        1: ["price_positive"],
        2: ["price_positive"],
        3: ["currency_allowed"],
        4: ["observed_at_in_window"],
        5: ["observed_at_in_window"],
        6: ["offer_observed_at_unique"],
        7: ["offer_observed_at_unique"],
        8: ["status_allowed"],
        9: ["availability_allowed"],
    }


def test_one_row_failing_several_checks_lists_them_all() -> None:
    rows = _rows()
    rows[2].update(price=D("-3.10"), currency="EUR", status="x")
    report = _validate(_frame(rows))
    assert _checks(report) == ["price_positive", "currency_allowed", "status_allowed"]
    [row] = report.failing_rows_sample
    assert row["row"] == 2
    assert row["failed"] == ["price_positive", "currency_allowed", "status_allowed"]


def test_sample_is_capped_and_covers_each_failing_check() -> None:
    rows = _rows(40)
    for i in range(30):
        rows[i]["price"] = D("0")
    rows[35]["status"] = "nope"
    report = _validate(_frame(rows), sample_size=5)
    assert report.failed_expectations[0]["unexpected_count"] == 30
    sample_rows = [r["row"] for r in report.failing_rows_sample]
    assert len(sample_rows) == 5
    assert 35 in sample_rows  # round-robin: the rarer check is not crowded out
    assert sample_rows == sorted(sample_rows)
    assert _validate(_frame(rows), sample_size=0).failing_rows_sample == []


def test_sample_uses_positions_and_values_of_a_frame_with_a_custom_index() -> None:
    rows = _rows()
    rows[4]["currency"] = "USD"
    df = _frame(rows)
    df.index = [f"k{i}" for i in range(len(df))]
    [row] = _validate(df).failing_rows_sample
    assert row["row"] == 4
    assert row["offer_id"] == 104
    assert row["currency"] == "USD"


def test_sample_is_json_safe_and_prices_stay_exact_strings() -> None:
    rows = _rows()
    rows[0].update(price=D("-0.10"), reference_price=D("12345678.99"), freight=D("7.5"))
    rows[1].update(offer_id=None, price=D("1234567890.12"))
    df = _frame(rows)
    before = df.copy()

    report = _validate(df)
    sample = {r["row"]: r for r in report.failing_rows_sample}
    assert sample[0]["price"] == "-0.10"
    assert sample[0]["reference_price"] == "12345678.99"
    assert sample[0]["freight"] == "7.5"
    assert sample[0]["offer_id"] == 100
    assert sample[0]["observed_at"] == rows[0]["observed_at"].isoformat()
    assert sample[1]["offer_id"] is None
    assert sample[1]["price"] == "1234567890.12"
    values = list(_walk(report.failing_rows_sample))
    assert not any(isinstance(v, float) for v in values)
    assert all(v is None or type(v) in (int, str, bool) for v in values)
    json.dumps(report.failing_rows_sample)

    # The caller's frame is untouched: same columns, prices still the same Decimal objects.
    pd.testing.assert_frame_equal(df, before)
    assert all(isinstance(p, Decimal) for p in df["price"].dropna())


def test_to_metadata_is_plain_json() -> None:
    rows = _rows()
    rows[0]["price"] = D("0")
    rows[1]["currency"] = "A|B"
    report = _validate(_frame(rows))
    meta = report.to_metadata()
    assert json.loads(json.dumps(meta)) == meta
    assert meta["passed"] is False
    assert meta["rows"] == 6
    assert meta["failed_expectation_count"] == 2
    assert meta["unexpected_count.price_positive"] == 1
    assert meta["unexpected_count.currency_allowed"] == 1
    assert isinstance(meta["failed_expectations"][0]["unexpected_percent"], float)
    table = meta["failing_rows_sample"].splitlines()
    assert table[0].startswith("| row | failed | offer_id | observed_at | price |")
    assert table[1].startswith("| --- |")
    assert len(table) == 4
    assert "| 0 | price_positive | 100 |" in table[2]
    assert "A\\|B" in table[3]


# --------------------------------------------------------------------------- GX context


def test_context_is_built_once_and_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    _validate(_frame(_rows()))
    state = price_checks._gx_state()
    assert price_checks._gx_state() is state
    assert state.context.progress_bars.globally is False
    assert state.context.variables.analytics_enabled is False
    _validate(_frame(_rows()))
    captured = capsys.readouterr()
    assert "Calculating Metrics" not in captured.err + captured.out


def test_concurrent_calls_do_not_mix_batches() -> None:
    from concurrent.futures import ThreadPoolExecutor

    def run(bad: int) -> tuple[int, QualityReport]:
        rows = _rows(20)
        for i in range(bad):
            rows[i]["price"] = D("0")
        return bad, _validate(_frame(rows))

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, range(12)))
    for bad, report in results:
        counts = [f["unexpected_count"] for f in report.failed_expectations]
        assert counts == ([bad] if bad else [])
