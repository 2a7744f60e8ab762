"""The audit log is hash chained, and the registry keeps the log heads gateways send (witness).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06

Entries written before this revision stay unchained (both columns NULL); every later entry is
linked (gateway.adminstore.audit_entry_hash), and `verify_audit_chain` refuses a gap.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"


def upgrade() -> None:
    with op.batch_alter_table("central_audit_log") as batch:
        batch.add_column(sa.Column("prev_hash", sa.LargeBinary(length=32), nullable=True))
        batch.add_column(sa.Column("entry_hash", sa.LargeBinary(length=32), nullable=True))
    op.create_table(
        "central_log_heads",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("gateway", sa.Text(), nullable=False),
        sa.Column("node", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_log_heads")),
    )
    op.create_index("ix_central_log_heads_chain", "central_log_heads", ["gateway", "node", "seq"])


def downgrade() -> None:
    op.drop_index("ix_central_log_heads_chain", table_name="central_log_heads")
    op.drop_table("central_log_heads")
    with op.batch_alter_table("central_audit_log") as batch:
        batch.drop_column("entry_hash")
        batch.drop_column("prev_hash")
