"""The management API: the gateway's registrations, keys and API keys over JSON on the admin interface.

One aiohttp application (:func:`make_admin_app`) on the node's localhost admin listener
(DESIGN.md "Shape of the code"). Its operations are declared once each, by concept:

* `gateway.admin.subsystems`: subsystems and how their client systems authenticate;
* `gateway.admin.services`: services, registering their descriptions, their backends;
* `gateway.admin.descriptions`: whole descriptions: listed, refreshed, moved to a new URL, enabled;
* `gateway.admin.access`: access rights and local groups;
* `gateway.admin.keys`: keys, CSRs and certificates;
* `gateway.admin.logs`: the security officer's reads of the message log;
* `gateway.admin.cache`: the interface cache's policies, entries, counters, purges and runs;
* `gateway.admin.maintenance`: maintenance mode (health 503 while the node drains);
* `gateway.admin.environment`: the node's machine, process, disks, versions and certificates;
* `gateway.admin.declarative`: every registration exported as one file and applied whole;
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
from typing import Any, Final

from aiohttp import web

from gateway.admin import (
    access,
    cache,
    declarative,
    descriptions,
    environment,
    keys,
    logs,
    maintenance,
    monitoring,
    services,
    subsystems,
)
from gateway.admin.context import (
    FETCH_FAILED,
    INVALID_DESCRIPTION,
    TABLE,
    UNAVAILABLE,
    WARNINGS_DETECTED,
    AdminContext,
    domain_error,
)
from gateway.admin.roles import MATRIX, Permission
from gateway.serverconf.repository import ServerConfRepository
from gateway.serverconf.wsdl import MAX_DESCRIPTION_BYTES
from gateway.webapi import INTERNAL_ERROR, ApiError, Guard, ManagementApi, Operation, dumps
from gateway.webapi import presented_key as presented_key
from gateway.webapi.errors import error_codes
from gateway.webapi.keys import declare_key_operations
from gateway.webapi.openapi import ApiInfo

log = logging.getLogger(__name__)

__all__ = ["OPERATIONS", "AdminContext", "make_admin_app", "openapi_document", "presented_key"]

_MODULES: Final = (
    subsystems,
    services,
    descriptions,
    access,
    keys,
    logs,
    cache,
    maintenance,
    monitoring,
    environment,
    declarative,
)  # each declares its operations on TABLE

MAX_REQUEST_BYTES: Final = 2 * MAX_DESCRIPTION_BYTES + 64 * 1024
"""The largest description we register, JSON-escaped (escaping at most doubles typical XML and
YAML), plus room for the other fields."""

API_VERSION: Final = "1.0.0"
ERRORS: Final = error_codes(INVALID_DESCRIPTION, FETCH_FAILED, UNAVAILABLE, WARNINGS_DETECTED)

_INTERNAL_ERROR: Final = ApiError(500, INTERNAL_ERROR, "internal error; the gateway's log has details")


async def _reload(ctx: AdminContext) -> None:
    if ctx.on_change is not None:
        ctx.on_change()


def _keys(ctx: AdminContext) -> ServerConfRepository:
    return ctx.repository


GUARD: Final = Guard(MATRIX, _keys, domain_error, _INTERNAL_ERROR, MAX_REQUEST_BYTES, _reload)
P = Permission
declare_key_operations(TABLE, _keys, MATRIX.roles, P.MANAGE_API_KEYS, P.READ_AUDIT_LOG, reconfigures=True)

API: Final = ManagementApi(
    ApiInfo(
        "xgate gateway management API", API_VERSION, __doc__ or "", "Whether the node is healthy.", ERRORS
    ),
    TABLE,
    GUARD,
)
OPERATIONS: Final[list[Operation]] = API.operations
"""Every operation of /api/v1."""


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.0 document of this API, from its operations' declarations."""
    return API.document


def make_admin_app(ctx: AdminContext) -> web.Application:
    """The management API, its OpenAPI description and the health check, as one application."""
    return API.application(ctx, _health_handler(ctx))


def _health_handler(ctx: AdminContext) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def health(request: web.Request) -> web.Response:
        """200 with status "ok", else 503: the verdict of the node's checks (gateway.proxy.health),
        the same as the [health] listener's, with the node's details beside it."""
        payload: dict[str, Any] = {"status": "ok"}
        if ctx.health is not None:
            try:
                payload.update(await asyncio.to_thread(ctx.health))
            except Exception:
                log.exception("health provider failed")
                payload["status"] = "error"
        return web.json_response(payload, status=200 if payload.get("status") == "ok" else 503, dumps=dumps)

    return health
