"""Ops jobs launchable from the Launchpad: the demo catalog, catalog import (runbook procedure
A, docs/catalog.md) and offer deactivation."""

from pathlib import Path
from time import perf_counter

import dagster as dg

from smartbuy_pipeline.db import catalog as catalog_db
from smartbuy_pipeline.db.catalog import upsert_catalog
from smartbuy_pipeline.defs.resources import Database
from smartbuy_pipeline.defs.risk import actor_of
from smartbuy_pipeline.domain.catalog_file import CatalogFileError, open_catalog


class DemoCatalogConfig(dg.Config):
    simulator_url: str = "http://127.0.0.1:8765"


@dg.op(tags={"smartbuy/kind": "catalog"})
def load_demo_catalog(context: dg.OpExecutionContext, config: DemoCatalogConfig, database: Database) -> None:
    """Upsert the simulated marketplace's demo catalog (shops, products, offers)."""
    from smartbuy_pipeline.simulator.scenarios import demo_scenario

    rows = demo_scenario().catalog_rows(config.simulator_url.rstrip("/"))
    with database.transaction() as conn:
        counts = upsert_catalog(conn, rows["shops"], rows["products"], rows["offers"])
    context.log.info(
        f"demo catalog: shops +{counts.shops.inserted}/~{counts.shops.updated}, "
        f"products +{counts.products.inserted}/~{counts.products.updated}, "
        f"offers +{counts.offers.inserted}/~{counts.offers.updated}"
    )
    context.add_output_metadata(
        {
            "shops_inserted": counts.shops.inserted,
            "products_inserted": counts.products.inserted,
            "offers_inserted": counts.offers.inserted,
            "offers_updated": counts.offers.updated,
        }
    )


@dg.job(description="Load the simulated marketplace's demo catalog into the database.")
def seed_demo_catalog():
    load_demo_catalog()


# -- catalog import (runbook procedure A) ----------------------------------------------------------


class CatalogImportConfig(dg.Config):
    path: str  # a catalog file the run worker can read (docs/catalog.md)
    format: str = ""  # csv | json | jsonl; empty = from the file's extension
    dry_run: bool = False  # validate and compute the changes, then roll back


@dg.op(tags={"smartbuy/kind": "catalog"}, out=dg.Out(dict, description="counts and rejected rows"))
def import_catalog_file(context: dg.OpExecutionContext, config: CatalogImportConfig, database: Database):
    """Import a catalog file: upsert shops, products and offers with one UPSERT_* audit row per
    inserted or changed entity; rejected rows are reported with their line and reason."""
    actor = actor_of(dict(context.run.tags))
    started = perf_counter()
    try:
        with open_catalog(config.path, config.format or None) as reader, database.transaction() as conn:
            result = catalog_db.import_catalog(conn, reader, actor=actor, dry_run=config.dry_run,
                                               run_id=context.run.run_id, source=Path(config.path).name)
    except CatalogFileError as exc:  # unusable input: nothing was applied
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    duration = perf_counter() - started
    counts = result.counts()
    summary = ", ".join(f"{name} +{c['inserted']}/~{c['updated']}/={c['unchanged']}" for name, c in counts.items())
    context.log.info(f"catalog import of {config.path} by {actor}{' (dry run)' if config.dry_run else ''}: "
                     f"{summary}; {len(result.rejected)} rejected; {result.audit_rows} audit row(s)")
    if result.rejected:
        context.log.warning(f"{len(result.rejected)} row(s) rejected; first: line {result.rejected[0].line}: "
                            f"{result.rejected[0].reason}")
    metadata: dict = {"actor": actor, "dry_run": config.dry_run, "rows_read": result.rows_read}
    for name, c in counts.items():
        for what, n in c.items():
            metadata[f"{name}_{what}"] = n
    metadata.update({
        "rejected": len(result.rejected),
        "audit_rows": result.audit_rows,
        "rejected_rows": dg.MetadataValue.md(catalog_db.rejected_table_md(result.rejected)),
        "duration_s": round(duration, 3),
    })
    value = {"dry_run": config.dry_run, "rows_read": result.rows_read, "counts": counts,
             "audit_rows": result.audit_rows,
             "rejected": [{"line": e.line, "kind": e.kind, "key": e.key, "reason": e.reason}
                          for e in result.rejected]}
    return dg.Output(value, metadata=metadata)


@dg.job(
    description="Catalog import (runbook procedure A): upsert the shops, products and offers of a "
                "CSV/JSON file with UPSERT_SHOP/UPSERT_PRODUCT/UPSERT_OFFER audit rows; bad rows are "
                "reported by line and skipped (docs/catalog.md).",
    tags={"smartbuy/kind": "catalog"},
)
def catalog_import():
    import_catalog_file()


class DeactivateOfferConfig(dg.Config):
    offer_ids: list[int] = []  # offers to deactivate
    shop_domain: str = ""  # or/and: the offers of this shop ...
    locators: list[str] = []  # ... with these locators (page URL or feed/API item id)
    reason: str  # why (written to the audit log)


@dg.op(name="deactivate_offers", tags={"smartbuy/kind": "catalog"},
       out=dg.Out(dict, description="deactivated offer ids"))
def deactivate_offers_op(context: dg.OpExecutionContext, config: DeactivateOfferConfig, database: Database):
    """Set the offers inactive with one DEACTIVATE_OFFER audit row per offer that was active."""
    actor = actor_of(dict(context.run.tags))
    try:
        with database.transaction() as conn:
            result = catalog_db.deactivate_offers(
                conn, offer_ids=config.offer_ids, shop_domain=config.shop_domain or None,
                locators=config.locators, reason=config.reason, actor=actor, run_id=context.run.run_id)
    except ValueError as exc:  # unknown offer, missing reason: a clear message, no retry
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    context.log.info(f"deactivate_offer by {actor}: {len(result.deactivated)} deactivated, "
                     f"{len(result.already_inactive)} already inactive")
    lines = ["| offer | shop | source | locator | result |", "|---:|---|---|---|---|"]
    done = set(result.deactivated)
    lines += [f"| {o['id']} | {o['domain']} | {o['source_kind']} | {o['locator'].replace('|', '%7C')} | "
              f"{'deactivated' if o['id'] in done else 'already inactive'} |" for o in result.offers[:50]]
    return dg.Output(
        {"deactivated": result.deactivated, "already_inactive": result.already_inactive,
         "offers": result.offers},
        metadata={"actor": actor, "reason": config.reason, "deactivated": len(result.deactivated),
                  "already_inactive": len(result.already_inactive), "audit_rows": result.audit_rows,
                  "offers": dg.MetadataValue.md("\n".join(lines))})


@dg.job(
    description="Deactivate offers (by id, or shop domain + locators) with a reason: offers.active = "
                "false and one DEACTIVATE_OFFER audit row per offer.",
    tags={"smartbuy/kind": "catalog"},
)
def deactivate_offer():
    deactivate_offers_op()
