"""The server configuration's database: its default place and its migrations.

Engines and transactions are xgate's shared ones (`gateway.db`: SQLite in WAL mode by default,
PostgreSQL through psycopg 3 for several nodes sharing one database, DESIGN.md "Scaling out"),
named here too because every part of the gateway imports them from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from alembic.config import Config
from sqlalchemy.engine import Engine

from gateway import db
from gateway.db import SQLITE_BUSY_TIMEOUT_MS, Migrations, begin_snapshot_read, begin_write, is_sqlite

__all__ = [
    "ALEMBIC_VERSION_TABLE",
    "DEFAULT_URL",
    "MIGRATIONS",
    "SQLITE_BUSY_TIMEOUT_MS",
    "alembic_config",
    "begin_snapshot_read",
    "begin_write",
    "create_engine",
    "is_sqlite",
    "migrate",
]

DEFAULT_URL: Final = "sqlite:///serverconf.db"
"""Relative to the working directory; the node's TOML file names the real place."""

ALEMBIC_VERSION_TABLE: Final = "serverconf_alembic_version"
"""Our own name, so other packages' migrations may share the database (messagelog, cache...)."""

MIGRATIONS: Final = Migrations(
    directory=Path(__file__).with_name("migrations"),
    version_table=ALEMBIC_VERSION_TABLE,
    lock_key=0x78676174_65736366,  # "xgatescf"
)


def create_engine(url: str = DEFAULT_URL, **kwargs: Any) -> Engine:
    """An engine for the server configuration at `url` (see `gateway.db.create_engine`)."""
    return db.create_engine(url, **kwargs)


def alembic_config(url: str | None = None) -> Config:
    """An Alembic configuration built in code, pointing at the server configuration's migrations."""
    return MIGRATIONS.alembic_config(url)


def migrate(engine_url: str, revision: str = "head") -> None:
    """Bring the database at `engine_url` to `revision` (default: the newest), creating the schema."""
    MIGRATIONS.upgrade(engine_url, revision)
