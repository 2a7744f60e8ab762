"""The management API over real HTTP: roles, audit, registrations, keys, its OpenAPI document.

The application runs on 127.0.0.1 (AppRunner, port 0) over a migrated SQLite database; it is
driven with aiohttp's client. The audit log is read back through the repository, not the API.
CSRs are checked with `openssl req -verify`; certificates come from the development CA code.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import stat
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.admin import api, services
from gateway.admin.api import AdminContext, make_admin_app, openapi_document
from gateway.admin.keys import write_new_key
from gateway.admin.roles import Role
from gateway.crypto.certs import certificate_to_pem, fingerprint_sha256
from gateway.crypto.keys import generate_key, save_private_key
from gateway.ids import ClientId, SecurityServerId
from gateway.serverconf.db import migrate
from gateway.serverconf.openapi import parse_openapi
from gateway.serverconf.repository import AuditEntry, AuditResult, KeyUsage, ServerConfRepository
from gateway.trust import pki

SAMPLES = Path(__file__).resolve().parent / "samples"
SERVER = SecurityServerId("DEV", "GOV", "1001", "gw-a")
PROVIDER = "DEV/GOV/1001/PROVIDER"
PROVIDER_PATH = "DEV:GOV:1001:PROVIDER"
CONSUMER = "DEV/COM/2002/CONSUMER"

ALL = frozenset(Role)
SYS = frozenset({Role.SYSTEM_ADMINISTRATOR})
REGISTRATION = SYS | {Role.REGISTRATION_OFFICER}
SERVICES = SYS | {Role.SERVICE_ADMINISTRATOR}
SECURITY = SYS | {Role.SECURITY_OFFICER}

# The brief's matrix, written out here independently of gateway.admin.roles.
EXPECTED_ROLES: dict[str, frozenset[Role]] = {
    "subsystem.list": ALL,
    "subsystem.read": ALL,
    "service.list": ALL,
    "service.read": ALL,
    "access.list": ALL,
    "local_group.list": ALL,
    "key.list": ALL,
    "subsystem.add": REGISTRATION,
    "subsystem.remove": REGISTRATION,
    "subsystem.set_auth_mode": REGISTRATION,
    "subsystem.pin_certificate": REGISTRATION,
    "subsystem.unpin_certificate": REGISTRATION,
    "service.add_wsdl": SERVICES,
    "service.add_openapi": SERVICES,
    "service.set_backend": SERVICES,
    "service.enable": SERVICES,
    "service.disable": SERVICES,
    "service.remove": SERVICES,
    "service.list_descriptions": ALL,
    "service.refresh_description": SERVICES,
    "service.change_description_url": SERVICES,
    "service.enable_description": SERVICES,
    "service.disable_description": SERVICES,
    "access.grant": SERVICES,
    "access.revoke": SERVICES,
    "local_group.add": SERVICES,
    "local_group.remove": SERVICES,
    "local_group.add_member": SERVICES,
    "local_group.remove_member": SERVICES,
    "key.generate": SECURITY,
    "key.csr": SECURITY,
    "certificate.import": SECURITY,
    "audit_log.read": SECURITY,
    "audit_log.verify": SECURITY,
    "message_log.search": SECURITY,
    "message_log.show": SECURITY,
    "message_log.export": SECURITY,
    "message_log.verify": SECURITY,
    "message_log.verify_progress": SECURITY,
    "cache_policy.list": ALL,
    "cache_policy.read": ALL,
    "cache_stats.read": ALL,
    "environment.read": ALL,
    "cache_run.list": ALL,
    "cache_policy.set": SERVICES,
    "cache_policy.apply": SERVICES,
    "cache_policy.remove": SERVICES,
    "cache.purge": SERVICES,
    "cache_run.start": SERVICES,
    "cache_entry.list": SERVICES | SECURITY,
    "cache.purge_subject": SERVICES | SECURITY,
    "maintenance.read": ALL,
    "maintenance.set": SYS,
    "monitoring.records": SERVICES | SECURITY,
    "monitoring.services": SERVICES | SECURITY,
    "config.export": ALL,
    "config.schema": ALL,
    "config.apply": SYS,
    "api_key.list": SYS,
    "api_key.create": SYS,
    "api_key.revoke": SYS,
}

DUMMY_PARAMS = {
    "client_id": "DEV:GOV:9999:NOBODY",
    "service_code": "nothing",
    "group_code": "nogroup",
    "member_id": "DEV:GOV:9999",
    "key_id": "999999",
    "sha256": "00",
    "name": "no-policy",
    "job_id": "0123abcd",
}


@dataclass
class Admin:
    """A running management API and what the tests need around it."""

    base: str
    session: aiohttp.ClientSession
    repository: ServerConfRepository
    keys: dict[Role, str]
    data_dir: Path
    changes: list[int] = field(default_factory=list)
    health: dict[str, Any] = field(default_factory=dict)

    def actor(self, role: Role) -> str:
        key = self.repository.verify_api_key(self.keys[role])
        assert key is not None
        return f"{key.name}#{key.id}"

    async def call(
        self,
        method: str,
        path: str,
        *,
        role: Role | None = Role.SYSTEM_ADMINISTRATOR,
        json: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        all_headers = dict(headers or {})
        if role is not None:
            all_headers["Authorization"] = f"X-Road-ApiKey token={self.keys[role]}"
        async with self.session.request(
            method, self.base + path, json=json, params=params, headers=all_headers
        ) as response:
            text = await response.text()
            if response.status == 204:
                assert text == ""
                return 204, None
            assert response.content_type == "application/json", text
            return response.status, json_loads(text)

    def audit(self, **filters: Any) -> list[AuditEntry]:
        return self.repository.audit_entries(limit=1000, **filters)


def json_loads(text: str) -> Any:
    return json.loads(text)


async def start(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


def make_repository(tmp_path: Path) -> tuple[ServerConfRepository, dict[Role, str]]:
    url = f"sqlite:///{tmp_path / 'serverconf.db'}"
    migrate(url)
    repository = ServerConfRepository.from_url(url)
    keys = {role: repository.create_api_key(f"{role.value}-key", role.value)[1] for role in Role}
    return repository, keys


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[Admin]:
    repository, keys = make_repository(tmp_path)
    health: dict[str, Any] = {"database": "ok"}
    changes: list[int] = []
    ctx = AdminContext(
        repository=repository,
        data_dir=tmp_path / "data",
        server_id=SERVER,
        health=lambda: health,
        on_change=lambda: changes.append(repository.current_version()),
    )
    runner, base = await start(make_admin_app(ctx))
    try:
        async with aiohttp.ClientSession() as session:
            yield Admin(base, session, repository, keys, tmp_path / "data", changes, health)
    finally:
        await runner.cleanup()
        repository.engine.dispose()


async def add_provider(admin: Admin, auth_mode: str = "https") -> None:
    status, body = await admin.call(
        "POST", "/api/v1/subsystems", json={"client_id": PROVIDER, "auth_mode": auth_mode}
    )
    assert status == 201, body


async def register_petstore(admin: Admin, code: str = "pets") -> dict[str, Any]:
    document = (SAMPLES / "petstore.yaml").read_text()
    status, body = await admin.call(
        "POST",
        f"/api/v1/subsystems/{PROVIDER_PATH}/service-descriptions/openapi",
        json={"document": document, "service_code": code},
    )
    assert status == 201, body
    result: dict[str, Any] = body
    return result


def issue(profile: pki.CertificateProfile, public_key: Any) -> x509.Certificate:
    """A certificate from a throwaway development CA."""
    now = dt.datetime.now(dt.UTC)
    ca_key = generate_key()
    ca = pki.CertificateAuthority(pki.build_ca_certificate(ca_key, "Test CA", now), ca_key, pki.CaSettings())
    return pki.issue_certificate(ca, profile, public_key, now)


def openssl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *args], input=stdin, capture_output=True, text=True, timeout=30, check=False
    )


# --- authentication --------------------------------------------------------------------------


async def test_missing_and_invalid_keys_are_401_and_audited_as_anonymous(admin: Admin) -> None:
    status, body = await admin.call("GET", "/api/v1/subsystems", role=None)
    assert status == 401
    assert body["error"] == "unauthorized"
    status, body = await admin.call(
        "POST",
        "/api/v1/subsystems",
        role=None,
        headers={"Authorization": "X-Road-ApiKey token=not-a-key"},
        json={"client_id": PROVIDER},
    )
    assert status == 401
    async with admin.session.get(admin.base + "/api/v1/keys") as response:
        assert response.headers["WWW-Authenticate"] == "X-Road-ApiKey"

    refused = admin.audit(actor="anonymous")
    assert [(e.action, e.result) for e in refused] == [
        ("key.list", AuditResult.REFUSED),
        ("subsystem.add", AuditResult.REFUSED),
        ("subsystem.list", AuditResult.REFUSED),
    ]
    assert refused[1].details is not None and refused[1].details["status"] == 401
    assert admin.repository.snapshot().subsystems == {}


async def test_both_key_headers_are_accepted_and_a_revoked_key_is_not(admin: Admin) -> None:
    key = admin.keys[Role.OBSERVER]
    for headers in ({"X-API-Key": key}, {"Authorization": f"x-road-apikey  token={key}"}):
        status, _ = await admin.call("GET", "/api/v1/subsystems", role=None, headers=headers)
        assert status == 200, headers
    for headers in ({"Authorization": f"Bearer {key}"}, {"Authorization": f"X-Road-ApiKey {key}"}):
        status, _ = await admin.call("GET", "/api/v1/subsystems", role=None, headers=headers)
        assert status == 401, headers

    observer_id = next(k.id for k in admin.repository.list_api_keys() if k.role == Role.OBSERVER.value)
    status, _ = await admin.call("DELETE", f"/api/v1/api-keys/{observer_id}")
    assert status == 204
    status, _ = await admin.call("GET", "/api/v1/subsystems", role=Role.OBSERVER)
    assert status == 401


# --- the role matrix -------------------------------------------------------------------------


def test_every_operation_has_an_expected_role_set() -> None:
    assert {operation.action for operation in api.OPERATIONS} == set(EXPECTED_ROLES)


@pytest.mark.parametrize("role", list(Role), ids=lambda role: role.value)
async def test_role_matrix(admin: Admin, role: Role) -> None:
    """Each role against every operation: refused exactly where the matrix says, and audited."""
    refused_actions = []
    for operation in api.OPERATIONS:
        path = "/api/v1" + operation.path.format(**DUMMY_PARAMS)
        body: dict[str, Any] | None = {} if operation.method in ("POST", "PUT", "PATCH") else None
        status, answer = await admin.call(operation.method, path, role=role, json=body)
        allowed = role in EXPECTED_ROLES[operation.action]
        if allowed:
            assert status not in (401, 403, 500), (operation.action, status, answer)
        else:
            assert status == 403, (operation.action, status, answer)
            assert answer["error"] == "forbidden"
            refused_actions.append(operation.action)

    entries = admin.audit(actor=admin.actor(role))
    audited_refusals = sorted(
        e.action
        for e in entries
        if e.result is AuditResult.REFUSED and (e.details or {}).get("status") == 403
    )
    assert audited_refusals == sorted(refused_actions)
    # Nothing was changed by anyone: every allowed change named something absent or was invalid.
    assert [e for e in entries if e.result is AuditResult.OK] == []
    assert admin.changes == []


async def test_allowed_changes_by_each_role_succeed_and_are_audited(admin: Admin) -> None:
    status, _ = await admin.call(
        "POST", "/api/v1/subsystems", role=Role.REGISTRATION_OFFICER, json={"client_id": PROVIDER}
    )
    assert status == 201
    status, _ = await admin.call(
        "POST",
        f"/api/v1/subsystems/{PROVIDER_PATH}/local-groups",
        role=Role.SERVICE_ADMINISTRATOR,
        json={"code": "partners"},
    )
    assert status == 201
    status, _ = await admin.call("POST", "/api/v1/keys", role=Role.SECURITY_OFFICER, json={"usage": "auth"})
    assert status == 201
    status, _ = await admin.call(
        "POST", "/api/v1/api-keys", role=Role.SYSTEM_ADMINISTRATOR, json={"name": "ci", "role": "observer"}
    )
    assert status == 201
    status, body = await admin.call("GET", "/api/v1/subsystems", role=Role.OBSERVER)
    assert status == 200 and [s["client_id"] for s in body["subsystems"]] == [PROVIDER]

    ok = [(e.actor, e.action, e.target) for e in reversed(admin.audit()) if e.result is AuditResult.OK]
    assert ok[0] == (admin.actor(Role.REGISTRATION_OFFICER), "subsystem.add", PROVIDER)
    assert ok[1] == (admin.actor(Role.SERVICE_ADMINISTRATOR), "local_group.add", f"{PROVIDER}/partners")
    assert ok[2][:2] == (admin.actor(Role.SECURITY_OFFICER), "key.generate")
    assert ok[3][:2] == (admin.actor(Role.SYSTEM_ADMINISTRATOR), "api_key.create")
    assert len(ok) == 4  # reads are not audited
    assert len(admin.changes) == 4
    assert admin.changes == sorted(admin.changes)


# --- errors ----------------------------------------------------------------------------------


async def test_errors_are_json_with_proper_status(admin: Admin) -> None:
    assert (await admin.call("GET", "/api/v1/no-such-thing"))[0] == 404
    status, body = await admin.call("PUT", "/api/v1/subsystems")
    assert status == 405 and body["error"] == "method_not_allowed"
    async with admin.session.post(
        admin.base + "/api/v1/subsystems",
        data=b"{not json",
        headers={"X-API-Key": admin.keys[Role.SYSTEM_ADMINISTRATOR]},
    ) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "validation_error"
    status, body = await admin.call("POST", "/api/v1/subsystems", json=["a list"])
    assert status == 400
    status, body = await admin.call("POST", "/api/v1/subsystems", json={"client_id": "DEV/GOV"})
    assert status == 400 and "INSTANCE/CLASS/MEMBER" in body["message"]
    status, body = await admin.call(
        "POST", "/api/v1/subsystems", json={"client_id": PROVIDER, "auth_mode": "ftp"}
    )
    assert status == 400 and "http, https, https_cert" in body["message"]
    await add_provider(admin)
    status, body = await admin.call("POST", "/api/v1/subsystems", json={"client_id": PROVIDER})
    assert status == 409 and body["error"] == "conflict"
    status, body = await admin.call("GET", "/api/v1/subsystems/DEV:GOV:1001:OTHER")
    assert status == 404 and body["error"] == "not_found"


async def test_an_unexpected_failure_is_500_without_details_and_audited_as_error(
    admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(admin.repository, "add_subsystem", broken)
    status, body = await admin.call("POST", "/api/v1/subsystems", json={"client_id": PROVIDER})
    assert status == 500
    assert body["error"] == "internal_error"
    assert "secret" not in body["message"] and "Traceback" not in body["message"]
    [entry] = admin.audit(action="subsystem.add")
    assert entry.result is AuditResult.ERROR
    assert admin.changes == []


async def test_oversized_body_is_413(admin: Admin) -> None:
    status, body = await admin.call(
        "POST",
        f"/api/v1/subsystems/{PROVIDER_PATH}/service-descriptions/wsdl",
        json={"wsdl": "x" * (api.MAX_REQUEST_BYTES + 1)},
    )
    assert status == 413 and body["error"] == "payload_too_large"


# --- subsystems ------------------------------------------------------------------------------


async def test_subsystem_lifecycle_with_pinned_certificate(admin: Admin, tmp_path: Path) -> None:
    await add_provider(admin, "https")
    status, body = await admin.call(
        "PUT", f"/api/v1/subsystems/{PROVIDER_PATH}/auth-mode", json={"auth_mode": "https_cert"}
    )
    assert status == 200 and body["auth_mode"] == "https_cert"

    certificate = issue(pki.MemberSigningProfile(ClientId("DEV", "GOV", "2002")), generate_key().public_key())
    pem = certificate_to_pem(certificate).decode()
    status, body = await admin.call(
        "POST", f"/api/v1/subsystems/{PROVIDER_PATH}/certificates", json={"certificate_pem": pem}
    )
    assert status == 201 and body["sha256"] == fingerprint_sha256(certificate)
    status, body = await admin.call(
        "POST", f"/api/v1/subsystems/{PROVIDER_PATH}/certificates", json={"certificate_pem": pem}
    )
    assert status == 409
    status, body = await admin.call(
        "POST", f"/api/v1/subsystems/{PROVIDER_PATH}/certificates", json={"certificate_pem": "not a cert"}
    )
    assert status == 400

    conf = admin.repository.snapshot().subsystem(ClientId.from_text(PROVIDER))
    assert conf is not None and conf.auth_mode.value == "https_cert"
    assert conf.accepts_certificate(certificate.public_bytes(Encoding.DER))

    sha = fingerprint_sha256(certificate)
    status, _ = await admin.call("DELETE", f"/api/v1/subsystems/{PROVIDER_PATH}/certificates/{sha}")
    assert status == 204
    status, _ = await admin.call("DELETE", f"/api/v1/subsystems/{PROVIDER_PATH}")
    assert status == 204
    assert admin.repository.snapshot().subsystems == {}
    actions = [e.action for e in reversed(admin.audit()) if e.result is AuditResult.OK]
    assert actions == [
        "subsystem.add",
        "subsystem.set_auth_mode",
        "subsystem.pin_certificate",
        "subsystem.unpin_certificate",
        "subsystem.remove",
    ]


# --- services --------------------------------------------------------------------------------


async def test_wsdl_registration_creates_one_service_per_operation(admin: Admin) -> None:
    await add_provider(admin)
    status, body = await admin.call(
        "POST",
        f"/api/v1/subsystems/{PROVIDER_PATH}/service-descriptions/wsdl",
        role=Role.SERVICE_ADMINISTRATOR,
        json={"wsdl": (SAMPLES / "valid.wsdl").read_text()},
    )
    assert status == 201, body
    expected = {("xroadGetRandom", "v1"), ("xroadSmallAttachment", "v1"), ("xroadBigAttachment", "v1")}
    assert {(s["service_code"], s["service_version"]) for s in body["services"]} == expected
    assert {s["backend_url"] for s in body["services"]} == {"http://iks2-testhost:8080/testservice-0.1/xroad"}

    stored = admin.repository.snapshot().services_of(ClientId.from_text(PROVIDER))
    assert {(c.service.service_code, c.service.service_version, c.kind.value) for c in stored} == {
        (code, version, "soap") for code, version in expected
    }
    assert all(c.description is not None and c.description.source == "upload" for c in stored)

    # The same WSDL again conflicts, and leaves what is registered as it was.
    status, body = await admin.call(
        "POST",
        f"/api/v1/subsystems/{PROVIDER_PATH}/service-descriptions/wsdl",
        json={"wsdl": (SAMPLES / "valid.wsdl").read_text()},
    )
    assert status == 409
    assert len(admin.repository.snapshot().services_of(ClientId.from_text(PROVIDER))) == 3


@pytest.mark.parametrize("sample", ["xxe.wsdl", "invalid.wsdl"])
async def test_unsafe_or_invalid_wsdl_is_refused_with_the_parsers_message(admin: Admin, sample: str) -> None:
    await add_provider(admin)
    status, body = await admin.call(
        "POST",
        f"/api/v1/subsystems/{PROVIDER_PATH}/service-descriptions/wsdl",
        json={"wsdl": (SAMPLES / sample).read_text()},
    )
    assert status == 400
    assert body["error"] == "invalid_description"
    assert body["message"]
    assert admin.repository.snapshot().services == {}
    [entry] = admin.audit(action="service.add_wsdl")
    assert entry.result is AuditResult.REFUSED
    assert entry.details is not None and entry.details["message"] == body["message"]


@pytest.fixture
async def description_server() -> AsyncIterator[str]:
    """Serves the samples over HTTP, plus a redirect and a missing document."""

    async def sample(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        path = SAMPLES / name
        if not path.is_file():
            raise web.HTTPNotFound()
        return web.Response(body=path.read_bytes(), content_type="text/xml")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/samples/valid.wsdl")

    released = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await released.wait()  # answers only when the test is over
        return web.Response(text="too late")

    app = web.Application()
    app.router.add_get("/samples/{name}", sample)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/slow", slow)
    runner, base = await start(app)
    try:
        yield base
    finally:
        released.set()
        await runner.cleanup()


async def test_wsdl_by_url_is_fetched_without_redirects_and_within_limits(
    admin: Admin, description_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_provider(admin)
    path = f"/api/v1/subsystems/{PROVIDER_PATH}/service-descriptions/wsdl"
    url = description_server + "/samples/valid.wsdl"
    status, body = await admin.call("POST", path, json={"url": url})
    assert status == 201, body
    assert {s["description_source"] for s in body["services"]} == {url}

    for bad_url, expected in [
        (description_server + "/redirect", "redirects are not followed"),
        (description_server + "/samples/missing.wsdl", "HTTP 404"),
        ("file:///etc/passwd", "http:// or https://"),
        ("http://127.0.0.1:1/nothing-listens-here", "could not fetch"),
    ]:
        status, body = await admin.call("POST", path, json={"url": bad_url})
        assert status == 400, bad_url
        assert expected in body["message"], body

    monkeypatch.setattr(services, "DESCRIPTION_FETCH_TIMEOUT_SECONDS", 0.2)
    status, body = await admin.call("POST", path, json={"url": description_server + "/slow"})
    assert status == 400 and "could not fetch" in body["message"] and "Timeout" in body["message"]

    monkeypatch.setattr(services, "MAX_DESCRIPTION_BYTES", 1000)
    status, body = await admin.call("POST", path, json={"url": url})
    assert status == 400 and "larger than 1000 bytes" in body["message"]

    status, body = await admin.call("POST", path, json={"url": url, "wsdl": "<x/>"})
    assert status == 400 and "either" in body["message"]


async def test_openapi_registration_creates_a_rest_service_with_its_endpoints(admin: Admin) -> None:
    await add_provider(admin)
    body = await register_petstore(admin)
    assert body["kind"] == "rest"
    assert body["backend_url"] == "http://petstore.swagger.io/v1/cats"
    assert {(e["method"], e["path"]) for e in body["endpoints"]} == {
        ("GET", "/pets"),
        ("POST", "/pets"),
        ("GET", "/pets/*"),
    }
    conf = admin.repository.snapshot().services_of(ClientId.from_text(PROVIDER))[0]
    assert conf.service.service_code == "pets" and len(conf.endpoints) == 3

    status, body = await admin.call(
        "POST",
        f"/api/v1/subsystems/{PROVIDER_PATH}/service-descriptions/openapi",
        json={"document": (SAMPLES / "invalid_version.yaml").read_text(), "service_code": "other"},
    )
    assert status == 400 and body["error"] == "invalid_description"
    assert "3.1.1" in body["message"]

    status, body = await admin.call(
        "POST",
        f"/api/v1/subsystems/{PROVIDER_PATH}/service-descriptions/openapi",
        json={"document": (SAMPLES / "petstore.yaml").read_text(), "service_code": "getWsdl"},
    )
    assert status == 400 and "reserved" in body["message"]
    assert len(admin.repository.snapshot().services) == 1


async def test_service_backend_enable_disable_and_remove(admin: Admin) -> None:
    await add_provider(admin)
    await register_petstore(admin)
    service_path = f"/api/v1/subsystems/{PROVIDER_PATH}/services/pets"
    ca_pem = certificate_to_pem(issue(pki.GatewayProfile(SERVER), generate_key().public_key())).decode()

    status, body = await admin.call(
        "PATCH",
        service_path,
        json={
            "backend_url": "https://pets.internal:8443/v1",
            "timeout_seconds": 5,
            "tls_verify": False,
            "tls_ca_pem": ca_pem,
        },
    )
    assert status == 200, body
    conf = admin.repository.snapshot().services_of(ClientId.from_text(PROVIDER))[0]
    assert (conf.backend_url, conf.timeout_seconds, conf.tls.verify) == (
        "https://pets.internal:8443/v1",
        5.0,
        False,
    )
    assert conf.tls.ca_bundle_pem == ca_pem
    assert len(conf.endpoints) == 3  # untouched

    for bad in (
        {"timeout_seconds": 0},
        {"backend_url": "ftp://x"},
        {"tls_ca_pem": "junk"},
        {"tls_verify": "no"},
        {},
    ):
        status, body = await admin.call("PATCH", service_path, json=bad)
        assert status == 400, (bad, body)
    status, _ = await admin.call("PATCH", service_path, json={"tls_ca_pem": None})
    assert status == 200
    assert admin.repository.snapshot().services_of(ClientId.from_text(PROVIDER))[0].tls.ca_bundle_pem is None

    status, body = await admin.call(
        "POST", service_path + "/disable", json={"notice": "Maintenance until 14:00"}
    )
    assert status == 200 and body["enabled"] is False and body["disabled_notice"] == "Maintenance until 14:00"
    status, body = await admin.call("POST", service_path + "/enable")
    assert status == 200 and body["enabled"] is True
    status, body = await admin.call("GET", service_path, params={"version": "v9"})
    assert status == 404
    status, _ = await admin.call("DELETE", service_path)
    assert status == 204
    assert admin.repository.snapshot().services == {}


async def test_a_backend_client_certificate_is_checked_set_and_cleared(admin: Admin, tmp_path: Path) -> None:
    """For backends that require mutual TLS: the files must load (key matching) before they are kept."""
    await add_provider(admin)
    await register_petstore(admin)
    service_path = f"/api/v1/subsystems/{PROVIDER_PATH}/services/pets"
    key = generate_key()
    cert_file, key_file, other_key_file = tmp_path / "client.pem", tmp_path / "client.key", tmp_path / "o.key"
    cert_file.write_bytes(certificate_to_pem(issue(pki.GatewayProfile(SERVER), key.public_key())))
    save_private_key(key_file, key)
    save_private_key(other_key_file, generate_key())

    for bad in (
        {"tls_client_cert_path": str(tmp_path / "missing.pem")},
        {"tls_client_cert_path": str(cert_file)},  # no key in that file
        {"tls_client_cert_path": str(cert_file), "tls_client_key_path": str(other_key_file)},
        {"tls_client_key_path": str(key_file)},  # a key without its certificate
    ):
        status, body = await admin.call("PATCH", service_path, json=bad)
        assert status == 400, (bad, body)
        assert "Traceback" not in body["message"]
    assert (
        admin.repository.snapshot().services_of(ClientId.from_text(PROVIDER))[0].tls.client_cert_path is None
    )

    status, body = await admin.call(
        "PATCH",
        service_path,
        json={"tls_client_cert_path": str(cert_file), "tls_client_key_path": str(key_file)},
    )
    assert status == 200, body
    assert (body["tls_client_cert_path"], body["tls_client_key_path"]) == (str(cert_file), str(key_file))
    tls = admin.repository.snapshot().services_of(ClientId.from_text(PROVIDER))[0].tls
    assert (tls.client_cert_path, tls.client_key_path) == (str(cert_file), str(key_file))

    status, body = await admin.call("PATCH", service_path, json={"tls_client_cert_path": None})
    assert status == 200 and body["tls_client_cert_path"] is None and body["tls_client_key_path"] is None


async def test_versioned_soap_services_are_addressed_with_the_version_parameter(admin: Admin) -> None:
    await add_provider(admin)
    await admin.call(
        "POST",
        f"/api/v1/subsystems/{PROVIDER_PATH}/service-descriptions/wsdl",
        json={"wsdl": (SAMPLES / "valid.wsdl").read_text()},
    )
    path = f"/api/v1/subsystems/{PROVIDER_PATH}/services/xroadGetRandom"
    assert (await admin.call("POST", path + "/disable"))[0] == 404  # no unversioned one
    status, body = await admin.call("POST", path + "/disable", params={"version": "v1"})
    assert status == 200 and body["enabled"] is False and body["disabled_notice"] is None


# --- access rights and local groups ----------------------------------------------------------


async def test_access_rights_grant_list_revoke(admin: Admin) -> None:
    await add_provider(admin)
    await register_petstore(admin)
    rights_path = f"/api/v1/subsystems/{PROVIDER_PATH}/services/pets/access-rights"
    whole = {"subject": CONSUMER, "subject_type": "subsystem"}
    endpoint = {"subject": "DEV/COM/2002", "subject_type": "member", "method": "get", "path": "/pets/*"}
    group = {"subject": "DEV/security-server-owners", "subject_type": "globalgroup"}
    for right in (whole, endpoint, group):
        status, body = await admin.call("POST", rights_path, role=Role.SERVICE_ADMINISTRATOR, json=right)
        assert status == 201, body
    assert (await admin.call("POST", rights_path, json=whole))[0] == 409

    status, body = await admin.call("GET", rights_path, role=Role.OBSERVER)
    assert status == 200
    assert {(r["subject_type"], r["subject"], r["method"], r["path"]) for r in body["access_rights"]} == {
        ("subsystem", CONSUMER, None, None),
        ("member", "DEV/COM/2002", "GET", "/pets/*"),
        ("globalgroup", "DEV/security-server-owners", None, None),
    }

    snapshot = admin.repository.snapshot()
    service = snapshot.services_of(ClientId.from_text(PROVIDER))[0].service
    member = ClientId("DEV", "COM", "2002")
    never = lambda *_: False  # noqa: E731
    assert snapshot.allowed(
        ClientId.from_text(CONSUMER), service, "DELETE", "/pets/1", global_group_member=never
    )
    assert snapshot.allowed(member, service, "GET", "/pets/1", global_group_member=never)
    assert not snapshot.allowed(member, service, "POST", "/pets", global_group_member=never)

    for bad in (
        {"subject": CONSUMER, "subject_type": "member"},  # a subsystem, not a member
        {"subject": CONSUMER, "subject_type": "planet"},
        {"subject": CONSUMER, "subject_type": "subsystem", "method": "GET"},
        {"subject": "DEV/GOV", "subject_type": "subsystem"},
    ):
        status, body = await admin.call("POST", rights_path, json=bad)
        assert status == 400, (bad, body)
    status, _ = await admin.call(
        "POST", f"/api/v1/subsystems/{PROVIDER_PATH}/services/nope/access-rights", json=whole
    )
    assert status == 404

    status, _ = await admin.call(
        "DELETE", rights_path, params={k: v.upper() if k == "method" else v for k, v in endpoint.items()}
    )
    assert status == 204
    status, _ = await admin.call("DELETE", rights_path, params=whole)
    assert status == 204
    assert (await admin.call("DELETE", rights_path, params=whole))[0] == 404
    status, body = await admin.call("GET", rights_path)
    assert [r["subject_type"] for r in body["access_rights"]] == ["globalgroup"]


async def test_local_groups_and_rights_granted_to_them(admin: Admin) -> None:
    await add_provider(admin)
    await register_petstore(admin)
    groups_path = f"/api/v1/subsystems/{PROVIDER_PATH}/local-groups"
    status, _ = await admin.call(
        "POST", groups_path, json={"code": "partners", "description": "Trusted partners"}
    )
    assert status == 201
    assert (await admin.call("POST", groups_path, json={"code": "partners"}))[0] == 409
    status, _ = await admin.call("POST", groups_path + "/partners/members", json={"client_id": CONSUMER})
    assert status == 201
    status, _ = await admin.call(
        "POST", groups_path + "/partners/members", json={"client_id": "DEV/COM/3003"}
    )
    assert status == 201
    status, body = await admin.call("GET", groups_path, role=Role.OBSERVER)
    assert body["local_groups"] == [
        {
            "code": "partners",
            "description": "Trusted partners",
            "members": ["DEV/COM/2002/CONSUMER", "DEV/COM/3003"],
        }
    ]

    rights_path = f"/api/v1/subsystems/{PROVIDER_PATH}/services/pets/access-rights"
    status, _ = await admin.call(
        "POST", rights_path, json={"subject": "partners", "subject_type": "localgroup"}
    )
    assert status == 201
    status, _ = await admin.call(
        "POST", rights_path, json={"subject": "strangers", "subject_type": "localgroup"}
    )
    assert status == 404

    status, _ = await admin.call("DELETE", groups_path + "/partners/members/DEV:COM:3003")
    assert status == 204
    assert (await admin.call("DELETE", groups_path + "/partners/members/DEV:COM:3003"))[0] == 404
    status, _ = await admin.call("DELETE", groups_path + "/partners")
    assert status == 204
    assert admin.repository.snapshot().local_groups_of(ClientId.from_text(PROVIDER)) == []
    assert (await admin.call("GET", rights_path))[1]["access_rights"] == []  # went with the group


# --- keys and certificates -------------------------------------------------------------------


async def test_auth_key_generation_csr_and_certificate_import(admin: Admin, tmp_path: Path) -> None:
    status, key = await admin.call("POST", "/api/v1/keys", role=Role.SECURITY_OFFICER, json={"usage": "auth"})
    assert status == 201, key
    key_path = Path(key["key_path"])
    assert key_path.parent == admin.data_dir / "keys"
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(key_path.parent).st_mode) == 0o700
    assert key["status"] == "new" and key["member_id"] is None

    status, body = await admin.call(
        "POST",
        f"/api/v1/keys/{key['id']}/csr",
        json={"subject": {"country": "EE"}, "dns_names": ["gw-a.example"]},
    )
    assert status == 200, body
    csr_file = tmp_path / "auth.csr"
    csr_file.write_text(body["csr_pem"])
    verified = openssl("req", "-in", str(csr_file), "-noout", "-verify")
    assert verified.returncode == 0, verified.stderr
    assert "verify OK" in verified.stdout + verified.stderr
    text = openssl("req", "-in", str(csr_file), "-noout", "-text").stdout
    assert "URI:xroad:server:DEV/GOV/1001/gw-a" in text and "DNS:gw-a.example" in text
    subject = openssl("req", "-in", str(csr_file), "-noout", "-subject", "-nameopt", "RFC2253").stdout
    assert "CN=gw-a" in subject and "C=EE" in subject and "O=1001" in subject

    csr = x509.load_pem_x509_csr(body["csr_pem"].encode())
    certificate = issue(pki.GatewayProfile(SERVER), csr.public_key())
    status, imported = await admin.call(
        "POST", "/api/v1/certificates", json={"certificate_pem": certificate_to_pem(certificate).decode()}
    )
    assert status == 200, imported
    assert imported["id"] == key["id"] and imported["status"] == "certified"
    assert imported["certificate"]["sha256"] == fingerprint_sha256(certificate)
    [record] = admin.repository.list_keys()
    assert record.cert_pem is not None and record.status == "certified"

    stranger = issue(pki.GatewayProfile(SERVER), generate_key().public_key())
    status, body = await admin.call(
        "POST", "/api/v1/certificates", json={"certificate_pem": certificate_to_pem(stranger).decode()}
    )
    assert status == 400 and "public key" in body["message"]
    assert (await admin.call("POST", "/api/v1/certificates", json={"certificate_pem": "junk"}))[0] == 400
    assert (await admin.call("POST", "/api/v1/keys/999/csr", json={}))[0] == 404


async def test_sign_keys_belong_to_a_member_and_take_only_its_certificate(admin: Admin) -> None:
    assert (await admin.call("POST", "/api/v1/keys", json={"usage": "sign"}))[0] == 400
    status, _ = await admin.call(
        "POST", "/api/v1/keys", json={"usage": "sign", "member_id": "DEV/GOV/1001/SUB"}
    )
    assert status == 400
    status, _ = await admin.call("POST", "/api/v1/keys", json={"usage": "auth", "member_id": "DEV/GOV/1001"})
    assert status == 400
    status, key = await admin.call(
        "POST", "/api/v1/keys", json={"usage": "sign", "member_id": "DEV/GOV/1001", "algorithm": "rsa2048"}
    )
    assert status == 201 and key["member_id"] == "DEV/GOV/1001"

    status, body = await admin.call("POST", f"/api/v1/keys/{key['id']}/csr", json={})
    csr = x509.load_pem_x509_csr(body["csr_pem"].encode())
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["xroad:member:DEV/GOV/1001"]

    wrong_member = issue(pki.MemberSigningProfile(ClientId("DEV", "GOV", "9999")), csr.public_key())
    status, body = await admin.call(
        "POST", "/api/v1/certificates", json={"certificate_pem": certificate_to_pem(wrong_member).decode()}
    )
    assert status == 400 and "DEV/GOV/9999" in body["message"]
    right_member = issue(pki.MemberSigningProfile(ClientId("DEV", "GOV", "1001")), csr.public_key())
    status, body = await admin.call(
        "POST", "/api/v1/certificates", json={"certificate_pem": certificate_to_pem(right_member).decode()}
    )
    assert status == 200 and body["status"] == "certified"
    status, body = await admin.call("GET", "/api/v1/keys", role=Role.OBSERVER)
    assert [(k["usage"], k["status"]) for k in body["keys"]] == [("sign", "certified")]


# --- API keys and the audit log ----------------------------------------------------------------


async def test_api_keys_create_shows_the_key_once_and_revoke_ends_it(admin: Admin) -> None:
    status, created = await admin.call(
        "POST", "/api/v1/api-keys", json={"name": "monitoring", "role": "observer"}
    )
    assert status == 201 and created["role"] == "observer" and len(created["key"]) >= 40
    status, _ = await admin.call(
        "GET", "/api/v1/subsystems", role=None, headers={"X-API-Key": created["key"]}
    )
    assert status == 200
    status, listed = await admin.call("GET", "/api/v1/api-keys")
    assert created["key"] not in json.dumps(listed)
    assert "monitoring" in [k["name"] for k in listed["api_keys"]]
    assert (await admin.call("POST", "/api/v1/api-keys", json={"name": "x", "role": "root"}))[0] == 400
    entries = admin.audit(action="api_key.create")
    assert [e.result for e in entries] == [AuditResult.REFUSED, AuditResult.OK]
    assert created["key"] not in json.dumps([e.details for e in entries])

    status, _ = await admin.call("DELETE", f"/api/v1/api-keys/{created['id']}")
    assert status == 204
    status, _ = await admin.call(
        "GET", "/api/v1/subsystems", role=None, headers={"X-API-Key": created["key"]}
    )
    assert status == 401
    assert (await admin.call("DELETE", f"/api/v1/api-keys/{created['id']}"))[0] == 404


async def test_audit_log_pages_and_filters(admin: Admin) -> None:
    for code in ("A", "B", "C"):
        await admin.call(
            "POST",
            "/api/v1/subsystems",
            role=Role.REGISTRATION_OFFICER,
            json={"client_id": f"DEV/GOV/1/{code}"},
        )
    await admin.call("POST", "/api/v1/subsystems", role=Role.OBSERVER, json={"client_id": "DEV/GOV/1/D"})

    status, page = await admin.call(
        "GET", "/api/v1/audit-log", role=Role.SECURITY_OFFICER, params={"limit": "2"}
    )
    assert status == 200
    assert [e["target"] for e in page["entries"]] == ["/api/v1/subsystems", "DEV/GOV/1/C"]
    assert page["entries"][0]["result"] == "refused" and page["entries"][0]["actor"] == admin.actor(
        Role.OBSERVER
    )
    status, older = await admin.call(
        "GET", "/api/v1/audit-log", params={"limit": "2", "before_id": str(page["next_before_id"])}
    )
    assert [e["target"] for e in older["entries"]] == ["DEV/GOV/1/B", "DEV/GOV/1/A"]

    _, by_actor = await admin.call(
        "GET", "/api/v1/audit-log", params={"actor": admin.actor(Role.REGISTRATION_OFFICER)}
    )
    assert len(by_actor["entries"]) == 3 and by_actor["next_before_id"] is None
    _, by_action = await admin.call("GET", "/api/v1/audit-log", params={"action": "subsystem.add"})
    assert len(by_action["entries"]) == 4
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    _, later = await admin.call("GET", "/api/v1/audit-log", params={"since": future})
    assert later["entries"] == []
    assert (await admin.call("GET", "/api/v1/audit-log", params={"since": "yesterday"}))[0] == 400
    assert (await admin.call("GET", "/api/v1/audit-log", params={"limit": "many"}))[0] == 400
    for role in (Role.OBSERVER, Role.SERVICE_ADMINISTRATOR, Role.REGISTRATION_OFFICER):
        assert (await admin.call("GET", "/api/v1/audit-log", role=role))[0] == 403


# --- OpenAPI document and health -------------------------------------------------------------

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _document_routes(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


async def test_openapi_document_is_served_without_a_key_and_describes_every_route(admin: Admin) -> None:
    async with admin.session.get(admin.base + "/api/openapi.json") as response:
        assert response.status == 200
        served = json.loads(await response.text())
    assert served == openapi_document()
    assert served["openapi"].startswith("3.0.")
    assert served["info"]["title"] and served["info"]["version"]

    ctx = AdminContext(repository=admin.repository, data_dir=admin.data_dir, server_id=SERVER)
    app = make_admin_app(ctx)
    app_routes = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource
    }
    assert app_routes == _document_routes(served)

    operation_ids = []
    for path, item in served["paths"].items():
        for method, operation in item.items():
            operation_ids.append(operation["operationId"])
            assert operation["responses"], (method, path)
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == set(_path_names(path)), (method, path)
    assert len(operation_ids) == len(set(operation_ids))

    schemas = served["components"]["schemas"]
    for ref in _refs(served):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref

    by_route = {(op.method, "/api/v1" + op.path): op for op in api.OPERATIONS}
    for (method, path), operation in by_route.items():
        described = served["paths"][path][method.lower()]
        assert described["operationId"] == operation.action
        assert described["x-permission"] == operation.permission.value

    # An independent reader of OpenAPI 3 documents accepts it: the one services are registered with.
    parsed = parse_openapi(json.dumps(served).encode())
    assert len(parsed.endpoints) == len(_document_routes(served))


def _path_names(path: str) -> list[str]:
    return re.findall(r"\{([^}]+)\}", path)


async def test_health_needs_no_key_and_reports_the_providers_state(admin: Admin) -> None:
    async with admin.session.get(admin.base + "/health") as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok", "database": "ok"}
    admin.health["status"] = "degraded"
    async with admin.session.get(admin.base + "/health") as response:
        assert response.status == 503
        assert (await response.json())["status"] == "degraded"


async def test_health_without_provider(tmp_path: Path) -> None:
    repository, _ = make_repository(tmp_path)
    runner, base = await start(make_admin_app(AdminContext(repository, tmp_path, SERVER)))
    try:
        async with aiohttp.ClientSession() as session, session.get(base + "/health") as response:
            assert response.status == 200 and await response.json() == {"status": "ok"}
    finally:
        await runner.cleanup()
        repository.engine.dispose()


def test_presented_key_forms() -> None:
    assert api.presented_key({"Authorization": "X-Road-ApiKey token=abc"}) == "abc"
    assert api.presented_key({"Authorization": "X-ROAD-APIKEY TOKEN=abc "}) == "abc"
    assert api.presented_key({"X-API-Key": " abc "}) == "abc"
    assert api.presented_key({"Authorization": "X-Road-ApiKey token="}) is None
    assert api.presented_key({"Authorization": "Basic abc", "X-API-Key": "k"}) == "k"
    assert api.presented_key({}) is None


def test_key_file_permissions_hold_under_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = write_new_key(tmp_path, KeyUsage.AUTH, generate_key())
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
