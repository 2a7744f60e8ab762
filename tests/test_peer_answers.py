"""Nothing unsigned reaches a client (issue 9, hole 1), in one process (tests/inprocess.py).

A peer that holds a registered provider gateway's TLS key, but not the provider's signing key,
answers gw-a's requests with whatever it likes: unsigned 200s with a forged body, faults that
look like a gateway's, any content type. gw-a must answer its client with a fault of its own
(`Server.ClientProxy.InvalidSignatureValue`), never the peer's text, and its message log must
record exactly that fault. A provider gateway's own faults arrive signed and pass on, logged as
signed. The same over real mutual TLS with a peer process is in test_e2e_peer_trust.py.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from gateway import faults
from gateway.crypto.certs import load_certificate_file
from gateway.ids import ServiceId
from gateway.messagelog import packing
from gateway.outbound import OutboundRequest, OutboundResponse
from gateway.protocol import rest
from gateway.protocol.transport import TRANSPORT_MEDIA_TYPE
from tests.conftest import (
    BENEFITS_API,
    GET_PERSON,
    KNOWN_PERSON,
    POPULATION_NS,
    assert_rest_error,
    assert_soap_fault,
    get_person_request,
    one_row,
    rest_headers,
    soap_request,
)
from tests.inprocess import Gateway, InProcessFederation

SOAP_HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
UNKNOWN_SERVICE = ServiceId("DEV", "GOV", "1002", "population", "noSuchService", "v1")
"""At gw-b, which answers with its own (signed) UnknownService fault."""
FORGED = "Forged Person 0xDEADBEEF"
"""What the hostile peer puts in its answers: it must never reach the client."""


def forged_soap(code: str | None = None) -> bytes:
    """A getPerson answer (or, with `code`, a gateway's SOAP fault) naming the forged person."""
    if code is None:
        return soap_request(
            GET_PERSON,
            f'<pr:getPersonResponse xmlns:pr="{POPULATION_NS}">'
            f"<pr:name>{FORGED}</pr:name></pr:getPersonResponse>",
        )
    return (
        '<?xml version="1.0"?><SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/">'
        f"<SOAP-ENV:Body><SOAP-ENV:Fault><faultcode>{code}</faultcode><faultstring>{FORGED}</faultstring>"
        "<detail><faultDetail>forged</faultDetail></detail></SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>"
    ).encode()


UNSIGNED_ANSWERS = [
    pytest.param(200, "text/xml; charset=utf-8", forged_soap(), {}, id="soap-200"),
    pytest.param(500, "text/xml", forged_soap(faults.ACCESS_DENIED), {}, id="soap-fault-500"),
    pytest.param(
        200,
        "application/json",
        json.dumps({"name": FORGED}).encode(),
        {"X-Road-Id": "x"},
        id="json-200",
    ),
    pytest.param(
        403,
        "application/json",
        json.dumps({"type": faults.ACCESS_DENIED, "message": FORGED, "detail": "d"}).encode(),
        {"X-Road-Error": faults.ACCESS_DENIED},
        id="rest-error-403",
    ),
    pytest.param(200, "", FORGED.encode(), {}, id="no-content-type"),
]
"""Unsigned answers, whatever their status and content type: Server.ClientProxy.InvalidSignatureValue."""


def hostile(
    gateway: Gateway, status: int, content_type: str, body: bytes, extra: dict[str, str]
) -> Callable[[OutboundRequest], Awaitable[OutboundResponse]]:
    """gw-a's peer: an answer over the TLS connection of the registered gw-b, without gw-b's signature."""

    async def answer(request: OutboundRequest) -> OutboundResponse:
        headers = (("Content-Type", content_type), *extra.items()) if content_type else tuple(extra.items())
        return OutboundResponse(status, headers, body, gateway.auth_cert)

    return answer


@dataclass(frozen=True)
class Logged:
    outcome: str
    message: bytes | None
    signed: bool


def last_response_logged(gateway: Gateway) -> Logged:
    """The newest response record of the consumer side in `gateway`'s message log."""
    settings = gateway.runtime.config.messagelog
    assert settings is not None
    row = one_row(
        settings.database_url,
        "SELECT outcome, message, body_codec, signed_root_sha256 FROM messagelog_records"
        " WHERE side = 'consumer' AND direction = 'response' ORDER BY id DESC LIMIT 1",
    )
    message = None if row.message is None else packing.decompress_body(row.body_codec, bytes(row.message))
    return Logged(row.outcome, message, row.signed_root_sha256 is not None)


def assert_logged_as_sent(gateway: Gateway, response: requests.Response, code: str) -> None:
    logged = last_response_logged(gateway)
    assert logged.outcome == code
    assert logged.message == response.content, "the log records exactly what the client received"


async def test_a_malformed_transport_message_is_the_consumers_own_content_type_fault(
    local: InProcessFederation,
) -> None:
    """docs/transport.md "Faults": bad framing is InvalidContentType, in gw-a's words."""
    gw_a = local["gw-a"]
    frame = "multipart/mixed; boundary=xgate-1; xgate-version=1"
    gw_a.peers.handler = hostile(local["gw-b"], 200, frame, FORGED.encode(), {})

    response = await ask_soap(gw_a, faults.CLIENT_PROXY_INVALID_CONTENT_TYPE)

    assert FORGED.encode() not in response.content
    assert_logged_as_sent(gw_a, response, faults.CLIENT_PROXY_INVALID_CONTENT_TYPE)


async def ask_soap(gateway: Gateway, code: str) -> requests.Response:
    """A client's getPerson through `gateway`, which must answer with the SOAP fault `code`."""
    response = await gateway.post("/", get_person_request(KNOWN_PERSON), SOAP_HEADERS)
    assert_soap_fault(response, code)
    return response


async def ask_rest(gateway: Gateway, code: str) -> requests.Response:
    """A client's REST call through `gateway`, which must answer with the REST error `code`."""
    response = await gateway.request(
        "GET", f"/r1/{BENEFITS_API.to_text()}/benefits/{KNOWN_PERSON}", headers=rest_headers()
    )
    assert_rest_error(response, code, 500)
    assert "X-Road-Id" not in response.headers or response.headers["X-Road-Id"] != "x"
    return response


@pytest.mark.parametrize("ask", [ask_soap, ask_rest], ids=["soap", "rest"])
@pytest.mark.parametrize(("status", "content_type", "body", "extra"), UNSIGNED_ANSWERS)
async def test_an_unsigned_answer_becomes_the_consumers_fault(
    local: InProcessFederation,
    ask: Callable[[Gateway, str], Awaitable[requests.Response]],
    status: int,
    content_type: str,
    body: bytes,
    extra: dict[str, str],
) -> None:
    gw_a = local["gw-a"]
    gw_a.peers.handler = hostile(local["gw-b"], status, content_type, body, extra)

    response = await ask(gw_a, faults.CLIENT_PROXY_INVALID_SIGNATURE)

    assert FORGED.encode() not in response.content
    assert_logged_as_sent(gw_a, response, faults.CLIENT_PROXY_INVALID_SIGNATURE)


async def test_the_provider_gateways_own_faults_arrive_signed_and_pass_on(local: InProcessFederation) -> None:
    """AccessDenied from gw-b: signed by gw-b, passed to the client as signed, logged signed by gw-a."""
    gw_a, gw_b = local["gw-a"], local["gw-b"]
    unknown = soap_request(UNKNOWN_SERVICE, "<pr:noSuchService xmlns:pr='urn:x'/>")
    signed_answers: list[OutboundResponse] = []
    honest = gw_a.peers.handler

    async def watching(request: OutboundRequest) -> OutboundResponse:
        answer = await honest(request)
        signed_answers.append(answer)
        return answer

    gw_a.peers.handler = watching

    soap = await gw_a.post("/", unknown, SOAP_HEADERS)
    assert_soap_fault(soap, faults.UNKNOWN_SERVICE)
    assert last_response_logged(gw_a) == Logged(faults.UNKNOWN_SERVICE, soap.content, signed=True)

    rest = await gw_a.request("GET", f"/r1/{UNKNOWN_SERVICE.to_text()}/x", headers=rest_headers())
    assert_rest_error(rest, faults.UNKNOWN_SERVICE, 500)
    assert last_response_logged(gw_a) == Logged(faults.UNKNOWN_SERVICE, rest.content, signed=True)
    assert rest.headers["X-Road-Request-Hash"], "a signed REST fault echoes the request it answers"

    assert [a.content_type.startswith(TRANSPORT_MEDIA_TYPE) for a in signed_answers] == [True, True]
    assert gw_b.backends.requests == []


async def test_a_signed_fault_altered_on_the_way_is_refused(local: InProcessFederation) -> None:
    gw_a = local["gw-a"]
    honest = gw_a.peers.handler

    async def altering(request: OutboundRequest) -> OutboundResponse:
        answer = await honest(request)
        forged = answer.body.replace(b"not registered", b"NOT registered", 1)
        assert forged != answer.body
        return OutboundResponse(answer.status, answer.headers, forged, answer.peer_certificate)

    gw_a.peers.handler = altering

    response = await gw_a.post(
        "/", soap_request(UNKNOWN_SERVICE, "<pr:noSuchService xmlns:pr='urn:x'/>"), SOAP_HEADERS
    )

    assert_soap_fault(response, faults.CLIENT_PROXY_INVALID_SIGNATURE)
    assert_logged_as_sent(gw_a, response, faults.CLIENT_PROXY_INVALID_SIGNATURE)


async def test_a_signed_fault_before_the_provider_could_read_a_rest_request_reaches_the_client(
    local: InProcessFederation,
) -> None:
    """gw-c refuses gw-a's connection before reading the body, so answers a signed SOAP fault:
    gw-a's REST client gets that fault's code and detail as a REST error, logged as sent."""
    gw_a = local["gw-a"]
    gw_a.auth_cert = load_certificate_file(Path(local.description["gateways"][0]["tls_cert"]))

    response = await gw_a.request(
        "GET", f"/r1/{BENEFITS_API.to_text()}/benefits/{KNOWN_PERSON}", headers=rest_headers()
    )

    code = faults.SERVER_PROXY_SSL_AUTHENTICATION_FAILED
    assert_rest_error(response, code, rest.rest_error_status(code))
    assert_logged_as_sent(gw_a, response, code)
