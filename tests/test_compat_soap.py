"""X-Road 7.8's SOAP habits on the internal interface (issue 17, docs/compatibility.md "SOAP").

SOAP on any path and through the gateway used as an HTTP proxy, the client's SOAPAction passed
on to a service that dispatches on it, the legacy `GET /wsdl` download, and WSDLs that zeep
loads with nothing else at hand. In-process federation (tests/inprocess.py); the internal
interface is a real socket, so raw request lines and zeep over `requests` reach it as written.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tomllib
import uuid
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
import requests
import zeep
from aiohttp import web
from lxml import etree

from gateway import faults
from gateway.config import parse_config
from gateway.configfile import ConfigError
from gateway.faults import XRoadFault
from gateway.ids import ClientId
from gateway.messagelog.store import search
from gateway.outbound import header
from gateway.protocol import mime, soap
from gateway.protocol.soapaction import checked_soap_action
from gateway.serverconf.selfcontained import self_contained_wsdl
from tests.conftest import (
    CONSUMER,
    GET_PERSON,
    KNOWN_PERSON,
    POPULATION,
    POPULATION_BINDING,
    POPULATION_NS,
    POPULATION_WSDL,
    REPO,
    XROAD_NS,
    assert_soap_fault,
    get_person_request,
    soap_body,
    soap_request,
    zeep_headers,
)
from tests.inprocess import Gateway, InProcessFederation, app_handler

GET_PERSON_ACTION = '"urn:population:getPerson"'
SOAP_XML = "text/xml; charset=utf-8"


def base_url(gateway: Gateway) -> str:
    return str(gateway.internal.make_url("")).rstrip("/")


def person_code(response: requests.Response) -> str | None:
    return soap_body(response).findtext(f"{{{POPULATION_NS}}}person/{{{POPULATION_NS}}}personalCode")


async def raw_exchange(
    gateway: Gateway, request_line: str, body: bytes, fields: str = ""
) -> tuple[int, bytes]:
    """One request written byte for byte to the internal interface: status and body of the answer."""
    url = urlsplit(base_url(gateway))
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    head = (
        f"{request_line}\r\nHost: provider.example\r\nContent-Type: {SOAP_XML}\r\n{fields}"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode("ascii") + body)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


# --- SOAP on any path ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/population-register", "/cgi-bin/consumer_proxy", "/a/b?c=d"])
async def test_soap_is_accepted_on_any_path(local: InProcessFederation, path: str) -> None:
    response = await local["gw-a"].post(path, get_person_request(KNOWN_PERSON), {"Content-Type": SOAP_XML})

    assert person_code(response) == KNOWN_PERSON


@pytest.mark.parametrize(
    "target", ["http://127.0.0.1:8081/population-register", "http://provider.example", "http://h:1/?q=1"]
)
async def test_soap_through_the_gateway_used_as_an_http_proxy(
    local: InProcessFederation, target: str
) -> None:
    """Absolute-URI request lines (RFC 9112 §3.2.2), with or without a path."""
    status, body = await raw_exchange(
        local["gw-a"], f"POST {target} HTTP/1.1", get_person_request(KNOWN_PERSON)
    )

    assert status == 200, body[:500]
    assert KNOWN_PERSON.encode() in body and b"getPersonResponse" in body


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/"), ("PUT", "/x"), ("DELETE", "/population-register")]
)
async def test_other_methods_on_a_soap_path_are_invalid_http_method(
    local: InProcessFederation, method: str, path: str
) -> None:
    response = await local["gw-a"].request(method, path)

    assert_soap_fault(response, faults.INVALID_HTTP_METHOD)
    assert local["gw-a"].peers.requests == []


async def test_a_pathless_get_is_a_soap_fault_too(local: InProcessFederation) -> None:
    status, body = await raw_exchange(local["gw-a"], "GET http://provider.example HTTP/1.1", b"")

    assert status != 404
    assert f"<faultcode>{faults.INVALID_HTTP_METHOD}</faultcode>".encode() in body


async def test_rest_and_list_clients_keep_their_paths(local: InProcessFederation) -> None:
    listed = await local["gw-a"].request("GET", "/listClients")
    rest = await local["gw-a"].request("GET", "/r1/DEV/GOV/1003/benefits/benefits/nothing")

    assert listed.status_code == 200 and b"clientList" in listed.content
    assert "X-Road-Error" in rest.headers, "the REST path answers REST errors, not SOAP faults"


async def test_another_rest_protocol_version_is_a_rest_error(local: InProcessFederation) -> None:
    """`/r2/...` is REST, in a version this gateway does not speak: X-Road's REST error, not a
    SOAP fault about the method."""
    answer = await local["gw-a"].request("GET", "/r2/DEV/GOV/1003/benefits/benefits/benefits/1")
    assert answer.status_code == 400
    assert answer.headers["X-Road-Error"] == faults.INVALID_PROTOCOL_VERSION


# --- SOAPAction ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        # X-Road's own table (SoapUtilsTest.soapActionData), then the edges of its URI check.
        (None, True),
        ("", True),
        ('""', True),
        ('"http://example.org/test"', True),
        ('"urn:foo"', True),
        ("http://quotes/missing", False),
        ('"http://extra/quote""', False),
        ('"spaces "', False),
        ('"relative/path#frag"', True),
        ('"%zz"', False),
        ('"1scheme:x"', False),
        ('"a#b#c"', False),
        ('"ümlaut"', True),
        ('"\udcfc"', False),
        ('"a\x85b"', False),
        ('"', False),
    ],
)
def test_soap_action_is_checked_as_x_road_checks_it(value: str | None, valid: bool) -> None:
    if valid:
        assert checked_soap_action(value) == value
    else:
        with pytest.raises(XRoadFault) as refused:
            checked_soap_action(value)
        assert refused.value.code == faults.INVALID_SOAP_ACTION


def dispatching_service(seen: list[str | None]) -> web.Application:
    """A SOAP service that, like spyne or .NET's ASMX, picks the operation by SOAPAction alone."""

    async def get_person(message: soap.SoapMessage) -> bytes:
        answer = etree.Element(f"{{{POPULATION_NS}}}getPersonResponse")
        person = etree.SubElement(answer, f"{{{POPULATION_NS}}}person")
        etree.SubElement(person, f"{{{POPULATION_NS}}}personalCode").text = KNOWN_PERSON
        return soap.build_response(message, answer)

    operations = {GET_PERSON_ACTION: get_person}

    async def handle(request: web.Request) -> web.Response:
        action = request.headers.get("SOAPAction")
        seen.append(action)
        operation = operations.get(action or "")
        if operation is None:
            fault = soap.build_fault("SOAP-ENV:Client", f"no operation for SOAPAction {action!r}", "x")
            return web.Response(status=500, body=fault, content_type="text/xml", charset="utf-8")
        message = soap.parse_request(await request.read(), request.headers.get("Content-Type"))
        return web.Response(body=await operation(message), content_type="text/xml", charset="utf-8")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    return app


@pytest.fixture
def dispatched(local: InProcessFederation) -> list[str | None]:
    """gw-b's getPerson backend replaced by the dispatching service; what SOAPAction it saw."""
    seen: list[str | None] = []
    registered = local["gw-b"].runtime.snapshot.service(GET_PERSON)
    assert registered is not None
    local["gw-b"].backends.handler = app_handler(
        {urlsplit(registered.backend_url).netloc: dispatching_service(seen)}
    )
    return seen


async def test_soap_action_reaches_a_service_that_dispatches_on_it(
    local: InProcessFederation, dispatched: list[str | None]
) -> None:
    headers = {"Content-Type": SOAP_XML, "SOAPAction": GET_PERSON_ACTION}

    response = await local["gw-a"].post("/", get_person_request(KNOWN_PERSON), headers)

    assert person_code(response) == KNOWN_PERSON
    assert dispatched == [GET_PERSON_ACTION]


@pytest.mark.parametrize("sent", [None, "", '""', '"urn:other"'])
async def test_soap_action_is_passed_on_exactly_as_sent(
    local: InProcessFederation, dispatched: list[str | None], sent: str | None
) -> None:
    headers = {"Content-Type": SOAP_XML} | ({} if sent is None else {"SOAPAction": sent})

    response = await local["gw-a"].post("/", get_person_request(KNOWN_PERSON), headers)

    assert dispatched == [sent]
    assert b"no operation for SOAPAction" in response.content  # the service's own fault, passed on


async def test_a_malformed_soap_action_is_refused_before_anything_is_sent(
    local: InProcessFederation, dispatched: list[str | None]
) -> None:
    headers = {"Content-Type": SOAP_XML, "SOAPAction": "urn:population:getPerson"}  # unquoted

    response = await local["gw-a"].post("/", get_person_request(KNOWN_PERSON), headers)

    assert_soap_fault(response, faults.INVALID_SOAP_ACTION)
    assert local["gw-a"].peers.requests == [] and dispatched == []


# --- getWsdl and the legacy download ------------------------------------------------------------


def get_wsdl_request() -> bytes:
    service = dataclasses.replace(GET_PERSON, service_code="getWsdl", service_version=None)
    body = (
        f'<xrd:getWsdl xmlns:xrd="{XROAD_NS}"><xrd:serviceCode>getPerson</xrd:serviceCode>'
        "<xrd:serviceVersion>v1</xrd:serviceVersion></xrd:getWsdl>"
    )
    return soap_request(service, body)


def zeep_call_get_person(wsdl_location: str, endpoint: str, proxy: str | None = None) -> str:
    """zeep built from `wsdl_location` alone, calling getPerson at `endpoint` (through `proxy`)."""
    transport = zeep.Transport()
    if proxy is not None:
        transport.session.trust_env = False  # no NO_PROXY from the environment
        transport.session.proxies = {"http": proxy}
    client = zeep.Client(wsdl_location, transport=transport)
    service = client.create_service(POPULATION_BINDING, endpoint)
    headers = zeep_headers(CONSUMER, GET_PERSON, id=str(uuid.uuid4()), protocolVersion="4.0")
    answer = service.getPerson(personalCode=KNOWN_PERSON, _soapheaders=headers)
    return str(answer.body.person.personalCode)


async def test_get_wsdl_answers_a_wsdl_zeep_loads_alone(local: InProcessFederation, tmp_path: Path) -> None:
    response = await local["gw-a"].post("/", get_wsdl_request(), {"Content-Type": SOAP_XML})

    assert response.status_code == 200, response.text[:500]
    content_type = response.headers["Content-Type"]
    assert content_type.startswith("multipart/related") and "charset=UTF-8" in content_type
    (attachment,) = mime.unpack(response.content, content_type).attachments
    assert attachment.content_type == "text/xml; charset=UTF-8"
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "service.wsdl").write_bytes(attachment.data)
    assert b"xroad/xroad.xsd" not in attachment.data
    code = await asyncio.to_thread(zeep_call_get_person, str(empty / "service.wsdl"), base_url(local["gw-a"]))
    assert code == KNOWN_PERSON


def legacy_wsdl_query(**extra: str) -> str:
    fields = {
        "xRoadInstance": POPULATION.instance,
        "memberClass": POPULATION.member_class,
        "memberCode": POPULATION.member_code,
        "subsystemCode": POPULATION.subsystem_code or "",
        "serviceCode": "getPerson",
        "version": "v1",
    }
    return "/wsdl?" + urlencode(fields | extra)


def allow_legacy_wsdl(gateway: Gateway) -> None:
    gateway.runtime.config = dataclasses.replace(gateway.runtime.config, wsdl_client=CONSUMER)


async def test_zeep_from_the_legacy_wsdl_url_calls_through_the_gateway_as_a_proxy(
    local: InProcessFederation,
) -> None:
    gw_a = local["gw-a"]
    allow_legacy_wsdl(gw_a)
    registered = local["gw-b"].runtime.snapshot.service(GET_PERSON)
    assert registered is not None

    code = await asyncio.to_thread(
        zeep_call_get_person,
        base_url(gw_a) + legacy_wsdl_query(),
        registered.backend_url,  # the provider's original endpoint address
        base_url(gw_a),
    )

    assert code == KNOWN_PERSON
    logging = gw_a.runtime.messagelog
    assert logging is not None
    logged = search(logging.engine, service=f"{POPULATION.to_text()}/getWsdl", client=CONSUMER.to_text())
    assert len(logged) == 2, "the download is a getWsdl exchange: its request and response are logged"


async def test_the_legacy_wsdl_download_answers_the_wsdl_alone(local: InProcessFederation) -> None:
    allow_legacy_wsdl(local["gw-a"])

    response = await local["gw-a"].request("GET", legacy_wsdl_query())

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/xml; charset=UTF-8"
    assert etree.fromstring(response.content).tag == "{http://schemas.xmlsoap.org/wsdl/}definitions"
    assert b"example.invalid" in response.content


async def test_the_legacy_wsdl_download_is_off_unless_configured(local: InProcessFederation) -> None:
    response = await local["gw-a"].request("GET", legacy_wsdl_query())

    assert_soap_fault(response, faults.INVALID_REQUEST)
    assert local["gw-a"].peers.requests == []


async def test_the_legacy_wsdl_download_for_a_client_the_query_names(local: InProcessFederation) -> None:
    allow_legacy_wsdl(local["gw-a"])

    elsewhere = await local["gw-a"].request("GET", legacy_wsdl_query(client="DEV/GOV/1003/benefits"))
    unknown = await local["gw-a"].request("GET", legacy_wsdl_query(serviceCode="getPet"))
    malformed = await local["gw-a"].request("GET", legacy_wsdl_query(client="DEV/GOV"))
    missing = await local["gw-a"].request("GET", "/wsdl?xRoadInstance=DEV")

    assert_soap_fault(elsewhere, faults.UNKNOWN_MEMBER)  # not a client of this gateway
    assert_soap_fault(unknown, faults.UNKNOWN_SERVICE)
    assert_soap_fault(malformed, faults.INVALID_CLIENT_IDENTIFIER)
    assert_soap_fault(missing, faults.INVALID_REQUEST)


async def test_the_peer_hop_carries_the_soap_action_beside_the_signed_message(
    local: InProcessFederation, dispatched: list[str | None]
) -> None:
    headers = {"Content-Type": SOAP_XML, "SOAPAction": GET_PERSON_ACTION}

    await local["gw-a"].post("/", get_person_request(KNOWN_PERSON), headers)

    (hop,) = local["gw-a"].peers.requests
    assert header(hop.headers, "X-Original-SOAPAction") == GET_PERSON_ACTION


@pytest.mark.parametrize("location", ["xroad/xroad.xsd", "http://x-road.eu/xsd/xroad.xsd", None])
def test_the_x_road_schemas_are_inlined_however_the_wsdl_imports_them(
    tmp_path: Path, location: str | None
) -> None:
    published = POPULATION_WSDL.read_bytes()
    replacement = b"" if location is None else f'schemaLocation="{location}"'.encode()
    wsdl = self_contained_wsdl(published.replace(b'schemaLocation="xroad/xroad.xsd"', replacement))

    (tmp_path / "service.wsdl").write_bytes(wsdl)
    client = zeep.Client(str(tmp_path / "service.wsdl"))  # offline: any fetch would fail here
    assert client.get_element(f"{{{XROAD_NS}}}client") is not None
    assert self_contained_wsdl(wsdl) == wsdl, "a second pass changes nothing"


def test_wsdl_client_is_read_from_the_internal_table(tmp_path: Path) -> None:
    text = (REPO / "config" / "gateway.example.toml").read_text()
    assert "# wsdl_client = " in text
    on = tomllib.loads(text.replace("# wsdl_client = ", "wsdl_client = "))
    assert parse_config(on, REPO / "config").wsdl_client == ClientId("DEV", "GOV", "1001", "CLIENT")
    assert parse_config(tomllib.loads(text), REPO / "config").wsdl_client is None
    with pytest.raises(ConfigError, match="wsdl_client"):
        parse_config(
            tomllib.loads(text.replace('# wsdl_client = "DEV/GOV/1001/CLIENT"', 'wsdl_client = "DEV"')),
            REPO / "config",
        )
