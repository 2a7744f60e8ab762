"""RFC 3161 time-stamps from the gateway's side: build a request, check a token offline.

The message log stamps each batch's hash-tree root with one request (DESIGN.md "One signer");
anyone holding the log later proves *when* a record existed by verifying the token against
the TSA certificate the global configuration lists, or the CA that issued it. Verification
here is complete and offline: nothing in the token is believed until the CMS signature over
the signed attributes checks, the messageDigest attribute matches the encapsulated TSTInfo,
the ESS signingCertificate attribute names the signer's certificate, and that certificate is
a trusted TSA's (RFC 3161 §2.3, §2.4.2; RFC 5652 §5.4, §11; RFC 5816).

Sans-IO: asking a TSA over HTTP (RFC 3161 §3.4) is the edge's, `gateway.outbound.tsa`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import hashlib
import hmac
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from asn1crypto import cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from gateway.crypto.certs import CertificateError, verify_chain

TIMESTAMP_QUERY_TYPE: Final = "application/timestamp-query"
TIMESTAMP_REPLY_TYPE: Final = "application/timestamp-reply"
"""RFC 3161 §3.4: the media types of a request and a response over HTTP."""

DIGEST_SIZE: Final = 32
"""The gateway stamps SHA-256 digests only: what its hash trees and logs are made of."""

NONCE_BITS: Final = 64
"""RFC 3161 §2.4.1 asks for a large random nonce; 64 bits is what openssl and most TSAs use."""

MAX_RESPONSE_BYTES: Final = 64 * 1024
"""A token with a three-certificate chain is ~3 KB; a TSA sending more is misbehaving."""

MAX_TOKEN_CERTIFICATES: Final = 8
"""Certificates a token may carry: the TSA's and its chain, with room for cross-certificates."""

_HASHES: Final[dict[str, type[hashes.HashAlgorithm]]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
"""Digests accepted inside a token (signature, messageDigest, ESS certificate hash)."""

_ESS_HASHES: Final = frozenset({"sha1", *_HASHES})
"""ESS certificate hashes: SHA-1 too, the only one ESSCertID (v1) knows; it names, it does not sign."""


class TimeStampResp(core.Sequence):
    """RFC 3161 §2.4.2 TimeStampResp. asn1crypto 1.5.1's own spec makes timeStampToken mandatory,
    so it can neither build nor read a rejection; the RFC has it OPTIONAL."""

    _fields: ClassVar = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


class TimestampProblem(enum.StrEnum):
    """Why a time-stamp was not obtained or not accepted; callers branch on this."""

    UNAVAILABLE = "unavailable"  # the TSA could not be reached or answered outside the protocol
    REJECTED = "rejected"  # the TSA answered with a status other than granted
    MALFORMED = "malformed"  # not a well-formed response or token
    MISMATCH = "mismatch"  # a valid token, but not for our request (nonce, imprint)
    BAD_SIGNATURE = "bad_signature"  # the token's signature or its signed attributes do not check
    WRONG_DIGEST = "wrong_digest"  # a valid token over another digest
    UNTRUSTED = "untrusted"  # signed by a certificate that is not a trusted TSA


class TimestampError(Exception):
    """A time-stamp could not be had or used; `problem` says why in a form code can branch on."""

    def __init__(self, problem: TimestampProblem, message: str) -> None:
        super().__init__(message)
        self.problem = problem


class TimestampRejected(TimestampError):
    """The TSA refused: its PKIStatus, failInfo names (RFC 3161 §2.4.2) and statusString."""

    def __init__(self, status: str, failures: frozenset[str], text: str) -> None:
        detail = f"; failInfo {', '.join(sorted(failures))}" if failures else ""
        super().__init__(TimestampProblem.REJECTED, f"TSA answered {status}{detail}: {text}")
        self.status = status
        self.failures = failures
        self.text = text


@dataclass(frozen=True)
class TimestampToken:
    """A granted token as received, with the TSTInfo values callers need (not yet verified)."""

    der: bytes
    gen_time: dt.datetime
    serial_number: int
    hash_algorithm: str
    hashed_message: bytes
    nonce: int | None
    policy: str


# --- requests and responses -----------------------------------------------------------------


def new_nonce() -> int:
    """A fresh random nonce for one request."""
    return secrets.randbits(NONCE_BITS) | (1 << (NONCE_BITS - 1))  # full length, so always positive


def build_timestamp_request(digest: bytes, nonce: int) -> bytes:
    """TimeStampReq DER for a SHA-256 `digest`, asking for the TSA certificate (RFC 3161 §2.4.1).

    certReq is set so the token carries its signer and verifies with only the CA at hand.
    """
    if len(digest) != DIGEST_SIZE:
        raise ValueError(f"a SHA-256 digest has {DIGEST_SIZE} bytes, not {len(digest)}")
    request = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": digest},
            "nonce": nonce,
            "cert_req": True,
        }
    )
    return bytes(request.dump())


def parse_timestamp_response(response_der: bytes) -> TimestampToken:
    """The token of a granted TimeStampResp; TimestampRejected for any other status.

    Only the envelope is checked here; `verify_timestamp_token` decides whether to believe it.
    """
    with _malformed_on_parse_error():
        response = TimeStampResp.load(response_der, strict=True)
        status_info = response["status"]
        status = status_info["status"].native
        # RFC 3161 §2.4.2: a token is present only with granted or grantedWithMods; we asked
        # for nothing a TSA could modify, so grantedWithMods is as good as granted.
        if status not in ("granted", "granted_with_mods"):
            texts = status_info["status_string"].native or []
            failures = frozenset(status_info["fail_info"].native or ())
            raise TimestampRejected(str(status), failures, " ".join(map(str, texts)) or "no reason")
        token = response["time_stamp_token"]
        if isinstance(token, core.Void):
            raise TimestampError(TimestampProblem.MALFORMED, "granted response without a token")
        return parse_timestamp_token(token.dump())


def parse_timestamp_token(token_der: bytes) -> TimestampToken:
    """The TSTInfo values of a TimeStampToken (a CMS ContentInfo); nothing is verified."""
    return _open_token(token_der).token


# --- verification ---------------------------------------------------------------------------


def verify_timestamp_token(
    token_der: bytes,
    digest: bytes,
    trusted_tsa_certs: Sequence[x509.Certificate],
    ca_certs: Sequence[x509.Certificate],
) -> dt.datetime:
    """The time `token_der` proves `digest` existed at, after checking all of it offline.

    The signer must be one of `trusted_tsa_certs` (pinned, e.g. from the global configuration)
    or chain to one of `ca_certs`; either way its certificate must carry the critical
    timeStamping EKU (RFC 3161 §2.3) and be valid at genTime. Raises TimestampError.
    """
    with _malformed_on_parse_error():  # asn1crypto parses lazily: errors surface on first use
        opened = _open_token(token_der)
        signer = _find_signer(opened, trusted_tsa_certs)
        _check_signing_certificate_attribute(opened, signer)
        _check_content_attributes(opened)
        _check_signature(opened, signer)
    token = opened.token
    # RFC 3161 §2.4.2: messageImprint is the requester's digest; only SHA-256 is ours.
    if token.hash_algorithm != "sha256" or not hmac.compare_digest(token.hashed_message, digest):
        raise TimestampError(TimestampProblem.WRONG_DIGEST, "the token time-stamps another digest")
    _check_signer_trusted(signer, opened.certificates, trusted_tsa_certs, ca_certs, token.gen_time)
    return token.gen_time


@contextlib.contextmanager
def _malformed_on_parse_error() -> Iterator[None]:
    """What asn1crypto (and certificate loading) raise on bad input, as one MALFORMED error."""
    try:
        yield
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, x509.InvalidVersion) as exc:
        raise TimestampError(
            TimestampProblem.MALFORMED, f"not a well-formed time-stamp token: {exc}"
        ) from exc


@dataclass(frozen=True)
class _OpenedToken:
    token: TimestampToken
    tst_info_der: bytes
    signer_info: cms.SignerInfo
    signed_attrs_der: bytes
    attributes: dict[str, Any]
    certificates: tuple[x509.Certificate, ...]


def _open_token(token_der: bytes) -> _OpenedToken:
    """Take a token apart, checking its shape (RFC 3161 §2.4.2, RFC 5652 §5) but no signature."""
    with _malformed_on_parse_error():
        content_info = cms.ContentInfo.load(token_der, strict=True)
        if content_info["content_type"].native != "signed_data":
            raise ValueError("not a CMS SignedData")
        signed_data = content_info["content"]
        encapsulated = signed_data["encap_content_info"]
        if encapsulated["content_type"].native != "tst_info":
            raise ValueError("encapsulated content is not id-ct-TSTInfo")
        tst_info_der = bytes(encapsulated["content"])
        tst_info = tsp.TSTInfo.load(tst_info_der, strict=True)
        signer_infos = signed_data["signer_infos"]
        # RFC 3161 §2.4.2: the token MUST NOT carry any signature but the TSA's.
        if len(signer_infos) != 1:
            raise ValueError(f"{len(signer_infos)} SignerInfos, expected exactly one")
        signer_info = signer_infos[0]
        signed_attrs = signer_info["signed_attrs"]
        if isinstance(signed_attrs, core.Void) or len(signed_attrs) == 0:
            raise ValueError("no signed attributes")
        # The signature covers the attributes re-tagged as SET OF (RFC 5652 §5.4): same bytes,
        # universal tag instead of [0].
        signed_attrs_der = b"\x31" + signed_attrs.dump()[1:]
        attributes = _attributes_by_type(signed_attrs)
        certificates = _certificates_of(signed_data)
        imprint = tst_info["message_imprint"]
        gen_time = tst_info["gen_time"].native
        if gen_time.tzinfo is None:  # RFC 3161 §2.4.2: genTime MUST be in UTC, with a "Z"
            raise ValueError("genTime without a time zone")
        token = TimestampToken(
            der=token_der,
            gen_time=gen_time.astimezone(dt.UTC),
            serial_number=tst_info["serial_number"].native,
            hash_algorithm=imprint["hash_algorithm"]["algorithm"].native,
            hashed_message=imprint["hashed_message"].native,
            nonce=tst_info["nonce"].native,
            policy=tst_info["policy"].dotted,
        )
    return _OpenedToken(token, tst_info_der, signer_info, signed_attrs_der, attributes, certificates)


def _attributes_by_type(signed_attrs: cms.CMSAttributes) -> dict[str, Any]:
    """Signed attributes by name, each present once with one value (RFC 5652 §5.3, §11)."""
    attributes: dict[str, Any] = {}
    for attribute in signed_attrs:
        name = attribute["type"].native
        values = attribute["values"]
        if name in attributes or len(values) != 1:
            raise ValueError(f"signed attribute {name} must appear once with one value")
        attributes[name] = values[0]
    return attributes


def _certificates_of(signed_data: cms.SignedData) -> tuple[x509.Certificate, ...]:
    choices = signed_data["certificates"]
    if isinstance(choices, core.Void):
        return ()
    if len(choices) > MAX_TOKEN_CERTIFICATES:
        raise ValueError(f"more than {MAX_TOKEN_CERTIFICATES} certificates")
    certificates = []
    for choice in choices:
        if choice.name != "certificate":
            continue  # attribute certificates and the like: never a TSA's
        certificates.append(x509.load_der_x509_certificate(choice.chosen.dump()))
    return tuple(certificates)


def _find_signer(opened: _OpenedToken, pinned: Sequence[x509.Certificate]) -> x509.Certificate:
    """The certificate the SignerInfo's sid names, from the token or the pinned TSA certificates."""
    sid = opened.signer_info["sid"]
    for candidate in (*pinned, *opened.certificates):
        if sid.name == "issuer_and_serial_number":
            parsed = asn1_x509.Certificate.load(candidate.public_bytes(serialization.Encoding.DER))
            wanted = sid.chosen
            if parsed.serial_number == wanted["serial_number"].native and parsed.issuer == wanted["issuer"]:
                return candidate
        elif sid.name == "subject_key_identifier" and _key_identifier(candidate) == sid.chosen.native:
            return candidate
    raise TimestampError(TimestampProblem.UNTRUSTED, "the token's signer certificate is not at hand")


def _key_identifier(certificate: x509.Certificate) -> bytes | None:
    try:
        return certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


def _check_signing_certificate_attribute(opened: _OpenedToken, signer: x509.Certificate) -> None:
    """RFC 3161 §2.4.1 / RFC 5816: an ESS attribute binds the signature to the certificate.

    Without it a token could be re-attributed to another certificate with the same key.
    """
    signer_der = signer.public_bytes(serialization.Encoding.DER)
    try:
        if "signing_certificate_v2" in opened.attributes:
            cert_id = opened.attributes["signing_certificate_v2"]["certs"][0]
            algorithm = cert_id["hash_algorithm"]["algorithm"].native
        elif "signing_certificate" in opened.attributes:
            cert_id = opened.attributes["signing_certificate"]["certs"][0]
            algorithm = "sha1"  # ESSCertID (RFC 2634 §5.4.1) is always SHA-1
        else:
            raise TimestampError(TimestampProblem.BAD_SIGNATURE, "no ESS signingCertificate attribute")
        expected = cert_id["cert_hash"].native
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise TimestampError(TimestampProblem.MALFORMED, f"bad ESS signingCertificate: {exc}") from exc
    if algorithm not in _ESS_HASHES:
        raise TimestampError(TimestampProblem.MALFORMED, f"unsupported ESS certificate hash {algorithm}")
    actual = hashlib.new(algorithm, signer_der).digest()
    if not hmac.compare_digest(actual, expected):
        raise TimestampError(TimestampProblem.BAD_SIGNATURE, "ESS signingCertificate names another cert")


def _check_content_attributes(opened: _OpenedToken) -> None:
    """RFC 5652 §11.1-11.2: contentType equals eContentType; messageDigest is the content's digest."""
    algorithm = _digest_name(opened.signer_info)
    try:
        content_type = opened.attributes["content_type"].native
        message_digest = opened.attributes["message_digest"].native
    except KeyError as exc:
        raise TimestampError(TimestampProblem.BAD_SIGNATURE, f"signed attribute {exc} missing") from exc
    if content_type != "tst_info":
        raise TimestampError(TimestampProblem.BAD_SIGNATURE, "contentType attribute is not id-ct-TSTInfo")
    actual = hashlib.new(algorithm, opened.tst_info_der).digest()
    if not hmac.compare_digest(actual, message_digest):
        raise TimestampError(TimestampProblem.BAD_SIGNATURE, "the TSTInfo does not match its messageDigest")


def _digest_name(signer_info: cms.SignerInfo) -> str:
    name = str(signer_info["digest_algorithm"]["algorithm"].native)
    if name not in _HASHES:
        raise TimestampError(TimestampProblem.MALFORMED, f"unsupported digest algorithm {name}")
    return name


def _check_signature(opened: _OpenedToken, signer: x509.Certificate) -> None:
    """The SignerInfo's signature over the DER signed attributes (RFC 5652 §5.4, §5.6)."""
    digest = _digest_name(opened.signer_info)
    algorithm = opened.signer_info["signature_algorithm"]
    try:
        signature_algo = algorithm.signature_algo
    except ValueError as exc:
        raise TimestampError(TimestampProblem.MALFORMED, f"unsupported signature algorithm: {exc}") from exc
    # sha256_ecdsa and the like name their hash; it must agree with digestAlgorithm.
    if algorithm["algorithm"].native not in ("rsassa_pkcs1v15", "ecdsa"):
        try:
            named_hash = algorithm.hash_algo
        except ValueError as exc:
            raise TimestampError(TimestampProblem.MALFORMED, f"unsupported signature: {exc}") from exc
        if named_hash != digest:
            raise TimestampError(TimestampProblem.MALFORMED, "signature and digest algorithms disagree")
    signature = opened.signer_info["signature"].native
    hash_algorithm = _HASHES[digest]()
    public_key = signer.public_key()
    try:
        if signature_algo == "ecdsa" and isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, opened.signed_attrs_der, ec.ECDSA(hash_algorithm))
        elif signature_algo == "rsassa_pkcs1v15" and isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, opened.signed_attrs_der, padding.PKCS1v15(), hash_algorithm)
        else:
            raise TimestampError(
                TimestampProblem.BAD_SIGNATURE,
                f"signature algorithm {signature_algo} does not fit the signer's key or is not supported",
            )
    except InvalidSignature as exc:
        raise TimestampError(TimestampProblem.BAD_SIGNATURE, "the token's signature does not verify") from exc


def _check_signer_trusted(
    signer: x509.Certificate,
    token_certificates: Sequence[x509.Certificate],
    pinned: Sequence[x509.Certificate],
    ca_certs: Sequence[x509.Certificate],
    gen_time: dt.datetime,
) -> None:
    """RFC 3161 §2.3: a TSA certificate with the critical timeStamping EKU, trusted and valid then."""
    try:
        usage = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound as exc:
        raise TimestampError(TimestampProblem.UNTRUSTED, "the signer has no extendedKeyUsage") from exc
    if not usage.critical or ExtendedKeyUsageOID.TIME_STAMPING not in usage.value:
        raise TimestampError(TimestampProblem.UNTRUSTED, "the signer lacks the critical timeStamping EKU")
    if signer in pinned:
        if not signer.not_valid_before_utc <= gen_time <= signer.not_valid_after_utc:
            raise TimestampError(TimestampProblem.UNTRUSTED, "the TSA certificate was not valid at genTime")
        return
    if not ca_certs:
        raise TimestampError(TimestampProblem.UNTRUSTED, "the signer is not a trusted TSA")
    intermediates = [c for c in token_certificates if c != signer]
    try:
        verify_chain(signer, intermediates, ca_certs, gen_time, purpose=ExtendedKeyUsageOID.TIME_STAMPING)
    except CertificateError as exc:
        raise TimestampError(TimestampProblem.UNTRUSTED, f"TSA certificate not trusted: {exc}") from exc
