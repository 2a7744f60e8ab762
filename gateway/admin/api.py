"""The management API: the gateway's registrations, keys and API keys over JSON on the admin interface.

One aiohttp application (:func:`make_admin_app`) on the node's localhost admin listener
(DESIGN.md "Shape of the code"). Every operation under ``/api/v1`` passes one guard that:

1. authenticates the caller by API key (``Authorization: X-Road-ApiKey token=KEY``, X-Road's
   own convention, or ``X-API-Key: KEY``);
2. checks the key's role against the operation's permission (:mod:`gateway.admin.roles`);
3. runs the operation, turning domain errors into JSON errors ``{"error", "message"}``;
4. writes the audit log (DESIGN.md, security rules): every change, whatever its result, and
   every refused caller (401, 403), reads included; then tells the node to reload. Reads of
   the message log (personal data) are audited like changes, each with its query parameters.

The repository is synchronous (SQLAlchemy Core) and the node's event loop also carries
message traffic, so every database call, key generation and description parse runs in a
worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import enum
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from gateway.admin.openapi import openapi_document
from gateway.admin.roles import Permission, Role, is_permitted, parse_role
from gateway.crypto.certs import (
    CertificateError,
    certificate_to_pem,
    fingerprint_sha256,
    identifiers_of,
    load_certificate,
    load_certificates,
    member_uri,
    server_uri,
)
from gateway.crypto.keys import (
    KeyAlgorithm,
    KeyFileError,
    PrivateKey,
    create_csr,
    generate_key,
    load_private_key,
    save_private_key,
)
from gateway.ids import (
    ClientId,
    IdentifierError,
    LocalGroupId,
    ObjectType,
    SecurityServerId,
    ServiceId,
)
from gateway.messagelog.inspector import LogInspector
from gateway.messagelog.officer import (
    DEFAULT_SEARCH_LIMIT,
    MAX_EXPORT_PER_CALL,
    QueryError,
    SearchQuery,
    TrustUnavailable,
    export_json,
    first_problem,
)
from gateway.messagelog.store import MAX_SEARCH_LIMIT
from gateway.outbound.network import read_at_most
from gateway.serverconf.access import AccessRight, AccessSubject, Endpoint, subject_from_text
from gateway.serverconf.openapi import parse_openapi
from gateway.serverconf.repository import (
    DEFAULT_AUDIT_PAGE,
    MAX_AUDIT_PAGE,
    AlreadyExists,
    ApiKey,
    AuditEntry,
    AuditResult,
    ClientAuthMode,
    KeyRecord,
    KeyUsage,
    LocalGroup,
    NotFound,
    ServerConfError,
    ServerConfRepository,
    ServerConfSnapshot,
    ServiceConf,
    ServiceDescription,
    ServiceKind,
    SubsystemConf,
)
from gateway.serverconf.tables import SubjectType
from gateway.serverconf.wsdl import MAX_DESCRIPTION_BYTES, DescriptionError, parse_wsdl
from gateway.webapi import (
    ANONYMOUS,
    CONFLICT,
    INTERNAL_ERROR,
    NOT_FOUND,
    VALIDATION_ERROR,
    ApiError,
    Caller,
    Outcome,
    api_application,
    audit_quietly,
    authenticate,
    authorize,
    client_id_from_path,
    dumps,
    error_response,
    invalid,
    json_body,
    json_response,
    optional_text,
    query_int,
    refusal_details,
    required_text,
)
from gateway.webapi import presented_key as presented_key

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES: Final = 2 * MAX_DESCRIPTION_BYTES + 64 * 1024
"""The largest description we register, JSON-escaped (escaping at most doubles typical XML and
YAML), plus room for the other fields."""

DESCRIPTION_FETCH_TIMEOUT_SECONDS: Final = 30.0
"""Fetching a WSDL or OpenAPI document by URL: an administrator waits this long at most."""

MAX_NAME_LENGTH: Final = 200
"""API key names and group descriptions are for people; longer ones are mistakes."""

MAX_NOTICE_LENGTH: Final = 1000
"""A disabled service's notice becomes a SOAP faultstring; keep it a sentence or two."""

KEYS_DIR: Final = "keys"
"""Under the node's data directory: where generated private keys are written."""
KEYS_DIR_MODE: Final = 0o700

KEY_STATUS_NEW: Final = "new"  # generated, no CSR yet (the repository's default)
KEY_STATUS_CSR: Final = "csr_created"  # a CSR was made; waiting for the CA's certificate
KEY_STATUS_CERTIFIED: Final = "certified"  # its certificate was imported

# Error codes of the JSON error body beyond the shared ones (gateway.webapi).
INVALID_DESCRIPTION: Final = "invalid_description"
FETCH_FAILED: Final = "fetch_failed"
UNAVAILABLE: Final = "unavailable"

_INTERNAL_ERROR: Final = ApiError(500, INTERNAL_ERROR, "internal error; the gateway's log has details")

_E = TypeVar("_E", bound=enum.Enum)


# --- context, errors, operations ---------------------------------------------------------


@dataclass(frozen=True)
class AdminContext:
    """What the management API needs from the node it runs in."""

    repository: ServerConfRepository
    data_dir: Path
    server_id: SecurityServerId
    health: Callable[[], Mapping[str, Any]] | None = None
    on_change: Callable[[], None] | None = None
    """Called after each successful change, so the node reloads its configuration snapshot."""
    message_log: LogInspector | None = None
    """The node's message log, for the security officer; None on a node that keeps none."""


Handler = Callable[[AdminContext, web.Request], Awaitable[Outcome]]


@dataclass(frozen=True)
class Operation:
    """One endpoint of the API: its route, its audit action name, the permission it needs."""

    method: str
    path: str  # under API_PREFIX
    action: str
    permission: Permission
    handler: Handler
    audit_reads: bool = False
    """Audit this read like a change: who looked at what (the message log's personal data)."""

    @property
    def changes(self) -> bool:
        return self.method != "GET"

    @property
    def audited(self) -> bool:
        return self.changes or self.audit_reads


OPERATIONS: list[Operation] = []
"""Every operation of /api/v1, filled by :func:`_operation` as this module loads."""


def _operation(
    method: str, path: str, action: str, permission: Permission, *, audit_reads: bool = False
) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        OPERATIONS.append(Operation(method, path, action, permission, handler, audit_reads))
        return handler

    return register


# --- the application ------------------------------------------------------------------------


def make_admin_app(ctx: AdminContext) -> web.Application:
    """The management API, its OpenAPI description and the health check, as one application."""
    return api_application(
        max_request_bytes=MAX_REQUEST_BYTES,
        internal_error=_INTERNAL_ERROR,
        operations=[(op.method, op.path, _guarded(ctx, op)) for op in OPERATIONS],
        openapi=_serve_openapi,
        health=_health_handler(ctx),
    )


def _guarded(ctx: AdminContext, operation: Operation) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The operation behind authentication, authorisation, error mapping and the audit log."""

    async def handle(request: web.Request) -> web.Response:
        actor = ANONYMOUS
        try:
            caller: Caller[Role] = await authenticate(request, ctx.repository.verify_api_key, Role)
            actor = caller.actor
            authorize(caller, operation.permission, is_permitted)
            outcome = await operation.handler(ctx, request)
        except (ApiError, ServerConfError, DescriptionError, IdentifierError, CertificateError) as exc:
            error = _as_api_error(exc)
            if operation.audited or error.status in (401, 403):
                details, result = refusal_details(error)
                await _audit(
                    ctx, actor, operation, request.path, _with_query(operation, request, details), result
                )
            return error_response(error)
        except Exception:
            log.exception("management API operation %s failed", operation.action)
            if operation.audited:
                failure = _with_query(operation, request, {"status": 500})
                await _audit(ctx, actor, operation, request.path, failure, AuditResult.ERROR)
            return error_response(_INTERNAL_ERROR)
        if operation.audited:
            target = outcome.target or request.path
            done = _with_query(operation, request, outcome.details)
            await _audit(ctx, actor, operation, target, done, AuditResult.OK)
        if operation.changes:
            _notify_change(ctx)
        return json_response(outcome.body, outcome.status)

    return handle


def _with_query(
    operation: Operation, request: web.Request, details: Mapping[str, Any] | None
) -> Mapping[str, Any] | None:
    """An audited read's entry names what was asked for: its query parameters, as given."""
    if not operation.audit_reads:
        return details
    query: dict[str, str | list[str]] = {}
    for name in dict.fromkeys(request.query.keys()):
        values = request.query.getall(name)
        query[name] = values[0] if len(values) == 1 else values
    return {**(details or {}), "query": query}


def _as_api_error(exc: Exception) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, NotFound):
        return ApiError(404, NOT_FOUND, str(exc))
    if isinstance(exc, AlreadyExists):
        return ApiError(409, CONFLICT, str(exc))
    if isinstance(exc, DescriptionError):
        return ApiError(400, INVALID_DESCRIPTION, exc.message)
    if isinstance(exc, IdentifierError):
        return ApiError(400, VALIDATION_ERROR, exc.message)
    return ApiError(400, VALIDATION_ERROR, str(exc))


async def _audit(
    ctx: AdminContext,
    actor: str,
    operation: Operation,
    target: str,
    details: Mapping[str, Any] | None,
    result: AuditResult,
) -> None:
    await audit_quietly(ctx.repository.audit, actor, operation.action, target, details, result)


def _notify_change(ctx: AdminContext) -> None:
    if ctx.on_change is None:
        return
    try:
        ctx.on_change()
    except Exception:
        log.exception("on_change callback failed after a management API change")


# --- request reading ------------------------------------------------------------------------


async def _json_body(request: web.Request) -> dict[str, Any]:
    return await json_body(request, MAX_REQUEST_BYTES)


def _optional_bool(body: Mapping[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise invalid(f"{name} must be true or false")
    return value


def _optional_number(body: Mapping[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"{name} must be a number")
    return float(value)


def _choice(body: Mapping[str, Any], name: str, choices: type[_E], default: _E | None = None) -> _E:
    value = body.get(name)
    if value is None and default is not None:
        return default
    try:
        return choices(value)
    except ValueError:
        allowed = ", ".join(str(choice.value) for choice in choices)
        raise invalid(f"{name} must be one of {allowed}") from None


def _client_param(request: web.Request, name: str = "client_id") -> ClientId:
    return client_id_from_path(request.match_info[name])


def _service_param(request: web.Request) -> ServiceId:
    """The service of the path: provider, code, and the optional `version` query parameter."""
    provider = _client_param(request)
    return ServiceId(
        provider.instance,
        provider.member_class,
        provider.member_code,
        provider.subsystem_code,
        request.match_info["service_code"],
        request.query.get("version"),
    )


def _client_text(body: Mapping[str, Any], name: str) -> ClientId:
    """A client named in a body by its text form, INSTANCE/CLASS/MEMBER[/SUBSYSTEM]."""
    return ClientId.from_text(required_text(body, name))


# --- reading the configuration ------------------------------------------------------------


async def _snapshot(ctx: AdminContext) -> ServerConfSnapshot:
    return await asyncio.to_thread(ctx.repository.snapshot)


def _subsystem_of(snapshot: ServerConfSnapshot, client: ClientId) -> SubsystemConf:
    conf = snapshot.subsystem(client)
    if conf is None:
        raise ApiError(404, NOT_FOUND, f"no subsystem {client} is registered")
    return conf


def _certificate_summary(pem: str) -> dict[str, Any]:
    certificate = load_certificate(pem.encode())
    return {
        "sha256": fingerprint_sha256(certificate),
        "subject": certificate.subject.rfc4514_string(),
        "not_after": certificate.not_valid_after_utc.isoformat(),
    }


def _subsystem_json(conf: SubsystemConf) -> dict[str, Any]:
    return {
        "client_id": conf.client.to_text(),
        "auth_mode": conf.auth_mode.value,
        "certificates": [_certificate_summary(pinned.pem) for pinned in conf.certificates],
    }


def _service_json(conf: ServiceConf) -> dict[str, Any]:
    return {
        "id": conf.service.to_text(),
        "service_code": conf.service.service_code,
        "service_version": conf.service.service_version,
        "kind": conf.kind.value,
        "backend_url": conf.backend_url,
        "timeout_seconds": conf.timeout_seconds,
        "tls_verify": conf.tls.verify,
        "tls_ca_pem": conf.tls.ca_bundle_pem,
        "enabled": conf.enabled,
        "disabled_notice": conf.disabled_notice,
        "description_source": conf.description.source if conf.description else None,
        "endpoints": [{"method": e.method, "path": e.path_pattern} for e in conf.endpoints],
    }


def _right_json(right: AccessRight) -> dict[str, Any]:
    return {
        "subject": right.subject.to_text(),
        "subject_type": right.subject.object_type.value.lower(),
        "service_code": right.service_code,
        "method": right.endpoint.method if right.endpoint else None,
        "path": right.endpoint.path_pattern if right.endpoint else None,
    }


def _group_json(group: LocalGroup) -> dict[str, Any]:
    return {
        "code": group.group.group_code,
        "description": group.description,
        "members": [member.to_text() for member in sorted(group.members)],
    }


def _key_json(record: KeyRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "usage": record.usage.value,
        "member_id": record.member.to_text() if record.member else None,
        "key_path": record.key_path,
        "status": record.status,
        "created_at": record.created_at.isoformat(),
        "has_csr": record.csr_pem is not None,
        "certificate": _certificate_summary(record.cert_pem) if record.cert_pem else None,
    }


def _api_key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "role": key.role,
        "created_at": key.created_at.isoformat(),
        "revoked": key.revoked,
    }


def _audit_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at.isoformat(),
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "details": dict(entry.details) if entry.details is not None else None,
        "result": entry.result.value,
    }


# --- subsystems ----------------------------------------------------------------------------

_P = Permission


@_operation("GET", "/subsystems", "subsystem.list", _P.READ_CONFIGURATION)
async def list_subsystems(ctx: AdminContext, request: web.Request) -> Outcome:
    snapshot = await _snapshot(ctx)
    confs = sorted(snapshot.subsystems.values(), key=lambda conf: conf.client)
    return Outcome({"subsystems": [_subsystem_json(conf) for conf in confs]})


@_operation("POST", "/subsystems", "subsystem.add", _P.MANAGE_SUBSYSTEMS)
async def add_subsystem(ctx: AdminContext, request: web.Request) -> Outcome:
    body = await _json_body(request)
    client = _client_text(body, "client_id")
    auth_mode = _choice(body, "auth_mode", ClientAuthMode, default=ClientAuthMode.HTTPS)
    await asyncio.to_thread(ctx.repository.add_subsystem, client, auth_mode)
    conf = SubsystemConf(client, auth_mode)
    return Outcome(_subsystem_json(conf), 201, client.to_text(), {"auth_mode": auth_mode.value})


@_operation("GET", "/subsystems/{client_id}", "subsystem.read", _P.READ_CONFIGURATION)
async def read_subsystem(ctx: AdminContext, request: web.Request) -> Outcome:
    client = _client_param(request)
    return Outcome(_subsystem_json(_subsystem_of(await _snapshot(ctx), client)))


@_operation("DELETE", "/subsystems/{client_id}", "subsystem.remove", _P.MANAGE_SUBSYSTEMS)
async def remove_subsystem(ctx: AdminContext, request: web.Request) -> Outcome:
    client = _client_param(request)
    await asyncio.to_thread(ctx.repository.remove_subsystem, client)
    return Outcome(None, 204, client.to_text())


@_operation("PUT", "/subsystems/{client_id}/auth-mode", "subsystem.set_auth_mode", _P.MANAGE_CLIENT_AUTH)
async def set_auth_mode(ctx: AdminContext, request: web.Request) -> Outcome:
    client = _client_param(request)
    auth_mode = _choice(await _json_body(request), "auth_mode", ClientAuthMode)
    await asyncio.to_thread(ctx.repository.set_auth_mode, client, auth_mode)
    conf = _subsystem_of(await _snapshot(ctx), client)
    return Outcome(_subsystem_json(conf), 200, client.to_text(), {"auth_mode": auth_mode.value})


@_operation(
    "POST", "/subsystems/{client_id}/certificates", "subsystem.pin_certificate", _P.MANAGE_CLIENT_AUTH
)
async def pin_certificate(ctx: AdminContext, request: web.Request) -> Outcome:
    client = _client_param(request)
    pem = required_text(await _json_body(request), "certificate_pem")
    summary = _certificate_summary(pem)
    await asyncio.to_thread(ctx.repository.pin_certificate, client, pem)
    return Outcome(summary, 201, client.to_text(), summary)


@_operation(
    "DELETE",
    "/subsystems/{client_id}/certificates/{sha256}",
    "subsystem.unpin_certificate",
    _P.MANAGE_CLIENT_AUTH,
)
async def unpin_certificate(ctx: AdminContext, request: web.Request) -> Outcome:
    client = _client_param(request)
    sha256 = request.match_info["sha256"].lower()
    await asyncio.to_thread(ctx.repository.unpin_certificate, client, sha256)
    return Outcome(None, 204, client.to_text(), {"sha256": sha256})


# --- services ------------------------------------------------------------------------------


@_operation("GET", "/subsystems/{client_id}/services", "service.list", _P.READ_CONFIGURATION)
async def list_services(ctx: AdminContext, request: web.Request) -> Outcome:
    client = _client_param(request)
    snapshot = await _snapshot(ctx)
    _subsystem_of(snapshot, client)
    return Outcome({"services": [_service_json(conf) for conf in snapshot.services_of(client)]})


async def _fetch_description(url: str) -> bytes:
    """A description document by URL: http(s) only, no redirects, bounded in time and size."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid(f"a description URL must be http:// or https:// with a host, not {url!r}")
    timeout = aiohttp.ClientTimeout(total=DESCRIPTION_FETCH_TIMEOUT_SECONDS)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, allow_redirects=False) as response,
        ):
            if response.status != 200:
                hint = (
                    " (redirects are not followed: give the final URL)"
                    if 300 <= response.status < 400
                    else ""
                )
                raise ApiError(400, FETCH_FAILED, f"{url} answered HTTP {response.status}{hint}")
            data = await read_at_most(response.content, MAX_DESCRIPTION_BYTES)
            if data is None:
                raise ApiError(400, FETCH_FAILED, f"{url} is larger than {MAX_DESCRIPTION_BYTES} bytes")
            return data
    except (aiohttp.ClientError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        raise ApiError(400, FETCH_FAILED, f"could not fetch {url}: {reason}") from None


async def _description(body: Mapping[str, Any], field: str) -> tuple[bytes, str]:
    """The document given inline (`field`) or by `url`, and where it came from."""
    inline = optional_text(body, field)
    url = optional_text(body, "url")
    if (inline is None) == (url is None):
        raise invalid(f"give either {field} (the document) or url")
    if inline is not None:
        data = inline.encode()
        source = "upload"
    else:
        assert url is not None
        data = await _fetch_description(url)
        source = url
    if len(data) > MAX_DESCRIPTION_BYTES:
        raise invalid(f"the description is larger than {MAX_DESCRIPTION_BYTES} bytes")
    return data, source


def _document_text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, INVALID_DESCRIPTION, "the description must be UTF-8") from None


def _add_services(repository: ServerConfRepository, confs: Sequence[ServiceConf]) -> None:
    """Register all of `confs` or none: the ones added before a failure are removed again."""
    added: list[ServiceConf] = []
    try:
        for conf in confs:
            repository.add_service(conf)
            added.append(conf)
    except BaseException:
        for conf in added:
            with contextlib.suppress(ServerConfError):
                repository.remove_service(conf.service)
        raise


def _service_conf(**values: Any) -> ServiceConf:
    try:
        return ServiceConf(**values)
    except ValueError as exc:
        raise invalid(str(exc)) from None


@_operation(
    "POST", "/subsystems/{client_id}/service-descriptions/wsdl", "service.add_wsdl", _P.MANAGE_SERVICES
)
async def register_wsdl(ctx: AdminContext, request: web.Request) -> Outcome:
    """One SOAP service per operation the WSDL binds, at the address the WSDL gives."""
    provider = _client_param(request)
    body = await _json_body(request)
    data, source = await _description(body, "wsdl")
    text = _document_text(data)
    wsdl = await asyncio.to_thread(parse_wsdl, data)
    description = ServiceDescription(text, source)
    confs = [
        _service_conf(
            service=ServiceId(
                provider.instance,
                provider.member_class,
                provider.member_code,
                provider.subsystem_code,
                operation.service_code,
                operation.service_version,
            ),
            kind=ServiceKind.SOAP,
            backend_url=operation.address,
            description=description,
        )
        for operation in wsdl.operations
    ]
    await asyncio.to_thread(_add_services, ctx.repository, confs)
    registered = [_service_json(conf) for conf in confs]
    details = {"source": source, "services": [conf.service.to_text() for conf in confs]}
    return Outcome({"services": registered}, 201, provider.to_text(), details)


@_operation(
    "POST", "/subsystems/{client_id}/service-descriptions/openapi", "service.add_openapi", _P.MANAGE_SERVICES
)
async def register_openapi(ctx: AdminContext, request: web.Request) -> Outcome:
    """One REST service with an endpoint per operation of the OpenAPI document."""
    provider = _client_param(request)
    body = await _json_body(request)
    service_code = required_text(body, "service_code")
    service_version = optional_text(body, "service_version")
    data, source = await _description(body, "document")
    text = _document_text(data)
    openapi = await asyncio.to_thread(parse_openapi, data)
    backend_url = optional_text(body, "backend_url") or openapi.default_url
    if backend_url is None:
        raise invalid("the document names no server: give backend_url")
    try:
        endpoints = tuple(Endpoint(e.method.upper(), e.path_pattern) for e in openapi.endpoints)
    except ValueError as exc:
        raise ApiError(400, INVALID_DESCRIPTION, str(exc)) from None
    service = ServiceId(
        provider.instance,
        provider.member_class,
        provider.member_code,
        provider.subsystem_code,
        service_code,
        service_version,
    )
    conf = _service_conf(
        service=service,
        kind=ServiceKind.REST,
        backend_url=backend_url,
        description=ServiceDescription(text, source),
        endpoints=endpoints,
    )
    await asyncio.to_thread(ctx.repository.add_service, conf)
    details = {"source": source, "endpoints": len(conf.endpoints)}
    return Outcome(_service_json(conf), 201, service.to_text(), details)


async def _service_of(ctx: AdminContext, service: ServiceId) -> ServiceConf:
    conf = (await _snapshot(ctx)).service(service)
    if conf is None:
        raise ApiError(404, NOT_FOUND, f"no service {service} is registered")
    return conf


@_operation("GET", "/subsystems/{client_id}/services/{service_code}", "service.read", _P.READ_CONFIGURATION)
async def read_service(ctx: AdminContext, request: web.Request) -> Outcome:
    return Outcome(_service_json(await _service_of(ctx, _service_param(request))))


@_operation(
    "PATCH", "/subsystems/{client_id}/services/{service_code}", "service.set_backend", _P.MANAGE_SERVICES
)
async def set_backend(ctx: AdminContext, request: web.Request) -> Outcome:
    """Change where and how the gateway calls the service; fields left out stay as they are."""
    service = _service_param(request)
    body = await _json_body(request)
    conf = await _service_of(ctx, service)
    changes: dict[str, Any] = {}
    backend_url = optional_text(body, "backend_url")
    if backend_url is not None:
        changes["backend_url"] = backend_url
    timeout = _optional_number(body, "timeout_seconds")
    if timeout is not None:
        changes["timeout_seconds"] = timeout
    tls = conf.tls
    verify = _optional_bool(body, "tls_verify")
    if verify is not None:
        tls = dataclasses.replace(tls, verify=verify)
    if "tls_ca_pem" in body:
        ca_pem = optional_text(body, "tls_ca_pem") or None  # null or "" clears it
        if ca_pem is not None:
            load_certificates(ca_pem.encode())
        tls = dataclasses.replace(tls, ca_bundle_pem=ca_pem)
    if not changes and tls == conf.tls:
        raise invalid("give at least one of backend_url, timeout_seconds, tls_verify, tls_ca_pem")
    try:
        updated = dataclasses.replace(conf, tls=tls, **changes)
    except ValueError as exc:
        raise invalid(str(exc)) from None
    await asyncio.to_thread(ctx.repository.update_service, updated)
    details = {name: value for name, value in body.items() if name != "tls_ca_pem"}
    if "tls_ca_pem" in body:
        details["tls_ca_pem"] = "set" if tls.ca_bundle_pem else "cleared"
    return Outcome(_service_json(updated), 200, service.to_text(), details)


@_operation(
    "POST", "/subsystems/{client_id}/services/{service_code}/enable", "service.enable", _P.MANAGE_SERVICES
)
async def enable_service(ctx: AdminContext, request: web.Request) -> Outcome:
    service = _service_param(request)
    await asyncio.to_thread(ctx.repository.set_service_enabled, service, True)
    return Outcome(_service_json(await _service_of(ctx, service)), 200, service.to_text())


@_operation(
    "POST", "/subsystems/{client_id}/services/{service_code}/disable", "service.disable", _P.MANAGE_SERVICES
)
async def disable_service(ctx: AdminContext, request: web.Request) -> Outcome:
    """Clients calling a disabled service get ServiceDisabled with the notice (PROTOCOL.md)."""
    service = _service_param(request)
    notice = optional_text(await _json_body(request), "notice", MAX_NOTICE_LENGTH)
    await asyncio.to_thread(ctx.repository.set_service_enabled, service, False, notice)
    conf = await _service_of(ctx, service)
    return Outcome(_service_json(conf), 200, service.to_text(), {"notice": notice})


@_operation("DELETE", "/subsystems/{client_id}/services/{service_code}", "service.remove", _P.MANAGE_SERVICES)
async def remove_service(ctx: AdminContext, request: web.Request) -> Outcome:
    service = _service_param(request)
    await asyncio.to_thread(ctx.repository.remove_service, service)
    return Outcome(None, 204, service.to_text())


# --- access rights -------------------------------------------------------------------------


def access_subject(text: str, subject_type: str) -> AccessSubject:
    """The subject of a right from its text form and type (member, subsystem, globalgroup, localgroup)."""
    try:
        kind = SubjectType(subject_type.upper())
    except ValueError:
        allowed = ", ".join(kind.value.lower() for kind in SubjectType)
        raise invalid(f"subject_type must be one of {allowed}") from None
    return subject_from_text(ObjectType(kind.value), text)


def _access_right(service_code: str, values: Mapping[str, Any]) -> AccessRight:
    subject = access_subject(required_text(values, "subject"), required_text(values, "subject_type"))
    method = optional_text(values, "method")
    path = optional_text(values, "path")
    if (method is None) != (path is None):
        raise invalid("give both method and path for an endpoint, or neither for the whole service")
    endpoint = None
    if method is not None and path is not None:
        try:
            endpoint = Endpoint(method, path)
        except ValueError as exc:
            raise invalid(str(exc)) from None
    return AccessRight(subject, service_code, endpoint)


@_operation(
    "GET",
    "/subsystems/{client_id}/services/{service_code}/access-rights",
    "access.list",
    _P.READ_CONFIGURATION,
)
async def list_access_rights(ctx: AdminContext, request: web.Request) -> Outcome:
    """The rights to a service code, whatever its version (X-Road grants per code)."""
    provider = _client_param(request)
    code = request.match_info["service_code"]
    snapshot = await _snapshot(ctx)
    _subsystem_of(snapshot, provider)
    if not any(conf.service.service_code == code for conf in snapshot.services_of(provider)):
        raise ApiError(404, NOT_FOUND, f"{provider} has no service {code!r}")
    return Outcome({"access_rights": [_right_json(right) for right in snapshot.rights(provider, code)]})


@_operation(
    "POST",
    "/subsystems/{client_id}/services/{service_code}/access-rights",
    "access.grant",
    _P.MANAGE_ACCESS_RIGHTS,
)
async def grant_access(ctx: AdminContext, request: web.Request) -> Outcome:
    provider = _client_param(request)
    right = _access_right(request.match_info["service_code"], await _json_body(request))
    await asyncio.to_thread(ctx.repository.grant, provider, right)
    body = _right_json(right)
    return Outcome(body, 201, f"{provider}:{right.service_code}", body)


@_operation(
    "DELETE",
    "/subsystems/{client_id}/services/{service_code}/access-rights",
    "access.revoke",
    _P.MANAGE_ACCESS_RIGHTS,
)
async def revoke_access(ctx: AdminContext, request: web.Request) -> Outcome:
    """The right to revoke is named by query parameters: subject, subject_type, method, path."""
    provider = _client_param(request)
    right = _access_right(request.match_info["service_code"], request.query)
    await asyncio.to_thread(ctx.repository.revoke, provider, right)
    return Outcome(None, 204, f"{provider}:{right.service_code}", _right_json(right))


# --- local groups --------------------------------------------------------------------------


def _group_param(request: web.Request) -> LocalGroupId:
    return LocalGroupId(request.match_info["group_code"])


@_operation("GET", "/subsystems/{client_id}/local-groups", "local_group.list", _P.READ_CONFIGURATION)
async def list_local_groups(ctx: AdminContext, request: web.Request) -> Outcome:
    owner = _client_param(request)
    snapshot = await _snapshot(ctx)
    _subsystem_of(snapshot, owner)
    return Outcome({"local_groups": [_group_json(group) for group in snapshot.local_groups_of(owner)]})


@_operation("POST", "/subsystems/{client_id}/local-groups", "local_group.add", _P.MANAGE_LOCAL_GROUPS)
async def add_local_group(ctx: AdminContext, request: web.Request) -> Outcome:
    owner = _client_param(request)
    body = await _json_body(request)
    group = LocalGroupId(required_text(body, "code"))
    description = optional_text(body, "description", MAX_NAME_LENGTH) or ""
    await asyncio.to_thread(ctx.repository.add_local_group, owner, group, description)
    result = _group_json(LocalGroup(owner, group, description, frozenset()))
    return Outcome(result, 201, f"{owner}:{group}", {"description": description})


@_operation(
    "DELETE",
    "/subsystems/{client_id}/local-groups/{group_code}",
    "local_group.remove",
    _P.MANAGE_LOCAL_GROUPS,
)
async def remove_local_group(ctx: AdminContext, request: web.Request) -> Outcome:
    """The group goes with its members and the access rights granted to it."""
    owner = _client_param(request)
    group = _group_param(request)
    await asyncio.to_thread(ctx.repository.remove_local_group, owner, group)
    return Outcome(None, 204, f"{owner}:{group}")


@_operation(
    "POST",
    "/subsystems/{client_id}/local-groups/{group_code}/members",
    "local_group.add_member",
    _P.MANAGE_LOCAL_GROUPS,
)
async def add_group_member(ctx: AdminContext, request: web.Request) -> Outcome:
    owner = _client_param(request)
    group = _group_param(request)
    member = _client_text(await _json_body(request), "client_id")
    await asyncio.to_thread(ctx.repository.add_local_group_member, owner, group, member)
    body = {"client_id": member.to_text()}
    return Outcome(body, 201, f"{owner}:{group}", body)


@_operation(
    "DELETE",
    "/subsystems/{client_id}/local-groups/{group_code}/members/{member_id}",
    "local_group.remove_member",
    _P.MANAGE_LOCAL_GROUPS,
)
async def remove_group_member(ctx: AdminContext, request: web.Request) -> Outcome:
    owner = _client_param(request)
    group = _group_param(request)
    member = _client_param(request, "member_id")
    await asyncio.to_thread(ctx.repository.remove_local_group_member, owner, group, member)
    return Outcome(None, 204, f"{owner}:{group}", {"client_id": member.to_text()})


# --- keys and certificates -----------------------------------------------------------------


@_operation("GET", "/keys", "key.list", _P.READ_CONFIGURATION)
async def list_keys(ctx: AdminContext, request: web.Request) -> Outcome:
    records = await asyncio.to_thread(ctx.repository.list_keys)
    return Outcome({"keys": [_key_json(record) for record in records]})


def _write_new_key(data_dir: Path, usage: KeyUsage, key: PrivateKey) -> Path:
    """Store a fresh key under DATA_DIR/keys, mode 0600 (crypto.keys), in a directory only we read."""
    directory = data_dir / KEYS_DIR
    directory.mkdir(mode=KEYS_DIR_MODE, parents=True, exist_ok=True)
    path = directory / f"{usage.value}-{secrets.token_hex(8)}.key"
    save_private_key(path, key)
    return path


def _generate_and_register(
    ctx: AdminContext, usage: KeyUsage, member: ClientId | None, algorithm: KeyAlgorithm
) -> KeyRecord:
    path = _write_new_key(ctx.data_dir, usage, generate_key(algorithm))
    try:
        return ctx.repository.add_key(usage, str(path), member=member, status=KEY_STATUS_NEW)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


@_operation("POST", "/keys", "key.generate", _P.MANAGE_KEYS)
async def generate_new_key(ctx: AdminContext, request: web.Request) -> Outcome:
    """A new private key: `auth` for the gateway's TLS, `sign` for one member's signatures."""
    body = await _json_body(request)
    usage = _choice(body, "usage", KeyUsage)
    algorithm = _choice(body, "algorithm", KeyAlgorithm, default=KeyAlgorithm.EC)
    member_text = optional_text(body, "member_id")
    member = ClientId.from_text(member_text) if member_text else None
    if usage is KeyUsage.SIGN and member is None:
        raise invalid("a signing key signs for a member: give member_id")
    if usage is KeyUsage.AUTH and member is not None:
        raise invalid("an authentication key belongs to the gateway: give no member_id")
    if member is not None and member.is_subsystem:
        raise invalid("signing keys belong to members, not subsystems")
    record = await asyncio.to_thread(_generate_and_register, ctx, usage, member, algorithm)
    details = {"usage": usage.value, "algorithm": algorithm.value, "member_id": member_text}
    return Outcome(_key_json(record), 201, f"key {record.id}", details)


_SUBJECT_FIELDS: Final[Mapping[str, x509.ObjectIdentifier]] = {
    "common_name": NameOID.COMMON_NAME,
    "organization": NameOID.ORGANIZATION_NAME,
    "organizational_unit": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "country": NameOID.COUNTRY_NAME,
    "serial_number": NameOID.SERIAL_NUMBER,
}


def csr_subject(record: KeyRecord, server: SecurityServerId, given: Mapping[str, Any]) -> x509.Name:
    """The CSR's subject: the fields given, the rest derived as gateway/trust/pki.py issues them.

    Derived: CN = server code (auth) or member code (sign), O = member code, serialNumber =
    INSTANCE/CLASS/MEMBER. Only the SAN URI decides anything (crypto/certs.py); this is for people.
    """
    owner = record.member if record.member is not None else server.owner
    derived = {
        "common_name": server.server_code if record.usage is KeyUsage.AUTH else owner.member_code,
        "organization": owner.member_code,
        "serial_number": "/".join((owner.instance, owner.member_class, owner.member_code)),
    }
    unknown = set(given) - set(_SUBJECT_FIELDS)
    if unknown:
        raise invalid(f"unknown subject fields {sorted(unknown)}: use {sorted(_SUBJECT_FIELDS)}")
    values = {**derived, **{name: value for name, value in given.items() if value is not None}}
    try:
        return x509.Name(
            [
                x509.NameAttribute(oid, str(values[name]))
                for name, oid in _SUBJECT_FIELDS.items()
                if values.get(name)
            ]
        )
    except ValueError as exc:
        raise invalid(f"bad subject: {exc}") from None


def csr_alternative_names(
    record: KeyRecord, server: SecurityServerId, dns_names: Sequence[str]
) -> list[x509.GeneralName]:
    """The identity URI crypto/certs.py reads (server for auth keys, member for sign keys), plus DNS names."""
    if record.usage is KeyUsage.SIGN:
        assert record.member is not None  # the repository refuses a signing key without one
        return [x509.UniformResourceIdentifier(member_uri(record.member))]
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(server_uri(server))]
    return names + [x509.DNSName(name) for name in dns_names]


def _load_key(record: KeyRecord) -> PrivateKey:
    try:
        return load_private_key(Path(record.key_path))
    except (OSError, KeyFileError) as exc:
        raise ApiError(500, INTERNAL_ERROR, f"the file of key {record.id} cannot be read: {exc}") from None


def _make_csr(ctx: AdminContext, key_id: int, given: Mapping[str, Any], dns_names: Sequence[str]) -> str:
    record = ctx.repository.get_key(key_id)
    if record is None:
        raise ApiError(404, NOT_FOUND, f"no key {key_id}")
    subject = csr_subject(record, ctx.server_id, given)
    try:
        names = csr_alternative_names(record, ctx.server_id, dns_names)
        csr = create_csr(_load_key(record), subject, names)
    except ValueError as exc:
        raise invalid(str(exc)) from None
    pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    status = KEY_STATUS_CSR if record.status == KEY_STATUS_NEW else None
    ctx.repository.update_key(key_id, csr_pem=pem, status=status)
    return pem


@_operation("POST", "/keys/{key_id}/csr", "key.csr", _P.MANAGE_KEYS)
async def make_csr(ctx: AdminContext, request: web.Request) -> Outcome:
    """A PKCS#10 request for the key, to hand to the federation's CA."""
    try:
        key_id = int(request.match_info["key_id"])
    except ValueError:
        raise ApiError(404, NOT_FOUND, "key ids are integers") from None
    body = await _json_body(request)
    given = body.get("subject") or {}
    dns_names = body.get("dns_names") or []
    if not isinstance(given, dict):
        raise invalid("subject must be an object of subject fields")
    if not isinstance(dns_names, list) or not all(isinstance(name, str) for name in dns_names):
        raise invalid("dns_names must be a list of host names")
    pem = await asyncio.to_thread(_make_csr, ctx, key_id, given, dns_names)
    details = {"subject": given, "dns_names": dns_names}
    return Outcome({"key_id": key_id, "csr_pem": pem}, 200, f"key {key_id}", details)


def _public_key_der(key: Any) -> bytes:
    der: bytes = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return der


def _key_public_der(record: KeyRecord) -> bytes | None:
    """The key's public half: from its CSR when there is one (no need to open the private key)."""
    if record.csr_pem is not None:
        csr = x509.load_pem_x509_csr(record.csr_pem.encode())
        return _public_key_der(csr.public_key())
    try:
        return _public_key_der(load_private_key(Path(record.key_path)).public_key())
    except (OSError, KeyFileError):
        log.warning("key %s: file %s cannot be read", record.id, record.key_path)
        return None


def _check_identity(record: KeyRecord, certificate: x509.Certificate, server: SecurityServerId) -> None:
    """A certificate naming someone else than its key is for is refused (crypto/certs.py URIs)."""
    member, named_server = identifiers_of(certificate)
    if record.usage is KeyUsage.SIGN and member is not None and member != record.member:
        raise invalid(f"the certificate names member {member}, but key {record.id} signs for {record.member}")
    if record.usage is KeyUsage.AUTH and named_server is not None and named_server != server:
        raise invalid(f"the certificate names gateway {named_server}, not this gateway {server}")


def _import_certificate(ctx: AdminContext, certificate: x509.Certificate) -> KeyRecord:
    wanted = _public_key_der(certificate.public_key())
    for record in ctx.repository.list_keys():
        if _key_public_der(record) == wanted:
            _check_identity(record, certificate, ctx.server_id)
            pem = certificate_to_pem(certificate).decode()
            return ctx.repository.update_key(record.id, cert_pem=pem, status=KEY_STATUS_CERTIFIED)
    raise invalid("no key of this gateway has the certificate's public key")


@_operation("POST", "/certificates", "certificate.import", _P.MANAGE_KEYS)
async def import_certificate(ctx: AdminContext, request: web.Request) -> Outcome:
    """A certificate the CA issued for one of our keys, found by its public key."""
    certificate = load_certificate(required_text(await _json_body(request), "certificate_pem").encode())
    record = await asyncio.to_thread(_import_certificate, ctx, certificate)
    details = {"sha256": fingerprint_sha256(certificate), "subject": certificate.subject.rfc4514_string()}
    return Outcome(_key_json(record), 200, f"key {record.id}", details)


# --- API keys and the audit log --------------------------------------------------------------


@_operation("GET", "/api-keys", "api_key.list", _P.MANAGE_API_KEYS)
async def list_api_keys(ctx: AdminContext, request: web.Request) -> Outcome:
    keys = await asyncio.to_thread(ctx.repository.list_api_keys)
    return Outcome({"api_keys": [_api_key_json(key) for key in keys]})


@_operation("POST", "/api-keys", "api_key.create", _P.MANAGE_API_KEYS)
async def create_api_key(ctx: AdminContext, request: web.Request) -> Outcome:
    """A new key; the answer is the only place the key itself ever appears."""
    body = await _json_body(request)
    name = required_text(body, "name", MAX_NAME_LENGTH)
    try:
        role = parse_role(required_text(body, "role"))
    except ValueError as exc:
        raise invalid(str(exc)) from None
    record, key = await asyncio.to_thread(ctx.repository.create_api_key, name, role.value)
    return Outcome(
        {**_api_key_json(record), "key": key}, 201, f"api key {record.id}", {"name": name, "role": role.value}
    )


@_operation("DELETE", "/api-keys/{key_id}", "api_key.revoke", _P.MANAGE_API_KEYS)
async def revoke_api_key(ctx: AdminContext, request: web.Request) -> Outcome:
    try:
        key_id = int(request.match_info["key_id"])
    except ValueError:
        raise ApiError(404, NOT_FOUND, "API key ids are integers") from None
    await asyncio.to_thread(ctx.repository.revoke_api_key, key_id)
    return Outcome(None, 204, f"api key {key_id}")


def _since(request: web.Request) -> dt.datetime | None:
    text = request.query.get("since")
    if text is None:
        return None
    try:
        since = dt.datetime.fromisoformat(text)
    except ValueError:
        raise invalid("since must be an ISO 8601 time, e.g. 2026-11-27T10:00:00+00:00") from None
    return since if since.tzinfo is not None else since.replace(tzinfo=dt.UTC)


@_operation("GET", "/audit-log", "audit_log.read", _P.READ_AUDIT_LOG)
async def read_audit_log(ctx: AdminContext, request: web.Request) -> Outcome:
    """Newest first; page back by passing the answer's `next_before_id` as `before_id`."""
    limit = max(1, min(query_int(request, "limit") or DEFAULT_AUDIT_PAGE, MAX_AUDIT_PAGE))
    entries = await asyncio.to_thread(
        ctx.repository.audit_entries,
        actor=request.query.get("actor"),
        action=request.query.get("action"),
        since=_since(request),
        before_id=query_int(request, "before_id"),
        limit=limit,
    )
    next_before = entries[-1].id if len(entries) == limit else None
    return Outcome({"entries": [_audit_json(entry) for entry in entries], "next_before_id": next_before})


# --- the message log: the security officer's reads, every one audited ------------------------


def _message_log(ctx: AdminContext) -> LogInspector:
    if ctx.message_log is None:
        raise ApiError(404, NOT_FOUND, "this node keeps no message log")
    return ctx.message_log


def _log_query(request: web.Request, *, default_limit: int, max_limit: int) -> SearchQuery:
    try:
        return SearchQuery.from_params(request.query, default_limit=default_limit, max_limit=max_limit)
    except QueryError as exc:
        raise invalid(str(exc)) from None


def _only(request: web.Request, *names: str) -> None:
    unknown = set(request.query) - set(names)
    if unknown:
        raise invalid(f"unknown parameters {sorted(unknown)}: use {list(names)}")


@_operation("GET", "/message-log/records", "message_log.search", _P.READ_MESSAGE_LOG, audit_reads=True)
async def search_message_log(ctx: AdminContext, request: web.Request) -> Outcome:
    """Records matching every filter given, newest first, one page."""
    inspector = _message_log(ctx)
    query = _log_query(request, default_limit=DEFAULT_SEARCH_LIMIT, max_limit=MAX_SEARCH_LIMIT)
    answer = await asyncio.to_thread(inspector.search, query)
    return Outcome(answer, target="message-log", details={"found": len(answer["records"])})


@_operation("GET", "/message-log/exchange", "message_log.show", _P.READ_MESSAGE_LOG, audit_reads=True)
async def show_message_log(ctx: AdminContext, request: web.Request) -> Outcome:
    """An exchange by its id (or the exchanges of a message id), each record verified."""
    inspector = _message_log(ctx)
    _only(request, "id")
    ident = required_text(request.query, "id")
    answer = await asyncio.to_thread(inspector.show, ident)
    if not answer["exchanges"]:
        raise ApiError(404, NOT_FOUND, f"no record of {ident!r} in the message log")
    return Outcome(answer, target=ident, details={"exchanges": len(answer["exchanges"])})


@_operation("GET", "/message-log/containers", "message_log.export", _P.READ_MESSAGE_LOG, audit_reads=True)
async def export_message_log(ctx: AdminContext, request: web.Request) -> Outcome:
    """ASiC-E containers, base64, for an exchange or message id, or a page of a search."""
    inspector = _message_log(ctx)
    ident = request.query.get("id")
    if ident is not None:
        _only(request, "id")
        containers, failures, next_page = await asyncio.to_thread(inspector.export, ident=ident)
        if not containers and not failures:
            raise ApiError(404, NOT_FOUND, f"no record of {ident!r} in the message log")
    else:
        query = _log_query(request, default_limit=MAX_EXPORT_PER_CALL, max_limit=MAX_EXPORT_PER_CALL)
        if not query.has_filters:
            raise invalid("name the records to export: give id, or at least one search filter")
        containers, failures, next_page = await asyncio.to_thread(inspector.export, query=query)
    details = {"containers": [c.name for c in containers], "failures": len(failures)}
    return Outcome(
        export_json(containers, failures, next_page), target=ident or "message-log", details=details
    )


@_operation("GET", "/message-log/verification", "message_log.verify", _P.READ_MESSAGE_LOG, audit_reads=True)
async def verify_message_log(ctx: AdminContext, request: web.Request) -> Outcome:
    """verify_log over this gateway's chains with the trust of the current global configuration."""
    inspector = _message_log(ctx)
    _only(request, "node")
    try:
        answer = await asyncio.to_thread(inspector.verify, request.query.get("node"))
    except TrustUnavailable as exc:
        raise ApiError(503, UNAVAILABLE, str(exc)) from None
    details = {"valid": answer["valid"], "first_problem": first_problem(answer)}
    return Outcome(answer, target="message-log", details=details)


# --- unauthenticated: description and health ---------------------------------------------


async def _serve_openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


def _health_handler(ctx: AdminContext) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def health(request: web.Request) -> web.Response:
        """200 with status "ok", else 503: what load balancers and monitors read."""
        payload: dict[str, Any] = {"status": "ok"}
        if ctx.health is not None:
            try:
                payload.update(await asyncio.to_thread(ctx.health))
            except Exception:
                log.exception("health provider failed")
                payload["status"] = "error"
        return web.json_response(payload, status=200 if payload.get("status") == "ok" else 503, dumps=dumps)

    return health
