"""Resources shared by every domain. Secrets come from the environment via dg.EnvVar."""


from contextlib import contextmanager
from collections.abc import Iterator

import dagster as dg
import psycopg
from pydantic import PrivateAttr
from sqlalchemy.engine import Engine

from smartbuy_pipeline.db.engine import DATABASE_URL_ENV, DatabaseUrl, make_engine


class Database(dg.ConfigurableResource):
    """The SmartBuy PostgreSQL database. The URL may hold a password: it is an EnvVar, so the
    UI and run metadata show the variable's name, never its value."""

    url: str

    _engine: Engine | None = PrivateAttr(default=None)

    @property
    def database_url(self) -> DatabaseUrl:
        return DatabaseUrl.parse(self.url)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.database_url)
        return self._engine

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        """A psycopg connection inside one transaction: committed on success, rolled back on
        error. Data access functions take this connection (COPY needs the driver connection)."""
        with psycopg.connect(self.database_url.url, application_name="smartbuy-dagster") as conn:
            with conn.transaction():
                yield conn

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


@dg.definitions
def resources() -> dg.Definitions:
    from smartbuy_pipeline.defs.notifications import Notifier, OpsAlerts
    from smartbuy_pipeline.defs.prices import Acquisition

    return dg.Definitions(resources={
        "database": Database(url=dg.EnvVar(DATABASE_URL_ENV)),
        "acquisition": Acquisition(),
        "notifier": Notifier(),
        "ops_alerts": OpsAlerts(),
    })
