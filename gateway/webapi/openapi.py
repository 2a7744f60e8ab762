"""The OpenAPI 3.0 document of a management API, built from its operations' declarations.

Parameters, bodies and answers are the JSON Schemas pydantic derives from the operations'
models, so the document states the constraints the guard enforces (patterns, ranges, required
fields, enums, unknown fields refused). ``x-permission`` names the permission an operation needs
and ``x-roles`` the roles holding it.

Pydantic writes JSON Schema 2020-12; OpenAPI 3.0 takes a dialect of draft 4, so the few forms
that differ are rewritten here (`null` in a union becomes `nullable`, `const` an `enum`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from gateway.webapi.operations import API_PREFIX, HEALTH_PATH, OPENAPI_PATH, Operation
from gateway.webapi.roles import RoleMatrix

OPENAPI_VERSION: Final = "3.0.3"
REF_TEMPLATE: Final = "#/components/schemas/{model}"

Schema = dict[str, Any]

_ERROR_TEXT: Final = {
    400: "The request is invalid; `message` says why.",
    401: "No API key, or not a valid one. Refusals are audited with actor `anonymous`.",
    403: "The key's role lacks the operation's permission. Refusals are audited.",
    404: "The named thing does not exist.",
    409: "The change clashes with what is registered.",
    503: "The node cannot answer yet; `message` says why.",
}


@dataclass(frozen=True)
class ApiInfo:
    """The document's title and version, what the API is for (`summary`: the first line of its
    module's docstring), what its health check says, and the codes its errors carry."""

    title: str
    version: str
    summary: str
    health: str
    error_codes: Sequence[str]

    @property
    def description(self) -> str:
        first_line = self.summary.strip().splitlines()[0]
        return f"{first_line} {CONVENTIONS}"


CONVENTIONS: Final = (
    "Identifiers are written INSTANCE/CLASS/MEMBER[/SUBSYSTEM] (URL-encoded in paths; X-Road's "
    "colon form is accepted too). Listings take `limit` 1..1000. Every change and every refused "
    "call is audited."
)


def to_openapi30(node: Any) -> Any:
    """A pydantic JSON Schema (2020-12) node in OpenAPI 3.0's dialect."""
    if isinstance(node, list):
        return [to_openapi30(item) for item in node]
    if not isinstance(node, dict):
        return node
    schema = {key: to_openapi30(value) for key, value in node.items() if key != "title"}
    if "const" in schema:
        schema["enum"] = [schema.pop("const")]
    for bound, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(schema.get(bound), int | float) and not isinstance(schema[bound], bool):
            schema[inclusive] = schema[bound]
            schema[bound] = True
    for union in ("anyOf", "oneOf"):
        options = schema.get(union)
        if isinstance(options, list) and any(option == {"type": "null"} for option in options):
            rest = [option for option in options if option != {"type": "null"}]
            del schema[union]
            if len(rest) == 1:
                only = rest[0]
                schema.update({"allOf": [only]} if "$ref" in only else only)
            else:
                schema[union] = rest
            schema["nullable"] = True
    if "$ref" in schema and len(schema) > 1:  # a $ref takes no siblings in OpenAPI 3.0
        schema = {"allOf": [{"$ref": schema.pop("$ref")}], **schema}
    return schema


def _components(operations: Sequence[Operation]) -> tuple[dict[tuple[int, str], Schema], Schema]:
    """Every model's schema (answers as serialised, the rest as validated) and their definitions."""
    models: list[tuple[type[BaseModel], Any]] = []
    for operation in operations:
        for model, mode in ((operation.body, "validation"), (operation.response, "serialization")):
            if isinstance(model, type) and issubclass(model, BaseModel) and (model, mode) not in models:
                models.append((model, mode))
    keyed, definitions = models_json_schema(models, ref_template=REF_TEMPLATE)
    schemas: dict[tuple[int, str], Schema] = {
        (id(model), mode): schema for (model, mode), schema in keyed.items()
    }
    defined: Schema = definitions.get("$defs", {})
    return schemas, defined


def _model_schema(schemas: Mapping[tuple[int, str], Schema], model: Any, mode: str) -> Schema:
    if isinstance(model, type) and issubclass(model, BaseModel):
        return schemas[(id(model), mode)]
    return TypeAdapter(model).json_schema(ref_template=REF_TEMPLATE, mode="serialization")


def _parameters(operation: Operation) -> list[dict[str, Any]]:
    if operation.params is None:
        return []
    schema = operation.params.model_json_schema(ref_template=REF_TEMPLATE)
    required = set(schema.get("required", ()))
    in_path = set(operation.path_parameters)
    parameters = []
    for name, property_schema in schema.get("properties", {}).items():
        described = dict(property_schema)
        description = described.pop("description", None)
        value = to_openapi30(described)
        value.pop("nullable", None)  # a parameter left out is None; there is no null to send
        if value.get("default", 0) is None:
            del value["default"]
        value.pop("description", None)
        if list(value) == ["allOf"] and len(value["allOf"]) == 1:  # was a nullable $ref
            value = value["allOf"][0]
        parameter: dict[str, Any] = {
            "name": name,
            "in": "path" if name in in_path else "query",
            "required": name in in_path or name in required,
            "schema": value,
        }
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def _json(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _operation_object(
    operation: Operation,
    roles: RoleMatrix[Any, Any],
    schemas: Mapping[tuple[int, str], Schema],
    definitions: Mapping[str, Schema],
) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": "Done."}
    if operation.response is not None:
        answer["content"] = _json(to_openapi30(_model_schema(schemas, operation.response, "serialization")))
    responses: dict[str, Any] = {str(operation.status): answer}
    for status in operation.errors:
        responses[str(status)] = {
            "description": _ERROR_TEXT[status],
            "content": _json({"$ref": REF_TEMPLATE.format(model="Error")}),
        }
    described: dict[str, Any] = {
        "operationId": operation.action,
        "summary": operation.summary,
        "tags": [operation.tag],
        "x-permission": operation.permission.value,
        "x-roles": [role.value for role in roles.holders(operation.permission)],
        "responses": responses,
    }
    description = operation.description or ""
    if operation.audit_reads:
        description = (
            "Every call is audited, with its query parameters, whatever its result. " + description
        ).strip()
    if description:
        described["description"] = description
    parameters = _parameters(operation)
    if parameters:
        described["parameters"] = parameters
    if operation.body is not None:
        body = schemas[(id(operation.body), "validation")]
        model = definitions.get(body.get("$ref", "").rsplit("/", 1)[-1], body)
        described["requestBody"] = {
            "required": bool(model.get("required")),
            "content": _json(to_openapi30(body)),
        }
    return described


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].rsplit("/", 1)[-1]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node))
    return set()


def _referenced(paths: Schema, components: dict[str, Schema]) -> dict[str, Schema]:
    """The components the paths use, directly or through each other (pydantic also defines the
    types behind identifier fields, which the document writes as patterned strings instead)."""
    wanted, todo = set(), _refs(paths)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo |= _refs(components[name])
    return {name: schema for name, schema in components.items() if name in wanted}


def _error_schema(codes: Sequence[str]) -> Schema:
    return {
        "type": "object",
        "properties": {
            "error": {"type": "string", "description": f"A stable code: {', '.join(codes)}."},
            "message": {"type": "string", "description": "What went wrong, for people."},
            "id": {
                "type": "string",
                "description": "500 only: the incident's id in the server's log, which has the details.",
            },
            "warnings": {
                "type": "array",
                "description": "What to acknowledge before repeating the call (ignore_warnings, "
                "confirm_removal): each with a stable code and a message for people.",
                "items": {
                    "type": "object",
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                    "required": ["code", "message"],
                },
            },
        },
        "required": ["error", "message"],
    }


def _unauthenticated(operation_id: str, summary: str) -> dict[str, Any]:
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "tags": ["health"],
            "security": [],
            "responses": {"200": {"description": "OK."}, "503": {"description": "Not healthy."}},
        }
    }


def openapi_document(info: ApiInfo, operations: Iterable[Operation], roles: RoleMatrix[Any, Any]) -> Schema:
    """The whole document: every operation under API_PREFIX behind the API-key schemes."""
    listed = list(operations)
    schemas, definitions = _components(listed)
    paths: dict[str, dict[str, Any]] = {}
    for operation in listed:
        item = paths.setdefault(API_PREFIX + operation.path, {})
        item[operation.method.lower()] = _operation_object(operation, roles, schemas, definitions)
    paths[HEALTH_PATH] = _unauthenticated("health", info.health)
    paths[OPENAPI_PATH] = _unauthenticated("openapi", "This document (no API key needed).")
    components = {name: to_openapi30(schema) for name, schema in sorted(definitions.items())}
    components["Error"] = _error_schema(info.error_codes)
    components = _referenced(paths, components)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": info.title, "version": info.version, "description": info.description},
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
            "schemas": components,
        },
    }
