"""Ops jobs launchable from the Launchpad."""


import dagster as dg

from smartbuy_pipeline.db.catalog import upsert_catalog
from smartbuy_pipeline.defs.resources import Database


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
