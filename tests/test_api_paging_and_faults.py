"""Both management APIs against bad paging values and unforeseen failures (issue 9, hole 10 and
Build 12): every integer a caller sends is checked against what the database can take before
it gets there (400, naming the parameter), and a failure nobody foresaw answers a generic 500
with an incident id, its details only in the server's log.

The gateway's API runs over a real (empty) message log; the registry's is
tests/test_central_registry.py's. The sweep covers every operation whose parameters hold an
integer, so an operation added later is covered too.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner

from gateway.admin.api import API as GATEWAY_API
from gateway.admin.api import AdminContext, make_admin_app
from gateway.admin.roles import Role as GatewayRole
from gateway.central.api import API as REGISTRY_API
from gateway.central.roles import Role as RegistryRole
from gateway.ids import SecurityServerId
from gateway.messagelog import db as messagelog_db
from gateway.messagelog.cli import cli as log_cli
from gateway.messagelog.inspector import LogInspector
from gateway.webapi.operations import API_PREFIX, Operation
from gateway.webapi.types import MAX_SQL_INTEGER
from tests.test_admin_api import make_repository, start
from tests.test_central_registry import Registry, database_url, migrated_url, registry, trust

__all__ = ["database_url", "migrated_url", "registry", "trust"]  # fixtures of test_central_registry

SERVER = SecurityServerId("DEV", "GOV", "1001", "gw1")
INCIDENT = re.compile(r"^[0-9a-f]{16}$")
HUGE = (2**31, 2**63, 10**30)
"""Past PostgreSQL's and SQLite's INTEGER, past a 64-bit row id, past anything: each a 400."""


def integer_parameters(operation: Operation) -> dict[str, dict[str, Any]]:
    """The operation's integer parameters with their JSON-schema bounds."""
    if operation.params is None:
        return {}
    found = {}
    for name, schema in operation.params.model_json_schema()["properties"].items():
        options = schema.get("anyOf", [schema])
        integer = next((option for option in options if option.get("type") == "integer"), None)
        if integer is not None:
            found[name] = integer
    return found


def bad_values(bounds: dict[str, Any]) -> list[str]:
    values = [str(bounds["minimum"] - 1), "x", "1.5", "-"]
    values += [str(value) for value in HUGE if value > bounds.get("maximum", 2**63 - 1)]
    if "maximum" in bounds:
        values.append(str(bounds["maximum"] + 1))
    return values


def sweep(operations: list[Operation]) -> Iterator[tuple[Operation, str, str]]:
    for operation in operations:
        path_names = set(re.findall(r"{(\w+)}", operation.path))
        for name, bounds in integer_parameters(operation).items():
            if path_names - {name}:
                continue  # another path parameter to fill: none such today (asserted below)
            for value in bad_values(bounds):
                yield operation, name, value


def request_of(operation: Operation, name: str, value: str) -> tuple[str, dict[str, str]]:
    """The operation's URL with `name` = `value`, in its path or its query."""
    placeholder = "{" + name + "}"
    if placeholder in operation.path:
        return API_PREFIX + operation.path.replace(placeholder, value), {}
    return API_PREFIX + operation.path, {name: value}


# --- the gateway's management API ------------------------------------------------------------


async def _call(
    session: aiohttp.ClientSession, base: str, method: str, path: str, key: str, params: dict[str, str]
) -> tuple[int, Any]:
    headers = {"Authorization": f"X-Road-ApiKey token={key}"}
    async with session.request(method, base + path, params=params, headers=headers, json=None) as response:
        text = await response.text()
        return response.status, json.loads(text) if text else None


@pytest.fixture
async def gateway_api(tmp_path: Path) -> AsyncIterator[tuple[aiohttp.ClientSession, str, Any]]:
    repository, keys = make_repository(tmp_path)
    url = f"sqlite:///{tmp_path / 'messagelog.sqlite'}"
    messagelog_db.migrate(url)
    engine = messagelog_db.create_engine(url)
    inspector = LogInspector(engine, "DEV/GOV/1001/gw1")
    ctx = AdminContext(repository=repository, data_dir=tmp_path, server_id=SERVER, message_log=inspector)
    runner, base = await start(make_admin_app(ctx))
    try:
        async with aiohttp.ClientSession() as session:
            yield session, base, (repository, keys)
    finally:
        await runner.cleanup()
        repository.engine.dispose()
        engine.dispose()


def refused_parameter(
    answer: tuple[int, Any], operation: Operation, name: str, value: object
) -> tuple[str, str]:
    """Checks that `answer` refuses the bad value of parameter `name` as a validation error;
    returns (operation, parameter) for the sweep's coverage."""
    status, body = answer
    assert status == 400, (operation.action, name, value, body)
    assert body["error"] == "validation_error" and f"parameters.{name}" in body["message"], body
    return operation.action, name


def _gateway_key(keys: dict[GatewayRole, str], operation: Operation) -> str:
    role = next(r for r in GatewayRole if GATEWAY_API.guard.roles.is_permitted(r, operation.permission))
    return keys[role]


async def test_bad_paging_values_are_400_on_every_gateway_operation(
    gateway_api: tuple[aiohttp.ClientSession, str, Any],
) -> None:
    session, base, (_, keys) = gateway_api
    covered = set()
    for operation, name, value in sweep(GATEWAY_API.operations):
        path, params = request_of(operation, name, value)
        answer = await _call(session, base, operation.method, path, _gateway_key(keys, operation), params)
        covered.add(refused_parameter(answer, operation, name, value))
    assert {
        ("message_log.search", "offset"),
        ("message_log.search", "limit"),
        ("message_log.export", "offset"),
        ("audit_log.read", "before_id"),
        ("api_key.revoke", "key_id"),
    } <= covered, covered


async def test_the_largest_offset_reaches_the_message_log_and_answers_an_empty_page(
    gateway_api: tuple[aiohttp.ClientSession, str, Any],
) -> None:
    session, base, (_, keys) = gateway_api
    for path in ("/message-log/records", "/message-log/containers"):
        params = {"offset": str(MAX_SQL_INTEGER), "limit": "1"}
        if path.endswith("containers"):
            params["client"] = "DEV/GOV/1001/app"
        status, body = await _call(
            session, base, "GET", API_PREFIX + path, keys[GatewayRole.SECURITY_OFFICER], params
        )
        assert status == 200, body
        assert body["next_offset"] is None


async def test_an_unforeseen_gateway_failure_is_a_500_with_an_incident_id_and_no_internals(
    gateway_api: tuple[aiohttp.ClientSession, str, Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    session, base, (repository, keys) = gateway_api

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("ConnectionKey(host='secret.internal', port=5432) at /srv/xgate/secret.py")

    monkeypatch.setattr(repository, "add_subsystem", broken)
    headers = {"Authorization": f"X-Road-ApiKey token={keys[GatewayRole.SYSTEM_ADMINISTRATOR]}"}
    with caplog.at_level(logging.ERROR):
        async with session.post(
            base + API_PREFIX + "/subsystems", json={"client_id": "DEV/GOV/1001/app"}, headers=headers
        ) as response:
            status, body = response.status, await response.json()
    assert status == 500 and body["error"] == "internal_error"
    assert INCIDENT.match(body["id"]) and body["id"] in body["message"]
    for leak in ("secret", "ConnectionKey", "Traceback", "RuntimeError", ".py"):
        assert leak not in json.dumps(body)
    [logged] = [r for r in caplog.records if body["id"] in r.getMessage()]
    assert logged.exc_info is not None and "secret.internal" in str(logged.exc_info[1])


# --- the registry's management API and its distribution listener -----------------------------


def _registry_role(operation: Operation) -> RegistryRole:
    return next(r for r in RegistryRole if REGISTRY_API.guard.roles.is_permitted(r, operation.permission))


async def test_bad_paging_values_are_400_on_every_registry_operation(registry: Registry) -> None:
    covered = set()
    for operation, name, value in sweep(REGISTRY_API.operations):
        path, params = request_of(operation, name, value)
        path = path.removeprefix(API_PREFIX)
        if params:
            path += "?" + "&".join(f"{k}={v}" for k, v in params.items())
        answer = await registry.api(operation.method, path, role=_registry_role(operation))
        covered.add(refused_parameter(answer, operation, name, value))
    assert {
        ("request.list", "limit"),
        ("audit_log.read", "before_id"),
        ("signing_key.activate", "key_id"),
    } <= covered


async def test_an_unforeseen_registry_failure_is_a_500_with_an_incident_id(
    registry: Registry, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("psycopg.OperationalError: password authentication failed for user secret")

    monkeypatch.setattr(registry.repository, "requests", broken)
    monkeypatch.setattr(registry.repository, "request", broken)
    with caplog.at_level(logging.ERROR):
        status, body = await registry.api("GET", "/requests")
        async with registry.session.get(registry.url + "/requests/0123456789abcdef") as response:
            public_status, public = response.status, await response.json()
    for answer in (body, public):
        assert answer["error"] == "internal_error" and INCIDENT.match(answer["id"]), answer
        assert "secret" not in json.dumps(answer) and "psycopg" not in json.dumps(answer)
        assert any(answer["id"] in r.getMessage() and r.exc_info for r in caplog.records)
    assert (status, public_status) == (500, 500)


# --- the officer's command on a copy of the database -----------------------------------------


def test_a_huge_offset_on_the_database_itself_is_refused_in_one_line(tmp_path: Path) -> None:
    """`xgate log search --database ...` bypasses the API: the query itself keeps the bound."""
    url = f"sqlite:///{tmp_path / 'messagelog.sqlite'}"
    messagelog_db.migrate(url)
    base = ["--database", url, "--gateway", "DEV/GOV/1001/gw1", "search"]
    huge = CliRunner().invoke(log_cli, [*base, "--offset", str(2**63)])
    assert huge.exit_code != 0 and f"offset must be 0..{MAX_SQL_INTEGER}" in huge.output
    assert huge.exception is None or isinstance(huge.exception, SystemExit), huge.exception
    assert "Traceback" not in huge.output
    largest = CliRunner().invoke(log_cli, [*base, "--offset", str(MAX_SQL_INTEGER)])
    assert largest.exit_code == 0 and "(no records)" in largest.output, largest.output
