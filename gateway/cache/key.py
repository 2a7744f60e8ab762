"""Cache keys and the person identifiers in a request (sans-IO).

**The key** says "the same question": equal for requests the provider would answer alike,
different otherwise. It is the SHA-256 of a small text made of

- a version tag (`xgate-cache-key/1`), so a change of this recipe never matches old entries;
- the service (all six identifier parts, so a subsystem-less service cannot collide);
- the client subsystem, unless the policy declares the data shared between clients;
- for SOAP: the X-Road represented party (it changes whose data is asked for), the Body's
  element in Canonical XML 2.0 with prefixes rewritten and whitespace-only text dropped
  (W3C "Canonical XML Version 2.0" §2.3 PrefixRewrite and TrimTextNodes: `ns0:` or `tns:`,
  a pretty-printed or a compact body ask the same), and the SHA-256 of each attachment
  in order with its content type;
- for REST: the method, the path after the service (normalised as access rights compare
  it), the query's name=value pairs decoded and sorted, the request body's SHA-256 with its
  Content-Type, and the `Accept` field (it chooses the representation of the answer).

Left out on purpose: what the caller chooses per call without changing the question: the
message id, `userId` and `issue` (and the REST `X-Road-Id`, `X-Road-UserId`, `X-Road-Issue`),
the SOAP protocol version, the requested security server.

**Person identifiers** (for erasure requests: "purge everything about this person") are
every value the request carries that could name a person: the text of each leaf element of
the SOAP Body and each attribute value in it; for REST, each path segment after the service
and each query value, and for a JSON body each string or number in it. They are normalised
(:func:`normalise_identifier`: Unicode NFKC, case-folded, inner whitespace, `-`, `.` and `/`
removed, so `EE-380 0108 5718` and `ee38001085718` are one person) and kept only as keyed
hashes (:func:`subject_token`): the store can find a person's entries when given the person's
identifier, but a stolen database does not list who was asked about. Values shorter than
:data:`MIN_IDENTIFIER_LENGTH` or longer than :data:`MAX_IDENTIFIER_LENGTH` are skipped: they
are flags and counts, or documents, not identifiers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import unicodedata
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, quote, unquote

from lxml import etree

from gateway.ids import ClientId, ServiceId
from gateway.lru import BoundedLru
from gateway.protocol import rest, soap
from gateway.serverconf.access import normalise_path

KEY_VERSION: Final = "xgate-cache-key/1"

SUBJECT_TOKEN_CONTEXT: Final = b"xgate-cache-subject/1"
"""Binds subject tokens to this use, should the secret ever be shared with another purpose."""

MIN_IDENTIFIER_LENGTH: Final = 4
"""Shorter values are flags, counts and codes (`1`, `yes`, `EE`); real person identifiers
(national ids, case numbers) are longer, and tokens of tiny values would match everyone."""

MAX_IDENTIFIER_LENGTH: Final = 128
"""Longer values are texts or documents, not identifiers."""

MAX_SUBJECT_TOKENS: Final = 256
"""Per entry: a request naming more persons than this is a bulk query whose entries are purged
by service or key instead; the bound keeps one entry's token rows small."""

_SEPARATORS: Final = str.maketrans("", "", " \t\r\n-./")

KEY_MEMO_SIZE: Final = 1024
"""SOAP keys remembered by what they are computed from: canonicalising a Body costs more than
the rest of a cache hit's key, and the questions a cache answers recur."""

KEY_MEMO_MAX_BODY_BYTES: Final = 16 * 1024
"""Larger Bodies are not remembered (the memo stays under ~16 MB); their canonicalisation is
small beside their transfer."""

_SOAP_KEYS: Final[BoundedLru[Hashable, str]] = BoundedLru(KEY_MEMO_SIZE)


@dataclass(frozen=True, slots=True)
class CacheKey:
    """A request's cache key (`digest`, hex SHA-256) with the parts an entry is listed by."""

    digest: str
    service: ServiceId
    client: ClientId | None
    """None when the policy shares the data between clients."""


def _service_line(service: ServiceId) -> str:
    parts = (
        service.instance,
        service.member_class,
        service.member_code,
        service.subsystem_code,
        service.service_code,
        service.service_version,
    )
    return json.dumps(parts, ensure_ascii=True)


def _digest(lines: Iterable[str | bytes]) -> str:
    sha = hashlib.sha256()
    for line in lines:
        data = line.encode() if isinstance(line, str) else line
        sha.update(len(data).to_bytes(8, "big"))  # length-prefixed: no two line lists hash alike
        sha.update(data)
    return sha.hexdigest()


def canonical_body(message: soap.SoapMessage) -> bytes:
    """The Body's element as Canonical XML 2.0 with prefixes rewritten and text trimmed."""
    return etree.canonicalize(
        message.body, with_comments=False, strip_text=True, rewrite_prefixes=True
    ).encode()


def soap_key(message: soap.SoapMessage, *, shared: bool) -> CacheKey:
    """The key of a SOAP request (see the module's text for what it covers)."""
    client = None if shared else message.client
    represented = message.represented_party
    attachments = tuple(
        (attachment.content_type.strip().lower(), hashlib.sha256(attachment.data).hexdigest())
        for attachment in message.attachments
    )
    # The canonical form is a function of the Body's serialisation (lxml writes the namespaces
    # in scope with it): the same question asked again is canonicalised once.
    body = etree.tostring(message.body)
    asked = (message.service, client, represented, body, attachments)
    digest = _SOAP_KEYS.get(asked) if len(body) <= KEY_MEMO_MAX_BODY_BYTES else None
    if digest is None:
        lines: list[str | bytes] = [
            KEY_VERSION,
            "soap",
            _service_line(message.service),
            client.to_text() if client is not None else "*",
            json.dumps(list(represented) if represented is not None else None),
            canonical_body(message),
        ]
        for content_type, sha256 in attachments:
            lines += (content_type, sha256)
        digest = _digest(lines)
        if len(body) <= KEY_MEMO_MAX_BODY_BYTES:
            _SOAP_KEYS.put(asked, digest)
    return CacheKey(digest, message.service, client)


def canonical_query(query: str) -> str:
    """The query's pairs, decoded, sorted and re-encoded one way: `b=2&a=1` is `a=1&b=2`."""
    pairs = sorted(parse_qsl(query, keep_blank_values=True))
    return "&".join(f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in pairs)


def rest_key(request: rest.RestRequest, *, shared: bool) -> CacheKey:
    """The key of a REST request (see the module's text for what it covers)."""
    client = None if shared else request.client
    fields = {name.lower(): value for name, value in request.headers}
    path = normalise_path(request.endpoint_path) or request.endpoint_path
    lines: list[str | bytes] = [
        KEY_VERSION,
        "rest",
        _service_line(request.service),
        client.to_text() if client is not None else "*",
        json.dumps(list(request.represented_party) if request.represented_party is not None else None),
        request.method.upper(),
        path,
        canonical_query(request.query),
        fields.get("content-type", "").strip().lower() if request.body else "",
        hashlib.sha256(request.body).hexdigest(),
        fields.get("accept", "").strip(),
    ]
    return CacheKey(_digest(lines), request.service, client)


# --- person identifiers ------------------------------------------------------------------


def normalise_identifier(value: str) -> str | None:
    """One spelling of a value that may name a person, or None if it cannot be one."""
    text = unicodedata.normalize("NFKC", value).casefold().translate(_SEPARATORS)
    if not MIN_IDENTIFIER_LENGTH <= len(text) <= MAX_IDENTIFIER_LENGTH:
        return None
    return text


def subject_token(identifier: str, secret: bytes) -> bytes | None:
    """The keyed hash an entry is found by for an identifier, or None if it is not one.

    HMAC-SHA-256 (RFC 2104) under the store's secret: national ids are a small space, and a
    plain hash of one is found by trying them all.
    """
    normal = normalise_identifier(identifier)
    if normal is None:
        return None
    return hmac.new(secret, SUBJECT_TOKEN_CONTEXT + b"\x00" + normal.encode(), hashlib.sha256).digest()


def subject_tokens(values: Iterable[str], secret: bytes) -> frozenset[bytes]:
    """The tokens of the identifiers among `values`, at most MAX_SUBJECT_TOKENS of them."""
    tokens: set[bytes] = set()
    for value in values:
        token = subject_token(value, secret)
        if token is not None:
            tokens.add(token)
            if len(tokens) >= MAX_SUBJECT_TOKENS:
                break
    return frozenset(tokens)


def soap_identifiers(message: soap.SoapMessage) -> Iterator[str]:
    """The values in a SOAP request's Body that may name a person: leaf texts and attributes."""
    for element in message.body.iter(etree.Element):
        yield from (str(value) for value in element.attrib.values())
        if len(element) == 0 and element.text is not None and element.text.strip():
            yield element.text.strip()


def rest_identifiers(request: rest.RestRequest) -> Iterator[str]:
    """The values in a REST request that may name a person: path segments, query values, JSON leaves."""
    for segment in request.path.split("/"):
        if segment:
            yield unquote(segment)
    for _name, value in parse_qsl(request.query, keep_blank_values=False):
        yield value
    if request.body:
        try:
            leaves = list(_json_leaves(json.loads(request.body)))
        except (ValueError, UnicodeDecodeError, RecursionError):
            return  # not JSON (or nested past Python's limit): its path and query still count
        yield from leaves


def _json_leaves(value: object) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _json_leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _json_leaves(item)
    elif isinstance(value, str):
        yield value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield str(value)
