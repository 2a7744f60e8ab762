"""Which of a provider's gateways to try first (DESIGN.md step 3).

A provider may be hosted on several gateways.  We try them in order of how fast a TCP+TLS
connection to each was recently established, and move on to the next one on connection
errors.  A gateway that failed is pushed to the back for a while, so one dead node does
not cost every request a connect timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

# Weight of the newest sample in the moving average of connect times.
EWMA_WEIGHT: Final = 0.3
# How long a gateway that refused a connection stays at the back of the line.
FAILURE_PENALTY_SECONDS: Final = 30.0


@dataclass
class _PeerStats:
    connect_seconds: float | None = None
    failed_at: float | None = None


class PeerSelector:
    """Orders candidate addresses; fed with connect times and failures by the caller."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._stats: dict[str, _PeerStats] = {}
        self._clock = clock

    def order(self, addresses: Sequence[str]) -> list[str]:
        now = self._clock()

        def key(address: str) -> tuple[int, float]:
            stats = self._stats.get(address)
            if stats is None:
                return (0, 0.0)  # never tried: worth learning about
            penalised = stats.failed_at is not None and now - stats.failed_at < FAILURE_PENALTY_SECONDS
            return (1 if penalised else 0, stats.connect_seconds or 0.0)

        return sorted(addresses, key=key)

    def record_connect(self, address: str, seconds: float) -> None:
        stats = self._stats.setdefault(address, _PeerStats())
        stats.failed_at = None
        if stats.connect_seconds is None:
            stats.connect_seconds = seconds
        else:
            stats.connect_seconds = (1 - EWMA_WEIGHT) * stats.connect_seconds + EWMA_WEIGHT * seconds

    def record_failure(self, address: str) -> None:
        self._stats.setdefault(address, _PeerStats()).failed_at = self._clock()
