"""Operational monitoring records (branch opmon).

Revision ID: 0001
Revises:
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gateway.db import BigId, Json

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "opmon_records",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("node", sa.Text, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("exchange_id", sa.Text, nullable=False),
        sa.Column("protocol", sa.String(8), nullable=False),
        sa.Column("request_in", sa.Float(precision=53), nullable=False),
        sa.Column("response_out", sa.Float(precision=53), nullable=False),
        sa.Column("duration", sa.Float(precision=53), nullable=False),
        sa.Column("steps", Json, nullable=False),
        sa.Column("client", sa.Text, nullable=True),
        sa.Column("service", sa.Text, nullable=True),
        sa.Column("message_id", sa.Text, nullable=True),
        sa.Column("user_id", sa.Text, nullable=True),
        sa.Column("rest_method", sa.String(16), nullable=True),
        sa.Column("rest_path", sa.Text, nullable=True),
        sa.Column("request_size", sa.BigInteger, nullable=False),
        sa.Column("response_size", sa.BigInteger, nullable=False),
        sa.Column("request_attachments", sa.Integer, nullable=False),
        sa.Column("response_attachments", sa.Integer, nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("succeeded", sa.Boolean, nullable=False),
        sa.Column("fault_code", sa.Text, nullable=True),
        sa.Column("fault_string", sa.Text, nullable=True),
        sa.Column("peer", sa.Text, nullable=True),
        sa.Column("served_from_cache", sa.String(8), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_opmon_records"),
    )
    op.create_index("ix_opmon_records_request_in", "opmon_records", ["request_in"])
    op.create_index("ix_opmon_records_service_request_in", "opmon_records", ["service", "request_in"])
    op.create_index("ix_opmon_records_client_request_in", "opmon_records", ["client", "request_in"])


def downgrade() -> None:
    op.drop_table("opmon_records")
