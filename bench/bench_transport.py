"""Transport benchmark: raw aiohttp vs default httpx vs FetchEngine (httpx on httpx-aiohttp).

A local aiohttp server runs in a separate process (127.0.0.1, port 0) serving a ~4 KB page and a
~200 KB page. For each page size, each client runs for SECONDS at CONCURRENCY 50, interleaved
A B C A B C ... for ROUNDS rounds; medians are printed with the ratio of FetchEngine to raw
aiohttp measured in the same run. Peak RSS is the client process' ru_maxrss so far (monotonic).

    .venv/bin/python bench/bench_transport.py [--seconds 5] [--rounds 3] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402
import httpx  # noqa: E402
from aiohttp import web  # noqa: E402

from smartbuy_pipeline.acquisition.http import FetchEngine, FetchRequest, FetchSettings  # noqa: E402
from smartbuy_pipeline.acquisition.politeness import ShopPolicy  # noqa: E402

SIZES = {"4k": 4 * 1024, "200k": 200 * 1024}


def _page(n: int) -> bytes:
    unit = b'<div class="p"><span itemprop="price" content="1899.00">R$ 1.899,00</span></div>\n'
    return (b"<html><body>" + unit * (n // len(unit) + 1))[:n]


def serve(port_q: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    bodies = {name: _page(n) for name, n in SIZES.items()}

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=bodies[request.match_info["name"]], content_type="text/html")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/{name}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port_q.put(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        await asyncio.Event().wait()

    asyncio.run(main())


async def _drive(one: Callable[[], Awaitable[int]], seconds: float, concurrency: int) -> tuple[int, float, int]:
    deadline = time.perf_counter() + seconds
    count = 0
    nbytes = 0

    async def worker() -> None:
        nonlocal count, nbytes
        while time.perf_counter() < deadline:
            n = await one()  # not `nbytes += await one()`: that reads nbytes before the await
            nbytes += n
            count += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count, time.perf_counter() - t0, nbytes


async def run_aiohttp(url: str, seconds: float, conc: int) -> tuple[int, float, int]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as s:

        async def one() -> int:
            async with s.get(url) as r:
                return len(await r.read())

        return await _drive(one, seconds, conc)


async def run_httpx(url: str, seconds: float, conc: int) -> tuple[int, float, int]:
    async with httpx.AsyncClient() as c:

        async def one() -> int:
            return len((await c.get(url)).content)

        return await _drive(one, seconds, conc)


async def run_engine(url: str, seconds: float, conc: int) -> tuple[int, float, int]:
    settings = FetchSettings(global_concurrency=conc, fetch_all_workers=conc)
    policy = ShopPolicy(shop_id=1, max_concurrent_requests=conc, min_interval_s=0, allow_private_network=True)
    async with FetchEngine(settings) as eng:
        deadline = time.perf_counter() + seconds

        def reqs():  # type: ignore[no-untyped-def]
            i = 0
            while time.perf_counter() < deadline:
                i += 1
                yield FetchRequest(key=i, url=url, policy=policy)

        count = nbytes = failures = 0
        t0 = time.perf_counter()
        async for r in eng.fetch_all(reqs(), workers=conc):
            if r.body is None:
                failures += 1
            else:
                count += 1
                nbytes += len(r.body)
        if failures:
            print(f"    (engine: {failures} failures)")
        return count, time.perf_counter() - t0, nbytes


IMPLS = {"a_raw_aiohttp": run_aiohttp, "b_httpx_default": run_httpx, "c_fetch_engine": run_engine}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=50)
    args = ap.parse_args()

    ctx = multiprocessing.get_context("spawn")
    port_q = ctx.Queue()
    server = ctx.Process(target=serve, args=(port_q,), daemon=True)
    server.start()
    try:
        port = port_q.get(timeout=30)
        print(f"server pid {server.pid} on 127.0.0.1:{port}; client pid {multiprocessing.current_process().pid}")
        print(f"concurrency {args.concurrency}, {args.seconds:g} s per run, {args.rounds} rounds interleaved A B C")
        for size_name in SIZES:
            url = f"http://127.0.0.1:{port}/{size_name}"
            rates: dict[str, list[float]] = {k: [] for k in IMPLS}
            print(f"\n== {size_name} page ({SIZES[size_name]} bytes) ==")
            print(f"{'round':>5} {'impl':<16} {'items':>8} {'seconds':>8} {'items/s':>9} {'MiB/s':>8} {'peakRSS MiB':>11}")
            for rnd in range(1, args.rounds + 1):
                for name, fn in IMPLS.items():
                    items, secs, nbytes = asyncio.run(fn(url, args.seconds, args.concurrency))
                    rate = items / secs
                    rates[name].append(rate)
                    print(
                        f"{rnd:>5} {name:<16} {items:>8} {secs:>8.2f} {rate:>9.0f} "
                        f"{nbytes / secs / 2**20:>8.1f} {peak_rss_mib():>11.1f}"
                    )
            med = {k: statistics.median(v) for k, v in rates.items()}
            print(f"-- medians ({size_name}): " + ", ".join(f"{k} {v:.0f}/s" for k, v in med.items()))
            print(
                f"-- ratio c/a (FetchEngine / raw aiohttp): {med['c_fetch_engine'] / med['a_raw_aiohttp']:.2f}; "
                f"c/b (FetchEngine / httpx default): {med['c_fetch_engine'] / med['b_httpx_default']:.2f}"
            )
        print(f"\npeak RSS (client process): {peak_rss_mib():.1f} MiB")
    finally:
        server.terminate()
        server.join(5)


if __name__ == "__main__":
    main()
