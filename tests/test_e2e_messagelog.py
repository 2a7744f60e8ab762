"""The message log end to end: what both gateways keep of a real exchange, as a security officer
sees it through the management API, and what the evidence proves to independent checks."""

from __future__ import annotations

import base64
import io
import uuid
import zipfile
from pathlib import Path
from typing import Any

import requests
from cryptography import x509

from gateway.admin.client import AdminClient
from gateway.config import MessageLogSettings
from gateway.crypto.certs import load_certificate_file
from gateway.messagelog.archive import ContainerTrust, verify_archive_chain
from gateway.messagelog.asice import verify_container
from gateway.messagelog.service import MessageLog, node_name
from tests.conftest import (
    BENEFITS_API,
    CONSUMER,
    GET_PERSON,
    GLOBALCONF_WAIT_SECONDS,
    HTTP_TIMEOUT_SECONDS,
    KNOWN_PERSON,
    Federation,
    get_person_body,
    post_soap,
    rest_headers,
    rest_url,
    soap_request,
    wait_until,
)


def officer(fed: Federation, gateway: str) -> AdminClient:
    """The gateway's management API as its administrator (who may read the message log)."""
    return fed.admin(gateway)


def records_of(fed: Federation, gateway: str, message_id: str) -> list[dict[str, Any]]:
    return list(officer(fed, gateway).log_search({"message_id": message_id})["records"])


def post_get_person(fed: Federation, message_id: str) -> requests.Response:
    """getPerson from gw-a's client system, as message `message_id`."""
    body = soap_request(GET_PERSON, get_person_body(KNOWN_PERSON), message_id=message_id)
    return post_soap(fed.internal_url("gw-a"), body)


def call_get_person(fed: Federation, message_id: str) -> requests.Response:
    response = post_get_person(fed, message_id)
    assert response.status_code == 200, response.text
    return response


def timestamped_exchange(fed: Federation) -> str:
    """The message id of a getPerson exchange gw-a has logged and timestamped."""
    message_id = f"log-{uuid.uuid4()}"
    call_get_person(fed, message_id)
    wait_until(
        lambda: all(r["timestamped"] for r in records_of(fed, "gw-a", message_id)),
        GLOBALCONF_WAIT_SECONDS,
        "gw-a to timestamp the exchange's records",
    )
    return message_id


def shown_records(shown: dict[str, Any]) -> list[dict[str, Any]]:
    """The records `xgate log show` (the API's exchange view) lists, request and response first."""
    records = []
    for exchange in shown["exchanges"]:
        records += [r for r in (exchange["request"], exchange["response"]) if r is not None]
        records += exchange["other"]
    return records


def trust_of(fed: Federation) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
    """What an auditor is given: the federation's CA and its TSA's certificate."""
    trust = fed.description["trust"]
    return [load_certificate_file(Path(fed.ca_cert))], [load_certificate_file(Path(trust["tsa_cert"]))]


def test_a_soap_exchange_leaves_matching_signed_records_on_both_gateways(fed: Federation) -> None:
    message_id = f"log-{uuid.uuid4()}"
    call_get_person(fed, message_id)

    consumer = records_of(fed, "gw-a", message_id)
    provider = records_of(fed, "gw-b", message_id)
    assert sorted((r["side"], r["direction"], r["outcome"]) for r in consumer) == [
        ("consumer", "request", "ok"),
        ("consumer", "response", "ok"),
    ]
    assert sorted((r["side"], r["direction"], r["outcome"]) for r in provider) == [
        ("provider", "request", "ok"),
        ("provider", "response", "ok"),
    ]
    for record in consumer + provider:
        assert record["client"] == CONSUMER.to_text()
        assert record["service"] == GET_PERSON.to_text()
        assert record["body_logged"]

    # The same signed request, byte for byte, on both sides: the digests in `show` agree.
    shown_a = officer(fed, "gw-a").log_show(message_id)
    shown_b = officer(fed, "gw-b").log_show(message_id)
    digests_a = {r["direction"]: r["message_sha256"] for r in shown_records(shown_a)}
    digests_b = {r["direction"]: r["message_sha256"] for r in shown_records(shown_b)}
    assert digests_a == digests_b


def test_every_record_verifies_once_timestamped_and_exports_as_a_valid_container(fed: Federation) -> None:
    message_id = timestamped_exchange(fed)
    verification = officer(fed, "gw-a").log_verify(poll_seconds=0.1)["result"]
    assert verification["valid"], verification
    assert all(chain["first_bad"] is None for chain in verification["chains"])
    assert sum(chain["tokens_verified"] for chain in verification["chains"]) >= 1

    exported = officer(fed, "gw-a").log_export({"message_id": message_id})
    containers = [base64.b64decode(c["data"]) for c in exported["containers"]]
    assert len(containers) == 2
    cas, tsas = trust_of(fed)
    for data in containers:
        report = verify_container(data, trusted_cas=cas, trusted_tsa_certs=tsas)
        assert report.valid, report.problems
        # One bit inside the record's stored bytes (not the zip's modification time or other
        # header fields, which are no evidence and which a byte in the middle could hit).
        info = zipfile.ZipFile(io.BytesIO(data)).getinfo("META-INF/record.json")
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        altered = bytearray(data)
        altered[start + info.compress_size // 2] ^= 0x01
        assert not verify_container(bytes(altered), trusted_cas=cas, trusted_tsa_certs=tsas).valid


def test_a_rest_exchange_is_logged_with_its_request_line_and_headers(fed: Federation) -> None:
    message_id = f"log-{uuid.uuid4()}"
    response = requests.get(
        rest_url(fed, "gw-a", BENEFITS_API, f"/benefits/{KNOWN_PERSON}"),
        headers=rest_headers(extra={"X-Road-Id": message_id}),
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    assert response.status_code == 200, response.text
    shown = officer(fed, "gw-c").log_show(message_id)
    records = shown_records(shown)
    assert {(r["side"], r["direction"]) for r in records} == {
        ("provider", "request"),
        ("provider", "response"),
    }
    request = next(r for r in records if r["direction"] == "request")
    assert request["verification"]["valid"], request["verification"]
    head = request["rest_head"]
    assert head["method"] == "GET" and head["path"].endswith(f"/benefits/{KNOWN_PERSON}")
    assert any(name.lower() == "x-road-client" for name, _ in head["headers"])


def test_with_body_logging_off_the_consumer_keeps_digests_but_no_body(fed: Federation) -> None:
    with fed.serverconf("gw-a") as repository:
        repository.set_logging_policy(CONSUMER, log_bodies=False)
    try:
        message_id = f"log-{uuid.uuid4()}"
        call_get_person(fed, message_id)
        consumer = records_of(fed, "gw-a", message_id)
        assert len(consumer) == 2 and not any(r["body_logged"] for r in consumer)
        shown = officer(fed, "gw-a").log_show(message_id)
        for record in shown_records(shown):
            assert record["message_sha256"], "the digest stays, signed"
            assert record["body"]["state"] == "not_logged"
            assert record["verification"]["valid"], record["verification"]
        # The provider's policy is its own: it still keeps bodies.
        assert all(r["body_logged"] for r in records_of(fed, "gw-b", message_id))
    finally:
        with fed.serverconf("gw-a") as repository:
            repository.set_logging_policy(CONSUMER, log_bodies=True)


def test_faults_the_gateways_answer_with_are_logged(fed: Federation) -> None:
    message_id = f"log-{uuid.uuid4()}"
    unknown = GET_PERSON.__class__(
        GET_PERSON.instance, GET_PERSON.member_class, GET_PERSON.member_code,
        GET_PERSON.subsystem_code, "noSuchService", "v1",
    )  # fmt: skip
    body = soap_request(unknown, "<x:noSuchService xmlns:x='urn:x'/>", message_id=message_id)
    response = post_soap(fed.internal_url("gw-a"), body)
    assert response.status_code == 500
    provider = records_of(fed, "gw-b", message_id)
    assert ("response", "Server.ServerProxy.UnknownService") in {
        (r["direction"], r["outcome"]) for r in provider
    }
    consumer = records_of(fed, "gw-a", message_id)
    assert any(r["outcome"] == "Server.ServerProxy.UnknownService" for r in consumer)


async def test_a_nodes_log_archives_into_chained_verified_archives_and_purges_only_archived(
    fed: Federation, tmp_path: Path
) -> None:
    """The node's archiving step (MessageLog.archive_now) run over gw-a's live log database."""
    message_id = timestamped_exchange(fed)
    late_id = f"log-{uuid.uuid4()}"
    call_get_person(fed, late_id)  # likely not yet timestamped, so not archivable
    settings = MessageLogSettings(
        database_url=f"sqlite:///{fed.dir / 'gw-a' / 'messagelog.sqlite'}",
        archive_dir=tmp_path / "archives",
        retention_days=0,
    )
    gateway = fed.gateway("gw-a")["server_id"]
    log = MessageLog(settings, gateway=gateway, node=node_name(), globalconf=lambda: None)
    try:
        written = await log.archive_now()
    finally:
        log.engine.dispose()
    assert written, "timestamped records were waiting to be archived"
    cas, tsas = trust_of(fed)
    report = verify_archive_chain(sorted(written), trust=ContainerTrust(cas, tsas))
    assert report.valid, report.problems
    archived_text = b"".join(zipfile.ZipFile(path).read("index.json") for path in written)
    assert message_id.encode() in archived_text
    # Retention (0 days) purged what was archived, and nothing else.
    assert records_of(fed, "gw-a", message_id) == []
    if late_id.encode() not in archived_text:
        assert len(records_of(fed, "gw-a", late_id)) == 2, "an unarchived record was purged"
    verified = officer(fed, "gw-a").log_verify(full=True, poll_seconds=0.1)
    assert verified["valid"], "the chain still verifies from its purge point"
