"""The message log's storage: the group-committing writer, reads, search, archiving and purge.

The gateway answers its client only after the exchange is logged, so the log sits on the
request path. :class:`MessageLogWriter` keeps it cheap with group commit: records arriving
while the previous commit runs (or up to a batch's worth) go into one transaction, run in the
writer's own thread, and every `append` of the batch returns once that transaction has
committed. The writer links
each record into its chain (`prev_hash` -> `record_hash`, gateway.messagelog.record) in order,
under the chain row's lock, inside the same transaction as the records: a failed write leaves
nothing behind, and the caller gets :class:`LoggingFailed`.

Chains are per (gateway, node) (see gateway.messagelog.tables): nodes sharing one PostgreSQL
never contend for one chain, and each node's records stay in the order that node logged them.
Worker processes of one node (SO_REUSEPORT) may share its chain: the chain row's lock, taken in
every writing transaction, puts their commits in one order, and a writer that finds the head
moved by another reads it again (:class:`_ChainAppender`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import queue
import threading
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect, Engine, Row
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlalchemy.sql.compiler import SQLCompiler

from gateway.crypto.hashtree import Proof
from gateway.messagelog.asice import decode_proof
from gateway.messagelog.crypto_at_rest import BodyCipher, EncryptedBody
from gateway.messagelog.db import begin_snapshot_read, begin_write, is_sqlite
from gateway.messagelog.record import (
    GENESIS_HASH,
    Direction,
    LogRecord,
    MessageKind,
    Side,
    link_hash,
)
from gateway.messagelog.tables import blobs, chains, records, timestamps
from gateway.protocol.faults import LOGGING_FAILED

log = logging.getLogger(__name__)

DEFAULT_WINDOW_SECONDS: Final = 0.0
"""No wait: what arrives while a commit runs makes the next batch (measured through two gateways
at concurrency 32: ~5.6 records a commit). Windows of 5-20 ms gave fuller commits (~9.5 at 10 ms)
but less throughput, the wait costing more than the commits saved."""

DEFAULT_MAX_BATCH: Final = 256
"""A full batch commits at once; a transaction of 256 1-KB records stays a few milliseconds."""

MAX_SEARCH_LIMIT: Final = 1000
"""A search answers a person; more than this is an export, which the archives are for."""

DEFAULT_PURGE_BATCH: Final = 10_000
"""Records deleted per transaction: on SQLite the log's writer waits for that lock, so a purge
holds it for a fraction of a second at a time, not for the whole backlog at once."""

_IN_CHUNK: Final = 500
"""Values per IN (...) list: far below SQLite's 32766 bound parameters, still few round trips."""


class LoggingFailed(Exception):
    """The record could not be logged; nothing of its batch was written.

    The caller answers with a fault (`fault_code`, PROTOCOL.md "Fault codes") instead of the
    message: an exchange the gateway cannot prove later must not happen.
    """

    fault_code: Final = LOGGING_FAILED


# --- what reads return ---------------------------------------------------------------------


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

    def timestamp_proof(self) -> Proof | None:
        """The path from `record_hash` to the timestamp's root; raises asice.ContainerError if malformed."""
        if self.timestamp_proof_json is None:
            return None
        return decode_proof(self.timestamp_proof_json).steps


# --- the writer ----------------------------------------------------------------------------


_Waiter = tuple[LogRecord, "asyncio.Future[int]"]
_CLOSE: Final = None
"""Put on the writer's queue by `aclose`: commit what came before, then stop."""


class MessageLogWriter:
    """The one writer of a (gateway, node) chain: `append` returns the record's sequence number
    once it is committed; records arriving together share one transaction.

    The transactions run in a thread of the writer's own. Records appended in one iteration of
    the event loop are handed to it together; it commits whatever it has when its previous
    commit ends: group commit with no fixed wait. A commit costs ~0.3 ms of CPU however few
    records it holds (its WAL pages and fsync), so when appends overlap (the last batch had
    company) the thread also waits `window_seconds` for more; a lone request's records are
    committed at once. A thread that stays, rather than a pool's, because each handover to a
    pool cost ~80 µs of CPU, and because it keeps the connection and the chain head
    (:class:`_ChainAppender`).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        gateway: str,
        node: str,
        cipher: BodyCipher | None = None,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        if window_seconds < 0 or max_batch < 1:
            raise ValueError("window_seconds must be >= 0 and max_batch >= 1")
        self.gateway = gateway
        self.node = node
        self._window = window_seconds
        self._max_batch = max_batch
        self._appender = _ChainAppender(engine, gateway, node, cipher)
        self._arrived: list[_Waiter] = []  # in this iteration of the event loop
        self._queue: queue.SimpleQueue[list[_Waiter] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._carried: list[_Waiter] = []  # the thread's own: beyond max_batch, for the next batch
        self._last_batch_size, self._last_batch_at = 0, 0.0  # the thread's own
        self._closing = False
        self.commits = 0
        """Transactions committed so far: for metrics, and for tests that count batching."""

    async def append(self, record: LogRecord) -> int:
        """Log `record`; returns its sequence number once durably committed.

        Raises LoggingFailed when the batch's transaction fails (or the writer is closed), and
        ValueError for a record that is not this chain's or whose digest is not its body's.
        """
        if record.gateway != self.gateway:
            raise ValueError(f"record of gateway {record.gateway!r} given to the writer of {self.gateway!r}")
        if record.message is not None and hashlib.sha256(record.message).hexdigest() != record.message_sha256:
            raise ValueError("message_sha256 is not the digest of the message")
        if self._closing:
            raise LoggingFailed("the message log writer is closed")
        loop = asyncio.get_running_loop()
        if self._thread is None:
            self._loop = loop
            self._thread = threading.Thread(
                target=self._serve, args=(loop,), name=f"messagelog writer {self.node}", daemon=True
            )
            self._thread.start()
        elif loop is not self._loop or not self._thread.is_alive():
            raise LoggingFailed("the message log writer serves the event loop it started on, while it runs")
        future: asyncio.Future[int] = loop.create_future()
        self._arrived.append((record, future))
        if len(self._arrived) == 1:
            loop.call_soon(self._hand_over)
        return await future

    async def aclose(self) -> None:
        """Commit what is waiting and stop; later appends raise LoggingFailed."""
        self._closing = True
        if self._thread is not None:
            self._hand_over()
            self._queue.put(_CLOSE)
            await asyncio.to_thread(self._thread.join)

    def _hand_over(self) -> None:
        """What arrived in this iteration of the event loop goes to the thread together."""
        if self._arrived:
            arrived, self._arrived = self._arrived, []
            self._queue.put(arrived)

    # --- in the writer's thread ---------------------------------------------------------

    def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        closing = False
        try:
            while not closing or self._carried:
                batch, closed = self._take(block=not closing)
                closing = closing or closed
                if batch:
                    outcome: int | Exception
                    try:
                        outcome = self._appender.append([record for record, _ in batch])
                    except Exception as exc:
                        outcome = exc
                    loop.call_soon_threadsafe(self._answer, batch, outcome)
        except RuntimeError:  # the event loop was closed without aclose: nobody is waiting
            log.warning("message log writer %s stopped with its event loop", self.node)
        finally:
            self._appender.close()

    def _take(self, *, block: bool) -> tuple[list[_Waiter], bool]:
        """The next batch, up to max_batch: what was carried over and handed over, and when busy
        what the window brings. True with it once aclose's mark has come."""
        batch = self._carried
        if not batch and block:
            handed = self._queue.get()
            if handed is _CLOSE:
                return [], True
            batch = handed
        now = time.monotonic()
        deadline = now + self._window if self._busy(now) else now
        closing = False
        while len(batch) < self._max_batch:
            try:
                remaining = deadline - time.monotonic()
                handed = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if handed is _CLOSE:
                closing = True
                break
            batch = batch + handed
        batch, self._carried = batch[: self._max_batch], batch[self._max_batch :]
        self._last_batch_size, self._last_batch_at = len(batch), time.monotonic()
        return batch, closing

    def _busy(self, now: float) -> bool:
        """Whether to wait the window: only when appends overlap, so that waiting gathers some.

        They do when the last batch had company and was taken less than a window ago (the rule
        of gateway.crypto.batchsigner).
        """
        return self._last_batch_size > 1 and now - self._last_batch_at < self._window

    # --- back on the event loop ---------------------------------------------------------

    def _answer(self, batch: list[_Waiter], outcome: int | Exception) -> None:
        if isinstance(outcome, Exception):
            log.error("message log write of %d records failed: %s", len(batch), outcome)
            for _, future in batch:
                if not future.done():  # one exception each: a shared one would pile up tracebacks
                    failure = LoggingFailed(f"writing the message log failed: {outcome}")
                    failure.__cause__ = outcome
                    future.set_exception(failure)
            return
        self.commits += 1
        for offset, (_, future) in enumerate(batch):
            if not future.done():  # the caller may have been cancelled meanwhile
                future.set_result(outcome + offset)


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

    message, key_id, nonce = record.message, None, None
    if cipher is not None and message is not None:
        encrypted = cipher.encrypt(message)
        message, key_id, nonce = encrypted.ciphertext, encrypted.key_id, encrypted.nonce
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
        "manifest": record.manifest,
        "signed_root_sha256": blob(record.signed_root_xml),
        "proof_json": record.proof_json,
        "ocsp_sha256": blob(record.ocsp_response),
        "outcome": record.outcome,
        "fault_detail": record.fault_detail,
    }
    return _Prepared(row, record.content_digest(), stored_blobs)


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

    def __init__(self, engine: Engine, gateway: str, node: str, cipher: BodyCipher | None) -> None:
        self._engine = engine
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
            _insert_ignoring_conflicts_stmt(dialect, blobs, ["sha256"]), dialect, ["sha256", "data"]
        )
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
                self._insert_blobs.executemany(
                    cursor, ({"sha256": d, "data": found_blobs[d]} for d in sorted(found_blobs))
                )
            self._insert_records.executemany(cursor, rows)
            connection.commit()
        finally:
            with contextlib.suppress(Exception):  # a lost connection's cursor may not close
                cursor.close()
        self._head = (seq, prev)
        return head_seq + 1

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


# --- reading -------------------------------------------------------------------------------


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

    `client` and `service` are identifiers' text forms as logged; `since` is inclusive and
    `until` exclusive, on `logged_at`.
    """
    if not 1 <= limit <= MAX_SEARCH_LIMIT or offset < 0:
        raise ValueError(f"limit must be 1..{MAX_SEARCH_LIMIT} and offset >= 0")
    conditions: list[sa.ColumnElement[bool]] = []
    for column, value in (
        (records.c.gateway, gateway),
        (records.c.message_id, message_id),
        (records.c.client, client),
        (records.c.service, service),
        (records.c.user_id, user_id),
        (records.c.outcome, outcome),
    ):
        if value is not None:
            conditions.append(column == value)
    if since is not None:
        conditions.append(records.c.logged_at >= since)
    if until is not None:
        conditions.append(records.c.logged_at < until)
    query = (
        sa.select(records)
        .where(*conditions)
        .order_by(records.c.logged_at.desc(), records.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    with engine.connect() as connection:
        return _load(connection, connection.execute(query).all(), cipher)


def _load(connection: Connection, rows: Sequence[Row[Any]], cipher: BodyCipher | None) -> list[StoredRecord]:
    """Rows to records, with their shared blobs and timestamps fetched once per call."""
    digests = {d for row in rows for d in (row.signed_root_sha256, row.ocsp_sha256) if d is not None}
    found_blobs = {
        bytes(r.sha256): bytes(r.data)
        for chunk in _chunks(digests)
        for r in connection.execute(sa.select(blobs).where(blobs.c.sha256.in_(chunk)))
    }
    ids = {row.timestamp_id for row in rows if row.timestamp_id is not None}
    found_timestamps = {
        r.id: StoredTimestamp(r.id, r.first_seq, r.last_seq, bytes(r.root), bytes(r.token), r.stamped_at)
        for chunk in _chunks(ids)
        for r in connection.execute(sa.select(timestamps).where(timestamps.c.id.in_(chunk)))
    }
    return [_stored(row, found_blobs, found_timestamps, cipher) for row in rows]


def _stored(
    row: Row[Any],
    found_blobs: Mapping[bytes, bytes],
    found_timestamps: Mapping[int, StoredTimestamp],
    cipher: BodyCipher | None,
) -> StoredRecord:
    message = None if row.message is None else bytes(row.message)
    encrypted = None
    if row.body_key_id is not None and message is not None:
        encrypted = EncryptedBody(row.body_key_id, bytes(row.body_nonce), message)
        message = None if cipher is None else cipher.decrypt(encrypted, row.message_sha256)
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
        manifest=bytes(row.manifest),
        signed_root_xml=_blob(found_blobs, row.signed_root_sha256),
        proof_json=row.proof_json,
        ocsp_response=_blob(found_blobs, row.ocsp_sha256),
        outcome=row.outcome,
        fault_detail=row.fault_detail,
        message_sha256=row.message_sha256,
        rest_head=None if row.rest_head is None else bytes(row.rest_head),
    )
    timestamp = None if row.timestamp_id is None else found_timestamps.get(row.timestamp_id)
    return StoredRecord(
        seq=row.seq,
        node=row.node,
        record=record,
        prev_hash=bytes(row.prev_hash),
        record_hash=bytes(row.record_hash),
        encrypted_body=encrypted,
        timestamp=timestamp,
        timestamp_proof_json=row.timestamp_proof,
        archived_at=row.archived_at,
        archive_id=row.archive_id,
    )


def _blob(found: Mapping[bytes, bytes], digest: bytes | None) -> bytes | None:
    """The blob's bytes; a blob gone missing reads as empty, so the record's hash shows it."""
    if digest is None:
        return None
    return found.get(bytes(digest), b"")


def _chunks(values: Collection[Any]) -> Iterable[list[Any]]:
    ordered = sorted(values)
    for start in range(0, len(ordered), _IN_CHUNK):
        yield ordered[start : start + _IN_CHUNK]


# --- archiving and retention ---------------------------------------------------------------


def records_to_archive(
    engine: Engine, *, gateway: str, node: str, limit: int, cipher: BodyCipher | None = None
) -> list[StoredRecord]:
    """The oldest timestamped records not yet archived, in chain order, for the archiver.

    Only timestamped records: an archive must prove when its records existed.
    """
    with begin_snapshot_read(engine) as connection:
        state = chain_state(connection, gateway, node)
        if state is None:
            return []
        query = (
            sa.select(records)
            .where(
                records.c.gateway == gateway,
                records.c.node == node,
                records.c.seq > state.purged_seq,
                records.c.seq <= state.stamped_seq,
                records.c.archived_at.is_(None),
            )
            .order_by(records.c.seq)
            .limit(limit)
        )
        return _load(connection, connection.execute(query).all(), cipher)


def mark_archived(
    engine: Engine,
    *,
    gateway: str,
    node: str,
    seqs: Iterable[int],
    archive_name: str,
    at: datetime | None = None,
) -> int:
    """Record that these records are safely in the archive `archive_name`; returns how many.

    Only timestamped, not yet archived records are marked: an archive cannot claim others.
    """
    at = at or datetime.now(UTC)
    marked = 0
    with begin_write(engine) as connection:
        for chunk in _chunks(set(seqs)):
            result = connection.execute(
                sa.update(records)
                .where(
                    records.c.gateway == gateway,
                    records.c.node == node,
                    records.c.seq.in_(chunk),
                    records.c.archived_at.is_(None),
                    records.c.timestamp_id.is_not(None),
                )
                .values(archived_at=at, archive_id=archive_name)
            )
            marked += result.rowcount
    return marked


@dataclass(frozen=True)
class ChainArchive:
    """One chain as the archiver sees it (gateway.messagelog.archive.ArchiveSource)."""

    engine: Engine
    gateway: str
    node: str
    cipher: BodyCipher | None = None

    def records_to_archive(self, limit: int) -> list[StoredRecord]:
        return records_to_archive(
            self.engine, gateway=self.gateway, node=self.node, limit=limit, cipher=self.cipher
        )

    def mark_archived(self, seqs: Iterable[int], archive_name: str) -> int:
        return mark_archived(
            self.engine, gateway=self.gateway, node=self.node, seqs=seqs, archive_name=archive_name
        )


def purge(engine: Engine, older_than: datetime, *, max_records: int = DEFAULT_PURGE_BATCH) -> int:
    """Delete archived records logged before `older_than`; returns how many were deleted.

    Per chain only a prefix goes: records up to the first one that is not archived or not old
    enough, so an unarchived record is never deleted and the chain keeps one start. That start
    (`purged_seq`, `purged_hash`) is kept in the chain's row: verification begins there, and
    deleting more of the start without updating it shows. Signed roots, OCSP responses and
    timestamp tokens that no remaining record needs go with them. Each transaction deletes at
    most `max_records`, so the writer is never held up for long.
    """
    with engine.connect() as connection:
        keys = connection.execute(sa.select(chains.c.gateway, chains.c.node)).all()
    deleted = 0
    for gateway, node in keys:
        while True:
            with begin_write(engine) as connection:
                count = _purge_chain(connection, gateway, node, older_than, max_records)
            if count == 0:
                break
            deleted += count
    return deleted


def _purge_chain(
    connection: Connection, gateway: str, node: str, older_than: datetime, max_records: int
) -> int:
    chain = lock_chain(connection, gateway, node)
    in_chain = (records.c.gateway == gateway, records.c.node == node)
    keep_from = connection.scalar(
        sa.select(records.c.seq)
        .where(
            *in_chain,
            records.c.seq > chain.purged_seq,
            sa.or_(records.c.archived_at.is_(None), records.c.logged_at >= older_than),
        )
        .order_by(records.c.seq)
        .limit(1)
    )
    upto = chain.head_seq if keep_from is None else keep_from - 1
    upto = min(upto, chain.stamped_seq, chain.purged_seq + max_records)
    if upto <= chain.purged_seq:
        return 0
    in_range = (*in_chain, records.c.seq > chain.purged_seq, records.c.seq <= upto)
    last_hash = connection.scalar(sa.select(records.c.record_hash).where(*in_chain, records.c.seq == upto))
    if last_hash is None:
        raise RuntimeError(f"record {upto} of chain {gateway}/{node} is missing: verify the log")
    referenced = connection.execute(
        sa.select(records.c.signed_root_sha256, records.c.ocsp_sha256).where(*in_range).distinct()
    ).all()
    candidates = {bytes(d) for row in referenced for d in row if d is not None}
    deleted = connection.execute(sa.delete(records).where(*in_range)).rowcount
    connection.execute(
        sa.delete(timestamps).where(
            timestamps.c.gateway == gateway, timestamps.c.node == node, timestamps.c.last_seq <= upto
        )
    )
    for chunk in _chunks(candidates):
        connection.execute(
            sa.delete(blobs).where(
                blobs.c.sha256.in_(chunk),
                ~sa.exists().where(records.c.signed_root_sha256 == blobs.c.sha256),
                ~sa.exists().where(records.c.ocsp_sha256 == blobs.c.sha256),
            )
        )
    connection.execute(
        sa.update(chains)
        .where(chains.c.gateway == gateway, chains.c.node == node)
        .values(purged_seq=upto, purged_hash=bytes(last_hash))
    )
    return deleted
