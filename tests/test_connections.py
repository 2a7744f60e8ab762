"""Listener limits and TLS suites, over real sockets on 127.0.0.1.

Each test serves a small aiohttp application on a `LimitedSite` in a thread, with deadlines of
a fraction of a second, and plays the client with plain sockets: clients that never finish
their request head, stall in their body, idle on a kept connection or arrive when the listener
is full, and TLS clients offering only CBC suites, RSA key exchange or TLS 1.1.  Every server
runs on both event loops a node can use (asyncio and uvloop).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvloop
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.connections import ARRIVED, ConnectionLimits, LimitedSite
from gateway.crypto.tls import (
    TlsIdentity,
    backend_client_context,
    external_client_context,
    external_server_context,
    internal_server_context,
)
from tests.certs import certificate_builder, common_name

# Deadlines short enough for the suite, long enough for a loaded 2-core machine to meet them.
SHORT_SECONDS = 0.6
# A deadline is met "promptly" when the connection is gone within this much after it.
SLACK_SECONDS = 2.0
# Socket operations in a test never block longer than this.
SOCKET_TIMEOUT_SECONDS = 10.0
# Far more than aiohttp buffers (2 x 64 KiB) before it stops reading until the handler reads.
LARGE_BODY_BYTES = 4 * 1024 * 1024
NewLoop = Callable[[], asyncio.AbstractEventLoop]
LOOPS: dict[str, NewLoop] = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(params=sorted(LOOPS))
def new_loop(request: pytest.FixtureRequest) -> NewLoop:
    return LOOPS[request.param]


# --- a served application -----------------------------------------------------------------------


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _echo_length(request: web.Request) -> web.Response:
    return web.Response(text=str(len(await request.read())))


async def _late_reader(request: web.Request) -> web.Response:
    """Reads the body only after two body timeouts: the client waits on us, not we on it."""
    await asyncio.sleep(SHORT_SECONDS * 2)
    return await _echo_length(request)


async def _age(request: web.Request) -> web.Response:
    """How long ago, by the loop's clock, the request's first bytes arrived (connections.ARRIVED)."""
    await request.read()
    return web.Response(text=f"{asyncio.get_running_loop().time() - request[ARRIVED]:.3f}")


@dataclass
class Served:
    port: int
    site: LimitedSite
    loop: asyncio.AbstractEventLoop

    def stat(self, read: Callable[[LimitedSite], int]) -> int:
        """A counter of the site, read on the server's own loop."""

        async def value() -> int:
            return read(self.site)

        return asyncio.run_coroutine_threadsafe(value(), self.loop).result(SOCKET_TIMEOUT_SECONDS)


@contextlib.contextmanager
def serving(
    new_loop: NewLoop,
    limits: ConnectionLimits,
    ssl_context: ssl.SSLContext | None = None,
) -> Iterator[Served]:
    app = web.Application(client_max_size=LARGE_BODY_BYTES * 2)
    app.router.add_get("/", _ok)
    app.router.add_post("/echo", _echo_length)
    app.router.add_post("/late", _late_reader)
    app.router.add_post("/age", _age)
    loop = new_loop()
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, **limits.runner_options())
    loop.run_until_complete(runner.setup())
    site = LimitedSite(runner, limits, host="127.0.0.1", port=0, ssl_context=ssl_context)
    loop.run_until_complete(site.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield Served(site.port, site, loop)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(SOCKET_TIMEOUT_SECONDS)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(SOCKET_TIMEOUT_SECONDS)
        loop.close()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_SECONDS)


def get(sock: socket.socket | ssl.SSLSocket) -> bytes:
    """One keep-alive GET on an open connection; the whole response."""
    sock.sendall(b"GET / HTTP/1.1\r\nHost: gateway\r\n\r\n")
    return read_response(sock)


def read_response(sock: socket.socket | ssl.SSLSocket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
    )
    while len(body) < length:
        body += sock.recv(4096)
    return head + b"\r\n\r\n" + body


def closed_by_server(sock: socket.socket | ssl.SSLSocket) -> bool:
    """True once the server has closed (or reset) the connection; waits at most the socket's timeout."""
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
        return True
    except TimeoutError:
        return False


def wait_closed(sockets: list[socket.socket], deadline: float) -> list[float]:
    """The moment each socket was closed by the server (monotonic), all before `deadline`."""
    closed_at = []
    for sock in sockets:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        assert closed_by_server(sock), "a connection outlived its deadline"
        closed_at.append(time.monotonic())
    return closed_at


def test_each_request_carries_when_its_first_bytes_arrived(new_loop: NewLoop) -> None:
    deadline = SHORT_SECONDS * 3
    limits = ConnectionLimits(header_timeout_seconds=deadline, body_timeout_seconds=deadline)
    pause = SHORT_SECONDS / 2
    with serving(new_loop, limits) as served, connect(served.port) as sock:

        def age(*parts: bytes) -> float:
            for i, part in enumerate(parts):
                if i:
                    time.sleep(pause)
                sock.sendall(part)
            return float(read_response(sock).partition(b"\r\n\r\n")[2])

        head = b"POST /age HTTP/1.1\r\nHost: gateway\r\nContent-Length: 4\r\n"
        assert age(head, b"\r\nbody") >= pause * 0.9  # a head sent in two parts: from its first
        assert age(head + b"\r\nbo", b"dy") >= pause * 0.9  # a body sent in two parts
        assert age(head + b"\r\nbody") < pause  # the next request on the kept connection: its own
        time.sleep(pause)
        assert age(head + b"\r\nbody") < pause  # time idle between requests does not count


# --- deadlines ----------------------------------------------------------------------------------

HALF_HEAD = b"GET / HTTP/1.1\r\nHost: gateway\r\nX-Slow: "


def test_half_sent_heads_are_closed_at_the_header_timeout_while_requests_flow(new_loop: NewLoop) -> None:
    limits = ConnectionLimits(header_timeout_seconds=SHORT_SECONDS, max_connections=1000)
    with serving(new_loop, limits) as served:
        opened = time.monotonic()
        slow = [connect(served.port) for _ in range(200)]
        for sock in slow:
            sock.sendall(HALF_HEAD)

        # Valid requests are answered while the half-sent ones wait, on new and kept connections.
        with connect(served.port) as kept:
            for _ in range(5):
                assert get(kept).startswith(b"HTTP/1.1 200")
                with connect(served.port) as fresh:
                    assert get(fresh).startswith(b"HTTP/1.1 200")

        closed_at = wait_closed(slow, opened + SHORT_SECONDS + SLACK_SECONDS)
        assert min(closed_at) - opened >= SHORT_SECONDS * 0.9, "closed before the deadline"
        assert served.stat(lambda site: site.timed_out) == len(slow)
        assert served.stat(lambda site: site.open_connections) == 0
        with connect(served.port) as after:
            assert get(after).startswith(b"HTTP/1.1 200")
        for sock in slow:
            sock.close()


def test_a_head_finished_within_the_timeout_is_answered(new_loop: NewLoop) -> None:
    limits = ConnectionLimits(header_timeout_seconds=SHORT_SECONDS * 3)
    with serving(new_loop, limits) as served, connect(served.port) as sock:
        for byte in HALF_HEAD:
            sock.sendall(bytes([byte]))
        time.sleep(SHORT_SECONDS)
        sock.sendall(b"1\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200")


def test_a_connection_that_sends_nothing_is_closed_at_the_header_timeout(new_loop: NewLoop) -> None:
    limits = ConnectionLimits(header_timeout_seconds=SHORT_SECONDS)
    with serving(new_loop, limits) as served, connect(served.port) as sock:
        opened = time.monotonic()
        (closed_at,) = wait_closed([sock], opened + SHORT_SECONDS + SLACK_SECONDS)
        assert closed_at - opened >= SHORT_SECONDS * 0.9


def test_a_stalled_body_is_closed_while_a_slow_steady_one_is_served(new_loop: NewLoop) -> None:
    limits = ConnectionLimits(header_timeout_seconds=SHORT_SECONDS, body_timeout_seconds=SHORT_SECONDS)
    head = b"POST /echo HTTP/1.1\r\nHost: gateway\r\nContent-Length: 10\r\n\r\n"
    with serving(new_loop, limits) as served:
        with connect(served.port) as steady:
            # Ten bytes over 2.5 body timeouts, never silent for long: the whole body is read.
            steady.sendall(head)
            for _ in range(10):
                time.sleep(SHORT_SECONDS / 4)
                steady.sendall(b"x")
            assert read_response(steady).endswith(b"\r\n\r\n10")

        with connect(served.port) as stalled:
            stalled.sendall(head + b"xyz")
            sent = time.monotonic()
            (closed_at,) = wait_closed([stalled], sent + SHORT_SECONDS + SLACK_SECONDS)
            assert closed_at - sent >= SHORT_SECONDS * 0.9
        assert served.stat(lambda site: site.timed_out) == 1


def test_a_body_the_handler_reads_late_is_not_the_clients_delay(new_loop: NewLoop) -> None:
    limits = ConnectionLimits(body_timeout_seconds=SHORT_SECONDS)
    body = b"x" * LARGE_BODY_BYTES
    with serving(new_loop, limits) as served, connect(served.port) as sock:
        sock.sendall(b"POST /late HTTP/1.1\r\nHost: gateway\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        assert read_response(sock).endswith(b"\r\n\r\n%d" % len(body))
        assert served.stat(lambda site: site.timed_out) == 0


def test_idle_kept_connections_close_after_the_idle_timeout(new_loop: NewLoop) -> None:
    limits = ConnectionLimits(header_timeout_seconds=SHORT_SECONDS * 10, idle_timeout_seconds=SHORT_SECONDS)
    with serving(new_loop, limits) as served, connect(served.port) as sock:
        # Requests within the idle timeout of each other keep the connection...
        for _ in range(3):
            assert get(sock).startswith(b"HTTP/1.1 200")
            time.sleep(SHORT_SECONDS / 3)
        assert get(sock).startswith(b"HTTP/1.1 200")
        answered = time.monotonic()
        # ...and silence closes it, long before the header timeout would...
        (closed_at,) = wait_closed([sock], answered + SHORT_SECONDS + SLACK_SECONDS)
        assert closed_at - answered >= SHORT_SECONDS * 0.9

    with serving(new_loop, limits) as served, connect(served.port) as sock:
        # ...as does half a next request.
        assert get(sock).startswith(b"HTTP/1.1 200")
        answered = time.monotonic()
        sock.sendall(HALF_HEAD)
        (closed_at,) = wait_closed([sock], answered + SHORT_SECONDS + SLACK_SECONDS)
        assert closed_at - answered >= SHORT_SECONDS * 0.9


def test_connections_beyond_the_cap_are_closed_at_once_while_held_ones_are_served(
    new_loop: NewLoop, caplog: pytest.LogCaptureFixture
) -> None:
    cap = 3
    limits = ConnectionLimits(header_timeout_seconds=30.0, idle_timeout_seconds=30.0, max_connections=cap)
    with serving(new_loop, limits) as served:
        held = [connect(served.port) for _ in range(cap)]
        for sock in held:
            assert get(sock).startswith(b"HTTP/1.1 200")

        extra = [connect(served.port) for _ in range(5)]
        tried = time.monotonic()
        for sock in extra:
            with contextlib.suppress(OSError):
                sock.sendall(b"GET / HTTP/1.1\r\nHost: gateway\r\n\r\n")
        wait_closed(extra, tried + SLACK_SECONDS)
        assert served.stat(lambda site: site.refused) == len(extra)
        # One warning, not one per refused connection.
        assert [r.getMessage() for r in caplog.records if "is full" in r.getMessage()] == [
            f"http://127.0.0.1:{served.port} is full (3 connections): closing new ones (1 so far)"
        ]

        for sock in held:
            assert get(sock).startswith(b"HTTP/1.1 200")

        # A place that frees up is given to the next client.
        held.pop().close()
        deadline = time.monotonic() + SLACK_SECONDS
        while served.stat(lambda site: site.open_connections) == cap:
            assert time.monotonic() < deadline, "the closed connection was not released"
            time.sleep(0.02)
        with connect(served.port) as newcomer:
            assert get(newcomer).startswith(b"HTTP/1.1 200")
        for sock in held + extra:
            sock.close()


def test_a_burst_of_connections_up_to_the_cap_waits_in_the_kernel_while_the_loop_is_busy(
    new_loop: NewLoop,
) -> None:
    """The listen backlog is the cap, not aiohttp's 128: with 128, the 130th connection of a burst
    that arrives while the loop is busy is dropped by the kernel and waits a second or more for
    TCP's retransmission; here every one is queued and served once the loop is free."""
    burst = 300
    limits = ConnectionLimits(header_timeout_seconds=30.0, max_connections=burst + 10)
    with serving(new_loop, limits) as served:
        busy = threading.Event()

        async def block() -> None:
            busy.set()
            time.sleep(2.0)  # the loop does nothing else meanwhile

        blocked = asyncio.run_coroutine_threadsafe(block(), served.loop)
        assert busy.wait(SOCKET_TIMEOUT_SECONDS)
        sockets = []
        try:
            started = time.monotonic()
            for _ in range(burst):
                sock = socket.socket()
                sock.settimeout(SOCKET_TIMEOUT_SECONDS)
                sock.connect(("127.0.0.1", served.port))
                sock.sendall(b"GET / HTTP/1.1\r\nHost: gateway\r\n\r\n")
                sockets.append(sock)
            assert time.monotonic() - started < 1.0, "connections waited for the kernel to retransmit"
            blocked.result(SOCKET_TIMEOUT_SECONDS)
            for sock in sockets:
                assert read_response(sock).startswith(b"HTTP/1.1 200")
        finally:
            for sock in sockets:
                sock.close()


# --- TLS ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: x509.Certificate
    ca_pem: Path
    ec_server: TlsIdentity
    rsa_server: TlsIdentity
    client: TlsIdentity


def _issue(
    directory: Path,
    name: str,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
) -> tuple[x509.Certificate, TlsIdentity]:
    now = dt.datetime.now(dt.UTC)
    builder = certificate_builder(
        common_name(name), issuer, key.public_key(), now - dt.timedelta(minutes=5), now + dt.timedelta(days=1)
    ).add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
        )
    certificate = builder.sign(issuer_key, hashes.SHA256())
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return certificate, TlsIdentity(cert_path, key_path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca, ca_identity = _issue(directory, "ca", ca_key, common_name("ca"), ca_key, ca=True)
    _, ec_server = _issue(directory, "ec-server", ec.generate_private_key(ec.SECP256R1()), ca.subject, ca_key)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _, rsa_server = _issue(directory, "rsa-server", rsa_key, ca.subject, ca_key)
    _, client = _issue(directory, "client", ec.generate_private_key(ec.SECP256R1()), ca.subject, ca_key)
    return Pki(ca, ca_identity.cert, ec_server, rsa_server, client)


def external_listener(pki: Pki, identity: TlsIdentity) -> ssl.SSLContext:
    """The external interface's context: mutual TLS with the federation's CA."""
    return external_server_context(identity, [pki.ca])


def internal_listener(pki: Pki, identity: TlsIdentity) -> ssl.SSLContext:
    """The internal HTTPS interface's context: a client certificate optional, trusted ones pinned."""
    return internal_server_context(identity, [pki.ca_pem.read_text()])


def client_context(
    pki: Pki,
    ciphers: str | None = None,
    *,
    minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
    maximum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
) -> ssl.SSLContext:
    """A client that is not the gateway's: it offers exactly what the test says."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(pki.ca_pem)
    context.load_cert_chain(pki.client.cert, pki.client.key)
    context.minimum_version, context.maximum_version = minimum, maximum
    if ciphers is not None:
        context.set_ciphers(ciphers)
    return context


def tls_get(port: int, context: ssl.SSLContext) -> tuple[str, bytes]:
    """The negotiated suite and the response to one GET."""
    with connect(port) as raw, context.wrap_socket(raw, server_hostname="localhost") as sock:
        cipher = sock.cipher()
        assert cipher is not None
        return cipher[0], get(sock)


Listener = Callable[[Pki, TlsIdentity], ssl.SSLContext]
LISTENERS: dict[str, Listener] = {"internal-https": internal_listener, "external-mtls": external_listener}


@pytest.fixture(params=sorted(LISTENERS))
def listener(request: pytest.FixtureRequest) -> Listener:
    return LISTENERS[request.param]


@pytest.mark.parametrize(
    ("server_key", "aead", "refused"),
    [
        # CBC suites with ECDHE, as old clients and X-Road's defaults offer them.
        ("ec", "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES128-SHA256"),
        ("ec", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-ECDSA-AES256-SHA384"),
        ("rsa", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-SHA384"),
        ("rsa", "ECDHE-RSA-CHACHA20-POLY1305", "ECDHE-RSA-AES128-SHA"),
        # RSA key exchange (no forward secrecy), even with an AEAD cipher.
        ("rsa", "ECDHE-RSA-AES128-GCM-SHA256", "AES128-GCM-SHA256"),
    ],
)
def test_listeners_accept_tls12_aead_suites_only(
    new_loop: NewLoop, pki: Pki, listener: Listener, server_key: str, aead: str, refused: str
) -> None:
    identity = pki.ec_server if server_key == "ec" else pki.rsa_server
    # The client really offers the suite: a server that still allows it agrees on it.
    assert _handshake_with(_legacy_server(identity, refused), client_context(pki, refused)) == refused
    with serving(new_loop, ConnectionLimits(), listener(pki, identity)) as served:
        # asyncio's TLS closes a failed handshake without its alert (the client sees EOF), uvloop sends it.
        with pytest.raises(OSError, match=r"handshake failure|no shared cipher|EOF"):
            tls_get(served.port, client_context(pki, refused))
        cipher, response = tls_get(served.port, client_context(pki, aead))
        assert cipher == aead and response.startswith(b"HTTP/1.1 200")


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_listeners_accept_tls13_and_refuse_tls11(new_loop: NewLoop, pki: Pki, listener: Listener) -> None:
    with serving(new_loop, ConnectionLimits(), listener(pki, pki.ec_server)) as served:
        cipher, response = tls_get(
            served.port, client_context(pki, maximum=ssl.TLSVersion.TLSv1_3, minimum=ssl.TLSVersion.TLSv1_3)
        )
        assert cipher.startswith("TLS_") and response.startswith(b"HTTP/1.1 200")

        # SECLEVEL 0 lets this client really offer TLS 1.1, as a server allowing it shows.
        old = client_context(
            pki, "DEFAULT:@SECLEVEL=0", minimum=ssl.TLSVersion.TLSv1_1, maximum=ssl.TLSVersion.TLSv1_1
        )
        legacy = _legacy_server(pki.ec_server, "DEFAULT:@SECLEVEL=0", minimum=ssl.TLSVersion.TLSv1_1)
        assert _handshake_with(legacy, old)
        with pytest.raises(OSError, match=r"protocol version|EOF"):
            tls_get(served.port, old)


def test_the_tls_handshake_counts_toward_the_header_timeout(
    new_loop: NewLoop, pki: Pki, listener: Listener
) -> None:
    limits = ConnectionLimits(header_timeout_seconds=SHORT_SECONDS)
    with serving(new_loop, limits, listener(pki, pki.ec_server)) as served:
        silent = [connect(served.port) for _ in range(20)]  # TCP only: no ClientHello
        opened = time.monotonic()
        _, response = tls_get(served.port, client_context(pki, maximum=ssl.TLSVersion.TLSv1_3))
        assert response.startswith(b"HTTP/1.1 200")
        wait_closed(silent, opened + SHORT_SECONDS + SLACK_SECONDS)
        for sock in silent:
            sock.close()


def test_a_stalled_body_over_tls_is_closed(new_loop: NewLoop, pki: Pki, listener: Listener) -> None:
    limits = ConnectionLimits(body_timeout_seconds=SHORT_SECONDS)
    context = client_context(pki, maximum=ssl.TLSVersion.TLSv1_3)
    with (
        serving(new_loop, limits, listener(pki, pki.ec_server)) as served,
        connect(served.port) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"POST /echo HTTP/1.1\r\nHost: gateway\r\nContent-Length: 10\r\n\r\nxyz")
        sent = time.monotonic()
        tls.settimeout(SHORT_SECONDS + SLACK_SECONDS)
        assert closed_by_server(tls)
        assert time.monotonic() - sent >= SHORT_SECONDS * 0.9
        assert served.stat(lambda site: site.timed_out) == 1


def test_a_full_tls_listener_closes_new_connections_after_their_handshake(
    new_loop: NewLoop, pki: Pki, listener: Listener
) -> None:
    limits = ConnectionLimits(max_connections=1)
    context = client_context(pki, maximum=ssl.TLSVersion.TLSv1_3)
    with serving(new_loop, limits, listener(pki, pki.ec_server)) as served:
        with connect(served.port) as raw, context.wrap_socket(raw, server_hostname="localhost") as held:
            assert get(held).startswith(b"HTTP/1.1 200")
            with connect(served.port) as raw2:
                tried = time.monotonic()
                try:
                    with context.wrap_socket(raw2, server_hostname="localhost") as refused:
                        refused.sendall(b"GET / HTTP/1.1\r\nHost: gateway\r\n\r\n")
                        assert closed_by_server(refused)
                except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
                    pass  # closed during or right after the handshake: refused either way
                assert time.monotonic() - tried < SLACK_SECONDS
            assert get(held).startswith(b"HTTP/1.1 200")
        assert served.stat(lambda site: site.refused) == 1


# --- the gateway as a TLS client ------------------------------------------------------------------


def _handshake_with(server: ssl.SSLContext, client: ssl.SSLContext) -> str:
    """A handshake over a real socket pair: the negotiated suite, or ssl.SSLError from the client."""
    server_end, client_end = socket.socketpair()
    server_end.settimeout(SOCKET_TIMEOUT_SECONDS)
    client_end.settimeout(SOCKET_TIMEOUT_SECONDS)

    def serve() -> None:
        with contextlib.suppress(OSError), server.wrap_socket(server_end, server_side=True) as tls:
            tls.recv(1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with client.wrap_socket(client_end, server_hostname="localhost") as tls:
            cipher = tls.cipher()
            assert cipher is not None
            return cipher[0]
    finally:
        client_end.close()
        thread.join(SOCKET_TIMEOUT_SECONDS)
        server_end.close()


def _legacy_server(
    identity: TlsIdentity, ciphers: str, *, minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
) -> ssl.SSLContext:
    """A server (a peer, a backend, or a gateway of old) that allows `ciphers`, up to TLS 1.2."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(identity.cert, identity.key)
    context.minimum_version, context.maximum_version = minimum, ssl.TLSVersion.TLSv1_2
    context.set_ciphers(ciphers)
    return context


@pytest.mark.parametrize("client", ["peer", "backend"])
def test_the_gateways_clients_refuse_cbc_servers(pki: Pki, client: str) -> None:
    if client == "peer":
        context = external_client_context(pki.client, [pki.ca])
    else:
        context = backend_client_context(True, pki.ca_pem.read_text(), None, None)

    with pytest.raises(ssl.SSLError, match=r"handshake failure|no shared cipher"):
        _handshake_with(
            _legacy_server(pki.ec_server, "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA"), context
        )
    assert _handshake_with(_legacy_server(pki.ec_server, "ECDHE-ECDSA-AES128-GCM-SHA256"), context) == (
        "ECDHE-ECDSA-AES128-GCM-SHA256"
    )


def test_every_context_offers_only_aead_suites_with_forward_secrecy(pki: Pki) -> None:
    contexts = [
        external_server_context(pki.ec_server, [pki.ca]),
        internal_server_context(pki.ec_server, ()),
        external_client_context(pki.client, [pki.ca]),
        backend_client_context(False, None, None, None),
    ]
    for context in contexts:
        assert context.minimum_version == ssl.TLSVersion.TLSv1_2
        for suite in context.get_ciphers():
            if suite["protocol"] == "TLSv1.2":
                assert suite["kea"] == "kx-ecdhe" and suite["aead"], suite["name"]
            else:
                assert suite["protocol"] == "TLSv1.3", suite["name"]
