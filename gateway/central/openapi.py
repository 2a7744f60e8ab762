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

from gateway.apidoc import (
    Schema,
    api_document,
    array,
    error_schema,
    list_of,
    nullable,
    object_of,
    operation_object,
    path_parameter,
    query_parameter,
    ref,
    string,
)

API_VERSION: Final = "1.0.0"


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


_INTEGER: Final = {"type": "integer"}
_TIME: Final = string(format="date-time")
_CLIENT: Final = string("INSTANCE/CLASS/MEMBER[/SUBSYSTEM]")
_PEM: Final = string("One PEM certificate.")

_SETTINGS_FIELDS: Final = (
    "ocsp_freshness_seconds",
    "timestamping_interval_seconds",
    "refresh_interval_seconds",
    "validity_seconds",
)

SCHEMAS: Final[dict[str, Schema]] = {
    "Error": error_schema(
        (
            "validation_error",
            "unauthorized",
            "forbidden",
            "not_found",
            "conflict",
            "method_not_allowed",
            "payload_too_large",
            "internal_error",
        )
    ),
    "CertificateSummary": object_of(
        {
            "sha256": string("Lower-case hex SHA-256 of the DER certificate."),
            "subject": string(),
            "not_after": _TIME,
        },
        ("sha256", "subject", "not_after"),
    ),
    "MemberClass": object_of({"code": string(), "description": string()}, ("code", "description")),
    "Member": object_of(
        {
            "member_id": _CLIENT,
            "member_class": string(),
            "member_code": string(),
            "name": string(),
            "subsystems": array(_CLIENT),
            "security_servers": array(string("INSTANCE/CLASS/MEMBER/SERVER")),
        },
        ("member_id", "member_class", "member_code", "name", "subsystems", "security_servers"),
    ),
    "Subsystem": object_of({"client_id": _CLIENT, "servers": array(string())}, ("client_id", "servers")),
    "SecurityServer": object_of(
        {
            "server_id": string("INSTANCE/CLASS/MEMBER/SERVER"),
            "owner": _CLIENT,
            "address": string("host:port of the external (mutual TLS) interface."),
            "auth_certificates": array(ref("CertificateSummary")),
            "clients": array(_CLIENT),
        },
        ("server_id", "owner", "address", "auth_certificates", "clients"),
    ),
    "TrustedCa": object_of(
        {
            "name": string(),
            "certificate": ref("CertificateSummary"),
            "ocsp_responders": array(
                object_of({"url": string(), "certificate": nullable(ref("CertificateSummary"))}, ("url",))
            ),
        },
        ("name", "certificate", "ocsp_responders"),
    ),
    "TimestampingAuthority": object_of(
        {"name": string(), "url": string(), "certificate": ref("CertificateSummary")},
        ("name", "url", "certificate"),
    ),
    "GlobalGroup": object_of(
        {"code": string(), "group_id": string(), "description": string(), "members": array(_CLIENT)},
        ("code", "group_id", "description", "members"),
    ),
    "Settings": object_of({name: _INTEGER for name in _SETTINGS_FIELDS}, _SETTINGS_FIELDS),
    "Request": object_of(
        {
            "id": string(),
            "type": string(
                "auth_cert_registration, client_registration, address_change, client_deletion, "
                "server_deletion, subsystem_deletion or member_deletion."
            ),
            "state": string(enum=["pending", "approved", "rejected"]),
            "member": _CLIENT,
            "server": nullable(string()),
            "client": nullable(_CLIENT),
            "address": nullable(string()),
            "auth_certificate": nullable(ref("CertificateSummary")),
            "replaces": nullable(string("SHA-256 of the certificate this one replaces.")),
            "created_at": _TIME,
            "submitted_at": _TIME,
            "decided_at": nullable(_TIME),
            "decided_by": nullable(string("The deciding API key's name#id.")),
            "reason": nullable(string()),
        },
        ("id", "type", "state", "member", "created_at", "submitted_at"),
    ),
    "SigningKey": object_of(
        {
            "id": _INTEGER,
            "status": string(enum=["standby", "active", "retired"]),
            "key_path": string(),
            "passphrase_env": nullable(string()),
            "certificate": ref("CertificateSummary"),
            "created_at": _TIME,
            "activated_at": nullable(_TIME),
            "retired_at": nullable(_TIME),
        },
        ("id", "status", "key_path", "certificate", "created_at"),
    ),
    "GlobalconfStatus": object_of(
        {
            "instance": string(),
            "version": nullable(_INTEGER),
            "generated_at": nullable(_TIME),
            "expires_at": nullable(_TIME),
            "signer_sha256": nullable(string()),
            "anchor_certificates": array(string("SHA-256 of a verification certificate.")),
            "configuration_urls": array(string()),
            "last_error": nullable(string()),
        },
        ("instance", "anchor_certificates", "configuration_urls"),
    ),
    "ApiKey": object_of(
        {
            "id": _INTEGER,
            "name": string(),
            "role": string(enum=["observer", "registration_officer", "registry_administrator"]),
            "created_at": _TIME,
            "revoked": {"type": "boolean"},
            "key": string("Only in the answer to the creation: the key itself."),
        },
        ("id", "name", "role", "created_at", "revoked"),
    ),
    "AuditEntry": object_of(
        {
            "id": _INTEGER,
            "at": _TIME,
            "actor": string(),
            "action": string(),
            "target": string(),
            "details": nullable({"type": "object"}),
            "result": string(enum=["ok", "refused", "error"]),
        },
        ("id", "at", "actor", "action", "target", "result"),
    ),
}

_RESPONDERS: Final = array(object_of({"url": string(), "certificate": nullable(_PEM)}, ("url",)))

BODIES: Final[Mapping[str, Schema]] = {
    "member_class.add": object_of({"code": string(), "description": string()}, ("code",)),
    "member_class.update": object_of({"description": string()}, ("description",)),
    "member.add": object_of(
        {"member_class": string(), "member_code": string(), "name": string()},
        ("member_class", "member_code", "name"),
    ),
    "member.rename": object_of({"name": string()}, ("name",)),
    "subsystem.add": object_of({"client_id": _CLIENT}, ("client_id",)),
    "server.add": object_of(
        {"server_id": string(), "address": string(), "auth_certificates": array(_PEM)},
        ("server_id", "address", "auth_certificates"),
    ),
    "server.set_address": object_of({"address": string()}, ("address",)),
    "server.add_auth_cert": object_of({"certificate": _PEM}, ("certificate",)),
    "server.add_client": object_of({"client_id": _CLIENT}, ("client_id",)),
    "trusted_ca.add": object_of(
        {"name": string(), "certificate": _PEM, "ocsp_responders": _RESPONDERS}, ("name", "certificate")
    ),
    "trusted_ca.set_ocsp": object_of({"ocsp_responders": _RESPONDERS}, ("ocsp_responders",)),
    "tsa.add": object_of(
        {"name": string(), "url": string(), "certificate": _PEM}, ("name", "url", "certificate")
    ),
    "tsa.update": object_of({"url": string(), "certificate": _PEM}, ("url", "certificate")),
    "global_group.add": object_of({"code": string(), "description": string()}, ("code",)),
    "global_group.update": object_of({"description": string()}, ("description",)),
    "global_group.add_member": object_of({"client_id": _CLIENT}, ("client_id",)),
    "settings.update": object_of({name: _INTEGER for name in _SETTINGS_FIELDS}),
    "request.approve": object_of({"reason": string()}),
    "request.reject": object_of({"reason": string()}, ("reason",)),
    "signing_key.add": object_of(
        {
            "key_path": string("The private key file on the registry's host."),
            "cert_path": string("Its certificate file on the registry's host."),
            "passphrase_env": string("Environment variable holding the key's passphrase, if encrypted."),
        },
        ("key_path", "cert_path"),
    ),
    "api_key.create": object_of({"name": string(), "role": string()}, ("name", "role")),
}
"""Request bodies by action; an operation not listed takes none."""

_NO_CONTENT: Final = ("204", None)

RESPONSES: Final[Mapping[str, tuple[str, Schema | None]]] = {
    "member_class.list": ("200", list_of("member_classes", "MemberClass")),
    "member_class.add": ("201", ref("MemberClass")),
    "member_class.update": ("200", ref("MemberClass")),
    "member_class.remove": _NO_CONTENT,
    "member.list": ("200", list_of("members", "Member")),
    "member.add": ("201", ref("Member")),
    "member.read": ("200", ref("Member")),
    "member.rename": ("200", ref("Member")),
    "member.remove": _NO_CONTENT,
    "subsystem.list": ("200", list_of("subsystems", "Subsystem")),
    "subsystem.add": ("201", ref("Subsystem")),
    "subsystem.remove": _NO_CONTENT,
    "server.list": ("200", list_of("security_servers", "SecurityServer")),
    "server.add": ("201", ref("SecurityServer")),
    "server.read": ("200", ref("SecurityServer")),
    "server.remove": _NO_CONTENT,
    "server.set_address": ("200", ref("SecurityServer")),
    "server.add_auth_cert": ("201", ref("SecurityServer")),
    "server.remove_auth_cert": _NO_CONTENT,
    "server.add_client": ("201", ref("SecurityServer")),
    "server.remove_client": _NO_CONTENT,
    "trusted_ca.list": ("200", list_of("trusted_cas", "TrustedCa")),
    "trusted_ca.add": ("201", ref("TrustedCa")),
    "trusted_ca.set_ocsp": ("200", ref("TrustedCa")),
    "trusted_ca.remove": _NO_CONTENT,
    "tsa.list": ("200", list_of("timestamping_authorities", "TimestampingAuthority")),
    "tsa.add": ("201", ref("TimestampingAuthority")),
    "tsa.update": ("200", ref("TimestampingAuthority")),
    "tsa.remove": _NO_CONTENT,
    "global_group.list": ("200", list_of("global_groups", "GlobalGroup")),
    "global_group.add": ("201", ref("GlobalGroup")),
    "global_group.update": ("200", ref("GlobalGroup")),
    "global_group.remove": _NO_CONTENT,
    "global_group.add_member": ("201", ref("GlobalGroup")),
    "global_group.remove_member": _NO_CONTENT,
    "settings.read": ("200", ref("Settings")),
    "settings.update": ("200", ref("Settings")),
    "request.list": ("200", list_of("requests", "Request")),
    "request.read": ("200", ref("Request")),
    "request.approve": ("200", ref("Request")),
    "request.reject": ("200", ref("Request")),
    "signing_key.list": ("200", list_of("signing_keys", "SigningKey")),
    "signing_key.add": ("201", ref("SigningKey")),
    "signing_key.activate": ("200", ref("SigningKey")),
    "signing_key.retire": ("200", ref("SigningKey")),
    "globalconf.status": ("200", ref("GlobalconfStatus")),
    "globalconf.publish": ("202", object_of({"requested": {"type": "boolean"}})),
    "api_key.list": ("200", list_of("api_keys", "ApiKey")),
    "api_key.create": ("201", ref("ApiKey")),
    "api_key.revoke": _NO_CONTENT,
    "audit_log.read": (
        "200",
        object_of({"entries": array(ref("AuditEntry")), "next_before_id": nullable(_INTEGER)}, ("entries",)),
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


def _describe(operation: DescribedOperation) -> dict[str, Any]:
    status, answer = RESPONSES[operation.action]
    parameters = [
        path_parameter(name, PATH_PARAMETERS[name]) for name in _PATH_PARAMETER.findall(operation.path)
    ]
    parameters += [query_parameter(name, text) for name, text in QUERY_PARAMETERS.get(operation.action, ())]
    return operation_object(
        operation.action.replace(".", "_"),
        operation.summary,
        str(operation.permission),
        operation.action.split(".")[0],
        errors=_ERRORS,
        parameters=parameters,
        body=BODIES.get(operation.action),
        status=status,
        response=answer,
    )


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
    return api_document(
        "xgate central registry management API",
        API_VERSION,
        "Manage the federation's registry: member classes, members, subsystems, security servers, "
        "trusted CAs, TSAs, global groups, settings, registration requests, configuration-signing "
        "keys, API keys and the audit log. Every change and every refused call is audited.",
        paths,
        SCHEMAS,
    )
