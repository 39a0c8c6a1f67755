"""Alembic environment: runs on the connection `citywatch.cases.migrate` hands over, inside its transaction."""

from __future__ import annotations

from alembic import context

from citywatch.cases.db import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through citywatch.cases.migrate.upgrade(engine), not the alembic command")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things: batch mode copies the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
