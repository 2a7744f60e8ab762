"""Management API keys and the audit log: their tables, values and rules, for any package's API.

The gateway keeps them in `api_keys` and `audit_log` (`gateway.serverconf.tables`), the
central registry in its own `central_` tables; the rules are the same (keys stored as SHA-256
only, refusals audited too), so only the tables' names differ, and they are parameters.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row

from gateway.db import BigId, Json, UtcDateTime, begin_write, one_of

API_KEY_BYTES: Final = 32
"""256 random bits: beyond guessing, so a plain SHA-256 (no salt, no slow KDF) protects them."""

MAX_API_KEY_LENGTH: Final = 256
"""Longer than any key we issue (43 characters); longer input is refused before hashing."""

DEFAULT_AUDIT_PAGE: Final = 100
MAX_AUDIT_PAGE: Final = 1000
"""One read of the audit log at most; bounds memory and the management API's answer."""


class AuditResult(enum.StrEnum):
    OK = "ok"
    REFUSED = "refused"  # the caller lacked the role, or the change broke a rule
    ERROR = "error"  # the change failed for another reason


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A management API key as stored: never the key itself."""

    id: int
    name: str
    role: str
    created_at: datetime
    revoked: bool


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: Mapping[str, Any] | None
    result: AuditResult


# --- tables ------------------------------------------------------------------------------------


def api_keys_table(name: str, metadata: sa.MetaData) -> sa.Table:
    """The API keys' table, under `name` in `metadata` (the migrations build the same)."""
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        # SHA-256 of the key, never the key: a leaked database must not open the management API.
        sa.Column("key_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def audit_log_table(name: str, metadata: sa.MetaData) -> sa.Table:
    """The audit log's table, under `name` in `metadata` (the migrations build the same)."""
    return sa.Table(
        name,
        metadata,
        sa.Column("id", BigId, primary_key=True),
        sa.Column("at", UtcDateTime, nullable=False, index=True),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False, server_default=""),
        sa.Column("details", Json, nullable=True),
        sa.Column("result", sa.String(8), nullable=False),
        # The hash chain (audit_entry_hash): each entry covers the one before it, so an edited,
        # deleted or inserted entry shows; the newest hash is in the node's signed log heads.
        sa.Column("prev_hash", sa.LargeBinary(32), nullable=True),
        sa.Column("entry_hash", sa.LargeBinary(32), nullable=True),
        sa.CheckConstraint(one_of("result", AuditResult), name="result"),
    )


AUDIT_GENESIS: Final = bytes(32)
"""The `prev_hash` of the first chained audit entry."""


def audit_entry_hash(
    prev_hash: bytes,
    at: datetime,
    actor: str,
    action: str,
    target: str,
    details: Mapping[str, Any] | None,
    result: str,
) -> bytes:
    """SHA-256(prev_hash || canonical JSON of the entry's fields): the entry's place in the chain."""
    fields = {
        "at": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor": actor,
        "action": action,
        "target": target,
        "details": None if details is None else dict(details),
        "result": str(result),
    }
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(prev_hash + text.encode("utf-8")).digest()


@dataclass(frozen=True)
class AuditChainReport:
    """What checking the audit chain found: entries checked, its head, the first bad entry."""

    checked: int
    unchained: int  # entries written before the chain existed (before its migration)
    head_hash: bytes | None
    first_bad_id: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


# --- the store ---------------------------------------------------------------------------------


class _NothingToRevoke(Exception):
    """Rolls back a revocation that found no live key (and whatever its transaction did first)."""


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _api_key(row: Row[Any]) -> ApiKey:
    return ApiKey(row.id, row.name, row.role, row.created_at, row.revoked)


def _new_id(result: sa.CursorResult[Any]) -> int:
    inserted = result.inserted_primary_key
    if inserted is None:
        raise RuntimeError("the database gave no id for the new row")
    return int(inserted[0])


KeyChange = Callable[[], AbstractContextManager[Connection]]
"""Opens the write transaction a change of API keys runs in."""


@dataclass(frozen=True)
class AdminStore:
    """The API keys in `api_keys` and the audit entries in `audit_log` of one database.

    `key_change` is the transaction creating or revoking a key runs in: a plain write by
    default; the gateway's also bumps its configuration version, like every change it makes.
    The audit log is a record, not configuration: it is always written in a plain write.
    """

    engine: Engine
    api_keys: sa.Table
    audit_log: sa.Table
    clock: Callable[[], datetime]
    key_change: KeyChange | None = None

    def _key_change(self) -> AbstractContextManager[Connection]:
        return self.key_change() if self.key_change is not None else begin_write(self.engine)

    def create_api_key(self, name: str, role: str) -> tuple[ApiKey, str]:
        """A new key for the management API: its record, and the key itself, shown this once."""
        key = secrets.token_urlsafe(API_KEY_BYTES)
        created_at = self.clock()
        with self._key_change() as connection:
            result = connection.execute(
                sa.insert(self.api_keys).values(
                    name=name, key_sha256=_digest(key), role=role, created_at=created_at
                )
            )
        return ApiKey(_new_id(result), name, role, created_at, False), key

    def verify_api_key(self, key: str) -> ApiKey | None:
        """The live (not revoked) key record for a presented key, or None.

        The lookup is by the key's SHA-256, so timing reveals at most something about a
        digest, never about the key; the final comparison is constant-time all the same.
        """
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
            rows = connection.execute(sa.select(self.api_keys).order_by(self.api_keys.c.id))
            return [_api_key(row) for row in rows]

    def revoke_api_key(self, key_id: int) -> bool:
        """Revoke a live key; False, with nothing changed, when there is no such live key."""
        try:
            with self._key_change() as connection:
                updated = connection.execute(
                    sa.update(self.api_keys)
                    .where(self.api_keys.c.id == key_id, sa.not_(self.api_keys.c.revoked))
                    .values(revoked=True)
                )
                if updated.rowcount == 0:
                    raise _NothingToRevoke
        except _NothingToRevoke:
            return False
        return True

    def audit(
        self,
        actor: str,
        action: str,
        target: str = "",
        details: Mapping[str, Any] | None = None,
        result: AuditResult = AuditResult.OK,
    ) -> int:
        """Record one administrative act (DESIGN.md: every change is audited); returns its id.

        The entry is linked to the newest one in the same transaction, under the database's
        write lock (SQLite) or an advisory lock on the table (PostgreSQL): one chain, no forks.
        """
        table = self.audit_log
        at = self.clock()
        stored_details = dict(details) if details is not None else None
        with begin_write(self.engine) as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(table.name))))
            prev = connection.scalar(sa.select(table.c.entry_hash).order_by(table.c.id.desc()).limit(1))
            prev_hash = AUDIT_GENESIS if prev is None else bytes(prev)
            value = AuditResult(result).value
            inserted = connection.execute(
                sa.insert(table).values(
                    at=at,
                    actor=actor,
                    action=action,
                    target=target,
                    details=stored_details,
                    result=value,
                    prev_hash=prev_hash,
                    entry_hash=audit_entry_hash(prev_hash, at, actor, action, target, stored_details, value),
                )
            )
        return _new_id(inserted)

    def audit_head(self) -> bytes | None:
        """The newest audit entry's hash: what the signed log heads cover."""
        table = self.audit_log
        with self.engine.connect() as connection:
            value = connection.scalar(sa.select(table.c.entry_hash).order_by(table.c.id.desc()).limit(1))
        return None if value is None else bytes(value)

    def verify_audit_chain(self) -> AuditChainReport:
        """Recompute the chain from the first entry: an edited, deleted, inserted or reordered
        entry is named. Entries from before the chain (no hash) may only come first."""
        table = self.audit_log
        checked = unchained = 0
        prev: bytes | None = None
        with self.engine.connect() as connection:
            for row in connection.execute(sa.select(table).order_by(table.c.id)):
                if row.entry_hash is None:
                    if prev is not None:
                        return AuditChainReport(checked, unchained, prev, row.id, "the entry is not chained")
                    unchained += 1
                    continue
                expected_prev = AUDIT_GENESIS if prev is None else prev
                if row.prev_hash is None or bytes(row.prev_hash) != expected_prev:
                    return AuditChainReport(
                        checked, unchained, prev, row.id, "prev_hash is not the previous entry's hash"
                    )
                entry_hash = audit_entry_hash(
                    expected_prev, row.at, row.actor, row.action, row.target, row.details, row.result
                )
                if entry_hash != bytes(row.entry_hash):
                    return AuditChainReport(
                        checked, unchained, prev, row.id, "the entry's fields do not match its hash"
                    )
                prev = entry_hash
                checked += 1
        return AuditChainReport(checked, unchained, prev)

    def audit_entries(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        before_id: int | None = None,
        limit: int = DEFAULT_AUDIT_PAGE,
    ) -> list[AuditEntry]:
        """Audit entries, newest first; page back with `before_id` (the last id seen)."""
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
