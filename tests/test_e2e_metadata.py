"""Service metadata end to end (PROTOCOL.md "Service metadata"), through gw-a to the providers' gateways.

The WSDL that getWsdl returns is handed to zeep, which must be able to call the service with
it through the gateway: the proof that it is the service's description, less its address.
"""

from __future__ import annotations

import email
import email.policy
import uuid
from email.message import EmailMessage
from pathlib import Path

import requests
import yaml
import zeep

from gateway import faults
from gateway.ids import ClientId, ServiceId
from gateway.serverconf.access import AccessRight
from gateway.xmlsafe import parse_xml
from tests.conftest import (
    BENEFITS,
    CONSUMER,
    GET_PERSON,
    HTTP_TIMEOUT_SECONDS,
    ID_NS,
    KNOWN_PERSON,
    POPULATION,
    POPULATION_BINDING,
    XROAD_NS,
    Federation,
    assert_rest_error,
    assert_soap_fault,
    post_soap,
    rest_headers,
    soap_body,
    soap_request,
    zeep_headers,
)

WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP_NS = "http://schemas.xmlsoap.org/wsdl/soap/"
XRD = f"{{{XROAD_NS}}}"
ID = f"{{{ID_NS}}}"


def metadata_service(code: str, provider: ClientId = POPULATION) -> ServiceId:
    return ServiceId(
        provider.instance, provider.member_class, provider.member_code, provider.subsystem_code, code
    )


def listed_services(fed: Federation, code: str) -> list[tuple[str, str | None]]:
    request = soap_request(metadata_service(code), f'<xrd:{code} xmlns:xrd="{XROAD_NS}"/>')
    body = soap_body(post_soap(fed.internal_url("gw-a"), request))
    assert body.tag == f"{XRD}{code}Response"
    return sorted(
        (service.findtext(f"{ID}serviceCode") or "", service.findtext(f"{ID}serviceVersion"))
        for service in body.iterfind(f"{XRD}service")
    )


def test_soap_list_methods(fed: Federation) -> None:
    assert listed_services(fed, "listMethods") == [("getPerson", "v1"), ("listPersons", "v1")]


def test_soap_allowed_methods_follow_the_access_rights(fed: Federation) -> None:
    assert listed_services(fed, "allowedMethods") == [("getPerson", "v1"), ("listPersons", "v1")]
    right = AccessRight(CONSUMER, "listPersons", None)
    with fed.serverconf("gw-b") as repository:
        repository.revoke(POPULATION, right)
    try:
        allowed = listed_services(fed, "allowedMethods")
        listed = listed_services(fed, "listMethods")
    finally:
        with fed.serverconf("gw-b") as repository:
            repository.grant(POPULATION, right)

    assert allowed == [("getPerson", "v1")]
    assert listed == [("getPerson", "v1"), ("listPersons", "v1")]


def _get_wsdl(fed: Federation, service_code: str, version: str | None) -> requests.Response:
    version_xml = f"<xrd:serviceVersion>{version}</xrd:serviceVersion>" if version else ""
    body = (
        f'<xrd:getWsdl xmlns:xrd="{XROAD_NS}">'
        f"<xrd:serviceCode>{service_code}</xrd:serviceCode>{version_xml}</xrd:getWsdl>"
    )
    return post_soap(fed.internal_url("gw-a"), soap_request(metadata_service("getWsdl"), body))


def test_get_wsdl_returns_the_wsdl_as_an_attachment_without_the_real_address(
    fed: Federation, tmp_path: Path
) -> None:
    response = _get_wsdl(fed, "getPerson", "v1")

    assert response.status_code == 200, response.text[:1000]
    assert response.headers["Content-Type"].startswith("multipart/related")
    assert "charset=UTF-8" in response.headers["Content-Type"]
    # Read with the standard library's MIME parser, not the gateway's.
    mime = email.message_from_bytes(
        b"Content-Type: " + response.headers["Content-Type"].encode() + b"\r\n\r\n" + response.content,
        policy=email.policy.HTTP,
    )
    assert isinstance(mime, EmailMessage)
    soap_part, wsdl_part = list(mime.iter_parts())
    assert soap_part.get_content_type() == "text/xml"
    assert b"getWsdlResponse" in soap_part.get_payload(decode=True)
    wsdl = wsdl_part.get_payload(decode=True)
    assert isinstance(wsdl, bytes)
    definitions = parse_xml(wsdl)
    assert definitions.tag == f"{{{WSDL_NS}}}definitions"
    addresses = [a.get("location") for a in definitions.iter(f"{{{WSDL_SOAP_NS}}}address")]
    assert addresses == ["http://example.invalid/"]
    real_backend = fed.description["backends"]["population_register"].removeprefix("http://")
    assert real_backend.encode() not in wsdl
    assert b"127.0.0.1:8081" not in wsdl  # the address the published WSDL carries

    # zeep reads it alone (the X-Road schemas are inlined) and calls getPerson through gw-a with it.
    (tmp_path / "service.wsdl").write_bytes(wsdl)
    client = zeep.Client(str(tmp_path / "service.wsdl"))
    service = client.create_service(POPULATION_BINDING, fed.internal_url("gw-a"))
    headers = zeep_headers(CONSUMER, GET_PERSON, id=str(uuid.uuid4()), protocolVersion="4.0")
    answer = service.getPerson(personalCode=KNOWN_PERSON, _soapheaders=headers)
    assert answer.body.person.name == "Mart Tamm"


def test_get_wsdl_of_an_unknown_service(fed: Federation) -> None:
    assert_soap_fault(_get_wsdl(fed, "getPet", None), faults.UNKNOWN_SERVICE)


# --- REST ---------------------------------------------------------------------------------------


def rest_metadata(
    fed: Federation, gateway: str, name: str, client: ClientId = CONSUMER, query: str = ""
) -> requests.Response:
    url = f"{fed.internal_url(gateway)}/r1/{BENEFITS.to_text()}/{name}{query}"
    return requests.get(url, headers=rest_headers(client=client), timeout=HTTP_TIMEOUT_SECONDS)


# The OpenAPI paths, as access rights match them (`{param}` is one segment: `*`).
EXPECTED_ENDPOINTS = [
    {"method": "GET", "path": "/applications/*"},
    {"method": "GET", "path": "/benefits/*"},
    {"method": "GET", "path": "/echo"},
    {"method": "POST", "path": "/applications"},
    {"method": "POST", "path": "/echo"},
]


def test_rest_list_methods(fed: Federation) -> None:
    response = rest_metadata(fed, "gw-a", "listMethods")

    assert response.status_code == 200, response.text
    (service,) = response.json()["service"]
    assert service["service_code"] == "benefits"
    assert service["service_type"] == "OPENAPI"
    assert (service["member_code"], service["subsystem_code"]) == ("1003", "benefits")
    endpoints = sorted(service["endpoint_list"], key=lambda e: (e["method"], e["path"]))
    assert endpoints == EXPECTED_ENDPOINTS


def test_rest_allowed_methods_per_client(fed: Federation) -> None:
    granted = rest_metadata(fed, "gw-a", "allowedMethods")
    none = rest_metadata(fed, "gw-c", "allowedMethods", client=BENEFITS)

    assert granted.status_code == 200 and none.status_code == 200
    (service,) = granted.json()["service"]
    assert sorted(service["endpoint_list"], key=lambda e: (e["method"], e["path"])) == EXPECTED_ENDPOINTS
    assert none.json() == {"service": []}


def test_get_openapi_hides_the_servers(fed: Federation) -> None:
    response = rest_metadata(fed, "gw-a", "getOpenAPI", query="?serviceCode=benefits")

    assert response.status_code == 200, response.text
    document = yaml.safe_load(response.content)
    assert document["openapi"].startswith("3.")
    assert "/benefits/{personalCode}" in document["paths"]
    real_backend = fed.description["backends"]["benefits_api"].removeprefix("http://")
    assert real_backend not in response.text
    assert "127.0.0.1:8082" not in response.text
    assert all(server["url"] == "http://example.invalid/" for server in document.get("servers", []))


def test_get_openapi_of_an_unknown_service(fed: Federation) -> None:
    response = rest_metadata(fed, "gw-a", "getOpenAPI", query="?serviceCode=pensions")

    assert_rest_error(response, faults.UNKNOWN_SERVICE, 500)


# --- listClients ---------------------------------------------------------------------------------

EXPECTED_CLIENTS = {
    ("1001", None, "Social Security Fund"),
    ("1001", "benefits-office", "Social Security Fund"),
    ("1002", None, "Civil Registry"),
    ("1002", "population", "Civil Registry"),
    ("1003", None, "Benefits Agency"),
    ("1003", "benefits", "Benefits Agency"),
}


def test_list_clients_as_xml(fed: Federation) -> None:
    response = requests.get(fed.internal_url("gw-a") + "/listClients", timeout=HTTP_TIMEOUT_SECONDS)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/xml")
    root = parse_xml(response.content)
    assert root.tag == f"{XRD}clientList"
    found = set()
    for member in root.iterfind(f"{XRD}member"):
        identifier = member.find(f"{XRD}id")
        assert identifier is not None
        assert identifier.findtext(f"{ID}xRoadInstance") == "DEV"
        subsystem = identifier.findtext(f"{ID}subsystemCode")
        assert identifier.get(f"{ID}objectType") == ("SUBSYSTEM" if subsystem else "MEMBER")
        found.add((identifier.findtext(f"{ID}memberCode"), subsystem, member.findtext(f"{XRD}name")))
    assert found == EXPECTED_CLIENTS


def test_list_clients_as_json_and_by_instance(fed: Federation) -> None:
    url = fed.internal_url("gw-a") + "/listClients"
    accept_json = {"Accept": "application/json"}

    everyone = requests.get(url, headers=accept_json, timeout=HTTP_TIMEOUT_SECONDS)
    other_instance = requests.get(
        url + "?xRoadInstance=EE", headers=accept_json, timeout=HTTP_TIMEOUT_SECONDS
    )

    assert everyone.status_code == 200
    found = {
        (m["id"]["member_code"], m["id"].get("subsystem_code"), m["name"]) for m in everyone.json()["member"]
    }
    assert found == EXPECTED_CLIENTS
    assert other_instance.json() == {"member": []}
