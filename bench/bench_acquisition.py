"""Acquisition throughput against the simulated marketplace, with a same-run raw-aiohttp baseline.

    .venv/bin/python bench/bench_acquisition.py [--offers 250000] [--pages 6000] [--rounds 2]

The simulator runs in its own process (scale scenario). For each source kind the script fetches
the same URLs twice per round, interleaved: (A) raw aiohttp, download only, concurrency 50;
(B) the real acquisition path (`sources.acquire`: FetchEngine on httpx-aiohttp, parsing in a
process pool, validation). It prints items, seconds, items/s, the B/A ratio (medians) and peak
RSS. Shop politeness is lifted (the simulator is ours): this measures the engine's ceiling.

Targets (issue 3): >= 300 page offers/s, >= 50,000 feed offers/s, peak RSS <= 1 GB.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchlib import (  # noqa: E402
    ChildRssSampler,
    build_targets,
    peak_rss_mib,
    raw_fetch,
    start_simulator,
    urls_for,
)

from smartbuy_pipeline.acquisition.http import FetchEngine, FetchSettings, ParsePool  # noqa: E402
from smartbuy_pipeline.acquisition.sources import OfferTarget, acquire  # noqa: E402
from smartbuy_pipeline.domain.types import FetchFailure, Observation, SourceKind  # noqa: E402
from smartbuy_pipeline.simulator.scenarios import scale_scenario  # noqa: E402


async def real_path(targets: list[OfferTarget], shops, pool: ParsePool) -> Counter:
    outcomes: Counter = Counter()
    async with FetchEngine(FetchSettings(global_concurrency=200)) as engine:
        async for acquired in acquire(targets, shops, engine=engine, pool=pool):
            o = acquired.outcome
            outcomes["observation" if isinstance(o, Observation) else
                     f"failure:{o.reason.value}" if isinstance(o, FetchFailure) else "not_modified"] += 1
    return outcomes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--offers", type=int, default=250_000, help="scale scenario size (feeds hold offers/5)")
    ap.add_argument("--pages", type=int, default=6_000, help="page offers fetched per round")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    proc, base = start_simulator(args.offers)
    try:
        shops, targets = build_targets(scale_scenario(args.offers).catalog_rows(base))
        samples = {
            SourceKind.PAGE: targets[SourceKind.PAGE][: args.pages],
            SourceKind.MERCHANT_FEED: targets[SourceKind.MERCHANT_FEED],
            SourceKind.MARKETPLACE_API: targets[SourceKind.MARKETPLACE_API],
        }
        print(f"simulator: scale scenario of {args.offers:,} offers at {base}")
        with ChildRssSampler(exclude=(proc.pid,)) as children, ParsePool() as pool:
            print(f"parse pool: {pool.max_workers} processes")
            for kind, sample in samples.items():
                urls = urls_for(kind, sample, shops)
                raw_rates, real_rates = [], []
                outcomes: Counter = Counter()
                body_bytes = 0
                for _ in range(args.rounds):  # A B A B ...
                    t0 = time.perf_counter()
                    n, body_bytes = asyncio.run(raw_fetch(urls))
                    raw_rates.append(len(sample) / (time.perf_counter() - t0))
                    t0 = time.perf_counter()
                    outcomes = asyncio.run(real_path(sample, shops, pool))
                    real_rates.append(len(sample) / (time.perf_counter() - t0))
                raw, real = statistics.median(raw_rates), statistics.median(real_rates)
                print(f"\n[{kind.value}] {len(sample):,} offers over {len(urls):,} HTTP responses "
                      f"({body_bytes / max(1, len(urls)) / 1024:,.0f} KiB decoded per response)")
                print(f"  raw aiohttp download : {raw:12,.0f} offers/s  (rounds: {', '.join(f'{r:,.0f}' for r in raw_rates)})")
                print(f"  acquisition path     : {real:12,.0f} offers/s  (rounds: {', '.join(f'{r:,.0f}' for r in real_rates)})")
                print(f"  ratio path/raw       : {real / raw:12.2f}")
                print(f"  seconds per round    : {len(sample) / real:12.2f}")
                print(f"  outcomes (last round): {dict(outcomes)}")
        print(f"\npeak RSS: this process {peak_rss_mib():,.0f} MiB; largest parse worker {children.largest_mib:,.0f} MiB; "
              f"all parse processes together at most {children.total_mib:,.0f} MiB")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
