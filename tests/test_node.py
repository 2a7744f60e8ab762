"""A gateway node as a process: graceful shutdown on SIGTERM, and refusing to start on a bad configuration.

The node runs as `xgate gateway serve` in its own process, from a federation that
`gateway.dev.federation.build` generated but did not start; the slow service it calls runs in a
thread of the test, so the test knows the moment the request is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from aiohttp import web

from gateway.config import ConfigError, load_config
from gateway.dev import federation
from gateway.dev.processes import Child, wait_for
from gateway.serverconf.access import AccessRight
from gateway.serverconf.repository import ServerConfRepository
from tests.conftest import (
    BENEFITS,
    BENEFITS_API,
    HTTP_TIMEOUT_SECONDS,
    REPO,
    rest_headers,
    serving_in_thread,
    wait_until,
)

# Long enough to send SIGTERM while the request is surely in flight, short for the suite.
SLOW_SERVICE_SECONDS = 1.5
NODE_START_SECONDS = 30.0


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A generated federation (keys, configurations, databases); no process started."""
    return federation.build(tmp_path_factory.mktemp("built"))


def gateway_of(built: dict[str, Any], name: str) -> dict[str, Any]:
    return next(gw for gw in built["gateways"] if gw["name"] == name)


def serve_command(config: str | Path, workers: int | None = None) -> list[str]:
    """`xgate gateway serve`: as many workers as cores unless `workers` says."""
    command = [sys.executable, "-m", "gateway.cli", "gateway", "serve", "--config", str(config)]
    return command if workers is None else [*command, "--workers", str(workers)]


@contextlib.contextmanager
def node_process(config: str, log: Path, workers: int | None = None) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            serve_command(config, workers),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


@contextlib.contextmanager
def slow_service(delay: float) -> Iterator[tuple[str, threading.Event]]:
    """An agency service in a thread: answers any GET after `delay`, and says when a request arrived."""
    arrived = threading.Event()

    async def answer(request: web.Request) -> web.Response:
        arrived.set()
        await asyncio.sleep(delay)
        return web.json_response({"answered_after": delay})

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    with serving_in_thread(app, "127.0.0.1", 0) as port:
        yield f"http://127.0.0.1:{port}", arrived


def accepts_connections(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def test_sigterm_lets_the_in_flight_request_finish(built: dict[str, Any], tmp_path: Path) -> None:
    gw_c = gateway_of(built, "gw-c")
    with slow_service(SLOW_SERVICE_SECONDS) as (service_url, arrived):
        repository = ServerConfRepository.from_url(
            f"sqlite:///{Path(built['dir']) / 'gw-c' / 'serverconf.sqlite'}"
        )
        registered = repository.snapshot().service(BENEFITS_API)
        assert registered is not None
        repository.update_service(
            dataclasses.replace(registered, backend_url=service_url, timeout_seconds=10.0)
        )
        repository.grant(BENEFITS, AccessRight(BENEFITS, "benefits", None))
        repository.engine.dispose()

        with node_process(gw_c["config"], tmp_path / "gw-c.log") as node:
            child = Child("gw-c", node, tmp_path / "gw-c.log")  # a node that dies fails the wait at once
            wait_for(lambda: _healthy(gw_c), time.monotonic() + NODE_START_SECONDS, "gw-c to start", [child])
            result: dict[str, requests.Response | BaseException] = {}

            def call() -> None:
                try:
                    result["response"] = requests.get(
                        f"{gw_c['internal_http_url']}/r1/{BENEFITS_API.to_text()}/benefits/38001085718",
                        headers=rest_headers(client=BENEFITS),
                        timeout=HTTP_TIMEOUT_SECONDS,
                    )
                except BaseException as exc:
                    result["response"] = exc

            caller = threading.Thread(target=call)
            caller.start()
            assert arrived.wait(10), "the request did not reach the service"
            sent_at = time.monotonic()
            node.send_signal(signal.SIGTERM)

            # It stops accepting at once, while the request is still at the service...
            wait_until(
                lambda: not accepts_connections(gw_c["internal_http_url"]), 1.0, "the listener to close"
            )
            assert time.monotonic() - sent_at < SLOW_SERVICE_SECONDS
            caller.join(HTTP_TIMEOUT_SECONDS)
            # ...and the request completes with the service's answer.
            response = result["response"]
            assert isinstance(response, requests.Response), response
            assert response.status_code == 200, response.text
            assert response.json() == {"answered_after": SLOW_SERVICE_SECONDS}
            assert node.wait(10) == 0
    log = (tmp_path / "gw-c.log").read_text()
    assert "stopping: finishing in-flight requests" in log
    assert "Traceback" not in log


def _healthy(gw: dict[str, Any]) -> bool:
    try:
        return requests.get(gw["admin_url"] + "/health", timeout=1).status_code == 200
    except requests.RequestException:
        return False


# --- a configuration the node refuses ------------------------------------------------------------

VALID_TOML = """
[node]
server_id = "DEV/GOV/1001/gw-x"
[globalconf]
location = "globalconf.signed.json"
anchor = "anchor.json"
[internal.http]
port = 8080
[external]
port = 8443
cert = "auth.pem"
key = "auth.key"
[admin]
port = 9000
[[signing_keys]]
member = "DEV/GOV/1001"
cert = "sign.pem"
key = "sign.key"
"""


def edited(toml: str, old: str, new: str) -> str:
    assert old in toml
    return toml.replace(old, new)


def test_a_valid_file_resolves_paths_beside_itself(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(VALID_TOML)

    config = load_config(path)

    assert config.server_id.to_text() == "DEV/GOV/1001/gw-x"
    assert config.globalconf_anchor == tmp_path / "anchor.json"
    assert config.auth_tls.cert == tmp_path / "auth.pem"
    assert config.internal_https is None and config.admin.host == "127.0.0.1"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (edited(VALID_TOML, "[node]", "[nodes]"), r"nodes: unknown key \(did you mean node\?\)"),
        (edited(VALID_TOML, 'server_id = "DEV/GOV/1001/gw-x"', ""), "missing node.server_id"),
        (
            edited(VALID_TOML, '"DEV/GOV/1001/gw-x"', '"gw-x"'),
            "node.server_id: .*INSTANCE/CLASS/MEMBER/SERVER",
        ),
        (edited(VALID_TOML, 'member = "DEV/GOV/1001"', 'member = "1001"'), r"signing_keys\[0\]\.member"),
        (
            edited(VALID_TOML, "[internal.http]\nport = 8080", "[internal]"),
            "needs an http or an https listener",
        ),
        (edited(VALID_TOML, "port = 8080", "port = 70000"), "internal.http.port: must be a port number"),
        (
            edited(VALID_TOML, "port = 9000", 'port = 9000\nhost = "0.0.0.0"'),
            "admin.host: must be a loopback",
        ),
        (edited(VALID_TOML, 'key = "auth.key"', ""), "missing external.key"),
        (VALID_TOML + '[limits]\nbackend_timeout_seconds = "fast"\n', "limits.backend_timeout_seconds"),
        (VALID_TOML + "[limits]\nshutdown_grace_seconds = -1\n", "limits.shutdown_grace_seconds"),
        ("[node\n", "cannot read"),
    ],
    ids=[
        "no-node",
        "no-server-id",
        "bad-server-id",
        "bad-member",
        "no-listener",
        "bad-port",
        "public-admin",
        "no-key",
        "timeout-text",
        "negative-grace",
        "not-toml",
    ],
)
def test_a_bad_file_names_what_is_wrong(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(toml)

    with pytest.raises(ConfigError, match=message):
        load_config(path)


def run_serve(config: Path, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(serve_command(config), capture_output=True, text=True, cwd=REPO, timeout=timeout)


def test_serve_refuses_a_bad_file_with_a_message_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(edited(VALID_TOML, "port = 9000", 'port = 9000\nhost = "0.0.0.0"'))

    result = run_serve(path)

    assert result.returncode == 1
    assert "admin.host: must be a loopback address" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_node_whose_port_is_taken_exits_with_a_message(built: dict[str, Any]) -> None:
    gw_a = gateway_of(built, "gw-a")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", gw_a["ports"]["external"]))
        taken.listen()
        started = time.monotonic()

        result = run_serve(Path(gw_a["config"]))

    assert result.returncode == 1, result.stderr
    assert "cannot start" in result.stderr and "address already in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 15


def test_a_node_without_its_anchor_exits_with_a_message(built: dict[str, Any], tmp_path: Path) -> None:
    gw_a = gateway_of(built, "gw-a")
    toml = Path(gw_a["config"]).read_text()
    anchor = re.search(r'anchor = "([^"]+)"', toml)
    assert anchor is not None
    config = tmp_path / "gateway.toml"
    config.write_text(toml.replace(anchor.group(1), str(tmp_path / "no-such-anchor.json")))

    result = run_serve(config)

    assert result.returncode == 1, result.stderr
    assert "cannot start" in result.stderr and "no-such-anchor.json" in result.stderr
    assert "Traceback" not in result.stderr
