"""The provider's reads of a service's answer: bounded, whatever the service says of its length."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.protocol import faults
from gateway.protocol.faults import XRoadFault
from gateway.proxy.backend import read_limited

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


@pytest.fixture
async def server() -> TestServer:
    app = web.Application()
    app.router.add_get("/streamed", _streamed)
    app.router.add_get("/sized", _sized)
    async with TestServer(app, host="127.0.0.1") as running:
        yield running


@pytest.mark.parametrize("path", ["/streamed", "/sized"])
async def test_a_body_within_the_limit_is_read_whole(server: TestServer, path: str) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.make_url(f"{path}?n={LIMIT}")) as response,
    ):
        assert len(await read_limited(response, LIMIT)) == LIMIT


@pytest.mark.parametrize("path", ["/streamed", "/sized"])
async def test_a_body_past_the_limit_is_refused_with_the_callers_fault(server: TestServer, path: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(server.make_url(f"{path}?n={LIMIT + 1}")) as response:
            with pytest.raises(XRoadFault) as caught:
                await read_limited(response, LIMIT)
        assert caught.value.code == faults.SERVICE_FAILED_RESPONSE_TOO_LARGE
        async with session.get(server.make_url(f"{path}?n={LIMIT * 4}")) as response:
            with pytest.raises(XRoadFault) as caught:
                await read_limited(response, LIMIT, faults.CLIENT_PROXY_RESPONSE_TOO_LARGE, "the answer")
        assert caught.value.code == faults.CLIENT_PROXY_RESPONSE_TOO_LARGE
        assert "the answer" in caught.value.message
