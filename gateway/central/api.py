"""The registry's management API: members, gateways, trust services, requests and keys over JSON.

One aiohttp application (:func:`make_management_app`) on the registry's loopback management
listener, on the same framework as the gateway's (`gateway.webapi`). Its operations are
declared once each, by concept, in `gateway.central.manage`:

* `members`: member classes, members, subsystems, global groups;
* `servers`: security servers, their addresses, certificates and clients;
* `trust`: trusted CAs and OCSP responders, TSAs, federation-wide settings;
* `decisions`: registration requests, configuration-signing keys, the published configuration;
* `gateway.webapi.keys`: API keys and the audit log (the gateway's API has the same).

Every call passes one guard: API key, role (:mod:`gateway.central.roles`), validation, the
operation, the audit log (every change and every refusal); a change that alters the
configuration then publishes a new version. The OpenAPI document is built from the same
declarations and served at ``GET /api/openapi.json``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import cache
from typing import Any, Final

from aiohttp import web

from gateway import webapi
from gateway.adminstore import AuditResult
from gateway.central.manage import decisions, members, servers, trust
from gateway.central.manage.context import (
    TABLE,
    RegistryContext,
    certificate_summary,
    domain_error,
    time_text,
)
from gateway.central.manage.decisions import globalconf_state, request_json
from gateway.central.roles import MATRIX, Permission
from gateway.webapi import (
    API_PREFIX,
    INTERNAL_ERROR,
    ApiError,
    Guard,
    Operation,
    api_application,
    audit_quietly,
)
from gateway.webapi.errors import error_codes
from gateway.webapi.keys import declare_key_operations
from gateway.webapi.openapi import ApiInfo
from gateway.webapi.openapi import openapi_document as build_document

__all__ = [
    "API_PREFIX",
    "OPERATIONS",
    "RegistryContext",
    "as_api_error",
    "audit",
    "certificate_summary",
    "errors_as_json",
    "globalconf_state",
    "health_handler",
    "make_management_app",
    "openapi_document",
    "request_json",
]

_MODULES: Final = (members, servers, trust, decisions)  # each declares its operations on TABLE

MAX_REQUEST_BYTES: Final = 1024 * 1024
"""The largest body is a CA certificate with a few OCSP responder certificates: far below this."""

API_VERSION: Final = "1.0.0"

_INTERNAL_ERROR: Final = ApiError(500, INTERNAL_ERROR, "internal error; the registry's log has details")

declare_key_operations(
    TABLE,
    lambda ctx: ctx.repository.admin,
    roles=MATRIX.roles,
    manage_keys=Permission.MANAGE_API_KEYS,
    read_audit_log=Permission.READ_AUDIT_LOG,
    reconfigures=False,
)

OPERATIONS: Final[list[Operation]] = TABLE.operations
"""Every operation of /api/v1."""

INFO: Final = ApiInfo(
    title="xgate central registry management API",
    version=API_VERSION,
    description=(
        "Manage the federation's registry: member classes, members, subsystems, security servers, "
        "trusted CAs, TSAs, global groups, settings, registration requests, configuration-signing "
        "keys, API keys and the audit log. Identifiers are written INSTANCE/CLASS/MEMBER[/SUBSYSTEM] "
        "(URL-encoded in paths; X-Road's colon form is accepted too). Every change and every "
        "refused call is audited."
    ),
    error_codes=error_codes(),
    health="Whether a configuration is published and unexpired (no API key needed).",
)


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.0 document of this API, from its operations' declarations."""
    return build_document(INFO, OPERATIONS, MATRIX)


def as_api_error(exc: Exception) -> ApiError:
    """The JSON error a domain error becomes; anything unforeseen is a 500 without details."""
    if isinstance(exc, ApiError):
        return exc
    return domain_error(exc) or _INTERNAL_ERROR


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


async def _publish(ctx: RegistryContext) -> None:
    await ctx.publisher.publish_soon()


GUARD: Final[Guard[RegistryContext]] = Guard(
    roles=MATRIX,
    keys=lambda ctx: ctx.repository.admin,
    domain_error=domain_error,
    internal_error=_INTERNAL_ERROR,
    max_request_bytes=MAX_REQUEST_BYTES,
    after_change=_publish,
)


def make_management_app(ctx: RegistryContext) -> web.Application:
    return api_application(GUARD, ctx, OPERATIONS, document=openapi_document, health=health_handler(ctx))


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
            "globalconf_expires_at": time_text(current.expires_at) if current else None,
            "last_error": ctx.publisher.last_error,
        }
        return web.json_response(payload, status=200 if healthy else 503)

    return health
