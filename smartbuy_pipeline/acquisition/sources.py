"""Source adapters: from offers' source locators to validated observations or typed failures.

One entry point, `acquire(targets, shops, engine=..., pool=...)`, yields an `Acquired` per
offer, as results arrive:
- page offers: one GET per offer; extraction and validation run in the parse pool (CPU-bound);
- merchant_feed offers: one download per shop per run, streamed to a temporary file, then
  stream-parsed AND validated in the pool (`parse_and_validate_feed`); offers are matched by item
  id (the offer's locator). Usual observations come back as small atomic tuples and are rebuilt
  one at a time just before they are queued (cheap to pickle, short-lived in this process);
- marketplace_api offers: the items API in batches of 20 ids per request.

A failed fetch is never a price: it is a `FetchFailure` with its reason, for every offer it
concerns. A 304 is `NotModified` (no parsing, no new observation).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from smartbuy_pipeline.acquisition.http import FetchEngine, FetchRequest, FetchResult, ParsePool
from smartbuy_pipeline.acquisition.politeness import ShopPolicy
from smartbuy_pipeline.domain.extraction import extract_page
from smartbuy_pipeline.domain.offer_state import OfferState
from smartbuy_pipeline.domain.feeds import FeedItem, FeedRowError, iter_feed_items
from smartbuy_pipeline.domain.items_api import parse_items_response
from smartbuy_pipeline.domain.types import (
    Availability,
    Extracted,
    ExtractionError,
    FailureReason,
    FetchFailure,
    Money,
    Observation,
    ObservationStatus,
    PriceKind,
    SourceKind,
)
from smartbuy_pipeline.domain.validation import validate_observation

ITEMS_PER_API_CALL = 20


@dataclass(frozen=True, slots=True)
class ShopTarget:
    """What acquisition needs to know of a shop (read from `shops`)."""

    policy: ShopPolicy
    currency: str = "BRL"
    locale: str = "pt_BR"
    price_kind: PriceKind | None = None
    feed_url: str | None = None
    api_base_url: str | None = None
    feed_etag: str | None = None
    feed_last_modified: str | None = None

    @property
    def shop_id(self) -> int:
        return self.policy.shop_id


@dataclass(frozen=True, slots=True)
class OfferTarget:
    """One offer to refresh (read from `offers`)."""

    offer_id: int
    shop_id: int
    source_kind: SourceKind
    locator: str
    price_kind: PriceKind | None = None
    etag: str | None = None
    last_modified: str | None = None
    last_good_price: Money | None = None
    quarantined_price: Money | None = None
    state: OfferState | None = None  # the offer's published state, to skip writes that change nothing
    check_row: str | None = None  # its offer_checks row's address (ctid) as read: a hint for the write path


@dataclass(frozen=True, slots=True)
class NotModified:
    offer_id: int
    observed_at: datetime


@dataclass(frozen=True, slots=True)
class Acquired:
    """The outcome for one offer, plus what the pipeline stores for the next conditional GET."""

    offer_id: int
    outcome: Observation | FetchFailure | NotModified
    etag: str | None = None
    last_modified: str | None = None
    latency_s: float | None = None


@dataclass(frozen=True, slots=True)
class FeedState:
    """A shop's feed validators after this run (stored on `shops` for the next run)."""

    shop_id: int
    etag: str | None
    last_modified: str | None


@dataclass
class FeedCache:
    """Feeds downloaded during one tracking run, by shop, so each is fetched once per run even
    when the shop's offers are spread over many batches. The caller owns `directory`."""

    directory: Path
    downloads: dict[int, FetchResult] = field(default_factory=dict)

    def path(self, shop_id: int) -> Path:
        return self.directory / f"feed-{shop_id}"


def _validate(target: OfferTarget, shop: ShopTarget, extracted: Extracted, observed_at: datetime,
              source_kind: SourceKind) -> Observation | FetchFailure:
    return validate_observation(
        target.offer_id, extracted, observed_at=observed_at, source_kind=source_kind,
        expected_currency=shop.currency, price_kind=target.price_kind or shop.price_kind,
        last_good_price=target.last_good_price, quarantined_price=target.quarantined_price,
    )


def parse_page(body: bytes, target: OfferTarget, shop: ShopTarget, observed_at: datetime) -> Observation | FetchFailure:
    """Extract and validate one page. Top-level so the parse pool can pickle it."""
    try:
        extracted = extract_page(body, locale=shop.locale, default_currency=shop.currency)
    except ExtractionError as exc:
        return FetchFailure(target.offer_id, exc.reason, f"{target.locator}: {exc.detail}", observed_at)
    return _validate(target, shop, extracted, observed_at, SourceKind.PAGE)


# One feed offer as sent to the pool: (offer id, item id, price kind, last good price, quarantined).
FeedOffer = tuple[int, str, PriceKind | None, Money | None, Money | None]
# A usual feed observation as plain values, cheap to pickle (see `_pack_feed_outcome`):
# (observed_at, price amount, price currency, reference amount, reference currency, freight amount,
#  freight currency, availability, status, method, price kind).
PackedObservation = tuple
_AVAILABILITY_BY_VALUE = {a.value: a for a in Availability}
_STATUS_BY_VALUE = {s.value: s for s in ObservationStatus}


def _pack_feed_outcome(outcome: Observation | FetchFailure) -> PackedObservation | Observation | FetchFailure:
    """The usual feed Observation (one chosen price, no other quote, no quarantine note) packed;
    anything else (failures, sale prices with their reference quote, quarantine) as itself."""
    if type(outcome) is not Observation or outcome.source_kind is not SourceKind.MERCHANT_FEED:
        return outcome
    details = outcome.details
    if len(details) != 3 or details.get("quotes", True) != [] \
            or type(details.get("method")) is not str or type(details.get("price_kind")) is not str:
        return outcome
    price, reference, freight = outcome.price, outcome.reference_price, outcome.freight
    return (
        outcome.observed_at,
        None if price is None else price.amount, None if price is None else price.currency,
        None if reference is None else reference.amount, None if reference is None else reference.currency,
        None if freight is None else freight.amount, None if freight is None else freight.currency,
        outcome.availability.value, outcome.status.value, details["method"], details["price_kind"],
    )


def _unpack_feed_outcome(offer_id: int, packed: PackedObservation | Observation | FetchFailure,
                         money: dict[tuple, Money]) -> Observation | FetchFailure:
    """Inverse of `_pack_feed_outcome`; `money` caches the Money instances (immutable: shared)."""
    if type(packed) is not tuple:
        return packed
    at, pa, pc, ra, rc, fa, fc, availability, status, method, price_kind = packed
    price = reference = freight = None
    if pa is not None:
        price = money.get((pa, pc)) or money.setdefault((pa, pc), Money(pa, pc))
    if ra is not None:
        reference = money.get((ra, rc)) or money.setdefault((ra, rc), Money(ra, rc))
    if fa is not None:
        freight = money.get((fa, fc)) or money.setdefault((fa, fc), Money(fa, fc))
    return Observation(
        offer_id, at, price, reference, freight, _AVAILABILITY_BY_VALUE[availability],
        _STATUS_BY_VALUE[status], SourceKind.MERCHANT_FEED,
        {"method": method, "price_kind": price_kind, "quotes": []},
    )


def parse_and_validate_feed(path: str, offers: list[FeedOffer], currency: str, feed_url: str | None,
                            now: datetime) -> list[PackedObservation | Observation | FetchFailure]:
    """Pool side of one merchant feed: stream-parse it, keep the offers' items, validate each.

    Returns one outcome per entry of `offers`, in the same order (usual observations packed by
    `_pack_feed_outcome`). Parsing AND validation run in the worker: the `Extracted`
    intermediates never cross the process boundary, only small atomic tuples do.
    """
    items: dict[str, Extracted] = {}
    row_errors: dict[str, FeedRowError] = {}
    stream_error: FeedRowError | None = None
    wanted = {offer[1] for offer in offers}
    for entry in iter_feed_items(path, wanted_ids=wanted, now=now, default_currency=currency):
        if isinstance(entry, FeedItem):
            items[entry.item_id] = entry.extracted
        elif entry.item_id:
            row_errors[entry.item_id] = entry
        elif stream_error is None:
            stream_error = entry
    outcomes: list[Observation | FetchFailure] = []
    append = outcomes.append
    for offer_id, locator, price_kind, last_good, quarantined in offers:
        extracted = items.get(locator)
        if extracted is not None:
            append(_pack_feed_outcome(validate_observation(
                offer_id, extracted, observed_at=now, source_kind=SourceKind.MERCHANT_FEED,
                expected_currency=currency, price_kind=price_kind, last_good_price=last_good,
                quarantined_price=quarantined,
            )))
        elif locator in row_errors:
            e = row_errors[locator]
            append(FetchFailure(offer_id, e.reason, f"feed {feed_url} row {e.line_or_index}: {e.detail}", now))
        elif stream_error is not None:
            append(FetchFailure(offer_id, stream_error.reason,
                                f"feed {feed_url}: {stream_error.detail} (item {locator} not reached)", now))
        else:
            append(FetchFailure(offer_id, FailureReason.ITEM_MISSING,
                                f"feed {feed_url} does not list item {locator}", now))
    return outcomes


def _failure(target: OfferTarget, result: FetchResult, observed_at: datetime) -> FetchFailure:
    return FetchFailure(target.offer_id, result.failure or FailureReason.CONNECTION_ERROR,
                        f"{result.url}: {result.detail}", observed_at)


async def acquire(
    targets: Iterable[OfferTarget],
    shops: Mapping[int, ShopTarget],
    *,
    engine: FetchEngine,
    pool: ParsePool,
    now: datetime | None = None,
    feed_states: list[FeedState] | None = None,
    feed_cache: FeedCache | None = None,
) -> AsyncIterator[Acquired]:
    """Yield one `Acquired` per target. `feed_states`, when given, receives feed validators;
    `feed_cache`, when given, keeps each shop's feed for the later batches of the same run."""
    now = now or datetime.now(timezone.utc)
    by_kind: dict[SourceKind, list[OfferTarget]] = defaultdict(list)
    for t in targets:
        by_kind[SourceKind(t.source_kind)].append(t)

    queue: asyncio.Queue[Acquired | None] = asyncio.Queue(maxsize=10_000)
    producers = [
        _pages(by_kind[SourceKind.PAGE], shops, engine, pool, now, queue),
        _feeds(by_kind[SourceKind.MERCHANT_FEED], shops, engine, pool, now, queue, feed_states, feed_cache),
        _items_api(by_kind[SourceKind.MARKETPLACE_API], shops, engine, now, queue),
    ]
    tasks = [asyncio.create_task(p) for p in producers]

    async def close_when_done() -> None:
        try:
            await asyncio.gather(*tasks)
        finally:
            await queue.put(None)

    closer = asyncio.create_task(close_when_done())
    try:
        while (item := await queue.get()) is not None:
            yield item
        await closer  # re-raise a producer's bug instead of silently dropping offers
    finally:
        for t in (*tasks, closer):
            t.cancel()
        await asyncio.gather(*tasks, closer, return_exceptions=True)


async def _pages(targets: list[OfferTarget], shops: Mapping[int, ShopTarget], engine: FetchEngine,
                 pool: ParsePool, now: datetime, out: asyncio.Queue) -> None:
    if not targets:
        return
    by_id = {t.offer_id: t for t in targets}
    requests = (
        FetchRequest(key=t.offer_id, url=t.locator, policy=shops[t.shop_id].policy,
                     etag=t.etag, last_modified=t.last_modified, kind="page")
        for t in targets
    )
    # Parsing overlaps fetching: at most 4 pages per pool worker wait for a parser at a time.
    parsing = asyncio.Semaphore(pool.max_workers * 4)
    pending: set[asyncio.Task] = set()

    async def parse(target: OfferTarget, result: FetchResult) -> None:
        try:
            outcome = await pool.run(parse_page, result.body, target, shops[target.shop_id], now)
        finally:
            parsing.release()
        await out.put(Acquired(target.offer_id, outcome, result.etag, result.last_modified, result.elapsed_s))

    async for result in engine.fetch_all(requests):
        target = by_id[result.key]
        if result.not_modified:
            await out.put(Acquired(target.offer_id, NotModified(target.offer_id, now),
                                   result.etag or target.etag, result.last_modified or target.last_modified,
                                   result.elapsed_s))
        elif not result.ok:
            await out.put(Acquired(target.offer_id, _failure(target, result, now), target.etag,
                                   target.last_modified, result.elapsed_s))
        else:
            await parsing.acquire()
            task = asyncio.create_task(parse(target, result))
            pending.add(task)
            task.add_done_callback(pending.discard)
    if pending:
        await asyncio.gather(*pending)


async def _feeds(targets: list[OfferTarget], shops: Mapping[int, ShopTarget], engine: FetchEngine,
                 pool: ParsePool, now: datetime, out: asyncio.Queue, feed_states: list[FeedState] | None,
                 feed_cache: FeedCache | None) -> None:
    by_shop: dict[int, list[OfferTarget]] = defaultdict(list)
    for t in targets:
        by_shop[t.shop_id].append(t)
    money: dict[tuple, Money] = {}  # Money instances shared by this run's feed observations
    await asyncio.gather(*(
        _one_feed(shops[shop_id], offers, engine, pool, now, out, feed_states, money, feed_cache)
        for shop_id, offers in by_shop.items()
    ))


async def _one_feed(shop: ShopTarget, offers: list[OfferTarget], engine: FetchEngine, pool: ParsePool,
                    now: datetime, out: asyncio.Queue, feed_states: list[FeedState] | None,
                    money: dict[tuple, Money] | None = None, feed_cache: FeedCache | None = None) -> None:
    if not shop.feed_url:
        for t in offers:
            await out.put(Acquired(t.offer_id, FetchFailure(
                t.offer_id, FailureReason.ITEM_MISSING,
                f"shop {shop.shop_id} has merchant_feed offers but no feed_url", now)))
        return
    # A 304 only proves the feed is the version we last downloaded; it says nothing of offers
    # that were never read from that version (e.g. an earlier batch of the run held other items).
    # So the request is conditional only when every offer here carries the shop's feed version.
    version = (shop.feed_etag, shop.feed_last_modified)
    conditional = version != (None, None) and all((t.etag, t.last_modified) == version for t in offers)
    with contextlib.ExitStack() as stack:
        if feed_cache is not None and shop.shop_id in feed_cache.downloads:
            # Already downloaded in this run (an earlier batch): parse the same file again.
            result = feed_cache.downloads[shop.shop_id]
            path = feed_cache.path(shop.shop_id)
        else:
            path = (feed_cache.path(shop.shop_id) if feed_cache is not None
                    else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="smartbuy-feed-"))) / "feed")
            result = await engine.stream_to_file(
                FetchRequest(key=("feed", shop.shop_id), url=shop.feed_url, policy=shop.policy,
                             etag=shop.feed_etag if conditional else None,
                             last_modified=shop.feed_last_modified if conditional else None, kind="feed"),
                path,
            )
            if feed_cache is not None and result.ok:
                feed_cache.downloads[shop.shop_id] = result
        if feed_states is not None and (result.ok or result.not_modified):
            feed_states.append(FeedState(shop.shop_id, result.etag or shop.feed_etag,
                                         result.last_modified or shop.feed_last_modified))
        if result.not_modified:
            for t in offers:
                await out.put(Acquired(t.offer_id, NotModified(t.offer_id, now), shop.feed_etag,
                                       shop.feed_last_modified, result.elapsed_s))
            return
        if not result.ok:
            for t in offers:
                await out.put(Acquired(t.offer_id, FetchFailure(
                    t.offer_id, result.failure or FailureReason.CONNECTION_ERROR,
                    f"feed {result.url}: {result.detail}", now), latency_s=result.elapsed_s))
            return
        spec = [(t.offer_id, t.locator, t.price_kind or shop.price_kind, t.last_good_price, t.quarantined_price)
                for t in offers]
        outcomes = await pool.run(parse_and_validate_feed, str(path), spec, shop.currency, shop.feed_url, now)
    latency = result.elapsed_s
    if len(outcomes) != len(offers):
        raise RuntimeError(f"feed {shop.feed_url}: {len(outcomes)} outcomes for {len(offers)} offers")
    # Observations are rebuilt one at a time, just before queueing, and the consumer gets a turn
    # every 64: results flow instead of piling up (short-lived objects, little GC work).
    if money is None:
        money = {}
    for i, (t, packed) in enumerate(zip(offers, outcomes), start=1):
        # Each offer remembers the feed version it was read from (see `conditional` above).
        await out.put(Acquired(t.offer_id, _unpack_feed_outcome(t.offer_id, packed, money), result.etag,
                               result.last_modified, latency))
        if not i % 64:
            await asyncio.sleep(0)


async def _items_api(targets: list[OfferTarget], shops: Mapping[int, ShopTarget], engine: FetchEngine,
                     now: datetime, out: asyncio.Queue) -> None:
    by_shop: dict[int, list[OfferTarget]] = defaultdict(list)
    for t in targets:
        by_shop[t.shop_id].append(t)
    batches: dict[tuple, list[OfferTarget]] = {}
    requests: list[FetchRequest] = []
    for shop_id, offers in by_shop.items():
        shop = shops[shop_id]
        if not shop.api_base_url:
            for t in offers:
                await out.put(Acquired(t.offer_id, FetchFailure(
                    t.offer_id, FailureReason.ITEM_MISSING,
                    f"shop {shop_id} has marketplace_api offers but no api_base_url", now)))
            continue
        for start in range(0, len(offers), ITEMS_PER_API_CALL):
            key = ("items", shop_id, start)
            batch = offers[start:start + ITEMS_PER_API_CALL]
            batches[key] = batch
            url = f"{shop.api_base_url.rstrip('/')}/items?ids={','.join(quote(t.locator, safe='') for t in batch)}"
            requests.append(FetchRequest(key=key, url=url, policy=shop.policy, kind="api"))
    async for result in engine.fetch_all(requests):
        batch = batches[result.key]
        shop = shops[batch[0].shop_id]
        if not result.ok:
            for t in batch:
                await out.put(Acquired(t.offer_id, _failure(t, result, now), latency_s=result.elapsed_s))
            continue
        try:
            parsed = parse_items_response(result.body)
        except ExtractionError as exc:
            for t in batch:
                await out.put(Acquired(t.offer_id, FetchFailure(
                    t.offer_id, exc.reason, f"{result.url}: {exc.detail}", now), latency_s=result.elapsed_s))
            continue
        for t in batch:
            item = parsed.get(t.locator)
            if item is None:
                outcome = FetchFailure(t.offer_id, FailureReason.ITEM_MISSING,
                                       f"{result.url} did not return item {t.locator}", now)
            elif isinstance(item, ExtractionError):
                outcome = FetchFailure(t.offer_id, item.reason, f"item {t.locator}: {item.detail}", now)
            else:
                outcome = _validate(t, shop, item, now, SourceKind.MARKETPLACE_API)
            await out.put(Acquired(t.offer_id, outcome, latency_s=result.elapsed_s))
