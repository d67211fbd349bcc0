"""Great Expectations checks for a batch of price observations (rows bound for `price_history`).

Pure data-quality layer: a pandas DataFrame goes in, a `QualityReport` comes out. No Dagster and
no database here; the asset check that wraps this maps the report to `AssetCheckResult`
(`report.passed`, `report.to_metadata()`).

The frame has the columns of a `price_history` batch (sql/0004_price_history.sql): offer_id,
observed_at (tz-aware), price (Decimal or None), currency, reference_price, freight, availability,
status, source_kind. The suite mirrors the table's constraints plus the run's time window:

* offer_id, observed_at, currency, availability, status are not null;
* price > 0 where not null (an out-of-stock row may have no price);
* currency is in the allowed set (BRL by default);
* window_start <= observed_at <= window_end -- both ends INCLUSIVE (unlike the half-open monthly
  partitions): a run for [00:00, 24:00] keeps a row observed exactly at 24:00;
* (offer_id, observed_at) is unique -- the table's primary key; every row of a duplicated pair
  counts as unexpected, so one duplicate pair reports 2;
* status is accepted | quarantined; availability is one of the `Availability` values.

Prices are never turned into floats. The price check runs on a temporary integer-cents column of
a private working copy (`Int64`), computed from the Decimals with the rounding PostgreSQL applies
when storing numeric(12, 2) (half away from zero), so "price > 0" here means exactly what the
table's CHECK means. A non-finite (NaN/Infinity) or unparseable price counts as a price
violation. The caller's frame is not modified, and the sample is built from the caller's values.

GX is imported lazily (the import alone takes ~2.5 s) and one ephemeral context, data source,
batch definition and suite are built on first use and reused for the life of the process;
validation holds a lock, so concurrent callers in one process are serialised.
Note that `gx.get_context()` also sets GX's process-wide "current context".
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import Enum
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd

from smartbuy_pipeline.domain.types import Availability

if TYPE_CHECKING:
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.data_context import AbstractDataContext

__all__ = [
    "ALLOWED_AVAILABILITY",
    "ALLOWED_STATUS",
    "OBSERVATION_COLUMNS",
    "QualityReport",
    "validate_observations",
]

ALLOWED_STATUS: Final = frozenset({"accepted", "quarantined"})
ALLOWED_AVAILABILITY: Final = frozenset(a.value for a in Availability)

#: The batch columns, in the order used for samples.
OBSERVATION_COLUMNS: Final = (
    "offer_id",
    "observed_at",
    "price",
    "currency",
    "reference_price",
    "freight",
    "availability",
    "status",
    "source_kind",
)
#: The columns the suite reads; a frame without them is not a price_history batch (ValueError).
_CHECKED_COLUMNS: Final = ("offer_id", "observed_at", "price", "currency", "availability", "status")
_AMOUNT_COLUMNS: Final = frozenset({"price", "reference_price", "freight"})
_INT_COLUMNS: Final = frozenset({"offer_id"})

#: Temporary integer-cents copy of `price`, only in the private working frame.
_PRICE_CENTS: Final = "__smartbuy_price_cents"
_INT64_MAX: Final = int(np.iinfo(np.int64).max)
_INT64_MIN: Final = int(np.iinfo(np.int64).min)

_SUITE_NAME: Final = "smartbuy.price_observations"
_P_WINDOW_START: Final = "window_start"
_P_WINDOW_END: Final = "window_end"
_P_CURRENCIES: Final = "allowed_currencies"


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class QualityReport:
    """Outcome of `validate_observations`.

    failed_expectations: one dict per failing expectation, in suite order:
        check (stable name, e.g. "price_positive"), expectation (GX type), columns (list; the
        caller's column names, so the price check says "price"), unexpected_count,
        unexpected_percent (share of ALL rows in the batch, 0-100),
        unexpected_percent_nonmissing (share of the non-null values, for checks that skip nulls;
        else absent), and "exception" (message) when GX raised instead of evaluating.
    failing_rows_sample: up to `sample_size` offending rows, JSON-safe (ints, ISO-8601 strings,
        amounts as decimal strings, None), in input order, each with "row" (position in the input
        frame) and "failed" (checks the row is known to fail). Rows are picked round-robin across
        the failing checks so each one is represented; "failed" is exact for the first
        `sample_size` offenders of each check (GX reports that many row indices per check).
    """

    passed: bool
    rows: int
    failed_expectations: list[dict[str, Any]] = field(default_factory=list)
    failing_rows_sample: list[dict[str, Any]] = field(default_factory=list)

    def to_metadata(self) -> dict[str, Any]:
        """Plain JSON-able values for Dagster metadata (numbers stay numbers; the sample is a
        markdown table string, "" when there is none)."""
        meta: dict[str, Any] = {
            "passed": bool(self.passed),
            "rows": int(self.rows),
            "failed_expectation_count": len(self.failed_expectations),
        }
        for failure in self.failed_expectations:
            meta[f"unexpected_count.{failure['check']}"] = int(failure["unexpected_count"])
        meta["failed_expectations"] = [dict(f) for f in self.failed_expectations]
        meta["failing_rows_sample_size"] = len(self.failing_rows_sample)
        meta["failing_rows_sample"] = _markdown_table(self.failing_rows_sample)
        return meta


# --------------------------------------------------------------------------- public entry point


def validate_observations(
    df: pd.DataFrame,
    *,
    window_start: datetime,
    window_end: datetime,
    allowed_currencies: frozenset[str] = frozenset({"BRL"}),
    sample_size: int = 10,
) -> QualityReport:
    """Validate a batch of price observations; see the module docstring for the checks.

    The observation window is inclusive at both ends. An empty frame passes with rows=0.
    Raises ValueError for a frame missing a checked column, a naive or inverted window or a
    negative sample_size, and TypeError when observed_at is not tz-aware (naive values cannot be
    placed in a UTC window: that is a bug in the batch builder, not a data-quality finding).
    """
    _check_window(window_start, window_end)
    if sample_size < 0:
        raise ValueError(f"sample_size must be >= 0, got {sample_size}")
    if isinstance(allowed_currencies, str):
        raise TypeError("allowed_currencies must be a set of codes, not a str")
    currencies = sorted(str(c) for c in allowed_currencies)
    if not currencies:
        raise ValueError("allowed_currencies must not be empty")

    rows = len(df)
    if rows == 0:
        return QualityReport(passed=True, rows=0)
    missing = [c for c in _CHECKED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"not a price_history batch: missing column(s) {', '.join(missing)}")

    work = _working_frame(df)
    state = _gx_state()
    with _LOCK:
        batch = state.batch_definition.get_batch(batch_parameters={"dataframe": work})
        result = batch.validate(
            state.suite,
            result_format={
                "result_format": "SUMMARY",
                "partial_unexpected_count": max(sample_size, 1),
                "return_unexpected_index_query": False,
            },
            expectation_parameters={
                _P_WINDOW_START: window_start,
                _P_WINDOW_END: window_end,
                _P_CURRENCIES: currencies,
            },
        )

    failures: list[dict[str, Any]] = []
    offenders: list[tuple[str, list[int]]] = []
    for res in result.results:
        raised = bool(res.exception_info and res.exception_info.get("raised_exception"))
        if res.success and not raised:
            continue
        failure, indices = _describe_failure(res, rows, raised)
        failures.append(failure)
        offenders.append((failure["check"], indices))
    # GX does not return results in suite order; report them in suite order.
    order = {check: i for i, check in enumerate(state.check_order)}
    failures.sort(key=lambda f: order.get(f["check"], len(order)))
    offenders.sort(key=lambda o: order.get(o[0], len(order)))

    sample = _sample_rows(df, offenders, sample_size)
    return QualityReport(
        passed=not failures, rows=rows, failed_expectations=failures, failing_rows_sample=sample
    )


# --------------------------------------------------------------------------- GX context + suite


@dataclass(frozen=True)
class _GxState:
    context: AbstractDataContext
    batch_definition: BatchDefinition
    suite: ExpectationSuite
    check_order: tuple[str, ...]


_LOCK = threading.RLock()
_STATE: _GxState | None = None


def _gx_state() -> _GxState:
    global _STATE
    if _STATE is not None:
        return _STATE
    with _LOCK:
        if _STATE is None:
            _STATE = _build_gx_state()
        return _STATE


def _build_gx_state() -> _GxState:
    # GX 1.24 ships no analytics client any more (only the config flag survives); the variable is
    # set before the import anyway for other 1.x releases, which read it when they load.
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    with warnings.catch_warnings():
        # GX 1.24 does `import sre_constants` (deprecated since Python 3.11): under -W error the
        # import itself would fail. Only the import is shielded, and only DeprecationWarning.
        warnings.simplefilter("ignore", DeprecationWarning)
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        # GX shows a tqdm "Calculating Metrics" bar per validation unless this is off.
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    source = context.data_sources.add_pandas(name="smartbuy_quality")
    asset = source.add_dataframe_asset(name="price_observations")
    batch_definition = asset.add_batch_definition_whole_dataframe(name="whole_batch")
    suite = _build_suite()
    check_order = tuple(str((e.meta or {}).get("check")) for e in suite.expectations)
    return _GxState(
        context=context, batch_definition=batch_definition, suite=suite, check_order=check_order
    )


def _build_suite() -> ExpectationSuite:
    import great_expectations as gx
    import great_expectations.expectations as gxe

    def meta(check: str, *columns: str) -> dict[str, Any]:
        return {"check": check, "columns": list(columns)}

    expectations = [
        *(
            gxe.ExpectColumnValuesToNotBeNull(column=col, meta=meta(f"{col}_not_null", col))
            for col in ("offer_id", "observed_at", "currency", "availability", "status")
        ),
        # Integer cents > 0 is exactly numeric(12, 2) price > 0; nulls are skipped by GX.
        gxe.ExpectColumnValuesToBeBetween(
            column=_PRICE_CENTS, min_value=0, strict_min=True, meta=meta("price_positive", "price")
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="currency",
            value_set={"$PARAMETER": _P_CURRENCIES},
            meta=meta("currency_allowed", "currency"),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="observed_at",
            min_value={"$PARAMETER": _P_WINDOW_START},
            max_value={"$PARAMETER": _P_WINDOW_END},
            meta=meta("observed_at_in_window", "observed_at"),
        ),
        gxe.ExpectCompoundColumnsToBeUnique(
            column_list=["offer_id", "observed_at"],
            meta=meta("offer_observed_at_unique", "offer_id", "observed_at"),
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="status", value_set=sorted(ALLOWED_STATUS), meta=meta("status_allowed", "status")
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="availability",
            value_set=sorted(ALLOWED_AVAILABILITY),
            meta=meta("availability_allowed", "availability"),
        ),
    ]
    return gx.ExpectationSuite(name=_SUITE_NAME, expectations=expectations)


# --------------------------------------------------------------------------- inputs


def _check_window(start: datetime, end: datetime) -> None:
    for name, value in (("window_start", start), ("window_end", end)):
        if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{name} must be a tz-aware datetime, got {value!r}")
    if start > end:
        raise ValueError(f"window_start {start.isoformat()} is after window_end {end.isoformat()}")


def _working_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A private frame with positional index, UTC observed_at and integer price cents.

    Only the checked columns are taken (copy-on-write: no data is copied until replaced).
    """
    work = df.loc[:, list(_CHECKED_COLUMNS)].reset_index(drop=True)
    work["observed_at"] = _as_utc(work["observed_at"])
    work[_PRICE_CENTS] = pd.array([_price_cents(v) for v in work["price"].tolist()], dtype="Int64")
    return work.drop(columns="price")


def _as_utc(series: pd.Series) -> pd.Series:
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return series.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(series.dtype):
        raise TypeError("observed_at must be tz-aware; got a naive datetime64 column")
    bad = [
        v
        for v in series.dropna().tolist()
        if not isinstance(v, datetime) or v.tzinfo is None or v.utcoffset() is None
    ]
    if bad:
        raise TypeError(f"observed_at must hold tz-aware datetimes; got {bad[0]!r}")
    return pd.to_datetime(series, utc=True)


def _price_cents(value: Any) -> int | None:
    """Integer cents as PostgreSQL would store the value in numeric(12, 2); None for null.

    Invalid values (non-finite, unparseable, bool) map to 0 so they fail `price > 0`.
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return 0
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, (int, np.integer)):
        amount = Decimal(int(value))
    elif isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return None
        amount = Decimal(repr(float(value)))  # already a float upstream; no further loss here
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            return 0
    else:
        return 0
    if not amount.is_finite():
        return 0
    cents = int(amount.scaleb(2).to_integral_value(rounding=ROUND_HALF_UP))
    return min(max(cents, _INT64_MIN), _INT64_MAX)


# --------------------------------------------------------------------------- results


def _describe_failure(res: Any, rows: int, raised: bool) -> tuple[dict[str, Any], list[int]]:
    config = res.expectation_config
    meta = dict(config.meta or {})
    kwargs = config.kwargs
    columns = meta.get("columns") or (
        list(kwargs["column_list"]) if "column_list" in kwargs else [kwargs.get("column")]
    )
    result = dict(res.result or {})
    unexpected = int(result.get("unexpected_count") or 0)
    failure: dict[str, Any] = {
        "check": str(meta.get("check") or config.type),
        "expectation": str(config.type),
        "columns": [str(c) for c in columns],
        "unexpected_count": unexpected,
        "unexpected_percent": _pct(unexpected, rows),
    }
    nonmissing = result.get("unexpected_percent_nonmissing")
    if "missing_count" in result and nonmissing is not None and math.isfinite(nonmissing):
        failure["unexpected_percent_nonmissing"] = round(float(nonmissing), 6)
    if raised:
        failure["exception"] = str(res.exception_info.get("exception_message") or "GX raised")
    indices = [int(i) for i in result.get("partial_unexpected_index_list") or [] if _is_int(i)]
    return failure, indices


def _pct(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 6) if whole else 0.0


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _sample_rows(
    df: pd.DataFrame, offenders: list[tuple[str, list[int]]], sample_size: int
) -> list[dict[str, Any]]:
    if sample_size == 0 or not offenders:
        return []
    failed_by_row: dict[int, list[str]] = {}
    for check, indices in offenders:
        for i in indices:
            failed_by_row.setdefault(i, []).append(check)
    chosen: list[int] = []
    seen: set[int] = set()
    for i in _round_robin([indices for _, indices in offenders]):
        if i not in seen:
            seen.add(i)
            chosen.append(i)
            if len(chosen) == sample_size:
                break
    columns = [c for c in OBSERVATION_COLUMNS if c in df.columns]
    sample = []
    for pos in sorted(chosen):
        row = df.iloc[pos]
        item: dict[str, Any] = {"row": pos, "failed": failed_by_row.get(pos, [])}
        for col in columns:
            item[col] = _json_safe(row[col], col)
        sample.append(item)
    return sample


def _round_robin(lists: Iterable[list[int]]) -> Iterable[int]:
    pending = [list(x) for x in lists]
    depth = 0
    while any(depth < len(x) for x in pending):
        for x in pending:
            if depth < len(x):
                yield x[depth]
        depth += 1


def _json_safe(value: Any, column: str) -> Any:
    """ints, ISO-8601 strings, amounts as strings, None for any null; never a float amount."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, Decimal):
        return str(value)  # keeps scale and sign; "NaN"/"Infinity" for non-finite
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value)) if column in _AMOUNT_COLUMNS else int(value)
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return None
        if column in _AMOUNT_COLUMNS or not math.isfinite(value):
            return repr(float(value))
        if column in _INT_COLUMNS and float(value).is_integer():
            return int(value)  # an int column upcast to float64 by a missing value
        return float(value)
    if isinstance(value, (pd.Timestamp, datetime, date)):
        return value.isoformat()
    if isinstance(value, np.datetime64):
        return pd.Timestamp(value).isoformat()
    if isinstance(value, Enum):
        return _json_safe(value.value, column)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v, "") for k, v in value.items()}
    return str(value)


def _markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    headers: list[str] = []
    for row in rows:
        headers.extend(k for k in row if k not in headers)

    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        text = str(value).replace("\\", "\\\\").replace("|", "\\|")
        return " ".join(text.split())  # no newlines inside a cell

    lines = [
        "| " + " | ".join(headers) + " |",
        "| " + " | ".join("---" for _ in headers) + " |",
    ]
    lines.extend("| " + " | ".join(cell(row.get(h)) for h in headers) + " |" for row in rows)
    return "\n".join(lines)
