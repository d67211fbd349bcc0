"""Alert rules, pure: params validation, dedupe keys, the re-arm state machine.

PARAMS_CASES is shared with tests/integration/test_alert_evaluation.py, which checks that the
SQL CHECK function public.fn_alert_params_valid agrees with parse_alert_params on every row.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from smartbuy_pipeline.domain.alerts import (
    AlertParamsError,
    AlertState,
    BackInStockParams,
    NewLowParams,
    PercentDropParams,
    TargetPriceParams,
    TotalPriceParams,
    compared_figure,
    decide,
    dedupe_key,
    money_str,
    parse_alert_params,
    percent_threshold,
)

# (alert_type, params as JSON text, valid?, offending field when invalid)
PARAMS_CASES: list[tuple[str, str, bool, str | None]] = [
    ("TARGET_PRICE", '{"target": 150}', True, None),
    ("TARGET_PRICE", '{"target": 149.9}', True, None),
    ("TARGET_PRICE", '{"target": 149.99}', True, None),
    ("TARGET_PRICE", '{"target": "150.00"}', True, None),
    ("TARGET_PRICE", '{"target": "7"}', True, None),
    ("TARGET_PRICE", '{"target": 9999999999.99}', True, None),
    ("TARGET_PRICE", '{"target": 0}', False, "target"),
    ("TARGET_PRICE", '{"target": -5}', False, "target"),
    ("TARGET_PRICE", '{"target": 149.999}', False, "target"),
    ("TARGET_PRICE", '{"target": 10000000000}', False, "target"),
    ("TARGET_PRICE", '{"target": "0.00"}', False, "target"),
    ("TARGET_PRICE", '{"target": "149,90"}', False, "target"),
    ("TARGET_PRICE", '{"target": "1e3"}', False, "target"),
    ("TARGET_PRICE", '{"target": " 150"}', False, "target"),
    ("TARGET_PRICE", '{"target": true}', False, "target"),
    ("TARGET_PRICE", '{"target": null}', False, "target"),
    ("TARGET_PRICE", '{"target": [150]}', False, "target"),
    ("TARGET_PRICE", "{}", False, "target"),
    ("TARGET_PRICE", '{"target": 150, "percent": 10}', False, "percent"),
    ("TARGET_PRICE", '{"Target": 150}', False, "Target"),
    ("TARGET_PRICE", "[]", False, None),
    ("TARGET_PRICE", '"150"', False, None),
    ("TOTAL_PRICE", '{"target": 199.90}', True, None),
    ("TOTAL_PRICE", '{"target": "199.90"}', True, None),
    ("TOTAL_PRICE", '{"target": -1}', False, "target"),
    ("TOTAL_PRICE", '{"total": 199.90}', False, "total"),
    ("PERCENT_DROP", '{"percent": 10}', True, None),
    ("PERCENT_DROP", '{"percent": 12.5, "reference": "created"}', True, None),
    ("PERCENT_DROP", '{"percent": 99.99, "reference": "median_30d"}', True, None),
    ("PERCENT_DROP", '{"percent": 10, "reference": null}', True, None),
    ("PERCENT_DROP", '{"percent": 0}', False, "percent"),
    ("PERCENT_DROP", '{"percent": 100}', False, "percent"),
    ("PERCENT_DROP", '{"percent": -3}', False, "percent"),
    ("PERCENT_DROP", '{"percent": 10.125}', False, "percent"),
    ("PERCENT_DROP", '{"percent": "10"}', False, "percent"),
    ("PERCENT_DROP", "{}", False, "percent"),
    ("PERCENT_DROP", '{"percent": 10, "reference": "median_90d"}', False, "reference"),
    ("PERCENT_DROP", '{"percent": 10, "reference": 30}', False, "reference"),
    ("PERCENT_DROP", '{"percent": 10, "target": 5}', False, "target"),
    ("NEW_LOW", "{}", True, None),
    ("NEW_LOW", '{"days": null}', True, None),
    ("NEW_LOW", '{"days": 30}', True, None),
    ("NEW_LOW", '{"days": 14, "min_history_days": 3}', True, None),
    ("NEW_LOW", '{"days": 3650, "min_history_days": 0}', True, None),
    ("NEW_LOW", '{"days": 30.0}', True, None),
    ("NEW_LOW", '{"min_history_days": null}', True, None),
    ("NEW_LOW", '{"days": 0}', False, "days"),
    ("NEW_LOW", '{"days": 3651}', False, "days"),
    ("NEW_LOW", '{"days": 7.5}', False, "days"),
    ("NEW_LOW", '{"days": "30"}', False, "days"),
    ("NEW_LOW", '{"days": 30, "min_history_days": -1}', False, "min_history_days"),
    ("NEW_LOW", '{"days": 30, "min_history_days": 2.5}', False, "min_history_days"),
    ("NEW_LOW", '{"window": 30}', False, "window"),
    ("BACK_IN_STOCK", "{}", True, None),
    ("BACK_IN_STOCK", '{"target": 10}', False, "target"),
    ("PRICE", "{}", False, None),
]


@pytest.mark.parametrize(("alert_type", "params", "valid", "field"), PARAMS_CASES)
def test_parse_alert_params_table(alert_type, params, valid, field):
    decoded = json.loads(params)
    if valid:
        parse_alert_params(alert_type, decoded)
    else:
        with pytest.raises(AlertParamsError) as exc:
            parse_alert_params(alert_type, decoded)
        assert exc.value.field == field
        if field:
            assert f"field '{field}'" in str(exc.value)


def test_parse_alert_params_typed_values():
    assert parse_alert_params("TARGET_PRICE", {"target": 149.9}) == TargetPriceParams(Decimal("149.90"))
    assert parse_alert_params("TARGET_PRICE", {"target": "150"}) == TargetPriceParams(Decimal("150.00"))
    assert parse_alert_params("TOTAL_PRICE", {"target": 10}) == TotalPriceParams(Decimal("10.00"))
    assert parse_alert_params("PERCENT_DROP", {"percent": 12.5}) == PercentDropParams(Decimal("12.5"), "created")
    assert parse_alert_params("PERCENT_DROP", {"percent": 5, "reference": "median_30d"}) == PercentDropParams(
        Decimal(5), "median_30d")
    low = parse_alert_params("NEW_LOW", {})
    assert low == NewLowParams(None, 7)
    assert (low.required_history_days, low.reference_kind) == (7, "low_all_time")
    low = parse_alert_params("NEW_LOW", {"days": 3, "min_history_days": 7})
    assert (low.days, low.required_history_days, low.reference_kind) == (3, 3, "low_3d")
    assert parse_alert_params("NEW_LOW", {"days": 30.0}).days == 30
    assert parse_alert_params("BACK_IN_STOCK", {}) == BackInStockParams()


def test_param_errors_are_clear_english():
    with pytest.raises(AlertParamsError, match=r"^TARGET_PRICE params field 'target': must be greater than 0, got -5$"):
        parse_alert_params("TARGET_PRICE", {"target": -5})
    with pytest.raises(AlertParamsError, match=r"field 'target': is required"):
        parse_alert_params("TOTAL_PRICE", {})
    with pytest.raises(AlertParamsError, match=r"field 'percent': unknown field \(allowed: target\)"):
        parse_alert_params("TARGET_PRICE", {"target": 1, "percent": 2})
    with pytest.raises(AlertParamsError, match=r"field 'reference': must be one of created, median_30d"):
        parse_alert_params("PERCENT_DROP", {"percent": 5, "reference": "x"})
    with pytest.raises(AlertParamsError, match=r"field 'days': must be between 1 and 3650, got 0"):
        parse_alert_params("NEW_LOW", {"days": 0})
    with pytest.raises(AlertParamsError, match=r"unknown alert type"):
        parse_alert_params("PRICE", {})
    with pytest.raises(AlertParamsError, match=r"must be a JSON object, got list"):
        parse_alert_params("NEW_LOW", [])
    assert isinstance(AlertParamsError("NEW_LOW", None, "x"), ValueError)


def test_dedupe_key_format():
    assert dedupe_key("TARGET_PRICE", 12, 345, figure=Decimal("149.9")) == "alert:12:offer:345:price:149.90"
    assert dedupe_key("TOTAL_PRICE", 12, 345, figure=Decimal("149.90") + Decimal("19.90")) == (
        "alert:12:offer:345:price:169.80")
    assert dedupe_key("NEW_LOW", 1, 2, figure=Decimal(1000)) == "alert:1:offer:2:price:1000.00"
    assert dedupe_key("BACK_IN_STOCK", 12, 345, episode=3) == "alert:12:offer:345:restock:3"
    with pytest.raises(ValueError):
        dedupe_key("BACK_IN_STOCK", 1, 2, figure=Decimal(1))
    with pytest.raises(ValueError):
        dedupe_key("TARGET_PRICE", 1, 2)
    assert money_str(Decimal("1E+3")) == "1000.00"
    assert money_str(Decimal("0.5")) == "0.50"


def test_figures_and_thresholds():
    assert compared_figure("TOTAL_PRICE", Decimal("100.00"), Decimal("9.90")) == Decimal("109.90")
    assert compared_figure("TOTAL_PRICE", Decimal("100.00"), None) is None
    assert compared_figure("TARGET_PRICE", Decimal("100.00"), Decimal("9.90")) == Decimal("100.00")
    assert percent_threshold(Decimal("200.00"), Decimal("12.5")) == Decimal("175.00")


T0 = datetime(2026, 3, 10, 12, tzinfo=UTC)
H = timedelta(hours=1)


def run(trajectory, cooldown=timedelta(hours=6)):
    """Apply decide() hour by hour; a notification updates the state as the evaluator does."""
    state, sent = AlertState(), []
    for i, figure in enumerate(trajectory):
        now = T0 + i * H
        d = decide(state, figure, now=now, cooldown=cooldown)
        if d.notify:
            sent.append((i, figure))
            state = AlertState(d.matched, d.episode, d.episode, figure, now)
        else:
            state = AlertState(d.matched, d.episode, state.notified_episode, state.last_notified_price,
                               state.last_notified_at)
    return sent, state


def test_first_match_notifies_then_only_improvements():
    p = Decimal
    sent, state = run([p("99.90"), p("99.90"), p("98.00"), p("99.00"), p("97.00")], cooldown=timedelta(0))
    assert sent == [(0, p("99.90")), (2, p("98.00")), (4, p("97.00"))]
    assert (state.matched, state.episode, state.notified_episode) == (True, 1, 1)


def test_rearm_after_unmatch_notifies_even_at_a_higher_price():
    p = Decimal
    sent, state = run([p("90"), None, p("95")], cooldown=timedelta(0))
    assert sent == [(0, p("90")), (2, p("95"))]
    assert state.episode == 2


def test_cooldown_holds_then_sends_the_then_current_figure():
    p = Decimal
    d = decide(AlertState(True, 1, 1, p("90"), T0), p("80"), now=T0 + 2 * H, cooldown=6 * H)
    assert (d.notify, d.held_by_cooldown) == (False, True)
    sent, _ = run([p("90"), p("85"), p("80"), None, None, None, p("95"), p("88")], cooldown=6 * H)
    # 0: first match; 1, 2: better but in cooldown; 3-5: no match; 6: a new episode, the cooldown
    # (6 h since hour 0) has ended: 95 is sent; 7: 88 < 95 but in cooldown again.
    assert sent == [(0, p("90")), (6, p("95"))]


def test_no_match_never_notifies():
    sent, state = run([None, None])
    assert sent == [] and state == AlertState()
