"""One exchange on its way through this gateway, as the observers will be told of it (sans-IO).

The edge that admits a request (admitting.py, or `provider.serve` when it is called without
one) starts a :class:`Watch` when the node has exchange observers; the handlers fill it in
as they learn ids, sizes, the peer and the outcome, the steps add their times, and the edge
turns it into one `ExchangeRecord` at the end. Without observers there is no watch and each
step pays one `is None` test.
"""

from __future__ import annotations

import time
import uuid
from typing import Protocol

from gateway.monitoring.exchange import ExchangeRecord, ExchangeTimer, Role, Step


class ExchangeIds(Protocol):
    """What a record repeats of the message's ids (records.ExchangeIds, which logs them too)."""

    @property
    def exchange_id(self) -> str: ...
    @property
    def message_id(self) -> str: ...
    @property
    def client(self) -> str: ...
    @property
    def service(self) -> str: ...
    @property
    def user_id(self) -> str | None: ...


class Watch:
    """What one exchange's record will say, filled in as the handler learns it."""

    __slots__ = (
        "fault_code",
        "fault_string",
        "ids",
        "ignored",
        "peer",
        "peer_address",
        "protocol",
        "request_attachments",
        "request_size",
        "response_attachments",
        "response_size",
        "rest_method",
        "rest_path",
        "role",
        "served_from_cache",
        "timer",
    )

    def __init__(self, role: Role, protocol: str = "soap") -> None:
        self.timer = ExchangeTimer()
        self.role = role
        self.protocol = protocol
        self.ids: ExchangeIds | None = None
        self.rest_method: str | None = None
        self.rest_path: str | None = None
        self.request_size = 0
        self.response_size: int | None = None  # None: the edge counts the body it writes
        self.request_attachments = 0
        self.response_attachments = 0
        self.fault_code: str | None = None
        self.fault_string: str | None = None
        self.peer: str | None = None
        self.peer_address: str | None = None
        self.served_from_cache: str | None = None
        self.ignored = False
        """Not an exchange (the internal interface's `listClients`): no record."""

    def add(self, step: Step, started: float) -> None:
        """`step` ran from `started` (time.perf_counter) until now: ExchangeTimer.add's sum, a
        step at a time on the hot path (the member's `_value_`, not the slower `value` property)."""
        steps = self.timer.steps
        key = step._value_
        steps[key] = steps.get(key, 0.0) + (time.perf_counter() - started)

    def identified(self, ids: ExchangeIds) -> None:
        """The message is read and checked: the ids are known and the parse step ends here."""
        self.ids = ids
        self.timer.steps[Step.PARSE._value_] = self.timer.elapsed()

    def failed(self, code: str, string: str | None) -> None:
        """The answer given is a fault (the last one named wins: it is the one the client got)."""
        self.fault_code, self.fault_string = code, string

    def retried(self) -> None:
        """The failed attempt is not the answer: the next one says what the client got."""
        self.fault_code = self.fault_string = None

    def served(self, status: str) -> None:
        """The answer given is a stored copy (`hit` or `stale`), not the failure it replaced."""
        self.served_from_cache = status
        self.fault_code = self.fault_string = None

    def abandoned(self) -> ExchangeRecord:
        """The exchange as it stood when its client went away (status 0: nothing was answered)."""
        if self.fault_code is None:
            self.fault_string = "the client went away before its answer"
        return self.record(0)

    def record(self, status: int, response_size: int = 0) -> ExchangeRecord:
        """The finished exchange; `response_size` unless a handler counted the message itself."""
        ids = self.ids
        peer = self.peer
        if self.peer_address is not None:
            peer = self.peer_address if peer is None else f"{peer}@{self.peer_address}"
        return ExchangeRecord(
            role=self.role,
            exchange_id=ids.exchange_id if ids is not None else str(uuid.uuid4()),
            protocol=self.protocol,
            request_in=self.timer.request_in,
            response_out=self.timer.response_out(),
            steps=self.timer.steps,
            client=ids.client if ids is not None else None,
            service=ids.service if ids is not None else None,
            message_id=ids.message_id if ids is not None else None,
            user_id=ids.user_id if ids is not None else None,
            rest_method=self.rest_method,
            rest_path=self.rest_path,
            request_size=self.request_size,
            response_size=response_size if self.response_size is None else self.response_size,
            request_attachments=self.request_attachments,
            response_attachments=self.response_attachments,
            status=status,
            succeeded=self.fault_code is None and status > 0,
            fault_code=self.fault_code,
            fault_string=self.fault_string,
            peer=peer,
            served_from_cache=self.served_from_cache,
        )
