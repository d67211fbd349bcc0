"""The batch write path (`db.prices.record_batch`): every outcome's rule, exact figures.

Since 0015 an offer's content lives on `offers` and its per-check bookkeeping (check times,
validators, failures, back-off) on `offer_checks`, one row per offer."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from psycopg import errors

from smartbuy_pipeline.acquisition.sources import Acquired, NotModified
from smartbuy_pipeline.db import prices
from smartbuy_pipeline.domain.gtin import make_gtin13, normalize_gtin
from smartbuy_pipeline.domain.offer_state import OfferState
from smartbuy_pipeline.domain.types import (
    Availability,
    FailureReason,
    FetchFailure,
    Money,
    Observation,
    ObservationStatus,
    SourceKind,
)

AT = datetime(2026, 11, 26, 10, 30, tzinfo=UTC)
BEFORE = AT - timedelta(hours=1)
# The published state every fixture offer starts with (what a check that changes nothing leaves).
STORED = {"price": Decimal("100.00"), "reference_price": Decimal("120.00"), "freight": None, "currency": "BRL",
          "availability": "in_stock", "last_changed_at": BEFORE, "quarantined_price": None}
# The offer_checks row after a successful check at AT.
CHECKED = {"last_checked_at": AT, "last_success_at": AT, "consecutive_failures": 0, "unhealthy_until": None,
           "last_failure_reason": None}
WINDOW = prices.ShardWindow("2026-11-26-10:00", 0, 1, AT)
OFFER_STATE = ("price", "reference_price", "freight", "currency", "availability", "last_changed_at",
               "quarantined_price")  # on offers
CHECK_STATE = ("etag", "last_modified", "last_checked_at", "last_success_at", "consecutive_failures",
               "last_failure_reason", "unhealthy_until")  # on offer_checks (0015)
STATE = OFFER_STATE + CHECK_STATE
UNTOUCHED = datetime(2020, 1, 1, tzinfo=UTC)  # the fixture offers' updated_at


def brl(amount: str) -> Money:
    return Money(Decimal(amount), "BRL")


@pytest.fixture()
def conn(db_url) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url.url, autocommit=True) as c:
        c.execute("select fn_ensure_price_history_partitions('2026-10-01', 3)")
        yield c


@pytest.fixture()
def offers(conn) -> list[int]:
    """Six offers with the same known state: R$ 100.00 (ref 120.00), in stock, checked an hour ago."""
    product = conn.execute("insert into products (gtin, name) values (%s, 'Cafeteira') returning id",
                           (normalize_gtin(make_gtin13("789", 7)),)).fetchone()[0]
    shop = conn.execute("insert into shops (name, domain) values ('Loja', 'loja.example') returning id").fetchone()[0]
    ids = [conn.execute(
        "insert into offers (product_id, shop_id, source_kind, locator, price, reference_price, currency,"
        " availability, last_changed_at, quarantined_price, updated_at)"
        " values (%s, %s, 'page', %s, 100.00, 120.00, 'BRL', 'in_stock', %s, %s, '2020-01-01T00:00:00Z')"
        " returning id",
        (product, shop, f"https://loja.example/p/{i}", BEFORE, Decimal("50.00") if i == 2 else None),
    ).fetchone()[0] for i in range(6)]
    # The insert trigger created each offer's offer_checks row; give it the known check state.
    for i, offer_id in enumerate(ids):
        updated = conn.execute(
            "update offer_checks set etag = '\"old\"', last_modified = 'Mon', last_checked_at = %s,"
            " last_success_at = %s, consecutive_failures = %s, last_failure_reason = %s where offer_id = %s",
            (BEFORE, BEFORE, 4 if i == 5 else 0, "timeout" if i == 5 else None, offer_id))
        assert updated.rowcount == 1
    return ids


def state(conn, offer_id: int) -> dict:
    columns = ", ".join([f"o.{c}" for c in OFFER_STATE] + [f"c.{c}" for c in CHECK_STATE])
    row = conn.execute(f"select {columns} from offers o join offer_checks c on c.offer_id = o.id where o.id = %s",
                       (offer_id,)).fetchone()
    return dict(zip(STATE, row, strict=True))


def observation(offer_id, price, reference=None, *, status=ObservationStatus.ACCEPTED,
                availability=Availability.IN_STOCK, details=None) -> Observation:
    return Observation(offer_id, AT, price, reference, None, availability, status, SourceKind.PAGE,
                       details if details is not None else {"method": "jsonld"})


def test_each_outcome_follows_its_rule(conn, offers):
    changed, same, quarantined, out_of_stock, not_modified, failing = offers
    batch = [
        Acquired(changed, observation(changed, brl("89.90"), brl("120.00")), etag='"new"', last_modified=None),
        Acquired(same, observation(same, brl("100.00"), brl("120.00")), etag='"old"', last_modified="Mon"),
        Acquired(quarantined, observation(quarantined, brl("9.99"), status=ObservationStatus.QUARANTINED,
                                          details={"method": "jsonld", "quarantine": {"reason": "drop"}}),
                 etag='"q"'),
        Acquired(out_of_stock, observation(out_of_stock, None, availability=Availability.OUT_OF_STOCK,
                                           details={"method": "jsonld", "quotes": []})),
        Acquired(not_modified, NotModified(not_modified, AT), etag='"nm"', last_modified="Tue"),
        Acquired(failing, FetchFailure(failing, FailureReason.HTTP_5XX, "503", AT)),
    ]
    with conn.transaction():
        now = conn.execute("select now()").fetchone()[0]
        result = prices.record_batch(conn, batch, window=WINDOW, phase=prices.REST, last_offer_id=failing,
                                     currency_of={o: "BRL" for o in offers})
    assert result.observations == 4
    assert result.counts == Counter({"accepted": 3, "quarantined": 1, "not_modified": 1, "failure": 1,
                                     "failed_http_5xx": 1})
    assert result.offers_changed == 4  # without `current`, every observation writes its offer
    assert state(conn, changed) == {**CHECKED, **STORED, "price": Decimal("89.90"), "last_changed_at": AT,
                                    "etag": '"new"', "last_modified": None}
    assert state(conn, same) == {**CHECKED, **STORED, "etag": '"old"', "last_modified": "Mon"}
    # The published price stays; the suspicious one waits (replacing the one pending before).
    assert state(conn, quarantined) == {**CHECKED, **STORED, "quarantined_price": Decimal("9.99"), "etag": '"q"',
                                        "last_modified": None}
    # Out of stock without a price: the last price and its reference stay, availability changes.
    assert state(conn, out_of_stock) == {**CHECKED, **STORED, "availability": "out_of_stock", "last_changed_at": AT,
                                         "etag": None, "last_modified": None}
    assert state(conn, not_modified) == {**CHECKED, **STORED, "etag": '"nm"', "last_modified": "Tue"}
    # Fifth failure in a row: backed off 2^0 hours; validators and last success kept.
    assert state(conn, failing) == {**STORED, "etag": '"old"', "last_modified": "Mon",
                                    "last_checked_at": AT, "last_success_at": BEFORE,
                                    "consecutive_failures": 5, "last_failure_reason": "http_5xx",
                                    "unhealthy_until": AT + timedelta(hours=1)}
    # The write path sets updated_at itself (the trigger's WHEN clause then skips the function), on
    # the offers of the observations only: a 304 or a failure touches offer_checks alone.
    updated = conn.execute("select id, updated_at from offers order by id").fetchall()
    assert updated == [(changed, now), (same, now), (quarantined, now), (out_of_stock, now),
                       (not_modified, UNTOUCHED), (failing, UNTOUCHED)]
    history = conn.execute("select offer_id, price, currency, reference_price, availability, status, source_kind,"
                           " details, run_key from price_history order by offer_id").fetchall()
    assert history == [
        (changed, Decimal("89.90"), "BRL", Decimal("120.00"), "in_stock", "accepted", "page",
         {"method": "jsonld"}, WINDOW.partition_key),
        (same, Decimal("100.00"), "BRL", Decimal("120.00"), "in_stock", "accepted", "page",
         {"method": "jsonld"}, WINDOW.partition_key),
        (quarantined, Decimal("9.99"), "BRL", None, "in_stock", "quarantined", "page",
         {"method": "jsonld", "quarantine": {"reason": "drop"}}, WINDOW.partition_key),
        (out_of_stock, None, "BRL", None, "out_of_stock", "accepted", "page",
         {"method": "jsonld", "quotes": []}, WINDOW.partition_key),
    ]
    progress = conn.execute("select phase, last_offer_id, batches, offers_done, counts from price_tracking_progress"
                            " where partition_key = %s", (WINDOW.partition_key,)).fetchone()
    assert progress == ("rest", failing, 1, 6, {"accepted": 3, "quarantined": 1, "not_modified": 1, "failure": 1,
                                                "failed_http_5xx": 1})


def test_only_changed_observations_write_the_offers_row(conn, offers):
    unchanged, changed, same_quarantine, not_modified, out_of_stock, failing = offers
    # The states the batch read, as the tracker reads them (the due offers of the window).
    targets = prices.due_offers(conn, WINDOW, phase=prices.REST, after=0, limit=100, now=AT)
    current = {t.offer_id: t.state for t in targets}
    published = OfferState(price=Decimal("100.00"), reference_price=Decimal("120.00"), freight=None, currency="BRL",
                           availability="in_stock", quarantined_price=None)
    assert current == {o: published if o != same_quarantine
                       else OfferState(Decimal("100.00"), Decimal("120.00"), None, "BRL", "in_stock", Decimal("50.00"))
                       for o in offers}
    before = dict(conn.execute("select id, xmin::text from offers").fetchall())
    batch = [
        # Same price, reference and availability, nothing pending: nothing to write on offers.
        Acquired(unchanged, observation(unchanged, brl("100.00"), brl("120.00")), etag='"v2"', last_modified="Wed"),
        Acquired(changed, observation(changed, brl("89.90"), brl("120.00")), etag='"new"'),
        # The same suspicious price as the one already pending.
        Acquired(same_quarantine, observation(same_quarantine, brl("50.00"), status=ObservationStatus.QUARANTINED,
                                              details={"method": "jsonld", "quarantine": {"reason": "drop"}})),
        Acquired(not_modified, NotModified(not_modified, AT), etag='"nm"', last_modified="Tue"),
        Acquired(out_of_stock, observation(out_of_stock, None, availability=Availability.OUT_OF_STOCK)),
        Acquired(failing, FetchFailure(failing, FailureReason.HTTP_5XX, "503", AT)),
    ]
    with conn.transaction():
        now = conn.execute("select now()").fetchone()[0]
        result = prices.record_batch(conn, batch, window=WINDOW, phase=prices.REST, last_offer_id=failing,
                                     currency_of={o: "BRL" for o in offers}, current=current)
    assert result.observations == 4
    assert result.counts == Counter({"accepted": 3, "quarantined": 1, "not_modified": 1, "failure": 1,
                                     "failed_http_5xx": 1})
    assert result.offers_changed == 2  # the new price and the new availability
    after = dict(conn.execute("select id, xmin::text from offers").fetchall())
    assert {o for o in offers if after[o] != before[o]} == {changed, out_of_stock}
    assert conn.execute("select id, updated_at from offers order by id").fetchall() == [
        (unchanged, UNTOUCHED), (changed, now), (same_quarantine, UNTOUCHED), (not_modified, UNTOUCHED),
        (out_of_stock, now), (failing, UNTOUCHED)]
    # Unchanged: the offers row as it was, its offer_checks row moved (check time, validators).
    assert state(conn, unchanged) == {**CHECKED, **STORED, "etag": '"v2"', "last_modified": "Wed"}
    assert state(conn, changed) == {**CHECKED, **STORED, "price": Decimal("89.90"), "last_changed_at": AT,
                                    "etag": '"new"', "last_modified": None}
    assert state(conn, same_quarantine) == {**CHECKED, **STORED, "quarantined_price": Decimal("50.00"),
                                            "etag": None, "last_modified": None}
    assert state(conn, not_modified) == {**CHECKED, **STORED, "etag": '"nm"', "last_modified": "Tue"}
    assert state(conn, out_of_stock) == {**CHECKED, **STORED, "availability": "out_of_stock", "last_changed_at": AT,
                                         "etag": None, "last_modified": None}
    assert state(conn, failing) == {**STORED, "etag": '"old"', "last_modified": "Mon",
                                    "last_checked_at": AT, "last_success_at": BEFORE,
                                    "consecutive_failures": 5, "last_failure_reason": "http_5xx",
                                    "unhealthy_until": AT + timedelta(hours=1)}
    # Every observation is recorded, whether or not it changed the offer.
    assert conn.execute("select offer_id, price, status from price_history order by offer_id").fetchall() == [
        (unchanged, Decimal("100.00"), "accepted"), (changed, Decimal("89.90"), "accepted"),
        (same_quarantine, Decimal("50.00"), "quarantined"), (out_of_stock, None, "accepted")]


def test_check_rows_are_updated_where_the_batch_read_them_and_by_key_when_they_moved(conn, offers):
    targets = prices.due_offers(conn, WINDOW, phase=prices.REST, after=0, limit=100, now=AT)
    hints = {t.offer_id: t.check_row for t in targets}
    assert len(set(hints.values())) == 6 and all(h.startswith("(") for h in hints.values())
    moved, swapped_a, swapped_b, fine, bystander = offers[0], offers[1], offers[2], offers[3], offers[4]
    # After the read: one row moves (an update gives it a new address); two hints are swapped,
    # so each points at another offer's live row.
    conn.execute("update offer_checks set etag = etag where offer_id = %s", (moved,))
    hints[swapped_a], hints[swapped_b] = hints[swapped_b], hints[swapped_a]
    batch = [Acquired(o, observation(o, brl("100.00"), brl("120.00")), etag=f'"{o}"')
             for o in (moved, swapped_a, swapped_b, fine)]
    before = state(conn, bystander)
    with conn.transaction():
        result = prices.record_batch(conn, batch, window=WINDOW, phase=prices.REST, last_offer_id=fine,
                                     currency_of={}, check_rows={o: hints[o] for o in (moved, swapped_a,
                                                                                       swapped_b, fine)})
    assert result.checks_by_key == 3  # the moved row and the two wrong hints; `fine` by its address
    for o in (moved, swapped_a, swapped_b, fine):
        assert state(conn, o) == {**CHECKED, **STORED, "etag": f'"{o}"', "last_modified": None}
    assert state(conn, bystander) == before  # a wrong hint never touches another offer's row
    # Without hints every check row is found by its key.
    later = [Acquired(o, NotModified(o, AT + timedelta(hours=1)), etag='"x"') for o in (fine, bystander)]
    with conn.transaction():
        result = prices.record_batch(conn, later, window=WINDOW, phase=prices.REST, last_offer_id=bystander,
                                     currency_of={})
    assert result.checks_by_key == 2
    assert conn.execute("select count(*) from offer_checks where last_checked_at = %s and etag = '\"x\"'",
                        (AT + timedelta(hours=1),)).fetchone()[0] == 2


def test_the_session_and_batch_settings_give_the_batch_driven_plans(conn, offers):
    """JIT off for the tracking session (prepare_session); in a batch's transaction the check rows
    are found by address, a nested loop over the batch, never by hashing offer_checks."""
    conn.execute("set jit = on")
    prices.prepare_session(conn)
    assert conn.execute("show jit").fetchone() == ("off",)
    # a catalog big enough that scanning offer_checks is not the cheap way to a few rows
    conn.execute("insert into offers (product_id, shop_id, source_kind, locator)"
                 " select product_id, shop_id, 'page', 'https://loja.example/q/' || i"
                 " from offers, generate_series(1, 5000) i where id = %s", (offers[0],))
    conn.execute("analyze offer_checks")
    with conn.transaction():
        conn.execute(prices.NESTED_LOOPS_ONLY)
        plan = "\n".join(r[0] for r in conn.execute("explain " + prices.CHECK_SUCCESS_BY_ROW))
        assert "Nested Loop" in plan and "Tid Scan on offer_checks" in plan, plan
        assert "Hash" not in plan and "Seq Scan on offer_checks" not in plan, plan
    # SET LOCAL: the caller's next transaction plans freely again
    assert conn.execute("show enable_hashjoin").fetchone() == ("on",)


def test_a_replayed_batch_writes_nothing_twice(conn, offers):
    batch = [Acquired(o, observation(o, brl("99.00"))) for o in offers]
    with conn.transaction():
        prices.record_batch(conn, batch, window=WINDOW, phase=prices.REST, last_offer_id=offers[-1], currency_of={})
    before = conn.execute("select batches, offers_done from price_tracking_progress").fetchone()
    # The same observations again (a replay that bypassed the due-offers query): the batch fails
    # as a whole, so neither a duplicate observation nor a second checkpoint is committed.
    with pytest.raises(errors.UniqueViolation), conn.transaction():
        prices.record_batch(conn, batch, window=WINDOW, phase=prices.REST, last_offer_id=offers[-1], currency_of={})
    assert conn.execute("select count(*), count(distinct offer_id) from price_history").fetchone() == (6, 6)
    assert conn.execute("select batches, offers_done from price_tracking_progress").fetchone() == before == (1, 6)


def test_the_updated_at_trigger_still_covers_every_other_writer(conn, offers):
    offer = offers[0]
    definition = conn.execute("select pg_get_triggerdef(oid) from pg_trigger where tgname = 'offers_set_updated_at'"
                              ).fetchone()[0]
    assert "WHEN ((new.updated_at IS DISTINCT FROM now()))" in definition
    # An UPDATE that leaves updated_at alone, or writes another value, still gets now().
    for sql in ("update offers set price = 101.00 where id = %s",
                "update offers set price = 102.00, updated_at = '2021-01-01T00:00:00Z' where id = %s"):
        with conn.transaction():
            now = conn.execute("select now()").fetchone()[0]
            conn.execute(sql, (offer,))
            assert conn.execute("select updated_at from offers where id = %s", (offer,)).fetchone()[0] == now


@pytest.mark.parametrize("details", [
    {"method": "jsonld"}, {"method": "feed", "price_kind": "cash", "quotes": []}, {},
    {"method": "jsonld", "quotes": [{"kind": "card", "amount": "10.00"}]}, {"a": 1}, {"a": True}, {1: "x"},
    {True: "x"}, {"a": None}, {"a": "é\n\"q\""}, {"at": AT}, {"a": []}, {"a": ()},
])
def test_details_json_is_json_dumps(details):
    for _ in range(2):  # computed, then memoized
        assert prices._details_json(details) == json.dumps(details, default=str)


def test_details_json_memo_never_returns_a_stale_text():
    """The last-details shortcut compares with a copy: a dict changed after use, or an equal dict
    with a list that later fills, gets its own text."""
    details = {"method": "jsonld"}
    assert prices._details_json(details) == '{"method": "jsonld"}'
    details["method"] = "microdata"
    assert prices._details_json(details) == '{"method": "microdata"}'
    quotes: list = []
    with_list = {"method": "feed", "quotes": quotes}
    assert prices._details_json(with_list) == '{"method": "feed", "quotes": []}'
    quotes.append("cash")
    assert prices._details_json(with_list) == '{"method": "feed", "quotes": ["cash"]}'
    assert prices._details_json({"method": "microdata"}) == '{"method": "microdata"}'
