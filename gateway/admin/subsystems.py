"""Operations on the subsystems this gateway hosts and how their client systems authenticate."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import Field

from gateway.admin.context import (
    TABLE,
    AdminContext,
    CertificateSummary,
    ClientPath,
    certificate_summary,
    snapshot,
    subsystem_of,
)
from gateway.admin.roles import Permission as P
from gateway.serverconf.repository import (
    DEFAULT_CLIENT_AUTH_MODE,
    UNAUTHENTICATED_WARNING,
    ClientAuthMode,
    SubsystemConf,
)
from gateway.webapi import Call, Outcome
from gateway.webapi.types import Answer, Body, ClientIdField, Pem, Sha256


class Subsystem(Answer):
    client_id: str
    auth_mode: ClientAuthMode
    certificates: list[CertificateSummary]
    unauthenticated: bool = Field(
        description="True in http and https mode: its systems show no pinned certificate, so any "
        "process that reaches the internal interface can act as this subsystem."
    )
    warning: str | None = Field(description=f"{UNAUTHENTICATED_WARNING!r} when unauthenticated.")


class SubsystemList(Answer):
    subsystems: list[Subsystem]


class NewSubsystem(Body):
    client_id: ClientIdField
    auth_mode: ClientAuthMode = Field(
        DEFAULT_CLIENT_AUTH_MODE,
        description="https_cert unless given: http and https leave the subsystem unauthenticated.",
    )


class AuthMode(Body):
    auth_mode: ClientAuthMode


class PinnedCertificate(Body):
    certificate_pem: Pem


class CertificatePath(ClientPath):
    sha256: Sha256


def subsystem_json(conf: SubsystemConf) -> dict[str, Any]:
    return {
        "client_id": conf.client.to_text(),
        "auth_mode": conf.auth_mode.value,
        "certificates": [certificate_summary(pinned.pem) for pinned in conf.certificates],
        "unauthenticated": not conf.authenticated,
        "warning": None if conf.authenticated else UNAUTHENTICATED_WARNING,
    }


@TABLE.read("/subsystems", "subsystem.list", P.READ_CONFIGURATION, SubsystemList)
async def list_subsystems(ctx: AdminContext, call: Call[None, None]) -> Outcome:
    """List the subsystems this gateway hosts."""
    confs = sorted((await snapshot(ctx)).subsystems.values(), key=lambda conf: conf.client)
    return Outcome({"subsystems": [subsystem_json(conf) for conf in confs]})


@TABLE.create("/subsystems", "subsystem.add", P.MANAGE_SUBSYSTEMS, Subsystem)
async def add_subsystem(ctx: AdminContext, call: Call[None, NewSubsystem]) -> Outcome:
    """Register a subsystem on this gateway."""
    client, auth_mode = call.body.client_id, call.body.auth_mode
    await asyncio.to_thread(ctx.repository.add_subsystem, client, auth_mode)
    return Outcome(
        subsystem_json(SubsystemConf(client, auth_mode)),
        201,
        client.to_text(),
        {"auth_mode": auth_mode.value},
    )


@TABLE.read("/subsystems/{client_id}", "subsystem.read", P.READ_CONFIGURATION, Subsystem)
async def read_subsystem(ctx: AdminContext, call: Call[ClientPath, None]) -> Outcome:
    """Show one subsystem."""
    return Outcome(subsystem_json(subsystem_of(await snapshot(ctx), call.params.client_id)))


@TABLE.delete("/subsystems/{client_id}", "subsystem.remove", P.MANAGE_SUBSYSTEMS)
async def remove_subsystem(ctx: AdminContext, call: Call[ClientPath, None]) -> Outcome:
    """Remove a subsystem with its services, access rights and groups."""
    client = call.params.client_id
    await asyncio.to_thread(ctx.repository.remove_subsystem, client)
    return Outcome(None, 204, client.to_text())


@TABLE.change(
    "PUT", "/subsystems/{client_id}/auth-mode", "subsystem.set_auth_mode", P.MANAGE_CLIENT_AUTH, Subsystem
)
async def set_auth_mode(ctx: AdminContext, call: Call[ClientPath, AuthMode]) -> Outcome:
    """Set how the subsystem's client systems connect: http, https or https_cert."""
    client, auth_mode = call.params.client_id, call.body.auth_mode
    await asyncio.to_thread(ctx.repository.set_auth_mode, client, auth_mode)
    conf = subsystem_of(await snapshot(ctx), client)
    return Outcome(subsystem_json(conf), 200, client.to_text(), {"auth_mode": auth_mode.value})


@TABLE.create(
    "/subsystems/{client_id}/certificates",
    "subsystem.pin_certificate",
    P.MANAGE_CLIENT_AUTH,
    CertificateSummary,
)
async def pin_certificate(ctx: AdminContext, call: Call[ClientPath, PinnedCertificate]) -> Outcome:
    """Pin a client system's TLS certificate (for auth mode https_cert)."""
    client, pem = call.params.client_id, call.body.certificate_pem
    summary = certificate_summary(pem)
    await asyncio.to_thread(ctx.repository.pin_certificate, client, pem)
    return Outcome(summary, 201, client.to_text(), summary)


@TABLE.delete(
    "/subsystems/{client_id}/certificates/{sha256}", "subsystem.unpin_certificate", P.MANAGE_CLIENT_AUTH
)
async def unpin_certificate(ctx: AdminContext, call: Call[CertificatePath, None]) -> Outcome:
    """Unpin a client system's certificate."""
    client, sha256 = call.params.client_id, call.params.sha256.lower()
    await asyncio.to_thread(ctx.repository.unpin_certificate, client, sha256)
    return Outcome(None, 204, client.to_text(), {"sha256": sha256})
