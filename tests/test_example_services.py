"""The example agency services, over real HTTP on 127.0.0.1: zeep as the SOAP client, aiohttp for REST."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
import xmlschema
import zeep
import zeep.exceptions
from aiohttp import web
from lxml import etree
from zeep.plugins import HistoryPlugin

from gateway.serverconf.openapi import parse_openapi
from gateway.serverconf.wsdl import parse_wsdl
from gateway.xmlsafe import XmlSyntaxError, parse_xml
from services import benefits_api, population_register

REPO = Path(__file__).resolve().parents[1]
WSDL_FILE = REPO / "wsdl" / "population-register.wsdl"
BINDING = "{http://xgate.example/population-register}populationRegisterBinding"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XROAD = "http://x-road.eu/xsd/xroad.xsd"

# Short stand-in for the 5 s SLOW delay: long enough to measure, short enough for the suite.
TEST_SLOW_SECONDS = 0.3

HEADERS: dict[str, Any] = {
    "client": {
        "objectType": "SUBSYSTEM",
        "xRoadInstance": "EE",
        "memberClass": "GOV",
        "memberCode": "70000001",
        "subsystemCode": "benefits-office",
    },
    "service": {
        "objectType": "SERVICE",
        "xRoadInstance": "EE",
        "memberClass": "GOV",
        "memberCode": "70000002",
        "subsystemCode": "population",
        "serviceCode": "getPerson",
        "serviceVersion": "v1",
    },
    "id": "6c3b1b0e-58a4-4a3c-9c4e-2f1f0c2f5e11",
    "userId": "EE38001085718",
    "issue": "case-2026/117",
    "protocolVersion": "4.0",
    "representedParty": {"partyClass": "COM", "partyCode": "12345678"},
}


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@pytest.fixture
async def soap_url() -> AsyncIterator[str]:
    runner, base = await serve(population_register.make_app(slow_seconds=TEST_SLOW_SECONDS))
    yield base + population_register.PATH
    await runner.cleanup()


@pytest.fixture
async def rest_url() -> AsyncIterator[str]:
    runner, base = await serve(benefits_api.make_app(slow_seconds=TEST_SLOW_SECONDS))
    yield base
    await runner.cleanup()


class SoapClient:
    """zeep bound to the running service, with the raw envelopes kept for inspection."""

    def __init__(self, url: str, timeout: float | None = None) -> None:
        self.history = HistoryPlugin()
        transport = zeep.Transport(operation_timeout=timeout)
        client = zeep.Client(str(WSDL_FILE), transport=transport, plugins=[self.history])
        self.service = client.create_service(BINDING, url)

    async def call(self, operation: str, **kwargs: Any) -> Any:
        method: Callable[..., Any] = getattr(self.service, operation)
        return await asyncio.to_thread(method, _soapheaders=HEADERS, **kwargs)

    def received(self, part: str) -> etree._Element:
        """`Header` or `Body` of the last answer, as it came over the wire."""
        return self._part(self.history.last_received, part)

    def sent(self, part: str) -> etree._Element:
        return self._part(self.history.last_sent, part)

    @staticmethod
    def _part(exchange: dict[str, Any] | None, part: str) -> etree._Element:
        assert exchange is not None
        element = exchange["envelope"].find(f"{{{SOAP_ENV}}}{part}")
        assert element is not None
        return element


def c14n(element: etree._Element) -> bytes:
    return etree.tostring(element, method="c14n", exclusive=True)


# --- population register (SOAP) --------------------------------------------------------------


async def test_get_person_answers_the_person_and_echoes_every_header_field(soap_url: str) -> None:
    client = SoapClient(soap_url)
    result = await client.call("getPerson", personalCode="49002124277")
    person = result.body.person
    assert (person.personalCode, person.name, person.birthDate.isoformat(), person.address) == (
        "49002124277",
        "Liis Kask",
        "1990-02-12",
        "Rüütli 4, 51007 Tartu",
    )
    # PROTOCOL.md: client, service, id, userId, issue and representedParty come back unchanged.
    assert result.header.id == HEADERS["id"]
    assert result.header.issue == HEADERS["issue"]
    assert result.header.client.memberCode == "70000001"
    assert result.header.representedParty.partyCode == "12345678"
    sent = [c14n(element) for element in client.sent("Header")]
    received = [c14n(element) for element in client.received("Header")]
    assert received == sent
    assert len(received) == 7


async def test_answers_are_valid_against_the_wsdl_schema(soap_url: str) -> None:
    # An independent check of the wire format: xmlschema, not zeep, validates the Body.
    schema_node = parse_xml(WSDL_FILE.read_bytes()).find(
        "{http://schemas.xmlsoap.org/wsdl/}types/{http://www.w3.org/2001/XMLSchema}schema"
    )
    assert schema_node is not None
    schema = xmlschema.XMLSchema(etree.tostring(schema_node).decode(), base_url=str(WSDL_FILE.parent))
    client = SoapClient(soap_url)
    for operation, arguments in [("getPerson", {"personalCode": "38001085718"}), ("listPersons", {})]:
        await client.call(operation, **arguments)
        (answer,) = list(client.received("Body"))
        assert etree.QName(answer).localname == f"{operation}Response"
        schema.validate(etree.tostring(answer).decode())


async def test_unknown_person_is_a_server_fault(soap_url: str) -> None:
    with pytest.raises(zeep.exceptions.Fault) as fault:
        await SoapClient(soap_url).call("getPerson", personalCode="00000000000")
    assert fault.value.code == "SOAP-ENV:Server"
    assert "no person with personal code '00000000000'" in fault.value.message


async def test_list_persons_filters_by_name_in_any_case(soap_url: str) -> None:
    client = SoapClient(soap_url)
    everyone = await client.call("listPersons")
    assert len(everyone.body.person) == len(population_register.PERSONS)
    some = await client.call("listPersons", nameContains="KA")
    assert [p.name for p in some.body.person] == ["Liis Kask", "Kadri Mets", "Oskar Lepp"]
    assert (await client.call("listPersons", nameContains="nobody")).body.person == []


async def test_slow_answers_normally_after_the_delay_and_trips_a_client_timeout(soap_url: str) -> None:
    started = time.monotonic()
    result = await SoapClient(soap_url).call("getPerson", personalCode="SLOW")
    assert time.monotonic() - started >= TEST_SLOW_SECONDS
    assert result.body.person.personalCode == "SLOW"
    with pytest.raises(requests.exceptions.Timeout):
        await SoapClient(soap_url, timeout=TEST_SLOW_SECONDS / 3).call("getPerson", personalCode="SLOW")


async def test_garbage_is_not_xml_though_labelled_so(soap_url: str) -> None:
    with pytest.raises(zeep.exceptions.TransportError, match="invalid XML"):
        await SoapClient(soap_url).call("getPerson", personalCode="GARBAGE")
    envelope = _envelope("getPerson", "<pr:personalCode>GARBAGE</pr:personalCode>")
    async with (
        aiohttp.ClientSession() as session,
        session.post(soap_url, data=envelope, headers=_SOAP) as response,
    ):
        assert response.status == 200
        assert response.content_type == "text/xml"
        with pytest.raises(XmlSyntaxError):
            parse_xml(await response.read())


async def test_http500_is_status_500_with_a_fault(soap_url: str) -> None:
    envelope = _envelope("getPerson", "<pr:personalCode>HTTP500</pr:personalCode>")
    async with (
        aiohttp.ClientSession() as session,
        session.post(soap_url, data=envelope, headers=_SOAP) as response,
    ):
        assert response.status == 500
        fault = parse_xml(await response.read()).find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    assert fault is not None
    assert fault.findtext("faultcode") == "SOAP-ENV:Server"
    with pytest.raises(zeep.exceptions.Fault, match="HTTP500"):
        await SoapClient(soap_url).call("getPerson", personalCode="HTTP500")


async def test_badecho_answers_with_another_message_id(soap_url: str) -> None:
    client = SoapClient(soap_url)
    result = await client.call("getPerson", personalCode="BADECHO")
    assert result.header.id != HEADERS["id"]
    assert result.header.client.memberCode == HEADERS["client"]["memberCode"]  # only the id differs
    assert result.body.person.personalCode == "BADECHO"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not xml", "not acceptable XML"),
        (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>', "not acceptable XML"),
        (b"<x/>", "not a SOAP 1.1 envelope"),
    ],
    ids=["not-xml", "dtd", "not-soap"],
)
async def test_malformed_requests_are_client_faults(soap_url: str, body: bytes, message: str) -> None:
    await _expect_client_fault(soap_url, body, message)


async def test_unknown_operation_and_empty_body_are_client_faults(soap_url: str) -> None:
    await _expect_client_fault(soap_url, _envelope("deletePerson", ""), "unknown operation")
    empty = _envelope("getPerson", "").replace(b"<pr:getPerson></pr:getPerson>", b"")
    await _expect_client_fault(soap_url, empty, "exactly one element")
    await _expect_client_fault(soap_url, _envelope("getPerson", ""), "personalCode is missing")


async def test_wsdl_is_published_by_url_and_matches_the_operations_served(soap_url: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(soap_url + "?wsdl") as response:
        assert response.status == 200
        published = await response.read()
    assert published == WSDL_FILE.read_bytes()
    codes = [operation.service_code for operation in parse_wsdl(published).operations]
    assert codes == list(population_register.OPERATIONS)


_SOAP = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}


def _envelope(operation: str, content: str) -> bytes:
    return (
        f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV}" xmlns:xrd="{XROAD}" '
        f'xmlns:pr="{population_register.SERVICE_NS}"><SOAP-ENV:Header><xrd:id>raw-1</xrd:id></SOAP-ENV:Header>'
        f"<SOAP-ENV:Body><pr:{operation}>{content}</pr:{operation}></SOAP-ENV:Body></SOAP-ENV:Envelope>"
    ).encode()


async def _expect_client_fault(url: str, body: bytes, message: str) -> None:
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=_SOAP) as response:
        assert response.status == 500
        fault = parse_xml(await response.read()).find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    assert fault is not None
    assert fault.findtext("faultcode") == "SOAP-ENV:Client"
    assert message in (fault.findtext("faultstring") or "")


# --- benefits API (REST) ---------------------------------------------------------------------


async def test_benefits_of_a_known_person_and_404_for_an_unknown_one(rest_url: str) -> None:
    async with aiohttp.ClientSession(rest_url) as session:
        async with session.get("/benefits/49002124277") as response:
            assert response.status == 200
            body = await response.json()
        assert body["personalCode"] == "49002124277"
        assert [(b["type"], b["monthlyAmount"], b["since"]) for b in body["benefits"]] == [
            ("family-allowance", 80.0, "2021-03-01"),
            ("housing", 145.2, "2024-01-01"),
        ]
        async with session.get("/benefits/37605030299") as response:
            assert (await response.json())["benefits"] == []
        async with session.get("/benefits/00000000000") as response:
            assert response.status == 404
            assert "no person" in (await response.json())["error"]


async def test_application_is_created_and_read_back(rest_url: str) -> None:
    application = {"personalCode": "38001085718", "benefitType": "housing", "note": "moved in March"}
    async with aiohttp.ClientSession(rest_url) as session:
        async with session.post("/applications", json=application) as response:
            assert response.status == 201
            created = await response.json()
            location = response.headers["Location"]
        assert location == f"/applications/{created['id']}"
        assert created["status"] == "received"
        assert {k: created[k] for k in application} == application
        async with session.get(location) as response:
            assert response.status == 200
            assert await response.json() == created
        async with session.get("/applications/no-such-id") as response:
            assert response.status == 404


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (
            b'{"personalCode": "38001085718", "benefitType": "lottery"}',
            "application/json",
            400,
            "benefitType",
        ),
        (
            b'{"personalCode": "00000000000", "benefitType": "pension"}',
            "application/json",
            400,
            "personalCode",
        ),
        (b'["personalCode"]', "application/json", 400, "JSON object"),
        (b'{"personalCode": ', "application/json", 400, "Expecting value"),
        (b"personalCode=38001085718", "application/x-www-form-urlencoded", 415, "application/json"),
    ],
)
async def test_malformed_applications_are_refused(
    rest_url: str, body: bytes, content_type: str, status: int, message: str
) -> None:
    async with (
        aiohttp.ClientSession(rest_url) as session,
        session.post("/applications", data=body, headers={"Content-Type": content_type}) as response,
    ):
        assert response.status == status
        assert message in (await response.json())["error"]


async def test_rest_test_only_behaviours(rest_url: str) -> None:
    async with aiohttp.ClientSession(rest_url) as session:
        started = time.monotonic()
        async with session.get("/benefits/SLOW") as response:
            assert response.status == 200
        assert time.monotonic() - started >= TEST_SLOW_SECONDS
        async with session.get("/benefits/GARBAGE") as response:
            assert response.status == 200
            assert response.content_type == "application/json"
            with pytest.raises(json.JSONDecodeError):
                json.loads(await response.read())
        async with session.get("/benefits/HTTP500") as response:
            assert response.status == 500
            assert "failed" in (await response.json())["error"]


async def test_echo_shows_the_request_as_the_service_saw_it(rest_url: str) -> None:
    async with (
        aiohttp.ClientSession(rest_url) as session,
        session.post(
            "/echo?a=1&b=x%20y%26z", data=b"payload", headers={"X-Road-Client": "EE/GOV/1/sub"}
        ) as response,
    ):
        seen = await response.json()
    assert (seen["method"], seen["path"], seen["query"], seen["body"]) == (
        "POST",
        "/echo",
        "a=1&b=x%20y%26z",
        "payload",
    )
    assert seen["rawPath"] == "/echo?a=1&b=x%20y%26z"
    assert ["X-Road-Client", "EE/GOV/1/sub"] in seen["headers"]


async def test_openapi_description_is_published_and_lists_exactly_the_routes_served(rest_url: str) -> None:
    async with aiohttp.ClientSession(rest_url) as session, session.get("/openapi.yaml") as response:
        assert response.status == 200
        description = parse_openapi(await response.read())
    routed = {
        (route.method, route.resource.canonical)
        for route in benefits_api.make_app().router.routes()
        if route.method != "HEAD"
        and route.resource is not None
        and route.resource.canonical != "/openapi.yaml"
    }
    assert {(endpoint.method, endpoint.path) for endpoint in description.endpoints} == routed


# --- command lines ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "probe"),
    [
        ("services.population_register", "/population-register?wsdl"),
        ("services.benefits_api", "/benefits/50304150023"),
    ],
)
def test_command_line_serves_on_the_given_port(module: str, probe: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                response = requests.get(f"http://127.0.0.1:{port}{probe}", timeout=2)
                break
            except requests.ConnectionError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, f"{module} did not start listening on {port}"
                time.sleep(0.1)
        assert response.status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=10)
