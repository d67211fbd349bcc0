"""Past observations of the simulated marketplace, for the demo.

`make demo` cannot wait 120 days to have a price history worth scoring, so it loads the
simulator's scripted past (the same `price_state` trajectories the server serves) as
observations marked `run_key = 'simulated-history'` and `details.method = 'simulated'`. Live
observations after that come from real HTTP fetches.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta

from smartbuy_pipeline.simulator.scenarios import Scenario, price_state

SIMULATED_RUN_KEY = "simulated-history"


def history_rows(scenario: Scenario, offer_ids: Mapping[str, int], start: datetime, end: datetime,
                 step: timedelta = timedelta(hours=6)) -> Iterator[tuple]:
    """Rows in `db.prices.PRICE_HISTORY_COLUMNS` order for every offer key in `offer_ids`."""
    details = json.dumps({"method": "simulated"})
    for key, offer_id in offer_ids.items():
        offer = scenario.offer(key)
        kind = scenario.shop_of(offer).source_kind
        at = start
        while at < end:
            st = price_state(offer, at)
            yield (offer_id, at, st.price, st.currency, st.reference_price, st.freight,
                   st.availability.value, "accepted", kind, details, SIMULATED_RUN_KEY)
            at += step
