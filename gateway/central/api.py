"""The registry's management API: members, gateways, trust services, requests and keys over JSON.

One aiohttp application (:func:`make_management_app`) on the registry's loopback management
listener, in the style of the gateway's (`gateway.admin.api`): every operation under
``/api/v1`` passes one guard that authenticates the API key (``Authorization: X-Road-ApiKey
token=KEY`` or ``X-API-Key``), checks the role (:mod:`gateway.central.roles`), runs the
operation, maps domain errors to JSON errors ``{"error", "message"}``, audits every change
and every refusal, and publishes a new configuration version after each change that
alters it. The OpenAPI document (`openapi.py`) is built from the same operation table and
served at ``GET /api/openapi.json``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from aiohttp import web
from cryptography import x509

from gateway import webapi
from gateway.adminstore import DEFAULT_AUDIT_PAGE, MAX_AUDIT_PAGE, ApiKey, AuditEntry, AuditResult
from gateway.central.openapi import openapi_document
from gateway.central.publisher import ConfigurationPublisher, SigningKeyUnusable, load_signing_key
from gateway.central.repository import (
    DEFAULT_REQUEST_PAGE,
    CentralRepository,
    Conflict,
    NotFound,
    RegistryError,
    RequestRecord,
    SigningKeyRecord,
)
from gateway.central.requests import RequestRefused
from gateway.central.roles import Permission, Role, is_permitted, parse_role
from gateway.central.tables import RequestState
from gateway.crypto.certs import CertificateError, fingerprint_sha256, load_certificate, load_certificate_file
from gateway.globalconf import GlobalConf, GlobalConfError, OcspResponder, TimestampingAuthority, TrustedCa
from gateway.globalconf.signed import format_time
from gateway.ids import ClientId, IdentifierError, SecurityServerId
from gateway.webapi import (
    ANONYMOUS,
    API_PREFIX,
    CONFLICT,
    INTERNAL_ERROR,
    NOT_FOUND,
    VALIDATION_ERROR,
    ApiError,
    Outcome,
    api_application,
    audit_quietly,
    authenticate,
    authorize,
    client_id_from_path,
    error_response,
    invalid,
    json_body,
    json_response,
    optional_text,
    query_int,
    refusal_details,
    required_text,
)

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES: Final = 1024 * 1024
"""The largest body is a CA certificate with a few OCSP responder certificates: far below this."""

MAX_TEXT_LENGTH: Final = 1000
"""Names, descriptions and reasons are for people; longer ones are mistakes."""

_INTERNAL_ERROR: Final = ApiError(500, INTERNAL_ERROR, "internal error; the registry's log has details")


# --- context, callers, operations -----------------------------------------------------------


@dataclass(frozen=True)
class RegistryContext:
    """What the management and distribution applications share."""

    repository: CentralRepository
    publisher: ConfigurationPublisher
    configuration_urls: tuple[str, ...]
    """Where gateways fetch the configuration (the anchor's URLs)."""


Caller = webapi.Caller[Role]


Handler = Callable[[RegistryContext, web.Request, Caller], Awaitable[Outcome]]


@dataclass(frozen=True)
class Operation:
    """One endpoint: route, audit action, permission, and whether it changes the configuration."""

    method: str
    path: str  # under API_PREFIX
    action: str
    permission: Permission
    handler: Handler
    publishes: bool

    @property
    def changes(self) -> bool:
        return self.method != "GET"

    @property
    def summary(self) -> str:
        return (self.handler.__doc__ or self.action).strip().splitlines()[0]


OPERATIONS: list[Operation] = []


def _operation(
    method: str, path: str, action: str, permission: Permission, *, publishes: bool | None = None
) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        OPERATIONS.append(
            Operation(
                method, path, action, permission, handler, method != "GET" if publishes is None else publishes
            )
        )
        return handler

    return register


# --- the application ------------------------------------------------------------------------


def make_management_app(ctx: RegistryContext) -> web.Application:
    return api_application(
        max_request_bytes=MAX_REQUEST_BYTES,
        internal_error=_INTERNAL_ERROR,
        operations=[(op.method, op.path, _guarded(ctx, op)) for op in OPERATIONS],
        openapi=_serve_openapi,
        health=health_handler(ctx),
    )


def _guarded(ctx: RegistryContext, operation: Operation) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        actor = ANONYMOUS
        try:
            caller = await authenticate(request, ctx.repository.admin.verify_api_key, Role)
            actor = caller.actor
            authorize(caller, operation.permission, is_permitted)
            outcome = await operation.handler(ctx, request, caller)
        except Exception as exc:
            error = as_api_error(exc)
            if error.status >= 500:
                log.exception("management API operation %s failed", operation.action)
            if operation.changes or error.status in (401, 403):
                details, result = refusal_details(error)
                await audit(ctx, actor, operation.action, request.path, details, result)
            return error_response(error)
        if operation.changes:
            await audit(
                ctx, actor, operation.action, outcome.target or request.path, outcome.details, AuditResult.OK
            )
            if operation.publishes:
                await ctx.publisher.publish_soon()
        return json_response(outcome.body, outcome.status)

    return handle


def as_api_error(exc: Exception) -> ApiError:
    """The JSON error a domain error becomes; anything unforeseen is a 500 without details."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, NotFound):
        return ApiError(404, NOT_FOUND, str(exc))
    if isinstance(exc, Conflict):
        return ApiError(409, CONFLICT, str(exc))
    if isinstance(exc, IdentifierError):
        return ApiError(400, VALIDATION_ERROR, exc.message)
    if isinstance(exc, RegistryError | GlobalConfError | CertificateError | RequestRefused | ValueError):
        return ApiError(400, VALIDATION_ERROR, str(exc))
    return _INTERNAL_ERROR


errors_as_json: Final = webapi.errors_as_json(_INTERNAL_ERROR)


async def audit(
    ctx: RegistryContext,
    actor: str,
    action: str,
    target: str,
    details: Mapping[str, Any] | None,
    result: AuditResult,
) -> None:
    """Write one audit entry; a failure to write is logged, never hides the answer."""
    await audit_quietly(ctx.repository.admin.audit, actor, action, target, details, result)


# --- request reading ------------------------------------------------------------------------


async def _json_body(request: web.Request) -> dict[str, Any]:
    return await json_body(request, MAX_REQUEST_BYTES)


def _optional_text(
    body: Mapping[str, Any], name: str, max_length: int | None = MAX_TEXT_LENGTH
) -> str | None:
    """A string field; certificates pass max_length=None (the body's size bounds them)."""
    return optional_text(body, name, max_length)


def _text(body: Mapping[str, Any], name: str, max_length: int | None = MAX_TEXT_LENGTH) -> str:
    return required_text(body, name, max_length)


def _texts(body: Mapping[str, Any], name: str) -> list[str]:
    value = body.get(name, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise invalid(f"{name} must be an array of strings")
    return list(value)


def _member_param(request: web.Request) -> ClientId:
    member = client_id_from_path(request.match_info["member_id"])
    if member.subsystem_code is not None:
        raise invalid("a member is INSTANCE:CLASS:MEMBER")
    return member


def _subsystem_param(request: web.Request, name: str = "client_id") -> ClientId:
    client = client_id_from_path(request.match_info[name])
    if client.subsystem_code is None:
        raise invalid("a subsystem is INSTANCE:CLASS:MEMBER:SUBSYSTEM")
    return client


def _server_param(request: web.Request) -> SecurityServerId:
    parts = request.match_info["server_id"].split(":")
    if len(parts) != 4:
        raise invalid("a security server is INSTANCE:CLASS:MEMBER:SERVER")
    return SecurityServerId(*parts)


def _int_param(request: web.Request, name: str) -> int:
    try:
        return int(request.match_info[name])
    except ValueError:
        raise ApiError(404, NOT_FOUND, f"{name} is an integer") from None


def _responders(body: Mapping[str, Any]) -> tuple[OcspResponder, ...]:
    raw = body.get("ocsp_responders", [])
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise invalid("ocsp_responders must be an array of {url, certificate?} objects")
    return tuple(OcspResponder(_text(item, "url"), _optional_text(item, "certificate", None)) for item in raw)


# --- views ----------------------------------------------------------------------------------


def _time(value: dt.datetime | None) -> str | None:
    return format_time(value) if value is not None else None


def certificate_summary(pem: str) -> dict[str, Any]:
    certificate = load_certificate(pem.encode())
    return {
        "sha256": fingerprint_sha256(certificate),
        "subject": certificate.subject.rfc4514_string(),
        "not_after": format_time(certificate.not_valid_after_utc),
    }


def _member_json(conf: GlobalConf, member: ClientId) -> dict[str, Any]:
    found = next(
        (
            m
            for m in conf.members
            if (m.member_class, m.member_code) == (member.member_class, member.member_code)
        ),
        None,
    )
    if found is None:
        raise ApiError(404, NOT_FOUND, f"no member {member} is registered")
    return {
        "member_id": member.to_text(),
        "member_class": found.member_class,
        "member_code": found.member_code,
        "name": found.name,
        "subsystems": [client.to_text() for client in found.subsystem_ids(conf.instance)],
        "security_servers": [s.id.to_text() for s in conf.security_servers if s.id.owner == member],
    }


def _server_json(conf: GlobalConf, server: SecurityServerId) -> dict[str, Any]:
    info = conf.server(server)
    if info is None:
        raise ApiError(404, NOT_FOUND, f"no security server {server} is registered")
    return {
        "server_id": info.id.to_text(),
        "owner": info.id.owner.to_text(),
        "address": info.address,
        "auth_certificates": [certificate_summary(pem) for pem in info.auth_certificates],
        "clients": [client.to_text() for client in info.clients],
    }


def _ca_json(ca: TrustedCa) -> dict[str, Any]:
    return {
        "name": ca.name,
        "certificate": certificate_summary(ca.certificate),
        "ocsp_responders": [
            {"url": r.url, "certificate": certificate_summary(r.certificate) if r.certificate else None}
            for r in ca.ocsp_responders
        ],
    }


def _tsa_json(tsa: TimestampingAuthority) -> dict[str, Any]:
    return {"name": tsa.name, "url": tsa.url, "certificate": certificate_summary(tsa.certificate)}


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
        "decided_at": _time(record.decided_at),
        "decided_by": record.decided_by,
        "reason": record.reason,
    }


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
        "activated_at": _time(key.activated_at),
        "retired_at": _time(key.retired_at),
    }


def _api_key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "role": key.role,
        "created_at": format_time(key.created_at),
        "revoked": key.revoked,
    }


def _audit_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": format_time(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "details": dict(entry.details) if entry.details is not None else None,
        "result": entry.result.value,
    }


async def _conf(ctx: RegistryContext) -> GlobalConf:
    return await asyncio.to_thread(ctx.repository.configuration)


def _run(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Awaitable[Any]:
    return asyncio.to_thread(function, *args, **kwargs)


_P = Permission


# --- member classes -------------------------------------------------------------------------


@_operation("GET", "/member-classes", "member_class.list", _P.READ_REGISTRY)
async def list_member_classes(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """List the member classes."""
    classes = await _run(ctx.repository.member_classes)
    return Outcome({"member_classes": [{"code": c.code, "description": c.description} for c in classes]})


@_operation("POST", "/member-classes", "member_class.add", _P.MANAGE_FEDERATION)
async def add_member_class(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Add a member class."""
    body = await _json_body(request)
    code, description = _text(body, "code"), _optional_text(body, "description") or ""
    await _run(ctx.repository.add_member_class, code, description)
    return Outcome({"code": code, "description": description}, 201, f"member class {code}")


@_operation("PUT", "/member-classes/{code}", "member_class.update", _P.MANAGE_FEDERATION)
async def update_member_class(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Change a member class's description."""
    code, description = request.match_info["code"], _text(await _json_body(request), "description")
    await _run(ctx.repository.set_member_class_description, code, description)
    return Outcome({"code": code, "description": description}, 200, f"member class {code}")


@_operation("DELETE", "/member-classes/{code}", "member_class.remove", _P.MANAGE_FEDERATION)
async def remove_member_class(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Delete a member class no member belongs to."""
    code = request.match_info["code"]
    await _run(ctx.repository.remove_member_class, code)
    return Outcome(None, 204, f"member class {code}")


# --- members and subsystems -----------------------------------------------------------------


@_operation("GET", "/members", "member.list", _P.READ_REGISTRY)
async def list_members(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """List the members with their subsystems and security servers."""
    conf = await _conf(ctx)
    return Outcome({"members": [_member_json(conf, m.client_id(conf.instance)) for m in conf.members]})


@_operation("POST", "/members", "member.add", _P.MANAGE_MEMBERS)
async def add_member(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Register a member."""
    body = await _json_body(request)
    member = ClientId(ctx.repository.instance, _text(body, "member_class"), _text(body, "member_code"))
    await _run(ctx.repository.add_member, member, _text(body, "name"))
    return Outcome(_member_json(await _conf(ctx), member), 201, f"member {member}", {"name": body["name"]})


@_operation("GET", "/members/{member_id}", "member.read", _P.READ_REGISTRY)
async def read_member(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Show one member."""
    return Outcome(_member_json(await _conf(ctx), _member_param(request)))


@_operation("PUT", "/members/{member_id}", "member.rename", _P.MANAGE_MEMBERS)
async def rename_member(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Change a member's name."""
    member, name = _member_param(request), _text(await _json_body(request), "name")
    await _run(ctx.repository.rename_member, member, name)
    return Outcome(_member_json(await _conf(ctx), member), 200, f"member {member}", {"name": name})


@_operation("DELETE", "/members/{member_id}", "member.remove", _P.MANAGE_MEMBERS)
async def remove_member(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Delete a member with its subsystems and security servers."""
    member = _member_param(request)
    await _run(ctx.repository.remove_member, member)
    return Outcome(None, 204, f"member {member}")


@_operation("GET", "/subsystems", "subsystem.list", _P.READ_REGISTRY)
async def list_subsystems(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """List the subsystems and the security servers hosting each."""
    conf = await _conf(ctx)
    subsystems = [client for member in conf.members for client in member.subsystem_ids(conf.instance)]
    return Outcome(
        {
            "subsystems": [
                {"client_id": client.to_text(), "servers": [s.id.to_text() for s in conf.servers_for(client)]}
                for client in subsystems
            ]
        }
    )


@_operation("POST", "/subsystems", "subsystem.add", _P.MANAGE_MEMBERS)
async def add_subsystem(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Register a subsystem of a registered member."""
    client = ClientId.from_text(_text(await _json_body(request), "client_id"))
    if client.subsystem_code is None:
        raise invalid("client_id must name a subsystem: INSTANCE/CLASS/MEMBER/SUBSYSTEM")
    await _run(ctx.repository.add_subsystem, client)
    return Outcome({"client_id": client.to_text(), "servers": []}, 201, f"subsystem {client}")


@_operation("DELETE", "/subsystems/{client_id}", "subsystem.remove", _P.MANAGE_MEMBERS)
async def remove_subsystem(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Delete a subsystem; no gateway hosts it afterwards."""
    client = _subsystem_param(request)
    await _run(ctx.repository.remove_subsystem, client)
    return Outcome(None, 204, f"subsystem {client}")


# --- security servers -----------------------------------------------------------------------


@_operation("GET", "/security-servers", "server.list", _P.READ_REGISTRY)
async def list_servers(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """List the security servers."""
    conf = await _conf(ctx)
    return Outcome({"security_servers": [_server_json(conf, s.id) for s in conf.security_servers]})


@_operation("POST", "/security-servers", "server.add", _P.MANAGE_MEMBERS)
async def add_server(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Register a security server directly, without a request from it."""
    body = await _json_body(request)
    server = SecurityServerId.from_text(_text(body, "server_id"))
    certificates = _texts(body, "auth_certificates")
    await _run(ctx.repository.add_security_server, server, _text(body, "address"), certificates)
    return Outcome(
        _server_json(await _conf(ctx), server), 201, f"server {server}", {"address": body["address"]}
    )


@_operation("GET", "/security-servers/{server_id}", "server.read", _P.READ_REGISTRY)
async def read_server(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Show one security server."""
    return Outcome(_server_json(await _conf(ctx), _server_param(request)))


@_operation("DELETE", "/security-servers/{server_id}", "server.remove", _P.MANAGE_MEMBERS)
async def remove_server(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Delete a security server."""
    server = _server_param(request)
    await _run(ctx.repository.remove_security_server, server)
    return Outcome(None, 204, f"server {server}")


@_operation("PUT", "/security-servers/{server_id}/address", "server.set_address", _P.MANAGE_MEMBERS)
async def set_server_address(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Change where a security server's external interface listens."""
    server, address = _server_param(request), _text(await _json_body(request), "address")
    await _run(ctx.repository.set_server_address, server, address)
    return Outcome(_server_json(await _conf(ctx), server), 200, f"server {server}", {"address": address})


@_operation(
    "POST", "/security-servers/{server_id}/auth-certificates", "server.add_auth_cert", _P.MANAGE_MEMBERS
)
async def add_auth_certificate(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Register one more TLS authentication certificate for a security server."""
    server, pem = _server_param(request), _text(await _json_body(request), "certificate", None)
    sha256 = await _run(ctx.repository.add_auth_certificate, server, pem)
    return Outcome(_server_json(await _conf(ctx), server), 201, f"server {server}", {"sha256": sha256})


@_operation(
    "DELETE",
    "/security-servers/{server_id}/auth-certificates/{sha256}",
    "server.remove_auth_cert",
    _P.MANAGE_MEMBERS,
)
async def remove_auth_certificate(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Remove a TLS authentication certificate from a security server (it keeps at least one)."""
    server, sha256 = _server_param(request), request.match_info["sha256"]
    await _run(ctx.repository.remove_auth_certificate, server, sha256)
    return Outcome(None, 204, f"server {server}", {"sha256": sha256})


@_operation("POST", "/security-servers/{server_id}/clients", "server.add_client", _P.MANAGE_MEMBERS)
async def add_server_client(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Let a security server host a registered subsystem."""
    server = _server_param(request)
    client = ClientId.from_text(_text(await _json_body(request), "client_id"))
    await _run(ctx.repository.add_server_client, server, client)
    return Outcome(
        _server_json(await _conf(ctx), server), 201, f"server {server}", {"client": client.to_text()}
    )


@_operation(
    "DELETE", "/security-servers/{server_id}/clients/{client_id}", "server.remove_client", _P.MANAGE_MEMBERS
)
async def remove_server_client(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Stop a security server hosting a subsystem."""
    server, client = _server_param(request), _subsystem_param(request)
    await _run(ctx.repository.remove_server_client, server, client)
    return Outcome(None, 204, f"server {server}", {"client": client.to_text()})


# --- trust services -------------------------------------------------------------------------


@_operation("GET", "/trusted-cas", "trusted_ca.list", _P.READ_REGISTRY)
async def list_trusted_cas(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """List the trusted CAs with their OCSP responders."""
    conf = await _conf(ctx)
    return Outcome({"trusted_cas": [_ca_json(ca) for ca in conf.trusted_cas]})


@_operation("POST", "/trusted-cas", "trusted_ca.add", _P.MANAGE_FEDERATION)
async def add_trusted_ca(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Trust a CA for gateways' TLS and members' signing certificates."""
    body = await _json_body(request)
    ca = TrustedCa(_text(body, "name"), _text(body, "certificate", None), _responders(body))
    await _run(ctx.repository.add_trusted_ca, ca)
    return Outcome(
        _ca_json(ca), 201, f"trusted CA {ca.name}", {"sha256": certificate_summary(ca.certificate)["sha256"]}
    )


@_operation("PUT", "/trusted-cas/{name}/ocsp-responders", "trusted_ca.set_ocsp", _P.MANAGE_FEDERATION)
async def set_ocsp_responders(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Replace a CA's OCSP responders."""
    name, responders = request.match_info["name"], _responders(await _json_body(request))
    await _run(ctx.repository.set_ocsp_responders, name, responders)
    conf = await _conf(ctx)
    ca = next(ca for ca in conf.trusted_cas if ca.name == name)
    return Outcome(_ca_json(ca), 200, f"trusted CA {name}", {"urls": [r.url for r in responders]})


@_operation("DELETE", "/trusted-cas/{name}", "trusted_ca.remove", _P.MANAGE_FEDERATION)
async def remove_trusted_ca(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Stop trusting a CA."""
    name = request.match_info["name"]
    await _run(ctx.repository.remove_trusted_ca, name)
    return Outcome(None, 204, f"trusted CA {name}")


@_operation("GET", "/timestamping-authorities", "tsa.list", _P.READ_REGISTRY)
async def list_tsas(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """List the timestamping authorities."""
    conf = await _conf(ctx)
    return Outcome({"timestamping_authorities": [_tsa_json(tsa) for tsa in conf.timestamping_authorities]})


@_operation("POST", "/timestamping-authorities", "tsa.add", _P.MANAGE_FEDERATION)
async def add_tsa(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Add an RFC 3161 timestamping authority."""
    body = await _json_body(request)
    tsa = TimestampingAuthority(_text(body, "name"), _text(body, "url"), _text(body, "certificate", None))
    await _run(ctx.repository.add_timestamping_authority, tsa)
    return Outcome(_tsa_json(tsa), 201, f"tsa {tsa.name}", {"url": tsa.url})


@_operation("PUT", "/timestamping-authorities/{name}", "tsa.update", _P.MANAGE_FEDERATION)
async def update_tsa(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Change a timestamping authority's URL and certificate."""
    body = await _json_body(request)
    tsa = TimestampingAuthority(
        request.match_info["name"], _text(body, "url"), _text(body, "certificate", None)
    )
    await _run(ctx.repository.update_timestamping_authority, tsa)
    return Outcome(_tsa_json(tsa), 200, f"tsa {tsa.name}", {"url": tsa.url})


@_operation("DELETE", "/timestamping-authorities/{name}", "tsa.remove", _P.MANAGE_FEDERATION)
async def remove_tsa(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Remove a timestamping authority."""
    name = request.match_info["name"]
    await _run(ctx.repository.remove_timestamping_authority, name)
    return Outcome(None, 204, f"tsa {name}")


# --- global groups --------------------------------------------------------------------------


def _group_json(conf: GlobalConf, code: str) -> dict[str, Any]:
    group = next((g for g in conf.global_groups if g.id.group_code == code), None)
    if group is None:
        raise ApiError(404, NOT_FOUND, f"no global group {code!r}")
    return {
        "code": code,
        "group_id": group.id.to_text(),
        "description": group.description,
        "members": [c.to_text() for c in group.members],
    }


@_operation("GET", "/global-groups", "global_group.list", _P.READ_REGISTRY)
async def list_global_groups(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """List the global groups and their members."""
    conf = await _conf(ctx)
    return Outcome({"global_groups": [_group_json(conf, g.id.group_code) for g in conf.global_groups]})


@_operation("POST", "/global-groups", "global_group.add", _P.MANAGE_MEMBERS)
async def add_global_group(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Create a global group."""
    body = await _json_body(request)
    code = _text(body, "code")
    await _run(ctx.repository.add_global_group, code, _optional_text(body, "description") or "")
    return Outcome(_group_json(await _conf(ctx), code), 201, f"global group {code}")


@_operation("PUT", "/global-groups/{code}", "global_group.update", _P.MANAGE_MEMBERS)
async def update_global_group(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Change a global group's description."""
    code, description = request.match_info["code"], _text(await _json_body(request), "description")
    await _run(ctx.repository.set_global_group_description, code, description)
    return Outcome(_group_json(await _conf(ctx), code), 200, f"global group {code}")


@_operation("DELETE", "/global-groups/{code}", "global_group.remove", _P.MANAGE_MEMBERS)
async def remove_global_group(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Delete a global group."""
    code = request.match_info["code"]
    await _run(ctx.repository.remove_global_group, code)
    return Outcome(None, 204, f"global group {code}")


@_operation("POST", "/global-groups/{code}/members", "global_group.add_member", _P.MANAGE_MEMBERS)
async def add_global_group_member(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Add a member or subsystem to a global group."""
    code = request.match_info["code"]
    client = ClientId.from_text(_text(await _json_body(request), "client_id"))
    await _run(ctx.repository.add_global_group_member, code, client)
    return Outcome(
        _group_json(await _conf(ctx), code), 201, f"global group {code}", {"client": client.to_text()}
    )


@_operation(
    "DELETE", "/global-groups/{code}/members/{client_id}", "global_group.remove_member", _P.MANAGE_MEMBERS
)
async def remove_global_group_member(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Remove a member or subsystem from a global group."""
    code, client = request.match_info["code"], client_id_from_path(request.match_info["client_id"])
    await _run(ctx.repository.remove_global_group_member, code, client)
    return Outcome(None, 204, f"global group {code}", {"client": client.to_text()})


# --- settings -------------------------------------------------------------------------------


async def _settings_json(ctx: RegistryContext) -> dict[str, int]:
    return dataclasses.asdict(await _run(ctx.repository.settings))


@_operation("GET", "/settings", "settings.read", _P.READ_REGISTRY)
async def read_settings(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Show the federation-wide settings."""
    return Outcome(await _settings_json(ctx))


@_operation("PUT", "/settings", "settings.update", _P.MANAGE_FEDERATION)
async def update_settings(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Change some federation-wide settings."""
    body = await _json_body(request)
    for name, value in body.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise invalid(f"{name} must be an integer")
    await _run(ctx.repository.update_settings, **body)
    return Outcome(await _settings_json(ctx), 200, "settings", body)


# --- registration requests ------------------------------------------------------------------


@_operation("GET", "/requests", "request.list", _P.READ_REGISTRY)
async def list_requests(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """List registration requests, newest first (`state` filters)."""
    state_text = request.query.get("state")
    try:
        state = RequestState(state_text) if state_text else None
    except ValueError:
        raise invalid("state must be pending, approved or rejected") from None
    limit = query_int(request, "limit") or DEFAULT_REQUEST_PAGE
    records = await _run(ctx.repository.requests, state, limit)
    return Outcome({"requests": [request_json(record) for record in records]})


@_operation("GET", "/requests/{request_id}", "request.read", _P.READ_REGISTRY)
async def read_request(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Show one registration request."""
    return Outcome(request_json(await _run(ctx.repository.request, request.match_info["request_id"])))


@_operation("POST", "/requests/{request_id}/approve", "request.approve", _P.DECIDE_REQUESTS)
async def approve_request(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Approve a pending request: its change is applied and published."""
    request_id, reason = request.match_info["request_id"], _optional_text(await _json_body(request), "reason")
    record = await _run(ctx.repository.approve_request, request_id, caller.actor, reason)
    return Outcome(request_json(record), 200, f"request {request_id}", {"type": record.request.type.value})


@_operation("POST", "/requests/{request_id}/reject", "request.reject", _P.DECIDE_REQUESTS, publishes=False)
async def reject_request(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Reject a pending request, saying why."""
    request_id, reason = request.match_info["request_id"], _text(await _json_body(request), "reason")
    record = await _run(ctx.repository.reject_request, request_id, caller.actor, reason)
    return Outcome(request_json(record), 200, f"request {request_id}", {"reason": reason})


# --- configuration-signing keys and the published configuration -----------------------------


@_operation("GET", "/signing-keys", "signing_key.list", _P.READ_REGISTRY)
async def list_signing_keys(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """List the configuration-signing keys (active, standby, retired)."""
    keys = await _run(ctx.repository.signing_keys)
    return Outcome({"signing_keys": [_signing_key_json(key) for key in keys]})


def _check_new_signing_key(key_path: str, cert_path: str, passphrase_env: str | None) -> x509.Certificate:
    """The certificate, once the key file opens and belongs to it (the registry must be able to sign)."""
    try:
        certificate = load_certificate_file(Path(cert_path))
    except OSError as exc:
        raise invalid(f"cannot read {cert_path}: {exc}") from exc
    try:
        load_signing_key(key_path, passphrase_env, certificate, os.environ)
    except SigningKeyUnusable as exc:
        raise invalid(str(exc)) from exc
    return certificate


@_operation("POST", "/signing-keys", "signing_key.add", _P.MANAGE_SIGNING_KEYS, publishes=False)
async def add_signing_key(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Add a signing key (files on the registry's host); it joins the anchor as standby."""
    body = await _json_body(request)
    key_path, cert_path = _text(body, "key_path"), _text(body, "cert_path")
    passphrase_env = _optional_text(body, "passphrase_env")
    certificate = await _run(_check_new_signing_key, key_path, cert_path, passphrase_env)
    record = await _run(ctx.repository.add_signing_key, key_path, certificate, passphrase_env=passphrase_env)
    return Outcome(_signing_key_json(record), 201, f"signing key {record.id}", {"sha256": record.sha256})


@_operation("POST", "/signing-keys/{key_id}/activate", "signing_key.activate", _P.MANAGE_SIGNING_KEYS)
async def activate_signing_key(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Sign with this key from now on; the previous one stays in the anchor as standby."""
    key_id = _int_param(request, "key_id")
    record = await _run(ctx.repository.activate_signing_key, key_id)
    return Outcome(_signing_key_json(record), 200, f"signing key {key_id}", {"sha256": record.sha256})


@_operation(
    "POST", "/signing-keys/{key_id}/retire", "signing_key.retire", _P.MANAGE_SIGNING_KEYS, publishes=False
)
async def retire_signing_key(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Take a standby key out of the anchor for good."""
    key_id = _int_param(request, "key_id")
    record = await _run(ctx.repository.retire_signing_key, key_id)
    return Outcome(_signing_key_json(record), 200, f"signing key {key_id}", {"sha256": record.sha256})


@_operation("GET", "/globalconf", "globalconf.status", _P.READ_REGISTRY)
async def globalconf_status(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Show the published configuration's version, times and signer."""
    return Outcome(await _run(globalconf_state, ctx))


def globalconf_state(ctx: RegistryContext) -> dict[str, Any]:
    current = ctx.publisher.current
    return {
        "instance": ctx.repository.instance,
        "version": current.version if current else None,
        "generated_at": _time(current.generated_at) if current else None,
        "expires_at": _time(current.expires_at) if current else None,
        "signer_sha256": current.signer_sha256 if current else None,
        "anchor_certificates": [fingerprint_sha256(c) for c in ctx.repository.anchor_certificates()],
        "configuration_urls": list(ctx.configuration_urls),
        "last_error": ctx.publisher.last_error,
    }


@_operation("POST", "/globalconf/publish", "globalconf.publish", _P.MANAGE_SIGNING_KEYS)
async def publish_now(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Publish a new version now."""
    # Nothing to do here: the guard publishes after every operation marked as publishing.
    return Outcome({"requested": True}, 202, "globalconf")


# --- API keys and the audit log -------------------------------------------------------------


@_operation("GET", "/api-keys", "api_key.list", _P.MANAGE_API_KEYS)
async def list_api_keys(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """List the management API keys (never the keys themselves)."""
    keys = await _run(ctx.repository.admin.list_api_keys)
    return Outcome({"api_keys": [_api_key_json(key) for key in keys]})


@_operation("POST", "/api-keys", "api_key.create", _P.MANAGE_API_KEYS, publishes=False)
async def create_api_key(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Create an API key; the answer is the only place the key ever appears."""
    body = await _json_body(request)
    name = _text(body, "name")
    try:
        role = parse_role(_text(body, "role"))
    except ValueError as exc:
        raise invalid(str(exc)) from None
    record, key = await _run(ctx.repository.admin.create_api_key, name, role.value)
    return Outcome(
        {**_api_key_json(record), "key": key}, 201, f"api key {record.id}", {"name": name, "role": role.value}
    )


@_operation("DELETE", "/api-keys/{key_id}", "api_key.revoke", _P.MANAGE_API_KEYS, publishes=False)
async def revoke_api_key(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Revoke an API key."""
    key_id = _int_param(request, "key_id")
    if not await _run(ctx.repository.admin.revoke_api_key, key_id):
        raise ApiError(404, NOT_FOUND, f"no live API key {key_id}")
    return Outcome(None, 204, f"api key {key_id}")


@_operation("GET", "/audit-log", "audit_log.read", _P.READ_AUDIT_LOG)
async def read_audit_log(ctx: RegistryContext, request: web.Request, caller: Caller) -> Outcome:
    """Read the audit log, newest first (page back with `before_id`)."""
    limit = max(1, min(query_int(request, "limit") or DEFAULT_AUDIT_PAGE, MAX_AUDIT_PAGE))
    entries = await _run(
        ctx.repository.admin.audit_entries,
        actor=request.query.get("actor"),
        action=request.query.get("action"),
        before_id=query_int(request, "before_id"),
        limit=limit,
    )
    next_before = entries[-1].id if len(entries) == limit else None
    return Outcome({"entries": [_audit_json(entry) for entry in entries], "next_before_id": next_before})


# --- unauthenticated: description and health ------------------------------------------------


async def _serve_openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(OPERATIONS, API_PREFIX))


def health_handler(ctx: RegistryContext) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def health(request: web.Request) -> web.Response:
        """200 while a configuration is published and unexpired, else 503."""
        current = ctx.publisher.current
        now = ctx.repository.now()
        healthy = current is not None and current.expires_at > now
        payload = {
            "status": "ok" if healthy else "error",
            "instance": ctx.repository.instance,
            "globalconf_version": current.version if current else None,
            "globalconf_expires_at": _time(current.expires_at) if current else None,
            "last_error": ctx.publisher.last_error,
        }
        return web.json_response(payload, status=200 if healthy else 503)

    return health
