"""SOAP 4.0 end to end: an agency system → gw-a → (mutual TLS, signed) → gw-b → the population register.

zeep, an independent SOAP client, reads the service's own WSDL and talks to gw-a as it would
to the service, over real sockets and mutual TLS between the gateways. The gateways' faults,
access decisions, the services' failures and failover are tested in-process
(test_proxy_inprocess.py).
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
import zeep
from zeep.plugins import HistoryPlugin
from zeep.transports import Transport

from gateway.xmlsafe import parse_xml
from tests.conftest import (
    CONSUMER,
    GET_PERSON,
    KNOWN_PERSON,
    POPULATION_BINDING,
    POPULATION_NS,
    POPULATION_WSDL,
    SOAP_ENV_NS,
    XROAD_NS,
    Federation,
    get_person_request,
    post_soap,
    soap_body,
    zeep_headers,
)

SENT_HEADERS: dict[str, Any] = zeep_headers(
    CONSUMER,
    GET_PERSON,
    userId="EE38001085718",
    issue="case-2026/117",
    protocolVersion="4.0",
    representedParty={"partyClass": "COM", "partyCode": "12345678"},
)


class RecordingTransport(Transport):
    """zeep's transport, keeping the exact bytes it sent: the request hash is computed over them."""

    def __init__(self) -> None:
        super().__init__(timeout=20, operation_timeout=20)
        self.sent: list[bytes] = []

    def post(self, address: str, message: bytes, headers: dict[str, str]) -> requests.Response:
        self.sent.append(message)
        return super().post(address, message, headers)


def _zeep_service(url: str) -> tuple[Any, RecordingTransport, HistoryPlugin]:
    transport = RecordingTransport()
    history = HistoryPlugin()
    client = zeep.Client(str(POPULATION_WSDL), transport=transport, plugins=[history])
    return client.create_service(POPULATION_BINDING, url), transport, history


def test_zeep_calls_get_person_through_two_gateways(fed: Federation) -> None:
    service, transport, history = _zeep_service(fed.internal_url("gw-a"))
    headers = {**SENT_HEADERS, "id": str(uuid.uuid4())}

    answer = service.getPerson(personalCode=KNOWN_PERSON, _soapheaders=headers)

    person = answer.body.person
    assert (person.personalCode, person.name, str(person.birthDate)) == (
        KNOWN_PERSON,
        "Mart Tamm",
        "1980-01-08",
    )
    echoed = answer.header
    assert echoed.id == headers["id"]
    assert (echoed.userId, echoed.issue, echoed.protocolVersion) == ("EE38001085718", "case-2026/117", "4.0")
    assert echoed.client.memberCode == "1001" and echoed.client.subsystemCode == "benefits-office"
    assert (echoed.service.serviceCode, echoed.service.serviceVersion) == ("getPerson", "v1")
    assert (echoed.representedParty.partyClass, echoed.representedParty.partyCode) == ("COM", "12345678")
    # PROTOCOL.md: gw-b sets requestHash, the SHA-512 of the request exactly as zeep sent it.
    assert history.last_received is not None
    received = history.last_received["envelope"]
    request_hash = received.find(f".//{{{XROAD_NS}}}requestHash")
    assert request_hash is not None
    assert request_hash.get("algorithmId") == "http://www.w3.org/2001/04/xmlenc#sha512"
    (sent,) = transport.sent
    assert base64.b64decode(request_hash.text or "") == hashlib.sha512(sent).digest()


def test_zeep_list_persons_with_a_filter(fed: Federation) -> None:
    service, _, _ = _zeep_service(fed.internal_url("gw-a"))
    headers = {
        **SENT_HEADERS,
        "service": {**SENT_HEADERS["service"], "serviceCode": "listPersons"},
        "id": str(uuid.uuid4()),
    }

    answer = service.listPersons(nameContains="kas", _soapheaders=headers)

    assert [(p.personalCode, p.name) for p in answer.body.person] == [("49002124277", "Liis Kask")]


def test_concurrent_calls_each_get_their_own_answer(fed: Federation) -> None:
    """Signatures are batched across concurrent messages (DESIGN.md "One signer"): no answer may mix."""
    codes = ["38001085718", "49002124277", "37605030299", "48512245710", "50304150023", "46108090036"] * 5

    def call(code: str) -> tuple[str, str | None, bytes, str | None]:
        request = get_person_request(code)
        response = post_soap(fed.internal_url("gw-a"), request)
        envelope = parse_xml(response.content)
        request_hash = envelope.findtext(f"{{{SOAP_ENV_NS}}}Header/{{{XROAD_NS}}}requestHash")
        personal_code = soap_body(response).findtext(
            f"{{{POPULATION_NS}}}person/{{{POPULATION_NS}}}personalCode"
        )
        return code, personal_code, request, request_hash

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(call, codes))

    for code, personal_code, request, request_hash in results:
        assert personal_code == code
        assert base64.b64decode(request_hash or "") == hashlib.sha512(request).digest()
