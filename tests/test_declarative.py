"""Declarative configuration (issue 12 item 4): `xgate config export` and `apply` against a running gateway.

The gateways are the in-process federation's (tests/inprocess.py); gw-b's management API runs on
127.0.0.1 as the node runs it (gateway.node's admin application), and the `xgate config`
commands talk to it over HTTP. The exported file is checked against the published schema
(docs/config-schema.json) with jsonschema_rs, an implementation independent of pydantic,
which is what the gateway validates with.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jsonschema_rs
import pytest
import yaml
from aiohttp import web
from click.testing import CliRunner, Result

from gateway.admin.declarative import config_schema, run_steps
from gateway.cli import main
from gateway.ids import ClientId, LocalGroupId, ServiceId
from gateway.node import _admin_app
from gateway.proxy.health import NodeHealth
from gateway.serverconf.access import AccessRight
from gateway.serverconf.db import migrate
from gateway.serverconf.declared import Step
from gateway.serverconf.repository import ConfigurationChanged, NotFound, ServerConfRepository
from tests.conftest import (
    BACKENDS,
    CONSUMER,
    GET_PERSON,
    KNOWN_PERSON,
    POPULATION,
    POPULATION_NS,
    REPO,
    get_person_request,
    migrated_database,
    serving_in_thread,
    soap_body,
)
from tests.inprocess import InProcessFederation

SCHEMA_FILE: Final = REPO / "docs" / "config-schema.json"
SOAP_HEADERS: Final = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}


@dataclass
class Node:
    """gw-b with its management API listening, and keys for two roles."""

    url: str
    repository: ServerConfRepository
    admin_key: str
    service_admin_key: str

    def run(self, *args: str, key: str | None = None) -> Result:
        env = {"XGATE_API_KEY": key or self.admin_key, "XGATE_ADMIN_URL": self.url}
        return CliRunner().invoke(main, ["config", *args], env=env, catch_exceptions=False)

    async def xgate(self, *args: str, key: str | None = None) -> Result:
        """The command in a thread: the management API answers on this test's event loop."""
        return await asyncio.to_thread(self.run, *args, key=key)


@pytest.fixture
async def node(local: InProcessFederation) -> AsyncIterator[Node]:
    runtime = local["gw-b"].runtime
    repository = runtime.repository
    _, admin_key = repository.create_api_key("declarative-admin", "system_administrator")
    _, service_admin_key = repository.create_api_key("declarative-services", "service_administrator")
    runner = web.AppRunner(_admin_app(runtime, NodeHealth.of_node(runtime)))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield Node(f"http://{host}:{port}", repository, admin_key, service_admin_key)
    finally:
        await runner.cleanup()


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def save(path: Path, document: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def subsystem(document: dict[str, Any], client: ClientId) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in document["subsystems"] if s["id"] == client.to_text())
    return found


async def get_person(local: InProcessFederation) -> int:
    response = await local["gw-a"].post("/", get_person_request(KNOWN_PERSON), SOAP_HEADERS)
    if response.status_code == 200:
        assert soap_body(response).find(f"{{{POPULATION_NS}}}person") is not None
    return response.status_code


def test_the_published_schema_is_the_models() -> None:
    assert json.loads(SCHEMA_FILE.read_text()) == config_schema(), (
        "regenerate: .venv/bin/xgate config schema > docs/config-schema.json"
    )


async def test_export_apply_is_idempotent_and_a_change_is_diffed_applied_audited_and_served(
    node: Node, local: InProcessFederation, tmp_path: Path
) -> None:
    exported = tmp_path / "gateway.yaml"
    result = await node.xgate("export", "-o", str(exported))
    assert result.exit_code == 0, result.output
    text = exported.read_text()
    document = load(exported)
    jsonschema_rs.validator_for(json.loads(SCHEMA_FILE.read_text())).validate(document)
    # No secret of the node's: no private key, no API key (nor its digest).
    assert "PRIVATE KEY" not in text and node.admin_key not in text and "api_key" not in text
    population = subsystem(document, POPULATION)
    assert {s["code"] for s in population["services"]} >= {"getPerson", "listPersons"}
    assert {
        "service_code": "getPerson",
        "subject": CONSUMER.to_text(),
        "subject_type": "subsystem",
    } in population["access_rights"]

    version = node.repository.current_version()
    result = await node.xgate("apply", str(exported))
    assert result.exit_code == 0, result.output
    assert "no changes" in result.output
    assert node.repository.current_version() == version

    # The consumer's rights through a local group instead; a slower timeout; body logging off.
    population["local_groups"] = [
        {"code": "benefit-offices", "description": "who pays", "members": [CONSUMER.to_text()]}
    ]
    population["access_rights"] = [
        right
        if right["subject"] != CONSUMER.to_text()
        else {"service_code": right["service_code"], "subject": "benefit-offices"}
        for right in population["access_rights"]
    ]
    population["log_bodies"] = False
    for service in population["services"]:
        if service["code"] == "getPerson":
            service["timeout_seconds"] = 7.5
    changed = tmp_path / "changed.yaml"
    save(changed, document)

    dry = await node.xgate("apply", "--dry-run", str(changed))
    assert dry.exit_code == 0, dry.output
    lines = dry.output.splitlines()
    assert (
        f"~ subsystem.set_logging_policy {POPULATION}: log_bodies False, timestamp_immediately False" in lines
    )
    assert f"+ local_group.add {POPULATION}/benefit-offices" in lines
    assert f"+ local_group.add_member {POPULATION}/benefit-offices: {CONSUMER}" in lines
    assert f"~ service.update {GET_PERSON}: timeout_seconds" in lines
    assert f"- access.revoke {POPULATION}: subsystem {CONSUMER} → getPerson" in lines
    assert f"+ access.grant {POPULATION}: localgroup benefit-offices → getPerson" in lines
    assert "dry run" in lines[-1]
    assert node.repository.current_version() == version

    denied = await node.xgate("apply", str(changed), key=node.service_admin_key)
    assert denied.exit_code == 1 and "403" in denied.output
    assert node.repository.current_version() == version

    applied = await node.xgate("apply", str(changed))
    assert applied.exit_code == 0, applied.output
    assert "applied" in applied.output.splitlines()[-1]
    assert node.repository.current_version() == version + 1  # one transaction
    conf = node.repository.snapshot()
    assert conf.subsystems[POPULATION].log_bodies is False
    assert conf.services[GET_PERSON].timeout_seconds == 7.5
    group = LocalGroupId("benefit-offices")
    assert AccessRight(group, "getPerson") in conf.rights(POPULATION, "getPerson")
    assert AccessRight(CONSUMER, "getPerson") not in conf.rights(POPULATION, "getPerson")
    entry = node.repository.audit_entries(action="config.apply", limit=5)[0]
    assert entry.actor.startswith("declarative-admin") and entry.details["applied"] is True
    assert len(entry.details["changes"]) == len(lines) - 1

    local["gw-b"].runtime.reload_snapshot()
    assert await get_person(local) == 200  # the consumer is served through the group's right

    again = await node.xgate("apply", str(changed))
    assert again.exit_code == 0 and "no changes" in again.output, again.output
    assert node.repository.current_version() == version + 1

    # The export now is the changed file (modulo formatting).
    assert (await node.xgate("export", "-o", str(tmp_path / "after.yaml"))).exit_code == 0
    after = subsystem(load(tmp_path / "after.yaml"), POPULATION)
    assert after["local_groups"] == population["local_groups"] and after["log_bodies"] is False


async def test_a_file_with_problems_names_them_all_and_changes_nothing(node: Node, tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    assert (await node.xgate("export", "-o", str(path))).exit_code == 0
    document = load(path)
    population = subsystem(document, POPULATION)
    population["log_bodies"] = False  # a good change, which must not be made either
    population["access_rights"].append({"service_code": "noSuchService", "subject": CONSUMER.to_text()})
    population["access_rights"].append({"service_code": "getPerson", "subject": "DEV/GOV/9999/nobody"})
    population["access_rights"].append({"service_code": "getPerson", "subject": "no-such-group"})
    save(path, document)
    version = node.repository.current_version()

    result = await node.xgate("apply", str(path))

    assert result.exit_code == 1
    assert "'noSuchService', a service not declared" in result.output
    assert "DEV/GOV/9999/nobody is not registered in the global configuration" in result.output
    assert "local group no-such-group, not declared" in result.output
    assert node.repository.current_version() == version
    assert node.repository.snapshot().subsystems[POPULATION].log_bodies is True


@pytest.fixture
def wsdl_server() -> Iterator[str]:
    """The population register's WSDL served over HTTP, as an agency would publish it."""
    wsdl = (REPO / "wsdl" / "population-register.wsdl").read_bytes()

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=wsdl, content_type="text/xml")

    app = web.Application()
    app.router.add_get("/population.wsdl", answer)
    with serving_in_thread(app, "127.0.0.1", 0) as port:
        yield f"http://127.0.0.1:{port}/population.wsdl"


async def test_a_new_subsystems_services_come_with_a_description_fetched_by_url(
    node: Node, tmp_path: Path, wsdl_server: str
) -> None:
    path = tmp_path / "gateway.yaml"
    assert (await node.xgate("export", "-o", str(path))).exit_code == 0
    document = load(path)
    mirror = ClientId("DEV", "GOV", "1002", "mirror")
    document["subsystems"].append(
        {
            "id": mirror.to_text(),
            "auth_mode": "https_cert",
            "services": [
                {
                    "code": "getPerson",
                    "version": "v1",
                    "kind": "soap",
                    "backend_url": "http://127.0.0.1:9/population-register",
                    "description": {"source": wsdl_server},
                },
                {
                    "code": "notInTheWsdl",
                    "kind": "soap",
                    "backend_url": "http://127.0.0.1:9/population-register",
                    "description": {"source": wsdl_server},
                },
            ],
        }
    )
    save(path, document)
    refused = await node.xgate("apply", str(path))
    assert refused.exit_code == 1 and "the WSDL does not offer notInTheWsdl" in refused.output

    del subsystem(document, mirror)["services"][1]
    save(path, document)
    result = await node.xgate("apply", str(path))
    assert result.exit_code == 0, result.output
    service = ServiceId("DEV", "GOV", "1002", "mirror", "getPerson", "v1")
    conf = node.repository.snapshot().services[service]
    assert conf.description is not None and conf.description.source == wsdl_server
    assert "populationRegister" in conf.description.document
    again = await node.xgate("apply", str(path))  # the stored description is kept, not fetched again
    assert "no changes" in again.output, again.output


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_step_that_fails_midway_leaves_nothing_changed(backend: str, tmp_path: Path) -> None:
    with migrated_database(backend, tmp_path, "serverconf.db", migrate, "xgate_lifecycle") as url:
        repository = ServerConfRepository.from_url(url)
        new = ClientId("DEV", "GOV", "1234", "new")
        steps = [
            Step("+", "subsystem.add", new.to_text(), "add_subsystem", (new,)),
            Step("+", "access.grant", new.to_text(), "grant", (new, AccessRight(CONSUMER, "missing"))),
        ]
        version = repository.current_version()
        try:
            with pytest.raises(NotFound, match=r"access\.grant DEV/GOV/1234/new"):
                run_steps(repository, steps)
            assert repository.snapshot().subsystem(new) is None
            assert repository.current_version() == version
            with pytest.raises(ConfigurationChanged, match="apply it again"):
                run_steps(repository, steps[:1], planned_on=version - 1)  # planned on an older state
            run_steps(repository, steps[:1], planned_on=version)  # works on after the rollbacks
            assert repository.snapshot().subsystem(new) is not None
            assert repository.current_version() == version + 1
        finally:
            repository.engine.dispose()


def test_a_file_that_is_not_json_shaped_is_refused_before_any_call(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("format: xgate-config/1\nsubsystems:\n- id: DEV/GOV/1/a\n  note: 2026-12-06\n")
    result = CliRunner().invoke(main, ["config", "apply", str(path)], env={"XGATE_API_KEY": "unused"})
    assert result.exit_code == 1 and "quote it" in result.output
    path.write_text("- just a list\n")
    result = CliRunner().invoke(main, ["config", "apply", str(path)], env={"XGATE_API_KEY": "unused"})
    assert result.exit_code == 1 and "must hold a mapping" in result.output
