"""Each operation of a management API declared once; routes, checks, audit and document follow.

An :class:`Operation` names its method and path, its audit action, the permission it needs, the
pydantic models of its parameters, body and answer, and its handler. From that one declaration:

* the aiohttp route (`gateway.webapi.application`);
* the guard every call passes: authentication by API key, the role check, validation of the
  parameters and the body (a 400 naming each bad field), the handler, domain errors as JSON
  errors, the audit log, and the API's "something changed" hook;
* the OpenAPI document (`gateway.webapi.openapi`), with the constraints the guard enforces.
"""

from __future__ import annotations

import enum
import logging
import re
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway.adminstore import AuditResult
from gateway.webapi.callers import (
    ANONYMOUS,
    Caller,
    KeyStore,
    audit_quietly,
    authenticate,
    authorize,
    refusal_details,
)
from gateway.webapi.errors import (
    PAYLOAD_TOO_LARGE,
    ApiError,
    error_response,
    incident,
    invalid,
    json_response,
    validation_failure,
)
from gateway.webapi.roles import RoleMatrix

Ctx = TypeVar("Ctx")
_P = TypeVar("_P")
_B = TypeVar("_B")

log = logging.getLogger(__name__)

API_PREFIX: Final = "/api/v1"
"""Where every operation's path starts."""
OPENAPI_PATH: Final = "/api/openapi.json"
"""Where the API's document is served, without a key."""
HEALTH_PATH: Final = "/health"
"""Where monitors ask, without a key."""

_PATH_PARAMETER: Final = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Outcome:
    """What an operation answers; `target` and `details` go into the audit log for changes."""

    body: Any = None  # None answers 204 No Content
    status: int = 200
    target: str | None = None
    details: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Call(Generic[_P, _B]):
    """One validated call: its caller, parameters (path and query) and body, as the models read them."""

    request: web.Request
    caller: Caller[Any]
    params: _P
    body: _B


Handler = Callable[[Any, Call[Any, Any]], Awaitable[Outcome]]


@dataclass(frozen=True)
class Operation:
    """One endpoint of an API, declared once."""

    method: str
    path: str  # under API_PREFIX
    action: str  # the audit log's action and the document's operationId
    permission: enum.StrEnum
    handler: Handler
    summary: str
    tag: str
    params: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    response: Any = None  # a model or type for the answer; None: 204 No Content
    status: int = 200
    description: str | None = None
    audit_reads: bool = False
    """Audit this read like a change: who looked at what (the message log's personal data)."""
    reconfigures: bool = True
    """A successful change tells the API's owner to reload or republish (only for changes)."""
    errors: tuple[int, ...] = (400, 401, 403, 404)

    @property
    def changes(self) -> bool:
        return self.method != "GET"

    @property
    def audited(self) -> bool:
        return self.changes or self.audit_reads

    @property
    def path_parameters(self) -> list[str]:
        return _PATH_PARAMETER.findall(self.path)


_READ_ERRORS: Final = (400, 401, 403, 404)
_CHANGE_ERRORS: Final = (400, 401, 403, 404, 409)


def _call_models(handler: Any) -> tuple[type[BaseModel] | None, type[BaseModel] | None]:
    """The parameter and body models a handler's `call: Call[Params, Body]` annotation names."""
    hint = typing.get_type_hints(handler).get("call")
    models = [
        model if isinstance(model, type) and issubclass(model, BaseModel) else None
        for model in typing.get_args(hint)
    ]
    return (models[0], models[1]) if len(models) == 2 else (None, None)


@dataclass
class OperationTable:
    """An API's operations, filled by :meth:`operation` (or its shorthands) as its modules load.

    The parameter and body models are those of the handler's ``call: Call[Params, Body]``
    annotation, so each is written once."""

    operations: list[Operation] = field(default_factory=list)

    def operation(
        self,
        method: str,
        path: str,
        action: str,
        permission: enum.StrEnum,
        response: Any = None,
        *,
        status: int | None = None,
        body: type[BaseModel] | None = None,
        summary: str | None = None,
        description: str | None = None,
        audit_reads: bool = False,
        reconfigures: bool = True,
        errors: Sequence[int] | None = None,
    ) -> Callable[[Any], Any]:
        """Declare the decorated handler as operation `action` at `method` `path`, answering
        `response` (a model; None: 204 No Content)."""

        def register(handler: Any) -> Any:
            params, annotated_body = _call_models(handler)
            unread = set(_PATH_PARAMETER.findall(path)) - set(params.model_fields if params else ())
            if unread:
                raise TypeError(f"{action}: the parameter model does not read {sorted(unread)} of {path}")
            docstring = (handler.__doc__ or "").strip()
            self.operations.append(
                Operation(
                    method=method,
                    path=path,
                    action=action,
                    permission=permission,
                    handler=handler,
                    summary=summary or (docstring.splitlines() or [action])[0].rstrip("."),
                    tag=action.split(".")[0],
                    params=params,
                    body=body or annotated_body,
                    response=response,
                    status=status or (204 if response is None else 200),
                    description=description,
                    audit_reads=audit_reads,
                    reconfigures=reconfigures,
                    errors=tuple(errors or (_READ_ERRORS if method == "GET" else _CHANGE_ERRORS)),
                )
            )
            return handler

        return register

    def read(self, path: str, action: str, permission: enum.StrEnum, response: Any, **options: Any) -> Any:
        """A GET answering `response`."""
        return self.operation("GET", path, action, permission, response, **options)

    def create(self, path: str, action: str, permission: enum.StrEnum, response: Any, **options: Any) -> Any:
        """A POST answering 201 Created with `response`."""
        return self.operation("POST", path, action, permission, response, status=201, **options)

    def change(
        self, method: str, path: str, action: str, permission: enum.StrEnum, response: Any, **options: Any
    ) -> Any:
        """A POST, PUT or PATCH answering 200 with `response`."""
        return self.operation(method, path, action, permission, response, **options)

    def delete(self, path: str, action: str, permission: enum.StrEnum, **options: Any) -> Any:
        """A DELETE answering 204 No Content."""
        return self.operation("DELETE", path, action, permission, **options)

    def __iter__(self) -> Any:
        return iter(self.operations)


@dataclass(frozen=True)
class Guard(Generic[Ctx]):
    """What the guard needs to know of one API: its roles, its keys, its domain errors."""

    roles: RoleMatrix[Any, Any]
    keys: Callable[[Ctx], KeyStore]
    domain_error: Callable[[Exception], ApiError | None]
    """The JSON error a domain exception becomes; None for an unforeseen one (a 500)."""
    internal_error: ApiError
    max_request_bytes: int
    after_change: Callable[[Ctx], Awaitable[None]]
    """Called after each successful change of an operation that `reconfigures`."""


# --- reading a call -------------------------------------------------------------------------


def _query(request: web.Request) -> dict[str, str | list[str]]:
    query: dict[str, str | list[str]] = {}
    for name in dict.fromkeys(request.query.keys()):
        values = request.query.getall(name)
        query[name] = values[0] if len(values) == 1 else values
    return query


def read_params(operation: Operation, request: web.Request) -> Any:
    """The path and query parameters as the operation's model reads them; unknown ones are refused."""
    query = _query(request)
    if operation.params is None:
        if query:
            raise invalid(f"unknown parameters {sorted(query)}: this operation takes none")
        return None
    values: dict[str, Any] = {**query, **request.match_info}
    try:
        return operation.params.model_validate(values)
    except ValidationError as exc:
        raise validation_failure(exc, "parameters") from None


async def read_body(operation: Operation, request: web.Request, max_bytes: int) -> Any:
    """The JSON body as the operation's model reads it; an empty body is an empty object."""
    if operation.body is None:
        return None
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, PAYLOAD_TOO_LARGE, f"request bodies are limited to {max_bytes} bytes") from None
    try:
        return operation.body.model_validate_json(raw if raw.strip() else b"{}")
    except ValidationError as exc:
        if any(item["type"] == "json_invalid" for item in exc.errors()):
            raise invalid("the request body is not JSON") from None
        if any(item["type"] == "model_type" and not item["loc"] for item in exc.errors()):
            raise invalid("the request body must be a JSON object") from None
        raise validation_failure(exc, "body") from None


# --- the guard ------------------------------------------------------------------------------


def _with_query(
    operation: Operation, request: web.Request, details: Mapping[str, Any] | None
) -> Mapping[str, Any] | None:
    """An audited read's entry names what was asked for: its query parameters, as given."""
    if not operation.audit_reads:
        return details
    return {**(details or {}), "query": _query(request)}


def _as_api_error(guard: Guard[Any], exc: Exception) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    return guard.domain_error(exc) or guard.internal_error


def guarded(
    guard: Guard[Ctx], ctx: Ctx, operation: Operation
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The operation behind authentication, authorisation, validation, error mapping and audit."""
    keys = guard.keys(ctx)

    async def audit(actor: str, target: str, details: Mapping[str, Any] | None, result: AuditResult) -> None:
        await audit_quietly(keys.audit, actor, operation.action, target, details, result)

    async def handle(request: web.Request) -> web.Response:
        actor = ANONYMOUS
        try:
            caller = await authenticate(request, keys.verify_api_key, guard.roles.roles)
            actor = caller.actor
            authorize(caller, operation.permission, guard.roles.is_permitted)
            params = read_params(operation, request)
            body = await read_body(operation, request, guard.max_request_bytes)
            outcome = await operation.handler(ctx, Call(request, caller, params, body))
        except Exception as exc:
            error = _as_api_error(guard, exc)
            if error.status >= 500:
                error = incident(error, exc, f"management API operation {operation.action}")
            if operation.audited or error.status in (401, 403):
                details, result = refusal_details(error)
                await audit(actor, request.path, _with_query(operation, request, details), result)
            return error_response(error)
        if operation.audited:
            done = _with_query(operation, request, outcome.details)
            await audit(actor, outcome.target or request.path, done, AuditResult.OK)
        if operation.changes and operation.reconfigures:
            try:
                await guard.after_change(ctx)
            except Exception:
                log.exception("after a change by %s: the change hook failed", operation.action)
        return json_response(outcome.body, outcome.status)

    return handle
