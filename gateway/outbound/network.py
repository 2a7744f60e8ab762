"""The node's outbound transport over aiohttp, and the one bounded reader of a body stream.

One `AiohttpTransport` per purpose, each with its own connection pool: peers (mutual TLS,
every new connection pinned to the certificate the global configuration registers), backends
(the agencies' own services), and services (OCSP responders, TSAs, the registry). Bodies pass
as bytes, never decompressed, where they are signed or forwarded.
"""

from __future__ import annotations

import asyncio
import errno
import os
import ssl
import weakref
from collections.abc import Callable
from pathlib import Path
from ssl import SSLContext
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
from cryptography import x509
from multidict import CIMultiDict
from yarl import URL

from gateway.crypto.certs import fingerprint_sha256
from gateway.crypto.tls import backend_client_context, peer_certificate
from gateway.lru import BoundedLru
from gateway.outbound.interface import (
    BODYLESS_METHODS,
    InvalidUrl,
    OutboundError,
    OutboundRequest,
    OutboundResponse,
    PeerNotRegistered,
    ResponseTooLarge,
    ServerTls,
    Transport,
    describe_timeout,
)

CONNECTIONS_PER_POOL: Final = 256
"""Open connections one pool keeps toward all its servers (aiohttp's default is 100): room for a
busy node's concurrent exchanges before new ones queue for a connection instead of failing."""

TLS_CONTEXTS_KEPT: Final = 64
"""Distinct backend TLS settings whose SSL context is kept built: one per service with its own
CA or client certificate; building one (loading a CA bundle, a key) costs about a millisecond."""


async def read_at_most(stream: aiohttp.StreamReader, max_bytes: int) -> bytes | None:
    """The whole body, or None when it is longer than `max_bytes` (read no further than one byte past).

    The one bounded reader: an answer to an outbound request and a request on an inbound
    interface are both an aiohttp StreamReader.
    """
    try:
        await stream.readexactly(max_bytes + 1)
    except asyncio.IncompleteReadError as short:
        return short.partial
    return None


PinLookup = Callable[[str], frozenset[str] | None]
"""Maps `host:port` to the SHA-256 fingerprints registered for the gateway there."""


class _NotRegistered(aiohttp.ClientConnectionError):
    """Raised inside aiohttp's connector, whose connection errors it passes through unchanged."""


class PinningConnector(aiohttp.TCPConnector):
    """A connector that checks every new TLS connection against the registered certificates.

    The check runs once per connection, right after the handshake, so a pooled (kept-alive)
    connection is never reused unchecked and no response has to be caught before aiohttp
    releases its connection.  Hooks aiohttp's `_create_connection` (pinned aiohttp version).
    """

    def __init__(self, pins: PinLookup, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pins = pins
        # The certificate each live connection's peer presented, for its certificate status.
        self._peer_certs: weakref.WeakKeyDictionary[Any, x509.Certificate] = weakref.WeakKeyDictionary()

    async def _create_connection(self, req: Any, traces: Any, timeout: Any) -> Any:
        protocol = await super()._create_connection(req, traces, timeout)
        address = f"{req.url.host}:{req.url.port}"
        transport = protocol.transport
        cert = peer_certificate(transport.get_extra_info("ssl_object") if transport is not None else None)
        allowed = self._pins(address)
        if cert is None or allowed is None or fingerprint_sha256(cert) not in allowed:
            if transport is not None:
                transport.close()
            raise _NotRegistered(f"the gateway at {address} did not present its registered certificate")
        self._peer_certs[protocol] = cert
        return protocol

    def peer_certificate(self, response: aiohttp.ClientResponse) -> x509.Certificate | None:
        """The certificate presented on the connection `response` came over (checked when it was made).

        aiohttp releases a fully read response's connection at once, so the connection's
        protocol, which the response keeps, is the key (pinned aiohttp version, as above).
        """
        protocol = getattr(response, "_protocol", None)
        return None if protocol is None else self._peer_certs.get(protocol)


class AiohttpTransport(Transport):
    """Requests over one aiohttp session; a `PinningConnector` session also reports peer certificates."""

    def __init__(self, session: aiohttp.ClientSession, *, owns_session: bool = False) -> None:
        self._session = session
        self._owns_session = owns_session
        connector = session.connector
        self._pinning = connector if isinstance(connector, PinningConnector) else None
        self._contexts: BoundedLru[tuple[ServerTls, tuple[int, ...]], SSLContext] = BoundedLru(
            TLS_CONTEXTS_KEPT
        )

    def _ssl_for(self, request: OutboundRequest) -> SSLContext | bool:
        """The request's own TLS settings as an SSL context (built once per settings and key files)."""
        settings = request.tls
        if settings is None or not request.url.lower().startswith("https:"):
            return True  # the session's default
        files = [path for path in (settings.client_cert_path, settings.client_key_path) if path]
        try:
            # A replaced certificate or key file is read again: its modification time is in the key.
            key = (settings, tuple(os.stat(path).st_mtime_ns for path in files))
            context = self._contexts.get(key)
            if context is None:
                context = backend_client_context(
                    settings.verify,
                    settings.ca_pem,
                    Path(settings.client_cert_path) if settings.client_cert_path else None,
                    Path(settings.client_key_path or settings.client_cert_path)
                    if settings.client_cert_path
                    else None,
                )
                self._contexts.put(key, context)
        except (OSError, ValueError, ssl.SSLError) as exc:
            raise OutboundError(
                f"{_address(request.url)}: the TLS settings cannot be used ({_reason(exc)})"
            ) from exc
        return context

    async def send(self, request: OutboundRequest) -> OutboundResponse:
        timeout = aiohttp.ClientTimeout(
            total=request.timeout_seconds, sock_connect=request.connect_timeout_seconds
        )
        body = request.body if request.body or request.method not in BODYLESS_METHODS else None
        ssl_setting = self._ssl_for(request)
        try:
            async with self._session.request(
                request.method,
                URL(request.url, encoded=True) if request.exact_url else request.url,
                headers=CIMultiDict(request.headers),
                data=body,
                timeout=timeout,
                allow_redirects=False,
                ssl=ssl_setting,
            ) as response:
                peer = self._pinning.peer_certificate(response) if self._pinning is not None else None
                limit = request.max_response_bytes
                if response.content_length is not None and response.content_length > limit:
                    raise ResponseTooLarge(limit, response.content_length)
                answer = await read_at_most(response.content, limit)
                if answer is None:
                    raise ResponseTooLarge(limit)
                return OutboundResponse(response.status, tuple(response.headers.items()), answer, peer)
        except _NotRegistered as exc:
            raise PeerNotRegistered(str(exc)) from exc
        except aiohttp.ConnectionTimeoutError as exc:  # the connection (TCP and TLS) was not made in time
            raise describe_timeout(_address(request.url), request, connecting=True) from exc
        except TimeoutError as exc:
            raise describe_timeout(_address(request.url), request, connecting=False) from exc
        except aiohttp.InvalidURL as exc:
            raise InvalidUrl("invalid URL") from exc
        except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
            raise OutboundError(describe_failure(request.url, exc)) from exc

    async def aclose(self) -> None:
        if self._owns_session:
            await self._session.close()


def describe_failure(url: str, exc: BaseException) -> str:
    """What went wrong, in plain words naming host:port: no library types, reprs or objects.

    aiohttp's own messages show its `ConnectionKey(...)`, SSL context objects and argument
    tuples; they go to faults that clients read, so they are replaced here (issue 9, hole 10).
    """
    address = _address(url)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"{address}: the server's TLS certificate was not accepted ({_reason(exc.certificate_error)})"
    if isinstance(exc, aiohttp.ClientConnectorSSLError | aiohttp.ClientSSLError):
        cause = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
        return f"{address}: the TLS handshake failed ({_reason(cause)})"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"{address}: the host name could not be resolved"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"{address}: cannot connect ({_reason(exc.os_error)})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return f"{address}: the server closed the connection without answering"
    if isinstance(exc, aiohttp.ClientPayloadError | asyncio.IncompleteReadError):
        return f"{address}: the answer broke off"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"{address}: the answer is not valid HTTP"
    if isinstance(exc, ssl.SSLError):
        return f"{address}: TLS failed ({_reason(exc)})"
    if isinstance(exc, OSError):
        return f"{address}: the connection failed ({_reason(exc)})"
    return f"{address}: the exchange failed"


def _address(url: str) -> str:
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "the server"
    return f"{parts.hostname}:{port}" if parts.hostname else "the server"


def _reason(exc: BaseException) -> str:
    """A short, fixed-vocabulary reason: the TLS library's reason code or the OS error's name."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return exc.verify_message or "certificate verify failed"
    if isinstance(exc, ssl.SSLError):
        return (exc.reason or type(exc).__name__).replace("_", " ").lower()
    if isinstance(exc, OSError) and exc.errno is not None and exc.errno in errno.errorcode:
        return os.strerror(exc.errno).lower()
    return type(exc).__name__


def peer_transport(tls_context: SSLContext, pins: PinLookup) -> AiohttpTransport:
    """Toward other gateways: mutual TLS with `tls_context`, each connection pinned by `pins`."""
    connector = PinningConnector(
        pins, ssl=tls_context, limit=CONNECTIONS_PER_POOL, enable_cleanup_closed=True
    )
    return AiohttpTransport(
        aiohttp.ClientSession(connector=connector, auto_decompress=False), owns_session=True
    )


BACKEND_SKIPPED_AUTO_HEADERS: Final = ("Accept", "Accept-Encoding", "Content-Type", "User-Agent")
"""Fields aiohttp would invent (`*/*`, `gzip, deflate`, `application/octet-stream` for a body
without a type, its own name): a service gets the client's fields, not the library's; an
answer compressed because of an Accept-Encoding the client never sent would reach the client
still compressed (bodies pass undecoded)."""


def backend_transport() -> AiohttpTransport:
    """Toward the agencies' services: what they send is signed and passed on byte for byte."""
    connector = aiohttp.TCPConnector(limit=CONNECTIONS_PER_POOL, enable_cleanup_closed=True)
    session = aiohttp.ClientSession(
        connector=connector, auto_decompress=False, skip_auto_headers=BACKEND_SKIPPED_AUTO_HEADERS
    )
    return AiohttpTransport(session, owns_session=True)


def service_transport() -> AiohttpTransport:
    """Toward trust services and the registry: few, small exchanges on aiohttp's defaults."""
    return AiohttpTransport(aiohttp.ClientSession(), owns_session=True)
