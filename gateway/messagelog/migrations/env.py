"""Alembic environment of the message log: `gateway.db.run_migrations` on its tables.

Run from code (`gateway.messagelog.db.migrate`), which hands over an open connection in a
transaction (and a lock against other nodes migrating at once). The `alembic` command line
works too, with a configuration naming script_location and sqlalchemy.url. Only the log's own
tables are compared and versioned here, so it may share a database with other packages.
"""

from __future__ import annotations

from typing import Any

from alembic import context

from gateway.db import run_migrations
from gateway.messagelog.db import ALEMBIC_VERSION_TABLE, create_engine
from gateway.messagelog.tables import metadata


def _ours(name: str | None, type_: str, _parent_names: Any) -> bool:
    """Autogenerate looks only at the log's tables, not at a neighbour's in the same database."""
    return type_ != "table" or name in metadata.tables


run_migrations(context, metadata, ALEMBIC_VERSION_TABLE, include_name=_ours, engine_factory=create_engine)
