"""Database engines for the server configuration, its transactions, and its migrations.

SQLite is the default (one node, one file, WAL mode so readers never wait for the writer);
PostgreSQL through psycopg 3 serves several nodes sharing one database (DESIGN.md,
"Scaling out"). Migrations are Alembic's, run from code: the scripts ship inside the
package, so users need no alembic.ini.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import ConnectionPoolEntry

DEFAULT_URL: Final = "sqlite:///serverconf.db"
"""Relative to the working directory; the node's TOML file names the real place."""

SQLITE_BUSY_TIMEOUT_MS: Final = 5000
"""A configuration write holds SQLite's lock for milliseconds; waiting up to 5 s for it rides
out bursts of administrative writes and a migration instead of failing "database is locked"."""

MIGRATIONS_DIR: Final = Path(__file__).with_name("migrations")

ALEMBIC_VERSION_TABLE: Final = "serverconf_alembic_version"
"""Our own name, so other packages' migrations may share the database (messagelog, cache...)."""

MIGRATION_LOCK_KEY: Final = 0x78676174_65736366  # "xgatescf": one PostgreSQL advisory lock id
"""Nodes starting together migrate one after the other, not into each other."""

_BEGIN_OPTION: Final = "xgate_sqlite_begin"


def _engine_url(url: str) -> sa.URL:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.get_driver_name() != "pysqlite":
            raise ValueError(f"the server configuration uses the sqlite3 driver, not {parsed.drivername}")
        return parsed
    if backend in ("postgresql", "postgres"):
        # psycopg 3 is the driver installed; SQLAlchemy's default for postgresql:// is psycopg2.
        if parsed.drivername not in ("postgresql", "postgres", "postgresql+psycopg"):
            raise ValueError(f"the server configuration uses postgresql+psycopg, not {parsed.drivername}")
        return parsed.set(drivername="postgresql+psycopg")
    raise ValueError(f"unsupported database {parsed.drivername!r}: use sqlite:/// or postgresql://")


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


def create_engine(url: str = DEFAULT_URL, **kwargs: Any) -> Engine:
    """An engine for `url` (sqlite:///path or postgresql[+psycopg]://...), set up for xgate.

    SQLite connections get WAL mode, foreign keys (off by default in SQLite) and a busy
    timeout, and SQLAlchemy rather than the sqlite3 module begins transactions, so that
    reads are repeatable and DDL is transactional (SQLAlchemy docs, "Transactions with
    SQLite and the sqlite3 driver").
    """
    parsed = _engine_url(url)
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)  # survive a database restart or failover
        return sa.create_engine(parsed, **kwargs)
    engine = sa.create_engine(parsed, **kwargs)
    sa.event.listen(engine, "connect", _on_sqlite_connect)
    sa.event.listen(engine, "begin", _on_sqlite_begin)
    return engine


def _on_sqlite_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    dbapi_connection.isolation_level = None  # the sqlite3 module must not BEGIN on its own
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")  # answers 'memory' for :memory:, which is fine
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS:d}")
    finally:
        cursor.close()


def _on_sqlite_begin(connection: Connection) -> None:
    mode = connection.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
    connection.exec_driver_sql(f"BEGIN {mode}")


@contextmanager
def begin_write(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: committed on exit, rolled back on an exception.

    On SQLite it takes the write lock at BEGIN (IMMEDIATE), so two writers queue on the busy
    timeout instead of one failing when it upgrades a read lock (SQLITE_BUSY).
    """
    with engine.connect() as connection:
        if is_sqlite(engine):
            connection = connection.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        with connection.begin():
            yield connection


@contextmanager
def begin_snapshot_read(engine: Engine) -> Iterator[Connection]:
    """A read transaction seeing one consistent state across several queries.

    PostgreSQL: REPEATABLE READ (READ COMMITTED would let a commit land between two queries).
    SQLite: a deferred transaction is a snapshot from its first read in WAL mode.
    """
    with engine.connect() as connection:
        if not is_sqlite(engine):
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            yield connection


def alembic_config(url: str | None = None) -> Config:
    """An Alembic configuration built in code, pointing at the migrations inside the package."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("version_table", ALEMBIC_VERSION_TABLE)
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # configparser interpolation
    return config


def migrate(engine_url: str, revision: str = "head") -> None:
    """Bring the database at `engine_url` to `revision` (default: the newest), creating the schema."""
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
