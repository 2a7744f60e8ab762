"""The management API: the gateway's registrations, keys and API keys over JSON on the admin interface.

One aiohttp application (:func:`make_admin_app`) on the node's localhost admin listener
(DESIGN.md "Shape of the code"). Its operations are declared once each, by concept:

* `gateway.admin.subsystems`: subsystems and how their client systems authenticate;
* `gateway.admin.services`: services, their descriptions and backends;
* `gateway.admin.access`: access rights and local groups;
* `gateway.admin.keys`: keys, CSRs and certificates;
* `gateway.admin.logs`: the security officer's reads of the message log;
* `gateway.webapi.keys`: API keys and the audit log (the registry's API has the same).

Every call passes the guard of `gateway.webapi.operations`: API key, role
(:mod:`gateway.admin.roles`), validation, the operation, the audit log (every change, every
refusal, every read of the message log); then the node reloads its configuration.
The OpenAPI document is built from the same declarations and served at ``GET /api/openapi.json``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any, Final

from aiohttp import web

from gateway.admin import access, keys, logs, services, subsystems
from gateway.admin.context import (
    FETCH_FAILED,
    INVALID_DESCRIPTION,
    TABLE,
    UNAVAILABLE,
    AdminContext,
    domain_error,
)
from gateway.admin.roles import MATRIX, Permission
from gateway.serverconf.wsdl import MAX_DESCRIPTION_BYTES
from gateway.webapi import INTERNAL_ERROR, ApiError, Guard, Operation, api_application, dumps
from gateway.webapi import presented_key as presented_key
from gateway.webapi.errors import error_codes
from gateway.webapi.keys import declare_key_operations
from gateway.webapi.openapi import ApiInfo
from gateway.webapi.openapi import openapi_document as build_document

log = logging.getLogger(__name__)

__all__ = ["OPERATIONS", "AdminContext", "make_admin_app", "openapi_document", "presented_key"]

_MODULES: Final = (subsystems, services, access, keys, logs)  # each declares its operations on TABLE

MAX_REQUEST_BYTES: Final = 2 * MAX_DESCRIPTION_BYTES + 64 * 1024
"""The largest description we register, JSON-escaped (escaping at most doubles typical XML and
YAML), plus room for the other fields."""

API_VERSION: Final = "1.0.0"

_INTERNAL_ERROR: Final = ApiError(500, INTERNAL_ERROR, "internal error; the gateway's log has details")

declare_key_operations(
    TABLE,
    lambda ctx: ctx.repository,
    roles=MATRIX.roles,
    manage_keys=Permission.MANAGE_API_KEYS,
    read_audit_log=Permission.READ_AUDIT_LOG,
    reconfigures=True,
)

OPERATIONS: Final[list[Operation]] = TABLE.operations
"""Every operation of /api/v1."""

INFO: Final = ApiInfo(
    title="xgate gateway management API",
    version=API_VERSION,
    description=(
        "Manage one gateway: subsystems, services, access rights, local groups, keys and "
        "certificates, API keys, the audit log and the message log. Identifiers are written "
        "INSTANCE/CLASS/MEMBER[/SUBSYSTEM] (URL-encoded in paths; X-Road's colon form is accepted "
        "too). Every change and every refused call is audited."
    ),
    error_codes=error_codes(INVALID_DESCRIPTION, FETCH_FAILED, UNAVAILABLE),
    health="Whether the node is healthy (no API key needed).",
)


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.0 document of this API, from its operations' declarations."""
    return build_document(INFO, OPERATIONS, MATRIX)


async def _reload(ctx: AdminContext) -> None:
    if ctx.on_change is not None:
        ctx.on_change()


GUARD: Final[Guard[AdminContext]] = Guard(
    roles=MATRIX,
    keys=lambda ctx: ctx.repository,
    domain_error=domain_error,
    internal_error=_INTERNAL_ERROR,
    max_request_bytes=MAX_REQUEST_BYTES,
    after_change=_reload,
)


def make_admin_app(ctx: AdminContext) -> web.Application:
    """The management API, its OpenAPI description and the health check, as one application."""
    return api_application(GUARD, ctx, OPERATIONS, document=openapi_document, health=_health_handler(ctx))


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
