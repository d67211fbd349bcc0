"""public.fn_get_feed_candidates (sql/0013): matching, hard filters, best offer, security, index.

A scripted catalog: every offer that must lose does so for exactly one reason (blocked shop,
inactive offer, inactive shop, bucket C, unscored, out of stock, over the wish's max price, over
the mission budget, other currency), and each is cheaper than the offer that must win.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest
from psycopg import errors
from psycopg.rows import dict_row

from smartbuy_pipeline.domain.gtin import make_gtin13
from tests.support import acting_as, sign_up

pytestmark = pytest.mark.integration

FEED = "select * from public.fn_get_feed_candidates(%s)"


@pytest.fixture()
def conn(db_url) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url.url, autocommit=True, row_factory=dict_row) as c:
        yield c


def new_user(conn: psycopg.Connection, email: str) -> tuple[str, str]:
    return sign_up(conn, email)


def one(conn, query, params=()):
    return next(iter(conn.execute(query, params).fetchone().values()))


class Catalog:
    """Builds shops, products and offers (with risk scores) as the migration owner."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn
        self.serial = 0

    def shop(self, name: str, active: bool = True) -> int:
        domain = name.lower().replace(" ", "-") + ".example"
        return one(self.conn, "insert into shops (name, domain, active) values (%s, %s, %s) returning id",
                   (name, domain, active))

    def product(self, name: str, brand: str | None = None) -> int:
        self.serial += 1
        gtin = make_gtin13("789", self.serial).zfill(14)
        return one(self.conn, "insert into products (gtin, name, brand) values (%s, %s, %s) returning id",
                   (gtin, name, brand))

    def offer(self, product_id: int, shop_id: int, price: str, *, score: int | None = 90, currency="BRL",
              availability="in_stock", active=True, freight: str | None = None) -> int:
        self.serial += 1
        offer_id = one(self.conn, """
            insert into offers (product_id, shop_id, source_kind, locator, price, currency, availability,
                                active, freight)
            values (%s, %s, 'page', %s, %s, %s, %s, %s, %s) returning id""",
            (product_id, shop_id, f"https://shop.example/p/{self.serial}", Decimal(price), currency,
             availability, active, freight))
        if score is not None:
            bucket = "A" if score >= 80 else "B" if score >= 60 else "C"
            self.conn.execute(
                "insert into offer_risk_scores (offer_id, score, bucket, reasons, model_version)"
                " values (%s, %s, %s, %s, 'test')",
                (offer_id, score, bucket, json.dumps([{"code": f"score_{score}"}])))
        return offer_id


def wish(conn, household_id: str, title: str, *, max_price: str | None = None, product_id: int | None = None,
         active=True, urgency="medium", currency="BRL") -> int:
    return one(conn, """
        insert into wishes (household_id, title, max_price, product_id, active, urgency, currency)
        values (%s, %s, %s, %s, %s, %s, %s) returning id""",
        (household_id, title, max_price, product_id, active, urgency, currency))


@pytest.fixture()
def world(conn) -> dict:
    c = Catalog(conn)
    ids: dict = {}
    ids["user_a"], ids["ha"] = new_user(conn, "ana@example.com")
    ids["user_b"], ids["hb"] = new_user(conn, "bruno@example.com")
    loja_a, loja_b = c.shop("Loja A"), c.shop("Loja B")
    blocked, risky = c.shop("Bloqueada"), c.shop("Arriscada")
    closed = c.shop("Fechada", active=False)
    ids.update(loja_a=loja_a, loja_b=loja_b, blocked=blocked)

    # Wish "air fryer mondial" (max 500): the winner is 449.90 at Loja A; everything cheaper loses.
    fryer = ids["fryer"] = c.product("Fritadeira Air Fryer Mondial 4L", "Mondial")
    c.offer(fryer, blocked, "299.00")                         # blocked shop
    c.offer(fryer, risky, "310.00", score=40)                 # bucket C (the cheapest that is not blocked)
    c.offer(fryer, loja_a, "320.00", active=False)            # inactive offer
    c.offer(fryer, closed, "330.00")                          # inactive shop
    c.offer(fryer, loja_b, "340.00", score=None)              # unscored
    c.offer(fryer, loja_a, "350.00", availability="out_of_stock")
    c.offer(fryer, loja_b, "99.00", currency="USD")           # other currency
    ids["fryer_best"] = c.offer(fryer, loja_a, "449.90", score=65)  # bucket B: allowed
    c.offer(fryer, loja_b, "459.90", score=95)
    c.offer(fryer, risky, "520.00", score=95)                 # over the wish's max price
    # A second fryer shares two of the wish's three terms (rank 2/3 >= 0.6): a weaker candidate.
    philco = ids["philco"] = c.product("Fritadeira Air Fryer Philco 3L", "Philco")
    ids["philco_best"] = c.offer(philco, loja_b, "399.00", availability="unknown")
    # Shares only "fryer" with the wish (1/3): not a candidate.
    c.offer(c.product("Livro de receitas para fryer"), loja_a, "49.90")

    # Wish "CAFETEIRA ELETRICA" (case, no accents) vs "Cafeteira Elétrica Britânia"; budget 300.
    coffee = ids["coffee"] = c.product("Cafeteira Elétrica Britânia CP15", "Britânia")
    c.offer(coffee, loja_a, "310.00")                         # over the mission budget
    ids["coffee_best"] = c.offer(coffee, loja_b, "289.90", freight="15.00")
    c.offer(coffee, loja_a, "289.90", freight="25.00")        # same price, dearer freight

    # Wish "Mouse": a Mousepad with a fine offer must not match (no substring matching).
    c.offer(c.product("Mousepad Gamer XL", "Redragon"), loja_a, "59.90")

    # Wish "notebook dell": its only safe offer is over the household's mission budget (1200).
    c.offer(c.product("Notebook Dell Inspiron 15", "Dell"), loja_a, "3500.00")

    # Wish by product_id, whatever its title says.
    phone = ids["phone"] = c.product("Smartphone Galaxy A15 128GB", "Samsung")
    ids["phone_best"] = c.offer(phone, loja_a, "999.00", score=85)

    ha = ids["ha"]
    conn.execute("insert into household_profiles (household_id, budget_per_mission, blocked_shop_ids)"
                 " values (%s, 1200, %s)", (ha, [blocked]))
    ids["w_fryer"] = wish(conn, ha, "air fryer mondial", max_price="500", urgency="high")
    ids["w_coffee"] = wish(conn, ha, "CAFETEIRA ELETRICA")
    ids["w_mouse"] = wish(conn, ha, "Mouse")
    ids["w_notebook"] = wish(conn, ha, "notebook dell")
    ids["w_phone"] = wish(conn, ha, "presente da Maria", product_id=phone, urgency="low")
    ids["w_inactive"] = wish(conn, ha, "Cafeteira", active=False)
    ids["w_stopwords"] = wish(conn, ha, "o de a")
    ids["w_b"] = wish(conn, ids["hb"], "Fritadeira")
    return ids


def coffee_budget(conn, household_id: str, amount: str | None) -> None:
    conn.execute("update household_profiles set budget_per_mission = %s where household_id = %s",
                 (amount, household_id))


def feed_as_member(conn, world, household_key="ha", user_key="user_a") -> list[dict]:
    with acting_as(conn, "authenticated", world[user_key]) as c:
        return c.execute(FEED, (world[household_key],)).fetchall()


# --------------------------------------------------------------------------------- results
def test_best_offer_per_wish_after_hard_filters(conn, world):
    rows = feed_as_member(conn, world)
    got = [(r["wish_id"], r["product_id"], r["offer_id"], str(r["price"])) for r in rows]
    assert got == [
        # urgency high first, then medium (newest first), then low
        (world["w_fryer"], world["fryer"], world["fryer_best"], "449.90"),
        (world["w_fryer"], world["philco"], world["philco_best"], "399.00"),
        (world["w_coffee"], world["coffee"], world["coffee_best"], "289.90"),
        (world["w_phone"], world["phone"], world["phone_best"], "999.00"),
    ]  # no row for "notebook dell": its offer (3500) is over the mission budget (1200)


def test_rows_carry_match_offer_shop_and_risk_data(conn, world):
    rows = {(r["wish_id"], r["product_id"]): r for r in feed_as_member(conn, world)}
    fryer = rows[(world["w_fryer"], world["fryer"])]
    assert fryer["wish_title"] == "air fryer mondial" and fryer["wish_urgency"] == "high"
    assert (fryer["match_kind"], fryer["match_rank"]) == ("title", 1.0)
    assert fryer["product_name"] == "Fritadeira Air Fryer Mondial 4L" and fryer["product_brand"] == "Mondial"
    assert len(fryer["gtin"]) == 14
    assert (fryer["shop_id"], fryer["shop_name"], fryer["currency"]) == (world["loja_a"], "Loja A", "BRL")
    assert (fryer["risk_score"], fryer["risk_bucket"], fryer["risk_reasons"]) == (65, "B", [{"code": "score_65"}])
    assert fryer["availability"] == "in_stock" and fryer["freight"] is None
    assert fryer["eligible_offers"] == 2  # 449.90 at Loja A and 459.90 at Loja B
    philco = rows[(world["w_fryer"], world["philco"])]
    assert philco["match_kind"] == "title" and philco["match_rank"] == pytest.approx(2 / 3)
    assert philco["availability"] == "unknown"
    phone = rows[(world["w_phone"], world["phone"])]
    assert (phone["match_kind"], phone["match_rank"], phone["wish_title"]) == ("product", 1.0, "presente da Maria")
    coffee = rows[(world["w_coffee"], world["coffee"])]
    assert coffee["freight"] == Decimal("15.00")  # same price: the cheaper freight wins


def test_title_match_ignores_case_and_accents_but_not_whole_words(conn, world):
    rows = feed_as_member(conn, world)
    by_wish = {}
    for r in rows:
        by_wish.setdefault(r["wish_id"], []).append(r["product_name"])
    assert by_wish[world["w_coffee"]] == ["Cafeteira Elétrica Britânia CP15"]
    assert world["w_mouse"] not in by_wish          # "Mouse" is not "Mousepad"
    assert world["w_stopwords"] not in by_wish      # only stopwords: matches nothing
    assert world["w_inactive"] not in by_wish
    assert "Livro de receitas para fryer" not in by_wish[world["w_fryer"]]


def test_budget_per_mission_and_allowed_shops(conn, world):
    def feed() -> set[tuple[int, int, str]]:
        return {(r["wish_id"], r["shop_id"], str(r["price"])) for r in feed_as_member(conn, world)}

    coffee_budget(conn, world["ha"], "300")  # the fryers (399+) and the phone (999) are over it
    assert feed() == {(world["w_coffee"], world["loja_b"], "289.90")}
    conn.execute("update household_profiles set allowed_shop_ids = %s where household_id = %s",
                 ([world["loja_a"]], world["ha"]))
    assert feed() == {(world["w_coffee"], world["loja_a"], "289.90")}  # Loja A's, dearer freight
    coffee_budget(conn, world["ha"], "250")
    assert feed() == set()
    coffee_budget(conn, world["ha"], None)
    assert feed() == {(world["w_fryer"], world["loja_a"], "449.90"), (world["w_coffee"], world["loja_a"], "289.90"),
                      (world["w_phone"], world["loja_a"], "999.00"), (world["w_notebook"], world["loja_a"], "3500.00")}


def test_household_without_profile_has_no_shop_or_budget_limits(conn, world):
    conn.execute("delete from household_profiles where household_id = %s", (world["ha"],))
    rows = feed_as_member(conn, world)
    fryer = next(r for r in rows if r["product_id"] == world["fryer"])
    assert str(fryer["price"]) == "299.00"  # the (no longer) blocked shop wins
    coffee = next(r for r in rows if r["product_id"] == world["coffee"])
    assert str(coffee["price"]) == "289.90"


def test_at_most_five_products_per_wish_best_match_first(conn, world):
    c = Catalog(conn)
    c.serial = 1000
    shop = world["loja_a"]
    for i in range(7):
        c.offer(c.product(f"Fritadeira Air Fryer Mondial modelo {i}"), shop, f"{100 + i}.00")
    rows = [r for r in feed_as_member(conn, world) if r["wish_id"] == world["w_fryer"]]
    assert len(rows) == 5
    assert all(r["match_rank"] == 1.0 for r in rows)
    assert [str(r["price"]) for r in rows] == ["100.00", "101.00", "102.00", "103.00", "104.00"]


def test_empty_household_returns_no_rows_and_no_error(conn, world):
    _, hc = new_user(conn, "carla@example.com")
    assert conn.execute(FEED, (hc,)).fetchall() == []


# -------------------------------------------------------------------------------- security
def test_member_gets_the_same_feed_as_the_pipeline(conn, world):
    as_member = feed_as_member(conn, world)
    with acting_as(conn, "smartbuy_pipeline") as c:
        as_pipeline = c.execute(FEED, (world["ha"],)).fetchall()
    with acting_as(conn, "smartbuy_ops") as c:
        as_ops = c.execute(FEED, (world["ha"],)).fetchall()
    assert as_member and as_member == as_pipeline == as_ops


def test_user_cannot_read_another_households_feed(conn, world):
    with acting_as(conn, "authenticated", world["user_a"]) as c:
        with pytest.raises(errors.InsufficientPrivilege, match=f"not a member of household {world['hb']}"):
            c.execute(FEED, (world["hb"],))
    # B reads B's own feed fine (one wish, the Philco and Mondial fryers match "Fritadeira").
    rows = feed_as_member(conn, world, "hb", "user_b")
    assert {r["wish_id"] for r in rows} == {world["w_b"]}


def test_no_jwt_subject_or_unknown_household_is_refused(conn, world):
    with acting_as(conn, "authenticated") as c:
        with pytest.raises(errors.InsufficientPrivilege, match="not a member"):
            c.execute(FEED, (world["ha"],))
    with acting_as(conn, "authenticated", world["user_a"]) as c:
        with pytest.raises(errors.InsufficientPrivilege):
            c.execute(FEED, ("00000000-0000-0000-0000-000000000000",))
    with acting_as(conn, "authenticated", world["user_a"]) as c:
        with pytest.raises(errors.InvalidParameterValue):
            c.execute(FEED, (None,))


@pytest.mark.parametrize("role", ["anon", "smartbuy_analyst"])
def test_roles_without_grant_cannot_execute(conn, world, role):
    with acting_as(conn, role, world["user_a"]) as c:
        with pytest.raises(errors.InsufficientPrivilege, match="permission denied for function fn_get_feed_candidates"):
            c.execute(FEED, (world["ha"],))


def test_function_is_pinned_invoker_and_granted_to_the_intended_roles(conn):
    row = conn.execute("""
        select p.proconfig, p.prosecdef,
               array(select r from unnest(array['public', 'anon', 'authenticated', 'smartbuy_pipeline',
                                                'smartbuy_ops', 'smartbuy_analyst']) r
                     where has_function_privilege(r, p.oid, 'EXECUTE')) as granted
        from pg_proc p where p.oid = 'public.fn_get_feed_candidates(uuid)'::regprocedure
    """).fetchone()
    assert row == {"proconfig": ['search_path=""'], "prosecdef": False,
                   "granted": ["authenticated", "smartbuy_pipeline", "smartbuy_ops"]}


def test_incomplete_signups_function_is_for_pipeline_and_ops_only(conn):
    row = conn.execute("""
        select p.prosecdef, array(select r from unnest(array['public', 'anon', 'authenticated',
                   'smartbuy_pipeline', 'smartbuy_ops', 'smartbuy_analyst']) r
               where has_function_privilege(r, p.oid, 'EXECUTE')) as granted
        from pg_proc p where p.oid = 'public.fn_incomplete_signups(integer)'::regprocedure
    """).fetchone()
    assert row == {"prosecdef": True, "granted": ["smartbuy_pipeline", "smartbuy_ops"]}


# --------------------------------------------------------------------------- search helpers
@pytest.mark.parametrize("text, folded", [
    ("Cafeteira ELÉTRICA Britânia, 4L", "cafeteira eletrica britania 4l"),
    ("  Pão-de-Açúcar  ", "pao de acucar"),
    ("ÀÁÂÃÄÇÉÊÍÓÔÕÚÜ", "aaaaaceeiooouu"),
])
def test_search_fold(conn, text, folded):
    assert one(conn, "select public.fn_search_fold(%s)", (text,)) == folded


def test_search_terms_are_stemmed_and_stopword_free(conn):
    assert one(conn, "select public.fn_search_terms('As Panelas de PRESSÃO')") == ["panel", "pressa"]
    assert one(conn, "select public.fn_search_terms('o de a')") == []
    assert one(conn, "select public.fn_search_any_query('o de a')") is None


# ------------------------------------------------------------------------------------ index
def filler_products(conn, n: int) -> None:
    rows = [(make_gtin13("790", 100_000 + i).zfill(14), f"Produto genérico {i} modelo {i % 97}", f"Marca{i % 13}")
            for i in range(n)]
    with conn.cursor() as cur, cur.copy("copy products (gtin, name, brand) from stdin") as copy:
        for row in rows:
            copy.write_row(row)
    conn.execute("analyze products")


def gin_scans(conn) -> int:
    return one(conn, "select idx_scan from pg_stat_user_indexes where indexrelname = 'products_search_idx'")


def test_title_matching_is_backed_by_the_gin_index(conn, world):
    """On 5,000 products (statistics fresh) the planner picks products_search_idx for the
    matching step of its own accord: no enable_seqscan=off. Shown twice: EXPLAIN of the
    function's matching query shape, and the index's scan counter moving when the function runs."""
    filler_products(conn, 5000)
    plan = one(conn, """
        explain (format json)
        select m.id
        from wishes w
        cross join lateral (
            select p.id from products p
            where public.fn_product_search_vector(p.name, p.brand) @@ public.fn_search_any_query(w.title)
        ) m
        where w.household_id = %s and w.active and w.product_id is null
    """, (world["ha"],))
    assert "products_search_idx" in json.dumps(plan)

    before = gin_scans(conn)
    with acting_as(conn, "authenticated", world["user_a"]) as c:
        assert c.execute(FEED, (world["ha"],)).fetchall()
    conn.execute("select pg_stat_force_next_flush()")
    conn.execute("select 1")  # a statement after the forced flush request reports the counts
    deadline = time.monotonic() + 10
    while gin_scans(conn) <= before and time.monotonic() < deadline:
        conn.execute("select pg_stat_clear_snapshot()")
        time.sleep(0.2)
    assert gin_scans(conn) > before
