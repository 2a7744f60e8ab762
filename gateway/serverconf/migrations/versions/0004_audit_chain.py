"""The management API's audit log is hash chained: each entry carries its predecessor's hash.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

Entries written before this revision stay unchained (both columns NULL); every later entry is
linked (gateway.adminstore.audit_entry_hash), and `verify_audit_chain` refuses a gap.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("prev_hash", sa.LargeBinary(length=32), nullable=True))
        batch.add_column(sa.Column("entry_hash", sa.LargeBinary(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("entry_hash")
        batch.drop_column("prev_hash")
