"""Appending records to their chain in one transaction under the chain row's lock, and reading
a chain's head."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect, Engine, Row
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlalchemy.sql.compiler import SQLCompiler

from gateway.lru import BoundedLru
from gateway.messagelog.crypto_at_rest import BodyCipher
from gateway.messagelog.db import is_sqlite
from gateway.messagelog.logsig import RecordSigner
from gateway.messagelog.packing import (
    PackedBlob,
    compress_body,
    pack_blob,
    pack_manifest,
    pack_proof,
    pack_steps,
)
from gateway.messagelog.record import GENESIS_HASH, LogRecord, link_hash
from gateway.messagelog.stored import ChainState
from gateway.messagelog.tables import blobs, chains, records

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Prepared:
    """A record's row without its chain position, hashed before the chain is locked."""

    row: dict[str, Any]
    content_digest: bytes
    blobs: dict[bytes, bytes]


def _prepare(
    record: LogRecord, node: str, cipher: BodyCipher | None, blob_digests: dict[bytes, bytes]
) -> _Prepared:
    """`blob_digests` memoises the SHA-256 of the batch's blobs: its records share signed roots."""
    stored_blobs: dict[bytes, bytes] = {}

    def blob(data: bytes | None) -> bytes | None:
        if data is None:
            return None
        digest = blob_digests.get(data)
        if digest is None:
            digest = blob_digests[data] = hashlib.sha256(data).digest()
        stored_blobs[digest] = data
        return digest

    message, key_id, nonce, codec = record.message, None, None, None
    if message is not None and cipher is not None:
        encrypted = cipher.encrypt(message, compress=True)
        message, key_id, nonce, codec = (
            encrypted.ciphertext,
            encrypted.key_id,
            encrypted.nonce,
            encrypted.codec,
        )
    elif message is not None:
        codec, message = compress_body(message)
    proof_steps = pack_proof(hashlib.sha256(record.manifest).digest(), record.proof_json)
    row = {
        "gateway": record.gateway,
        "node": node,
        "exchange_id": record.exchange_id,
        "side": record.side.value,
        "direction": record.direction.value,
        "kind": record.kind.value,
        "logged_at": record.logged_at,
        "message_id": record.message_id,
        "client": record.client,
        "service": record.service,
        "user_id": record.user_id,
        "issue": record.issue,
        "represented_party": record.represented_party,
        "content_type": record.content_type,
        "message": message,
        "body_key_id": key_id,
        "body_nonce": nonce,
        "message_sha256": record.message_sha256,
        "rest_head": record.rest_head,
        "logged_parts": None if record.logged_parts is None else ",".join(record.logged_parts),
        "manifest": pack_manifest(record.manifest, record.content_type),
        "signed_root_sha256": blob(record.signed_root_xml),
        "proof_json": None if proof_steps is not None else record.proof_json,
        "proof_steps": proof_steps,
        "body_codec": codec,
        "ocsp_sha256": blob(record.ocsp_response),
        "outcome": record.outcome,
        "fault_detail": record.fault_detail,
    }
    return _Prepared(row, record.content_digest(), stored_blobs)


_PACKED_BLOBS: Final = 256
"""Blobs remembered packed: the signed roots and OCSP responses of the last few commits."""

_WRITE_ATTEMPTS: Final = 3
"""A connection lost since the last commit, a head moved by another process, then the head read
under the lock: a batch's transaction runs at most this often."""

_LATER_COLUMNS: Final = frozenset({"id", "timestamp_id", "timestamp_proof", "archived_at", "archive_id"})
_RECORD_COLUMNS: Final = tuple(name for name in records.c.keys() if name not in _LATER_COLUMNS)  # noqa: SIM118
"""What the writer inserts: all but the id and what timestamping and archiving set later."""

DriverParameters = Sequence[Any] | Mapping[str, Any]


class DriverStatement:
    """A Core statement compiled once for a dialect, run on the DBAPI cursor.

    The log's writer and timestamper run the same few statements hundreds of times a second.
    Through a SQLAlchemy Connection each execution costs ~0.2 ms of CPU (cache key, parameter
    processing, result set-up), and each row of an executemany ~20 µs, several times the
    database's own work. Compiled once, the SQL and the columns' types (their bind processors,
    e.g. UtcDateTime's on SQLite) are still those of gateway.messagelog.tables.
    """

    def __init__(
        self, statement: sa.ClauseElement, dialect: Dialect, columns: Sequence[str] | None = None
    ) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect, column_keys=columns))
        self.sql: str = compiled.string
        self._positional = dialect.positional
        self._names = tuple(compiled.positiontup or ()) if self._positional else tuple(compiled.binds)
        processors = (
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in self._names
        )
        self._processors = tuple((i, process) for i, process in enumerate(processors) if process is not None)

    def parameters(self, values: Mapping[str, Any]) -> DriverParameters:
        """`values` by bind name, in the driver's form (a tuple for qmark, a dict for pyformat)."""
        bound = [values[name] for name in self._names]
        for i, process in self._processors:
            bound[i] = process(bound[i])
        return tuple(bound) if self._positional else dict(zip(self._names, bound, strict=True))

    def execute(self, cursor: DBAPICursor, values: Mapping[str, Any]) -> None:
        cursor.execute(self.sql, self.parameters(values))

    def executemany(self, cursor: DBAPICursor, rows: Iterable[Mapping[str, Any]]) -> None:
        cursor.executemany(self.sql, [self.parameters(row) for row in rows])  # type: ignore[arg-type]


def _insert_ignoring_conflicts_stmt(dialect: Dialect, table: sa.Table, keys: Sequence[str]) -> sa.Insert:
    insert = sqlite.insert(table) if dialect.name == "sqlite" else postgresql.insert(table)
    return insert.on_conflict_do_nothing(index_elements=list(keys))


class _ChainAppender:
    """The writer's database half, in its thread: one connection kept open, the head in memory.

    Through the pool, one transaction (checkout, BEGIN, SELECT ... FOR UPDATE of the head, three
    writes, COMMIT) cost ~1.5 ms of CPU, more than its records' own work. This writer is its
    chain's only writer in this process, so after the first read it knows the head (seq, hash)
    and reads nothing. It moves the head with one conditional UPDATE (`WHERE head_seq = ... AND
    head_hash = ...`), first in the transaction: that takes the chain row's lock until commit,
    as SELECT ... FOR UPDATE did, and matches no row when another process has moved the head
    (worker processes of one node share its chain); the transaction is then rolled back and run
    again from the head read under the lock. Any failure forgets the head and the connection.
    """

    def __init__(
        self,
        engine: Engine,
        gateway: str,
        node: str,
        cipher: BodyCipher | None,
        record_signer: RecordSigner | None = None,
    ) -> None:
        self._engine = engine
        self._record_signer = record_signer
        self._gateway = gateway
        self._node = node
        self._cipher = cipher
        self._sqlite = is_sqlite(engine)
        dialect = engine.dialect
        this_chain = (
            chains.c.gateway == sa.bindparam("chain_gateway"),
            chains.c.node == sa.bindparam("chain_node"),
        )
        self._read_head = DriverStatement(
            sa.select(chains.c.head_seq, chains.c.head_hash).where(*this_chain).with_for_update(), dialect
        )
        self._new_chain = DriverStatement(
            _insert_ignoring_conflicts_stmt(dialect, chains, ["gateway", "node"]),
            dialect,
            list(chains.c.keys()),
        )
        self._move_head = DriverStatement(
            sa.update(chains)
            .where(
                *this_chain,
                chains.c.head_seq == sa.bindparam("old_seq"),
                chains.c.head_hash == sa.bindparam("old_hash"),
            )
            .values(head_seq=sa.bindparam("new_seq"), head_hash=sa.bindparam("new_hash")),
            dialect,
        )
        self._insert_blobs = DriverStatement(
            _insert_ignoring_conflicts_stmt(dialect, blobs, ["sha256"]),
            dialect,
            ["sha256", "data", "codec", "ref_sha256"],
        )
        self._packed = BoundedLru[bytes, PackedBlob](_PACKED_BLOBS)
        self._insert_records = DriverStatement(records.insert().inline(), dialect, _RECORD_COLUMNS)
        self._dbapi_error: type[Exception] = engine.dialect.loaded_dbapi.Error
        self._connection: Connection | None = None
        self._head: tuple[int, bytes] | None = None

    def append(self, batch: Sequence[LogRecord]) -> int:
        """Write the batch in one transaction; returns the first record's seq."""
        digests: dict[bytes, bytes] = {}
        prepared = [_prepare(record, self._node, self._cipher, digests) for record in batch]
        try:
            # Again after a lost connection, again after a moved head; the last one reads the head locked.
            for _ in range(_WRITE_ATTEMPTS):
                first = self._transaction(prepared)
                if first is not None:
                    return first
            raise RuntimeError(f"chain {self._gateway}/{self._node}: no transaction went through")
        except BaseException:
            self._forget()
            raise

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()  # back to the pool
            self._connection = None

    def _transaction(self, batch: Sequence[_Prepared]) -> int | None:
        """The batch's transaction. None, having written nothing, when it must run again: the
        head was not where it was, or the connection kept since the last commit was lost (the
        database restarted or failed over), which the pool's pre-ping used to catch."""
        kept = self._connection is not None
        if self._connection is None:
            self._connection = self._engine.connect()  # SQLAlchemy's errors on connecting, then the driver's
        connection = self._connection.connection
        cursor = connection.cursor()
        try:
            try:
                if self._sqlite:  # the sqlite3 module leaves BEGIN to us (gateway.db); the write lock now
                    cursor.execute("BEGIN IMMEDIATE")
                if self._head is None:
                    self._head = self._locked_head(cursor)
                seq, prev = head_seq, head_hash = self._head
                rows, found_blobs = [], {}
                for item in batch:
                    seq += 1
                    record_hash = link_hash(prev, item.content_digest)
                    rows.append({**item.row, "seq": seq, "prev_hash": prev, "record_hash": record_hash})
                    prev = record_hash
                    found_blobs.update(item.blobs)
                self._sign_rows(rows, found_blobs)
                self._move_head.execute(
                    cursor,
                    {
                        **self._key(),
                        "old_seq": head_seq,
                        "old_hash": head_hash,
                        "new_seq": seq,
                        "new_hash": prev,
                    },
                )
            except self._dbapi_error as exc:
                if not kept or not self._engine.dialect.is_disconnect(cast(Any, exc), connection, cursor):
                    raise
                log.warning(
                    "message log %s/%s: connection lost, reconnecting: %s", self._gateway, self._node, exc
                )
                self._forget()
                return None
            if cursor.rowcount != 1:  # another process moved the head
                connection.rollback()
                self._head = None
                return None
            if found_blobs:  # sorted: two nodes inserting the same blobs lock them in one order
                blob_rows = self._blob_rows(found_blobs)
                self._insert_blobs.executemany(cursor, (blob_rows[d] for d in sorted(blob_rows)))
            self._insert_records.executemany(cursor, rows)
            connection.commit()
        finally:
            with contextlib.suppress(Exception):  # a lost connection's cursor may not close
                cursor.close()
        self._head = (seq, prev)
        return head_seq + 1

    def _blob_rows(self, found_blobs: Mapping[bytes, bytes]) -> dict[bytes, dict[str, Any]]:
        """The blobs' rows in their stored forms (packing.pack_blob), a signed root's certificate
        as a row of its own; packed once per blob, since each commit names its batch's again."""
        rows: dict[bytes, dict[str, Any]] = {}
        for digest, data in found_blobs.items():
            packed = self._packed.get(digest)
            if packed is None:
                packed = pack_blob(data)
                self._packed.put(digest, packed)
            rows[digest] = {
                "sha256": digest,
                "data": packed.data,
                "codec": packed.codec,
                "ref_sha256": packed.ref,
            }
            if packed.ref is not None:
                rows[packed.ref] = {
                    "sha256": packed.ref,
                    "data": packed.ref_data,
                    "codec": None,
                    "ref_sha256": None,
                }
        return rows

    def _sign_rows(self, rows: list[dict[str, Any]], found_blobs: dict[bytes, bytes]) -> None:
        """The batch's record hashes signed once (gateway.messagelog.logsig), inside its transaction:
        the signature is stored with the rows or not at all, and adds no write of its own."""
        if self._record_signer is None:
            for row in rows:
                row["log_signature_sha256"] = row["log_signature_proof"] = row["log_signature_steps"] = None
            return
        signed_root_xml, proofs = self._record_signer.sign_steps([row["record_hash"] for row in rows])
        digest = hashlib.sha256(signed_root_xml).digest()
        found_blobs[digest] = signed_root_xml
        for row, proof in zip(rows, proofs, strict=True):
            # The proof's text is rebuilt on reading from the record hash and these steps.
            row["log_signature_sha256"], row["log_signature_proof"] = digest, ""
            row["log_signature_steps"] = pack_steps(proof)

    def _locked_head(self, cursor: DBAPICursor) -> tuple[int, bytes]:
        """The head as stored, its row created if new, locked (PostgreSQL: FOR UPDATE; SQLite:
        BEGIN IMMEDIATE holds the database's one write lock)."""
        self._read_head.execute(cursor, self._key())
        row = cursor.fetchone()
        if row is None:
            self._new_chain.execute(
                cursor,
                {
                    "gateway": self._gateway,
                    "node": self._node,
                    "head_seq": 0,
                    "head_hash": GENESIS_HASH,
                    "stamped_seq": 0,
                    "purged_seq": 0,
                    "purged_hash": GENESIS_HASH,
                },
            )
            self._read_head.execute(cursor, self._key())
            row = cursor.fetchone()
            assert row is not None, "the chain row was just inserted"
        return int(row[0]), bytes(row[1])

    def _key(self) -> dict[str, str]:
        return {"chain_gateway": self._gateway, "chain_node": self._node}

    def _forget(self) -> None:
        """After a failure: neither the head nor the connection's state can be trusted."""
        self._head = None
        connection, self._connection = self._connection, None
        if connection is None:
            return
        with contextlib.suppress(Exception):
            connection.invalidate()  # closed for good (rolling back); a new one next time
        with contextlib.suppress(Exception):
            connection.close()


def _insert_ignoring_conflicts(
    connection: Connection, table: sa.Table, rows: list[dict[str, Any]], keys: Sequence[str]
) -> None:
    if rows:
        connection.execute(_insert_ignoring_conflicts_stmt(connection.dialect, table, keys), rows)


def lock_chain(connection: Connection, gateway: str, node: str) -> ChainState:
    """The chain's row, created if new, locked for this transaction (PostgreSQL: FOR UPDATE;
    SQLite: the write transaction already holds the database's one write lock)."""
    query = sa.select(chains).where(chains.c.gateway == gateway, chains.c.node == node).with_for_update()
    row = connection.execute(query).one_or_none()
    if row is None:
        fresh = {
            "gateway": gateway,
            "node": node,
            "head_seq": 0,
            "head_hash": GENESIS_HASH,
            "stamped_seq": 0,
            "purged_seq": 0,
            "purged_hash": GENESIS_HASH,
        }
        _insert_ignoring_conflicts(connection, chains, [fresh], ["gateway", "node"])
        row = connection.execute(query).one()
    return _chain_state(row)


def chain_state(connection: Connection, gateway: str, node: str) -> ChainState | None:
    """The chain's row as this transaction sees it, without locking; None before its first record."""
    query = sa.select(chains).where(chains.c.gateway == gateway, chains.c.node == node)
    row = connection.execute(query).one_or_none()
    return None if row is None else _chain_state(row)


def chain_states(connection: Connection, gateway: str | None = None) -> list[ChainState]:
    """Every chain in the database (of one gateway, when given), by gateway and node."""
    query = sa.select(chains).order_by(chains.c.gateway, chains.c.node)
    if gateway is not None:
        query = query.where(chains.c.gateway == gateway)
    return [_chain_state(row) for row in connection.execute(query).all()]


def predecessor_hash(connection: Connection, chain: ChainState, seq: int) -> bytes | None:
    """The hash record `seq`'s prev_hash must equal: its predecessor's record hash, the purge
    anchor for the first record kept, GENESIS_HASH for the first; None if the predecessor is gone."""
    if seq - 1 == chain.purged_seq:
        return chain.purged_hash
    query = sa.select(records.c.record_hash).where(
        records.c.gateway == chain.gateway, records.c.node == chain.node, records.c.seq == seq - 1
    )
    found = connection.scalar(query)
    return None if found is None else bytes(found)


def _chain_state(row: Row[Any]) -> ChainState:
    return ChainState(
        row.gateway,
        row.node,
        row.head_seq,
        bytes(row.head_hash),
        row.stamped_seq,
        row.purged_seq,
        bytes(row.purged_hash),
    )
