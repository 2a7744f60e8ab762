"""Building blocks of the OpenAPI 3.0 documents xgate's management APIs describe themselves with.

The gateway's (`gateway.admin.openapi`) and the central registry's (`gateway.central.openapi`)
documents share their shape: JSON bodies, the ``{"error", "message"}`` error answer, the API-key
security schemes of `gateway.webapi`, and an ``x-permission`` on every operation. Each module
keeps its own schemas and operations; the shape is written here once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

OPENAPI_VERSION: Final = "3.0.3"

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def string(description: str | None = None, **extra: Any) -> Schema:
    schema: Schema = {"type": "string", **extra}
    if description:
        schema["description"] = description
    return schema


def nullable(schema: Schema) -> Schema:
    """`schema` or null. A $ref takes no siblings in OpenAPI 3.0, so it is wrapped in allOf."""
    if "$ref" in schema:
        return {"allOf": [schema], "nullable": True}
    return {**schema, "nullable": True}


def object_of(properties: dict[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def array(item: Schema) -> Schema:
    return {"type": "array", "items": item}


def list_of(key: str, item: str) -> Schema:
    """An object holding one array of the named schema: how list operations answer."""
    return object_of({key: array(ref(item))}, (key,))


def json_content(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def error_schema(codes: Sequence[str]) -> Schema:
    """The error answer of `gateway.webapi`, naming the API's stable codes."""
    return object_of(
        {
            "error": string(f"A stable code: {', '.join(codes)}."),
            "message": string("What went wrong, for people."),
        },
        ("error", "message"),
    )


def path_parameter(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": string()}


def query_parameter(name: str, description: str, schema: Schema | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or string(),
    }


def operation_object(
    operation_id: str,
    summary: str,
    permission: str,
    tag: str,
    *,
    errors: Mapping[str, str],
    parameters: Sequence[dict[str, Any]] = (),
    body: Schema | None = None,
    status: str = "200",
    response: Schema | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """One operation: its answer, its error answers (code to description), the permission it needs."""
    responses: dict[str, Any] = {status: {"description": "Done."}}
    if response is not None:
        responses[status]["content"] = json_content(response)
    for code, text in errors.items():
        responses[code] = {"description": text, "content": json_content(ref("Error"))}
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
        operation["requestBody"] = {"required": True, "content": json_content(body)}
    return operation


def api_document(
    title: str, version: str, description: str, paths: dict[str, Any], schemas: Mapping[str, Schema]
) -> dict[str, Any]:
    """The whole document: `paths` behind the API-key schemes of `gateway.webapi`."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version, "description": description},
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
            "schemas": dict(schemas),
        },
    }
