"""Operational monitoring through the management API: the records, and per-service statistics.

Who may read (gateway.admin.roles `read_monitoring`): the service administrator, the security
officer and the system administrator. The records name clients, message ids and user ids, so
reading them is audited like the message log's reads; the statistics are counts and figures
per service, not audited. docs/monitoring.md explains the fields.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field

from gateway.admin.context import TABLE, AdminContext
from gateway.admin.roles import Permission as P
from gateway.ids import ClientId, IdentifierError, ServiceId, slash_form
from gateway.monitoring.exchange import Role
from gateway.monitoring.operational.query import (
    DEFAULT_WINDOW_SECONDS,
    Outcome,
    RecordQuery,
    StatsQuery,
    iso,
    record_json,
    stats_json,
)
from gateway.monitoring.operational.service import OperationalMonitor
from gateway.webapi import Call, invalid, not_found
from gateway.webapi import Outcome as Answered
from gateway.webapi.types import (
    DEFAULT_PAGE,
    MAX_IDENTIFIER_LENGTH,
    MAX_TEXT_LENGTH,
    Answer,
    Limit,
    Offset,
    Params,
    Time,
    utc,
)

MAX_WINDOW_SECONDS = 31 * 86400.0
"""A month: longer than any retention worth querying in one go."""

RoleText = Literal["Client", "Producer"]
OutcomeText = Literal["succeeded", "failed", "cached"]
_CLIENT = Field(
    None, min_length=1, max_length=MAX_IDENTIFIER_LENGTH, description="INSTANCE/CLASS/MEMBER[/SUBSYSTEM]."
)
_SERVICE = Field(
    None,
    min_length=1,
    max_length=MAX_IDENTIFIER_LENGTH,
    description="INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE[/VERSION].",
)
_ROLE = Field(None, description="`Client`: this gateway was the client's; `Producer`: the service's.")


class RecordFilters(Params):
    """Every filter given must match; times are when the request reached this gateway."""

    since: Time | None = None
    until: Time | None = None
    client: str | None = _CLIENT
    service: str | None = _SERVICE
    role: RoleText | None = _ROLE
    outcome: OutcomeText | None = Field(
        None, description="`succeeded`, `failed` (a fault answered), `cached` (served from the cache)."
    )
    fault_code: str | None = Field(None, min_length=1, max_length=MAX_TEXT_LENGTH)
    message_id: str | None = Field(None, min_length=1, max_length=MAX_TEXT_LENGTH)
    limit: Limit = DEFAULT_PAGE
    offset: Offset = 0


class StatsFilters(Params):
    window_seconds: float = Field(
        DEFAULT_WINDOW_SECONDS,
        gt=0,
        le=MAX_WINDOW_SECONDS,
        allow_inf_nan=False,
        description="The sliding window: exchanges that reached the gateway this many seconds back from now.",
    )
    service: str | None = _SERVICE
    role: RoleText | None = _ROLE


class Triple(Answer):
    min: float | None
    avg: float | None
    max: float | None


class MonitoringRecord(Answer):
    id: int
    node: str
    role: RoleText
    exchange_id: str
    protocol: Literal["soap", "rest"]
    request_in: str = Field(json_schema_extra={"format": "date-time"})
    response_out: str = Field(json_schema_extra={"format": "date-time"})
    duration_ms: float
    steps_ms: dict[str, float] = Field(
        description="Time in each step: parse, sign, peer, verify, backend, log, cache."
    )
    client: str | None
    service: str | None
    message_id: str | None
    user_id: str | None
    rest_method: str | None
    rest_path: str | None
    request_size: int
    response_size: int
    request_attachments: int
    response_attachments: int
    status: int
    succeeded: bool
    fault_code: str | None
    fault_string: str | None
    peer: str | None
    served_from_cache: Literal["hit", "stale"] | None


class MonitoringPage(Answer):
    records: list[MonitoringRecord]
    limit: int
    offset: int
    next_offset: int | None


class ServiceHealth(Answer):
    service: str
    role: RoleText
    successes: int
    failures: int
    last_success: str | None = Field(json_schema_extra={"format": "date-time"})
    last_failure: str | None = Field(json_schema_extra={"format": "date-time"})
    duration_ms: Triple = Field(description="Of the successful exchanges, as X-Road's health data.")
    request_size: Triple
    response_size: Triple


class ServiceHealthList(Answer):
    window_seconds: float
    since: str = Field(json_schema_extra={"format": "date-time"})
    until: str = Field(json_schema_extra={"format": "date-time"})
    services: list[ServiceHealth]


def _monitor(ctx: AdminContext) -> OperationalMonitor:
    if ctx.opmonitor is None:
        raise not_found("this node keeps no operational monitoring records ([monitoring] enabled = false)")
    return ctx.opmonitor


def _client(text: str) -> ClientId:
    return ClientId.from_text(text)


def _service(text: str) -> ServiceId:
    """Five parts are a subsystem's service without a version (gateway.apicli.SERVICE_ID's rule)."""
    return ServiceId.from_text(text, has_subsystem=text.count("/") >= 4)


def identifier_text(text: str | None, parse: Callable[[str], ClientId | ServiceId]) -> str | None:
    """An identifier as the records write it (slash form, checked); X-Road's colon form is read too."""
    if text is None:
        return None
    try:
        return parse(slash_form(text)).to_text()
    except IdentifierError as error:
        raise invalid(str(error)) from None


def _role(text: str | None) -> Role | None:
    return None if text is None else Role(text)


@TABLE.read(
    "/monitoring/records",
    "monitoring.records",
    P.READ_MONITORING,
    MonitoringPage,
    audit_reads=True,
    description="`since` must be before `until`. Newest first.",
)
async def monitoring_records(ctx: AdminContext, call: Call[RecordFilters, None]) -> Answered:
    """Operational monitoring records, newest first, one page."""
    monitor = _monitor(ctx)
    params = call.params
    since, until = utc(params.since), utc(params.until)
    try:
        query = RecordQuery(
            since=None if since is None else since.timestamp(),
            until=None if until is None else until.timestamp(),
            client=identifier_text(params.client, _client),
            service=identifier_text(params.service, _service),
            role=_role(params.role),
            outcome=None if params.outcome is None else Outcome(params.outcome),
            fault_code=params.fault_code,
            message_id=params.message_id,
            limit=params.limit,
            offset=params.offset,
        )
    except ValueError as exc:
        raise invalid(str(exc)) from None
    found, next_offset = await asyncio.to_thread(monitor.store.search, query)
    answer: dict[str, Any] = {
        "records": [record_json(stored) for stored in found],
        "limit": params.limit,
        "offset": params.offset,
        "next_offset": next_offset,
    }
    return Answered(answer, target="monitoring", details={"found": len(found)})


@TABLE.read("/monitoring/services", "monitoring.services", P.READ_MONITORING, ServiceHealthList)
async def monitoring_services(ctx: AdminContext, call: Call[StatsFilters, None]) -> Answered:
    """Per-service health over a sliding window: successes, failures, last of each, durations, sizes."""
    monitor = _monitor(ctx)
    params = call.params
    now = time.time()
    query = StatsQuery(
        now=now,
        window_seconds=params.window_seconds,
        service=identifier_text(params.service, _service),
        role=_role(params.role),
    )
    found = await asyncio.to_thread(monitor.store.stats, query)
    return Answered(
        {
            "window_seconds": params.window_seconds,
            "since": iso(query.since),
            "until": iso(now),
            "services": [stats_json(stats) for stats in found],
        }
    )
