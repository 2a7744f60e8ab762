"""Keeping OCSP responses for our certificates: ask a responder over HTTP, verify, renew ahead of need.

The HTTP edge of `gateway.crypto.ocsp` (RFC 6960 Appendix A.1): the request is built and the
answer verified there, sans-IO; here they travel through an outbound `Transport`, and
`OcspCache` holds the latest verified response per certificate for proxy/ownstatus.py, asking
a CA's responders in priority order with failover, and keeping what it holds on disk.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.x509 import ocsp

from gateway.crypto.keys import write_file_atomically
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
from gateway.outbound.clockcheck import ClockCheck
from gateway.outbound.failover import Failover
from gateway.outbound.interface import ExchangeFailed, Transport, post_for

logger = logging.getLogger(__name__)

DEFAULT_REFRESH_FRACTION: Final = 0.5
"""Refresh once half a response's usable life is gone: a failed fetch leaves the other half."""

DEFAULT_FETCH_TIMEOUT: Final = 10.0
"""Seconds to wait for a responder: a background refresh can afford patience, not a hang."""

MIN_FETCH_TIMEOUT: Final = 1.0
"""The shortest wait for a responder however short the freshness limit: a local one answers in ms."""

DEFAULT_FETCH_INTERVAL_SECONDS: Final = 1200.0
"""X-Road's ocspFetchInterval: a response is renewed every 20 minutes, so with its default
freshness of an hour (ocspFreshnessSeconds) two more attempts are left before it goes stale."""


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
    urls: tuple[str, ...]
    responder_certs: tuple[x509.Certificate, ...]


@dataclass(frozen=True)
class _Held:
    der: bytes
    status: OcspStatus


@dataclass(frozen=True)
class OcspRefreshFailure:
    """A certificate whose response could not be renewed this round; the old one is kept.

    `responders` says why each responder asked failed, in the order they were asked.
    """

    serial: int
    error: OcspError
    responders: dict[str, str] = field(default_factory=dict)


class OcspCache:
    """The latest verified OCSP response for each of our certificates, renewed ahead of need.

    A response is replaced only by a newer one that verifies, so a responder outage or a
    forged answer never costs the response in hand; a verified *revoked* answer does replace
    a good one (hiding our own revocation from peers is not the cache's job). `get` returns
    nothing once a response no longer counts, so a stale one is never attached.

    A CA may name several responders (docs/globalconf.md): they are asked in the registry's
    order, the first healthy one first, one that failed after the others until it has rested
    (gateway.outbound.failover). A response is renewed every `fetch_interval_seconds` (X-Road's
    ocspFetchInterval, 20 minutes), or at `refresh_fraction` of its usable life if that comes
    sooner (a short freshness limit: the development federation's). With `store_dir` every
    verified response is kept on disk (owner-only), and read back, verified again, when its
    certificate is watched after a restart: a node restarted during a responder outage still
    has what it had.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        max_age_seconds: float,
        refresh_fraction: float = DEFAULT_REFRESH_FRACTION,
        timeout_seconds: float = DEFAULT_FETCH_TIMEOUT,
        fetch_interval_seconds: float = DEFAULT_FETCH_INTERVAL_SECONDS,
        store_dir: Path | None = None,
        clock_check: ClockCheck | None = None,
        failover: Failover | None = None,
    ) -> None:
        if not 0 < refresh_fraction < 1:
            raise ValueError("refresh_fraction must be between 0 and 1")
        self._transport = transport
        self.max_age = dt.timedelta(seconds=max_age_seconds)
        self.refresh_fraction = refresh_fraction
        self.timeout_seconds = timeout_seconds
        self.fetch_interval = dt.timedelta(seconds=fetch_interval_seconds)
        self.store_dir = store_dir
        self.clock_check = clock_check if clock_check is not None else ClockCheck()
        self.failover = failover if failover is not None else Failover()
        self._watched: dict[tuple[bytes, int], _Watched] = {}
        self._held: dict[tuple[bytes, int], _Held] = {}
        self._retry_at: dict[tuple[bytes, int], dt.datetime] = {}
        """After a failed round, no new one for the certificate before this (see _retry_delay)."""
        self._loaded: dict[tuple[bytes, int], tuple[int, int]] = {}
        """The stored file's (mtime, size) when it was last read (see reload_stored)."""

    def watch(
        self,
        certificate: x509.Certificate,
        issuer: x509.Certificate,
        urls: str | Sequence[str],
        responder_certs: Sequence[x509.Certificate] = (),
    ) -> None:
        """Keep a response for `certificate` from the responders at `urls` (in priority order).

        A response kept on disk from before is taken up now if it still verifies and counts.
        """
        watched = _Watched(
            certificate, issuer, (urls,) if isinstance(urls, str) else tuple(urls), tuple(responder_certs)
        )
        self._watched[_key(certificate)] = watched
        if _key(certificate) not in self._held:
            self._load(watched)

    def get(self, certificate: x509.Certificate, now: dt.datetime | None = None) -> bytes | None:
        """The response DER to attach for `certificate`, or None when none counts any more."""
        held = self._usable(certificate, now or _utc_now())
        return None if held is None else held.der

    def status(self, certificate: x509.Certificate, now: dt.datetime | None = None) -> OcspStatus | None:
        """What the response `get` would return says, for deciding whether to sign at all."""
        held = self._usable(certificate, now or _utc_now())
        return None if held is None else held.status

    def last(self, certificate: x509.Certificate) -> OcspStatus | None:
        """What the newest verified response says, whether or not it still counts (to say how old)."""
        held = self._held.get(_key(certificate))
        return None if held is None else held.status

    def responder_failures(self, certificate: x509.Certificate) -> dict[str, str]:
        """Why the responders for `certificate` that failed last failed (none: all healthy)."""
        watched = self._watched.get(_key(certificate))
        return {} if watched is None else self.failover.failures(watched.urls)

    async def refresh(
        self, now: dt.datetime | None = None, *, force: bool = False
    ) -> list[OcspRefreshFailure]:
        """Fetch and verify a new response for every certificate due (or all with `force`)."""
        now = now or _utc_now()
        due = [w for key, w in self._watched.items() if force or self._is_due(key, now)]
        results = await asyncio.gather(*(self._renew(w) for w in due))
        for watched, result in zip(due, results, strict=True):
            key = _key(watched.certificate)
            if result is None:
                self._retry_at.pop(key, None)
            else:
                self._retry_at[key] = now + self._retry_delay()
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

    def _retry_delay(self) -> dt.timedelta:
        """After a round in which every responder failed: a minute (the failover's rest), or a tenth
        of the freshness limit if shorter, so a short limit (development) still gets its retries."""
        return min(dt.timedelta(seconds=self.failover.retry_after_seconds), self.max_age / 10)

    def _is_due(self, key: tuple[bytes, int], now: dt.datetime) -> bool:
        retry_at = self._retry_at.get(key)
        if retry_at is not None and now < retry_at:
            return False
        held = self._held.get(key)
        if held is None:
            return True
        this_update = held.status.this_update
        life = held.status.usable_until(self.max_age) - this_update
        return now >= this_update + min(life * self.refresh_fraction, self.fetch_interval)

    def _attempt_timeout(self) -> float:
        """A hung responder must not cost the next one its chance: at most a tenth of the freshness limit."""
        return max(MIN_FETCH_TIMEOUT, min(self.timeout_seconds, self.max_age.total_seconds() / 10))

    async def _renew(self, watched: _Watched) -> OcspRefreshFailure | None:
        problems: dict[str, str] = {}
        last_error: OcspError | None = None
        for url in self.failover.order(watched.urls):
            try:
                status, der = await self._fetch_verified(watched, url)
            except OcspError as exc:
                self.failover.failed(url, str(exc))
                problems[url] = str(exc)
                last_error = exc
                continue
            self.failover.succeeded(url)
            await self._keep(watched, status, der)
            return None
        if last_error is None:
            last_error = OcspError(OcspProblem.UNAVAILABLE, "the CA names no OCSP responder")
        elif len(problems) > 1:
            last_error = OcspError(last_error.problem, "; ".join(problems.values()))
        return OcspRefreshFailure(watched.certificate.serial_number, last_error, problems)

    async def _fetch_verified(self, watched: _Watched, url: str) -> tuple[OcspStatus, bytes]:
        der = await fetch_ocsp(
            self._transport, url, watched.certificate, watched.issuer, self._attempt_timeout()
        )
        received = _utc_now()
        try:
            produced = ocsp.load_der_ocsp_response(der).produced_at_utc
        except ValueError:
            produced = None  # verification below says what is wrong with it
        if produced is not None:  # before verifying: a clock too far behind is why it would fail
            self.clock_check.observe(f"OCSP responder {url}", produced, received, two_sided=False)
        status = self._verify(der, watched, received)
        return status, der

    def _verify(self, der: bytes, watched: _Watched, now: dt.datetime) -> OcspStatus:
        return verify_ocsp_response(
            der,
            watched.certificate,
            watched.issuer,
            now,
            self.max_age.total_seconds(),
            watched.responder_certs,
            clock_skew=self.clock_check.tolerance,
        )

    async def _keep(self, watched: _Watched, status: OcspStatus, der: bytes) -> None:
        key = _key(watched.certificate)
        current = self._held.get(key)
        if current is None or status.this_update >= current.status.this_update:
            self._held[key] = _Held(der, status)
            if self.store_dir is not None:
                try:
                    await asyncio.to_thread(self._store, watched.certificate, der)
                except OSError as exc:  # the response in memory is what counts; disk is for restarts
                    logger.warning("OCSP response for serial %x not kept on disk: %s", key[1], exc)

    # --- on disk ----------------------------------------------------------------------------

    def _path(self, certificate: x509.Certificate) -> Path:
        assert self.store_dir is not None
        issuer = hashlib.sha256(certificate.issuer.public_bytes()).hexdigest()[:16]
        return self.store_dir / f"{issuer}-{certificate.serial_number:x}.ocsp.der"

    def _store(self, certificate: x509.Certificate, der: bytes) -> None:
        assert self.store_dir is not None
        self.store_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_file_atomically(self._path(certificate), der, 0o600)

    def reload_stored(self) -> None:
        """Take up responses another process of this node stored (gateway.workers: worker 0
        fetches, the others read), each when its file changed and only if newer than the one held."""
        for watched in self._watched.values():
            self._load(watched)

    def _load(self, watched: _Watched) -> None:
        """The stored response for `watched`, if it is owner-only, verifies, still counts, and is
        newer than the one held; a file unchanged since it was last read is not read again."""
        if self.store_dir is None:
            return
        path = self._path(watched.certificate)
        key = _key(watched.certificate)
        try:
            stat = path.stat()
            if (stat.st_mtime_ns, stat.st_size) == self._loaded.get(key):
                return
            if stat.st_mode & 0o077:
                logger.warning("ignoring %s: readable or writable by others (chmod 600)", path)
                return
            der = path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            logger.warning("ignoring %s: %s", path, exc)
            return
        self._loaded[key] = (stat.st_mtime_ns, stat.st_size)
        try:
            status = self._verify(der, watched, _utc_now())
        except OcspError as exc:
            logger.info("ignoring stored OCSP response %s: %s", path, exc)
            return
        current = self._held.get(key)
        if current is None or status.this_update > current.status.this_update:
            self._held[key] = _Held(der, status)


def _key(certificate: x509.Certificate) -> tuple[bytes, int]:
    """Serials are unique per issuer (RFC 5280 §4.1.2.2), so the issuer name goes with the serial."""
    return certificate.issuer.public_bytes(), certificate.serial_number


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
