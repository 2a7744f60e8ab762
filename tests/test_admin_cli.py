"""`xgate admin` against a live management API.

The API runs on 127.0.0.1 in a background thread with its own event loop; the commands run in
click's CliRunner and talk to it over real HTTP with requests.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
from aiohttp import web
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.admin.api import AdminContext, make_admin_app
from gateway.admin.cli import cli, format_table
from gateway.admin.roles import Role
from gateway.crypto.certs import certificate_to_pem
from gateway.crypto.keys import generate_key
from gateway.ids import ClientId, SecurityServerId
from gateway.serverconf.db import migrate
from gateway.serverconf.repository import UNAUTHENTICATED_WARNING, AuditResult, ServerConfRepository
from gateway.trust import pki

SAMPLES = Path(__file__).resolve().parent / "samples"
SERVER = SecurityServerId("DEV", "GOV", "1001", "gw-a")
PROVIDER = "DEV/GOV/1001/PROVIDER"
CONSUMER = "DEV/COM/2002/CONSUMER"


class ServerThread:
    """An aiohttp application served on 127.0.0.1 from a thread with its own event loop."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="admin-api", daemon=True)
        self.url = ""

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        runner = web.AppRunner(self._app)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        host, port = runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        assert self._ready.wait(10), "the admin API did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@dataclass
class Live:
    url: str
    repository: ServerConfRepository
    keys: dict[Role, str]
    runner: CliRunner

    def run(
        self, *args: str, role: Role | None = Role.SYSTEM_ADMINISTRATOR, input: str | None = None
    ) -> Result:
        env = {"XGATE_ADMIN_URL": self.url, "XGATE_API_KEY": self.keys[role] if role else None}
        return self.runner.invoke(cli, list(args), env=env, input=input, catch_exceptions=False)

    def ok(self, *args: str, role: Role = Role.SYSTEM_ADMINISTRATOR) -> str:
        result = self.run(*args, role=role)
        assert result.exit_code == 0, result.output
        return result.output

    def json(self, *args: str, role: Role = Role.SYSTEM_ADMINISTRATOR) -> Any:
        return json.loads(self.ok(*args, "--json", role=role))


@contextmanager
def serving(tmp_path: Path, **context: Any) -> Iterator[Live]:
    """A node's management API on a fresh database, with a key of each role; `context`: more of
    the node (AdminContext's other fields)."""
    url = f"sqlite:///{tmp_path / 'serverconf.db'}"
    migrate(url)
    repository = ServerConfRepository.from_url(url)
    keys = {role: repository.create_api_key(f"{role.value}-cli", role.value)[1] for role in Role}
    ctx = AdminContext(repository=repository, data_dir=tmp_path / "data", server_id=SERVER, **context)
    with ServerThread(make_admin_app(ctx)) as server:
        yield Live(server.url, repository, keys, CliRunner())
    repository.engine.dispose()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with serving(tmp_path) as running:
        yield running


def test_every_command_has_help() -> None:
    runner = CliRunner()

    def walk(command: click.Command, path: list[str]) -> Iterator[list[str]]:
        yield path
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                yield from walk(sub, [*path, name])

    paths = list(walk(cli, []))
    assert ["services", "add-wsdl"] in paths and ["audit"] in paths and len(paths) > 30
    for path in paths:
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, path
        assert "Usage:" in result.output
        command: click.Command = cli
        for name in path:
            assert isinstance(command, click.Group)
            command = command.commands[name]
        assert command.help, f"{' '.join(path)} has no help text"


def test_the_api_key_is_never_an_argument() -> None:
    for param in cli.params:
        assert not (isinstance(param, click.Option) and "--api-key" in param.opts)


def test_subsystems(live: Live) -> None:
    out = live.ok("subsystems", "add", PROVIDER, "--auth-mode", "http", role=Role.REGISTRATION_OFFICER)
    assert "client_id: DEV/GOV/1001/PROVIDER" in out
    table = live.ok("subsystems", "list", role=Role.OBSERVER)
    assert table.splitlines()[0].split() == ["CLIENT", "AUTH", "MODE", "PINNED", "WARNING"]
    assert PROVIDER in table and "http" in table
    [subsystem] = live.json("subsystems", "list")
    assert subsystem == {
        "client_id": PROVIDER,
        "auth_mode": "http",
        "certificates": [],
        "unauthenticated": True,
        "warning": UNAUTHENTICATED_WARNING,
    }
    assert live.json("subsystems", "auth", PROVIDER, "https_cert")["auth_mode"] == "https_cert"
    result = live.run("subsystems", "remove", PROVIDER, input="n\n")
    assert result.exit_code == 1 and "Aborted" in result.output
    assert live.ok("subsystems", "remove", PROVIDER, "--yes").strip() == f"removed {PROVIDER}"
    assert live.json("subsystems", "list") == []


def test_subsystems_default_to_a_pinned_certificate_and_list_flags_the_unauthenticated(live: Live) -> None:
    """Build 9: a new subsystem's systems must show a pinned certificate; http and https are
    explicit choices that `list` flags, in its table, on stderr, and in the API's answer."""
    added = live.json("subsystems", "add", PROVIDER)
    assert added["auth_mode"] == "https_cert" and added["unauthenticated"] is False
    assert added["warning"] is None
    others = {"http": "DEV/GOV/1001/PLAIN", "https": "DEV/GOV/1001/NOCERT"}
    for mode, client in others.items():
        live.ok("subsystems", "add", client, "--auth-mode", mode)

    listed = live.run("subsystems", "list", role=Role.OBSERVER)
    assert listed.exit_code == 0, listed.output
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert UNAUTHENTICATED_WARNING not in rows[PROVIDER]
    for client in others.values():
        assert UNAUTHENTICATED_WARNING in rows[client]
        assert f"warning: {client} is {UNAUTHENTICATED_WARNING}" in listed.stderr
    assert f"warning: {PROVIDER}" not in listed.stderr
    flagged = {row["client_id"]: row["unauthenticated"] for row in live.json("subsystems", "list")}
    assert flagged == {PROVIDER: False, others["http"]: True, others["https"]: True}
    # Switching a subsystem to https_cert clears the flag.
    assert live.json("subsystems", "auth", others["https"], "https_cert")["unauthenticated"] is False


def test_pinned_client_certificates(live: Live, tmp_path: Path) -> None:
    live.ok("subsystems", "add", PROVIDER, "--auth-mode", "https_cert")
    now = dt.datetime.now(dt.UTC)
    ca_key = generate_key()
    ca = pki.CertificateAuthority(pki.build_ca_certificate(ca_key, "CA", now), ca_key, pki.CaSettings())
    certificate = pki.issue_certificate(
        ca, pki.MemberSigningProfile(ClientId("DEV", "GOV", "1001")), generate_key().public_key(), now
    )
    pem_file = tmp_path / "client.pem"
    pem_file.write_bytes(certificate_to_pem(certificate))
    pinned = live.json("subsystems", "pin-cert", PROVIDER, str(pem_file))
    assert live.json("subsystems", "list")[0]["certificates"][0]["sha256"] == pinned["sha256"]
    live.ok("subsystems", "unpin-cert", PROVIDER, pinned["sha256"], "--yes")
    assert live.json("subsystems", "list")[0]["certificates"] == []


def test_services_from_wsdl_and_openapi(live: Live, tmp_path: Path) -> None:
    live.ok("subsystems", "add", PROVIDER)
    registered = live.json(
        "services",
        "add-wsdl",
        PROVIDER,
        "--file",
        str(SAMPLES / "valid.wsdl"),
        role=Role.SERVICE_ADMINISTRATOR,
    )
    assert sorted(s["service_code"] for s in registered) == [
        "xroadBigAttachment",
        "xroadGetRandom",
        "xroadSmallAttachment",
    ]
    result = live.run("services", "add-wsdl", PROVIDER, "--file", str(SAMPLES / "xxe.wsdl"))
    assert result.exit_code == 1 and "400 invalid_description" in result.output
    result = live.run("services", "add-wsdl", PROVIDER)
    assert result.exit_code == 2 and "either --file or --url" in result.output

    out = live.ok("services", "add-openapi", PROVIDER, "pets", "--file", str(SAMPLES / "petstore.yaml"))
    assert "endpoints:" in out and "/pets/*" in out
    result = live.run(
        "services", "add-openapi", PROVIDER, "old", "--file", str(SAMPLES / "invalid_version.yaml")
    )
    assert result.exit_code == 1 and "3.1.1" in result.output

    table = live.ok("services", "list", PROVIDER, role=Role.OBSERVER)
    assert len(table.splitlines()) == 1 + 4 and "xroadGetRandom" in table and "pets" in table

    ca_file = tmp_path / "ca.pem"
    now = dt.datetime.now(dt.UTC)
    ca_key = generate_key()
    ca_file.write_bytes(certificate_to_pem(pki.build_ca_certificate(ca_key, "Backend CA", now)))
    updated = live.json(
        "services",
        "set-backend",
        PROVIDER,
        "pets",
        "--backend-url",
        "https://pets.internal/v1",
        "--timeout",
        "7.5",
        "--no-tls-verify",
        "--ca-file",
        str(ca_file),
    )
    assert (updated["backend_url"], updated["timeout_seconds"], updated["tls_verify"]) == (
        "https://pets.internal/v1",
        7.5,
        False,
    )
    assert updated["tls_ca_pem"] == ca_file.read_text()
    assert live.json("services", "set-backend", PROVIDER, "pets", "--clear-ca")["tls_ca_pem"] is None
    assert live.run("services", "set-backend", PROVIDER, "pets").exit_code == 2

    disabled = live.json(
        "services", "disable", PROVIDER, "xroadGetRandom", "--version", "v1", "--notice", "Back at 14:00"
    )
    assert (disabled["enabled"], disabled["disabled_notice"]) == (False, "Back at 14:00")
    assert live.json("services", "enable", PROVIDER, "xroadGetRandom", "--version", "v1")["enabled"] is True
    live.ok("services", "remove", PROVIDER, "xroadGetRandom", "--version", "v1", "--yes")
    assert len(live.json("services", "list", PROVIDER)) == 3


def test_access_rights_and_local_groups(live: Live) -> None:
    member_get_pets = ("DEV/COM/3003", "--type", "member", "--method", "GET", "--path", "/pets")
    live.ok("subsystems", "add", PROVIDER)
    live.ok("services", "add-openapi", PROVIDER, "pets", "--file", str(SAMPLES / "petstore.yaml"))
    live.ok("groups", "add", PROVIDER, "partners", "--description", "Partner agencies")
    live.ok("groups", "add-member", PROVIDER, "partners", CONSUMER)
    [group] = live.json("groups", "list", PROVIDER)
    assert group["members"] == [CONSUMER]

    live.ok(
        "access", "grant", PROVIDER, "pets", CONSUMER, "--type", "subsystem", role=Role.SERVICE_ADMINISTRATOR
    )
    live.ok("access", "grant", PROVIDER, "pets", "partners", "--type", "localgroup")
    live.ok("access", "grant", PROVIDER, "pets", *member_get_pets)
    table = live.ok("access", "list", PROVIDER, "pets", role=Role.OBSERVER)
    assert len(table.splitlines()) == 4 and "localgroup" in table and "/pets" in table

    result = live.run("access", "grant", PROVIDER, "pets", CONSUMER, "--type", "subsystem")
    assert result.exit_code == 1 and "409 conflict" in result.output
    live.ok("access", "revoke", PROVIDER, "pets", *member_get_pets, "--yes")
    live.ok("access", "revoke", PROVIDER, "pets", CONSUMER, "--type", "subsystem", "-y")
    assert [r["subject_type"] for r in live.json("access", "list", PROVIDER, "pets")] == ["localgroup"]

    live.ok("groups", "remove-member", PROVIDER, "partners", CONSUMER, "--yes")
    live.ok("groups", "remove", PROVIDER, "partners", "--yes")
    assert live.json("groups", "list", PROVIDER) == []
    assert live.json("access", "list", PROVIDER, "pets") == []


def test_keys_generate_csr_and_import(live: Live, tmp_path: Path) -> None:
    key = live.json("keys", "generate", "--usage", "auth", role=Role.SECURITY_OFFICER)
    assert key["status"] == "new"
    csr_file = tmp_path / "auth.csr"
    out = live.ok("keys", "csr", str(key["id"]), "--c", "EE", "--dns", "gw-a.example", "--out", str(csr_file))
    assert out.strip() == f"wrote {csr_file}"
    verified = subprocess.run(
        ["openssl", "req", "-in", str(csr_file), "-noout", "-verify"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    printed = live.ok("keys", "csr", str(key["id"]))
    assert printed.startswith("-----BEGIN CERTIFICATE REQUEST-----")

    csr = x509.load_pem_x509_csr(csr_file.read_bytes())
    now = dt.datetime.now(dt.UTC)
    ca_key = generate_key()
    ca = pki.CertificateAuthority(pki.build_ca_certificate(ca_key, "CA", now), ca_key, pki.CaSettings())
    public_key = csr.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)  # the API's default algorithm
    cert_file = tmp_path / "auth.pem"
    cert_file.write_bytes(
        certificate_to_pem(pki.issue_certificate(ca, pki.GatewayProfile(SERVER), public_key, now))
    )
    imported = live.json("keys", "import-cert", str(cert_file))
    assert imported["id"] == key["id"] and imported["status"] == "certified"
    table = live.ok("keys", "list", role=Role.OBSERVER)
    assert "certified" in table and "CN=gw-a" in table

    result = live.run("keys", "generate", "--usage", "sign", role=Role.SECURITY_OFFICER)
    assert result.exit_code == 1 and "member" in result.output
    result = live.run("keys", "generate", "--usage", "auth", role=Role.SERVICE_ADMINISTRATOR)
    assert result.exit_code == 1 and "403 forbidden" in result.output


def test_apikeys_and_audit(live: Live) -> None:
    result = live.run("api-keys", "create", "backup-bot", "observer")
    assert result.exit_code == 0
    key_line = next(line for line in result.output.splitlines() if line.startswith("key: "))
    new_key = key_line.removeprefix("key: ")
    assert "not shown again" in result.output
    listed = live.ok("api-keys", "list")
    assert "backup-bot" in listed and new_key not in listed
    new_id = next(k["id"] for k in live.json("api-keys", "list") if k["name"] == "backup-bot")

    env = {"XGATE_ADMIN_URL": live.url, "BOT_KEY": new_key, "XGATE_API_KEY": None}
    result = live.runner.invoke(cli, ["--api-key-env", "BOT_KEY", "subsystems", "list"], env=env)
    assert result.exit_code == 0, result.output
    live.ok("api-keys", "revoke", str(new_id), "--yes")
    result = live.runner.invoke(cli, ["--api-key-env", "BOT_KEY", "subsystems", "list"], env=env)
    assert result.exit_code == 1 and "401 unauthorized" in result.output

    page = live.json("audit", "--action", "api_key.revoke", role=Role.SECURITY_OFFICER)
    assert [e["result"] for e in page["entries"]] == ["ok"]
    table = live.ok("audit", "--limit", "2", role=Role.SECURITY_OFFICER)
    assert table.splitlines()[0].split() == ["ID", "AT", "ACTOR", "ACTION", "TARGET", "RESULT"]
    assert "next page: --page " in table
    result = live.run("audit", role=Role.OBSERVER)
    assert result.exit_code == 1 and "403 forbidden" in result.output
    refused = live.repository.audit_entries(action="audit_log.read")
    assert [e.result for e in refused] == [AuditResult.REFUSED]


def test_audit_since_takes_a_time_without_a_zone_as_utc(live: Live) -> None:
    """The API takes RFC 3339 times with their zone; the CLI writes a zone-less one as UTC."""
    live.ok("api-keys", "create", "backup-bot", "observer")
    for since, found in (("2000-01-01T00:00:00", True), ("2999-01-01T00:00:00+02:00", False)):
        page = live.json("audit", "--since", since, "--action", "api_key.create", role=Role.SECURITY_OFFICER)
        assert bool(page["entries"]) is found, since
    page = live.json("audit", "--since", "1h", "--action", "api_key.create", role=Role.SECURITY_OFFICER)
    assert page["entries"], "a key created a moment ago is within the last hour"
    result = live.run("audit", "--since", "last tuesday", role=Role.SECURITY_OFFICER)
    assert result.exit_code == 2 and "yesterday" in result.output  # says what it reads


def test_key_is_prompted_for_when_the_variable_is_unset(live: Live) -> None:
    result = live.run("subsystems", "list", role=None, input=live.keys[Role.OBSERVER] + "\n")
    assert result.exit_code == 0, result.output
    assert live.keys[Role.OBSERVER] not in result.output  # hidden input is not echoed
    result = live.run("subsystems", "list", role=None, input="wrong\n")
    assert result.exit_code == 1 and "401 unauthorized" in result.output


def test_unreachable_api_is_a_clean_error() -> None:
    result = CliRunner().invoke(
        cli, ["--url", "http://127.0.0.1:1", "subsystems", "list"], env={"XGATE_API_KEY": "k"}
    )
    assert result.exit_code == 1
    assert "cannot connect to http://127.0.0.1:1" in result.output
    assert "Traceback" not in result.output


def test_format_table_aligns_columns() -> None:
    rows: list[dict[str, Any]] = [{"a": "x", "b": None}, {"a": "longer", "b": True}]
    assert format_table(rows, [("a", "first"), ("b", "second")]).splitlines() == [
        "FIRST   SECOND",
        "x       -",
        "longer  yes",
    ]
