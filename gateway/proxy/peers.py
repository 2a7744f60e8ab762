"""Which of a provider's gateways to try first (DESIGN.md step 3).

A provider may be hosted on several gateways.  We try them in order of how fast a TCP+TLS
connection to each was recently established, and move on to the next one on connection
errors.  A gateway that failed is pushed to the back for a while, so one dead node does
not cost every request a connect timeout.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from cryptography import x509

from gateway.crypto.certs import fingerprint_sha256
from gateway.crypto.tls import peer_certificate

# Weight of the newest sample in the moving average of connect times.
EWMA_WEIGHT: Final = 0.3
# How long a gateway that refused a connection stays at the back of the line.
FAILURE_PENALTY_SECONDS: Final = 30.0


@dataclass
class _PeerStats:
    connect_seconds: float | None = None
    failed_at: float | None = None


class PeerSelector:
    """Orders candidate addresses; fed with connect times and failures by the caller."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._stats: dict[str, _PeerStats] = {}
        self._clock = clock

    def order(self, addresses: Sequence[str]) -> list[str]:
        now = self._clock()

        def key(address: str) -> tuple[int, float]:
            stats = self._stats.get(address)
            if stats is None:
                return (0, 0.0)  # never tried: worth learning about
            penalised = stats.failed_at is not None and now - stats.failed_at < FAILURE_PENALTY_SECONDS
            return (1 if penalised else 0, stats.connect_seconds or 0.0)

        return sorted(addresses, key=key)

    def record_connect(self, address: str, seconds: float) -> None:
        stats = self._stats.setdefault(address, _PeerStats())
        stats.failed_at = None
        if stats.connect_seconds is None:
            stats.connect_seconds = seconds
        else:
            stats.connect_seconds = (1 - EWMA_WEIGHT) * stats.connect_seconds + EWMA_WEIGHT * seconds

    def record_failure(self, address: str) -> None:
        self._stats.setdefault(address, _PeerStats()).failed_at = self._clock()


class PeerNotRegistered(aiohttp.ClientConnectionError):
    """The peer's TLS certificate chains to a federation CA but is not the one registered for it."""


PinLookup = Callable[[str], frozenset[str] | None]
"""Maps `host:port` to the SHA-256 fingerprints registered for the gateway there."""


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
            raise PeerNotRegistered(f"the gateway at {address} did not present its registered certificate")
        self._peer_certs[protocol] = cert
        return protocol

    def peer_certificate(self, response: aiohttp.ClientResponse) -> x509.Certificate | None:
        """The certificate presented on the connection `response` came over (checked when it was made).

        aiohttp releases a fully read response's connection at once, so the connection's
        protocol, which the response keeps, is the key (pinned aiohttp version, as above).
        """
        protocol = getattr(response, "_protocol", None)
        return None if protocol is None else self._peer_certs.get(protocol)
