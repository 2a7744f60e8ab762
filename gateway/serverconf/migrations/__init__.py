"""Alembic migrations of the server configuration; run them with `gateway.serverconf.db.migrate`."""
