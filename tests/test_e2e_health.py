"""Health behind a load balancer, end to end: real node processes, their [health] listeners
(`health_url` in federation.json) and what an operator does (docs/operations.md).

The federation is conftest's `short_fed` (configuration valid 10 s, OCSP responses fresh 8 s,
timestamping allowed to fail 15 s), so every flip happens within a test; each test leaves it
serving as it found it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Final

import requests

from gateway import faults
from gateway.dev import federation
from tests.conftest import (
    KNOWN_PERSON,
    Federation,
    assert_soap_fault,
    get_person_request,
    post_soap,
    soap_body,
    wait_until,
)

REPO: Final = Path(__file__).resolve().parents[1]
ANSWER_BOUND_SECONDS: Final = 3.0 + 1.0
"""The probe limit (2 s) plus the listener's margin (1 s), and a second for a loaded machine."""
RECOVERY_SECONDS: Final = 40.0
"""A trust service or the registry back: the next renewal or download, with retries' back-off."""


def lb_health(fed: Federation, name: str) -> tuple[int, dict[str, Any]]:
    """What a load balancer sees at the gateway's health listener."""
    response = requests.get(fed.gateway(name)["health_url"], timeout=ANSWER_BOUND_SECONDS)
    body: dict[str, Any] = response.json()
    return response.status_code, body


def failing_checks(fed: Federation, name: str) -> list[str]:
    status, body = lb_health(fed, name)
    assert (status == 200) == (body["status"] == "ok"), body
    return list(body.get("failing", []))


def wait_healthy(fed: Federation, name: str, timeout: float = RECOVERY_SECONDS) -> None:
    wait_until(lambda: lb_health(fed, name)[0] == 200, timeout, f"{name}'s health to answer 200")


def xgate_admin(fed: Federation, name: str, *args: str) -> dict[str, Any]:
    """`xgate admin ARGS --json` against the gateway's management API, as its operator runs it."""
    gw = fed.gateway(name)
    env = {**os.environ, "XGATE_ADMIN_URL": gw["admin_url"], "XGATE_API_KEY": gw["api_key"]}
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "admin", *args, "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def get_person(fed: Federation) -> requests.Response:
    return post_soap(fed.internal_url("gw-a"), get_person_request(KNOWN_PERSON))


def test_the_health_listener_answers_apart_from_the_management_api(short_fed: Federation) -> None:
    fed = short_fed
    wait_healthy(fed, "gw-a")
    gw = fed.gateway("gw-a")
    assert gw["health_url"].split("/")[2] != gw["admin_url"].split("/")[2], "a port of its own"
    begun = time.monotonic()
    response = requests.get(gw["health_url"], timeout=ANSWER_BOUND_SECONDS)
    assert time.monotonic() - begun < ANSWER_BOUND_SECONDS
    body = response.json()
    assert response.status_code == 200 and body["status"] == "ok", body
    assert set(body["checks"]) == {
        "database",
        "signing_keys",
        "globalconf",
        "ocsp",
        "timestamping",
        "messagelog",
        "clock",
    }
    assert body["checks"]["ocsp"]["detail"]["fresh"] == 2  # the TLS and the signing certificate
    assert gw["api_key"] not in response.text and "PRIVATE" not in response.text
    base = gw["health_url"].removesuffix("/health")
    assert requests.get(base + "/api/v1/subsystems", timeout=5).status_code == 404
    assert requests.get(base + "/api/openapi.json", timeout=5).status_code == 404
    # The admin listener's /health answers the same verdict, with the node's details beside it.
    detail = fed.health("gw-a")
    assert detail["status"] == "ok" and set(detail["checks"]) == set(body["checks"])
    assert "admission" in detail and "admission" not in body


def test_maintenance_drains_without_failing_a_request(short_fed: Federation) -> None:
    """Traffic from a client loop goes on while the node leaves its pool, through a restart, and back."""
    fed = short_fed
    wait_healthy(fed, "gw-a")
    results: list[int] = []
    stop = threading.Event()

    def client_loop() -> None:
        deadline = time.monotonic() + 120  # bounded whatever happens to the test
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                results.append(get_person(fed).status_code)
            except requests.RequestException:
                results.append(0)

    clients = [threading.Thread(target=client_loop) for _ in range(2)]
    for client in clients:
        client.start()
    try:
        wait_until(lambda: len(results) >= 5, 30, "traffic to flow")
        on = xgate_admin(fed, "gw-a", "maintenance", "on", "--reason", "upgrade")
        assert on["enabled"] and on["reason"] == "upgrade" and on["by"].startswith("federation-admin")
        status, body = lb_health(fed, "gw-a")
        assert status == 503 and body["status"] == "maintenance", body
        assert set(body["maintenance"]["in_flight"]) == {"internal", "external"}
        served_before = len(results)
        wait_until(lambda: len(results) >= served_before + 10, 30, "traffic to go on in maintenance")
    finally:
        stop.set()
        for client in clients:
            client.join(60)
    assert results and set(results) == {200}, f"a request failed: {sorted(set(results))}"

    drained = xgate_admin(fed, "gw-a", "maintenance", "status")
    assert drained["enabled"] and drained["drained"], drained
    assert drained["in_flight"] == {"internal": 0, "external": 0}

    # A node restarted in maintenance stays out of the pool until its operator says otherwise.
    federation.stop_process(fed.dir, "gw-a")
    federation.start_process(fed.dir, "gw-a")
    wait_until(lambda: lb_health(fed, "gw-a")[1]["status"] == "maintenance", 30, "gw-a up in maintenance")
    assert soap_body(get_person(fed)) is not None, "and serves whatever reaches it"

    off = xgate_admin(fed, "gw-a", "maintenance", "off")
    assert not off["enabled"]
    wait_healthy(fed, "gw-a")
    actions = [entry["action"] for entry in fed.admin("gw-a").audit_log(action="maintenance.set")["entries"]]
    assert actions == ["maintenance.set", "maintenance.set"]


def test_health_fails_while_the_trust_services_are_down_and_recovers(short_fed: Federation) -> None:
    """OCSP responses go stale (8 s), then timestamping passes its allowed failure (15 s)."""
    fed = short_fed
    wait_healthy(fed, "gw-a")
    settings = fed.description["settings"]
    federation.stop_process(fed.dir, "trust")
    try:
        wait_until(
            lambda: "ocsp" in failing_checks(fed, "gw-a"),
            settings["ocsp_freshness_seconds"] + 10,
            "health to name stale OCSP responses",
        )
        _, body = lb_health(fed, "gw-a")
        assert "no fresh OCSP response for own certificate" in str(body["checks"]["ocsp"]["detail"])
        assert_soap_fault(get_person(fed), faults.OCSP_RESPONSE_STALE)  # traffic agrees
        wait_until(
            lambda: "timestamping" in failing_checks(fed, "gw-a"),
            settings["max_timestamp_failure_seconds"] + 15,
            "health to name timestamping failing for longer than allowed",
        )
        _, body = lb_health(fed, "gw-a")
        assert "timestamping has failed since" in body["checks"]["timestamping"]["detail"]
    finally:
        federation.start_process(fed.dir, "trust")
    wait_healthy(fed, "gw-a")
    assert soap_body(get_person(fed)) is not None


def test_health_fails_once_the_global_configuration_expires_and_recovers(short_fed: Federation) -> None:
    fed = short_fed
    wait_healthy(fed, "gw-a")
    federation.stop_process(fed.dir, "registry")
    try:
        wait_until(
            lambda: "globalconf" in failing_checks(fed, "gw-a"),
            fed.description["settings"]["validity_seconds"] + 10,
            "health to name the expired global configuration",
        )
        _, body = lb_health(fed, "gw-a")
        detail = body["checks"]["globalconf"]["detail"]
        assert "expired" in detail["problem"] and "cannot download" in detail["last_error"], detail
        assert_soap_fault(get_person(fed), faults.OUTDATED_GLOBALCONF)
    finally:
        federation.start_process(fed.dir, "registry")
    wait_healthy(fed, "gw-a")
    assert soap_body(get_person(fed)) is not None
