"""Certificate status on the gateway-to-gateway hop: the OCSP responses a message carries, checked.

docs/transport.md "Certificate status": a sender attaches the latest OCSP response (RFC 6960)
for its TLS authentication certificate and for the certificate that signed the message, as
base64 DER in the `XGate-Auth-OCSP` and `XGate-Signer-OCSP` headers of the POST and of its
answer. A response is signed by the CA's responder, so it needs no other protection. The
receiver checks each against the certificate it is about (the TLS peer's; the verified
signer's), the CA of the global configuration that issued it, and the configuration's
freshness limit (DESIGN.md step 5). A CA the configuration lists without an OCSP responder
has no status service: its certificates are used without one.

Sans-IO: `PeerStatusChecker.check` takes the header value, the certificate, the configuration
and the time. Verified responses are remembered by digest, so a peer costs one verification
per response it fetches, not one per message.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.x509.ocsp import OCSPCertStatus

from gateway.crypto.certs import fingerprint_sha256
from gateway.crypto.ocsp import CLOCK_SKEW, MAX_RESPONSE_BYTES, OcspError, OcspStatus, verify_ocsp_response
from gateway.globalconf import GlobalConf
from gateway.lru import BoundedLru

AUTH_OCSP_HEADER: Final = "XGate-Auth-OCSP"
"""The sender's OCSP response for the TLS authentication certificate of this connection."""

SIGNER_OCSP_HEADER: Final = "XGate-Signer-OCSP"
"""The sender's OCSP response for the certificate that signed the message in the body."""

MAX_HEADER_CHARS: Final = 4 * ((MAX_RESPONSE_BYTES + 2) // 3)
"""Base64 of the largest response gateway.crypto.ocsp accepts; aiohttp's own header limit
(8190 bytes) is lower, and a response with a delegated responder certificate is ~1.1 KB of it."""

VERIFIED_CACHE_SIZE: Final = 4096
"""Verified responses remembered: two per peer gateway and refresh, for a federation's worth of peers."""

ISSUER_CACHE_SIZE: Final = 1024
"""Certificates whose issuing CA is remembered per configuration: the federation's gateways and signers."""


class CertificateStatusError(Exception):
    """A certificate has no acceptable status: the caller turns this into its side's fault."""


@dataclass(frozen=True)
class IssuingCa:
    """A trusted CA of the configuration, as status checking needs it."""

    name: str
    certificate: x509.Certificate
    sha256: str
    responder_urls: tuple[str, ...]
    responder_certs: tuple[x509.Certificate, ...]

    @property
    def checks_status(self) -> bool:
        """Whether the registry names an OCSP responder for this CA (then a status is required)."""
        return bool(self.responder_urls)


def issuing_cas(conf: GlobalConf) -> list[IssuingCa]:
    """The configuration's trusted CAs with their responders (docs/globalconf.md `trusted_cas`)."""
    return [
        IssuingCa(
            ca.name,
            certificate,
            fingerprint_sha256(certificate),
            tuple(responder.url for responder in ca.ocsp_responders),
            tuple(
                x509.load_pem_x509_certificate(responder.certificate.encode("ascii"))
                for responder in ca.ocsp_responders
                if responder.certificate is not None
            ),
        )
        for ca, certificate in zip(conf.trusted_cas, conf.trusted_ca_certs(), strict=True)
    ]


def find_issuer(cas: list[IssuingCa], certificate: x509.Certificate) -> IssuingCa | None:
    """The CA that issued `certificate` directly: its name matches and its key signed it."""
    for ca in cas:
        if certificate.issuer != ca.certificate.subject:
            continue
        try:
            certificate.verify_directly_issued_by(ca.certificate)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            continue
        return ca
    return None


class IssuerIndex:
    """Which trusted CA of the current configuration issued a certificate, remembered per configuration.

    Finding the issuer costs a signature verification; the answer only changes when the
    configuration does, so it is kept until a different configuration object is asked about.
    """

    def __init__(self) -> None:
        self._conf: GlobalConf | None = None
        self._cas: list[IssuingCa] = []
        # A tuple around the answer, so "no trusted issuer" is remembered too.
        self._issuers: BoundedLru[str, tuple[IssuingCa | None]] = BoundedLru(ISSUER_CACHE_SIZE)

    def issuer(self, conf: GlobalConf, certificate: x509.Certificate) -> IssuingCa | None:
        if conf is not self._conf:
            self._conf, self._cas = conf, issuing_cas(conf)
            self._issuers.clear()
        key = fingerprint_sha256(certificate)
        known = self._issuers.get(key)
        if known is None:
            known = (find_issuer(self._cas, certificate),)
            self._issuers.put(key, known)
        return known[0]


def encode_response(der: bytes) -> str:
    return base64.b64encode(der).decode("ascii")


def decode_response(value: str) -> bytes:
    """The DER in a header value; CertificateStatusError when it is not base64 of a sane size."""
    if len(value) > MAX_HEADER_CHARS:
        raise CertificateStatusError(f"the attached OCSP response is larger than {MAX_RESPONSE_BYTES} bytes")
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CertificateStatusError("the attached OCSP response is not base64") from exc


def status_headers(auth_response: bytes | None, signer_response: bytes | None) -> dict[str, str]:
    """The headers that carry this gateway's own responses (none for a CA without responder)."""
    headers = {}
    if auth_response is not None:
        headers[AUTH_OCSP_HEADER] = encode_response(auth_response)
    if signer_response is not None:
        headers[SIGNER_OCSP_HEADER] = encode_response(signer_response)
    return headers


def describe(status: OcspStatus) -> str:
    if status.status is OCSPCertStatus.REVOKED:
        when = status.revoked_at.isoformat() if status.revoked_at else "an unknown time"
        reason = f" ({status.reason.value})" if status.reason is not None else ""
        return f"revoked since {when}{reason}"
    return status.status.name.lower()


@dataclass(frozen=True)
class _Verified:
    status: OcspStatus
    ca_sha256: str


class PeerStatusChecker:
    """Checks the OCSP responses peers attach; remembers the ones that verified."""

    def __init__(self, clock_skew: dt.timedelta = CLOCK_SKEW) -> None:
        self.clock_skew = clock_skew
        """How far the responder's clock may be from ours (the node's `[trust] clock_skew_seconds`)."""
        self.issuers = IssuerIndex()
        self._verified: BoundedLru[tuple[bytes, str], _Verified] = BoundedLru(VERIFIED_CACHE_SIZE)
        self.verifications = 0
        """Full verifications made (cache misses): for tests that check the cache works."""

    def check(
        self,
        header: str | None,
        certificate: x509.Certificate,
        conf: GlobalConf,
        now: dt.datetime,
    ) -> bytes | None:
        """The DER of the good, fresh response attached for `certificate`; None if its CA has no responder.

        Raises CertificateStatusError when the response is missing, malformed, about another
        certificate, from an unauthorised responder, older than the configuration's
        `ocsp_freshness_seconds`, or says anything but good.
        """
        ca = self.issuers.issuer(conf, certificate)
        if ca is None:
            raise CertificateStatusError("the certificate was not issued by a CA the configuration trusts")
        if not ca.checks_status:
            return None
        if header is None:
            raise CertificateStatusError("no OCSP response is attached for the certificate")
        der = decode_response(header)
        max_age = conf.settings.ocsp_freshness_seconds
        status = self._status(der, certificate, ca, now, max_age)
        if not status.is_good:
            raise CertificateStatusError(f"the certificate is {describe(status)} (OCSP)")
        return der

    def _status(
        self, der: bytes, certificate: x509.Certificate, ca: IssuingCa, now: dt.datetime, max_age: float
    ) -> OcspStatus:
        key = (hashlib.sha256(der).digest(), fingerprint_sha256(certificate))
        known = self._verified.get(key)
        if known is not None and known.ca_sha256 == ca.sha256:
            # Verified before: only time can have changed its answer (RFC 6960 §3.2 items 4-5).
            if now > known.status.usable_until(dt.timedelta(seconds=max_age)):
                raise CertificateStatusError(
                    f"the attached OCSP response of {known.status.this_update.isoformat()} is "
                    f"older than {max_age:g} s"
                )
            return known.status
        self.verifications += 1
        try:
            status = verify_ocsp_response(
                der, certificate, ca.certificate, now, max_age, ca.responder_certs, clock_skew=self.clock_skew
            )
        except OcspError as exc:
            raise CertificateStatusError(
                f"the attached OCSP response is refused ({exc.problem}): {exc}"
            ) from exc
        self._verified.put(key, _Verified(status, ca.sha256))
        return status
