"""The simulated marketplace HTTP server (aiohttp.web).

URL layout (all shops share one host; the shop is the first path segment):

    GET  /s/{shop}/p/{offer_key}        product page (HTML, 100-300 KB)
    GET  /s/{shop}/feed.xml             Google Merchant feed, RSS 2.0 (streamed)
    GET  /s/{shop}/feed.atom            the same as Atom
    GET  /s/{shop}/feed.tsv             the same as TSV
    GET  /api/items?ids=A,B,...         Mercado Livre style multiget (<= 20 ids, else 400)
    GET  /robots.txt
    GET  /_sim/stats[?shop=slug&starts=1]   per-shop request instrumentation (JSON)
    GET  /_sim/clock                     {"now": iso, "fixed": bool}
    POST /_sim/clock                     {"at": iso} | {"advance_hours": n} | {"reset": true}
    GET  /_sim/faults                    installed faults
    POST /_sim/faults                    {"shop": slug | "offer": key, "faults": [Fault json]}
                                         (an empty list clears that target) | {"clear": true}

Pages carry a strong ETag derived from the rendered state and Last-Modified = the hour the
state began; If-None-Match / If-Modified-Since give 304. Bodies are gzip- or brotli-encoded when
the client accepts it (gzip preferred on ties: it is assembled from cached deflate segments).

In-process use (tests):

    with SimulatorServer(demo_scenario()) as sim:
        sim.clock.set(datetime(2026, 11, 27, 3, tzinfo=UTC))
        url = f"{sim.base_url}/s/mega-tech/p/bf-fake-tv-lg55-megatech"
        ...
        sim.stats("mega-tech")["max_in_flight"]
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
import zlib
from collections import Counter, deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any, Iterable, Iterator

import brotli
from aiohttp import web

from smartbuy_pipeline.simulator.pages import (
    FEED_CONTENT_TYPES,
    ITEMS_API_MAX_IDS,
    PageRenderer,
    bot_wall_page,
    feed_chunks,
    items_api_body,
    truncate_page,
)
from smartbuy_pipeline.simulator.scenarios import (
    Fault,
    FaultKind,
    Scenario,
    SimOffer,
    price_state,
)

__all__ = ["SimClock", "SimulatorServer", "make_app", "run_forever", "API_SHOP"]

RENDER_VERSION = "1"
API_SHOP = "_api"  # stats bucket for /api/items requests naming no known item
_FEED_EXT = {"xml": "rss", "atom": "atom", "tsv": "tsv"}
_ROBOTS = (
    b"User-agent: *\nDisallow: /_sim/\nDisallow: /checkout\nDisallow: /busca\nAllow: /s/\n"
    b"Allow: /api/\n"
)


class SimClock:
    """Simulated time: real UTC now until `set` or `advance`; from then on it stays put (frozen)
    until moved again, or follows real time again after `reset`."""

    def __init__(self, at: datetime | None = None) -> None:
        self._fixed: datetime | None = None
        if at is not None:
            self.set(at)

    def now(self) -> datetime:
        fixed = self._fixed
        return fixed if fixed is not None else datetime.now(UTC)

    @property
    def fixed(self) -> bool:
        return self._fixed is not None

    def set(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("SimClock.set needs a timezone-aware datetime")
        self._fixed = at.astimezone(UTC)

    def advance(self, hours: float = 0, minutes: float = 0, seconds: float = 0) -> datetime:
        self._fixed = self.now() + timedelta(hours=hours, minutes=minutes, seconds=seconds)
        return self._fixed

    def reset(self) -> None:
        self._fixed = None


@dataclass
class _ShopStats:
    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    not_modified: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    starts: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))

    def snapshot(self, with_starts: bool = True) -> dict[str, Any]:
        starts = list(self.starts)
        gaps = [b - a for a, b in zip(starts, starts[1:])]
        out: dict[str, Any] = {
            "requests": self.requests,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "not_modified": self.not_modified,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "min_interval_ms": round(min(gaps) * 1000, 3) if gaps else None,
        }
        if with_starts:
            out["request_starts"] = starts  # time.monotonic() seconds, in arrival order
        return out


@dataclass
class _FaultState:
    fault: Fault
    installed: float = field(default_factory=time.monotonic)
    seen: int = 0

    def hit(self) -> bool:
        idx = self.seen
        self.seen += 1
        f = self.fault
        if idx < f.start_after:
            return False
        idx -= f.start_after
        if f.duration_s is not None:
            return time.monotonic() - self.installed <= f.duration_s
        if f.count is not None and f.period:
            return idx % f.period < f.count
        if f.count is not None:
            return idx < f.count
        return True


def _accepts(header: str) -> tuple[float, float]:
    """(q for gzip, q for br) from an Accept-Encoding header."""
    gz = br = 0.0
    star = 0.0
    for item in header.split(","):
        token, _, params = item.strip().partition(";")
        token = token.strip().lower()
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        if token in ("gzip", "x-gzip"):
            gz = q
        elif token == "br":
            br = q
        elif token == "*":
            star = q
    return (gz or star, br or star)


def _choose_encoding(request: web.Request) -> str | None:
    header = request.headers.get("Accept-Encoding")
    if not header:
        return None
    gz, br = _accepts(header)
    if gz <= 0 and br <= 0:
        return None
    return "br" if br > gz else "gzip"


def _etag_matches(header: str, etag: str) -> bool:
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*":
            return True
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag == etag:
            return True
    return False


class SimulatorServer:
    """Runs the simulator app in a background thread with its own event loop."""

    def __init__(
        self,
        scenario: Scenario,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: SimClock | None = None,
    ) -> None:
        self.scenario = scenario
        self.host = host
        self.port = port
        self.clock = clock or SimClock()
        self.renderer = PageRenderer(scenario)
        self._lock = threading.Lock()
        self._stats: dict[str, _ShopStats] = {}
        self._faults: dict[tuple[str, str], list[_FaultState]] = {}
        self._install_scripted_faults()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.base_url = ""

    # -- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> SimulatorServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> SimulatorServer:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name="smartbuy-simulator", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise RuntimeError("simulator failed to start") from self._error
        if not self._ready.is_set():
            raise RuntimeError("simulator did not start within 30 s")
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._startup())
        except BaseException as e:  # noqa: BLE001 - reported to the starting thread
            self._error = e
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            if self._runner is not None:
                loop.run_until_complete(self._runner.cleanup())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _startup(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=1024)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self.port = sock.getsockname()[1]
        host = self.host if ":" not in self.host else f"[{self.host}]"
        self.base_url = f"http://{host}:{self.port}"

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        self._thread = None
        self._loop = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 20)
        app.router.add_get("/s/{shop}/p/{offer}", self._page)
        app.router.add_get("/s/{shop}/feed.{ext}", self._feed)
        app.router.add_get("/api/items", self._items)
        app.router.add_get("/robots.txt", self._robots)
        app.router.add_get("/_sim/stats", self._stats_view)
        app.router.add_get("/_sim/clock", self._clock_view)
        app.router.add_post("/_sim/clock", self._clock_set)
        app.router.add_get("/_sim/faults", self._faults_view)
        app.router.add_post("/_sim/faults", self._faults_set)
        return app

    # -- instrumentation -----------------------------------------------------------------------
    def stats(self, shop_slug: str) -> dict[str, Any]:
        """A snapshot: requests, in_flight, max_in_flight, not_modified, statuses,
        min_interval_ms and request_starts (time.monotonic() seconds) for one shop."""
        with self._lock:
            st = self._stats.get(shop_slug) or _ShopStats()
            return st.snapshot()

    def all_stats(self, with_starts: bool = False) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {k: v.snapshot(with_starts) for k, v in sorted(self._stats.items())}

    def reset_stats(self, shop_slug: str | None = None) -> None:
        with self._lock:
            if shop_slug is None:
                self._stats.clear()
            else:
                self._stats.pop(shop_slug, None)

    @contextmanager
    def _track(self, slugs: Iterable[str]) -> Iterator[list[int]]:
        """Count a request against shops; yields a one-element list to receive the status."""
        slugs = list(slugs)
        now = time.monotonic()
        with self._lock:
            for s in slugs:
                st = self._stats.get(s)
                if st is None:
                    st = self._stats[s] = _ShopStats()
                st.requests += 1
                st.in_flight += 1
                if st.in_flight > st.max_in_flight:
                    st.max_in_flight = st.in_flight
                st.starts.append(now)
        status = [500]
        try:
            yield status
        finally:
            with self._lock:
                for s in slugs:
                    st = self._stats[s]
                    st.in_flight -= 1
                    st.statuses[status[0]] += 1
                    if status[0] == 304:
                        st.not_modified += 1

    # -- faults --------------------------------------------------------------------------------
    def _install_scripted_faults(self) -> None:
        for shop in self.scenario.shops:
            if shop.faults:
                self._faults[("shop", shop.slug)] = [_FaultState(f) for f in shop.faults]
        for key, faults in self.scenario.offer_faults.items():
            if faults:
                self._faults[("offer", key)] = [_FaultState(f) for f in faults]

    def set_faults(
        self,
        *,
        shop: str | None = None,
        offer: str | None = None,
        faults: Iterable[Fault] = (),
    ) -> None:
        """Replace the faults of one shop or one offer (an empty list clears them)."""
        if (shop is None) == (offer is None):
            raise ValueError("give exactly one of shop= or offer=")
        target = ("shop", shop) if shop is not None else ("offer", offer)
        states = [_FaultState(f) for f in faults]
        with self._lock:
            if states:
                self._faults[target] = states  # type: ignore[index]
            else:
                self._faults.pop(target, None)  # type: ignore[arg-type]

    def clear_faults(self) -> None:
        """Remove every fault, the scenario's scripted ones included."""
        with self._lock:
            self._faults.clear()

    def faults(self) -> dict[str, list[dict[str, Any]]]:
        with self._lock:
            return {
                f"{kind}:{name}": [dict(s.fault.to_json(), seen=s.seen) for s in states]
                for (kind, name), states in self._faults.items()
            }

    def _hits(self, shops: Iterable[str], offer: str | None = None) -> list[Fault]:
        targets = [("offer", offer)] if offer is not None else []
        targets += [("shop", s) for s in shops]
        out: list[Fault] = []
        if not self._faults:
            return out
        with self._lock:
            for t in targets:
                for st in self._faults.get(t, ()):  # type: ignore[call-overload]
                    if st.hit():
                        out.append(st.fault)
        return out

    async def _fault_response(self, hits: list[Fault]) -> web.StreamResponse | None:
        """Apply SLOW delays; return an error / bot-wall response if a fault demands one."""
        for f in hits:
            if f.kind is FaultKind.SLOW and f.delay_ms > 0:
                await asyncio.sleep(f.delay_ms / 1000)
        for f in hits:
            if f.kind is FaultKind.RATE_LIMIT:
                return web.Response(
                    status=429,
                    headers={"Retry-After": str(f.retry_after)},
                    content_type="application/json",
                    body=b'{"message":"too many requests"}',
                )
            if f.kind is FaultKind.SERVER_ERROR_BURST:
                status = f.status or 503
                return web.Response(
                    status=status,
                    content_type="text/html",
                    body=f"<html><body><h1>{status}</h1><p>Serviço temporariamente "
                    f"indisponível</p></body></html>".encode(),
                )
            if f.kind is FaultKind.BOT_WALL:
                return web.Response(
                    status=f.status or 200,
                    content_type="text/html",
                    charset="utf-8",
                    body=bot_wall_page(),
                    headers={"Cache-Control": "no-store"},
                )
        return None

    # -- encoding ------------------------------------------------------------------------------
    @staticmethod
    def _encode(body: bytes, encoding: str | None) -> bytes:
        if encoding == "gzip":
            c = zlib.compressobj(1, zlib.DEFLATED, 31)
            return c.compress(body) + c.flush()
        if encoding == "br":
            return brotli.compress(body, quality=1)
        return body

    # -- handlers ------------------------------------------------------------------------------
    async def _page(self, request: web.Request) -> web.StreamResponse:
        slug = request.match_info["shop"]
        key = request.match_info["offer"]
        sc = self.scenario
        offer = sc.offer_by_key.get(key)
        if offer is None or offer.shop_slug != slug:
            return web.Response(status=404, text="Página não encontrada")
        with self._track((slug,)) as status:
            resp = await self._page_response(request, offer)
            status[0] = resp.status
            return resp

    def _page_etag(self, offer: SimOffer, st_key: tuple[Any, ...], flags: str) -> str:
        shop = self.scenario.shop_by_slug[offer.shop_slug]
        raw = f"{RENDER_VERSION}|{offer.key}|{shop.page_variant}|{shop.jsonld_style}|{st_key}|{flags}"
        return '"' + hashlib.blake2b(raw.encode(), digest_size=10).hexdigest() + '"'

    async def _page_response(self, request: web.Request, offer: SimOffer) -> web.StreamResponse:
        hits = self._hits((offer.shop_slug,), offer.key)
        truncated: Fault | None = None
        malformed = False
        if hits:
            early = await self._fault_response(hits)
            if early is not None:
                return early
            for f in hits:
                if f.kind is FaultKind.TRUNCATED:
                    truncated = f
                elif f.kind is FaultKind.MALFORMED:
                    malformed = True

        st = price_state(offer, self.clock.now())
        flags = ("m" if malformed else "") + ("t" if truncated else "")
        etag = self._page_etag(offer, st.content_key(), flags)
        last_modified = format_datetime(st.since, usegmt=True)
        headers = {
            "ETag": etag,
            "Last-Modified": last_modified,
            "Cache-Control": "no-cache",
            "Vary": "Accept-Encoding",
        }
        if not truncated:
            inm = request.headers.get("If-None-Match")
            if inm is not None:
                if _etag_matches(inm, etag):
                    return web.Response(status=304, headers=headers)
            else:
                ims = request.headers.get("If-Modified-Since")
                if ims:
                    try:
                        ims_dt = parsedate_to_datetime(ims)
                    except (TypeError, ValueError):
                        ims_dt = None
                    if ims_dt is not None and ims_dt.tzinfo is not None and st.since <= ims_dt:
                        return web.Response(status=304, headers=headers)

        url = Scenario.page_url(f"{request.scheme}://{request.host}", offer)
        parts = self.renderer.render(offer, st, url, malformed=malformed)
        encoding = _choose_encoding(request)
        headers["Content-Type"] = "text/html; charset=utf-8"
        if truncated is not None:
            full = parts.body()
            cut = truncate_page(full)
            if truncated.abort_connection:
                return await self._abort_midway(request, full, cut, headers)
            body = self._encode(cut, encoding)
        elif encoding == "gzip":
            body = parts.gzip()
        elif encoding == "br":
            body = brotli.compress(parts.body(), quality=1)
        else:
            body = parts.body()
        if encoding:
            headers["Content-Encoding"] = encoding
        return web.Response(body=body, headers=headers)

    async def _abort_midway(
        self, request: web.Request, full: bytes, cut: bytes, headers: dict[str, str]
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers=headers)
        resp.content_length = len(full)
        await resp.prepare(request)
        await resp.write(cut)
        transport = request.transport
        if transport is not None:
            transport.close()
        return resp

    async def _feed(self, request: web.Request) -> web.StreamResponse:
        slug = request.match_info["shop"]
        fmt = _FEED_EXT.get(request.match_info["ext"])
        shop = self.scenario.shop_by_slug.get(slug)
        if shop is None or fmt is None:
            return web.Response(status=404, text="not found")
        with self._track((slug,)) as status:
            hits = self._hits((slug,))
            malformed = any(f.kind is FaultKind.MALFORMED for f in hits)
            truncated = any(f.kind is FaultKind.TRUNCATED for f in hits)
            if hits:
                early = await self._fault_response(hits)
                if early is not None:
                    status[0] = early.status
                    return early
            now = self.clock.now()
            hour = now.replace(minute=0, second=0, microsecond=0)
            # states change only at whole hours and the catalog is immutable
            etag = f'W/"feed-{slug}-{fmt}-{int(hour.timestamp())}{"-m" if malformed else ""}"'
            inm = request.headers.get("If-None-Match")
            if inm is not None and not truncated and _etag_matches(inm, etag[2:]):
                status[0] = 304
                return web.Response(status=304, headers={"ETag": etag})
            offers = self.scenario.offers_of_shop(slug)
            resp = web.StreamResponse(
                headers={
                    "Content-Type": FEED_CONTENT_TYPES[fmt],
                    "ETag": etag,
                    "Last-Modified": format_datetime(hour, usegmt=True),
                    "Vary": "Accept-Encoding",
                }
            )
            encoding = _choose_encoding(request)
            comp: Any = None
            if encoding == "gzip":
                comp = zlib.compressobj(1, zlib.DEFLATED, 31)
            elif encoding == "br":
                comp = brotli.Compressor(quality=1)
            if encoding:
                resp.headers["Content-Encoding"] = encoding
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            status[0] = 200
            base_url = f"{request.scheme}://{request.host}"
            chunks = feed_chunks(
                self.scenario, shop, offers, now, base_url, fmt, malformed=malformed,
                truncate_after=(len(offers) // 2) if truncated else None,
            )
            for chunk in chunks:
                if comp is None:
                    await resp.write(chunk)
                elif encoding == "gzip":
                    data = comp.compress(chunk)
                    if data:
                        await resp.write(data)
                else:
                    data = comp.process(chunk)
                    if data:
                        await resp.write(data)
            if comp is not None:
                tail = comp.flush() if encoding == "gzip" else comp.finish()
                if tail:
                    await resp.write(tail)
            await resp.write_eof()
            return resp

    async def _items(self, request: web.Request) -> web.StreamResponse:
        raw = request.query.get("ids", "")
        ids = [i.strip() for i in raw.split(",") if i.strip()]
        by_ext = self.scenario.offer_by_external_id
        shops = sorted({by_ext[i].shop_slug for i in ids if i in by_ext}) or [API_SHOP]
        with self._track(shops) as status:
            if not ids or len(ids) > ITEMS_API_MAX_IDS:
                status[0] = 400
                msg = "ids is required" if not ids else (
                    f"too many ids: {len(ids)} given, at most {ITEMS_API_MAX_IDS} allowed")
                return web.json_response(
                    {"message": msg, "error": "bad_request", "status": 400, "cause": []},
                    status=400,
                )
            hits = self._hits(shops)
            malformed = any(f.kind is FaultKind.MALFORMED for f in hits)
            truncated = any(f.kind is FaultKind.TRUNCATED for f in hits)
            if hits:
                early = await self._fault_response(hits)
                if early is not None:
                    status[0] = early.status
                    return early
            body = items_api_body(self.scenario, ids, self.clock.now(), malformed=malformed)
            if truncated:
                body = body[: len(body) // 2]
            headers = {"Content-Type": "application/json; charset=utf-8"}
            encoding = _choose_encoding(request) if len(body) > 1024 else None
            if encoding:
                body = self._encode(body, encoding)
                headers["Content-Encoding"] = encoding
            status[0] = 200
            return web.Response(body=body, headers=headers)

    async def _robots(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=_ROBOTS, content_type="text/plain")

    async def _stats_view(self, request: web.Request) -> web.StreamResponse:
        starts = request.query.get("starts") in ("1", "true", "yes")
        shop = request.query.get("shop")
        if shop:
            with self._lock:
                snap = (self._stats.get(shop) or _ShopStats()).snapshot(starts)
            return web.json_response({"shops": {shop: snap}})
        return web.json_response({"shops": self.all_stats(starts)})

    async def _clock_view(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"now": self.clock.now().isoformat(), "fixed": self.clock.fixed})

    async def _clock_set(self, request: web.Request) -> web.StreamResponse:
        try:
            data = await request.json()
            if data.get("reset"):
                self.clock.reset()
            elif "at" in data:
                at = datetime.fromisoformat(str(data["at"]).replace("Z", "+00:00"))
                self.clock.set(at)
            elif "advance_hours" in data:
                self.clock.advance(hours=float(data["advance_hours"]))
            else:
                raise ValueError("give at, advance_hours or reset")
        except (ValueError, TypeError, AttributeError, json.JSONDecodeError) as e:
            return web.json_response({"error": str(e)}, status=400)
        return await self._clock_view(request)

    async def _faults_view(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.faults())

    async def _faults_set(self, request: web.Request) -> web.StreamResponse:
        try:
            data = await request.json()
            if data.get("clear"):
                self.clear_faults()
            else:
                faults = [Fault.from_json(f) for f in data.get("faults", [])]
                self.set_faults(shop=data.get("shop"), offer=data.get("offer"), faults=faults)
        except (ValueError, TypeError, KeyError, AttributeError, json.JSONDecodeError) as e:
            return web.json_response({"error": str(e)}, status=400)
        return web.json_response(self.faults())


def make_app(scenario: Scenario, clock: SimClock | None = None) -> web.Application:
    """The aiohttp app for use inside an existing event loop (e.g. aiohttp test utilities)."""
    return SimulatorServer(scenario, clock=clock).app()


def run_forever(scenario: Scenario, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve `scenario` in the foreground until interrupted (the CLI / `make demo`)."""
    server = SimulatorServer(scenario, host=host, port=port)
    print(f"SmartBuy simulator '{scenario.name}' on http://{host}:{port}", flush=True)
    web.run_app(server.app(), host=host, port=port, access_log=None, print=None, backlog=1024)


def main(argv: list[str] | None = None) -> None:
    """python -m smartbuy_pipeline.simulator.server [--host H] [--port P] [--scale N] [--seed S]"""
    import argparse

    from smartbuy_pipeline.simulator.scenarios import demo_scenario, scale_scenario

    ap = argparse.ArgumentParser(description="SmartBuy simulated marketplace")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--scale", type=int, default=0, help="serve scale_scenario(N) instead of demo")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    scenario = scale_scenario(args.scale, args.seed) if args.scale else demo_scenario()
    run_forever(scenario, args.host, args.port)


if __name__ == "__main__":
    main()
