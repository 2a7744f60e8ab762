"""The management API framework: declarations to documents, validation, roles, paging, identifiers.

Unit tests of gateway.webapi, and the rules both APIs keep alike checked on their documents and,
for the gateway's, over real HTTP (the fixture of test_admin_api).
"""

from __future__ import annotations

import enum
from typing import Any

import pytest
from pydantic import Field

from gateway.admin import api as admin_api
from gateway.admin.roles import Role
from gateway.central import api as central_api
from gateway.messagelog.officer import MAX_EXPORT_PER_CALL
from gateway.webapi.openapi import to_openapi30
from gateway.webapi.operations import Call, OperationTable, Outcome
from gateway.webapi.roles import RoleMatrix
from gateway.webapi.types import MAX_PAGE, Body, ClientIdField, Params, ServerIdField
from tests.test_admin_api import PROVIDER, Admin, add_provider, admin  # noqa: F401  (fixture)

DOCUMENTS = {"gateway": admin_api.openapi_document, "registry": central_api.openapi_document}


# --- the document's dialect -------------------------------------------------------------------


def test_json_schema_becomes_openapi_3_0() -> None:
    assert to_openapi30({"anyOf": [{"type": "string", "title": "X"}, {"type": "null"}]}) == {
        "type": "string",
        "nullable": True,
    }
    assert to_openapi30({"anyOf": [{"$ref": "#/components/schemas/A"}, {"type": "null"}]}) == {
        "allOf": [{"$ref": "#/components/schemas/A"}],
        "nullable": True,
    }
    assert to_openapi30({"const": "x"}) == {"enum": ["x"]}
    assert to_openapi30({"type": "number", "exclusiveMinimum": 0}) == {
        "type": "number",
        "minimum": 0,
        "exclusiveMinimum": True,
    }
    assert to_openapi30({"$ref": "#/components/schemas/A", "description": "d"}) == {
        "allOf": [{"$ref": "#/components/schemas/A"}],
        "description": "d",
    }


@pytest.mark.parametrize("api", DOCUMENTS)
def test_documents_hold_no_json_schema_2020_forms(api: str) -> None:
    def walk(node: Any) -> None:
        if isinstance(node, dict):
            assert "const" not in node and "$defs" not in node and node.get("type") != "null", node
            for bound in ("exclusiveMinimum", "exclusiveMaximum"):
                assert node.get(bound) is None or isinstance(node[bound], bool), node
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(DOCUMENTS[api]())


# --- roles --------------------------------------------------------------------------------------


_Role = enum.StrEnum("_Role", {"READER": "reader", "WRITER": "writer"})
_Permission = enum.StrEnum("_Permission", {"READ": "read", "WRITE": "write"})


def test_role_matrix_decides_lists_and_parses() -> None:
    matrix = RoleMatrix(
        _Role,
        _Permission,
        {_Role.READER: frozenset({_Permission.READ}), _Role.WRITER: frozenset(_Permission)},
    )
    assert matrix.is_permitted(_Role.READER, _Permission.READ)
    assert not matrix.is_permitted(_Role.READER, _Permission.WRITE)
    assert matrix.holders(_Permission.WRITE) == [_Role.WRITER]
    assert matrix.parse("writer") is _Role.WRITER
    with pytest.raises(ValueError, match="one of reader, writer"):
        matrix.parse("admin")


@pytest.mark.parametrize("api", DOCUMENTS)
def test_every_operation_names_the_roles_holding_its_permission(api: str) -> None:
    matrix = admin_api.MATRIX if api == "gateway" else central_api.MATRIX
    operations = admin_api.OPERATIONS if api == "gateway" else central_api.OPERATIONS
    document = DOCUMENTS[api]()
    for operation in operations:
        described = document["paths"]["/api/v1" + operation.path][operation.method.lower()]
        assert described["x-roles"] == [role.value for role in matrix.holders(operation.permission)]
        assert described["x-roles"], operation.action  # someone may do it


# --- paging -------------------------------------------------------------------------------------


@pytest.mark.parametrize("api", DOCUMENTS)
def test_every_listing_pages_by_the_same_limit(api: str) -> None:
    """`limit` is 1..1000 with a default of 100 everywhere; exports of whole containers 1..20."""
    limits = {}
    for item in DOCUMENTS[api]()["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "limit":
                    limits[operation["operationId"]] = parameter["schema"]
    assert "audit_log.read" in limits
    for action, schema in limits.items():
        maximum = MAX_EXPORT_PER_CALL if action == "message_log.export" else MAX_PAGE
        assert (schema["type"], schema["minimum"], schema["maximum"]) == ("integer", 1, maximum), action
        assert schema["default"] == (maximum if action == "message_log.export" else 100), action


@pytest.mark.parametrize("limit", ["0", "-1", str(MAX_PAGE + 1), "many"])
async def test_a_limit_out_of_range_is_refused_everywhere(admin: Admin, limit: str) -> None:  # noqa: F811
    for path in ("/api/v1/audit-log", "/api/v1/message-log/records"):
        status, body = await admin.call("GET", path, params={"limit": limit})
        assert (status, body["error"]) == (400, "validation_error"), path
        assert "limit" in body["message"], body
    status, body = await admin.call("GET", "/api/v1/audit-log", params={"limit": str(MAX_PAGE)})
    assert status == 200


# --- identifiers and validation -----------------------------------------------------------------


def test_identifiers_are_read_in_either_form() -> None:
    class Names(Params):
        client: ClientIdField
        server: ServerIdField | None = None

    def read(**values: str) -> Names:
        return Names.model_validate(values)

    assert read(client="DEV:GOV:1001:sub").client == read(client="DEV/GOV/1001/sub").client
    assert read(client="DEV:GOV:1001").client.to_text() == "DEV/GOV/1001"
    assert read(client="x/y/z", server="DEV:GOV:1001:gw").server.to_text() == "DEV/GOV/1001/gw"  # type: ignore[union-attr]
    for bad in ("DEV/GOV", "DEV/GOV:1001", "DEV/GOV/./x", "DEV/GOV/1/2/3"):
        with pytest.raises(ValueError, match="INSTANCE/CLASS/MEMBER"):
            read(client=bad)


async def test_paths_take_the_text_form_and_the_colon_form(admin: Admin) -> None:  # noqa: F811
    await add_provider(admin)
    for segment in ("DEV%2FGOV%2F1001%2FPROVIDER", "DEV:GOV:1001:PROVIDER"):
        status, body = await admin.call("GET", f"/api/v1/subsystems/{segment}")
        assert (status, body["client_id"]) == (200, PROVIDER), segment
    for bad in ("DEV%2FGOV", "DEV%2FGOV%3A1001%2FPROVIDER", "DEV%2FGOV%2F..%2FPROVIDER"):
        status, body = await admin.call("GET", f"/api/v1/subsystems/{bad}")
        assert (status, body["error"]) == (400, "validation_error"), bad
        assert "parameters.client_id" in body["message"]


async def test_bodies_are_typed_strictly_and_unknown_fields_are_refused(admin: Admin) -> None:  # noqa: F811
    for body, named in [
        ({"client_id": PROVIDER, "auth_mode": True}, "body.auth_mode"),
        ({"client_id": PROVIDER, "mode": "https"}, "body.mode"),
        ({"client_id": 5}, "body.client_id"),
        ({}, "body.client_id"),
    ]:
        status, answer = await admin.call("POST", "/api/v1/subsystems", json=body)
        assert (status, answer["error"]) == (400, "validation_error"), body
        assert named in answer["message"], answer
    await add_provider(admin)
    status, answer = await admin.call(
        "POST",
        "/api/v1/keys/1/csr",
        role=Role.SECURITY_OFFICER,
        json={"subject": {"serial_number": False}},
    )
    assert (status, answer["error"]) == (400, "validation_error")
    assert "body.subject.serial_number" in answer["message"]


class _KeyPath(Params):
    key_id: int


async def _read_key(ctx: Any, call: Call[_KeyPath, None]) -> Outcome:
    return Outcome()


def test_a_declaration_must_read_its_path_parameters() -> None:
    """The models come from the handler's annotation; a path parameter no model reads is an error
    when the module declaring it loads, not a 400 on every call."""
    table = OperationTable()
    table.read("/keys/{key_id}", "key.read", _Permission.READ, None)(_read_key)
    assert (table.operations[0].params, table.operations[0].body) == (_KeyPath, None)
    with pytest.raises(TypeError, match="key_id"):
        table.read("/keys/{key_id}", "key.read", _Permission.READ, None)(lambda ctx, call: None)


def test_a_body_model_refuses_what_its_schema_refuses() -> None:
    class Sample(Body):
        count: int = Field(ge=1)

    schema = Sample.model_json_schema()
    assert schema["additionalProperties"] is False and schema["required"] == ["count"]
    with pytest.raises(ValueError):
        Sample.model_validate_json('{"count": "5"}')
    assert Sample.model_validate_json('{"count": 5}').count == 5


@pytest.mark.parametrize("command", [["admin", "audit"], ["central", "audit"], ["log", "search"]])
def test_the_command_lines_page_by_the_same_limit(command: list[str]) -> None:
    """`--limit` is 1..1000 in every CLI, refused before anything is asked of an API."""
    from click.testing import CliRunner

    from gateway.admin.cli import cli as admin_cli
    from gateway.central.cli import cli as central_cli
    from gateway.messagelog.cli import cli as log_cli

    group = {"admin": admin_cli, "central": central_cli, "log": log_cli}[command[0]]
    for limit in ("0", str(MAX_PAGE + 1)):
        result = CliRunner().invoke(group, [*command[1:], "--limit", limit], env={"XGATE_API_KEY": "k"})
        assert result.exit_code == 2 and "--limit" in result.output, result.output
    help_text = CliRunner().invoke(group, [*command[1:], "--help"]).output
    assert f"1..{MAX_PAGE}" in help_text and "default: 100" in help_text
    assert "--page TOKEN" in help_text  # and one way to the next page
