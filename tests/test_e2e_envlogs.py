"""A federation of real processes logging JSON (XGATE_LOG_FORMAT=json): what its logs hold after
real calls, and what its gateways report of their environment (docs/logging.md).

The federation's gateways, registry and trust services inherit XGATE_LOG_FORMAT from the test
process as they start; their standard output and error go to DIR/logs/NAME.log.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import math
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import pytest
import requests

from gateway.admin.environment import (
    CertificateView,
    DiskView,
    EnvironmentView,
    ProcessView,
    SystemView,
    VersionsView,
)
from gateway.crypto.certs import fingerprint_sha256, load_certificate_file, serial_hex
from gateway.dev import federation
from gateway.logsetup import FORMAT_ENV, LEVEL_ENV, SERVER_LOGGER
from gateway.monitoring.accesslog import ACCESS_LOGGER
from gateway.monitoring.environment import dependency_names
from tests.conftest import (
    BENEFITS_API,
    CONSUMER,
    GET_PERSON,
    GLOBALCONF_WAIT_SECONDS,
    HTTP_TIMEOUT_SECONDS,
    LIST_PERSONS,
    POPULATION_NS,
    Federation,
    get_person_body,
    post_soap,
    rest_headers,
    rest_url,
    soap_request,
    wait_until,
)
from tests.docblocks import claimed_blocks

pytestmark = pytest.mark.slow

SERVERS: Final = ("gw-a", "gw-b", "gw-c", "registry", "trust")
"""The processes of xgate's own whose every line must be JSON (the example services are not xgate's)."""


@pytest.fixture(scope="module")
def json_fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    directory = tmp_path_factory.mktemp("jsonlogs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(FORMAT_ENV, "json")
        patch.delenv(LEVEL_ENV, raising=False)
        description = federation.up(directory)  # the processes take the variable as they start
    try:
        running = Federation(directory, description)
        running.wait_ready()
        yield running
    finally:
        federation.down(directory)


def log_lines(fed: Federation, name: str) -> list[dict[str, Any]]:
    """Every line of a server's log as JSON (a line that is not fails the test, naming it)."""
    lines = []
    for number, line in enumerate((fed.dir / "logs" / f"{name}.log").read_text().splitlines(), 1):
        try:
            entry = json.loads(line)
        except ValueError:
            pytest.fail(f"{name}.log line {number} is not JSON: {line!r}")
        assert isinstance(entry, dict) and {"time", "level", "logger", "message"} <= entry.keys(), line
        lines.append(entry)
    return lines


# --- the environment -------------------------------------------------------------------------------


def test_the_environment_report_is_sane(json_fed: Federation) -> None:
    gateway = json_fed.gateway("gw-a")
    report = json_fed.admin("gw-a").environment()
    now = dt.datetime.now(dt.UTC)
    EnvironmentView.model_validate(report)  # the OpenAPI document describes what is answered
    for part, model in (("system", SystemView), ("process", ProcessView), ("versions", VersionsView)):
        assert set(report[part]) == set(model.model_fields), part
    assert set(report["certificates"][0]) == set(CertificateView.model_fields)
    assert set(report["disks"][0]) == set(DiskView.model_fields)

    system, process = report["system"], report["process"]
    assert len(system["load_average"]) == 3 and all(value >= 0 for value in system["load_average"])
    assert system["cpu_count"] >= 1 and system["uptime_seconds"] > 0
    assert 0 < system["memory_available_bytes"] <= system["memory_total_bytes"]
    assert process["pid"] == json_fed.description["pids"]["gw-a"]
    assert process["memory_rss_bytes"] > 10 * 2**20  # a Python node with lxml and cryptography loaded
    assert 0 < process["uptime_seconds"] < system["uptime_seconds"]
    assert 0 < process["open_files"] <= (process["open_files_limit"] or math.inf)
    assert process["threads"] >= 1 and process["cpu_user_seconds"] > 0

    disks = {disk["role"]: disk for disk in report["disks"]}
    assert set(disks) == {"data", "serverconf", "messagelog", "archive", "cache"}
    assert disks["serverconf"]["path"] == str(json_fed.dir / "gw-a")
    for disk in disks.values():
        assert disk["error"] is None
        assert 0 <= disk["free_bytes"] <= disk["total_bytes"] and disk["used_bytes"] <= disk["total_bytes"]

    versions = report["versions"]
    assert versions["xgate"] == importlib.metadata.version("xgate")
    requirements = importlib.metadata.requires("xgate") or []
    assert set(versions["dependencies"]) == set(dependency_names(requirements)) >= {"aiohttp", "lxml"}
    for name, version in versions["dependencies"].items():
        assert version == importlib.metadata.version(name), name
    assert versions["python"] == ".".join(map(str, sys.version_info[:3]))

    certificates = {entry["role"]: entry for entry in report["certificates"]}
    assert set(certificates) == {"auth", "signing", "internal_tls"}
    for role, path in (("auth", "auth_cert"), ("internal_tls", "tls_cert")):
        certificate = load_certificate_file(Path(gateway[path]))
        shown = certificates[role]
        assert (shown["sha256"], shown["serial"]) == (
            fingerprint_sha256(certificate),
            serial_hex(certificate),
        )
        days = (certificate.not_valid_after_utc - now).total_seconds() / 86400
        assert shown["days_left"] in (math.floor(days), math.floor(days) - 1), (shown, days)
        assert shown["days_left"] > 0 and not shown["expired"]
    assert certificates["signing"]["member"] == gateway["member"]
    # The federation checks the auth and signing certificates' status (wait_ready saw them good).
    assert (certificates["auth"]["ocsp_status"], certificates["auth"]["ocsp_required"]) == ("good", True)
    assert certificates["signing"]["ocsp_status"] == "good"
    assert certificates["internal_tls"]["ocsp_status"] is None  # never sent to peers


def test_xgate_monitor_env_prints_it(json_fed: Federation, tmp_path: Path) -> None:
    """docs/logging.md's commands, against gw-a."""
    gateway = json_fed.gateway("gw-a")
    [block] = claimed_blocks("tests/test_e2e_envlogs.py::test_xgate_monitor_env_prints_it")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "XGATE_ADMIN_URL": gateway["admin_url"],
        "XGATE_API_KEY": gateway["api_key"],
    }
    result = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + block.script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    summary, _, as_json = result.stdout.partition("\n{")
    assert (
        "load " in summary
        and "open files:" in summary
        and f"xgate {importlib.metadata.version('xgate')}" in summary
    )
    assert "DAYS LEFT" in summary and "internal_tls" in summary and "messagelog" in summary
    report = json.loads("{" + as_json)
    assert {entry["role"] for entry in report["certificates"]} == {"auth", "signing", "internal_tls"}


# --- the logs --------------------------------------------------------------------------------------


def test_every_server_logs_json_lines(json_fed: Federation) -> None:
    for name in SERVERS:
        lines = log_lines(json_fed, name)
        assert lines, f"{name} logged nothing"
    assert any(line["message"].startswith("trust services on") for line in log_lines(json_fed, "trust"))
    assert any("serving" in line["message"] for line in log_lines(json_fed, "gw-a"))


def _access(fed: Federation, name: str, **match: Any) -> list[dict[str, Any]]:
    return [
        line
        for line in log_lines(fed, name)
        if line["logger"] == ACCESS_LOGGER and all(line.get(key) == value for key, value in match.items())
    ]


def test_access_lines_name_each_exchange_and_no_body_or_key(json_fed: Federation) -> None:
    """Real exchanges through gw-a and gw-b with a marker in what must not be logged: the request
    bodies, the user id, the service's fault text, a REST path, a malformed message and a
    malformed HTTP request. Every line still parses, the access lines are there, the marker is not."""
    marker = f"MARKER{uuid.uuid4().hex}"
    ok_id, fault_id, bad_id = (f"envlogs-{uuid.uuid4()}" for _ in range(3))
    gw_a = json_fed.internal_url("gw-a")
    user = f"<xrd:userId>{marker}</xrd:userId>"
    search = (
        f'<pr:listPersons xmlns:pr="{POPULATION_NS}">'
        f"<pr:nameContains>{marker}</pr:nameContains></pr:listPersons>"
    )
    answer = post_soap(gw_a, soap_request(LIST_PERSONS, search, message_id=ok_id, extra_header=user))
    assert answer.status_code == 200 and b"listPersonsResponse" in answer.content
    answer = post_soap(gw_a, soap_request(GET_PERSON, get_person_body(marker), message_id=fault_id))
    assert marker in answer.text  # the service's fault quotes the code: it reached the client, not the logs
    post_soap(gw_a, f"<not-xml>{marker}".encode() + soap_request(GET_PERSON, "", message_id=bad_id))
    rest = requests.get(
        rest_url(json_fed, "gw-a", BENEFITS_API, f"/benefits/{marker}"),
        headers=rest_headers(),
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    assert rest.status_code >= 400
    port = urlsplit(gw_a).port
    assert port is not None
    with socket.create_connection(("127.0.0.1", port), timeout=HTTP_TIMEOUT_SECONDS) as raw:
        raw.sendall(f"POST / HTTP/1.1\r\nHost: x\r\nX-{marker} Bad: y\r\n\r\n".encode())
        assert raw.recv(1024).split(b" ")[1] == b"400"

    wait_until(
        lambda: (
            bool(_access(json_fed, "gw-b", message_id=fault_id))
            and bool(_access(json_fed, "gw-a", protocol="rest"))
            # aiohttp reports the malformed request once its connection is closed.
            and any(line["logger"] == SERVER_LOGGER for line in log_lines(json_fed, "gw-a"))
        ),
        GLOBALCONF_WAIT_SECONDS,
        "the access lines",
    )
    [client_ok] = _access(json_fed, "gw-a", message_id=ok_id)
    [producer_ok] = _access(json_fed, "gw-b", message_id=ok_id)
    for line, role in ((client_ok, "Client"), (producer_ok, "Producer")):
        assert line["level"] == "INFO" and line["role"] == role and line["protocol"] == "soap"
        assert (line["status"], line["succeeded"], line["fault_code"]) == (200, True, None)
        assert line["client"] == CONSUMER.to_text()
        assert line["service"].endswith("population/listPersons/v1") and line["exchange_id"]
        assert 0 < line["duration_ms"] < 60_000 and line["request_bytes"] > 0 and line["response_bytes"] > 0
    assert client_ok["duration_ms"] >= producer_ok["duration_ms"]  # the client's gateway waited for the other
    [client_fault] = _access(json_fed, "gw-a", message_id=fault_id)
    assert client_fault["fault_code"] and not client_fault["succeeded"]
    [bad] = _access(json_fed, "gw-a", message_id=bad_id) or _access(json_fed, "gw-a", service=None)
    assert bad["fault_code"] and bad["status"] in (200, 400, 500)
    [rest_line] = _access(json_fed, "gw-a", protocol="rest")
    assert rest_line["rest_method"] == "GET" and rest_line["service"].endswith("benefits/benefits")
    refused = [line for line in log_lines(json_fed, "gw-a") if line["logger"] == SERVER_LOGGER]
    assert [(line["level"], "traceback" in line) for line in refused] == [("INFO", False)]

    for name in SERVERS:
        text = (json_fed.dir / "logs" / f"{name}.log").read_text()
        assert marker not in text, name
        assert "-----BEGIN" not in text and "PRIVATE KEY" not in text, name
        assert not [line for line in log_lines(json_fed, name) if "traceback" in line], name
