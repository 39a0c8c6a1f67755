"""Opening the case database: engine options per backend, and SQLite set up for several writing processes.

Several processes (Ray replicas) may write one SQLite file. Each connection runs in WAL mode with a busy
timeout, and every write transaction starts with `BEGIN IMMEDIATE` (connections of an engine given
`WRITE_OPTION`), which takes SQLite's single write lock up front: a write then waits its turn (up to the busy
timeout) instead of failing when it upgrades a read lock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

BUSY_TIMEOUT_MS = 15_000
WRITE_OPTION = "citywatch_write"


def create_engine(url: str, *, pool_size: int = 10, make_folder: bool = True) -> sa.Engine:
    """An engine for `url`; a SQLite file's folder is created (unless `make_folder` is False). PostgreSQL pools
    `pool_size` connections."""
    parsed = sa.make_url(url)
    folder = sqlite_folder(parsed)
    if folder is not None and make_folder:
        folder.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        # pre_ping: a server restart must not hand out dead connections to the next request.
        options = {"pool_size": pool_size, "max_overflow": pool_size, "pool_pre_ping": True}
    return sa.create_engine(parsed, **options)


def redacted_url(url: str) -> str:
    """The database URL without its password (for manifests and logs)."""
    return sa.make_url(url).render_as_string(hide_password=True)


def sqlite_folder(url: sa.URL) -> Path | None:
    """The folder of a SQLite database file; None for other databases, in-memory and "file:" URIs."""
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in {"", ":memory:"} or database.startswith("file:"):
        return None
    return Path(database).parent


def configure_sqlite(engine: sa.Engine) -> None:
    """WAL, a busy timeout, FULL sync and foreign keys on every connection; BEGIN IMMEDIATE for writes."""
    if not event.contains(engine, "connect", _on_sqlite_connect):
        event.listen(engine, "connect", _on_sqlite_connect)
        event.listen(engine, "begin", _on_sqlite_begin)


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy emit BEGIN itself (see _on_sqlite_begin); sqlite3's own transaction handling only
    # ever emits a deferred BEGIN, and only before DML.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # busy_timeout first: switching to WAL needs a lock another process may hold.
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        # Enforcement records: FULL syncs the WAL on every commit, so a power cut loses no filed case.
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _on_sqlite_begin(connection: sa.Connection) -> None:
    mode = "IMMEDIATE" if connection.get_execution_options().get(WRITE_OPTION) else "DEFERRED"
    connection.exec_driver_sql(f"BEGIN {mode}")
