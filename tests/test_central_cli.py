"""`xgate central` and `xgate gateway register|add-subsystem|status` as an operator types them.

`init` is run for real into tmp_path; the registry it sets up is served in-process on ports
the system picks (and once as a real `serve` process on sockets handed to it, stopped with
SIGTERM). Commands run through
click's CliRunner in a worker thread, so the registry's event loop keeps answering them.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import stat
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
import requests
from click.testing import CliRunner, Result

from gateway.central.cli import cli as central_cli
from gateway.central.config import load_config
from gateway.central.gateway_cli import cli as gateway_cli
from gateway.central.repository import CentralRepository
from gateway.central.server import RunningRegistry, start_registry
from gateway.config import ConfigError
from gateway.crypto.certs import fingerprint_sha256, load_certificate_file
from gateway.dev.processes import Ports, spawn, wait_http
from gateway.globalconf import verify_signed_globalconf
from gateway.globalconf.source import load_anchor
from gateway.ids import ClientId, SecurityServerId
from gateway.trust import pki

SERVER = SecurityServerId("DEV", "GOV", "1001", "gw1")
OWNER = ClientId("DEV", "GOV", "1001")
FIRM = ClientId("DEV", "COM", "2002")
KEY_ENV = "XGATE_CENTRAL_API_KEY"


def run(command: click.Group, *args: str, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(command, list(args), env=env, catch_exceptions=False)
    return result


def api_key_of(output: str) -> str:
    match = re.search(r"shown once\): (\S+)", output)
    assert match, output
    return match.group(1)


def test_init_sets_up_a_registry(tmp_path: Path) -> None:
    directory = tmp_path / "registry"
    result = run(central_cli, "init", "--dir", str(directory), "--instance", "DEV")
    assert result.exit_code == 0, result.output

    config = load_config(directory / "central.toml")
    assert config.instance == "DEV" and config.management.port == 4400
    (key,) = config.signing_keys
    assert key.active and stat.S_IMODE(key.key.stat().st_mode) == 0o600
    assert stat.S_IMODE((directory / "central.toml").stat().st_mode) == 0o600
    anchor = load_anchor(directory / "anchor.json")
    assert anchor.certificates == (load_certificate_file(key.cert),)
    assert f"sha256 {fingerprint_sha256(anchor.certificates[0])}" in result.output

    repository = CentralRepository.from_url(config.database_url, "DEV")
    try:
        record = repository.admin.verify_api_key(api_key_of(result.output))
        assert record is not None and record.role == "registry_administrator"
        assert [k.status.value for k in repository.signing_keys()] == ["active"]
        assert repository.trusted_ca_certificates() == [], "its own CA issues only the signer: not trusted"
    finally:
        repository.engine.dispose()

    again = CliRunner().invoke(central_cli, ["init", "--dir", str(directory), "--instance", "DEV"])
    assert again.exit_code == 1 and "exists" in again.output


@dataclass
class Setup:
    directory: Path
    pki_dir: Path
    registry: RunningRegistry
    api_key: str

    def central(self, *args: str, key: str | None = None) -> Result:
        env = {KEY_ENV: key or self.api_key}
        return run(central_cli, "--url", self.registry.management_url, *args, env=env)

    def gateway(self, *args: str) -> Result:
        return run(gateway_cli, *args, env={"XGATE_REGISTRY_URL": self.registry.distribution_url})


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    pki_dir = tmp_path / "pki"
    pki.init_pki(pki_dir)
    directory = tmp_path / "registry"
    ports = ["0", "0"]  # start_registry binds port 0 and reports the ports it got
    result = run(
        central_cli,
        "init",
        *("--dir", str(directory), "--instance", "DEV", "--pki-dir", str(pki_dir)),
        *("--management-port", ports[0], "--distribution-port", ports[1]),
    )
    assert result.exit_code == 0, result.output
    running = await start_registry(load_config(directory / "central.toml"))
    try:
        yield Setup(directory, pki_dir, running, api_key_of(result.output))
    finally:
        await running.stop()


def _issue_gateway(setup: Setup) -> dict[str, Path]:
    ca = pki.load_ca(setup.pki_dir)
    out = setup.directory.parent / "gw1"
    auth = pki.issue(setup.pki_dir, ca, pki.GatewayProfile(SERVER), out_prefix=out / "auth")
    sign = pki.issue(setup.pki_dir, ca, pki.MemberSigningProfile(OWNER), out_prefix=out / "sign")
    return {
        "auth_cert": auth.certificate_path,
        "auth_key": auth.key_path,
        "sign_cert": sign.certificate_path,
        "sign_key": sign.key_path,
    }


def _node_toml(files: dict[str, Path], directory: Path) -> Path:
    """The parts of a gateway's TOML file `xgate gateway add-subsystem --config` reads."""
    path = directory / "gateway.toml"
    path.write_text(
        f"""
[node]
server_id = "{SERVER.to_text()}"
[globalconf]
location = "x"
anchor = "anchor.json"
[internal.http]
port = 1
[external]
port = 2
cert = "{files["auth_cert"]}"
key = "{files["auth_key"]}"
[admin]
port = 3
[[signing_keys]]
member = "{OWNER.to_text()}"
cert = "{files["sign_cert"]}"
key = "{files["sign_key"]}"
"""
    )
    return path


async def test_a_gateway_registers_and_an_officer_approves_from_the_command_line(setup: Setup) -> None:
    def flow() -> None:
        assert setup.central("member-classes", "add", "GOV").exit_code == 0
        added = setup.central("members", "add", "GOV", "1001", "Social Security Fund")
        assert added.exit_code == 0 and "DEV/GOV/1001" in added.output
        officer = json.loads(
            setup.central("api-keys", "create", "olga", "--role", "registration_officer", "--json").output
        )
        observer = json.loads(
            setup.central("api-keys", "create", "otto", "--role", "observer", "--json").output
        )

        files = _issue_gateway(setup)
        registered = setup.gateway(
            "register",
            *("--server-id", SERVER.to_text(), "--address", "127.0.0.1:5500"),
            *(f"--{name.replace('_', '-')}={path}" for name, path in files.items()),
            "--json",
        )
        assert registered.exit_code == 0, registered.output
        request_id = json.loads(registered.output)["id"]

        pending = json.loads(setup.central("requests", "list", "--state", "pending", "--json").output)
        assert [r["id"] for r in pending] == [request_id]
        refused = setup.central("requests", "approve", request_id, key=observer["key"])
        assert refused.exit_code == 1 and "403 forbidden" in refused.output
        approved = setup.central(
            "requests", "approve", request_id, "--reason", "known gateway", key=officer["key"]
        )
        assert approved.exit_code == 0, approved.output

        status = setup.gateway("status", request_id)
        assert status.exit_code == 0
        assert f"{request_id}: auth_cert_registration, approved" in status.output
        assert f"by olga#{officer['id']}: known gateway" in status.output

        servers = json.loads(setup.central("servers", "list", "--json").output)
        assert [s["server_id"] for s in servers] == [SERVER.to_text()]

        # The owner asks for a subsystem, keys taken from the gateway's own TOML file.
        node = _node_toml(files, setup.directory.parent / "gw1")
        asked = setup.gateway("add-subsystem", "--config", str(node), "--subsystem", "DEV/GOV/1001/benefits")
        assert asked.exit_code == 0 and "client_registration, pending" in asked.output
        request_id = asked.output.split()[1].rstrip(":")
        assert setup.central("requests", "approve", request_id).exit_code == 0

        # Another member's subsystem needs that member's signing key: its consent.
        assert setup.central("member-classes", "add", "COM").exit_code == 0
        assert setup.central("members", "add", "COM", "2002", "Firm").exit_code == 0
        crm = ("--subsystem", f"{FIRM.to_text()}/crm")
        unasked = setup.gateway("add-subsystem", "--config", str(node), *crm)
        assert unasked.exit_code == 2 and "no signing key for DEV/COM/2002" in unasked.output
        assert "--member-sign-cert" in unasked.output
        firm = pki.issue(
            setup.pki_dir,
            pki.load_ca(setup.pki_dir),
            pki.MemberSigningProfile(FIRM),
            out_prefix=node.parent / "firm",
        )
        consented = setup.gateway(
            "add-subsystem",
            *("--config", str(node), *crm),
            *("--member-sign-cert", str(firm.certificate_path), "--member-sign-key", str(firm.key_path)),
        )
        assert consented.exit_code == 0 and "client_registration, pending" in consented.output, (
            consented.output
        )

    await asyncio.to_thread(flow)
    anchor = load_anchor(setup.directory / "anchor.json")
    url = setup.registry.distribution_url + "/globalconf"
    data = (await asyncio.to_thread(requests.get, url, timeout=10)).content
    conf = verify_signed_globalconf(
        data, anchor.certificates, setup.registry.context.repository.now(), instance="DEV"
    )
    server = conf.server(SERVER)
    assert server is not None and server.clients == (ClientId("DEV", "GOV", "1001", "benefits"),)


async def test_key_rotation_from_the_command_line(setup: Setup) -> None:
    def flow() -> None:
        new_key = setup.directory / "keys" / "confsign-2"
        issued = run(central_cli, "new-signing-key", "--pki-dir", str(setup.pki_dir), "--out", str(new_key))
        assert issued.exit_code == 0, issued.output
        added = setup.central(
            "signing-keys", "add", "--key", f"{new_key}.key", "--cert", f"{new_key}.pem", "--json"
        )
        assert added.exit_code == 0, added.output
        (row,) = json.loads(added.output)
        assert row["status"] == "standby"
        assert setup.central("signing-keys", "activate", str(row["id"])).exit_code == 0
        assert setup.central("signing-keys", "retire", "1").exit_code == 0
        status = json.loads(setup.central("globalconf", "show", "--json").output)
        assert status["anchor_certificates"] == [row["certificate"]["sha256"]]
        assert status["signer_sha256"] == row["certificate"]["sha256"]

    await asyncio.to_thread(flow)


def test_serve_runs_until_sigterm(tmp_path: Path) -> None:
    directory = tmp_path / "registry"
    held = Ports()
    ports = [held.reserve(), held.reserve()]  # bound here, served by the child: no race for them
    init = run(
        central_cli,
        *("init", "--dir", str(directory), "--instance", "DEV"),
        *("--management-port", str(ports[0]), "--distribution-port", str(ports[1])),
    )
    assert init.exit_code == 0
    serve = ["serve", "--config", str(directory / "central.toml")]
    child = spawn(
        "registry",
        [sys.executable, "-c", "from gateway.central.cli import cli; cli()", *serve],
        tmp_path / "registry.log",
        cwd=tmp_path,
        listening=held.take(ports),
        environ={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_http(f"http://127.0.0.1:{ports[0]}/health", time.monotonic() + 30, child)
        health = requests.get(f"http://127.0.0.1:{ports[0]}/health", timeout=5)
        assert health.json()["globalconf_version"] == 1
        anchor = requests.get(f"http://127.0.0.1:{ports[1]}/anchor", timeout=5).json()
        assert anchor["configuration_urls"] == [f"http://127.0.0.1:{ports[1]}/globalconf"]
    finally:
        child.process.send_signal(signal.SIGTERM)
        child.process.wait(timeout=20)
        held.close()
    assert child.process.returncode == 0, child.log_path.read_text()


def test_the_example_configuration_loads_and_mistakes_are_named(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[1] / "config" / "central.example.toml"
    config = load_config(example)
    assert (config.instance, config.management.port, config.distribution.port) == ("DEV", 4400, 4401)
    assert config.database_url == f"sqlite:///{example.parent / 'var/central/central.sqlite'}"
    assert [key.active for key in config.signing_keys] == [True]

    text = example.read_text()
    mistakes = [
        (text.replace('host = "127.0.0.1"\nport = 4400', 'host = "0.0.0.0"\nport = 4400'), "loopback"),
        (text + '\n[[signing_keys]]\nkey = "a.key"\ncert = "a.pem"\nactive = true\n', "at most one"),
        (text.replace('instance = "DEV"', 'instance = "D/EV"'), "registry.instance"),
        (text.replace("regenerate_seconds = 60", "regenerate_seconds = 0"), "regenerate_seconds"),
    ]
    for broken, message in mistakes:
        assert broken != text
        (tmp_path / "central.toml").write_text(broken)
        with pytest.raises(ConfigError, match=message):
            load_config(tmp_path / "central.toml")
