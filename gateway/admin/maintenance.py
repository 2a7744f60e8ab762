"""Maintenance mode through the management API: take a node out from behind its load balancer.

`PUT /maintenance {"enabled": true}` turns the node's health to 503 "maintenance" while it goes
on serving every request that reaches it; `GET /maintenance` shows since when, by whom, and the
exchanges still in flight per interface, so the operator sees when the node has drained
(docs/operations.md "Health behind a load balancer"). Every role reads it (it is health);
only the system administrator switches it (`manage_maintenance`), and each switch is audited.
The switch is kept in the node's data directory and survives a restart
(gateway.monitoring.maintenance).
"""

from __future__ import annotations

import asyncio

from pydantic import Field

from gateway.admin.context import TABLE, AdminContext
from gateway.admin.roles import Permission as P
from gateway.monitoring.maintenance import MAX_REASON_LENGTH, MaintenanceMode
from gateway.webapi import CONFLICT, ApiError, Call, Outcome
from gateway.webapi.types import Answer, Body


class MaintenanceView(Answer):
    enabled: bool
    since: str | None = Field(description="When it was turned on (UTC, ISO 8601).")
    by: str | None = Field(description="The API key that turned it on.")
    reason: str | None
    in_flight: dict[str, int] = Field(
        description="Exchanges held or waiting per interface (internal, external): 0 everywhere is drained."
    )
    drained: bool = Field(description="Nothing in flight on any interface.")


class MaintenanceSwitch(Body):
    enabled: bool
    reason: str | None = Field(None, max_length=MAX_REASON_LENGTH, description="Why, for the audit log.")


def _switch(ctx: AdminContext) -> MaintenanceMode:
    if ctx.maintenance is None:
        raise ApiError(409, CONFLICT, "this node has no maintenance switch")
    return ctx.maintenance


def _view(ctx: AdminContext, switch: MaintenanceMode) -> dict[str, object]:
    state = switch.state or {}
    in_flight = dict(ctx.in_flight()) if ctx.in_flight is not None else {}
    return {
        "enabled": switch.state is not None,
        "since": state.get("since"),
        "by": state.get("by"),
        "reason": state.get("reason"),
        "in_flight": in_flight,
        "drained": not any(in_flight.values()),
    }


@TABLE.read("/maintenance", "maintenance.read", P.READ_CONFIGURATION, MaintenanceView)
async def read_maintenance(ctx: AdminContext, call: Call[None, None]) -> Outcome:
    """Whether the node is in maintenance, and what it still has in flight."""
    return Outcome(_view(ctx, _switch(ctx)))


@TABLE.change(
    "PUT", "/maintenance", "maintenance.set", P.MANAGE_MAINTENANCE, MaintenanceView, reconfigures=False
)
async def set_maintenance(ctx: AdminContext, call: Call[None, MaintenanceSwitch]) -> Outcome:
    """Turn maintenance mode on (health 503, requests still served) or off."""
    switch = _switch(ctx)
    actor, body = call.caller.actor, call.body
    if body.enabled:
        await asyncio.to_thread(switch.turn_on, actor, body.reason)
    else:
        await asyncio.to_thread(switch.turn_off, actor)
    return Outcome(_view(ctx, switch), 200, "maintenance", {"enabled": body.enabled, "reason": body.reason})
