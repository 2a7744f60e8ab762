"""The registry's database: xgate's engine helpers, the registry's own migrations.

Engines and transactions come from `gateway.db` (SQLite in WAL mode by default, PostgreSQL
through psycopg 3). The registry's Alembic scripts live in `gateway/central/migrations` and
record themselves in their own version table, so a registry may share a database with other
xgate schemas.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from alembic.config import Config

from gateway.db import Migrations

ALEMBIC_VERSION_TABLE: Final = "central_alembic_version"

MIGRATIONS: Final = Migrations(
    directory=Path(__file__).with_name("migrations"),
    version_table=ALEMBIC_VERSION_TABLE,
    lock_key=0x78676174_63656E74,  # "xgatecent": two registry processes migrate one after the other
)


def alembic_config(url: str | None = None) -> Config:
    """An Alembic configuration built in code, pointing at the registry's migrations."""
    return MIGRATIONS.alembic_config(url)


def migrate(engine_url: str, revision: str = "head") -> None:
    """Bring the registry's database to `revision` (default: the newest), creating the schema."""
    MIGRATIONS.upgrade(engine_url, revision)
