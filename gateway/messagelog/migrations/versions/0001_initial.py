"""The message log's first schema: chains, content-addressed blobs, timestamps and records.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Written out in full rather than built from gateway.messagelog.tables: a migration is frozen
in time, and the tables module will move on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UtcDateTime = sa.DateTime(timezone=True)
_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_Digest = sa.LargeBinary(length=32)

_RECORD_INDEXES: dict[str, list[str]] = {
    "ix_messagelog_records_message_id": ["message_id"],
    "ix_messagelog_records_exchange_id": ["exchange_id"],
    "ix_messagelog_records_client": ["client", "logged_at"],
    "ix_messagelog_records_service": ["service", "logged_at"],
    "ix_messagelog_records_user_id": ["user_id", "logged_at"],
    "ix_messagelog_records_logged_at": ["logged_at"],
    "ix_messagelog_records_signed_root": ["signed_root_sha256"],
    "ix_messagelog_records_ocsp": ["ocsp_sha256"],
    "ix_messagelog_records_timestamp": ["timestamp_id"],
}


def upgrade() -> None:
    op.create_table(
        "messagelog_chains",
        sa.Column("gateway", sa.Text(), nullable=False),
        sa.Column("node", sa.Text(), nullable=False),
        sa.Column("head_seq", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", _Digest, nullable=False),
        sa.Column("stamped_seq", sa.BigInteger(), nullable=False),
        sa.Column("purged_seq", sa.BigInteger(), nullable=False),
        sa.Column("purged_hash", _Digest, nullable=False),
        sa.CheckConstraint(
            "0 <= purged_seq AND purged_seq <= stamped_seq AND stamped_seq <= head_seq",
            name=op.f("ck_messagelog_chains_order"),
        ),
        sa.PrimaryKeyConstraint("gateway", "node", name=op.f("pk_messagelog_chains")),
    )
    op.create_table(
        "messagelog_blobs",
        sa.Column("sha256", _Digest, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_messagelog_blobs")),
    )
    op.create_table(
        "messagelog_timestamps",
        sa.Column("id", _BigId, nullable=False),
        sa.Column("gateway", sa.Text(), nullable=False),
        sa.Column("node", sa.Text(), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("root", _Digest, nullable=False),
        sa.Column("token", sa.LargeBinary(), nullable=False),
        sa.Column("stamped_at", _UtcDateTime, nullable=False),
        sa.CheckConstraint("first_seq <= last_seq", name=op.f("ck_messagelog_timestamps_range")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messagelog_timestamps")),
    )
    op.create_index(
        "ix_messagelog_timestamps_chain", "messagelog_timestamps", ["gateway", "node", "last_seq"]
    )
    op.create_table(
        "messagelog_records",
        sa.Column("id", _BigId, nullable=False),
        sa.Column("gateway", sa.Text(), nullable=False),
        sa.Column("node", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("prev_hash", _Digest, nullable=False),
        sa.Column("record_hash", _Digest, nullable=False),
        sa.Column("exchange_id", sa.Text(), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("logged_at", _UtcDateTime, nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("client", sa.Text(), nullable=False),
        sa.Column("service", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column("issue", sa.Text(), nullable=True),
        sa.Column("represented_party", sa.Text(), nullable=True),
        sa.Column("content_type", sa.Text(), nullable=False),
        sa.Column("message", sa.LargeBinary(), nullable=True),
        sa.Column("body_key_id", sa.String(length=64), nullable=True),
        sa.Column("body_nonce", sa.LargeBinary(), nullable=True),
        sa.Column("message_sha256", sa.String(length=64), nullable=True),
        sa.Column("manifest", sa.LargeBinary(), nullable=False),
        sa.Column("signed_root_sha256", _Digest, nullable=True),
        sa.Column("proof_json", sa.Text(), nullable=True),
        sa.Column("ocsp_sha256", _Digest, nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("fault_detail", sa.Text(), nullable=True),
        sa.Column("timestamp_id", sa.BigInteger(), nullable=True),
        sa.Column("timestamp_proof", sa.Text(), nullable=True),
        sa.Column("archived_at", _UtcDateTime, nullable=True),
        sa.Column("archive_id", sa.Text(), nullable=True),
        sa.CheckConstraint("side IN ('consumer', 'provider')", name=op.f("ck_messagelog_records_side")),
        sa.CheckConstraint(
            "direction IN ('request', 'response')", name=op.f("ck_messagelog_records_direction")
        ),
        sa.CheckConstraint("kind IN ('soap', 'rest')", name=op.f("ck_messagelog_records_kind")),
        sa.CheckConstraint(
            "(body_key_id IS NULL) = (body_nonce IS NULL)", name=op.f("ck_messagelog_records_body_key_whole")
        ),
        sa.CheckConstraint(
            "(timestamp_id IS NULL) = (timestamp_proof IS NULL)",
            name=op.f("ck_messagelog_records_timestamp_whole"),
        ),
        sa.CheckConstraint(
            "(archived_at IS NULL) = (archive_id IS NULL)", name=op.f("ck_messagelog_records_archive_whole")
        ),
        sa.ForeignKeyConstraint(
            ["signed_root_sha256"],
            ["messagelog_blobs.sha256"],
            name=op.f("fk_messagelog_records_signed_root_sha256_messagelog_blobs"),
        ),
        sa.ForeignKeyConstraint(
            ["ocsp_sha256"],
            ["messagelog_blobs.sha256"],
            name=op.f("fk_messagelog_records_ocsp_sha256_messagelog_blobs"),
        ),
        sa.ForeignKeyConstraint(
            ["timestamp_id"],
            ["messagelog_timestamps.id"],
            name=op.f("fk_messagelog_records_timestamp_id_messagelog_timestamps"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messagelog_records")),
        sa.UniqueConstraint("gateway", "node", "seq", name=op.f("uq_messagelog_records_gateway")),
    )
    for name, columns in _RECORD_INDEXES.items():
        op.create_index(name, "messagelog_records", columns)


def downgrade() -> None:
    for name in _RECORD_INDEXES:
        op.drop_index(name, table_name="messagelog_records")
    op.drop_table("messagelog_records")
    op.drop_index("ix_messagelog_timestamps_chain", table_name="messagelog_timestamps")
    for table in ("messagelog_timestamps", "messagelog_blobs", "messagelog_chains"):
        op.drop_table(table)
