"""X-Road REST protocol r1 on the internal interface, without I/O.

PROTOCOL.md "REST protocol r1": a client system calls
`{METHOD} /r1/{instance}/{class}/{member}/{subsystem}/{serviceCode}[/path][?query]` with
`X-Road-*` headers naming itself and the message. This module turns what the HTTP edge
received (method, raw path, query, headers, body) into a :class:`RestRequest` or a
:class:`RestMetadataRequest`, or raises :class:`XRoadFault`; and it builds what goes back:
the headers passed on, the `X-Road-*` response headers, the request hash, and the gateway's
error bodies. The aiohttp handlers in `proxy/` do the I/O around it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qsl, unquote_to_bytes

from lxml import etree

from gateway.faults import (
    DUPLICATE_HEADER_FIELD,
    INCONSISTENT_RESPONSE,
    INVALID_HTTP_METHOD,
    INVALID_PROTOCOL_VERSION,
    INVALID_REQUEST,
    INVALID_SERVICE_IDENTIFIER,
    MISSING_HEADER,
    REQUEST_TOO_LARGE,
    XRoadFault,
    canonical,
)
from gateway.ids import (
    ClientId,
    IdentifierError,
    SecurityServerId,
    ServiceId,
    format_represented_party,
    parse_represented_party,
)
from gateway.protocol.limits import DEFAULT_MAX_MESSAGE_BYTES
from gateway.xmlsafe import UnsafeXml, XmlSyntaxError, parse_xml

# HTTP header fields as the edge hands them over: aiohttp's CIMultiDictProxy (a Mapping whose
# items() keeps repeated fields), a plain dict, or (name, value) pairs.
Headers = Mapping[str, str] | Iterable[tuple[str, str]]
HeaderList = list[tuple[str, str]]

# --- limits ------------------------------------------------------------------------------

# aiohttp's default max_line_size: the core refuses no less than the edge would accept.
MAX_TARGET_LENGTH: Final = 8190
# Tomcat's default maxHeaderCount; real clients send fewer than 30.
MAX_HEADER_COUNT: Final = 100
# X-Road's message log keeps the message id in a varchar(255) column.
MAX_MESSAGE_ID_LENGTH: Final = 255
# userId and issue are echoed in every log record; a kilobyte holds any real one.
MAX_FREE_TEXT_LENGTH: Final = 1024
# A gateway error is three short strings; anything larger is a service's own body, not ours.
MAX_ERROR_BODY_BYTES: Final = 64 * 1024

# --- protocol names ----------------------------------------------------------------------

# PROTOCOL.md "REST protocol r1", request and response headers.
HEADER_CLIENT: Final = "X-Road-Client"
HEADER_SERVICE: Final = "X-Road-Service"
HEADER_ID: Final = "X-Road-Id"
HEADER_USER_ID: Final = "X-Road-UserId"
HEADER_ISSUE: Final = "X-Road-Issue"
HEADER_SECURITY_SERVER: Final = "X-Road-Security-Server"
HEADER_REPRESENTED_PARTY: Final = "X-Road-Represented-Party"
HEADER_REQUEST_ID: Final = "X-Road-Request-Id"
HEADER_REQUEST_HASH: Final = "X-Road-Request-Hash"
HEADER_ERROR: Final = "X-Road-Error"

# The request headers this module consumes; they are written afresh towards the service.
_CONSUMED_HEADERS: Final = frozenset(
    h.lower()
    for h in (
        HEADER_CLIENT,
        HEADER_ID,
        HEADER_USER_ID,
        HEADER_ISSUE,
        HEADER_SECURITY_SERVER,
        HEADER_REPRESENTED_PARTY,
    )
)
# PR-REST §4.3: the fields gateways write; any other `X-Road-*` field is an extension that
# "X-Road handles like any user defined header" and passes on.
_PROTOCOL_HEADERS: Final = _CONSUMED_HEADERS | frozenset(
    h.lower() for h in (HEADER_SERVICE, HEADER_REQUEST_ID, HEADER_REQUEST_HASH, HEADER_ERROR)
)

# RFC 9110 §9: the methods a REST service may be called with. TRACE (echoes credentials
# back: cross-site tracing) and CONNECT (opens a tunnel) make no sense through a gateway.
REST_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# PROTOCOL.md "Service metadata": reserved service codes answered by the provider's gateway.
LIST_METHODS: Final = "listMethods"
ALLOWED_METHODS: Final = "allowedMethods"
GET_OPENAPI: Final = "getOpenAPI"
METADATA_SERVICES: Final = frozenset({LIST_METHODS, ALLOWED_METHODS, GET_OPENAPI})

# RFC 9110 §7.6.1 hop-by-hop fields (plus Trailer, RFC 2616 §13.5.1, and the non-standard
# Proxy-Connection), and PROTOCOL.md "REST protocol r1": Host, User-Agent and Server are
# not passed on. Content-Length is recomputed by whoever sends the body next.
_NOT_PASSED: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "user-agent",
        "server",
        "content-length",
    }
)

# --- character classes -------------------------------------------------------------------

# RFC 9110 §5.6.2 token: a field name or a method.
_TOKEN_RE: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 §5.5: a field value holds no CTL but HTAB (CR/LF/NUL would split or cut the field).
# Lone surrogates are bytes that were not UTF-8 (aiohttp decodes with surrogateescape): they
# could not be sent on, nor hashed as text.
_BAD_FIELD_VALUE_RE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]")
# RFC 3986 §3.3 pchar and "/", or a well-formed percent-escape; anything else (space, `\`,
# NUL, `#`, non-ASCII, a stray `%`) has no place in a path as sent.
_BAD_PATH_CHAR_RE: Final = re.compile(r"[^A-Za-z0-9\-._~!$&'()*+,;=:@/%]|%(?![0-9A-Fa-f]{2})")
# RFC 3986 §3.4: a query adds "?" to those.
_BAD_QUERY_CHAR_RE: Final = re.compile(r"[^A-Za-z0-9\-._~!$&'()*+,;=:@/?%]|%(?![0-9A-Fa-f]{2})")
_ESCAPE_RE: Final = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# C0 and C1 controls and DEL, once decoded: NUL truncates C strings, CR/LF forge log lines.
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_PROTOCOL_VERSION_RE: Final = re.compile(r"/r([0-9]+)(/|$)")


def is_rest_path(path: str) -> bool:
    """A REST protocol path of any version (`/r1/...`, `/r2/...`): the REST handler answers it,
    an unsupported version with InvalidProtocolVersion, as X-Road's client proxy does."""
    return _PROTOCOL_VERSION_RE.match(path) is not None


# A fault code as xgate and X-Road write it, CamelCase or snake case (PROTOCOL.md "Fault codes").
_FAULT_CODE_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*")
_MAX_FAULT_FIELD_LENGTH: Final = 255
# XML 1.0 §2.2 Char: what an XML error body can carry at all.
_NOT_XML_CHAR_RE: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# RFC 9110 §12.4.2 qvalue.
_QVALUE_RE: Final = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?")


def _excerpt(value: str) -> str:
    """A bounded, printable quote of untrusted input for a fault message."""
    return repr(value if len(value) <= 64 else value[:64] + "...")


def _invalid(message: str) -> XRoadFault:
    return XRoadFault(INVALID_REQUEST, message)


def _new_id() -> str:
    return str(uuid.uuid4())


# --- the request -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RestRequest:
    """A REST r1 call as the gateway understood it: what is hashed, signed, logged and forwarded.

    `path` is what follows the service code, normalised by :func:`normalise_path` and still
    percent-encoded: `""` when nothing follows, else starting with `/`; access rights, the
    cache and the request hash read it. `path_as_sent` is the same part exactly as the client
    sent it (None when it equals `path`): what the service is called with, byte for byte, as
    X-Road does (only escapes' case and escaped unreserved characters can differ, RFC 3986
    §6.2.2, so both name one resource). `query` is as sent (PR-REST §4.5). `headers` are the
    fields passed on to the service (:func:`passable_headers`); the consumed `X-Road-*`
    fields are the typed attributes. `request_id` is this gateway's own id for the call,
    unique even when a client reuses `X-Road-Id`; a client cannot set it.
    """

    method: str
    service: ServiceId
    path: str
    query: str
    client: ClientId
    message_id: str
    user_id: str | None
    issue: str | None
    security_server: SecurityServerId | None
    represented_party: tuple[str | None, str] | None
    headers: tuple[tuple[str, str], ...]
    body: bytes
    request_id: str = field(default_factory=_new_id)
    path_as_sent: str | None = None

    @property
    def service_path(self) -> str:
        """The path and query the service is called with: the client's bytes, unchanged."""
        path = self.path if self.path_as_sent is None else self.path_as_sent
        return f"{path}?{self.query}" if self.query else path

    @property
    def endpoint_path(self) -> str:
        """The path access rights are matched against (PROTOCOL.md: endpoints are method plus path)."""
        return self.path or "/"

    @property
    def target(self) -> str:
        """The normalised request target: `/r1/{service}{path}[?query]`."""
        target = self.service.to_rest_path(self.path)
        return f"{target}?{self.query}" if self.query else target


@dataclass(frozen=True, slots=True)
class RestMetadataRequest:
    """A metadata call to a provider (PROTOCOL.md "Service metadata"): `GET /r1/{provider}/{name}`.

    It travels like any REST call (the provider's gateway answers it, since only it knows
    the services and access rights), so it wraps one: `request.service` is the provider
    with the metadata name as service code.
    """

    request: RestRequest
    # getOpenAPI's subject: the provider's service named by `?serviceCode=`.
    described_service: ServiceId | None = None

    @property
    def name(self) -> str:
        return self.request.service.service_code

    @property
    def provider(self) -> ClientId:
        return self.request.service.provider


def parse_rest_request(
    method: str,
    raw_path: str,
    query: str,
    headers: Headers,
    body: bytes,
    *,
    max_body_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    new_id: Callable[[], str] = _new_id,
) -> RestRequest | RestMetadataRequest:
    """Read a REST r1 request as received on the internal interface, or raise XRoadFault.

    `raw_path` is the path exactly as sent, still percent-encoded; it may carry the query
    after `?` (as aiohttp's `raw_path` does), in which case `query` is `""` or the same.
    `new_id` makes `X-Road-Id` when the client sent none, and the `request_id`.
    """
    path, query = _split_target(raw_path, query)
    if method not in REST_METHODS:
        raise XRoadFault(INVALID_HTTP_METHOD, f"HTTP method {_excerpt(method)} is not supported")
    if len(body) > max_body_bytes:
        raise XRoadFault(REQUEST_TOO_LARGE, f"request body of {len(body)} bytes exceeds {max_body_bytes}")
    service, rest, rest_as_sent = _service_and_path(path)
    _check_query(query)
    fields = _validated_fields(headers)
    protocol = _protocol_headers(fields)
    request = RestRequest(
        method=method,
        service=service,
        path=rest,
        query=query,
        client=_client(protocol),
        message_id=_message_id(protocol, new_id),
        user_id=_free_text(protocol, HEADER_USER_ID),
        issue=_free_text(protocol, HEADER_ISSUE),
        security_server=_security_server(protocol),
        represented_party=_represented_party(protocol),
        headers=tuple(passable_headers(fields)),
        body=body,
        request_id=new_id(),
        path_as_sent=None if rest_as_sent == rest else rest_as_sent,
    )
    if service.service_code in METADATA_SERVICES:
        return _metadata_request(request)
    return request


def _split_target(raw_path: str, query: str) -> tuple[str, str]:
    if len(raw_path) + len(query) > MAX_TARGET_LENGTH:
        raise _invalid(f"request target longer than {MAX_TARGET_LENGTH} characters")
    path, mark, embedded = raw_path.partition("?")
    if mark:
        if query and query != embedded:
            raise _invalid("the query in the path differs from the query given")
        query = embedded
    return path, query


def _service_and_path(path: str) -> tuple[ServiceId, str, str]:
    """PROTOCOL.md "REST protocol r1": `/r1/INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE[/path]`:
    the service, the normalised path after it, and that path as sent."""
    if not path.startswith("/r1/"):
        version = _PROTOCOL_VERSION_RE.match(path)
        if version is not None and version.group(1) != "1":
            raise XRoadFault(INVALID_PROTOCOL_VERSION, "REST protocol version r1 is the only one supported")
        raise _invalid(f"REST path {_excerpt(path)} does not start with /r1/")
    service, rest = ServiceId.from_rest_path(normalise_path(path))
    # normalise_path keeps every segment, so the sent path splits where the normalised one did.
    after_service = path[len("/r1/") :].split("/", 5)[5:]
    return service, rest, "/" + after_service[0] if after_service else ""


def _check_query(query: str) -> None:
    bad = _BAD_QUERY_CHAR_RE.search(query)
    if bad is not None:
        raise _invalid(f"character {bad.group()!r} not allowed in a query (RFC 3986 §3.4)")


# --- path normalisation ------------------------------------------------------------------


def normalise_path(raw: str) -> str:
    """Return the one spelling of a percent-encoded path, or raise XRoadFault(Client.InvalidRequest).

    Services and their frameworks disagree on how they decode and split paths, so a path
    that could mean something else to any of them is refused rather than repaired, as Jetty's
    default URI compliance does (`AMBIGUOUS_*`): dot-segments however spelled (`..`, `%2e%2E`,
    `..;` that Tomcat reads as `..`, dots and spaces that Windows trims, Unicode dots that
    NFKC folds), encoded separators (`%2F`, `%5C`, fullwidth `/`), double encoding (`%252e`),
    controls (`%00`, `%0A`), bytes that are not UTF-8 (overlong `%C0%AE`), and empty segments
    (`//`) except a final one. What is left is written canonically (RFC 3986 §6.2.2: escapes
    in upper case, unreserved characters unescaped), so that access rights matched against
    the result match what the service will see. The result is a fixed point.
    """
    if len(raw) > MAX_TARGET_LENGTH:
        raise _invalid(f"path longer than {MAX_TARGET_LENGTH} characters")
    if not raw.startswith("/"):
        raise _invalid("a path starts with /")
    bad = _BAD_PATH_CHAR_RE.search(raw)
    if bad is not None:
        raise _invalid(f"character {bad.group()!r} not allowed in a path (RFC 3986 §3.3)")
    segments = raw[1:].split("/")
    last = len(segments) - 1
    for i, segment in enumerate(segments):
        if not segment and i != last:
            raise _invalid("empty segment (//) in the path")
        _check_segment(segment)
    return "/" + "/".join(_ESCAPE_RE.sub(_canonical_escape, s) for s in segments)


def _check_segment(segment: str) -> None:
    try:
        text = unquote_to_bytes(segment).decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid(f"path segment {_excerpt(segment)} is not UTF-8") from None
    if _CONTROL_RE.search(text):
        raise _invalid(f"control character in path segment {_excerpt(segment)}")
    if _ESCAPE_RE.search(text):
        raise _invalid(f"double percent-encoding in path segment {_excerpt(segment)}")
    folded = unicodedata.normalize("NFKC", text)
    if "/" in folded or "\\" in folded:
        raise _invalid(f"encoded path separator in segment {_excerpt(segment)}")
    name = folded.split(";", 1)[0]  # Tomcat and Jetty strip `;params` before resolving dots
    if segment and not name.strip(". "):
        raise _invalid(f"dot-segment {_excerpt(segment)} in the path")


def _canonical_escape(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


# --- headers -----------------------------------------------------------------------------


def _header_items(headers: Headers) -> HeaderList:
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers)


def _is_valid_field(name: str, value: str) -> bool:
    return _TOKEN_RE.fullmatch(name) is not None and _BAD_FIELD_VALUE_RE.search(value) is None


def _validated_fields(headers: Headers) -> HeaderList:
    """The client's header fields, checked (RFC 9110 §5) and with surrounding whitespace trimmed."""
    items = _header_items(headers)
    if len(items) > MAX_HEADER_COUNT:
        raise _invalid(f"more than {MAX_HEADER_COUNT} header fields")
    fields: HeaderList = []
    for name, value in items:
        if not _is_valid_field(name, value):
            raise _invalid(f"malformed header field {_excerpt(name)}")
        fields.append((name, value.strip(" \t")))
    return fields


def passable_headers(headers: Headers) -> HeaderList:
    """The header fields a gateway passes on, in order: to the service, or back to the client.

    Dropped (PROTOCOL.md "REST protocol r1"; PR-REST §4.3; RFC 9110 §7.6.1): hop-by-hop
    fields, `Proxy-*`, any field the `Connection` field names, `Host`, `User-Agent`, `Server`,
    `Content-Length`, and the protocol's `X-Road-*` fields: they are read into the request
    and written afresh by the gateway, so neither a client nor a service can forge them.
    Other `X-Road-*` fields are extensions agreed between client and service, passed on like
    any other. Malformed fields are dropped too, so nothing passed on can split a header.
    """
    items = _header_items(headers)
    named = {
        token.strip().lower()
        for name, value in items
        if name.lower() == "connection"
        for token in value.split(",")
    }
    passed: HeaderList = []
    for name, value in items:
        key = name.lower()
        if (
            key in _NOT_PASSED
            or key in named
            or key.startswith("proxy-")
            or key in _PROTOCOL_HEADERS
            or not _is_valid_field(name, value)
        ):
            continue
        passed.append((name, value))
    return passed


def is_consumed_header(name: str) -> bool:
    """Whether a client's field is one of the protocol's that the gateway reads (not passes on)."""
    return name.lower() in _CONSUMED_HEADERS


def _protocol_headers(fields: HeaderList) -> dict[str, str]:
    """The consumed X-Road-* fields by lower-case name; each may appear once, empty means absent."""
    found: dict[str, str] = {}
    for name, value in fields:
        key = name.lower()
        if key not in _CONSUMED_HEADERS:
            continue
        if key in found:
            raise XRoadFault(DUPLICATE_HEADER_FIELD, f"header {name} appears more than once")
        found[key] = value
    return {key: value for key, value in found.items() if value}


def _client(protocol: Mapping[str, str]) -> ClientId:
    text = protocol.get(HEADER_CLIENT.lower())
    if text is None:
        raise XRoadFault(MISSING_HEADER, f"the {HEADER_CLIENT} header is missing")
    return ClientId.from_text(text)


def _message_id(protocol: Mapping[str, str], new_id: Callable[[], str]) -> str:
    message_id = protocol.get(HEADER_ID.lower())
    if message_id is None:
        return new_id()
    if len(message_id) > MAX_MESSAGE_ID_LENGTH:
        raise _invalid(f"{HEADER_ID} longer than {MAX_MESSAGE_ID_LENGTH} characters")
    return message_id


def _free_text(protocol: Mapping[str, str], header: str) -> str | None:
    value = protocol.get(header.lower())
    if value is not None and len(value) > MAX_FREE_TEXT_LENGTH:
        raise _invalid(f"{header} longer than {MAX_FREE_TEXT_LENGTH} characters")
    return value


def _security_server(protocol: Mapping[str, str]) -> SecurityServerId | None:
    text = protocol.get(HEADER_SECURITY_SERVER.lower())
    return None if text is None else SecurityServerId.from_text(text)


def _represented_party(protocol: Mapping[str, str]) -> tuple[str | None, str] | None:
    text = protocol.get(HEADER_REPRESENTED_PARTY.lower())
    return None if text is None else parse_represented_party(text)


# --- metadata calls ----------------------------------------------------------------------


def _metadata_request(request: RestRequest) -> RestMetadataRequest:
    """PROTOCOL.md "Service metadata": `GET /r1/{provider}/{name}`, nothing after the name."""
    if request.method != "GET":
        raise XRoadFault(INVALID_HTTP_METHOD, f"{request.service.service_code} is called with GET")
    if request.path:
        raise _invalid(f"{request.service.service_code} takes no path after its name")
    described = _openapi_subject(request) if request.service.service_code == GET_OPENAPI else None
    return RestMetadataRequest(request, described)


def _openapi_subject(request: RestRequest) -> ServiceId:
    codes = [value for key, value in parse_qsl(request.query, keep_blank_values=True) if key == "serviceCode"]
    if len(codes) != 1:
        raise _invalid(f"{GET_OPENAPI} needs exactly one serviceCode parameter")
    provider = request.service
    try:
        return ServiceId(
            provider.instance, provider.member_class, provider.member_code, provider.subsystem_code, codes[0]
        )
    except IdentifierError as exc:
        raise XRoadFault(INVALID_SERVICE_IDENTIFIER, exc.message) from None


# --- the response ------------------------------------------------------------------------


def service_request_headers(request: RestRequest) -> HeaderList:
    """The header fields the provider's gateway sends to the service: the passed ones plus
    the protocol fields that tell the service who is calling (PROTOCOL.md "REST protocol r1"),
    the client's `X-Road-Security-Server` among them, as X-Road passes it."""
    fields: HeaderList = [
        (HEADER_CLIENT, request.client.to_text()),
        (HEADER_SERVICE, request.service.to_text()),
        (HEADER_ID, request.message_id),
        (HEADER_REQUEST_ID, request.request_id),
    ]
    fields.extend(_optional_protocol_fields(request))
    fields.extend(request.headers)
    return fields


def _optional_protocol_fields(request: RestRequest) -> HeaderList:
    fields: HeaderList = []
    if request.user_id is not None:
        fields.append((HEADER_USER_ID, request.user_id))
    if request.issue is not None:
        fields.append((HEADER_ISSUE, request.issue))
    if request.represented_party is not None:
        fields.append((HEADER_REPRESENTED_PARTY, format_represented_party(*request.represented_party)))
    if request.security_server is not None:
        fields.append((HEADER_SECURITY_SERVER, request.security_server.to_text()))
    return fields


def response_headers(request: RestRequest, request_hash_b64: str) -> HeaderList:
    """The X-Road-* fields every REST response carries back (PROTOCOL.md "REST protocol r1")."""
    return [
        (HEADER_CLIENT, request.client.to_text()),
        (HEADER_SERVICE, request.service.to_text()),
        (HEADER_ID, request.message_id),
        (HEADER_REQUEST_ID, request.request_id),
        (HEADER_REQUEST_HASH, request_hash_b64),
    ]


def rest_request_hash(request: RestRequest) -> str:
    """Base64 SHA-512 of the request as received: the `X-Road-Request-Hash` value.

    Computed over the parsed request rather than the raw bytes, so the consumer's gateway,
    the provider's gateway and an auditor with the log all arrive at the same value however
    the hops re-encoded it. The serialisation is HTTP/1.1-shaped, UTF-8:

        {method} SP {target} CRLF          target = /r1/{service}{path}[?{query}], as RestRequest.target
        {name}: {value} CRLF               one line per header field, see below
        CRLF
        {body}                             the body bytes, unchanged

    The header fields are the protocol fields from the client (`x-road-client` as
    `INSTANCE/CLASS/MEMBER[/SUBSYSTEM]` each part percent-encoded, `x-road-id`, and when
    present `x-road-userid`, `x-road-issue`, `x-road-represented-party` as `[CLASS/]CODE`,
    `x-road-security-server` as `INSTANCE/CLASS/MEMBER/SERVER`) followed by the passed
    fields, all names in lower case (RFC 9110 §5.1), then sorted by name with a stable sort:
    fields of one name keep their order, the order of different names does not count
    (RFC 9110 §5.3). The gateway's own `request_id` is not covered. The form is unambiguous:
    methods and names are tokens, and the target and values hold no space or CR/LF.
    """
    fields = [
        (HEADER_CLIENT, request.client.to_text()),
        (HEADER_ID, request.message_id),
        *_optional_protocol_fields(request),
        *request.headers,
    ]
    lines = sorted(((name.lower(), value) for name, value in fields), key=lambda f: f[0])
    head = f"{request.method} {request.target}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in lines) + "\r\n"
    digest = hashlib.sha512(head.encode("utf-8") + request.body).digest()
    return base64.b64encode(digest).decode("ascii")


def check_rest_response_consistency(
    request: RestRequest,
    response_headers: Headers,
    *,
    request_hash: str | None = None,
) -> None:
    """Raise XRoadFault(Server.ClientProxy.InconsistentResponse) unless the response echoes
    the request's `X-Road-Id`, `X-Road-Client` and `X-Road-Service` (PROTOCOL.md "SOAP
    message protocol 4.0", the same rule for REST) and, when `request_hash` is given,
    carries that `X-Road-Request-Hash`."""
    values: dict[str, list[str]] = {}
    for name, value in _header_items(response_headers):
        values.setdefault(name.lower(), []).append(value.strip(" \t"))

    def single(header: str) -> str:
        found = values.get(header.lower(), [])
        if len(found) != 1:
            raise XRoadFault(INCONSISTENT_RESPONSE, f"response has {len(found)} {header} headers, expected 1")
        return found[0]

    if single(HEADER_ID) != request.message_id:
        raise XRoadFault(INCONSISTENT_RESPONSE, f"response {HEADER_ID} differs from the request's")
    try:
        client = ClientId.from_text(single(HEADER_CLIENT))
        service = ServiceId.from_text(single(HEADER_SERVICE))
    except IdentifierError as exc:
        raise XRoadFault(INCONSISTENT_RESPONSE, f"response identifier unreadable: {exc.message}") from None
    if client != request.client:
        raise XRoadFault(INCONSISTENT_RESPONSE, f"response {HEADER_CLIENT} differs from the request's")
    if service != request.service:
        raise XRoadFault(INCONSISTENT_RESPONSE, f"response {HEADER_SERVICE} differs from the request's")
    if request_hash is not None and single(HEADER_REQUEST_HASH) != request_hash:
        raise XRoadFault(INCONSISTENT_RESPONSE, f"response {HEADER_REQUEST_HASH} differs from the request's")


# --- errors ------------------------------------------------------------------------------

_JSON: Final = "application/json"
_XML_TYPES: Final = ("application/xml", "text/xml")


def rest_error_status(code: str) -> int:
    """The HTTP status for a fault code, as X-Road 7.8's client proxy sets it: 500 for `Server.*`,
    400 for everything else (`Client.*`).

    X-Road (ClientRestMessageHandler) tells the two classes apart and nothing finer, and REST
    clients written against it branch on exactly these two statuses; the fault code in
    `X-Road-Error` and the body says the rest. Snake-case codes from newer peers map the same
    way. The one exception, the overload refusal (HTTP 503 with `Retry-After`), is made by
    the edge (proxy/answers.py), not here.
    """
    return 500 if canonical(code)[:7].lower() == "server." else 400


def rest_error_body(fault: XRoadFault, accept: str | None) -> tuple[bytes, str, int]:
    """A gateway error as (body, content type, status) (PROTOCOL.md "REST protocol r1").

    JSON `{"type", "message", "detail"}` unless the client's Accept prefers an XML type to
    JSON, then `<error><type/><message/><detail/></error>`.
    """
    status = rest_error_status(fault.code)
    media_type = _error_media_type(accept)
    if media_type == _JSON:
        body = json.dumps({"type": fault.code, "message": fault.message, "detail": fault.detail})
        return body.encode("ascii"), f"{_JSON}; charset=utf-8", status
    root = etree.Element("error")
    for tag, text in (("type", fault.code), ("message", fault.message), ("detail", fault.detail)):
        etree.SubElement(root, tag).text = _NOT_XML_CHAR_RE.sub("\ufffd", text)
    return (
        etree.tostring(root, xml_declaration=True, encoding="UTF-8"),
        f"{media_type}; charset=utf-8",
        status,
    )


def error_headers(fault: XRoadFault) -> HeaderList:
    """`X-Road-Error: CODE`, which marks an error as the gateway's rather than the service's."""
    return [(HEADER_ERROR, fault.code)]


def _error_media_type(accept: str | None) -> str:
    """JSON, or the XML type the Accept field (RFC 9110 §12.5.1) rates higher, or names as
    well as JSON: X-Road answers XML whenever `application/xml`, `text/xml` or `text/*` is
    listed, so `Accept: application/xml, application/json` gets XML from both."""
    if not accept:
        return _JSON
    ranges = _media_ranges(accept)
    best, best_q = _JSON, _quality(ranges, _JSON)
    for media_type in _XML_TYPES:
        q = _quality(ranges, media_type)
        if q > best_q or (best == _JSON and q == best_q > 0 and _names(ranges, media_type)):
            best, best_q = media_type, q
    return best


def _names(ranges: list[tuple[str, float]], media_type: str) -> bool:
    """Whether the Accept field lists `media_type` itself (or `text/*` for `text/xml`, as X-Road reads it)."""
    return any(r == media_type or (r == "text/*" and media_type == "text/xml") for r, _ in ranges)


def _media_ranges(accept: str) -> list[tuple[str, float]]:
    ranges: list[tuple[str, float]] = []
    for item in accept.split(","):
        media_range, *params = item.split(";")
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                value = value.strip()
                q = float(value) if _QVALUE_RE.fullmatch(value) else -1.0
        if q >= 0:
            ranges.append((media_range.strip().lower(), q))
    return ranges


def _quality(ranges: list[tuple[str, float]], media_type: str) -> float:
    """The q of the most specific range matching `media_type` (RFC 9110 §12.5.1), 0 if none."""
    kind = media_type.split("/", 1)[0]
    specificity = {media_type: 3, f"{kind}/*": 2, "*/*": 1}
    best, q = 0, 0.0
    for media_range, range_q in ranges:
        rank = specificity.get(media_range, 0)
        if rank > best:
            best, q = rank, range_q
    return q


def parse_rest_error(body: bytes, content_type: str | None) -> XRoadFault | None:
    """Read back a gateway error body made by :func:`rest_error_body` (ours or another X-Road
    gateway's), so the consumer's gateway can pass the provider's fault on. None when the body
    is not such an error, e.g. a service's own error document."""
    if not content_type or len(body) > MAX_ERROR_BODY_BYTES:
        return None
    media_type, _, params = content_type.partition(";")
    media_type = media_type.strip().lower()
    if media_type == _JSON or media_type.endswith("+json"):
        return _json_error(body)
    if media_type in _XML_TYPES or media_type.endswith("+xml"):
        return _xml_error(body, _charset(params))
    return None


def _charset(params: str) -> str | None:
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip('"') or None
    return None


def _json_error(body: bytes) -> XRoadFault | None:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    code, message, detail = document.get("type"), document.get("message", ""), document.get("detail")
    if not isinstance(code, str) or not isinstance(message, str):
        return None
    return _fault(code, message, detail if isinstance(detail, str) else None)


def _xml_error(body: bytes, charset: str | None) -> XRoadFault | None:
    try:
        root = parse_xml(body, charset=charset, max_bytes=MAX_ERROR_BODY_BYTES)
    except (UnsafeXml, XmlSyntaxError):
        return None
    if root.tag != "error":
        return None
    texts: dict[str, str] = {}
    for child in root:
        if isinstance(child.tag, str) and child.tag in ("type", "message", "detail"):
            texts[child.tag] = "".join(t for t in child.itertext() if isinstance(t, str))
    if "type" not in texts:
        return None
    return _fault(texts["type"].strip(), texts.get("message", ""), texts.get("detail"))


def _fault(code: str, message: str, detail: str | None) -> XRoadFault | None:
    """A fault from a peer's fields; the code and detail end up in headers and logs, so both are checked."""
    if len(code) > _MAX_FAULT_FIELD_LENGTH or _FAULT_CODE_RE.fullmatch(code) is None:
        return None
    if detail is not None:
        detail = detail.strip()
        if detail and len(detail) <= _MAX_FAULT_FIELD_LENGTH and not _BAD_FIELD_VALUE_RE.search(detail):
            return XRoadFault(code, message, detail)
    return XRoadFault(code, message)
