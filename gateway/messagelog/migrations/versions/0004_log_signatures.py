"""Log record signatures (the owner's signature over each commit batch) and signed log heads.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

Records logged before this revision have no record signature; `xgate log verify` names them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"

_UtcDateTime = sa.DateTime(timezone=True)
_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_Digest = sa.LargeBinary(length=32)
_FK: str = "fk_messagelog_records_log_signature_sha256_messagelog_blobs"
_CK: str = "ck_messagelog_records_log_signature_whole"


def upgrade() -> None:
    with op.batch_alter_table("messagelog_records") as batch:
        batch.add_column(sa.Column("log_signature_sha256", _Digest, nullable=True))
        batch.add_column(sa.Column("log_signature_proof", sa.Text(), nullable=True))
        batch.create_foreign_key(op.f(_FK), "messagelog_blobs", ["log_signature_sha256"], ["sha256"])
        batch.create_check_constraint(
            op.f(_CK), "(log_signature_sha256 IS NULL) = (log_signature_proof IS NULL)"
        )
    op.create_table(
        "messagelog_heads",
        sa.Column("id", _BigId, nullable=False),
        sa.Column("gateway", sa.Text(), nullable=False),
        sa.Column("node", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("record_hash", _Digest, nullable=False),
        sa.Column("signed_at", _UtcDateTime, nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messagelog_heads")),
    )
    op.create_index(op.f("ix_messagelog_heads_chain"), "messagelog_heads", ["gateway", "node", "seq"])


def downgrade() -> None:
    op.drop_index(op.f("ix_messagelog_heads_chain"), "messagelog_heads")
    op.drop_table("messagelog_heads")
    with op.batch_alter_table("messagelog_records") as batch:
        batch.drop_constraint(op.f(_CK), type_="check")
        batch.drop_constraint(op.f(_FK), type_="foreignkey")
        batch.drop_column("log_signature_proof")
        batch.drop_column("log_signature_sha256")
