"""API keys and the audit log over any tables of the server configuration's shape.

The gateway's repository keeps the same two things in `api_keys` and `audit_log`
(`gateway.serverconf.tables`); the registry keeps them in its own `central_` tables. The
rules are the same (keys stored as SHA-256 only, refusals audited too), and so are the value
types, imported from the server configuration: only the table differs, so it is a parameter.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, Row

from gateway.serverconf.db import begin_write
from gateway.serverconf.repository import (
    API_KEY_BYTES,
    DEFAULT_AUDIT_PAGE,
    MAX_API_KEY_LENGTH,
    MAX_AUDIT_PAGE,
    ApiKey,
    AuditEntry,
    AuditResult,
)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _api_key(row: Row[Any]) -> ApiKey:
    return ApiKey(row.id, row.name, row.role, row.created_at, row.revoked)


@dataclass(frozen=True)
class AdminStore:
    """The API keys in `api_keys` and the audit entries in `audit_log` of one database."""

    engine: Engine
    api_keys: sa.Table
    audit_log: sa.Table
    clock: Callable[[], datetime]

    def create_api_key(self, name: str, role: str) -> tuple[ApiKey, str]:
        """A new key: its record, and the key itself, shown this once."""
        key = secrets.token_urlsafe(API_KEY_BYTES)
        now = self.clock()
        with begin_write(self.engine) as connection:
            result = connection.execute(
                sa.insert(self.api_keys).values(name=name, key_sha256=_digest(key), role=role, created_at=now)
            )
        inserted = result.inserted_primary_key
        if inserted is None:
            raise RuntimeError("the database gave no id for the new API key")
        return ApiKey(int(inserted[0]), name, role, now, False), key

    def verify_api_key(self, key: str) -> ApiKey | None:
        """The live key record for a presented key, or None (found by digest, compared in constant time)."""
        if not key or len(key) > MAX_API_KEY_LENGTH:
            return None
        digest = _digest(key)
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(self.api_keys).where(self.api_keys.c.key_sha256 == digest)
            ).first()
        if row is None or row.revoked or not hmac.compare_digest(row.key_sha256, digest):
            return None
        return _api_key(row)

    def list_api_keys(self) -> list[ApiKey]:
        with self.engine.connect() as connection:
            return [
                _api_key(row)
                for row in connection.execute(sa.select(self.api_keys).order_by(self.api_keys.c.id))
            ]

    def revoke_api_key(self, key_id: int) -> bool:
        """Revoke a live key; False when there is no such live key."""
        with begin_write(self.engine) as connection:
            updated = connection.execute(
                sa.update(self.api_keys)
                .where(self.api_keys.c.id == key_id, sa.not_(self.api_keys.c.revoked))
                .values(revoked=True)
            )
        return updated.rowcount > 0

    def audit(
        self,
        actor: str,
        action: str,
        target: str = "",
        details: Mapping[str, Any] | None = None,
        result: AuditResult = AuditResult.OK,
    ) -> None:
        with begin_write(self.engine) as connection:
            connection.execute(
                sa.insert(self.audit_log).values(
                    at=self.clock(),
                    actor=actor,
                    action=action,
                    target=target,
                    details=dict(details) if details is not None else None,
                    result=AuditResult(result).value,
                )
            )

    def audit_entries(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        before_id: int | None = None,
        limit: int = DEFAULT_AUDIT_PAGE,
    ) -> list[AuditEntry]:
        """Newest first; page back with `before_id` (the last id seen)."""
        table = self.audit_log
        query = sa.select(table).order_by(table.c.id.desc()).limit(max(1, min(limit, MAX_AUDIT_PAGE)))
        if actor is not None:
            query = query.where(table.c.actor == actor)
        if action is not None:
            query = query.where(table.c.action == action)
        if since is not None:
            query = query.where(table.c.at >= since)
        if before_id is not None:
            query = query.where(table.c.id < before_id)
        with self.engine.connect() as connection:
            return [
                AuditEntry(
                    row.id, row.at, row.actor, row.action, row.target, row.details, AuditResult(row.result)
                )
                for row in connection.execute(query)
            ]
