"""Reading the log: a chain's records in order, one record, one exchange, and search."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row

from gateway.messagelog import packing
from gateway.messagelog.crypto_at_rest import BodyCipher, EncryptedBody
from gateway.messagelog.record import OUTCOME_BENEATH, Direction, LoggedPart, LogRecord, MessageKind, Side
from gateway.messagelog.stored import ChainPage, RecordRow, StoredRecord, StoredTimestamp, UnreadableRecord
from gateway.messagelog.tables import blobs, records, timestamps

MAX_SEARCH_LIMIT: Final = 1000
"""A search answers a person; more than this is an export, which the archives are for."""


RECENT_FIRST_SPANS: Final = (timedelta(days=1), timedelta(days=8), timedelta(days=64))
"""How far back a search on two or more filters looks first, then next, before it looks at all.

No one index yields such a search newest first: the database combines two indexes' whole
ranges (a client's and a service's rows over the whole log) and sorts what both have, or walks
one newest first and skips the other's misses; with 1 million records either took ~160-220 ms
on PostgreSQL.  Bounded to the last day, the same combination reads a day's worth of both
ranges; widened only when the day holds fewer than a page, the answer is the same, and the
officer's searches are nearly always about recent traffic (docs/messagelog-storage.md).
PostgreSQL only: SQLite walks one index newest first and checks the other filter row by row,
which a span does not shorten (the spans cost it ~1.3 x)."""

_IN_CHUNK: Final = 500
"""Values per IN (...) list: far below SQLite's 32766 bound parameters, still few round trips."""


def read_chain(
    connection: Connection,
    gateway: str,
    node: str,
    *,
    after_seq: int,
    limit: int,
    cipher: BodyCipher | None = None,
) -> list[StoredRecord]:
    """Up to `limit` records of one chain with seq > `after_seq`, in chain order."""
    query = (
        sa.select(records)
        .where(records.c.gateway == gateway, records.c.node == node, records.c.seq > after_seq)
        .order_by(records.c.seq)
        .limit(limit)
    )
    return _load(connection, connection.execute(query).all(), cipher)


_ROW_COLUMNS: Final = tuple(records.c[name] for name in RecordRow._fields)
"""The columns of a RecordRow, in its order."""


def read_chain_page(
    connection: Connection,
    gateway: str,
    node: str,
    *,
    after_seq: int,
    limit: int,
    cipher: BodyCipher | None = None,
) -> ChainPage:
    """What :func:`read_chain` reads, as rows and the blobs and timestamps they share, read once
    for the page: log verification checks a row against them without building its records
    (gateway.messagelog.verify.ChainVerifier.check_row); `page.stored(row)` builds one."""
    query = (
        sa.select(*_ROW_COLUMNS)
        .where(records.c.gateway == gateway, records.c.node == node, records.c.seq > after_seq)
        .order_by(records.c.seq)
        .limit(limit)
    )
    # SQLAlchemy's rows as they come: RecordRow's names in its order, and no copy made of each.
    rows = cast(list[RecordRow], connection.execute(query).all())
    found_blobs, found_timestamps, trees = _shared(connection, rows)
    return ChainPage(
        rows,
        found_blobs,
        found_timestamps,
        trees,
        lambda row: _readable(row, found_blobs, found_timestamps, trees, cipher),
    )


def get_record(
    engine: Engine, gateway: str, node: str, seq: int, *, cipher: BodyCipher | None = None
) -> StoredRecord | None:
    query = sa.select(records).where(
        records.c.gateway == gateway, records.c.node == node, records.c.seq == seq
    )
    with engine.connect() as connection:
        found = _load(connection, connection.execute(query).all(), cipher)
    return found[0] if found else None


def get_exchange(engine: Engine, exchange_id: str, *, cipher: BodyCipher | None = None) -> list[StoredRecord]:
    """The records of one exchange (request, response, faults), in the order they were logged."""
    query = (
        sa.select(records)
        .where(records.c.exchange_id == exchange_id)
        .order_by(records.c.logged_at, records.c.node, records.c.seq)
    )
    with engine.connect() as connection:
        return _load(connection, connection.execute(query).all(), cipher)


def search(
    engine: Engine,
    *,
    gateway: str | None = None,
    message_id: str | None = None,
    client: str | None = None,
    service: str | None = None,
    user_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    outcome: str | None = None,
    limit: int = 50,
    offset: int = 0,
    cipher: BodyCipher | None = None,
) -> list[StoredRecord]:
    """The security officer's search: records matching every given filter, newest first.

    `client` and `service` are identifiers' text forms as logged, matched as a whole or as the
    start of a longer identifier: a member's matches each of its subsystems, a service without
    its version every version. `since` is inclusive and `until` exclusive, on `logged_at`;
    `outcome` is one outcome, or `P.*` for P and every outcome beneath it (record.OUTCOME_BENEATH).
    """
    if not 1 <= limit <= MAX_SEARCH_LIMIT or offset < 0:
        raise ValueError(f"limit must be 1..{MAX_SEARCH_LIMIT} and offset >= 0")
    conditions: list[sa.ColumnElement[bool]] = []
    for column, value in (
        (records.c.gateway, gateway),
        (records.c.message_id, message_id),
        (records.c.user_id, user_id),
    ):
        if value is not None:
            conditions.append(column == value)
    if outcome is not None:
        conditions.append(_outcome_condition(outcome))
    for column, value, most_parts in ((records.c.client, client, 4), (records.c.service, service, 6)):
        if value is not None:
            conditions.append(_identifier_or_beneath(column, value, most_parts))
    if until is not None:
        conditions.append(records.c.logged_at < until)
    filters = sum(value is not None for value in (user_id, outcome, client, service))
    anchor = until or datetime.now(UTC)
    combined = filters >= 2 and message_id is None  # a message id is narrow enough alone
    spans = RECENT_FIRST_SPANS if combined and engine.dialect.name == "postgresql" else ()
    with engine.connect() as connection:
        for span in spans:
            start = anchor - span
            if since is not None and since >= start:
                break  # the search's own bound is narrower: look there at once
            rows = connection.execute(_page(conditions, start, limit, offset)).all()
            if len(rows) == limit:  # the span holds the page; everything outside it is older
                return _load(connection, rows, cipher)
        return _load(connection, connection.execute(_page(conditions, since, limit, offset)).all(), cipher)


def _page(
    conditions: list[sa.ColumnElement[bool]], since: datetime | None, limit: int, offset: int
) -> sa.Select[Any]:
    """The search's page of records logged at or after `since` (if any), newest first."""
    bounded = conditions if since is None else [*conditions, records.c.logged_at >= since]
    return (
        sa.select(records)
        .where(*bounded)
        .order_by(records.c.logged_at.desc(), records.c.id.desc())
        .limit(limit)
        .offset(offset)
    )


def _outcome_condition(outcome: str) -> sa.ColumnElement[bool]:
    """One outcome, or `P.*`: P and every outcome beneath it."""
    if not outcome.endswith(OUTCOME_BENEATH):
        return records.c.outcome == outcome
    return _itself_or_beneath(records.c.outcome, outcome.removesuffix(OUTCOME_BENEATH), ".")


def _identifier_or_beneath(column: sa.Column[Any], text: str, most_parts: int) -> sa.ColumnElement[bool]:
    """`text` itself, or an identifier one or more "/"-parts longer (a member's subsystem, a
    service's version). A full-length identifier is compared as a whole, on the column's index."""
    if text.count("/") + 1 >= most_parts:
        return column == text
    return _itself_or_beneath(column, text, "/")


def _itself_or_beneath(column: sa.Column[Any], value: str, separator: str) -> sa.ColumnElement[bool]:
    """`value`, or what starts with `value` and `separator`. Compared by substr, not LIKE: SQLite's
    LIKE ignores case (identifiers and fault codes do not) and `_`, which snake-case fault codes
    contain, is its wildcard; a substring compares exactly on SQLite and PostgreSQL alike."""
    prefix = value + separator
    return sa.or_(column == value, sa.func.substr(column, 1, len(prefix)) == prefix)


def _load(connection: Connection, rows: Sequence[Row[Any]], cipher: BodyCipher | None) -> list[StoredRecord]:
    """Rows to records, with their shared blobs and timestamps fetched once per call."""
    found_blobs, found_timestamps, trees = _shared(connection, rows)
    return [_readable(row, found_blobs, found_timestamps, trees, cipher) for row in rows]


def _shared(
    connection: Connection, rows: Sequence[Row[Any] | RecordRow]
) -> tuple[dict[bytes, bytes], dict[int, StoredTimestamp], dict[int, packing.BatchTree]]:
    """The blobs (by digest), timestamps and timestamp trees (by id) that `rows` name."""
    digests = {
        bytes(d)
        for row in rows
        for d in (row.signed_root_sha256, row.ocsp_sha256, row.log_signature_sha256)
        if isinstance(d, bytes | bytearray | memoryview)
    }
    found_blobs = _read_blobs(connection, digests)
    ids = {row.timestamp_id for row in rows if isinstance(row.timestamp_id, int)}
    found_timestamps: dict[int, StoredTimestamp] = {}
    trees: dict[int, packing.BatchTree] = {}
    for chunk in _chunks(ids):
        for r in connection.execute(sa.select(timestamps).where(timestamps.c.id.in_(chunk))):
            found_timestamps[r.id] = StoredTimestamp(
                r.id, r.first_seq, r.last_seq, bytes(r.root), bytes(r.token), r.stamped_at
            )
            if r.leaves is not None:
                with contextlib.suppress(ValueError):  # stored leaves that are not digests: no proofs
                    trees[r.id] = packing.batch_tree(bytes(r.leaves))
    return found_blobs, found_timestamps, trees


def _read_blobs(connection: Connection, digests: Collection[bytes]) -> dict[bytes, bytes]:
    """The blobs by digest, unpacked (packing.unpack_blob), with the certificates they refer to.

    A blob whose stored form cannot be read back is left out: it reads as empty (:func:`_blob`),
    so verification reports the record's signature as it would a blob gone missing."""
    stored = {
        bytes(r.sha256): (r.codec, bytes(r.data), None if r.ref_sha256 is None else bytes(r.ref_sha256))
        for chunk in _chunks(digests)
        for r in connection.execute(sa.select(blobs).where(blobs.c.sha256.in_(chunk)))
    }
    refs = {ref for _, _, ref in stored.values() if ref is not None} - stored.keys()
    referred = {
        bytes(r.sha256): bytes(r.data)
        for chunk in _chunks(refs)
        for r in connection.execute(sa.select(blobs.c.sha256, blobs.c.data).where(blobs.c.sha256.in_(chunk)))
    }
    found: dict[bytes, bytes] = {}
    for digest, (codec, data, ref) in stored.items():
        ref_data = None if ref is None else referred.get(ref, stored.get(ref, (None, None, None))[1])
        try:
            found[digest] = packing.unpack_blob(codec, data, ref_data)
        except ValueError:
            continue
    return found


def _readable(
    row: Row[Any] | RecordRow,
    found_blobs: Mapping[bytes, bytes],
    found_timestamps: Mapping[int, StoredTimestamp],
    trees: Mapping[int, packing.BatchTree],
    cipher: BodyCipher | None,
) -> StoredRecord:
    """:func:`_stored`, or UnreadableRecord naming the row when a column is not what it must be.

    SQLite keeps whatever type was written into a column, so a row edited by hand can hold
    text where bytes belong; that is a finding about the record, not a crash of the reader.
    """
    try:
        return _stored(row, found_blobs, found_timestamps, trees, cipher)
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise UnreadableRecord(row.node, row.seq, f"{type(exc).__name__}: {exc}") from exc


def _stored(
    row: Row[Any] | RecordRow,
    found_blobs: Mapping[bytes, bytes],
    found_timestamps: Mapping[int, StoredTimestamp],
    trees: Mapping[int, packing.BatchTree],
    cipher: BodyCipher | None,
) -> StoredRecord:
    """The record a row holds, in either layout (tables.py): lean forms are rebuilt here."""
    message = None if row.message is None else bytes(row.message)
    encrypted = None
    if row.body_key_id is not None and message is not None:
        encrypted = EncryptedBody(row.body_key_id, bytes(row.body_nonce), message, row.body_codec)
        message = None if cipher is None else cipher.decrypt(encrypted, row.message_sha256)
    elif message is not None:
        message = _decompressed(row.body_codec, message)
    manifest = packing.unpack_manifest(bytes(row.manifest), row.content_type)
    proof_json = row.proof_json
    if row.proof_steps is not None:
        proof_json = packing.unpack_proof(hashlib.sha256(manifest).digest(), bytes(row.proof_steps))
    record_hash = bytes(row.record_hash)
    log_signature_proof = row.log_signature_proof
    if log_signature_proof == "" and row.log_signature_steps is not None:
        log_signature_proof = packing.unpack_proof(record_hash, bytes(row.log_signature_steps))
    timestamp = None if row.timestamp_id is None else found_timestamps.get(row.timestamp_id)
    timestamp_proof = row.timestamp_proof
    if timestamp_proof == "" and timestamp is not None and timestamp.id in trees:
        timestamp_proof = _timestamp_proof(trees[timestamp.id], row.seq - timestamp.first_seq)
    record = LogRecord(
        gateway=row.gateway,
        exchange_id=row.exchange_id,
        side=Side(row.side),
        direction=Direction(row.direction),
        kind=MessageKind(row.kind),
        logged_at=row.logged_at,
        message_id=row.message_id,
        client=row.client,
        service=row.service,
        user_id=row.user_id,
        issue=row.issue,
        represented_party=row.represented_party,
        content_type=row.content_type,
        message=message,
        manifest=manifest,
        signed_root_xml=_blob(found_blobs, row.signed_root_sha256),
        proof_json=proof_json,
        ocsp_response=_blob(found_blobs, row.ocsp_sha256),
        outcome=row.outcome,
        fault_detail=row.fault_detail,
        message_sha256=row.message_sha256,
        rest_head=None if row.rest_head is None else bytes(row.rest_head),
        logged_parts=_logged_parts(row.logged_parts),
    )
    return StoredRecord(
        seq=row.seq,
        node=row.node,
        record=record,
        prev_hash=bytes(row.prev_hash),
        record_hash=record_hash,
        encrypted_body=encrypted,
        timestamp=timestamp,
        timestamp_proof_json=timestamp_proof,
        archived_at=row.archived_at,
        archive_id=row.archive_id,
        log_signature=_blob(found_blobs, row.log_signature_sha256),
        log_signature_proof_json=log_signature_proof,
    )


def _timestamp_proof(tree: packing.BatchTree, index: int) -> str:
    """The proof of the batch's leaf `index`; none ("") for a record outside its batch (renumbered
    or copied rows), which verification then names as a record without a valid timestamp proof."""
    try:
        return tree.proof_text(index)
    except ValueError:
        return ""


def _decompressed(codec: str | None, stored: bytes) -> bytes:
    """The body a row holds in clear; a compressed body that does not decompress reads as its
    stored bytes, so verification names it as a body that does not match its digest (as it
    would an altered uncompressed body) rather than the row as unreadable."""
    try:
        return packing.decompress_body(codec, stored)
    except ValueError:
        return stored


def _logged_parts(text: str | None) -> tuple[LoggedPart, ...] | None:
    """The stored `logged_parts` (chain.py writes them comma-separated); None for an older record."""
    if text is None:
        return None
    return tuple(LoggedPart(name) for name in text.split(",") if name)


def _blob(found: Mapping[bytes, bytes], digest: bytes | None) -> bytes | None:
    """The blob's bytes; a blob gone missing reads as empty, so the record's hash shows it."""
    if digest is None:
        return None
    return found.get(bytes(digest), b"")


def _chunks(values: Collection[Any]) -> Iterable[list[Any]]:
    ordered = sorted(values)
    for start in range(0, len(ordered), _IN_CHUNK):
        yield ordered[start : start + _IN_CHUNK]
