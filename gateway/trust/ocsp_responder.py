"""The development OCSP responder: OCSP requests in, signed answers from the CA's index out.

Production federations name real responders in the global configuration; this one answers
for the development CA so revocation can be exercised on one machine (DESIGN.md "Trust
services"). Sans-IO: `OcspResponder.respond` takes the request's DER and the time and returns
the response's DER; the status of a serial comes from a lookup function (the PKI index, read
afresh each time, in `gateway.trust.server`). `openssl ocsp -port` would do the same job but
listens on every interface (STACK.md "OCSP").
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Callable
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp
from cryptography.x509.ocsp import OCSPCertStatus, OCSPResponderEncoding, OCSPResponseStatus
from cryptography.x509.oid import ExtendedKeyUsageOID

from gateway.crypto.keys import PrivateKey, signature_hash_for
from gateway.crypto.ocsp import issuer_hashes
from gateway.trust.pki import RevocationStatus

StatusLookup = Callable[[int], RevocationStatus | None]
"""A serial's status as the CA knows it; None when the CA never issued it."""

DEFAULT_VALIDITY: Final = dt.timedelta(hours=1)
"""nextUpdate - thisUpdate: matches the federation's default OCSP freshness (docs/globalconf.md),
so a cached answer is good exactly as long as peers accept it."""

MAX_REQUEST_BYTES: Final = 8 * 1024
"""A one-certificate request with a nonce is ~120 bytes; a signed one with a chain a few KB."""


MAX_NONCE_BYTES: Final = 32
"""RFC 8954 §2.1: longer nonces may be left unanswered (they only serve to bloat responses)."""


class OcspResponderError(ValueError):
    """The responder's key or certificates cannot make answers clients will accept."""


class OcspResponder:
    """Answers OCSPRequest DER about certificates of one CA, signed by the CA or its delegate."""

    def __init__(
        self,
        responder_key: PrivateKey,
        responder_cert: x509.Certificate,
        ca_cert: x509.Certificate,
        status_lookup: StatusLookup,
        validity: dt.timedelta = DEFAULT_VALIDITY,
    ) -> None:
        if responder_key.public_key() != responder_cert.public_key():
            raise OcspResponderError("the responder key does not belong to the responder certificate")
        self.delegated = responder_cert != ca_cert
        if self.delegated:
            _check_delegated(responder_cert, ca_cert)
        self.key = responder_key
        self.certificate = responder_cert
        self.ca_certificate = ca_cert
        self.status_lookup = status_lookup
        self.validity = validity

    def respond(self, request_der: bytes, now: dt.datetime) -> bytes:
        """The OCSPResponse for `request_der` at time `now`."""
        if now.tzinfo is None:
            raise ValueError("the responder's clock must be timezone-aware")
        if len(request_der) > MAX_REQUEST_BYTES:
            return _unsuccessful(OCSPResponseStatus.MALFORMED_REQUEST)
        try:
            # One CertID per request is all cryptography parses; more is malformed to us.
            request = ocsp.load_der_ocsp_request(request_der)
            algorithm = request.hash_algorithm
            name_hash, key_hash = issuer_hashes(self.ca_certificate, algorithm)
            nonce = _nonce_of(request)
        except (ValueError, UnsupportedAlgorithm):
            return _unsuccessful(OCSPResponseStatus.MALFORMED_REQUEST)
        if request.serial_number <= 0:  # RFC 5280 §4.1.2.2: serials are positive; no CA issued this
            return _unsuccessful(OCSPResponseStatus.MALFORMED_REQUEST)
        if not (
            hmac.compare_digest(request.issuer_name_hash, name_hash)
            and hmac.compare_digest(request.issuer_key_hash, key_hash)
        ):
            # RFC 5019 §2.2.3: a responder with no definitive answer for an issuer says unauthorized.
            return _unsuccessful(OCSPResponseStatus.UNAUTHORIZED)
        builder = self._single_response(request, now).responder_id(
            OCSPResponderEncoding.HASH, self.certificate
        )
        if self.delegated:
            # RFC 6960 §4.2.2.2: clients find the delegate's certificate in the response.
            builder = builder.certificates([self.certificate])
        if nonce is not None and len(nonce) <= MAX_NONCE_BYTES:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)  # RFC 8954 §2.1
        response = builder.sign(self.key, signature_hash_for(self.key))
        return response.public_bytes(serialization.Encoding.DER)

    def _single_response(self, request: ocsp.OCSPRequest, now: dt.datetime) -> ocsp.OCSPResponseBuilder:
        """RFC 6960 §2.2: good, revoked (with time and reason) or unknown, valid for `validity`."""
        status = self.status_lookup(request.serial_number) or RevocationStatus(OCSPCertStatus.UNKNOWN)
        revoked_at = None
        reason = None
        if (
            status.status is OCSPCertStatus.REVOKED
            and status.revoked_at is not None
            and status.revoked_at > now
        ):
            status = RevocationStatus(OCSPCertStatus.GOOD)  # revocation scheduled, not yet in force
        if status.status is OCSPCertStatus.REVOKED:
            revoked_at = status.revoked_at or now
            # RFC 5280 §5.3.1: the unspecified reason SHOULD be omitted rather than stated.
            if status.reason is not x509.ReasonFlags.unspecified:
                reason = status.reason
        return ocsp.OCSPResponseBuilder().add_response_by_hash(
            issuer_name_hash=request.issuer_name_hash,
            issuer_key_hash=request.issuer_key_hash,
            serial_number=request.serial_number,
            algorithm=request.hash_algorithm,
            cert_status=status.status,
            this_update=now,
            next_update=now + self.validity,
            revocation_time=revoked_at,
            revocation_reason=reason,
        )


def _check_delegated(responder_cert: x509.Certificate, ca_cert: x509.Certificate) -> None:
    """RFC 6960 §4.2.2.2: a delegate is issued directly by the CA and has EKU OCSPSigning."""
    try:
        responder_cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise OcspResponderError("the responder certificate was not issued by the CA") from exc
    try:
        usage = responder_cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise OcspResponderError("the responder certificate has no extendedKeyUsage") from exc
    if ExtendedKeyUsageOID.OCSP_SIGNING not in usage:
        raise OcspResponderError("the responder certificate is not for OCSPSigning")


def _nonce_of(request: ocsp.OCSPRequest) -> bytes | None:
    try:
        return request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None


def _unsuccessful(status: OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(serialization.Encoding.DER)
