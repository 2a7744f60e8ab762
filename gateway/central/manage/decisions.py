"""Operations on what the registry decides and publishes: registration requests,
configuration-signing keys, the published configuration."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from pydantic import Field

from gateway.central.manage.context import (
    TABLE,
    CertificateSummary,
    KeyPath,
    RegistryContext,
    Text,
    certificate_summary,
    run,
    time_text,
)
from gateway.central.publisher import SigningKeyUnusable, load_signing_key
from gateway.central.repository import RequestRecord, SigningKeyRecord
from gateway.central.requests import RequestType
from gateway.central.roles import Permission as P
from gateway.central.tables import RequestState, SigningKeyStatus
from gateway.crypto.certs import fingerprint_sha256, load_certificate_file
from gateway.globalconf.signed import format_time
from gateway.webapi import Call, Outcome, invalid
from gateway.webapi.types import (
    DEFAULT_PAGE,
    MAX_FILE_PATH_LENGTH,
    MAX_TEXT_LENGTH,
    Answer,
    Body,
    Limit,
    Params,
)

# --- registration requests ------------------------------------------------------------------


class Request(Answer):
    id: str
    type: RequestType
    state: RequestState
    member: str
    server: str | None
    client: str | None
    address: str | None
    auth_certificate: CertificateSummary | None
    replaces: str | None = Field(description="SHA-256 of the certificate this one replaces.")
    created_at: str = Field(json_schema_extra={"format": "date-time"})
    submitted_at: str = Field(json_schema_extra={"format": "date-time"})
    decided_at: str | None = Field(json_schema_extra={"format": "date-time"})
    decided_by: str | None = Field(description="The deciding API key's NAME#ID.")
    reason: str | None


class RequestList(Answer):
    requests: list[Request]


class RequestQuery(Params):
    state: RequestState | None = None
    limit: Limit = DEFAULT_PAGE


class RequestPath(Params):
    request_id: str = Field(
        min_length=1, max_length=MAX_TEXT_LENGTH, description="The id its submission answered."
    )


class Approval(Body):
    reason: str | None = Field(None, max_length=MAX_TEXT_LENGTH)


class Rejection(Body):
    reason: Text


def request_json(record: RequestRecord) -> dict[str, Any]:
    """A request and its decision: what the management API and the public status endpoint show."""
    request = record.request
    return {
        "id": record.id,
        "type": request.type.value,
        "state": record.state.value,
        "member": request.member.to_text(),
        "server": request.server.to_text() if request.server else None,
        "client": request.client.to_text() if request.client else None,
        "address": request.address,
        "auth_certificate": certificate_summary(request.auth_certificate)
        if request.auth_certificate
        else None,
        "replaces": request.replaces,
        "created_at": format_time(request.created_at),
        "submitted_at": format_time(record.submitted_at),
        "decided_at": time_text(record.decided_at),
        "decided_by": record.decided_by,
        "reason": record.reason,
    }


@TABLE.read("/requests", "request.list", P.READ_REGISTRY, RequestList)
async def list_requests(ctx: RegistryContext, call: Call[RequestQuery, None]) -> Outcome:
    """List registration requests, newest first (state filters)."""
    records = await run(ctx.repository.requests, call.params.state, call.params.limit)
    return Outcome({"requests": [request_json(record) for record in records]})


@TABLE.read("/requests/{request_id}", "request.read", P.READ_REGISTRY, Request)
async def read_request(ctx: RegistryContext, call: Call[RequestPath, None]) -> Outcome:
    """Show one registration request."""
    return Outcome(request_json(await run(ctx.repository.request, call.params.request_id)))


@TABLE.change("POST", "/requests/{request_id}/approve", "request.approve", P.DECIDE_REQUESTS, Request)
async def approve_request(ctx: RegistryContext, call: Call[RequestPath, Approval]) -> Outcome:
    """Approve a pending request: its change is applied and published."""
    request_id = call.params.request_id
    record = await run(ctx.repository.approve_request, request_id, call.caller.actor, call.body.reason)
    return Outcome(request_json(record), 200, f"request {request_id}", {"type": record.request.type.value})


@TABLE.change(
    "POST", "/requests/{request_id}/reject", "request.reject", P.DECIDE_REQUESTS, Request, reconfigures=False
)
async def reject_request(ctx: RegistryContext, call: Call[RequestPath, Rejection]) -> Outcome:
    """Reject a pending request, saying why."""
    request_id, reason = call.params.request_id, call.body.reason
    record = await run(ctx.repository.reject_request, request_id, call.caller.actor, reason)
    return Outcome(request_json(record), 200, f"request {request_id}", {"reason": reason})


# --- configuration-signing keys and the published configuration -----------------------------


class SigningKey(Answer):
    id: int
    status: SigningKeyStatus
    key_path: str
    passphrase_env: str | None
    certificate: CertificateSummary
    created_at: str = Field(json_schema_extra={"format": "date-time"})
    activated_at: str | None = Field(json_schema_extra={"format": "date-time"})
    retired_at: str | None = Field(json_schema_extra={"format": "date-time"})


class SigningKeyList(Answer):
    signing_keys: list[SigningKey]


class NewSigningKey(Body):
    key_path: str = Field(
        min_length=1,
        max_length=MAX_FILE_PATH_LENGTH,
        description="The private key file on the registry's host.",
    )
    cert_path: str = Field(
        min_length=1,
        max_length=MAX_FILE_PATH_LENGTH,
        description="Its certificate file on the registry's host.",
    )
    passphrase_env: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_TEXT_LENGTH,
        description="Environment variable holding the key's passphrase.",
    )


class GlobalconfStatus(Answer):
    instance: str
    version: int | None
    generated_at: str | None = Field(json_schema_extra={"format": "date-time"})
    expires_at: str | None = Field(json_schema_extra={"format": "date-time"})
    signer_sha256: str | None
    anchor_certificates: list[str] = Field(description="SHA-256 of each verification certificate.")
    configuration_urls: list[str]
    last_error: str | None


class PublishRequested(Answer):
    requested: Literal[True]


def _signing_key_json(key: SigningKeyRecord) -> dict[str, Any]:
    return {
        "id": key.id,
        "status": key.status.value,
        "key_path": key.key_path,
        "passphrase_env": key.passphrase_env,
        "certificate": {
            "sha256": key.sha256,
            "subject": key.certificate.subject.rfc4514_string(),
            "not_after": format_time(key.certificate.not_valid_after_utc),
        },
        "created_at": format_time(key.created_at),
        "activated_at": time_text(key.activated_at),
        "retired_at": time_text(key.retired_at),
    }


@TABLE.read("/signing-keys", "signing_key.list", P.READ_REGISTRY, SigningKeyList)
async def list_signing_keys(ctx: RegistryContext, call: Call[None, None]) -> Outcome:
    """List the configuration-signing keys (active, standby, retired)."""
    keys = await run(ctx.repository.signing_keys)
    return Outcome({"signing_keys": [_signing_key_json(key) for key in keys]})


def _check_new_signing_key(key_path: str, cert_path: str, passphrase_env: str | None) -> x509.Certificate:
    """The certificate, once the key file opens and belongs to it (the registry must be able to sign)."""
    try:
        certificate = load_certificate_file(Path(cert_path))
    except (OSError, ValueError) as exc:
        raise invalid(f"cannot read {cert_path}: {exc}") from exc
    try:
        load_signing_key(key_path, passphrase_env, certificate, os.environ)
    except SigningKeyUnusable as exc:
        raise invalid(str(exc)) from exc
    return certificate


@TABLE.create("/signing-keys", "signing_key.add", P.MANAGE_SIGNING_KEYS, SigningKey, reconfigures=False)
async def add_signing_key(ctx: RegistryContext, call: Call[None, NewSigningKey]) -> Outcome:
    """Add a signing key (files on the registry's host); it joins the anchor as standby."""
    body = call.body
    certificate = await run(_check_new_signing_key, body.key_path, body.cert_path, body.passphrase_env)
    record = await run(
        ctx.repository.add_signing_key, body.key_path, certificate, passphrase_env=body.passphrase_env
    )
    return Outcome(_signing_key_json(record), 201, f"signing key {record.id}", {"sha256": record.sha256})


@TABLE.change(
    "POST", "/signing-keys/{key_id}/activate", "signing_key.activate", P.MANAGE_SIGNING_KEYS, SigningKey
)
async def activate_signing_key(ctx: RegistryContext, call: Call[KeyPath, None]) -> Outcome:
    """Sign with this key from now on; the previous one stays in the anchor as standby."""
    key_id = call.params.key_id
    record = await run(ctx.repository.activate_signing_key, key_id)
    return Outcome(_signing_key_json(record), 200, f"signing key {key_id}", {"sha256": record.sha256})


@TABLE.change(
    "POST",
    "/signing-keys/{key_id}/retire",
    "signing_key.retire",
    P.MANAGE_SIGNING_KEYS,
    SigningKey,
    reconfigures=False,
)
async def retire_signing_key(ctx: RegistryContext, call: Call[KeyPath, None]) -> Outcome:
    """Take a standby key out of the anchor for good."""
    key_id = call.params.key_id
    record = await run(ctx.repository.retire_signing_key, key_id)
    return Outcome(_signing_key_json(record), 200, f"signing key {key_id}", {"sha256": record.sha256})


def globalconf_state(ctx: RegistryContext) -> dict[str, Any]:
    current = ctx.publisher.current
    return {
        "instance": ctx.repository.instance,
        "version": current.version if current else None,
        "generated_at": time_text(current.generated_at) if current else None,
        "expires_at": time_text(current.expires_at) if current else None,
        "signer_sha256": current.signer_sha256 if current else None,
        "anchor_certificates": [fingerprint_sha256(c) for c in ctx.repository.anchor_certificates()],
        "configuration_urls": list(ctx.configuration_urls),
        "last_error": ctx.publisher.last_error,
    }


@TABLE.read("/globalconf", "globalconf.status", P.READ_REGISTRY, GlobalconfStatus)
async def globalconf_status(ctx: RegistryContext, call: Call[None, None]) -> Outcome:
    """Show the published configuration's version, times and signer."""
    return Outcome(await run(globalconf_state, ctx))


@TABLE.operation(
    "POST", "/globalconf/publish", "globalconf.publish", P.MANAGE_SIGNING_KEYS, PublishRequested, status=202
)
async def publish_now(ctx: RegistryContext, call: Call[None, None]) -> Outcome:
    """Publish a new version now."""
    # Nothing to do here: the guard publishes after every change that reconfigures.
    return Outcome({"requested": True}, 202, "globalconf")
