"""Alembic migrations of the central registry; run them with `gateway.central.db.migrate`."""
