"""The gateway's and the registry's TOML files: the models, `xgate gateway init`, the examples in config/."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from pydantic import BaseModel

from gateway import config as node_config
from gateway.admission import AdmissionLimits
from gateway.central import config as central_config
from gateway.central.server import start_registry
from gateway.cli import main as xgate
from gateway.config import ConfigError, Listener, NodeConfig
from gateway.crypto.batchsigner import DEFAULT_WINDOW_SECONDS
from gateway.ids import ClientId, SecurityServerId
from gateway.messagelog.diskspace import DiskWatermarks
from gateway.messagelog.settings import (
    DEFAULT_ARCHIVE_EVERY_BYTES,
    DEFAULT_ARCHIVE_INTERVAL_SECONDS,
    DEFAULT_RETENTION_DAYS,
)
from gateway.node import serve
from gateway.outbound.clockcheck import DEFAULT_CLOCK_SKEW_SECONDS
from gateway.outbound.ocsp import DEFAULT_FETCH_INTERVAL_SECONDS
from gateway.protocol.limits import DEFAULT_MAX_MESSAGE_BYTES
from gateway.trust import pki
from tests.docblocks import claimed_blocks, free_port, serving

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "config"

LOADERS: dict[str, Callable[[Path], Any]] = {
    "gateway": node_config.load_config,
    "central": central_config.load_config,
}


def loader_of(path: Path) -> Callable[[Path], Any]:
    """config/KIND*.toml is read by KIND's model; a file of another kind needs a model here first."""
    kind = path.name.split(".")[0]
    assert kind in LOADERS, f"{path.name}: no model known for this example; add it to LOADERS"
    return LOADERS[kind]


# --- every example goes through its model ---------------------------------------------------------


def test_there_are_examples_of_both_files() -> None:
    assert {path.name for path in EXAMPLES.glob("*.toml")} >= {"gateway.example.toml", "central.example.toml"}


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.toml")), ids=lambda path: path.name)
def test_every_example_loads_through_its_model(example: Path) -> None:
    loaded = loader_of(example)(example)
    assert loaded.data_dir.is_relative_to(EXAMPLES), "relative paths are relative to the file"


def _keys_the_model_reads(model: type[BaseModel], table: str = "") -> list[tuple[str, str]]:
    """(table, key) for every key of the file's model, tables by their TOML names ([a.b], [[a]])."""
    keys: list[tuple[str, str]] = []
    for name, field in model.model_fields.items():
        inner = field.annotation
        args = [arg for arg in typing.get_args(inner) if arg is not type(None)]
        if typing.get_origin(inner) in (list, typing.Union, types.UnionType) and args:
            inner = args[0]
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            keys += _keys_the_model_reads(inner, f"{table}.{name}" if table else name)
        else:
            keys.append((table, name))
    return keys


def _example_keys(text: str) -> set[tuple[str, str]]:
    """(table, key) for every key the example sets or shows commented out (`# key = ...`)."""
    found: set[tuple[str, str]] = set()
    table = ""
    for raw in text.splitlines():
        line = raw.strip()
        if header := re.fullmatch(r"\[\[?([a-z_.]+)\]\]?", line):
            table = header.group(1)
        elif key := re.match(r"#?\s*([a-z_]+) = ", line):
            found.add((table, key.group(1)))
    return found


@pytest.mark.parametrize(
    ("example", "model"),
    [("gateway.example.toml", node_config.NodeFile), ("central.example.toml", central_config.CentralFile)],
)
def test_every_key_the_code_reads_is_in_its_example(example: str, model: type[BaseModel]) -> None:
    text = (EXAMPLES / example).read_text()
    missing = [
        f"[{table}] {key}"
        for table, key in _keys_the_model_reads(model)
        if (table, key) not in _example_keys(text)
    ]
    assert not missing, f"config/{example} does not show (set or commented out): {', '.join(missing)}"
    tables = {table for table, _ in _keys_the_model_reads(model)}
    for table in tables:
        assert f"[{table}]" in text or f"[[{table}]]" in text, f"config/{example}: no [{table}] table"


def test_the_gateway_example_holds_the_defaults_it_documents() -> None:
    config = node_config.load_config(EXAMPLES / "gateway.example.toml")
    assert config.max_message_bytes == DEFAULT_MAX_MESSAGE_BYTES
    assert config.sign_window_seconds == DEFAULT_WINDOW_SECONDS
    assert config.database_url == f"sqlite:///{EXAMPLES / 'var/gw-a/data/serverconf.sqlite'}"
    assert config.messagelog is not None
    assert config.messagelog.database_url == f"sqlite:///{EXAMPLES / 'var/gw-a/data/messagelog.sqlite'}"
    assert config.cache is not None and config.cache.enabled and config.cache.body_key_file is None
    assert config.cache.database_url == f"sqlite:///{EXAMPLES / 'var/gw-a/data/cache.sqlite'}"
    # Archiving and retention are on, watched by the disk watermarks, as the example documents.
    log = config.messagelog
    assert log.archive_dir == EXAMPLES / "var/gw-a/data/archive"
    assert (log.archive_interval_seconds, log.archive_every_bytes, log.retention_days) == (
        DEFAULT_ARCHIVE_INTERVAL_SECONDS,
        DEFAULT_ARCHIVE_EVERY_BYTES,
        DEFAULT_RETENTION_DAYS,
    )
    assert log.disk_watermarks == DiskWatermarks()
    assert config.clock_skew_seconds == DEFAULT_CLOCK_SKEW_SECONDS == 300
    assert config.ocsp_fetch_interval_seconds == DEFAULT_FETCH_INTERVAL_SECONDS == 1200
    assert config.ocsp_store_dir == config.data_dir / "ocsp"
    assert config.admission == AdmissionLimits()


# --- mistakes are refused with the key's path, in one line ----------------------------------------

GATEWAY_EXAMPLE = (EXAMPLES / "gateway.example.toml").read_text()
CENTRAL_EXAMPLE = (EXAMPLES / "central.example.toml").read_text()


def edited(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


GATEWAY_MISTAKES = [
    (
        edited(GATEWAY_EXAMPLE, "max_message_bytes =", "max_mesage_bytes ="),
        "limits.max_mesage_bytes: unknown key",
    ),
    (
        edited(GATEWAY_EXAMPLE, "window_seconds = 0.002", "window_seconds = -5"),
        "signer.window_seconds: must be 0 or more, not -5",
    ),
    (GATEWAY_EXAMPLE + "\n[limit]\nmax_message_bytes = 1\n", "limit: unknown key"),
    (
        edited(GATEWAY_EXAMPLE, "max_message_bytes = 10485760", 'max_message_bytes = "10 MB"'),
        "limits.max_message_bytes: must be a whole number, not '10 MB'",
    ),
    (
        edited(GATEWAY_EXAMPLE, "max_message_bytes = 10485760", "max_message_bytes = 0"),
        "limits.max_message_bytes: must be greater than 0, not 0",
    ),
    (
        edited(GATEWAY_EXAMPLE, "backend_timeout_seconds = 30", "backend_timeout_seconds = true"),
        "limits.backend_timeout_seconds: must be a number, not True",
    ),
    (
        edited(GATEWAY_EXAMPLE, "connect_timeout_seconds = 5", "connect_timeout_seconds = 0"),
        "limits.connect_timeout_seconds: must be greater than 0, not 0",
    ),
    (
        edited(GATEWAY_EXAMPLE, "port = 5500", "port = 65536"),
        "external.port: must be a port number (0..65535), not 65536",
    ),
    (
        edited(GATEWAY_EXAMPLE, "port = 8443", "prot = 8443"),
        "internal.https.prot: unknown key",
    ),
    (
        edited(GATEWAY_EXAMPLE, 'member = "DEV/GOV/1001"', 'member = "DEV/GOV/1001"\nactive = true'),
        r"signing_keys[0].active: unknown key",
    ),
    (
        edited(GATEWAY_EXAMPLE, "archive_interval_seconds = 3600", "archive_interval_seconds = -1"),
        "messagelog.archive_interval_seconds: must be greater than 0, not -1",
    ),
    (
        edited(GATEWAY_EXAMPLE, "retention_days = 30", "retention_days = -1"),
        "messagelog.retention_days: must be 0 or more, not -1",
    ),
    (
        edited(GATEWAY_EXAMPLE, "disk_warning_free_percent = 10", "disk_warning_free_percent = 100"),
        "messagelog.disk_warning_free_percent: must be a percentage (0 or more, below 100), not 100",
    ),
    (
        edited(
            GATEWAY_EXAMPLE, "disk_critical_free_bytes = 268435456", "disk_critical_free_bytes = 3000000000"
        ),
        "the disk_critical_* watermarks must not lie above the disk_warning_* ones",
    ),
    (
        edited(GATEWAY_EXAMPLE, "enabled = true", 'enabled = "yes"'),
        "messagelog.enabled: must be true or false, not 'yes'",
    ),
    (
        edited(GATEWAY_EXAMPLE, "maintenance_interval_seconds = 60", "maintenance_interval_seconds = 0"),
        "cache.maintenance_interval_seconds: must be greater than 0, not 0",
    ),
    (
        edited(GATEWAY_EXAMPLE, "maintenance_interval_seconds = 60", "ttl = 60"),
        "cache.ttl: unknown key",
    ),
    (
        edited(GATEWAY_EXAMPLE, "max_exchanges = 256", "max_exchanges = 0"),
        "limits.max_exchanges: must be greater than 0, not 0",
    ),
    (
        edited(GATEWAY_EXAMPLE, "admission_wait_seconds = 0.5", "admission_wait_seconds = -1"),
        "limits.admission_wait_seconds: must be 0 or more, not -1",
    ),
    (
        edited(GATEWAY_EXAMPLE, "retry_after_seconds = 1", "retry_after_seconds = 0.5"),
        "limits.retry_after_seconds: must be a whole number, not 0.5",
    ),
    (
        edited(GATEWAY_EXAMPLE, "max_body_bytes_in_flight = 134217728", "max_body_bytes_in_flight = 1048576"),
        "limits: max_body_bytes_in_flight (1048576) must hold one message of max_message_bytes (10485760)",
    ),
    (
        "signer = 0.002\n"
        + edited(edited(GATEWAY_EXAMPLE, "[signer]\n", ""), "window_seconds = 0.002\n", ""),
        "signer: must be a table, not 0.002",
    ),
]

CENTRAL_MISTAKES = [
    (edited(CENTRAL_EXAMPLE, 'instance = "DEV"', 'instanse = "DEV"'), "registry.instanse: unknown key"),
    (edited(CENTRAL_EXAMPLE, "port = 4400", "port = -1"), "management.port: must be a port number"),
    (
        edited(CENTRAL_EXAMPLE, "validity_seconds = 600", "validity_seconds = 0"),
        "globalconf.validity_seconds: must be greater than 0, not 0",
    ),
    (
        edited(CENTRAL_EXAMPLE, "validity_seconds = 600", "validity_seconds = 600.5"),
        "globalconf.validity_seconds: must be a whole number, not 600.5",
    ),
    (edited(CENTRAL_EXAMPLE, "\nactive = true", "\nactve = true"), "signing_keys[0].actve: unknown key"),
    (
        edited(CENTRAL_EXAMPLE, "port = 4401", 'port = 4401\npublic_url = "ftp://registry"'),
        "distribution.public_url: must be an http(s) URL",
    ),
    (CENTRAL_EXAMPLE.replace("[registry]", "[registri]"), "registri: unknown key"),
    (
        edited(CENTRAL_EXAMPLE, 'database_url = "sqlite', 'database_url = "nosuchdb'),
        "registry.database_url: ",
    ),
]


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [("gateway", text, message) for text, message in GATEWAY_MISTAKES]
    + [("central", text, message) for text, message in CENTRAL_MISTAKES],
    ids=[message.split(":")[0] for _, message in GATEWAY_MISTAKES + CENTRAL_MISTAKES],
)
def test_a_mistake_is_one_line_naming_the_key(tmp_path: Path, kind: str, text: str, message: str) -> None:
    path = tmp_path / f"{kind}.toml"
    path.write_text(text)

    with pytest.raises(ConfigError) as raised:
        LOADERS[kind](path)

    line = str(raised.value)
    assert line.startswith(f"{path}: ")
    assert message in line
    assert "\n" not in line and "pydantic" not in line and "Value error" not in line


def test_a_missing_table_and_a_missing_key_are_named(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    start, end = GATEWAY_EXAMPLE.index("[external]"), GATEWAY_EXAMPLE.index("[admin]")
    path.write_text(GATEWAY_EXAMPLE[:start] + GATEWAY_EXAMPLE[end:])
    with pytest.raises(ConfigError, match=r"missing \[external\] section$"):
        node_config.load_config(path)

    path.write_text(edited(GATEWAY_EXAMPLE, "[external]", "[externel]"))
    with pytest.raises(ConfigError, match=r"externel: unknown key \(did you mean external\?\)$"):
        node_config.load_config(path)

    path.write_text(edited(CENTRAL_EXAMPLE, 'instance = "DEV"', ""))
    with pytest.raises(ConfigError, match=r"missing registry\.instance$"):
        central_config.load_config(path)


def test_a_relative_sqlite_url_is_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "node").mkdir()
    path = tmp_path / "node" / "gateway.toml"
    path.write_text(
        edited(GATEWAY_EXAMPLE, '"sqlite:///var/gw-a/data/serverconf.sqlite"', '"sqlite:///db.sqlite"')
    )
    config = node_config.load_config(path)
    assert config.database_url == f"sqlite:///{tmp_path / 'node' / 'db.sqlite'}"


# --- the command line prints the line, without a traceback ----------------------------------------


def xgate_process(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "gateway.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=60)


@pytest.mark.parametrize("kind", ["gateway", "central"])
def test_serve_prints_the_mistake_and_exits(tmp_path: Path, kind: str) -> None:
    text = GATEWAY_EXAMPLE if kind == "gateway" else CENTRAL_EXAMPLE
    path = tmp_path / f"{kind}.toml"
    path.write_text(edited(text, "port = ", "port = 1\nport_ = "))

    result = xgate_process(kind, "serve", "--config", str(path))

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: ") and "port_: unknown key" in line


def test_gateway_commands_that_read_the_file_print_the_mistake(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(edited(GATEWAY_EXAMPLE, "window_seconds = 0.002", "window_seconds = -5"))
    for args in (("migrate",), ("create-api-key", "--name", "x", "--role", "observer")):
        result = CliRunner().invoke(xgate, ["gateway", *args, "--config", str(path)])
        assert result.exit_code == 1, result.output
        assert "signer.window_seconds: must be 0 or more" in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_the_registry_commands_that_read_the_file_print_the_mistake(tmp_path: Path) -> None:
    path = tmp_path / "central.toml"
    path.write_text(edited(CENTRAL_EXAMPLE, "regenerate_seconds = 60", "regenerate_seconds = -1"))
    args = [
        "central",
        "create-api-key",
        "--config",
        str(path),
        "--name",
        "x",
        "--role",
        "registry_administrator",
    ]
    result = CliRunner().invoke(xgate, args)
    assert result.exit_code == 1, result.output
    assert "globalconf.regenerate_seconds: must be greater than 0, not -1" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("kind", "hint"),
    [("gateway", "xgate gateway init"), ("central", "xgate central init")],
)
def test_the_examples_without_their_directories_say_what_to_create(
    tmp_path: Path, kind: str, hint: str
) -> None:
    example = tmp_path / "config" / f"{kind}.example.toml"
    example.parent.mkdir()
    shutil.copy(EXAMPLES / example.name, example)

    result = xgate_process(kind, "serve", "--config", str(example), cwd=tmp_path)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert f"data_dir {tmp_path / 'config' / 'var'}" in line and "does not exist" in line
    assert hint in line
    assert not (tmp_path / "config" / "var").exists(), "nothing is made below a missing parent"


def test_a_missing_data_directory_is_created_when_its_parent_exists(tmp_path: Path) -> None:
    from gateway.node import prepare_directories

    path = tmp_path / "gateway.toml"
    path.write_text(GATEWAY_EXAMPLE.replace("var/gw-a/data", "data"))
    config = node_config.load_config(path)

    prepare_directories(config)

    assert (tmp_path / "data").is_dir()
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700


# --- xgate gateway init ---------------------------------------------------------------------------

SERVER = "DEV/GOV/1001/gw-x"


def init(*args: str) -> Any:
    return CliRunner().invoke(xgate, ["gateway", "init", *args])


def test_init_without_a_pki_writes_a_loadable_file_and_lists_what_is_missing(tmp_path: Path) -> None:
    directory = tmp_path / "node"

    result = init(str(directory), "--server-id", SERVER, "--member", "DEV/GOV/1001", "--member", "DEV/COM/7")

    assert result.exit_code == 0, result.output
    config = node_config.load_config(directory / "gateway.toml")
    assert config.server_id == SecurityServerId.from_text(SERVER)
    assert [key.member for key in config.signing_keys] == [
        ClientId.from_text("DEV/GOV/1001"),
        ClientId.from_text("DEV/COM/7"),
    ]
    assert config.data_dir == directory.resolve() / "data" and config.data_dir.is_dir()
    for path, mode in ((directory, 0o700), (directory / "data", 0o700), (directory / "keys", 0o700)):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path
    assert stat.S_IMODE((directory / "gateway.toml").stat().st_mode) == 0o600
    assert f"still missing:   {directory.resolve() / 'keys' / 'auth.pem'}" in result.output
    assert f"still missing:   {directory.resolve() / 'anchor.json'}" in result.output
    assert "#" in (directory / "gateway.toml").read_text(), "the file explains itself"
    assert config.messagelog is not None and config.messagelog.archive_dir == config.data_dir / "archive"
    assert config.messagelog.retention_days == DEFAULT_RETENTION_DAYS


def test_init_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    directory = tmp_path / "node"
    assert init(str(directory), "--server-id", SERVER).exit_code == 0
    (directory / "gateway.toml").write_text("# edited by hand\n")

    again = init(str(directory), "--server-id", SERVER)
    assert again.exit_code == 1 and "exists" in again.output and "--force" in again.output
    assert (directory / "gateway.toml").read_text() == "# edited by hand\n"

    forced = init(str(directory), "--server-id", "DEV/GOV/1001/gw-y", "--force")
    assert forced.exit_code == 0, forced.output
    assert node_config.load_config(directory / "gateway.toml").server_id.server_code == "gw-y"


def test_init_refuses_a_bad_identifier(tmp_path: Path) -> None:
    result = init(str(tmp_path / "node"), "--server-id", "gw-x")
    assert result.exit_code == 2 and "--server-id" in result.output
    assert not (tmp_path / "node").exists()


async def _serve_briefly(config: NodeConfig) -> None:
    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(config, ready=ready, stop=stop))
    try:
        await asyncio.wait_for(ready.wait(), 60)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


def _any_port(config: NodeConfig) -> NodeConfig:
    """The same node on ports the system picks, so that tests do not collide."""
    any_port = {"internal_http": config.internal_http, "internal_https": config.internal_https}
    return dataclasses.replace(
        config,
        **{name: Listener(listener.host, 0) for name, listener in any_port.items() if listener},
        external=Listener(config.external.host, 0),
        admin=Listener(config.admin.host, 0),
    )


async def test_a_node_made_by_init_with_a_pki_starts(tmp_path: Path) -> None:
    pki.init_pki(tmp_path / "pki")
    registry = CliRunner().invoke(
        xgate, ["central", "init", "--dir", str(tmp_path / "central"), "--instance", "DEV"]
    )
    assert registry.exit_code == 0, registry.output
    directory = tmp_path / "node"

    result = init(
        str(directory),
        *("--server-id", SERVER, "--pki-dir", str(tmp_path / "pki")),
        *("--anchor", str(tmp_path / "central" / "anchor.json"), "--globalconf", "globalconf.json"),
        *("--internal-http-port", "0", "--internal-https-port", "0", "--external-port", "0"),
        *("--admin-port", "0"),
    )

    assert result.exit_code == 0, result.output
    assert "still missing" not in result.output
    for key in (directory / "keys").glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    config = node_config.load_config(directory / "gateway.toml")
    await _serve_briefly(config)
    assert (directory / "data" / "serverconf.sqlite").is_file()


# --- the examples run as their header says --------------------------------------------------------


def _command_lines(lines: Iterable[str]) -> list[str]:
    """The `xgate ...` commands of `lines`, continuation lines joined, a trailing `&` dropped."""
    commands: list[str] = []
    for line in lines:
        text = line.strip()
        if commands and commands[-1].endswith("\\"):
            commands[-1] = commands[-1][:-1] + " " + text
        elif text.startswith("xgate "):
            commands.append(text)
    return [" ".join(command.removesuffix("&").split()) for command in commands]


def _header_lines(example: Path) -> list[str]:
    return [
        line.lstrip("#")
        for line in itertools.takewhile(lambda line: line.startswith("#"), example.read_text().splitlines())
    ]


def _documented_commands(example: Path) -> list[list[str]]:
    """The `xgate ...` lines of an example's header, `serve` left out."""
    return [line.split()[1:] for line in _command_lines(_header_lines(example)) if " serve " not in line]


async def test_the_examples_run_as_their_headers_say(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "config", ignore=shutil.ignore_patterns("var"))
    monkeypatch.chdir(tmp_path)
    commands = _documented_commands(tmp_path / "config" / "gateway.example.toml")
    assert [command[:2] for command in commands] == [
        ["pki", "init"],
        ["central", "init"],
        ["gateway", "init"],
    ]
    # docs/configuration.md "Running the examples" gives the same commands.
    (block,) = claimed_blocks("tests/test_config.py::test_the_examples_run_as_their_headers_say")
    assert _command_lines(block.text.splitlines()) == _command_lines(
        _header_lines(EXAMPLES / "gateway.example.toml")
    )
    for command in commands:
        result = CliRunner().invoke(xgate, command)
        assert result.exit_code == 0, (command, result.output)

    central = central_config.load_config(tmp_path / "config" / "central.example.toml")
    node = node_config.load_config(tmp_path / "config" / "gateway.example.toml")
    named = [node.globalconf_anchor, node.auth_tls.cert, node.auth_tls.key]
    named += [path for key in node.signing_keys for path in (key.cert, key.key)]
    named += [path for key in central.signing_keys for path in (key.cert, key.key)]
    assert all(path.is_file() for path in named), [path for path in named if not path.is_file()]

    running = await start_registry(
        dataclasses.replace(
            central,
            management=Listener(central.management.host, 0),
            distribution=Listener(central.distribution.host, 0),
        )
    )
    try:
        node = dataclasses.replace(
            _any_port(node), globalconf_location=running.distribution_url + "/globalconf"
        )
        await _serve_briefly(node)
    finally:
        await running.stop()
    assert (node.data_dir / "globalconf.cache.json").is_file(), (
        "the node adopted the registry's configuration"
    )


# --- what init makes serves, as separate processes ----------------------------------------------


def test_what_central_init_and_gateway_init_make_serves_and_answers_health(tmp_path: Path) -> None:
    """`xgate central serve` and `xgate gateway serve` started from init's output, nothing edited."""
    xgate_bin = [sys.executable, "-m", "gateway.cli"]
    management, distribution, admin = free_port(), free_port(), free_port()
    registry = f"http://127.0.0.1:{distribution}/globalconf"
    made = [
        ["pki", "init", "pki"],
        [*("central", "init", "--dir", "central", "--instance", "DEV", "--pki-dir", "pki"),
         *("--management-port", str(management), "--distribution-port", str(distribution))],
        [*("gateway", "init", "node", "--server-id", SERVER, "--pki-dir", "pki"),
         *("--anchor", "central/anchor.json", "--globalconf", registry),
         *("--internal-http-port", str(free_port()), "--internal-https-port", str(free_port())),
         *("--external-port", str(free_port()), "--admin-port", str(admin))],
    ]  # fmt: skip
    for args in made:
        result = subprocess.run(
            [*xgate_bin, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    env = {name: value for name, value in os.environ.items() if not name.startswith("XGATE_")}
    central = [*xgate_bin, "central", "serve", "--config", "central/central.toml"]
    node = [*xgate_bin, "gateway", "serve", "--config", "node/gateway.toml"]
    health_url = f"http://127.0.0.1:{admin}/health"
    with (
        serving(central, f"http://127.0.0.1:{management}/health", cwd=tmp_path, env=env),
        serving(node, health_url, cwd=tmp_path, env=env),
    ):
        health = requests.get(health_url, timeout=10).json()
        assert health["server"] == SERVER
        deadline = time.monotonic() + 30
        while not health["globalconf"]["valid"] and time.monotonic() < deadline:
            time.sleep(0.2)
            health = requests.get(health_url, timeout=10).json()
    assert health["globalconf"]["valid"], f"the node did not adopt the registry's configuration: {health}"
