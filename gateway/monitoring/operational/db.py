"""The operational monitoring database: its default place and its migrations.

Its own Alembic environment and version table (the pattern of gateway.cache.db), so the table
may live in its own SQLite file (the default: its batched writes never hold the lock the replay
guard's per-request inserts into the server configuration database wait for) or share a
PostgreSQL database with the other packages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from gateway.db import Migrations

ALEMBIC_VERSION_TABLE: Final = "alembic_version_opmon"

MIGRATIONS: Final = Migrations(
    directory=Path(__file__).with_name("migrations"),
    version_table=ALEMBIC_VERSION_TABLE,
    lock_key=0x78676174_6F706D6E,  # "xgatopmn": not another package's key
)


def migrate(engine_url: str, revision: str = "head") -> None:
    """Bring the monitoring database at `engine_url` to `revision` (default: the newest)."""
    MIGRATIONS.upgrade(engine_url, revision)
