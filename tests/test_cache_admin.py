"""The interface cache's management operations (gateway.admin.cache) on a running gw-a of the
in-process federation: policies validated and audited, entries, counters, purges, replication
runs, roles; and the CLI's `xgate admin cache ...` with declarative files (apply/export)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import click
import pytest
import yaml
from click.testing import CliRunner, Result

from gateway.admin.api import AdminContext, make_admin_app
from gateway.admin.cli import cli, policies_from_yaml, policies_to_yaml
from gateway.admin.roles import Role
from gateway.ids import SecurityServerId
from tests.conftest import BENEFITS_API, CONSUMER, GET_PERSON, KNOWN_PERSON
from tests.inprocess import Gateway, InProcessFederation
from tests.test_admin_api import start
from tests.test_cache_inprocess import get_benefits, get_person, refused

FALLBACK = {"service": GET_PERSON.to_text(), "mode": "fallback", "max_age_seconds": 3600}
REPLICATE = {
    "service": BENEFITS_API.to_text(),
    "mode": "replicate",
    "ttl_seconds": 600,
    "max_age_seconds": 86400,
    "shared": False,
    "replication": {
        "client": CONSUMER.to_text(),
        "schedule": {"cron": "0 3 * * *"},
        "requests": [
            {
                "name": "benefits",
                "method": "GET",
                "path": "/benefits/${person}",
                "parameters": {"person": {"list": [KNOWN_PERSON]}},
            }
        ],
    },
}


@dataclass
class CacheAdmin:
    base: str
    session: aiohttp.ClientSession
    gateway: Gateway
    keys: dict[Role, str]

    async def call(
        self,
        method: str,
        path: str,
        *,
        role: Role = Role.SERVICE_ADMINISTRATOR,
        json: Any = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"X-Road-ApiKey token={self.keys[role]}"}
        async with self.session.request(
            method, self.base + "/api/v1" + path, json=json, params=params, headers=headers
        ) as response:
            text = await response.text()
            return response.status, (json_loads(text) if text else None)

    def audit(self, action: str) -> list[Any]:
        return self.gateway.runtime.repository.audit_entries(action=action, limit=100)


def json_loads(text: str) -> Any:
    return json.loads(text)


def context_of(gateway: Gateway) -> AdminContext:
    runtime = gateway.runtime
    return AdminContext(
        repository=runtime.repository,
        data_dir=runtime.config.data_dir,
        server_id=SecurityServerId.from_text(runtime.gateway_name),
        on_change=runtime.reload_snapshot,
        cache=runtime.cache,
        replicator=lambda: runtime.replicator,
        globalconf=lambda: runtime.globalconf_source.current,
    )


@pytest.fixture
async def admin(local: InProcessFederation) -> AsyncIterator[CacheAdmin]:
    gateway = local["gw-a"]
    repository = gateway.runtime.repository
    keys = {role: repository.create_api_key(f"{role.value}-cache", role.value)[1] for role in Role}
    runner, base = await start(make_admin_app(context_of(gateway)))
    try:
        async with aiohttp.ClientSession() as session:
            yield CacheAdmin(base, session, gateway, keys)
    finally:
        await runner.cleanup()


async def test_policies_are_set_validated_listed_shown_and_removed_with_an_audit(admin: CacheAdmin) -> None:
    status, body = await admin.call("PUT", "/cache/policies/population", json=FALLBACK)
    assert status == 200, body
    assert (
        body["name"] == "population"
        and body["service"] == GET_PERSON.to_text()
        and body["mode"] == "fallback"
    )
    (entry,) = admin.audit("cache_policy.set")
    assert entry.target == "population" and entry.details["created"] is True

    status, listed = await admin.call("GET", "/cache/policies", role=Role.OBSERVER)
    assert status == 200 and [p["name"] for p in listed["policies"]] == ["population"]
    status, shown = await admin.call("GET", "/cache/policies/population", role=Role.OBSERVER)
    assert status == 200 and shown == body
    # The request path sees the new policy at once.
    assert admin.gateway.runtime.cache is not None
    assert admin.gateway.runtime.cache.policy_for(admin.gateway.runtime.snapshot, GET_PERSON, CONSUMER)

    status, _ = await admin.call("DELETE", "/cache/policies/population")
    assert status == 204
    status, error = await admin.call("GET", "/cache/policies/population")
    assert status == 404 and "population" in error["message"]
    assert len(admin.audit("cache_policy.remove")) == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"service": "DEV/GOV/9999/nobody/getPerson"}, "unknown service DEV/GOV/9999/nobody/getPerson"),
        ({"mode": "refresh", "ttl_seconds": 7200}, "ttl_seconds (7200) exceeds max_age_seconds (3600)"),
        ({"mode": "replicate"}, "mode replicate needs a replication plan"),
        ({"max_entry_bytes": 10, "max_total_bytes": 5}, "max_entry_bytes exceeds max_total_bytes"),
    ],
)
async def test_a_policy_that_cannot_be_is_refused_with_a_clear_error(
    admin: CacheAdmin, changes: dict[str, Any], message: str
) -> None:
    status, error = await admin.call("PUT", "/cache/policies/bad", json={**FALLBACK, **changes})
    assert status == 400 and message in error["message"], error
    status, _ = await admin.call("GET", "/cache/policies/bad")
    assert status == 404
    (refusal,) = admin.audit("cache_policy.set")
    assert refusal.result.value != "ok"


async def test_a_replication_client_must_be_registered_here(admin: CacheAdmin) -> None:
    plan = {**REPLICATE["replication"], "client": "DEV/GOV/1002/population"}  # gw-b's
    status, error = await admin.call("PUT", "/cache/policies/rep", json={**REPLICATE, "replication": plan})
    assert status == 400 and "not a subsystem registered here" in error["message"]


@pytest.mark.parametrize(
    ("role", "method", "path", "body", "allowed"),
    [
        (Role.OBSERVER, "PUT", "/cache/policies/p", FALLBACK, False),
        (Role.SECURITY_OFFICER, "PUT", "/cache/policies/p", FALLBACK, False),
        (Role.REGISTRATION_OFFICER, "POST", "/cache/purge", {"everything": True}, False),
        (Role.SECURITY_OFFICER, "POST", "/cache/purge", {"everything": True}, False),
        (Role.OBSERVER, "GET", "/cache/entries", None, False),
        (Role.SECURITY_OFFICER, "GET", "/cache/entries", None, True),
        (Role.SECURITY_OFFICER, "POST", "/cache/purge-subject", {"subject": KNOWN_PERSON}, True),
        (Role.OBSERVER, "POST", "/cache/purge-subject", {"subject": KNOWN_PERSON}, False),
        (Role.OBSERVER, "GET", "/cache/stats", None, True),
        (Role.OBSERVER, "GET", "/cache/runs", None, True),
        (Role.SERVICE_ADMINISTRATOR, "POST", "/cache/purge", {"everything": True}, True),
    ],
)
async def test_roles(admin: CacheAdmin, role: Role, method: str, path: str, body: Any, allowed: bool) -> None:
    status, _ = await admin.call(method, path, role=role, json=body)
    assert (status < 400) is allowed and (allowed or status == 403)


async def test_entries_counters_and_purges(admin: CacheAdmin) -> None:
    gw_a = admin.gateway
    assert (await admin.call("PUT", "/cache/policies/population", json=FALLBACK))[0] == 200
    await get_person(gw_a)
    gw_a.peers.handler = refused
    stale = await get_person(gw_a)
    assert "XGate-Cache" in stale.headers

    status, listed = await admin.call("GET", "/cache/entries", role=Role.SECURITY_OFFICER)
    assert status == 200
    (entry,) = listed["entries"]
    assert entry["service"] == GET_PERSON.to_text() and entry["client"] == CONSUMER.to_text()
    assert entry["policy"] == "population" and entry["log_record"] and "body" not in entry
    read = admin.audit("cache_entry.list")
    assert len(read) == 1  # who looked at the entries is audited

    status, stats = await admin.call("GET", "/cache/stats", role=Role.OBSERVER)
    assert status == 200 and stats["entries"] == 1
    (row,) = [s for s in stats["services"] if s["service"] == GET_PERSON.to_text()]
    assert row["stored"] == 1 and row["stale"] == 1
    assert row["circuit"] is not None and row["circuit"]["state"] == "closed"

    status, error = await admin.call("POST", "/cache/purge", json={})
    assert status == 400 and "say what to purge" in error["message"]
    status, purged = await admin.call("POST", "/cache/purge", json={"service": BENEFITS_API.to_text()})
    assert (status, purged) == (200, {"purged": 0})

    status, purged = await admin.call(
        "POST", "/cache/purge-subject", role=Role.SECURITY_OFFICER, json={"subject": KNOWN_PERSON}
    )
    assert (status, purged) == (200, {"purged": 1})
    (audited,) = admin.audit("cache.purge_subject")
    assert KNOWN_PERSON not in json.dumps(audited.details)  # the erased identifier is not kept
    assert audited.details["purged"] == 1


async def test_replication_runs_are_started_by_hand_and_listed(admin: CacheAdmin) -> None:
    status, body = await admin.call("PUT", "/cache/policies/benefits", json=REPLICATE)
    assert status == 200, body
    status, run = await admin.call("POST", "/cache/policies/benefits/runs")
    assert status == 201, run
    assert run["status"] == "ok" and run["trigger"] == "manual" and (run["calls"], run["fetched"]) == (1, 1)
    status, runs = await admin.call("GET", "/cache/runs", role=Role.OBSERVER)
    assert status == 200
    (plan,) = runs["plans"]
    assert plan["policy"] == "benefits" and plan["last_run"]["id"] == run["id"]
    assert plan["next_run"].endswith("T03:00:00Z")
    assert [r["id"] for r in runs["runs"]] == [run["id"]]
    # The replicated answer serves a client while the provider is down.
    admin.gateway.peers.handler = refused
    answer = await get_benefits(admin.gateway)
    assert answer.status_code == 200 and "XGate-Cache" in answer.headers

    status, error = await admin.call("PUT", "/cache/policies/population", json=FALLBACK)
    status, error = await admin.call("POST", "/cache/policies/population/runs")
    assert status == 409 and "not a replicate policy" in error["message"]


async def test_the_whole_set_is_applied_all_or_nothing(admin: CacheAdmin) -> None:
    assert (await admin.call("PUT", "/cache/policies/old", json=FALLBACK))[0] == 200
    bad = {"policies": {"population": FALLBACK, "broken": {**FALLBACK, "ttl_seconds": 99999}}}
    status, error = await admin.call("PUT", "/cache/policies", json=bad)
    assert status == 400 and error["message"].startswith("broken: ttl_seconds")
    status, listed = await admin.call("GET", "/cache/policies")
    assert [p["name"] for p in listed["policies"]] == ["old"]  # nothing changed

    good = {"policies": {"population": FALLBACK, "benefits": REPLICATE}}
    status, applied = await admin.call("PUT", "/cache/policies", json=good)
    assert status == 200, applied
    assert (applied["added"], applied["removed"]) == (["benefits", "population"], ["old"])
    status, again = await admin.call("PUT", "/cache/policies", json=good)
    assert again["unchanged"] == ["benefits", "population"] and again["added"] == []


# --- the CLI ---------------------------------------------------------------------------------------


async def xgate(admin: CacheAdmin, *args: str, role: Role = Role.SERVICE_ADMINISTRATOR) -> Result:
    env = {"XGATE_ADMIN_URL": admin.base, "XGATE_API_KEY": admin.keys[role]}
    return await asyncio.to_thread(CliRunner().invoke, cli, ["cache", *args], env=env, catch_exceptions=False)


async def test_the_cli_applies_exports_and_operates_the_cache(admin: CacheAdmin, tmp_path: Path) -> None:
    file = tmp_path / "cache.yaml"
    file.write_text(yaml.safe_dump({"policies": {"population": FALLBACK, "benefits": REPLICATE}}))
    result = await xgate(admin, "apply", str(file))
    assert result.exit_code == 0, result.output
    assert "added: benefits, population" in result.output

    exported = (await xgate(admin, "export")).output
    again = tmp_path / "again.yaml"
    again.write_text(exported)
    result = await xgate(admin, "apply", str(again))
    assert "unchanged: benefits, population" in result.output  # export -> apply changes nothing
    assert policies_from_yaml(exported)["population"]["service"] == GET_PERSON.to_text()

    # A file with one bad policy changes nothing and says what is wrong.
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump({"policies": {"population": {**FALLBACK, "ttl_seconds": 99999}}}))
    result = await xgate(admin, "apply", str(broken))
    assert (
        result.exit_code != 0 and "population: ttl_seconds (99999) exceeds max_age_seconds" in result.output
    )
    assert "benefits" in (await xgate(admin, "policies", "list")).output

    result = await xgate(
        admin, "policies", "set", "person-refresh", "--service", GET_PERSON.to_text(), "--mode", "refresh",
        "--ttl", "60", "--max-age", "600", "--client", CONSUMER.to_text(),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    shown = (await xgate(admin, "policies", "show", "person-refresh")).output
    assert yaml.safe_load(shown)["policies"]["person-refresh"]["ttl_seconds"] == 60

    run = json.loads((await xgate(admin, "run", "benefits", "--json")).output)
    assert run["status"] == "ok" and run["fetched"] == 1
    runs = (await xgate(admin, "runs", role=Role.OBSERVER)).output
    assert "benefits: last run" in runs and "next run" in runs
    entries = json.loads((await xgate(admin, "entries", "--json", role=Role.SECURITY_OFFICER)).output)
    assert [entry["policy"] for entry in entries["entries"]] == ["benefits"]
    stats = (await xgate(admin, "stats")).output
    assert BENEFITS_API.to_text() in stats
    purged = await xgate(admin, "purge", "--subject", KNOWN_PERSON, "--yes", role=Role.SECURITY_OFFICER)
    assert "1 entries purged" in purged.output
    assert "0 entries purged" in (await xgate(admin, "purge", "--all", "--yes")).output
    assert (await xgate(admin, "policies", "remove", "person-refresh", "--yes")).exit_code == 0


def test_yaml_files_are_read_strictly() -> None:
    with pytest.raises(click.ClickException, match="one key, `policies`"):
        policies_from_yaml("population: {}\n")
    with pytest.raises(click.ClickException, match="not YAML"):
        policies_from_yaml("policies: [\n")
    text = yaml.safe_dump({"policies": {"population": FALLBACK, "benefits": REPLICATE}})
    assert policies_from_yaml(policies_to_yaml(policies_from_yaml(text))) == policies_from_yaml(text)
