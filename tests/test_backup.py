"""Backup and restore (issue 12 item 5): a node lost with its directory comes back from one file and serves.

The federation's files are `federation.build`'s; gw-b's registrations are changed, it is backed
up with `xgate gateway backup`, its directory is deleted (the machine is gone), and
`xgate gateway restore` writes it into a fresh directory. The federation then runs with gw-b
from the restored directory (tests/inprocess.py, which migrates and starts each gateway as
node.serve does) and gw-a's client calls gw-b's service through it. Tampering, wrong keys,
scheduled backups with retention and the PostgreSQL form of the configuration are tested apart.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

import pytest
import requests
import sqlalchemy as sa
from click.testing import CliRunner, Result

from gateway.admin.client import AdminClient
from gateway.backup import (
    BackupError,
    BackupKey,
    database_rows,
    load_rows,
    make_backup,
    open_backup,
    restore,
    run_schedule,
    scheduled_backup,
)
from gateway.cli import main
from gateway.config import BackupSettings, ConfigError, load_config
from gateway.ids import LocalGroupId
from gateway.node import serve
from gateway.serverconf import db as serverconf_db
from gateway.serverconf.access import AccessRight
from gateway.serverconf.repository import ServerConfRepository
from tests.conftest import (
    BACKENDS,
    CONSUMER,
    HTTP_TIMEOUT_SECONDS,
    KNOWN_PERSON,
    POPULATION,
    POPULATION_NS,
    REPO,
    get_person_request,
    migrated_database,
    pg_schema_url,
    soap_body,
    wait_until,
)
from tests.inprocess import Built, build_template, inprocess_federation

PASSPHRASE_ENV: Final = "XGATE_TEST_BACKUP_PASSPHRASE"
PASSPHRASE: Final = "correct horse battery staple"
SOAP_HEADERS: Final = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
GROUP: Final = LocalGroupId("restored-friends")


def xgate(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={PASSPHRASE_ENV: PASSPHRASE}, catch_exceptions=False)


def gateway_of(description: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(gw for gw in description["gateways"] if gw["name"] == name)
    return found


@pytest.fixture
def built(tmp_path: Path) -> Built:
    return build_template(tmp_path / "federation")


async def test_a_lost_node_restored_from_its_backup_into_a_fresh_directory_serves(
    built: Built, tmp_path: Path
) -> None:
    gw_b = gateway_of(built.description, "gw-b")
    config_path = Path(gw_b["config"])
    repository = ServerConfRepository.from_url(load_config(config_path).database_url)
    # Registrations made since the node was set up: a local group holding the consumer, the
    # consumer's right to getPerson through it instead of its own, and an API key.
    repository.add_local_group(POPULATION, GROUP, "kept by the backup")
    repository.add_local_group_member(POPULATION, GROUP, CONSUMER)
    repository.grant(POPULATION, AccessRight(GROUP, "getPerson"))
    repository.revoke(POPULATION, AccessRight(CONSUMER, "getPerson"))
    _, api_key = repository.create_api_key("before-the-fire", "system_administrator")
    repository.engine.dispose()

    backup_file = tmp_path / "gw-b.xgb"
    made = xgate(
        "gateway",
        "backup",
        "--config",
        str(config_path),
        "--passphrase-env",
        PASSPHRASE_ENV,
        "-o",
        str(backup_file),
    )
    assert made.exit_code == 0, made.output
    sealed = backup_file.read_bytes()
    assert b"PRIVATE KEY" not in sealed and b"getPerson" not in sealed  # encrypted, all of it
    assert stat.S_IMODE(backup_file.stat().st_mode) == 0o600

    old_dir = config_path.parent
    shutil.rmtree(old_dir)  # the machine is gone
    new_dir = built.directory / "restored-b"
    restored = xgate(
        "gateway", "restore", str(backup_file), "--to", str(new_dir), "--passphrase-env", PASSPHRASE_ENV
    )
    assert restored.exit_code == 0, restored.output
    new_config = new_dir / config_path.name
    assert f"--config {new_config}" in restored.output
    config = load_config(new_config)  # every file it names is there
    assert str(old_dir) not in new_config.read_text()
    for key in (config.auth_tls.key, *(s.key for s in config.signing_keys)):
        assert key.is_relative_to(new_dir) and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(new_dir.stat().st_mode) == 0o700

    # The federation, with gw-b running from the restored directory.
    description = json.loads(json.dumps(built.description).replace(f"{old_dir}/", f"{new_dir}/"))
    async with inprocess_federation(
        tmp_path / "running", template=Built(built.directory, description)
    ) as fed:
        runtime = fed["gw-b"].runtime
        assert runtime.repository.verify_api_key(api_key) is not None
        assert CONSUMER in runtime.repository.snapshot().local_groups[POPULATION][GROUP].members
        response = await fed["gw-a"].post("/", get_person_request(KNOWN_PERSON), SOAP_HEADERS)
        assert response.status_code == 200, response.text
        assert soap_body(response).find(f"{{{POPULATION_NS}}}person") is not None


def test_the_restored_node_starts_as_a_process_and_answers_with_its_restored_keys(
    built: Built, tmp_path: Path
) -> None:
    gw_b = gateway_of(built.description, "gw-b")
    config_path = Path(gw_b["config"])
    repository = ServerConfRepository.from_url(load_config(config_path).database_url)
    _, api_key = repository.create_api_key("restored-admin", "observer")
    repository.engine.dispose()
    key = BackupKey.passphrase(PASSPHRASE)
    sealed = make_backup(config_path, key)
    shutil.rmtree(config_path.parent)
    new_config = restore(sealed, key, tmp_path / "elsewhere")

    log = tmp_path / "node.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "gateway", "serve", "--config", str(new_config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )
    try:
        client = AdminClient(gw_b["admin_url"], api_key, timeout=HTTP_TIMEOUT_SECONDS)

        def answers() -> bool:
            assert process.poll() is None, log.read_text()
            try:
                return bool(client.list_subsystems())
            except requests.ConnectionError:
                return False

        wait_until(answers, 30, "the restored node's management API")
        assert POPULATION.to_text() in {s["client_id"] for s in client.list_subsystems()}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


def test_a_changed_byte_a_wrong_key_or_a_used_directory_is_refused(built: Built, tmp_path: Path) -> None:
    config_path = Path(gateway_of(built.description, "gw-a")["config"])
    key = BackupKey.passphrase(PASSPHRASE)
    sealed = make_backup(config_path, key)
    opened = open_backup(sealed, key)
    roles = {entry["role"] for entry in opened.manifest["members"]}
    assert roles == {"config", "serverconf-sqlite", "key", "file"}

    for position in (3, 20, len(sealed) // 2, len(sealed) - 1):  # magic, header, body, tag
        changed = bytearray(sealed)
        changed[position] ^= 0x01
        with pytest.raises(BackupError):
            open_backup(bytes(changed), key)
    with pytest.raises(BackupError, match="wrong passphrase or key"):
        open_backup(sealed, BackupKey.passphrase("not it"))
    key_file = tmp_path / "backup.key"
    key_file.write_bytes(os.urandom(32))
    with pytest.raises(BackupError, match="sealed with a passphrase"):
        open_backup(sealed, BackupKey.key_file(key_file))

    by_file = BackupKey.key_file(key_file)
    assert open_backup(make_backup(config_path, by_file), by_file).manifest["server_id"].endswith("gw-a")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "something").write_text("")
    with pytest.raises(BackupError, match="not empty"):
        restore(sealed, key, tmp_path / "used")


def test_backup_needs_exactly_one_key_and_never_takes_the_passphrase_as_an_argument(built: Built) -> None:
    config_path = Path(gateway_of(built.description, "gw-a")["config"])
    result = xgate("gateway", "backup", "--config", str(config_path), "-o", "x.xgb")
    assert result.exit_code == 2 and "--passphrase-env" in result.output
    result = CliRunner().invoke(
        main,
        ["gateway", "backup", "--config", str(config_path), "--passphrase-env", "XGATE_UNSET_VAR", "-o", "x"],
    )
    assert result.exit_code == 2 and "XGATE_UNSET_VAR is not set" in result.output


def test_backup_section_is_checked(built: Built, tmp_path: Path) -> None:
    config_path = Path(gateway_of(built.description, "gw-a")["config"])
    text = config_path.read_text()
    config_path.write_text(
        text + f'\n[backup]\ndirectory = "{tmp_path}/b"\ninterval_seconds = 60\nkeep = 3\n'
    )
    with pytest.raises(ConfigError, match="passphrase_env and key_file"):
        load_config(config_path)
    config_path.write_text(
        text + f'\n[backup]\ndirectory = "{tmp_path}/b"\npassphrase_env = "{PASSPHRASE_ENV}"\n'
    )
    settings = load_config(config_path).backup
    assert settings == BackupSettings(tmp_path / "b", 86400.0, 7, PASSPHRASE_ENV, None)


async def test_scheduled_backups_run_in_the_background_and_keep_the_newest(
    built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    gw_a = gateway_of(built.description, "gw-a")
    config_path = Path(gw_a["config"])
    schedule = BackupSettings(tmp_path / "backups", 0.2, 2, PASSPHRASE_ENV, None)

    task = asyncio.create_task(run_schedule(config_path, gw_a["server_id"], schedule))
    try:
        for _ in range(100):
            await asyncio.sleep(0.1)
            if len(list(schedule.directory.glob("*.xgb"))) >= 2:
                break
        await asyncio.sleep(0.6)  # a few more rounds, each removing the oldest
    finally:
        task.cancel()
    files = sorted(schedule.directory.glob("*.xgb"))
    assert len(files) == 2
    assert all(f.name.startswith(gw_a["server_id"].replace("/", "-") + "-") for f in files)
    restored = restore(files[-1].read_bytes(), BackupKey.passphrase(PASSPHRASE), tmp_path / "restored")
    assert load_config(restored).server_id.to_text() == gw_a["server_id"]

    # Retention by name order, which is time order.
    base = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)
    for minute in range(4):
        scheduled_backup(config_path, gw_a["server_id"], schedule, base + dt.timedelta(minutes=minute))
    names = sorted(f.name for f in schedule.directory.glob("*.xgb"))
    assert len(names) == 2 and names[-1] > "-20261206T0003"


async def test_a_serving_node_backs_itself_up_on_its_schedule(
    built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    config_path = Path(gateway_of(built.description, "gw-a")["config"])
    backups = tmp_path / "scheduled"
    section = (
        f'directory = "{backups}"\ninterval_seconds = 0.3\nkeep = 2\npassphrase_env = "{PASSPHRASE_ENV}"\n'
    )
    config_path.write_text(config_path.read_text() + "\n[backup]\n" + section)
    ready, stop = asyncio.Event(), asyncio.Event()
    node = asyncio.create_task(
        serve(load_config(config_path), ready=ready, stop=stop, config_path=config_path)
    )
    try:
        await asyncio.wait_for(ready.wait(), 30)
        for _ in range(100):
            if len(list(backups.glob("*.xgb"))) >= 2:
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(node, 30)
    assert len(list(backups.glob("*.xgb"))) == 2


@pytest.fixture(params=BACKENDS)
def source_url(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    with migrated_database(
        request.param, tmp_path, "source.db", serverconf_db.migrate, "xgate_lifecycle"
    ) as url:
        yield url


def test_the_configuration_as_rows_loads_into_an_empty_database(source_url: str, tmp_path: Path) -> None:
    source = ServerConfRepository.from_url(source_url)
    source.add_subsystem(POPULATION)
    source.add_local_group(POPULATION, GROUP, "rows")
    source.add_local_group_member(POPULATION, GROUP, CONSUMER)
    _, api_key = source.create_api_key("rows", "observer")
    source.audit("test", "something", "target", {"n": 1})
    before = source.snapshot()
    source.engine.dispose()

    rows, revision = database_rows(source_url)
    assert revision == "0005"
    target_url = f"sqlite:///{tmp_path / 'target.db'}"
    if not source_url.startswith("sqlite"):
        with pg_schema_url("xgate_lifecycle") as target_url:
            _load_and_compare(target_url, rows, revision, before, api_key)
        return
    _load_and_compare(target_url, rows, revision, before, api_key)


def _load_and_compare(url: str, rows: bytes, revision: str, before: Any, api_key: str) -> None:
    load_rows(url, rows, revision)
    target = ServerConfRepository.from_url(url)
    try:
        after = target.snapshot()
        assert after.subsystems == before.subsystems and after.local_groups == before.local_groups
        assert target.verify_api_key(api_key) is not None
        assert target.verify_audit_chain().ok
        target.add_subsystem(CONSUMER)  # ids go on after the loaded ones
        with target.engine.connect() as connection:
            assert connection.scalar(sa.select(sa.func.count()).select_from(sa.table("subsystems"))) == 2
        with pytest.raises(BackupError, match="not empty"):
            load_rows(url, rows, revision)
    finally:
        target.engine.dispose()
