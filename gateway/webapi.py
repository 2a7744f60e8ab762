"""What xgate's JSON management APIs share: API-key callers, JSON errors, request reading, auditing.

The gateway's management API (`gateway.admin.api`) and the central registry's
(`gateway.central.api`) follow one convention: the caller presents an API key
(``Authorization: X-Road-ApiKey token=KEY``, X-Road's own scheme, or ``X-API-Key: KEY``), its
role is checked against the operation's permission, and every error is a JSON body
``{"error", "message"}`` with a stable code. Each API keeps its own operations, roles and guard;
the pieces of that convention live here once.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway.adminstore import ApiKey, AuditResult
from gateway.ids import ClientId

log = logging.getLogger(__name__)

API_PREFIX: Final = "/api/v1"
OPENAPI_PATH: Final = "/api/openapi.json"
HEALTH_PATH: Final = "/health"

AUTH_SCHEME: Final = "X-Road-ApiKey"
"""X-Road's management API scheme: ``Authorization: X-Road-ApiKey token=KEY``."""
API_KEY_HEADER: Final = "X-API-Key"
ANONYMOUS: Final = "anonymous"
"""The audit log's actor for a caller without a valid key."""

# Error codes of the JSON error body.
VALIDATION_ERROR: Final = "validation_error"
UNAUTHORIZED: Final = "unauthorized"
FORBIDDEN: Final = "forbidden"
NOT_FOUND: Final = "not_found"
CONFLICT: Final = "conflict"
METHOD_NOT_ALLOWED: Final = "method_not_allowed"
PAYLOAD_TOO_LARGE: Final = "payload_too_large"
INTERNAL_ERROR: Final = "internal_error"

_R = TypeVar("_R", bound=enum.Enum)
_P = TypeVar("_P")


class ApiError(Exception):
    """A request the API answers with an error: HTTP status, error code, message for people."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Caller(Generic[_R]):
    """The holder of a valid API key."""

    key_id: int
    name: str
    role: _R | None  # None: a role this version does not know, which grants nothing

    @property
    def actor(self) -> str:
        """How the audit log names the caller: the key's name and id (names need not be unique)."""
        return f"{self.name}#{self.key_id}"


@dataclass(frozen=True)
class Outcome:
    """What an operation answers; `target` and `details` go into the audit log for changes."""

    body: Any = None  # None answers 204 No Content
    status: int = 200
    target: str | None = None
    details: Mapping[str, Any] | None = None


# --- callers ------------------------------------------------------------------------------------


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The API key in the request headers, if one is given in a form we accept."""
    authorization = headers.get("Authorization")
    if authorization is not None:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() == AUTH_SCHEME.lower():
            name, equals, token = credentials.strip().partition("=")
            return token.strip() if equals and name.strip().lower() == "token" and token.strip() else None
    key = headers.get(API_KEY_HEADER)
    return key.strip() if key and key.strip() else None


async def authenticate(
    request: web.Request, verify: Callable[[str], ApiKey | None], roles: type[_R]
) -> Caller[_R]:
    """The caller behind the request's API key (checked by `verify` in a worker thread), or 401."""
    key = presented_key(request.headers)
    if key is None:
        raise ApiError(401, UNAUTHORIZED, f"an API key is required: Authorization: {AUTH_SCHEME} token=KEY")
    record = await asyncio.to_thread(verify, key)
    if record is None:
        raise ApiError(401, UNAUTHORIZED, "the API key is not valid or has been revoked")
    role: _R | None
    try:
        role = roles(record.role)
    except ValueError:
        role = None
    return Caller(record.id, record.name, role)


def authorize(caller: Caller[_R], permission: _P, is_permitted: Callable[[_R, _P], bool]) -> None:
    """403 unless the caller's role holds `permission`."""
    if caller.role is None or not is_permitted(caller.role, permission):
        raise ApiError(403, FORBIDDEN, f"role {caller.role or 'unknown'} lacks permission {permission}")


# --- the application ----------------------------------------------------------------------------

WebHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def api_application(
    *,
    max_request_bytes: int,
    internal_error: ApiError,
    operations: Iterable[tuple[str, str, WebHandler]],
    openapi: WebHandler,
    health: WebHandler,
) -> web.Application:
    """An API's application: its (method, path, guarded handler) operations under API_PREFIX, its
    OpenAPI document and health check, every error as JSON."""
    app = web.Application(client_max_size=max_request_bytes, middlewares=[errors_as_json(internal_error)])
    for method, path, handler in operations:
        app.router.add_route(method, API_PREFIX + path, handler)
    app.router.add_get(OPENAPI_PATH, openapi)
    app.router.add_get(HEALTH_PATH, health)
    return app


# --- answers ------------------------------------------------------------------------------------


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def json_response(body: Any, status: int = 200) -> web.Response:
    if body is None:
        return web.Response(status=204)
    return web.json_response(body, status=status, dumps=dumps)


def error_response(error: ApiError) -> web.Response:
    response = web.json_response({"error": error.code, "message": error.message}, status=error.status)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = AUTH_SCHEME
    return response


def errors_as_json(internal_error: ApiError) -> Middleware:
    """A middleware answering errors outside the guard (unknown route, wrong method, body too
    large) as JSON too, never a stack trace; anything unforeseen becomes `internal_error`."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            codes = {404: NOT_FOUND, 405: METHOD_NOT_ALLOWED, 413: PAYLOAD_TOO_LARGE}
            error = ApiError(exc.status, codes.get(exc.status, VALIDATION_ERROR), exc.reason)
            response = error_response(error)
            if exc.status == 405 and "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
            return response
        except Exception:
            log.exception("request %s %s failed", request.method, request.path)
            return error_response(internal_error)

    return middleware


# --- the audit log ------------------------------------------------------------------------------


def refusal_details(error: ApiError) -> tuple[dict[str, Any], AuditResult]:
    """What the audit log keeps of an error answer: refused below 500, failed from 500 on."""
    details = {"status": error.status, "error": error.code, "message": error.message}
    return details, AuditResult.REFUSED if error.status < 500 else AuditResult.ERROR


async def audit_quietly(
    write: Callable[[str, str, str, Mapping[str, Any] | None, AuditResult], object],
    actor: str,
    action: str,
    target: str,
    details: Mapping[str, Any] | None,
    result: AuditResult,
) -> None:
    """Write one audit entry in a worker thread; a failure to write is logged, never hides the answer."""
    try:
        await asyncio.to_thread(write, actor, action, target, details, result)
    except Exception:
        log.exception("could not audit %s %s by %s (%s)", action, target, actor, result)


# --- request reading ----------------------------------------------------------------------------


def invalid(message: str) -> ApiError:
    return ApiError(400, VALIDATION_ERROR, message)


async def json_body(request: web.Request, max_bytes: int) -> dict[str, Any]:
    """The request's JSON object; an empty body is an empty object. `max_bytes` is the
    application's client_max_size, named in the 413 answer."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, PAYLOAD_TOO_LARGE, f"request bodies are limited to {max_bytes} bytes") from None
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise invalid("the request body is not JSON") from None
    if not isinstance(value, dict):
        raise invalid("the request body must be a JSON object")
    return value


def optional_text(body: Mapping[str, Any], name: str, max_length: int | None = None) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(f"{name} must be a string")
    if max_length is not None and len(value) > max_length:
        raise invalid(f"{name} is longer than {max_length} characters")
    return value


def required_text(body: Mapping[str, Any], name: str, max_length: int | None = None) -> str:
    value = optional_text(body, name, max_length)
    if not value:
        raise invalid(f"{name} is required")
    return value


def query_int(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise invalid(f"query parameter {name} must be an integer") from None


def client_id_from_path(segment: str) -> ClientId:
    """A client from its path form ``INSTANCE:CLASS:MEMBER[:SUBSYSTEM]``.

    X-Road's management API writes identifiers in paths with colons: codes never hold one
    (PROTOCOL.md "Identifiers"), so no escaping is needed beyond URL encoding.
    """
    parts = segment.split(":")
    if len(parts) not in (3, 4):
        raise invalid(f"{segment!r} is not a client identifier INSTANCE:CLASS:MEMBER[:SUBSYSTEM]")
    return ClientId(*parts)
