"""Trust in peers over real sockets and real mutual TLS (issue 9, holes 1 and 7).

A hostile provider process (tests/hostile_peer.py) holding gw-b's registered TLS key, on gw-b's
address while gw-b is stopped, answers gw-a with unsigned, forged 200s for SOAP and REST: gw-a's
client gets gw-a's own fault, and gw-a's message log records exactly that fault. A signed request
captured on the wire and sent again with gw-a's TLS key is refused by gw-b as a duplicate.
"""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from gateway import faults
from gateway.config import load_config
from gateway.dev import federation
from gateway.ids import ClientId, ServiceId
from tests.conftest import (
    GET_PERSON,
    HTTP_TIMEOUT_SECONDS,
    KNOWN_PERSON,
    REPO,
    Federation,
    assert_rest_error,
    assert_soap_fault,
    get_person_body,
    one_row,
    post_soap,
    rest_headers,
    soap_request,
    wait_until,
)
from tests.hostile_peer import FORGED
from tests.test_e2e_registry import joining_gateway, refresh_seconds, register_directly, subsystem_of, xgate
from tests.test_e2e_security import gateway_cert, get_person_payload, post_external, signed_transport

STARTUP_SECONDS = 20.0
SHADY = ClientId("DEV", "GOV", "1006")


@contextlib.contextmanager
def hostile_provider(fed: Federation, name: str, gw: dict[str, Any] | None = None) -> Iterator[None]:
    """`name` stopped, and a hostile process with its TLS key (not its signing key) on its address.

    `gw`: the gateway's description, for one added after the federation started."""
    gw = gw or fed.gateway(name)
    host, port = gw["external_address"].rsplit(":", 1)
    federation.stop_process(fed.dir, name)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.hostile_peer",
            gw["auth_cert"],
            gw["auth_key"],
            fed.ca_cert,
            host,
            port,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.strip() == "ready", line
        yield
    finally:
        process.terminate()
        process.wait(10)
        federation.start_process(fed.dir, name)


def logged_response(fed: Federation, gateway: str, message_id: str) -> tuple[str, str | None]:
    """(outcome, body SHA-256) of the consumer-side response record of `message_id` in `gateway`'s log."""
    settings = load_config(Path(fed.gateway(gateway)["config"])).messagelog
    assert settings is not None
    row = one_row(
        settings.database_url,
        "SELECT outcome, message_sha256 FROM messagelog_records WHERE message_id = :id"
        " AND side = 'consumer' AND direction = 'response'",
        id=message_id,
    )
    return row.outcome, row.message_sha256


def test_a_hostile_peer_with_a_registered_tls_key_cannot_answer_a_client(short_fed: Federation) -> None:
    fed = short_fed
    fed.wait_ready()
    soap_id, rest_id = f"hostile-soap-{uuid.uuid4()}", f"hostile-rest-{uuid.uuid4()}"
    # A REST call to gw-b's subsystem: gw-a sends it to gw-b's address whatever the service is.
    rest_url = f"{fed.internal_url('gw-a')}/r1/{GET_PERSON.to_text()}/persons/{KNOWN_PERSON}"

    with hostile_provider(fed, "gw-b"):
        soap = post_soap(
            fed.internal_url("gw-a"),
            soap_request(GET_PERSON, get_person_body(KNOWN_PERSON), message_id=soap_id),
        )
        rest = requests.get(
            rest_url, headers=rest_headers(extra={"X-Road-Id": rest_id}), timeout=HTTP_TIMEOUT_SECONDS
        )

    assert_soap_fault(soap, faults.CLIENT_PROXY_INVALID_SIGNATURE)
    assert_rest_error(rest, faults.CLIENT_PROXY_INVALID_SIGNATURE, 500)
    for response, message_id in ((soap, soap_id), (rest, rest_id)):
        assert FORGED not in response.text
        outcome, digest = logged_response(fed, "gw-a", message_id)
        assert outcome == faults.CLIENT_PROXY_INVALID_SIGNATURE, "not InternalError, not the forged body"
        assert digest == hashlib.sha256(response.content).hexdigest(), "the log holds what the client got"
    # gw-b is back: the same call is served and signed.
    wait_until(
        lambda: (
            post_soap(
                fed.internal_url("gw-a"), soap_request(GET_PERSON, get_person_body(KNOWN_PERSON))
            ).status_code
            == 200
        ),
        STARTUP_SECONDS,
        "gw-b to serve again",
    )


def test_a_hostile_peer_with_a_revoked_registered_tls_key_cannot_answer_a_client(
    short_fed: Federation,
) -> None:
    """The same with a gateway whose TLS certificate the CA has revoked: still gw-a's own fault."""
    fed = short_fed
    fed.wait_ready()
    with joining_gateway(fed, "gw-f", SHADY, "Shady Office") as gw:
        register_directly(fed, gw)
        office = subsystem_of(gw)
        service = ServiceId(
            office.instance, office.member_class, office.member_code, office.subsystem_code, "getPerson", "v1"
        )

        def call(message_id: str | None = None) -> requests.Response:
            body = soap_request(service, get_person_body(KNOWN_PERSON), message_id=message_id)
            return post_soap(fed.internal_url("gw-a"), body)

        wait_until(
            lambda: faults.UNKNOWN_MEMBER not in call().text, refresh_seconds(fed) + 10, "gw-a to know gw-f"
        )
        revoked = xgate(
            "pki", "revoke", str(fed.pki_dir), "--cert", gw["auth_cert"], "--reason", "keyCompromise", "--yes"
        )
        assert revoked.returncode == 0, revoked.stderr
        message_id = f"hostile-revoked-{uuid.uuid4()}"
        with hostile_provider(fed, "gw-f", gw):
            soap = call(message_id)

    assert_soap_fault(soap, faults.CLIENT_PROXY_INVALID_SIGNATURE)
    assert FORGED not in soap.text
    outcome, digest = logged_response(fed, "gw-a", message_id)
    assert outcome == faults.CLIENT_PROXY_INVALID_SIGNATURE
    assert digest == hashlib.sha256(soap.content).hexdigest()


def test_a_signed_request_captured_on_the_wire_is_served_once(fed: Federation) -> None:
    """Sent again with gw-a's TLS key within the freshness window: Server.ServerProxy.DuplicateMessage."""
    message = signed_transport(fed, "gw-a", get_person_payload())

    first = post_external(fed, "gw-b", message, gateway_cert(fed, "gw-a"))
    again = post_external(fed, "gw-b", message, gateway_cert(fed, "gw-a"))

    assert first.status_code == 200 and b"Mart Tamm" in first.content
    assert_soap_fault(again, faults.SERVER_PROXY_DUPLICATE_MESSAGE)
