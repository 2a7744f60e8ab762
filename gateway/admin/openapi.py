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

OPENAPI_VERSION: Final = "3.0.3"
API_VERSION: Final = "1.0.0"

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _string(description: str | None = None, **extra: Any) -> Schema:
    schema: Schema = {"type": "string", **extra}
    if description:
        schema["description"] = description
    return schema


def _nullable(schema: Schema) -> Schema:
    return {**schema, "nullable": True}


def _object(properties: dict[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def _list_of(key: str, item: str) -> Schema:
    return _object({key: {"type": "array", "items": _ref(item)}}, (key,))


def _json(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _path_parameter(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": _string()}


def _query_parameter(name: str, description: str, schema: Schema | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or _string(),
    }


_CLIENT_ID: Final = _path_parameter(
    "client_id", "The subsystem (or member) as INSTANCE:CLASS:MEMBER[:SUBSYSTEM], X-Road's path form."
)
_SERVICE_CODE: Final = _path_parameter("service_code", "The service code.")
_VERSION: Final = _query_parameter(
    "version", "The service version; leave out for a service registered without one."
)
_GROUP_CODE: Final = _path_parameter("group_code", "The local group's code.")
_KEY_ID: Final = _path_parameter("key_id", "The numeric id of the key.")

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
    parameters: tuple[dict[str, Any], ...] = (),
    body: Schema | None = None,
    status: str = "200",
    response: Schema | None = None,
    errors: tuple[str, ...] = ("400", "401", "403", "404"),
    description: str | None = None,
) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    if response is None:
        responses[status] = {"description": "Done."}
    else:
        responses[status] = {"description": "Done.", "content": _json(response)}
    for code in errors:
        responses[code] = {"description": _ERRORS[code], "content": _json(_ref("Error"))}
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        "x-permission": permission,
        "responses": responses,
    }
    if description:
        operation["description"] = description
    if parameters:
        operation["parameters"] = list(parameters)
    if body is not None:
        operation["requestBody"] = {"required": True, "content": _json(body)}
    return operation


_SCHEMAS: Final[dict[str, Schema]] = {
    "Error": _object(
        {
            "error": _string(
                "A stable code: validation_error, invalid_description, fetch_failed, unauthorized, "
                "forbidden, not_found, conflict, method_not_allowed, payload_too_large, unavailable, "
                "internal_error."
            ),
            "message": _string("What went wrong, for people."),
        },
        ("error", "message"),
    ),
    "CertificateSummary": _object(
        {
            "sha256": _string("Lower-case hex SHA-256 of the DER certificate."),
            "subject": _string("RFC 4514 subject."),
            "not_after": _string(format="date-time"),
        },
        ("sha256", "subject", "not_after"),
    ),
    "Subsystem": _object(
        {
            "client_id": _string("INSTANCE/CLASS/MEMBER[/SUBSYSTEM]"),
            "auth_mode": _ref("AuthMode"),
            "certificates": {"type": "array", "items": _ref("CertificateSummary")},
        },
        ("client_id", "auth_mode", "certificates"),
    ),
    "AuthMode": _string(
        "How client systems connect to the internal interface.", enum=["http", "https", "https_cert"]
    ),
    "Endpoint": _object({"method": _string(), "path": _string()}, ("method", "path")),
    "Service": _object(
        {
            "id": _string("The service identifier's text form."),
            "service_code": _string(),
            "service_version": _nullable(_string()),
            "kind": _string(enum=["soap", "rest"]),
            "backend_url": _string(),
            "timeout_seconds": {"type": "number"},
            "tls_verify": {"type": "boolean"},
            "tls_ca_pem": _nullable(
                _string("CA certificates (PEM) trusted for the backend instead of the system's.")
            ),
            "enabled": {"type": "boolean"},
            "disabled_notice": _nullable(_string()),
            "description_source": _nullable(_string("The URL the description came from, or `upload`.")),
            "endpoints": {"type": "array", "items": _ref("Endpoint")},
        },
        ("id", "service_code", "kind", "backend_url", "timeout_seconds", "enabled", "endpoints"),
    ),
    "AccessRight": _object(
        {
            "subject": _string(
                "Client text form, INSTANCE/GROUP for a global group, GROUP for a local group."
            ),
            "subject_type": _ref("SubjectType"),
            "service_code": _string(),
            "method": _nullable(_string("HTTP method or `*`; null for the whole service.")),
            "path": _nullable(_string("Path pattern with `*` wildcards; null for the whole service.")),
        },
        ("subject", "subject_type", "service_code"),
    ),
    "SubjectType": _string(enum=["member", "subsystem", "globalgroup", "localgroup"]),
    "LocalGroup": _object(
        {
            "code": _string(),
            "description": _string(),
            "members": {"type": "array", "items": _string("INSTANCE/CLASS/MEMBER[/SUBSYSTEM]")},
        },
        ("code", "description", "members"),
    ),
    "Key": _object(
        {
            "id": {"type": "integer"},
            "usage": _string(enum=["auth", "sign"]),
            "member_id": _nullable(_string("The member a signing key signs for.")),
            "key_path": _string("Where the private key file is, mode 0600."),
            "status": _string(enum=["new", "csr_created", "certified"]),
            "created_at": _string(format="date-time"),
            "has_csr": {"type": "boolean"},
            "certificate": _nullable(_ref("CertificateSummary")),
        },
        ("id", "usage", "key_path", "status", "created_at", "has_csr"),
    ),
    "ApiKey": _object(
        {
            "id": {"type": "integer"},
            "name": _string(),
            "role": _ref("Role"),
            "created_at": _string(format="date-time"),
            "revoked": {"type": "boolean"},
        },
        ("id", "name", "role", "created_at", "revoked"),
    ),
    "Role": _string(
        enum=[
            "observer",
            "service_administrator",
            "registration_officer",
            "security_officer",
            "system_administrator",
        ]
    ),
    "AuditEntry": _object(
        {
            "id": {"type": "integer"},
            "at": _string(format="date-time"),
            "actor": _string("NAME#ID of the API key, or `anonymous`."),
            "action": _string("The operation's operationId, e.g. subsystem.add."),
            "target": _string(),
            "details": _nullable({"type": "object"}),
            "result": _string(enum=["ok", "refused", "error"]),
        },
        ("id", "at", "actor", "action", "target", "result"),
    ),
}

_LOG_RECORD_FIELDS: Final[dict[str, Schema]] = {
    "node": _string("The gateway node whose chain holds the record."),
    "seq": {"type": "integer", "description": "The record's place in its node's chain."},
    "exchange_id": _string("Links a request and its response on this gateway."),
    "message_id": _string(),
    "gateway": _string("The gateway whose log this is (SecurityServerId text)."),
    "side": _string(enum=["consumer", "provider"]),
    "direction": _string(enum=["request", "response"]),
    "kind": _string(enum=["soap", "rest"]),
    "logged_at": _string(format="date-time"),
    "client": _string("INSTANCE/CLASS/MEMBER[/SUBSYSTEM]"),
    "service": _string("The service identifier's text form."),
    "user_id": _nullable(_string()),
    "outcome": _string("`ok`, or the fault code the gateway answered with."),
    "fault_detail": _nullable(_string()),
    "body_logged": {"type": "boolean"},
    "timestamped": {"type": "boolean"},
    "archive": _nullable(_string("The archive file holding the record, once archived.")),
}

_LOG_SCHEMAS: Final[dict[str, Schema]] = {
    "LogRecord": _object(_LOG_RECORD_FIELDS, ("node", "seq", "exchange_id", "message_id", "logged_at")),
    "LogRecordStatus": _object(
        {
            "valid": {"type": "boolean"},
            "problem": _nullable(_ref("LogProblem")),
            "chain": _string("The record's place in its chain and its link to the one before."),
            "content": _string("The record hash against the content, the body against its digest."),
            "signature": _string("The batch signature and this message's proof to its root."),
            "timestamp": _string("The RFC 3161 token over the record's batch."),
        },
        ("valid", "chain", "content", "signature", "timestamp"),
    ),
    "LogProblem": _object(
        {
            "seq": {"type": "integer"},
            "problem": _string(
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
            "reason": _string(),
        },
        ("seq", "problem", "reason"),
    ),
    "LogRecordDetail": {
        "allOf": [
            _ref("LogRecord"),
            _object(
                {
                    "issue": _nullable(_string()),
                    "represented_party": _nullable(_string()),
                    "content_type": _string(),
                    "message_sha256": _nullable(_string()),
                    "manifest_sha256": _string(),
                    "prev_hash": _string(),
                    "record_hash": _string(),
                    "rest_head": _nullable(
                        {"type": "object", "description": "A REST message's signed head (docs/transport.md)."}
                    ),
                    "body": _object(
                        {
                            "state": _string(enum=["logged", "not_logged", "encrypted"]),
                            "size": _nullable({"type": "integer"}),
                            "preview": _nullable(_string("The body's first bytes as text.")),
                            "truncated": {"type": "boolean"},
                        },
                        ("state", "truncated"),
                    ),
                    "verification": _ref("LogRecordStatus"),
                },
                ("body", "verification"),
            ),
        ]
    },
    "LogExchange": _object(
        {
            "exchange_id": _string(),
            "request": _nullable(_ref("LogRecordDetail")),
            "response": _nullable(_ref("LogRecordDetail")),
            "other": {"type": "array", "items": _ref("LogRecordDetail")},
        },
        ("exchange_id", "other"),
    ),
    "LogContainer": _object(
        {
            "name": _string("A file name for the container: SEQ-RECORDHASH.asice."),
            "node": _string(),
            "seq": {"type": "integer"},
            "side": _string(enum=["consumer", "provider"]),
            "gateway": _string(),
            "message_id": _string(),
            "exchange_id": _string(),
            "direction": _string(),
            "logged_at": _string(),
            "record_hash": _string(),
            "timestamped": {
                "type": "boolean",
                "description": "False for a record not yet stamped: its container lacks the timestamp.",
            },
            "sha256": _string("SHA-256 of the container."),
            "size": {"type": "integer"},
            "data": _string("The ASiC-E container, base64.", format="byte"),
        },
        ("name", "node", "seq", "sha256", "data"),
    ),
    "LogChainVerification": _object(
        {
            "gateway": _string(),
            "node": _string(),
            "valid": {"type": "boolean"},
            "checked": {"type": "integer", "description": "Records that passed, from the chain's start."},
            "signatures_verified": {"type": "integer"},
            "tokens_verified": {"type": "integer"},
            "unstamped": {"type": "integer"},
            "first_bad": _nullable(_ref("LogProblem")),
        },
        ("gateway", "node", "valid", "checked", "first_bad"),
    ),
}

_LOG_FILTERS: Final = (
    _query_parameter("message_id", "Only this message id."),
    _query_parameter("client", "Only this client, INSTANCE/CLASS/MEMBER[/SUBSYSTEM]."),
    _query_parameter("service", "Only this service, its identifier's text form."),
    _query_parameter("user_id", "Only this user id."),
    _query_parameter("since", "Logged at or after this time (ISO 8601).", _string(format="date-time")),
    _query_parameter("until", "Logged before this time (ISO 8601).", _string(format="date-time")),
    _query_parameter("outcome", "`ok`, or a fault code."),
)
_LOG_AUDITED: Final = (
    "Every call is audited, with its query parameters, whatever its result: the message log "
    "holds personal data."
)


def _message_log_paths() -> dict[str, dict[str, Any]]:
    read, tag = "read_message_log", "message log"
    paging = (
        _query_parameter("offset", "Records to skip: the last page's next_offset.", {"type": "integer"}),
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
                    _query_parameter("limit", "Records per page (at most 1000).", {"type": "integer"}),
                    *paging,
                ),
                response=_object(
                    {
                        "records": {"type": "array", "items": _ref("LogRecord")},
                        "limit": {"type": "integer"},
                        "offset": {"type": "integer"},
                        "next_offset": _nullable({"type": "integer"}),
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
                    {**_query_parameter("id", "An exchange id, or else a message id."), "required": True},
                ),
                response=_object(
                    {
                        "id": _string(),
                        "verified_with_trust": {
                            "type": "boolean",
                            "description": "False when the node has no global configuration to verify with.",
                        },
                        "exchanges": {"type": "array", "items": _ref("LogExchange")},
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
                    _query_parameter("id", "An exchange id, or else a message id; no filters with it."),
                    *_LOG_FILTERS,
                    _query_parameter("limit", "Containers per page (at most 20).", {"type": "integer"}),
                    *paging,
                ),
                response=_object(
                    {
                        "containers": {"type": "array", "items": _ref("LogContainer")},
                        "failures": {
                            "type": "array",
                            "items": _object(
                                {
                                    "node": _string(),
                                    "seq": {"type": "integer"},
                                    "message_id": _string(),
                                    "error": _string("Why no container could be built."),
                                },
                                ("node", "seq", "error"),
                            ),
                        },
                        "next_offset": _nullable({"type": "integer"}),
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
                parameters=(_query_parameter("node", "Only this node's chain."),),
                response=_object(
                    {
                        "valid": {"type": "boolean"},
                        "chains": {"type": "array", "items": _ref("LogChainVerification")},
                    },
                    ("valid", "chains"),
                ),
                errors=("400", "401", "403", "404", "503"),
                description=_LOG_AUDITED,
            ),
        },
    }


_DESCRIPTION_SOURCE: Final = {
    "url": _string("Fetch the document from this http(s) URL instead (no redirects, 30 s, 10 MB at most)."),
}


def _paths() -> dict[str, dict[str, Any]]:
    subsystem = "/api/v1/subsystems/{client_id}"
    service = subsystem + "/services/{service_code}"
    group = subsystem + "/local-groups/{group_code}"
    read, subsystems, client_auth = "read_configuration", "manage_subsystems", "manage_client_auth"
    services, rights, groups = "manage_services", "manage_access_rights", "manage_local_groups"
    right_query = (
        _query_parameter("subject", "The right's subject."),
        _query_parameter("subject_type", "member, subsystem, globalgroup or localgroup."),
        _query_parameter("method", "The endpoint's method, if the right is for one endpoint."),
        _query_parameter("path", "The endpoint's path pattern, if the right is for one endpoint."),
    )
    return {
        "/api/v1/subsystems": {
            "get": _operation(
                "subsystem.list",
                "List the hosted subsystems",
                read,
                "subsystems",
                response=_list_of("subsystems", "Subsystem"),
                errors=("401", "403"),
            ),
            "post": _operation(
                "subsystem.add",
                "Register a subsystem",
                subsystems,
                "subsystems",
                body=_object(
                    {"client_id": _string("INSTANCE/CLASS/MEMBER/SUBSYSTEM"), "auth_mode": _ref("AuthMode")},
                    ("client_id",),
                ),
                status="201",
                response=_ref("Subsystem"),
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
                response=_ref("Subsystem"),
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
                body=_object({"auth_mode": _ref("AuthMode")}, ("auth_mode",)),
                response=_ref("Subsystem"),
            ),
        },
        subsystem + "/certificates": {
            "post": _operation(
                "subsystem.pin_certificate",
                "Pin a client TLS certificate (https_cert mode)",
                client_auth,
                "subsystems",
                parameters=(_CLIENT_ID,),
                body=_object({"certificate_pem": _string()}, ("certificate_pem",)),
                status="201",
                response=_ref("CertificateSummary"),
                errors=("400", "401", "403", "404", "409"),
            ),
        },
        subsystem + "/certificates/{sha256}": {
            "delete": _operation(
                "subsystem.unpin_certificate",
                "Unpin a client TLS certificate",
                client_auth,
                "subsystems",
                parameters=(_CLIENT_ID, _path_parameter("sha256", "The certificate's SHA-256 (hex).")),
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
                response=_list_of("services", "Service"),
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
                body=_object({"wsdl": _string("The WSDL document."), **_DESCRIPTION_SOURCE}),
                status="201",
                response=_list_of("services", "Service"),
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
                body=_object(
                    {
                        "service_code": _string(),
                        "service_version": _string(),
                        "document": _string("The OpenAPI document, YAML or JSON."),
                        "backend_url": _string("Where the service runs, if not the document's first server."),
                        **_DESCRIPTION_SOURCE,
                    },
                    ("service_code",),
                ),
                status="201",
                response=_ref("Service"),
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
                response=_ref("Service"),
            ),
            "patch": _operation(
                "service.set_backend",
                "Change the service's backend settings",
                services,
                "services",
                parameters=(_CLIENT_ID, _SERVICE_CODE, _VERSION),
                body=_object(
                    {
                        "backend_url": _string(),
                        "timeout_seconds": {"type": "number", "exclusiveMinimum": True, "minimum": 0},
                        "tls_verify": {"type": "boolean"},
                        "tls_ca_pem": _nullable(_string("PEM CA certificates; null or empty clears.")),
                    }
                ),
                response=_ref("Service"),
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
                response=_ref("Service"),
            ),
        },
        service + "/disable": {
            "post": _operation(
                "service.disable",
                "Disable a service; callers get ServiceDisabled with the notice",
                services,
                "services",
                parameters=(_CLIENT_ID, _SERVICE_CODE, _VERSION),
                body=_object({"notice": _string()}),
                response=_ref("Service"),
            ),
        },
        service + "/access-rights": {
            "get": _operation(
                "access.list",
                "List the rights to a service code (any version)",
                read,
                "access rights",
                parameters=(_CLIENT_ID, _SERVICE_CODE),
                response=_list_of("access_rights", "AccessRight"),
            ),
            "post": _operation(
                "access.grant",
                "Grant a right to the service, or to one REST endpoint of it",
                rights,
                "access rights",
                parameters=(_CLIENT_ID, _SERVICE_CODE),
                body=_object(
                    {
                        "subject": _string(),
                        "subject_type": _ref("SubjectType"),
                        "method": _string(),
                        "path": _string(),
                    },
                    ("subject", "subject_type"),
                ),
                status="201",
                response=_ref("AccessRight"),
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
                response=_list_of("local_groups", "LocalGroup"),
            ),
            "post": _operation(
                "local_group.add",
                "Create a local group",
                groups,
                "local groups",
                parameters=(_CLIENT_ID,),
                body=_object({"code": _string(), "description": _string()}, ("code",)),
                status="201",
                response=_ref("LocalGroup"),
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
                body=_object({"client_id": _string("INSTANCE/CLASS/MEMBER[/SUBSYSTEM]")}, ("client_id",)),
                status="201",
                response=_object({"client_id": _string()}, ("client_id",)),
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
                    _path_parameter("member_id", "The member client as INSTANCE:CLASS:MEMBER[:SUBSYSTEM]."),
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
                response=_list_of("keys", "Key"),
                errors=("401", "403"),
            ),
            "post": _operation(
                "key.generate",
                "Generate a key under the node's data directory (mode 0600)",
                "manage_keys",
                "keys",
                body=_object(
                    {
                        "usage": _string(enum=["auth", "sign"]),
                        "member_id": _string("The member a signing key signs for (sign keys only)."),
                        "algorithm": _string(enum=["ec", "rsa2048", "rsa3072"], default="ec"),
                    },
                    ("usage",),
                ),
                status="201",
                response=_ref("Key"),
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
                body=_object(
                    {
                        "subject": _object(
                            {
                                name: _string()
                                for name in (
                                    "common_name",
                                    "organization",
                                    "organizational_unit",
                                    "country",
                                    "serial_number",
                                )
                            }
                        ),
                        "dns_names": {"type": "array", "items": _string()},
                    }
                ),
                response=_object(
                    {"key_id": {"type": "integer"}, "csr_pem": _string()}, ("key_id", "csr_pem")
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
                body=_object({"certificate_pem": _string()}, ("certificate_pem",)),
                response=_ref("Key"),
                errors=("400", "401", "403"),
            ),
        },
        "/api/v1/api-keys": {
            "get": _operation(
                "api_key.list",
                "List the management API keys (never the keys themselves)",
                "manage_api_keys",
                "api keys",
                response=_list_of("api_keys", "ApiKey"),
                errors=("401", "403"),
            ),
            "post": _operation(
                "api_key.create",
                "Create an API key; the answer is the only place the key appears",
                "manage_api_keys",
                "api keys",
                body=_object({"name": _string(), "role": _ref("Role")}, ("name", "role")),
                status="201",
                response={"allOf": [_ref("ApiKey"), _object({"key": _string()}, ("key",))]},
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
                    _query_parameter("limit", "Entries per page (at most 1000).", {"type": "integer"}),
                    _query_parameter(
                        "before_id",
                        "Entries older than this id: the last page's next_before_id.",
                        {"type": "integer"},
                    ),
                    _query_parameter("actor", "Only this actor."),
                    _query_parameter("action", "Only this action."),
                    _query_parameter(
                        "since", "Only entries at or after this time (ISO 8601).", _string(format="date-time")
                    ),
                ),
                response=_object(
                    {
                        "entries": {"type": "array", "items": _ref("AuditEntry")},
                        "next_before_id": _nullable({"type": "integer"}),
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
                    "200": {"description": "The OpenAPI document.", "content": _json({"type": "object"})}
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
                        "content": _json(_object({"status": _string()}, ("status",))),
                    }
                    for code, text in (("200", "Healthy."), ("503", "Not healthy."))
                },
            },
        },
    }


@lru_cache(maxsize=1)
def _document() -> dict[str, Any]:
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "xgate management API",
            "version": API_VERSION,
            "description": (
                "Manage one xgate gateway: subsystems, services, access rights, local groups, keys, "
                "API keys, the audit log, and the message log. Every change, every read of the "
                "message log and every refused call is audited."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"XRoadApiKey": []}, {"ApiKeyHeader": []}],
        "paths": _paths(),
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
            "schemas": {**_SCHEMAS, **_LOG_SCHEMAS},
        },
    }


def openapi_document() -> dict[str, Any]:
    """The document as a fresh dict (callers may change their copy)."""
    return copy.deepcopy(_document())
