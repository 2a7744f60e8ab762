"""The interface cache: entries, their subject tokens, the clients answered, counters.

Revision ID: 0001
Revises:
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "cache_entries",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("policy", sa.Text, nullable=False),
        sa.Column("service", sa.Text, nullable=False),
        sa.Column("client", sa.Text, nullable=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("original_message_id", sa.Text, nullable=False),
        sa.Column("log_record", sa.Text, nullable=True),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("content_type", sa.Text, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("body_key_id", sa.String(64), nullable=True),
        sa.Column("body_nonce", sa.LargeBinary(12), nullable=True),
        sa.Column("signer_ocsp", sa.LargeBinary, nullable=True),
        sa.CheckConstraint("kind IN ('soap', 'rest')", name="ck_cache_entries_kind"),
        sa.CheckConstraint(
            "(body_key_id IS NULL) = (body_nonce IS NULL)", name="ck_cache_entries_encryption_whole"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_cache_entries"),
        sa.UniqueConstraint("key", name="uq_cache_entries_key"),
    )
    op.create_index("ix_cache_entries_policy_stored_at", "cache_entries", ["policy", "stored_at"])
    op.create_index("ix_cache_entries_service", "cache_entries", ["service"])
    op.create_index("ix_cache_entries_client", "cache_entries", ["client"])
    op.create_table(
        "cache_entry_subjects",
        sa.Column("entry_id", _BIG_ID, nullable=False),
        sa.Column("token", sa.LargeBinary(32), nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["cache_entries.id"],
            name="fk_cache_entry_subjects_entry_id_cache_entries",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("entry_id", "token", name="pk_cache_entry_subjects"),
    )
    op.create_index("ix_cache_entry_subjects_token", "cache_entry_subjects", ["token"])
    op.create_table(
        "cache_clients",
        sa.Column("service", sa.Text, nullable=False),
        sa.Column("client", sa.Text, nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("service", "client", name="pk_cache_clients"),
    )
    op.create_table(
        "cache_stats",
        sa.Column("service", sa.Text, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.CheckConstraint(
            "outcome IN ('hit', 'stale', 'miss', 'stored', 'refused')", name="ck_cache_stats_outcome"
        ),
        sa.PrimaryKeyConstraint("service", "outcome", name="pk_cache_stats"),
    )


def downgrade() -> None:
    op.drop_table("cache_stats")
    op.drop_table("cache_clients")
    op.drop_index("ix_cache_entry_subjects_token", table_name="cache_entry_subjects")
    op.drop_table("cache_entry_subjects")
    op.drop_index("ix_cache_entries_client", table_name="cache_entries")
    op.drop_index("ix_cache_entries_service", table_name="cache_entries")
    op.drop_index("ix_cache_entries_policy_stored_at", table_name="cache_entries")
    op.drop_table("cache_entries")
