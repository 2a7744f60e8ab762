"""The server configuration's tables (SQLAlchemy Core), the schema the migrations build.

Identifiers are stored in their text form (`gateway.ids` `to_text()`), with separate columns
where queries need the parts. Every table holding registrations is read whole into a
:class:`~gateway.serverconf.model.ServerConfSnapshot`; `config_version` tells the nodes
sharing one database when to read again.
"""

from __future__ import annotations

import enum
from typing import Final

import sqlalchemy as sa

from gateway.adminstore import AuditResult, api_keys_table, audit_log_table
from gateway.db import NAMING_CONVENTION, Json, UtcDateTime, one_of
from gateway.serverconf.model import ClientAuthMode, KeyUsage, ServiceKind

__all__ = [
    "AuditResult",
    "ClientAuthMode",
    "KeyUsage",
    "ServiceKind",
    "SubjectType",
    "UtcDateTime",
    "access_rights",
    "api_keys",
    "audit_log",
    "cache_policies",
    "client_certificates",
    "config_version",
    "keys",
    "local_group_members",
    "local_groups",
    "metadata",
    "rest_endpoints",
    "seen_requests",
    "services",
    "subsystems",
]


class SubjectType(enum.StrEnum):
    """Who an access right is for: the identifiers.xsd objectType of the subject."""

    MEMBER = "MEMBER"
    SUBSYSTEM = "SUBSYSTEM"
    GLOBALGROUP = "GLOBALGROUP"
    LOCALGROUP = "LOCALGROUP"


metadata: Final = sa.MetaData(naming_convention=NAMING_CONVENTION)

config_version: Final = sa.Table(
    "config_version",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("changed_at", UtcDateTime, nullable=False),
    sa.CheckConstraint("id = 1", name="single_row"),
)
"""One row, bumped in the same transaction as every change: other nodes poll it to reload."""

subsystems: Final = sa.Table(
    "subsystems",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("client_id", sa.Text, nullable=False, unique=True),
    sa.Column("instance", sa.Text, nullable=False),
    sa.Column("member_class", sa.Text, nullable=False),
    sa.Column("member_code", sa.Text, nullable=False),
    sa.Column("subsystem_code", sa.Text, nullable=True),
    sa.Column("auth_mode", sa.String(16), nullable=False),
    # Message-log policy (issue "Body logging policy", "Timestamping"): bodies may hold personal
    # data; headers and digests are logged and signed regardless.
    sa.Column("log_bodies", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("timestamp_immediately", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.CheckConstraint(one_of("auth_mode", ClientAuthMode), name="auth_mode"),
)
"""The clients this gateway hosts (usually subsystems; X-Road also lets a member itself be one)."""

client_certificates: Final = sa.Table(
    "client_certificates",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("subsystem_id", sa.Integer, sa.ForeignKey("subsystems.id", ondelete="CASCADE"), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),  # lower-case hex of the DER certificate
    sa.Column("cert_pem", sa.Text, nullable=False),
    sa.UniqueConstraint("subsystem_id", "sha256"),
)
"""Client TLS certificates pinned for subsystems in `https_cert` mode."""

services: Final = sa.Table(
    "services",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("subsystem_id", sa.Integer, sa.ForeignKey("subsystems.id", ondelete="CASCADE"), nullable=False),
    sa.Column("service_code", sa.Text, nullable=False),
    sa.Column("service_version", sa.Text, nullable=True),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("description_document", sa.Text, nullable=True),  # the WSDL or OpenAPI text
    sa.Column("description_source", sa.Text, nullable=True),  # the URL or file it came from
    sa.Column("backend_url", sa.Text, nullable=False),
    sa.Column("timeout_seconds", sa.Float, nullable=False),
    sa.Column("tls_verify", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("tls_ca_bundle_pem", sa.Text, nullable=True),
    sa.Column("tls_client_cert_path", sa.Text, nullable=True),
    sa.Column("tls_client_key_path", sa.Text, nullable=True),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("disabled_notice", sa.Text, nullable=True),
    sa.CheckConstraint(one_of("kind", ServiceKind), name="kind"),
    sa.CheckConstraint("timeout_seconds > 0", name="timeout_positive"),
)
"""Services of hosted subsystems. The provider is the subsystem row; code and version complete
the ServiceId (a text ServiceId alone is ambiguous: it cannot say whether a subsystem is in it)."""

# NULLs are distinct in UNIQUE on both backends; coalescing makes "no version" one value.
# Codes are never empty (ids.validate_code), so '' cannot clash with a real version.
sa.Index(
    "uq_services_code_version",
    services.c.subsystem_id,
    services.c.service_code,
    sa.func.coalesce(services.c.service_version, ""),
    unique=True,
)

rest_endpoints: Final = sa.Table(
    "rest_endpoints",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("service_id", sa.Integer, sa.ForeignKey("services.id", ondelete="CASCADE"), nullable=False),
    sa.Column("method", sa.String(16), nullable=False),  # upper case, or "*"
    sa.Column("path_pattern", sa.Text, nullable=False),  # normalised (access.Endpoint)
    sa.UniqueConstraint("service_id", "method", "path_pattern"),
)

access_rights: Final = sa.Table(
    "access_rights",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("subsystem_id", sa.Integer, sa.ForeignKey("subsystems.id", ondelete="CASCADE"), nullable=False),
    # X-Road grants per service code of the provider, whatever the version.
    sa.Column("service_code", sa.Text, nullable=False),
    sa.Column("subject_type", sa.String(16), nullable=False),
    sa.Column("subject_id", sa.Text, nullable=False),
    sa.Column("endpoint_method", sa.String(16), nullable=True),
    sa.Column("endpoint_path", sa.Text, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.CheckConstraint(one_of("subject_type", SubjectType), name="subject_type"),
    sa.CheckConstraint("(endpoint_method IS NULL) = (endpoint_path IS NULL)", name="endpoint_whole"),
    sa.Index("ix_access_rights_subject", "subject_type", "subject_id"),
)
"""Rights of subjects to a provider's service code; no endpoint means every endpoint (and SOAP)."""

sa.Index(
    "uq_access_rights_grant",
    access_rights.c.subsystem_id,
    access_rights.c.service_code,
    access_rights.c.subject_type,
    access_rights.c.subject_id,
    sa.func.coalesce(access_rights.c.endpoint_method, ""),
    sa.func.coalesce(access_rights.c.endpoint_path, ""),
    unique=True,
)

local_groups: Final = sa.Table(
    "local_groups",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    # X-Road: a local group belongs to one hosted client and is visible only in its rights.
    sa.Column("subsystem_id", sa.Integer, sa.ForeignKey("subsystems.id", ondelete="CASCADE"), nullable=False),
    sa.Column("group_code", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.UniqueConstraint("subsystem_id", "group_code"),
)

local_group_members: Final = sa.Table(
    "local_group_members",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("group_id", sa.Integer, sa.ForeignKey("local_groups.id", ondelete="CASCADE"), nullable=False),
    sa.Column("client_id", sa.Text, nullable=False),
    sa.Column("added_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("group_id", "client_id"),
)

api_keys: Final = api_keys_table("api_keys", metadata)

audit_log: Final = audit_log_table("audit_log", metadata)
"""Every administrative change and refusal (DESIGN.md, security rules)."""

keys: Final = sa.Table(
    "keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("usage", sa.String(8), nullable=False),
    sa.Column("member_id", sa.Text, nullable=True),  # ClientId text of the member a signing key is for
    sa.Column("key_path", sa.Text, nullable=False),
    sa.Column("cert_pem", sa.Text, nullable=True),
    sa.Column("csr_pem", sa.Text, nullable=True),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.CheckConstraint(one_of("usage", KeyUsage), name="usage"),
    sa.CheckConstraint("usage = 'auth' OR member_id IS NOT NULL", name="sign_key_member"),
)
"""The gateway's own keys and certificates; the private keys stay in files (crypto/keys.py)."""

seen_requests: Final = sa.Table(
    "seen_requests",
    metadata,
    sa.Column("digest", sa.LargeBinary(32), primary_key=True),  # gateway.proxy.replay.replay_key
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Index("ix_seen_requests_expires_at", "expires_at"),
)
"""Signed requests the provider side has admitted, until their signature is too old to be served
anyway (gateway.proxy.replay): shared by the nodes of one gateway, so a replay is refused by
every node. Not configuration: rows come and go with traffic and never bump config_version."""

cache_policies: Final = sa.Table(
    "cache_policies",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("service", sa.Text, nullable=False),  # ServiceId.to_text(), for listing and purging
    sa.Column("document", Json, nullable=False),  # gateway.cache.policy.CachePolicy.to_document()
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)
"""The interface cache's policies (gateway.cache.policy): set by the service administrator,
versioned with the registrations (a change bumps config_version, so every node reloads)."""
