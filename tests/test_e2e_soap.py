"""SOAP 4.0 end to end: an agency system → gw-a → (mutual TLS, signed) → gw-b → the population register.

zeep, an independent SOAP client, reads the service's own WSDL and talks to gw-a as it would
to the service; the fault cases post hand-written envelopes and read the exact fault code.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
import zeep
from zeep.plugins import HistoryPlugin
from zeep.transports import Transport

from gateway.protocol import faults
from gateway.serverconf.access import AccessRight
from gateway.xmlsafe import parse_xml
from tests.conftest import (
    BENEFITS,
    CONSUMER,
    GET_PERSON,
    KNOWN_PERSON,
    LIST_PERSONS,
    POPULATION,
    POPULATION_BINDING,
    POPULATION_NS,
    POPULATION_WSDL,
    SOAP_ENV_NS,
    XROAD_NS,
    Federation,
    assert_soap_fault,
    changed_service,
    get_person_body,
    get_person_request,
    post_soap,
    soap_body,
    soap_fault,
    soap_request,
)

SENT_HEADERS: dict[str, Any] = {
    "client": {
        "objectType": "SUBSYSTEM",
        "xRoadInstance": "DEV",
        "memberClass": "GOV",
        "memberCode": "1001",
        "subsystemCode": "benefits-office",
    },
    "service": {
        "objectType": "SERVICE",
        "xRoadInstance": "DEV",
        "memberClass": "GOV",
        "memberCode": "1002",
        "subsystemCode": "population",
        "serviceCode": "getPerson",
        "serviceVersion": "v1",
    },
    "userId": "EE38001085718",
    "issue": "case-2026/117",
    "protocolVersion": "4.0",
    "representedParty": {"partyClass": "COM", "partyCode": "12345678"},
}


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


def test_provider_not_in_the_global_configuration(fed: Federation) -> None:
    service = dataclasses.replace(GET_PERSON, member_code="9999")

    response = post_soap(fed.internal_url("gw-a"), soap_request(service, get_person_body(KNOWN_PERSON)))

    assert_soap_fault(response, faults.UNKNOWN_MEMBER)


def test_client_not_registered_at_this_gateway(fed: Federation) -> None:
    """gw-c's subsystem is a member of the federation, but gw-a does not host it."""
    response = post_soap(fed.internal_url("gw-a"), get_person_request(KNOWN_PERSON, client=BENEFITS))

    assert_soap_fault(response, faults.UNKNOWN_MEMBER)


def test_the_services_own_fault_is_passed_on_unchanged(fed: Federation) -> None:
    """A SOAP Fault the service itself sends is its answer: the gateways sign it and pass it on."""
    response = post_soap(fed.internal_url("gw-a"), get_person_request("00000000000"))

    fault = soap_fault(response)
    assert fault.code == "SOAP-ENV:Server"
    assert "no person with personal code" in fault.string


def test_http_500_with_a_fault_reaches_the_client_as_the_services_fault(fed: Federation) -> None:
    response = post_soap(fed.internal_url("gw-a"), get_person_request("HTTP500"))

    fault = soap_fault(response)
    assert (fault.code, fault.string) == (
        "SOAP-ENV:Server",
        "the population register failed (test-only HTTP500)",
    )


def test_unknown_service(fed: Federation) -> None:
    service = dataclasses.replace(GET_PERSON, service_code="getPet")

    response = post_soap(
        fed.internal_url("gw-a"), soap_request(service, f'<pr:getPet xmlns:pr="{POPULATION_NS}"/>')
    )

    assert_soap_fault(response, faults.UNKNOWN_SERVICE)


def test_unknown_service_version(fed: Federation) -> None:
    service = dataclasses.replace(GET_PERSON, service_version="v2")

    response = post_soap(fed.internal_url("gw-a"), soap_request(service, get_person_body(KNOWN_PERSON)))

    assert_soap_fault(response, faults.UNKNOWN_SERVICE)


def test_garbage_from_the_service_is_service_failed_invalid_soap(fed: Federation) -> None:
    response = post_soap(fed.internal_url("gw-a"), get_person_request("GARBAGE"))

    assert_soap_fault(response, faults.SERVICE_FAILED_INVALID_SOAP)


def test_a_response_that_does_not_echo_the_request_is_inconsistent(fed: Federation) -> None:
    response = post_soap(fed.internal_url("gw-a"), get_person_request("BADECHO"))

    fault = assert_soap_fault(response, faults.INCONSISTENT_RESPONSE)
    assert "id" in fault.string


def test_slow_service_times_out(fed: Federation) -> None:
    with changed_service(fed, "gw-b", GET_PERSON, timeout_seconds=1.0):
        started = time.monotonic()
        response = post_soap(fed.internal_url("gw-a"), get_person_request("SLOW"))
        elapsed = time.monotonic() - started

    assert_soap_fault(response, faults.SERVICE_FAILED_TIMEOUT)
    assert 1.0 <= elapsed < 3.0, elapsed  # the service's own timeout, not the node's 3 s default


def test_service_that_is_down_is_a_network_error(fed: Federation, closed_port_url: str) -> None:
    with changed_service(fed, "gw-b", GET_PERSON, backend_url=closed_port_url):
        response = post_soap(fed.internal_url("gw-a"), get_person_request(KNOWN_PERSON))

    assert_soap_fault(response, faults.SERVICE_FAILED_NETWORK_ERROR)


def test_disabled_service_answers_with_the_administrators_notice(fed: Federation) -> None:
    notice = "getPerson is down for maintenance until 14:00"
    with fed.serverconf("gw-b") as repository:
        repository.set_service_enabled(GET_PERSON, False, notice)
    try:
        response = post_soap(fed.internal_url("gw-a"), get_person_request(KNOWN_PERSON))
    finally:
        with fed.serverconf("gw-b") as repository:
            repository.set_service_enabled(GET_PERSON, True)

    fault = assert_soap_fault(response, faults.SERVICE_DISABLED)
    assert fault.string == notice
    assert soap_body(post_soap(fed.internal_url("gw-a"), get_person_request(KNOWN_PERSON))) is not None


def test_access_is_denied_once_revoked_and_allowed_once_granted_again(fed: Federation) -> None:
    right = AccessRight(CONSUMER, "listPersons", None)
    request = soap_request(LIST_PERSONS, f'<pr:listPersons xmlns:pr="{POPULATION_NS}"/>')
    assert (
        soap_body(post_soap(fed.internal_url("gw-a"), request)).tag
        == f"{{{POPULATION_NS}}}listPersonsResponse"
    )

    with fed.serverconf("gw-b") as repository:
        repository.revoke(POPULATION, right)
    try:
        denied = post_soap(fed.internal_url("gw-a"), request)
    finally:
        with fed.serverconf("gw-b") as repository:
            repository.grant(POPULATION, right)

    assert_soap_fault(denied, faults.ACCESS_DENIED)
    assert (
        soap_body(post_soap(fed.internal_url("gw-a"), request)).tag
        == f"{{{POPULATION_NS}}}listPersonsResponse"
    )


# --- failover ----------------------------------------------------------------------------------


def test_failover_to_the_providers_second_gateway(spare_fed: Federation) -> None:
    # Neither gateway was tried yet, so gw-a tries them in the configuration's order: the dead one first.
    for _ in range(3):
        response = post_soap(spare_fed.internal_url("gw-a"), get_person_request(KNOWN_PERSON))
        person = soap_body(response).find(f"{{{POPULATION_NS}}}person")
        assert person is not None and person.findtext(f"{{{POPULATION_NS}}}name") == "Mart Tamm"

    # The standby is registered for the provider and really dead: asked for by name, it is unreachable.
    standby = spare_fed.description["standby"]
    pinned_to_standby = soap_request(
        GET_PERSON,
        get_person_body(KNOWN_PERSON),
        extra_header=_security_server_xml(standby["server_id"]),
    )
    assert_soap_fault(post_soap(spare_fed.internal_url("gw-a"), pinned_to_standby), faults.NETWORK_ERROR)


def _security_server_xml(server_id: str) -> str:
    instance, member_class, member_code, server_code = server_id.split("/")
    return (
        '<xrd:securityServer id:objectType="SERVER">'
        f"<id:xRoadInstance>{instance}</id:xRoadInstance><id:memberClass>{member_class}</id:memberClass>"
        f"<id:memberCode>{member_code}</id:memberCode><id:serverCode>{server_code}</id:serverCode>"
        "</xrd:securityServer>"
    )
