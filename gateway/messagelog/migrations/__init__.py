"""Alembic migrations of the message log; run them with `gateway.messagelog.db.migrate`."""
