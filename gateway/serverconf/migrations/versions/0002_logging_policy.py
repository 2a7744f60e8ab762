"""Per-subsystem message-log policy: body logging on/off and immediate timestamping.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
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
    with op.batch_alter_table("subsystems") as batch:
        batch.add_column(sa.Column("log_bodies", sa.Boolean(), server_default=sa.true(), nullable=False))
        batch.add_column(
            sa.Column("timestamp_immediately", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("subsystems") as batch:
        batch.drop_column("timestamp_immediately")
        batch.drop_column("log_bodies")
