"""One exchange as this gateway saw it, for operators (sans-IO).

The proxy fills an `ExchangeTimer` while it serves a request and hands the finished
`ExchangeRecord` to every `ExchangeObserver` the node registered (Prometheus metrics,
operational monitoring, the access log). The record never holds a body, a header value
other than the X-Road ids, or a key: what it says may leave the node.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


class Step(enum.StrEnum):
    """The timed steps of an exchange (DESIGN.md "A request's path"); each is summed over the
    exchange, so a step a request takes twice (two peer attempts) counts once with both times."""

    PARSE = "parse"  # reading and checking the client's or peer's message
    SIGN = "sign"  # this gateway's signature (batched)
    PEER = "peer"  # the consumer's hop to the provider's gateway, answer included
    BACKEND = "backend"  # the provider's call to the service
    VERIFY = "verify"  # checking the peer's signature and certificate status
    LOG = "log"  # the message log's writes (durable before the answer)
    CACHE = "cache"  # reading or storing the interface cache


class Role(enum.StrEnum):
    """X-Road's `securityServerType`: the client's gateway or the service's."""

    CLIENT = "Client"
    PRODUCER = "Producer"


@dataclass(frozen=True, slots=True)
class ExchangeRecord:
    """What operational monitoring keeps of one exchange, and metrics count (X-Road's
    operational monitoring data fields, docs/monitoring.md)."""

    role: Role
    exchange_id: str
    protocol: str  # "soap" or "rest"
    request_in: float  # unix seconds: the request reached this gateway
    response_out: float  # unix seconds: the answer left it (or the exchange ended)
    steps: Mapping[str, float]  # Step value -> seconds spent in it
    client: str | None = None  # X-Road id text, e.g. SUBSYSTEM:DEV/GOV/1234/ESTONIA-CLIENT
    service: str | None = None  # SERVICE:DEV/GOV/5678/POP/getPerson/v1
    message_id: str | None = None
    user_id: str | None = None
    rest_method: str | None = None
    rest_path: str | None = None  # the service description's path template when known
    request_size: int = 0
    response_size: int = 0
    request_attachments: int = 0
    response_attachments: int = 0
    status: int = 0  # HTTP status of the answer this gateway gave
    succeeded: bool = False
    fault_code: str | None = None
    fault_string: str | None = None
    peer: str | None = None  # the other gateway: server id text, and its address when known
    served_from_cache: str | None = None  # None, "hit" or "stale"

    @property
    def duration(self) -> float:
        return max(0.0, self.response_out - self.request_in)


class ExchangeObserver(Protocol):
    """Told of every exchange once it ends. Called on the event loop: it must not block
    (queue the record and write it elsewhere) and must not raise."""

    def exchange_done(self, record: ExchangeRecord) -> None: ...


@dataclass(slots=True)
class ExchangeTimer:
    """Step times of one exchange in progress (monotonic clock), turned into a record at its end."""

    request_in: float = field(default_factory=time.time)
    _started: float = field(default_factory=time.perf_counter)
    steps: dict[str, float] = field(default_factory=dict)

    def add(self, step: Step, seconds: float) -> None:
        self.steps[step.value] = self.steps.get(step.value, 0.0) + seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self._started

    def response_out(self) -> float:
        """The wall-clock end, from the monotonic clock (no jump if the clock is stepped mid-exchange)."""
        return self.request_in + self.elapsed()
