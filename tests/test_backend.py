"""The provider's reads of a service's answer: bounded, whatever the service says of its length.

Through the node's aiohttp transport against a real server, so the bound is the one bytes on
a socket meet; and `call_backend`'s mapping of each failure to its ServiceFailed fault.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway import faults
from gateway.faults import XRoadFault
from gateway.outbound import (
    InProcessTransport,
    OutboundError,
    OutboundRequest,
    OutboundResponse,
    OutboundTimeout,
    ResponseTooLarge,
)
from gateway.outbound.network import AiohttpTransport
from gateway.proxy.backend import call_backend

LIMIT = 64 * 1024


async def _streamed(request: web.Request) -> web.StreamResponse:
    """Sends `n` bytes in chunks without a Content-Length, as a streaming service would."""
    response = web.StreamResponse()
    await response.prepare(request)
    remaining = int(request.query["n"])
    while remaining:
        chunk = min(remaining, 10_000)
        await response.write(b"x" * chunk)
        remaining -= chunk
    await response.write_eof()
    return response


async def _sized(request: web.Request) -> web.Response:
    return web.Response(body=b"y" * int(request.query["n"]))


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(5)
    return web.Response(body=b"late")


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    app = web.Application()
    app.router.add_get("/streamed", _streamed)
    app.router.add_get("/sized", _sized)
    app.router.add_get("/slow", _slow)
    async with TestServer(app, host="127.0.0.1") as running:
        yield running


@pytest.fixture
async def transport() -> AsyncIterator[AiohttpTransport]:
    async with aiohttp.ClientSession() as session:
        yield AiohttpTransport(session)


def _get(url: object, limit: int = LIMIT, timeout: float = 5.0) -> OutboundRequest:
    return OutboundRequest("GET", str(url), timeout_seconds=timeout, max_response_bytes=limit)


@pytest.mark.parametrize("path", ["/streamed", "/sized"])
async def test_a_body_within_the_limit_is_read_whole(
    server: TestServer, transport: AiohttpTransport, path: str
) -> None:
    response = await transport.send(_get(server.make_url(f"{path}?n={LIMIT}")))
    assert response.status == 200 and len(response.body) == LIMIT


@pytest.mark.parametrize("path", ["/streamed", "/sized"])
async def test_a_body_past_the_limit_is_refused(
    server: TestServer, transport: AiohttpTransport, path: str
) -> None:
    for size in (LIMIT + 1, LIMIT * 4):
        with pytest.raises(ResponseTooLarge) as caught:
            await transport.send(_get(server.make_url(f"{path}?n={size}")))
        assert caught.value.limit == LIMIT
        # Only a server that says how long its answer is gets its length repeated.
        assert caught.value.announced == (size if path == "/sized" else None)


async def test_call_backend_maps_each_failure_to_its_fault(
    server: TestServer, transport: AiohttpTransport
) -> None:
    async def call(url: str, timeout: float = 5.0) -> str:
        with pytest.raises(XRoadFault) as caught:
            await call_backend(transport, "GET", url, [], b"", timeout_seconds=timeout, max_bytes=LIMIT)
        return caught.value.code

    assert (
        await call(str(server.make_url(f"/sized?n={LIMIT + 1}"))) == faults.SERVICE_FAILED_RESPONSE_TOO_LARGE
    )
    assert await call(str(server.make_url("/slow")), timeout=0.2) == faults.SERVICE_FAILED_TIMEOUT
    assert await call("http://127.0.0.1:9/") == faults.SERVICE_FAILED_NETWORK_ERROR
    assert await call("http://[not a host/") == faults.SERVICE_FAILED_NETWORK_ERROR


async def test_in_process_transport_keeps_the_limits_of_the_real_one() -> None:
    async def handler(request: OutboundRequest) -> OutboundResponse:
        if request.url.endswith("/slow"):
            await asyncio.sleep(5)
        if request.url.endswith("/broken"):
            raise OutboundError("connection reset")
        return OutboundResponse(
            200, (("Content-Type", "text/plain"),), b"z" * int(request.url.rsplit("=", 1)[1])
        )

    transport = InProcessTransport(handler)
    assert len((await transport.send(_get("http://service/?n=10"))).body) == 10
    with pytest.raises(ResponseTooLarge):
        await transport.send(_get(f"http://service/?n={LIMIT + 1}"))
    with pytest.raises(XRoadFault) as caught:
        await call_backend(
            transport, "GET", "http://service/slow", [], b"", timeout_seconds=0.1, max_bytes=LIMIT
        )
    assert caught.value.code == faults.SERVICE_FAILED_TIMEOUT
    with pytest.raises(XRoadFault) as caught:
        await call_backend(
            transport, "GET", "http://service/broken", [], b"", timeout_seconds=1, max_bytes=LIMIT
        )
    assert caught.value.code == faults.SERVICE_FAILED_NETWORK_ERROR
    assert [request.url for request in transport.requests][-1] == "http://service/broken"


async def test_a_timeout_says_whether_the_connection_or_the_answer_was_late(
    server: TestServer, transport: AiohttpTransport
) -> None:
    """A peer that froze (it takes TCP connections but never finishes the TLS handshake) is a
    connect timeout at the connect limit; a service that is slow to answer is one at the total."""
    frozen = socket.socket()
    frozen.bind(("127.0.0.1", 0))
    frozen.listen(8)  # the kernel completes TCP handshakes; nobody ever reads
    try:
        request = OutboundRequest(
            "GET",
            f"https://127.0.0.1:{frozen.getsockname()[1]}/",
            timeout_seconds=3.0,
            connect_timeout_seconds=0.5,
            max_response_bytes=LIMIT,
        )
        started = asyncio.get_running_loop().time()
        with pytest.raises(OutboundTimeout) as connecting:
            await transport.send(request)
        elapsed = asyncio.get_running_loop().time() - started
    finally:
        frozen.close()
    assert connecting.value.connecting and connecting.value.seconds == 0.5
    assert "no connection within 0.5 s" in str(connecting.value)
    assert elapsed < 2.5, elapsed

    with pytest.raises(OutboundTimeout) as answering:
        await transport.send(_get(server.make_url("/slow"), timeout=0.5))
    assert not answering.value.connecting
    assert "connected, but no whole answer within 0.5 s" in str(answering.value)
