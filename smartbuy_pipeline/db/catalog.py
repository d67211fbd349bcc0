"""Bulk, set-based catalog upserts: COPY into temporary tables, then one statement per table.

Shops are keyed by domain, products by GTIN-14, offers by (shop, source kind, locator). The
caller owns the transaction: a catalog load is all or nothing.

`upsert_catalog` loads trusted rows (the demo catalog); `import_catalog` is the audited import of
a catalog file (runbook procedure A, docs/catalog.md); `export_catalog` writes the same format
back; `deactivate_offers` is DEACTIVATE_OFFER.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row

from smartbuy_pipeline.domain import catalog_file as cf
from smartbuy_pipeline.domain.gtin import normalize_gtin

SHOP_COLUMNS = (
    "name", "domain", "reputation_score", "locale", "currency", "max_concurrent_requests",
    "min_interval_ms", "check_interval_seconds", "allow_private_network", "feed_url", "api_base_url",
    "created_at",
)
PRODUCT_COLUMNS = ("gtin", "name", "brand", "category")
OFFER_COLUMNS = ("shop_domain", "product_gtin", "source_kind", "locator")

CREATE_STAGING = """
create temporary table stage_shops (
    name text, domain text, reputation_score smallint, locale text, currency char(3),
    max_concurrent_requests int, min_interval_ms int, check_interval_seconds int,
    allow_private_network boolean, feed_url text, api_base_url text, created_at timestamptz
) on commit drop;
create temporary table stage_products (gtin char(14), name text, brand text, category text) on commit drop;
create temporary table stage_offers (shop_domain text, product_gtin char(14), source_kind text, locator text)
    on commit drop;
"""

UPSERT_SHOPS = """
insert into shops as s (name, domain, reputation_score, locale, currency, max_concurrent_requests,
                        min_interval_ms, check_interval, allow_private_network, feed_url, api_base_url,
                        created_at)
select name, lower(domain), reputation_score, coalesce(locale, 'pt_BR'), coalesce(currency, 'BRL'),
       coalesce(max_concurrent_requests, 4), coalesce(min_interval_ms, 250),
       make_interval(secs => coalesce(check_interval_seconds, 3600)),
       coalesce(allow_private_network, false), feed_url, api_base_url, coalesce(created_at, now())
from stage_shops
on conflict (domain) do update set
    name = excluded.name, reputation_score = excluded.reputation_score, locale = excluded.locale,
    currency = excluded.currency, max_concurrent_requests = excluded.max_concurrent_requests,
    min_interval_ms = excluded.min_interval_ms, check_interval = excluded.check_interval,
    allow_private_network = excluded.allow_private_network, feed_url = excluded.feed_url,
    api_base_url = excluded.api_base_url
returning (xmax = 0) as inserted
"""

UPSERT_PRODUCTS = """
insert into products as p (gtin, name, brand, category)
select gtin, name, brand, category from stage_products
on conflict (gtin) do update set name = excluded.name, brand = excluded.brand, category = excluded.category
returning (xmax = 0) as inserted
"""

UPSERT_OFFERS = """
insert into offers as o (product_id, shop_id, source_kind, locator, currency)
select p.id, s.id, so.source_kind, so.locator, s.currency
from stage_offers so
join shops s on s.domain = lower(so.shop_domain)
join products p on p.gtin = so.product_gtin
on conflict (shop_id, source_kind, locator) do update set product_id = excluded.product_id, active = true
returning (xmax = 0) as inserted
"""


@dataclass(frozen=True)
class UpsertCounts:
    inserted: int
    updated: int


@dataclass(frozen=True)
class CatalogCounts:
    shops: UpsertCounts
    products: UpsertCounts
    offers: UpsertCounts


def _copy(conn: psycopg.Connection, table: str, columns: tuple[str, ...], rows: Iterable[Mapping[str, Any]]) -> None:
    with conn.cursor().copy(f"copy {table} ({', '.join(columns)}) from stdin") as copy:
        for row in rows:
            copy.write_row(tuple(row.get(c) for c in columns))


def _counts(cur: psycopg.Cursor) -> UpsertCounts:
    flags = [r[0] for r in cur.fetchall()]
    return UpsertCounts(inserted=sum(flags), updated=len(flags) - sum(flags))


def upsert_catalog(
    conn: psycopg.Connection,
    shops: Iterable[Mapping[str, Any]],
    products: Iterable[Mapping[str, Any]],
    offers: Iterable[Mapping[str, Any]],
) -> CatalogCounts:
    """Upsert shops, products and offers in the caller's transaction. Rows must be valid."""
    conn.execute(CREATE_STAGING)
    _copy(conn, "stage_shops", SHOP_COLUMNS, shops)
    _copy(conn, "stage_products", PRODUCT_COLUMNS,
          ({**p, "gtin": normalize_gtin(p["gtin"])} for p in products))
    _copy(conn, "stage_offers", OFFER_COLUMNS,
          ({**o, "product_gtin": normalize_gtin(o["product_gtin"])} for o in offers))
    with conn.cursor() as cur:
        shop_counts = _counts(cur.execute(UPSERT_SHOPS))
        product_counts = _counts(cur.execute(UPSERT_PRODUCTS))
        offer_counts = _counts(cur.execute(UPSERT_OFFERS))
        if offer_counts.inserted:
            # New offers got their offer_checks rows from 0015's trigger: a table filled in bulk has
            # no statistics until autovacuum comes by, and the tracker's due-offers join then
            # plans a nested loop over all of offer_checks per batch (measured: 11 s a batch at
            # 20k offers). (Only the owner may ANALYZE: another role gets a warning, not an error.)
            cur.execute("analyze offers, offer_checks")
    return CatalogCounts(shop_counts, product_counts, offer_counts)


CATALOG_STATUS = """
select s.name as shop, s.domain, s.reputation_score, o.source_kind,
       count(o.id) as offers,
       count(o.id) filter (where o.price is not null) as priced,
       max(c.last_checked_at) as last_checked_at
from shops s
left join offers o on o.shop_id = s.id and o.active
left join offer_checks c on c.offer_id = o.id
group by s.id, o.source_kind
order by s.name, o.source_kind
"""


def catalog_status(conn: psycopg.Connection) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(CATALOG_STATUS).fetchall()


# What changed since `since`, from analytics.price_changes (maintained by the price_changes
# asset: an offer's first observation counts as a change from nothing).
RECENT_CHANGES = """
select c.offer_id, s.name as shop, p.name as product, c.previous_price as before, c.price,
       c.reference_price, c.availability
from analytics.price_changes c
join offers o on o.id = c.offer_id
join shops s on s.id = o.shop_id
join products p on p.id = o.product_id
where c.changed_at >= %(since)s
order by s.name, p.name
"""


def recent_changes(conn: psycopg.Connection, since) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(RECENT_CHANGES, {"since": since}).fetchall()


# -- audited import (runbook procedure A) --------------------------------------------------------
#
# import_catalog: the valid rows of a catalog file (domain.catalog_file) are COPYed into
# temporary staging tables; offers naming a shop or product that is neither staged nor stored are
# removed from staging (one anti-join each) and reported with their line; then per entity one
# "plan" table joins staging to the current rows and holds the values after the import plus the
# before/after as jsonb; one UPDATE for the changed rows, one INSERT for the new ones, and one
# INSERT into ops_audit_logs with a row per inserted or changed entity (only the changed columns
# in its diff). Everything runs in one transaction (a savepoint of the caller's): a row is all or
# nothing, and so is the import. No per-row query anywhere.
#
# A field a row leaves empty keeps the stored value (new rows get the column default); offers'
# price and currency are initial values: they apply to a new offer, or to a stored offer that has
# no price yet (the tracker owns prices after that).

UPSERT_SHOP, UPSERT_PRODUCT, UPSERT_OFFER, DEACTIVATE_OFFER = (
    "UPSERT_SHOP", "UPSERT_PRODUCT", "UPSERT_OFFER", "DEACTIVATE_OFFER")
IMPORT_COPY_BATCH = 50_000  # rows buffered per entity before a COPY
# catalog writers (imports, deactivations) queue behind each other, not behind the tracker
CATALOG_LOCK_SQL = "select pg_advisory_xact_lock(hashtextextended('smartbuy.catalog_write', 0))"

IMPORT_STAGING = """
create temporary table if not exists imp_shops (
    line int not null, domain text not null, name text, reputation_score smallint, locale text,
    currency text, max_concurrent_requests int, min_interval_ms int, check_interval_seconds int,
    price_kind text, feed_url text, api_base_url text) on commit drop;
create temporary table if not exists imp_products (
    line int not null, gtin text not null, name text, brand text, category text) on commit drop;
create temporary table if not exists imp_offers (
    line int not null, shop text not null, gtin text not null, source_kind text not null,
    locator text not null, price numeric(12, 2), currency text, active boolean) on commit drop;
truncate imp_shops, imp_products, imp_offers;
"""
IMP_SHOP_COLUMNS = ("line",) + cf.SHOP_FIELDS
IMP_PRODUCT_COLUMNS = ("line",) + cf.PRODUCT_FIELDS
IMP_OFFER_COLUMNS = ("line",) + cf.OFFER_FIELDS

# Offers whose shop or product is neither in the file (valid rows) nor in the database.
REJECT_UNKNOWN_REFS = """
with refs as (
    select so.ctid as rid,
           not exists (select 1 from imp_shops s where s.domain = so.shop)
               and not exists (select 1 from shops s where s.domain = so.shop) as shop_missing,
           not exists (select 1 from imp_products p where p.gtin = so.gtin)
               and not exists (select 1 from products p where p.gtin = so.gtin::bpchar) as product_missing
    from imp_offers so
)
delete from imp_offers so using refs
where so.ctid = refs.rid and (refs.shop_missing or refs.product_missing)
returning so.line, so.shop, so.gtin, so.source_kind, so.locator, refs.shop_missing, refs.product_missing
"""

# The diff of a plan row: only the keys whose value changes (an insert: every non-null key).
DIFF_LATERAL = """
cross join lateral (
    select case when p.before is null then null
                else jsonb_object_agg(e.key, p.before -> e.key) end as before,
           case when p.before is null then jsonb_strip_nulls(p.after)
                else jsonb_object_agg(e.key, e.value) end as after
    from jsonb_each(p.after) e
    where p.before is null or e.value is distinct from p.before -> e.key
) d
"""

AUDIT_INSERT = """
insert into ops_audit_logs (actor, action_type, entity_type, entity_id, payload)
select %(actor)s, {action}, {entity_type}, {entity_id}::text,
       jsonb_build_object('op', case when p.before is null then 'insert' else 'update' end,
                          'key', {key}, 'before', d.before, 'after', d.after, 'line', p.line,
                          'source', %(source)s::text, 'run_id', %(run_id)s::text)
from {plan} p
{join}
""" + DIFF_LATERAL + """
where p.before is distinct from p.after
order by p.line
"""

SHOP_PLAN = """
drop table if exists imp_shop_plan;
create temporary table imp_shop_plan on commit drop as
select n.*,
       jsonb_build_object('name', n.name, 'reputation_score', n.reputation_score, 'locale', n.locale,
                          'currency', n.currency, 'max_concurrent_requests', n.max_concurrent_requests,
                          'min_interval_ms', n.min_interval_ms,
                          'check_interval_seconds', n.check_interval_seconds,
                          'price_kind', n.price_kind, 'feed_url', n.feed_url,
                          'api_base_url', n.api_base_url) as after
from (
    select st.line, st.domain, s.id as shop_id,
           case when s.id is not null then jsonb_build_object(
               'name', s.name, 'reputation_score', s.reputation_score, 'locale', s.locale,
               'currency', s.currency::text, 'max_concurrent_requests', s.max_concurrent_requests,
               'min_interval_ms', s.min_interval_ms,
               'check_interval_seconds', extract(epoch from s.check_interval)::bigint,
               'price_kind', s.price_kind, 'feed_url', s.feed_url, 'api_base_url', s.api_base_url)
           end as before,
           coalesce(st.name, s.name) as name,
           coalesce(st.reputation_score, s.reputation_score) as reputation_score,
           coalesce(st.locale, s.locale, 'pt_BR') as locale,
           coalesce(st.currency, s.currency::text, 'BRL') as currency,
           coalesce(st.max_concurrent_requests, s.max_concurrent_requests, 4) as max_concurrent_requests,
           coalesce(st.min_interval_ms, s.min_interval_ms, 250) as min_interval_ms,
           coalesce(st.check_interval_seconds, extract(epoch from s.check_interval)::bigint, 3600)
               as check_interval_seconds,
           coalesce(st.price_kind, s.price_kind) as price_kind,
           coalesce(st.feed_url, s.feed_url) as feed_url,
           coalesce(st.api_base_url, s.api_base_url) as api_base_url
    from imp_shops st
    left join shops s on s.domain = st.domain
) n
"""
SHOP_UPDATE = """
update shops s set name = p.name, reputation_score = p.reputation_score, locale = p.locale,
    currency = p.currency, max_concurrent_requests = p.max_concurrent_requests,
    min_interval_ms = p.min_interval_ms, check_interval = make_interval(secs => p.check_interval_seconds),
    price_kind = p.price_kind, feed_url = p.feed_url, api_base_url = p.api_base_url
from imp_shop_plan p
where s.id = p.shop_id and p.before is distinct from p.after
"""
SHOP_INSERT = """
insert into shops (name, domain, reputation_score, locale, currency, max_concurrent_requests,
                   min_interval_ms, check_interval, price_kind, feed_url, api_base_url)
select name, domain, reputation_score, locale, currency, max_concurrent_requests, min_interval_ms,
       make_interval(secs => check_interval_seconds), price_kind, feed_url, api_base_url
from imp_shop_plan where shop_id is null
order by line
"""
SHOP_AUDIT = AUDIT_INSERT.format(
    action=f"'{UPSERT_SHOP}'", entity_type="'shop'", entity_id="s.id", plan="imp_shop_plan",
    key="jsonb_build_object('domain', p.domain)", join="join shops s on s.domain = p.domain")

PRODUCT_PLAN = """
drop table if exists imp_product_plan;
create temporary table imp_product_plan on commit drop as
select n.*, jsonb_build_object('name', n.name, 'brand', n.brand, 'category', n.category) as after
from (
    select st.line, st.gtin, pr.id as product_id,
           case when pr.id is not null then jsonb_build_object(
               'name', pr.name, 'brand', pr.brand, 'category', pr.category) end as before,
           coalesce(st.name, pr.name) as name,
           coalesce(st.brand, pr.brand) as brand,
           coalesce(st.category, pr.category) as category
    from imp_products st
    left join products pr on pr.gtin = st.gtin::bpchar
) n
"""
PRODUCT_UPDATE = """
update products pr set name = p.name, brand = p.brand, category = p.category
from imp_product_plan p
where pr.id = p.product_id and p.before is distinct from p.after
"""
PRODUCT_INSERT = """
insert into products (gtin, name, brand, category)
select gtin, name, brand, category from imp_product_plan where product_id is null order by line
"""
PRODUCT_AUDIT = AUDIT_INSERT.format(
    action=f"'{UPSERT_PRODUCT}'", entity_type="'product'", entity_id="pr.id", plan="imp_product_plan",
    key="jsonb_build_object('gtin', p.gtin)", join="join products pr on pr.gtin = p.gtin::bpchar")

# After the shops and products: every staged offer's shop and product exist now.
OFFER_PLAN = """
drop table if exists imp_offer_plan;
create temporary table imp_offer_plan on commit drop as
select n.*,
       jsonb_build_object('gtin', n.gtin, 'price', n.price::text, 'currency', n.currency,
                          'active', n.active) as after
from (
    select st.line, st.shop, st.source_kind, st.locator, sh.id as shop_id, pr.id as product_id,
           o.id as offer_id, st.gtin,
           case when o.id is not null then jsonb_build_object(
               'gtin', cur.gtin::text, 'price', o.price::text, 'currency', o.currency::text,
               'active', o.active) end as before,
           case when o.id is null or o.price is null then st.price else o.price end as price,
           case when o.id is null or (o.price is null and st.price is not null)
                then coalesce(st.currency, sh.currency::text)
                else o.currency::text end as currency,
           coalesce(st.active, o.active, true) as active
    from imp_offers st
    join shops sh on sh.domain = st.shop
    join products pr on pr.gtin = st.gtin::bpchar
    left join offers o on o.shop_id = sh.id and o.source_kind = st.source_kind and o.locator = st.locator
    left join products cur on cur.id = o.product_id
) n
"""
# Relative to the live row for price/currency: a price the tracker wrote meanwhile is kept.
OFFER_UPDATE = """
update offers o set product_id = p.product_id, active = p.active,
    currency = case when o.price is null then p.currency else o.currency end,
    price = coalesce(o.price, p.price)
from imp_offer_plan p
where o.id = p.offer_id and p.before is distinct from p.after
"""
OFFER_INSERT = """
insert into offers (product_id, shop_id, source_kind, locator, price, currency, active)
select product_id, shop_id, source_kind, locator, price, currency, active
from imp_offer_plan where offer_id is null
order by line
"""
OFFER_AUDIT = AUDIT_INSERT.format(
    action=f"'{UPSERT_OFFER}'", entity_type="'offer'", entity_id="o.id", plan="imp_offer_plan",
    key="jsonb_build_object('shop', p.shop, 'source_kind', p.source_kind, 'locator', p.locator)",
    join="join offers o on o.shop_id = p.shop_id and o.source_kind = p.source_kind "
         "and o.locator = p.locator")

PLAN_COUNTS = """
select count(*) filter (where before is null),
       count(*) filter (where before is not null and before <> after),
       count(*) filter (where before = after)
from {plan}
"""


@dataclass
class EntityCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    @property
    def landed(self) -> int:
        return self.inserted + self.updated + self.unchanged


@dataclass
class ImportResult:
    """What an import did (or would do, dry_run): counts per entity, the rejected rows by line,
    and the audit rows written."""

    shops: EntityCounts = field(default_factory=EntityCounts)
    products: EntityCounts = field(default_factory=EntityCounts)
    offers: EntityCounts = field(default_factory=EntityCounts)
    rejected: list[cf.RowError] = field(default_factory=list)
    audit_rows: int = 0
    rows_read: int = 0
    dry_run: bool = False

    @property
    def landed(self) -> int:
        return self.shops.landed + self.products.landed + self.offers.landed

    def counts(self) -> dict[str, dict[str, int]]:
        return {name: {"inserted": c.inserted, "updated": c.updated, "unchanged": c.unchanged}
                for name, c in (("shops", self.shops), ("products", self.products), ("offers", self.offers))}


def _shop_tuple(r: cf.ShopRow) -> tuple:
    return (r.line, r.domain, r.name, r.reputation_score, r.locale, r.currency, r.max_concurrent_requests,
            r.min_interval_ms, r.check_interval_seconds, r.price_kind, r.feed_url, r.api_base_url)


def _product_tuple(r: cf.ProductRow) -> tuple:
    return (r.line, r.gtin, r.name, r.brand, r.category)


def _offer_tuple(r: cf.OfferRow) -> tuple:
    return (r.line, r.shop, r.gtin, r.source_kind, r.locator, r.price, r.currency, r.active)


_STAGES = {
    cf.ShopRow: ("imp_shops", IMP_SHOP_COLUMNS, _shop_tuple),
    cf.ProductRow: ("imp_products", IMP_PRODUCT_COLUMNS, _product_tuple),
    cf.OfferRow: ("imp_offers", IMP_OFFER_COLUMNS, _offer_tuple),
}


def _stage(conn: psycopg.Connection, rows: Iterable[cf.CatalogRow | cf.RowError],
           result: ImportResult) -> None:
    """COPY the valid rows into staging (each entity buffered, IMPORT_COPY_BATCH rows per COPY:
    COPY statements cannot interleave on one connection); collect the parser's RowErrors."""
    buffers: dict[type, list[tuple]] = {t: [] for t in _STAGES}

    def flush(kind: type) -> None:
        table, columns, _ = _STAGES[kind]
        buf = buffers[kind]
        if buf:
            with conn.cursor().copy(f"copy {table} ({', '.join(columns)}) from stdin") as copy:
                for row in buf:
                    copy.write_row(row)
            buf.clear()

    to_tuple = {t: spec[2] for t, spec in _STAGES.items()}
    rejected = result.rejected
    for item in rows:
        result.rows_read += 1
        kind = type(item)
        if kind is cf.RowError:
            rejected.append(item)
            continue
        buf = buffers[kind]
        buf.append(to_tuple[kind](item))
        if len(buf) >= IMPORT_COPY_BATCH:
            flush(kind)
    for kind in _STAGES:
        flush(kind)


def _apply(conn: psycopg.Connection, cur: psycopg.Cursor, plan_sql: str, plan: str, update: str,
           insert: str, audit: str, params: dict) -> tuple[EntityCounts, int]:
    cur.execute(plan_sql)
    inserted, updated, unchanged = cur.execute(PLAN_COUNTS.format(plan=plan)).fetchone()
    if updated:
        cur.execute(update)
    if inserted:
        cur.execute(insert)
    audit_rows = 0
    if inserted or updated:
        cur.execute(f"analyze {plan}")
        cur.execute(audit, params)
        audit_rows = cur.rowcount
    return EntityCounts(inserted, updated, unchanged), audit_rows


def import_catalog(conn: psycopg.Connection, rows: Iterable[cf.CatalogRow | cf.RowError], *,
                   actor: str, dry_run: bool = False, run_id: str | None = None,
                   source: str | None = None) -> ImportResult:
    """Import the rows of a catalog file (domain.catalog_file's reader) in one transaction (a
    savepoint of the caller's): upsert shops, products and offers, one audit row per inserted or
    changed entity (UPSERT_SHOP / UPSERT_PRODUCT / UPSERT_OFFER, payload {op, key, before, after,
    line, source, run_id}, only the changed columns). Parser errors and offers naming an unknown
    shop or product are returned in `rejected` (by line); every other row lands. `dry_run`:
    everything is computed, then rolled back."""
    if not actor or not actor.strip():
        raise ValueError("an actor is required for the audit log")
    result = ImportResult(dry_run=dry_run)
    params = {"actor": actor.strip(), "source": source, "run_id": run_id}
    with conn.transaction() as tx:
        conn.execute(IMPORT_STAGING)
        _stage(conn, rows, result)
        with conn.cursor() as cur:
            cur.execute(CATALOG_LOCK_SQL)
            cur.execute("analyze imp_shops; analyze imp_products; analyze imp_offers")
            for line, shop, gtin, kind, locator, shop_missing, product_missing in cur.execute(REJECT_UNKNOWN_REFS):
                reasons = []
                if shop_missing:
                    reasons.append(f"unknown shop {shop!r} (not in the file or the database)")
                if product_missing:
                    reasons.append(f"unknown product GTIN {gtin} (not in the file or the database)")
                result.rejected.append(cf.RowError(
                    line, cf.UNKNOWN_SHOP if shop_missing else cf.UNKNOWN_PRODUCT,
                    cf.offer_key(shop, kind, locator), "; ".join(reasons)))
            for attr, spec in (
                ("shops", (SHOP_PLAN, "imp_shop_plan", SHOP_UPDATE, SHOP_INSERT, SHOP_AUDIT)),
                ("products", (PRODUCT_PLAN, "imp_product_plan", PRODUCT_UPDATE, PRODUCT_INSERT, PRODUCT_AUDIT)),
                ("offers", (OFFER_PLAN, "imp_offer_plan", OFFER_UPDATE, OFFER_INSERT, OFFER_AUDIT)),
            ):
                counts, audit_rows = _apply(conn, cur, *spec, params)
                setattr(result, attr, counts)
                result.audit_rows += audit_rows
        result.rejected.sort(key=lambda e: e.line)
        if dry_run:
            raise psycopg.Rollback(tx)
    return result


# -- export --------------------------------------------------------------------------------------

EXPORT_SHOPS = """
select 'shop' as type, domain, name, reputation_score, locale, currency::text as currency,
       max_concurrent_requests, min_interval_ms,
       extract(epoch from check_interval)::bigint as check_interval_seconds, price_kind, feed_url,
       api_base_url
from shops order by domain
"""
EXPORT_PRODUCTS = "select 'product' as type, gtin::text as gtin, name, brand, category from products order by gtin"
EXPORT_OFFERS = """
select 'offer' as type, s.domain as shop, p.gtin::text as gtin, o.source_kind, o.locator, o.price,
       o.currency::text as currency, o.active
from offers o
join shops s on s.id = o.shop_id
join products p on p.id = o.product_id
order by s.domain, o.source_kind, o.locator
"""


def export_catalog(conn: psycopg.Connection) -> Iterator[dict[str, Any]]:
    """Every shop, product and offer as import records ({"type": ..., field: value}), shops
    first, then products, then offers: what domain.catalog_file.write_catalog writes."""
    for query in (EXPORT_SHOPS, EXPORT_PRODUCTS, EXPORT_OFFERS):
        with conn.cursor(row_factory=dict_row) as cur:
            yield from cur.stream(query)


# -- deactivate ----------------------------------------------------------------------------------

DEACTIVATE_TARGETS = """
select o.id, s.domain, o.source_kind, o.locator, o.active
from offers o join shops s on s.id = o.shop_id
where o.id = any(%(ids)s)
   or (s.domain = %(domain)s and o.locator = any(%(locators)s))
order by o.id
"""
DEACTIVATE_SQL = """
with upd as (
    update offers o set active = false
    where o.id = any(%(ids)s) and o.active
    returning o.id, o.shop_id, o.source_kind, o.locator
)
insert into ops_audit_logs (actor, action_type, entity_type, entity_id, payload)
select %(actor)s, 'DEACTIVATE_OFFER', 'offer', upd.id::text,
       jsonb_build_object('key', jsonb_build_object('shop', s.domain, 'source_kind', upd.source_kind,
                                                    'locator', upd.locator),
                          'before', jsonb_build_object('active', true),
                          'after', jsonb_build_object('active', false),
                          'reason', %(reason)s::text, 'run_id', %(run_id)s::text)
from upd join shops s on s.id = upd.shop_id
order by upd.id
returning entity_id::bigint
"""


@dataclass
class DeactivateResult:
    deactivated: list[int]  # offer ids set inactive now (one DEACTIVATE_OFFER audit row each)
    already_inactive: list[int]  # no change, no audit row
    offers: list[dict[str, Any]]  # id, domain, source_kind, locator, was_active

    @property
    def audit_rows(self) -> int:
        return len(self.deactivated)


def resolve_offers(conn: psycopg.Connection, *, offer_ids: Sequence[int] = (),
                   shop_domain: str | None = None, locators: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The offers named by id and/or by shop domain + locators ({id, domain, source_kind,
    locator, active}, by id); ValueError naming every unknown id or locator."""
    ids = sorted({int(i) for i in offer_ids})
    locs = [loc.strip() for loc in locators if loc and loc.strip()]
    domain = shop_domain.strip().lower() if shop_domain and shop_domain.strip() else None
    if locs and not domain:
        raise ValueError("locators need the shop's domain")
    if not ids and not locs:
        raise ValueError("give at least one offer id, or a shop domain and locators")
    with conn.cursor(row_factory=dict_row) as cur:
        targets = cur.execute(DEACTIVATE_TARGETS, {"ids": ids, "domain": domain, "locators": locs}).fetchall()
    missing_ids = sorted(set(ids) - {t["id"] for t in targets})
    missing_locs = sorted(set(locs) - {t["locator"] for t in targets if t["domain"] == domain})
    parts = []
    if missing_ids:
        parts.append(f"unknown offer id(s): {', '.join(map(str, missing_ids))}")
    if missing_locs:
        parts.append(f"no offer of shop {domain!r} with locator(s): {', '.join(missing_locs)}")
    if parts:
        raise ValueError("; ".join(parts))
    return targets


def deactivate_offers(conn: psycopg.Connection, *, offer_ids: Sequence[int] = (),
                      shop_domain: str | None = None, locators: Sequence[str] = (),
                      reason: str, actor: str, run_id: str | None = None) -> DeactivateResult:
    """Set offers inactive (by id, and/or by shop domain + locators) with one DEACTIVATE_OFFER
    audit row per offer that was active (payload {key, before, after, reason, run_id}), in the
    caller's transaction. ValueError on a missing reason/actor or an unknown id or locator."""
    if not reason or not reason.strip():
        raise ValueError("a reason is required to deactivate offers")
    if not actor or not actor.strip():
        raise ValueError("an actor is required for the audit log")
    conn.execute(CATALOG_LOCK_SQL)
    targets = resolve_offers(conn, offer_ids=offer_ids, shop_domain=shop_domain, locators=locators)
    target_ids = [t["id"] for t in targets]
    done = sorted(r[0] for r in conn.execute(DEACTIVATE_SQL, {
        "ids": target_ids, "actor": actor.strip(), "reason": reason.strip(), "run_id": run_id}))
    offers = [{**{k: v for k, v in t.items() if k != "active"}, "was_active": t["active"]} for t in targets]
    return DeactivateResult(deactivated=done, already_inactive=sorted(set(target_ids) - set(done)),
                            offers=offers)


def rejected_table_md(rejected: Sequence[cf.RowError], limit: int = 50) -> str:
    """A markdown table of the first `limit` rejected rows (line, kind, key, reason)."""
    def esc(text: str | None) -> str:
        return (text or "-").replace("|", "\\|").replace("\n", " ")

    lines = ["| line | kind | key | reason |", "|---:|---|---|---|"]
    lines += [f"| {e.line} | {e.kind} | {esc(e.key)} | {esc(e.reason)} |" for e in rejected[:limit]]
    if len(rejected) > limit:
        lines.append(f"| ... | | | {len(rejected) - limit} more rejected row(s) |")
    return "\n".join(lines)
