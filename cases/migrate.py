"""Bring a case database to the newest schema with Alembic, from code: `CaseStore.from_url` calls `upgrade`.

Several processes may start at once (Ray replicas). The whole upgrade runs in one transaction that first takes
a lock: SQLite's write lock (BEGIN IMMEDIATE, see `CaseStore`), or a transaction-scoped advisory lock on
PostgreSQL, whose DDL is transactional too. The second process then finds the schema at head and does nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# The schema the walking skeleton made with create_all, before there were migrations.
_BASELINE = "0001"
# pg_advisory_xact_lock key of "citywatch schema migration" (any constant unique to this purpose).
_MIGRATION_LOCK = 0x63_77_6D_69_67_72_74


log = logging.getLogger(__name__)
# Alembic narrates every step at INFO ("Context impl SQLiteImpl", ...) each time a store opens; one line of our
# own says what changed instead.
logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)


class MigrationError(RuntimeError):
    """The database's schema is newer than this code knows, or a migration failed."""


def alembic_config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise MigrationError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def current_revision(connection: sa.Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Upgrade the database behind `engine` to `revision`; a database made before migrations is adopted."""
    known = {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
        current = current_revision(connection)
        if current is not None and current not in known:
            raise MigrationError(
                f"the database is at schema revision {current!r}, which this version of citywatch does not know "
                f"(it knows {', '.join(sorted(known))}): run a newer citywatch or restore a matching backup"
            )
        config = alembic_config(connection)
        if current is None and sa.inspect(connection).has_table("cases"):
            command.stamp(config, _BASELINE)
        command.upgrade(config, revision)
        upgraded = current_revision(connection)
        if upgraded != current:
            log.info("case database schema %s → %s", current or "(empty)", upgraded)
