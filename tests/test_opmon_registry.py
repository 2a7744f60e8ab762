"""The registry names the federation's monitoring client in the configuration it publishes
(docs/monitoring.md): through its settings API and `xgate central settings set`."""

from __future__ import annotations

import asyncio
import json

from tests.test_central_cli import Setup, setup
from tests.test_central_registry import OWNER, Registry, database_url, migrated_url, registry, trust

__all__ = ["database_url", "migrated_url", "registry", "setup", "trust"]  # the fixtures used here


async def test_the_monitoring_client_is_set_published_and_unset(registry: Registry) -> None:
    await registry.register_members((OWNER, "Social Security Fund"))
    assert (await registry.globalconf()).monitoring_client is None
    assert (await registry.ok("GET", "/settings"))["monitoring_client"] is None

    status, error = await registry.api("PUT", "/settings", {"monitoring_client": "DEV/GOV/9999/ghost"})
    assert status == 400 and "not a registered client" in error["message"], error
    status, error = await registry.api("PUT", "/settings", {"monitoring_client": "not a client"})
    assert status == 400, error

    answer = await registry.ok("PUT", "/settings", {"monitoring_client": "DEV:GOV:1001"})
    assert answer["monitoring_client"] == OWNER.to_text()
    assert (await registry.globalconf()).monitoring_client == OWNER

    answer = await registry.ok("PUT", "/settings", {"monitoring_client": "", "validity_seconds": 900})
    assert answer["monitoring_client"] is None and answer["validity_seconds"] == 900
    conf = await registry.globalconf()
    assert conf.monitoring_client is None and conf.settings.validity_seconds == 900


async def test_xgate_central_settings_names_and_unnames_the_monitoring_client(setup: Setup) -> None:
    repository = setup.registry.context.repository
    repository.add_member_class("GOV", "Government")
    repository.add_member(OWNER, "Social Security Fund")

    named = await asyncio.to_thread(setup.central, "settings", "set", "--monitoring-client", "DEV:GOV:1001")
    assert named.exit_code == 0, named.output
    assert "monitoring_client: DEV/GOV/1001" in named.output
    assert repository.configuration().monitoring_client == OWNER
    both = await asyncio.to_thread(
        setup.central, "settings", "set", "--monitoring-client", "DEV/GOV/1001", "--no-monitoring-client"
    )
    assert both.exit_code == 2 and "not both" in both.output
    unnamed = await asyncio.to_thread(setup.central, "settings", "set", "--no-monitoring-client", "--json")
    assert unnamed.exit_code == 0, unnamed.output
    assert json.loads(unnamed.output)["monitoring_client"] is None
    assert repository.configuration().monitoring_client is None
