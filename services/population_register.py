"""Example agency service: a population register offering two X-Road 4.0 SOAP services.

Described by ``wsdl/population-register.wsdl`` (SOAP 1.1, document/literal wrapped):

- ``getPerson(personalCode)`` → ``getPersonResponse/person`` with personalCode, name, birthDate,
  address. An unknown code answers a SOAP Fault with faultcode ``Server``.
- ``listPersons(nameContains?)`` → ``listPersonsResponse/person*`` with personalCode and name.

As an X-Road service must (PROTOCOL.md "SOAP message protocol 4.0"), every answer echoes the
request's X-Road header fields (client, service, id, userId, issue, protocolVersion,
representedParty) unchanged and wraps the result in ``{serviceCode}Response``. Faults are sent
with HTTP 500, as SOAP 1.1 §6.2 requires.

Test-only behaviours, chosen by the ``personalCode`` of ``getPerson`` (for gateway tests of the
provider's ``ServiceFailed.*`` and the consumer's ``InconsistentResponse`` paths):

- ``SLOW``: waits :data:`SLOW_SECONDS` (5 s; ``make_app(slow_seconds=...)``) before answering normally;
- ``GARBAGE``: answers 200 with ``Content-Type: text/xml`` and a body that is not XML;
- ``HTTP500``: answers 500 with a SOAP Fault (faultcode ``Server``);
- ``BADECHO``: answers normally, but with a header ``id`` different from the request's.

``GET /population-register?wsdl`` returns the WSDL, so a gateway can register the service by URL.
Run with ``python -m services.population_register --port 8081`` (listens on 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Final

from aiohttp import web
from lxml import etree

from gateway.xmlsafe import UnsafeXml, XmlSyntaxError, parse_xml

from .serving import serve

SOAP_ENV_NS: Final = "http://schemas.xmlsoap.org/soap/envelope/"
XROAD_NS: Final = "http://x-road.eu/xsd/xroad.xsd"
SERVICE_NS: Final = "http://xgate.example/population-register"

PATH: Final = "/population-register"
DEFAULT_PORT: Final = 8081  # the soap:address in wsdl/population-register.wsdl
WSDL_FILE: Final = Path(__file__).resolve().parents[1] / "wsdl" / "population-register.wsdl"

# Long enough to trip any sensible gateway timeout in a test, short enough not to hang a demo.
SLOW_SECONDS: Final = 5.0
# Requests here are a few hundred bytes; a megabyte is aiohttp's default and plenty.
MAX_REQUEST_BYTES: Final = 1024 * 1024

SLOW: Final = "SLOW"
GARBAGE: Final = "GARBAGE"
HTTP500: Final = "HTTP500"
BADECHO: Final = "BADECHO"

_SLOW_SECONDS_KEY: Final = web.AppKey("slow_seconds", float)
_XML_CONTENT_TYPE: Final = "text/xml; charset=utf-8"


@dataclass(frozen=True)
class Person:
    """One entry of the register."""

    personal_code: str
    name: str
    birth_date: date
    address: str


PERSONS: Final[Mapping[str, Person]] = {
    person.personal_code: person
    for person in (
        Person("38001085718", "Mart Tamm", date(1980, 1, 8), "Pikk 12-3, 10123 Tallinn"),
        Person("49002124277", "Liis Kask", date(1990, 2, 12), "Rüütli 4, 51007 Tartu"),
        Person("37605030299", "Jaan Saar", date(1976, 5, 3), "Rannapargi 7, 80010 Pärnu"),
        Person("48512245710", "Kadri Mets", date(1985, 12, 24), "Lossi 21, 41531 Jõhvi"),
        Person("50304150023", "Oskar Lepp", date(2003, 4, 15), "Tööstuse 48-17, 10416 Tallinn"),
        Person("46108090036", "Anne Kuusk", date(1961, 8, 9), "Aia 2, 71004 Viljandi"),
    )
}
# SLOW and BADECHO answer getPerson for this stand-in once their behaviour is done.
_TEST_PERSON: Final = Person("", "Test Person", date(2000, 1, 1), "Test Street 1, 00000 Testville")


class ServiceFault(Exception):
    """A request this service answers with a SOAP Fault."""

    def __init__(self, faultcode: str, faultstring: str) -> None:
        super().__init__(faultstring)
        self.faultcode = faultcode
        self.faultstring = faultstring


@dataclass(frozen=True)
class SoapRequest:
    """The parts of a request envelope the service uses."""

    header: etree._Element | None
    operation: str
    body: etree._Element


def parse_request(data: bytes, charset: str | None = None) -> SoapRequest:
    """The header and the one Body child of a SOAP 1.1 request, or ServiceFault("Client", ...)."""
    try:
        envelope = parse_xml(data, charset=charset, max_bytes=MAX_REQUEST_BYTES)
    except (UnsafeXml, XmlSyntaxError) as exc:
        raise ServiceFault("Client", f"request is not acceptable XML: {exc}") from exc
    if envelope.tag != f"{{{SOAP_ENV_NS}}}Envelope":
        raise ServiceFault("Client", "request is not a SOAP 1.1 envelope")
    body = envelope.find(f"{{{SOAP_ENV_NS}}}Body")
    children = list(body.iterchildren(etree.Element)) if body is not None else []
    if len(children) != 1:
        raise ServiceFault("Client", "the SOAP Body must hold exactly one element")
    (request,) = children
    operation = etree.QName(request)
    if operation.namespace != SERVICE_NS or operation.localname not in OPERATIONS:
        raise ServiceFault("Client", f"unknown operation {request.tag}")
    return SoapRequest(envelope.find(f"{{{SOAP_ENV_NS}}}Header"), operation.localname, request)


def personal_code(request: SoapRequest) -> str:
    """The getPerson request's personalCode."""
    code = (request.body.findtext(f"{{{SERVICE_NS}}}personalCode") or "").strip()
    if not code:
        raise ServiceFault("Client", "personalCode is missing")
    return code


def get_person(request: SoapRequest) -> etree._Element:
    """getPersonResponse for a registered person, or the Server fault for an unknown code."""
    code = personal_code(request)
    person = replace(_TEST_PERSON, personal_code=code) if code in (SLOW, BADECHO) else PERSONS.get(code)
    if person is None:
        raise ServiceFault("Server", f"no person with personal code {code!r} in the register")
    response = _element("getPersonResponse")
    _person_element(response, person, full=True)
    return response


def list_persons(request: SoapRequest) -> etree._Element:
    """listPersonsResponse with every person whose name contains nameContains (any case)."""
    needle = (request.body.findtext(f"{{{SERVICE_NS}}}nameContains") or "").strip().casefold()
    response = _element("listPersonsResponse")
    for person in PERSONS.values():
        if needle in person.name.casefold():
            _person_element(response, person, full=False)
    return response


OPERATIONS: Final = {"getPerson": get_person, "listPersons": list_persons}


def response_envelope(request: SoapRequest, result: etree._Element, *, altered_id: bool = False) -> bytes:
    """The answer envelope: the request's header echoed (PROTOCOL.md: unchanged), then the result."""
    envelope = etree.Element(f"{{{SOAP_ENV_NS}}}Envelope", nsmap={"SOAP-ENV": SOAP_ENV_NS})
    if request.header is not None:
        header = copy.deepcopy(request.header)
        if altered_id:
            message_id = header.find(f"{{{XROAD_NS}}}id")
            if message_id is None:
                message_id = etree.SubElement(header, f"{{{XROAD_NS}}}id")
            message_id.text = f"{message_id.text or ''}-not-the-request-id"
        envelope.append(header)
    etree.SubElement(envelope, f"{{{SOAP_ENV_NS}}}Body").append(result)
    return _serialise(envelope)


def fault_envelope(faultcode: str, faultstring: str) -> bytes:
    """A SOAP 1.1 Fault (SOAP 1.1 §4.4); the code is qualified with the envelope namespace."""
    envelope = etree.Element(f"{{{SOAP_ENV_NS}}}Envelope", nsmap={"SOAP-ENV": SOAP_ENV_NS})
    fault = etree.SubElement(etree.SubElement(envelope, f"{{{SOAP_ENV_NS}}}Body"), f"{{{SOAP_ENV_NS}}}Fault")
    etree.SubElement(fault, "faultcode").text = f"SOAP-ENV:{faultcode}"
    etree.SubElement(fault, "faultstring").text = faultstring
    return _serialise(envelope)


def _element(name: str) -> etree._Element:
    return etree.Element(f"{{{SERVICE_NS}}}{name}", nsmap={"pr": SERVICE_NS})


def _person_element(parent: etree._Element, person: Person, *, full: bool) -> None:
    element = etree.SubElement(parent, f"{{{SERVICE_NS}}}person")
    fields = [("personalCode", person.personal_code), ("name", person.name)]
    if full:
        fields += [("birthDate", person.birth_date.isoformat()), ("address", person.address)]
    for name, value in fields:
        etree.SubElement(element, f"{{{SERVICE_NS}}}{name}").text = value


def _serialise(envelope: etree._Element) -> bytes:
    serialised: bytes = etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
    return serialised


def _xml_response(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, headers={"Content-Type": _XML_CONTENT_TYPE})


async def handle_soap(request: web.Request) -> web.Response:
    """POST: one SOAP request → its answer, or a fault (HTTP 500)."""
    try:
        soap = parse_request(await request.read(), request.charset)
        special = personal_code(soap) if soap.operation == "getPerson" else None
        if special == SLOW:
            await asyncio.sleep(request.app[_SLOW_SECONDS_KEY])
        elif special == GARBAGE:
            return web.Response(body=b"this is not XML <<<", headers={"Content-Type": _XML_CONTENT_TYPE})
        elif special == HTTP500:
            raise ServiceFault("Server", "the population register failed (test-only HTTP500)")
        result = OPERATIONS[soap.operation](soap)
    except ServiceFault as fault:
        return _xml_response(fault_envelope(fault.faultcode, fault.faultstring), status=500)
    return _xml_response(response_envelope(soap, result, altered_id=special == BADECHO))


async def handle_wsdl(request: web.Request) -> web.Response:
    """GET ?wsdl: the service description, as X-Road providers publish theirs."""
    if "wsdl" not in request.query:
        raise web.HTTPNotFound(text="try ?wsdl")
    return _xml_response(WSDL_FILE.read_bytes())


def make_app(*, slow_seconds: float = SLOW_SECONDS) -> web.Application:
    """The service as an aiohttp application (``slow_seconds``: how long ``SLOW`` waits)."""
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[_SLOW_SECONDS_KEY] = slow_seconds
    app.router.add_post(PATH, handle_soap)
    app.router.add_get(PATH, handle_wsdl)
    return app


def main(argv: list[str] | None = None) -> None:
    """Command line: serve the population register on 127.0.0.1."""
    serve(make_app, "services.population_register", "Example X-Road SOAP service.", DEFAULT_PORT, argv)


if __name__ == "__main__":
    main()
