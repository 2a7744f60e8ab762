"""Which of several equivalent services to ask first: OCSP responders of one CA, the federation's TSAs.

The global configuration lists them in priority order (docs/globalconf.md). We ask the first
healthy one; one that failed is remembered and moved behind the healthy ones for
`retry_after_seconds`, so an outage costs one failed attempt per retry period, not one per
request, and once that period is over it is asked again first in its place: a responder that
is back is preferred again within one period (recovery). When every one has failed recently,
all are still tried, in priority order: a service is never given up on.

Sans-IO: fed with outcomes by the caller, read by it; the clock is a parameter.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

DEFAULT_RETRY_AFTER_SECONDS: Final = 60.0
"""How long a failed service waits behind the healthy ones: X-Road's OCSP client also retries a
failed responder on its next round; a minute is short against an hour of freshness."""


@dataclass(frozen=True)
class Failure:
    """The last failure of one service: when (on the caller's clock) and why, in plain words."""

    at: float
    reason: str


class Failover:
    """Orders services given in priority order: healthy first, recently failed ones after."""

    def __init__(
        self,
        retry_after_seconds: float = DEFAULT_RETRY_AFTER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.retry_after_seconds = retry_after_seconds
        self._clock = clock
        self._failures: dict[str, Failure] = {}

    def order(self, urls: Sequence[str]) -> list[str]:
        """`urls` (in priority order) in the order to try them now."""
        return sorted(urls, key=self.is_resting)  # stable: priority order within each group

    def is_resting(self, url: str) -> bool:
        """Whether `url` failed within the last `retry_after_seconds`."""
        failure = self._failures.get(url)
        return failure is not None and self._clock() - failure.at < self.retry_after_seconds

    def succeeded(self, url: str) -> None:
        self._failures.pop(url, None)

    def failed(self, url: str, reason: str) -> None:
        self._failures[url] = Failure(self._clock(), reason)

    def failures(self, urls: Sequence[str] | None = None) -> dict[str, str]:
        """Why each service (of `urls`, or of all) failed last, for those not healthy since."""
        return {url: failure.reason for url, failure in self._failures.items() if urls is None or url in urls}
