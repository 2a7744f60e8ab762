"""The message log's database: engines and migrations.

Engines are the server configuration's (`gateway.serverconf.db`: SQLite in WAL mode by
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
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine
from sqlalchemy.pool import ConnectionPoolEntry

from gateway.serverconf import db as serverconf_db
from gateway.serverconf.db import begin_snapshot_read, begin_write, is_sqlite

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

MIGRATIONS_DIR: Final = Path(__file__).with_name("migrations")

ALEMBIC_VERSION_TABLE: Final = "alembic_version_messagelog"
"""Our own name, so the server configuration's migrations may share the database."""

MIGRATION_LOCK_KEY: Final = 0x78676174_6D736C67  # "xgatmslg": one PostgreSQL advisory lock id
"""Nodes starting together migrate one after the other; not the server configuration's key."""


def create_engine(url: str = DEFAULT_URL, **kwargs: Any) -> Engine:
    """An engine for the log at `url`; on SQLite every commit is fsynced (synchronous=FULL)."""
    engine = serverconf_db.create_engine(url, **kwargs)
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
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("version_table", ALEMBIC_VERSION_TABLE)
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # configparser interpolation
    return config


def migrate(engine_url: str, revision: str = "head") -> None:
    """Bring the log's tables at `engine_url` to `revision` (default: the newest)."""
    engine = create_engine(engine_url)
    try:
        with begin_write(engine) as connection:
            if not is_sqlite(engine):
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
            config = alembic_config(engine_url)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()
