"""Is this node's clock right? What the trust services' signed times say about it.

Every fresh RFC 3161 token carries the TSA's genTime (RFC 3161 §2.4.2), and every OCSP response
its responder's producedAt (RFC 6960 §4.2.1): both signed, both read the moment they arrive. A
TSA stamps our nonce, so its genTime is "now" on its clock give or take the round trip: the
difference to ours is our offset, either way. A responder may hand out responses it signed
earlier (RFC 5019 §2.1: pre-produced), so producedAt only bounds it from one side: a producedAt
ahead of our clock means ours is behind by at least that much.

Signed times are checked against our clock with a tolerance (`tolerance_seconds`, the node's
`[trust] clock_skew_seconds`, docs/resilience.md); a clock off by more than that makes a
gateway refuse good responses or send ones its peers refuse, so health warns about it.

Sans-IO: fed with pairs of times by whoever received them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from gateway.crypto.ocsp import CLOCK_SKEW

DEFAULT_CLOCK_SKEW_SECONDS: Final = CLOCK_SKEW.total_seconds()  # five minutes
"""How far a signed time may be from ours before it counts as wrong (docs/resilience.md "The clock"):
the signing-time window peers allow (proxy.steps.MAX_SIGNING_TIME_SKEW_SECONDS), the registry's
(central.requests.CLOCK_SKEW) and Kerberos' default; about half a year of an unsynchronised
quartz clock's drift (~20 ppm, 1.7 s a day), while an NTP-synchronised one is within milliseconds."""


@dataclass(frozen=True)
class ClockSample:
    """Their signed time minus ours, in seconds, from one source; `two_sided` when it is a measure,
    not only a lower bound of how far ours is behind."""

    source: str
    offset_seconds: float
    two_sided: bool
    observed_at: dt.datetime

    def beyond(self, tolerance_seconds: float) -> bool:
        if self.two_sided:
            return abs(self.offset_seconds) > tolerance_seconds
        return self.offset_seconds > tolerance_seconds

    def describe(self) -> str:
        direction = "behind" if self.offset_seconds > 0 else "ahead of"
        return f"this gateway's clock is {abs(self.offset_seconds):.0f} s {direction} {self.source}'s"


class ClockCheck:
    """The latest sample from each trusted source, and whether any says our clock is off."""

    def __init__(self, tolerance_seconds: float = DEFAULT_CLOCK_SKEW_SECONDS) -> None:
        if tolerance_seconds <= 0:
            raise ValueError("the clock-skew tolerance must be positive")
        self.tolerance_seconds = tolerance_seconds
        self._samples: dict[str, ClockSample] = {}

    @property
    def tolerance(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.tolerance_seconds)

    def observe(self, source: str, theirs: dt.datetime, ours: dt.datetime, *, two_sided: bool) -> None:
        """Record a signed time `theirs` read when our clock said `ours`."""
        offset = (theirs - ours).total_seconds()
        self._samples[source] = ClockSample(source, offset, two_sided, ours)

    def problems(self) -> list[str]:
        """One sentence per source whose latest sample puts our clock beyond the tolerance."""
        return [
            f"{sample.describe()} (tolerance {self.tolerance_seconds:g} s)"
            for sample in self._samples.values()
            if sample.beyond(self.tolerance_seconds)
        ]

    def health(self) -> dict[str, object]:
        return {
            "tolerance_seconds": self.tolerance_seconds,
            "samples": {
                sample.source: {
                    "offset_seconds": round(sample.offset_seconds, 3),
                    "two_sided": sample.two_sided,
                    "observed_at": sample.observed_at.isoformat(),
                }
                for sample in self._samples.values()
            },
            "warnings": self.problems(),
        }
