"""Anti-cilada risk model: scripted simulator trajectories, each signal, edge cases, thresholds.

Scenario histories are sampled hourly over 120 days from the simulator's own
`price_state(offer, t)` (demo scenario) and converted to int64 cents; NOW is during the
Black Friday 2026 sale, when the fake "de" prices are on show.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from smartbuy_pipeline.domain import risk as R
from smartbuy_pipeline.domain.risk import (
    DEFAULT_CONFIG,
    compute_features,
    compute_signals,
    market_figures,
    score_history,
    score_offers,
)
from smartbuy_pipeline.simulator import scenarios as S

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
CFG = DEFAULT_CONFIG
MONEY_COLS = ["current_price", "current_reference_price", "current_freight"]


# ----------------------------------------------------------------------------------------------
# builders


def _c(amount: Decimal | None) -> int | None:
    return None if amount is None else int(amount * 100)


def _int64(frame: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    for c in cols:
        frame[c] = frame[c].astype("Int64")
    return frame


@pytest.fixture(scope="module")
def demo() -> S.Scenario:
    return S.demo_scenario()


@pytest.fixture(scope="module")
def demo_offers(demo: S.Scenario) -> pd.DataFrame:
    """Context of every demo offer at NOW (the current state is the last tracked hour)."""
    rows = []
    for o in demo.offers:
        st = S.price_state(o, NOW - timedelta(hours=1))
        shop = demo.shop_of(o)
        rows.append({
            "offer_id": o.key,
            "product_id": o.product_key,
            "current_price": _c(st.price),
            "current_reference_price": _c(st.reference_price),
            "current_freight": _c(st.freight),
            "availability": st.availability.value,
            "reputation_score": shop.reputation_score,
            "shop_first_seen_at": NOW - timedelta(days=shop.created_days_ago),
            "last_good_at": NOW - timedelta(hours=1),
        })
    return _int64(pd.DataFrame(rows), MONEY_COLS)


def sim_history(demo: S.Scenario, keys: list[str], days: int = 120) -> pd.DataFrame:
    rows = []
    for k in keys:
        o = demo.offer(k)
        for i in range(days * 24, 0, -1):
            at = NOW - timedelta(hours=i)
            st = S.price_state(o, at)
            rows.append((k, at, _c(st.price), _c(st.reference_price), st.availability.value,
                         _c(st.freight)))
    h = pd.DataFrame(rows, columns=["offer_id", "observed_at", "price", "reference_price",
                                    "availability", "freight"])
    return _int64(h, ["price", "reference_price", "freight"])


STEADY = "galaxy-a55-casa-eletro"
SCENARIO_KEYS = [S.DEMO_BF_FAKE, S.DEMO_BF_FAKE_FEED, S.DEMO_GENUINE_DROP, S.DEMO_SCAM, STEADY]


@pytest.fixture(scope="module")
def scenario_scores(demo: S.Scenario, demo_offers: pd.DataFrame) -> pd.DataFrame:
    hist = sim_history(demo, SCENARIO_KEYS)
    sel = demo_offers[demo_offers.offer_id.isin(SCENARIO_KEYS)].reset_index(drop=True)
    out = score_history(hist, sel, market_figures(demo_offers), now=NOW)
    return out.set_index("offer_id")


def codes(row: pd.Series) -> list[str]:
    return [r["code"] for r in row["reasons"]]


def reason(row: pd.Series, code: str) -> dict:
    (r,) = [r for r in row["reasons"] if r["code"] == code]
    return r


def hist_of(points: dict[int | str, list[tuple[float, int | None]]], *, ref=None) -> pd.DataFrame:
    """{offer_id: [(days before NOW, price cents or None), ...]} -> history frame."""
    rows = []
    for oid, pts in points.items():
        for d, p in pts:
            rows.append((oid, NOW - timedelta(days=d), p, None))
    h = pd.DataFrame(rows, columns=["offer_id", "observed_at", "price", "reference_price"])
    return _int64(h, ["price", "reference_price"])


def daily(prices: list[int], start_days_ago: int | None = None) -> list[tuple[float, int]]:
    """One observation a day, the last one 1 h before NOW (or `start_days_ago` days earlier)."""
    n = len(prices)
    start = n - 1 if start_days_ago is None else start_days_ago
    return [(start - i + 1 / 24, p) for i, p in enumerate(prices)]


def offers_of(ids: list, **cols) -> pd.DataFrame:
    n = len(ids)
    base = {
        "offer_id": ids,
        "current_price": [None] * n,
        "current_reference_price": [None] * n,
        "current_freight": [0] * n,
        "availability": ["in_stock"] * n,
        "reputation_score": [90] * n,
        "shop_first_seen_at": [NOW - timedelta(days=1000)] * n,
        "last_good_at": [NOW - timedelta(hours=1)] * n,
    }
    for k, v in cols.items():
        base[k] = v if isinstance(v, list) else [v] * n
    return _int64(pd.DataFrame(base), MONEY_COLS)


def market_of(ids: list, median: int, total: int | None = None, shops: int = 5) -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame({"offer_id": ids, "market_median_price": [median] * n,
                         "market_median_total": [total if total is not None else median] * n,
                         "market_shops": [shops] * n})


def feats(history, offers, market=None, cfg=CFG) -> pd.DataFrame:
    return compute_features(history, offers, market, now=NOW, config=cfg)


# ----------------------------------------------------------------------------------------------
# the scripted scenarios


def test_black_friday_fake_is_bucket_c_with_fake_reference_and_pre_sale_spike(scenario_scores):
    row = scenario_scores.loc[S.DEMO_BF_FAKE]
    assert row["bucket"] == "C"
    assert row["score"] == 100 - 45 - 30
    assert codes(row) == ["FAKE_REFERENCE_PRICE", "PRE_SALE_SPIKE"]
    fake = reason(row, "FAKE_REFERENCE_PRICE")
    # "de R$ 4.349,00 por R$ 2.754,05 no Pix" while the 30-day low was the raised R$ 3.438,05
    assert fake["penalty"] == 45
    assert fake["evidence"] == {
        "reference_price": "4349.00",
        "current_price": "2754.05",
        "low_before_reduction": "3438.05",
        "claimed_discount_pct": "36.7",
        "real_discount_pct": "19.9",
        "reference_charged_365d": "false",
        "reference_share_365d_pct": "0.0",
        "max_price_365d": "3438.05",
    }
    assert "36,7 %" in fake["message"] and "19,9 %" in fake["message"]
    spike = reason(row, "PRE_SALE_SPIKE")
    assert spike["penalty"] == 30
    assert spike["evidence"] == {
        "level_before_rise": "2754.05",
        "peak_before_reduction": "3438.05",
        "price_before_reduction": "3438.05",
        "price_at_reduction": "2754.05",
        "rise_pct": "24.8",
        "last_reduction_at": "2026-11-27T03:00:00+00:00",
    }


def test_black_friday_fake_through_a_feed_shop_is_c_too(scenario_scores):
    row = scenario_scores.loc[S.DEMO_BF_FAKE_FEED]
    assert (row["bucket"], row["score"]) == ("C", 25)
    assert codes(row) == ["FAKE_REFERENCE_PRICE", "PRE_SALE_SPIKE"]
    assert reason(row, "FAKE_REFERENCE_PRICE")["evidence"]["low_before_reduction"] == "2749.00"


def test_genuine_drop_is_bucket_a_with_good_deal(scenario_scores):
    row = scenario_scores.loc[S.DEMO_GENUINE_DROP]
    assert (row["bucket"], row["score"]) == ("A", 100)
    assert codes(row) == ["GOOD_DEAL"]
    gd = reason(row, "GOOD_DEAL")
    assert gd["penalty"] == -5
    assert gd["evidence"] == {"current_price": "2706.55", "low_90d": "2706.55",
                              "above_low_pct": "0.0", "history_days": "120.0"}
    # the honest "de R$ 3.799,00" (card) was charged: the Pix price grossed up reaches it
    assert row["inputs"]["reference_charged_365d"] is True


def test_scam_from_low_reputation_new_shop_is_bucket_c(scenario_scores):
    row = scenario_scores.loc[S.DEMO_SCAM]
    assert (row["bucket"], row["score"]) == ("C", 0)
    assert codes(row) == ["TOO_GOOD_TO_BE_TRUE", "FAKE_REFERENCE_PRICE", "SHOP_REPUTATION"]
    tg = reason(row, "TOO_GOOD_TO_BE_TRUE")
    assert tg["penalty"] == 55  # strong: reputation 15 and a 10-day-old shop
    # median of the 4 other shops' Pix prices for the iPhone 15 (the scam itself excluded)
    assert tg["evidence"]["market_median_price"] == "5860.55"
    assert tg["evidence"]["market_shops"] == "5"
    assert reason(row, "SHOP_REPUTATION")["penalty"] == 30 + 15
    assert "GOOD_DEAL" not in codes(row)  # a scam at its all-time low is no good deal


def test_steady_is_bucket_a(scenario_scores):
    row = scenario_scores.loc[STEADY]
    assert (row["bucket"], row["score"]) == ("A", 100)
    assert codes(row) == ["GOOD_DEAL"]


def test_scores_are_json_serialisable_and_match_the_db_bucket_rule(scenario_scores):
    for oid, row in scenario_scores.iterrows():
        json.dumps({"reasons": row["reasons"], "inputs": row["inputs"]})
        s = row["score"]
        assert row["bucket"] == ("A" if s >= 80 else "B" if s >= 60 else "C")
        pens = [r["penalty"] for r in row["reasons"]]
        assert pens == sorted(pens, reverse=True)
        assert set(row["reasons"][0]) == {"code", "message", "penalty", "evidence"}
        assert all(isinstance(v, str) for r in row["reasons"] for v in r["evidence"].values())
        assert row["model_version"] == CFG.model_version
    inputs = scenario_scores.loc[S.DEMO_BF_FAKE, "inputs"]
    assert inputs["current_price"] == "2754.05" and inputs["current_reference_price"] == "4349.00"


def test_json_text_is_exactly_the_encoded_reasons_and_inputs(demo, demo_offers):
    """score_offers(json_text=True) (the database writer's form) = the objects, encoded."""
    hist = sim_history(demo, SCENARIO_KEYS)
    sel = demo_offers[demo_offers.offer_id.isin(SCENARIO_KEYS)].reset_index(drop=True)
    f = feats(hist, sel, market_figures(demo_offers))
    # odd figures too: NaN ratios and reputation, an infinite ratio, a float history span
    f.loc[0, "cv_30d"] = np.inf
    f.loc[1, "reputation_score"] = np.nan
    f.loc[2, "real_discount"] = -0.0
    objs = R.score_offers(f, CFG)
    text = R.score_offers(f, CFG, json_text=True)
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    assert list(text["reasons"]) == [dumps(r) for r in objs["reasons"]]
    assert list(text["inputs"]) == [dumps(i) for i in objs["inputs"]]
    assert any(r != "[]" for r in text["reasons"])
    pd.testing.assert_frame_equal(objs.drop(columns=["reasons", "inputs"]),
                                  text.drop(columns=["reasons", "inputs"]))


# ----------------------------------------------------------------------------------------------
# vectorization


def test_scoring_three_offers_together_equals_scoring_each_alone(demo, demo_offers):
    keys = [S.DEMO_BF_FAKE, S.DEMO_GENUINE_DROP, S.DEMO_SCAM]
    hist = sim_history(demo, keys, days=100)
    market = market_figures(demo_offers)
    sel = demo_offers[demo_offers.offer_id.isin(keys)].reset_index(drop=True)
    together = score_history(hist, sel, market, now=NOW).set_index("offer_id")
    f_together = compute_features(hist, sel, market, now=NOW).set_index("offer_id")
    for k in keys:
        alone = score_history(hist[hist.offer_id == k], sel[sel.offer_id == k], market,
                              now=NOW).set_index("offer_id")
        a, t = alone.loc[k], together.loc[k]
        assert (a["score"], a["bucket"], a["reasons"], a["inputs"]) == (
            t["score"], t["bucket"], t["reasons"], t["inputs"])
        f_alone = compute_features(hist[hist.offer_id == k], sel[sel.offer_id == k], market,
                                   now=NOW).set_index("offer_id")
        pd.testing.assert_series_equal(f_alone.loc[k], f_together.loc[k])


def test_unsorted_history_gives_the_same_features():
    h = hist_of({1: daily([1000, 1200, 900]), 2: daily([500, 500, 400])})
    o = offers_of([1, 2], current_price=[900, 400])
    shuffled = h.sample(frac=1.0, random_state=3).reset_index(drop=True)
    pd.testing.assert_frame_equal(feats(h, o), feats(shuffled, o))


# ----------------------------------------------------------------------------------------------
# features


def test_reduction_is_the_most_recent_decrease_and_low_is_the_30_days_before_it():
    # 40 days at 1000, 20 days at 1200, then 900 (the reduction) 2 days ago, then 950 (a rise)
    pts = [(62 - i, 1000) for i in range(40)] + [(22 - i, 1200) for i in range(20)]
    pts += [(2, 900), (1, 950)]
    f = feats(hist_of({1: pts}), offers_of([1], current_price=950)).iloc[0]
    assert f["has_reduction"]
    assert f["last_reduction_at"] == pd.Timestamp(NOW - timedelta(days=2))
    assert (f["price_before_reduction"], f["price_at_reduction"]) == (1200, 900)
    # window [reduction - 30 d, reduction): days 32..3 before NOW -> 1000 (days 32..23) and 1200
    assert f["low_before_reduction"] == 1000
    assert f["low_90d"] == 900 and f["high_90d"] == 1200


def test_without_a_decrease_the_low_is_over_the_last_30_days_including_now():
    pts = [(40, 800), (20, 1000), (1, 1100)]
    f = feats(hist_of({1: pts}), offers_of([1], current_price=1100)).iloc[0]
    assert not f["has_reduction"]
    assert f["low_before_reduction"] == 1000  # the 800 was 40 days ago
    assert pd.isna(f["last_reduction_at"])


def test_out_of_stock_and_quarantined_rows_are_not_price_changes():
    h = hist_of({1: [(3, 1000), (2, None), (1.5, 500), (1, 1000)]})
    h["status"] = ["accepted", "accepted", "quarantined", "accepted"]
    f = feats(h, offers_of([1], current_price=1000)).iloc[0]
    assert not f["has_reduction"]
    assert f["n_observations"] == 2 and f["low_90d"] == 1000


def test_reference_charged_and_share_of_time():
    # 10 days at 1000, 10 days at 800, now 800 with "de 1000"; gap 0 -> exact comparison
    cfg = replace(CFG, payment_kind_gap=0.0)
    pts = [(20 - i, 1000) for i in range(10)] + [(10 - i, 800) for i in range(10)]
    f = feats(hist_of({1: pts}), offers_of([1], current_price=800, current_reference_price=1000),
              cfg=cfg).iloc[0]
    assert f["reference_charged_365d"]
    assert f["reference_share_365d"] == pytest.approx(10 / 20, abs=0.01)
    # 990 = 1000 - 1 % counts as charged; 989 does not
    for p, charged in ((990, True), (989, False)):
        h = hist_of({1: [(5, p), (1, 800)]})
        f = feats(h, offers_of([1], current_price=800, current_reference_price=1000), cfg=cfg)
        assert bool(f["reference_charged_365d"].iloc[0]) is charged


def test_money_must_be_int_cents_not_float():
    h = hist_of({1: [(1, 1000)]})
    h["price"] = h["price"].astype(float)
    with pytest.raises(TypeError, match="int64 cents"):
        feats(h, offers_of([1], current_price=1000))


def test_naive_timestamps_are_refused():
    h = hist_of({1: [(1, 1000)]})
    h["observed_at"] = h["observed_at"].dt.tz_localize(None)
    with pytest.raises(ValueError, match="timezone-aware"):
        feats(h, offers_of([1], current_price=1000))


def test_market_figures_leave_one_out_median():
    o = offers_of(list("abcde"), product_id=["p", "p", "p", "p", "q"],
                  current_price=[100, 200, 300, 400, 50], current_freight=[0, 10, 0, 0, 0])
    m = market_figures(o).set_index("offer_id")
    # a: others 200,300,400 -> 300; b: 100,300,400 -> 300; c: 100,200,400 -> 200; d: 200
    assert m["market_median_price"].to_dict() == {"a": 300, "b": 300, "c": 200, "d": 200, "e": 0}
    # totals a:100 b:210 c:300 d:400 -> a: 210,300,400 -> 300; d: 100,210,300 -> 210
    assert m.loc["a", "market_median_total"] == 300 and m.loc["d", "market_median_total"] == 210
    assert m["market_shops"].to_dict() == {"a": 4, "b": 4, "c": 4, "d": 4, "e": 1}
    # even number of others: median of 2 -> mean, half up
    m2 = market_figures(offers_of(list("xyz"), product_id="p", current_price=[100, 201, 300]))
    assert m2.set_index("offer_id").loc["x", "market_median_price"] == 251


def test_market_figures_skip_out_of_stock_offers():
    o = offers_of(list("abcd"), product_id="p", current_price=[100, 200, 300, 400],
                  availability=["in_stock", "in_stock", "out_of_stock", "in_stock"])
    m = market_figures(o).set_index("offer_id")
    assert m.loc["a", "market_median_price"] == 300  # median(200, 400)
    assert m.loc["c", "market_shops"] == 0


# ----------------------------------------------------------------------------------------------
# each signal, focused


def only(frame: pd.DataFrame) -> dict:
    assert len(frame) == 1, frame
    return frame.iloc[0].to_dict()


def test_signal_fake_reference_price_base_and_strong():
    cfg = replace(CFG, payment_kind_gap=0.0)
    # 30 days at 1000, reduction to 900 with "de 1000": honest -> no fire
    pts = [(31 - i, 1000) for i in range(30)] + [(0.5, 900)]
    f = feats(hist_of({1: pts}), offers_of([1], current_price=900, current_reference_price=1000),
              cfg=cfg)
    assert R.signal_fake_reference_price(f, cfg).empty
    # "de 1200" (charged 2 months ago): claimed 25 %, real 10 % -> 2.5x -> strong
    pts2 = [(60, 1200)] + pts
    f = feats(hist_of({1: pts2}), offers_of([1], current_price=900, current_reference_price=1200),
              cfg=cfg)
    s = only(R.signal_fake_reference_price(f, cfg))
    assert s["penalty"] == 45 and s["evidence"]["claimed_discount_pct"] == "25.0"
    assert s["evidence"]["real_discount_pct"] == "10.0"
    assert s["evidence"]["reference_charged_365d"] == "true"
    # "de 1100" (charged): claimed 18.2 %, real 10 % -> 1.8x -> base penalty
    pts3 = [(60, 1100)] + pts
    f = feats(hist_of({1: pts3}), offers_of([1], current_price=900, current_reference_price=1100),
              cfg=cfg)
    assert only(R.signal_fake_reference_price(f, cfg))["penalty"] == 25


def test_signal_fake_reference_threshold_is_exact():
    cfg = replace(CFG, payment_kind_gap=0.0)
    pts = [(31 - i, 100000) for i in range(30)] + [(0.5, 90000)]
    for ref, fires in ((101000, False), (101001, True)):  # low x (1 + 1 %) = 101000
        o = offers_of([1], current_price=90000, current_reference_price=ref)
        f = feats(hist_of({1: pts}), o, cfg=cfg)
        assert len(R.signal_fake_reference_price(f, cfg)) == int(fires)
    # claimed exactly 2x real -> strong: 60000 vs de 100000 (40 %), low 75000 (20 %)
    pts = [(120, 100000)] + [(31 - i, 75000) for i in range(30)] + [(0.5, 60000)]
    o = offers_of([1], current_price=60000, current_reference_price=100000)
    f = feats(hist_of({1: pts}), o, cfg=cfg)
    assert only(R.signal_fake_reference_price(f, cfg))["penalty"] == 45


def test_signal_fake_reference_payment_kind_gap():
    # Pix 1000 while the "de" is the card price 1100: within the 10 % gap -> no fire
    pts = [(31 - i, 1000) for i in range(30)] + [(0.5, 950)]
    o = offers_of([1], current_price=950, current_reference_price=1100)
    assert R.signal_fake_reference_price(feats(hist_of({1: pts}), o)).empty
    assert len(R.signal_fake_reference_price(
        feats(hist_of({1: pts}), o, cfg=replace(CFG, payment_kind_gap=0.0)),
        replace(CFG, payment_kind_gap=0.0))) == 1


def _spike_points(base: int, peak: int, after: int, rise_days_before: int) -> list:
    """60 days at base, then `peak` from `rise_days_before` days before the cut, cut 1 day ago."""
    cut = 1
    pts = [(cut + 80 - i, base) for i in range(80 - rise_days_before)]
    pts += [(cut + rise_days_before - i, peak) for i in range(rise_days_before)]
    pts += [(cut - 0.5, after)]
    return pts


def test_signal_pre_sale_spike_fires_on_a_raise_then_cut_back():
    f = feats(hist_of({1: _spike_points(100000, 125000, 100000, 30)}),
              offers_of([1], current_price=100000))
    s = only(R.signal_pre_sale_spike(f))
    assert s["penalty"] == 30 and s["evidence"]["rise_pct"] == "25.0"
    assert s["evidence"]["level_before_rise"] == "1000.00"


@pytest.mark.parametrize(
    "peak, after, rise_days, fires",
    [
        (110000, 100000, 30, True),  # exactly +10 %
        (109999, 100000, 30, False),  # just under
        (125000, 103000, 30, True),  # back exactly within 3 %
        (125000, 103001, 30, False),
        (125000, 100000, 5, False),  # raised only 5 days before: outside 7-45 days
        (125000, 100000, 50, False),  # raised 50 days before: that is the price, not a spike
        (125000, 100000, 44, True),
    ],
)
def test_signal_pre_sale_spike_thresholds(peak, after, rise_days, fires):
    f = feats(hist_of({1: _spike_points(100000, peak, after, rise_days)}),
              offers_of([1], current_price=after))
    assert len(R.signal_pre_sale_spike(f)) == int(fires)


def test_signal_too_good_to_be_true_thresholds_and_strength():
    h = hist_of({1: [(1, 50000)], 2: [(1, 49999)], 3: [(1, 49999)], 4: [(1, 49999)]})
    o = offers_of([1, 2, 3, 4], current_price=[50000, 49999, 49999, 49999],
                  reputation_score=[90, 90, 40, 90],
                  shop_first_seen_at=[NOW - timedelta(days=1000)] * 3 + [NOW - timedelta(days=5)])
    m = market_of([1, 2, 3, 4], 100000)
    s = R.signal_too_good_to_be_true(feats(h, o, m)).set_index("offer_id")
    assert 1 not in s.index  # exactly 50 % does not fire
    assert s.loc[2, "penalty"] == 40
    assert s.loc[3, "penalty"] == 55 and s.loc[4, "penalty"] == 55  # low reputation / new shop
    # needs >= 3 shops quoting the GTIN
    s2 = R.signal_too_good_to_be_true(feats(h, o, market_of([1, 2, 3, 4], 100000, shops=2)))
    assert s2.empty
    s3 = R.signal_too_good_to_be_true(feats(h, o, market_of([1, 2, 3, 4], 100000, shops=3)))
    assert len(s3) == 3


@pytest.mark.parametrize(
    "rep, age_days, penalty",
    [(29, 1000, 30), (30, 1000, 15), (49, 1000, 15), (50, 1000, 5), (69, 1000, 5),
     (70, 1000, 0), (None, 1000, 10), (90, 29.9, 15), (90, 30, 0), (10, 1, 45)],
)
def test_signal_shop_reputation_bands(rep, age_days, penalty):
    o = offers_of([1], current_price=1000, reputation_score=[rep],
                  shop_first_seen_at=NOW - timedelta(days=age_days))
    o["reputation_score"] = o["reputation_score"].astype("Float64")
    s = R.signal_shop_reputation(feats(hist_of({1: [(1, 1000)]}), o))
    assert (int(s["penalty"].iloc[0]) if len(s) else 0) == penalty


def test_signal_volatility():
    # alternating 100 / 125: many daily moves > 20 % -> fires
    swing = daily([100000 if i % 2 else 125000 for i in range(30)])
    f = feats(hist_of({1: swing}), offers_of([1], current_price=100000))
    s = only(R.signal_volatility(f))
    assert s["penalty"] == 10 and s["evidence"]["max_daily_move_pct"] == "25.0"
    # exactly 20 % is not "> 20 %": 100 -> 120 -> 100 ... (down moves are 16.7 %)
    exact = daily([100000 if i % 2 else 120000 for i in range(30)])
    f = feats(hist_of({1: exact}), offers_of([1], current_price=100000))
    assert f["large_moves_30d"].iloc[0] == 0
    assert R.signal_volatility(f).empty  # CV 0.09 too
    # one lasting 25 % step is a price change, not volatility
    step = daily([100000] * 20 + [75000] * 10)
    f = feats(hist_of({1: step}), offers_of([1], current_price=75000))
    assert f["large_moves_30d"].iloc[0] == 1 and R.signal_volatility(f).empty
    # ... unless tuned to one move
    cfg = replace(CFG, volatility_min_large_moves=1)
    assert len(R.signal_volatility(f, cfg)) == 1


def test_signal_freight_trap():
    h = hist_of({1: [(1, 9000)], 2: [(1, 9000)], 3: [(1, 9000)]})
    o = offers_of([1, 2, 3], current_price=9000, current_freight=[2001, 2000, 0])
    m = market_of([1, 2, 3], 10000, total=11000)
    s = R.signal_freight_trap(feats(h, o, m))
    s = only(s)  # 9000 + 2000 = 11000 is not above the median total
    assert s["offer_id"] == 1 and s["penalty"] == 10
    assert s["evidence"] == {"current_price": "90.00", "freight": "20.01", "total": "110.01",
                             "market_median_price": "100.00", "market_median_total": "110.00"}


def test_signal_stale_price_threshold():
    h = hist_of({1: [(2, 1000)], 2: [(2, 1000)], 3: [(2, 1000)]})
    o = offers_of([1, 2, 3], current_price=1000,
                  last_good_at=[NOW - timedelta(hours=24), NOW - timedelta(hours=24, seconds=1),
                                pd.NaT])
    s = R.signal_stale_price(feats(h, o)).set_index("offer_id")
    assert sorted(s.index) == [2, 3] and set(s["penalty"]) == {5}
    sc = score_offers(feats(h, o)).set_index("offer_id")
    assert sc["confidence"].to_dict() == {1: "low", 2: "low", 3: "low"}  # history < 7 days too


def test_signal_good_deal_thresholds():
    pts = [(40, 100000)] + [(10, 100000)]
    h = hist_of({1: pts, 2: pts, 3: [(34.99, 100000), (1, 100000)], 4: [(35, 100000)]})
    o = offers_of([1, 2, 3, 4], current_price=[105000, 105001, 100000, 100000])
    s = R.signal_good_deal(feats(h, o)).set_index("offer_id")
    assert sorted(s.index) == [1, 4]  # exactly +5 % and exactly 35 days count
    assert set(s["penalty"]) == {-5}


def test_good_deal_bonus_is_dropped_for_penalised_offers_and_score_is_clamped():
    h = hist_of({1: [(40, 1000), (1, 1000)], 2: [(40, 1000), (1, 1000)]})
    o = offers_of([1, 2], current_price=1000, reputation_score=[90, 49])  # 2: -15
    sc = score_offers(feats(h, o)).set_index("offer_id")
    assert sc.loc[1, "score"] == 100 and codes(sc.loc[1]) == ["GOOD_DEAL"]
    assert sc.loc[2, "score"] == 90 and codes(sc.loc[2]) == ["SHOP_REPUTATION", "GOOD_DEAL"]
    o3 = offers_of([1], current_price=1000, reputation_score=20)  # -30 >= 20: no bonus
    sc3 = score_offers(feats(h[h.offer_id == 1], o3)).iloc[0]
    assert sc3["score"] == 70 and sc3["bucket"] == "B" and codes(sc3) == ["SHOP_REPUTATION"]


# ----------------------------------------------------------------------------------------------
# edge cases


def test_single_observation():
    f = feats(hist_of({1: [(0.5, 1000)]}), offers_of([1], current_price=1000))
    r = f.iloc[0]
    assert r["n_observations"] == 1 and not r["has_reduction"]
    assert r["low_before_reduction"] == 1000 and r["cv_30d"] == 0.0
    sc = score_offers(f).iloc[0]
    assert (sc["score"], sc["bucket"], codes(sc), sc["confidence"]) == (100, "A", [], "low")


def test_no_history_at_all():
    h = hist_of({2: [(1, 1000)]})  # another offer's history only
    sc = score_history(h, offers_of([1], current_price=1000), now=NOW).iloc[0]
    assert (sc["score"], sc["bucket"], codes(sc)) == (100, "A", [])


def test_no_reference_price_never_fires_fake_reference():
    pts = [(31 - i, 1000) for i in range(30)] + [(0.5, 500)]
    f = feats(hist_of({1: pts}), offers_of([1], current_price=500))
    assert np.isnan(f["claimed_discount"].iloc[0])
    assert R.signal_fake_reference_price(f).empty


def test_reference_not_above_price_is_ignored():
    f = feats(hist_of({1: [(1, 1000)]}), offers_of([1], current_price=1000,
                                                   current_reference_price=1000))
    assert f["current_reference_price"].iloc[0] == 0


def test_single_shop_has_no_market_signals():
    o = offers_of([1], current_price=100, product_id="p", current_freight=5000)
    m = market_figures(o)
    assert m.iloc[0].to_dict() == {"offer_id": 1, "market_median_price": 0,
                                   "market_median_total": 0, "market_shops": 1}
    f = feats(hist_of({1: [(1, 100)]}), o, m)
    assert R.signal_too_good_to_be_true(f).empty and R.signal_freight_trap(f).empty
    assert np.isnan(f["price_to_market"].iloc[0])


def test_out_of_stock_has_no_price_signals():
    pts = [(60, 200000)] + [(31 - i, 100000) for i in range(30)] + [(0.5, 40000)]
    o = offers_of([1], current_price=40000, current_reference_price=200000,
                  availability="out_of_stock")
    f = feats(hist_of({1: pts}), o, market_of([1], 100000))
    assert f["current_price"].iloc[0] == 0
    sig = compute_signals(f)
    assert set(sig["code"]) <= {"SHOP_REPUTATION", "STALE_PRICE", "VOLATILITY"}
    # and no current price at all (NULL) is the same
    o2 = offers_of([1], current_price=None, current_reference_price=200000)
    assert compute_signals(feats(hist_of({1: pts}), o2, market_of([1], 100000))).empty


def test_empty_inputs():
    h = hist_of({})
    o = offers_of([], current_price=[])
    sc = score_history(h, o, now=NOW)
    assert len(sc) == 0 and list(sc.columns) == ["offer_id", "score", "bucket", "reasons",
                                                 "inputs", "confidence", "model_version"]


def test_config_is_frozen_and_json_serialisable():
    with pytest.raises(Exception):
        CFG.penalty_stale = 1  # type: ignore[misc]
    d = CFG.to_json()
    assert d["model_version"] == CFG.model_version and d["too_good_ratio"] == 0.5


def test_cents_to_decimal_str():
    assert R.cents_to_decimal_str(189900) == "1899.00"
    assert R.cents_to_decimal_str(5) == "0.05"
    assert Decimal(R.cents_to_decimal_str(123456789)) == Decimal("1234567.89")


def test_stale_falls_back_to_the_last_history_observation():
    h = hist_of({1: [(3, 1000), (0.5, 1000)], 2: [(3, 1000)]})
    o = offers_of([1, 2, 3], current_price=1000, last_good_at=pd.NaT)
    f = feats(h, o).set_index("offer_id")
    assert f["last_good_age_hours"].to_dict()[1] == pytest.approx(12.0)
    assert f.loc[2, "last_good_age_hours"] == pytest.approx(72.0)
    s = R.signal_stale_price(f.reset_index()).set_index("offer_id")
    assert sorted(s.index) == [2, 3]
    assert s.loc[3, "message_pt"] == "Preço nunca confirmado por uma leitura válida."


def test_market_keyed_by_product_and_signals_for_unknown_offers_are_ignored():
    h = hist_of({1: [(1, 40000)]})
    o = offers_of([1], current_price=40000, product_id="p")
    m = pd.DataFrame({"product_id": ["p"], "market_median_price": [100000],
                      "market_median_total": [100000], "market_shops": [4]})
    f = feats(h, o, m)
    assert only(R.signal_too_good_to_be_true(f))["penalty"] == 40
    extra = pd.DataFrame({"offer_id": [99], "code": ["STALE_PRICE"], "penalty": [5],
                          "message_pt": ["x"], "evidence": [{}]})
    sig = pd.concat([compute_signals(f), extra], ignore_index=True)
    assert score_offers(f, signals=sig).iloc[0]["score"] == 60


def test_a_current_price_below_the_last_observation_is_a_reduction_now():
    pts = [(31 - i, 1000) for i in range(30)]  # history ends at 1000
    o = offers_of([1], current_price=800, current_reference_price=1500)
    f = feats(hist_of({1: pts}), o).iloc[0]
    assert f["has_reduction"] and f["last_reduction_at"] == pd.Timestamp(NOW)
    assert (f["price_before_reduction"], f["low_before_reduction"]) == (1000, 1000)
    assert f["real_discount"] == pytest.approx(0.2)


def test_scale_scenario_trajectories_land_in_the_expected_buckets():
    """Every scripted Black-Friday fake and scam is C, every genuine drop A, steady never C."""
    sc = S.scale_scenario(1000, seed=1)
    hist, ctx, traj = [], [], {}
    for o in sc.offers:
        for i in range(120 * 24, 0, -12):
            at = NOW - timedelta(hours=i)
            hist.append((o.key, at, _c(S.price_state(o, at).price)))
        st, shop = S.price_state(o, NOW - timedelta(hours=1)), sc.shop_of(o)
        ctx.append({"offer_id": o.key, "product_id": o.product_key, "current_price": _c(st.price),
                    "current_reference_price": _c(st.reference_price),
                    "current_freight": _c(st.freight), "availability": st.availability.value,
                    "reputation_score": shop.reputation_score,
                    "shop_first_seen_at": NOW - timedelta(days=shop.created_days_ago),
                    "last_good_at": NOW - timedelta(hours=1)})
        traj[o.key] = o.trajectory
    h = _int64(pd.DataFrame(hist, columns=["offer_id", "observed_at", "price"]), ["price"])
    offers = _int64(pd.DataFrame(ctx), MONEY_COLS)
    res = score_history(h, offers, market_figures(offers), now=NOW)
    res["traj"] = res["offer_id"].map(traj)
    by = res.groupby("traj")["bucket"].value_counts().unstack(fill_value=0)
    T = S.TrajectoryKind
    assert set(by.index) == set(T)
    assert by.loc[T.BLACK_FRIDAY_FAKE].drop("C", errors="ignore").sum() == 0
    assert by.loc[T.SCAM].drop("C", errors="ignore").sum() == 0
    assert by.loc[T.GENUINE_DROP].drop("A", errors="ignore").sum() == 0
    for kind in (T.STEADY, T.DRIFT, T.FLAPPING):
        assert by.loc[kind].get("C", 0) == 0
        assert by.loc[kind].get("A", 0) >= 0.95 * by.loc[kind].sum()
    bf = res[res["traj"] == T.BLACK_FRIDAY_FAKE]
    assert all({"FAKE_REFERENCE_PRICE", "PRE_SALE_SPIKE"} <= {r["code"] for r in rs}
               for rs in bf["reasons"])
