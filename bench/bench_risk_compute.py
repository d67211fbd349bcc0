"""Benchmark: the anti-cilada risk model over N offers x D daily observations.

Generates (numpy, seeded) a history of N offers x D daily observations in int64 cents, read as
the pipeline would (sorted by offer_id, observed_at; tz-aware UTC timestamps), with a realistic
mix of trajectories (70 % steady, 15 % drifting, 5 % genuine drop, 4 % Black-Friday fake,
4 % volatile, 2 % scam) plus per-offer context and market medians, then times:

  baseline  a plain pandas groupby(offer_id).price.agg(["min", "median"]) over the same frame
  features  compute_features
  signals   compute_signals (all eight)
  score     score_offers (reasons and inputs as JSON-serialisable Python objects)

and prints offers, seconds, offers/s, peak RSS and the ratio of the risk model to the baseline
measured in the same run (shared machines are noisy: the ratio is the figure that counts).

Run: .venv/bin/python bench/bench_risk_compute.py [n_offers] [days]   (default 1000000 90)
"""

from __future__ import annotations

import resource
import sys
import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from smartbuy_pipeline.domain.risk import (
    DEFAULT_CONFIG,
    compute_features,
    compute_signals,
    score_offers,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DAY = 86_400


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def generate(n: int, days: int, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    base = rng.integers(9_990, 899_900, size=n, dtype=np.int64)  # R$ 99,90 .. R$ 8.999,00
    kind = rng.choice(6, size=n, p=[0.70, 0.15, 0.05, 0.04, 0.04, 0.02])
    d = np.arange(days, dtype=np.int64)
    # price matrix (n, days), int64 cents
    price = np.repeat(base[:, None], days, axis=1)
    drift = kind == 1
    walk = np.cumsum(rng.integers(-150, 151, size=(int(drift.sum()), days)), axis=1)  # +-1.5 %/day
    price[drift] = base[drift, None] * (10_000 + np.clip(walk, -1_500, 1_500)) // 10_000
    drop = kind == 2
    drop_day = rng.integers(days // 2, days, size=int(drop.sum()))
    after = d[None, :] >= drop_day[:, None]
    price[drop] = np.where(after, base[drop, None] * 3 // 4, base[drop, None])
    bf = kind == 3
    raised = (d >= days - 36) & (d < days - 1)
    price[bf] = np.where(raised[None, :], base[bf, None] * 5 // 4, base[bf, None])
    vol = kind == 4
    swing = rng.integers(0, 2, size=(int(vol.sum()), days))
    price[vol] = base[vol, None] * (100 - 30 * swing) // 100
    scam = kind == 5
    price[scam] = base[scam, None] * 2 // 5
    ref = np.zeros(n, dtype=np.int64)
    ref[bf] = base[bf] * 3 // 2
    ref[drop] = base[drop]
    ref[scam] = base[scam]
    ref[kind == 0] = np.where(rng.random(int((kind == 0).sum())) < 0.2, base[kind == 0] * 6 // 5, 0)

    t0 = int(NOW.timestamp()) - days * DAY
    obs_s = (t0 + d * DAY + 3 * 3600).astype("datetime64[s]")
    history = pd.DataFrame({
        "offer_id": np.repeat(np.arange(1, n + 1, dtype=np.int64), days),
        "observed_at": pd.DatetimeIndex(np.tile(obs_s, n)).tz_localize(UTC),
        "price": price.ravel(),
    })
    cur = price[:, -1].copy()  # the context's current price = the last observation
    del price
    offers = pd.DataFrame({
        "offer_id": np.arange(1, n + 1, dtype=np.int64),
        "current_price": cur,
        "current_reference_price": ref,
        "current_freight": rng.choice(np.array([0, 0, 1_990, 2_990], dtype=np.int64), size=n),
        "availability": "in_stock",
        "reputation_score": np.where(scam, 15, rng.integers(40, 100, size=n)).astype(np.int64),
        "shop_first_seen_at": pd.DatetimeIndex(
            (int(NOW.timestamp()) - np.where(scam, 10, 400) * DAY).astype("datetime64[s]")
        ).tz_localize(UTC),
        "last_good_at": pd.DatetimeIndex(
            (int(NOW.timestamp()) - rng.integers(0, 30, size=n) * 3600).astype("datetime64[s]")
        ).tz_localize(UTC),
    })
    market = pd.DataFrame({
        "offer_id": offers["offer_id"],
        "market_median_price": base,
        "market_median_total": base + 990,
        "market_shops": np.full(n, 5, dtype=np.int64),
    })
    return history, offers, market


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    days = int(sys.argv[2]) if len(sys.argv) > 2 else 90
    t = time.perf_counter()
    history, offers, market = generate(n, days)
    gen_s = time.perf_counter() - t
    rss_gen = peak_rss_mb()
    print(f"generated {n:,} offers x {days} days = {len(history):,} rows in {gen_s:.1f} s "
          f"(peak RSS so far {rss_gen:,.0f} MiB)")

    t = time.perf_counter()
    base = history.groupby("offer_id", sort=False)["price"].agg(["min", "median"])
    baseline_s = time.perf_counter() - t
    assert len(base) == n
    del base

    t = time.perf_counter()
    feats = compute_features(history, offers, market, now=NOW, config=DEFAULT_CONFIG)
    feat_s = time.perf_counter() - t
    t = time.perf_counter()
    sig = compute_signals(feats, DEFAULT_CONFIG)
    sig_s = time.perf_counter() - t
    t = time.perf_counter()
    scores = score_offers(feats, DEFAULT_CONFIG, signals=sig)
    score_s = time.perf_counter() - t
    total = feat_s + sig_s + score_s

    print(f"baseline groupby min+median : {baseline_s:7.2f} s")
    print(f"compute_features            : {feat_s:7.2f} s")
    print(f"signals ({len(sig):,} rows)  : {sig_s:7.2f} s")
    print(f"score_offers                : {score_s:7.2f} s")
    print(f"risk model total            : {total:7.2f} s  {n / total:,.0f} offers/s  "
          f"ratio to baseline {total / baseline_s:.2f}x")
    print(f"peak RSS                    : {peak_rss_mb():,.0f} MiB")
    print("buckets:", scores["bucket"].value_counts().sort_index().to_dict())
    print("signals:", sig["code"].value_counts().to_dict())


if __name__ == "__main__":
    main()
