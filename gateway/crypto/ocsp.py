"""OCSP from the gateway's side: build a request, check an answer (sans-IO).

A gateway attaches the latest OCSP response for its own certificates to what it signs, and
its peers check those responses (DESIGN.md step 5): so responses are fetched ahead of need
(gateway.outbound.ocsp), and verified wherever they are used by `verify_ocsp_response`.
cryptography builds and parses OCSP but verifies nothing (STACK.md "OCSP"); every check
RFC 6960 §3.2 asks of a client is made here: the responder is the CA itself or a certificate
the CA issued for OCSP signing (§4.2.2.2), the signature covers tbsResponseData, the CertID
is the one asked about, the response is neither from the future nor too old, and a nonce
sent is echoed (RFC 8954).

Sans-IO: fetching and keeping responses fresh is the edge's, `gateway.outbound.ocsp`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import hmac
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.ocsp import OCSPCertStatus, OCSPResponseStatus
from cryptography.x509.oid import ExtendedKeyUsageOID

from gateway.lru import BoundedLru

OCSP_REQUEST_TYPE: Final = "application/ocsp-request"
OCSP_RESPONSE_TYPE: Final = "application/ocsp-response"
"""RFC 6960 Appendix A.1: the media types of a request and a response over HTTP."""

CERT_ID_HASH: Final = hashes.SHA1()  # noqa: S303  (names the issuer, signs nothing)
"""RFC 5019 §2.1.1: the CertID hash every responder understands. It only names the issuer
here (collisions do not help an attacker: the responder signs the answer), so SHA-1 is fine."""

CLOCK_SKEW: Final = dt.timedelta(minutes=5)
"""How far a responder's clock may run ahead of ours before its thisUpdate counts as future, and
how long past nextUpdate an answer still counts: the default of a node's configurable tolerance
(`[trust] clock_skew_seconds`; why five minutes: gateway.outbound.clockcheck)."""

MAX_RESPONSE_BYTES: Final = 64 * 1024
"""A response with a delegated responder certificate is ~1.5 KB; more is not an OCSP answer."""

_RSA_PKCS1_OIDS: Final = frozenset(
    {
        x509.SignatureAlgorithmOID.RSA_WITH_SHA256,
        x509.SignatureAlgorithmOID.RSA_WITH_SHA384,
        x509.SignatureAlgorithmOID.RSA_WITH_SHA512,
    }
)
"""RSA signatures we accept on responses: PKCS#1 v1.5 with SHA-2 (RFC 6960 §4.3, without SHA-1)."""


class OcspProblem(enum.StrEnum):
    """Why an OCSP response was not obtained or not accepted; callers branch on this."""

    UNAVAILABLE = "unavailable"  # the responder could not be reached or answered outside the protocol
    MALFORMED = "malformed"
    UNSUCCESSFUL = "unsuccessful"  # responseStatus other than successful (RFC 6960 §4.2.1)
    WRONG_CERT_ID = "wrong_cert_id"
    UNAUTHORIZED_RESPONDER = "unauthorized_responder"
    BAD_SIGNATURE = "bad_signature"
    NOT_YET_VALID = "not_yet_valid"  # thisUpdate in the future
    STALE = "stale"  # thisUpdate older than allowed, or nextUpdate passed
    NONCE_MISMATCH = "nonce_mismatch"


class OcspError(Exception):
    """An OCSP response could not be had or used; `problem` says why in a form code can branch on."""

    def __init__(self, problem: OcspProblem, message: str) -> None:
        super().__init__(message)
        self.problem = problem


@dataclass(frozen=True)
class OcspStatus:
    """What a verified response says about one certificate (RFC 6960 §4.2.1 SingleResponse)."""

    status: OCSPCertStatus
    this_update: dt.datetime
    next_update: dt.datetime | None
    produced_at: dt.datetime
    revoked_at: dt.datetime | None = None
    reason: x509.ReasonFlags | None = None

    @property
    def is_good(self) -> bool:
        return self.status is OCSPCertStatus.GOOD

    def usable_until(self, max_age: dt.timedelta) -> dt.datetime:
        """When this answer stops counting: max_age after thisUpdate, or nextUpdate if sooner."""
        limit = self.this_update + max_age
        return limit if self.next_update is None else min(limit, self.next_update)


# --- requests -------------------------------------------------------------------------------


def build_ocsp_request(
    certificate: x509.Certificate, issuer: x509.Certificate, nonce: bytes | None = None
) -> bytes:
    """OCSPRequest DER asking about `certificate` (RFC 6960 §4.1), with a nonce if given (RFC 8954).

    Without a nonce the answer may come from a responder's cache (RFC 5019 §2.1), which is
    what responses attached to messages want: freshness is judged by thisUpdate, not by echo.
    """
    builder = ocsp.OCSPRequestBuilder().add_certificate(certificate, issuer, CERT_ID_HASH)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def issuer_hashes(issuer: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    """CertID issuerNameHash and issuerKeyHash of `issuer` under `algorithm` (RFC 6960 §4.1.1).

    Computed by cryptography's own request builder, so both sides of a comparison agree on
    which bytes are hashed (the subject DER; the subjectPublicKey BIT STRING contents).
    """
    request = ocsp.OCSPRequestBuilder().add_certificate(issuer, issuer, algorithm).build()
    return request.issuer_name_hash, request.issuer_key_hash


# --- verification ---------------------------------------------------------------------------


def verify_ocsp_response(
    response_der: bytes,
    certificate: x509.Certificate,
    issuer: x509.Certificate,
    now: dt.datetime,
    max_age_seconds: float,
    responder_certs: Sequence[x509.Certificate] = (),
    nonce: bytes | None = None,
    clock_skew: dt.timedelta = CLOCK_SKEW,
) -> OcspStatus:
    """What `response_der` says about `certificate`, once every RFC 6960 §3.2 check has passed.

    `responder_certs` are delegated responder certificates known in advance (the global
    configuration lists them) for responses that do not carry their signer; they are held
    to the same rule as embedded ones: issued by `issuer` for OCSPSigning. A revoked or
    unknown status is returned, not raised: the answer is valid, the certificate is not.
    """
    if now.tzinfo is None:
        raise ValueError("verification time must be timezone-aware")
    with _malformed_on_parse_error():  # cryptography parses parts of a response lazily
        response = _load(response_der)
        single = _matching_single_response(response, certificate, issuer)
        _check_responder(response, issuer, responder_certs, now)
        _check_times(single, now, dt.timedelta(seconds=max_age_seconds), clock_skew)
        if nonce is not None:
            _check_nonce(response, nonce)
        return OcspStatus(
            status=single.certificate_status,
            this_update=single.this_update_utc,
            next_update=single.next_update_utc,
            produced_at=response.produced_at_utc,
            revoked_at=single.revocation_time_utc,
            reason=single.revocation_reason,
        )


@contextlib.contextmanager
def _malformed_on_parse_error() -> Iterator[None]:
    """What cryptography raises on bad input met late (embedded certificates, extensions)."""
    try:
        yield
    except (
        ValueError,
        UnsupportedAlgorithm,
        x509.InvalidVersion,
        x509.DuplicateExtension,
        x509.UnsupportedGeneralNameType,
    ) as exc:
        raise OcspError(OcspProblem.MALFORMED, f"not a well-formed OCSP response: {exc}") from exc


def _load(response_der: bytes) -> ocsp.OCSPResponse:
    response = ocsp.load_der_ocsp_response(response_der)
    if response.response_status is not OCSPResponseStatus.SUCCESSFUL:
        raise OcspError(OcspProblem.UNSUCCESSFUL, f"responder answered {response.response_status.name}")
    return response


def _matching_single_response(
    response: ocsp.OCSPResponse, certificate: x509.Certificate, issuer: x509.Certificate
) -> ocsp.OCSPSingleResponse:
    """The SingleResponse whose CertID names `certificate` under `issuer` (RFC 6960 §3.2 item 1)."""
    if certificate.issuer != issuer.subject:
        raise OcspError(OcspProblem.WRONG_CERT_ID, "the certificate was not issued by the given issuer")
    for single in response.responses:
        try:
            name_hash, key_hash = issuer_hashes(issuer, single.hash_algorithm)
        except (ValueError, UnsupportedAlgorithm):
            continue  # a CertID hash we cannot compute cannot be ours
        if (
            single.serial_number == certificate.serial_number
            and hmac.compare_digest(single.issuer_name_hash, name_hash)
            and hmac.compare_digest(single.issuer_key_hash, key_hash)
        ):
            return single
    raise OcspError(OcspProblem.WRONG_CERT_ID, "the response is about another certificate")


def _check_responder(
    response: ocsp.OCSPResponse,
    issuer: x509.Certificate,
    responder_certs: Sequence[x509.Certificate],
    now: dt.datetime,
) -> None:
    """RFC 6960 §3.2 items 2-3, §4.2.2.2: an authorized responder signed tbsResponseData."""
    named = [c for c in (issuer, *responder_certs, *response.certificates) if _is_responder_id(response, c)]
    if not named:
        raise OcspError(OcspProblem.UNAUTHORIZED_RESPONDER, "the responder's certificate is not at hand")
    authorized = [c for c in named if _is_authorized(c, issuer, now)]
    if not authorized:
        raise OcspError(
            OcspProblem.UNAUTHORIZED_RESPONDER, "the responder is neither the CA nor delegated by it"
        )
    if not any(_signature_verifies(response, c) for c in authorized):
        raise OcspError(OcspProblem.BAD_SIGNATURE, "the response's signature does not verify")


def _is_responder_id(response: ocsp.OCSPResponse, candidate: x509.Certificate) -> bool:
    """RFC 6960 §4.2.2.3: ResponderID byName is the subject; byKey the SHA-1 of the public key."""
    if response.responder_name is not None:
        return response.responder_name == candidate.subject
    key_hash = x509.SubjectKeyIdentifier.from_public_key(candidate.public_key()).digest  # RFC 5280 §4.2.1.2
    return response.responder_key_hash is not None and hmac.compare_digest(
        response.responder_key_hash, key_hash
    )


def _is_authorized(candidate: x509.Certificate, issuer: x509.Certificate, now: dt.datetime) -> bool:
    """The CA itself, or a certificate it issued with EKU OCSPSigning, valid now (RFC 6960 §4.2.2.2)."""
    if candidate == issuer:
        return True
    if not candidate.not_valid_before_utc <= now <= candidate.not_valid_after_utc:
        return False
    try:
        usage = candidate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    if ExtendedKeyUsageOID.OCSP_SIGNING not in usage:
        return False
    try:
        candidate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    # id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1) lets us skip the responder's own status.
    return True


def _signature_verifies(response: ocsp.OCSPResponse, signer: x509.Certificate) -> bool:
    """The signature over tbsResponseData, with the hash and padding its algorithm names.

    Remembered by response and signer: one response is attached to an hour of a member's
    messages, and verifying a log meets it once per signed batch."""
    key = (response.tbs_response_bytes, response.signature, signer)
    return _SIGNATURES.remembered(key, lambda: _verify_signature(response, signer))


SIGNATURES_KEPT: Final = 256
"""OCSP signatures whose verdict is remembered: a few responses per member and hour are current."""
_SIGNATURES: Final[BoundedLru[tuple[bytes, bytes, x509.Certificate], bool]] = BoundedLru(SIGNATURES_KEPT)


def _verify_signature(response: ocsp.OCSPResponse, signer: x509.Certificate) -> bool:
    try:
        hash_algorithm = response.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return False
    if hash_algorithm is None or isinstance(hash_algorithm, hashes.SHA1):
        return False  # RFC 6960 §4.3 still allows SHA-1; chosen-prefix collisions make it forgeable
    public_key = signer.public_key()
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(hash_algorithm))
        elif isinstance(public_key, rsa.RSAPublicKey):
            # cryptography parses RSASSA-PSS signatures' OIDs but not their parameters; only
            # PKCS#1 v1.5 (what responders use) is accepted.
            if response.signature_algorithm_oid not in _RSA_PKCS1_OIDS:
                return False
            public_key.verify(
                response.signature, response.tbs_response_bytes, padding.PKCS1v15(), hash_algorithm
            )
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _check_times(
    single: ocsp.OCSPSingleResponse, now: dt.datetime, max_age: dt.timedelta, clock_skew: dt.timedelta
) -> None:
    """RFC 6960 §3.2 items 4-5 and §4.2.2.1: thisUpdate recent enough, nextUpdate not passed."""
    this_update = single.this_update_utc
    if this_update > now + clock_skew:
        ahead = (this_update - now).total_seconds()
        raise OcspError(
            OcspProblem.NOT_YET_VALID,
            f"thisUpdate {this_update.isoformat()} is {ahead:.0f} s in the future: this gateway's clock "
            f"is behind the responder's by more than the {clock_skew.total_seconds():g} s tolerated",
        )
    if this_update < now - max_age:
        age, limit = (now - this_update).total_seconds(), max_age.total_seconds()
        raise OcspError(
            OcspProblem.STALE,
            f"thisUpdate {this_update.isoformat()} is {age:.0f} s old, older than {limit:g} s",
        )
    next_update = single.next_update_utc
    if next_update is not None and next_update < now - clock_skew:
        raise OcspError(OcspProblem.STALE, f"nextUpdate {next_update.isoformat()} has passed")


def _check_nonce(response: ocsp.OCSPResponse, nonce: bytes) -> None:
    """RFC 8954 §2.1: a nonce we sent must come back unchanged."""
    try:
        echoed = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound as exc:
        raise OcspError(OcspProblem.NONCE_MISMATCH, "the response carries no nonce") from exc
    if not hmac.compare_digest(echoed, nonce):
        raise OcspError(OcspProblem.NONCE_MISMATCH, "the response's nonce is not ours")
