"""The signed REST head of a REST message, beside its body (record format xgate-logrecord/2).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

Kept in the record's own row, not in the shared blobs: every message has its own head.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messagelog_records") as batch:
        batch.add_column(sa.Column("rest_head", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messagelog_records") as batch:
        batch.drop_column("rest_head")
