"""The message log's database: engines and migrations.

Engines are xgate's shared ones (`gateway.db`: SQLite in WAL mode by
default, PostgreSQL through psycopg 3 for several nodes), with SQLite's fsync on every commit
made explicit: the gateway answers its client only once the record is committed, so a commit
must survive a crash of the machine, not only of the process. The migrations are the log's
own Alembic environment with its own version table, so the log can live in the server
configuration's database or in a separate file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from alembic.config import Config
from sqlalchemy.engine import Engine
from sqlalchemy.pool import ConnectionPoolEntry

from gateway import db
from gateway.db import Migrations, begin_snapshot_read, begin_write, is_sqlite

__all__ = [
    "ALEMBIC_VERSION_TABLE",
    "DEFAULT_URL",
    "alembic_config",
    "begin_snapshot_read",
    "begin_write",
    "create_engine",
    "is_sqlite",
    "migrate",
]

DEFAULT_URL: Final = "sqlite:///messagelog.db"
"""Relative to the working directory; the node's TOML file names the real place."""

ALEMBIC_VERSION_TABLE: Final = "alembic_version_messagelog"
"""Our own name, so the server configuration's migrations may share the database."""

MIGRATIONS: Final = Migrations(
    directory=Path(__file__).with_name("migrations"),
    version_table=ALEMBIC_VERSION_TABLE,
    lock_key=0x78676174_6D736C67,  # "xgatmslg": not the server configuration's key
)


def create_engine(url: str = DEFAULT_URL, **kwargs: Any) -> Engine:
    """An engine for the log at `url`; on SQLite every commit is fsynced (synchronous=FULL)."""
    engine = db.create_engine(url, **kwargs)
    if is_sqlite(engine):
        sa.event.listen(engine, "connect", _on_sqlite_connect)
    return engine


def _on_sqlite_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # FULL in WAL mode syncs the WAL at each commit (SQLite docs, "PRAGMA synchronous"); the
    # sqlite3 build's default usually is FULL too, but the log's promise must not hang on it.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA synchronous=FULL")
    finally:
        cursor.close()


def alembic_config(url: str | None = None) -> Config:
    """An Alembic configuration built in code, pointing at the log's migrations."""
    return MIGRATIONS.alembic_config(url)


def migrate(engine_url: str, revision: str = "head") -> None:
    """Bring the log's tables at `engine_url` to `revision` (default: the newest)."""
    MIGRATIONS.upgrade(engine_url, revision, engine_factory=create_engine)
