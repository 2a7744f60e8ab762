"""REST r1 as X-Road 7.8 does it (issue 17, found 8, build 9; docs/compatibility.md "REST r1").

A REST client's request goes in over a raw socket (an HTTP library would re-encode the target or
add fields of its own) to gw-a's internal interface, through the signed transport to gw-c, and
on to a service on 127.0.0.1 that records the request exactly as it arrived: the request line
and the header fields, byte for byte.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway import faults
from gateway.ids import ClientId
from gateway.outbound.network import backend_transport
from gateway.serverconf.access import AccessRight, Endpoint
from gateway.serverconf.db import migrate
from gateway.serverconf.model import ClientAuthMode
from gateway.serverconf.repository import ServerConfRepository
from tests.conftest import BENEFITS_API, CONSUMER
from tests.inprocess import Gateway, InProcessFederation

SERVICE = f"/r1/{BENEFITS_API.to_text()}"
PROVIDER = BENEFITS_API.provider


@dataclass
class Recorder:
    """A service that answers `{}` and keeps each request's head as received."""

    answer: bytes = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    heads: list[bytes] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    @property
    def request_line(self) -> bytes:
        return self.heads[-1].split(b"\r\n", 1)[0]

    @property
    def fields(self) -> list[tuple[str, str]]:
        return _fields(self.heads[-1])

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(v) for n, v in _fields(head) if n == "content-length"), 0)
        self.heads.append(head[:-4])
        self.bodies.append(await reader.readexactly(length))
        writer.write(self.answer)
        await writer.drain()
        writer.close()


def _fields(head: bytes) -> list[tuple[str, str]]:
    lines = head.split(b"\r\n")[1:]
    pairs = [line.decode("latin-1").split(":", 1) for line in lines if b":" in line]
    return [(name.lower(), value.strip()) for name, value in pairs]


@pytest.fixture
async def recorder(local: InProcessFederation) -> AsyncIterator[Recorder]:
    """BENEFITS_API at gw-c points to a recording service, called over the real backend transport."""
    recording = Recorder()
    server = await asyncio.start_server(recording.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    runtime = local["gw-c"].runtime
    in_process, real = runtime._backends, backend_transport()
    runtime._backends = real
    with local["gw-c"].serverconf() as repository:
        service = repository.snapshot().service(BENEFITS_API)
        assert service is not None
        repository.update_service(dataclasses.replace(service, backend_url=f"http://127.0.0.1:{port}/svc"))
    try:
        yield recording
    finally:
        runtime._backends = in_process
        await real.aclose()
        server.close()
        await server.wait_closed()


@dataclass(frozen=True)
class Raw:
    status: int
    fields: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.fields if n == name.lower()), None)


async def send_raw(gateway: Gateway, head: str, body: bytes = b"") -> Raw:
    """One request to the gateway's internal interface, its head written exactly as given."""
    server = gateway.internal.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    lines = head.strip().split("\n")
    lines.append(f"Content-Length: {len(body)}" if body else "Content-Length: 0")
    writer.write(("\r\n".join(lines) + "\r\nConnection: close\r\n\r\n").encode() + body)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head_bytes, _, rest = answer.partition(b"\r\n\r\n")
    return Raw(int(head_bytes.split(b" ", 2)[1]), _fields(head_bytes), rest)


def client_fields(client: ClientId = CONSUMER) -> str:
    return f"Host: gw-a\nX-Road-Client: {client.to_text()}"


# --- path and query ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/benefits/a%3Db?x=%31%2F%3F&y=a+b%20c",
        "/benefits/%41%7e%2a;p=1?q=%3d%3D&&=&x",
        "/benefits/49002124277",
        "?only=query",
        "",
        "/benefits/?",
    ],
    ids=["reserved-escapes", "unreserved-escapes", "plain", "query-only", "nothing", "empty-query"],
)
async def test_path_and_query_reach_the_service_byte_for_byte(
    local: InProcessFederation, recorder: Recorder, target: str
) -> None:
    """PR-REST §4.5: the query passes unmodified; the path after the service code as sent too."""
    answer = await send_raw(local["gw-a"], f"GET {SERVICE}{target} HTTP/1.1\n{client_fields()}")

    assert answer.status == 200, answer.body
    path, _, query = target.partition("?")
    expected = f"/svc{path}" + (f"?{query}" if query else "")
    assert recorder.request_line == f"GET {expected} HTTP/1.1".encode()


# --- header fields ----------------------------------------------------------------------------


async def test_no_header_field_is_invented_towards_the_service(
    local: InProcessFederation, recorder: Recorder
) -> None:
    """A body without Content-Type reaches the service without one; no Accept, Accept-Encoding or
    User-Agent of the gateway's HTTP library either: only the client's fields, X-Road's, Host and
    Content-Length."""
    head = f"POST {SERVICE}/applications HTTP/1.1\n{client_fields()}\nX-Custom: kept"
    answer = await send_raw(local["gw-a"], head, b"raw bytes")

    assert answer.status == 200, answer.body
    names = [name for name, _ in recorder.fields]
    assert "content-type" not in names
    assert {"accept", "accept-encoding", "user-agent"}.isdisjoint(names)
    assert {n for n in names if not n.startswith("x-road-")} == {"host", "content-length", "x-custom"}
    assert recorder.bodies[-1] == b"raw bytes"


async def test_the_clients_own_fields_reach_the_service_as_sent(
    local: InProcessFederation, recorder: Recorder
) -> None:
    head = (
        f"PUT {SERVICE}/applications/1 HTTP/1.1\n{client_fields()}\n"
        "Content-Type: text/plain; charset=latin-1\nAccept: application/problem+json\n"
        "Accept-Encoding: identity\nAuthorization: Bearer t"
    )
    answer = await send_raw(local["gw-a"], head, b"x")

    assert answer.status == 200, answer.body
    fields = dict(recorder.fields)
    assert fields["content-type"] == "text/plain; charset=latin-1"
    assert fields["accept"] == "application/problem+json"
    assert fields["accept-encoding"] == "identity"
    assert fields["authorization"] == "Bearer t"


async def test_x_road_extension_fields_pass_both_ways_and_protocol_fields_are_the_gateways(
    local: InProcessFederation, recorder: Recorder
) -> None:
    """PR-REST §4.3: other X-Road-* fields are handled like any user-defined field; the
    protocol's own are written by the gateways, whoever else sends them; the service learns
    which gateway the client asked for."""
    recorder.answer = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Road-Trace: back\r\n"
        b"X-Road-Error: Server.Forged\r\nX-Road-Request-Hash: forged\r\n\r\n"
    )
    server = next(gw["server_id"] for gw in local.description["gateways"] if gw["name"] == "gw-c")
    head = (
        f"GET {SERVICE}/benefits/1 HTTP/1.1\n{client_fields()}\nX-Road-Trace: there\n"
        f"X-Road-Request-Hash: forged\nX-Road-Service: DEV/GOV/1/forged/x\nX-Road-Security-Server: {server}"
    )

    answer = await send_raw(local["gw-a"], head)

    assert answer.status == 200, answer.body
    sent = recorder.fields
    assert ("x-road-trace", "there") in sent
    assert "x-road-request-hash" not in dict(sent)
    assert dict(sent)["x-road-service"] == BENEFITS_API.to_text()
    assert dict(sent)["x-road-security-server"] == server  # as X-Road passes it on
    assert answer.header("X-Road-Trace") == "back"
    assert answer.header("Content-Type") is None  # an empty answer without one, as sent
    assert answer.header("X-Road-Error") is None
    assert answer.header("X-Road-Request-Hash") not in (None, "forged")


async def test_an_answer_without_content_type_reaches_the_client_without_one(
    local: InProcessFederation, recorder: Recorder
) -> None:
    recorder.answer = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Service: own\r\n\r\nabc"

    answer = await send_raw(local["gw-a"], f"GET {SERVICE}/benefits/1 HTTP/1.1\n{client_fields()}")

    assert (answer.status, answer.body) == (200, b"abc")
    assert answer.header("Content-Type") is None, answer.fields
    assert answer.header("X-Service") == "own"


# --- error statuses ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "code", "status"),
    [
        (f"TRACE {SERVICE}/x HTTP/1.1\n{client_fields()}", faults.INVALID_HTTP_METHOD, 400),
        (f"GET {SERVICE}/x HTTP/1.1\nHost: gw-a", faults.MISSING_HEADER, 400),
        (f"GET {SERVICE}/%2e%2e/x HTTP/1.1\n{client_fields()}", faults.INVALID_REQUEST, 400),
        (
            f"GET /r1/DEV/GOV/1003/benefits/nothing HTTP/1.1\n{client_fields()}",
            faults.UNKNOWN_SERVICE,
            500,
        ),
        (
            f"GET {SERVICE}/x HTTP/1.1\n{client_fields(ClientId('DEV', 'GOV', '9999', 'x'))}",
            faults.UNKNOWN_MEMBER,
            500,
        ),
    ],
    ids=["trace", "no-client", "dot-segments", "unknown-service", "unknown-client"],
)
async def test_gateway_errors_are_400_or_500_as_x_road_answers_them(
    local: InProcessFederation, head: str, code: str, status: int
) -> None:
    answer = await send_raw(local["gw-a"], head)

    assert (answer.status, answer.header("X-Road-Error")) == (status, code), answer.body
    assert answer.header("Content-Type") == "application/json; charset=utf-8"
    assert json.loads(answer.body)["type"] == code


# --- member-level clients ---------------------------------------------------------------------

OWNER = ClientId("DEV", "GOV", "1001")
"""gw-a's owner member itself, no subsystem (`X-Road-Client: DEV/GOV/1001`)."""


def test_the_owner_member_is_registered_as_a_client_once(tmp_path: Path) -> None:
    """What a node does at start (gateway/node.py): X-Road lists its owner among its clients."""
    url = f"sqlite:///{tmp_path / 'serverconf.sqlite'}"
    migrate(url)
    repository = ServerConfRepository.from_url(url)

    assert repository.register_owner(OWNER) is True
    assert repository.register_owner(OWNER) is False
    with pytest.raises(ValueError, match="member"):
        repository.register_owner(CONSUMER)
    registered = repository.snapshot().subsystem(OWNER)
    assert registered is not None and registered.auth_mode is ClientAuthMode.HTTPS_CERT
    repository.engine.dispose()


async def test_the_owner_member_itself_calls_a_service_with_its_own_rights(
    local: InProcessFederation, recorder: Recorder
) -> None:
    """Registered as at start, connecting as its mode allows, signing with the member's key; the
    provider matches rights granted to the member itself: its subsystem benefits-office's rights
    do not extend to it."""
    path = f"GET {SERVICE}/benefits/1 HTTP/1.1\n{client_fields(OWNER)}"
    with local["gw-a"].serverconf() as repository:
        repository.register_owner(OWNER)
    refused = await send_raw(local["gw-a"], path)  # a pinned certificate is needed first
    with local["gw-a"].serverconf() as repository:
        repository.set_auth_mode(OWNER, ClientAuthMode.HTTP)
    denied = await send_raw(local["gw-a"], path)
    with local["gw-c"].serverconf() as repository:
        repository.grant(
            PROVIDER, AccessRight(OWNER, "benefits", Endpoint("GET", "/benefits/{personalCode}"))
        )

    answer = await send_raw(local["gw-a"], path)

    assert (refused.status, refused.header("X-Road-Error")) == (500, faults.SSL_AUTHENTICATION_FAILED)
    assert (denied.status, denied.header("X-Road-Error")) == (500, faults.ACCESS_DENIED)
    assert answer.status == 200, answer.body
    assert answer.header("X-Road-Client") == OWNER.to_text()
    assert dict(recorder.fields)["x-road-client"] == OWNER.to_text()
