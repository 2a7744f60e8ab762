"""Which of a provider's gateways to try first (DESIGN.md step 3).

A provider may be hosted on several gateways.  We try them in order of how fast a TCP+TLS
connection to each was recently established, and move on to the next one on connection
errors.  A gateway that failed is pushed to the back for a while (gateway.outbound.failover),
so one dead node does not cost every request a connect timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Final

from gateway.outbound.failover import Failover

# Weight of the newest sample in the moving average of connect times.
EWMA_WEIGHT: Final = 0.3
# How long a gateway that refused a connection stays at the back of the line.
FAILURE_PENALTY_SECONDS: Final = 30.0


class PeerSelector:
    """Orders candidate addresses; fed with connect times and failures by the caller."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._connect_seconds: dict[str, float] = {}
        self._failover = Failover(FAILURE_PENALTY_SECONDS, clock)

    def order(self, addresses: Sequence[str]) -> list[str]:
        def key(address: str) -> tuple[bool, float]:
            # Never tried: 0.0, worth learning about.
            return (self._failover.is_resting(address), self._connect_seconds.get(address, 0.0))

        return sorted(addresses, key=key)

    def record_connect(self, address: str, seconds: float) -> None:
        self._failover.succeeded(address)
        previous = self._connect_seconds.get(address)
        self._connect_seconds[address] = (
            seconds if previous is None else (1 - EWMA_WEIGHT) * previous + EWMA_WEIGHT * seconds
        )

    def record_failure(self, address: str, reason: str = "") -> None:
        self._failover.failed(address, reason)
