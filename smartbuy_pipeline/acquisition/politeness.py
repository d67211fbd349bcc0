"""Politeness: per-shop concurrency and start spacing, plus a global concurrency cap.

Rules enforced by `PolitenessLimiter.slot(policy)`:
- at most `policy.max_concurrent_requests` requests of one shop in flight;
- at least `policy.min_interval_s` between the STARTS of two requests to one shop
  (a start = the moment the request is allowed onto the network);
- at most `global_concurrency` requests in flight over all shops.

Acquisition order (per request): shop semaphore -> shop start lock -> sleep until the shop's
next allowed start -> global semaphore -> record the start -> release the start lock.
Holding the per-shop start lock while waiting for the global semaphore means a later request
of the same shop can never overtake an earlier one and start too soon after it, while no global
slot is held during the interval sleep (a slow shop cannot starve the others of global slots).

`defer(shop_id, seconds)` pushes a shop's next allowed start (used for Retry-After, so one 429
slows every request to that shop, not only the one that got it).

asyncio primitives only: one limiter per event loop / fetch run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

__all__ = ["PolitenessLimiter", "ShopPolicy"]


@dataclass(frozen=True, slots=True)
class ShopPolicy:
    shop_id: int
    max_concurrent_requests: int = 2
    min_interval_s: float = 1.0
    allow_private_network: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.max_concurrent_requests, bool) or not isinstance(self.max_concurrent_requests, int) or self.max_concurrent_requests < 1:
            raise ValueError(f"ShopPolicy.max_concurrent_requests must be an int >= 1, got {self.max_concurrent_requests!r}")
        if isinstance(self.min_interval_s, bool) or not isinstance(self.min_interval_s, (int, float)) or not 0 <= self.min_interval_s < 3600:
            raise ValueError(f"ShopPolicy.min_interval_s must be a number in [0, 3600), got {self.min_interval_s!r}")


class _ShopState:
    __slots__ = ("sem", "start_lock", "next_start", "concurrency", "interval")

    def __init__(self, concurrency: int, interval: float) -> None:
        self.sem = asyncio.Semaphore(concurrency)
        self.start_lock = asyncio.Lock()
        self.next_start = 0.0
        self.concurrency = concurrency
        self.interval = interval


class PolitenessLimiter:
    def __init__(self, global_concurrency: int) -> None:
        if global_concurrency < 1:
            raise ValueError(f"global_concurrency must be >= 1, got {global_concurrency!r}")
        self._global = asyncio.Semaphore(global_concurrency)
        self._shops: dict[int, _ShopState] = {}

    def _state(self, policy: ShopPolicy) -> _ShopState:
        st = self._shops.get(policy.shop_id)
        if st is None:
            st = _ShopState(policy.max_concurrent_requests, float(policy.min_interval_s))
            self._shops[policy.shop_id] = st
        else:
            # The first policy seen for a shop fixes its concurrency for the run; the interval
            # may change (e.g. an adaptive slowdown) and is applied from the next start.
            st.interval = float(policy.min_interval_s)
        return st

    def defer(self, shop_id: int, seconds: float) -> None:
        """No request of `shop_id` starts within `seconds` from now."""
        st = self._shops.get(shop_id)
        if st is None or seconds <= 0:
            return
        st.next_start = max(st.next_start, asyncio.get_running_loop().time() + seconds)

    @asynccontextmanager
    async def slot(self, policy: ShopPolicy) -> AsyncIterator[None]:
        st = self._state(policy)
        loop = asyncio.get_running_loop()
        async with st.sem:
            async with st.start_lock:
                while True:  # loop: defer() may move next_start while we sleep
                    wait = st.next_start - loop.time()
                    if wait <= 0:
                        break
                    await asyncio.sleep(wait)
                await self._global.acquire()
                st.next_start = loop.time() + st.interval
            try:
                yield
            finally:
                self._global.release()
