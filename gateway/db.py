"""The SQL plumbing every package that keeps state shares: engines, transactions, migrations, column types.

SQLite is the default (one node, one file, WAL mode so readers never wait for the writer);
PostgreSQL through psycopg 3 serves several nodes sharing one database (DESIGN.md,
"Scaling out"). Each package (server configuration, message log, central registry) keeps its
own tables, Alembic scripts, version table and migration lock, named by a :class:`Migrations`
in its own `db.py`, so several schemas may share one database. Migrations run from code: the
scripts ship inside the package, so users need no alembic.ini.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Dialect, Engine, make_url
from sqlalchemy.pool import ConnectionPoolEntry

SQLITE_BUSY_TIMEOUT_MS: Final = 5000
"""A configuration write holds SQLite's lock for milliseconds; waiting up to 5 s for it rides
out bursts of administrative writes and a migration instead of failing "database is locked"."""

MAX_SQL_INTEGER: Final = 2**31 - 1
"""The largest INTEGER in SQLite and PostgreSQL alike: counts and offsets beyond it name nothing,
and a larger Python int sent as a parameter makes the driver raise (SQLite: OverflowError)."""
MAX_SQL_BIGINT: Final = 2**63 - 1
"""The largest row id either database hands out."""

_BEGIN_OPTION: Final = "xgate_sqlite_begin"

EngineFactory = Callable[[str], Engine]
"""Makes an engine for a URL: :func:`create_engine`, or a package's own on top of it."""


# --- engines and transactions ------------------------------------------------------------


def _engine_url(url: str) -> sa.URL:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.get_driver_name() != "pysqlite":
            raise ValueError(f"xgate uses the sqlite3 driver, not {parsed.drivername}")
        return parsed
    if backend in ("postgresql", "postgres"):
        # psycopg 3 is the driver installed; SQLAlchemy's default for postgresql:// is psycopg2.
        if parsed.drivername not in ("postgresql", "postgres", "postgresql+psycopg"):
            raise ValueError(f"xgate uses postgresql+psycopg, not {parsed.drivername}")
        return parsed.set(drivername="postgresql+psycopg")
    raise ValueError(f"unsupported database {parsed.drivername!r}: use sqlite:/// or postgresql://")


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


def create_engine(url: str, **kwargs: Any) -> Engine:
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


# --- migrations ------------------------------------------------------------------------------


class SchemaTooNew(Exception):
    """A database carries a revision this release's migration scripts do not know.

    A newer release migrated it: this one would run against tables it does not understand
    (and could not downgrade them without the newer scripts), so the node refuses to start.
    """

    def __init__(self, version_table: str, unknown: tuple[str, ...], head: str | None) -> None:
        self.version_table = version_table
        self.unknown = unknown
        self.head = head
        super().__init__(
            f"the database's {version_table} is at revision {', '.join(unknown)}, which this release "
            f"does not know (its newest is {head}): a newer xgate migrated it; run that release, "
            "or restore a backup taken before the upgrade"
        )


@dataclass(frozen=True)
class Migrations:
    """One package's Alembic scripts, with the version table and lock that keep them its own.

    The version table has the package's name, so several packages' schemas may share one
    database; the PostgreSQL advisory lock makes nodes starting together migrate one after
    the other, not into each other.
    """

    directory: Path
    version_table: str
    lock_key: int  # a PostgreSQL advisory lock id, one per package

    def alembic_config(self, url: str | None = None) -> Config:
        """An Alembic configuration built in code, pointing at the migrations inside the package."""
        config = Config()
        config.set_main_option("script_location", str(self.directory))
        config.set_main_option("version_table", self.version_table)
        if url is not None:
            config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # configparser interpolation
        return config

    def upgrade(
        self, engine_url: str, revision: str = "head", *, engine_factory: EngineFactory = create_engine
    ) -> None:
        """Bring the database at `engine_url` to `revision` (default: the newest), creating the schema."""
        engine = engine_factory(engine_url)
        try:
            with begin_write(engine) as connection:
                if not is_sqlite(engine):
                    connection.execute(sa.select(sa.func.pg_advisory_xact_lock(self.lock_key)))
                config = self.alembic_config(engine_url)
                self.refuse_unknown_revisions(connection, config)
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
        finally:
            engine.dispose()

    def refuse_unknown_revisions(self, connection: Connection, config: Config | None = None) -> None:
        """Raise :class:`SchemaTooNew` if the database is at a revision the scripts do not have.

        Alembic alone would fail with "Can't locate revision", saying nothing of why; checked
        before any script runs, so nothing is changed.
        """
        scripts = ScriptDirectory.from_config(config or self.alembic_config())
        context = MigrationContext.configure(connection, opts={"version_table": self.version_table})
        known = {script.revision for script in scripts.walk_revisions()}
        unknown = tuple(sorted(set(context.get_current_heads()) - known))
        if unknown:
            raise SchemaTooNew(self.version_table, unknown, scripts.get_current_head())


NameFilter = Callable[[str | None, str, Any], bool]
"""Alembic's `include_name` hook: which reflected names autogenerate compares."""


class MigrationEnvironment(Protocol):
    """What env.py uses of `alembic.context` (a module standing for Alembic's EnvironmentContext)."""

    @property
    def config(self) -> Config: ...
    def is_offline_mode(self) -> bool: ...
    def configure(self, **options: Any) -> None: ...
    def begin_transaction(self) -> AbstractContextManager[Any]: ...
    def run_migrations(self, **kw: Any) -> None: ...


def run_migrations(
    context: MigrationEnvironment,
    target_metadata: sa.MetaData,
    version_table: str,
    *,
    include_name: NameFilter | None = None,
    engine_factory: EngineFactory = create_engine,
) -> None:
    """The body of a package's migrations/env.py: offline, on the connection given, or on the URL.

    :meth:`Migrations.upgrade` hands over an open connection in a transaction (holding the
    migration lock); the `alembic` command line works too, with a configuration naming
    script_location and sqlalchemy.url.
    """
    options: dict[str, Any] = {"target_metadata": target_metadata, "version_table": version_table}
    if include_name is not None:
        options["include_name"] = include_name

    def migrate_on(connection: Connection) -> None:
        # SQLite alters tables only by copying them; batch mode does that for later migrations.
        context.configure(connection=connection, render_as_batch=is_sqlite(connection), **options)
        with context.begin_transaction():
            context.run_migrations()

    if context.is_offline_mode():
        context.configure(url=context.config.get_main_option("sqlalchemy.url"), literal_binds=True, **options)
        with context.begin_transaction():
            context.run_migrations()
        return
    given = context.config.attributes.get("connection")
    if given is not None:
        migrate_on(given)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("no connection given and no sqlalchemy.url configured")
    engine = engine_factory(url)
    try:
        with engine.begin() as connection:
            migrate_on(connection)
    finally:
        engine.dispose()


# --- column types and schema conventions -------------------------------------------------------


class UtcDateTime(sa.TypeDecorator[datetime]):
    """An aware UTC datetime on every backend: SQLite keeps no zone, so one is put back on read."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: give times in UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


BigId: Final = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
"""A 64-bit id; SQLite aliases only INTEGER PRIMARY KEY to its rowid, so BIGINT there would not
autoincrement."""

Json: Final = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Deterministic constraint names, so later migrations can name what they alter."""


def one_of(column: str, values: type[enum.StrEnum]) -> str:
    """A CHECK constraint's text: `column` holds one of the enum's values."""
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"
