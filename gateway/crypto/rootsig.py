"""Sign and verify a hash-tree root as a standard XML-DSig document (DESIGN.md "One signer").

The batch signer signs one root per batch; this module turns that root into an
`xg:SignedRoot` document that `xmlsec1` verifies on any machine (DESIGN.md "Signature formats
are standard"; docs/transport.md has the exact layout and command line). It also defines
:class:`MessageSignature`, what each message carries: the signed root plus its path to it.

Sans-IO: bytes and values in, bytes and values out. The private-key operation happens inside
python-xmlsec, which releases the GIL, so a slow key can be driven from an executor thread.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Final

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree

from gateway.crypto.certs import CertificateError, verify_chain
from gateway.crypto.hashtree import DIGEST_SIZE, Proof, root_from_proof
from gateway.crypto.keys import PrivateKey
from gateway.xmlsafe import UnsafeXml, XmlSyntaxError, parse_xml

if TYPE_CHECKING:  # the stubs name the transform type but do not export it
    from xmlsec.constants import __Transform as XmlSecTransform

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
    """Signs roots with one key and certificate; holds the key in python-xmlsec form for reuse.

    Loading a key into xmlsec costs more than the signature itself, so the signer keeps it
    (STACK.md "XML signatures": reuse, don't rebuild per message).
    """

    def __init__(self, key: PrivateKey, cert: x509.Certificate) -> None:
        if cert.public_key() != key.public_key():
            raise ValueError("the certificate is not for this private key")
        self._sign_method = _signature_transform(key)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        self._key = xmlsec.Key.from_memory(pem, xmlsec.constants.KeyDataFormatPem)
        self._key.load_cert_from_memory(
            cert.public_bytes(serialization.Encoding.DER), xmlsec.constants.KeyDataFormatCertDer
        )

    def sign(self, root: bytes, signing_time: datetime) -> bytes:
        """The serialised `xg:SignedRoot` document for `root`, signed now by this key."""
        if len(root) != DIGEST_SIZE:
            raise ValueError(f"a root is a {DIGEST_SIZE}-byte SHA-256 digest")
        element = etree.Element(f"{{{XG_NS}}}SignedRoot", nsmap={"xg": XG_NS})
        element.set("Id", SIGNED_ROOT_ID)
        etree.SubElement(element, f"{{{XG_NS}}}HashAlgorithm").text = SHA256_URI
        etree.SubElement(element, f"{{{XG_NS}}}Root").text = base64.b64encode(root).decode("ascii")
        etree.SubElement(element, f"{{{XG_NS}}}SigningTime").text = format_signing_time(signing_time)
        signature = _signature_template(element, self._sign_method)
        context = xmlsec.SignatureContext()
        context.key = self._key
        context.register_id(element, "Id")
        context.sign(signature)
        return etree.tostring(element)


def _signature_transform(key: PrivateKey) -> XmlSecTransform:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return xmlsec.constants.TransformEcdsaSha256
    if isinstance(key, rsa.RSAPrivateKey):
        return xmlsec.constants.TransformRsaSha256
    raise TypeError(f"unsupported signing key type {type(key).__name__}")


def _signature_template(element: etree._Element, sign_method: XmlSecTransform) -> etree._Element:
    """An enveloped ds:Signature over `#root`: exclusive C14N, SHA-256, signer's certificate in KeyInfo."""
    signature = xmlsec.template.create(element, xmlsec.constants.TransformExclC14N, sign_method, ns="ds")
    element.append(signature)
    reference = xmlsec.template.add_reference(
        signature, xmlsec.constants.TransformSha256, uri=f"#{SIGNED_ROOT_ID}"
    )
    xmlsec.template.add_transform(reference, xmlsec.constants.TransformEnveloped)
    xmlsec.template.add_transform(reference, xmlsec.constants.TransformExclC14N)
    key_info = xmlsec.template.ensure_key_info(signature)
    xmlsec.template.x509_data_add_certificate(xmlsec.template.add_x509_data(key_info))
    return signature


@lru_cache(maxsize=8)
def _root_signer(key: PrivateKey, cert: x509.Certificate) -> RootSigner:
    return RootSigner(key, cert)


def sign_root(root: bytes, key: PrivateKey, cert: x509.Certificate, signing_time: datetime) -> bytes:
    """Sign one hash-tree root; the xmlsec form of (key, cert) is cached across calls."""
    return _root_signer(key, cert).sign(root, signing_time)


def format_signing_time(moment: datetime) -> str:
    """xs:dateTime in UTC with milliseconds, e.g. `2026-11-27T10:00:00.123Z`."""
    if moment.tzinfo is None:
        raise ValueError("signing time must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- verifying -----------------------------------------------------------------------------


class _VerifiedRoots:
    """A bounded LRU of roots already verified, keyed by the document's digest and the trust set.

    Only successes are kept: a failure is re-checked each time rather than remembered wrongly.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[bytes, tuple[x509.Certificate, ...]], VerifiedRoot] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[bytes, tuple[x509.Certificate, ...]]) -> VerifiedRoot | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: tuple[bytes, tuple[x509.Certificate, ...]], value: VerifiedRoot) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_verified_roots = _VerifiedRoots(VERIFIED_CACHE_SIZE)


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
    try:
        signer_cert = x509.load_der_x509_certificate(parsed.cert_der)
    except ValueError as exc:
        raise SignatureVerificationError("X509Certificate is not a certificate") from exc
    _check_xml_signature(element, parsed.signature, parsed.cert_der, parsed.sign_method)
    _check_signer_certificate(signer_cert, trusted_cas, parsed.signing_time)
    return VerifiedRoot(parsed.root, signer_cert, parsed.signing_time)


@dataclass(frozen=True)
class _ParsedSignedRoot:
    root: bytes
    signing_time: datetime
    signature: etree._Element
    sign_method: str
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

    signed_info, _value, key_info = _children(
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
    transforms, digest_method, _digest = _children(
        reference, f"{{{DS_NS}}}Transforms", f"{{{DS_NS}}}DigestMethod", f"{{{DS_NS}}}DigestValue"
    )
    enveloped, exclusive = _children(transforms, f"{{{DS_NS}}}Transform", f"{{{DS_NS}}}Transform")
    _expect_algorithm(enveloped, ENVELOPED_URI)
    _expect_algorithm(exclusive, EXC_C14N_URI)
    _expect_algorithm(digest_method, SHA256_URI)
    (x509_data,) = _children(key_info, f"{{{DS_NS}}}X509Data")
    (cert_el,) = _children(x509_data, f"{{{DS_NS}}}X509Certificate")
    cert_der = _base64(_text(cert_el), "X509Certificate")
    return _ParsedSignedRoot(root, signing_time, signature, sign_method, cert_der)


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


def _check_xml_signature(
    element: etree._Element, signature: etree._Element, cert_der: bytes, sign_method: str
) -> None:
    """python-xmlsec verifies with the embedded certificate's key, pinned so KeyInfo is not reinterpreted."""
    context = xmlsec.SignatureContext()
    context.key = _public_key(cert_der)
    for transform in (
        xmlsec.constants.TransformEnveloped,
        xmlsec.constants.TransformExclC14N,
        xmlsec.constants.TransformSha256,
    ):
        context.enable_reference_transform(transform)
    for transform in (
        xmlsec.constants.TransformExclC14N,
        xmlsec.constants.TransformSha256,
        _SIGN_METHODS[sign_method],
    ):
        context.enable_signature_transform(transform)
    try:
        context.register_id(element, "Id")
        context.verify(signature)
    except xmlsec.Error as exc:
        raise SignatureVerificationError(f"XML signature does not verify: {exc}") from exc


_SIGN_METHODS: Final = {
    ECDSA_SHA256_URI: xmlsec.constants.TransformEcdsaSha256,
    RSA_SHA256_URI: xmlsec.constants.TransformRsaSha256,
}


@lru_cache(maxsize=256)
def _public_key(cert_der: bytes) -> xmlsec.Key:
    """The signer's public key in xmlsec form, one per certificate (signers are few, messages many)."""
    try:
        return xmlsec.Key.from_memory(cert_der, xmlsec.constants.KeyDataFormatCertDer)
    except xmlsec.Error as exc:
        raise SignatureVerificationError("X509Certificate is not a usable certificate") from exc


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
