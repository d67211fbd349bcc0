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
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from smartbuy_pipeline.acquisition.http import FetchEngine, FetchSettings, ParsePool  # noqa: E402
from smartbuy_pipeline.acquisition.politeness import ShopPolicy  # noqa: E402
from smartbuy_pipeline.acquisition.sources import OfferTarget, ShopTarget, acquire  # noqa: E402
from smartbuy_pipeline.domain.types import FetchFailure, Observation, SourceKind  # noqa: E402
from smartbuy_pipeline.simulator.scenarios import scale_scenario  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_simulator(offers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "smartbuy_pipeline.simulator.server", "--port", str(port), "--scale", str(offers)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, base
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("simulator did not start within 120 s")


def build_targets(offers: int, base: str):
    rows = scale_scenario(offers).catalog_rows(base)
    shops: dict[int, ShopTarget] = {}
    by_domain: dict[str, int] = {}
    for i, s in enumerate(rows["shops"], start=1):
        by_domain[s["domain"]] = i
        shops[i] = ShopTarget(ShopPolicy(i, 64, 0.0, True), s["currency"], s["locale"],
                              feed_url=s.get("feed_url"), api_base_url=s.get("api_base_url"))
    targets: dict[SourceKind, list[OfferTarget]] = {k: [] for k in SourceKind}
    for i, o in enumerate(rows["offers"], start=1):
        kind = SourceKind(o["source_kind"])
        targets[kind].append(OfferTarget(i, by_domain[o["shop_domain"]], kind, o["locator"]))
    return shops, targets


async def raw_fetch(urls: list[str], concurrency: int = 50) -> tuple[int, int]:
    """Download every URL with plain aiohttp; return (responses, decoded bytes)."""
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    for u in urls:
        queue.put_nowait(u)
    total = 0
    count = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers={"Accept-Encoding": "gzip"}) as session:
        async def worker() -> None:
            nonlocal total, count
            while not queue.empty():
                url = queue.get_nowait()
                async with session.get(url) as resp:
                    total += len(await resp.read())
                    count += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count, total


async def real_path(targets: list[OfferTarget], shops, pool: ParsePool) -> Counter:
    outcomes: Counter = Counter()
    async with FetchEngine(FetchSettings(global_concurrency=200)) as engine:
        async for acquired in acquire(targets, shops, engine=engine, pool=pool):
            o = acquired.outcome
            outcomes["observation" if isinstance(o, Observation) else
                     f"failure:{o.reason.value}" if isinstance(o, FetchFailure) else "not_modified"] += 1
    return outcomes


def urls_for(kind: SourceKind, targets: list[OfferTarget], shops) -> list[str]:
    if kind is SourceKind.PAGE:
        return [t.locator for t in targets]
    if kind is SourceKind.MERCHANT_FEED:
        return sorted({shops[t.shop_id].feed_url for t in targets})
    by_shop: dict[int, list[str]] = {}
    for t in targets:
        by_shop.setdefault(t.shop_id, []).append(t.locator)
    return [f"{shops[sid].api_base_url}/items?ids={','.join(ids[i:i + 20])}"
            for sid, ids in by_shop.items() for i in range(0, len(ids), 20)]


def peak_rss_mib() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--offers", type=int, default=250_000, help="scale scenario size (feeds hold offers/5)")
    ap.add_argument("--pages", type=int, default=6_000, help="page offers fetched per round")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    proc, base = start_simulator(args.offers)
    try:
        shops, targets = build_targets(args.offers, base)
        samples = {
            SourceKind.PAGE: targets[SourceKind.PAGE][: args.pages],
            SourceKind.MERCHANT_FEED: targets[SourceKind.MERCHANT_FEED],
            SourceKind.MARKETPLACE_API: targets[SourceKind.MARKETPLACE_API],
        }
        print(f"simulator: scale scenario of {args.offers:,} offers at {base}")
        with ParsePool() as pool:
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
        own, children = peak_rss_mib()
        print(f"\npeak RSS: this process {own:,.0f} MiB; largest finished child (parse worker) {children:,.0f} MiB")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
