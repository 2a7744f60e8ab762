"""The federation's monitoring client, named in the global configuration (branch opmon).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

Operational monitoring (docs/monitoring.md): the client that may read every gateway's records
through getSecurityServerOperationalData. NULL: none (the configuration leaves the field out).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"


def upgrade() -> None:
    with op.batch_alter_table("central_settings") as batch:
        batch.add_column(sa.Column("monitoring_client", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("central_settings") as batch:
        batch.drop_column("monitoring_client")
