"""The operations both management APIs have alike: their API keys and their audit log.

Declared once here and added to each API's table with that API's roles and permissions.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import Field, create_model

from gateway.adminstore import ApiKey, AuditChainReport, AuditEntry
from gateway.globalconf.signed import format_time
from gateway.ids import slash_forms_in
from gateway.webapi.callers import KeyStore
from gateway.webapi.errors import not_found
from gateway.webapi.operations import Call, OperationTable, Outcome
from gateway.webapi.types import (
    DEFAULT_PAGE,
    MAX_TEXT_LENGTH,
    Answer,
    BeforeId,
    Body,
    Limit,
    Name,
    Params,
    RecordId,
    Time,
    utc,
)


class ApiKeyView(Answer):
    id: int
    name: str
    role: str
    created_at: str = Field(json_schema_extra={"format": "date-time"})
    revoked: bool


class CreatedApiKey(ApiKeyView):
    key: str = Field(description="The key itself: this answer is the only place it ever appears.")


class ApiKeyList(Answer):
    api_keys: list[ApiKeyView]


class KeyPath(Params):
    key_id: RecordId


class AuditEntryView(Answer):
    id: int
    at: str = Field(json_schema_extra={"format": "date-time"})
    actor: str = Field(description="NAME#ID of the API key, or `anonymous`.")
    action: str = Field(description="The operation's operationId, e.g. subsystem.add.")
    target: str
    details: dict[str, Any] | None
    result: Literal["ok", "refused", "error"]


class AuditPage(Answer):
    entries: list[AuditEntryView]
    next_before_id: int | None = Field(description="Pass as before_id for the next (older) page.")


class AuditChainView(Answer):
    ok: bool = Field(description="Whether every chained entry matches its hash and follows its predecessor.")
    checked: int = Field(description="Chained entries checked, oldest first.")
    unchained: int = Field(description="Entries from before the chain existed (they come first).")
    head_hash: str | None = Field(
        description="SHA-256 hex of the newest entry: what the signed log heads cover."
    )
    first_bad_id: int | None = Field(description="The first entry that does not check out.")
    problem: str | None


class AuditQuery(Params):
    actor: str | None = Field(
        None, max_length=MAX_TEXT_LENGTH, description="Only entries by this actor (NAME#ID)."
    )
    action: str | None = Field(None, max_length=MAX_TEXT_LENGTH, description="Only entries of this action.")
    since: Time | None = None
    before_id: BeforeId | None = None
    limit: Limit = DEFAULT_PAGE


def api_key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "role": key.role,
        "created_at": format_time(key.created_at),
        "revoked": key.revoked,
    }


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": format_time(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        # Shown in the one text form: entries written before it (or from a URL path a caller
        # wrote in colon form) keep their stored text, which the hash chain covers.
        "target": slash_forms_in(entry.target),
        "details": dict(entry.details) if entry.details is not None else None,
        "result": entry.result.value,
    }


def audit_chain_json(report: AuditChainReport) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "checked": report.checked,
        "unchained": report.unchained,
        "head_hash": None if report.head_hash is None else report.head_hash.hex(),
        "first_bad_id": report.first_bad_id,
        "problem": report.problem,
    }


def declare_key_operations(
    table: OperationTable,
    store: Callable[[Any], KeyStore],
    roles: type[enum.StrEnum],
    manage_keys: enum.StrEnum,
    read_audit_log: enum.StrEnum,
    *,
    reconfigures: bool,
) -> None:
    """Add the API-key and audit-log operations to `table`; `store(ctx)` holds the keys and log;
    `reconfigures`: whether a change of keys calls the API's change hook."""
    new_key: Mapping[str, Any] = {"name": (Name, ...), "role": (roles, ...)}
    new_key_body = create_model("NewApiKey", __base__=Body, **new_key)

    @table.read("/api-keys", "api_key.list", manage_keys, ApiKeyList)
    async def list_api_keys(ctx: Any, call: Call[None, None]) -> Outcome:
        """List the API keys (never the keys themselves)."""
        keys = await asyncio.to_thread(store(ctx).list_api_keys)
        return Outcome({"api_keys": [api_key_json(key) for key in keys]})

    changes: dict[str, Any] = {"reconfigures": reconfigures}

    @table.create("/api-keys", "api_key.create", manage_keys, CreatedApiKey, body=new_key_body, **changes)
    async def create_api_key(ctx: Any, call: Call[None, Any]) -> Outcome:
        """Create an API key; the answer is the only place the key ever appears."""
        name, role = call.body.name, call.body.role.value
        record, key = await asyncio.to_thread(store(ctx).create_api_key, name, role)
        details = {"name": name, "role": role}
        return Outcome({**api_key_json(record), "key": key}, 201, f"api key {record.id}", details)

    @table.delete("/api-keys/{key_id}", "api_key.revoke", manage_keys, **changes)
    async def revoke_api_key(ctx: Any, call: Call[KeyPath, None]) -> Outcome:
        """Revoke an API key."""
        key_id = call.params.key_id
        if await asyncio.to_thread(store(ctx).revoke_api_key, key_id) is False:
            raise not_found(f"no live API key {key_id}")
        return Outcome(None, 204, f"api key {key_id}")

    @table.read("/audit-log", "audit_log.read", read_audit_log, AuditPage)
    async def read_audit(ctx: Any, call: Call[AuditQuery, None]) -> Outcome:
        """Read the audit log, newest first (page back with before_id)."""
        query = call.params
        entries = await asyncio.to_thread(
            store(ctx).audit_entries,
            actor=query.actor,
            action=query.action,
            since=utc(query.since),
            before_id=query.before_id,
            limit=query.limit,
        )
        next_before = entries[-1].id if len(entries) == query.limit else None
        return Outcome({"entries": [audit_json(entry) for entry in entries], "next_before_id": next_before})

    @table.read("/audit-log/verify", "audit_log.verify", read_audit_log, AuditChainView)
    async def verify_audit(ctx: Any, call: Call[None, None]) -> Outcome:
        """Check the audit log's hash chain: an edited, deleted or inserted entry is named."""
        report = await asyncio.to_thread(store(ctx).verify_audit_chain)
        return Outcome(audit_chain_json(report))
