"""A histogram kept as plain counts (sans-IO): what a hot path can afford to observe.

The signer, the message log's writer and the exchange metrics count into a `Tally` on the
event loop, with no lock and no metrics library: one bisect and three additions per value.
The metrics listener (gateway.metrics) turns tallies into Prometheus histograms when it is
scraped. Anything may keep a tally whether or not metrics are served: it costs about a
microsecond a value and a few hundred bytes.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Final

SECONDS_BOUNDS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
"""Durations from a half-millisecond step (a signature, a parse) to a backend's 30 s timeout."""

BYTES_BOUNDS: Final = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 10485760)
"""Message sizes from a small SOAP call to X-Road's 10 MiB default limit, by factors of 4."""

COUNT_BOUNDS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 10_000)
"""Batch sizes: the signer's (at most 512), the log writer's (256) and the timestamper's (10,000)."""


class Tally:
    """Counts of values per bucket (upper bounds inclusive, as Prometheus's `le`), their sum and count."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)):
            raise ValueError("bucket bounds must be strictly increasing")
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, values at or below it) for every bound, then (inf, count)."""
        result = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            result.append((bound, running))
        return result
