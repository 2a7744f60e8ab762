"""The message log's writer: group commit on the request path, one chain per (gateway, node).

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
import hashlib
import logging
import queue
import threading
import time
from typing import Final

from sqlalchemy.engine import Engine

from gateway.faults import LOGGING_FAILED
from gateway.messagelog.crypto_at_rest import BodyCipher
from gateway.messagelog.logsig import RecordSigner
from gateway.messagelog.record import LogRecord
from gateway.messagelog.store.chain import _ChainAppender
from gateway.tally import COUNT_BOUNDS, SECONDS_BOUNDS, Tally

log = logging.getLogger(__name__)

DEFAULT_WINDOW_SECONDS: Final = 0.0
"""No wait: what arrives while a commit runs makes the next batch (measured through two gateways
at concurrency 32: ~5.6 records a commit). Windows of 5-20 ms gave fuller commits (~9.5 at 10 ms)
but less throughput, the wait costing more than the commits saved."""

DEFAULT_MAX_BATCH: Final = 256
"""A full batch commits at once; a transaction of 256 1-KB records stays a few milliseconds."""


class LoggingFailed(Exception):
    """The record could not be logged; nothing of its batch was written.

    The caller answers with a fault (`fault_code`, PROTOCOL.md "Fault codes") instead of the
    message: an exchange the gateway cannot prove later must not happen.
    """

    fault_code: Final = LOGGING_FAILED


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
        record_signer: RecordSigner | None = None,
    ) -> None:
        """`record_signer` signs each commit's record hashes with the gateway owner's key
        (gateway.messagelog.logsig); without one the records are chained but not signed."""
        if window_seconds < 0 or max_batch < 1:
            raise ValueError("window_seconds must be >= 0 and max_batch >= 1")
        self.gateway = gateway
        self.node = node
        self._window = window_seconds
        self._max_batch = max_batch
        self._appender = _ChainAppender(engine, gateway, node, cipher, record_signer)
        self._arrived: list[_Waiter] = []  # in this iteration of the event loop
        self._queue: queue.SimpleQueue[list[_Waiter] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._carried: list[_Waiter] = []  # the thread's own: beyond max_batch, for the next batch
        self._last_batch_size, self._last_batch_at = 0, 0.0  # the thread's own
        self._closing = False
        self.commits = 0
        """Transactions committed so far: for metrics, and for tests that count batching."""
        self.commit_seconds = Tally(SECONDS_BOUNDS)
        """How long each transaction took in the writer's thread, failed ones too (for metrics)."""
        self.commit_records = Tally(COUNT_BOUNDS)
        """Records per committed transaction (for metrics)."""
        self.head_seq: int | None = None
        """The sequence number of the last record this writer committed (None before its first)."""

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
                    started = time.perf_counter()
                    try:
                        outcome = self._appender.append([record for record, _ in batch])
                    except Exception as exc:
                        outcome = exc
                    took = time.perf_counter() - started
                    loop.call_soon_threadsafe(self._answer, batch, outcome, took)
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

    def _answer(self, batch: list[_Waiter], outcome: int | Exception, seconds: float) -> None:
        self.commit_seconds.observe(seconds)  # counted here, on the loop, where metrics read it
        if isinstance(outcome, Exception):
            log.error("message log write of %d records failed: %s", len(batch), outcome)
            for _, future in batch:
                if not future.done():  # one exception each: a shared one would pile up tracebacks
                    failure = LoggingFailed(f"writing the message log failed: {outcome}")
                    failure.__cause__ = outcome
                    future.set_exception(failure)
            return
        self.commits += 1
        self.commit_records.observe(len(batch))
        self.head_seq = outcome + len(batch) - 1
        for offset, (_, future) in enumerate(batch):
            if not future.done():  # the caller may have been cancelled meanwhile
                future.set_result(outcome + offset)
