"""Operations on the federation's security servers: where they listen, their TLS certificates,
the subsystems they host."""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import Field

from gateway.central.manage.context import (
    TABLE,
    CertificateSummary,
    RegistryContext,
    certificate_summary,
    configuration,
    here,
    run,
)
from gateway.central.roles import Permission as P
from gateway.globalconf import GlobalConf
from gateway.ids import SecurityServerId
from gateway.webapi import Call, Outcome, not_found
from gateway.webapi.types import (
    Answer,
    Body,
    Params,
    Pem,
    ServerIdField,
    Sha256,
    SubsystemIdField,
)

_PORT: Final = r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
ADDRESS_PATTERN: Final = rf"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?):{_PORT}$"
"""host:port of a gateway's external interface (gateway.globalconf.model checks the same)."""
MAX_ADDRESS_LENGTH: Final = 260
"""A DNS name (253 characters at most, RFC 1035) and a port."""
MAX_AUTH_CERTIFICATES: Final = 100
"""A gateway rotates its TLS certificate now and then; a hundred at once is a mistake."""

Address = Annotated[
    str,
    Field(
        pattern=ADDRESS_PATTERN,
        max_length=MAX_ADDRESS_LENGTH,
        description="host:port of the external (mutual TLS) interface.",
    ),
]


class SecurityServer(Answer):
    server_id: str = Field(description="INSTANCE/CLASS/MEMBER/SERVER")
    owner: str
    address: str
    auth_certificates: list[CertificateSummary]
    clients: list[str]


class SecurityServerList(Answer):
    security_servers: list[SecurityServer]


class NewSecurityServer(Body):
    server_id: ServerIdField
    address: Address
    auth_certificates: list[Pem] = Field(min_length=1, max_length=MAX_AUTH_CERTIFICATES)


class AddressChange(Body):
    address: Address


class AuthCertificate(Body):
    certificate: Pem


class HostedClient(Body):
    client_id: SubsystemIdField


class ServerPath(Params):
    server_id: ServerIdField


class ServerCertificatePath(ServerPath):
    sha256: Sha256


class ServerClientPath(ServerPath):
    client_id: SubsystemIdField


def server_json(conf: GlobalConf, server: SecurityServerId) -> dict[str, Any]:
    info = conf.server(server)
    if info is None:
        raise not_found(f"no security server {server} is registered")
    return {
        "server_id": info.id.to_text(),
        "owner": info.id.owner.to_text(),
        "address": info.address,
        "auth_certificates": [certificate_summary(pem) for pem in info.auth_certificates],
        "clients": [client.to_text() for client in info.clients],
    }


async def _server(ctx: RegistryContext, server: SecurityServerId) -> dict[str, Any]:
    return server_json(await configuration(ctx), server)


@TABLE.read("/security-servers", "server.list", P.READ_REGISTRY, SecurityServerList)
async def list_servers(ctx: RegistryContext, call: Call[None, None]) -> Outcome:
    """List the security servers."""
    conf = await configuration(ctx)
    return Outcome({"security_servers": [server_json(conf, s.id) for s in conf.security_servers]})


@TABLE.create("/security-servers", "server.add", P.MANAGE_MEMBERS, SecurityServer)
async def add_server(ctx: RegistryContext, call: Call[None, NewSecurityServer]) -> Outcome:
    """Register a security server directly, without a request from it."""
    body = call.body
    server = here(ctx, body.server_id)
    await run(ctx.repository.add_security_server, server, body.address, list(body.auth_certificates))
    return Outcome(await _server(ctx, server), 201, f"server {server}", {"address": body.address})


@TABLE.read("/security-servers/{server_id}", "server.read", P.READ_REGISTRY, SecurityServer)
async def read_server(ctx: RegistryContext, call: Call[ServerPath, None]) -> Outcome:
    """Show one security server."""
    return Outcome(await _server(ctx, here(ctx, call.params.server_id)))


@TABLE.delete("/security-servers/{server_id}", "server.remove", P.MANAGE_MEMBERS)
async def remove_server(ctx: RegistryContext, call: Call[ServerPath, None]) -> Outcome:
    """Delete a security server."""
    server = here(ctx, call.params.server_id)
    await run(ctx.repository.remove_security_server, server)
    return Outcome(None, 204, f"server {server}")


@TABLE.change(
    "PUT", "/security-servers/{server_id}/address", "server.set_address", P.MANAGE_MEMBERS, SecurityServer
)
async def set_server_address(ctx: RegistryContext, call: Call[ServerPath, AddressChange]) -> Outcome:
    """Change where a security server's external interface listens."""
    server, address = here(ctx, call.params.server_id), call.body.address
    await run(ctx.repository.set_server_address, server, address)
    return Outcome(await _server(ctx, server), 200, f"server {server}", {"address": address})


@TABLE.create(
    "/security-servers/{server_id}/auth-certificates",
    "server.add_auth_cert",
    P.MANAGE_MEMBERS,
    SecurityServer,
)
async def add_auth_certificate(ctx: RegistryContext, call: Call[ServerPath, AuthCertificate]) -> Outcome:
    """Register one more TLS authentication certificate for a security server."""
    server = here(ctx, call.params.server_id)
    sha256 = await run(ctx.repository.add_auth_certificate, server, call.body.certificate)
    return Outcome(await _server(ctx, server), 201, f"server {server}", {"sha256": sha256})


@TABLE.delete(
    "/security-servers/{server_id}/auth-certificates/{sha256}", "server.remove_auth_cert", P.MANAGE_MEMBERS
)
async def remove_auth_certificate(ctx: RegistryContext, call: Call[ServerCertificatePath, None]) -> Outcome:
    """Remove a TLS authentication certificate from a security server (it keeps at least one)."""
    server, sha256 = here(ctx, call.params.server_id), call.params.sha256
    await run(ctx.repository.remove_auth_certificate, server, sha256)
    return Outcome(None, 204, f"server {server}", {"sha256": sha256})


@TABLE.create("/security-servers/{server_id}/clients", "server.add_client", P.MANAGE_MEMBERS, SecurityServer)
async def add_server_client(ctx: RegistryContext, call: Call[ServerPath, HostedClient]) -> Outcome:
    """Let a security server host a registered subsystem."""
    server, client = here(ctx, call.params.server_id), here(ctx, call.body.client_id)
    await run(ctx.repository.add_server_client, server, client)
    return Outcome(await _server(ctx, server), 201, f"server {server}", {"client": client.to_text()})


@TABLE.delete("/security-servers/{server_id}/clients/{client_id}", "server.remove_client", P.MANAGE_MEMBERS)
async def remove_server_client(ctx: RegistryContext, call: Call[ServerClientPath, None]) -> Outcome:
    """Stop a security server hosting a subsystem."""
    server, client = here(ctx, call.params.server_id), here(ctx, call.params.client_id)
    await run(ctx.repository.remove_server_client, server, client)
    return Outcome(None, 204, f"server {server}", {"client": client.to_text()})
