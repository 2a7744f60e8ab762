"""The message log when things break: a gateway killed under load, a timestamping authority
that goes away and comes back. Nothing a client got an answer for may be missing from the log."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

import requests

from gateway.dev import federation
from gateway.dev.processes import Child, Ports, spawn, wait_http
from gateway.messagelog.db import create_engine
from gateway.messagelog.store import search
from tests.conftest import (
    GLOBALCONF_WAIT_SECONDS,
    HTTP_TIMEOUT_SECONDS,
    Federation,
    soap_fault,
    wait_until,
)
from tests.test_e2e_messagelog import post_get_person, records_of

TIMESTAMPER_FAILED = {
    "Server.ClientProxy.LoggingFailed.TimestamperFailed",
    "Server.ServerProxy.LoggingFailed.TimestamperFailed",
}


def _logged_responses(fed: Federation, gateway: str) -> set[str]:
    """Message ids of the consumer-side response records in the gateway's own log database."""
    engine = create_engine(f"sqlite:///{fed.dir / gateway / 'messagelog.sqlite'}")
    try:
        return {
            stored.record.message_id
            for stored in search(engine, limit=1000)
            if stored.record.direction.value == "response" and stored.record.outcome == "ok"
        }
    finally:
        engine.dispose()


def test_a_gateway_killed_under_load_lost_no_record_of_an_answered_exchange(fed: Federation) -> None:
    answered: list[str] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            message_id = f"kill-{uuid.uuid4()}"
            try:
                if post_get_person(fed, message_id).status_code == 200:
                    answered.append(message_id)
            except requests.RequestException:
                pass  # the connection died with the gateway: no answer, nothing promised

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(answered) >= 20, 30, "some answered requests under load")
    pid = federation.read_pids(fed.dir)["gw-a"]
    os.killpg(pid, signal.SIGKILL)
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(timeout=HTTP_TIMEOUT_SECONDS)
    federation.stop_process(fed.dir, "gw-a")  # forget the dead pid
    federation.start_process(fed.dir, "gw-a")

    logged = _logged_responses(fed, "gw-a")
    missing = [message_id for message_id in answered if message_id not in logged]
    assert answered and not missing, f"{len(missing)} of {len(answered)} answered exchanges not in the log"
    assert post_get_person(fed, f"after-{uuid.uuid4()}").status_code == 200, (
        "the restarted gateway serves again"
    )


def _spare_tsa(fed: Federation, ports: Ports, port: int) -> Child:
    """A second `xgate trust serve` over the federation's PKI: the same TSA certificate, its own
    port, whose socket (held in `ports`) it is handed."""
    command = [sys.executable, "-m", "gateway.cli", "trust", "serve", "--pki", str(fed.pki_dir)]
    return spawn(
        "spare-tsa",
        [*command, "--port", str(port)],
        fed.dir / "logs" / "spare-tsa.log",
        cwd=fed.dir,
        listening=ports.take([port]),
    )


def _point_tsa_at(fed: Federation, url: str) -> None:
    """Registers `url` as the federation's TSA and waits until every gateway runs on it."""
    trust = fed.description["trust"]
    versions = {
        gw["name"]: fed.health(gw["name"])["globalconf"]["version"] for gw in fed.description["gateways"]
    }
    fed.registry.put(
        f"/timestamping-authorities/{federation.TSA_NAME}",
        {"url": url, "certificate": Path(trust["tsa_cert"]).read_text()},
    )
    for name, version in versions.items():
        wait_until(
            lambda name=name, version=version: fed.health(name)["globalconf"]["version"] > version,  # type: ignore[misc]
            GLOBALCONF_WAIT_SECONDS,
            f"{name} to adopt the configuration naming {url}",
        )


def test_a_lost_tsa_backlogs_stamps_then_refuses_traffic_then_recovers(short_fed: Federation) -> None:
    fed = short_fed
    allowed = fed.description["settings"]["max_timestamp_failure_seconds"]
    ports = Ports()
    port = ports.reserve()
    url = f"http://127.0.0.1:{port}"
    tsa = _spare_tsa(fed, ports, port)
    try:
        wait_http(url + "/health", time.monotonic() + 30, tsa)
        _point_tsa_at(fed, url + "/tsa")
        first = f"tsa-{uuid.uuid4()}"
        assert post_get_person(fed, first).status_code == 200
        wait_until(
            lambda: all(r["timestamped"] for r in records_of(fed, "gw-a", first)),
            GLOBALCONF_WAIT_SECONDS,
            "the first exchange to be timestamped",
        )

        os.killpg(tsa.pid, signal.SIGKILL)
        tsa.process.wait(timeout=10)
        lost_at = time.monotonic()
        backlog = f"tsa-{uuid.uuid4()}"
        assert post_get_person(fed, backlog).status_code == 200, "within the allowed period traffic goes on"
        time.sleep(2 * fed.description["settings"]["timestamping_interval_seconds"])
        assert not any(r["timestamped"] for r in records_of(fed, "gw-a", backlog)), "stamps wait for the TSA"

        def refused() -> bool:
            response = post_get_person(fed, f"tsa-{uuid.uuid4()}")
            return response.status_code == 500 and soap_fault(response).code in TIMESTAMPER_FAILED

        wait_until(refused, allowed + 20, "requests to be refused once timestamping failed too long")
        assert time.monotonic() - lost_at >= allowed * 0.9, "not refused before the allowed period"

        tsa = _spare_tsa(fed, ports, port)  # binds the port itself: the first one released it
        wait_http(url + "/health", time.monotonic() + 30, tsa)
        wait_until(
            lambda: post_get_person(fed, f"tsa-{uuid.uuid4()}").status_code == 200,
            allowed + 30,
            "traffic to resume once the TSA is back",
        )
        wait_until(
            lambda: all(r["timestamped"] for r in records_of(fed, "gw-a", backlog)),
            GLOBALCONF_WAIT_SECONDS,
            "the backlog to be stamped",
        )
    finally:
        os.killpg(tsa.pid, signal.SIGKILL)
        tsa.process.wait(timeout=10)
        _point_tsa_at(fed, fed.description["trust"]["tsa_url"])
