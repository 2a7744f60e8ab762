"""Admission control: how many exchanges an interface serves at once, how many body bytes a gateway holds.

Without it a busy gateway queues without limit: at 1,024 concurrent clients every request
waited its turn in the event loop (issue 16: p50 4.7 s, throughput down 39 %, a probe not
answered within a second), and 48 concurrent 9 MiB requests took a node from 557 MB to
1.75 GB.  Here each interface (the internal one for agency systems, the external one for
other gateways) admits at most `max_exchanges` exchanges at once, and the whole gateway holds
at most `max_body_bytes` of request bodies: counted from Content-Length before the body is
read, or chunk by chunk as a body without one arrives.  A request beyond either cap waits, in
arrival order, at most `wait_seconds` for room and is then refused with the interface's
Overloaded fault, carrying `Retry-After` — a quick, honest answer a client or load balancer
can act on, instead of an answer that comes too late to be of use.

`Gate` is the one counting primitive (a FIFO weighted semaphore whose waits are bounded and
which never leaks a permit, whatever happens to the waiting task); `Admission` holds the
gates of one gateway; `Ticket` is one exchange's hold on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Final

from gateway import faults
from gateway.faults import XRoadFault

log = logging.getLogger(__name__)

# Jetty's default thread pool, which bounds X-Road's proxies, is 200 threads; a little more
# here, since an exchange waiting on its peer costs a coroutine, not a thread.  By Little's
# law an interface serving R exchanges/s at latency L needs R x L of them: 256 covers
# 500/s at half a second.  Size it to the node: peak throughput x the latency clients accept.
DEFAULT_MAX_EXCHANGES: Final = 256
# Twelve messages of the 10 MiB maximum at once.  A body costs the process about three times
# its size while it is parsed, signed, logged and sent (bench/overload.py), so this bounds
# body-driven growth to ~400 MB whatever the number of clients.
DEFAULT_MAX_BODY_BYTES: Final = 128 * 1024 * 1024
# Half of the one second in which a client should hear something (issue 16): the other half
# is for the answer itself once admitted.  0 refuses at once when full.
DEFAULT_WAIT_SECONDS: Final = 0.5
# The least `Retry-After` says (RFC 9110 §10.2.3, whole seconds); more when the clients sent
# away would take longer to be served at the rate exchanges have lately finished
# (`Admission.retry_after_seconds`), so that clients that honour it come back about as fast
# as they can be served, and refusing them stays a small part of the node's work.
DEFAULT_RETRY_AFTER_SECONDS: Final = 1
# ... and the most: a client is not sent away for longer than this.
MAX_RETRY_AFTER_SECONDS: Final = 30
# Finished exchanges are counted over windows this long to estimate the rate.
RATE_WINDOW_SECONDS: Final = 1.0
# The rate room is freed at, as the gate's capacity, is the best window's, fading by this much
# a window: a gate that empties because clients stay away must not conclude it is slow.
RATE_FADE: Final = 0.9
# Clients are asked back this many times as fast as room frees, so that the gate stays full
# (about one refusal more per exchange served; a refusal costs a small part of an exchange).
RETURN_MARGIN: Final = 2.0
# How fast the estimate of a busy loop's lateness (Gate._note_lag) fades: a burst's lag is
# forgotten within seconds of its end.
LAG_HALF_LIFE_SECONDS: Final = 1.0
# A refusing interface says so at most this often: a flood of refusals is one line a minute.
REFUSAL_WARNING_INTERVAL_SECONDS: Final = 60.0

INTERNAL: Final = "internal"
EXTERNAL: Final = "external"
OVERLOAD_CODES: Final = {INTERNAL: faults.CLIENT_PROXY_OVERLOADED, EXTERNAL: faults.SERVER_PROXY_OVERLOADED}


@dataclass(frozen=True)
class AdmissionLimits:
    """The caps a node's [limits] table sets (config.LimitsSection)."""

    max_exchanges: int = DEFAULT_MAX_EXCHANGES
    """Per interface: the internal and the external one each."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Per gateway node: request bodies held by both interfaces together."""
    wait_seconds: float = DEFAULT_WAIT_SECONDS
    retry_after_seconds: int = DEFAULT_RETRY_AFTER_SECONDS


@dataclass
class Overloaded(XRoadFault):
    """The gateway's refusal for lack of room; the edge adds `Retry-After` (answers.py)."""

    retry_after_seconds: int = DEFAULT_RETRY_AFTER_SECONDS


class Full(Exception):
    """No room came within the wait: the caller refuses the request."""


class Gate:
    """Up to `capacity` units (exchanges, bytes) held at once; the rest wait in arrival order.

    A request for more than the whole capacity is cut to it: such a request runs, alone.
    Waits are bounded; a waiter that times out, is cancelled (its client went away) or is
    granted room just as it is cancelled leaves the counts as they were before it came.
    """

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self.capacity = capacity
        self.in_use = 0
        self.peak = 0
        self.admitted = 0
        self._release_rate = 0.0
        self._refusal_rate = 0.0
        self._window_start = time.monotonic()
        self._window_releases = 0
        self._window_refusals = 0
        self.refused = 0
        self.refused_at_once = 0
        """Of `refused`: those refused without waiting (no time left, or hopeless: _hopeless)."""
        self.longest_admitted_wait_seconds = 0.0
        """From a request's first bytes to its admission: the bound holds when this stays under it."""
        self.longest_refused_wait_seconds = 0.0
        """From a request's first bytes to its refusal."""
        self.queued = 0
        """Requests that waited here for room (admitted or refused in the end)."""
        self.past_bound = 0
        """Requests that waited here, admitted or refused, and whose wait ended past its bound:
        the loop was late (a machine short of CPU) by more than waits had lately been late."""
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._next_warning = 0.0
        self._lag = 0.0
        self._lag_at = 0.0

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def try_acquire(self, amount: int) -> int | None:
        """Take `amount` (cut to the capacity) if it fits now and nobody waits before it."""
        amount = min(amount, self.capacity)
        if self._waiters or self.in_use + amount > self.capacity:
            return None
        self._take(amount)
        return amount

    async def acquire(self, amount: int, wait_seconds: float, waited: float = 0.0) -> int:
        """Take `amount` (cut to the capacity) within `wait_seconds`, else raise Full; what was taken.

        `waited` is how long the request had already waited before it came here (since its first
        bytes arrived): it counts in the waits the gate notes.  A request that could not be
        served within `wait_seconds` even at the best rate room has lately been freed at (too
        many wait before it) is refused at once: waiting would only end in the same refusal,
        later, and its timer would add to a loaded loop's work.  A wait ends early by as much as
        the loop lately ended waits late (a CPU-starved loop runs timers and wakes tasks late:
        0.2-0.8 s at 1,024 clients on a shared 2-core machine), so that refusals still come
        within the bound.
        """
        taken = self.try_acquire(amount)
        if taken is not None:
            self._note_admitted(waited)
            return taken
        amount = min(amount, self.capacity)
        loop = asyncio.get_running_loop()
        entered = loop.time()
        bound = waited + wait_seconds
        wait_seconds -= self._lag_now(entered)  # a loaded loop ends a wait that much late
        if wait_seconds <= 0 or self._hopeless(wait_seconds):
            self._refuse(waited, at_once=True)
        granted: asyncio.Future[None] = loop.create_future()
        entry = (amount, granted)
        self._waiters.append(entry)
        self.queued += 1
        started = entered - waited
        expiry = loop.call_later(wait_seconds, self._expire, entry)
        try:
            await granted
        except Full:  # no room came in time (_expire)
            now = loop.time()
            self._note_lag(now - entered - wait_seconds, now)
            self._refuse(now - started, bound=bound)
        except BaseException:
            if granted.done() and not granted.cancelled() and granted.exception() is None:
                self.release(amount)  # granted just as the waiter was cancelled: give it back
            elif entry in self._waiters:
                self._waiters.remove(entry)
                self._grant()  # a large waiter leaving the head may let smaller ones in
            raise
        finally:
            expiry.cancel()
        self._note_admitted(loop.time() - started, bound)
        return amount

    def _lag_now(self, now: float) -> float:
        """How late a wait's end was lately, halving every LAG_HALF_LIFE_SECONDS since."""
        return self._lag * 0.5 ** ((now - self._lag_at) / LAG_HALF_LIFE_SECONDS)

    def _note_lag(self, late: float, now: float) -> None:
        """A wait ended `late` after its timer was due: the loop's timer and wake-up delay."""
        self._lag, self._lag_at = max(late, self._lag_now(now)), now

    def _hopeless(self, wait_seconds: float) -> bool:
        """Room for one more waiter would not come within `wait_seconds` at the best recent rate.

        The rate counts releases, not amounts: for the body budget, whose requests differ in
        size, it is the estimate for requests of the usual size.  Before anything was released
        (no rate yet) every request may wait.
        """
        freed, _ = self.rates()
        return freed > 0 and (self.waiting + 1) / freed > wait_seconds

    def release(self, amount: int) -> None:
        self.in_use -= amount
        assert self.in_use >= 0, f"{self.name}: released more than was taken"
        self._count(1, 0)
        self._grant()

    def rates(self) -> tuple[float, float]:
        """Room freed per second at best lately (RATE_FADE), and requests refused per second."""
        self._count(0, 0)
        return self._release_rate, self._refusal_rate

    def _count(self, releases: int, refusals: int) -> None:
        now = time.monotonic()
        elapsed = now - self._window_start
        if elapsed >= RATE_WINDOW_SECONDS:
            windows = int(elapsed // RATE_WINDOW_SECONDS)
            faded = self._release_rate * RATE_FADE**windows
            self._release_rate = max(self._window_releases / elapsed, faded)
            self._refusal_rate = self._window_refusals / elapsed
            self._window_start, self._window_releases, self._window_refusals = now, 0, 0
        self._window_releases += releases
        self._window_refusals += refusals

    def _take(self, amount: int) -> None:
        self.in_use += amount
        self.admitted += 1
        self.peak = max(self.peak, self.in_use)

    def _grant(self) -> None:
        while self._waiters:
            amount, granted = self._waiters[0]
            if granted.done():  # cancelled; its task has not yet run to take itself off
                self._waiters.popleft()
                continue
            if self.in_use + amount > self.capacity:
                return
            self._waiters.popleft()
            self._take(amount)
            granted.set_result(None)

    def _expire(self, entry: tuple[int, asyncio.Future[None]]) -> None:
        _, granted = entry
        if not granted.done():
            self._waiters.remove(entry)
            granted.set_exception(Full())
            self._grant()

    @property
    def longest_wait_seconds(self) -> float:
        return max(self.longest_admitted_wait_seconds, self.longest_refused_wait_seconds)

    def _note_admitted(self, waited: float, bound: float = math.inf) -> None:
        self.longest_admitted_wait_seconds = max(self.longest_admitted_wait_seconds, waited)
        self.past_bound += waited > bound

    def _refuse(self, waited: float, at_once: bool = False, bound: float = math.inf) -> None:
        self.longest_refused_wait_seconds = max(self.longest_refused_wait_seconds, waited)
        self.past_bound += waited > bound
        self.refused += 1
        self.refused_at_once += at_once
        self._count(0, 1)
        now = time.monotonic()
        if now >= self._next_warning:
            log.warning(
                "%s full (%d of %d, %d waiting): refusing requests (%d so far)",
                self.name,
                self.in_use,
                self.capacity,
                self.waiting,
                self.refused,
            )
            self._next_warning = now + REFUSAL_WARNING_INTERVAL_SECONDS
        raise Full

    def health(self) -> dict[str, object]:
        return {
            "capacity": self.capacity,
            "in_use": self.in_use,
            "peak": self.peak,
            "waiting": self.waiting,
            "admitted": self.admitted,
            "refused": self.refused,
            "refused_at_once": self.refused_at_once,
            "queued": self.queued,
            "past_bound": self.past_bound,
            "longest_wait_seconds": round(self.longest_wait_seconds, 3),
            "longest_admitted_wait_seconds": round(self.longest_admitted_wait_seconds, 3),
            "longest_refused_wait_seconds": round(self.longest_refused_wait_seconds, 3),
        }


@dataclass
class Ticket:
    """One exchange's hold on the body budget: grows as its body arrives, released at its end."""

    admission: Admission
    interface: str
    deadline: float
    """Loop time until which this request may still wait for room (its admission's bound)."""
    held_bytes: int = 0
    read_bytes: int = 0

    async def reserve(self, total_bytes: int) -> None:
        """Hold room for `total_bytes` of body in all (never less than held), or raise Overloaded."""
        more = total_bytes - self.held_bytes
        if more <= 0:
            return
        now = asyncio.get_running_loop().time()
        remaining = self.deadline - now
        waited = now - (self.deadline - self.admission.limits.wait_seconds)
        try:
            self.held_bytes += await self.admission.bodies.acquire(more, remaining, waited)
        except Full:
            raise self.admission.overloaded(self.interface, "message bodies in flight") from None

    async def received(self, chunk_bytes: int) -> None:
        """A chunk of a body without Content-Length arrived: hold room for it too."""
        self.read_bytes += chunk_bytes
        await self.reserve(self.read_bytes)

    def release(self) -> None:
        if self.held_bytes:
            self.admission.bodies.release(self.held_bytes)
            self.held_bytes = 0


@dataclass
class Admission:
    """One gateway node's gates: one per interface for exchanges, one shared for body bytes."""

    limits: AdmissionLimits = field(default_factory=AdmissionLimits)
    interfaces: dict[str, Gate] = field(init=False)
    bodies: Gate = field(init=False)
    _retry_after: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.interfaces = {
            name: Gate(f"{name} interface (exchanges)", self.limits.max_exchanges) for name in OVERLOAD_CODES
        }
        self.bodies = Gate("message bodies in flight (bytes)", self.limits.max_body_bytes)

    @contextlib.asynccontextmanager
    async def exchange(
        self,
        interface: str,
        content_length: int | None,
        max_body_bytes: int,
        arrived: float | None = None,
    ) -> AsyncIterator[Ticket]:
        """Hold one exchange's place on `interface` and room for its announced body, or raise Overloaded.

        The wait is bounded from `arrived` (loop time of the request's first bytes; default now):
        time a busy loop took to get the request here counts, and a request that already took
        the whole bound gets room only if some is free at once.  A Content-Length beyond
        `max_body_bytes` is held only to that: the handler refuses it as too large without
        reading it.
        """
        gate = self.interfaces[interface]
        now = asyncio.get_running_loop().time()
        began = now if arrived is None else min(arrived, now)
        deadline = began + self.limits.wait_seconds
        try:
            await gate.acquire(1, deadline - now, now - began)
        except Full:
            raise self.overloaded(interface, "exchanges") from None
        ticket = Ticket(self, interface, deadline)
        try:
            if content_length:
                await ticket.reserve(min(content_length, max_body_bytes + 1))
            yield ticket
        finally:
            ticket.release()
            gate.release(1)

    def overloaded(self, interface: str, what: str) -> Overloaded:
        wait = self.limits.wait_seconds
        return Overloaded(
            OVERLOAD_CODES[interface],
            f"the gateway is overloaded: no room for more {what} within {wait:g} s; retry later",
            retry_after_seconds=self.retry_after_seconds(interface),
        )

    def retry_after_seconds(self, interface: str) -> int:
        """When a refused client should come back so that those sent away return as fast as room frees.

        The clients sent away are about those refused per second times the time each stays
        away (the last Retry-After and the wait), plus those waiting now; asked back at
        RETURN_MARGIN times the best rate room has lately been freed at, they keep the gate
        full without being refused many times over (with 1,024 clients and a fixed second,
        refusals outnumbered answers ten to one and took a third of the node's work).
        """
        gate = self.interfaces[interface]
        freed, refused = gate.rates()
        away = refused * (self._retry_after.get(interface, 0) + self.limits.wait_seconds) + gate.waiting
        if away <= 0:
            seconds = 0
        elif freed <= 0:
            seconds = MAX_RETRY_AFTER_SECONDS  # nothing finished lately: as long as may be said
        else:
            seconds = math.ceil(away / (freed * RETURN_MARGIN))
        retry = max(self.limits.retry_after_seconds, min(seconds, MAX_RETRY_AFTER_SECONDS))
        self._retry_after[interface] = retry
        return retry

    @property
    def idle(self) -> bool:
        """Nothing held and nobody waiting: what every count returns to after load."""
        gates = (*self.interfaces.values(), self.bodies)
        return all(gate.in_use == 0 and gate.waiting == 0 for gate in gates)

    def health(self) -> dict[str, object]:
        return {
            "wait_seconds": self.limits.wait_seconds,
            **{name: gate.health() for name, gate in self.interfaces.items()},
            "body_bytes": self.bodies.health(),
        }
