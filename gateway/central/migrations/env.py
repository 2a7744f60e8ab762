"""Alembic environment of the central registry: `gateway.db.run_migrations` on its tables.

Run from code (`gateway.central.db.migrate`), which hands over an open connection in a
transaction (and a lock against another registry process migrating at once). The `alembic`
command line works too, with a configuration naming script_location and sqlalchemy.url.
"""

from __future__ import annotations

from alembic import context

from gateway.central.db import ALEMBIC_VERSION_TABLE
from gateway.central.tables import metadata
from gateway.db import run_migrations

run_migrations(context, metadata, ALEMBIC_VERSION_TABLE)
