"""The node's outbound transport over aiohttp, and the one bounded reader of a body stream.

One `AiohttpTransport` per purpose, each with its own connection pool: peers (mutual TLS,
every new connection pinned to the certificate the global configuration registers), backends
(the agencies' own services), and services (OCSP responders, TSAs, the registry). Bodies pass
as bytes, never decompressed, where they are signed or forwarded.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from ssl import SSLContext
from typing import Any, Final

import aiohttp
from cryptography import x509
from multidict import CIMultiDict

from gateway.crypto.certs import fingerprint_sha256
from gateway.crypto.tls import peer_certificate
from gateway.outbound.interface import (
    BODYLESS_METHODS,
    InvalidUrl,
    OutboundError,
    OutboundRequest,
    OutboundResponse,
    OutboundTimeout,
    PeerNotRegistered,
    ResponseTooLarge,
    Transport,
)

CONNECTIONS_PER_POOL: Final = 256
"""Open connections one pool keeps toward all its servers (aiohttp's default is 100): room for a
busy node's concurrent exchanges before new ones queue for a connection instead of failing."""


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

    async def send(self, request: OutboundRequest) -> OutboundResponse:
        timeout = aiohttp.ClientTimeout(
            total=request.timeout_seconds, sock_connect=request.connect_timeout_seconds
        )
        body = request.body if request.body or request.method not in BODYLESS_METHODS else None
        try:
            async with self._session.request(
                request.method,
                request.url,
                headers=CIMultiDict(request.headers),
                data=body,
                timeout=timeout,
                allow_redirects=False,
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
        except TimeoutError as exc:
            raise OutboundTimeout(f"no answer within {request.timeout_seconds:g} s") from exc
        except aiohttp.InvalidURL as exc:
            raise InvalidUrl(f"invalid URL: {exc}") from exc
        except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
            raise OutboundError(f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        if self._owns_session:
            await self._session.close()


def peer_transport(tls_context: SSLContext, pins: PinLookup) -> AiohttpTransport:
    """Toward other gateways: mutual TLS with `tls_context`, each connection pinned by `pins`."""
    connector = PinningConnector(
        pins, ssl=tls_context, limit=CONNECTIONS_PER_POOL, enable_cleanup_closed=True
    )
    return AiohttpTransport(
        aiohttp.ClientSession(connector=connector, auto_decompress=False), owns_session=True
    )


def backend_transport() -> AiohttpTransport:
    """Toward the agencies' services: what they send is signed and passed on byte for byte."""
    connector = aiohttp.TCPConnector(limit=CONNECTIONS_PER_POOL, enable_cleanup_closed=True)
    return AiohttpTransport(
        aiohttp.ClientSession(connector=connector, auto_decompress=False), owns_session=True
    )


def service_transport() -> AiohttpTransport:
    """Toward trust services and the registry: few, small exchanges on aiohttp's defaults."""
    return AiohttpTransport(aiohttp.ClientSession(), owns_session=True)
