"""The central registry holds both listeners to connection limits, as a gateway does (issue 9,
Build 12): half-sent requests are closed at the header deadline, connections beyond the cap
at once, and valid requests keep being answered.

The registry runs in-process (`start_registry`) over the same database fixtures as
tests/test_central_registry.py, and is attacked over plain sockets.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from gateway.central.config import ConfigError, parse_config
from gateway.central.server import RunningRegistry, start_registry
from gateway.connections import DEFAULT_MAX_CONNECTIONS, ConnectionLimits
from tests.test_central_registry import Trust, _config, database_url, migrated_url, trust
from tests.test_node_limits import closed_by_server

__all__ = ["database_url", "migrated_url", "trust"]  # fixtures shared with test_central_registry

HEADER_TIMEOUT_SECONDS = 1.0
MAX_CONNECTIONS = 8
SLACK_SECONDS = 4.0  # how late a deadline may be kept on a loaded machine
SOCKET_TIMEOUT_SECONDS = 10.0
HALF_HEAD = b"GET /anchor HTTP/1.1\r\nHost: registry\r\nX-Slow: "


@pytest.fixture
async def limited(trust: Trust, tmp_path: Path, database_url: str) -> AsyncIterator[RunningRegistry]:
    limits = ConnectionLimits(
        header_timeout_seconds=HEADER_TIMEOUT_SECONDS,
        idle_timeout_seconds=30.0,
        max_connections=MAX_CONNECTIONS,
    )
    running = await start_registry(_config(trust, tmp_path, database_url, connections=limits))
    try:
        yield running
    finally:
        await running.stop()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def _closed(sock: socket.socket, deadline: float) -> bool:
    """In a thread: the registry serves on this test's event loop, which must keep running."""
    return await asyncio.to_thread(closed_by_server, sock, deadline)


async def _answered(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url) as response:
        await response.read()
        return response.status


async def test_half_sent_requests_are_closed_and_the_cap_holds_while_valid_requests_are_answered(
    limited: RunningRegistry,
) -> None:
    assert [site.limits.max_connections for site in limited.sites] == [MAX_CONNECTIONS] * 2
    port = _port(limited.distribution_url)
    opened = time.monotonic()
    half_sent = [socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_SECONDS)]
    try:
        half_sent[0].sendall(HALF_HEAD)
        half_sent += [
            socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_SECONDS)
            for _ in range(MAX_CONNECTIONS - 2)
        ]
        for sock in half_sent[1:]:
            sock.sendall(HALF_HEAD)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
            # One place left: a valid request is answered while the half-sent ones are held.
            assert await _answered(session, limited.distribution_url + "/anchor") == 200
            with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_SECONDS) as over:
                # The session's kept connection fills the listener: one more is closed at once.
                assert await _closed(over, time.monotonic() + SLACK_SECONDS), "the cap did not hold"
            assert limited.sites[0].refused == 1, "closed for being one too many, not for its silence"
            deadline = opened + HEADER_TIMEOUT_SECONDS + SLACK_SECONDS
            closed = [await _closed(sock, deadline) for sock in half_sent]
            assert all(closed), "a half-sent request stayed open"
            assert await _answered(session, limited.distribution_url + "/anchor") == 200
            assert await _answered(session, limited.management_url + "/health") == 200
        assert limited.sites[0].timed_out >= len(half_sent)
    finally:
        for sock in half_sent:
            sock.close()


def test_the_registry_file_takes_the_gateways_limits(tmp_path: Path) -> None:
    doc: dict[str, object] = {"registry": {"instance": "DEV"}}
    assert parse_config(doc, tmp_path).connections == ConnectionLimits()
    assert ConnectionLimits().max_connections == DEFAULT_MAX_CONNECTIONS
    limits = {
        "header_timeout_seconds": 5,
        "body_timeout_seconds": 7,
        "idle_timeout_seconds": 9,
        "max_connections": 3,
    }
    config = parse_config({**doc, "limits": limits}, tmp_path)
    assert config.connections == ConnectionLimits(5.0, 7.0, 9.0, 3)
    with pytest.raises(ConfigError, match=r"limits\.max_connections"):
        parse_config({**doc, "limits": {"max_connections": 0}}, tmp_path)
    with pytest.raises(ConfigError, match=r"limits\.header_timeout"):
        parse_config({**doc, "limits": {"header_timeout": 5}}, tmp_path)
