"""The central registry over real HTTP: registration workflows, publication, key rotation, roles, audit.

Each test starts a registry on 127.0.0.1 (port 0 for both listeners) over a fresh database:
SQLite in tmp_path, and PostgreSQL in a schema of its own when XGATE_TEST_PG_DSN is set.
Gateways' requests are made with `gateway.central.client` (what `xgate gateway register`
uses); what gets published is checked the way a gateway checks it: downloaded, verified
with `verify_signed_globalconf` against the registry's anchor, or through `GlobalConfSource`.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from cryptography import x509

from gateway.central import api, tables
from gateway.central.client import (
    RegistryRequestError,
    register_server,
    request_address_change,
    request_deletion,
    request_status,
    request_subsystem,
)
from gateway.central.config import CentralConfig, SigningKeyFiles
from gateway.central.db import ALEMBIC_VERSION_TABLE, migrate
from gateway.central.repository import CentralRepository, Conflict
from gateway.central.requests import (
    RequestType,
    VerifiedRequest,
    build_signed_request,
    new_request,
    read_signed_request,
)
from gateway.central.roles import Role
from gateway.central.server import RunningRegistry, start_registry
from gateway.central.tables import metadata
from gateway.config import Listener
from gateway.crypto.certs import certificate_to_pem, fingerprint_sha256
from gateway.crypto.keys import PrivateKey, load_private_key
from gateway.globalconf import (
    Anchor,
    GlobalConf,
    TrustedCa,
    UntrustedGlobalConf,
    anchor_from_json,
    verify_signed_globalconf,
)
from gateway.globalconf.signed import canonical_json
from gateway.globalconf.source import GlobalConfSource
from gateway.ids import ClientId, SecurityServerId
from gateway.serverconf.db import create_engine
from gateway.trust import pki
from tests.conftest import empty_tables, migrated_url_fixture

INSTANCE = "DEV"
OWNER = ClientId(INSTANCE, "GOV", "1001")
OTHER = ClientId(INSTANCE, "COM", "2002")
THIRD = ClientId(INSTANCE, "COM", "3003")
SERVER = SecurityServerId(INSTANCE, "GOV", "1001", "gw1")
OWN_SUBSYSTEM = ClientId(INSTANCE, "GOV", "1001", "benefits")
OTHER_SUBSYSTEM = ClientId(INSTANCE, "COM", "2002", "crm")
ADDRESS = "gw1.dev.example:5500"


# --- keys and certificates ------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    certificate: x509.Certificate
    key: PrivateKey
    key_path: Path
    cert_path: Path


@dataclass(frozen=True)
class Trust:
    dir: Path
    ca: pki.CertificateAuthority
    auth: Pair
    auth_2: Pair  # SERVER's next TLS certificate
    owner: Pair
    other: Pair
    third: Pair  # a member with no say over OTHER's subsystems
    signer_1: Pair
    signer_2: Pair

    @property
    def ca_pem(self) -> str:
        return certificate_to_pem(self.ca.certificate).decode()


def _issue(directory: Path, ca: pki.CertificateAuthority, profile: pki.CertificateProfile, name: str) -> Pair:
    issued = pki.issue(directory, ca, profile, out_prefix=directory / "out" / name)
    return Pair(
        issued.certificate, load_private_key(issued.key_path), issued.key_path, issued.certificate_path
    )


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> Trust:
    directory = tmp_path_factory.mktemp("pki")
    ca = pki.init_pki(directory)
    return Trust(
        dir=directory,
        ca=ca,
        auth=_issue(directory, ca, pki.GatewayProfile(SERVER), "auth"),
        auth_2=_issue(directory, ca, pki.GatewayProfile(SERVER), "auth-2"),
        owner=_issue(directory, ca, pki.MemberSigningProfile(OWNER), "owner"),
        other=_issue(directory, ca, pki.MemberSigningProfile(OTHER), "other"),
        third=_issue(directory, ca, pki.MemberSigningProfile(THIRD), "third"),
        signer_1=_issue(directory, ca, pki.ConfigurationSignerProfile("signer 1"), "signer-1"),
        signer_2=_issue(directory, ca, pki.ConfigurationSignerProfile("signer 2"), "signer-2"),
    )


# --- databases ------------------------------------------------------------------------------


migrated_url = migrated_url_fixture("central", "central.sqlite", migrate, "xgate_central")
"""One migrated database per backend for the module (PostgreSQL: a schema of its own)."""


@pytest.fixture
def database_url(migrated_url: str) -> str:
    """The module's database, emptied: as a fresh migration leaves it."""
    engine = create_engine(migrated_url)
    try:
        with engine.begin() as connection:
            empty_tables(connection, metadata)
            connection.execute(sa.insert(tables.published).values(id=1, version=0))
    finally:
        engine.dispose()
    return migrated_url


# --- a running registry ---------------------------------------------------------------------


@dataclass
class Registry:
    running: RunningRegistry
    session: aiohttp.ClientSession
    trust: Trust
    keys: dict[Role, tuple[int, str]]

    def actor(self, role: Role) -> str:
        """How the audit log and decisions name the test's key for `role`."""
        return f"{role.value} key#{self.keys[role][0]}"

    @property
    def url(self) -> str:
        """The distribution URL: what gateways talk to."""
        return self.running.distribution_url

    @property
    def repository(self) -> CentralRepository:
        return self.running.context.repository

    async def api(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        role: Role | None = Role.REGISTRY_ADMINISTRATOR,
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"X-Road-ApiKey token={self.keys[role][1]}"} if role else {}
        async with self.session.request(
            method, self.running.management_url + "/api/v1" + path, json=body, headers=headers
        ) as response:
            text = await response.text()
            return response.status, json.loads(text) if text else None

    async def ok(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        role: Role = Role.REGISTRY_ADMINISTRATOR,
    ) -> Any:
        status, answer = await self.api(method, path, body, role=role)
        assert status < 300, (status, answer)
        return answer

    async def anchor(self) -> Anchor:
        async with self.session.get(self.url + "/anchor") as response:
            assert response.status == 200
            return anchor_from_json(await response.read())

    async def signed(self) -> bytes:
        async with self.session.get(self.url + "/globalconf") as response:
            assert response.status == 200, await response.text()
            return await response.read()

    async def globalconf(self) -> GlobalConf:
        """Downloaded and verified as a gateway would, against the registry's own anchor."""
        anchor = await self.anchor()
        return verify_signed_globalconf(
            await self.signed(), anchor.certificates, self.repository.now(), instance=INSTANCE
        )

    async def register_members(self, *members: tuple[ClientId, str]) -> None:
        for member, name in members:
            body = {"member_class": member.member_class, "member_code": member.member_code, "name": name}
            await self.ok("POST", "/members", body)

    async def submit_registration(self, **options: Any) -> Any:
        trust = self.trust
        return await asyncio.to_thread(
            register_server,
            self.url,
            SERVER,
            ADDRESS,
            trust.auth.certificate,
            trust.auth.key,
            trust.owner.certificate,
            trust.owner.key,
            **options,
        )

    async def registered_server(self) -> None:
        """OWNER registered, SERVER's registration submitted and approved."""
        await self.register_members((OWNER, "Social Security Fund"))
        status = await self.submit_registration()
        await self.ok("POST", f"/requests/{status.id}/approve", {})


def _config(trust: Trust, directory: Path, database_url: str, **changes: Any) -> CentralConfig:
    config = CentralConfig(
        instance=INSTANCE,
        data_dir=directory,
        database_url=database_url,
        management=Listener("127.0.0.1", 0),
        distribution=Listener("127.0.0.1", 0),
        public_url=None,
        signing_keys=(SigningKeyFiles(trust.signer_1.key_path, trust.signer_1.cert_path, active=True),),
        regenerate_seconds=3600.0,
    )
    return replace(config, **changes)


@pytest.fixture
async def registry(trust: Trust, tmp_path: Path, database_url: str) -> AsyncIterator[Registry]:
    running = await start_registry(_config(trust, tmp_path, database_url))
    repository = running.context.repository
    keys = {}
    for role in Role:
        record, key = repository.admin.create_api_key(f"{role.value} key", role.value)
        keys[role] = (record.id, key)
    try:
        async with aiohttp.ClientSession() as session:
            registry = Registry(running, session, trust, keys)
            # Seeded straight into the database (each API change costs a publication); the
            # first change a test makes through the API publishes them with it.
            repository.add_member_class("GOV", "Government")
            repository.add_member_class("COM", "Companies")
            repository.add_trusted_ca(TrustedCa("dev CA", trust.ca_pem))
            yield registry
    finally:
        await running.stop()


# --- registration workflows -----------------------------------------------------------------


async def test_approved_registration_is_published_signed(registry: Registry) -> None:
    await registry.register_members((OWNER, "Social Security Fund"))
    status = await registry.submit_registration()
    assert status.state == "pending" and status.type == "auth_cert_registration"
    assert (await registry.globalconf()).server(SERVER) is None, "pending requests are not published"

    approved = await registry.ok("POST", f"/requests/{status.id}/approve", {"reason": "checked by phone"})
    assert approved["state"] == "approved"

    conf = await registry.globalconf()
    server = conf.server(SERVER)
    assert server is not None and server.address == ADDRESS
    assert server.auth_cert_sha256 == (fingerprint_sha256(registry.trust.auth.certificate),)
    assert conf.server_by_cert_fingerprint(fingerprint_sha256(registry.trust.auth.certificate)) == server

    # The gateway sees the decision: who, when, why.
    seen = await asyncio.to_thread(request_status, registry.url, status.id)
    assert (seen.state, seen.reason) == ("approved", "checked by phone")
    assert seen.decided_by == registry.actor(Role.REGISTRY_ADMINISTRATOR) and seen.decided_at


async def test_rejected_and_pending_requests_are_not_published(registry: Registry) -> None:
    await registry.register_members((OWNER, "Social Security Fund"))
    rejected = await registry.submit_registration()
    pending = await registry.submit_registration()
    answer = await registry.ok("POST", f"/requests/{rejected.id}/reject", {"reason": "unknown address"})
    assert (answer["state"], answer["reason"]) == ("rejected", "unknown address")
    assert (await registry.globalconf()).server(SERVER) is None

    status, error = await registry.api("POST", f"/requests/{rejected.id}/approve", {})
    assert (status, error["error"]) == (409, "conflict")
    listed = await registry.ok("GET", "/requests?state=pending")
    assert [r["id"] for r in listed["requests"]] == [pending.id]
    seen = await asyncio.to_thread(request_status, registry.url, rejected.id)
    assert (seen.state, seen.reason) == ("rejected", "unknown address")


async def test_forged_requests_are_refused_and_audited(registry: Registry) -> None:
    await registry.register_members((OWNER, "Social Security Fund"), (OTHER, "Firm"))
    trust = registry.trust
    with pytest.raises(RegistryRequestError) as other_member:
        await asyncio.to_thread(
            register_server,
            registry.url,
            SERVER,
            ADDRESS,
            trust.auth.certificate,
            trust.auth.key,
            trust.other.certificate,  # COM/2002's key cannot speak for GOV/1001
            trust.other.key,
        )
    assert other_member.value.status == 403 and "names DEV/COM/2002" in other_member.value.message

    # A valid request with its content changed after signing.
    request = new_request(
        RequestType.AUTH_CERT_REGISTRATION,
        OWNER,
        registry.repository.now(),
        server=SERVER,
        address=ADDRESS,
        auth_certificate=certificate_to_pem(trust.auth.certificate).decode(),
        replaces=None,
    )
    container = json.loads(
        build_signed_request(request, trust.owner.key, trust.owner.certificate, auth_key=trust.auth.key)
    )
    content = base64.b64decode(container["content"]).replace(b"gw1.dev.example", b"gw1.evil.example")
    container["content"] = base64.b64encode(content).decode()
    async with registry.session.post(registry.url + "/requests", data=canonical_json(container)) as response:
        assert response.status == 403
        assert "signature does not match" in (await response.json())["message"]

    assert (await registry.ok("GET", "/requests"))["requests"] == []
    audit = (await registry.ok("GET", "/audit-log?action=request.submit"))["entries"]
    assert [(e["actor"], e["result"]) for e in audit] == [("member:DEV/GOV/1001", "refused")] * 2


async def test_subsystem_request_needs_its_member_and_is_published_on_approval(registry: Registry) -> None:
    await registry.registered_server()
    trust = registry.trust

    async def ask() -> Any:
        return await asyncio.to_thread(
            functools.partial(
                request_subsystem,
                registry.url,
                SERVER,
                OTHER_SUBSYSTEM,
                trust.owner.certificate,
                trust.owner.key,
                member_cert=trust.other.certificate,
                member_key=trust.other.key,
            )
        )

    with pytest.raises(RegistryRequestError) as unknown_member:
        await ask()
    assert unknown_member.value.status == 404 and "DEV/COM/2002" in unknown_member.value.message

    await registry.register_members((OTHER, "Firm"))
    status = await ask()
    assert status.state == "pending"
    assert OTHER_SUBSYSTEM not in (await registry.globalconf()).server(SERVER).clients  # type: ignore[union-attr]
    await registry.ok("POST", f"/requests/{status.id}/approve", {})

    conf = await registry.globalconf()
    assert conf.is_known(OTHER_SUBSYSTEM)
    assert [s.id for s in conf.servers_for(OTHER_SUBSYSTEM)] == [SERVER]
    # Asking again for what is registered is refused at once.
    with pytest.raises(RegistryRequestError) as again:
        await ask()
    assert again.value.status == 409


def _hosting_request(registry: Registry, consent: Pair | None) -> bytes:
    """SERVER asks to host OTHER_SUBSYSTEM, signed by its owner and, as consent, by `consent`
    (None: the consent signature is taken out after signing)."""
    trust = registry.trust
    request = new_request(
        RequestType.CLIENT_REGISTRATION,
        OWNER,
        registry.repository.now(),
        server=SERVER,
        client=OTHER_SUBSYSTEM,
    )
    signer = consent or trust.other
    signed = build_signed_request(
        request,
        trust.owner.key,
        trust.owner.certificate,
        client_key=signer.key,
        client_cert=signer.certificate,
    )
    if consent is not None:
        return signed
    container = json.loads(signed)
    container["signatures"] = [s for s in container["signatures"] if s["role"] != "client"]
    return canonical_json(container)


async def test_hosting_another_members_subsystem_needs_that_members_signature(registry: Registry) -> None:
    """Build 11 / hole 10: the owner's signature alone, or a third member's, does not let a
    gateway host a subsystem; its own member's signature does."""
    await registry.registered_server()
    await registry.register_members((OTHER, "Firm"), (THIRD, "Bystander"))

    async def submit(data: bytes) -> tuple[int, dict[str, Any]]:
        async with registry.session.post(registry.url + "/requests", data=data) as response:
            return response.status, await response.json()

    status, error = await submit(_hosting_request(registry, None))
    assert (status, error["error"]) == (403, "untrusted_request")
    assert "needs the consent of its member DEV/COM/2002" in error["message"]
    status, error = await submit(_hosting_request(registry, registry.trust.third))
    assert (status, error["error"]) == (403, "untrusted_request")
    assert "signed by DEV/COM/3003, not by its member DEV/COM/2002" in error["message"]
    assert (await registry.ok("GET", "/requests"))["requests"][0]["type"] == "auth_cert_registration"
    audit = (await registry.ok("GET", "/audit-log?action=request.submit"))["entries"]
    assert [e["result"] for e in audit][:2] == ["refused", "refused"]
    # The gateway's client refuses to ask without the member's key at all.
    with pytest.raises(ValueError, match="needs the signing key of its member DEV/COM/2002"):
        request_subsystem(
            registry.url, SERVER, OTHER_SUBSYSTEM, registry.trust.owner.certificate, registry.trust.owner.key
        )

    status, accepted = await submit(_hosting_request(registry, registry.trust.other))
    assert status == 202 and accepted["client"] == OTHER_SUBSYSTEM.to_text()
    await registry.ok("POST", f"/requests/{accepted['id']}/approve", {})
    assert [s.id for s in (await registry.globalconf()).servers_for(OTHER_SUBSYSTEM)] == [SERVER]


async def test_a_stored_hosting_request_without_consent_is_not_approved(registry: Registry) -> None:
    """A pending request stored before consent was required (or written around the verifier)
    cannot be approved: the registry checks the member's signature again before applying it."""
    await registry.registered_server()
    await registry.register_members((OTHER, "Firm"))
    data = _hosting_request(registry, None)
    request = read_signed_request(data)
    with pytest.raises(Conflict, match="needs the consent"):
        registry.repository.submit_request(VerifiedRequest(request, registry.trust.owner.certificate), data)
    with registry.repository.engine.begin() as connection:
        connection.execute(
            sa.insert(tables.registration_requests).values(
                id="legacy",
                type=request.type.value,
                state="pending",
                server_id=SERVER.to_text(),
                member_id=OWNER.to_text(),
                client_id=OTHER_SUBSYSTEM.to_text(),
                nonce=request.nonce,
                signed_request=data.decode(),
                submitted_at=registry.repository.now(),
            )
        )
    status, error = await registry.api("POST", "/requests/legacy/approve", {})
    assert (status, error["error"]) == (409, "conflict") and "DEV/COM/2002" in error["message"]
    assert (await registry.globalconf()).servers_for(OTHER_SUBSYSTEM) == []


async def test_address_change_and_certificate_replacement(registry: Registry) -> None:
    await registry.registered_server()
    trust = registry.trust
    moved = await asyncio.to_thread(
        request_address_change,
        registry.url,
        SERVER,
        "[2001:db8::5]:5500",
        trust.owner.certificate,
        trust.owner.key,
    )
    await registry.ok("POST", f"/requests/{moved.id}/approve", {})
    assert (await registry.globalconf()).server(SERVER).address == "[2001:db8::5]:5500"  # type: ignore[union-attr]

    old = fingerprint_sha256(trust.auth.certificate)
    renewed = await asyncio.to_thread(
        register_server,
        registry.url,
        SERVER,
        "[2001:db8::5]:5500",
        trust.auth_2.certificate,
        trust.auth_2.key,
        trust.owner.certificate,
        trust.owner.key,
        replaces=old,
    )
    assert renewed.details["replaces"] == old
    assert (await registry.globalconf()).server(SERVER).auth_cert_sha256 == (old,)  # type: ignore[union-attr]
    await registry.ok("POST", f"/requests/{renewed.id}/approve", {})
    server = (await registry.globalconf()).server(SERVER)
    assert server is not None and server.auth_cert_sha256 == (fingerprint_sha256(trust.auth_2.certificate),)


async def test_deletion_requests(registry: Registry) -> None:
    await registry.registered_server()
    trust = registry.trust
    await registry.ok("POST", "/subsystems", {"client_id": OWN_SUBSYSTEM.to_text()})
    await registry.ok(
        "POST", "/security-servers/DEV:GOV:1001:gw1/clients", {"client_id": OWN_SUBSYSTEM.to_text()}
    )

    async def delete(request_type: RequestType, **fields: Any) -> GlobalConf:
        status = await asyncio.to_thread(
            request_deletion,
            registry.url,
            request_type,
            OWNER,
            trust.owner.certificate,
            trust.owner.key,
            **fields,
        )
        await registry.ok("POST", f"/requests/{status.id}/approve", {})
        return await registry.globalconf()

    conf = await delete(RequestType.CLIENT_DELETION, server_id=SERVER, client=OWN_SUBSYSTEM)
    assert list(conf.servers_for(OWN_SUBSYSTEM)) == [] and conf.is_known(OWN_SUBSYSTEM)
    conf = await delete(RequestType.SERVER_DELETION, server_id=SERVER)
    assert conf.server(SERVER) is None and conf.is_known(OWNER)
    conf = await delete(RequestType.SUBSYSTEM_DELETION, client=OWN_SUBSYSTEM)
    assert not conf.is_known(OWN_SUBSYSTEM) and conf.is_known(OWNER)
    conf = await delete(RequestType.MEMBER_DELETION)
    assert not conf.is_known(OWNER) and conf.members == ()


async def test_member_deletion_removes_its_servers_and_subsystems(registry: Registry) -> None:
    await registry.registered_server()
    await registry.register_members((OTHER, "Firm"))
    for subsystem in (OWN_SUBSYSTEM, OTHER_SUBSYSTEM):
        await registry.ok("POST", "/subsystems", {"client_id": subsystem.to_text()})
        await registry.ok(
            "POST", "/security-servers/DEV:GOV:1001:gw1/clients", {"client_id": subsystem.to_text()}
        )
    await registry.ok("POST", "/global-groups", {"code": "everyone", "description": "All of them"})
    for client in (OWNER, OWN_SUBSYSTEM, OTHER_SUBSYSTEM):
        await registry.ok("POST", "/global-groups/everyone/members", {"client_id": client.to_text()})
    before = await registry.globalconf()
    assert before.servers_for(OTHER_SUBSYSTEM)[0].id == SERVER

    status, _ = await registry.api("DELETE", "/members/DEV:GOV:1001")
    assert status == 204
    after = await registry.globalconf()
    assert after.version > before.version
    assert not after.is_known(OWNER) and not after.is_known(OWN_SUBSYSTEM)
    assert after.server(SERVER) is None and after.security_servers == ()
    assert after.is_known(OTHER_SUBSYSTEM) and list(after.servers_for(OTHER_SUBSYSTEM)) == []
    (group,) = after.global_groups
    assert group.members == (OTHER_SUBSYSTEM,)


async def test_a_change_that_would_break_the_configuration_is_refused(registry: Registry) -> None:
    await registry.registered_server()
    sha256 = fingerprint_sha256(registry.trust.auth.certificate)
    status, error = await registry.api(
        "DELETE", f"/security-servers/DEV:GOV:1001:gw1/auth-certificates/{sha256}"
    )
    assert status == 400 and "at least one authentication certificate" in error["message"]
    assert (await registry.globalconf()).server(SERVER) is not None
    status, error = await registry.api("DELETE", "/member-classes/GOV")
    assert status == 409 and "has members" in error["message"]


# --- publication ----------------------------------------------------------------------------


async def test_version_increases_with_every_change(registry: Registry) -> None:
    first = (await registry.globalconf()).version
    await registry.register_members((OWNER, "Social Security Fund"))
    second = await registry.globalconf()
    assert second.version == first + 1 and second.member_name(OWNER) == "Social Security Fund"
    await registry.ok("PUT", "/members/DEV:GOV:1001", {"name": "Social Insurance Board"})
    third = await registry.globalconf()
    assert third.version == first + 2 and third.member_name(OWNER) == "Social Insurance Board"
    await registry.ok("PUT", "/settings", {"validity_seconds": 900})
    fourth = await registry.globalconf()
    assert fourth.settings.validity_seconds == 900
    assert (fourth.expires_at - fourth.generated_at).total_seconds() == 900


async def test_the_configuration_is_re_signed_on_the_timer_and_the_version_survives_restarts(
    trust: Trust, tmp_path: Path, database_url: str
) -> None:
    config = _config(trust, tmp_path, database_url, regenerate_seconds=0.2)
    running = await start_registry(config)
    try:
        first = running.context.publisher.current
        assert first is not None
        deadline = time.monotonic() + 10
        while running.context.publisher.current.version < first.version + 2:  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the timer did not publish"
            await asyncio.sleep(0.05)
        latest = running.context.publisher.current
        assert latest is not None and latest.generated_at > first.generated_at
    finally:
        await running.stop()
    restarted = await start_registry(replace(config, regenerate_seconds=3600.0))
    try:
        current = restarted.context.publisher.current
        assert current is not None and current.version > latest.version
    finally:
        await restarted.stop()


async def test_key_rotation_without_a_flag_day(registry: Registry, tmp_path: Path) -> None:
    trust = registry.trust
    old_anchor = await registry.anchor()
    assert old_anchor.certificates == (trust.signer_1.certificate,)
    assert old_anchor.configuration_urls == (registry.url + "/globalconf",)
    url = old_anchor.configuration_urls[0]

    # 1. A new key joins the anchor as standby; configurations are still signed by the old one.
    added = await registry.ok(
        "POST",
        "/signing-keys",
        {"key_path": str(trust.signer_2.key_path), "cert_path": str(trust.signer_2.cert_path)},
    )
    assert added["status"] == "standby"
    both = await registry.anchor()
    assert set(both.certificates) == {trust.signer_1.certificate, trust.signer_2.certificate}
    gateway_both = GlobalConfSource(url, both, tmp_path / "both.json")
    gateway_old = GlobalConfSource(url, old_anchor, tmp_path / "old.json")
    for source in (gateway_both, gateway_old):
        await source.refresh()

    # 2. The switch: gateways holding both certificates follow; an anchor with only the old refuses.
    await registry.ok("POST", f"/signing-keys/{added['id']}/activate")
    signer = json.loads(await registry.signed())["signature"]["signer_certificate"]
    assert signer == certificate_to_pem(trust.signer_2.certificate).decode()
    switched = await gateway_both.refresh()
    assert switched.version > gateway_old.current.version  # type: ignore[union-attr]
    kept = gateway_old.current
    with pytest.raises(UntrustedGlobalConf):
        await gateway_old.refresh()
    assert gateway_old.current is kept, "a refused download leaves the last good copy"

    # 3. The old key cannot sign any more once retired, and leaves the anchor.
    (old_key,) = [
        k for k in (await registry.ok("GET", "/signing-keys"))["signing_keys"] if k["status"] == "standby"
    ]
    status, error = await registry.api("POST", f"/signing-keys/{added['id']}/retire")
    assert status == 409 and "active" in error["message"]
    await registry.ok("POST", f"/signing-keys/{old_key['id']}/retire")
    assert (await registry.anchor()).certificates == (trust.signer_2.certificate,)
    status, _ = await registry.api("POST", f"/signing-keys/{old_key['id']}/activate")
    assert status == 409
    await registry.ok("POST", "/globalconf/publish")
    await gateway_both.refresh()
    assert gateway_both.current.version > switched.version  # type: ignore[union-attr]


# --- the management API (the same on both backends: SQLite only) ----------------------------

sqlite_only = pytest.mark.parametrize("migrated_url", ["sqlite"], indirect=True)


@sqlite_only
async def test_an_observer_changes_nothing(registry: Registry) -> None:
    """Every changing operation of the API refuses the observer, before reading anything."""
    changing = [op for op in api.OPERATIONS if op.changes]
    for operation in changing:
        path = re.sub(r"\{\w+\}", "x", operation.path)
        status, error = await registry.api(operation.method, path, {}, role=Role.OBSERVER)
        assert (status, error["error"]) == (403, "forbidden"), operation.action
    refused = (await registry.ok("GET", "/audit-log?limit=1000"))["entries"]
    assert len([e for e in refused if e["result"] == "refused"]) == len(changing)


@sqlite_only
async def test_roles(registry: Registry) -> None:
    body = {"member_class": "GOV", "member_code": "1001", "name": "Fund"}
    assert (await registry.api("POST", "/members", body, role=Role.OBSERVER))[0] == 403
    assert (await registry.api("GET", "/members", role=Role.OBSERVER))[0] == 200
    assert (await registry.api("GET", "/audit-log", role=Role.OBSERVER))[0] == 403
    assert (await registry.api("GET", "/members", role=None))[0] == 401
    officer = Role.REGISTRATION_OFFICER
    assert (await registry.api("POST", "/members", body, role=officer))[0] == 201
    tsa = {"name": "TSA", "url": "http://127.0.0.1:1/tsa", "certificate": registry.trust.ca_pem}
    assert (await registry.api("POST", "/timestamping-authorities", tsa, role=officer))[0] == 403
    assert (await registry.api("POST", "/timestamping-authorities", tsa))[0] == 201
    assert (await registry.api("POST", "/api-keys", {"name": "x", "role": "observer"}, role=officer))[
        0
    ] == 403
    refused = (await registry.ok("GET", "/audit-log?action=member.add"))["entries"]
    assert [(e["actor"], e["result"]) for e in refused] == [
        (registry.actor(officer), "ok"),
        (registry.actor(Role.OBSERVER), "refused"),
    ]


@sqlite_only
async def test_every_change_is_audited(registry: Registry) -> None:
    await registry.registered_server()
    await registry.ok("POST", "/subsystems", {"client_id": OWN_SUBSYSTEM.to_text()})
    await registry.ok("POST", "/global-groups", {"code": "g"})
    await registry.ok("PUT", "/settings", {"refresh_interval_seconds": 30})
    await registry.api("POST", "/subsystems", {"client_id": OWN_SUBSYSTEM.to_text()})  # a duplicate: refused
    entries = (await registry.ok("GET", "/audit-log?limit=1000"))["entries"]
    done = [(e["action"], e["result"]) for e in reversed(entries) if e["action"] != "audit_log.read"]
    assert done == [
        ("member.add", "ok"),
        ("request.submit", "ok"),
        ("request.approve", "ok"),
        ("subsystem.add", "ok"),
        ("global_group.add", "ok"),
        ("settings.update", "ok"),
        ("subsystem.add", "refused"),
    ]
    approve = next(e for e in entries if e["action"] == "request.approve")
    assert approve["details"] == {"type": "auth_cert_registration"}


@sqlite_only
async def test_openapi_describes_every_route(registry: Registry) -> None:
    async with registry.session.get(registry.running.management_url + "/api/openapi.json") as response:
        document = await response.json()
    described = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    app = api.make_management_app(registry.running.context)
    routed = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    assert described == routed
    for operation in api.OPERATIONS:
        described_op = document["paths"][api.API_PREFIX + operation.path][operation.method.lower()]
        assert described_op["x-permission"] == operation.permission.value
        assert described_op["summary"] and not described_op["summary"].startswith(operation.action)
    assert len(api.OPERATIONS) >= 50


@sqlite_only
async def test_health_and_errors_are_json(registry: Registry) -> None:
    async with registry.session.get(registry.running.management_url + "/health") as response:
        health = await response.json()
        assert response.status == 200 and health["status"] == "ok" and health["globalconf_version"] >= 1
    async with registry.session.get(registry.running.management_url + "/api/v1/nothing") as response:
        assert response.status == 404 and (await response.json())["error"] == "not_found"
    async with registry.session.get(registry.url + "/requests/0123") as response:
        assert response.status == 404 and (await response.json())["error"] == "not_found"
    status, error = await registry.api(
        "POST", "/members", {"member_class": "NOPE", "member_code": "1", "name": "x"}
    )
    assert (status, error["error"]) == (404, "not_found")


def test_migration_builds_exactly_the_tables(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'central.sqlite'}"
    migrate(url)
    migrate(url)  # a second run changes nothing
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table": ALEMBIC_VERSION_TABLE})
            differences = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert differences == []


@sqlite_only
async def test_listings_page_alike_and_identifiers_take_either_form(registry: Registry) -> None:
    for path in ("/requests", "/audit-log"):
        for limit in ("0", "1001", "x"):
            status, error = await registry.api("GET", f"{path}?limit={limit}")
            assert (status, error["error"]) == (400, "validation_error"), (path, limit)
        assert (await registry.api("GET", f"{path}?limit=1000"))[0] == 200
    await registry.register_members((OWNER, "Social Security Fund"))
    for segment in ("DEV%2FGOV%2F1001", "DEV:GOV:1001"):
        member = await registry.ok("GET", f"/members/{segment}")
        assert member["member_id"] == OWNER.to_text()
    status, error = await registry.api("GET", "/members/OTHER%2FGOV%2F1001")
    assert (status, error["error"]) == (404, "not_found")
    status, error = await registry.api("POST", "/subsystems", {"client_id": "OTHER/GOV/1001/x"})
    assert (status, error["error"]) == (404, "not_found") and "instance 'DEV'" in error["message"]
