"""`smartbuy chart` against real PostgreSQL: the demo's scripted history (the simulator's
`price_state` trajectories, loaded exactly as `smartbuy demo` does with `seed_simulated_history`)
for 120 days up to 2026-12-05, risk scores computed by the real model at a few instants, then
the command run as a person runs it (a real process, exit codes, one-line errors).

The series are also checked against a plain-Python reading of the same rows, and the series
query's plan must be index scans of the partitions' primary keys (no Seq Scan on price_history).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from smartbuy_pipeline.charts import PNG_SIGNATURE, PNG_SIZE, png_size
from smartbuy_pipeline.db.charts import (
    LOW_30D_SQL,
    SERIES_SQL,
    load_chart_data,
    resolve_target,
    series_params,
    window,
)
from smartbuy_pipeline.domain.gtin import make_gtin13, normalize_gtin
from smartbuy_pipeline.simulator.scenarios import DEMO_BF_FAKE, demo_scenario

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
UNTIL = datetime(2026, 12, 5, tzinfo=UTC)          # end of every chart window here (--until)
UNTIL_ARG = "2026-12-05T00:00:00Z"
SCORED_AT = [datetime(2026, m, d, tzinfo=UTC) for m, d in
             ((9, 1), (9, 20), (10, 10), (10, 25), (11, 10), (11, 24), (11, 28), (12, 2))]
SIM_BASE = "http://127.0.0.1:9"  # never fetched: only the catalog's locators point there


@pytest.fixture(scope="module")
def world_db(new_database, template_database) -> tuple[str, dict]:
    """A migrated database with the demo catalog, its simulated history up to UNTIL and risk
    scores; ANALYZEd. Tests read it, or clone it (`world_url`) to change it."""
    from smartbuy_pipeline.db.catalog import upsert_catalog
    from smartbuy_pipeline.db.risk import score_and_write
    from smartbuy_pipeline.demo import seed_simulated_history

    url = new_database(template=template_database)
    scenario = demo_scenario()
    rows = scenario.catalog_rows(SIM_BASE, now=datetime(2026, 6, 1, tzinfo=UTC))
    with psycopg.connect(url.url) as conn:
        upsert_catalog(conn, rows["shops"], rows["products"], rows["offers"])
        assert seed_simulated_history(conn, scenario, SIM_BASE, UNTIL) > 0
        offer_ids = [r[0] for r in conn.execute("select id from offers order by id")]
        for at in SCORED_AT:
            score_and_write(conn, offer_ids, now=at)
        fake = scenario.offer(DEMO_BF_FAKE)
        bf_offer, gtin14 = conn.execute(
            "select o.id, p.gtin from offers o join products p on p.id = o.product_id where o.locator like %s",
            (f"%/p/{fake.key}",)).fetchone()
        product_offers = conn.execute(
            "select count(*) from offers where product_id = (select product_id from offers where id = %s)",
            (bf_offer,)).fetchone()[0]
    with psycopg.connect(url.url, autocommit=True) as conn:
        conn.execute("analyze")
    return url.database, {"bf_offer": bf_offer, "gtin14": gtin14, "gtin13": gtin14.lstrip("0"),
                          "shops": product_offers, "url": url}


@pytest.fixture()
def world(world_db) -> dict:
    return world_db[1]


@pytest.fixture()
def world_url(world_db, new_database):
    """A private copy of the world, for tests that add rows."""
    return new_database(template=world_db[0])


def smartbuy(*args: str, url, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBUY_")}
    env["SMARTBUY_DATABASE_URL"] = url.url
    env["COLUMNS"] = "200"  # keep rich from wrapping the one-line errors in narrow CI logs
    return subprocess.run([sys.executable, "-m", "smartbuy_pipeline.cli", *args], check=False,
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


# ------------------------------------------------------------------------------------- CLI
def test_chart_by_offer_id(world, tmp_path):
    out = tmp_path / "offer.png"
    result = smartbuy("chart", str(world["bf_offer"]), "--until", UNTIL_ARG, "--output", str(out),
                      url=world["url"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    assert "1 shop(s)" in result.stdout and "1 bucket change(s)" in result.stdout
    png = out.read_bytes()
    assert png[:8] == PNG_SIGNATURE and png_size(png) == PNG_SIZE


def test_chart_by_gtin_default_file_name(world, tmp_path):
    result = smartbuy("chart", world["gtin13"], "--until", UNTIL_ARG, url=world["url"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / f"chart-{world['gtin13']}.png"
    assert f"wrote chart-{world['gtin13']}.png" in result.stdout
    assert f"{world['shops']} shop(s)" in result.stdout
    assert png_size(out.read_bytes()) == PNG_SIZE
    # the same data, the same bytes (also as GTIN-14 and with --days spelled out)
    again = tmp_path / "again.png"
    result = smartbuy("chart", world["gtin14"], "--days", "90", "--until", UNTIL_ARG, "-o", str(again),
                      url=world["url"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert again.read_bytes() == out.read_bytes()


def test_chart_changes_with_new_observations(world, world_url, tmp_path):
    offer = world["bf_offer"]
    args = ("chart", str(offer), "--until", UNTIL_ARG)
    first = smartbuy(*args, "-o", str(tmp_path / "before.png"), url=world_url, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    with psycopg.connect(world_url.url) as conn, conn.cursor().copy(
            "copy price_history (offer_id, observed_at, price, currency, reference_price, availability,"
            " status, source_kind) from stdin") as cp:
        for hours, price, availability in ((-20, D("1999.00"), "in_stock"), (-14, None, "out_of_stock"),
                                           (-8, D("2199.00"), "in_stock"), (-2, D("2199.00"), "in_stock")):
            cp.write_row((offer, UNTIL + timedelta(hours=hours, minutes=30), price, "BRL", D("4349.00"),
                          availability, "accepted", "page"))
    second = smartbuy(*args, "-o", str(tmp_path / "after.png"), url=world_url, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    before, after = (tmp_path / "before.png").read_bytes(), (tmp_path / "after.png").read_bytes()
    assert after != before and len(after) != len(before)
    assert png_size(after) == png_size(before) == PNG_SIZE

    def points(result) -> int:
        return int(result.stdout.split(" shop(s), ")[1].split(" price point")[0].replace(",", ""))

    assert points(second) > points(first)


@pytest.mark.parametrize(("args", "message"), [
    (("999999",), "error: unknown offer id: 999999"),
    (("7891234567895",), "error: unknown GTIN: 7891234567895"),
    (("7890010001043",), "error: invalid GTIN: GTIN '7890010001043' has check digit 3, expected 2"),
    (("abc",), "error: TARGET must be an offer id or a GTIN (8, 12, 13 or 14 digits), got 'abc'"),
    (("{offer}", "--until", "2026-01-01T00:00:00Z"), "error: no price history for offer {offer} in the last 90 days"),
    (("{offer}", "--days", "0"), "error: --days must be between 1 and 3660, got 0"),
    (("{offer}", "--until", "yesterday"), "error: --until must be an ISO-8601 instant"),
    (("{offer}", "-o", "missing-dir/x.png"), "error: cannot write missing-dir/x.png: No such file or directory"),
    (("{offer}", "-o", "."), "error: cannot write .: it is a directory"),
])
def test_errors_are_one_line_and_exit_1(world, tmp_path, args, message):
    offer = str(world["bf_offer"])
    args = tuple(a.replace("{offer}", offer) for a in args)
    if "--until" not in args:
        args += ("--until", UNTIL_ARG)
    result = smartbuy("chart", *args, url=world["url"], cwd=tmp_path)
    assert one_error_line(result).startswith(message.replace("{offer}", offer))
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob(".*.tmp"))


def test_unwritable_file_is_one_line(world, tmp_path):
    (tmp_path / "plain").write_text("a file, not a folder")
    result = smartbuy("chart", str(world["bf_offer"]), "--until", UNTIL_ARG, "-o", "plain/x.png",
                      url=world["url"], cwd=tmp_path)
    assert one_error_line(result) == "error: cannot write plain/x.png: Not a directory"
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        result = smartbuy("chart", str(world["bf_offer"]), "--until", UNTIL_ARG, "-o", "locked/x.png",
                          url=world["url"], cwd=tmp_path)
        assert one_error_line(result) == "error: cannot write locked/x.png: Permission denied"


# ----------------------------------------------------------------------------------- series
def reference_steps(rows: list[tuple], start: datetime) -> list[tuple]:
    """Plain Python: the state at `start`, each change after it, and the last observation."""
    out: list[tuple] = []
    prev = None
    for i, (at, price, ref, availability) in enumerate(rows):
        state = (price, ref, availability)
        nxt = rows[i + 1][0] if i + 1 < len(rows) else None
        if at <= start:
            if nxt is None or nxt > start:
                out.append((start, *state))
        elif nxt is None or state != prev:
            out.append((at, *state))
        prev = state
    return out


def reference_low(rows: list[tuple], start: datetime) -> list[tuple]:
    """pandas: at each observation instant, the lowest price in the 30 days up to it."""
    frame = pd.DataFrame([(at, float(price)) for at, price in rows if price is not None],
                         columns=["at", "price"])
    per_instant = frame.groupby("at")["price"].min().sort_index()
    low = per_instant.rolling("30D", closed="both").min()
    out, prev = [], None
    for i, (at, value) in enumerate(low.items()):
        nxt = low.index[i + 1] if i + 1 < len(low) else None
        if at <= start:
            if nxt is None or nxt > start:
                out.append((start, value))
        elif nxt is None or value != prev:
            out.append((at.to_pydatetime(), value))
        prev = value
    return out


def test_series_match_a_plain_reading_of_the_rows(world):
    start, end = window(90, UNTIL)
    with psycopg.connect(world["url"].url) as conn:
        target = resolve_target(conn, world["gtin13"])
        data = load_chart_data(conn, target, days=90, end=UNTIL)
        ids = [oid for oid, _ in target.offers]
        raw = conn.execute(
            "select offer_id, observed_at, price, reference_price, availability from price_history"
            " where offer_id = any(%s) and status = 'accepted' and observed_at > %s and observed_at <= %s"
            " order by offer_id, observed_at", (ids, start - timedelta(days=30), end)).fetchall()
        flips = conn.execute(
            "select offer_id, computed_at, bucket from offer_risk_score_history where offer_id = any(%s)"
            " order by offer_id, computed_at", (ids,)).fetchall()
    assert data.product.startswith("Smart TV LG 55") and data.gtin == normalize_gtin(world["gtin13"])
    assert (data.start, data.end, data.currency) == (start, end, "BRL")
    assert len(data.series) == world["shops"]
    for s in data.series:
        rows = [r[1:] for r in raw if r[0] == s.offer_id]
        assert [(p.at, p.price, p.reference_price, p.availability) for p in s.points] == \
            reference_steps(rows, start), s.shop
        assert all(isinstance(p.price, D) for p in s.points if p.price is not None)  # money stays Decimal
    low = reference_low([(r[1], r[2]) for r in raw], start)
    assert [(p.at, float(p.price)) for p in data.low_30d] == low
    assert all(isinstance(p.price, D) for p in data.low_30d)
    # bucket changes: the flips (and first scores) inside the window, by the real risk model
    expected, prev = [], {}
    for oid, at, bucket in flips:
        if start < at <= end and prev.get(oid) != bucket:
            expected.append((oid, at, prev.get(oid), bucket))
        prev[oid] = bucket
    assert [(c.offer_id, c.at, c.previous_bucket, c.bucket) for c in data.bucket_changes] == \
        sorted(expected, key=lambda e: (e[1], e[0]))
    assert expected, "the scripted Black Friday fake should flip its bucket"


def test_bf_fake_series_shows_the_scripted_story(world):
    """MegaTech's LG TV: raised ~25 % on 2026-10-23 03:00, 'de R$ 4.349,00' from 2026-11-27 03:00
    to 2026-12-01 03:00 (observations every 6 h, so the chart sees them at the next one)."""
    with psycopg.connect(world["url"].url) as conn:
        data = load_chart_data(conn, resolve_target(conn, str(world["bf_offer"])), days=90, end=UNTIL)
    (series,) = data.series
    prices = [p.price for p in series.points]
    assert max(prices) > prices[0] * D("1.2")
    with_de = [p for p in series.points if p.reference_price == D("4349.00")]
    assert with_de and datetime(2026, 11, 27, 3, tzinfo=UTC) <= with_de[0].at <= datetime(2026, 11, 27, 9, tzinfo=UTC)
    # the 30-day low at the fake "de" start is the pre-raise price, not the raised one
    low_then = [p.price for p in data.low_30d if p.at <= with_de[0].at][-1]
    assert low_then < with_de[0].reference_price and low_then < max(prices)


# ------------------------------------------------------------------------------------- plan
def plan_nodes(conn, query: str, params: dict) -> list[dict]:
    plan = conn.execute("explain (format json) " + query, params).fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    nodes, todo = [], [plan[0]["Plan"]]
    while todo:
        node = todo.pop()
        nodes.append(node)
        todo.extend(node.get("Plans", []))
    return nodes


def test_series_queries_for_one_offer_are_index_scans(world, world_url):
    """On a copy with 200 other offers observed every 6 h (about 100k more rows), ANALYZEd."""
    with psycopg.connect(world_url.url, autocommit=True) as conn:
        shop = conn.execute("insert into shops (name, domain) values ('Outra', 'outra.example')"
                            " returning id").fetchone()[0]
        with conn.cursor().copy("copy products (gtin, name) from stdin") as cp:
            for i in range(200):
                cp.write_row((normalize_gtin(make_gtin13("790", i)), f"Produto {i}"))
        conn.execute("insert into offers (product_id, shop_id, source_kind, locator, currency)"
                     " select id, %s, 'page', 'https://outra.example/' || id, 'BRL' from products"
                     " where name like 'Produto %%'", (shop,))
        conn.execute("insert into price_history (offer_id, observed_at, price, currency, availability, status,"
                     " source_kind) select o.id, t, 100 + o.id %% 50, 'BRL', 'in_stock', 'accepted', 'page'"
                     " from offers o cross join generate_series(%s::timestamptz, %s::timestamptz,"
                     " interval '6 hours') t where o.shop_id = %s",
                     (UNTIL - timedelta(days=120), UNTIL - timedelta(hours=1), shop))
        conn.execute("analyze")
        start, end = window(90, UNTIL)
        params = series_params([world["bf_offer"]], start, end)
        for label, query in (("series", SERIES_SQL), ("30-day low", LOW_30D_SQL)):
            nodes = plan_nodes(conn, query, params)
            scanned = [n for n in nodes if n.get("Relation Name", "").startswith("price_history")]
            assert scanned, label
            assert [n["Relation Name"] for n in scanned if n["Node Type"] == "Seq Scan"] == [], label
            assert all(n["Node Type"] in ("Index Scan", "Index Only Scan", "Bitmap Heap Scan") for n in scanned), label
            index_names = {n.get("Index Name") for n in nodes if n["Node Type"].endswith("Index Scan")}
            assert index_names and all(name.endswith("_pkey") for name in index_names), (label, index_names)
            # only the partitions overlapping (start - 30 days, end]: August .. December 2026
            assert sorted({n["Relation Name"] for n in scanned}) == [
                f"price_history_y2026m{m:02d}" for m in range(8, 13)], label

