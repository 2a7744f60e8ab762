"""The development time-stamping authority: RFC 3161 requests in, signed responses out.

The message log is stamped in batches, one request per batch (DESIGN.md "One signer"), and
production federations point at a real TSA by URL; this one lets the whole federation run on
one machine. Sans-IO: `TimestampAuthority.respond` takes the request's DER and the time and
returns the response's DER; `gateway.trust.server` puts it on HTTP.

What a token holds (RFC 3161 §2.4.2, RFC 5816): a CMS SignedData (RFC 5652) over an
id-ct-TSTInfo with the request's messageImprint copied and its nonce echoed, a fresh random
serial, genTime and accuracy; signed attributes contentType, messageDigest and ESS
signingCertificateV2 naming the TSA certificate; the TSA certificate (and chain) in the
certificates SET when the request asks for it (certReq). Everything is strict DER, SETs
sorted, because some verifiers (rfc3161-client) refuse anything else (STACK.md "RFC 3161").
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from asn1crypto import cms, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from gateway.crypto.keys import PrivateKey
from gateway.crypto.timestamp import TimeStampResp
from gateway.trust.pki import random_serial

DEFAULT_POLICY_OID: Final = "2.25.105991907046362012133602385694977673364"
"""The development TSA's policy (RFC 3161 §2.4.2 TSAPolicyId): a UUID OID (ITU-T X.667), which
anyone may mint without registering an arc. It promises nothing beyond "xgate development"."""

ACCEPTED_HASHES: Final[dict[str, int]] = {"sha256": 32, "sha384": 48, "sha512": 64}
"""Imprint algorithms we stamp, with their digest sizes; SHA-1 no longer binds a document."""

MAX_REQUEST_BYTES: Final = 8 * 1024
"""A SHA-512 request with a nonce is ~110 bytes; anything near this is not a time-stamp request."""

ACCURACY_SECONDS: Final = 1
"""genTime is given to the whole second (below), so it is accurate to within one second."""

SIGNING_DIGEST: Final = "sha256"
"""Digest of the signed attributes and of the ESS certificate hash (RFC 5816 default)."""


class TsaConfigurationError(ValueError):
    """The key or certificate handed to the TSA cannot make valid tokens."""


@dataclass(frozen=True)
class Rejection:
    """Why a request was refused (RFC 3161 §2.4.2 PKIFailureInfo name, and a sentence for people)."""

    failure: str
    text: str


class _Rejected(Exception):
    def __init__(self, failure: str, text: str) -> None:
        super().__init__(text)
        self.rejection = Rejection(failure, text)


@dataclass(frozen=True)
class _AcceptedRequest:
    message_imprint: tsp.MessageImprint
    nonce: int | None
    cert_req: bool


class TimestampAuthority:
    """Answers TimeStampReq DER with TimeStampResp DER, signing with one key and certificate."""

    def __init__(
        self,
        key: PrivateKey,
        certificate: x509.Certificate,
        chain: Sequence[x509.Certificate] = (),
        policy_oid: str = DEFAULT_POLICY_OID,
    ) -> None:
        check_tsa_certificate(certificate)
        if key.public_key() != certificate.public_key():
            raise TsaConfigurationError("the TSA key does not belong to the TSA certificate")
        self.certificate = certificate
        self.policy_oid = policy_oid
        self._signer = TokenSigner(key, certificate, (certificate, *chain))

    def respond(self, request_der: bytes, now: dt.datetime) -> bytes:
        """The TimeStampResp for `request_der`: a granted token, or a rejection with its failInfo."""
        try:
            request = self._accept(request_der)
        except _Rejected as rejected:
            return rejection_response(rejected.rejection)
        token = self._signer.sign(self._tst_info(request, now), with_certificates=request.cert_req)
        response = TimeStampResp(
            {"status": {"status": "granted"}, "time_stamp_token": cms.ContentInfo.load(token)}
        )
        return bytes(response.dump())

    def _accept(self, request_der: bytes) -> _AcceptedRequest:
        """Parse and check a request; every way it can be wrong has a failInfo (RFC 3161 §2.4.2)."""
        if len(request_der) > MAX_REQUEST_BYTES:
            raise _Rejected("bad_data_format", f"request larger than {MAX_REQUEST_BYTES} bytes")
        try:
            request = tsp.TimeStampReq.load(request_der, strict=True)
            request.native  # noqa: B018  (asn1crypto parses lazily: force every field now)
            version = request["version"].native
            imprint = request["message_imprint"]
            algorithm = imprint["hash_algorithm"]["algorithm"].native
            hashed_message = imprint["hashed_message"].native
            policy = request["req_policy"].dotted if request["req_policy"].native is not None else None
            nonce = request["nonce"].native
            cert_req = bool(request["cert_req"].native)
            has_extensions = request["extensions"].native is not None
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            # What asn1crypto raises on bad input (AttributeError: its REAL type has no .native).
            raise _Rejected("bad_data_format", f"not a TimeStampReq: {exc}") from exc
        if version != "v1":  # RFC 3161 §2.4.1: version v1(1)
            raise _Rejected("bad_data_format", f"unsupported request version {version}")
        if algorithm not in ACCEPTED_HASHES:
            raise _Rejected("bad_alg", f"hash algorithm {algorithm} not accepted; use SHA-256")
        if len(hashed_message) != ACCEPTED_HASHES[algorithm]:
            # RFC 3161 §2.4.1: the hashedMessage length must match the hash algorithm.
            raise _Rejected("bad_data_format", f"a {algorithm} digest has {ACCEPTED_HASHES[algorithm]} bytes")
        if policy is not None and policy != self.policy_oid:
            raise _Rejected("unaccepted_policy", f"this TSA only stamps under policy {self.policy_oid}")
        if has_extensions:
            # RFC 3161 §2.4.1: an extension the TSA does not recognise, critical or not, is refused.
            raise _Rejected("unaccepted_extensions", "this TSA supports no request extensions")
        # Re-encoded from parsed values, so a BER-encoded request still yields a DER token.
        copied = tsp.MessageImprint.load(imprint.dump(force=True))
        return _AcceptedRequest(copied, nonce, cert_req)

    def _tst_info(self, request: _AcceptedRequest, now: dt.datetime) -> tsp.TSTInfo:
        if now.tzinfo is None:
            raise ValueError("the TSA's clock must be timezone-aware")
        # Whole seconds: strict verifiers disagree on fractional GeneralizedTime (RFC 3161 §2.4.2
        # allows it but X.690 DER rules for it are often mis-implemented); ACCURACY_SECONDS says so.
        gen_time = now.astimezone(dt.UTC).replace(microsecond=0)
        fields: dict[str, object] = {
            "version": "v1",
            "policy": self.policy_oid,
            "message_imprint": request.message_imprint,
            "serial_number": random_serial(),  # RFC 3161 §2.4.2: unique per token of this TSA
            "gen_time": gen_time,
            "accuracy": {"seconds": ACCURACY_SECONDS},
        }
        if request.nonce is not None:
            fields["nonce"] = request.nonce  # RFC 3161 §2.4.2: MUST echo the request's nonce
        return tsp.TSTInfo(fields)


def check_tsa_certificate(certificate: x509.Certificate) -> None:
    """RFC 3161 §2.3: a TSA certificate has extendedKeyUsage timeStamping only, marked critical."""
    try:
        extension = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound as exc:
        raise TsaConfigurationError("the TSA certificate has no extendedKeyUsage") from exc
    if not extension.critical or list(extension.value) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        raise TsaConfigurationError("the TSA certificate needs exactly one critical EKU, timeStamping")


class TokenSigner:
    """Makes TimeStampTokens (RFC 3161 §2.4.2) with one key: a CMS SignedData over the TSTInfo.

    The parts fixed by the certificate (signer identifier, ESS attribute, certificates) are
    encoded once here: asn1crypto re-encodes names slowly, and a TSA signs the same ones
    every time. Separate from the TSA so tests can make tokens a correct TSA would refuse to.
    """

    def __init__(
        self, key: PrivateKey, signer: x509.Certificate, certificates: Sequence[x509.Certificate] = ()
    ) -> None:
        self._key = key
        signer_asn1 = _asn1_certificate(signer)
        self._sid_der = cms.SignerIdentifier(
            {
                "issuer_and_serial_number": {
                    "issuer": signer_asn1.issuer,
                    "serial_number": signer_asn1.serial_number,
                }
            }
        ).dump()
        self._ess_attribute_der = cms.CMSAttribute(
            {"type": "signing_certificate_v2", "values": [_signing_certificate_v2(signer_asn1)]}
        ).dump()
        self._certificate_ders = tuple(c.public_bytes(serialization.Encoding.DER) for c in certificates)

    def sign(self, tst_info: tsp.TSTInfo, *, with_certificates: bool) -> bytes:
        """The token's DER: a ContentInfo holding the SignedData."""
        tst_der = tst_info.dump()
        signed_attrs = cms.CMSAttributes(
            [
                cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}),
                cms.CMSAttribute({"type": "message_digest", "values": [hashlib.sha256(tst_der).digest()]}),
                cms.CMSAttribute.load(self._ess_attribute_der),
            ]
        )
        # RFC 5652 §5.4: the signature covers the DER of the attributes with the SET OF tag.
        signature, signature_algorithm = _sign(self._key, signed_attrs.dump())
        signer_info = cms.SignerInfo(
            {
                "version": "v1",
                "sid": cms.SignerIdentifier.load(self._sid_der),
                "digest_algorithm": {"algorithm": SIGNING_DIGEST},
                "signed_attrs": signed_attrs,
                "signature_algorithm": {"algorithm": signature_algorithm},
                "signature": signature,
            }
        )
        signed_data: dict[str, object] = {
            "version": "v3",  # RFC 5652 §5.1: v3 because the content is not id-data
            "digest_algorithms": [{"algorithm": SIGNING_DIGEST}],
            "encap_content_info": {"content_type": "tst_info", "content": cms.ParsableOctetString(tst_der)},
            "signer_infos": [signer_info],
        }
        if with_certificates and self._certificate_ders:
            # asn1crypto encodes SET OF sorted: strict DER, whatever order the chain came in.
            signed_data["certificates"] = [asn1_x509.Certificate.load(der) for der in self._certificate_ders]
        content_info = cms.ContentInfo(
            {"content_type": "signed_data", "content": cms.SignedData(signed_data)}
        )
        return bytes(content_info.dump())


def rejection_response(rejection: Rejection) -> bytes:
    """A TimeStampResp with status rejection, the failInfo bit and a statusString (RFC 3161 §2.4.2)."""
    status = tsp.PKIStatusInfo(
        {"status": "rejection", "status_string": [rejection.text], "fail_info": {rejection.failure}}
    )
    return bytes(TimeStampResp({"status": status}).dump())


def _signing_certificate_v2(signer: asn1_x509.Certificate) -> tsp.SigningCertificateV2:
    """ESS signingCertificateV2 (RFC 5035 §3, required for SHA-2 by RFC 5816)."""
    cert_id = {
        "hash_algorithm": {"algorithm": SIGNING_DIGEST},  # the DEFAULT, so omitted in DER
        "cert_hash": hashlib.sha256(signer.dump()).digest(),
        "issuer_serial": {
            "issuer": [asn1_x509.GeneralName({"directory_name": signer.issuer})],
            "serial_number": signer.serial_number,
        },
    }
    return tsp.SigningCertificateV2({"certs": [cert_id]})


def _sign(key: PrivateKey, data: bytes) -> tuple[bytes, str]:
    """Signature value and its asn1crypto algorithm name (RFC 5754 §3: SHA-256 with ECDSA or RSA)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256())), "sha256_ecdsa"
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256()), "sha256_rsa"
    raise TsaConfigurationError(f"unsupported TSA key type {type(key).__name__}")


def _asn1_certificate(certificate: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))
