"""The gateway's one signer: concurrent messages share one signature (DESIGN.md "One signer").

Each message's leaf digest waits at most one short window; the digests that arrived in it go
into a hash tree whose root is signed once, and each message gets the signed root with its own
path to it. The window is adaptive: an idle signer (its last batch held one message, or it
signed nothing for a window) signs on the event loop's next iteration, which still gathers
every message that arrived in the current one, so a lone request pays no window; once batches
hold several messages, or a slow key is still signing the last one, it waits the window.

With EC keys the private-key operation is cheap and runs on the event loop; a slow key (large
RSA, an HSM) is given an executor so the loop keeps serving while it signs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import UTC, datetime
from typing import Final

from cryptography import x509

from gateway.crypto.hashtree import DIGEST_SIZE, Proof, build_tree
from gateway.crypto.keys import PrivateKey
from gateway.crypto.rootsig import (
    MessageSignature,
    RootSigner,
    VerifiedRoot,
    verify_message_signature,
)
from gateway.tally import COUNT_BOUNDS, SECONDS_BOUNDS, Tally

__all__ = ["BatchSigner", "MessageSignature", "VerifiedRoot", "verify_message_signature"]

DEFAULT_WINDOW_SECONDS: Final = 0.002
"""Under load: long enough to gather the requests of a busy second (~500/s per core, STACK.md),
short against the tens of ms a queued request waits anyway. An idle signer does not wait it."""

DEFAULT_MAX_BATCH: Final = 512
"""A full batch is signed at once: proofs stay at 9 steps and no message waits behind a flood."""

_Waiter = tuple[bytes, "asyncio.Future[MessageSignature]"]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class BatchSigner:
    """Collects leaf digests and signs their tree's root once per batch.

    A batch closes after one loop iteration when the signer is idle, after `window_seconds`
    when it is busy, and at once when it reaches `max_batch`.
    """

    def __init__(
        self,
        key: PrivateKey,
        cert: x509.Certificate,
        *,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        max_batch: int = DEFAULT_MAX_BATCH,
        executor: Executor | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if window_seconds < 0 or max_batch < 1:
            raise ValueError("window_seconds must be >= 0 and max_batch >= 1")
        self._root_signer = RootSigner(key, cert)
        self._window = window_seconds
        self._max_batch = max_batch
        self._executor = executor
        self._clock = clock
        self._pending: list[_Waiter] = []
        self._timer: asyncio.Handle | None = None
        self._last_batch_size = 0
        self._last_flush_at = float("-inf")
        self._in_flight: set[asyncio.Task[None]] = set()
        self.signatures_made = 0
        """Roots signed so far (one per batch): for metrics, and for tests that count batching."""
        self.batch_sizes = Tally(COUNT_BOUNDS)
        """Messages per batch, for metrics (gateway.metrics)."""
        self.batch_waits = Tally(SECONDS_BOUNDS)
        """How long each batch's first message waited for the batch to close (loop time)."""
        self._opened_at = 0.0

    async def sign(self, leaf_digest: bytes) -> MessageSignature:
        """The signature for one message's leaf digest, once its batch is signed.

        Raises whatever the signing raised; every message of a failed batch gets the same error.
        """
        if not isinstance(leaf_digest, bytes) or len(leaf_digest) != DIGEST_SIZE:
            raise ValueError(f"a leaf digest is {DIGEST_SIZE} bytes of SHA-256")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[MessageSignature] = loop.create_future()
        if not self._pending:
            self._opened_at = loop.time()
        self._pending.append((leaf_digest, future))
        if len(self._pending) >= self._max_batch:
            self._flush()
        elif self._timer is None:
            if self._busy(loop.time()):
                self._timer = loop.call_later(self._window, self._flush)
            else:  # still gathers every message that arrives in this loop iteration
                self._timer = loop.call_soon(self._flush)
        return await future

    def _busy(self, now: float) -> bool:
        """Whether to wait the window: only when messages overlap, so waiting gathers some.

        They do while a slow key still signs the last batch, or when the last batch had
        company and was signed less than a window ago.
        """
        if self._in_flight:
            return True
        return self._last_batch_size > 1 and now - self._last_flush_at < self._window

    async def aclose(self) -> None:
        """Sign what is waiting and let in-flight batches finish, e.g. at shutdown."""
        self._flush()
        while self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if not batch:
            return
        self._last_batch_size = len(batch)
        self._last_flush_at = now = asyncio.get_running_loop().time()
        self.batch_sizes.observe(len(batch))
        self.batch_waits.observe(now - self._opened_at)
        if self._executor is None:
            self._sign_now(batch)
            return
        task = asyncio.get_running_loop().create_task(self._sign_in_executor(batch))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _sign_in_executor(self, batch: list[_Waiter]) -> None:
        leaves = [leaf for leaf, _ in batch]
        try:
            signed = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._sign_batch, leaves
            )
        except asyncio.CancelledError:  # shutting down: nobody may wait forever for this batch
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            _fail(batch, exc)
            return
        self._deliver(batch, signed)

    def _sign_now(self, batch: list[_Waiter]) -> None:
        try:
            signed = self._sign_batch([leaf for leaf, _ in batch])
        except Exception as exc:
            _fail(batch, exc)
            return
        self._deliver(batch, signed)

    def _sign_batch(self, leaves: list[bytes]) -> tuple[bytes, list[Proof]]:
        """Sans-IO part of a batch: the tree, and the root signed at the clock's current time."""
        root, proofs = build_tree(leaves)
        return self._root_signer.sign(root, self._clock()), proofs

    def _deliver(self, batch: list[_Waiter], signed: tuple[bytes, list[Proof]]) -> None:
        signed_root_xml, proofs = signed
        self.signatures_made += 1
        for (leaf, future), proof in zip(batch, proofs, strict=True):
            if not future.done():  # the caller may have been cancelled meanwhile
                future.set_result(MessageSignature(signed_root_xml, proof, leaf))


def _fail(batch: list[_Waiter], exc: Exception) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)
