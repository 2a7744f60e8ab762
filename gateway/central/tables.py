"""The central registry's tables (SQLAlchemy Core), the schema its migrations build.

Every name starts with ``central_`` so the registry may share a database with a gateway's
server configuration (whose `subsystems`, `api_keys` and `audit_log` would clash otherwise).
Members, subsystems and servers are rows joined by foreign keys with ON DELETE CASCADE:
deleting a member takes its subsystems, servers, hostings and group memberships with it,
in the same transaction, which is what the published configuration must show.
The instance code is not stored: one registry serves one instance (its TOML file names it).
"""

from __future__ import annotations

import enum
from typing import Final

import sqlalchemy as sa

from gateway.adminstore import api_keys_table, audit_log_table
from gateway.db import NAMING_CONVENTION, BigId, UtcDateTime, one_of


class RequestState(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class SigningKeyStatus(enum.StrEnum):
    """A configuration-signing key's place in a rotation (docs/central.md "Key rotation")."""

    STANDBY = "standby"  # published in the anchor, not signing yet (or no longer)
    ACTIVE = "active"  # signs every configuration; exactly one at a time
    RETIRED = "retired"  # gone from the anchor; kept for the record


metadata: Final = sa.MetaData(naming_convention=NAMING_CONVENTION)


def _cascade(column: str) -> sa.ForeignKey:
    return sa.ForeignKey(column, ondelete="CASCADE")


member_classes: Final = sa.Table(
    "central_member_classes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("code", sa.Text, nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
)

members: Final = sa.Table(
    "central_members",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    # RESTRICT: a class in use cannot go; the repository says so before the database does.
    sa.Column(
        "class_id",
        sa.Integer,
        sa.ForeignKey("central_member_classes.id", ondelete="RESTRICT"),
        nullable=False,
    ),
    sa.Column("member_code", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("class_id", "member_code"),
)

subsystems: Final = sa.Table(
    "central_subsystems",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("member_id", sa.Integer, _cascade("central_members.id"), nullable=False),
    sa.Column("subsystem_code", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("member_id", "subsystem_code"),
)

security_servers: Final = sa.Table(
    "central_security_servers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("owner_id", sa.Integer, _cascade("central_members.id"), nullable=False),
    sa.Column("server_code", sa.Text, nullable=False),
    sa.Column("address", sa.Text, nullable=False),  # host:port of the external interface
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("owner_id", "server_code"),
)

auth_certificates: Final = sa.Table(
    "central_auth_certificates",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("server_id", sa.Integer, _cascade("central_security_servers.id"), nullable=False),
    # Unique across servers: one certificate authenticates one gateway (globalconf model).
    sa.Column("sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("cert_pem", sa.Text, nullable=False),
    sa.Column("added_at", UtcDateTime, nullable=False),
)

server_clients: Final = sa.Table(
    "central_server_clients",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("server_id", sa.Integer, _cascade("central_security_servers.id"), nullable=False),
    sa.Column("subsystem_id", sa.Integer, _cascade("central_subsystems.id"), nullable=False),
    sa.UniqueConstraint("server_id", "subsystem_id"),
)
"""Which subsystems a gateway hosts (its owner member is hosted without a row)."""

trusted_cas: Final = sa.Table(
    "central_trusted_cas",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("cert_pem", sa.Text, nullable=False),
)

ocsp_responders: Final = sa.Table(
    "central_ocsp_responders",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("ca_id", sa.Integer, _cascade("central_trusted_cas.id"), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("cert_pem", sa.Text, nullable=True),  # a delegated responder's certificate
)

timestamping_authorities: Final = sa.Table(
    "central_timestamping_authorities",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("cert_pem", sa.Text, nullable=False),
)

global_groups: Final = sa.Table(
    "central_global_groups",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("group_code", sa.Text, nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
)

global_group_members: Final = sa.Table(
    "central_global_group_members",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("group_id", sa.Integer, _cascade("central_global_groups.id"), nullable=False),
    # Both keys cascade, so deleting the member or the subsystem takes the membership with it.
    sa.Column("member_id", sa.Integer, _cascade("central_members.id"), nullable=False),
    sa.Column("subsystem_id", sa.Integer, _cascade("central_subsystems.id"), nullable=True),
    sa.Column("client_id", sa.Text, nullable=False),  # ClientId text, for uniqueness and order
    sa.Column("added_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("group_id", "client_id"),
)

settings: Final = sa.Table(
    "central_settings",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("ocsp_freshness_seconds", sa.Integer, nullable=False),
    sa.Column("timestamping_interval_seconds", sa.Integer, nullable=False),
    sa.Column("refresh_interval_seconds", sa.Integer, nullable=False),
    sa.Column("validity_seconds", sa.Integer, nullable=False),
    sa.Column("monitoring_client", sa.Text, nullable=True),  # the federation's monitoring system
    sa.CheckConstraint("id = 1", name="single_row"),
    sa.CheckConstraint(
        "ocsp_freshness_seconds > 0 AND timestamping_interval_seconds > 0 "
        "AND refresh_interval_seconds > 0 AND validity_seconds > 0",
        name="positive",
    ),
)
"""The federation-wide settings (GlobalConfSettings); one row, written at first start."""

registration_requests: Final = sa.Table(
    "central_requests",
    metadata,
    # Random, not sequential: the id is what lets a gateway read its request's state unauthenticated.
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("server_id", sa.Text, nullable=True),
    sa.Column("member_id", sa.Text, nullable=False),
    sa.Column("client_id", sa.Text, nullable=True),
    sa.Column("nonce", sa.String(64), nullable=False, unique=True),  # a replay is a duplicate
    sa.Column("signed_request", sa.Text, nullable=False),  # as received, for the record
    sa.Column("submitted_at", UtcDateTime, nullable=False),
    sa.Column("decided_at", UtcDateTime, nullable=True),
    sa.Column("decided_by", sa.Text, nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.CheckConstraint(one_of("state", RequestState), name="state"),
    sa.CheckConstraint("(state = 'pending') = (decided_at IS NULL)", name="decided"),
    sa.Index("ix_central_requests_state", "state", "submitted_at"),
)

signing_keys: Final = sa.Table(
    "central_signing_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("key_path", sa.Text, nullable=False),  # the private key stays in its file
    sa.Column("passphrase_env", sa.Text, nullable=True),  # the variable's name, never the passphrase
    sa.Column("cert_pem", sa.Text, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("activated_at", UtcDateTime, nullable=True),
    sa.Column("retired_at", UtcDateTime, nullable=True),
    sa.CheckConstraint(one_of("status", SigningKeyStatus), name="status"),
)

# At most one active key, whatever the code does (both backends support partial indexes).
sa.Index(
    "uq_central_signing_keys_one_active",
    signing_keys.c.status,
    unique=True,
    sqlite_where=signing_keys.c.status == SigningKeyStatus.ACTIVE.value,
    postgresql_where=signing_keys.c.status == SigningKeyStatus.ACTIVE.value,
)

published: Final = sa.Table(
    "central_published",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("generated_at", UtcDateTime, nullable=True),
    sa.Column("expires_at", UtcDateTime, nullable=True),
    sa.Column("signed", sa.Text, nullable=True),  # the signed container (canonical JSON, ASCII)
    sa.Column("signer_sha256", sa.String(64), nullable=True),
    sa.CheckConstraint("id = 1", name="single_row"),
)
"""The last published configuration: its version only ever grows, across restarts."""

api_keys: Final = api_keys_table("central_api_keys", metadata)

audit_log: Final = audit_log_table("central_audit_log", metadata)
"""Every administrative change and refusal, and every registration request received."""

log_heads: Final = sa.Table(
    "central_log_heads",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("gateway", sa.Text, nullable=False),
    sa.Column("node", sa.Text, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("signed_at", UtcDateTime, nullable=False),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Column("document", sa.Text, nullable=False),  # the signed head line (gateway.messagelog.heads)
    sa.Index("ix_central_log_heads_chain", "gateway", "node", "seq"),
)
"""Signed message-log heads the listed gateways sent: the registry is their witness, so a
gateway's log cut together with its own head file still falls short of what is kept here."""
