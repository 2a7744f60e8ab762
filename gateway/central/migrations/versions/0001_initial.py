"""The central registry's first schema: members, subsystems, security servers, trust services,
global groups, settings, registration requests, signing keys, the published configuration's
state, API keys and the audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Written out in full rather than built from gateway.central.tables: a migration is frozen in
time, and the tables module will move on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UtcDateTime = sa.DateTime(timezone=True)
_Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "central_api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("key_sha256", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=64), nullable=False),
        sa.Column("created_at", _UtcDateTime, nullable=False),
        sa.Column("revoked", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_api_keys")),
        sa.UniqueConstraint("key_sha256", name=op.f("uq_central_api_keys_key_sha256")),
    )
    op.create_table(
        "central_audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", _UtcDateTime, nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), server_default="", nullable=False),
        sa.Column("details", _Json, nullable=True),
        sa.Column("result", sa.String(length=8), nullable=False),
        sa.CheckConstraint("result IN ('ok', 'refused', 'error')", name=op.f("ck_central_audit_log_result")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_audit_log")),
    )
    op.create_index(op.f("ix_central_audit_log_at"), "central_audit_log", ["at"])

    op.create_table(
        "central_global_groups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_code", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_global_groups")),
        sa.UniqueConstraint("group_code", name=op.f("uq_central_global_groups_group_code")),
    )
    op.create_table(
        "central_member_classes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_member_classes")),
        sa.UniqueConstraint("code", name=op.f("uq_central_member_classes_code")),
    )
    published = op.create_table(
        "central_published",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("generated_at", _UtcDateTime, nullable=True),
        sa.Column("expires_at", _UtcDateTime, nullable=True),
        sa.Column("signed", sa.Text(), nullable=True),
        sa.Column("signer_sha256", sa.String(length=64), nullable=True),
        sa.CheckConstraint("id = 1", name=op.f("ck_central_published_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_published")),
    )
    op.bulk_insert(published, [{"id": 1, "version": 0}])
    op.create_table(
        "central_requests",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("server_id", sa.Text(), nullable=True),
        sa.Column("member_id", sa.Text(), nullable=False),
        sa.Column("client_id", sa.Text(), nullable=True),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("signed_request", sa.Text(), nullable=False),
        sa.Column("submitted_at", _UtcDateTime, nullable=False),
        sa.Column("decided_at", _UtcDateTime, nullable=True),
        sa.Column("decided_by", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "(state = 'pending') = (decided_at IS NULL)", name=op.f("ck_central_requests_decided")
        ),
        sa.CheckConstraint(
            "state IN ('pending', 'approved', 'rejected')", name=op.f("ck_central_requests_state")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_requests")),
        sa.UniqueConstraint("nonce", name=op.f("uq_central_requests_nonce")),
    )
    op.create_index("ix_central_requests_state", "central_requests", ["state", "submitted_at"], unique=False)

    op.create_table(
        "central_settings",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("ocsp_freshness_seconds", sa.Integer(), nullable=False),
        sa.Column("timestamping_interval_seconds", sa.Integer(), nullable=False),
        sa.Column("refresh_interval_seconds", sa.Integer(), nullable=False),
        sa.Column("validity_seconds", sa.Integer(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_central_settings_single_row")),
        sa.CheckConstraint(
            "ocsp_freshness_seconds > 0 AND timestamping_interval_seconds > 0 "
            "AND refresh_interval_seconds > 0 AND validity_seconds > 0",
            name=op.f("ck_central_settings_positive"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_settings")),
    )
    op.create_table(
        "central_signing_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_path", sa.Text(), nullable=False),
        sa.Column("passphrase_env", sa.Text(), nullable=True),
        sa.Column("cert_pem", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", _UtcDateTime, nullable=False),
        sa.Column("activated_at", _UtcDateTime, nullable=True),
        sa.Column("retired_at", _UtcDateTime, nullable=True),
        sa.CheckConstraint(
            "status IN ('standby', 'active', 'retired')", name=op.f("ck_central_signing_keys_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_signing_keys")),
        sa.UniqueConstraint("sha256", name=op.f("uq_central_signing_keys_sha256")),
    )
    op.create_index(
        "uq_central_signing_keys_one_active",
        "central_signing_keys",
        ["status"],
        unique=True,
        sqlite_where=sa.text("status = 'active'"),
        postgresql_where=sa.text("status = 'active'"),
    )

    op.create_table(
        "central_timestamping_authorities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("cert_pem", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_timestamping_authorities")),
        sa.UniqueConstraint("name", name=op.f("uq_central_timestamping_authorities_name")),
    )
    op.create_table(
        "central_trusted_cas",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("cert_pem", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_trusted_cas")),
        sa.UniqueConstraint("name", name=op.f("uq_central_trusted_cas_name")),
    )
    op.create_table(
        "central_members",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("class_id", sa.Integer(), nullable=False),
        sa.Column("member_code", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("created_at", _UtcDateTime, nullable=False),
        sa.ForeignKeyConstraint(
            ["class_id"],
            ["central_member_classes.id"],
            name=op.f("fk_central_members_class_id_central_member_classes"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_members")),
        sa.UniqueConstraint("class_id", "member_code", name=op.f("uq_central_members_class_id")),
    )
    op.create_table(
        "central_ocsp_responders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ca_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("cert_pem", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["ca_id"],
            ["central_trusted_cas.id"],
            name=op.f("fk_central_ocsp_responders_ca_id_central_trusted_cas"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_ocsp_responders")),
    )
    op.create_table(
        "central_security_servers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("server_code", sa.Text(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("created_at", _UtcDateTime, nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["central_members.id"],
            name=op.f("fk_central_security_servers_owner_id_central_members"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_security_servers")),
        sa.UniqueConstraint("owner_id", "server_code", name=op.f("uq_central_security_servers_owner_id")),
    )
    op.create_table(
        "central_subsystems",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("subsystem_code", sa.Text(), nullable=False),
        sa.Column("created_at", _UtcDateTime, nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["central_members.id"],
            name=op.f("fk_central_subsystems_member_id_central_members"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_subsystems")),
        sa.UniqueConstraint("member_id", "subsystem_code", name=op.f("uq_central_subsystems_member_id")),
    )
    op.create_table(
        "central_auth_certificates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("server_id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("cert_pem", sa.Text(), nullable=False),
        sa.Column("added_at", _UtcDateTime, nullable=False),
        sa.ForeignKeyConstraint(
            ["server_id"],
            ["central_security_servers.id"],
            name=op.f("fk_central_auth_certificates_server_id_central_security_servers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_auth_certificates")),
        sa.UniqueConstraint("sha256", name=op.f("uq_central_auth_certificates_sha256")),
    )
    op.create_table(
        "central_global_group_members",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("subsystem_id", sa.Integer(), nullable=True),
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("added_at", _UtcDateTime, nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["central_global_groups.id"],
            name=op.f("fk_central_global_group_members_group_id_central_global_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["central_members.id"],
            name=op.f("fk_central_global_group_members_member_id_central_members"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subsystem_id"],
            ["central_subsystems.id"],
            name=op.f("fk_central_global_group_members_subsystem_id_central_subsystems"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_global_group_members")),
        sa.UniqueConstraint("group_id", "client_id", name=op.f("uq_central_global_group_members_group_id")),
    )
    op.create_table(
        "central_server_clients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("server_id", sa.Integer(), nullable=False),
        sa.Column("subsystem_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["server_id"],
            ["central_security_servers.id"],
            name=op.f("fk_central_server_clients_server_id_central_security_servers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subsystem_id"],
            ["central_subsystems.id"],
            name=op.f("fk_central_server_clients_subsystem_id_central_subsystems"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_central_server_clients")),
        sa.UniqueConstraint("server_id", "subsystem_id", name=op.f("uq_central_server_clients_server_id")),
    )


def downgrade() -> None:
    op.drop_table("central_server_clients")
    op.drop_table("central_global_group_members")
    op.drop_table("central_auth_certificates")
    op.drop_table("central_subsystems")
    op.drop_table("central_security_servers")
    op.drop_table("central_ocsp_responders")
    op.drop_table("central_members")
    op.drop_table("central_trusted_cas")
    op.drop_table("central_timestamping_authorities")
    op.drop_index("uq_central_signing_keys_one_active", table_name="central_signing_keys")

    op.drop_table("central_signing_keys")
    op.drop_table("central_settings")
    op.drop_index("ix_central_requests_state", table_name="central_requests")

    op.drop_table("central_requests")
    op.drop_table("central_published")
    op.drop_table("central_member_classes")
    op.drop_table("central_global_groups")
    op.drop_index(op.f("ix_central_audit_log_at"), table_name="central_audit_log")

    op.drop_table("central_audit_log")
    op.drop_table("central_api_keys")
