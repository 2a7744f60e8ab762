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
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.crypto.hashtree import DIGEST_SIZE, Proof, ProofStep
from gateway.crypto.hashtree import Side as TreeSide
from gateway.crypto.rootsig import MessageSignature

RECORD_FORMAT: Final = "xgate-logrecord/1"
"""Names the serialisation below; a change of fields means a new format name."""

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


OUTCOME_OK: Final = "ok"
"""A record's outcome: "ok", or the X-Road fault code of a fault the gateway logged."""


def _sha256_hex(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def _time(value: dt.datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("log times must be timezone-aware")
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LogRecord:
    """What the log keeps of one message a gateway signed, received, or answered with a fault.

    `manifest` is the transport manifest (docs/transport.md) whose SHA-256 the signature's
    leaf is: it lists the digest of every part, so it proves the body later even when
    `message` is None. `message` is therefore exactly the bytes of the manifest's `message`
    part (log verification checks the two digests agree). `signed_root_xml` and `proof_json`
    are the batch signature and this message's path to its root (:func:`signature_proof_json`
    writes it); both are None for an unsigned gateway fault.
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

    def __post_init__(self) -> None:
        if self.message_sha256 is None and self.message is not None:
            object.__setattr__(self, "message_sha256", _sha256_hex(self.message))

    def without_body(self) -> LogRecord:
        """The same record with only the digest of its body: body logging off (issue "Body logging policy")."""
        from dataclasses import replace

        return replace(self, message=None, message_sha256=self.message_sha256)

    def content_fields(self) -> dict[str, Any]:
        """The fields the chain covers, bulky parts as SHA-256 hex; the order is fixed by canonical JSON."""
        return {
            "format": RECORD_FORMAT,
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
            "outcome": self.outcome,
            "fault_detail": self.fault_detail,
        }

    def content_digest(self) -> bytes:
        """SHA-256 of the canonical JSON of :meth:`content_fields` (sorted keys, compact, UTF-8)."""
        text = json.dumps(self.content_fields(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).digest()


def chain_hash(prev_hash: bytes, record: LogRecord) -> bytes:
    """`SHA-256(prev_hash || content_digest)`: the record's place in its gateway's chain."""
    return link_hash(prev_hash, record.content_digest())


def link_hash(prev_hash: bytes, content_digest: bytes) -> bytes:
    """:func:`chain_hash` from a content digest computed earlier (the log writer hashes content
    before it takes the chain's lock, and only links under it)."""
    if len(prev_hash) != 32 or len(content_digest) != 32:
        raise ValueError("a chain hash is 32 bytes of SHA-256")
    return hashlib.sha256(prev_hash + content_digest).digest()


# --- hash-tree proofs as stored text ----------------------------------------------------------
#
# A proof is stored as canonical JSON so it can be rechecked with any JSON tool and sha256sum:
#   steps:       [["left"|"right", "<sibling hex>"], ...]  leaf upwards (gateway.crypto.hashtree)
#   proof_json:  {"leaf": "<leaf hex>", "steps": <steps>}   a message's path to its SignedRoot


def proof_steps_json(proof: Proof) -> str:
    """The stored form of a hash-tree proof (a record's path to its timestamped root, for one)."""
    return _canonical([[str(step.side), step.sibling.hex()] for step in proof])


def parse_proof_steps(text: str) -> Proof:
    """Read :func:`proof_steps_json`; raises ValueError on anything else."""
    return _steps(json.loads(text))


def signature_proof_json(signature: MessageSignature) -> str:
    """`LogRecord.proof_json` for a message signed by the batch signer: its leaf and path."""
    steps = [[str(step.side), step.sibling.hex()] for step in signature.proof]
    return _canonical({"leaf": signature.leaf.hex(), "steps": steps})


def message_signature(record: LogRecord) -> MessageSignature | None:
    """The record's batch signature rebuilt from its stored parts; None for an unsigned record.

    Raises ValueError when only one of `signed_root_xml` and `proof_json` is there, or the
    proof is not in the form :func:`signature_proof_json` writes.
    """
    if record.signed_root_xml is None and record.proof_json is None:
        return None
    if record.signed_root_xml is None or record.proof_json is None:
        raise ValueError("a signed record needs both its signed root and its proof")
    value = json.loads(record.proof_json)
    if not isinstance(value, dict) or set(value) != {"leaf", "steps"} or not isinstance(value["leaf"], str):
        raise ValueError('proof_json must be {"leaf": hex, "steps": [...]}')
    leaf = _digest(value["leaf"])
    return MessageSignature(record.signed_root_xml, _steps(value["steps"]), leaf)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _steps(value: Any) -> Proof:
    if not isinstance(value, list):
        raise ValueError("a proof is a list of [side, sibling hex] steps")
    steps: list[ProofStep] = []
    for step in value:
        if not (isinstance(step, list) and len(step) == 2 and all(isinstance(x, str) for x in step)):
            raise ValueError("a proof step is [side, sibling hex]")
        side, sibling = step
        steps.append(ProofStep(TreeSide(side), _digest(sibling)))
    return tuple(steps)


def _digest(text: str) -> bytes:
    value = bytes.fromhex(text)
    if len(value) != DIGEST_SIZE or text != value.hex():
        raise ValueError("a digest is 64 lower-case hex digits")
    return value
