"""A development federation in this process: the proxy paths without subprocesses or sockets between gateways.

`federation.build` writes the same keys, certificates, signed configuration and databases a
federation of processes gets; here each gateway's `GatewayRuntime` runs in the test's event
loop, its peer transport hands a request straight to the provider path of the gateway at that
address (`provider.serve`, with the caller's TLS certificate as the peer certificate and the
pins the consumer's configuration registers), and its backend transport runs the example
services' aiohttp applications in-process. Only the internal interface is a local aiohttp test
server, so a test speaks HTTP to gateway A as an agency system would.

What this cannot prove, the end-to-end tests do: real mutual TLS between gateways, real sockets
to the services, and the processes' start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from unittest import mock
from urllib.parse import urlsplit

import requests
from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from cryptography import x509
from multidict import CIMultiDict
from requests.structures import CaseInsensitiveDict

from gateway import faults
from gateway.config import load_config
from gateway.crypto.certs import fingerprint_sha256, load_certificate_file
from gateway.dev import federation
from gateway.faults import XRoadFault
from gateway.outbound import (
    InProcessTransport,
    OutboundError,
    OutboundRequest,
    OutboundResponse,
    PeerNotRegistered,
)
from gateway.proxy import provider
from gateway.proxy.consumer import make_internal_app
from gateway.proxy.runtime import GatewayRuntime
from gateway.serverconf.db import migrate
from gateway.serverconf.repository import ServerConfRepository
from services import benefits_api, population_register

_READ_CHUNK_LIMIT: Final = 2**16
"""aiohttp's own StreamReader limit for a request body (its web protocol's default)."""


@dataclass
class Gateway:
    name: str
    runtime: GatewayRuntime
    auth_cert: x509.Certificate
    address: str
    internal: TestClient[web.Request, web.Application]
    peers: InProcessTransport
    backends: InProcessTransport

    @contextlib.contextmanager
    def serverconf(self) -> Iterator[ServerConfRepository]:
        """The gateway's database; on leaving, the gateway runs on what was changed."""
        repository = ServerConfRepository.from_url(self.runtime.config.database_url)
        try:
            yield repository
        finally:
            repository.engine.dispose()
        self.runtime.reload_snapshot()

    async def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> requests.Response:
        return await self.request("POST", path, body, headers)

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> requests.Response:
        """One request to the internal interface, answered as `requests` does (what the e2e helpers read)."""
        async with self.internal.request(method, path, data=body or None, headers=headers) as response:
            content = await response.read()
        answer = requests.Response()
        answer.status_code = response.status
        answer.headers = CaseInsensitiveDict(dict(response.headers.items()))
        answer._content = content
        answer.encoding = response.charset or "utf-8"
        return answer


@dataclass
class InProcessFederation:
    description: dict[str, Any]
    gateways: dict[str, Gateway] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Gateway:
        return self.gateways[name]


@dataclass(frozen=True)
class Built:
    """A federation's files, generated once, for tests that each want a fresh copy."""

    directory: Path
    description: dict[str, Any]

    def copy_to(self, directory: Path) -> dict[str, Any]:
        """The files copied to `directory`, with the paths inside them pointing there; its description."""
        shutil.copytree(self.directory, directory)
        old, new = str(self.directory), str(directory)
        for path in [*directory.glob("*/gateway.toml"), directory / "anchor.json"]:
            path.write_text(path.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")
        copied: dict[str, Any] = json.loads(json.dumps(self.description).replace(old, new))
        return copied


def build_template(directory: Path) -> Built:
    """Keys, certificates, configuration and databases (about a second of work) to copy per test."""
    return Built(directory, federation.build(directory))


def app_handler(apps: Mapping[str, web.Application]) -> Any:
    """A transport handler that runs the aiohttp application serving the request's host:port."""

    async def handle(request: OutboundRequest) -> OutboundResponse:
        parts = urlsplit(request.url)
        app = apps.get(parts.netloc)
        if app is None:
            raise OutboundError(f"ClientConnectorError: nothing listens at {parts.netloc}")
        payload = StreamReader(
            mock.Mock(_reading_paused=False), _READ_CHUNK_LIMIT, loop=asyncio.get_running_loop()
        )
        payload.feed_data(request.body)
        payload.feed_eof()
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        incoming = make_mocked_request(
            request.method, target, headers=CIMultiDict(request.headers), app=app, payload=payload
        )
        match = await app.router.resolve(incoming)
        match.add_app(app)
        incoming._match_info = match
        try:
            response = await match.handler(incoming)
        except web.HTTPException as exc:
            response = exc
        body = response.body if isinstance(response.body, bytes) else b""
        return OutboundResponse(response.status, tuple(response.headers.items()), body)

    return handle


def peer_handler(fed: InProcessFederation, caller: str) -> Any:
    """`caller`'s peer transport: the provider path of the gateway at the request's address."""

    async def handle(request: OutboundRequest) -> OutboundResponse:
        address = urlsplit(request.url).netloc
        target = next((gw for gw in fed.gateways.values() if gw.address == address), None)
        if target is None:
            raise OutboundError(f"ClientConnectorError: nothing listens at {address}")
        consumer = fed.gateways[caller]
        pins = consumer.runtime.registered_fingerprints(address)
        if pins is None or fingerprint_sha256(target.auth_cert) not in pins:
            raise PeerNotRegistered(f"the gateway at {address} did not present its registered certificate")

        async def body(max_bytes: int) -> bytes:
            if len(request.body) > max_bytes:
                raise XRoadFault(faults.REQUEST_TOO_LARGE, f"message exceeds {max_bytes} bytes")
            return request.body

        answer = await provider.serve(target.runtime, consumer.auth_cert, request.headers, body)
        return OutboundResponse(answer.status, answer.headers, answer.body, target.auth_cert)

    return handle


async def _no_trust_services(request: OutboundRequest) -> OutboundResponse:
    raise OutboundError(f"no trust services in this federation ({request.url})")


def _with_compatibility(text: str, table: str) -> str:
    """The gateway's file with its [compatibility] table (the last, see federation.py) replaced."""
    head, found, _ = text.partition("[compatibility]\n")
    assert found, "federation.py writes a [compatibility] table last"
    return f"{head}[compatibility]\n{table}\n"


@contextlib.asynccontextmanager
async def inprocess_federation(
    directory: Path,
    *,
    template: Built | None = None,
    unreachable_standby: bool = False,
    limits: str = "",
    compatibility: dict[str, str] | None = None,
) -> AsyncIterator[InProcessFederation]:
    """The federation of `federation.build` in `directory`, its gateways running in this event loop.

    With `template` (see `build_template`) its files are copied instead of generated again.
    `unreachable_standby`: as in `federation.build`, a registered gateway for gw-b's subsystem,
    listed first, at an address where nothing answers. `limits`: TOML lines added to every
    gateway's [limits] table. `compatibility`: by gateway name, the TOML lines of its
    [compatibility] table instead of the federation's pinned legacy one ("" for the defaults).
    """
    if template is not None:
        description = template.copy_to(directory)
    else:
        description = federation.build(directory, unreachable_standby=unreachable_standby)
    apps = {
        f"127.0.0.1:{service['port']}": (
            population_register.make_app() if name == "population_register" else benefits_api.make_app()
        )
        for name, service in description.pop("_service_processes").items()
    }
    fed = InProcessFederation(description)
    try:
        for gw in description["gateways"]:
            config = Path(gw["config"])
            if limits:
                config.write_text(config.read_text().replace("[limits]\n", f"[limits]\n{limits}\n", 1))
            if compatibility is not None and gw["name"] in compatibility:
                config.write_text(_with_compatibility(config.read_text(), compatibility[gw["name"]]))
            node_config = load_config(config)
            migrate(node_config.database_url)  # what gateway.node.serve does first
            runtime = GatewayRuntime.create(node_config)
            peers = InProcessTransport(peer_handler(fed, gw["name"]))
            backends = InProcessTransport(app_handler(apps))
            await runtime.start(
                peers=peers, backends=backends, services=InProcessTransport(_no_trust_services)
            )
            internal = TestClient(TestServer(make_internal_app(runtime), host="127.0.0.1"))
            fed.gateways[gw["name"]] = Gateway(
                gw["name"],
                runtime,
                load_certificate_file(Path(gw["auth_cert"])),
                gw["external_address"],
                internal,
                peers,
                backends,
            )
            await internal.start_server()
        yield fed
    finally:
        for gateway in fed.gateways.values():
            await gateway.internal.close()
            await gateway.runtime.close()
