"""What every benchmark here shares: the server it runs on, scratch databases, peak RSS, the
simulated marketplace in its own process and the raw-aiohttp download baseline.

Scripts import it as `benchlib` (they run as `python bench/<script>.py`, so bench/ is on sys.path).
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import psycopg
from psycopg import sql

from smartbuy_pipeline.acquisition.politeness import ShopPolicy
from smartbuy_pipeline.acquisition.sources import OfferTarget, ShopTarget
from smartbuy_pipeline.db.engine import DatabaseUrl
from smartbuy_pipeline.domain.types import SourceKind

BENCH_URL_ENV = "SMARTBUY_BENCH_DATABASE_URL"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def admin_url() -> DatabaseUrl:
    """The maintenance database of the benchmark server (SMARTBUY_BENCH_DATABASE_URL, else local)."""
    return DatabaseUrl.parse(os.environ.get(BENCH_URL_ENV, DEFAULT_URL), source=BENCH_URL_ENV)


def peak_rss_mib() -> float:
    """This process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class ChildRssSampler:
    """Peak memory of this process's descendants (parse workers under the forkserver, which
    RUSAGE_CHILDREN never sees while the forkserver lives), sampled from /proc every `every_s`:
    the largest single peak (VmHWM) and the largest sum of resident sets seen at one time.
    `exclude` names processes to leave out (the simulator). Linux only."""

    def __init__(self, *, exclude: tuple[int, ...] = (), every_s: float = 0.25) -> None:
        self.exclude = set(exclude)
        self.every_s = every_s
        self.largest_mib = 0.0
        self.total_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _status(pid: str) -> dict[str, str]:
        try:
            with open(f"/proc/{pid}/status") as f:
                return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        except OSError:  # the process ended between listing and reading
            return {}

    def _sample(self) -> None:
        status = {pid: self._status(pid) for pid in os.listdir("/proc") if pid.isdigit()}
        parent = {pid: st.get("PPid", "").strip() for pid, st in status.items()}
        me, skip = str(os.getpid()), {str(p) for p in self.exclude}
        total = 0.0
        for pid, st in status.items():
            up, seen = parent.get(pid), 0
            while up and up != me and up not in skip and seen < 64:
                up, seen = parent.get(up), seen + 1
            if pid in skip or up != me:
                continue
            hwm = float(st.get("VmHWM", "0 kB").split()[0]) / 1024
            self.largest_mib = max(self.largest_mib, hwm)
            total += float(st.get("VmRSS", "0 kB").split()[0]) / 1024
        self.total_mib = max(self.total_mib, total)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self._sample()

    def __enter__(self) -> "ChildRssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def create_database(name: str) -> DatabaseUrl:
    admin = admin_url()
    with psycopg.connect(admin.url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return admin.with_database(name)


def drop_database(name: str) -> None:
    with psycopg.connect(admin_url().url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@contextmanager
def scratch_databases(*names: str, keep: bool = False) -> Iterator[list[DatabaseUrl]]:
    """Create empty databases on the benchmark server; drop them afterwards unless `keep`."""
    urls = [create_database(name) for name in names]
    try:
        yield urls
    finally:
        if not keep:
            for name in names:
                drop_database(name)


def reuse_arg(argv: list[str]) -> str | None:
    """`--reuse NAME` (taken out of argv) or SMARTBUY_BENCH_REUSE: a database kept by an earlier
    `--keep` run, to measure again without generating the data."""
    reuse = os.environ.get("SMARTBUY_BENCH_REUSE")
    if "--reuse" in argv:
        at = argv.index("--reuse")
        if at + 1 >= len(argv):
            raise SystemExit("--reuse needs a database name")
        reuse = argv[at + 1]
        del argv[at:at + 2]
    return reuse


def open_bench_database(prefix: str, reuse: str | None) -> DatabaseUrl:
    """The reused database, or a new one named after the prefix and this process."""
    return admin_url().with_database(reuse) if reuse else create_database(f"{prefix}_{os.getpid()}")


def close_bench_database(url: DatabaseUrl, *, reuse: str | None, keep: bool) -> None:
    """Drop what this run created, unless asked to keep it; a reused database is never dropped."""
    if keep:
        print(f"kept database {url.database} (--reuse {url.database} to re-run without generating)")
    elif not reuse:
        drop_database(url.database)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_simulator(offers: int) -> tuple[subprocess.Popen, str]:
    """The simulated marketplace (scale scenario) in its own process; returns it and its base URL
    once it accepts connections. The caller terminates it."""
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


def build_targets(rows: dict) -> tuple[dict[int, ShopTarget], dict[SourceKind, list[OfferTarget]]]:
    """Acquisition targets for a simulator catalog (`catalog_rows`), shops and offers numbered in
    order. Shop politeness is lifted (the simulator is ours): the engine's ceiling."""
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


def urls_for(kind: SourceKind, targets: list[OfferTarget], shops) -> list[str]:
    """The HTTP requests acquisition makes for these targets: a page per offer, a feed per shop,
    an items-API call per 20 offers of a shop."""
    if kind is SourceKind.PAGE:
        return [t.locator for t in targets]
    if kind is SourceKind.MERCHANT_FEED:
        return sorted({shops[t.shop_id].feed_url for t in targets})
    by_shop: dict[int, list[str]] = {}
    for t in targets:
        by_shop.setdefault(t.shop_id, []).append(t.locator)
    return [f"{shops[sid].api_base_url}/items?ids={','.join(ids[i:i + 20])}"
            for sid, ids in by_shop.items() for i in range(0, len(ids), 20)]
