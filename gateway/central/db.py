"""The registry's database: the server configuration's engine helpers, the registry's own migrations.

Engines and transactions come from `gateway.serverconf.db` (SQLite in WAL mode by default,
PostgreSQL through psycopg 3). The registry's Alembic scripts live in
`gateway/central/migrations` and record themselves in their own version table, so a
registry may share a database with other xgate schemas.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from gateway.serverconf.db import begin_write, create_engine, is_sqlite

MIGRATIONS_DIR: Final = Path(__file__).with_name("migrations")
ALEMBIC_VERSION_TABLE: Final = "central_alembic_version"

MIGRATION_LOCK_KEY: Final = 0x78676174_63656E74  # "xgatecent": one PostgreSQL advisory lock id
"""Two registry processes starting together migrate one after the other."""


def alembic_config(url: str | None = None) -> Config:
    """An Alembic configuration built in code, pointing at the registry's migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("version_table", ALEMBIC_VERSION_TABLE)
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # configparser interpolation
    return config


def migrate(engine_url: str, revision: str = "head") -> None:
    """Bring the registry's database to `revision` (default: the newest), creating the schema."""
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
