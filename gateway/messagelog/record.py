"""One message-log record and the chain that links records, sans-IO.

A record says what one gateway signed or received: the message (or, when body logging is
off, only the manifest of its parts' digests, which the signature covers), the signature
with its hash-tree proof, the identifiers, and the outcome.  Records of one gateway form a
chain: each record's hash covers the previous record's hash, so a modified, deleted,
inserted or reordered record breaks every hash after it (issue "Tamper evidence").

The record hash covers digests of the bulky parts rather than the bytes themselves, so a
record whose body was not stored (or was encrypted at rest) chains exactly the same way.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring as _json_string  # the C encoder json.dumps uses
from typing import Any, Final

RECORD_FORMAT: Final = "xgate-logrecord/3"
"""Names the serialisation below; a change of fields means a new format name.

/3 added `logged_parts` (which signed parts the log kept, so a part removed later shows).
/2 added `rest_head_sha256` (the signed REST head is logged beside the body); records
already stored in /2 keep hashing as /2 (`LogRecord.logged_parts` None) and verify as before,
with a warning that their completeness cannot be checked. Format /1 was never deployed, so
there is no reader for it: a /1 record would not verify."""

LEGACY_RECORD_FORMAT: Final = "xgate-logrecord/2"
"""Records stored before `logged_parts`: read and verified, never written any more."""

GENESIS_HASH: Final = bytes(32)
"""The `prev_hash` of a chain's first record."""


class Side(enum.StrEnum):
    CONSUMER = "consumer"  # the client's gateway
    PROVIDER = "provider"  # the service's gateway


class Direction(enum.StrEnum):
    REQUEST = "request"
    RESPONSE = "response"


class MessageKind(enum.StrEnum):
    SOAP = "soap"
    REST = "rest"


class LoggedPart(enum.StrEnum):
    """A signed part the log keeps byte for byte: the transport manifest's part names
    (docs/transport.md). SOAP attachments travel inside the `message` part (the multipart
    body as received), so they are logged, or not, with it."""

    MESSAGE = "message"  # the SOAP message (with its attachments), or a REST body
    REST_REQUEST = "rest-request"  # a REST request's signed head
    REST_RESPONSE = "rest-response"  # a REST response's signed head


OUTCOME_OK: Final = "ok"
"""A record's outcome: "ok", or the X-Road fault code of a fault the gateway logged."""

OUTCOME_CACHE_PREFIX: Final = "cache."
"""`cache.hit`/`cache.stale`: an answer the gateway gave from its interface cache (gateway.cache);
such a record's `fault_detail` names the original answer's record (`node:seq`)."""
OUTCOME_CACHE_HIT: Final = OUTCOME_CACHE_PREFIX + "hit"
OUTCOME_CACHE_STALE: Final = OUTCOME_CACHE_PREFIX + "stale"

OUTCOME_BENEATH: Final = ".*"
"""An outcome filter `P.*` matches the outcome P and every outcome beneath it (`P.` then more):
`cache.*` every answer served from the cache, `Server.ServerProxy.ServiceFailed.*` every failure
of a provider's service. Outcomes are dotted names, so the filter needs no other pattern syntax."""


def parts_held(
    direction: Direction, rest_head: bytes | None, message: bytes | None
) -> tuple[LoggedPart, ...]:
    """The parts a record with this head and message holds, in manifest order (head first)."""
    parts: list[LoggedPart] = []
    if rest_head is not None:
        parts.append(LoggedPart.REST_REQUEST if direction is Direction.REQUEST else LoggedPart.REST_RESPONSE)
    if message is not None:
        parts.append(LoggedPart.MESSAGE)
    return tuple(parts)


def _sha256_hex(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def _time(value: dt.datetime) -> str:
    if value.tzinfo is dt.UTC and value.year >= 1000:  # as read back (db.UtcDateTime): the text below
        return value.isoformat(timespec="microseconds")[:-6] + "Z"  # without "+00:00"
    if value.tzinfo is None:
        raise ValueError("log times must be timezone-aware")
    utc = value.astimezone(dt.UTC)
    if utc.year < 1000:  # strftime writes such a year in fewer than four digits: kept as it hashed
        return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"  # the same text, faster


def canonical_json(fields: dict[str, Any]) -> str:
    """`json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`, the same
    text at half the cost for a record's fields (strings, None, lists of strings): every record
    verified is hashed again, and the general encoder was a tenth of verification's time."""
    parts = []
    for key in sorted(fields):
        value = fields[key]
        if value is None:
            text = "null"
        elif type(value) is str:
            text = _json_string(value)
        elif type(value) is list and all(type(item) is str for item in value):
            text = "[" + ",".join(map(_json_string, value)) + "]"
        else:
            return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        name = _JSON_NAMES.get(key)
        if name is None:
            name = _json_string(key) + ":"
            if len(_JSON_NAMES) < MAX_JSON_NAMES:
                _JSON_NAMES[key] = name
        parts.append(name + text)
    return "{" + ",".join(parts) + "}"


def content_json(
    client: str,
    content_type: str,
    direction: str,
    exchange_id: str,
    fault_detail: str | None,
    gateway: str,
    issue: str | None,
    kind: str,
    logged_at: str,
    logged_parts: Sequence[str],
    manifest_sha256: str,
    message_id: str,
    message_sha256: str | None,
    ocsp_response_sha256: str | None,
    outcome: str,
    proof_json: str | None,
    represented_party: str | None,
    rest_head_sha256: str | None,
    service: str,
    side: str,
    signed_root_sha256: str | None,
    user_id: str | None,
) -> str:
    """`canonical_json(LogRecord.content_fields())` of a RECORD_FORMAT record, from its fields'
    values (keys in sorted order) without building the mapping: log verification hashes every
    record again from its row. TypeError when a value is not a str (or None where allowed):
    the caller then takes the general way (the tests hold the two texts equal)."""
    j, n = _json_string, "null"
    return (
        f'{{"client":{j(client)},"content_type":{j(content_type)},"direction":{j(direction)},'
        f'"exchange_id":{j(exchange_id)},"fault_detail":{n if fault_detail is None else j(fault_detail)},'
        f'"format":"{RECORD_FORMAT}","gateway":{j(gateway)},"issue":{n if issue is None else j(issue)},'
        f'"kind":{j(kind)},"logged_at":{j(logged_at)},"logged_parts":[{",".join(map(j, logged_parts))}],'
        f'"manifest_sha256":{j(manifest_sha256)},"message_id":{j(message_id)},'
        f'"message_sha256":{n if message_sha256 is None else j(message_sha256)},'
        f'"ocsp_response_sha256":{n if ocsp_response_sha256 is None else j(ocsp_response_sha256)},'
        f'"outcome":{j(outcome)},"proof_json":{n if proof_json is None else j(proof_json)},'
        f'"represented_party":{n if represented_party is None else j(represented_party)},'
        f'"rest_head_sha256":{n if rest_head_sha256 is None else j(rest_head_sha256)},'
        f'"service":{j(service)},"side":{j(side)},'
        f'"signed_root_sha256":{n if signed_root_sha256 is None else j(signed_root_sha256)},'
        f'"user_id":{n if user_id is None else j(user_id)}}}'
    )


def log_time(value: dt.datetime) -> str:
    """A log time as the record hash covers it (`logged_at`): UTC, microseconds, `Z`."""
    return _time(value)


MAX_JSON_NAMES: Final = 64
"""Field names whose JSON form is kept: a record has some twenty-five."""
_JSON_NAMES: dict[str, str] = {}


@dataclass(frozen=True)
class LogRecord:
    """What the log keeps of one message a gateway signed, received, or answered with a fault.

    `manifest` is the transport manifest (docs/transport.md) whose SHA-256 the signature's
    leaf is: it lists the digest of every part, so it proves the body later even when
    `message` is None. `message` is therefore exactly the bytes of the manifest's `message`
    part (log verification checks the two digests agree): for REST, the body alone. A REST
    message's head (request line and the headers passed on, or status and headers) is the
    manifest's `rest-request`/`rest-response` part, kept byte for byte in `rest_head`
    (gateway.protocol.transport.rest_request_head); it stays when body logging is off, as the
    SOAP header fields do (DESIGN.md "Security rules"). `logged_parts` names the parts whose
    bytes the log kept (the chain covers it, so a body or head removed later shows); None only
    for a record stored before the field existed (LEGACY_RECORD_FORMAT). `signed_root_xml` and `proof_json`
    are the batch signature and this message's path to its root (in the form
    `gateway.messagelog.asice.encode_proof` writes); both are None for an unsigned gateway fault.
    """

    gateway: str  # SecurityServerId text: whose chain this record belongs to
    exchange_id: str  # links a request and its response on this gateway
    side: Side
    direction: Direction
    kind: MessageKind
    logged_at: dt.datetime
    message_id: str
    client: str
    service: str
    user_id: str | None
    issue: str | None
    represented_party: str | None
    content_type: str
    message: bytes | None
    manifest: bytes
    signed_root_xml: bytes | None
    proof_json: str | None
    ocsp_response: bytes | None
    outcome: str = OUTCOME_OK
    fault_detail: str | None = None
    message_sha256: str | None = field(default=None, compare=False)
    rest_head: bytes | None = None
    logged_parts: tuple[LoggedPart, ...] | None = None

    def __post_init__(self) -> None:
        if self.message_sha256 is None and self.message is not None:
            object.__setattr__(self, "message_sha256", _sha256_hex(self.message))
        if self.logged_parts is not None:
            object.__setattr__(self, "logged_parts", tuple(LoggedPart(p) for p in self.logged_parts))

    def with_parts_logged(self) -> LogRecord:
        """The same record stating that every part it holds was logged (what a new record says)."""
        from dataclasses import replace

        return replace(self, logged_parts=self.parts_present())

    def parts_present(self) -> tuple[LoggedPart, ...]:
        """The parts this record holds the bytes of, in manifest order (head first)."""
        return parts_held(self.direction, self.rest_head, self.message)

    def without_body(self) -> LogRecord:
        """The same record with only its body's digest: body logging off (issue "Body logging policy").

        The REST head stays (DESIGN.md "Security rules"), and `logged_parts` says so.
        """
        from dataclasses import replace

        parts = None
        if self.logged_parts is not None:
            parts = tuple(part for part in self.logged_parts if part is not LoggedPart.MESSAGE)
        return replace(self, message=None, message_sha256=self.message_sha256, logged_parts=parts)

    def content_fields(self) -> dict[str, Any]:
        """The fields the chain covers, bulky parts as SHA-256 hex; the order is fixed by canonical JSON.

        A record without `logged_parts` (stored before it existed) keeps its old form, so its
        stored hash still verifies."""
        fields: dict[str, Any] = {
            "format": RECORD_FORMAT if self.logged_parts is not None else LEGACY_RECORD_FORMAT,
            "gateway": self.gateway,
            "exchange_id": self.exchange_id,
            "side": self.side.value,
            "direction": self.direction.value,
            "kind": self.kind.value,
            "logged_at": _time(self.logged_at),
            "message_id": self.message_id,
            "client": self.client,
            "service": self.service,
            "user_id": self.user_id,
            "issue": self.issue,
            "represented_party": self.represented_party,
            "content_type": self.content_type,
            "message_sha256": self.message_sha256,
            "manifest_sha256": _sha256_hex(self.manifest),
            "signed_root_sha256": _sha256_hex(self.signed_root_xml),
            "proof_json": self.proof_json,
            "ocsp_response_sha256": _sha256_hex(self.ocsp_response),
            "rest_head_sha256": _sha256_hex(self.rest_head),
            "outcome": self.outcome,
            "fault_detail": self.fault_detail,
        }
        if self.logged_parts is not None:
            fields["logged_parts"] = [part.value for part in self.logged_parts]
        return fields

    def content_digest(self) -> bytes:
        """SHA-256 of the canonical JSON of :meth:`content_fields` (sorted keys, compact, UTF-8)."""
        return hashlib.sha256(canonical_json(self.content_fields()).encode("utf-8")).digest()


def chain_hash(prev_hash: bytes, record: LogRecord) -> bytes:
    """`SHA-256(prev_hash || content_digest)`: the record's place in its gateway's chain."""
    return link_hash(prev_hash, record.content_digest())


def link_hash(prev_hash: bytes, content_digest: bytes) -> bytes:
    """:func:`chain_hash` from a content digest computed earlier (the log writer hashes content
    before it takes the chain's lock, and only links under it)."""
    if len(prev_hash) != 32 or len(content_digest) != 32:
        raise ValueError("a chain hash is 32 bytes of SHA-256")
    return hashlib.sha256(prev_hash + content_digest).digest()
