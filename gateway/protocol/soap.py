"""X-Road SOAP message protocol 4.0: parse, check and build messages, sans-IO.

The one object here is :class:`SoapMessage`: :func:`parse_request` and
:func:`parse_response` turn the bytes and Content-Type a peer sent into one, or raise
:class:`~gateway.faults.XRoadFault` with the code PROTOCOL.md "Fault codes" gives
for the first rule broken. Nothing else escapes for any input, however malformed.

The builders write what the gateway itself says: faults (:func:`build_fault`), requests
and responses of its own services, and the `requestHash` the provider's gateway puts into
a response (:func:`set_request_hash`). The message's bytes as received (`raw`,
`soap_bytes`) are kept, since they, not a re-serialisation, are what is hashed, signed and
logged.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final, NamedTuple, TypeVar, cast

from lxml import etree

from gateway.faults import (
    DUPLICATE_HEADER_FIELD,
    INCONSISTENT_HEADERS,
    INCONSISTENT_RESPONSE,
    INVALID_BODY,
    INVALID_PROTOCOL_VERSION,
    INVALID_SOAP,
    MISSING_BODY,
    MISSING_HEADER,
    MISSING_HEADER_FIELD,
    XRoadFault,
    fault_detail_id,
)
from gateway.ids import ID_NS, ClientId, SecurityServerId, ServiceId
from gateway.lru import BoundedLru
from gateway.protocol.mime import Attachment, unpack
from gateway.protocol.schema import REPR_NS, SOAP_ENV_NS, XROAD_NS, validate_header
from gateway.xmlsafe import (
    MAX_XML_BYTES,
    SAFE_PARSER_SETTINGS,
    UnsafeXml,
    XmlSyntaxError,
    declares_encoding,
    has_dtd,
    normalise_encoding,
    parse_xml,
)

SOAP12_ENV_NS: Final = "http://www.w3.org/2003/05/soap-envelope"
PROTOCOL_VERSION: Final = "4.0"
# The digest X-Road gateways put in `requestHash` (XML Encryption §5.7.3 identifier).
SHA512_ALGORITHM_URI: Final = "http://www.w3.org/2001/04/xmlenc#sha512"
# The suffix of a response's body wrapper (PROTOCOL.md "SOAP message protocol 4.0").
RESPONSE_SUFFIX: Final = "Response"

NSMAP: Final = {"SOAP-ENV": SOAP_ENV_NS, "xrd": XROAD_NS, "id": ID_NS, "repr": REPR_NS}

_ENVELOPE: Final = f"{{{SOAP_ENV_NS}}}Envelope"
_HEADER: Final = f"{{{SOAP_ENV_NS}}}Header"
_BODY: Final = f"{{{SOAP_ENV_NS}}}Body"
_FAULT: Final = f"{{{SOAP_ENV_NS}}}Fault"
_X = f"{{{XROAD_NS}}}"
_R = f"{{{REPR_NS}}}"
_REQUEST_HASH: Final = f"{_X}requestHash"
_RESPONSE_START: Final = (
    f"<?xml version='1.0' encoding='UTF-8'?>\n<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"{SOAP_ENV_NS}\">".encode()
)

# The header fields of PROTOCOL.md's table, by their element names in xroad.xsd,
# xroad-securityserver.xsd and representation.xsd.
_FIELDS: Final = {
    f"{_X}client": "client",
    f"{_X}service": "service",
    f"{_X}id": "id",
    f"{_X}userId": "userId",
    f"{_X}issue": "issue",
    f"{_X}protocolVersion": "protocolVersion",
    _REQUEST_HASH: "requestHash",
    f"{_X}securityServer": "securityServer",
    f"{_R}representedParty": "representedParty",
}
_MANDATORY: Final = ("client", "service", "id", "protocolVersion")

# A gateway serves a bounded set of clients and services, so their parsed identifiers are
# kept; past this many distinct ones the least recently used go, so variety costs time, not memory.
MAX_CACHED_IDENTIFIERS: Final = 4096
_OBJECT_TYPE: Final = f"{{{ID_NS}}}objectType"
_IdT = TypeVar("_IdT", ClientId, ServiceId, SecurityServerId)
_identifier_cache: BoundedLru[tuple[object, ...], object] = BoundedLru(MAX_CACHED_IDENTIFIERS)

# XML 1.0 §2.2: characters a document may hold; anything else in a fault text is replaced.
_NOT_XML_CHAR_RE: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class RepresentedParty(NamedTuple):
    """`repr:representedParty` (representation.xsd): whom the client acts for."""

    party_class: str | None
    party_code: str


class RequestHash(NamedTuple):
    """`xrd:requestHash`: the provider gateway's digest of the request, and its algorithm URI."""

    value: str
    algorithm: str | None


@dataclass(frozen=True, slots=True)
class SoapMessage:
    """One X-Road SOAP message, checked against protocol 4.0, with its bytes as received.

    `envelope` is the parsed tree, for reading: the bytes fields, not the tree, are the
    message (they are what is hashed, signed and logged). `attachments` are the other
    MIME parts, in order, bytes untouched; `xop` says the SOAP part is an XOP package.
    """

    client: ClientId
    service: ServiceId
    id: str
    protocol_version: str
    user_id: str | None
    issue: str | None
    represented_party: RepresentedParty | None
    security_server: SecurityServerId | None
    request_hash: RequestHash | None
    body_name: str
    body_namespace: str | None
    envelope: etree._Element = field(repr=False)
    soap_bytes: bytes = field(repr=False)
    raw: bytes = field(repr=False)
    content_type: str
    attachments: tuple[Attachment, ...] = ()
    xop: bool = False

    @property
    def body(self) -> etree._Element:
        """The Body's one child: the operation's wrapper element."""
        body = self.envelope.find(_BODY)
        assert body is not None  # parsing guaranteed it
        return next(body.iterchildren(etree.Element))


@dataclass(frozen=True, slots=True)
class SoapFault:
    """A SOAP 1.1 Fault (SOAP 1.1 §4.4); `detail` is X-Road's `detail/faultDetail` id, if any."""

    code: str
    string: str
    actor: str | None = None
    detail: str | None = None


@dataclass
class ServiceFault(XRoadFault):
    """A response whose Body is a SOAP Fault: the service or a gateway further on refused.

    Raised by :func:`parse_response` so that a caller passes the fault on rather than
    judging the response's headers; `code`, `message` and `detail` are the fault's own.
    """

    fault: SoapFault | None = None


# --- parsing ---------------------------------------------------------------------------


def parse_request(body: bytes, content_type: str | None) -> SoapMessage:
    """Parse and check a client's request (PROTOCOL.md "SOAP message protocol 4.0")."""
    return _parse(body, content_type, response=False)


def parse_response(body: bytes, content_type: str | None) -> SoapMessage:
    """Parse and check a response; the Body wrapper must be `{serviceCode}Response`.

    A Body holding a SOAP Fault raises :class:`ServiceFault` before any header is looked
    at, since fault responses need not carry X-Road headers.
    """
    return _parse(body, content_type, response=True)


def _parse(raw: bytes, content_type: str | None, *, response: bool) -> SoapMessage:
    package = unpack(raw, content_type)
    envelope = _parse_envelope(package.soap, package.charset)
    header, body = _envelope_parts(envelope)
    if response and body is not None:
        fault = _fault_of(body)
        if fault is not None:
            raise ServiceFault(fault.code, fault.string, fault.detail or fault_detail_id(), fault)
    if header is None:
        raise XRoadFault(MISSING_HEADER, "the SOAP message has no Header")
    fields, (client, service, message_id) = _checked_header(header)
    security_server = fields.get("securityServer")
    if body is None:
        raise XRoadFault(MISSING_BODY, "the SOAP message has no Body")
    body_namespace, body_name = _split_tag(_body_element(body).tag)
    if not body_name.startswith(service.service_code):
        # PROTOCOL.md: the Body's element is named after serviceCode (responses: + "Response");
        # X-Road checks only that it starts with it (`testQueryRequest` for `testQuery`).
        raise XRoadFault(
            INCONSISTENT_HEADERS,
            f"body element {body_name[:80]!r} does not start with the service code {service.service_code!r}",
        )
    return SoapMessage(
        client=client,
        service=service,
        id=message_id,
        protocol_version=PROTOCOL_VERSION,  # _checked_header insists on it
        user_id=_optional_text(fields.get("userId")),
        issue=_optional_text(fields.get("issue")),
        represented_party=_represented_party(fields.get("representedParty")),
        security_server=None if security_server is None else _identifier(SecurityServerId, security_server),
        request_hash=_request_hash(fields.get("requestHash")),
        body_name=body_name,
        body_namespace=body_namespace,
        envelope=envelope,
        soap_bytes=package.soap,
        raw=raw,
        content_type=content_type or "",
        attachments=package.attachments,
        xop=package.xop,
    )


class HeaderIds(NamedTuple):
    """What a message's X-Road header says it is: its client, service and id."""

    client: ClientId
    service: ServiceId
    id: str


HEADER_CHUNK: Final = 1024
"""Bytes fed to the header parser at a time: a header ends within a chunk or two, so a large
Body is never parsed."""
WHOLE_PARSE_BYTES: Final = 4096
"""Up to this size a message is parsed whole: the pull parser's own cost is then more than
the Body's parse it would save (measured: equal at ~2 KB)."""

_header_parsers = threading.local()


def parse_header_ids(body: bytes, content_type: str | None) -> HeaderIds:
    """The client, service and id of an X-Road SOAP message, reading no further than its Header.

    Log verification compares these with every record's (gateway.messagelog.evidence): a full
    :func:`parse_request` per record builds the whole tree, Body included, only to read three
    header fields. This checks what the identifiers depend on exactly as `parse_request` does
    (the same safe parser settings, a SOAP 1.1 Envelope whose first element is the Header, the
    header fields and the X-Road header schema, a non-empty id, protocol version 4.0) and
    returns the same identifiers; a message without such a Header gets `parse_request`'s own
    fault. What it does not look at is everything after the Header: the Body's rules and the
    rest of the document's well-formedness, which say nothing about whose message it is.
    """
    package = unpack(body, content_type)
    header = _leading_header(package.soap, package.charset)
    if header is None:  # a small message, or not the plain case: parsed whole, as parse_request does
        header, _ = _envelope_parts(_parse_envelope(package.soap, package.charset))
        if header is None:
            raise XRoadFault(MISSING_HEADER, "the SOAP message has no Header")
    return _checked_header(header)[1]


class HeaderIdsReader:
    """:func:`parse_header_ids` for a run of messages (a log's records), most of which repeat a
    recent message's Header but for the text of its free fields: the id, and the userId, issue
    and requestHash (xroad.xsd's only elements of those names, all xs:string).

    A message whose bytes up to the Header's end are a known Header's, the free fields' texts
    aside, and whose free texts are plain characters (FREE_TEXT: no markup, references or line
    breaks) parses to that Header with those texts, which the header schema accepts whatever
    they are: the same client and service, and its own id. Such a message is read here without
    a parser; any other is parsed by parse_header_ids (and may become a known Header). A
    Header is known only when its bytes hold no comment, CDATA section, processing
    instruction, DTD or reference, so that every `<` in them is a tag, and only after a second
    parse with other free texts put in has shown that the id is the text taken for it.

    Like parse_header_ids for a large message, what follows the Header is not read. Keeps
    KNOWN_HEADERS Headers per reader; a reader is not shared between threads.
    """

    def __init__(self) -> None:
        self._known: list[_KnownHeader] = []

    def read(self, body: bytes, content_type: str | None) -> HeaderIds:
        for at, known in enumerate(self._known):
            found = known.ids_of(body, content_type)
            if found is not None:
                if at:  # the Header met last is tried first: a batch's messages share one
                    self._known.insert(0, self._known.pop(at))
                return found
        ids = parse_header_ids(body, content_type)
        learnt = _KnownHeader.learn(body, content_type, ids)
        if learnt is not None:
            self._known.insert(0, learnt)
            del self._known[KNOWN_HEADERS:]
        return ids


KNOWN_HEADERS: Final = 16
"""Headers a HeaderIdsReader knows: one per client, service and user sending at the time."""

FREE_TEXT: Final = re.compile(rb"[A-Za-z0-9 ._:/+=@,;()-]{1,1024}")
"""A free field's text read without a parser: characters that are text as they are, in every
position and in UTF-8 as in ASCII."""

_FREE_FIELD: Final = re.compile(
    rb"<((?:[A-Za-z_][\w.-]*:)?)(id|userId|issue|requestHash)(\s[^<>]*)?>"
    rb"([A-Za-z0-9 ._:/+=@,;()-]{1,1024})</\1\2>"
)
_HEADER_END: Final = re.compile(rb"</((?:[A-Za-z_][\w.-]*:)?)Header>")
_HEADER_START: Final = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?Header[\s/>]")
_DECLARED_ENCODING: Final = re.compile(rb"""<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_ASCII_ENCODINGS: Final = frozenset({None, "utf-8", "ascii"})


@dataclass(frozen=True)
class _KnownHeader:
    """A message's bytes up to its Header's end, cut at its free fields' texts: `pieces` are the
    bytes between them, `id_at` which of the texts is the id."""

    content_type: str | None
    pieces: tuple[bytes, ...]
    id_at: int
    client: ClientId
    service: ServiceId

    def ids_of(self, body: bytes, content_type: str | None) -> HeaderIds | None:
        """The identifiers of `body` when it has this Header (but for its free texts), else None."""
        pieces = self.pieces
        if content_type != self.content_type or not body.startswith(pieces[0]):
            return None
        at = len(pieces[0])
        message_id = None
        for index, piece in enumerate(pieces[1:]):
            end = body.find(b"<", at)
            text = body[at:end]
            if end < 0 or FREE_TEXT.fullmatch(text) is None or not body.startswith(piece, end):
                return None
            if index == self.id_at:
                message_id = text.decode("ascii")
            at = end + len(piece)
        assert message_id is not None
        return HeaderIds(self.client, self.service, message_id)

    @classmethod
    def learn(cls, body: bytes, content_type: str | None, ids: HeaderIds) -> _KnownHeader | None:
        """`body`'s Header as a known one, if it can be (see HeaderIdsReader); `ids` are its own."""
        try:
            package = unpack(body, content_type)
            charset = normalise_encoding(package.charset)
        except (XRoadFault, UnsafeXml):
            return None
        ends = _HEADER_END.search(body)
        if package.soap is not body or ends is None or not body.startswith(b"<"):
            return None
        head = body[: ends.end()]
        declared = _DECLARED_ENCODING.match(head)
        try:
            encoding = normalise_encoding(declared[1].decode("ascii")) if declared else charset
        except UnsafeXml:
            return None
        if (
            encoding not in _ASCII_ENCODINGS
            or (head.startswith(b"<?") and not head.startswith(b"<?xml "))
            or b"<!" in head
            or b"&" in head
            or b"<?" in head[2:]
            or len(_HEADER_START.findall(head)) != 1
        ):
            return None
        free = list(_FREE_FIELD.finditer(head))
        id_at = [i for i, found in enumerate(free) if found[2] == b"id" and found[4] == ids.id.encode()]
        if len(id_at) != 1:
            return None
        cuts = [0]
        for found in free:
            cuts += [found.start(4), found.end(4)]
        cuts.append(len(head))
        pieces = tuple(head[cuts[i] : cuts[i + 1]] for i in range(0, len(cuts), 2))
        known = cls(content_type, pieces, id_at[0], ids.client, ids.service)
        # Other texts put in must read back as the id, and the Header as valid as before.
        probe = pieces[0] + b"".join(b"x-probe-%d%s" % (i, piece) for i, piece in enumerate(pieces[1:]))
        try:
            again = parse_header_ids(probe + body[len(head) :], content_type)
        except (XRoadFault, UnsafeXml, ValueError, LookupError):  # learning is only ever a shortcut
            return None
        if again != HeaderIds(ids.client, ids.service, f"x-probe-{id_at[0]}"):
            return None
        return known if known.ids_of(body, content_type) == ids else None


def _checked_header(header: etree._Element) -> tuple[dict[str, etree._Element], HeaderIds]:
    """The Header's X-Road fields, checked (schema, a non-empty id, protocol 4.0), and its
    identifiers: what parse_request and parse_header_ids both require."""
    fields = _header_fields(header)
    validate_header(header, fields.values())
    message_id = _text(fields["id"])
    if not message_id:
        raise XRoadFault(MISSING_HEADER_FIELD, "header field id is empty")
    version = _text(fields["protocolVersion"])
    if version != PROTOCOL_VERSION:
        raise XRoadFault(
            INVALID_PROTOCOL_VERSION,
            f"protocolVersion {version[:20]!r} is not supported; expected {PROTOCOL_VERSION!r}",
        )
    ids = HeaderIds(
        _identifier(ClientId, fields["client"]), _identifier(ServiceId, fields["service"]), message_id
    )
    return fields, ids


def _leading_header(soap: bytes, charset: str | None) -> etree._Element | None:
    """A large message's Header, parsed with xmlsafe's settings up to its end tag; None for a
    small message, and unless it is the first element of a SOAP 1.1 Envelope in a document
    without DTD or entity reference (the caller then parses the whole document, which refuses
    it as parse_request does)."""
    if len(soap) <= WHOLE_PARSE_BYTES or len(soap) > MAX_XML_BYTES:
        return None
    header = None
    try:
        parser = _header_parser(None if declares_encoding(soap) else charset)
    except UnsafeXml:
        return None
    try:
        for at in range(0, len(soap), HEADER_CHUNK):
            parser.feed(soap[at : at + HEADER_CHUNK])
            header = next((cast(etree._Element, found) for _, found in parser.read_events()), None)
            if header is not None:
                break
    except (etree.XMLSyntaxError, ValueError, LookupError):
        return None
    finally:
        with contextlib.suppress(etree.XMLSyntaxError):
            parser.close()  # resets it for the next message; a document cut short is refused here
    if header is None:
        return None
    envelope = header.getparent()
    if envelope is None or envelope.tag != _ENVELOPE or envelope.getparent() is not None:
        return None
    if next(header.itersiblings(etree.Element, preceding=True), None) is not None:
        return None  # an element before the Header
    if has_dtd(envelope) or next(envelope.iter(etree.Entity), None) is not None:
        return None
    return header


def _header_parser(charset: str | None) -> etree.XMLPullParser:
    """This thread's pull parser for `charset` (xmlsafe's settings), reused: making one costs
    more than parsing a header; lxml parsers must not be shared between threads."""
    parsers: dict[str | None, etree.XMLPullParser] | None = getattr(_header_parsers, "by_charset", None)
    if parsers is None:
        parsers = _header_parsers.by_charset = {}
    encoding = normalise_encoding(charset)
    parser = parsers.get(encoding)
    if parser is None:
        if len(parsers) >= MAX_HEADER_PARSERS:
            parsers.clear()
        parser = parsers[encoding] = etree.XMLPullParser(
            events=("end",), tag=_HEADER, encoding=encoding, **SAFE_PARSER_SETTINGS
        )
    return parser


MAX_HEADER_PARSERS: Final = 8
"""Parsers kept per thread, one per character encoding: messages use one or two."""


def _parse_envelope(soap: bytes, charset: str | None) -> etree._Element:
    """Parse the SOAP part safely (xmlsafe) and check its root is a SOAP 1.1 Envelope."""
    try:
        root = parse_xml(soap, charset=charset)
    except UnsafeXml as exc:
        raise XRoadFault(INVALID_SOAP, f"refused unsafe XML: {exc}") from None
    except XmlSyntaxError as exc:
        raise XRoadFault(INVALID_SOAP, f"the message is not well-formed XML: {exc}") from None
    if root.tag != _ENVELOPE:
        if root.tag == f"{{{SOAP12_ENV_NS}}}Envelope":
            raise XRoadFault(INVALID_SOAP, "SOAP 1.2 envelopes are not supported; X-Road uses SOAP 1.1")
        raise XRoadFault(INVALID_SOAP, f"the root element is {_shown_tag(root)}, not a SOAP 1.1 Envelope")
    return root


def _envelope_parts(envelope: etree._Element) -> tuple[etree._Element | None, etree._Element | None]:
    """The Header and Body, in the order SOAP 1.1 §4.1.1 requires (Header first, once)."""
    header = body = None
    for child in envelope:
        tag = child.tag
        if tag == _HEADER:
            if header is not None or body is not None:
                raise XRoadFault(
                    INVALID_SOAP, "the Header must be the Envelope's first element, and only one"
                )
            header = child
        elif tag == _BODY:
            if body is not None:
                raise XRoadFault(INVALID_SOAP, "the Envelope has more than one Body")
            body = child
        elif isinstance(tag, str) and body is None:
            # SOAP 1.1 §4.1.1: other elements may only follow the Body.
            raise XRoadFault(INVALID_SOAP, f"unexpected element {_shown_tag(child)} before the SOAP Body")
    return header, body


def _header_fields(header: etree._Element) -> dict[str, etree._Element]:
    """The X-Road fields of the Header by name; foreign header blocks are left alone."""
    fields: dict[str, etree._Element] = {}
    for child in header:
        tag = child.tag
        if not isinstance(tag, str):
            continue  # comments and processing instructions
        name = _FIELDS.get(tag)
        if name is None:
            continue  # as X-Road: unknown header elements, even in its namespaces, are ignored
        if name in fields:
            raise XRoadFault(DUPLICATE_HEADER_FIELD, f"header field {name} appears more than once")
        fields[name] = child
    for name in _MANDATORY:
        if name not in fields:
            raise XRoadFault(MISSING_HEADER_FIELD, f"header field {name} is missing")
    return fields


def _identifier(cls: type[_IdT], el: etree._Element) -> _IdT:
    """`cls.from_xml(el)`, remembered by what the element says.

    Only for elements that passed the header schema: then the objectType and the codes'
    names and texts are all that `from_xml` reads. Its faults are never cached.
    """
    codes: list[tuple[object, str | None]] = []
    for child in el:
        if len(child):  # comments inside a code split its text: rare, not worth a key
            return cls.from_xml(el)
        codes.append((child.tag, child.text))
    key = (cls, el.get(_OBJECT_TYPE), *codes)
    return cast(_IdT, _identifier_cache.remembered(key, lambda: cls.from_xml(el)))


def _body_element(body: etree._Element) -> etree._Element:
    """The Body's only child (document/literal wrapped: exactly one)."""
    if body.text is not None and not body.text.isspace():
        raise XRoadFault(INVALID_BODY, "the SOAP Body holds text outside its element")
    found = None
    for child in body:
        if child.tail is not None and not child.tail.isspace():
            raise XRoadFault(INVALID_BODY, "the SOAP Body holds text outside its element")
        if not isinstance(child.tag, str):
            continue
        if found is not None:
            raise XRoadFault(INVALID_BODY, "the SOAP Body has more than one element")
        found = child
    if found is None:
        raise XRoadFault(INVALID_BODY, "the SOAP Body is empty")
    return found


def _text(el: etree._Element) -> str:
    # The schema allows no child elements here, but comments may split the text.
    if len(el) == 0:
        return el.text or ""
    return "".join(cast("Iterator[str]", el.itertext()))


def _optional_text(el: etree._Element | None) -> str | None:
    return None if el is None else _text(el)


def _represented_party(el: etree._Element | None) -> RepresentedParty | None:
    if el is None:
        return None
    party_class = el.find(f"{_R}partyClass")
    party_code = el.find(f"{_R}partyCode")
    assert party_code is not None  # representation.xsd requires it; validated before
    return RepresentedParty(None if party_class is None else _text(party_class), _text(party_code))


def _request_hash(el: etree._Element | None) -> RequestHash | None:
    if el is None:
        return None
    return RequestHash(_text(el).strip(), el.get("algorithmId"))


def _split_tag(tag: str) -> tuple[str | None, str]:
    if tag[0] == "{":
        namespace, _, local = tag[1:].partition("}")
        return namespace or None, local
    return None, tag


def _shown_tag(el: etree._Element) -> str:
    tag = el.tag if isinstance(el.tag, str) else "(not an element)"
    return repr(tag if len(tag) <= 120 else tag[:120] + "...")


# --- faults ----------------------------------------------------------------------------


def parse_fault(message: bytes, content_type: str | None) -> SoapFault | None:
    """The SOAP Fault a response carries, or None if its Body holds anything else.

    Raises XRoadFault only when the bytes are not a SOAP 1.1 envelope at all.
    """
    package = unpack(message, content_type)
    envelope = _parse_envelope(package.soap, package.charset)
    _, body = _envelope_parts(envelope)
    return None if body is None else _fault_of(body)


def _fault_of(body: etree._Element) -> SoapFault | None:
    elements = [child for child in body if isinstance(child.tag, str)]
    if len(elements) != 1 or elements[0].tag != _FAULT:
        return None
    fault = elements[0]
    # SOAP 1.1 §4.4: faultcode, faultstring, faultactor and detail are unqualified.
    code = fault.find("faultcode")
    string = fault.find("faultstring")
    actor = fault.find("faultactor")
    detail = fault.find("detail")
    detail_text = None
    if detail is not None:
        detail_id = detail.find("faultDetail")
        detail_text = _text(detail_id if detail_id is not None else detail).strip() or None
    return SoapFault(
        code="" if code is None else _text(code).strip(),
        string="" if string is None else _text(string),
        actor=None if actor is None else _text(actor).strip(),
        detail=detail_text,
    )


def build_fault(code: str, message: str, detail_id: str, actor: str | None = None) -> bytes:
    """A SOAP 1.1 Fault as X-Road gateways send it (PROTOCOL.md "SOAP message protocol 4.0").

    The code is plain text (`Server.ClientProxy.X`), not a prefixed QName, as X-Road
    clients expect; `detail/faultDetail` holds the id that is also in our own log.
    """
    envelope = etree.Element(_ENVELOPE, nsmap={"SOAP-ENV": SOAP_ENV_NS})
    fault = etree.SubElement(etree.SubElement(envelope, _BODY), _FAULT)
    etree.SubElement(fault, "faultcode").text = _xml_safe(code)
    etree.SubElement(fault, "faultstring").text = _xml_safe(message)
    if actor is not None:
        etree.SubElement(fault, "faultactor").text = _xml_safe(actor)
    detail = etree.SubElement(fault, "detail")
    etree.SubElement(detail, "faultDetail").text = _xml_safe(detail_id)
    return etree.tostring(envelope, encoding="UTF-8", xml_declaration=True)


def fault_response(fault: XRoadFault, actor: str | None = None) -> bytes:
    """The SOAP Fault answering `fault` (the one place a raised fault becomes bytes)."""
    return build_fault(fault.code, fault.message, fault.detail, actor)


def _xml_safe(text: str) -> str:
    """Fault texts may quote hostile input; characters XML cannot hold become U+FFFD."""
    return _NOT_XML_CHAR_RE.sub("\ufffd", text)


# --- building --------------------------------------------------------------------------


def build_request(
    client: ClientId,
    service: ServiceId,
    body_element: etree._Element,
    *,
    message_id: str,
    user_id: str | None = None,
    issue: str | None = None,
    represented_party: RepresentedParty | None = None,
    security_server: SecurityServerId | None = None,
    protocol_version: str = PROTOCOL_VERSION,
) -> bytes:
    """A protocol 4.0 request; `body_element` is copied in, the caller's tree is left alone."""
    envelope = etree.Element(_ENVELOPE, nsmap=NSMAP)
    header = etree.SubElement(envelope, _HEADER)
    header.append(client.to_xml(f"{_X}client", nsmap=NSMAP))
    header.append(service.to_xml(f"{_X}service", nsmap=NSMAP))
    if security_server is not None:
        header.append(security_server.to_xml(f"{_X}securityServer", nsmap=NSMAP))
    if represented_party is not None:
        party = etree.SubElement(header, f"{_R}representedParty")
        if represented_party.party_class is not None:
            etree.SubElement(party, f"{_R}partyClass").text = represented_party.party_class
        etree.SubElement(party, f"{_R}partyCode").text = represented_party.party_code
    for name, value in (("id", message_id), ("userId", user_id), ("issue", issue)):
        if value is not None:
            etree.SubElement(header, f"{_X}{name}").text = value
    etree.SubElement(header, f"{_X}protocolVersion").text = protocol_version
    etree.SubElement(envelope, _BODY).append(copy.deepcopy(body_element))
    etree.cleanup_namespaces(envelope, top_nsmap=NSMAP)
    return etree.tostring(envelope, encoding="UTF-8", xml_declaration=True)


def build_response(request: SoapMessage, body_element: etree._Element) -> bytes:
    """A response to `request` echoing its whole Header, with `body_element` as the Body.

    Written as bytes around the serialised Header: copying the request's tree to edit it
    would cost more than parsing it did. The Header keeps every namespace declaration in
    scope in the request, so prefixes used inside values (`xsi:type`) still resolve.
    """
    header = request.envelope[0]
    assert header.tag == _HEADER  # parsing guaranteed it
    return b"".join(
        (
            _RESPONSE_START,
            etree.tostring(header, encoding="UTF-8", xml_declaration=False, with_tail=False),
            b"<SOAP-ENV:Body>",
            etree.tostring(body_element, encoding="UTF-8", xml_declaration=False, with_tail=False),
            b"</SOAP-ENV:Body></SOAP-ENV:Envelope>",
        )
    )


# --- the response path -----------------------------------------------------------------


def request_hash(request_soap_bytes: bytes) -> str:
    """Base64 SHA-512 of the request's SOAP part exactly as received (X-Road `requestHash`)."""
    return base64.b64encode(hashlib.sha512(request_soap_bytes).digest()).decode("ascii")


def set_request_hash(
    response_soap_bytes: bytes,
    request_hash_b64: str,
    algorithm_uri: str = SHA512_ALGORITHM_URI,
    *,
    charset: str | None = None,
) -> bytes:
    """The response's SOAP part with `requestHash` set by us (PROTOCOL.md header table).

    Whatever the service put in `requestHash` is replaced: only the provider's gateway
    can say what it received. The document keeps its encoding; `charset` is the SOAP
    part's Content-Type charset, for documents without an encoding declaration. For a
    multipart response, put the result back with `mime.replace_soap_part`.
    """
    envelope = _parse_envelope(response_soap_bytes, charset)
    header, _ = _envelope_parts(envelope)
    if header is None:
        raise XRoadFault(MISSING_HEADER, "the SOAP message has no Header")
    position = len(header)
    for old in header.findall(_REQUEST_HASH):
        position = min(position, header.index(old))
        header.remove(old)
    element = etree.Element(_REQUEST_HASH, {"algorithmId": algorithm_uri}, nsmap={"xrd": XROAD_NS})
    element.text = request_hash_b64
    header.insert(position, element)
    tree = envelope.getroottree()
    encoding = tree.docinfo.encoding or "UTF-8"
    declared = (
        encoding.upper() != "UTF-8" or response_soap_bytes.lstrip(b"\xef\xbb\xbf \t\r\n")[:5] == b"<?xml"
    )
    result = etree.tostring(tree, encoding=encoding, xml_declaration=declared)
    assert isinstance(result, bytes)  # an encoding was given
    return result


def check_response_consistency(request: SoapMessage, response: SoapMessage) -> None:
    """Raise Server.ClientProxy.InconsistentResponse unless the response echoes the request.

    PROTOCOL.md "SOAP message protocol 4.0": client, service, id, userId, issue and
    representedParty come back unchanged, and the Body wrapper starts with the service code
    (`{serviceCode}Response` by convention; X-Road checks only the start).
    """
    echoed = (
        ("client", request.client, response.client),
        ("service", request.service, response.service),
        ("id", request.id, response.id),
        ("userId", request.user_id, response.user_id),
        ("issue", request.issue, response.issue),
        ("representedParty", request.represented_party, response.represented_party),
    )
    for name, sent, received in echoed:
        if sent != received:
            raise XRoadFault(INCONSISTENT_RESPONSE, f"the response's {name} differs from the request's")
    code = request.service.service_code
    if not response.body_name.startswith(code):  # as X-Road: `code` + "Response" by convention
        raise XRoadFault(
            INCONSISTENT_RESPONSE,
            f"the response's body element {response.body_name[:80]!r} does not start with {code!r}",
        )
