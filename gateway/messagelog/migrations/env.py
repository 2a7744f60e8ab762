"""Alembic environment of the message log.

Run from code (`gateway.messagelog.db.migrate`), which hands over an open connection in a
transaction (and a lock against other nodes migrating at once). The `alembic` command line
works too, with a configuration naming script_location and sqlalchemy.url. Only the log's own
tables are compared and versioned here, so it may share a database with other packages.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy.engine import Connection

from gateway.messagelog.db import ALEMBIC_VERSION_TABLE, create_engine, is_sqlite
from gateway.messagelog.tables import metadata


def _ours(name: str | None, type_: str, _parent_names: Any) -> bool:
    """Autogenerate looks only at the log's tables, not at a neighbour's in the same database."""
    return type_ != "table" or name in metadata.tables


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=ALEMBIC_VERSION_TABLE,
        include_name=_ours,
        # SQLite alters tables only by copying them; batch mode does that for later migrations.
        render_as_batch=is_sqlite(connection),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        version_table=ALEMBIC_VERSION_TABLE,
        include_name=_ours,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    given = context.config.attributes.get("connection")
    if given is not None:
        _configure(given)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("no connection given and no sqlalchemy.url configured")
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            _configure(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
