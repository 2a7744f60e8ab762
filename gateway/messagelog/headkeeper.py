"""Writing signed log heads (gateway.messagelog.heads): to the database, to a file outside it
(fsync'd), and to the witness, at an interval and at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.crypto.rootsig import RootSigner
from gateway.messagelog.db import begin_snapshot_read, begin_write
from gateway.messagelog.heads import LogHead, SignedHead, parse_head, sign_head
from gateway.messagelog.record import GENESIS_HASH
from gateway.messagelog.store import chain_state
from gateway.messagelog.tables import heads

log = logging.getLogger(__name__)

Stamp = Callable[[bytes], Awaitable[bytes]]
Witness = Callable[[str], Awaitable[None]]


def append_head_line(path: Path, line: str) -> None:
    """Append one head line and fsync it (and the directory when the file is new)."""
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(descriptor, (line + "\n").encode("utf-8"))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    if new:
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def store_head(engine: Engine, signed: SignedHead) -> None:
    with begin_write(engine) as connection:
        connection.execute(
            sa.insert(heads).values(
                gateway=signed.head.gateway,
                node=signed.head.node,
                seq=signed.head.seq,
                record_hash=signed.head.record_hash,
                signed_at=signed.head.time,
                document=signed.to_line(),
            )
        )


def stored_heads(engine: Engine, gateway: str, node: str) -> list[SignedHead]:
    """The heads the database keeps for a chain, oldest first."""
    query = (
        sa.select(heads.c.document)
        .where(heads.c.gateway == gateway, heads.c.node == node)
        .order_by(heads.c.seq, heads.c.id)
    )
    with engine.connect() as connection:
        return [parse_head(row.document) for row in connection.execute(query)]


class HeadKeeper:
    """Signs the chain's head every `interval_seconds` (when it moved) and at close."""

    def __init__(
        self,
        engine: Engine,
        *,
        gateway: str,
        node: str,
        signer: RootSigner,
        head_file: Path | None,
        interval_seconds: float,
        stamp: Stamp | None = None,
        witness: Witness | None = None,
        audit_head: Callable[[], bytes | None] | None = None,
    ) -> None:
        self._engine = engine
        self.gateway, self.node = gateway, node
        self._signer = signer
        self._head_file = head_file
        self._interval = interval_seconds
        self._stamp = stamp
        self._witness = witness
        self._audit_head = audit_head
        self._last: tuple[int, bytes | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def aclose(self) -> None:
        """Stop the loop and sign the head as it is now: the shutdown head."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.write_now(force=True)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.write_now()
            except Exception as exc:  # the loop must survive one bad round
                self.last_error = str(exc)
                log.exception("writing the log head failed")

    async def write_now(self, *, force: bool = False) -> SignedHead | None:
        """Sign, stamp and keep the head; None when it has not moved since the last one."""
        seq, record_hash = await asyncio.to_thread(self._read_head)
        audit = await asyncio.to_thread(self._audit_head) if self._audit_head is not None else None
        if not force and self._last == (seq, audit):
            return None
        head = LogHead(self.gateway, self.node, seq, record_hash, datetime.now(UTC), audit)
        token = None
        if self._stamp is not None:
            try:
                token = await self._stamp(head.digest())
            except Exception as exc:  # signed without a token is still evidence; the next head is stamped
                self.last_error = f"the head could not be timestamped: {exc}"
                log.warning("log head %s/%s seq %d not timestamped: %s", self.gateway, self.node, seq, exc)
        signed = sign_head(head, self._signer, token)
        await asyncio.to_thread(self._keep, signed)
        self._last = (seq, audit)
        if self._witness is not None:
            try:
                await self._witness(signed.to_line())
            except Exception as exc:  # the file and database hold it; the next head goes again
                self.last_error = f"the witness did not take the head: {exc}"
                log.warning("log head %s/%s seq %d not witnessed: %s", self.gateway, self.node, seq, exc)
        return signed

    def _read_head(self) -> tuple[int, bytes]:
        with begin_snapshot_read(self._engine) as connection:
            state = chain_state(connection, self.gateway, self.node)
        return (0, GENESIS_HASH) if state is None else (state.head_seq, state.head_hash)

    def _keep(self, signed: SignedHead) -> None:
        store_head(self._engine, signed)
        if self._head_file is not None:
            append_head_line(self._head_file, signed.to_line())
