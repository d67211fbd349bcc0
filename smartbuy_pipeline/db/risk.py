"""The SQL of anti-cilada risk scores: which offers to score, their inputs, and the write path.

Set-based throughout: the offers to score are one query; their context and market figures one
query (a CSV COPY parsed by pandas); their history one binary COPY per chunk of offers (one row
per offer with int8 arrays, decoded with numpy; optionally read ahead on a second connection
sharing the snapshot); each chunk's scores one COPY (text built in one pass) into a chunk
table, then one statement per table for the chunk (`offer_risk_scores` lock + upsert,
`offer_risk_score_history` append) - on a writer thread overlapping the next chunk's scoring
when the history is read ahead - and at the end `ops_audit_logs` for Check Risk. The caller owns
the transaction: scores, history and audit rows commit together, so whatever ranks or filters
offers reads the new bucket as soon as the audit row exists.

Money never travels as float: the database converts numeric(12,2) to int64 cents
(`(price * 100)::bigint`, exact), the model works in cents and reports Decimal strings.

History rows are appended only when the score or the bucket changed (a first score counts as a
change): the history is the record of *when and why* a bucket flipped, not a copy of every run.
Re-running an unchanged offer moves `offer_risk_scores.computed_at` only.
"""

from __future__ import annotations

import io
import json
import queue
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg.rows import dict_row

from smartbuy_pipeline.domain import risk
from smartbuy_pipeline.domain.gtin import normalize_gtin

CALC_RISK = "CALC_RISK"
DEFAULT_CHUNK_OFFERS = 100_000
HEAP_REUSE = True  # see _HeapReuse

# -- which offers --------------------------------------------------------------------------------

# Changed since their last score: price, availability or "de" price moved after it was computed
# (offers.last_changed_at is set by the tracker on exactly those changes), never scored, or
# scored by another model version.
CHANGED_OFFERS_SQL = """
select o.id
from offers o
left join offer_risk_scores s on s.offer_id = o.id
where o.active
  and (s.offer_id is null
       or o.last_changed_at > s.computed_at
       or s.model_version <> %(model_version)s)
order by o.id
"""

ALL_OFFERS_SQL = "select id from offers where active order by id"

OFFERS_BY_IDS_SQL = "select id from offers where id = any(%(ids)s) order by id"

OFFERS_BY_GTIN_SQL = """
select o.id
from offers o
join products p on p.id = o.product_id
where p.gtin = %(gtin)s
order by o.id
"""

GTIN_EXISTS_SQL = "select exists (select 1 from products where gtin = %(gtin)s)"

# -- inputs --------------------------------------------------------------------------------------

# The ids to score go into a temporary table (one COPY), whatever their number.
CREATE_IDS_SQL = """
create temporary table if not exists risk_offer_ids (id bigint primary key) on commit drop;
truncate risk_offer_ids
"""

# Every active offer of the products the scored offers belong to (the scored offers included,
# active or not): the scored offers' context and, through market_figures, their market.
CONTEXT_SQL = """
with products_of as (
    select distinct o.product_id from offers o join risk_offer_ids i on i.id = o.id
)
select o.id as offer_id, o.product_id, o.shop_id,
       (o.active or exists (select 1 from risk_offer_ids i where i.id = o.id)) as active,
       (o.price * 100)::bigint as current_price,
       (o.reference_price * 100)::bigint as current_reference_price,
       (o.freight * 100)::bigint as current_freight,
       o.availability,
       s.reputation_score,
       s.created_at as shop_first_seen_at,
       c.last_success_at as last_good_at
from offers o
join products_of p on p.product_id = o.product_id
join shops s on s.id = o.shop_id
join offer_checks c on c.offer_id = o.id
"""

# The same rows as CSV for pandas' C parser (no Python object per value): times as Unix
# microseconds (extract(epoch) is exact numeric), booleans as 0/1, NULL as an empty field.
CONTEXT_COPY_SQL = """
copy (
    with products_of as (
        select distinct o.product_id from offers o join risk_offer_ids i on i.id = o.id
    )
    select o.id, o.product_id, o.shop_id,
           (o.active or exists (select 1 from risk_offer_ids i where i.id = o.id))::int,
           (o.price * 100)::bigint,
           (o.reference_price * 100)::bigint,
           (o.freight * 100)::bigint,
           o.availability,
           s.reputation_score,
           (extract(epoch from s.created_at) * 1000000)::bigint,
           (extract(epoch from c.last_success_at) * 1000000)::bigint
    from offers o
    join products_of p on p.product_id = o.product_id
    join shops s on s.id = o.shop_id
    join offer_checks c on c.offer_id = o.id
) to stdout (format csv)
"""
CONTEXT_CSV_DTYPES = {
    "offer_id": "int64", "product_id": "int64", "shop_id": "int64", "active": "int8",
    "current_price": "Int64", "current_reference_price": "Int64", "current_freight": "Int64",
    "availability": "str", "reputation_score": "Int64", "shop_first_seen_at": "Int64",
    "last_good_at": "Int64",
}

CONTEXT_COLUMNS = ("offer_id", "product_id", "shop_id", "active", "current_price",
                   "current_reference_price", "current_freight", "availability",
                   "reputation_score", "shop_first_seen_at", "last_good_at")

# Accepted priced observations in (now - lookback, now], one row per offer: the offer id and two
# int8-sized arrays in (offer_id, observed_at) order: observed_at (binary timestamptz = µs since
# 2000-01-01) and price in cents. One row per offer, not per observation, because a COPY row
# costs a Python round trip in the driver; the arrays are decoded with numpy. The id range lets
# the primary key (offer_id, observed_at) do a range scan per partition, already in the order
# the aggregate needs; when the chunk is not every id of its range, the array of ids keeps only
# the chunk's offers. (COPY takes no parameters: every value is an int or a formatted time.)
HISTORY_COPY_SQL = """
copy (
    select offer_id, array_agg(observed_at), array_agg(cents)
    from (
        select h.offer_id, h.observed_at, (h.price * 100)::bigint as cents
        from price_history h
        where h.offer_id between {lo} and {hi}{ids_filter}
          and h.observed_at > '{since}'::timestamptz and h.observed_at <= '{until}'::timestamptz
          and h.status = 'accepted' and h.price is not null
        order by h.offer_id, h.observed_at
    ) s
    group by offer_id
    order by offer_id
) to stdout (format binary)
"""
# For the history read only: primary-key order (index scans merged across partitions) feeds the
# per-offer aggregate without a sort, and no parallel workers (this process scores on the other
# core). Measured on 90 M daily rows, 100 k offers per chunk: 1.7 s instead of 3.8 s for the
# planner's parallel seq scan + sort of every partition. On a heap clustered by time rather than
# by offer, re-measure: index order then means random heap reads.
HISTORY_READ_SETTINGS = (
    "set local max_parallel_workers_per_gather = 0; set local enable_seqscan = off; "
    "set local enable_bitmapscan = off"
)
HISTORY_READ_RESET = "reset max_parallel_workers_per_gather; reset enable_seqscan; reset enable_bitmapscan"

HISTORY_IDS_FILTER = "\n      and h.offer_id = any('{{{ids}}}'::bigint[])"

# -- write path ----------------------------------------------------------------------------------

# Each chunk of scores is COPYed into risk_scores_chunk and applied at once (lock + remember the
# current rows, upsert, history); then the chunk's (offer_id, score, bucket) - with reasons and
# inputs only when the audit or the before/after listing needs them - go to risk_scores_stage,
# which the summary, audit and before/after statements read at the end.
CREATE_STAGE_SQL = """
set local work_mem = '256MB';
drop table if exists pg_temp.risk_scores_chunk;
drop table if exists pg_temp.risk_scores_stage;
drop table if exists pg_temp.risk_scores_prev;
create temporary table risk_scores_chunk (
    offer_id      bigint not null,
    score         smallint not null,
    bucket        char(1) not null,
    reasons       jsonb not null,
    inputs        jsonb not null,
    model_version text not null
) on commit drop;
create temporary table risk_scores_stage (
    offer_id      bigint primary key,
    score         smallint not null,
    bucket        char(1) not null,
    reasons       jsonb,
    inputs        jsonb,
    model_version text not null
) on commit drop;
create temporary table risk_scores_prev (
    offer_id bigint primary key,
    score    smallint not null,
    bucket   char(1) not null
) on commit drop
"""
STAGE_COLUMNS = ("offer_id", "score", "bucket", "reasons", "inputs", "model_version")
COPY_CHUNK_SQL = f"copy risk_scores_chunk ({', '.join(STAGE_COLUMNS)}) from stdin"

# Lock the current rows in id order (a concurrent Check Risk and refresh must not both read the
# same "before") and remember them: the "before" of the history rows, flips and audit rows.
# Chunks are applied in ascending id order, so the locks are taken in id order overall.
CAPTURE_PREVIOUS_SQL = """
insert into risk_scores_prev (offer_id, score, bucket)
select s.offer_id, s.score, s.bucket
from offer_risk_scores s
join risk_scores_chunk st on st.offer_id = s.offer_id
order by s.offer_id
for update of s
"""

UPSERT_SCORES_SQL = """
insert into offer_risk_scores as s (offer_id, score, bucket, reasons, inputs, model_version, computed_at)
select offer_id, score, bucket, reasons, inputs, model_version, %(computed_at)s
from risk_scores_chunk
order by offer_id
on conflict (offer_id) do update set
    score = excluded.score, bucket = excluded.bucket, reasons = excluded.reasons,
    inputs = excluded.inputs, model_version = excluded.model_version,
    computed_at = excluded.computed_at
"""

# History only when the score or the bucket changed (a first score is a change).
APPEND_HISTORY_SQL = """
insert into offer_risk_score_history (offer_id, score, bucket, reasons, inputs, model_version, computed_at)
select st.offer_id, st.score, st.bucket, st.reasons, st.inputs, st.model_version, %(computed_at)s
from risk_scores_chunk st
left join risk_scores_prev p on p.offer_id = st.offer_id
where p.offer_id is null or p.score <> st.score or p.bucket <> st.bucket
order by st.offer_id
"""

KEEP_CHUNK_FULL_SQL = """
insert into risk_scores_stage (offer_id, score, bucket, reasons, inputs, model_version)
select offer_id, score, bucket, reasons, inputs, model_version from risk_scores_chunk;
truncate risk_scores_chunk
"""
KEEP_CHUNK_SLIM_SQL = """
insert into risk_scores_stage (offer_id, score, bucket, model_version)
select offer_id, score, bucket, model_version from risk_scores_chunk;
truncate risk_scores_chunk
"""

STAGE_SUMMARY_SQL = """
select count(*) as scored,
       count(*) filter (where st.bucket = 'A') as bucket_a,
       count(*) filter (where st.bucket = 'B') as bucket_b,
       count(*) filter (where st.bucket = 'C') as bucket_c,
       count(*) filter (where p.offer_id is null) as first_scores,
       count(*) filter (where p.bucket <> st.bucket) as flips,
       count(*) filter (where p.score <> st.score) as score_changes
from risk_scores_stage st
left join risk_scores_prev p on p.offer_id = st.offer_id
"""

# Check Risk: one audit row per offer, with the score and bucket before and after and the reasons.
INSERT_AUDIT_SQL = """
insert into ops_audit_logs (actor, action_type, entity_type, entity_id, payload)
select %(actor)s, %(action)s, 'offer', st.offer_id::text,
       jsonb_build_object(
           'before', case when p.offer_id is not null
                          then jsonb_build_object('score', p.score, 'bucket', p.bucket)
                          end,
           'after', jsonb_build_object('score', st.score, 'bucket', st.bucket),
           'reasons', st.reasons,
           'model_version', st.model_version,
           'computed_at', %(computed_at)s::timestamptz,
           'run_id', %(run_id)s::text)
from risk_scores_stage st
left join risk_scores_prev p on p.offer_id = st.offer_id
order by st.offer_id
"""

BEFORE_AFTER_SQL = """
select st.offer_id, sh.name as shop, pr.name as product, pr.gtin,
       prev.score as prev_score, prev.bucket as prev_bucket, st.score, st.bucket,
       coalesce((select string_agg(r ->> 'code', ', ' order by ord)
                 from jsonb_array_elements(st.reasons) with ordinality as e(r, ord)), '') as reasons
from risk_scores_stage st
left join risk_scores_prev prev on prev.offer_id = st.offer_id
join offers o on o.id = st.offer_id
join shops sh on sh.id = o.shop_id
join products pr on pr.id = o.product_id
order by st.offer_id
"""

# -- demo summary --------------------------------------------------------------------------------

BUCKET_DISTRIBUTION_SQL = """
select b.bucket, count(s.offer_id) as offers,
       round(100.0 * count(s.offer_id) / nullif(sum(count(s.offer_id)) over (), 0), 1) as share_pct
from (values ('A'), ('B'), ('C')) as b(bucket)
left join offer_risk_scores s on s.bucket = b.bucket
group by b.bucket
order by b.bucket
"""

# Named offers are matched by locator: a page offer's locator ends with /s/<shop>/p/<key>; a
# feed or marketplace offer's locator is its external id (with the shop's domain).
NAMED_REASONS_SQL = """
select n.label, o.id as offer_id, sh.name as shop, p.name as product, s.score, s.bucket,
       r ->> 'code' as code, (r ->> 'penalty')::int as penalty, r ->> 'message' as message
from unnest(%(labels)s::text[], %(patterns)s::text[], %(domains)s::text[]) as n(label, pattern, domain)
join shops sh on sh.domain = n.domain
join offers o on o.shop_id = sh.id and o.locator like n.pattern
join products p on p.id = o.product_id
join offer_risk_scores s on s.offer_id = o.id
left join lateral jsonb_array_elements(s.reasons) with ordinality as e(r, ord) on true
order by array_position(%(labels)s::text[], n.label), o.id, e.ord
"""


# ================================================================================================


@dataclass
class ScoreRun:
    """What one scoring pass did (numbers for Dagster metadata)."""

    selected: int = 0
    scored: int = 0
    bucket_a: int = 0
    bucket_b: int = 0
    bucket_c: int = 0
    first_scores: int = 0
    flips: int = 0
    score_changes: int = 0
    history_rows: int = 0
    audit_rows: int = 0
    history_observations: int = 0
    context_s: float = 0.0  # context + market (serial, before the chunks)
    load_s: float = 0.0  # history COPY + decode, summed over chunks (overlaps scoring with read-ahead)
    score_s: float = 0.0
    write_s: float = 0.0  # staging COPY per chunk + the final statements
    apply_s: float = 0.0  # the final statements alone (lock, upsert, history, audit)
    before_after: list[dict[str, Any]] = field(default_factory=list)

    def metadata(self) -> dict[str, float | int]:
        return {
            "offers_selected": self.selected, "offers_scored": self.scored,
            "bucket_a": self.bucket_a, "bucket_b": self.bucket_b, "bucket_c": self.bucket_c,
            "first_scores": self.first_scores, "bucket_flips": self.flips,
            "score_changes": self.score_changes, "history_rows": self.history_rows,
            "history_observations": self.history_observations,
            "context_s": round(self.context_s, 3), "load_s": round(self.load_s, 3),
            "score_s": round(self.score_s, 3), "write_s": round(self.write_s, 3),
            "apply_s": round(self.apply_s, 3),
        }


# -- selection -----------------------------------------------------------------------------------


def changed_offer_ids(conn: psycopg.Connection, model_version: str = risk.DEFAULT_CONFIG.model_version) -> list[int]:
    """Active offers whose price, availability or "de" price changed since their last score,
    never scored, or scored by another model version."""
    return [r[0] for r in conn.execute(CHANGED_OFFERS_SQL, {"model_version": model_version})]


def all_offer_ids(conn: psycopg.Connection) -> list[int]:
    return [r[0] for r in conn.execute(ALL_OFFERS_SQL)]


def resolve_offer_ids(conn: psycopg.Connection, offer_ids: Sequence[int] = (), gtin: str | None = None) -> list[int]:
    """Explicit offer ids and/or every offer of a GTIN; ValueError on unknown ids or GTIN."""
    ids = sorted({int(i) for i in offer_ids})
    found: list[int] = []
    if ids:
        found = [r[0] for r in conn.execute(OFFERS_BY_IDS_SQL, {"ids": ids})]
        missing = sorted(set(ids) - set(found))
        if missing:
            raise ValueError(f"unknown offer id(s): {', '.join(map(str, missing))}")
    if gtin:
        try:
            g14 = normalize_gtin(gtin)
        except ValueError as exc:
            raise ValueError(f"invalid GTIN {gtin!r}: {exc}") from None
        if not conn.execute(GTIN_EXISTS_SQL, {"gtin": g14}).fetchone()[0]:
            raise ValueError(f"unknown GTIN: {gtin}")
        by_gtin = [r[0] for r in conn.execute(OFFERS_BY_GTIN_SQL, {"gtin": g14})]
        if not by_gtin:
            raise ValueError(f"GTIN {gtin} has no offers")
        found = sorted(set(found) | set(by_gtin))
    if not ids and not gtin:
        raise ValueError("give at least one offer id or a GTIN")
    return found


# -- loading -------------------------------------------------------------------------------------


def load_context(conn: psycopg.Connection, offer_ids: Sequence[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(offers frame for the scored ids, market frame for them), money as nullable Int64 cents."""
    buf = bytearray()
    with conn.cursor() as cur:
        cur.execute(CREATE_IDS_SQL)
        with cur.copy("copy risk_offer_ids (id) from stdin") as copy:
            copy.write("".join(f"{int(i)}\n" for i in offer_ids).encode())
        cur.execute("analyze risk_offer_ids")
        with cur.copy(CONTEXT_COPY_SQL) as copy:
            for block in copy:
                buf += block
    frame = pd.read_csv(io.BytesIO(buf), header=None, names=list(CONTEXT_COLUMNS),
                        dtype=CONTEXT_CSV_DTYPES, keep_default_na=False, na_values=[""])
    del buf
    frame = frame[frame["active"].astype(bool)]
    for col in ("shop_first_seen_at", "last_good_at"):
        us = frame[col].to_numpy(dtype=np.int64, na_value=np.iinfo(np.int64).min)  # min = NaT
        frame[col] = pd.Series(us.view("datetime64[us]"), index=frame.index).dt.tz_localize(UTC)
    frame["reputation_score"] = frame["reputation_score"].astype("Float64")
    market = risk.market_figures(frame[["offer_id", "product_id", "current_price",
                                        "current_freight", "availability"]])
    offers = frame[frame["offer_id"].isin(offer_ids)].sort_values("offer_id").reset_index(drop=True)
    return offers.drop(columns=["active"]), market


_PG_EPOCH_US = 946_684_800 * 1_000_000  # 2000-01-01 in Unix microseconds
_HEAD = struct.Struct(">hiqi")  # field count, len, offer id, len of the first array
_ARRAY_HEAD = struct.Struct(">iiIii")  # ndim, has-nulls flag, element type, length, lower bound


_ELEMENT = np.dtype([("len", ">i4"), ("value", ">i8")])  # one non-null int8-sized array element


def _decode_history_copy(data: bytes | bytearray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Binary COPY rows (int8 offer id, timestamptz[] , int8[]) -> flat offer_id, t_us, price."""
    mv = memoryview(data)
    if len(mv) < 21 or bytes(mv[:11]) != b"PGCOPY\n\xff\r\n\x00":
        raise ValueError("not a PostgreSQL binary COPY stream")
    pos = 19 + int.from_bytes(mv[15:19], "big")
    end = len(mv) - 2  # the int16 -1 trailer
    head, ahead = _HEAD.unpack_from, _ARRAY_HEAD.unpack_from
    ids, counts = [], []
    t_bytes, p_bytes = bytearray(), bytearray()  # the arrays' elements, concatenated
    while pos < end:
        nfields, l0, offer_id, l1 = head(mv, pos)
        if nfields != 3 or l0 != 8:
            raise ValueError("unexpected binary COPY row layout")
        t_at = pos + 18
        ndim, _, _, n, _ = ahead(mv, t_at) if l1 > 12 else (0, 0, 0, 0, 0)
        p_len_at = t_at + l1
        l2 = int.from_bytes(mv[p_len_at:p_len_at + 4], "big", signed=True)
        if ndim not in (0, 1) or l1 != (20 + 12 * n if n else l1) or l2 != l1:
            raise ValueError("unexpected array layout in the history COPY (a NULL slipped through?)")
        ids.append(offer_id)
        counts.append(n)
        t_bytes += mv[t_at + 20:p_len_at]
        p_bytes += mv[p_len_at + 24:p_len_at + 4 + l2]
        pos = p_len_at + 4 + l2
    if not ids:
        z = np.zeros(0, dtype=np.int64)
        return z, z.copy(), z.copy()
    t_el, p_el = np.frombuffer(t_bytes, _ELEMENT), np.frombuffer(p_bytes, _ELEMENT)
    if not ((t_el["len"] == 8).all() and (p_el["len"] == 8).all()):
        raise ValueError("unexpected array element in the history COPY (a NULL slipped through?)")
    counts_a = np.asarray(counts, dtype=np.int64)
    return (np.repeat(np.asarray(ids, dtype=np.int64), counts_a),
            t_el["value"].astype(np.int64), p_el["value"].astype(np.int64))


def load_history(conn: psycopg.Connection, offer_ids: Sequence[int], *, now: datetime,
                 lookback_days: int = 365) -> pd.DataFrame:
    """Accepted priced observations of the offers in (now - lookback, now], ordered by
    (offer_id, observed_at): offer_id int64, observed_at tz-aware UTC, price int64 cents."""
    if not len(offer_ids):
        return pd.DataFrame({"offer_id": np.zeros(0, np.int64),
                             "observed_at": pd.Series([], dtype="datetime64[us, UTC]"),
                             "price": np.zeros(0, np.int64)})
    ids = np.unique(np.asarray(offer_ids, dtype=np.int64))
    lo, hi = int(ids[0]), int(ids[-1])
    dense = hi - lo + 1 == len(ids)  # every id of the range: the range alone selects them
    query = HISTORY_COPY_SQL.format(
        lo=lo, hi=hi,
        ids_filter="" if dense else HISTORY_IDS_FILTER.format(ids=",".join(map(str, ids.tolist()))),
        since=(now - timedelta(days=lookback_days)).astimezone(UTC).isoformat(),
        until=now.astimezone(UTC).isoformat(),
    )
    buf = bytearray()
    with conn.cursor() as cur:
        cur.execute(HISTORY_READ_SETTINGS)
        with cur.copy(query) as copy:
            for block in copy:
                buf += block
        cur.execute(HISTORY_READ_RESET)
    offer_id, t_us, price = _decode_history_copy(buf)
    del buf
    t_us += _PG_EPOCH_US
    return pd.DataFrame({
        "offer_id": offer_id,
        "observed_at": pd.Series(t_us.view("datetime64[us]")).dt.tz_localize(UTC),
        "price": price,
    })


def _chunks(ids: Sequence[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(ids), size):
        yield list(ids[i:i + size])


class _HistoryReader:
    """(history, seconds) per chunk, in order.

    With `connect`, a thread on a second connection reads ahead (the server produces chunk k+1
    while Python scores chunk k; it starts at once, so the first chunk is read while the caller
    loads the context) inside a REPEATABLE READ transaction on the caller's exported snapshot: it
    sees exactly what the caller's transaction sees. That transaction must be a top-level one (a
    savepoint cannot export its snapshot), as `Database.transaction()` gives. Always close()."""

    def __init__(self, conn: psycopg.Connection, chunks: list[list[int]], *, now: datetime,
                 lookback_days: int, connect: Callable[[], psycopg.Connection] | None) -> None:
        self.conn, self.chunks, self.now, self.lookback = conn, chunks, now, lookback_days
        self.thread: threading.Thread | None = None
        if connect is None or len(chunks) < 2:
            return
        snapshot = conn.execute("select pg_export_snapshot()").fetchone()[0]
        # two chunks ahead: the reader keeps going while the caller loads the context
        self.results: queue.Queue = queue.Queue(maxsize=2)
        self.stop = threading.Event()

        def work() -> None:
            try:
                with connect() as reader:
                    reader.execute("begin isolation level repeatable read read only")
                    reader.execute(f"set transaction snapshot '{snapshot}'")
                    reader.execute("set local jit = off")
                    for chunk in chunks:
                        if self.stop.is_set():
                            break
                        t0 = time.perf_counter()
                        frame = load_history(reader, chunk, now=now, lookback_days=lookback_days)
                        self.results.put((frame, time.perf_counter() - t0))
                    reader.execute("commit")
            except BaseException as exc:  # handed to the consumer, re-raised there
                self.results.put(exc)

        self.thread = threading.Thread(target=work, name="risk-history-reader", daemon=True)
        self.thread.start()

    def __iter__(self) -> Iterator[tuple[pd.DataFrame, float]]:
        for chunk in self.chunks:
            if self.thread is None:
                t0 = time.perf_counter()
                frame = load_history(self.conn, chunk, now=self.now, lookback_days=self.lookback)
                yield frame, time.perf_counter() - t0
                continue
            item = self.results.get()
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        if self.thread is None:
            return
        self.stop.set()
        while self.thread.is_alive():  # unblock a reader waiting on a full queue
            try:
                self.results.get(timeout=0.1)
            except queue.Empty:
                pass
        self.thread.join()
        self.thread = None


def iter_scores(conn: psycopg.Connection, offer_ids: Sequence[int], *, now: datetime,
                config: risk.RiskConfig = risk.DEFAULT_CONFIG,
                chunk_offers: int = DEFAULT_CHUNK_OFFERS, run: ScoreRun | None = None,
                connect: Callable[[], psycopg.Connection] | None = None,
                json_text: bool = False) -> Iterator[pd.DataFrame]:
    """Score the offers in chunks of `chunk_offers` (by id): one context query for all, then one
    history COPY and one vectorized model call per chunk, yielding each chunk's scores. The
    model is batch-invariant, so chunking bounds memory without changing results. `connect`
    (optional) opens a second connection to read the next chunk's history ahead. `json_text`:
    reasons and inputs as JSON text (see risk.score_offers), for the writer."""
    run = run if run is not None else ScoreRun()
    ids = sorted({int(i) for i in offer_ids})
    run.selected = len(ids)
    if not ids:
        return
    conn.execute("set local jit = off")  # compiling each chunk's query costs more than it saves
    lookback = max(config.reference_lookback_days, config.good_deal_low_days)
    chunks = list(_chunks(ids, chunk_offers))
    reader = _HistoryReader(conn, chunks, now=now, lookback_days=lookback, connect=connect)
    try:
        t0 = time.perf_counter()
        offers, market = load_context(conn, ids)
        run.context_s += time.perf_counter() - t0
        for chunk, (history, load_s) in zip(chunks, reader):
            t1 = time.perf_counter()
            sel = offers[offers["offer_id"].isin(chunk)].reset_index(drop=True)
            scores = risk.score_history(history, sel, market, now=now, config=config,
                                        json_text=json_text)
            run.history_observations += len(history)
            run.load_s += load_s
            run.score_s += time.perf_counter() - t1
            del history
            yield scores
    finally:
        reader.close()


def compute_scores(conn: psycopg.Connection, offer_ids: Sequence[int], *, now: datetime,
                   config: risk.RiskConfig = risk.DEFAULT_CONFIG,
                   chunk_offers: int = DEFAULT_CHUNK_OFFERS, run: ScoreRun | None = None,
                   connect: Callable[[], psycopg.Connection] | None = None) -> pd.DataFrame:
    """All the offers' scores in one frame (see iter_scores); nothing is written."""
    parts = list(iter_scores(conn, offer_ids, now=now, config=config, chunk_offers=chunk_offers,
                             run=run, connect=connect))
    if not parts:
        return pd.DataFrame(columns=["offer_id", "score", "bucket", "reasons", "inputs",
                                     "confidence", "model_version"])
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


# -- writing -------------------------------------------------------------------------------------


def _copy_text_field(value: str) -> str:
    """A string as one field of COPY's text format."""
    return (value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
            .replace("\r", "\\r"))


def _stage_payload(scores: pd.DataFrame) -> bytes:
    """One chunk of scores as COPY text rows for risk_scores_chunk (STAGE_COLUMNS; JSON text for
    jsonb). Built in one pass of C-level string operations rather than a driver call per row:
    JSON text never holds a raw tab, newline or CR (json escapes control characters), so a
    backslash is the only character to escape in it."""
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    # already JSON text when scored with json_text=True
    reasons = [(r if isinstance(r, str) else dumps(r)).replace("\\", "\\\\")
               for r in scores["reasons"].tolist()]
    inputs = [(i if isinstance(i, str) else dumps(i)).replace("\\", "\\\\")
              for i in scores["inputs"].tolist()]
    versions = scores["model_version"].tolist()
    escaped = {v: _copy_text_field(str(v)) for v in set(versions)}
    text = "".join([
        f"{oid}\t{score}\t{bucket}\t{r}\t{i}\t{escaped[v]}\n"
        for oid, score, bucket, r, i, v in zip(
            scores["offer_id"].tolist(), scores["score"].tolist(), scores["bucket"].tolist(),
            reasons, inputs, versions)])
    return text.encode()


class _HeapReuse:
    """While scoring, keep freed memory in the glibc heap for the next chunk (Linux/glibc only;
    elsewhere a no-op; `HEAP_REUSE = False` turns it off).

    A chunk allocates dozens of numpy arrays of one element per observation (9 M rows, ~72 MB
    each). glibc serves every block above its mmap threshold (at most 32 MB) with a fresh mmap
    and unmaps it on free, so each array's pages fault in and are zeroed again, chunk after
    chunk: measured on 1 M offers x 90 days, a third of the run's CPU was kernel time. With mmap
    off and a high trim threshold the blocks are reused from the heap. Process-wide allocator
    settings: restored to glibc's defaults on exit (mmap max 65536, trim threshold 128 KiB,
    then malloc_trim returns the memory)."""

    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX = 128 * 1024, 65536

    def __init__(self) -> None:
        self.libc = None
        if HEAP_REUSE:
            try:
                import ctypes

                libc = ctypes.CDLL("libc.so.6")
                libc.mallopt, libc.malloc_trim  # noqa: B018 (glibc only)
                self.libc = libc
            except (OSError, AttributeError):
                self.libc = None

    def __enter__(self) -> None:
        if self.libc is not None:
            self.libc.mallopt(self.M_TRIM_THRESHOLD, 2**31 - 1)
            self.libc.mallopt(self.M_MMAP_MAX, 0)

    def __exit__(self, *exc: object) -> None:
        if self.libc is not None:
            self.libc.mallopt(self.M_MMAP_MAX, self.DEFAULT_MMAP_MAX)
            self.libc.mallopt(self.M_TRIM_THRESHOLD, self.DEFAULT_TRIM_THRESHOLD)
            self.libc.malloc_trim(0)


class _ChunkWriter:
    """Writes the chunks of scores: per chunk one COPY into risk_scores_chunk, then the lock,
    upsert and history statements for it, then its rows to risk_scores_stage (`keep_full`: with
    reasons and inputs, for the audit and before/after statements).

    `threaded`: the chunks are written by a thread on the caller's connection while the caller
    scores the next chunk (the server applies chunk k while Python scores chunk k + 1); the
    caller must not use the connection between the first put() and finish(). Always close()."""

    def __init__(self, conn: psycopg.Connection, run: ScoreRun, *, computed_at: datetime,
                 keep_full: bool, threaded: bool) -> None:
        self.conn, self.run, self.computed_at, self.keep_full = conn, run, computed_at, keep_full
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        if threaded:
            self.items: queue.Queue = queue.Queue(maxsize=1)
            self.thread = threading.Thread(target=self._work, name="risk-score-writer", daemon=True)
            self.thread.start()

    def _write(self, payload: bytes) -> None:
        t0 = time.perf_counter()
        with self.conn.cursor() as cur:
            with cur.copy(COPY_CHUNK_SQL) as copy:
                copy.write(payload)
            t1 = time.perf_counter()
            params = {"computed_at": self.computed_at}
            cur.execute(CAPTURE_PREVIOUS_SQL)
            cur.execute(UPSERT_SCORES_SQL, params)
            cur.execute(APPEND_HISTORY_SQL, params)
            self.run.history_rows += cur.rowcount
            cur.execute(KEEP_CHUNK_FULL_SQL if self.keep_full else KEEP_CHUNK_SLIM_SQL)
        t2 = time.perf_counter()
        self.run.write_s += t2 - t0
        self.run.apply_s += t2 - t1

    def _work(self) -> None:
        while True:
            payload = self.items.get()
            if payload is None:
                return
            if self.error is None:
                try:
                    self._write(payload)
                except BaseException as exc:  # noqa: BLE001 (re-raised by put() or finish())
                    self.error = exc

    def _raise(self) -> None:
        if self.error is not None:
            exc, self.error = self.error, None
            raise exc

    def put(self, payload: bytes) -> None:
        if self.thread is None:
            self._write(payload)
            return
        self._raise()
        self.items.put(payload)

    def close(self) -> None:
        """Wait for the thread (idempotent); an error it hit is kept for finish()."""
        if self.thread is not None:
            self.items.put(None)
            self.thread.join()
            self.thread = None

    def finish(self) -> None:
        """Wait for every chunk to be written; re-raise the writer's error."""
        self.close()
        self._raise()


def _finish_stage(conn: psycopg.Connection, *, computed_at: datetime, run: ScoreRun,
                  audit_actor: str | None = None, run_id: str | None = None,
                  with_before_after: bool = False) -> ScoreRun:
    """After every chunk is written: with `audit_actor` one CALC_RISK `ops_audit_logs` row per
    offer (one statement), the run's figures, and optionally the before/after rows."""
    t0 = time.perf_counter()
    with conn.cursor() as cur:
        if audit_actor is not None or with_before_after:
            cur.execute("analyze risk_scores_stage")
            cur.execute("analyze risk_scores_prev")
        if audit_actor is not None:
            cur.execute(INSERT_AUDIT_SQL, {"actor": audit_actor, "action": CALC_RISK,
                                           "computed_at": computed_at, "run_id": run_id})
            run.audit_rows = cur.rowcount
        (run.scored, run.bucket_a, run.bucket_b, run.bucket_c, run.first_scores, run.flips,
         run.score_changes) = cur.execute(STAGE_SUMMARY_SQL).fetchone()
        if with_before_after:
            cur.row_factory = dict_row
            run.before_after = cur.execute(BEFORE_AFTER_SQL).fetchall()
    run.apply_s += time.perf_counter() - t0
    run.write_s += time.perf_counter() - t0
    return run


def write_scores(conn: psycopg.Connection, scores: pd.DataFrame, *, computed_at: datetime,
                 run: ScoreRun | None = None, audit_actor: str | None = None,
                 run_id: str | None = None, with_before_after: bool = False) -> ScoreRun:
    """Write a frame of scores (score_offers' output) in the caller's transaction."""
    run = run if run is not None else ScoreRun()
    conn.execute(CREATE_STAGE_SQL)
    t0 = time.perf_counter()
    payload = _stage_payload(scores)
    run.write_s += time.perf_counter() - t0
    writer = _ChunkWriter(conn, run, computed_at=computed_at,
                          keep_full=audit_actor is not None or with_before_after, threaded=False)
    writer.put(payload)
    return _finish_stage(conn, computed_at=computed_at, run=run, audit_actor=audit_actor,
                         run_id=run_id, with_before_after=with_before_after)


def score_and_write(conn: psycopg.Connection, offer_ids: Sequence[int], *, now: datetime,
                    config: risk.RiskConfig = risk.DEFAULT_CONFIG,
                    chunk_offers: int = DEFAULT_CHUNK_OFFERS, audit_actor: str | None = None,
                    run_id: str | None = None, with_before_after: bool = False,
                    connect: Callable[[], psycopg.Connection] | None = None) -> ScoreRun:
    """Score the offers chunk by chunk, writing each chunk (see _ChunkWriter) - on a thread,
    overlapping the scoring of the next chunk, when the history is read ahead on a second
    connection (`connect`) - then the audit rows and the figures in one go."""
    run = ScoreRun()
    conn.execute(CREATE_STAGE_SQL)
    # the writer thread may own the connection only when iter_scores no longer uses it after
    # its first chunk: the history then comes from the read-ahead connection
    threaded = connect is not None and len(set(offer_ids)) > chunk_offers
    writer = _ChunkWriter(conn, run, computed_at=now,
                          keep_full=audit_actor is not None or with_before_after, threaded=threaded)
    build_s = 0.0  # kept apart from run.write_s, which the writer thread adds to
    with _HeapReuse():
        try:
            for scores in iter_scores(conn, offer_ids, now=now, config=config,
                                      chunk_offers=chunk_offers, run=run, connect=connect,
                                      json_text=True):
                t0 = time.perf_counter()
                payload = _stage_payload(scores)
                del scores
                build_s += time.perf_counter() - t0
                writer.put(payload)
                del payload
            writer.finish()
        finally:
            writer.close()
    run.write_s += build_s
    if run.selected == 0:
        return run
    return _finish_stage(conn, computed_at=now, run=run, audit_actor=audit_actor, run_id=run_id,
                         with_before_after=with_before_after)


def refresh_risk_scores(conn: psycopg.Connection, *, full: bool = False, now: datetime | None = None,
                        config: risk.RiskConfig = risk.DEFAULT_CONFIG,
                        chunk_offers: int = DEFAULT_CHUNK_OFFERS,
                        connect: Callable[[], psycopg.Connection] | None = None) -> ScoreRun:
    """The `risk_scores` asset: rescore changed offers (or all with `full`), in the caller's
    transaction. `now` is the instant the scores describe and is stored as computed_at.
    `connect` (optional) opens a read-ahead connection for the history (see iter_scores)."""
    now = now or datetime.now(UTC)
    ids = all_offer_ids(conn) if full else changed_offer_ids(conn, config.model_version)
    return score_and_write(conn, ids, now=now, config=config, chunk_offers=chunk_offers,
                           connect=connect)


def check_risk(conn: psycopg.Connection, *, offer_ids: Sequence[int] = (), gtin: str | None = None,
               actor: str, run_id: str | None = None, now: datetime | None = None,
               config: risk.RiskConfig = risk.DEFAULT_CONFIG) -> ScoreRun:
    """Check Risk (runbook procedure B): rescore the offers now, update their bucket and write
    one CALC_RISK audit row per offer, all in the caller's transaction."""
    if not actor or not actor.strip():
        raise ValueError("an actor is required for the audit log")
    now = now or datetime.now(UTC)
    ids = resolve_offer_ids(conn, offer_ids, gtin)
    return score_and_write(conn, ids, now=now, config=config, audit_actor=actor.strip(),
                           run_id=run_id, with_before_after=True)


# -- demo summary --------------------------------------------------------------------------------


def _named_demo_offers() -> list[tuple[str, str, str]]:
    """(label, locator LIKE pattern, shop domain) of the demo's scripted offers."""
    from smartbuy_pipeline.simulator import scenarios as S

    demo = S.demo_scenario()
    out = []
    for key in (S.DEMO_BF_FAKE, S.DEMO_BF_FAKE_FEED, S.DEMO_SCAM, S.DEMO_GENUINE_DROP):
        offer = demo.offer(key)
        shop = demo.shop_of(offer)
        pattern = f"%/s/{shop.slug}/p/{key}" if shop.source_kind == "page" else offer.external_id
        out.append((key, pattern, shop.domain))
    return out


def risk_summary(conn: psycopg.Connection,
                 named: Sequence[tuple[str, str, str]] | None = None
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(bucket distribution rows {bucket, offers, share_pct}, reason rows {label, offer_id, shop,
    product, score, bucket, code, penalty, message} of the named offers; default: the demo's
    scripted Black Friday fakes, scam and genuine drop). An offer without reasons has one row
    with code None."""
    named = list(named) if named is not None else _named_demo_offers()
    with conn.cursor(row_factory=dict_row) as cur:
        dist = cur.execute(BUCKET_DISTRIBUTION_SQL).fetchall()
        reasons = cur.execute(NAMED_REASONS_SQL, {
            "labels": [n[0] for n in named], "patterns": [n[1] for n in named],
            "domains": [n[2] for n in named]}).fetchall() if named else []
    return dist, reasons


def scores_of(conn: psycopg.Connection, offer_ids: Sequence[int]) -> dict[int, Mapping[str, Any]]:
    """Current score rows by offer id (tests, CLI)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute("select * from offer_risk_scores where offer_id = any(%(ids)s)",
                           {"ids": list(offer_ids)}).fetchall()
    return {r["offer_id"]: r for r in rows}
