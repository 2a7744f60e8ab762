"""Content types and multipart bodies: where the SOAP envelope is in what a peer sent.

PROTOCOL.md "SOAP message protocol 4.0": a message is a bare SOAP envelope (`text/xml`),
SOAP with Attachments (`multipart/related`, SOAP part first or named by `start`, W3C SwA
note and RFC 2387), or MTOM/XOP (`multipart/related; type="application/xop+xml"`, W3C XOP
and SOAP MTOM). This module finds the SOAP part and keeps every other part's bytes exactly
as received, because they are hashed, signed and logged as they are: XOP includes stay
references into the attachments, nothing is decoded or re-encoded.

Sans-IO: bytes and header values in, values out; a malformed body raises
`XRoadFault(Client.InvalidContentType)` or `Client.MissingSoap`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, NamedTuple

from gateway.faults import INVALID_CONTENT_TYPE, MISSING_SOAP, XRoadFault

TEXT_XML: Final = "text/xml"
MULTIPART_RELATED: Final = "multipart/related"
XOP_XML: Final = "application/xop+xml"
SOAP12_XML: Final = "application/soap+xml"

# Real messages carry a handful of attachments; the bound keeps a hostile body made of
# millions of empty parts from costing a Python object each.
MAX_MIME_PARTS: Final = 1024
# The header block of one part (Content-Type, Content-ID, ...); h11 allows 16 KB for a
# whole HTTP header block, and a part's headers are far fewer.
MAX_PART_HEADER_BYTES: Final = 16 * 1024
# RFC 2046 §5.1.1: a boundary is 1 to 70 characters.
MAX_BOUNDARY_LENGTH: Final = 70

# RFC 9110 §5.6.2 token; parameter values may also be quoted strings (§5.6.4). Values that
# are neither (e.g. an unquoted `start=<root@x>`) are common enough in the wild to accept.
_TCHARS: Final = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE_RE: Final = re.compile(rf"[ \t]*({_TCHARS})/({_TCHARS})[ \t]*")
_PARAM_RE: Final = re.compile(rf';[ \t]*(?:({_TCHARS})[ \t]*=[ \t]*("(?:[^"\\]|\\.)*"|[^;"\s]+)[ \t]*)?')
_QUOTED_PAIR_RE: Final = re.compile(r"\\(.)")


@dataclass(frozen=True, slots=True)
class ContentType:
    """A parsed `Content-Type`: lower-case media type, parameters with lower-case names."""

    media_type: str
    params: tuple[tuple[str, str], ...] = ()

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return None


@lru_cache(maxsize=256)
def parse_content_type(value: str) -> ContentType:
    """Parse a Content-Type header value (RFC 9110 §8.3), or raise Client.InvalidContentType.

    Cached: clients send the same few values over and over; multipart boundaries vary,
    but the cache is bounded.
    """
    match = _MEDIA_TYPE_RE.match(value)
    if match is None:
        raise XRoadFault(INVALID_CONTENT_TYPE, f"malformed content type {_shorten(value)}")
    media_type = f"{match.group(1)}/{match.group(2)}".lower()
    params: list[tuple[str, str]] = []
    pos = match.end()
    while pos < len(value):
        param = _PARAM_RE.match(value, pos)
        if param is None:
            raise XRoadFault(INVALID_CONTENT_TYPE, f"malformed content type parameters in {_shorten(value)}")
        pos = param.end()
        name, raw = param.group(1), param.group(2)
        if name is None:
            continue  # an empty parameter, as in a trailing ";"
        if raw.startswith('"'):
            raw = _QUOTED_PAIR_RE.sub(r"\1", raw[1:-1])
        params.append((name.lower(), raw))
    return ContentType(media_type, tuple(params))


def _shorten(value: str) -> str:
    return repr(value if len(value) <= 100 else value[:100] + "...")


def normalise_content_id(value: str) -> str:
    """`<abc@host>` → `abc@host`: Content-ID and `start` compare without their brackets (RFC 2392)."""
    value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        return value[1:-1]
    return value


class Attachment(NamedTuple):
    """One non-SOAP part: its Content-ID (without brackets), Content-Type, and bytes as received."""

    content_id: str | None
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class MimePart:
    """One body part of a multipart message; `start:end` locates `data` in the whole body."""

    headers: tuple[tuple[str, str], ...]
    content_type: str
    content_id: str | None
    start: int
    end: int
    data: bytes


@dataclass(frozen=True, slots=True)
class SoapPackage:
    """Where the SOAP envelope is in a message, and what came with it."""

    soap: bytes
    charset: str | None
    attachments: tuple[Attachment, ...] = ()
    xop: bool = False


def unpack(body: bytes, content_type: str | None) -> SoapPackage:
    """Find the SOAP envelope (and attachments) in a message body of the given Content-Type.

    PROTOCOL.md "SOAP message protocol 4.0"; SOAP 1.1 only, so `application/soap+xml`
    (SOAP 1.2) is refused like any other type.
    """
    if content_type is None:
        raise XRoadFault(INVALID_CONTENT_TYPE, "the message has no content type")
    parsed = parse_content_type(content_type)
    if parsed.media_type == TEXT_XML:
        return SoapPackage(body, parsed.param("charset"))
    if parsed.media_type == MULTIPART_RELATED:
        return _unpack_multipart(body, parsed)
    raise XRoadFault(
        INVALID_CONTENT_TYPE,
        f"content type {parsed.media_type} is not accepted (expected {TEXT_XML} or {MULTIPART_RELATED})",
    )


def _unpack_multipart(body: bytes, content_type: ContentType) -> SoapPackage:
    root_type = content_type.param("type")
    if root_type is not None and root_type.lower() not in (TEXT_XML, XOP_XML):
        raise XRoadFault(
            INVALID_CONTENT_TYPE, f"multipart/related of type {_shorten(root_type)} is not SOAP 1.1"
        )
    parts = split_multipart(body, _boundary(content_type))
    index = _root_index(parts, content_type)
    root = parts[index]
    root_content_type = parse_content_type(root.content_type)
    _check_root_type(root_content_type)
    attachments = tuple(
        Attachment(part.content_id, part.content_type, part.data)
        for i, part in enumerate(parts)
        if i != index
    )
    return SoapPackage(
        root.data, root_content_type.param("charset"), attachments, root_content_type.media_type == XOP_XML
    )


def _boundary(content_type: ContentType) -> str:
    boundary = content_type.param("boundary")
    if not boundary:
        raise XRoadFault(INVALID_CONTENT_TYPE, "multipart content type without a boundary")
    if len(boundary) > MAX_BOUNDARY_LENGTH:
        raise XRoadFault(INVALID_CONTENT_TYPE, f"multipart boundary longer than {MAX_BOUNDARY_LENGTH}")
    if not boundary.isascii():
        raise XRoadFault(INVALID_CONTENT_TYPE, "multipart boundary is not ASCII")
    return boundary


def _root_index(parts: Sequence[MimePart], content_type: ContentType) -> int:
    """RFC 2387 §3.2: the root is the part named by `start`, else the first part."""
    if not parts:
        raise XRoadFault(MISSING_SOAP, "the multipart message has no parts")
    start = content_type.param("start")
    if start is None:
        return 0
    wanted = normalise_content_id(start)
    for i, part in enumerate(parts):
        if part.content_id == wanted:
            return i
    raise XRoadFault(MISSING_SOAP, f"no part has the Content-ID {_shorten(start)} named by start")


def _check_root_type(root: ContentType) -> None:
    if root.media_type == TEXT_XML:
        return
    if root.media_type == XOP_XML:
        # XOP §5 / SOAP MTOM §3: the `type` parameter names the packaged document's type. X-Road
        # ignores it (clients send `application/soap+xml` with a SOAP 1.1 envelope); the
        # envelope's own namespace tells SOAP 1.2 apart (soap.py).
        return
    raise XRoadFault(MISSING_SOAP, f"the root part is {root.media_type}, not a SOAP envelope")


def split_multipart(body: bytes, boundary: str) -> list[MimePart]:
    """Split a multipart body into its parts (RFC 2046 §5.1.1), each part's bytes untouched.

    Lenient where senders commonly are: bare LF line ends, transport padding after a
    delimiter, a preamble, and a missing epilogue. Not lenient about a missing close
    delimiter in a client's message (see :func:`with_close_delimiter` for services' answers).
    """
    return _split(body, boundary, require_close=True)[0]


def with_close_delimiter(body: bytes, content_type: str) -> bytes:
    """A service's multipart answer with its close delimiter, added if it lacks one.

    X-Road tolerates a service answer whose body ends without `--boundary--`: the last part
    runs to the end. Completing it here, before it is checked, signed and logged, keeps every
    later reader strict. Other content types come back unchanged.
    """
    parsed = parse_content_type(content_type)
    if parsed.media_type != MULTIPART_RELATED:
        return body
    boundary = _boundary(parsed)
    if _split(body, boundary, require_close=False)[1]:
        return body
    return body + b"\r\n--" + boundary.encode("ascii") + b"--\r\n"


def _split(body: bytes, boundary: str, *, require_close: bool) -> tuple[list[MimePart], bool]:
    """The parts, and whether the close delimiter ended them."""
    dash = b"--" + boundary.encode("ascii")
    delimiter = _next_delimiter(body, dash, 0, first=True)
    if delimiter is None:
        raise XRoadFault(INVALID_CONTENT_TYPE, "multipart body does not contain its boundary")
    parts: list[MimePart] = []
    _, after, closing = delimiter
    while not closing:
        if len(parts) >= MAX_MIME_PARTS:
            raise XRoadFault(INVALID_CONTENT_TYPE, f"multipart message has more than {MAX_MIME_PARTS} parts")
        following = _next_delimiter(body, dash, after, first=False)
        if following is None:
            if require_close:
                raise XRoadFault(INVALID_CONTENT_TYPE, "multipart body ends without its close delimiter")
            parts.append(_parse_part(body, after, len(body)))
            return parts, False
        line_start, next_after, closing = following
        parts.append(_parse_part(body, after, line_start))
        after = next_after
    return parts, True


def _next_delimiter(body: bytes, dash: bytes, pos: int, *, first: bool) -> tuple[int, int, bool] | None:
    """Find the next delimiter line at or after `pos`.

    Returns (where the part before it ends, i.e. before the CRLF that belongs to the
    delimiter; where the next part starts; whether it is the close delimiter).
    """
    found = 0 if first and body.startswith(dash) else _find_line_start(body, dash, pos)
    while found >= 0:
        end_of_dash = found + len(dash)
        part_end = found
        if found > 0 and body[found - 1] == 0x0A:  # the CRLF before the dash belongs to it
            part_end = found - 2 if found > 1 and body[found - 2] == 0x0D else found - 1
        if body.startswith(b"--", end_of_dash):
            return part_end, end_of_dash + 2, True
        eol = body.find(b"\n", end_of_dash)
        if eol >= 0 and not body[end_of_dash:eol].strip(b" \t\r"):
            return part_end, eol + 1, False
        # "--boundary" followed by other text is content, not a delimiter (RFC 2046 §5.1.1).
        found = _find_line_start(body, dash, end_of_dash)
    return None


def _find_line_start(body: bytes, dash: bytes, pos: int) -> int:
    found = body.find(b"\n" + dash, max(pos - 1, 0))
    return found + 1 if found >= 0 else -1


def _parse_part(body: bytes, start: int, end: int) -> MimePart:
    if end < start:  # a delimiter line straight after the previous one: an empty part
        end = start
    if body.startswith(b"\r\n", start) or body.startswith(b"\n", start):
        headers: tuple[tuple[str, str], ...] = ()
        data_start = start + (2 if body[start] == 0x0D else 1)
    else:
        head_end, data_start = _end_of_headers(body, start, end)
        headers = _parse_headers(body[start:head_end])
    data_start = min(data_start, end)
    content_type = "text/plain"  # RFC 2046 §5.1: the default for a part without one
    content_id = None
    for name, value in headers:
        if name == "content-type":
            content_type = value
        elif name == "content-id":
            content_id = normalise_content_id(value)
    return MimePart(headers, content_type, content_id, data_start, end, body[data_start:end])


def _end_of_headers(body: bytes, start: int, end: int) -> tuple[int, int]:
    limit = min(end, start + MAX_PART_HEADER_BYTES)
    crlf = body.find(b"\r\n\r\n", start, limit)
    lf = body.find(b"\n\n", start, limit)
    if crlf >= 0 and (lf < 0 or crlf <= lf):
        return crlf, crlf + 4
    if lf >= 0:
        return lf, lf + 2
    if end - start > MAX_PART_HEADER_BYTES:
        raise XRoadFault(INVALID_CONTENT_TYPE, f"part headers longer than {MAX_PART_HEADER_BYTES} bytes")
    # Headers running into the delimiter: a part with no body (RFC 5322 allows no blank line).
    return end, end


def _parse_headers(block: bytes) -> tuple[tuple[str, str], ...]:
    """RFC 5322 §2.2 header fields, unfolded; names lower-cased, values stripped."""
    headers: list[tuple[str, str]] = []
    for line in block.decode("latin-1").replace("\r\n", "\n").split("\n"):
        if not line:
            continue
        if line[0] in " \t" and headers:
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise XRoadFault(INVALID_CONTENT_TYPE, f"malformed part header {_shorten(line)}")
        headers.append((name.strip().lower(), value.strip()))
    return tuple(headers)


def soap_part_span(body: bytes, content_type: str) -> tuple[int, int]:
    """Where the SOAP part's bytes are in a multipart body, for replacing them in place."""
    parsed = parse_content_type(content_type)
    parts = split_multipart(body, _boundary(parsed))
    root = parts[_root_index(parts, parsed)]
    return root.start, root.end


def replace_soap_part(body: bytes, content_type: str, soap: bytes) -> bytes:
    """The same message with a new SOAP envelope; for `text/xml` simply `soap`.

    Everything but the SOAP part's bytes (preamble, part headers, attachments, boundaries)
    is kept byte for byte: those bytes were hashed and signed as they are.
    """
    parsed = parse_content_type(content_type)
    if parsed.media_type != MULTIPART_RELATED:
        return soap
    if b"--" + _boundary(parsed).encode("ascii") in soap:
        raise ValueError("the new SOAP part contains the multipart boundary")
    start, end = soap_part_span(body, content_type)
    return body[:start] + soap + body[end:]


def build_multipart(
    soap: bytes,
    attachments: Sequence[Attachment],
    *,
    xop: bool = False,
    charset: str = "UTF-8",
    soap_content_id: str = "soap-part",
    boundary: str | None = None,
) -> tuple[bytes, str]:
    """A `multipart/related` message of the SOAP part then the attachments, and its Content-Type.

    Attachment bytes go in unchanged (`Content-Transfer-Encoding: binary`); the boundary
    is chosen so that it occurs in none of them.
    """
    if boundary is None:
        boundary = _fresh_boundary(soap, attachments)
    if xop:
        soap_type = f'{XOP_XML}; charset={charset}; type="{TEXT_XML}"'
        kind = f'type="{XOP_XML}"; start-info="{TEXT_XML}"'
    else:
        soap_type = f"{TEXT_XML}; charset={charset}"
        kind = f'type="{TEXT_XML}"'
    chunks = [_part_head(boundary, soap_type, soap_content_id, first=True), soap]
    for attachment in attachments:
        chunks.append(_part_head(boundary, attachment.content_type, attachment.content_id, first=False))
        chunks.append(attachment.data)
    chunks.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
    content_type = f'{MULTIPART_RELATED}; {kind}; start="<{soap_content_id}>"; boundary="{boundary}"'
    return b"".join(chunks), content_type


def _fresh_boundary(soap: bytes, attachments: Sequence[Attachment]) -> str:
    while True:
        boundary = f"xgate-{uuid.uuid4().hex}"
        marker = boundary.encode("ascii")
        if marker not in soap and all(marker not in a.data for a in attachments):
            return boundary


def _part_head(boundary: str, content_type: str, content_id: str | None, *, first: bool) -> bytes:
    for value in (content_type, content_id or ""):
        if "\r" in value or "\n" in value:
            raise ValueError(f"line break in a part header value {value!r}")
    lines = [f"--{boundary}", f"Content-Type: {content_type}"]
    if content_id is not None:
        lines.append(f"Content-ID: <{content_id}>")
    if not first:
        lines.append("Content-Transfer-Encoding: binary")
    # Every part but the first starts on a new line: that CRLF belongs to its delimiter.
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("latin-1") if first else b"\r\n" + head.encode("latin-1")
