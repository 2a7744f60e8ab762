"""Alembic environment of the server configuration: `gateway.db.run_migrations` on its tables.

Run from code (`gateway.serverconf.db.migrate`), which hands over an open connection in a
transaction (and a lock against other nodes migrating at once). The `alembic` command line
works too, with a configuration naming script_location and sqlalchemy.url.
"""

from __future__ import annotations

from alembic import context

from gateway.db import run_migrations
from gateway.serverconf.db import ALEMBIC_VERSION_TABLE
from gateway.serverconf.tables import metadata

run_migrations(context, metadata, ALEMBIC_VERSION_TABLE)
