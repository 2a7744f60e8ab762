"""The server configuration's first schema: subsystems, services, endpoints, access rights,
local groups, the administrative tables (API keys, audit log, keys) and config_version.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Written out in full rather than built from gateway.serverconf.tables: a migration is frozen
in time, and the tables module will move on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UtcDateTime = sa.DateTime(timezone=True)


def upgrade() -> None:
    config_version = op.create_table(
        "config_version",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("changed_at", _UtcDateTime, nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_config_version_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_config_version")),
    )
    op.bulk_insert(config_version, [{"id": 1, "version": 0, "changed_at": datetime.now(UTC)}])

    op.create_table(
        "subsystems",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("instance", sa.Text(), nullable=False),
        sa.Column("member_class", sa.Text(), nullable=False),
        sa.Column("member_code", sa.Text(), nullable=False),
        sa.Column("subsystem_code", sa.Text(), nullable=True),
        sa.Column("auth_mode", sa.String(length=16), nullable=False),
        sa.CheckConstraint(
            "auth_mode IN ('http', 'https', 'https_cert')", name=op.f("ck_subsystems_auth_mode")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subsystems")),
        sa.UniqueConstraint("client_id", name=op.f("uq_subsystems_client_id")),
    )
    op.create_table(
        "client_certificates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subsystem_id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("cert_pem", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subsystem_id"],
            ["subsystems.id"],
            name=op.f("fk_client_certificates_subsystem_id_subsystems"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_client_certificates")),
        sa.UniqueConstraint("subsystem_id", "sha256", name=op.f("uq_client_certificates_subsystem_id")),
    )
    op.create_table(
        "services",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subsystem_id", sa.Integer(), nullable=False),
        sa.Column("service_code", sa.Text(), nullable=False),
        sa.Column("service_version", sa.Text(), nullable=True),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("description_document", sa.Text(), nullable=True),
        sa.Column("description_source", sa.Text(), nullable=True),
        sa.Column("backend_url", sa.Text(), nullable=False),
        sa.Column("timeout_seconds", sa.Float(), nullable=False),
        sa.Column("tls_verify", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("tls_ca_bundle_pem", sa.Text(), nullable=True),
        sa.Column("tls_client_cert_path", sa.Text(), nullable=True),
        sa.Column("tls_client_key_path", sa.Text(), nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("disabled_notice", sa.Text(), nullable=True),
        sa.CheckConstraint("kind IN ('soap', 'rest')", name=op.f("ck_services_kind")),
        sa.CheckConstraint("timeout_seconds > 0", name=op.f("ck_services_timeout_positive")),
        sa.ForeignKeyConstraint(
            ["subsystem_id"],
            ["subsystems.id"],
            name=op.f("fk_services_subsystem_id_subsystems"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_services")),
    )
    op.create_index(
        "uq_services_code_version",
        "services",
        ["subsystem_id", "service_code", sa.text("coalesce(service_version, '')")],
        unique=True,
    )
    op.create_table(
        "rest_endpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("service_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("path_pattern", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["services.id"],
            name=op.f("fk_rest_endpoints_service_id_services"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rest_endpoints")),
        sa.UniqueConstraint(
            "service_id", "method", "path_pattern", name=op.f("uq_rest_endpoints_service_id")
        ),
    )
    op.create_table(
        "access_rights",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subsystem_id", sa.Integer(), nullable=False),
        sa.Column("service_code", sa.Text(), nullable=False),
        sa.Column("subject_type", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.Text(), nullable=False),
        sa.Column("endpoint_method", sa.String(length=16), nullable=True),
        sa.Column("endpoint_path", sa.Text(), nullable=True),
        sa.Column("created_at", _UtcDateTime, nullable=False),
        sa.CheckConstraint(
            "subject_type IN ('MEMBER', 'SUBSYSTEM', 'GLOBALGROUP', 'LOCALGROUP')",
            name=op.f("ck_access_rights_subject_type"),
        ),
        sa.CheckConstraint(
            "(endpoint_method IS NULL) = (endpoint_path IS NULL)",
            name=op.f("ck_access_rights_endpoint_whole"),
        ),
        sa.ForeignKeyConstraint(
            ["subsystem_id"],
            ["subsystems.id"],
            name=op.f("fk_access_rights_subsystem_id_subsystems"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_rights")),
    )
    op.create_index("ix_access_rights_subject", "access_rights", ["subject_type", "subject_id"])
    op.create_index(
        "uq_access_rights_grant",
        "access_rights",
        [
            "subsystem_id",
            "service_code",
            "subject_type",
            "subject_id",
            sa.text("coalesce(endpoint_method, '')"),
            sa.text("coalesce(endpoint_path, '')"),
        ],
        unique=True,
    )
    op.create_table(
        "local_groups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subsystem_id", sa.Integer(), nullable=False),
        sa.Column("group_code", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.ForeignKeyConstraint(
            ["subsystem_id"],
            ["subsystems.id"],
            name=op.f("fk_local_groups_subsystem_id_subsystems"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_local_groups")),
        sa.UniqueConstraint("subsystem_id", "group_code", name=op.f("uq_local_groups_subsystem_id")),
    )
    op.create_table(
        "local_group_members",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("added_at", _UtcDateTime, nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["local_groups.id"],
            name=op.f("fk_local_group_members_group_id_local_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_local_group_members")),
        sa.UniqueConstraint("group_id", "client_id", name=op.f("uq_local_group_members_group_id")),
    )

    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("key_sha256", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=64), nullable=False),
        sa.Column("created_at", _UtcDateTime, nullable=False),
        sa.Column("revoked", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_sha256", name=op.f("uq_api_keys_key_sha256")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", _UtcDateTime, nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), server_default="", nullable=False),
        sa.Column("details", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True),
        sa.Column("result", sa.String(length=8), nullable=False),
        sa.CheckConstraint("result IN ('ok', 'refused', 'error')", name=op.f("ck_audit_log_result")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"])
    op.create_table(
        "keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("usage", sa.String(length=8), nullable=False),
        sa.Column("member_id", sa.Text(), nullable=True),
        sa.Column("key_path", sa.Text(), nullable=False),
        sa.Column("cert_pem", sa.Text(), nullable=True),
        sa.Column("csr_pem", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("created_at", _UtcDateTime, nullable=False),
        sa.CheckConstraint("usage IN ('auth', 'sign')", name=op.f("ck_keys_usage")),
        sa.CheckConstraint("usage = 'auth' OR member_id IS NOT NULL", name=op.f("ck_keys_sign_key_member")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_keys")),
    )


def downgrade() -> None:
    for table in (
        "keys",
        "audit_log",
        "api_keys",
        "local_group_members",
        "local_groups",
        "access_rights",
        "rest_endpoints",
        "services",
        "client_certificates",
        "subsystems",
        "config_version",
    ):
        op.drop_table(table)
