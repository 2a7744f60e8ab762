"""Accept what X-Road accepts (issue 17, build item 6), through a consumer and a provider gateway.

The sans-IO rules are tested in test_soap.py and test_mime.py; here the same messages go from a
client through gw-a and gw-b to a service and back, signed, verified and logged as any other.
"""

from __future__ import annotations

import pytest
from lxml import etree

from gateway import faults
from gateway.outbound import OutboundRequest, OutboundResponse, header
from gateway.outbound.inprocess import Handler
from gateway.protocol import soap
from gateway.protocol.mime import unpack
from tests.conftest import GET_PERSON, POPULATION_NS, SOAP_ENV_NS, assert_soap_fault, soap_request
from tests.inprocess import InProcessFederation

SOAP_HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
MTOM = 'multipart/related; type="application/xop+xml"; start-info="text/xml"; boundary=b'


def echo_service(*, unclosed: bool = False) -> Handler:
    """A SOAP service answering `{body element}Response`, as multipart without `--b--` if `unclosed`."""

    async def handle(request: OutboundRequest) -> OutboundResponse:
        message = soap.parse_request(request.body, header(request.headers, "Content-Type"))
        answer = soap.build_response(
            message, etree.Element(f"{{{POPULATION_NS}}}{message.body_name}Response")
        )
        if not unclosed:
            return OutboundResponse(200, (("Content-Type", "text/xml; charset=UTF-8"),), answer)
        body = (
            b"--b\r\nContent-Type: text/xml; charset=UTF-8\r\n\r\n"
            + answer
            + b"\r\n--b\r\nContent-Type: text/plain\r\nContent-ID: <note>\r\n\r\nno close delimiter follows"
        )
        return OutboundResponse(200, (("Content-Type", "multipart/related; boundary=b"),), body)

    return handle


def body_tag(response_body: bytes, content_type: str) -> str:
    envelope = etree.fromstring(unpack(response_body, content_type).soap)
    body = envelope.find(f"{{{SOAP_ENV_NS}}}Body")
    assert body is not None
    return str(etree.QName(body[0]).localname)


@pytest.fixture
def echoing(local: InProcessFederation) -> InProcessFederation:
    local["gw-b"].backends.handler = echo_service()
    return local


async def test_a_body_named_service_code_plus_request_goes_through(echoing: InProcessFederation) -> None:
    request = soap_request(GET_PERSON, f'<pr:getPersonRequest xmlns:pr="{POPULATION_NS}"/>')

    response = await echoing["gw-a"].post("/", request, SOAP_HEADERS)

    assert response.status_code == 200, response.text[:500]
    assert body_tag(response.content, response.headers["Content-Type"]) == "getPersonRequestResponse"


async def test_a_body_not_named_after_the_service_is_refused_as_x_road_does(
    echoing: InProcessFederation,
) -> None:
    request = soap_request(GET_PERSON, f'<pr:listPersons xmlns:pr="{POPULATION_NS}"/>')

    response = await echoing["gw-a"].post("/", request, SOAP_HEADERS)

    assert_soap_fault(response, faults.INCONSISTENT_HEADERS)
    assert echoing["gw-b"].backends.requests == []


async def test_unknown_header_elements_and_attributes_go_through(echoing: InProcessFederation) -> None:
    request = soap_request(
        GET_PERSON,
        f'<pr:getPerson xmlns:pr="{POPULATION_NS}"/>',
        extra_header='<xrd:priority xmlns:xrd="http://x-road.eu/xsd/xroad.xsd">high</xrd:priority>',
    ).replace(b"<xrd:protocolVersion>", b'<xrd:protocolVersion soapenv:mustUnderstand="0">', 1)
    assert b"mustUnderstand" in request

    response = await echoing["gw-a"].post("/", request, SOAP_HEADERS)

    assert response.status_code == 200, response.text[:500]
    (sent,) = echoing["gw-b"].backends.requests
    assert b"<xrd:priority" in sent.body and b"mustUnderstand" in sent.body, "the service gets them as sent"


async def test_mtom_whose_root_part_says_soap_12_goes_through(echoing: InProcessFederation) -> None:
    envelope = soap_request(GET_PERSON, f'<pr:getPerson xmlns:pr="{POPULATION_NS}"/>')
    body = (
        b'--b\r\nContent-Type: application/xop+xml; charset=UTF-8; type="application/soap+xml"\r\n'
        b"Content-ID: <root>\r\n\r\n" + envelope + b"\r\n--b--\r\n"
    )

    response = await echoing["gw-a"].post("/", body, {"Content-Type": MTOM, "SOAPAction": '""'})

    assert response.status_code == 200, response.text[:500]


async def test_a_service_answer_without_its_close_delimiter_is_tolerated(local: InProcessFederation) -> None:
    local["gw-b"].backends.handler = echo_service(unclosed=True)
    request = soap_request(GET_PERSON, f'<pr:getPerson xmlns:pr="{POPULATION_NS}"/>')

    response = await local["gw-a"].post("/", request, SOAP_HEADERS)

    assert response.status_code == 200, response.text[:500]
    assert response.content.endswith(b"no close delimiter follows\r\n--b--\r\n"), "completed, then signed"
    package = unpack(response.content, response.headers["Content-Type"])
    assert [a.data for a in package.attachments] == [b"no close delimiter follows"]
