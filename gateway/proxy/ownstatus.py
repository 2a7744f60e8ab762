"""This gateway's own certificate status: fresh OCSP responses for what it sends (docs/transport.md).

The authentication certificate and every hosted member's signing certificate are watched by
one `OcspCache` (gateway.outbound.ocsp), at the responders the global configuration names for
their CA (in its order, with failover), renewed ahead of need and kept on disk across
restarts. A gateway without a fresh, good response for a certificate whose CA has a responder
cannot use that certificate: its peers would refuse the message, so it refuses first and says
why (docs/resilience.md): how old its newest response is, which responders failed and
how, and whether its own clock is the trouble.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509

from gateway.crypto.certs import serial_hex
from gateway.globalconf.model import GlobalConf
from gateway.outbound import Transport
from gateway.outbound.clockcheck import ClockCheck
from gateway.outbound.ocsp import DEFAULT_FETCH_INTERVAL_SECONDS, OcspCache
from gateway.proxy.certstatus import IssuerIndex, describe

log = logging.getLogger(__name__)

TICK_SECONDS: Final = 1.0
"""How often due responses are looked for. Renewal itself happens every fetch interval, or at
half a response's usable life if sooner (OcspCache), so a short freshness limit (tests, demos)
is still met with time to spare."""


class OwnStatusUnavailable(Exception):
    """This gateway has no fresh, good OCSP response for one of its own certificates.

    `stale` when the trouble is having no fresh response at all (responders unreachable, the
    clock), not a fresh one that says the certificate is revoked or unknown.
    """

    def __init__(self, message: str, *, stale: bool) -> None:
        super().__init__(message)
        self.stale = stale


@dataclass(frozen=True)
class _Watch:
    ca_sha256: str
    urls: tuple[str, ...]


class OwnCertificateStatus:
    """Keeps OCSP responses for this gateway's certificates as the configuration asks.

    `certificates`: the TLS authentication certificate first, then the signing certificates.
    """

    def __init__(
        self,
        transport: Transport,
        certificates: Sequence[x509.Certificate],
        *,
        store_dir: Path | None = None,
        fetch_interval_seconds: float = DEFAULT_FETCH_INTERVAL_SECONDS,
        clock_check: ClockCheck | None = None,
    ) -> None:
        self.certificates = tuple(certificates)
        self.clock_check = clock_check if clock_check is not None else ClockCheck()
        self._cache = OcspCache(  # the configuration's freshness limit comes with sync()
            transport,
            max_age_seconds=1.0,
            fetch_interval_seconds=fetch_interval_seconds,
            store_dir=store_dir,
            clock_check=self.clock_check,
        )
        self._issuers = IssuerIndex()
        self._watching: dict[int, _Watch] = {}
        self._conf: GlobalConf | None = None
        self.last_errors: dict[int, str] = {}
        """Why the last renewal of a certificate (by serial) failed; gone after a success."""

    def sync(self, conf: GlobalConf) -> None:
        """Watch each certificate at its CA's responders, with the configuration's freshness limit."""
        if conf is self._conf:
            return
        self._conf = conf
        self._cache.max_age = dt.timedelta(seconds=conf.settings.ocsp_freshness_seconds)
        for certificate in self.certificates:
            ca = self._issuers.issuer(conf, certificate)
            if ca is None or not ca.checks_status:
                self._watching.pop(certificate.serial_number, None)
                continue
            watch = _Watch(ca.sha256, ca.responder_urls)
            if self._watching.get(certificate.serial_number) != watch:
                self._cache.watch(certificate, ca.certificate, watch.urls, ca.responder_certs)
                self._watching[certificate.serial_number] = watch

    async def refresh(self) -> None:
        """Renew what is due; failures are kept for health and logged once per new error."""
        for failure in await self._cache.refresh():
            message = f"{failure.error.problem}: {failure.error}"
            if self.last_errors.get(failure.serial) != message:
                log.warning("OCSP response for own certificate %x not renewed: %s", failure.serial, message)
            self.last_errors[failure.serial] = message
        now = dt.datetime.now(dt.UTC)
        for certificate in self.certificates:
            if self._cache.get(certificate, now) is not None:
                self.last_errors.pop(certificate.serial_number, None)

    def reload_stored(self) -> None:
        """Take up the responses another worker of this node fetched and stored (gateway.workers)."""
        self._cache.reload_stored()

    def response_for(self, certificate: x509.Certificate, conf: GlobalConf, now: dt.datetime) -> bytes | None:
        """The response to attach for `certificate`; None when its CA has no responder.

        Raises OwnStatusUnavailable when a response is required and none is fresh and good.
        """
        ca = self._issuers.issuer(conf, certificate)
        if ca is None:
            raise OwnStatusUnavailable(
                f"own certificate {serial_hex(certificate)} was not issued by a CA the configuration trusts",
                stale=False,
            )
        if not ca.checks_status:
            return None
        status = self._cache.status(certificate, now)
        der = self._cache.get(certificate, now)
        if status is None or der is None:
            raise OwnStatusUnavailable(self._why_stale(certificate, now), stale=True)
        if not status.is_good:
            raise OwnStatusUnavailable(
                f"own certificate {serial_hex(certificate)} is {describe(status)}", stale=False
            )
        return der

    def _why_stale(self, certificate: x509.Certificate, now: dt.datetime) -> str:
        """The real cause, in the order an operator looks: the response's age, the responders, the clock."""
        role = "TLS authentication" if certificate == self.certificates[0] else "signing"
        limit = self._cache.max_age.total_seconds()
        last = self._cache.last(certificate)
        if last is None:
            held = "none has been fetched since the node started"
        else:
            age = (now - last.this_update).total_seconds()
            held = f"the newest, of {last.this_update.isoformat()}, is {age:.0f} s old (limit {limit:g} s)"
        failures = self._cache.responder_failures(certificate)
        if failures:
            responders = "; ".join(failures.values())
        else:
            responders = self.last_errors.get(certificate.serial_number, "no responder has failed yet")
        parts = [
            f"no fresh OCSP response for own certificate {serial_hex(certificate)} ({role}): {held}",
            f"responders: {responders}",
            *self.clock_check.problems(),
        ]
        return "; ".join(parts)

    def time_left(self, now: dt.datetime) -> list[tuple[str, str, float, float | None]]:
        """Per certificate (role "auth" or "sign", serial): seconds until the certificate expires,
        and until its newest OCSP response stops counting (None: none held; negative: stale)."""
        result = []
        for index, certificate in enumerate(self.certificates):
            left = (certificate.not_valid_after_utc - now).total_seconds()
            last = self._cache.last(certificate)
            ocsp = None if last is None else (last.usable_until(self._cache.max_age) - now).total_seconds()
            result.append(("auth" if index == 0 else "sign", serial_hex(certificate), left, ocsp))
        return result

    def health(self, now: dt.datetime) -> dict[str, object]:
        """Per certificate: whether a response is needed and what it says; `ready` once all are good."""
        entries = []
        ready = self._conf is not None
        for certificate in self.certificates:
            status = self._cache.status(certificate, now)
            required = certificate.serial_number in self._watching
            good = status is not None and status.is_good
            ready = ready and (good or not required)
            entries.append(
                {
                    "serial": serial_hex(certificate),
                    "required": required,
                    "status": describe(status) if status is not None else None,
                    "this_update": status.this_update.isoformat() if status is not None else None,
                    "last_error": self.last_errors.get(certificate.serial_number),
                    "responders_failing": self._cache.responder_failures(certificate),
                }
            )
        return {"ready": ready, "certificates": entries}
