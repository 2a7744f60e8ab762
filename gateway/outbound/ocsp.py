"""Keeping OCSP responses for our certificates: ask a responder over HTTP, verify, renew ahead of need.

The HTTP edge of `gateway.crypto.ocsp` (RFC 6960 Appendix A.1): the request is built and the
answer verified there, sans-IO; here they travel through an outbound `Transport`, and
`OcspCache` holds the latest verified response per certificate for proxy/ownstatus.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from cryptography import x509

from gateway.crypto.ocsp import (
    MAX_RESPONSE_BYTES,
    OCSP_REQUEST_TYPE,
    OCSP_RESPONSE_TYPE,
    OcspError,
    OcspProblem,
    OcspStatus,
    build_ocsp_request,
    verify_ocsp_response,
)
from gateway.outbound.interface import ExchangeFailed, Transport, post_for

logger = logging.getLogger(__name__)

DEFAULT_REFRESH_FRACTION: Final = 0.5
"""Refresh once half a response's usable life is gone: a failed fetch leaves the other half."""

DEFAULT_FETCH_TIMEOUT: Final = 10.0
"""Seconds to wait for a responder: a background refresh can afford patience, not a hang."""


async def fetch_ocsp(
    transport: Transport,
    url: str,
    certificate: x509.Certificate,
    issuer: x509.Certificate,
    timeout: float,
) -> bytes:
    """POST an OCSP request for `certificate` to `url` (RFC 6960 A.1); the response DER, unverified."""
    request = build_ocsp_request(certificate, issuer)
    try:
        return await post_for(
            transport,
            url,
            request,
            content_type=OCSP_REQUEST_TYPE,
            answer_type=OCSP_RESPONSE_TYPE,
            timeout=timeout,
            max_bytes=MAX_RESPONSE_BYTES,
        )
    except ExchangeFailed as exc:
        raise OcspError(OcspProblem.UNAVAILABLE, f"responder {exc}") from exc


@dataclass(frozen=True)
class _Watched:
    certificate: x509.Certificate
    issuer: x509.Certificate
    url: str
    responder_certs: tuple[x509.Certificate, ...]


@dataclass(frozen=True)
class _Held:
    der: bytes
    status: OcspStatus


@dataclass(frozen=True)
class OcspRefreshFailure:
    """A certificate whose response could not be renewed this round; the old one is kept."""

    serial: int
    error: OcspError


class OcspCache:
    """The latest verified OCSP response for each of our certificates, renewed ahead of need.

    A response is replaced only by a newer one that verifies, so a responder outage or a
    forged answer never costs the response in hand; a verified *revoked* answer does replace
    a good one (hiding our own revocation from peers is not the cache's job). `get` returns
    nothing once a response no longer counts, so a stale one is never attached.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        max_age_seconds: float,
        refresh_fraction: float = DEFAULT_REFRESH_FRACTION,
        timeout_seconds: float = DEFAULT_FETCH_TIMEOUT,
    ) -> None:
        if not 0 < refresh_fraction < 1:
            raise ValueError("refresh_fraction must be between 0 and 1")
        self._transport = transport
        self.max_age = dt.timedelta(seconds=max_age_seconds)
        self.refresh_fraction = refresh_fraction
        self.timeout_seconds = timeout_seconds
        self._watched: dict[tuple[bytes, int], _Watched] = {}
        self._held: dict[tuple[bytes, int], _Held] = {}

    def watch(
        self,
        certificate: x509.Certificate,
        issuer: x509.Certificate,
        url: str,
        responder_certs: Sequence[x509.Certificate] = (),
    ) -> None:
        """Keep a response for `certificate` from the responder at `url` from the next refresh on."""
        self._watched[_key(certificate)] = _Watched(certificate, issuer, url, tuple(responder_certs))

    def get(self, certificate: x509.Certificate, now: dt.datetime | None = None) -> bytes | None:
        """The response DER to attach for `certificate`, or None when none counts any more."""
        held = self._usable(certificate, now or _utc_now())
        return None if held is None else held.der

    def status(self, certificate: x509.Certificate, now: dt.datetime | None = None) -> OcspStatus | None:
        """What the response `get` would return says, for deciding whether to sign at all."""
        held = self._usable(certificate, now or _utc_now())
        return None if held is None else held.status

    async def refresh(
        self, now: dt.datetime | None = None, *, force: bool = False
    ) -> list[OcspRefreshFailure]:
        """Fetch and verify a new response for every certificate due (or all with `force`)."""
        now = now or _utc_now()
        due = [w for key, w in self._watched.items() if force or self._is_due(key, now)]
        results = await asyncio.gather(*(self._renew(w) for w in due))
        return [failure for failure in results if failure is not None]

    async def run(self, interval_seconds: float) -> None:
        """Refresh every `interval_seconds` until cancelled."""
        while True:
            for failure in await self.refresh():
                logger.warning("OCSP response for serial %x not renewed: %s", failure.serial, failure.error)
            await asyncio.sleep(interval_seconds)

    def _usable(self, certificate: x509.Certificate, now: dt.datetime) -> _Held | None:
        held = self._held.get(_key(certificate))
        if held is None or now > held.status.usable_until(self.max_age):
            return None
        return held

    def _is_due(self, key: tuple[bytes, int], now: dt.datetime) -> bool:
        held = self._held.get(key)
        if held is None:
            return True
        this_update = held.status.this_update
        life = held.status.usable_until(self.max_age) - this_update
        return now >= this_update + life * self.refresh_fraction

    async def _renew(self, watched: _Watched) -> OcspRefreshFailure | None:
        try:
            der = await fetch_ocsp(
                self._transport, watched.url, watched.certificate, watched.issuer, self.timeout_seconds
            )
            status = verify_ocsp_response(
                der,
                watched.certificate,
                watched.issuer,
                _utc_now(),
                self.max_age.total_seconds(),
                watched.responder_certs,
            )
        except OcspError as exc:
            return OcspRefreshFailure(watched.certificate.serial_number, exc)
        key = _key(watched.certificate)
        current = self._held.get(key)
        if current is None or status.this_update >= current.status.this_update:
            self._held[key] = _Held(der, status)
        return None


def _key(certificate: x509.Certificate) -> tuple[bytes, int]:
    """Serials are unique per issuer (RFC 5280 §4.1.2.2), so the issuer name goes with the serial."""
    return certificate.issuer.public_bytes(), certificate.serial_number


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
