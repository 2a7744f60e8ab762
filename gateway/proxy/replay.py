"""Replay protection at the provider: one signed request is served once (issue 9, hole 7).

A signature is accepted for MAX_SIGNING_TIME_SKEW_SECONDS either side of its signing time
(steps.verify_signature); within that window a captured request could be sent again by anyone
holding the consumer gateway's TLS key. The provider therefore remembers, in the database its
nodes share, a key of every request it admits until the signature is too old anyway, and
refuses a second request with the same key (`Server.ServerProxy.DuplicateMessage`).

The key is SHA-256 over what the signature vouches for, never over the signature's bytes: an
ECDSA signature value has a twin (s, n - s) that verifies as well, and XML around the signed
parts may be rewritten, so a key over bytes could be dodged. What is covered: the message's leaf
digest (its manifest: every part), the signed root and signing time (its batch, so the same
bytes sent again later in a new signature are a new request), and its proof (its place in the
batch, so two identical messages signed together are two requests).

Claims are batched like the message log's writer: keys arriving while a claim runs go into the
next transaction, so concurrent requests share one commit; a lone request pays one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from typing import Final, Protocol

from gateway import faults
from gateway.crypto.rootsig import VerifiedRoot
from gateway.faults import XRoadFault
from gateway.protocol.transport import TransportMessage

log = logging.getLogger(__name__)

KEY_PREFIX: Final = b"xgate-replay/1\n"
"""Versions the key and keeps it apart from any other SHA-256 over the same data."""

CLOCK_MARGIN_SECONDS: Final = 60.0
"""Kept this much past the window: the nodes sharing the table may disagree on the time."""

PURGE_INTERVAL_SECONDS: Final = 60.0
"""How often a node deletes expired keys; a table of a few minutes' traffic stays small."""


def replay_key(message: TransportMessage, verified: VerifiedRoot) -> bytes:
    """The request's identity as its signature vouches for it (module docstring)."""
    signature = message.signature
    digest = hashlib.sha256(KEY_PREFIX)
    digest.update(signature.leaf)
    digest.update(verified.root)
    digest.update(verified.signing_time.astimezone(dt.UTC).isoformat().encode("ascii"))
    for step in signature.proof:
        digest.update(step.side.value.encode("ascii") + step.sibling)
    return digest.digest()


def expiry(verified: VerifiedRoot, window_seconds: float) -> dt.datetime:
    """When a request signed then can no longer be accepted by any node: its key may go."""
    return verified.signing_time + dt.timedelta(seconds=window_seconds + CLOCK_MARGIN_SECONDS)


class SeenStore(Protocol):
    """Where keys are claimed (gateway.serverconf.seen.SeenRequests)."""

    def claim(self, keys: list[tuple[bytes, dt.datetime]]) -> set[bytes]: ...

    def purge(self, now: dt.datetime) -> int: ...

    def close(self) -> None: ...


_Waiter = tuple[bytes, dt.datetime, "asyncio.Future[bool]"]


class ReplayGuard:
    """`admit(key, expires_at)`: True the first time a key is claimed by any node, else False."""

    def __init__(self, store: SeenStore) -> None:
        self._store = store
        self._pending: list[_Waiter] = []
        self._draining = False
        self._drainer: asyncio.Task[None] | None = None
        self._closed = False
        # One thread of its own: it keeps its database connection, and claims never overlap.
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay")

    async def first_time(self, key: bytes, expires_at: dt.datetime) -> bool:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._pending.append((key, expires_at, future))
        if not self._draining:
            self._draining = True
            self._drainer = loop.create_task(self._drain())
        return await future

    async def admit(self, key: bytes, expires_at: dt.datetime) -> None:
        """The DuplicateMessage fault for a key seen before; InternalError if it cannot be told."""
        try:
            fresh = await self.first_time(key, expires_at)
        except Exception as exc:  # no check, no service: a replay must not pass for a database error
            log.warning("replay check failed: %s", exc)
            raise XRoadFault(
                faults.SERVER_PROXY_INTERNAL_ERROR, "the replay check is unavailable; try again"
            ) from exc
        if not fresh:
            raise XRoadFault(
                faults.SERVER_PROXY_DUPLICATE_MESSAGE, "this signed request was already received"
            )

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                keys = [(key, expires_at) for key, expires_at, _ in batch]
                try:
                    fresh = await loop.run_in_executor(self._thread, self._store.claim, keys)
                except Exception as exc:
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for key, _, future in batch:
                    won = key in fresh
                    fresh.discard(key)  # a key twice in one batch: the first waiter only
                    if not future.done():
                        future.set_result(won)
        finally:
            self._draining = False

    async def purge(self, now: Callable[[], dt.datetime]) -> int:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._store.purge, now())

    def close(self) -> None:
        """Stop claiming; the store's connection is closed in the thread that used it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._thread.submit(self._store.close)
        self._thread.shutdown(wait=False, cancel_futures=False)
