"""The consumer and provider paths in one process: agency system → gw-a → gw-b or gw-c → service.

The gateways run in the test's event loop (tests/inprocess.py) with everything a federation of
processes has but the sockets between them: the same keys, signatures, configuration, access
rights and message log. These tests cover what the gateways decide — faults, access, the
services' failures, forged signatures — in seconds; real mutual TLS, real HTTP to the services
and zeep as the client are the end-to-end tests' (test_e2e_soap.py, test_e2e_rest.py).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests

from gateway import faults
from gateway.crypto.certs import load_certificate_file
from gateway.outbound import OutboundRequest, OutboundResponse, header
from gateway.outbound.interface import describe_timeout
from gateway.proxy.peers import PeerSelector
from gateway.serverconf.access import AccessRight, Endpoint
from gateway.xmlsafe import parse_xml
from tests.conftest import (
    BENEFITS,
    BENEFITS_API,
    CONSUMER,
    GET_PERSON,
    KNOWN_PERSON,
    LIST_PERSONS,
    POPULATION,
    POPULATION_NS,
    SOAP_ENV_NS,
    XROAD_NS,
    assert_rest_error,
    assert_soap_fault,
    get_person_body,
    get_person_request,
    rest_headers,
    soap_body,
    soap_fault,
    soap_request,
)
from tests.inprocess import Gateway, InProcessFederation, inprocess_federation

SOAP_HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}


async def post_soap(gateway: Gateway, body: bytes) -> requests.Response:
    return await gateway.post("/", body, SOAP_HEADERS)


async def get_rest(gateway: Gateway, path: str, headers: dict[str, str] | None = None) -> requests.Response:
    return await gateway.request("GET", f"/r1/{BENEFITS_API.to_text()}{path}", headers=headers)


def tampered(transport_body: bytes, old: bytes, new: bytes) -> bytes:
    """The transport message with `old` replaced in a signed part: the signature no longer covers it."""
    assert len(old) == len(new) and old in transport_body
    return transport_body.replace(old, new, 1)


# --- the paths that succeed ---------------------------------------------------------------------


async def test_soap_request_is_signed_sent_and_answered_with_its_request_hash(
    local: InProcessFederation,
) -> None:
    request = get_person_request(KNOWN_PERSON)

    response = await post_soap(local["gw-a"], request)

    person = soap_body(response).find(f"{{{POPULATION_NS}}}person")
    assert person is not None and person.findtext(f"{{{POPULATION_NS}}}personalCode") == KNOWN_PERSON
    request_hash = parse_xml(response.content).findtext(f"{{{SOAP_ENV_NS}}}Header/{{{XROAD_NS}}}requestHash")
    assert base64.b64decode(request_hash or "") == hashlib.sha512(request).digest()
    (hop,) = local["gw-a"].peers.requests
    assert hop.url == f"https://{local['gw-b'].address}/"
    assert (header(hop.headers, "Content-Type") or "").startswith("multipart/mixed")
    (call,) = local["gw-b"].backends.requests
    assert call.body == request, "the service gets the client's bytes"
    assert header(call.headers, "SOAPAction") == '""'


async def test_rest_request_is_signed_sent_and_answered(local: InProcessFederation) -> None:
    response = await get_rest(local["gw-a"], f"/benefits/{KNOWN_PERSON}?detail=1", rest_headers())

    assert response.status_code == 200, response.text
    assert response.json()["personalCode"] == KNOWN_PERSON
    assert response.headers["X-Road-Service"] == BENEFITS_API.to_text()
    assert response.headers["X-Road-Request-Hash"]
    (call,) = local["gw-c"].backends.requests
    assert call.url.endswith(f"/benefits/{KNOWN_PERSON}?detail=1")
    assert header(call.headers, "X-Road-Client") == CONSUMER.to_text()


# --- what the consumer refuses ------------------------------------------------------------------


async def test_provider_not_in_the_global_configuration(local: InProcessFederation) -> None:
    soap_service = dataclasses.replace(GET_PERSON, member_code="9999")
    rest_service = dataclasses.replace(BENEFITS_API, member_code="9999")

    soap = await post_soap(local["gw-a"], soap_request(soap_service, get_person_body(KNOWN_PERSON)))
    rest = await local["gw-a"].request("GET", f"/r1/{rest_service.to_text()}/x", headers=rest_headers())

    assert_soap_fault(soap, faults.UNKNOWN_MEMBER)
    assert_rest_error(rest, faults.UNKNOWN_MEMBER, 500)
    assert local["gw-a"].peers.requests == []


async def test_client_not_registered_at_this_gateway(local: InProcessFederation) -> None:
    """gw-c's subsystem is a member of the federation, but gw-a does not host it."""
    soap = await post_soap(local["gw-a"], get_person_request(KNOWN_PERSON, client=BENEFITS))
    rest = await get_rest(local["gw-a"], f"/benefits/{KNOWN_PERSON}", rest_headers(client=BENEFITS))

    assert_soap_fault(soap, faults.UNKNOWN_MEMBER)
    assert_rest_error(rest, faults.UNKNOWN_MEMBER, 500)


async def test_missing_client_header(local: InProcessFederation) -> None:
    assert_rest_error(await get_rest(local["gw-a"], f"/benefits/{KNOWN_PERSON}"), faults.MISSING_HEADER, 400)


async def test_rest_error_as_xml_when_the_client_prefers_it(local: InProcessFederation) -> None:
    service = dataclasses.replace(BENEFITS_API, service_code="pensions")
    response = await local["gw-a"].request(
        "GET", f"/r1/{service.to_text()}/x", headers=rest_headers(extra={"Accept": "application/xml"})
    )

    assert response.status_code == 500
    assert response.headers["X-Road-Error"] == faults.UNKNOWN_SERVICE
    assert response.headers["Content-Type"].startswith("application/xml")
    assert f"<type>{faults.UNKNOWN_SERVICE}</type>" in response.text


# --- what the provider refuses ------------------------------------------------------------------


async def test_unknown_service_and_version(local: InProcessFederation) -> None:
    pet = dataclasses.replace(GET_PERSON, service_code="getPet")
    v2 = dataclasses.replace(GET_PERSON, service_version="v2")

    unknown = await post_soap(local["gw-a"], soap_request(pet, f'<pr:getPet xmlns:pr="{POPULATION_NS}"/>'))
    version = await post_soap(local["gw-a"], soap_request(v2, get_person_body(KNOWN_PERSON)))
    rest = await local["gw-a"].request(
        "GET",
        f"/r1/{dataclasses.replace(BENEFITS_API, service_code='pensions').to_text()}/x",
        headers=rest_headers(),
    )

    assert_soap_fault(unknown, faults.UNKNOWN_SERVICE)
    assert_soap_fault(version, faults.UNKNOWN_SERVICE)
    assert_rest_error(rest, faults.UNKNOWN_SERVICE, 500)
    assert local["gw-b"].backends.requests == [] and local["gw-c"].backends.requests == []


async def test_access_is_denied_once_revoked_and_allowed_once_granted_again(
    local: InProcessFederation,
) -> None:
    right = AccessRight(CONSUMER, "listPersons", None)
    request = soap_request(LIST_PERSONS, f'<pr:listPersons xmlns:pr="{POPULATION_NS}"/>')
    allowed_tag = f"{{{POPULATION_NS}}}listPersonsResponse"
    assert soap_body(await post_soap(local["gw-a"], request)).tag == allowed_tag

    with local["gw-b"].serverconf() as repository:
        repository.revoke(POPULATION, right)
    denied = await post_soap(local["gw-a"], request)
    with local["gw-b"].serverconf() as repository:
        repository.grant(POPULATION, right)

    assert_soap_fault(denied, faults.ACCESS_DENIED)
    assert len(local["gw-b"].backends.requests) == 1, "a denied request never reaches the service"
    assert soap_body(await post_soap(local["gw-a"], request)).tag == allowed_tag


async def test_rest_access_denied_and_a_right_to_one_endpoint_opens_that_endpoint_only(
    local: InProcessFederation,
) -> None:
    """gw-c's own subsystem holds no right to its benefits API (federation.py grants gw-a's only)."""
    gw_c = local["gw-c"]
    without = await get_rest(gw_c, f"/benefits/{KNOWN_PERSON}", rest_headers(client=BENEFITS))
    with gw_c.serverconf() as repository:
        repository.grant(
            BENEFITS, AccessRight(BENEFITS, "benefits", Endpoint("GET", "/benefits/{personalCode}"))
        )

    allowed = await get_rest(gw_c, f"/benefits/{KNOWN_PERSON}", rest_headers(client=BENEFITS))
    denied = await gw_c.request(
        "POST",
        f"/r1/{BENEFITS_API.to_text()}/applications",
        b'{"personalCode": "38001085718", "benefitType": "housing"}',
        rest_headers(client=BENEFITS, extra={"Content-Type": "application/json"}),
    )

    assert_rest_error(without, faults.ACCESS_DENIED, 500)
    assert allowed.status_code == 200, allowed.text
    assert_rest_error(denied, faults.ACCESS_DENIED, 500)


async def test_disabled_service_answers_with_the_administrators_notice(local: InProcessFederation) -> None:
    notice = "getPerson is down for maintenance until 14:00"
    with local["gw-b"].serverconf() as repository:
        repository.set_service_enabled(GET_PERSON, False, notice)
    with local["gw-c"].serverconf() as repository:
        repository.set_service_enabled(BENEFITS_API, False, notice)

    soap = await post_soap(local["gw-a"], get_person_request(KNOWN_PERSON))
    rest = await get_rest(local["gw-a"], f"/benefits/{KNOWN_PERSON}", rest_headers())

    assert assert_soap_fault(soap, faults.SERVICE_DISABLED).string == notice
    assert assert_rest_error(rest, faults.SERVICE_DISABLED, 500)["message"] == notice


# --- the services' own answers and failures -----------------------------------------------------


async def test_the_services_own_faults_and_errors_are_passed_on(local: InProcessFederation) -> None:
    """A SOAP Fault or a 404/500 the service itself sends is its answer: signed and passed on."""
    missing = await post_soap(local["gw-a"], get_person_request("00000000000"))
    http500 = await post_soap(local["gw-a"], get_person_request("HTTP500"))
    rest_missing = await get_rest(local["gw-a"], "/benefits/00000000000", rest_headers())
    rest_failed = await get_rest(local["gw-a"], "/benefits/HTTP500", rest_headers())

    assert soap_fault(missing).code == "SOAP-ENV:Server"
    assert "no person with personal code" in soap_fault(missing).string
    fault = soap_fault(http500)
    assert (fault.code, fault.string) == (
        "SOAP-ENV:Server",
        "the population register failed (test-only HTTP500)",
    )
    assert rest_missing.status_code == 404 and "X-Road-Error" not in rest_missing.headers
    assert rest_failed.status_code == 500 and "X-Road-Error" not in rest_failed.headers
    assert rest_failed.json() == {"error": "the benefits register failed (test-only HTTP500)"}
    assert rest_failed.headers["X-Road-Service"] == BENEFITS_API.to_text()


async def test_an_answer_that_is_not_what_it_says_is_service_failed(local: InProcessFederation) -> None:
    soap = await post_soap(local["gw-a"], get_person_request("GARBAGE"))
    rest = await get_rest(local["gw-a"], "/benefits/GARBAGE", rest_headers())

    assert_soap_fault(soap, faults.SERVICE_FAILED_INVALID_SOAP)
    assert_rest_error(rest, faults.SERVICE_FAILED_INVALID_CONTENT_TYPE, 500)


async def test_a_response_that_does_not_echo_the_request_is_inconsistent(local: InProcessFederation) -> None:
    response = await post_soap(local["gw-a"], get_person_request("BADECHO"))

    assert "id" in assert_soap_fault(response, faults.INCONSISTENT_RESPONSE).string


async def test_slow_service_times_out_at_its_own_timeout(local: InProcessFederation) -> None:
    for gateway, service in (("gw-b", GET_PERSON), ("gw-c", BENEFITS_API)):
        with local[gateway].serverconf() as repository:
            conf = repository.snapshot().service(service)
            assert conf is not None
            repository.update_service(dataclasses.replace(conf, timeout_seconds=0.5))

    started = time.monotonic()
    soap, rest = await asyncio.gather(
        post_soap(local["gw-a"], get_person_request("SLOW")),
        get_rest(local["gw-a"], "/benefits/SLOW", rest_headers()),
    )
    elapsed = time.monotonic() - started

    assert_soap_fault(soap, faults.SERVICE_FAILED_TIMEOUT)
    assert_rest_error(rest, faults.SERVICE_FAILED_TIMEOUT, 500)
    assert 0.5 <= elapsed < 3.0, elapsed  # the service's own timeout, not the node's 3 s default


async def test_service_that_is_down_is_a_network_error(local: InProcessFederation) -> None:
    nowhere = "http://127.0.0.1:9/"
    for gateway, service in (("gw-b", GET_PERSON), ("gw-c", BENEFITS_API)):
        with local[gateway].serverconf() as repository:
            conf = repository.snapshot().service(service)
            assert conf is not None
            repository.update_service(dataclasses.replace(conf, backend_url=nowhere))

    soap = await post_soap(local["gw-a"], get_person_request(KNOWN_PERSON))
    rest = await get_rest(local["gw-a"], f"/benefits/{KNOWN_PERSON}", rest_headers())

    assert_soap_fault(soap, faults.SERVICE_FAILED_NETWORK_ERROR)
    assert_rest_error(rest, faults.SERVICE_FAILED_NETWORK_ERROR, 500)


# --- forged signatures and peers ----------------------------------------------------------------


async def test_the_provider_refuses_a_request_altered_after_signing(local: InProcessFederation) -> None:
    peers = local["gw-a"].peers
    honest = peers.handler

    async def altering(request: OutboundRequest) -> OutboundResponse:
        forged = tampered(request.body, KNOWN_PERSON.encode(), b"49002124277")
        return await honest(dataclasses.replace(request, body=forged))

    peers.handler = altering

    response = await post_soap(local["gw-a"], get_person_request(KNOWN_PERSON))

    assert_soap_fault(response, faults.SERVER_PROXY_INVALID_SIGNATURE)
    assert local["gw-b"].backends.requests == []


async def test_the_consumer_refuses_an_answer_altered_after_signing(local: InProcessFederation) -> None:
    peers = local["gw-a"].peers
    honest = peers.handler

    async def altering(request: OutboundRequest) -> OutboundResponse:
        answer = await honest(request)
        return dataclasses.replace(answer, body=tampered(answer.body, b"Mart Tamm", b"Mart Kask"))

    peers.handler = altering

    soap = await post_soap(local["gw-a"], get_person_request(KNOWN_PERSON))

    assert_soap_fault(soap, faults.CLIENT_PROXY_INVALID_SIGNATURE)


async def test_the_consumer_refuses_a_peer_with_another_gateways_certificate(
    local: InProcessFederation,
) -> None:
    local["gw-b"].auth_cert = local["gw-c"].auth_cert  # gw-c's key at gw-b's address

    response = await post_soap(local["gw-a"], get_person_request(KNOWN_PERSON))

    assert_soap_fault(response, faults.SSL_AUTHENTICATION_FAILED)
    assert local["gw-b"].backends.requests == []


async def test_the_provider_refuses_a_caller_whose_certificate_is_not_registered(
    local: InProcessFederation,
) -> None:
    gw_a = local["gw-a"]
    gw_a.auth_cert = load_certificate_file(Path(local.description["gateways"][0]["tls_cert"]))

    response = await post_soap(gw_a, get_person_request(KNOWN_PERSON))

    assert_soap_fault(response, faults.SERVER_PROXY_SSL_AUTHENTICATION_FAILED)


async def test_the_provider_refuses_a_gateway_that_does_not_host_the_client(
    local: InProcessFederation,
) -> None:
    """gw-c is registered, but CONSUMER is gw-a's: gw-c cannot speak for it, even with a valid signature."""
    local["gw-a"].auth_cert = local["gw-c"].auth_cert  # gw-a's messages arrive over gw-c's connection

    response = await post_soap(local["gw-a"], get_person_request(KNOWN_PERSON))

    assert_soap_fault(response, faults.SERVER_PROXY_SSL_AUTHENTICATION_FAILED)
    assert local["gw-b"].backends.requests == []


# --- failover -----------------------------------------------------------------------------------


async def test_failover_to_the_providers_second_gateway(tmp_path: Path) -> None:
    """DESIGN.md step 3: the dead standby is listed first; gw-a fails over, then tries gw-b first."""
    async with inprocess_federation(tmp_path / "spare", unreachable_standby=True) as spare:
        gw_a, standby = spare["gw-a"], spare.description["standby"]
        for _ in range(3):
            response = await post_soap(gw_a, get_person_request(KNOWN_PERSON))
            person = soap_body(response).find(f"{{{POPULATION_NS}}}person")
            assert person is not None and person.findtext(f"{{{POPULATION_NS}}}name") == "Mart Tamm"
        tried = [urlsplit(request.url).netloc for request in gw_a.peers.requests]
        assert tried == [standby["external_address"], *[spare["gw-b"].address] * 3]

        # Asked for by name, the standby is unreachable: the NetworkError fault.
        pinned_to_standby = soap_request(
            GET_PERSON, get_person_body(KNOWN_PERSON), extra_header=_security_server_xml(standby["server_id"])
        )
        assert_soap_fault(await post_soap(gw_a, pinned_to_standby), faults.NETWORK_ERROR)

        # A standby that froze (no connection within the connect limit) is failed over from too:
        # nothing was sent to it, so asking the next gateway cannot serve the request twice.
        reachable = gw_a.peers.handler

        async def frozen_standby(request: OutboundRequest) -> OutboundResponse:
            if urlsplit(request.url).netloc == standby["external_address"]:
                raise describe_timeout(standby["external_address"], request, connecting=True)
            return await reachable(request)

        gw_a.peers.handler = frozen_standby
        gw_a.runtime.peer_selector = PeerSelector()  # forget the standby's refused connections
        gw_a.peers.requests.clear()
        assert soap_body(await post_soap(gw_a, get_person_request(KNOWN_PERSON))) is not None
        tried = [urlsplit(request.url).netloc for request in gw_a.peers.requests]
        assert tried == [standby["external_address"], spare["gw-b"].address]
        fault = soap_fault(await post_soap(gw_a, pinned_to_standby))
        assert fault.code == faults.NETWORK_ERROR and "no connection within" in fault.string


def _security_server_xml(server_id: str) -> str:
    instance, member_class, member_code, server_code = server_id.split("/")
    return (
        '<xrd:securityServer id:objectType="SERVER">'
        f"<id:xRoadInstance>{instance}</id:xRoadInstance><id:memberClass>{member_class}</id:memberClass>"
        f"<id:memberCode>{member_code}</id:memberCode><id:serverCode>{server_code}</id:serverCode>"
        "</xrd:securityServer>"
    )
