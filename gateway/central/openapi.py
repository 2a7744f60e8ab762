"""The OpenAPI 3.0 description of the registry's management API, served at ``GET /api/openapi.json``.

Built from the API's own operation table (method, path, permission, the handler's first
docstring line as summary) plus the schemas below, keyed by the operation's audit action:
a route cannot exist without being described, and an operation without a described answer
fails to build the document (the tests build it). ``x-permission`` names the permission an
operation needs; :mod:`gateway.central.roles` says which roles hold it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final, Protocol

OPENAPI_VERSION: Final = "3.0.3"
API_VERSION: Final = "1.0.0"

Schema = dict[str, Any]


class DescribedOperation(Protocol):
    """What the document needs to know of an operation (gateway.central.api.Operation)."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def permission(self) -> str: ...
    @property
    def summary(self) -> str: ...


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _string(description: str | None = None, **extra: Any) -> Schema:
    schema: Schema = {"type": "string", **extra}
    if description:
        schema["description"] = description
    return schema


def _nullable(schema: Schema) -> Schema:
    if "$ref" in schema:
        return {"allOf": [schema], "nullable": True}
    return {**schema, "nullable": True}


def _object(properties: dict[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def _array(item: Schema) -> Schema:
    return {"type": "array", "items": item}


def _list_of(key: str, item: str) -> Schema:
    return _object({key: _array(_ref(item))}, (key,))


_INTEGER: Final = {"type": "integer"}
_TIME: Final = _string(format="date-time")
_CLIENT: Final = _string("INSTANCE/CLASS/MEMBER[/SUBSYSTEM]")
_PEM: Final = _string("One PEM certificate.")

_SETTINGS_FIELDS: Final = (
    "ocsp_freshness_seconds",
    "timestamping_interval_seconds",
    "refresh_interval_seconds",
    "validity_seconds",
)

SCHEMAS: Final[dict[str, Schema]] = {
    "Error": _object(
        {
            "error": _string(
                "A stable code: validation_error, unauthorized, forbidden, not_found, conflict, "
                "method_not_allowed, payload_too_large, internal_error."
            ),
            "message": _string("What went wrong, for people."),
        },
        ("error", "message"),
    ),
    "CertificateSummary": _object(
        {
            "sha256": _string("Lower-case hex SHA-256 of the DER certificate."),
            "subject": _string(),
            "not_after": _TIME,
        },
        ("sha256", "subject", "not_after"),
    ),
    "MemberClass": _object({"code": _string(), "description": _string()}, ("code", "description")),
    "Member": _object(
        {
            "member_id": _CLIENT,
            "member_class": _string(),
            "member_code": _string(),
            "name": _string(),
            "subsystems": _array(_CLIENT),
            "security_servers": _array(_string("INSTANCE/CLASS/MEMBER/SERVER")),
        },
        ("member_id", "member_class", "member_code", "name", "subsystems", "security_servers"),
    ),
    "Subsystem": _object({"client_id": _CLIENT, "servers": _array(_string())}, ("client_id", "servers")),
    "SecurityServer": _object(
        {
            "server_id": _string("INSTANCE/CLASS/MEMBER/SERVER"),
            "owner": _CLIENT,
            "address": _string("host:port of the external (mutual TLS) interface."),
            "auth_certificates": _array(_ref("CertificateSummary")),
            "clients": _array(_CLIENT),
        },
        ("server_id", "owner", "address", "auth_certificates", "clients"),
    ),
    "TrustedCa": _object(
        {
            "name": _string(),
            "certificate": _ref("CertificateSummary"),
            "ocsp_responders": _array(
                _object({"url": _string(), "certificate": _nullable(_ref("CertificateSummary"))}, ("url",))
            ),
        },
        ("name", "certificate", "ocsp_responders"),
    ),
    "TimestampingAuthority": _object(
        {"name": _string(), "url": _string(), "certificate": _ref("CertificateSummary")},
        ("name", "url", "certificate"),
    ),
    "GlobalGroup": _object(
        {"code": _string(), "group_id": _string(), "description": _string(), "members": _array(_CLIENT)},
        ("code", "group_id", "description", "members"),
    ),
    "Settings": _object({name: _INTEGER for name in _SETTINGS_FIELDS}, _SETTINGS_FIELDS),
    "Request": _object(
        {
            "id": _string(),
            "type": _string(
                "auth_cert_registration, client_registration, address_change, client_deletion, "
                "server_deletion, subsystem_deletion or member_deletion."
            ),
            "state": _string(enum=["pending", "approved", "rejected"]),
            "member": _CLIENT,
            "server": _nullable(_string()),
            "client": _nullable(_CLIENT),
            "address": _nullable(_string()),
            "auth_certificate": _nullable(_ref("CertificateSummary")),
            "replaces": _nullable(_string("SHA-256 of the certificate this one replaces.")),
            "created_at": _TIME,
            "submitted_at": _TIME,
            "decided_at": _nullable(_TIME),
            "decided_by": _nullable(_string("The deciding API key's name#id.")),
            "reason": _nullable(_string()),
        },
        ("id", "type", "state", "member", "created_at", "submitted_at"),
    ),
    "SigningKey": _object(
        {
            "id": _INTEGER,
            "status": _string(enum=["standby", "active", "retired"]),
            "key_path": _string(),
            "passphrase_env": _nullable(_string()),
            "certificate": _ref("CertificateSummary"),
            "created_at": _TIME,
            "activated_at": _nullable(_TIME),
            "retired_at": _nullable(_TIME),
        },
        ("id", "status", "key_path", "certificate", "created_at"),
    ),
    "GlobalconfStatus": _object(
        {
            "instance": _string(),
            "version": _nullable(_INTEGER),
            "generated_at": _nullable(_TIME),
            "expires_at": _nullable(_TIME),
            "signer_sha256": _nullable(_string()),
            "anchor_certificates": _array(_string("SHA-256 of a verification certificate.")),
            "configuration_urls": _array(_string()),
            "last_error": _nullable(_string()),
        },
        ("instance", "anchor_certificates", "configuration_urls"),
    ),
    "ApiKey": _object(
        {
            "id": _INTEGER,
            "name": _string(),
            "role": _string(enum=["observer", "registration_officer", "registry_administrator"]),
            "created_at": _TIME,
            "revoked": {"type": "boolean"},
            "key": _string("Only in the answer to the creation: the key itself."),
        },
        ("id", "name", "role", "created_at", "revoked"),
    ),
    "AuditEntry": _object(
        {
            "id": _INTEGER,
            "at": _TIME,
            "actor": _string(),
            "action": _string(),
            "target": _string(),
            "details": _nullable({"type": "object"}),
            "result": _string(enum=["ok", "refused", "error"]),
        },
        ("id", "at", "actor", "action", "target", "result"),
    ),
}

_RESPONDERS: Final = _array(_object({"url": _string(), "certificate": _nullable(_PEM)}, ("url",)))

BODIES: Final[Mapping[str, Schema]] = {
    "member_class.add": _object({"code": _string(), "description": _string()}, ("code",)),
    "member_class.update": _object({"description": _string()}, ("description",)),
    "member.add": _object(
        {"member_class": _string(), "member_code": _string(), "name": _string()},
        ("member_class", "member_code", "name"),
    ),
    "member.rename": _object({"name": _string()}, ("name",)),
    "subsystem.add": _object({"client_id": _CLIENT}, ("client_id",)),
    "server.add": _object(
        {"server_id": _string(), "address": _string(), "auth_certificates": _array(_PEM)},
        ("server_id", "address", "auth_certificates"),
    ),
    "server.set_address": _object({"address": _string()}, ("address",)),
    "server.add_auth_cert": _object({"certificate": _PEM}, ("certificate",)),
    "server.add_client": _object({"client_id": _CLIENT}, ("client_id",)),
    "trusted_ca.add": _object(
        {"name": _string(), "certificate": _PEM, "ocsp_responders": _RESPONDERS}, ("name", "certificate")
    ),
    "trusted_ca.set_ocsp": _object({"ocsp_responders": _RESPONDERS}, ("ocsp_responders",)),
    "tsa.add": _object(
        {"name": _string(), "url": _string(), "certificate": _PEM}, ("name", "url", "certificate")
    ),
    "tsa.update": _object({"url": _string(), "certificate": _PEM}, ("url", "certificate")),
    "global_group.add": _object({"code": _string(), "description": _string()}, ("code",)),
    "global_group.update": _object({"description": _string()}, ("description",)),
    "global_group.add_member": _object({"client_id": _CLIENT}, ("client_id",)),
    "settings.update": _object({name: _INTEGER for name in _SETTINGS_FIELDS}),
    "request.approve": _object({"reason": _string()}),
    "request.reject": _object({"reason": _string()}, ("reason",)),
    "signing_key.add": _object(
        {
            "key_path": _string("The private key file on the registry's host."),
            "cert_path": _string("Its certificate file on the registry's host."),
            "passphrase_env": _string("Environment variable holding the key's passphrase, if encrypted."),
        },
        ("key_path", "cert_path"),
    ),
    "api_key.create": _object({"name": _string(), "role": _string()}, ("name", "role")),
}
"""Request bodies by action; an operation not listed takes none."""

_NO_CONTENT: Final = ("204", None)

RESPONSES: Final[Mapping[str, tuple[str, Schema | None]]] = {
    "member_class.list": ("200", _list_of("member_classes", "MemberClass")),
    "member_class.add": ("201", _ref("MemberClass")),
    "member_class.update": ("200", _ref("MemberClass")),
    "member_class.remove": _NO_CONTENT,
    "member.list": ("200", _list_of("members", "Member")),
    "member.add": ("201", _ref("Member")),
    "member.read": ("200", _ref("Member")),
    "member.rename": ("200", _ref("Member")),
    "member.remove": _NO_CONTENT,
    "subsystem.list": ("200", _list_of("subsystems", "Subsystem")),
    "subsystem.add": ("201", _ref("Subsystem")),
    "subsystem.remove": _NO_CONTENT,
    "server.list": ("200", _list_of("security_servers", "SecurityServer")),
    "server.add": ("201", _ref("SecurityServer")),
    "server.read": ("200", _ref("SecurityServer")),
    "server.remove": _NO_CONTENT,
    "server.set_address": ("200", _ref("SecurityServer")),
    "server.add_auth_cert": ("201", _ref("SecurityServer")),
    "server.remove_auth_cert": _NO_CONTENT,
    "server.add_client": ("201", _ref("SecurityServer")),
    "server.remove_client": _NO_CONTENT,
    "trusted_ca.list": ("200", _list_of("trusted_cas", "TrustedCa")),
    "trusted_ca.add": ("201", _ref("TrustedCa")),
    "trusted_ca.set_ocsp": ("200", _ref("TrustedCa")),
    "trusted_ca.remove": _NO_CONTENT,
    "tsa.list": ("200", _list_of("timestamping_authorities", "TimestampingAuthority")),
    "tsa.add": ("201", _ref("TimestampingAuthority")),
    "tsa.update": ("200", _ref("TimestampingAuthority")),
    "tsa.remove": _NO_CONTENT,
    "global_group.list": ("200", _list_of("global_groups", "GlobalGroup")),
    "global_group.add": ("201", _ref("GlobalGroup")),
    "global_group.update": ("200", _ref("GlobalGroup")),
    "global_group.remove": _NO_CONTENT,
    "global_group.add_member": ("201", _ref("GlobalGroup")),
    "global_group.remove_member": _NO_CONTENT,
    "settings.read": ("200", _ref("Settings")),
    "settings.update": ("200", _ref("Settings")),
    "request.list": ("200", _list_of("requests", "Request")),
    "request.read": ("200", _ref("Request")),
    "request.approve": ("200", _ref("Request")),
    "request.reject": ("200", _ref("Request")),
    "signing_key.list": ("200", _list_of("signing_keys", "SigningKey")),
    "signing_key.add": ("201", _ref("SigningKey")),
    "signing_key.activate": ("200", _ref("SigningKey")),
    "signing_key.retire": ("200", _ref("SigningKey")),
    "globalconf.status": ("200", _ref("GlobalconfStatus")),
    "globalconf.publish": ("202", _object({"requested": {"type": "boolean"}})),
    "api_key.list": ("200", _list_of("api_keys", "ApiKey")),
    "api_key.create": ("201", _ref("ApiKey")),
    "api_key.revoke": _NO_CONTENT,
    "audit_log.read": (
        "200",
        _object({"entries": _array(_ref("AuditEntry")), "next_before_id": _nullable(_INTEGER)}, ("entries",)),
    ),
}

PATH_PARAMETERS: Final[Mapping[str, str]] = {
    "code": "A member class's or a global group's code.",
    "member_id": "The member as INSTANCE:CLASS:MEMBER (X-Road's path form).",
    "client_id": "A subsystem (or member) as INSTANCE:CLASS:MEMBER[:SUBSYSTEM].",
    "server_id": "The security server as INSTANCE:CLASS:MEMBER:SERVER.",
    "sha256": "A certificate's SHA-256 in lower-case hex.",
    "name": "The CA's or TSA's name (URL-encoded).",
    "request_id": "The request's id, as its submission answered.",
    "key_id": "The numeric id of the key.",
}

QUERY_PARAMETERS: Final[Mapping[str, tuple[tuple[str, str], ...]]] = {
    "request.list": (
        ("state", "pending, approved or rejected"),
        ("limit", "At most this many (1000 at most)."),
    ),
    "audit_log.read": (
        ("actor", "Only entries by this actor (name#id)."),
        ("action", "Only entries of this action, e.g. request.approve."),
        ("before_id", "Entries older than this id: the previous page's next_before_id."),
        ("limit", "At most this many (1000 at most)."),
    ),
}

_ERRORS: Final = {
    "400": "The request is invalid; `message` says why.",
    "401": "No API key, or not a valid one. Refusals are audited with actor `anonymous`.",
    "403": "The key's role lacks the operation's permission. Refusals are audited.",
    "404": "The named thing does not exist.",
    "409": "The change clashes with what is registered, or the request is decided already.",
}

_PATH_PARAMETER = re.compile(r"\{(\w+)\}")


def _json(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _describe(operation: DescribedOperation) -> dict[str, Any]:
    status, answer = RESPONSES[operation.action]
    responses: dict[str, Any] = {status: {"description": "Done."}}
    if answer is not None:
        responses[status]["content"] = _json(answer)
    for code, text in _ERRORS.items():
        responses[code] = {"description": text, "content": _json(_ref("Error"))}
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": PATH_PARAMETERS[name],
            "schema": _string(),
        }
        for name in _PATH_PARAMETER.findall(operation.path)
    ]
    parameters += [
        {"name": name, "in": "query", "required": False, "description": text, "schema": _string()}
        for name, text in QUERY_PARAMETERS.get(operation.action, ())
    ]
    described: dict[str, Any] = {
        "operationId": operation.action.replace(".", "_"),
        "summary": operation.summary,
        "tags": [operation.action.split(".")[0]],
        "x-permission": str(operation.permission),
        "responses": responses,
    }
    if parameters:
        described["parameters"] = parameters
    if operation.action in BODIES:
        described["requestBody"] = {"required": True, "content": _json(BODIES[operation.action])}
    return described


def openapi_document(operations: Iterable[DescribedOperation], prefix: str) -> dict[str, Any]:
    """The whole document for `operations` mounted under `prefix`, plus the health check."""
    paths: dict[str, dict[str, Any]] = {}
    for operation in operations:
        paths.setdefault(prefix + operation.path, {})[operation.method.lower()] = _describe(operation)
    paths["/health"] = {
        "get": {
            "operationId": "health",
            "summary": "Whether a configuration is published and unexpired (no API key needed).",
            "tags": ["health"],
            "security": [],
            "responses": {"200": {"description": "Healthy."}, "503": {"description": "Not healthy."}},
        }
    }
    paths["/api/openapi.json"] = {
        "get": {
            "operationId": "openapi",
            "summary": "This document (no API key needed).",
            "tags": ["health"],
            "security": [],
            "responses": {"200": {"description": "The OpenAPI document."}},
        }
    }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "xgate central registry management API",
            "version": API_VERSION,
            "description": (
                "Manage the federation's registry: member classes, members, subsystems, security servers, "
                "trusted CAs, TSAs, global groups, settings, registration requests, configuration-signing "
                "keys, API keys and the audit log. Every change and every refused call is audited."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"XRoadApiKey": []}, {"ApiKeyHeader": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "XRoadApiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "X-Road's convention: `Authorization: X-Road-ApiKey token=KEY`.",
                },
                "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
            "schemas": SCHEMAS,
        },
    }
