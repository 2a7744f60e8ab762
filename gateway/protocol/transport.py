"""The message one gateway sends another over mutual TLS, and back (DESIGN.md "A request's path" 4-8).

It carries the client's (or the service's) message exactly as received, the REST request line
or status and headers when there are any, and the signature over all of it, so the receiving
gateway can forward the message untouched and prove later who sent what. docs/transport.md is
the specification; this module and that page must agree.

Framing is MIME multipart (RFC 2046 §5.1), written and read by hand in one fixed layout so the
reader can be strict and fast (the `email` package is slow, and would open a SOAP message's own
multipart instead of keeping its bytes):

    Content-Type: multipart/mixed; boundary=xgate-<32 hex>; xgate-version=1

    part `rest-request` or `rest-response`: canonical JSON            (REST only)
    part `message`: the message bytes, with the message's content type
    part `signature`: the `xg:MessageSignature` XML

Each message's leaf digest (what the batch signer signs) is SHA-256 over a text manifest of the
signed parts; :func:`manifest` documents it.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from lxml import etree

from gateway.crypto.hashtree import DIGEST_SIZE, ProofStep, Side
from gateway.crypto.rootsig import XG_NS, MessageSignature
from gateway.faults import (
    CLIENT_PROXY_INVALID_CONTENT_TYPE,
    CLIENT_PROXY_INVALID_SIGNATURE,
    CLIENT_PROXY_RESPONSE_TOO_LARGE,
    INVALID_CONTENT_TYPE,
    MISSING_SIGNATURE,
    REQUEST_TOO_LARGE,
    SERVER_PROXY_INVALID_SIGNATURE,
    XRoadFault,
)
from gateway.protocol.mime import parse_content_type
from gateway.xmlsafe import UnsafeXml, XmlSyntaxError, parse_xml

TRANSPORT_MEDIA_TYPE: Final = "multipart/mixed"
TRANSPORT_VERSION: Final = "1"
VERSION_PARAMETER: Final = "xgate-version"

MANIFEST_FIRST_LINE: Final = b"xgate-manifest/1\n"
"""Versions the manifest and keeps its digest apart from any other SHA-256 over our data."""

REST_BODY_CONTENT_TYPE: Final = "application/octet-stream"
"""A REST body's real Content-Type travels among its headers; the part itself is opaque bytes."""
REST_HEAD_CONTENT_TYPE: Final = "application/json"
SIGNATURE_CONTENT_TYPE: Final = "application/xml"

MAX_SIGNATURE_PART_BYTES: Final = 128 * 1024
"""A SignedRoot (at most rootsig.MAX_SIGNED_ROOT_BYTES) plus a manifest and proof of a few hundred bytes."""

MAX_PARTS: Final = 3
"""A REST head, the message and the signature: a transport message never has more."""

MAX_PROOF_STEPS: Final = 32
"""A proof of n steps serves up to 2**n messages; 2**32 in one signing window is no real batch."""

_BOUNDARY_PREFIX: Final = "xgate-"
_CRLF: Final = b"\r\n"
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 §5.6.2
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=?]{1,70}")  # RFC 2046 §5.1.1 bchars, no trailing space
# RFC 9112 §3.2: a request target has no whitespace or controls; the path stops at '?', neither has '#'.
_PATH = re.compile(r"/[\x21\x22\x24-\x3e\x40-\x7e]*")
_QUERY = re.compile(r"[\x21\x22\x24-\x7e]*")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")
# RFC 9110 §5.5: no CR, LF or NUL in a field value; lone surrogates are not text and cannot be UTF-8.
_FIELD_VALUE_FORBIDDEN = re.compile("[\x00\r\n\ud800-\udfff]")


class PartName(enum.StrEnum):
    """The parts of a transport message, in the order they appear."""

    REST_REQUEST = "rest-request"
    REST_RESPONSE = "rest-response"
    MESSAGE = "message"
    SIGNATURE = "signature"


class Direction(enum.Enum):
    """Which way a transport message goes; it decides the fault codes a broken one produces."""

    REQUEST = "request"  # consumer gateway -> provider gateway
    RESPONSE = "response"  # provider gateway -> consumer gateway


@dataclass(frozen=True)
class Part:
    """One signed part: its name, its content type and its exact bytes."""

    name: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class SoapPayload:
    """A SOAP request or response exactly as received, attachments and all (PROTOCOL.md "SOAP")."""

    content_type: str
    body: bytes


Headers = tuple[tuple[str, str], ...]
"""HTTP header fields in the order received, names as received, duplicates kept."""


@dataclass(frozen=True)
class RestRequestPayload:
    """A REST r1 request as the consumer gateway received it (PROTOCOL.md "REST protocol r1")."""

    method: str
    path: str
    query: str
    headers: Headers
    body: bytes


@dataclass(frozen=True)
class RestResponsePayload:
    """A REST service's answer as the provider gateway received it."""

    status: int
    headers: Headers
    body: bytes


Payload = SoapPayload | RestRequestPayload | RestResponsePayload


@dataclass(frozen=True)
class TransportMessage:
    """What travels between gateways: the payload and the batch signature over its manifest.

    From :func:`decode_transport`, `signature.leaf` is the manifest digest of the parts as
    received, so `verify_message_signature(signature.leaf, signature, cas)` checks this message.
    """

    payload: Payload
    signature: MessageSignature


@dataclass(frozen=True)
class _FaultCodes:
    malformed: str
    too_large: str
    missing_signature: str
    invalid_signature: str


_FAULTS: Final = {
    # The provider gateway reads the consumer gateway's request (PROTOCOL.md "Fault codes").
    Direction.REQUEST: _FaultCodes(
        INVALID_CONTENT_TYPE, REQUEST_TOO_LARGE, MISSING_SIGNATURE, SERVER_PROXY_INVALID_SIGNATURE
    ),
    # The consumer gateway reads the provider gateway's response: its own Server.ClientProxy.* codes.
    Direction.RESPONSE: _FaultCodes(
        CLIENT_PROXY_INVALID_CONTENT_TYPE,
        CLIENT_PROXY_RESPONSE_TOO_LARGE,
        CLIENT_PROXY_INVALID_SIGNATURE,
        CLIENT_PROXY_INVALID_SIGNATURE,
    ),
}


# --- the manifest and the leaf digest ------------------------------------------------------


def signed_parts(payload: Payload) -> tuple[Part, ...]:
    """The parts the signature covers, in transport order: the REST head (if any), then the message."""
    if isinstance(payload, SoapPayload):
        return (Part(PartName.MESSAGE, payload.content_type, payload.body),)
    if isinstance(payload, RestRequestPayload):
        head = Part(PartName.REST_REQUEST, REST_HEAD_CONTENT_TYPE, rest_request_head(payload))
    else:
        head = Part(PartName.REST_RESPONSE, REST_HEAD_CONTENT_TYPE, rest_response_head(payload))
    return head, Part(PartName.MESSAGE, REST_BODY_CONTENT_TYPE, payload.body)


def manifest(parts: Sequence[Part]) -> bytes:
    """The text whose SHA-256 is the message's leaf digest (docs/transport.md "Manifest").

    `xgate-manifest/1` LF, then per part `NAME SP SHA256-HEX SP CONTENT-TYPE` LF: names and
    digests have no spaces, so the content type, last, may. Rebuildable with printf and sha256sum.
    """
    return _manifest_text(_entries(parts))


def manifest_digest(parts: Sequence[Part]) -> bytes:
    """The leaf digest the batch signer signs for this message."""
    return hashlib.sha256(manifest(parts)).digest()


@dataclass(frozen=True)
class _Entry:
    """A manifest line: each part is hashed once and the line reused for the XML listing."""

    name: str
    digest_hex: str
    content_type: str


def _entries(parts: Sequence[Part]) -> list[_Entry]:
    for part in parts:
        _check_content_type(part.content_type)
    return [_Entry(part.name, hashlib.sha256(part.data).hexdigest(), part.content_type) for part in parts]


def _manifest_text(entries: Sequence[_Entry]) -> bytes:
    lines = [MANIFEST_FIRST_LINE]
    lines += (f"{e.name} {e.digest_hex} {e.content_type}\n".encode("ascii") for e in entries)
    return b"".join(lines)


def _check_content_type(content_type: str) -> None:
    # Printable ASCII keeps the manifest one line per part and the MIME header well-formed;
    # no outer whitespace, because HTTP parsers strip it and the bytes must survive a round trip.
    if (
        not _PRINTABLE_ASCII.fullmatch(content_type)
        or content_type != content_type.strip()
        or not content_type
    ):
        raise ValueError(f"content type {content_type!r} must be non-empty printable ASCII, unpadded")


# --- the REST head: canonical JSON ---------------------------------------------------------


def rest_request_head(request: RestRequestPayload) -> bytes:
    """The `rest-request` part, in the project's canonical JSON (docs/transport.md "REST head")."""
    return _canonical_json(
        {
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "headers": [list(field) for field in request.headers],
        }
    )


def rest_response_head(response: RestResponsePayload) -> bytes:
    """The `rest-response` part, in the same canonical form."""
    return _canonical_json({"status": response.status, "headers": [list(f) for f in response.headers]})


def _canonical_json(value: dict[str, Any]) -> bytes:
    # The same canonical form as the global configuration (docs/globalconf.md): sorted keys,
    # no whitespace, UTF-8. The receiver insists on it, so the signed bytes rebuild exactly.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --- encoding ------------------------------------------------------------------------------


def encode_transport(message: TransportMessage) -> tuple[str, bytes]:
    """The HTTP Content-Type and body carrying `message` to the other gateway."""
    parts = signed_parts(message.payload)
    entries = _entries(parts)
    if hashlib.sha256(_manifest_text(entries)).digest() != message.signature.leaf:
        raise ValueError("the signature was made for a different message")
    signature_xml = _signature_document(entries, message.signature)
    signature = Part(PartName.SIGNATURE, SIGNATURE_CONTENT_TYPE, signature_xml)
    all_parts = (*parts, signature)
    boundary = _fresh_boundary(all_parts)
    dash_boundary = b"--" + boundary.encode("ascii")
    chunks: list[bytes] = []
    for part in all_parts:
        chunks += (
            dash_boundary,
            b"\r\nContent-Type: ",
            part.content_type.encode("ascii"),
            b"\r\nContent-ID: <",
            part.name.encode("ascii"),
            b">\r\nContent-Transfer-Encoding: binary\r\n\r\n",
            part.data,
            _CRLF,
        )
    chunks += (dash_boundary, b"--\r\n")
    content_type = f"{TRANSPORT_MEDIA_TYPE}; boundary={boundary}; {VERSION_PARAMETER}={TRANSPORT_VERSION}"
    return content_type, b"".join(chunks)


def _fresh_boundary(parts: Sequence[Part]) -> str:
    """A random boundary whose delimiter (CRLF--boundary) occurs in no part (RFC 2046 §5.1.1)."""
    while True:
        boundary = _BOUNDARY_PREFIX + secrets.token_hex(16)
        delimiter = b"\r\n--" + boundary.encode("ascii")
        if not any(delimiter in part.data for part in parts):
            return boundary


def _signature_document(entries: Sequence[_Entry], signature: MessageSignature) -> bytes:
    """The `xg:MessageSignature` XML: the manifest's entries, the proof, and the SignedRoot as is.

    Written by hand (values are hex, base64 and printable ASCII) so the SignedRoot's bytes are
    embedded untouched; `xmlsec1` verifies this document directly (docs/transport.md).
    """
    chunks = [f'<xg:MessageSignature xmlns:xg="{XG_NS}"><xg:Manifest>'.encode("ascii")]
    for entry in entries:
        chunks.append(
            f'<xg:Part name="{entry.name}" contentType="{_xml_attribute(entry.content_type)}" '
            f'digest="{entry.digest_hex}"/>'.encode("ascii")
        )
    chunks.append(b"</xg:Manifest><xg:Proof>")
    for side, sibling in signature.proof:
        chunks.append(
            f'<xg:Step side="{side}">{base64.b64encode(sibling).decode("ascii")}</xg:Step>'.encode()
        )
    chunks += (b"</xg:Proof>", signature.signed_root_xml, b"</xg:MessageSignature>")
    return b"".join(chunks)


def _xml_attribute(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


# --- decoding ------------------------------------------------------------------------------


def decode_transport(
    content_type: str, body: bytes, *, max_bytes: int, direction: Direction = Direction.REQUEST
) -> TransportMessage:
    """Read a transport message strictly; anything off raises :class:`XRoadFault`.

    Checks framing, sizes, the REST head and that the signature document's manifest matches
    the parts received. It does not check the signature itself: that needs the trusted CAs
    (:func:`gateway.crypto.rootsig.verify_message_signature`).
    """
    faults = _FAULTS[direction]
    if len(body) > max_bytes:
        raise XRoadFault(faults.too_large, f"transport message of {len(body)} bytes exceeds {max_bytes}")
    parts = _split_parts(body, _transport_boundary(content_type, faults), faults)
    names = [part.name for part in parts]
    if not names or names[-1] != PartName.SIGNATURE:
        raise XRoadFault(faults.missing_signature, "transport message has no signature part")
    head_name = PartName.REST_REQUEST if direction is Direction.REQUEST else PartName.REST_RESPONSE
    if names not in (
        [PartName.MESSAGE, PartName.SIGNATURE],
        [head_name, PartName.MESSAGE, PartName.SIGNATURE],
    ):
        raise XRoadFault(faults.malformed, f"unexpected parts {names} in a {direction.value}")
    *signed, signature_part = parts
    payload = _payload(signed, faults)
    if signed_parts(payload) != tuple(signed):
        raise XRoadFault(faults.malformed, "REST head is not in canonical form or a part has the wrong type")
    if signature_part.content_type != SIGNATURE_CONTENT_TYPE:
        raise XRoadFault(faults.malformed, f"signature part must be {SIGNATURE_CONTENT_TYPE}")
    signature = _read_signature_document(signature_part.data, signed, faults)
    return TransportMessage(payload, signature)


def _transport_boundary(content_type: str, faults: _FaultCodes) -> str:
    try:
        parsed = parse_content_type(content_type)
    except XRoadFault as exc:  # mime.py speaks for clients' messages; this side has its own code
        raise XRoadFault(faults.malformed, exc.message) from exc
    if parsed.media_type != TRANSPORT_MEDIA_TYPE:
        raise XRoadFault(faults.malformed, f"expected {TRANSPORT_MEDIA_TYPE}, got {parsed.media_type}")
    version = parsed.param(VERSION_PARAMETER)
    if version != TRANSPORT_VERSION:
        raise XRoadFault(faults.malformed, f"unsupported transport version {version!r}")
    boundary = parsed.param("boundary") or ""
    if not _BOUNDARY.fullmatch(boundary):
        raise XRoadFault(faults.malformed, "missing or invalid multipart boundary")
    return boundary


def _split_parts(body: bytes, boundary: str, faults: _FaultCodes) -> list[Part]:
    """The body parts (RFC 2046 §5.1.1) in exactly the layout :func:`encode_transport` writes.

    Not `mime.split_multipart`: that one is lenient for clients' messages (bare LF, preamble,
    padding); between gateways there is one correct form and anything else is refused.
    """
    dash_boundary = b"--" + boundary.encode("ascii")
    delimiter = _CRLF + dash_boundary
    if not body.startswith(dash_boundary + _CRLF):
        raise XRoadFault(faults.malformed, "transport body must start with its boundary")
    parts: list[Part] = []
    start = len(dash_boundary) + 2
    while len(parts) < MAX_PARTS:
        end = body.find(delimiter, start)
        if end < 0:
            raise XRoadFault(faults.malformed, "transport body has no close delimiter")
        parts.append(_read_part(body, start, end, faults))
        after = end + len(delimiter)
        if body.startswith(_CRLF, after):
            start = after + 2
        elif len(body) == after + 4 and body.endswith(b"--\r\n"):  # the close delimiter ends the body
            return parts
        else:
            raise XRoadFault(faults.malformed, "malformed delimiter line in the transport body")
    raise XRoadFault(faults.malformed, f"more than {MAX_PARTS} parts in the transport body")


def _read_part(body: bytes, start: int, end: int, faults: _FaultCodes) -> Part:
    """One part, whose header block must be exactly the three lines the encoder writes."""
    head = _PART_HEAD.match(body, start, end)
    if head is None:
        raise XRoadFault(
            faults.malformed, "part headers must be Content-Type, Content-ID, Content-Transfer-Encoding"
        )
    return Part(head.group(2).decode("ascii"), head.group(1).decode("ascii"), body[head.end() : end])


_PART_HEAD: Final = re.compile(
    rb"Content-Type: ([\x20-\x7e]+)\r\nContent-ID: <([a-z-]+)>\r\nContent-Transfer-Encoding: binary\r\n\r\n"
)


def _payload(signed: list[Part], faults: _FaultCodes) -> Payload:
    if len(signed) == 1:
        (message,) = signed
        try:
            _check_content_type(message.content_type)
        except ValueError as exc:
            raise XRoadFault(faults.malformed, str(exc)) from exc
        return SoapPayload(message.content_type, message.data)
    head, message = signed
    fields = _json_object(head.data, faults)
    headers = _headers(fields.get("headers"), faults)
    if head.name == PartName.REST_REQUEST:
        if set(fields) != {"method", "path", "query", "headers"}:
            raise XRoadFault(faults.malformed, "rest-request must hold method, path, query and headers")
        method, path, query = fields["method"], fields["path"], fields["query"]
        if not (isinstance(method, str) and _TOKEN.fullmatch(method)):
            raise XRoadFault(faults.malformed, "rest-request method is not an HTTP token")
        if not (isinstance(path, str) and _PATH.fullmatch(path)):
            raise XRoadFault(faults.malformed, "rest-request path must be an absolute path")
        if not (isinstance(query, str) and _QUERY.fullmatch(query)):
            raise XRoadFault(faults.malformed, "rest-request query is malformed")
        return RestRequestPayload(method, path, query, headers, message.data)
    if set(fields) != {"status", "headers"}:
        raise XRoadFault(faults.malformed, "rest-response must hold status and headers")
    status = fields["status"]
    if type(status) is not int or not 100 <= status <= 599:
        raise XRoadFault(faults.malformed, "rest-response status must be an HTTP status code")
    return RestResponsePayload(status, headers, message.data)


def _json_object(data: bytes, faults: _FaultCodes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as exc:  # includes UnicodeDecodeError
        raise XRoadFault(faults.malformed, f"REST head is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise XRoadFault(faults.malformed, "REST head must be a JSON object")
    return value


def _headers(value: object, faults: _FaultCodes) -> Headers:
    if not isinstance(value, list):
        raise XRoadFault(faults.malformed, "REST head headers must be a list of [name, value] pairs")
    headers: list[tuple[str, str]] = []
    for field in value:
        if not (isinstance(field, list) and len(field) == 2 and all(isinstance(x, str) for x in field)):
            raise XRoadFault(faults.malformed, "REST head headers must be a list of [name, value] pairs")
        name, field_value = field
        # Headers are replayed to the service: a CR or LF here would be header injection.
        if not _TOKEN.fullmatch(name) or _FIELD_VALUE_FORBIDDEN.search(field_value):
            raise XRoadFault(faults.malformed, f"invalid header field {name[:40]!r}")
        headers.append((name, field_value))
    return tuple(headers)


def _read_signature_document(data: bytes, signed: Sequence[Part], faults: _FaultCodes) -> MessageSignature:
    """Parse `xg:MessageSignature` and check its manifest lists exactly the parts received."""
    try:
        document = parse_xml(data, max_bytes=MAX_SIGNATURE_PART_BYTES)
    except (UnsafeXml, XmlSyntaxError) as exc:
        raise XRoadFault(faults.invalid_signature, f"signature part is not acceptable XML: {exc}") from exc
    children = list(document)
    expected = [f"{{{XG_NS}}}Manifest", f"{{{XG_NS}}}Proof", f"{{{XG_NS}}}SignedRoot"]
    if document.tag != f"{{{XG_NS}}}MessageSignature" or [child.tag for child in children] != expected:
        raise XRoadFault(
            faults.invalid_signature,
            "signature part must be xg:MessageSignature(Manifest, Proof, SignedRoot)",
        )
    manifest_el, proof_el, signed_root_el = children
    entries = _entries(signed)
    listed = [(entry.tag, dict(entry.attrib), len(entry)) for entry in manifest_el]
    actual = [
        (f"{{{XG_NS}}}Part", {"name": e.name, "contentType": e.content_type, "digest": e.digest_hex}, 0)
        for e in entries
    ]
    if listed != actual:
        raise XRoadFault(faults.invalid_signature, "the signed manifest does not match the parts received")
    proof = _proof(proof_el, faults)
    signed_root_xml = etree.tostring(signed_root_el, with_tail=False)
    return MessageSignature(signed_root_xml, proof, hashlib.sha256(_manifest_text(entries)).digest())


def _proof(element: etree._Element, faults: _FaultCodes) -> tuple[ProofStep, ...]:
    if len(element) > MAX_PROOF_STEPS:
        raise XRoadFault(faults.invalid_signature, f"proof longer than {MAX_PROOF_STEPS} steps")
    steps: list[ProofStep] = []
    for step in element:
        side = step.get("side")
        if step.tag != f"{{{XG_NS}}}Step" or side not in (Side.LEFT, Side.RIGHT) or len(step):
            raise XRoadFault(faults.invalid_signature, "proof steps must be xg:Step side=left|right")
        try:
            sibling = base64.b64decode((step.text or "").strip(), validate=True)
        except binascii.Error as exc:
            raise XRoadFault(faults.invalid_signature, "proof step is not base64") from exc
        if len(sibling) != DIGEST_SIZE:
            raise XRoadFault(faults.invalid_signature, "proof step is not a SHA-256 digest")
        steps.append(ProofStep(Side(side), sibling))
    return tuple(steps)
