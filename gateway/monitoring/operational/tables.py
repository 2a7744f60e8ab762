"""The operational monitoring table: one row per exchange and gateway node (no bodies).

Times are unix seconds (double precision), as the proxy measures them; X-Road's records give
milliseconds, which the metadata service computes (xroad.py). Several nodes of one gateway may
share the table (PostgreSQL): `node` says whose record it is.
"""

from __future__ import annotations

from typing import Final

import sqlalchemy as sa

from gateway.db import NAMING_CONVENTION, BigId, Json

metadata: Final = sa.MetaData(naming_convention=NAMING_CONVENTION)

records: Final = sa.Table(
    "opmon_records",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
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
    sa.Index("ix_opmon_records_request_in", "request_in"),
    sa.Index("ix_opmon_records_service_request_in", "service", "request_in"),
    sa.Index("ix_opmon_records_client_request_in", "client", "request_in"),
)
