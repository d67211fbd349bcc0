"""The SQL of the app-health checks: the feed canary and the signup (onboarding) check.

The feed canary calls `fn_get_feed_candidates` for a sample of households, each call in its own
savepoint so one failing household does not hide the others. When a feed comes back empty, an
independent plain query with the same hard filters (sql/0013_feed_candidates.sql) counts the
eligible offers the household's wishes match: an empty feed is only a failure when that count
is not zero. The plain query shares the search helpers (what "a title matches" means) but none
of the function's joins, filters or ranking.
"""

from __future__ import annotations

import psycopg

from smartbuy_pipeline.domain.app_health import FeedProbe, IncompleteSignup

SIGNUP_TRIGGER = "smartbuy_on_auth_user_created"
TITLE_MATCH_MIN_RANK = 0.6  # as in fn_get_feed_candidates

# Households that have at least one active wish, a random sample (every one when few).
SAMPLE_HOUSEHOLDS_SQL = """
select h.household_id::text
from (select distinct household_id from public.wishes where active) h
order by random()
limit %(limit)s
"""

FEED_SQL = "select count(*) from public.fn_get_feed_candidates(%(household_id)s)"

# Eligible (wish, offer) pairs of a household, written independently of the function.
MATCHING_OFFERS_SQL = """
with w as (
    select w.*, public.fn_search_terms(w.title) as terms
    from public.wishes w
    where w.household_id = %(household_id)s and w.active
),
matched as (
    select w.id as wish_id, w.product_id
    from w where w.product_id is not null
    union
    select w.id, p.id
    from w
    join public.products p
      on public.fn_product_search_vector(p.name, p.brand) @@ public.fn_search_any_query(w.title)
    where w.product_id is null
      and cardinality(w.terms) > 0
      and (select count(*) from unnest(w.terms) t
           where t = any (tsvector_to_array(public.fn_product_search_vector(p.name, p.brand))))::numeric
          / cardinality(w.terms) >= %(min_rank)s
)
select count(*)
from matched m
join w on w.id = m.wish_id
join public.offers o on o.product_id = m.product_id
join public.shops s on s.id = o.shop_id
join public.offer_risk_scores r on r.offer_id = o.id
left join public.household_profiles hp on hp.household_id = %(household_id)s
where o.active and s.active
  and o.price is not null
  and o.availability in ('in_stock', 'unknown')
  and o.currency = w.currency
  and r.bucket in ('A', 'B')
  and (w.max_price is null or o.price <= w.max_price)
  and (hp.household_id is null or (
        o.shop_id <> all (hp.blocked_shop_ids)
        and (hp.allowed_shop_ids = '{}' or o.shop_id = any (hp.allowed_shop_ids))
        and (hp.budget_per_mission is null
             or (o.currency = hp.currency and o.price <= hp.budget_per_mission))))
"""

INCOMPLETE_SIGNUPS_SQL = """
select user_id::text, email, signed_up_at, missing, incomplete_total
from public.fn_incomplete_signups(%(limit)s)
"""

# By name, not 'auth.users'::regclass: resolving that needs USAGE on schema auth, which the
# pipeline role does not have; the catalogs are readable by everyone.
SIGNUP_TRIGGER_SQL = """
select t.tgenabled::text
from pg_catalog.pg_trigger t
join pg_catalog.pg_class c on c.oid = t.tgrelid
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where n.nspname = 'auth' and c.relname = 'users' and t.tgname = %(name)s
"""


def sample_households(conn: psycopg.Connection, limit: int) -> list[str]:
    return [r[0] for r in conn.execute(SAMPLE_HOUSEHOLDS_SQL, {"limit": limit}).fetchall()]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    sqlstate = getattr(exc, "sqlstate", None)
    first = text[0] if text else type(exc).__name__
    return f"{first} (SQLSTATE {sqlstate})" if sqlstate else first


def probe_feed(conn: psycopg.Connection, household_id: str) -> FeedProbe:
    """Call the feed for one household; on an empty feed count the offers it should have shown.
    Runs inside the caller's transaction, each statement in a savepoint."""
    try:
        with conn.transaction():
            candidates = conn.execute(FEED_SQL, {"household_id": household_id}).fetchone()[0]
    except psycopg.Error as exc:
        return FeedProbe(household_id, 0, error=_one_line(exc))
    if candidates:
        return FeedProbe(household_id, candidates)
    try:
        with conn.transaction():
            matching = conn.execute(
                MATCHING_OFFERS_SQL, {"household_id": household_id, "min_rank": TITLE_MATCH_MIN_RANK}
            ).fetchone()[0]
    except psycopg.Error as exc:
        return FeedProbe(household_id, 0, error=f"plain matching-offers query failed: {_one_line(exc)}")
    return FeedProbe(household_id, 0, matching_offers=matching)


def probe_feeds(conn: psycopg.Connection, sample_size: int) -> list[FeedProbe]:
    return [probe_feed(conn, h) for h in sample_households(conn, sample_size)]


def incomplete_signups(conn: psycopg.Connection, limit: int) -> tuple[int, list[IncompleteSignup]]:
    """(how many auth users lack a profile or membership, the newest `limit` (>= 1) of them)."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    rows = conn.execute(INCOMPLETE_SIGNUPS_SQL, {"limit": limit}).fetchall()
    total = rows[0][4] if rows else 0
    users = [IncompleteSignup(user_id, email, at, tuple(missing)) for user_id, email, at, missing, _ in rows]
    return total, users


def signup_trigger_state(conn: psycopg.Connection) -> str | None:
    """pg_trigger.tgenabled of the signup trigger on auth.users ('O', 'D', ...), None if missing."""
    row = conn.execute(SIGNUP_TRIGGER_SQL, {"name": SIGNUP_TRIGGER}).fetchone()
    return row[0] if row else None
