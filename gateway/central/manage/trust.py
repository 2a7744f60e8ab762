"""Operations on whom the federation trusts and how it runs: CAs and their OCSP responders,
timestamping authorities, federation-wide settings."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Final

from pydantic import Field

from gateway.central.manage.context import (
    TABLE,
    CertificateSummary,
    RegistryContext,
    Text,
    certificate_summary,
    configuration,
    run,
)
from gateway.central.roles import Permission as P
from gateway.globalconf import OcspResponder, TimestampingAuthority, TrustedCa
from gateway.ids import ClientId, slash_form
from gateway.webapi import Call, Outcome, not_found
from gateway.webapi.types import CLIENT_PATTERN, MAX_SQL_INTEGER, Answer, Body, HttpUrl, Params, Pem

MAX_RESPONDERS: Final = 100
"""A CA names one OCSP responder or a few; a hundred is a mistake."""


class Responder(Answer):
    url: str
    certificate: CertificateSummary | None


class TrustedCaView(Answer):
    name: str
    certificate: CertificateSummary
    ocsp_responders: list[Responder]


class TrustedCaList(Answer):
    trusted_cas: list[TrustedCaView]


class NewResponder(Body):
    url: HttpUrl
    certificate: Pem | None = Field(None, description="The responder's certificate, when the CA delegates.")


class NewTrustedCa(Body):
    name: Text
    certificate: Pem
    ocsp_responders: list[NewResponder] = Field(default_factory=list, max_length=MAX_RESPONDERS)


class Responders(Body):
    ocsp_responders: list[NewResponder] = Field(max_length=MAX_RESPONDERS)


class NamePath(Params):
    name: Text


class Tsa(Answer):
    name: str
    url: str
    certificate: CertificateSummary


class TsaList(Answer):
    timestamping_authorities: list[Tsa]


class NewTsa(Body):
    name: Text
    url: HttpUrl
    certificate: Pem


class TsaChange(Body):
    url: HttpUrl
    certificate: Pem


def _responders(given: list[NewResponder]) -> tuple[OcspResponder, ...]:
    return tuple(OcspResponder(item.url, item.certificate) for item in given)


def _ca_json(ca: TrustedCa) -> dict[str, object]:
    return {
        "name": ca.name,
        "certificate": certificate_summary(ca.certificate),
        "ocsp_responders": [
            {"url": r.url, "certificate": certificate_summary(r.certificate) if r.certificate else None}
            for r in ca.ocsp_responders
        ],
    }


def _tsa_json(tsa: TimestampingAuthority) -> dict[str, object]:
    return {"name": tsa.name, "url": tsa.url, "certificate": certificate_summary(tsa.certificate)}


@TABLE.read("/trusted-cas", "trusted_ca.list", P.READ_REGISTRY, TrustedCaList)
async def list_trusted_cas(ctx: RegistryContext, call: Call[None, None]) -> Outcome:
    """List the trusted CAs with their OCSP responders."""
    conf = await configuration(ctx)
    return Outcome({"trusted_cas": [_ca_json(ca) for ca in conf.trusted_cas]})


@TABLE.create("/trusted-cas", "trusted_ca.add", P.MANAGE_FEDERATION, TrustedCaView)
async def add_trusted_ca(ctx: RegistryContext, call: Call[None, NewTrustedCa]) -> Outcome:
    """Trust a CA for gateways' TLS and members' signing certificates."""
    body = call.body
    ca = TrustedCa(body.name, body.certificate, _responders(body.ocsp_responders))
    await run(ctx.repository.add_trusted_ca, ca)
    details = {"sha256": certificate_summary(ca.certificate)["sha256"]}
    return Outcome(_ca_json(ca), 201, f"trusted CA {ca.name}", details)


@TABLE.change(
    "PUT", "/trusted-cas/{name}/ocsp-responders", "trusted_ca.set_ocsp", P.MANAGE_FEDERATION, TrustedCaView
)
async def set_ocsp_responders(ctx: RegistryContext, call: Call[NamePath, Responders]) -> Outcome:
    """Replace a CA's OCSP responders."""
    name, responders = call.params.name, _responders(call.body.ocsp_responders)
    conf = await configuration(ctx)
    if not any(ca.name == name for ca in conf.trusted_cas):
        raise not_found(f"no trusted CA {name!r}")
    await run(ctx.repository.set_ocsp_responders, name, responders)
    ca = next(ca for ca in (await configuration(ctx)).trusted_cas if ca.name == name)
    return Outcome(_ca_json(ca), 200, f"trusted CA {name}", {"urls": [r.url for r in responders]})


@TABLE.delete("/trusted-cas/{name}", "trusted_ca.remove", P.MANAGE_FEDERATION)
async def remove_trusted_ca(ctx: RegistryContext, call: Call[NamePath, None]) -> Outcome:
    """Stop trusting a CA."""
    await run(ctx.repository.remove_trusted_ca, call.params.name)
    return Outcome(None, 204, f"trusted CA {call.params.name}")


@TABLE.read("/timestamping-authorities", "tsa.list", P.READ_REGISTRY, TsaList)
async def list_tsas(ctx: RegistryContext, call: Call[None, None]) -> Outcome:
    """List the timestamping authorities."""
    conf = await configuration(ctx)
    return Outcome({"timestamping_authorities": [_tsa_json(tsa) for tsa in conf.timestamping_authorities]})


@TABLE.create("/timestamping-authorities", "tsa.add", P.MANAGE_FEDERATION, Tsa)
async def add_tsa(ctx: RegistryContext, call: Call[None, NewTsa]) -> Outcome:
    """Add an RFC 3161 timestamping authority."""
    tsa = TimestampingAuthority(call.body.name, call.body.url, call.body.certificate)
    await run(ctx.repository.add_timestamping_authority, tsa)
    return Outcome(_tsa_json(tsa), 201, f"tsa {tsa.name}", {"url": tsa.url})


@TABLE.change("PUT", "/timestamping-authorities/{name}", "tsa.update", P.MANAGE_FEDERATION, Tsa)
async def update_tsa(ctx: RegistryContext, call: Call[NamePath, TsaChange]) -> Outcome:
    """Change a timestamping authority's URL and certificate."""
    name = call.params.name
    if not any(tsa.name == name for tsa in (await configuration(ctx)).timestamping_authorities):
        raise not_found(f"no timestamping authority {name!r}")
    tsa = TimestampingAuthority(name, call.body.url, call.body.certificate)
    await run(ctx.repository.update_timestamping_authority, tsa)
    return Outcome(_tsa_json(tsa), 200, f"tsa {tsa.name}", {"url": tsa.url})


@TABLE.delete("/timestamping-authorities/{name}", "tsa.remove", P.MANAGE_FEDERATION)
async def remove_tsa(ctx: RegistryContext, call: Call[NamePath, None]) -> Outcome:
    """Remove a timestamping authority."""
    await run(ctx.repository.remove_timestamping_authority, call.params.name)
    return Outcome(None, 204, f"tsa {call.params.name}")


# --- settings -------------------------------------------------------------------------------

Seconds = Annotated[int, Field(ge=1, le=MAX_SQL_INTEGER)]


class Settings(Answer):
    ocsp_freshness_seconds: int
    timestamping_interval_seconds: int
    refresh_interval_seconds: int
    validity_seconds: int
    monitoring_client: str | None = Field(
        description="The federation's monitoring client: it may read every gateway's operational "
        "monitoring records (getSecurityServerOperationalData); null: none."
    )


class SettingsChange(Body):
    ocsp_freshness_seconds: Seconds | None = None
    timestamping_interval_seconds: Seconds | None = None
    refresh_interval_seconds: Seconds | None = None
    validity_seconds: Seconds | None = None
    monitoring_client: str | None = Field(
        None,
        pattern=f"^$|{CLIENT_PATTERN}",
        description="A registered client INSTANCE/CLASS/MEMBER[/SUBSYSTEM]; an empty string unnames it.",
    )


async def _settings_json(ctx: RegistryContext) -> dict[str, object]:
    document: dict[str, object] = dataclasses.asdict(await run(ctx.repository.settings))
    client = await run(ctx.repository.monitoring_client)
    document["monitoring_client"] = None if client is None else client.to_text()
    return document


@TABLE.read("/settings", "settings.read", P.READ_REGISTRY, Settings)
async def read_settings(ctx: RegistryContext, call: Call[None, None]) -> Outcome:
    """Show the federation-wide settings."""
    return Outcome(await _settings_json(ctx))


@TABLE.change("PUT", "/settings", "settings.update", P.MANAGE_FEDERATION, Settings)
async def update_settings(ctx: RegistryContext, call: Call[None, SettingsChange]) -> Outcome:
    """Change some federation-wide settings."""
    changes = call.body.model_dump(exclude_none=True)
    monitoring = changes.pop("monitoring_client", None)
    if changes:
        await run(ctx.repository.update_settings, **changes)
    if monitoring is not None:
        client = ClientId.from_text(slash_form(monitoring)) if monitoring else None
        await run(ctx.repository.set_monitoring_client, client)
        changes["monitoring_client"] = monitoring or None
    return Outcome(await _settings_json(ctx), 200, "settings", changes)
