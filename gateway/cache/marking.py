"""How an answer from the cache says so (sans-IO): HTTP fields, and a SOAP header block.

Every answer served from the cache carries

    XGate-Cache: <hit|stale>; age=<seconds>; original-id=<message id>; stored-at=<RFC 3339>
    Age: <seconds>

`hit`: a copy young enough to be served without asking the provider (policy TTL); `stale`:
served because the provider could not answer. `Age` is RFC 9111 §5.1's field, whole seconds
since the answer was stored, so HTTP tooling understands it too. `original-id` is the message
id of the answer as the provider signed it, which finds its message-log record. A value
that is not an RFC 9110 token (§5.6.2) is sent as a quoted-string (§5.6.4).

SOAP answers also carry, as the last block of their Header, the same facts in an element of
xgate's own namespace :data:`CACHE_NS`:

    <xc:cache xmlns:xc="urn:xgate:cache:1" status="stale" age="42"
              originalId="..." storedAt="2026-12-06T12:30:00Z"/>

so a SOAP client that sees only the envelope (zeep's `raw_response` aside) can tell.

Marking changes the bytes the client receives, not the evidence: the store keeps the whole
transport message as the provider signed it (payload and signature), so the stored answer
still verifies; the marked copy is what this gateway answered, and is logged as such.
"""

from __future__ import annotations

import enum
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from lxml import etree

from gateway.protocol import mime
from gateway.protocol.schema import SOAP_ENV_NS
from gateway.protocol.transport import Headers
from gateway.xmlsafe import parse_xml

CACHE_NS: Final = "urn:xgate:cache:1"
CACHE_PREFIX: Final = "xc"
CACHE_ELEMENT: Final = f"{{{CACHE_NS}}}cache"

HEADER_CACHE: Final = "XGate-Cache"
HEADER_AGE: Final = "Age"

_HEADER: Final = f"{{{SOAP_ENV_NS}}}Header"
_BODY: Final = f"{{{SOAP_ENV_NS}}}Body"
_TOKEN_RE: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_PARAM_RE: Final = re.compile(r'\s*([a-z-]+)=("(?:[^"\\]|\\.)*"|[^;\s]*)\s*')


class CacheStatus(enum.StrEnum):
    HIT = "hit"
    STALE = "stale"


class MarkError(ValueError):
    """An `XGate-Cache` value or SOAP block that does not follow the format above."""


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_rfc3339(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError as error:
        raise MarkError(f"stored-at {text!r} is not an RFC 3339 time") from error


def _quoted(value: str) -> str:
    if _TOKEN_RE.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquoted(value: str) -> str:
    if value.startswith('"'):
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


@dataclass(frozen=True, slots=True)
class CacheMark:
    """The facts an answer from the cache states about itself."""

    status: CacheStatus
    age_seconds: int
    original_id: str
    stored_at: datetime

    @classmethod
    def of(cls, status: CacheStatus, original_id: str, stored_at: datetime, now: datetime) -> CacheMark:
        age = max(0, int((now - stored_at).total_seconds()))
        return cls(status, age, original_id, stored_at)

    def header_value(self) -> str:
        return (
            f"{self.status.value}; age={self.age_seconds}; original-id={_quoted(self.original_id)};"
            f" stored-at={rfc3339(self.stored_at)}"
        )

    def http_fields(self) -> Headers:
        return ((HEADER_CACHE, self.header_value()), (HEADER_AGE, str(self.age_seconds)))

    @classmethod
    def parse(cls, value: str) -> CacheMark:
        """Read an `XGate-Cache` field value (for clients and tests)."""
        status_text, _, rest = value.partition(";")
        try:
            status = CacheStatus(status_text.strip())
        except ValueError as error:
            raise MarkError(f"unknown cache status {status_text.strip()!r}") from error
        params: dict[str, str] = {}
        for item in _split_params(rest):
            match = _PARAM_RE.fullmatch(item)
            if match is None:
                raise MarkError(f"malformed parameter {item!r}")
            params[match.group(1)] = _unquoted(match.group(2))
        try:
            return cls(status, int(params["age"]), params["original-id"], _parse_rfc3339(params["stored-at"]))
        except (KeyError, ValueError) as error:
            raise MarkError(f"XGate-Cache needs age, original-id and stored-at: {value!r}") from error


def _split_params(text: str) -> list[str]:
    """Split on ';' outside quoted-strings."""
    items: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ";" and not quoted:
            items.append("".join(current))
            current = []
            continue
        current.append(char)
    if "".join(current).strip():
        items.append("".join(current))
    return [item for item in items if item.strip()]


def marked_fields(headers: Headers, mark: CacheMark) -> Headers:
    """An answer's HTTP fields with the cache's own (any the provider sent under those names go)."""
    ours = {HEADER_CACHE.lower(), HEADER_AGE.lower()}
    return tuple((name, value) for name, value in headers if name.lower() not in ours) + mark.http_fields()


def mark_soap(body: bytes, content_type: str, mark: CacheMark) -> bytes:
    """The SOAP answer (text/xml or multipart) with the cache block added to its Header.

    Attachments and the multipart framing stay byte for byte; only the SOAP part is rewritten.
    """
    return _with_block(body, content_type, mark.status.value, str(mark.age_seconds), mark)


def _with_block(body: bytes, content_type: str, status: str, age: str, mark: CacheMark) -> bytes:
    package = mime.unpack(body, content_type)
    envelope = parse_xml(package.soap, charset=package.charset)
    header = envelope.find(_HEADER)
    if header is None:
        header = etree.Element(_HEADER)
        envelope.insert(0, header)
    for old in header.findall(CACHE_ELEMENT):
        header.remove(old)  # a provider cannot pre-mark an answer
    block = etree.SubElement(header, CACHE_ELEMENT, nsmap={CACHE_PREFIX: CACHE_NS})
    block.set("status", status)
    block.set("age", age)
    block.set("originalId", mark.original_id)
    block.set("storedAt", rfc3339(mark.stored_at))
    declared = package.soap.lstrip().startswith(b"<?xml")
    encoding = envelope.getroottree().docinfo.encoding or package.charset or "UTF-8"
    # The bytes keep their encoding (the Content-Type's charset or the declaration's); a
    # declaration is written where there was one, or where the encoding is not UTF-8 (XML 1.0 §4.3.3).
    utf8 = encoding.upper().replace("-", "") in ("UTF8", "USASCII", "ASCII")
    soap = etree.tostring(envelope, xml_declaration=declared or not utf8, encoding=encoding)
    assert isinstance(soap, bytes)  # an encoding was named
    return mime.replace_soap_part(body, content_type, soap)


@dataclass(frozen=True, slots=True)
class SoapMarkTemplate:
    """One stored SOAP answer, marked once with stand-ins for what changes per serving.

    Marking parses and re-serialises the envelope; a copy served many times pays that once:
    the status and age (the only values that differ between servings of one entry) are
    written as stand-ins and swapped for the real ones in the bytes. Both are ASCII tokens,
    so the swap needs no escaping.
    """

    before: bytes
    between: bytes
    after: bytes
    original_id: str
    stored_at: datetime

    @classmethod
    def of(
        cls, body: bytes, content_type: str, original_id: str, stored_at: datetime
    ) -> SoapMarkTemplate | None:
        """The template, or None when the stand-ins do not come out once each, in plain ASCII
        (an unusual encoding): such an answer is marked afresh each time (:func:`mark_soap`)."""
        token = secrets.token_hex(8)
        status, age = f"xgate-status-{token}".encode(), f"xgate-age-{token}".encode()
        facts = CacheMark(CacheStatus.HIT, 0, original_id, stored_at)
        marked = _with_block(body, content_type, status.decode(), age.decode(), facts)
        if marked.count(status) != 1 or marked.count(age) != 1:
            return None
        before, rest = marked.split(status)
        if age not in rest:
            return None  # written in the other order: not what _with_block does
        between, after = rest.split(age)
        return cls(before, between, after, original_id, stored_at)

    def fill(self, mark: CacheMark) -> bytes:
        """The marked answer; `mark` is for this template's entry (its id and stored-at)."""
        if mark.original_id != self.original_id or mark.stored_at != self.stored_at:
            raise ValueError("the mark is for another entry than this template's")
        return b"".join(
            (
                self.before,
                mark.status.value.encode(),
                self.between,
                str(mark.age_seconds).encode(),
                self.after,
            )
        )


def read_soap_mark(body: bytes, content_type: str) -> CacheMark | None:
    """The cache block of a SOAP answer, or None (for clients and tests)."""
    package = mime.unpack(body, content_type)
    return mark_in(parse_xml(package.soap, charset=package.charset))


def mark_in(envelope: etree._Element) -> CacheMark | None:
    """The cache block of a parsed SOAP envelope, or None."""
    block = envelope.find(f"{_HEADER}/{CACHE_ELEMENT}")
    if block is None:
        return None
    try:
        return CacheMark(
            CacheStatus(block.get("status", "")),
            int(block.get("age", "")),
            block.get("originalId", ""),
            _parse_rfc3339(block.get("storedAt", "")),
        )
    except ValueError as error:
        raise MarkError(f"malformed cache block: {error}") from error
