"""A gateway node holds its listeners to the [limits] of its file: the issue's 300 half-sent requests.

The node runs as `xgate gateway serve` from a generated federation (tests/test_node.py's
helpers), with a header timeout of a second and a connection cap, and is attacked over plain
sockets: half-sent request heads on the internal interface, more connections than the cap,
and TLS clients offering only CBC suites on the internal HTTPS and the external interface.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.config import ConfigError, load_config
from gateway.connections import ConnectionLimits
from tests.conftest import REPO, wait_until
from tests.test_connections import read_response
from tests.test_node import NODE_START_SECONDS, _healthy, built, gateway_of, node_process

__all__ = ["built"]  # the federation fixture, shared with tests/test_node.py

HEADER_TIMEOUT_SECONDS = 3.0
HALF_SENT = 300
HELD = 10
MAX_CONNECTIONS = HALF_SENT + HELD
# How late after its deadline a connection may still be closed, on a loaded machine.
SLACK_SECONDS = 4.0
SOCKET_TIMEOUT_SECONDS = 10.0
HALF_HEAD = b"GET / HTTP/1.1\r\nHost: gateway\r\nX-Slow: "
REQUEST = b"GET / HTTP/1.1\r\nHost: gateway\r\n\r\n"


@pytest.fixture(scope="module")
def node(built: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """gw-a serving, with short deadlines and a cap in its [limits] table."""
    gw = gateway_of(built, "gw-a")
    config = Path(gw["config"])
    limits = (
        f"[limits]\nheader_timeout_seconds = {HEADER_TIMEOUT_SECONDS}\n"
        f"idle_timeout_seconds = 30.0\nmax_connections = {MAX_CONNECTIONS}\n"
    )
    config.write_text(re.sub(r"\[limits\]\n", limits, config.read_text(), count=1))
    # One worker: the cap is each worker process's (docs/configuration.md "Connection limits").
    with node_process(gw["config"], tmp_path_factory.mktemp("node") / "gw-a.log", workers=1):
        wait_until(lambda: _healthy(gw), NODE_START_SECONDS, "gw-a to start")
        yield gw


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_SECONDS)


def answered(sock: socket.socket | ssl.SSLSocket) -> bool:
    """One request on the connection gets an HTTP response (the gateway's fault is an answer too)."""
    sock.sendall(REQUEST)
    return read_response(sock).startswith(b"HTTP/1.1 ")


def closed_by_server(sock: socket.socket, deadline: float) -> bool:
    sock.settimeout(max(deadline - time.monotonic(), 0.01))
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_300_half_sent_requests_are_closed_while_valid_ones_are_answered(node: dict[str, Any]) -> None:
    port = node["ports"]["internal_http"]
    opened = time.monotonic()
    half_sent = [connect(port) for _ in range(HALF_SENT)]
    held: list[socket.socket] = []
    try:
        for sock in half_sent:
            sock.sendall(HALF_HEAD)

        # The cap: the listener takes HELD more; the one after is closed at once, the held ones served.
        held = [connect(port) for _ in range(HELD)]
        with connect(port) as beyond:
            with contextlib.suppress(OSError):
                beyond.sendall(REQUEST)
            assert closed_by_server(beyond, time.monotonic() + SLACK_SECONDS), "a connection beyond the cap"
        assert time.monotonic() - opened < HEADER_TIMEOUT_SECONDS, "too slow to test the cap: rerun alone"
        # Valid requests keep being answered on the held connections while the half-sent ones wait.
        for _ in range(2):
            assert all(answered(sock) for sock in held)
        # The cap is per listener: the admin interface is not full.
        assert _healthy(node)

        deadline = opened + HEADER_TIMEOUT_SECONDS + SLACK_SECONDS
        still_open = [sock for sock in half_sent if not closed_by_server(sock, deadline)]
        assert not still_open, f"{len(still_open)} half-sent requests outlived the header timeout"
        assert time.monotonic() - opened >= HEADER_TIMEOUT_SECONDS * 0.9

        with connect(port) as after:
            assert answered(after)
    finally:
        for sock in half_sent + held:
            sock.close()


def _tls_client(built: dict[str, Any], node: dict[str, Any], ciphers: str) -> ssl.SSLContext:
    """Another gateway's client, as far as certificates go, offering only `ciphers` over TLS 1.2."""
    peer = gateway_of(built, "gw-b")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(built["ca_cert"])
    context.load_cert_chain(peer["auth_cert"], peer["auth_key"])
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(ciphers)
    return context


CBC = "ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES256-SHA384"
AEAD = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"


@pytest.mark.parametrize("interface", ["internal_https", "external"])
def test_tls_listeners_refuse_cbc_suites(built: dict[str, Any], node: dict[str, Any], interface: str) -> None:
    port = node["ports"][interface]
    with connect(port) as raw, pytest.raises(OSError):
        _tls_client(built, node, CBC).wrap_socket(raw).do_handshake()
    with connect(port) as raw, _tls_client(built, node, AEAD).wrap_socket(raw) as tls:
        cipher = tls.cipher()
        assert cipher is not None and cipher[0] in AEAD.split(":")


# --- the [limits] keys ----------------------------------------------------------------------------

EXAMPLE = REPO / "config" / "gateway.example.toml"


def test_the_example_documents_the_default_limits() -> None:
    assert load_config(EXAMPLE).connections == ConnectionLimits()


def test_limits_are_read_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    text = EXAMPLE.read_text()
    for key, value in [
        ("header_timeout_seconds = 30", "header_timeout_seconds = 2.5"),
        ("body_timeout_seconds = 60", "body_timeout_seconds = 5"),
        ("idle_timeout_seconds = 75", "idle_timeout_seconds = 20"),
        ("max_connections = 512", "max_connections = 64"),
    ]:
        assert key in text
        text = text.replace(key, value)
    path.write_text(text)

    assert load_config(path).connections == ConnectionLimits(2.5, 5.0, 20.0, 64)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "max_connections = 512",
            "max_connections = 0",
            "limits.max_connections: must be greater than 0, not 0",
        ),
        ("max_connections = 512", "max_connections = 1.5", "limits.max_connections: must be a whole number"),
        (
            "header_timeout_seconds = 30",
            "header_timeout_seconds = -1",
            "limits.header_timeout_seconds: must be",
        ),
        ("body_timeout_seconds = 60", "body_timeout_seconds = 0", "limits.body_timeout_seconds: must be"),
        (
            "idle_timeout_seconds = 75",
            'idle_timeout_seconds = "75"',
            "limits.idle_timeout_seconds: must be a number",
        ),
        (
            "header_timeout_seconds = 30",
            "header_timout_seconds = 30",
            r"limits.header_timout_seconds: unknown key \(did you mean header_timeout_seconds\?\)",
        ),
    ],
)
def test_bad_limits_are_refused_naming_the_key(tmp_path: Path, old: str, new: str, message: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(EXAMPLE.read_text().replace(old, new))

    with pytest.raises(ConfigError, match=message):
        load_config(path)
