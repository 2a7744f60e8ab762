"""Operational monitoring in the running development federation: records and statistics through
the management API and `xgate monitor`, and docs/operations.md "Finding a failing service".

gw-a is the client's gateway, gw-b the population register's. A good call and one to a service
gw-b has disabled leave one record on each gateway; the client's gateway's operator finds the
failing service from its statistics and records.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import (
    GET_PERSON,
    KNOWN_PERSON,
    Federation,
    changed_service,
    get_person_body,
    post_soap,
    soap_request,
    wait_until,
)
from tests.docblocks import claimed_blocks
from tests.test_docs import reader_env, run_block

FLUSH_WAIT_SECONDS = 10.0


def records_of(fed: Federation, gateway: str, message_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = fed.admin(gateway).monitoring_records(message_id=message_id)["records"]
    return found


def settled(fed: Federation, gateway: str, message_id: str) -> dict[str, Any]:
    """The gateway's one record of the message, once its writer has written it."""
    wait_until(lambda: bool(records_of(fed, gateway, message_id)), FLUSH_WAIT_SECONDS, f"{gateway}'s record")
    (record,) = records_of(fed, gateway, message_id)
    return record


@pytest.fixture(scope="module")
def calls(fed: Federation) -> Iterator[dict[str, str]]:
    """The message ids of one good getPerson call and one while gw-b had it disabled."""
    fed.wait_ready()
    url = fed.internal_url("gw-a")
    good, failed = f"good-{uuid.uuid4()}", f"failed-{uuid.uuid4()}"
    answer = post_soap(url, soap_request(GET_PERSON, get_person_body(KNOWN_PERSON), message_id=good))
    assert answer.status_code == 200, answer.text
    with changed_service(fed, "gw-b", GET_PERSON, enabled=False, disabled_notice="maintenance until 14:00"):
        post_soap(url, soap_request(GET_PERSON, get_person_body(KNOWN_PERSON), message_id=failed))
    yield {"good": good, "failed": failed}


def test_each_gateway_keeps_its_record_of_an_exchange(fed: Federation, calls: dict[str, str]) -> None:
    client, producer = settled(fed, "gw-a", calls["good"]), settled(fed, "gw-b", calls["good"])
    assert (client["role"], producer["role"]) == ("Client", "Producer")
    for record in (client, producer):
        assert record["succeeded"] and record["status"] == 200 and record["fault_code"] is None
        assert record["service"] == GET_PERSON.to_text() and record["protocol"] == "soap"
        assert record["request_size"] > 0 and record["response_size"] > 0
        assert record["duration_ms"] > 0 and "log" in record["steps_ms"]
    assert client["peer"].startswith("DEV/GOV/1002/gw-b@127.0.0.1:")
    assert producer["peer"].startswith("DEV/GOV/1001/gw-a@127.0.0.1")
    assert "backend" in producer["steps_ms"] and "peer" in client["steps_ms"]
    assert client["duration_ms"] >= producer["duration_ms"]

    failed = settled(fed, "gw-a", calls["failed"])
    assert not failed["succeeded"] and failed["fault_code"] == "Server.ServerProxy.ServiceDisabled"
    assert failed["fault_string"] == "maintenance until 14:00"
    assert settled(fed, "gw-b", calls["failed"])["fault_code"] == "Server.ServerProxy.ServiceDisabled"


def test_the_api_pages_filters_and_counts_per_service(fed: Federation, calls: dict[str, str]) -> None:
    settled(fed, "gw-a", calls["failed"])
    admin = fed.admin("gw-a")
    first = admin.monitoring_records(service=GET_PERSON.to_text(), limit=1)
    assert len(first["records"]) == 1 and first["next_offset"] == 1
    failed = admin.monitoring_records(outcome="failed", role="Client", since="2000-01-01T00:00:00Z")
    assert calls["failed"] in {record["message_id"] for record in failed["records"]}
    assert all(not record["succeeded"] for record in failed["records"])

    stats = admin.monitoring_services(window_seconds=3600, service=GET_PERSON.to_text(), role="Client")
    (person,) = stats["services"]
    assert person["successes"] >= 1 and person["failures"] >= 1
    assert person["last_failure"] is not None and person["last_success"] is not None
    assert 0 < person["duration_ms"]["min"] <= person["duration_ms"]["avg"] <= person["duration_ms"]["max"]


def xgate(fed: Federation, *args: str) -> subprocess.CompletedProcess[str]:
    gw_a = fed.gateway("gw-a")
    env = reader_env(XGATE_ADMIN_URL=gw_a["admin_url"], XGATE_API_KEY=gw_a["api_key"])
    return subprocess.run(["xgate", *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def test_xgate_monitor_prints_records_and_statistics(fed: Federation, calls: dict[str, str]) -> None:
    settled(fed, "gw-a", calls["failed"])
    records = xgate(fed, "monitor", "records", "--message-id", calls["failed"])
    assert records.returncode == 0, records.stderr
    assert "Server.ServerProxy.ServiceDisabled" in records.stdout and "Client" in records.stdout
    paged = xgate(
        fed, "monitor", "records", "--service", "DEV:GOV:1002:population:getPerson:v1", "--limit", "1"
    )
    assert paged.returncode == 0 and "next page: --page " in paged.stderr
    token = paged.stderr.split("next page: --page ")[1].split()[0]
    second = xgate(
        fed, "monitor", "records", "--service", GET_PERSON.to_text(), "--limit", "1", "--page", token
    )
    assert second.returncode == 0, second.stderr
    services = xgate(fed, "monitor", "services", "--window", "1h")
    assert services.returncode == 0, services.stderr
    assert GET_PERSON.to_text() in services.stdout
    wrong = xgate(fed, "monitor", "services", "--window", "soon")
    assert wrong.returncode != 0 and "not a duration" in wrong.stderr


def test_finding_a_failing_service_as_docs_operations_shows(
    fed: Federation, calls: dict[str, str], tmp_path: Any
) -> None:
    settled(fed, "gw-a", calls["failed"])
    gw_a = fed.gateway("gw-a")
    env = reader_env(XGATE_ADMIN_URL=gw_a["admin_url"], XGATE_API_KEY=gw_a["api_key"])
    (block,) = claimed_blocks(
        "tests/test_e2e_opmon.py::test_finding_a_failing_service_as_docs_operations_shows"
    )
    result = run_block(block, tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert GET_PERSON.to_text() in result.stdout
    assert "Server.ServerProxy.ServiceDisabled" in result.stdout
    assert "maintenance until 14:00" in result.stdout
