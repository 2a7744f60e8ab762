"""The framework of xgate's JSON management APIs: the gateway's (`gateway.admin`) and the registry's
(`gateway.central`).

Each operation is declared once (`operations.Operation`: method, path, permission, pydantic
models of its parameters, body and answer); from that come its route, the guard every call
passes (API key, role, validation, audit), and the OpenAPI document (`openapi`). One roles model
(`roles.RoleMatrix`) serves both APIs, each with its own role names; the API-key and audit-log
operations both have are declared once (`keys`).
"""

from gateway.webapi.application import HEALTH_PATH, OPENAPI_PATH, ManagementApi, api_application
from gateway.webapi.callers import (
    ANONYMOUS,
    API_KEY_HEADER,
    Caller,
    audit_quietly,
    authenticate,
    authorize,
    presented_key,
    refusal_details,
)
from gateway.webapi.errors import (
    AUTH_SCHEME,
    CONFLICT,
    FORBIDDEN,
    INTERNAL_ERROR,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    PAYLOAD_TOO_LARGE,
    UNAUTHORIZED,
    VALIDATION_ERROR,
    ApiError,
    dumps,
    error_response,
    errors_as_json,
    invalid,
    json_response,
    not_found,
)
from gateway.webapi.operations import API_PREFIX, Call, Guard, Operation, OperationTable, Outcome

__all__ = [
    "ANONYMOUS",
    "API_KEY_HEADER",
    "API_PREFIX",
    "AUTH_SCHEME",
    "CONFLICT",
    "FORBIDDEN",
    "HEALTH_PATH",
    "INTERNAL_ERROR",
    "METHOD_NOT_ALLOWED",
    "NOT_FOUND",
    "OPENAPI_PATH",
    "PAYLOAD_TOO_LARGE",
    "UNAUTHORIZED",
    "VALIDATION_ERROR",
    "ApiError",
    "Call",
    "Caller",
    "Guard",
    "ManagementApi",
    "Operation",
    "OperationTable",
    "Outcome",
    "api_application",
    "audit_quietly",
    "authenticate",
    "authorize",
    "dumps",
    "error_response",
    "errors_as_json",
    "invalid",
    "json_response",
    "not_found",
    "presented_key",
    "refusal_details",
]
