"""The simulated marketplace: scripted price trajectories, realistic pages, feeds and an API."""

from smartbuy_pipeline.simulator.pages import (
    ITEMS_API_MAX_IDS,
    PageParts,
    PageRenderer,
    bot_wall_page,
    feed_chunks,
    items_api_body,
    truncate_page,
)
from smartbuy_pipeline.simulator.scenarios import (
    BLACK_FRIDAY_2026,
    DEMO_BF_FAKE,
    DEMO_BF_FAKE_FEED,
    DEMO_FLAPPING,
    DEMO_GENUINE_DROP,
    DEMO_GENUINE_DROP_AT,
    DEMO_SCAM,
    SIM_EPOCH,
    Fault,
    FaultKind,
    PriceState,
    Scenario,
    SimOffer,
    SimProduct,
    SimShop,
    TrajectoryKind,
    demo_scenario,
    format_brl,
    price_state,
    scale_scenario,
)

_SERVER_NAMES = frozenset({"SimClock", "SimulatorServer", "make_app", "run_forever"})


def __getattr__(name: str) -> object:
    # Lazy: importing scenarios does not pull in aiohttp, and
    # `python -m smartbuy_pipeline.simulator.server` runs without a double import.
    if name in _SERVER_NAMES:
        from smartbuy_pipeline.simulator import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BLACK_FRIDAY_2026",
    "DEMO_BF_FAKE",
    "DEMO_BF_FAKE_FEED",
    "DEMO_FLAPPING",
    "DEMO_GENUINE_DROP",
    "DEMO_GENUINE_DROP_AT",
    "DEMO_SCAM",
    "ITEMS_API_MAX_IDS",
    "SIM_EPOCH",
    "Fault",
    "FaultKind",
    "PageParts",
    "PageRenderer",
    "PriceState",
    "Scenario",
    "SimClock",
    "SimOffer",
    "SimProduct",
    "SimShop",
    "SimulatorServer",
    "TrajectoryKind",
    "bot_wall_page",
    "demo_scenario",
    "feed_chunks",
    "format_brl",
    "items_api_body",
    "make_app",
    "price_state",
    "run_forever",
    "scale_scenario",
    "truncate_page",
]
