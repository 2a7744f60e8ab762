"""Alembic environment of the central registry.

Run from code (`gateway.central.db.migrate`), which hands over an open connection in a
transaction (and a lock against another registry process migrating at once). The `alembic`
command line works too, with a configuration naming script_location and sqlalchemy.url.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from gateway.central.db import ALEMBIC_VERSION_TABLE
from gateway.central.tables import metadata
from gateway.serverconf.db import create_engine, is_sqlite


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=ALEMBIC_VERSION_TABLE,
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
