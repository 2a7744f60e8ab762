"""The cache's database: its default place and its migrations.

Engines are xgate's shared ones (`gateway.db`: SQLite in WAL mode by default, PostgreSQL
through psycopg 3 so that several nodes of one gateway share one cache, DESIGN.md "Scaling
out"). The cache keeps its own Alembic environment and version table, so it may live in its
own file (the default: it holds copies of answers and can be deleted without losing evidence)
or share a PostgreSQL database with the other packages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from sqlalchemy.engine import Engine

from gateway import db
from gateway.db import Migrations, begin_snapshot_read, begin_write, is_sqlite

__all__ = [
    "ALEMBIC_VERSION_TABLE",
    "DEFAULT_URL",
    "MIGRATIONS",
    "begin_snapshot_read",
    "begin_write",
    "create_engine",
    "is_sqlite",
    "migrate",
]

DEFAULT_URL: Final = "sqlite:///cache.db"
"""Relative to the working directory; the node's TOML file names the real place ([cache])."""

ALEMBIC_VERSION_TABLE: Final = "alembic_version_cache"
"""Our own name, so the cache's migrations may share a database with the other packages'."""

MIGRATIONS: Final = Migrations(
    directory=Path(__file__).with_name("migrations"),
    version_table=ALEMBIC_VERSION_TABLE,
    lock_key=0x78676174_63616368,  # "xgatcach": not another package's key
)


def create_engine(url: str = DEFAULT_URL, **kwargs: Any) -> Engine:
    """An engine for the cache at `url` (see `gateway.db.create_engine`)."""
    return db.create_engine(url, **kwargs)


def migrate(engine_url: str, revision: str = "head") -> None:
    """Bring the cache database at `engine_url` to `revision` (default: the newest)."""
    MIGRATIONS.upgrade(engine_url, revision)
