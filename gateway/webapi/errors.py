"""The JSON error answer every management API gives: ``{"error", "message"}`` with a stable code.

Errors raised anywhere under an operation, or by aiohttp's router (unknown route, wrong method,
body too large), end up in this one shape; nothing answers with a stack trace. An unforeseen
failure answers a generic 500 with an incident id (`"id"`, also in the message); the exception
is logged under the same id on the server only (:func:`incident`).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import ValidationError

from gateway.webapi.types import PATTERN_MEANINGS

log = logging.getLogger(__name__)

AUTH_SCHEME: Final = "X-Road-ApiKey"
"""X-Road's management API scheme: ``Authorization: X-Road-ApiKey token=KEY``."""

COMMON_CODES: Final = (
    "validation_error",  # 400: the request breaks the document's rules; the message names each field
    "unauthorized",  # 401: no API key, or not a valid one
    "forbidden",  # 403: the key's role lacks the operation's permission
    "not_found",  # 404: no such route, or the thing named is not registered
    "conflict",  # 409: the change clashes with what is registered
    "method_not_allowed",  # 405: the route takes other methods (the Allow header lists them)
    "payload_too_large",  # 413: the body is larger than the API takes
    "internal_error",  # 500: something unforeseen; the server's log has details, the answer none
)
"""The error codes of the JSON error body every API answers with (and the status each goes with)."""
(
    VALIDATION_ERROR,
    UNAUTHORIZED,
    FORBIDDEN,
    NOT_FOUND,
    CONFLICT,
    METHOD_NOT_ALLOWED,
    PAYLOAD_TOO_LARGE,
    INTERNAL_ERROR,
) = COMMON_CODES

INCIDENT_ID_BYTES: Final = 8
"""64 random bits: enough to find one failure in the server's log, too few to be worth guessing."""

MAX_REPORTED_PROBLEMS: Final = 5
"""A validation answer names this many problems at most: enough to fix a request, short to read."""


class ApiError(Exception):
    """A request the API answers with an error: HTTP status, error code, message for people."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        incident: str | None = None,
        warnings: Sequence[Mapping[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.incident = incident  # a 5xx's id in the server's log (incident())
        # What the caller must acknowledge before repeating the call ({"code", "message"} each):
        # X-Road's warnings step (`warnings_detected`), or what a change would remove.
        self.warnings = tuple(warnings)


def incident(error: ApiError, exc: BaseException, what: str) -> ApiError:
    """`error` with a fresh incident id, and `exc` logged under that id, server-side only.

    The caller gets the generic message and the id; the exception's text and traceback, which
    may name library internals, files or data, stay in the log.
    """
    incident_id = secrets.token_hex(INCIDENT_ID_BYTES)
    log.error("%s failed (incident %s)", what, incident_id, exc_info=exc)
    return ApiError(
        error.status, error.code, f"{error.message} (incident {incident_id})", incident=incident_id
    )


def invalid(message: str) -> ApiError:
    return ApiError(400, VALIDATION_ERROR, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, NOT_FOUND, message)


def validation_failure(error: ValidationError, where: str) -> ApiError:
    """A 400 naming each field that failed (``body.client_id: ...``), as pydantic explains it."""
    problems = []
    for item in error.errors(include_url=False)[:MAX_REPORTED_PROBLEMS]:
        location = ".".join(str(part) for part in (where, *item["loc"]))
        message = item["msg"]
        pattern = (item.get("ctx") or {}).get("pattern")
        if item["type"] == "string_pattern_mismatch" and pattern is not None:
            message = f"must be {PATTERN_MEANINGS.get(pattern, 'of the form ' + repr(pattern))}"
        elif item["type"] in ("enum", "literal_error"):
            expected = str((item.get("ctx") or {}).get("expected", "")).replace("'", "").replace(" or ", ", ")
            message = f"must be one of {expected}"
        problems.append(f"{location}: {message}")
    more = len(error.errors()) - MAX_REPORTED_PROBLEMS
    if more > 0:
        problems.append(f"and {more} more")
    return invalid("; ".join(problems))


ErrorRule = tuple[type[Exception] | tuple[type[Exception], ...], int, str]
"""Exceptions of these types answer this HTTP status with this error code."""


def domain_errors(*rules: ErrorRule) -> Callable[[Exception], ApiError | None]:
    """The JSON error a domain exception becomes, by the first rule its type matches (list
    subclasses first); None for an exception no rule names (a 500). The message is the
    exception's `message` attribute where it has one, else its text."""

    def convert(exc: Exception) -> ApiError | None:
        for kinds, status, code in rules:
            if isinstance(exc, kinds):
                return ApiError(status, code, getattr(exc, "message", None) or str(exc))
        return None

    return convert


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def json_response(body: Any, status: int = 200) -> web.Response:
    if body is None:
        return web.Response(status=204)
    return web.json_response(body, status=status, dumps=dumps)


def error_response(error: ApiError) -> web.Response:
    body: dict[str, Any] = {"error": error.code, "message": error.message}
    if error.incident is not None:
        body["id"] = error.incident
    if error.warnings:
        body["warnings"] = [dict(warning) for warning in error.warnings]
    response = web.json_response(body, status=error.status)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = AUTH_SCHEME
    return response


def errors_as_json(internal_error: ApiError) -> Middleware:
    """A middleware answering errors outside an operation (unknown route, wrong method, body too
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
        except Exception as exc:
            return error_response(incident(internal_error, exc, f"request {request.method} {request.path}"))

    return middleware


def error_codes(*extra: str) -> Sequence[str]:
    """The codes an API's error answers carry: the common ones and its own."""
    return (*COMMON_CODES, *extra)
