"""The node's operational monitoring: an exchange observer whose records a thread writes.

`exchange_done` runs on the event loop for every exchange: it appends the record to a bounded
queue and returns (a deque append, thread-safe). The writer's thread wakes every flush interval
(or at once when the node closes), takes what queued and inserts it in batches of up to
`MAX_BATCH`, one transaction each. A full queue drops the new record, counts it and warns (at
most once a minute): an exchange is never slowed down for its monitoring. `close` writes
everything queued before it returns, so every exchange answered before a clean shutdown is in
the database. Records older than the retention period are purged on a schedule.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from typing import Final

from gateway.monitoring.exchange import ExchangeRecord
from gateway.monitoring.operational.db import migrate
from gateway.monitoring.operational.settings import MonitoringSettings
from gateway.monitoring.operational.store import OpMonitorStore

log = logging.getLogger(__name__)

MAX_BATCH: Final = 1000
"""Records per insert transaction: one executemany of a few hundred KB."""

DROP_WARNING_INTERVAL_SECONDS: Final = 60.0


class OperationalMonitor:
    def __init__(self, store: OpMonitorStore, settings: MonitoringSettings, node: str) -> None:
        self.store = store
        self.settings = settings
        self.node = node
        self._queue: collections.deque[ExchangeRecord] = collections.deque()
        self._capacity = settings.queue_size
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.written = 0
        self.dropped = 0
        """Records not kept: the queue was full, the node was closing, or their insert failed."""
        self.write_failures = 0
        self.last_purge: float | None = None
        self._last_drop_warning = 0.0

    @classmethod
    def from_settings(cls, settings: MonitoringSettings, node: str) -> OperationalMonitor:
        """The records' database at its configured place, migrated."""
        migrate(settings.database_url)
        return cls(OpMonitorStore.from_url(settings.database_url), settings, node)

    # --- on the event loop, once per exchange ----------------------------------------------------

    def exchange_done(self, record: ExchangeRecord) -> None:
        if len(self._queue) >= self._capacity or self._stopping:
            self._drop(1, "the queue is full" if not self._stopping else "the node is closing")
            return
        self._queue.append(record)

    def _drop(self, count: int, why: str) -> None:
        self.dropped += count
        now = time.monotonic()
        if now - self._last_drop_warning >= DROP_WARNING_INTERVAL_SECONDS:
            self._last_drop_warning = now
            log.warning("operational monitoring dropped %d record(s) so far: %s", self.dropped, why)

    # --- the writer's thread ---------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="opmon writer", daemon=True)
            self._thread.start()

    async def close(self) -> None:
        """Write everything queued, stop the thread, close the database."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        else:
            await asyncio.to_thread(self._write_queued)
        await asyncio.to_thread(self.store.close)

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.settings.flush_interval_seconds)
            self._write_queued()
        self._write_queued()  # what came before close

    def _write_queued(self) -> None:
        queue = self._queue
        while queue:
            batch = [queue.popleft() for _ in range(min(MAX_BATCH, len(queue)))]
            try:
                self.store.insert(batch, self.node)
            except Exception:  # the database is down or full: these records are lost, counted
                self.write_failures += 1
                log.exception("operational monitoring could not write %d record(s)", len(batch))
                self.dropped += len(batch)
                continue
            self.written += len(batch)

    # --- retention -------------------------------------------------------------------------------

    async def purge_forever(self) -> None:
        """Delete records older than the retention period now, then every purge interval."""
        while True:
            try:
                await self.purge(time.time())
            except Exception:  # the next round tries again; the table only grows meanwhile
                log.exception("purging old operational monitoring records failed")
            await asyncio.sleep(self.settings.purge_interval_seconds)

    async def purge(self, now: float) -> int:
        removed = await asyncio.to_thread(self.store.purge, now - self.settings.retention_days * 86400.0)
        self.last_purge = now
        if removed:
            log.info("operational monitoring: %d record(s) past retention purged", removed)
        return removed

    def health(self) -> dict[str, object]:
        return {
            "queued": len(self._queue),
            "written": self.written,
            "dropped": self.dropped,
            "write_failures": self.write_failures,
            "retention_days": self.settings.retention_days,
            "last_purge": self.last_purge,
        }
