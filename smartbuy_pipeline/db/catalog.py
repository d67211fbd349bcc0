"""Bulk, set-based catalog upserts: COPY into temporary tables, then one statement per table.

Shops are keyed by domain, products by GTIN-14, offers by (shop, source kind, locator). The
caller owns the transaction: a catalog load is all or nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

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
    return CatalogCounts(shop_counts, product_counts, offer_counts)


CATALOG_STATUS = """
select s.name as shop, s.domain, s.reputation_score, o.source_kind,
       count(o.id) as offers,
       count(o.id) filter (where o.price is not null) as priced,
       max(o.last_checked_at) as last_checked_at
from shops s
left join offers o on o.shop_id = s.id and o.active
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
