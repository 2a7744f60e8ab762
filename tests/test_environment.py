"""The environment collector's parts, on this machine (gateway.monitoring.environment); the
report of a running node is tested end to end in tests/test_e2e_envlogs.py."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.crypto.certs import serial_hex
from gateway.messagelog.diskspace import DiskUsage
from gateway.monitoring.environment import (
    EnvironmentCollector,
    NodeCertificate,
    NodeSurroundings,
    certificate_entry,
    dependency_names,
    disks,
)
from tests.certs import certificate_builder, common_name

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)


def _certificate(not_after: dt.datetime) -> NodeCertificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = common_name("gw-a")
    certificate = certificate_builder(
        name, name, key.public_key(), NOW - dt.timedelta(days=400), not_after
    ).sign(key, hashes.SHA256())
    return NodeCertificate("auth", certificate)


def test_days_left_count_whole_days_and_go_negative_once_expired() -> None:
    entry = _certificate(NOW + dt.timedelta(days=29, hours=23))
    shown = certificate_entry(
        entry, NOW, {serial_hex(entry.certificate): {"status": "good", "required": True}}
    )
    assert (shown["days_left"], shown["expired"], shown["ocsp_status"], shown["ocsp_required"]) == (
        29,
        False,
        "good",
        True,
    )
    assert shown["not_after"] == "2027-01-05T11:00:00Z"
    expired = certificate_entry(_certificate(NOW - dt.timedelta(hours=1)), NOW, {})
    assert (expired["days_left"], expired["expired"], expired["ocsp_status"]) == (-1, True, None)


def test_dependency_names_leave_out_the_extras() -> None:
    requirements = [
        "aiohttp==3.14.5",
        "psycopg[binary]==3.3.9",
        "uvloop==0.23.0; sys_platform != 'win32'",
        'pytest==9.2.0; extra == "dev"',
    ]
    assert dependency_names(requirements) == ["aiohttp", "psycopg", "uvloop"]


def test_disks_read_the_filesystem_a_missing_directory_will_be_on(tmp_path: Path) -> None:
    total = shutil.disk_usage(tmp_path).total
    [entry] = disks({"archive": tmp_path / "not" / "made" / "yet"})
    assert entry["error"] is None and entry["total_bytes"] == total
    assert 0 <= entry["free_bytes"] <= entry["total_bytes"] and 0 <= entry["free_percent"] <= 100

    def unreadable(path: Path) -> DiskUsage:
        raise PermissionError(13, "Permission denied", str(path))

    [entry] = disks({"data": tmp_path}, usage=unreadable)
    assert entry["free_bytes"] is None and "Permission denied" in entry["error"]


def test_the_report_of_this_process(tmp_path: Path) -> None:
    started = time.time() - 5
    report = EnvironmentCollector(NodeSurroundings(started, {"data": tmp_path})).collect()
    process = report["process"]
    assert process["pid"] == os.getpid() and 5 <= process["uptime_seconds"] < 60
    assert process["open_files"] > 0 and process["memory_rss_bytes"] > 0
    assert report["system"]["memory_total_bytes"] > report["system"]["memory_available_bytes"] > 0
    assert report["certificates"] == [] and [disk["role"] for disk in report["disks"]] == ["data"]
    report["versions"]["dependencies"].clear()  # the caller's copy: the cached versions stay whole
    assert EnvironmentCollector(NodeSurroundings(started, {})).collect()["versions"]["dependencies"]
