"""What the log's reads return: a chain's head, stored records and their timestamps (values)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from gateway.crypto.hashtree import Proof
from gateway.messagelog.asice import decode_proof
from gateway.messagelog.crypto_at_rest import EncryptedBody
from gateway.messagelog.packing import BatchTree
from gateway.messagelog.record import LogRecord


class UnreadableRecord(ValueError):
    """A stored row that does not read back as a record (a column of the wrong type or form).

    Names the row, so verification can say which record it could not read instead of failing
    with the reader's own error (issue 9, hole 10)."""

    def __init__(self, node: object, seq: object, reason: str) -> None:
        super().__init__(f"record {seq} of node {node} cannot be read: {reason}")
        self.node = node
        self.seq = seq
        self.reason = reason


@dataclass(frozen=True)
class ChainState:
    """A chain's row: its head, how far it is timestamped, and where purging left its start."""

    gateway: str
    node: str
    head_seq: int
    head_hash: bytes
    stamped_seq: int
    purged_seq: int
    purged_hash: bytes


@dataclass(frozen=True)
class StoredTimestamp:
    """One batch's RFC 3161 token over the hash-tree root of its records' hashes."""

    id: int
    first_seq: int
    last_seq: int
    root: bytes
    token: bytes
    stamped_at: datetime


@dataclass(frozen=True)
class StoredRecord:
    """A record as stored: its place in the chain, its timestamp, its archive state.

    `record.message` is the plaintext body when it was stored in clear or decrypted on reading;
    `encrypted_body` is set whenever the body is stored encrypted.
    """

    seq: int
    node: str
    record: LogRecord
    prev_hash: bytes
    record_hash: bytes
    encrypted_body: EncryptedBody | None = None
    timestamp: StoredTimestamp | None = None
    timestamp_proof_json: str | None = None  # record hash -> stamped root (asice.encode_proof)
    archived_at: datetime | None = None
    archive_id: str | None = None
    log_signature: bytes | None = None  # the owner's signed root over the commit batch (logsig)
    log_signature_proof_json: str | None = None  # record hash -> that root (asice.encode_proof)

    def timestamp_proof(self) -> Proof | None:
        """The path from `record_hash` to the timestamp's root; raises asice.ContainerError if malformed."""
        if self.timestamp_proof_json is None:
            return None
        return decode_proof(self.timestamp_proof_json).steps


class RecordRow(NamedTuple):
    """A `messagelog_records` row as read, column for column (tables.records, without `id`): what
    a verification reads of a record, with nothing built from it that it does not look at.

    The values are the database's: SQLite keeps whatever type was written into a column, so a
    row edited by hand may hold text where bytes belong (whoever reads one checks the types)."""

    gateway: Any
    node: Any
    seq: Any
    prev_hash: Any
    record_hash: Any
    exchange_id: Any
    side: Any
    direction: Any
    kind: Any
    logged_at: Any
    message_id: Any
    client: Any
    service: Any
    user_id: Any
    issue: Any
    represented_party: Any
    content_type: Any
    message: Any
    body_key_id: Any
    body_nonce: Any
    message_sha256: Any
    rest_head: Any
    logged_parts: Any
    manifest: Any
    signed_root_sha256: Any
    proof_json: Any
    ocsp_sha256: Any
    outcome: Any
    fault_detail: Any
    timestamp_id: Any
    timestamp_proof: Any
    archived_at: Any
    archive_id: Any
    log_signature_sha256: Any
    log_signature_proof: Any
    body_codec: Any
    proof_steps: Any
    log_signature_steps: Any


@dataclass
class ChainPage:
    """A page of a chain's rows with what they share, read once for the page: the blobs they
    name (signed roots, OCSP responses, record signatures; unpacked, by digest), their timestamps
    and the trees rebuilt from those batches' leaves (packing.BatchTree), by timestamp id.

    `stored(row)` is the row as a StoredRecord (store.queries), or UnreadableRecord naming it."""

    rows: list[RecordRow]
    blobs: Mapping[bytes, bytes]
    timestamps: Mapping[int, StoredTimestamp]
    trees: Mapping[int, BatchTree]
    stored: Callable[[RecordRow], StoredRecord]
    blob_sha256_hex: dict[bytes, str] = field(default_factory=dict)
    """The SHA-256 (hex) of each blob's bytes as read, filled by whoever hashes one first: a
    batch's records all name the same few blobs."""
