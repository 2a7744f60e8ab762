"""Sign and verify a hash-tree root as a standard XML-DSig document (DESIGN.md "One signer").

The batch signer signs one root per batch; this module turns that root into an
`xg:SignedRoot` document that `xmlsec1` verifies on any machine (DESIGN.md "Signature formats
are standard"; docs/transport.md has the exact layout and command line). It also defines
:class:`MessageSignature`, what each message carries: the signed root plus its path to it.

The document has one fixed shape, so both directions do XML-DSig core generation and
validation (XML-DSig 1.1 §3.1, §3.2) for that shape alone, with `cryptography` for the key
operation and libxml2's exclusive C14N (through lxml) for reading: a general engine's
per-document set-up cost several times the signature itself on the hot path. `xmlsec1` stays
the independent check in the tests, both ways.

Sans-IO: bytes and values in, bytes and values out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from lxml import etree

from gateway.crypto.certs import CertificateError, verify_chain
from gateway.crypto.hashtree import DIGEST_SIZE, Proof, root_from_proof
from gateway.crypto.keys import PrivateKey
from gateway.lru import BoundedLru
from gateway.xmlsafe import UnsafeXml, XmlSyntaxError, parse_xml

XG_NS: Final = "urn:xgate:signature:1"
DS_NS: Final = "http://www.w3.org/2000/09/xmldsig#"
SIGNED_ROOT_ID: Final = "root"
"""The `Id` of the signed element; the Reference points at `#root` so the document can be embedded."""

SHA256_URI: Final = "http://www.w3.org/2001/04/xmlenc#sha256"  # XML Encryption 1.0 §5.7.2
EXC_C14N_URI: Final = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED_URI: Final = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
ECDSA_SHA256_URI: Final = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"  # RFC 6931 §2.3.6
RSA_SHA256_URI: Final = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"  # RFC 6931 §2.3.2

MAX_SIGNED_ROOT_BYTES: Final = 64 * 1024
"""A SignedRoot with one certificate is ~1.5 KB; 64 KB leaves room for certificates with long extensions."""

VERIFIED_CACHE_SIZE: Final = 4096
"""Distinct signed roots remembered as verified: a batch's messages share one, and a busy peer
sends a few hundred batches a second, so this covers the last seconds of traffic in ~10 MB."""

SIGNER_KEY_CACHE_SIZE: Final = 256
"""Signer certificates whose parsed public key is kept: one per member signing key in the
federation, and members are far fewer than messages."""

BASE64_LINE_LENGTH: Final = 64
"""xmlsec's line length for base64 element content; kept so our documents look like its own."""

_SIGNING_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z")
"""xs:dateTime in UTC, the only form we write and accept (no offsets, no missing zone)."""


class SignatureVerificationError(ValueError):
    """A signed root or a message's proof does not check out; the caller maps it to its fault code."""


@dataclass(frozen=True)
class VerifiedRoot:
    """What a valid SignedRoot vouches for: this root was signed by this certificate at this time."""

    root: bytes
    signer_cert: x509.Certificate
    signing_time: datetime


@dataclass(frozen=True)
class MessageSignature:
    """One message's share of a batch signature: the signed root and the path from its leaf to it."""

    signed_root_xml: bytes
    proof: Proof
    leaf: bytes


# --- signing -------------------------------------------------------------------------------


class RootSigner:
    """Signs roots with one key and certificate, writing the document xmlsec writes for the template.

    Everything but the root, the time and the two values derived from them is fixed per key,
    so it is built once here; a signature then costs two SHA-256 and one private-key operation.
    """

    def __init__(self, key: PrivateKey, cert: x509.Certificate) -> None:
        if cert.public_key() != key.public_key():
            raise ValueError("the certificate is not for this private key")
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise TypeError(f"unsupported signing key type {type(key).__name__}")
        self._key = key
        self._sign_method = (
            ECDSA_SHA256_URI if isinstance(key, ec.EllipticCurvePrivateKey) else RSA_SHA256_URI
        )
        cert_b64 = _base64_lines(cert.public_bytes(serialization.Encoding.DER))
        self._key_info = (
            f"<ds:KeyInfo>\n<ds:X509Data>\n<ds:X509Certificate>{cert_b64}\n</ds:X509Certificate>\n"
            "</ds:X509Data>\n</ds:KeyInfo>"
        )

    def sign(self, root: bytes, signing_time: datetime) -> bytes:
        """The serialised `xg:SignedRoot` document for `root`, signed now by this key."""
        if len(root) != DIGEST_SIZE:
            raise ValueError(f"a root is a {DIGEST_SIZE}-byte SHA-256 digest")
        content = _signed_root_content(
            base64.b64encode(root).decode("ascii"), format_signing_time(signing_time)
        )
        # Enveloped-signature then exclusive C14N of the document element (XML-DSig 1.1 §6.6.4,
        # Exc-C14N §3) is the element without its ds:Signature: our serialisation is already canonical.
        reference_digest = hashlib.sha256(f"{content}</xg:SignedRoot>".encode("ascii")).digest()
        digest_value = base64.b64encode(reference_digest).decode("ascii")
        signed_info = _signed_info(self._sign_method, digest_value, canonical=True).encode("ascii")
        signature_value = _base64_lines(_sign(self._key, signed_info))
        return (
            f'{content}<ds:Signature xmlns:ds="{DS_NS}">\n'
            f"{_signed_info(self._sign_method, digest_value, canonical=False)}\n"
            f"<ds:SignatureValue>{signature_value}</ds:SignatureValue>\n"
            f"{self._key_info}\n</ds:Signature></xg:SignedRoot>"
        ).encode("ascii")


def _signed_root_content(root_b64: str, signing_time: str) -> str:
    """The document up to its ds:Signature; every value is base64 or digits, so nothing needs escaping."""
    return (
        f'<xg:SignedRoot xmlns:xg="{XG_NS}" Id="{SIGNED_ROOT_ID}">'
        f"<xg:HashAlgorithm>{SHA256_URI}</xg:HashAlgorithm>"
        f"<xg:Root>{root_b64}</xg:Root>"
        f"<xg:SigningTime>{signing_time}</xg:SigningTime>"
    )


def _signed_info(sign_method: str, digest_value: str, *, canonical: bool) -> str:
    """ds:SignedInfo as xmlsec lays out the template, or its exclusive C14N form.

    The canonical form declares the `ds` prefix on SignedInfo itself and writes empty elements
    as start-end pairs (Exc-C14N §3, C14N 1.0 §2.3); the tests check it against xmlsec1.
    """

    def empty(tag: str, algorithm: str) -> str:
        end = f"></ds:{tag}>" if canonical else "/>"
        return f'<ds:{tag} Algorithm="{algorithm}"{end}'

    return "\n".join(
        (
            f'<ds:SignedInfo xmlns:ds="{DS_NS}">' if canonical else "<ds:SignedInfo>",
            empty("CanonicalizationMethod", EXC_C14N_URI),
            empty("SignatureMethod", sign_method),
            f'<ds:Reference URI="#{SIGNED_ROOT_ID}">',
            "<ds:Transforms>",
            empty("Transform", ENVELOPED_URI),
            empty("Transform", EXC_C14N_URI),
            "</ds:Transforms>",
            empty("DigestMethod", SHA256_URI),
            f"<ds:DigestValue>{digest_value}</ds:DigestValue>",
            "</ds:Reference>",
            "</ds:SignedInfo>",
        )
    )


def _sign(key: PrivateKey, data: bytes) -> bytes:
    """The SignatureValue octets: PKCS#1 v1.5 for RSA, r || s for ECDSA (RFC 6931 §2.3.6, RFC 4050 §3.3)."""
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    size = _ecdsa_half_length(key.curve)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def _ecdsa_half_length(curve: ec.EllipticCurve) -> int:
    return (curve.key_size + 7) // 8


def _base64_lines(data: bytes) -> str:
    text = base64.b64encode(data).decode("ascii")
    return "\n".join(text[i : i + BASE64_LINE_LENGTH] for i in range(0, len(text), BASE64_LINE_LENGTH))


@lru_cache(maxsize=8)
def _root_signer(key: PrivateKey, cert: x509.Certificate) -> RootSigner:
    return RootSigner(key, cert)


def sign_root(root: bytes, key: PrivateKey, cert: x509.Certificate, signing_time: datetime) -> bytes:
    """Sign one hash-tree root; the per-key part of the document is cached across calls."""
    return _root_signer(key, cert).sign(root, signing_time)


def format_signing_time(moment: datetime) -> str:
    """xs:dateTime in UTC with milliseconds, e.g. `2026-11-27T10:00:00.123Z`."""
    if moment.tzinfo is None:
        raise ValueError("signing time must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- verifying -----------------------------------------------------------------------------


# Roots already verified, by the document's digest and the trust set. Only successes are kept:
# a failure is re-checked each time rather than remembered wrongly.
_verified_roots: BoundedLru[tuple[bytes, tuple[x509.Certificate, ...]], VerifiedRoot] = BoundedLru(
    VERIFIED_CACHE_SIZE
)


def verify_root_signature(xml: bytes, trusted_cas: Sequence[x509.Certificate]) -> VerifiedRoot:
    """Check a SignedRoot: the XML-DSig against its embedded certificate, then that certificate's chain.

    The certificate must chain to one of `trusted_cas` and be valid at the signing time the
    document states. Raises :class:`SignatureVerificationError`. Revocation (OCSP) and whether the
    signer is the member it claims to be are the caller's checks.
    """
    cache_key = (hashlib.sha256(xml).digest(), tuple(trusted_cas))
    cached = _verified_roots.get(cache_key)
    if cached is not None:
        return cached
    verified = _verify_uncached(xml, cache_key[1])
    _verified_roots.put(cache_key, verified)
    return verified


def _verify_uncached(xml: bytes, trusted_cas: tuple[x509.Certificate, ...]) -> VerifiedRoot:
    try:
        element = parse_xml(xml, max_bytes=MAX_SIGNED_ROOT_BYTES)
    except (UnsafeXml, XmlSyntaxError) as exc:
        raise SignatureVerificationError(f"signed root is not acceptable XML: {exc}") from exc
    parsed = _parse_signed_root(element)
    signer_cert, public_key = _signer_key(parsed.cert_der)
    _check_xml_signature(element, parsed, public_key)
    _check_signer_certificate(signer_cert, trusted_cas, parsed.signing_time)
    return VerifiedRoot(parsed.root, signer_cert, parsed.signing_time)


@dataclass(frozen=True)
class _ParsedSignedRoot:
    root: bytes
    signing_time: datetime
    signature: etree._Element
    signed_info: etree._Element
    sign_method: str
    digest_value: bytes
    signature_value: bytes
    cert_der: bytes


def _parse_signed_root(element: etree._Element) -> _ParsedSignedRoot:
    """Read the document while insisting on exactly the shape we sign.

    A fixed shape is the defence against signature wrapping: the Reference can only point at
    the document element, and every value we return is read from inside it.
    """
    if any(True for _ in element.iter(etree.Comment, etree.PI)):
        raise SignatureVerificationError("signed root must not contain comments or processing instructions")
    if element.tag != f"{{{XG_NS}}}SignedRoot" or element.get("Id") != SIGNED_ROOT_ID:
        raise SignatureVerificationError(f"document element must be xg:SignedRoot with Id={SIGNED_ROOT_ID!r}")
    hash_algorithm, root_el, time_el, signature = _children(
        element,
        f"{{{XG_NS}}}HashAlgorithm",
        f"{{{XG_NS}}}Root",
        f"{{{XG_NS}}}SigningTime",
        f"{{{DS_NS}}}Signature",
    )
    if _text(hash_algorithm) != SHA256_URI:
        raise SignatureVerificationError("unsupported hash algorithm for the root")
    root = _base64(_text(root_el), "Root")
    if len(root) != DIGEST_SIZE:
        raise SignatureVerificationError("Root is not a SHA-256 digest")
    signing_time = parse_signing_time(_text(time_el))

    signed_info, value, key_info = _children(
        signature, f"{{{DS_NS}}}SignedInfo", f"{{{DS_NS}}}SignatureValue", f"{{{DS_NS}}}KeyInfo"
    )
    c14n, method, reference = _children(
        signed_info,
        f"{{{DS_NS}}}CanonicalizationMethod",
        f"{{{DS_NS}}}SignatureMethod",
        f"{{{DS_NS}}}Reference",
    )
    _expect_algorithm(c14n, EXC_C14N_URI)
    sign_method = method.get("Algorithm", "")
    if sign_method not in (ECDSA_SHA256_URI, RSA_SHA256_URI) or len(method):
        raise SignatureVerificationError(f"unsupported signature method {sign_method!r}")
    if reference.get("URI") != f"#{SIGNED_ROOT_ID}":
        raise SignatureVerificationError("the reference must point at the signed root")
    transforms, digest_method, digest_value = _children(
        reference, f"{{{DS_NS}}}Transforms", f"{{{DS_NS}}}DigestMethod", f"{{{DS_NS}}}DigestValue"
    )
    enveloped, exclusive = _children(transforms, f"{{{DS_NS}}}Transform", f"{{{DS_NS}}}Transform")
    _expect_algorithm(enveloped, ENVELOPED_URI)
    _expect_algorithm(exclusive, EXC_C14N_URI)
    _expect_algorithm(digest_method, SHA256_URI)
    (x509_data,) = _children(key_info, f"{{{DS_NS}}}X509Data")
    (cert_el,) = _children(x509_data, f"{{{DS_NS}}}X509Certificate")
    return _ParsedSignedRoot(
        root=root,
        signing_time=signing_time,
        signature=signature,
        signed_info=signed_info,
        sign_method=sign_method,
        digest_value=_base64(_leaf_text(digest_value), "DigestValue"),
        signature_value=_base64(_leaf_text(value), "SignatureValue"),
        cert_der=_base64(_leaf_text(cert_el), "X509Certificate"),
    )


def _children(element: etree._Element, *tags: str) -> list[etree._Element]:
    children = list(element)
    if [child.tag for child in children] != list(tags):
        raise SignatureVerificationError(
            f"{etree.QName(element).localname} must hold exactly "
            f"{', '.join(etree.QName(t).localname for t in tags)}"
        )
    return children


def _text(element: etree._Element) -> str:
    return (element.text or "").strip()


def _leaf_text(element: etree._Element) -> str:
    """The text of an element that holds only a value (XML-DSig's base64 content)."""
    if len(element):
        raise SignatureVerificationError(f"{etree.QName(element).localname} must hold only text")
    return _text(element)


def _expect_algorithm(element: etree._Element, algorithm: str) -> None:
    if element.get("Algorithm") != algorithm or len(element):
        raise SignatureVerificationError(
            f"{etree.QName(element).localname} must be exactly {algorithm}, not {element.get('Algorithm')!r}"
        )


def _base64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except binascii.Error as exc:
        raise SignatureVerificationError(f"{what} is not base64") from exc


def parse_signing_time(text: str) -> datetime:
    """The SigningTime value as an aware UTC datetime; only the `...Z` form is accepted."""
    if not _SIGNING_TIME.fullmatch(text):
        raise SignatureVerificationError(f"SigningTime {text!r} is not an xs:dateTime in UTC")
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise SignatureVerificationError(f"SigningTime {text!r} is not a valid time") from exc


_SignerKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


@lru_cache(maxsize=SIGNER_KEY_CACHE_SIZE)
def _signer_key(cert_der: bytes) -> tuple[x509.Certificate, _SignerKey]:
    """The embedded certificate and its public key, parsed once per certificate."""
    try:
        cert = x509.load_der_x509_certificate(cert_der)
        public_key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SignatureVerificationError("X509Certificate is not a usable certificate") from exc
    if not isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise SignatureVerificationError(f"unsupported signer key type {type(public_key).__name__}")
    return cert, public_key


def _check_xml_signature(element: etree._Element, parsed: _ParsedSignedRoot, public_key: _SignerKey) -> None:
    """XML-DSig core validation (XML-DSig 1.1 §3.2) of the one shape `_parse_signed_root` admits.

    The key is the embedded certificate's, pinned, so KeyInfo is never reinterpreted. Reference
    validation first: the enveloped-signature transform (§6.6.4) and exclusive C14N of the
    document element; then the SignatureValue over the exclusive C14N of SignedInfo. `element`
    loses its ds:Signature on the way (it is the caller's private parse).
    """
    signed_info = etree.tostring(parsed.signed_info, method="c14n", exclusive=True)
    _remove_keeping_tail(parsed.signature)
    digest = hashlib.sha256(etree.tostring(element, method="c14n", exclusive=True)).digest()
    if not hmac.compare_digest(digest, parsed.digest_value):
        raise SignatureVerificationError("XML signature does not verify: the reference digest differs")
    if not _signature_matches(public_key, parsed.sign_method, parsed.signature_value, signed_info):
        raise SignatureVerificationError("XML signature does not verify: bad SignatureValue")


def _remove_keeping_tail(node: etree._Element) -> None:
    """Drop `node` alone: lxml takes an element's tail text with it, the enveloped transform does not."""
    parent = node.getparent()
    assert parent is not None, "ds:Signature is inside the signed root"
    tail, previous = node.tail, node.getprevious()
    parent.remove(node)
    if tail:
        if previous is None:
            parent.text = (parent.text or "") + tail
        else:
            previous.tail = (previous.tail or "") + tail


def _signature_matches(public_key: _SignerKey, sign_method: str, value: bytes, data: bytes) -> bool:
    try:
        if sign_method == RSA_SHA256_URI and isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(value, data, padding.PKCS1v15(), hashes.SHA256())
            return True
        if sign_method == ECDSA_SHA256_URI and isinstance(public_key, ec.EllipticCurvePublicKey):
            size = _ecdsa_half_length(public_key.curve)
            if len(value) != 2 * size:  # r || s, each padded to the curve's size (RFC 4050 §3.3)
                return False
            r, s = int.from_bytes(value[:size], "big"), int.from_bytes(value[size:], "big")
            public_key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
            return True
    except InvalidSignature:
        return False
    return False  # the method does not fit the certificate's key


def _check_signer_certificate(
    signer_cert: x509.Certificate, trusted_cas: Sequence[x509.Certificate], at: datetime
) -> None:
    """Chains to a trusted CA at the signing time, and its key may sign (RFC 5280 §4.2.1.3)."""
    try:
        verify_chain(signer_cert, [], trusted_cas, at)
    except CertificateError as exc:
        raise SignatureVerificationError(f"signer certificate is not trusted: {exc}") from exc
    try:
        usage = signer_cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return  # RFC 5280 §4.2.1.3: without the extension the key may be used for anything
    if not (usage.digital_signature or usage.content_commitment):
        raise SignatureVerificationError("signer certificate's keyUsage allows no signatures")


# --- a message's signature -----------------------------------------------------------------


def verify_message_signature(
    leaf_digest: bytes, signature: MessageSignature, trusted_cas: Sequence[x509.Certificate]
) -> VerifiedRoot:
    """Check that `leaf_digest` is in the signed batch: its proof leads to a root the signer signed."""
    if not hmac.compare_digest(leaf_digest, signature.leaf):
        raise SignatureVerificationError("the signature is for a different message")
    try:
        root = root_from_proof(leaf_digest, signature.proof)
    except ValueError as exc:
        raise SignatureVerificationError(f"malformed proof: {exc}") from exc
    verified = verify_root_signature(signature.signed_root_xml, trusted_cas)
    if not hmac.compare_digest(root, verified.root):
        raise SignatureVerificationError("the proof does not lead to the signed root")
    return verified
