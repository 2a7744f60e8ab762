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

from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from gateway import webapi
from gateway.adminstore import AdminStore
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
    ManagementApi,
    Operation,
    audit_quietly,
)
from gateway.webapi.errors import error_codes
from gateway.webapi.keys import declare_key_operations
from gateway.webapi.openapi import ApiInfo

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
_HEALTH: Final = "Whether a configuration is published and unexpired."

_INTERNAL_ERROR: Final = ApiError(500, INTERNAL_ERROR, "internal error; the registry's log has details")


async def _publish(ctx: RegistryContext) -> None:
    await ctx.publisher.publish_soon()


def _keys(ctx: RegistryContext) -> AdminStore:
    return ctx.repository.admin


GUARD: Final = Guard(MATRIX, _keys, domain_error, _INTERNAL_ERROR, MAX_REQUEST_BYTES, _publish)
P = Permission
declare_key_operations(TABLE, _keys, MATRIX.roles, P.MANAGE_API_KEYS, P.READ_AUDIT_LOG, reconfigures=False)

API: Final = ManagementApi(
    ApiInfo("xgate central registry management API", API_VERSION, __doc__ or "", _HEALTH, error_codes()),
    TABLE,
    GUARD,
)
OPERATIONS: Final[list[Operation]] = API.operations
"""Every operation of /api/v1."""


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.0 document of this API, from its operations' declarations."""
    return API.document


def as_api_error(exc: Exception) -> ApiError:
    """The JSON error a domain error becomes; anything unforeseen is a 500 without details."""
    if isinstance(exc, ApiError):
        return exc
    return domain_error(exc) or _INTERNAL_ERROR


errors_as_json: Final = webapi.errors_as_json(_INTERNAL_ERROR)


async def audit(ctx: RegistryContext, *entry: Any) -> None:
    """Write one audit entry (actor, action, target, details, result) for the distribution side;
    a failure to write is logged, never hides the answer."""
    await audit_quietly(ctx.repository.admin.audit, *entry)


def make_management_app(ctx: RegistryContext) -> web.Application:
    return API.application(ctx, health_handler(ctx))


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
