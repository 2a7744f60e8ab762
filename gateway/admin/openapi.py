"""The OpenAPI 3.0 description of the management API, served by the API at ``GET /api/openapi.json``.

Written by hand, as the contract: the tests hold it and the application's routes to each
other (every route described, every description routed, each operation's permission the one
the API enforces). ``x-permission`` names the permission an operation needs; the roles that
hold it are listed in :mod:`gateway.admin.roles`.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any, Final

from gateway.apidoc import (
    Schema,
    api_document,
    error_schema,
    json_content,
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


_CLIENT_ID: Final = path_parameter(
    "client_id", "The subsystem (or member) as INSTANCE:CLASS:MEMBER[:SUBSYSTEM], X-Road's path form."
)
_SERVICE_CODE: Final = path_parameter("service_code", "The service code.")
_VERSION: Final = query_parameter(
    "version", "The service version; leave out for a service registered without one."
)
_GROUP_CODE: Final = path_parameter("group_code", "The local group's code.")
_KEY_ID: Final = path_parameter("key_id", "The numeric id of the key.")

_ERRORS: Final = {
    "400": "The request is invalid; `message` says why.",
    "401": "No API key, or not a valid one. Refusals are audited with actor `anonymous`.",
    "403": "The key's role lacks the operation's permission. Refusals are audited.",
    "404": "The named subsystem, service, group or key does not exist.",
    "409": "The change would register something a second time.",
    "503": "The node cannot answer yet: it has no global configuration to take trust anchors from.",
}


def _operation(
    operation_id: str,
    summary: str,
    permission: str,
    tag: str,
    *,
    errors: tuple[str, ...] = ("400", "401", "403", "404"),
    **options: Any,
) -> dict[str, Any]:
    """An operation answering the named error codes (`_ERRORS`) besides its own answer."""
    described = {code: _ERRORS[code] for code in errors}
    return operation_object(operation_id, summary, permission, tag, errors=described, **options)


_SCHEMAS: Final[dict[str, Schema]] = {
    "Error": error_schema(
        (
            "validation_error",
            "invalid_description",
            "fetch_failed",
            "unauthorized",
            "forbidden",
            "not_found",
            "conflict",
            "method_not_allowed",
            "payload_too_large",
            "unavailable",
            "internal_error",
        )
    ),
    "CertificateSummary": object_of(
        {
            "sha256": string("Lower-case hex SHA-256 of the DER certificate."),
            "subject": string("RFC 4514 subject."),
            "not_after": string(format="date-time"),
        },
        ("sha256", "subject", "not_after"),
    ),
    "Subsystem": object_of(
        {
            "client_id": string("INSTANCE/CLASS/MEMBER[/SUBSYSTEM]"),
            "auth_mode": ref("AuthMode"),
            "certificates": {"type": "array", "items": ref("CertificateSummary")},
        },
        ("client_id", "auth_mode", "certificates"),
    ),
    "AuthMode": string(
        "How client systems connect to the internal interface.", enum=["http", "https", "https_cert"]
    ),
    "Endpoint": object_of({"method": string(), "path": string()}, ("method", "path")),
    "Service": object_of(
        {
            "id": string("The service identifier's text form."),
            "service_code": string(),
            "service_version": nullable(string()),
            "kind": string(enum=["soap", "rest"]),
            "backend_url": string(),
            "timeout_seconds": {"type": "number"},
            "tls_verify": {"type": "boolean"},
            "tls_ca_pem": nullable(
                string("CA certificates (PEM) trusted for the backend instead of the system's.")
            ),
            "enabled": {"type": "boolean"},
            "disabled_notice": nullable(string()),
            "description_source": nullable(string("The URL the description came from, or `upload`.")),
            "endpoints": {"type": "array", "items": ref("Endpoint")},
        },
        ("id", "service_code", "kind", "backend_url", "timeout_seconds", "enabled", "endpoints"),
    ),
    "AccessRight": object_of(
        {
            "subject": string(
                "Client text form, INSTANCE/GROUP for a global group, GROUP for a local group."
            ),
            "subject_type": ref("SubjectType"),
            "service_code": string(),
            "method": nullable(string("HTTP method or `*`; null for the whole service.")),
            "path": nullable(string("Path pattern with `*` wildcards; null for the whole service.")),
        },
        ("subject", "subject_type", "service_code"),
    ),
    "SubjectType": string(enum=["member", "subsystem", "globalgroup", "localgroup"]),
    "LocalGroup": object_of(
        {
            "code": string(),
            "description": string(),
            "members": {"type": "array", "items": string("INSTANCE/CLASS/MEMBER[/SUBSYSTEM]")},
        },
        ("code", "description", "members"),
    ),
    "Key": object_of(
        {
            "id": {"type": "integer"},
            "usage": string(enum=["auth", "sign"]),
            "member_id": nullable(string("The member a signing key signs for.")),
            "key_path": string("Where the private key file is, mode 0600."),
            "status": string(enum=["new", "csr_created", "certified"]),
            "created_at": string(format="date-time"),
            "has_csr": {"type": "boolean"},
            "certificate": nullable(ref("CertificateSummary")),
        },
        ("id", "usage", "key_path", "status", "created_at", "has_csr"),
    ),
    "ApiKey": object_of(
        {
            "id": {"type": "integer"},
            "name": string(),
            "role": ref("Role"),
            "created_at": string(format="date-time"),
            "revoked": {"type": "boolean"},
        },
        ("id", "name", "role", "created_at", "revoked"),
    ),
    "Role": string(
        enum=[
            "observer",
            "service_administrator",
            "registration_officer",
            "security_officer",
            "system_administrator",
        ]
    ),
    "AuditEntry": object_of(
        {
            "id": {"type": "integer"},
            "at": string(format="date-time"),
            "actor": string("NAME#ID of the API key, or `anonymous`."),
            "action": string("The operation's operationId, e.g. subsystem.add."),
            "target": string(),
            "details": nullable({"type": "object"}),
            "result": string(enum=["ok", "refused", "error"]),
        },
        ("id", "at", "actor", "action", "target", "result"),
    ),
}

_LOG_RECORD_FIELDS: Final[dict[str, Schema]] = {
    "node": string("The gateway node whose chain holds the record."),
    "seq": {"type": "integer", "description": "The record's place in its node's chain."},
    "exchange_id": string("Links a request and its response on this gateway."),
    "message_id": string(),
    "gateway": string("The gateway whose log this is (SecurityServerId text)."),
    "side": string(enum=["consumer", "provider"]),
    "direction": string(enum=["request", "response"]),
    "kind": string(enum=["soap", "rest"]),
    "logged_at": string(format="date-time"),
    "client": string("INSTANCE/CLASS/MEMBER[/SUBSYSTEM]"),
    "service": string("The service identifier's text form."),
    "user_id": nullable(string()),
    "outcome": string("`ok`, or the fault code the gateway answered with."),
    "fault_detail": nullable(string()),
    "body_logged": {"type": "boolean"},
    "timestamped": {"type": "boolean"},
    "archive": nullable(string("The archive file holding the record, once archived.")),
}

_LOG_SCHEMAS: Final[dict[str, Schema]] = {
    "LogRecord": object_of(_LOG_RECORD_FIELDS, ("node", "seq", "exchange_id", "message_id", "logged_at")),
    "LogRecordStatus": object_of(
        {
            "valid": {"type": "boolean"},
            "problem": nullable(ref("LogProblem")),
            "chain": string("The record's place in its chain and its link to the one before."),
            "content": string("The record hash against the content, the body against its digest."),
            "signature": string("The batch signature and this message's proof to its root."),
            "timestamp": string("The RFC 3161 token over the record's batch."),
        },
        ("valid", "chain", "content", "signature", "timestamp"),
    ),
    "LogProblem": object_of(
        {
            "seq": {"type": "integer"},
            "problem": string(
                enum=[
                    "missing",
                    "beyond-head",
                    "not-linked",
                    "modified",
                    "body",
                    "manifest",
                    "signature",
                    "timestamp",
                    "not-stamped",
                ]
            ),
            "reason": string(),
        },
        ("seq", "problem", "reason"),
    ),
    "LogRecordDetail": {
        "allOf": [
            ref("LogRecord"),
            object_of(
                {
                    "issue": nullable(string()),
                    "represented_party": nullable(string()),
                    "content_type": string(),
                    "message_sha256": nullable(string()),
                    "manifest_sha256": string(),
                    "prev_hash": string(),
                    "record_hash": string(),
                    "rest_head": nullable(
                        {"type": "object", "description": "A REST message's signed head (docs/transport.md)."}
                    ),
                    "body": object_of(
                        {
                            "state": string(enum=["logged", "not_logged", "encrypted"]),
                            "size": nullable({"type": "integer"}),
                            "preview": nullable(string("The body's first bytes as text.")),
                            "truncated": {"type": "boolean"},
                        },
                        ("state", "truncated"),
                    ),
                    "verification": ref("LogRecordStatus"),
                },
                ("body", "verification"),
            ),
        ]
    },
    "LogExchange": object_of(
        {
            "exchange_id": string(),
            "request": nullable(ref("LogRecordDetail")),
            "response": nullable(ref("LogRecordDetail")),
            "other": {"type": "array", "items": ref("LogRecordDetail")},
        },
        ("exchange_id", "other"),
    ),
    "LogContainer": object_of(
        {
            "name": string("A file name for the container: SEQ-RECORDHASH.asice."),
            "node": string(),
            "seq": {"type": "integer"},
            "side": string(enum=["consumer", "provider"]),
            "gateway": string(),
            "message_id": string(),
            "exchange_id": string(),
            "direction": string(),
            "logged_at": string(),
            "record_hash": string(),
            "timestamped": {
                "type": "boolean",
                "description": "False for a record not yet stamped: its container lacks the timestamp.",
            },
            "sha256": string("SHA-256 of the container."),
            "size": {"type": "integer"},
            "data": string("The ASiC-E container, base64.", format="byte"),
        },
        ("name", "node", "seq", "sha256", "data"),
    ),
    "LogChainVerification": object_of(
        {
            "gateway": string(),
            "node": string(),
            "valid": {"type": "boolean"},
            "checked": {"type": "integer", "description": "Records that passed, from the chain's start."},
            "signatures_verified": {"type": "integer"},
            "tokens_verified": {"type": "integer"},
            "unstamped": {"type": "integer"},
            "first_bad": nullable(ref("LogProblem")),
        },
        ("gateway", "node", "valid", "checked", "first_bad"),
    ),
}

_LOG_FILTERS: Final = (
    query_parameter("message_id", "Only this message id."),
    query_parameter("client", "Only this client, INSTANCE/CLASS/MEMBER[/SUBSYSTEM]."),
    query_parameter("service", "Only this service, its identifier's text form."),
    query_parameter("user_id", "Only this user id."),
    query_parameter("since", "Logged at or after this time (ISO 8601).", string(format="date-time")),
    query_parameter("until", "Logged before this time (ISO 8601).", string(format="date-time")),
    query_parameter("outcome", "`ok`, or a fault code."),
)
_LOG_AUDITED: Final = (
    "Every call is audited, with its query parameters, whatever its result: the message log "
    "holds personal data."
)


def _message_log_paths() -> dict[str, dict[str, Any]]:
    read, tag = "read_message_log", "message log"
    paging = (
        query_parameter("offset", "Records to skip: the last page's next_offset.", {"type": "integer"}),
    )
    return {
        "/api/v1/message-log/records": {
            "get": _operation(
                "message_log.search",
                "Search the message log, newest first",
                read,
                tag,
                parameters=(
                    *_LOG_FILTERS,
                    query_parameter("limit", "Records per page (at most 1000).", {"type": "integer"}),
                    *paging,
                ),
                response=object_of(
                    {
                        "records": {"type": "array", "items": ref("LogRecord")},
                        "limit": {"type": "integer"},
                        "offset": {"type": "integer"},
                        "next_offset": nullable({"type": "integer"}),
                    },
                    ("records", "next_offset"),
                ),
                errors=("400", "401", "403", "404"),
                description=_LOG_AUDITED,
            ),
        },
        "/api/v1/message-log/exchange": {
            "get": _operation(
                "message_log.show",
                "An exchange's request and response, each record verified",
                read,
                tag,
                parameters=(
                    {**query_parameter("id", "An exchange id, or else a message id."), "required": True},
                ),
                response=object_of(
                    {
                        "id": string(),
                        "verified_with_trust": {
                            "type": "boolean",
                            "description": "False when the node has no global configuration to verify with.",
                        },
                        "exchanges": {"type": "array", "items": ref("LogExchange")},
                    },
                    ("id", "exchanges"),
                ),
                description=_LOG_AUDITED,
            ),
        },
        "/api/v1/message-log/containers": {
            "get": _operation(
                "message_log.export",
                "Records as ASiC-E containers, for an id or a page of a search",
                read,
                tag,
                parameters=(
                    query_parameter("id", "An exchange id, or else a message id; no filters with it."),
                    *_LOG_FILTERS,
                    query_parameter("limit", "Containers per page (at most 20).", {"type": "integer"}),
                    *paging,
                ),
                response=object_of(
                    {
                        "containers": {"type": "array", "items": ref("LogContainer")},
                        "failures": {
                            "type": "array",
                            "items": object_of(
                                {
                                    "node": string(),
                                    "seq": {"type": "integer"},
                                    "message_id": string(),
                                    "error": string("Why no container could be built."),
                                },
                                ("node", "seq", "error"),
                            ),
                        },
                        "next_offset": nullable({"type": "integer"}),
                    },
                    ("containers", "failures", "next_offset"),
                ),
                description=_LOG_AUDITED + " Each container verifies offline (docs/verification.md).",
            ),
        },
        "/api/v1/message-log/verification": {
            "get": _operation(
                "message_log.verify",
                "Verify this gateway's log chains with the global configuration's trust anchors",
                read,
                tag,
                parameters=(query_parameter("node", "Only this node's chain."),),
                response=object_of(
                    {
                        "valid": {"type": "boolean"},
                        "chains": {"type": "array", "items": ref("LogChainVerification")},
                    },
                    ("valid", "chains"),
                ),
                errors=("400", "401", "403", "404", "503"),
                description=_LOG_AUDITED,
            ),
        },
    }


_DESCRIPTION_SOURCE: Final = {
    "url": string("Fetch the document from this http(s) URL instead (no redirects, 30 s, 10 MB at most)."),
}


def _paths() -> dict[str, dict[str, Any]]:
    subsystem = "/api/v1/subsystems/{client_id}"
    service = subsystem + "/services/{service_code}"
    group = subsystem + "/local-groups/{group_code}"
    read, subsystems, client_auth = "read_configuration", "manage_subsystems", "manage_client_auth"
    services, rights, groups = "manage_services", "manage_access_rights", "manage_local_groups"
    right_query = (
        query_parameter("subject", "The right's subject."),
        query_parameter("subject_type", "member, subsystem, globalgroup or localgroup."),
        query_parameter("method", "The endpoint's method, if the right is for one endpoint."),
        query_parameter("path", "The endpoint's path pattern, if the right is for one endpoint."),
    )
    return {
        "/api/v1/subsystems": {
            "get": _operation(
                "subsystem.list",
                "List the hosted subsystems",
                read,
                "subsystems",
                response=list_of("subsystems", "Subsystem"),
                errors=("401", "403"),
            ),
            "post": _operation(
                "subsystem.add",
                "Register a subsystem",
                subsystems,
                "subsystems",
                body=object_of(
                    {"client_id": string("INSTANCE/CLASS/MEMBER/SUBSYSTEM"), "auth_mode": ref("AuthMode")},
                    ("client_id",),
                ),
                status="201",
                response=ref("Subsystem"),
                errors=("400", "401", "403", "409"),
            ),
        },
        subsystem: {
            "get": _operation(
                "subsystem.read",
                "Show one subsystem",
                read,
                "subsystems",
                parameters=(_CLIENT_ID,),
                response=ref("Subsystem"),
            ),
            "delete": _operation(
                "subsystem.remove",
                "Unregister a subsystem with its services, rights and groups",
                subsystems,
                "subsystems",
                parameters=(_CLIENT_ID,),
                status="204",
            ),
        },
        subsystem + "/auth-mode": {
            "put": _operation(
                "subsystem.set_auth_mode",
                "Set how the subsystem's systems connect",
                client_auth,
                "subsystems",
                parameters=(_CLIENT_ID,),
                body=object_of({"auth_mode": ref("AuthMode")}, ("auth_mode",)),
                response=ref("Subsystem"),
            ),
        },
        subsystem + "/certificates": {
            "post": _operation(
                "subsystem.pin_certificate",
                "Pin a client TLS certificate (https_cert mode)",
                client_auth,
                "subsystems",
                parameters=(_CLIENT_ID,),
                body=object_of({"certificate_pem": string()}, ("certificate_pem",)),
                status="201",
                response=ref("CertificateSummary"),
                errors=("400", "401", "403", "404", "409"),
            ),
        },
        subsystem + "/certificates/{sha256}": {
            "delete": _operation(
                "subsystem.unpin_certificate",
                "Unpin a client TLS certificate",
                client_auth,
                "subsystems",
                parameters=(_CLIENT_ID, path_parameter("sha256", "The certificate's SHA-256 (hex).")),
                status="204",
            ),
        },
        subsystem + "/services": {
            "get": _operation(
                "service.list",
                "List the subsystem's services",
                read,
                "services",
                parameters=(_CLIENT_ID,),
                response=list_of("services", "Service"),
            ),
        },
        subsystem + "/service-descriptions/wsdl": {
            "post": _operation(
                "service.add_wsdl",
                "Register the SOAP services of a WSDL",
                services,
                "services",
                description="One service per operation bound over SOAP 1.1/HTTP, called at its soap:address.",
                parameters=(_CLIENT_ID,),
                body=object_of({"wsdl": string("The WSDL document."), **_DESCRIPTION_SOURCE}),
                status="201",
                response=list_of("services", "Service"),
                errors=("400", "401", "403", "404", "409"),
            ),
        },
        subsystem + "/service-descriptions/openapi": {
            "post": _operation(
                "service.add_openapi",
                "Register a REST service from an OpenAPI 3 document",
                services,
                "services",
                description="One service with an endpoint per operation; the backend defaults to servers[0].",
                parameters=(_CLIENT_ID,),
                body=object_of(
                    {
                        "service_code": string(),
                        "service_version": string(),
                        "document": string("The OpenAPI document, YAML or JSON."),
                        "backend_url": string("Where the service runs, if not the document's first server."),
                        **_DESCRIPTION_SOURCE,
                    },
                    ("service_code",),
                ),
                status="201",
                response=ref("Service"),
                errors=("400", "401", "403", "404", "409"),
            ),
        },
        service: {
            "get": _operation(
                "service.read",
                "Show one service",
                read,
                "services",
                parameters=(_CLIENT_ID, _SERVICE_CODE, _VERSION),
                response=ref("Service"),
            ),
            "patch": _operation(
                "service.set_backend",
                "Change the service's backend settings",
                services,
                "services",
                parameters=(_CLIENT_ID, _SERVICE_CODE, _VERSION),
                body=object_of(
                    {
                        "backend_url": string(),
                        "timeout_seconds": {"type": "number", "exclusiveMinimum": True, "minimum": 0},
                        "tls_verify": {"type": "boolean"},
                        "tls_ca_pem": nullable(string("PEM CA certificates; null or empty clears.")),
                    }
                ),
                response=ref("Service"),
            ),
            "delete": _operation(
                "service.remove",
                "Unregister a service (its rights go with the code's last version)",
                services,
                "services",
                parameters=(_CLIENT_ID, _SERVICE_CODE, _VERSION),
                status="204",
            ),
        },
        service + "/enable": {
            "post": _operation(
                "service.enable",
                "Enable a service",
                services,
                "services",
                parameters=(_CLIENT_ID, _SERVICE_CODE, _VERSION),
                response=ref("Service"),
            ),
        },
        service + "/disable": {
            "post": _operation(
                "service.disable",
                "Disable a service; callers get ServiceDisabled with the notice",
                services,
                "services",
                parameters=(_CLIENT_ID, _SERVICE_CODE, _VERSION),
                body=object_of({"notice": string()}),
                response=ref("Service"),
            ),
        },
        service + "/access-rights": {
            "get": _operation(
                "access.list",
                "List the rights to a service code (any version)",
                read,
                "access rights",
                parameters=(_CLIENT_ID, _SERVICE_CODE),
                response=list_of("access_rights", "AccessRight"),
            ),
            "post": _operation(
                "access.grant",
                "Grant a right to the service, or to one REST endpoint of it",
                rights,
                "access rights",
                parameters=(_CLIENT_ID, _SERVICE_CODE),
                body=object_of(
                    {
                        "subject": string(),
                        "subject_type": ref("SubjectType"),
                        "method": string(),
                        "path": string(),
                    },
                    ("subject", "subject_type"),
                ),
                status="201",
                response=ref("AccessRight"),
                errors=("400", "401", "403", "404", "409"),
            ),
            "delete": _operation(
                "access.revoke",
                "Revoke a right named by the query parameters",
                rights,
                "access rights",
                parameters=(_CLIENT_ID, _SERVICE_CODE, *right_query),
                status="204",
            ),
        },
        subsystem + "/local-groups": {
            "get": _operation(
                "local_group.list",
                "List the subsystem's local groups",
                read,
                "local groups",
                parameters=(_CLIENT_ID,),
                response=list_of("local_groups", "LocalGroup"),
            ),
            "post": _operation(
                "local_group.add",
                "Create a local group",
                groups,
                "local groups",
                parameters=(_CLIENT_ID,),
                body=object_of({"code": string(), "description": string()}, ("code",)),
                status="201",
                response=ref("LocalGroup"),
                errors=("400", "401", "403", "404", "409"),
            ),
        },
        group: {
            "delete": _operation(
                "local_group.remove",
                "Delete a local group, its members and the rights granted to it",
                groups,
                "local groups",
                parameters=(_CLIENT_ID, _GROUP_CODE),
                status="204",
            ),
        },
        group + "/members": {
            "post": _operation(
                "local_group.add_member",
                "Add a client to a local group",
                groups,
                "local groups",
                parameters=(_CLIENT_ID, _GROUP_CODE),
                body=object_of({"client_id": string("INSTANCE/CLASS/MEMBER[/SUBSYSTEM]")}, ("client_id",)),
                status="201",
                response=object_of({"client_id": string()}, ("client_id",)),
                errors=("400", "401", "403", "404", "409"),
            ),
        },
        group + "/members/{member_id}": {
            "delete": _operation(
                "local_group.remove_member",
                "Remove a client from a local group",
                groups,
                "local groups",
                parameters=(
                    _CLIENT_ID,
                    _GROUP_CODE,
                    path_parameter("member_id", "The member client as INSTANCE:CLASS:MEMBER[:SUBSYSTEM]."),
                ),
                status="204",
            ),
        },
        "/api/v1/keys": {
            "get": _operation(
                "key.list",
                "List the gateway's keys and certificates",
                read,
                "keys",
                response=list_of("keys", "Key"),
                errors=("401", "403"),
            ),
            "post": _operation(
                "key.generate",
                "Generate a key under the node's data directory (mode 0600)",
                "manage_keys",
                "keys",
                body=object_of(
                    {
                        "usage": string(enum=["auth", "sign"]),
                        "member_id": string("The member a signing key signs for (sign keys only)."),
                        "algorithm": string(enum=["ec", "rsa2048", "rsa3072"], default="ec"),
                    },
                    ("usage",),
                ),
                status="201",
                response=ref("Key"),
                errors=("400", "401", "403"),
            ),
        },
        "/api/v1/keys/{key_id}/csr": {
            "post": _operation(
                "key.csr",
                "Make a certificate signing request for a key",
                "manage_keys",
                "keys",
                description=(
                    "Subject fields left out are derived from the gateway's or member's identifier; the "
                    "SAN holds xroad:server:... (auth) or xroad:member:... (sign)."
                ),
                parameters=(_KEY_ID,),
                body=object_of(
                    {
                        "subject": object_of(
                            {
                                name: string()
                                for name in (
                                    "common_name",
                                    "organization",
                                    "organizational_unit",
                                    "country",
                                    "serial_number",
                                )
                            }
                        ),
                        "dns_names": {"type": "array", "items": string()},
                    }
                ),
                response=object_of(
                    {"key_id": {"type": "integer"}, "csr_pem": string()}, ("key_id", "csr_pem")
                ),
            ),
        },
        "/api/v1/certificates": {
            "post": _operation(
                "certificate.import",
                "Import a certificate issued for one of the gateway's keys",
                "manage_keys",
                "keys",
                description="Matched to its key by public key; a certificate no key matches is refused.",
                body=object_of({"certificate_pem": string()}, ("certificate_pem",)),
                response=ref("Key"),
                errors=("400", "401", "403"),
            ),
        },
        "/api/v1/api-keys": {
            "get": _operation(
                "api_key.list",
                "List the management API keys (never the keys themselves)",
                "manage_api_keys",
                "api keys",
                response=list_of("api_keys", "ApiKey"),
                errors=("401", "403"),
            ),
            "post": _operation(
                "api_key.create",
                "Create an API key; the answer is the only place the key appears",
                "manage_api_keys",
                "api keys",
                body=object_of({"name": string(), "role": ref("Role")}, ("name", "role")),
                status="201",
                response={"allOf": [ref("ApiKey"), object_of({"key": string()}, ("key",))]},
                errors=("400", "401", "403"),
            ),
        },
        "/api/v1/api-keys/{key_id}": {
            "delete": _operation(
                "api_key.revoke",
                "Revoke an API key",
                "manage_api_keys",
                "api keys",
                parameters=(_KEY_ID,),
                status="204",
            ),
        },
        **_message_log_paths(),
        "/api/v1/audit-log": {
            "get": _operation(
                "audit_log.read",
                "Read the audit log, newest first",
                "read_audit_log",
                "audit log",
                parameters=(
                    query_parameter("limit", "Entries per page (at most 1000).", {"type": "integer"}),
                    query_parameter(
                        "before_id",
                        "Entries older than this id: the last page's next_before_id.",
                        {"type": "integer"},
                    ),
                    query_parameter("actor", "Only this actor."),
                    query_parameter("action", "Only this action."),
                    query_parameter(
                        "since", "Only entries at or after this time (ISO 8601).", string(format="date-time")
                    ),
                ),
                response=object_of(
                    {
                        "entries": {"type": "array", "items": ref("AuditEntry")},
                        "next_before_id": nullable({"type": "integer"}),
                    },
                    ("entries",),
                ),
                errors=("400", "401", "403"),
            ),
        },
        "/api/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "tags": ["meta"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "The OpenAPI document.",
                        "content": json_content({"type": "object"}),
                    }
                },
            },
        },
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Whether the node is healthy",
                "description": "200 when status is ok, 503 otherwise; the node adds its own fields.",
                "tags": ["meta"],
                "security": [],
                "responses": {
                    code: {
                        "description": text,
                        "content": json_content(object_of({"status": string()}, ("status",))),
                    }
                    for code, text in (("200", "Healthy."), ("503", "Not healthy."))
                },
            },
        },
    }


@lru_cache(maxsize=1)
def _document() -> dict[str, Any]:
    return api_document(
        "xgate management API",
        API_VERSION,
        "Manage one xgate gateway: subsystems, services, access rights, local groups, keys, "
        "API keys, the audit log, and the message log. Every change, every read of the "
        "message log and every refused call is audited.",
        _paths(),
        {**_SCHEMAS, **_LOG_SCHEMAS},
    )


def openapi_document() -> dict[str, Any]:
    """The document as a fresh dict (callers may change their copy)."""
    return copy.deepcopy(_document())
