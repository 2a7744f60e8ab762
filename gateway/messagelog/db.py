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

SQLITE_SYNCHRONOUS: Final = "FULL"
"""Every commit syncs the WAL (SQLite docs, "PRAGMA synchronous"), so a record whose client got
its answer survives a crash or power loss of the machine, not only a crash of the process.

NORMAL would sync the WAL only at checkpoints. That still keeps the issue's promise for a
gateway killed with SIGKILL (at commit the WAL frames are written, in the OS's page cache), but
an OS crash or power loss could take the last commits with it: answered exchanges without a
record, and the chain cut back to an earlier head. It would save little: ~10-20 µs of CPU per
record of the ~200 µs the writer spends (measured through two gateways at concurrency 32, and
with bench/logverify.py), since a commit's cost is mostly its WAL pages, not the sync. X-Road
commits each message record in a PostgreSQL transaction of its own before the message goes on
(LogRecordManager.saveMessageRecord), which with PostgreSQL's default synchronous_commit=on
flushes the WAL at every commit; only its test containers turn that off. What X-Road accepts is
a record waiting unstamped until the next batch timestamp (timestamp-immediately is false by
default), as this log does. On PostgreSQL the guarantee is the server's synchronous_commit=on: a
deployment that turns it off makes the NORMAL trade for the log."""

MIGRATIONS: Final = Migrations(
    directory=Path(__file__).with_name("migrations"),
    version_table=ALEMBIC_VERSION_TABLE,
    lock_key=0x78676174_6D736C67,  # "xgatmslg": not the server configuration's key
)


def create_engine(url: str = DEFAULT_URL, **kwargs: Any) -> Engine:
    """An engine for the log at `url`; on SQLite every commit is fsynced (SQLITE_SYNCHRONOUS)."""
    engine = db.create_engine(url, **kwargs)
    if is_sqlite(engine):
        sa.event.listen(engine, "connect", _on_sqlite_connect)
    return engine


def _on_sqlite_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # The sqlite3 build's default usually is FULL too, but the log's promise must not hang on it.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA synchronous={SQLITE_SYNCHRONOUS}")
    finally:
        cursor.close()


def alembic_config(url: str | None = None) -> Config:
    """An Alembic configuration built in code, pointing at the log's migrations."""
    return MIGRATIONS.alembic_config(url)


def migrate(engine_url: str, revision: str = "head") -> None:
    """Bring the log's tables at `engine_url` to `revision` (default: the newest)."""
    MIGRATIONS.upgrade(engine_url, revision, engine_factory=create_engine)
