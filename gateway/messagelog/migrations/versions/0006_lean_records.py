"""Lean log records (issue 16): compressed bodies and blobs, packed proofs, signers' certificates
and timestamp leaves once; an index for the officer's search by outcome.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

Only columns and indexes are added (SQLite's ALTER TABLE ADD COLUMN, no copy of the table):
rows stored before keep their full forms and read as before (gateway.messagelog.tables says how
the reader tells the two apart), so no stored record, hash or proof changes.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"

_RECORD_COLUMNS: dict[str, sa.types.TypeEngine[Any]] = {
    "body_codec": sa.String(length=8),
    "proof_steps": sa.LargeBinary(),
    "log_signature_steps": sa.LargeBinary(),
}
_INDEXES: dict[str, list[str]] = {
    "ix_messagelog_records_outcome": ["outcome", "logged_at"],
}


def upgrade() -> None:
    for name, type_ in _RECORD_COLUMNS.items():
        op.add_column("messagelog_records", sa.Column(name, type_, nullable=True))
    op.add_column("messagelog_timestamps", sa.Column("leaves", sa.LargeBinary(), nullable=True))
    op.add_column("messagelog_blobs", sa.Column("codec", sa.String(length=8), nullable=True))
    op.add_column("messagelog_blobs", sa.Column("ref_sha256", sa.LargeBinary(length=32), nullable=True))
    op.create_index("ix_messagelog_blobs_ref", "messagelog_blobs", ["ref_sha256"])
    for name, columns in _INDEXES.items():
        op.create_index(name, "messagelog_records", columns)


def downgrade() -> None:
    """Back to 0005's columns: possible only while no record uses the lean forms (the old code
    could not read them), so a log written since is refused rather than silently broken."""
    bind = op.get_bind()
    lean = bind.execute(
        sa.text(
            "SELECT count(*) FROM messagelog_records WHERE body_codec IS NOT NULL "
            "OR proof_steps IS NOT NULL OR log_signature_steps IS NOT NULL OR timestamp_proof = '' "
            "OR length(manifest) = 33 OR EXISTS (SELECT 1 FROM messagelog_blobs WHERE codec IS NOT NULL)"
        )
    ).scalar_one()
    if lean:
        raise RuntimeError(f"{lean} records are stored in the lean layout of 0006: cannot downgrade")
    for name in _INDEXES:
        op.drop_index(name, table_name="messagelog_records")
    with op.batch_alter_table("messagelog_timestamps") as batch:
        batch.drop_column("leaves")
    op.drop_index("ix_messagelog_blobs_ref", table_name="messagelog_blobs")
    with op.batch_alter_table("messagelog_blobs") as batch:
        batch.drop_column("ref_sha256")
        batch.drop_column("codec")
    with op.batch_alter_table("messagelog_records") as batch:
        for name in reversed(_RECORD_COLUMNS):
            batch.drop_column(name)
