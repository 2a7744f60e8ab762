"""One management API as a whole: its description, operations and guard, its application and document."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Generic

from aiohttp import web

from gateway.webapi.errors import errors_as_json
from gateway.webapi.openapi import ApiInfo, openapi_document
from gateway.webapi.operations import (
    API_PREFIX,
    HEALTH_PATH,
    OPENAPI_PATH,
    Ctx,
    Guard,
    Operation,
    OperationTable,
    guarded,
)

WebHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def api_application(
    guard: Guard[Ctx],
    ctx: Ctx,
    operations: Iterable[Operation],
    *,
    document: Callable[[], Mapping[str, Any]],
    health: WebHandler,
) -> web.Application:
    """An API's application: its operations under API_PREFIX, each behind the guard, its OpenAPI
    document and health check, every error as JSON."""
    app = web.Application(
        client_max_size=guard.max_request_bytes, middlewares=[errors_as_json(guard.internal_error)]
    )
    for operation in operations:
        app.router.add_route(operation.method, API_PREFIX + operation.path, guarded(guard, ctx, operation))

    async def serve_document(request: web.Request) -> web.Response:
        return web.json_response(document())

    app.router.add_get(OPENAPI_PATH, serve_document)
    app.router.add_get(HEALTH_PATH, health)
    return app


@dataclass
class ManagementApi(Generic[Ctx]):
    """A management API: what its document says of it, its operations, the guard they pass."""

    info: ApiInfo
    table: OperationTable
    guard: Guard[Ctx]

    @property
    def operations(self) -> list[Operation]:
        return self.table.operations

    @cached_property
    def document(self) -> dict[str, Any]:
        """The OpenAPI 3.0 document, from the operations' declarations (built once)."""
        return openapi_document(self.info, self.operations, self.guard.roles)

    def application(self, ctx: Ctx, health: WebHandler) -> web.Application:
        return api_application(
            self.guard, ctx, self.operations, document=lambda: self.document, health=health
        )
