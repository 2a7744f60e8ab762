"""What one may ask of the operational monitoring records, and the answers' shapes (sans-IO).

The management API, `xgate monitor` and the X-Road metadata service (xroad.py) all build a
:class:`RecordQuery` or a :class:`StatsQuery`; the store (store.py) runs them.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from gateway.monitoring.exchange import ExchangeRecord, Role

MAX_PAGE: Final = 1000
"""Records per page at most (the management API's and the CLI's)."""

DEFAULT_WINDOW_SECONDS: Final = 3600.0
"""The statistics' sliding window unless one is given: the last hour."""


class Outcome(enum.StrEnum):
    """Which records by their result: X-Road's `succeeded`, or answered from the cache."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CACHED = "cached"


@dataclass(frozen=True)
class RecordQuery:
    """Records whose request reached the gateway in [since, until), every filter given matching.

    `own_client`: only the records where this client is the client (X-Road's rule for a client
    that is neither the owner nor the monitoring client), whatever `client` says.
    `oldest_first`: in order of arrival (the metadata service pages by time); newest first otherwise.
    """

    since: float | None = None
    until: float | None = None
    client: str | None = None
    service: str | None = None
    role: Role | None = None
    outcome: Outcome | None = None
    fault_code: str | None = None
    message_id: str | None = None
    own_client: str | None = None
    limit: int = 100
    offset: int = 0
    oldest_first: bool = False

    def __post_init__(self) -> None:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("`since` must be before `until`")
        if not 1 <= self.limit <= 100_000 or self.offset < 0:
            raise ValueError("limit must be 1..100000 and offset >= 0")


@dataclass(frozen=True)
class StatsQuery:
    """Per-service statistics of the exchanges that reached the gateway in the window ending `now`."""

    now: float
    window_seconds: float = DEFAULT_WINDOW_SECONDS
    service: str | None = None
    role: Role | None = None

    def __post_init__(self) -> None:
        if self.window_seconds <= 0:
            raise ValueError("the window must be longer than 0 seconds")

    @property
    def since(self) -> float:
        return self.now - self.window_seconds


@dataclass(frozen=True)
class StoredRecord:
    """A record as the store keeps it: the exchange's, with the row id and the node that wrote it."""

    id: int
    node: str
    record: ExchangeRecord


@dataclass(frozen=True)
class ServiceStats:
    """X-Road's health data for one service and role: counts over the window, and the durations
    and sizes of its successful exchanges (as X-Road computes them)."""

    service: str
    role: Role
    successes: int
    failures: int
    last_success: float | None
    last_failure: float | None
    duration_min: float | None
    duration_avg: float | None
    duration_max: float | None
    request_size_min: int | None
    request_size_avg: float | None
    request_size_max: int | None
    response_size_min: int | None
    response_size_avg: float | None
    response_size_max: int | None


def iso(seconds: float | None) -> str | None:
    """Unix seconds as the API's date-time text (UTC, milliseconds)."""
    if seconds is None:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="milliseconds")


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def record_json(stored: StoredRecord) -> dict[str, Any]:
    """The management API's form of one record (docs/monitoring.md "Fields")."""
    r = stored.record
    return {
        "id": stored.id,
        "node": stored.node,
        "role": r.role.value,
        "exchange_id": r.exchange_id,
        "protocol": r.protocol,
        "request_in": iso(r.request_in),
        "response_out": iso(r.response_out),
        "duration_ms": _ms(r.duration),
        "steps_ms": {step: _ms(seconds) for step, seconds in r.steps.items()},
        "client": r.client,
        "service": r.service,
        "message_id": r.message_id,
        "user_id": r.user_id,
        "rest_method": r.rest_method,
        "rest_path": r.rest_path,
        "request_size": r.request_size,
        "response_size": r.response_size,
        "request_attachments": r.request_attachments,
        "response_attachments": r.response_attachments,
        "status": r.status,
        "succeeded": r.succeeded,
        "fault_code": r.fault_code,
        "fault_string": r.fault_string,
        "peer": r.peer,
        "served_from_cache": r.served_from_cache,
    }


def stats_json(stats: ServiceStats) -> dict[str, Any]:
    """The management API's form of one service's statistics (durations in milliseconds)."""
    return {
        "service": stats.service,
        "role": stats.role.value,
        "successes": stats.successes,
        "failures": stats.failures,
        "last_success": iso(stats.last_success),
        "last_failure": iso(stats.last_failure),
        "duration_ms": _triple(stats.duration_min, stats.duration_avg, stats.duration_max, _ms),
        "request_size": _triple(stats.request_size_min, stats.request_size_avg, stats.request_size_max),
        "response_size": _triple(stats.response_size_min, stats.response_size_avg, stats.response_size_max),
    }


def _triple(
    low: float | None, mean: float | None, high: float | None, unit: Any = None
) -> Mapping[str, float | None]:
    convert = unit or (lambda value: None if value is None else round(value, 3))
    return {"min": convert(low), "avg": convert(mean), "max": convert(high)}
