"""Replication runs and the lease that keeps two nodes from running one plan at once.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "cache_replication_runs",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("policy", sa.Text, nullable=False),
        sa.Column("node", sa.Text, nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("calls", sa.Integer, nullable=False),
        sa.Column("fetched", sa.Integer, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last_success_used", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'ok', 'partial', 'failed')", name="ck_cache_replication_runs_status"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_cache_replication_runs"),
    )
    op.create_index(
        "ix_cache_replication_runs_policy_started_at", "cache_replication_runs", ["policy", "started_at"]
    )
    op.create_table(
        "cache_replication_leases",
        sa.Column("policy", sa.Text, nullable=False),
        sa.Column("holder", sa.Text, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("policy", name="pk_cache_replication_leases"),
    )


def downgrade() -> None:
    op.drop_table("cache_replication_leases")
    op.drop_index("ix_cache_replication_runs_policy_started_at", table_name="cache_replication_runs")
    op.drop_table("cache_replication_runs")
