"""Which signed parts the log kept of each message (record format xgate-logrecord/3).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

NULL for the records stored before: they keep hashing as xgate-logrecord/2 and verify as
before, with a warning that their completeness cannot be checked.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"


def upgrade() -> None:
    with op.batch_alter_table("messagelog_records") as batch:
        batch.add_column(sa.Column("logged_parts", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messagelog_records") as batch:
        batch.drop_column("logged_parts")
