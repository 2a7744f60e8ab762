"""Certificates: load, fingerprint, check a chain, and read which identifier a certificate speaks for.

How identifiers are carried (the documented way; the development CA writes exactly this):

* A gateway's TLS authentication certificate holds the SubjectAlternativeName URI
  ``xroad:server:INSTANCE/CLASS/MEMBER/SERVER``: the `SecurityServerId` text form.
* A member's signing certificate holds the SubjectAlternativeName URI
  ``xroad:member:INSTANCE/CLASS/MEMBER``: the `ClientId` text form of a MEMBER (never a
  subsystem: X-Road signing keys belong to members).
* The SAN URI is the authoritative one. The subject (CN = server or member code, O = member
  code or name, serialNumber = ``INSTANCE/CLASS/MEMBER``) is there for people and for tools
  that only show subjects; nothing in xgate decides anything from it.
* A certificate carries at most one such URI of each kind; two are refused as ambiguous.

Which certificate a peer must present is decided elsewhere (the global configuration); this
module only says what a certificate claims and whether it chains to a trusted CA at a time.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from gateway.crypto.keys import write_file_atomically
from gateway.ids import ClientId, IdentifierError, SecurityServerId
from gateway.lru import BoundedLru

MEMBER_URI_PREFIX = "xroad:member:"
"""SAN URI scheme and kind for a member's signing certificate (module docstring)."""

SERVER_URI_PREFIX = "xroad:server:"
"""SAN URI scheme and kind for a gateway's TLS authentication certificate (module docstring)."""

CERTIFICATE_FILE_MODE = 0o644
"""Certificates are public: anyone on the machine may read them."""

MAX_CHAIN_DEPTH = 4
"""Root, at most two intermediates, leaf: deeper chains are a misconfiguration, not a federation."""

IDENTITY_CACHE_SIZE = 1024
"""Certificates whose identifiers are remembered: the federation's signing and TLS certificates."""

CHAIN_CACHE_SIZE = 1024
"""Chains remembered as built: one per signer, TSA or peer certificate and trust set in use,
which a federation counts in hundreds; each entry is a few certificates' references."""

_PEM_MARKER = b"-----BEGIN CERTIFICATE-----"

_T = TypeVar("_T")


class CertificateProblem(enum.StrEnum):
    """Why a certificate was refused; callers map these to their protocol's faults."""

    MALFORMED = "malformed"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    UNTRUSTED = "untrusted"
    NOT_END_ENTITY = "not_end_entity"
    WRONG_PURPOSE = "wrong_purpose"
    BAD_IDENTITY = "bad_identity"


class CertificateError(Exception):
    """A certificate could not be used; `problem` says why in a form code can branch on."""

    def __init__(self, problem: CertificateProblem, message: str) -> None:
        super().__init__(message)
        self.problem = problem


# --- loading and saving ---------------------------------------------------------------------


def load_certificate(data: bytes) -> x509.Certificate:
    """One certificate from PEM or DER bytes (the first one of a PEM bundle)."""
    certificates = load_certificates(data)
    return certificates[0]


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """All certificates of a PEM bundle, or the one certificate of a DER file."""
    try:
        if _PEM_MARKER in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise CertificateError(CertificateProblem.MALFORMED, f"not a certificate: {exc}") from exc


def load_single_pem_certificate(pem: str) -> x509.Certificate:
    """Exactly one certificate from PEM text, as signed documents and registry changes carry them.

    Raises ValueError saying what is wrong (not PEM, or not exactly one certificate); callers
    turn it into their own error, prefixed with which certificate it was."""
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise ValueError(f"not a PEM certificate ({exc})") from exc
    if len(certificates) != 1:
        raise ValueError(f"expected one PEM certificate, found {len(certificates)}")
    return certificates[0]


def load_certificate_file(path: Path) -> x509.Certificate:
    """One certificate from a PEM or DER file."""
    return load_certificate(Path(path).read_bytes())


def certificate_to_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def save_certificate(path: Path, certificate: x509.Certificate) -> None:
    """Store a certificate as PEM, atomically, readable by all."""
    write_file_atomically(path, certificate_to_pem(certificate), CERTIFICATE_FILE_MODE)


def fingerprint_sha256(certificate: x509.Certificate) -> str:
    """Lower-case hex SHA-256 of the DER encoding: how certificates are pinned and logged."""
    return certificate.fingerprint(hashes.SHA256()).hex()


def serial_hex(certificate: x509.Certificate) -> str:
    """The serial number in lower-case hex, the form `openssl x509 -serial` and OCSP tools show."""
    return format(certificate.serial_number, "x")


# --- identifiers ----------------------------------------------------------------------------


def member_uri(member: ClientId) -> str:
    """The SAN URI naming a member in its signing certificate."""
    if member.subsystem_code is not None:
        raise ValueError("signing certificates name a member, not a subsystem")
    return MEMBER_URI_PREFIX + member.to_text()


def server_uri(server: SecurityServerId) -> str:
    """The SAN URI naming a gateway in its TLS authentication certificate."""
    return SERVER_URI_PREFIX + server.to_text()


@lru_cache(maxsize=IDENTITY_CACHE_SIZE)
def identifiers_of(certificate: x509.Certificate) -> tuple[ClientId | None, SecurityServerId | None]:
    """The member and the gateway a certificate speaks for, read from its SAN URIs.

    Either may be None (a TSA or OCSP certificate names neither). A URI of our kind that does
    not parse, a subsystem in a member URI, or two URIs of one kind raise CertificateError.
    Answers are remembered per certificate (the proxy asks for every signed message); refusals
    are not, they are raised again each time.
    """
    uris = _san_uris(certificate)
    member_texts = [uri[len(MEMBER_URI_PREFIX) :] for uri in uris if uri.startswith(MEMBER_URI_PREFIX)]
    server_texts = [uri[len(SERVER_URI_PREFIX) :] for uri in uris if uri.startswith(SERVER_URI_PREFIX)]
    if len(member_texts) > 1 or len(server_texts) > 1:
        raise CertificateError(CertificateProblem.BAD_IDENTITY, "certificate names more than one identity")
    member = _parse_identifier(ClientId.from_text, member_texts)
    if member is not None and member.subsystem_code is not None:
        raise CertificateError(CertificateProblem.BAD_IDENTITY, "member URI names a subsystem")
    server = _parse_identifier(SecurityServerId.from_text, server_texts)
    return member, server


def member_of(certificate: x509.Certificate) -> ClientId | None:
    """The member a signing certificate speaks for, or None."""
    return identifiers_of(certificate)[0]


def server_of(certificate: x509.Certificate) -> SecurityServerId | None:
    """The gateway a TLS authentication certificate speaks for, or None."""
    return identifiers_of(certificate)[1]


def _san_uris(certificate: x509.Certificate) -> list[str]:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    except ValueError as exc:  # a SAN that does not parse
        raise CertificateError(CertificateProblem.MALFORMED, f"bad subjectAltName: {exc}") from exc
    return san.get_values_for_type(x509.UniformResourceIdentifier)


def _parse_identifier(parse: Callable[[str], _T], texts: list[str]) -> _T | None:
    if not texts:
        return None
    try:
        return parse(texts[0])
    except IdentifierError as exc:
        raise CertificateError(CertificateProblem.BAD_IDENTITY, f"bad identifier URI: {exc}") from exc


# --- chain verification ---------------------------------------------------------------------


def verify_chain(
    certificate: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trust_anchors: Sequence[x509.Certificate],
    at: dt.datetime,
    *,
    purpose: x509.ObjectIdentifier | None = None,
) -> list[x509.Certificate]:
    """The chain from `certificate` to one of `trust_anchors`, valid at `at`, leaf first.

    Path building, signatures, validity periods and CA constraints (RFC 5280 §6) are checked
    by cryptography's verifier; CAs must meet its Web PKI CA profile. End-entity extensions
    are not held to the Web PKI profile, because TSA, OCSP and signing certificates are not
    TLS server certificates; when `purpose` is given the leaf's extendedKeyUsage must list it.
    Revocation is not checked here (that is the OCSP client's job).
    """
    if at.tzinfo is None:
        raise ValueError("verification time must be timezone-aware")
    if not trust_anchors:
        raise CertificateError(CertificateProblem.UNTRUSTED, "no trust anchors given")
    _check_validity_period(certificate, at)
    _check_end_entity(certificate)
    if purpose is not None:
        _check_purpose(certificate, purpose)
    key = (certificate, tuple(intermediates), tuple(trust_anchors))
    cached = _built_chains.get(key)
    if cached is not None and all(_valid_at(member, at) for member in cached):
        return list(cached)
    chain = _build_chain(certificate, key[1], key[2], at)
    _built_chains.put(key, tuple(chain))
    return chain


def _build_chain(
    certificate: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trust_anchors: Sequence[x509.Certificate],
    at: dt.datetime,
) -> list[x509.Certificate]:
    verifier = (
        PolicyBuilder()
        .store(Store(list(trust_anchors)))
        .time(at.astimezone(dt.UTC))
        .max_chain_depth(MAX_CHAIN_DEPTH)
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all()
        )
        .build_client_verifier()
    )
    try:
        return verifier.verify(certificate, list(intermediates)).chain
    except VerificationError as exc:
        raise CertificateError(CertificateProblem.UNTRUSTED, f"chain not trusted: {exc}") from exc


_ChainKey = tuple[x509.Certificate, tuple[x509.Certificate, ...], tuple[x509.Certificate, ...]]


# Chains that path validation accepted, by (leaf, intermediates, anchors). Building a chain (a
# policy, a store, signature checks) costs ~150 µs, and a gateway checks the same few signers on
# every message. Without revocation, the only input that changes between calls is the time, and
# it enters path validation solely through each certificate's validity period (RFC 5280 §6.1.3
# (a)(2)): so a cached chain whose every certificate is valid at the new time is a valid path at
# that time. Any other case rebuilds from scratch, and only successes are stored.
_built_chains: BoundedLru[_ChainKey, tuple[x509.Certificate, ...]] = BoundedLru(CHAIN_CACHE_SIZE)


def _valid_at(certificate: x509.Certificate, at: dt.datetime) -> bool:
    return certificate.not_valid_before_utc <= at <= certificate.not_valid_after_utc


def _check_validity_period(certificate: x509.Certificate, at: dt.datetime) -> None:
    # Checked before path building so the caller learns *which* problem it is.
    if at < certificate.not_valid_before_utc:
        raise CertificateError(
            CertificateProblem.NOT_YET_VALID,
            f"certificate not valid before {certificate.not_valid_before_utc.isoformat()}",
        )
    if at > certificate.not_valid_after_utc:
        raise CertificateError(
            CertificateProblem.EXPIRED,
            f"certificate expired at {certificate.not_valid_after_utc.isoformat()}",
        )


def _check_end_entity(certificate: x509.Certificate) -> None:
    """RFC 5280 §4.2.1.9: a CA certificate signs certificates; it never speaks for a peer itself."""
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return
    if constraints.ca:
        raise CertificateError(CertificateProblem.NOT_END_ENTITY, "a CA certificate cannot be a leaf")


def _check_purpose(certificate: x509.Certificate, purpose: x509.ObjectIdentifier) -> None:
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise CertificateError(
            CertificateProblem.WRONG_PURPOSE,
            f"certificate has no extendedKeyUsage, needs {purpose.dotted_string}",
        ) from exc
    if purpose not in usages:
        raise CertificateError(
            CertificateProblem.WRONG_PURPOSE, f"certificate is not for {purpose.dotted_string}"
        )
