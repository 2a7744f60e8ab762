"""Alembic environment of the interface cache: `gateway.db.run_migrations` on its tables.

Only the cache's own tables are compared and versioned here, so it may share a database with
other packages (several nodes sharing one PostgreSQL).
"""

from __future__ import annotations

from typing import Any

from alembic import context

from gateway.cache.db import ALEMBIC_VERSION_TABLE
from gateway.cache.tables import metadata
from gateway.db import run_migrations


def _ours(name: str | None, type_: str, _parent_names: Any) -> bool:
    """Autogenerate looks only at the cache's tables, not at a neighbour's in the same database."""
    return type_ != "table" or name in metadata.tables


run_migrations(context, metadata, ALEMBIC_VERSION_TABLE, include_name=_ours)
