"""The circuit breaker per provider service (sans-IO: the clock is handed in).

Closed: calls go to the provider; each outcome is recorded. The circuit opens after
`consecutive_failures` failures in a row, or when at least `min_calls_in_window` calls in
the last `window_seconds` failed at `failure_rate` or more. Open: no call goes out for
`open_seconds`; the cache answers, or the client gets the fault that opened the circuit
(:attr:`CircuitBreaker.last_fault`). Then half-open: one probe at a time goes out; a failed
probe opens the circuit again, `half_open_successes` successful probes close it.
(M. Nygard, "Release It!", 2nd ed., ch. 5 "Circuit Breaker", the pattern this follows.)

One :class:`CircuitBreaker` per provider service and node: every node judges the partner by
its own calls, which needs no shared state and is what a node can see.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from gateway.cache.policy import BreakerSettings

Clock = Callable[[], float]
"""Seconds on a monotonic clock (time.monotonic in production, a counter in tests)."""

MAX_WINDOW_CALLS: Final = 10_000
"""Outcomes kept per window: at 10,000 calls a minute the rate is exact enough, memory bounded."""


class CircuitState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerStatus:
    """What operators see: state, counts in the window, the fault that opened it."""

    state: CircuitState
    consecutive_failures: int
    calls_in_window: int
    failures_in_window: int
    last_fault: str | None
    opened_at: float | None


class CircuitBreaker:
    """Decides whether a call may go to the provider, and learns from each outcome."""

    def __init__(self, settings: BreakerSettings, clock: Clock) -> None:
        self.settings = settings
        self._clock = clock
        self._state = CircuitState.CLOSED
        self._consecutive = 0
        self._window: deque[tuple[float, bool]] = deque(maxlen=MAX_WINDOW_CALLS)  # (when, failed)
        self._opened_at: float | None = None
        self._probe_in_flight = False
        self._probe_successes = 0
        self.last_fault: str | None = None

    @property
    def state(self) -> CircuitState:
        self._maybe_half_open()
        return self._state

    def allow(self) -> bool:
        """Whether a call may go out now; in half-open, True claims the one probe slot."""
        self._maybe_half_open()
        if self._state is CircuitState.CLOSED:
            return True
        if self._state is CircuitState.OPEN or self._probe_in_flight:
            return False
        self._probe_in_flight = True
        return True

    def record_success(self) -> None:
        now = self._clock()
        self._window.append((now, False))
        self._consecutive = 0
        if self._state is CircuitState.HALF_OPEN:
            self._probe_in_flight = False
            self._probe_successes += 1
            if self._probe_successes >= self.settings.half_open_successes:
                self._close()

    def record_failure(self, fault_code: str) -> None:
        now = self._clock()
        self.last_fault = fault_code
        self._window.append((now, True))
        self._consecutive += 1
        if self._state is CircuitState.HALF_OPEN or (
            self._state is CircuitState.CLOSED and self._should_open(now)
        ):
            self._open(now)

    def release_probe(self) -> None:
        """A probe ended with neither success nor provider failure (the client's own fault, say)."""
        self._probe_in_flight = False

    def status(self) -> BreakerStatus:
        self._maybe_half_open()
        self._trim(self._clock())
        failures = sum(1 for _, failed in self._window if failed)
        return BreakerStatus(
            self._state, self._consecutive, len(self._window), failures, self.last_fault, self._opened_at
        )

    def _should_open(self, now: float) -> bool:
        if self._consecutive >= self.settings.consecutive_failures:
            return True
        self._trim(now)
        calls = len(self._window)
        if calls < self.settings.min_calls_in_window:
            return False
        failures = sum(1 for _, failed in self._window if failed)
        return failures / calls >= self.settings.failure_rate

    def _trim(self, now: float) -> None:
        horizon = now - self.settings.window_seconds
        while self._window and self._window[0][0] < horizon:
            self._window.popleft()

    def _open(self, now: float) -> None:
        self._state = CircuitState.OPEN
        self._opened_at = now
        self._probe_in_flight = False
        self._probe_successes = 0

    def _close(self) -> None:
        self._state = CircuitState.CLOSED
        self._opened_at = None
        self._consecutive = 0
        self._probe_successes = 0
        self._window.clear()  # the outage's failures must not reopen the circuit at once

    def _maybe_half_open(self) -> None:
        if (
            self._state is CircuitState.OPEN
            and self._opened_at is not None
            and self._clock() - self._opened_at >= self.settings.open_seconds
        ):
            self._state = CircuitState.HALF_OPEN
            self._probe_in_flight = False
            self._probe_successes = 0
