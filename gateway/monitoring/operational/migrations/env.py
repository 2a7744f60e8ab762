"""Alembic environment of operational monitoring: `gateway.db.run_migrations` on its table only,
so it may share a database with other packages."""

from __future__ import annotations

from typing import Any

from alembic import context

from gateway.db import run_migrations
from gateway.monitoring.operational.db import ALEMBIC_VERSION_TABLE
from gateway.monitoring.operational.tables import metadata


def _ours(name: str | None, type_: str, _parent_names: Any) -> bool:
    return type_ != "table" or name in metadata.tables


run_migrations(context, metadata, ALEMBIC_VERSION_TABLE, include_name=_ours)
