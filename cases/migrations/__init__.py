"""Alembic migrations of the case database; `citywatch.cases.migrate.upgrade` runs them at store start-up."""
