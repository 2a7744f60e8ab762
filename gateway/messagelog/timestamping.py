"""Batch timestamping of the message log (DESIGN.md "One signer": the same idea timestamps).

Every `interval_seconds` the timestamper takes the chain's records not yet stamped, in order,
builds a hash tree over their record hashes (gateway.crypto.hashtree), and asks a TSA for one
RFC 3161 token over the root. The token is stored once for the batch and each record keeps its
path to the root, so one TSA round trip proves when a whole batch existed. The batch always
ends at the chain head as it was read, so every token also covers the head: the chain up to
it, and hence every earlier record, existed at the token's time.

Stamping goes strictly in chain order, so "how far is it stamped" is one number per chain
(`stamped_seq`). When the TSA fails the records wait; `failing_since` lets the proxy refuse new
requests once that lasts too long (PROTOCOL.md: Server.ClientProxy.LoggingFailed.TimestamperFailed),
and when the TSA answers again the backlog is stamped in bounded batches.

A failing or missing TSA must not cost the gateway more as the backlog grows. With no TSA in the
global configuration nothing is read or hashed. An attempt reads at most `max_batch` records and
builds only their tree (a full batch's tree is kept for the next attempts, which read nothing),
and encodes the records' proofs, the costly part, only once a token has arrived. After a
failure the periodic loop waits twice as long each time, up to MAX_RETRY_DELAY_SECONDS, and
returns to `interval_seconds` at the first success.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.crypto.hashtree import Proof, build_tree
from gateway.faults import TIMESTAMPER_FAILED
from gateway.messagelog.asice import encode_proof
from gateway.messagelog.db import begin_snapshot_read, begin_write
from gateway.messagelog.packing import pack_leaves
from gateway.messagelog.store import DriverStatement, chain_state, lock_chain
from gateway.messagelog.tables import chains, records, timestamps

log = logging.getLogger(__name__)

_T = TypeVar("_T")

DEFAULT_INTERVAL_SECONDS: Final = 5.0
"""One TSA request per 5 s: a remote TSA is not loaded per message, and a record waits little."""

DEFAULT_MAX_BATCH: Final = 10_000
"""Records per token when a backlog is stamped: proofs stay at 14 steps, one transaction bounded."""

DEFAULT_STAMP_TIMEOUT_SECONDS: Final = 60.0
"""A safety net over the caller's own per-TSA timeouts: a hung TSA must count as failing."""

MAX_RETRY_DELAY_SECONDS: Final = 60.0
"""The longest wait between attempts while timestamping fails: a TSA that is back is used within
a minute, and X-Road's own batch timestamper never runs more often than that (its
TimestamperJob's minimum interval), well inside the time the proxy lets failures last."""

NO_AUTHORITY: Final = "the global configuration lists no timestamping authority"

StampFunction = Callable[[bytes], Awaitable[bytes]]
"""`stamp(root_digest) -> TimeStampToken DER`: the RFC 3161 client, trying the TSAs in order."""

AuthorityCheck = Callable[[], bool]
"""Whether there is a TSA to ask at all (the global configuration lists one)."""

Sleep = Callable[[float], Awaitable[None]]


class TimestampingFailed(Exception):
    """The TSA (or storing its token) failed; the records stay unstamped and are retried."""

    fault_code: Final = TIMESTAMPER_FAILED


@dataclass(frozen=True)
class _Unstamped:
    stamped_seq: int  # the watermark the batch continues from
    seqs: list[int]
    hashes: list[bytes]


@dataclass(frozen=True)
class _Tree:
    """The hash tree over a batch of records: its root for the TSA, each record's path to it."""

    root: bytes
    proofs: list[Proof]


@dataclass(frozen=True)
class _Attempt:
    """A full batch whose token did not come: the next attempt asks again over the same tree."""

    unstamped: _Unstamped
    tree: _Tree

    def still_first(self, stamped_seq: int) -> bool:
        """Whether it is still the batch to stamp next: nothing was stamped since (a full
        batch's records are the same however long the backlog behind it grows)."""
        return self.unstamped.stamped_seq == stamped_seq


def _build_tree(record_hashes: list[bytes]) -> _Tree:
    root, proofs = build_tree(record_hashes)
    return _Tree(root, proofs)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class BatchTimestamper:
    """Stamps one (gateway, node) chain's records in batches, periodically or on demand."""

    def __init__(
        self,
        engine: Engine,
        *,
        gateway: str,
        node: str,
        stamp: StampFunction,
        interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
        max_batch: int = DEFAULT_MAX_BATCH,
        stamp_timeout_seconds: float = DEFAULT_STAMP_TIMEOUT_SECONDS,
        clock: Callable[[], datetime] = _utc_now,
        executor: Executor | None = None,
        has_authority: AuthorityCheck | None = None,
        max_retry_delay_seconds: float = MAX_RETRY_DELAY_SECONDS,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if interval_seconds <= 0 or max_batch < 1 or stamp_timeout_seconds <= 0:
            raise ValueError("interval and timeout must be positive, max_batch >= 1")
        self._engine = engine
        self.gateway = gateway
        self.node = node
        self._stamp = stamp
        self._interval = interval_seconds
        self._max_batch = max_batch
        self._timeout = stamp_timeout_seconds
        self._clock = clock
        self._executor = executor
        self._has_authority = has_authority
        self._max_retry_delay = max(interval_seconds, max_retry_delay_seconds)
        self._sleep = sleep
        self._set_proofs = DriverStatement(
            sa.update(records)
            .where(
                records.c.gateway == sa.bindparam("b_gateway"),
                records.c.node == sa.bindparam("b_node"),
                records.c.seq == sa.bindparam("b_seq"),
            )
            .values(timestamp_id=sa.bindparam("b_timestamp"), timestamp_proof=sa.bindparam("b_proof")),
            engine.dialect,
        )
        self._retry: _Attempt | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.failing_since: datetime | None = None
        """When the first of the current run of failures happened; None while stamping works."""
        self.last_error: str | None = None
        self.tokens_stored = 0
        self.stamped_seq: int | None = None
        """How far the chain is stamped, as last read or stamped here (None before the first round)."""
        self.head_seq: int | None = None
        """The chain's head as the last round read it (the writer's own is fresher)."""
        self.last_success_at: float | None = None
        """Unix time of the last round that left nothing it read unstamped (a token stored, or
        nothing waiting): for metrics, so an idle log does not look like a failing TSA."""

    def is_overdue(self, now: datetime, max_failure_seconds: float) -> bool:
        """True once stamping has failed for longer than allowed: refuse new requests."""
        return (
            self.failing_since is not None
            and (now - self.failing_since).total_seconds() > max_failure_seconds
        )

    def start(self) -> None:
        """Run the periodic loop until :meth:`aclose`."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._loop(), name=f"messagelog timestamper {self.node}"
            )

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run_once(self) -> int:
        """Stamp the whole backlog, in batches of at most `max_batch`; returns the records stamped."""
        async with self._lock:
            stamped = 0
            while True:
                count = await self._stamp_batch()
                stamped += count
                if count < self._max_batch:
                    return stamped

    async def stamp_now(self, seq: int) -> None:
        """Make sure record `seq` (already appended) is stamped before returning: for a
        subsystem whose policy wants each exchange timestamped before it is answered."""
        async with self._lock:
            while True:
                state = await self._in_thread(self._read_state)
                if state is not None and state[0] >= seq:
                    return
                if state is None or seq > state[1]:
                    raise ValueError(f"record {seq} is not in the log yet")
                await self._stamp_batch()

    async def _loop(self) -> None:
        delay = self._interval
        while True:
            await self._sleep(delay)
            try:
                await self.run_once()
            except TimestampingFailed:  # logged and tracked in failing_since; retried later
                delay = min(delay * 2, self._max_retry_delay)
            else:
                delay = self._interval

    async def _stamp_batch(self) -> int:
        """Stamp up to `max_batch` unstamped records; 0 when none are waiting."""
        try:
            state = await self._in_thread(self._read_state)
            if state is not None:
                self.stamped_seq, self.head_seq = state
            if state is None or state[0] == state[1]:
                self.last_success_at = time.time()
                return 0
            if self._has_authority is not None and not self._has_authority():
                raise TimestampingFailed(NO_AUTHORITY)  # before reading or hashing anything
            attempt = self._retry if self._retry is not None and self._retry.still_first(state[0]) else None
            if attempt is None:
                unstamped = await self._in_thread(self._read_unstamped)
                if not unstamped.seqs:
                    return 0
                # Thousands of leaves are milliseconds of hashing: not on the event loop.
                attempt = _Attempt(unstamped, await self._in_thread(_build_tree, unstamped.hashes))
            self._retry = attempt if len(attempt.unstamped.seqs) == self._max_batch else None
            async with asyncio.timeout(self._timeout):
                token = await self._stamp(attempt.tree.root)
            stored = await self._in_thread(self._store, attempt.unstamped, attempt.tree, token)
        except Exception as exc:
            self._fail(exc)
            raise TimestampingFailed(f"timestamping the message log failed: {exc}") from exc
        self._retry = None
        self.failing_since = None
        self.last_error = None
        self.last_success_at = time.time()
        if stored:
            self.tokens_stored += 1
            self.stamped_seq = attempt.unstamped.seqs[-1]
        return len(attempt.unstamped.seqs)

    def _fail(self, exc: Exception) -> None:
        if self.failing_since is None:
            self.failing_since = self._clock()
        self.last_error = str(exc) or type(exc).__name__
        log.warning(
            "timestamping %s/%s failed (since %s): %s", self.gateway, self.node, self.failing_since, exc
        )

    async def _in_thread(self, function: Callable[..., _T], *args: object) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    # --- database work, in a thread ------------------------------------------------------

    def _read_state(self) -> tuple[int, int] | None:
        with self._engine.connect() as connection:
            state = chain_state(connection, self.gateway, self.node)
        return None if state is None else (state.stamped_seq, state.head_seq)

    def _read_unstamped(self) -> _Unstamped:
        with begin_snapshot_read(self._engine) as connection:
            state = chain_state(connection, self.gateway, self.node)
            if state is None:
                return _Unstamped(0, [], [])
            rows = connection.execute(
                sa.select(records.c.seq, records.c.record_hash)
                .where(
                    records.c.gateway == self.gateway,
                    records.c.node == self.node,
                    records.c.seq > state.stamped_seq,
                )
                .order_by(records.c.seq)
                .limit(self._max_batch)
            ).all()
        return _Unstamped(state.stamped_seq, [r.seq for r in rows], [bytes(r.record_hash) for r in rows])

    def _store(self, unstamped: _Unstamped, tree: _Tree, token: bytes) -> bool:
        """Store the token and what gives each record its proof; False when another process
        stamped them first.

        The batch's leaves go once into the token's row and each record's proof is rebuilt from
        them on reading (gateway.messagelog.packing), its `timestamp_proof` left empty: ~32 bytes
        a record instead of ~1 KB of JSON. Only seqs without a gap map onto leaves by position;
        a batch with a gap (rows missing from the chain) keeps each record's proof text as before.
        """
        first, last = unstamped.seqs[0], unstamped.seqs[-1]
        contiguous = last - first + 1 == len(unstamped.seqs)
        # Encoded before the transaction: on SQLite it holds the log writer's lock.
        leaves = pack_leaves(unstamped.hashes) if contiguous else None
        proofs = (
            []
            if contiguous
            else [
                encode_proof(leaf, proof) for leaf, proof in zip(unstamped.hashes, tree.proofs, strict=True)
            ]
        )
        root = tree.root
        with begin_write(self._engine) as connection:
            chain = lock_chain(connection, self.gateway, self.node)
            if chain.stamped_seq != unstamped.stamped_seq:
                return False
            inserted = connection.execute(
                sa.insert(timestamps).values(
                    gateway=self.gateway,
                    node=self.node,
                    first_seq=first,
                    last_seq=last,
                    root=root,
                    token=token,
                    stamped_at=self._clock(),
                    leaves=leaves,
                )
            ).inserted_primary_key
            assert inserted is not None
            timestamp_id = inserted[0]
            if contiguous:
                connection.execute(
                    sa.update(records)
                    .where(
                        records.c.gateway == self.gateway,
                        records.c.node == self.node,
                        records.c.seq >= first,
                        records.c.seq <= last,
                    )
                    .values(timestamp_id=timestamp_id, timestamp_proof="")
                )
            else:
                key = {"b_gateway": self.gateway, "b_node": self.node, "b_timestamp": timestamp_id}
                connection.exec_driver_sql(
                    self._set_proofs.sql,
                    [
                        self._set_proofs.parameters({**key, "b_seq": seq, "b_proof": proof})
                        for seq, proof in zip(unstamped.seqs, proofs, strict=True)
                    ],
                )
            connection.execute(
                sa.update(chains)
                .where(chains.c.gateway == self.gateway, chains.c.node == self.node)
                .values(stamped_seq=last)
            )
        return True
