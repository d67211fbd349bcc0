"""Catalog import/export through the database (db.catalog) and `smartbuy catalog` as a person runs it."""

from __future__ import annotations

import getpass
import io
import json
from decimal import Decimal

import psycopg
import pytest

from smartbuy_pipeline.db.catalog import (
    deactivate_offers, export_catalog, import_catalog, upsert_catalog,
)
from smartbuy_pipeline.domain.catalog_file import CatalogReader, write_catalog
from tests.integration.test_cli_db import smartbuy

GOOD = "7891234567895"
OTHER = "7891000100103"
BAD = "7891234567890"

# 2 shops (one stored before), 2 products, offers: good, and every kind of bad row
MIXED = f"""type,domain,name,reputation_score,gtin,brand,shop,source_kind,locator,price,currency,active
shop,nova.example.com.br,Loja Nova,80,,,,,,,,
product,,Fone BT,,{GOOD},Acme,,,,,,
product,,Quebrado,,{BAD},,,,,,,
offer,,,,{GOOD},,nova.example.com.br,page,https://nova.example.com.br/p/fone,"1.299,90",,
offer,,,,{GOOD},,antiga.example.com.br,merchant_feed,SKU-1,,,
offer,,,,{GOOD},,fantasma.example.com.br,page,https://fantasma.example.com.br/p/1,,,
offer,,,,{OTHER},,nova.example.com.br,page,https://nova.example.com.br/p/x,,,
offer,,,,{GOOD},,nova.example.com.br,page,mailto:vendas@nova.example.com.br,,,
offer,,,,{GOOD},,nova.example.com.br,page,https://nova.example.com.br/p/fone,10,,
offer,,,,{GOOD},,nova.example.com.br,marketplace_api,MLB-9,"12,3,4",,
offer,,,,{BAD},,nova.example.com.br,marketplace_api,MLB-10,,,
product,,Fone BT (dup),,0{GOOD},,,,,,,
"""


def reader(text: str, fmt: str = "csv") -> CatalogReader:
    return CatalogReader(io.BufferedReader(io.BytesIO(text.encode())), fmt)


def seed_old_shop(conn) -> None:
    upsert_catalog(conn, [{"name": "Loja Antiga", "domain": "antiga.example.com.br"}], [], [])


def audit(conn, action=None) -> list[tuple]:
    q = "select actor, action_type, entity_type, entity_id, payload from ops_audit_logs"
    if action:
        return conn.execute(q + " where action_type = %s order by id", (action,)).fetchall()
    return conn.execute(q + " where action_type like 'UPSERT_%%' order by id").fetchall()


def test_mixed_file_exact_counts_reasons_and_audit(db_url):
    with psycopg.connect(db_url.url) as conn:
        seed_old_shop(conn)
        conn.commit()
        result = import_catalog(conn, reader(MIXED), actor="ana", run_id="r1", source="mixed.csv")
        conn.commit()
        assert result.counts() == {
            "shops": {"inserted": 1, "updated": 0, "unchanged": 0},
            "products": {"inserted": 1, "updated": 0, "unchanged": 0},
            "offers": {"inserted": 2, "updated": 0, "unchanged": 0},
        }
        assert result.rows_read == 12 and result.landed == 4
        assert [(e.line, e.kind, e.reason) for e in result.rejected] == [
            (4, "invalid_gtin", f"invalid GTIN: GTIN '{BAD}' has check digit 0, expected 5"),
            (7, "unknown_shop", "unknown shop 'fantasma.example.com.br' (not in the file or the database)"),
            (8, "unknown_product", "unknown product GTIN 07891000100103 (not in the file or the database)"),
            (9, "invalid_locator", "locator of a page offer must be an http(s) URL, got "
                                   "'mailto:vendas@nova.example.com.br'"),
            (10, "duplicate", "duplicate of line 5"),
            (11, "malformed_price", "malformed price '12,3,4'"),
            (12, "invalid_gtin", f"invalid GTIN: GTIN '{BAD}' has check digit 0, expected 5"),
            (13, "duplicate", "duplicate of line 3"),
        ]
        rows = audit(conn)
        assert result.audit_rows == len(rows) == 4
        assert [r[1] for r in rows] == ["UPSERT_SHOP", "UPSERT_PRODUCT", "UPSERT_OFFER", "UPSERT_OFFER"]
        assert {r[0] for r in rows} == {"ana"}
        shop = rows[0][4]
        assert shop["op"] == "insert" and shop["before"] is None and shop["line"] == 2
        assert shop["after"] == {"name": "Loja Nova", "reputation_score": 80, "locale": "pt_BR",
                                 "currency": "BRL", "max_concurrent_requests": 4, "min_interval_ms": 250,
                                 "check_interval_seconds": 3600}
        assert shop["run_id"] == "r1" and shop["source"] == "mixed.csv"
        page = rows[2][4]
        assert page["key"] == {"shop": "nova.example.com.br", "source_kind": "page",
                               "locator": "https://nova.example.com.br/p/fone"}
        assert page["after"] == {"gtin": "0" + GOOD, "price": "1299.90", "currency": "BRL", "active": True}
        assert rows[3][4]["key"]["shop"] == "antiga.example.com.br"  # a stored shop, not in the file
        price, currency = conn.execute(
            "select price, currency from offers where id = %s", (int(rows[2][3]),)).fetchone()
        assert (price, currency) == (Decimal("1299.90"), "BRL")
        assert conn.execute("select count(*) from offers").fetchone()[0] == 2


def test_reimport_diffs_only_changed_columns_and_unchanged_rows_are_not_audited(db_url):
    first = f"""type,domain,name,reputation_score,gtin,brand,category,shop,source_kind,locator,price,active
shop,a.example.com,Loja A,70,,,,,,,,
product,,Fone,,{GOOD},Acme,audio,,,,,
product,,Cabo,,{OTHER},,,,,,,
offer,,,,{GOOD},,,a.example.com,page,https://a.example.com/1,100,
offer,,,,{GOOD},,,a.example.com,merchant_feed,F-1,,
"""
    # line 2: reputation changes; line 3: brand only, the rest not given (kept); line 4 unchanged;
    # offers: product re-mapped; price of a priced offer is not overwritten; deactivated by import
    second = f"""type,domain,name,reputation_score,gtin,brand,category,shop,source_kind,locator,price,active
shop,a.example.com,Loja A,75,,,,,,,,
product,,Fone,,{GOOD},Acme 2,,,,,,
product,,Cabo,,{OTHER},,,,,,,
offer,,,,{OTHER},,,a.example.com,page,https://a.example.com/1,50,
offer,,,,{GOOD},,,a.example.com,merchant_feed,F-1,"39,90",false
"""
    with psycopg.connect(db_url.url) as conn:
        import_catalog(conn, reader(first), actor="ana")
        conn.commit()
        before = len(audit(conn))
        result = import_catalog(conn, reader(second), actor="bruno")
        conn.commit()
        assert result.counts() == {
            "shops": {"inserted": 0, "updated": 1, "unchanged": 0},
            "products": {"inserted": 0, "updated": 1, "unchanged": 1},
            "offers": {"inserted": 0, "updated": 2, "unchanged": 0},
        }
        rows = audit(conn)[before:]
        assert len(rows) == result.audit_rows == 4
        assert {r[0] for r in rows} == {"bruno"}
        diffs = {(r[1], r[4]["line"]): (r[4]["op"], r[4]["before"], r[4]["after"]) for r in rows}
        assert diffs[("UPSERT_SHOP", 2)] == ("update", {"reputation_score": 70}, {"reputation_score": 75})
        assert diffs[("UPSERT_PRODUCT", 3)] == ("update", {"brand": "Acme"}, {"brand": "Acme 2"})
        assert diffs[("UPSERT_OFFER", 5)] == ("update", {"gtin": "0" + GOOD}, {"gtin": "0" + OTHER})
        # an unpriced offer takes the file's price as its initial price
        assert diffs[("UPSERT_OFFER", 6)] == ("update", {"price": None, "active": True},
                                              {"price": "39.90", "active": False})
        assert conn.execute("select category from products where gtin = %s", ("0" + GOOD,)).fetchone()[0] == "audio"
        prices = dict(conn.execute("select locator, price from offers").fetchall())
        assert prices == {"https://a.example.com/1": Decimal("100.00"), "F-1": Decimal("39.90")}


def test_dry_run_counts_everything_and_writes_nothing(db_url):
    with psycopg.connect(db_url.url) as conn:
        seed_old_shop(conn)
        conn.commit()
        result = import_catalog(conn, reader(MIXED), actor="ana", dry_run=True)
        conn.commit()
        assert result.dry_run and result.landed == 4 and result.audit_rows == 4 and len(result.rejected) == 8
        assert conn.execute("select count(*) from offers").fetchone()[0] == 0
        assert conn.execute("select count(*) from products").fetchone()[0] == 0
        assert audit(conn) == []


def test_a_failure_rolls_back_the_whole_import(db_url, monkeypatch):
    from smartbuy_pipeline.db import catalog as catalog_db

    monkeypatch.setattr(catalog_db, "OFFER_AUDIT", "select 1/0")
    with psycopg.connect(db_url.url) as conn:
        seed_old_shop(conn)
        conn.commit()
        with pytest.raises(psycopg.errors.DivisionByZero):
            import_catalog(conn, reader(MIXED), actor="ana")
        conn.rollback()
        assert conn.execute("select count(*) from shops").fetchone()[0] == 1
        assert conn.execute("select count(*) from products").fetchone()[0] == 0
        assert audit(conn) == []


def load_demo_priced(conn) -> None:
    from smartbuy_pipeline.simulator.scenarios import demo_scenario

    rows = demo_scenario().catalog_rows("http://127.0.0.1:8765")
    upsert_catalog(conn, rows["shops"], rows["products"], rows["offers"])
    conn.execute("update offers set price = 100 + id, currency = 'BRL' where id % 3 = 0")
    conn.execute("update offers set active = false where id % 7 = 0")
    conn.execute("update shops set price_kind = 'cash' where id = 1")


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_then_import_is_all_unchanged(db_url, fmt):
    with psycopg.connect(db_url.url) as conn:
        load_demo_priced(conn)
        conn.commit()
        out = io.StringIO()
        n = write_catalog(export_catalog(conn), out, fmt)
        counts = conn.execute("select (select count(*) from shops), (select count(*) from products),"
                              " (select count(*) from offers)").fetchone()
        assert n == sum(counts)
        result = import_catalog(conn, reader(out.getvalue(), fmt), actor="ana")
        conn.commit()
        assert result.rejected == []
        assert result.counts() == {
            "shops": {"inserted": 0, "updated": 0, "unchanged": counts[0]},
            "products": {"inserted": 0, "updated": 0, "unchanged": counts[1]},
            "offers": {"inserted": 0, "updated": 0, "unchanged": counts[2]},
        }
        assert result.audit_rows == 0 and audit(conn) == []


def test_deactivate_offers_audits_each_change(db_url):
    with psycopg.connect(db_url.url) as conn:
        import_catalog(conn, reader(MIXED.replace("antiga.example.com.br", "nova.example.com.br")), actor="ana")
        conn.commit()
        ids = [r[0] for r in conn.execute("select id from offers order by id")]
        res = deactivate_offers(conn, offer_ids=[ids[0]], shop_domain="NOVA.example.com.br",
                                locators=["SKU-1"], reason="página removida", actor="ana", run_id="r9")
        conn.commit()
        assert res.deactivated == ids and res.already_inactive == []
        rows = audit(conn, "DEACTIVATE_OFFER")
        assert [(r[0], r[2], int(r[3])) for r in rows] == [("ana", "offer", i) for i in ids]
        assert rows[0][4]["before"] == {"active": True} and rows[0][4]["after"] == {"active": False}
        assert rows[0][4]["reason"] == "página removida" and rows[0][4]["run_id"] == "r9"
        again = deactivate_offers(conn, offer_ids=ids, reason="again", actor="ana")
        assert again.deactivated == [] and again.already_inactive == ids
        with pytest.raises(ValueError, match="unknown offer id"):
            deactivate_offers(conn, offer_ids=[999_999], reason="x", actor="ana")
        with pytest.raises(ValueError, match="reason"):
            deactivate_offers(conn, offer_ids=ids, reason=" ", actor="ana")
        with pytest.raises(ValueError, match="no offer of shop"):
            deactivate_offers(conn, shop_domain="nova.example.com.br", locators=["nope"], reason="x", actor="a")


# -- the CLI -------------------------------------------------------------------------------------


def test_cli_import_exit_codes_rejected_lines_and_actor(db_url, tmp_path):
    env = {"SMARTBUY_DATABASE_URL": db_url.url}
    with psycopg.connect(db_url.url) as conn:
        seed_old_shop(conn)
    path = tmp_path / "catalog.csv"
    path.write_text(MIXED)
    dry = smartbuy("catalog", "import", str(path), "--dry-run", env=env)
    assert dry.returncode == 1, dry.stderr
    assert "rolled back" in dry.stdout
    res = smartbuy("catalog", "import", str(path), "--rejects", str(tmp_path / "rej.csv"), env=env)
    assert res.returncode == 1, res.stderr
    assert "12 row(s) read: 4 landed, 8 rejected; 4 audit row(s)" in res.stdout
    assert "line 4: invalid GTIN: GTIN '7891234567890' has check digit 0, expected 5" in res.stdout
    assert "line 7: unknown shop 'fantasma.example.com.br'" in res.stdout
    assert "line 10: duplicate of line 5" in res.stdout
    assert (tmp_path / "rej.csv").read_text().count("\n") == 9
    with psycopg.connect(db_url.url) as conn:
        actors = {r[0] for r in audit(conn)}
    assert actors == {f"cli:{getpass.getuser()}"}

    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"type": "offer", "shop": "antiga.example.com.br", "gtin": GOOD,
                                "source_kind": "feed", "locator": "SKU-2", "price": "10,50"}) + "\n")
    ok = smartbuy("catalog", "import", str(good), "--actor", "maria", env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "1 row(s) read: 1 landed, 0 rejected; 1 audit row(s)" in ok.stdout
    with psycopg.connect(db_url.url) as conn:
        assert audit(conn)[-1][0] == "maria"

    # unusable input: exit 2, one line, nothing applied
    for args, message in (
        ((str(tmp_path / "missing.csv"),), "error: no such file:"),
        ((str(tmp_path / "rej.txt"),), "error: unknown format of 'rej.txt'"),
    ):
        bad = smartbuy("catalog", "import", *args, env=env)
        assert bad.returncode == 2, bad.stdout + bad.stderr
        lines = [line for line in bad.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(message)
    header = tmp_path / "bad.csv"
    header.write_text("type,domain,pirce\nshop,a.example.com,1\n")
    bad = smartbuy("catalog", "import", str(header), env=env)
    assert bad.returncode == 2 and "unknown column(s) in the CSV header: pirce" in bad.stderr


def test_cli_export_then_import_round_trip(db_url, tmp_path):
    env = {"SMARTBUY_DATABASE_URL": db_url.url}
    with psycopg.connect(db_url.url) as conn:
        load_demo_priced(conn)
        n = sum(conn.execute("select (select count(*) from shops) + (select count(*) from products)"
                             " + (select count(*) from offers)").fetchone())
    for name, extra in (("cat.csv", ()), ("cat.json", ()), ("cat.data", ("--format", "json"))):
        out = tmp_path / name
        exp = smartbuy("catalog", "export", "--output", str(out), *extra, env=env)
        assert exp.returncode == 0, exp.stderr
        assert f"exported {n:,} record(s)" in exp.stdout
        args = ("--format", "json") if extra else ()
        imp = smartbuy("catalog", "import", str(out), *args, "--progress", env=env)
        assert imp.returncode == 0, imp.stdout + imp.stderr
        assert f"{n:,} row(s) read: {n:,} landed, 0 rejected; 0 audit row(s)" in imp.stdout
    stdout = smartbuy("catalog", "export", env=env)
    assert stdout.returncode == 0 and stdout.stdout.startswith("type,domain,name,")
    bad = smartbuy("catalog", "export", "--format", "xml", env=env)
    assert bad.returncode == 2 and "unknown format" in bad.stderr
