"""Acquisition fetch engine: httpx API on the httpx-aiohttp transport, polite, retrying, SSRF-safe.

No database and no Dagster here. One `FetchEngine` per run:

    async with FetchEngine(FetchSettings()) as engine:
        result = await engine.fetch(FetchRequest(key=offer_id, url=url, policy=shop_policy))
        async for result in engine.fetch_all(requests):   # as completed, bounded memory
            ...
        result = await engine.stream_to_file(feed_request, "/tmp/feed.xml")

Every outcome is a `FetchResult` with exactly one of: `body` (or `path` for streamed feeds),
`not_modified=True` (a 304), or `failure` (a `FailureReason` plus a human `detail`). The engine
never raises for a network/HTTP problem.

Behaviour (see the module docstrings of `politeness` and `ssrf` for those parts):
- Transport: `httpx.AsyncClient` API over `httpx_aiohttp.AiohttpTransport` sharing one aiohttp
  `ClientSession` (about 10x plain httpx here; see bench/bench_transport.py).
- Retries: exponential backoff with full jitter (uniform(0, min(cap, base * 2**(n-1)))) on
  connection errors, timeouts and 5xx, up to `max_retries` retries (so max_retries+1 attempts).
  429 and 503 honour Retry-After (delta-seconds or HTTP-date); the wait also defers every other
  request to that shop. A Retry-After above `max_retry_after` gives up at once with
  RATE_LIMITED. 404/410 -> NOT_FOUND, other 4xx -> HTTP_4XX, neither retried. Exhausted
  retries report the last cause: TIMEOUT, CONNECTION_ERROR, HTTP_5XX (incl. 503) or
  RATE_LIMITED (429).
- Size limits: Content-Length above the limit fails before reading; otherwise the DECODED
  bytes are counted while streaming and the stream is aborted (connection closed, not drained)
  as soon as the limit is passed -> BODY_TOO_LARGE. Counting decoded bytes also stops
  gzip/brotli bombs. Pages and API calls use `max_page_bytes`, feeds `max_feed_bytes`.
- Conditional requests: If-None-Match / If-Modified-Since from the request; 304 ->
  not_modified. The response's ETag / Last-Modified are returned for storage.
- Encoding: Accept-Encoding "gzip, br"; decoded by httpx (brotli C bindings installed).
- Redirects: followed MANUALLY, at most `max_redirects` (5) hops; every hop is SSRF-checked
  again and goes through the shop's politeness slot again. More hops, or a 3xx without a
  usable Location, fail as HTTP_4XX with the detail. Conditional headers are kept across hops
  (the validators we store come from the final response of the same chain).
  `FetchResult.final_url` is the URL that produced the final response.
- Timeouts: connect / read (per socket read) via the transport; `total_timeout` (pages, API)
  or `feed_total_timeout` (feeds) bounds one attempt including the body, not the politeness
  wait or the retry sleeps. `elapsed_s` is the wall time of the whole fetch.
- Proxies from the environment are ignored (trust_env=False): the SSRF resolver must see the
  real target host.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import logging
import math
import multiprocessing
import os
import random
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urljoin

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport, HttpxAiohttpClient

from smartbuy_pipeline.acquisition.politeness import PolitenessLimiter, ShopPolicy
from smartbuy_pipeline.acquisition.ssrf import GuardedResolver, HostResolutionError, SsrfGuard, SsrfRefused
from smartbuy_pipeline.domain.types import FailureReason

__all__ = [
    "FetchEngine",
    "FetchKind",
    "FetchRequest",
    "FetchResult",
    "FetchSettings",
    "ParsePool",
    "ShopPolicy",
    "parse_retry_after",
]

log = logging.getLogger(__name__)

MiB = 1024 * 1024
FetchKind = Literal["page", "feed", "api"]
_KINDS = ("page", "feed", "api")
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DEFAULT_USER_AGENT = "SmartBuyBot/0.1 (+https://smartbuy.example/bot; bot@smartbuy.example)"
_ACCEPT = {
    "page": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5",
    "api": "application/json;q=1.0,*/*;q=0.5",
    "feed": "application/xml,text/xml;q=0.9,text/tab-separated-values;q=0.9,text/plain;q=0.5,*/*;q=0.3",
}


# --------------------------------------------------------------------------- settings & types


@dataclass(frozen=True, slots=True)
class FetchSettings:
    user_agent: str = DEFAULT_USER_AGENT
    global_concurrency: int = 200
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    total_timeout: float = 30.0  # one attempt of a page / API call, body included
    feed_total_timeout: float = 900.0  # one attempt of a feed download, body included
    max_page_bytes: int = 3 * MiB  # pages and API responses (decoded)
    max_feed_bytes: int = 512 * MiB  # feeds (decoded)
    max_retries: int = 3  # retries after the first attempt
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    max_retry_after: float = 120.0
    max_redirects: int = 5
    fetch_all_workers: int = 400  # in-flight fetch() calls in fetch_all (>= global cap: see docs)
    accept_language: str = "pt-BR,pt;q=0.9,en;q=0.5"

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"FetchSettings.{name} {why}, got {getattr(self, name)!r}")

        ua = self.user_agent
        if not isinstance(ua, str) or not ua.strip() or any(c in ua for c in "\r\n\0") or len(ua) > 512:
            raise bad("user_agent", "must be a non-empty single-line string of at most 512 chars")
        for name, lo, hi in (
            ("global_concurrency", 1, 100_000),
            ("max_page_bytes", 1, 1 << 40),
            ("max_feed_bytes", 1, 1 << 44),
            ("max_retries", 0, 100),
            ("max_redirects", 0, 50),
            ("fetch_all_workers", 1, 1_000_000),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise bad(name, f"must be an int in [{lo}, {hi}]")
        for name, allow_zero in (
            ("connect_timeout", False),
            ("read_timeout", False),
            ("total_timeout", False),
            ("feed_total_timeout", False),
            ("backoff_base", True),
            ("backoff_cap", True),
            ("max_retry_after", True),
        ):
            v = getattr(self, name)
            if (
                isinstance(v, bool)
                or not isinstance(v, (int, float))
                or not math.isfinite(v)
                or v < 0
                or (v == 0 and not allow_zero)
                or v > 86_400
            ):
                raise bad(name, "must be a finite number " + ("in [0, 86400]" if allow_zero else "in (0, 86400]"))
        if self.backoff_cap < self.backoff_base:
            raise bad("backoff_cap", f"must be >= backoff_base ({self.backoff_base})")
        if not isinstance(self.accept_language, str) or any(c in self.accept_language for c in "\r\n\0"):
            raise bad("accept_language", "must be a single-line string")


@dataclass(frozen=True, slots=True)
class FetchRequest:
    key: Hashable
    url: str
    policy: ShopPolicy
    etag: str | None = None
    last_modified: str | None = None
    kind: FetchKind = "page"

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"FetchRequest.kind must be one of {_KINDS}, got {self.kind!r}")
        if not isinstance(self.policy, ShopPolicy):
            raise ValueError(f"FetchRequest.policy must be a ShopPolicy, got {self.policy!r}")


@dataclass(frozen=True, slots=True)
class FetchResult:
    """Exactly one of: `body` (or `path` for stream_to_file), `not_modified`, `failure`."""

    key: Hashable
    url: str
    status: int | None
    body: bytes | None
    etag: str | None
    last_modified: str | None
    not_modified: bool
    elapsed_s: float
    attempts: int
    failure: FailureReason | None
    detail: str
    final_url: str | None = None
    size: int | None = None  # decoded body bytes (also for stream_to_file)
    path: str | None = None  # stream_to_file only

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass(slots=True)
class _Outcome:
    status: int | None = None
    body: bytes | None = None
    etag: str | None = None
    last_modified: str | None = None
    not_modified: bool = False
    failure: FailureReason | None = None
    detail: str = ""
    retryable: bool = False
    retry_after: float | None = None
    final_url: str | None = None
    size: int | None = None


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent/bad."""
    if value is None:
        return None
    v = value.strip()
    if not v:
        return None
    if v.isdigit():
        return float(int(v))
    try:
        when = email.utils.parsedate_to_datetime(v)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def _root_causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and e not in chain and len(chain) < 20:
        chain.append(e)
        e = e.__cause__ or e.__context__
    return chain


def _classify_exception(exc: BaseException) -> tuple[FailureReason, str, bool]:
    """(reason, detail, retryable) for an exception raised while talking to a server.

    httpx-aiohttp maps aiohttp errors onto httpx ones imprecisely (any ClientConnectionError,
    even "connection refused" or "server disconnected", becomes httpx.ConnectTimeout), so the
    decision looks at the original aiohttp / OS exception in the cause chain.
    """
    chain = _root_causes(exc)
    for e in chain:
        if isinstance(e, SsrfRefused):
            return FailureReason.SSRF_REFUSED, e.detail, False
    for e in chain:
        if isinstance(e, httpx.DecodingError):
            return FailureReason.PARSE_ERROR, f"content decoding failed: {e}", False
    root = chain[-1]
    name = type(root).__name__
    if any(isinstance(e, TimeoutError) for e in chain) or (
        isinstance(root, httpx.TimeoutException) and len(chain) == 1
    ):
        return FailureReason.TIMEOUT, f"timeout: {name} {root}".strip()[:500], True
    if isinstance(root, (httpx.InvalidURL, httpx.UnsupportedProtocol)):
        return FailureReason.HTTP_4XX, f"invalid URL: {root}", False
    return FailureReason.CONNECTION_ERROR, f"{name}: {root}"[:500], True


def _classify_status(status: int, headers: httpx.Headers) -> _Outcome:
    if status in (404, 410):
        return _Outcome(status=status, failure=FailureReason.NOT_FOUND, detail=f"HTTP {status}")
    if status == 429:
        ra = parse_retry_after(headers.get("retry-after"))
        return _Outcome(status=status, failure=FailureReason.RATE_LIMITED, detail="HTTP 429", retryable=True, retry_after=ra)
    if status == 503:
        ra = parse_retry_after(headers.get("retry-after"))
        return _Outcome(status=status, failure=FailureReason.HTTP_5XX, detail="HTTP 503", retryable=True, retry_after=ra)
    if status >= 500:
        return _Outcome(status=status, failure=FailureReason.HTTP_5XX, detail=f"HTTP {status}", retryable=True)
    if 300 <= status < 400:
        return _Outcome(status=status, failure=FailureReason.HTTP_4XX, detail=f"HTTP {status} redirect without a usable Location")
    return _Outcome(status=status, failure=FailureReason.HTTP_4XX, detail=f"HTTP {status}")


# --------------------------------------------------------------------------- engine


class FetchEngine:
    def __init__(self, settings: FetchSettings | None = None, *, guard: SsrfGuard | None = None) -> None:
        self.settings = settings or FetchSettings()
        self.guard = guard or SsrfGuard()
        self._limiter: PolitenessLimiter | None = None
        self._public: httpx.AsyncClient | None = None
        self._private: httpx.AsyncClient | None = None

    # -- lifecycle
    def _make_client(self, resolver: aiohttp.abc.AbstractResolver | None) -> httpx.AsyncClient:
        s = self.settings
        connector = aiohttp.TCPConnector(
            limit=s.global_concurrency,
            limit_per_host=0,
            resolver=resolver,
            ttl_dns_cache=300,
        )
        session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),  # httpx owns cookies
            trust_env=False,
        )
        timeout = httpx.Timeout(connect=s.connect_timeout, read=s.read_timeout, write=s.read_timeout, pool=s.total_timeout)
        return HttpxAiohttpClient(
            transport=AiohttpTransport(client=session, trust_env=False),
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": s.user_agent, "Accept-Encoding": "gzip, br", "Accept-Language": s.accept_language},
        )

    async def __aenter__(self) -> FetchEngine:
        self._limiter = PolitenessLimiter(self.settings.global_concurrency)
        self._public = self._make_client(GuardedResolver(self.guard))
        self._private = self._make_client(None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for client in (self._public, self._private):
            if client is not None:
                await client.aclose()
        self._public = self._private = None

    @property
    def limiter(self) -> PolitenessLimiter:
        if self._limiter is None:
            raise RuntimeError("FetchEngine used outside 'async with'")
        return self._limiter

    # -- public API
    async def fetch(self, req: FetchRequest) -> FetchResult:
        return await self._fetch(req, None)

    async def stream_to_file(self, req: FetchRequest, path: str | os.PathLike[str]) -> FetchResult:
        """Download to `path` (atomically, via `path`.part) without holding the body in memory.

        On a 304 or a failure the existing file at `path` is left untouched.
        """
        return await self._fetch(req, Path(path))

    async def fetch_all(
        self,
        reqs: Iterable[FetchRequest] | AsyncIterable[FetchRequest],
        *,
        workers: int | None = None,
    ) -> AsyncIterator[FetchResult]:
        """Yield a FetchResult per request, as completed.

        A fixed pool of `workers` tasks (default `settings.fetch_all_workers`) pulls from a bounded
        queue fed by `reqs`, which is consumed lazily: memory is O(workers), whatever the input
        size. More workers than the global cap keeps the network busy while some workers wait on a
        slow shop's interval; interleave shops in `reqs` for best throughput.
        """
        n = workers or self.settings.fetch_all_workers
        in_q: asyncio.Queue[FetchRequest | None] = asyncio.Queue(maxsize=n)
        out_q: asyncio.Queue[FetchResult | None] = asyncio.Queue(maxsize=n)
        producer_error: list[BaseException] = []

        async def produce() -> None:
            try:
                if isinstance(reqs, AsyncIterable):
                    async for r in reqs:
                        await in_q.put(r)
                else:
                    for r in reqs:
                        await in_q.put(r)
            except Exception as exc:  # surfaced to the consumer after the workers drain
                producer_error.append(exc)
            # not in `finally`: when cancelled (consumer gone) nobody would read these puts
            for _ in range(n):
                await in_q.put(None)

        async def work() -> None:
            while (r := await in_q.get()) is not None:
                try:
                    res = await self.fetch(r)
                except Exception as exc:  # a bug must not kill a million-request run
                    log.exception("fetch of %r failed unexpectedly", r.url)
                    res = FetchResult(
                        key=r.key, url=r.url, status=None, body=None, etag=None, last_modified=None,
                        not_modified=False, elapsed_s=0.0, attempts=0,
                        failure=FailureReason.CONNECTION_ERROR, detail=f"internal error: {exc!r}"[:500],
                    )
                await out_q.put(res)
            await out_q.put(None)  # this worker is done (not in `finally`: see produce())

        tasks = [asyncio.create_task(produce())] + [asyncio.create_task(work()) for _ in range(n)]
        try:
            done = 0
            while done < n:
                item = await out_q.get()
                if item is None:
                    done += 1
                else:
                    yield item
            if producer_error:
                raise producer_error[0]
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- internals
    def _backoff(self, attempt: int) -> float:
        s = self.settings
        return random.uniform(0.0, min(s.backoff_cap, s.backoff_base * (2 ** (attempt - 1))))

    async def _fetch(self, req: FetchRequest, path: Path | None) -> FetchResult:
        s = self.settings
        t0 = time.perf_counter()
        attempts = 0
        while True:
            attempts += 1
            out = await self._attempt(req, path)
            if out.failure is None or not out.retryable:
                break
            if out.retry_after is not None and out.retry_after > s.max_retry_after:
                out.failure = FailureReason.RATE_LIMITED
                out.detail = (
                    f"{out.detail}: Retry-After {out.retry_after:.0f}s exceeds max_retry_after {s.max_retry_after:g}s"
                )
                break
            if attempts > s.max_retries:
                if attempts > 1:
                    out.detail = f"{out.detail} (gave up after {attempts} attempts)"
                break
            if out.retry_after is not None:
                delay = out.retry_after
                self.limiter.defer(req.policy.shop_id, delay)
            else:
                delay = self._backoff(attempts)
            await asyncio.sleep(delay)
        return FetchResult(
            key=req.key,
            url=req.url,
            status=out.status,
            body=out.body if out.failure is None and not out.not_modified else None,
            etag=out.etag,
            last_modified=out.last_modified,
            not_modified=out.not_modified and out.failure is None,
            elapsed_s=time.perf_counter() - t0,
            attempts=attempts,
            failure=out.failure,
            detail=out.detail,
            final_url=out.final_url,
            size=out.size,
            path=str(path) if path is not None and out.failure is None and not out.not_modified else None,
        )

    def _headers(self, req: FetchRequest) -> dict[str, str]:
        h = {"Accept": _ACCEPT[req.kind]}
        if req.etag:
            h["If-None-Match"] = req.etag
        if req.last_modified:
            h["If-Modified-Since"] = req.last_modified
        return h

    async def _attempt(self, req: FetchRequest, path: Path | None) -> _Outcome:
        """One attempt: up to max_redirects+1 hops, each SSRF-checked and politeness-gated."""
        s = self.settings
        policy = req.policy
        client = self._private if policy.allow_private_network else self._public
        if client is None:
            raise RuntimeError("FetchEngine used outside 'async with'")
        limit = s.max_feed_bytes if req.kind == "feed" else s.max_page_bytes
        total = s.feed_total_timeout if req.kind == "feed" else s.total_timeout
        headers = self._headers(req)
        url = req.url
        for _hop in range(s.max_redirects + 1):
            try:
                await self.guard.check_url(url, allow_private_network=policy.allow_private_network)
            except SsrfRefused as exc:
                return _Outcome(failure=FailureReason.SSRF_REFUSED, detail=f"{exc.detail} ({url})", final_url=url)
            except HostResolutionError as exc:
                return _Outcome(failure=FailureReason.CONNECTION_ERROR, detail=str(exc), retryable=True, final_url=url)
            location: str | None = None
            async with self.limiter.slot(policy):
                try:
                    async with asyncio.timeout(total):
                        request = client.build_request("GET", url, headers=headers)
                        resp = await client.send(request, stream=True)
                        try:
                            status = resp.status_code
                            if status in REDIRECT_STATUSES and resp.headers.get("location"):
                                location = resp.headers["location"]
                            else:
                                return await self._read_response(resp, url, limit, path)
                        finally:
                            await resp.aclose()
                except Exception as exc:  # noqa: BLE001 - classified, never raised to callers
                    reason, detail, retryable = _classify_exception(exc)
                    return _Outcome(failure=reason, detail=detail, retryable=retryable, final_url=url)
            try:
                url = urljoin(url, location.strip())
            except ValueError as exc:
                return _Outcome(status=status, failure=FailureReason.HTTP_4XX, detail=f"bad redirect Location: {exc}", final_url=url)
        return _Outcome(
            failure=FailureReason.HTTP_4XX,
            detail=f"more than {s.max_redirects} redirects (last to {url})",
            final_url=url,
        )

    async def _read_response(self, resp: httpx.Response, url: str, limit: int, path: Path | None) -> _Outcome:
        status = resp.status_code
        etag = resp.headers.get("etag")
        last_modified = resp.headers.get("last-modified")
        if status == 304:
            return _Outcome(status=status, not_modified=True, etag=etag, last_modified=last_modified, final_url=url, detail="not modified")
        if not 200 <= status < 300:
            out = _classify_status(status, resp.headers)
            out.final_url = url
            return out
        too_large = _Outcome(status=status, failure=FailureReason.BODY_TOO_LARGE, final_url=url)
        cl = resp.headers.get("content-length", "").strip()
        if cl.isdigit() and int(cl) > limit:
            too_large.detail = f"Content-Length {cl} exceeds limit {limit}"
            return too_large
        size = 0
        if path is None:
            chunks: list[bytes] = []
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    too_large.detail = f"body exceeds limit {limit} bytes (aborted after {size})"
                    return too_large
                chunks.append(chunk)
            return _Outcome(status=status, body=b"".join(chunks), etag=etag, last_modified=last_modified, final_url=url, size=size, detail="ok")
        part = path.with_name(path.name + ".part")
        ok = False
        try:
            with open(part, "wb") as f:
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        too_large.detail = f"body exceeds limit {limit} bytes (aborted after {size})"
                        return too_large
                    f.write(chunk)  # buffered page-cache write: microseconds, fine on the loop
            os.replace(part, path)
            ok = True
        finally:
            if not ok:
                try:
                    part.unlink()
                except FileNotFoundError:
                    pass
        return _Outcome(status=status, etag=etag, last_modified=last_modified, final_url=url, size=size, detail="ok")


# --------------------------------------------------------------------------- parse pool

T = TypeVar("T")


class ParsePool:
    """A process pool for CPU-bound parsing, so fetching and parsing overlap.

    One per run; `await pool.run(fn, *args)`; `fn` must be a picklable top-level function. The
    default "forkserver" start method avoids forking a process that has a running event loop and
    resolver threads.
    """

    def __init__(self, max_workers: int | None = None, *, start_method: str = "forkserver") -> None:
        workers = max_workers or os.cpu_count() or 1
        if workers < 1:
            raise ValueError(f"ParsePool.max_workers must be >= 1, got {max_workers!r}")
        self.max_workers = workers
        self._executor = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context(start_method)
        )

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def shutdown(self, *, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=True)

    def __enter__(self) -> ParsePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    async def __aenter__(self) -> ParsePool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.shutdown)
