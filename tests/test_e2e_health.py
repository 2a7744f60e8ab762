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
from tests.docblocks import claimed_blocks

REPO: Final = Path(__file__).resolve().parents[1]
THIS: Final = "tests/test_e2e_health.py"
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


def operator_env(fed: Federation, name: str) -> dict[str, str]:
    """What docs/operations.md's blocks expect: the node's admin API and key, its HEALTH_URL."""
    gw = fed.gateway(name)
    return {
        **{key: value for key, value in os.environ.items() if not key.startswith("XGATE_")},
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "XGATE_ADMIN_URL": gw["admin_url"],
        "XGATE_API_KEY": gw["api_key"],
        "HEALTH_URL": gw["health_url"],
    }


def run_doc_block(script: str, env: dict[str, str], tmp_path: Path) -> str:
    """One of docs/operations.md's blocks, as a reader's bash runs it."""
    done = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{script}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def get_person(fed: Federation) -> requests.Response:
    return post_soap(fed.internal_url("gw-a"), get_person_request(KNOWN_PERSON))


def test_the_health_listener_answers_apart_from_the_management_api(
    short_fed: Federation, tmp_path: Path
) -> None:
    fed = short_fed
    wait_healthy(fed, "gw-a")
    (look,) = claimed_blocks(f"{THIS}::test_the_health_listener_answers_apart_from_the_management_api")
    shown = json.loads(run_doc_block(look.script, operator_env(fed, "gw-a"), tmp_path))
    assert shown["status"] == "ok" and all(shown["checks"].values()), shown
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


def test_maintenance_drains_without_failing_a_request(short_fed: Federation, tmp_path: Path) -> None:
    """Traffic from a client loop goes on while the node leaves its pool, through a restart, and back:
    docs/operations.md's procedure, its blocks run as written."""
    fed = short_fed
    wait_healthy(fed, "gw-a")
    take_out, put_back = claimed_blocks(f"{THIS}::test_maintenance_drains_without_failing_a_request")
    env = operator_env(fed, "gw-a")
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
        # docs/operations.md: on, health 503, wait until drained (it is not while clients call).
        out = run_doc_block(take_out.script.replace("until", "#until", 1), env, tmp_path)
        assert "health: 503" in out and "maintenance: on" in out, out
        on = xgate_admin(fed, "gw-a", "maintenance", "status")
        assert on["enabled"] and on["reason"] == "kernel upgrade"
        assert on["by"].startswith("federation-admin"), on
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

    assert "drained" in run_doc_block(take_out.script, env, tmp_path)  # the whole block, now drained
    drained = xgate_admin(fed, "gw-a", "maintenance", "status")
    assert drained["enabled"] and drained["drained"], drained
    assert drained["in_flight"] == {"internal": 0, "external": 0}

    # A node restarted in maintenance stays out of the pool until its operator says otherwise.
    federation.stop_process(fed.dir, "gw-a")
    federation.start_process(fed.dir, "gw-a")
    wait_until(lambda: lb_health(fed, "gw-a")[1]["status"] == "maintenance", 30, "gw-a up in maintenance")
    assert soap_body(get_person(fed)) is not None, "and serves whatever reaches it"

    assert "back in the pool" in run_doc_block(put_back.script, env, tmp_path)
    assert not xgate_admin(fed, "gw-a", "maintenance", "status")["enabled"]
    assert lb_health(fed, "gw-a")[0] == 200
    audited = fed.admin("gw-a").audit_log(action="maintenance.set")["entries"]  # newest first
    assert [entry["details"]["enabled"] for entry in audited] == [False, True, True], audited


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
    wait_healthy(fed, "gw-b")  # the provider recovers from the same outage on its own clock
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
    wait_healthy(fed, "gw-b")  # the provider recovers from the same outage on its own clock
    assert soap_body(get_person(fed)) is not None


def test_health_fails_when_the_log_disk_is_below_its_critical_watermark_and_recovers(
    short_fed: Federation,
) -> None:
    """The node restarted with watermarks above any disk's free space: its log refuses, health says so."""
    fed = short_fed
    wait_healthy(fed, "gw-a")
    config = Path(fed.gateway("gw-a")["config"])
    original = config.read_text()
    beyond_any_disk = 2**62
    config.write_text(
        original.replace(
            "[messagelog]\n",
            f"[messagelog]\ndisk_warning_free_bytes = {beyond_any_disk}\n"
            f"disk_critical_free_bytes = {beyond_any_disk}\n",
            1,
        )
    )
    try:
        federation.stop_process(fed.dir, "gw-a")
        federation.start_process(fed.dir, "gw-a")
        wait_until(
            lambda: "messagelog" in failing_checks(fed, "gw-a"), 30, "health to name the full log disk"
        )
        _, body = lb_health(fed, "gw-a")
        assert "below the critical watermark" in body["checks"]["messagelog"]["detail"]
        assert_soap_fault(get_person(fed), faults.LOGGING_FAILED)
    finally:
        config.write_text(original)
        federation.stop_process(fed.dir, "gw-a")
        federation.start_process(fed.dir, "gw-a")
    wait_healthy(fed, "gw-a")
    wait_healthy(fed, "gw-b")  # the provider recovers from the same outage on its own clock
    assert soap_body(get_person(fed)) is not None
