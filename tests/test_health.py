"""Health for load balancers (gateway.monitoring.health, gateway.proxy.health) and the maintenance
switch (gateway.monitoring.maintenance): the verdict's rules, its cache and bounds, and a node in
this process whose health flips with what stops it serving, and back.

Real processes behind real sockets (the trust services stopped, the configuration let expire,
maintenance while traffic flows, a log disk below its watermark) are tests/test_e2e_health.py's.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestServer

from gateway import faults
from gateway.config import ConfigError, load_config
from gateway.configfile import Listener
from gateway.db import create_engine
from gateway.ids import ClientId
from gateway.messagelog.diskspace import DiskWatermarks, Watermark
from gateway.monitoring.health import (
    BoundedProbe,
    HealthCache,
    failing,
    passing,
    run_checks,
    verdict,
)
from gateway.monitoring.maintenance import MAINTENANCE_FILE, MaintenanceMode
from gateway.proxy.health import (
    CHECK_NAMES,
    NodeHealth,
    make_health_app,
    ping_database,
)
from gateway.serverconf.db import ALEMBIC_VERSION_TABLE as SERVERCONF_VERSION_TABLE
from gateway.serverconf.db import migrate as migrate_serverconf
from gateway.serverconf.model import ClientAuthMode
from tests.conftest import KNOWN_PERSON, assert_soap_fault, get_person_request, pg_schema_url, soap_body
from tests.inprocess import Gateway, InProcessFederation
from tests.test_node import VALID_TOML

SOAP_HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}

# --- the verdict ------------------------------------------------------------------------------------


def test_the_verdict_is_ok_only_when_every_check_passes_and_names_each_failing_one() -> None:
    ok = verdict({"a": passing(), "b": passing("fine", "look at b")}, None, 0.0)
    assert (ok.status, ok.http_status) == ("ok", 200)
    assert ok.as_json()["checks"]["b"] == {"ok": True, "detail": "fine", "warning": "look at b"}

    bad = verdict({"a": failing("down"), "b": passing(), "c": failing("gone")}, None, 0.0)
    assert (bad.status, bad.http_status) == ("failing", 503)
    assert bad.as_json()["failing"] == ["a", "c"]


def test_maintenance_answers_503_whatever_the_checks_say() -> None:
    found = verdict({"a": passing()}, {"since": "now", "in_flight": {"internal": 3}}, 0.0)
    assert (found.status, found.http_status) == ("maintenance", 503)
    assert found.as_json()["maintenance"] == {"since": "now", "in_flight": {"internal": 3}}


def test_a_check_that_raises_fails_alone() -> None:
    def broken() -> object:
        raise RuntimeError("boom")

    results = run_checks({"broken": broken, "fine": passing})  # type: ignore[dict-item]
    assert not results["broken"].ok and "RuntimeError: boom" in str(results["broken"].detail)
    assert results["fine"].ok


def test_results_are_reused_for_their_ttl() -> None:
    calls: list[int] = []
    now = [100.0]

    def counted() -> object:
        calls.append(1)
        return passing()

    cache = HealthCache({"counted": counted}, ttl_seconds=1.5, clock=lambda: now[0])  # type: ignore[dict-item]
    for _ in range(20):
        cache.results()
    now[0] += 1.0
    cache.results()
    assert len(calls) == 1
    now[0] += 0.6
    cache.results()
    assert len(calls) == 2
    cache.invalidate()
    cache.results()
    assert len(calls) == 3


def test_a_hung_probe_is_failing_within_its_bound_and_never_started_twice() -> None:
    release = threading.Event()
    started: list[int] = []

    def hangs() -> None:
        started.append(1)
        release.wait(30)

    probe = BoundedProbe("hangs", hangs, timeout_seconds=0.3)
    begun = time.monotonic()
    first = probe()
    assert time.monotonic() - begun < 1.0
    assert not first.ok and "timed out" in str(first.detail)
    second = probe()  # still hung: waits out the rest of the bound, starts nothing new
    assert not second.ok and started == [1]
    release.set()
    deadline = time.monotonic() + 5
    while not (result := probe()).ok and time.monotonic() < deadline:
        time.sleep(0.05)
    assert result.ok and len(started) == 2


def test_a_probe_that_raises_names_the_error() -> None:
    def refuses() -> None:
        raise ConnectionRefusedError("connection refused")

    result = BoundedProbe("refuses", refuses, 1.0)()
    assert not result.ok and result.detail == "ConnectionRefusedError: connection refused"


@pytest.mark.postgres
def test_a_database_hung_on_a_lock_is_failing_within_the_bound() -> None:
    """A PostgreSQL table locked by another transaction: the ping waits on the lock, the check does not."""
    with pg_schema_url("xgate_health") as url:
        migrate_serverconf(url)
        engine, locker = create_engine(url), create_engine(url)
        try:
            probe = BoundedProbe("pg", lambda: ping_database(engine, SERVERCONF_VERSION_TABLE), 0.5)
            assert probe().ok
            with locker.begin() as connection:
                connection.exec_driver_sql(f"LOCK TABLE {SERVERCONF_VERSION_TABLE} IN ACCESS EXCLUSIVE MODE")
                begun = time.monotonic()
                hung = probe()
                assert time.monotonic() - begun < 1.5
                assert not hung.ok and str(hung.detail).startswith("timed out"), hung
            deadline = time.monotonic() + 10
            while not probe().ok:
                assert time.monotonic() < deadline, "the check did not recover once the lock was released"
                time.sleep(0.05)
        finally:
            engine.dispose()
            locker.dispose()


# --- the maintenance switch ---------------------------------------------------------------------


def test_maintenance_survives_a_restart_and_off_removes_it(tmp_path: Path) -> None:
    switch = MaintenanceMode(tmp_path)
    assert switch.state is None
    on = switch.turn_on("ops#1", "kernel upgrade")
    assert on["by"] == "ops#1" and on["reason"] == "kernel upgrade"
    assert switch.turn_on("ops#2")["by"] == "ops#1", "already on: kept as it was"
    assert (tmp_path / MAINTENANCE_FILE).stat().st_mode & 0o777 == 0o600

    restarted = MaintenanceMode(tmp_path)
    assert restarted.state == on
    restarted.turn_off("ops#1")
    assert restarted.state is None and not (tmp_path / MAINTENANCE_FILE).exists()
    assert MaintenanceMode(tmp_path).state is None


def test_an_unreadable_switch_keeps_the_node_out_of_the_pool(tmp_path: Path) -> None:
    (tmp_path / MAINTENANCE_FILE).write_text("{not json")
    state = MaintenanceMode(tmp_path).state
    assert state is not None and "unreadable" in str(state["reason"])


# --- the [health] table ----------------------------------------------------------------------------


def test_the_health_listener_may_bind_any_address_unlike_the_admin_one(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(VALID_TOML)
    assert load_config(path).health.listener is None, "no table: health only on the admin listener"

    path.write_text(VALID_TOML + '[health]\nhost = "0.0.0.0"\nport = 9001\nprobe_timeout_seconds = 0.5\n')
    settings = load_config(path).health
    assert settings.listener == Listener("0.0.0.0", 9001)
    assert (settings.cache_seconds, settings.probe_timeout_seconds) == (1.0, 0.5)

    path.write_text(VALID_TOML + "[health]\nenabled = false\nport = 9001\n")
    assert load_config(path).health.listener is None

    path.write_text(VALID_TOML + "[health]\nport = 9001\nprobe_timeout_seconds = 0\n")
    with pytest.raises(ConfigError, match=r"health\.probe_timeout_seconds"):
        load_config(path)


# --- a node in this process -----------------------------------------------------------------------


def fresh(gateway: Gateway, probe_timeout_seconds: float = 2.0) -> NodeHealth:
    """The node's checks without a cache, so each verdict sees the change just made."""
    return NodeHealth(gateway.runtime, cache_seconds=0, probe_timeout_seconds=probe_timeout_seconds)


async def verdict_of(health: NodeHealth) -> dict[str, object]:
    return (await health.verdict_within()).as_json()


async def test_a_serving_node_is_ok_on_every_check(local: InProcessFederation) -> None:
    found = await verdict_of(fresh(local["gw-a"]))
    assert found["status"] == "ok", found
    assert list(found["checks"]) == list(CHECK_NAMES)  # type: ignore[call-overload]


async def test_health_fails_when_the_log_cannot_write_and_recovers(local: InProcessFederation) -> None:
    """Below the critical watermark the log refuses exchanges: health says so before a client finds out."""
    gw = local["gw-a"]
    health = fresh(gw)
    assert gw.runtime.messagelog is not None
    disk = gw.runtime.messagelog.disk
    normal = disk.watermarks
    everything = 2**62  # more free bytes than any disk has: the real disk is below it
    try:
        disk.watermarks = DiskWatermarks(Watermark(0, everything), Watermark(0, 0))
        disk.refresh(force=True)
        warned = await verdict_of(health)
        assert warned["status"] == "ok", "below the warning watermark the node still serves"
        assert "below the warning watermark" in warned["checks"]["messagelog"]["warning"]  # type: ignore[index]

        disk.watermarks = DiskWatermarks(Watermark(0, everything), Watermark(0, everything))
        disk.refresh(force=True)
        found = await verdict_of(health)
        assert found["status"] == "failing" and found["failing"] == ["messagelog"], found
        assert "below the critical watermark" in str(found["checks"]["messagelog"]["detail"])  # type: ignore[index]
        refused = await gw.post("/", get_person_request(KNOWN_PERSON), SOAP_HEADERS)
        assert_soap_fault(refused, faults.LOGGING_FAILED)
    finally:
        disk.watermarks = normal
        disk.refresh(force=True)
    assert (await verdict_of(health))["status"] == "ok"
    served = await gw.post("/", get_person_request(KNOWN_PERSON), SOAP_HEADERS)
    assert soap_body(served) is not None


async def test_a_hosted_member_without_a_signing_key_is_a_warning(local: InProcessFederation) -> None:
    gw = local["gw-a"]
    with gw.serverconf() as repository:
        repository.add_subsystem(ClientId.from_text("DEV/GOV/9999/KEYLESS"), ClientAuthMode.HTTP)
    found = await verdict_of(fresh(gw))
    assert found["status"] == "ok", found
    warning = found["checks"]["signing_keys"]["warning"]  # type: ignore[index]
    assert warning == "no signing key for hosted member(s) DEV/GOV/9999"


@contextmanager
def exhausted_pool(engine: sa.Engine) -> Iterator[None]:
    """Every connection of the engine's pool checked out: the next connect waits (pool_timeout)."""
    pool = engine.pool
    size = pool.size() + pool._max_overflow  # type: ignore[attr-defined]
    held = [engine.connect() for _ in range(size)]
    try:
        yield
    finally:
        for connection in held:
            connection.close()


async def test_health_answers_in_bounded_time_when_the_database_hangs(local: InProcessFederation) -> None:
    gw = local["gw-a"]
    health = fresh(gw, probe_timeout_seconds=0.5)
    with exhausted_pool(gw.runtime.repository.engine):
        begun = time.monotonic()
        found = await verdict_of(health)
        took = time.monotonic() - begun
        again = await verdict_of(health)
        hung = [t for t in threading.enumerate() if t.name == "health-serverconf-db"]
    assert took < 0.5 + 1.0, took
    assert found["failing"] == ["database"], found
    detail = found["checks"]["database"]["detail"]  # type: ignore[index]
    assert detail["serverconf"].startswith("timed out") and detail["messagelog"] == "reachable"
    assert again["failing"] == ["database"] and len(hung) == 1, "one hung probe thread, not one per request"
    deadline = time.monotonic() + 10
    while (await verdict_of(health))["status"] != "ok":
        assert time.monotonic() < deadline, "health did not recover once the database answered"
        await asyncio.sleep(0.05)


async def test_the_health_listener_answers_the_verdict_and_maintenance(local: InProcessFederation) -> None:
    gw = local["gw-a"]
    maintenance = gw.runtime.maintenance
    assert maintenance is not None
    server = TestServer(make_health_app(fresh(gw)), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(server.make_url("/health")) as response:
                assert response.status == 200
                body = await response.json()
                assert body["status"] == "ok" and set(body["checks"]) == set(CHECK_NAMES)
            maintenance.turn_on("test", "drain")
            async with session.get(server.make_url("/health")) as response:
                assert response.status == 503
                body = await response.json()
                assert body["status"] == "maintenance"
                assert body["maintenance"]["in_flight"] == {"internal": 0, "external": 0}
            served = await gw.post("/", get_person_request(KNOWN_PERSON), SOAP_HEADERS)
            assert soap_body(served) is not None, "in maintenance the node still serves"
            maintenance.turn_off("test")
            async with session.get(server.make_url("/health")) as response:
                assert response.status == 200
            async with session.get(server.make_url("/api/v1/maintenance")) as response:
                assert response.status == 404, "the health listener serves health only"
    finally:
        maintenance.turn_off("test")
        await server.close()
