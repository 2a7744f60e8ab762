"""SOAP message protocol 4.0: every fault code, encodings, attachments, the response path.

Messages are written out as text here, not produced by the code under test, so each
test states the exact bytes a client would send. Header checks are cross-checked against
xmlschema, a second XSD implementation reading the same schema files.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import xmlschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway import faults
from gateway.faults import XRoadFault
from gateway.ids import ClientId, SecurityServerId, ServiceId
from gateway.protocol.mime import Attachment, build_multipart, replace_soap_part, unpack
from gateway.protocol.schema import DECLARED_ATTRIBUTES, REPR_NS, SOAP_ENV_NS, XROAD_NS, XSD_DIR
from gateway.protocol.soap import (
    SHA512_ALGORITHM_URI,
    RepresentedParty,
    RequestHash,
    ServiceFault,
    SoapFault,
    SoapMessage,
    build_fault,
    build_request,
    build_response,
    check_response_consistency,
    fault_response,
    parse_fault,
    parse_request,
    parse_response,
    request_hash,
    set_request_hash,
)

ID_NS = "http://x-road.eu/xsd/identifiers"
PRODUCER_NS = "http://test.x-road.eu/producer"
XML = "text/xml; charset=UTF-8"

NAMESPACES = (
    f'xmlns:SOAP-ENV="{SOAP_ENV_NS}" xmlns:xrd="{XROAD_NS}" xmlns:id="{ID_NS}" xmlns:repr="{REPR_NS}"'
)
CLIENT = (
    '<xrd:client id:objectType="SUBSYSTEM"><id:xRoadInstance>EE</id:xRoadInstance>'
    "<id:memberClass>GOV</id:memberClass><id:memberCode>70000310</id:memberCode>"
    "<id:subsystemCode>portal</id:subsystemCode></xrd:client>"
)
SERVICE = (
    '<xrd:service id:objectType="SERVICE"><id:xRoadInstance>EE</id:xRoadInstance>'
    "<id:memberClass>GOV</id:memberClass><id:memberCode>70008440</id:memberCode>"
    "<id:subsystemCode>registry</id:subsystemCode><id:serviceCode>getPerson</id:serviceCode>"
    "<id:serviceVersion>v1</id:serviceVersion></xrd:service>"
)
FIELDS = {
    "client": CLIENT,
    "service": SERVICE,
    "id": "<xrd:id>4894e35d-bf0f-44a6-867a-8e51f1daa7e0</xrd:id>",
    "userId": "<xrd:userId>EE12345678901</xrd:userId>",
    "issue": "<xrd:issue>case-17</xrd:issue>",
    "protocolVersion": "<xrd:protocolVersion>4.0</xrd:protocolVersion>",
}
BODY = f'<p:getPerson xmlns:p="{PRODUCER_NS}"><p:code>38001010000</p:code></p:getPerson>'
RESPONSE_BODY = f'<p:getPersonResponse xmlns:p="{PRODUCER_NS}"><p:name>Mari</p:name></p:getPersonResponse>'


def envelope(
    header: str | None, body: str | None, prolog: str = '<?xml version="1.0" encoding="UTF-8"?>'
) -> str:
    header_xml = "" if header is None else f"<SOAP-ENV:Header>{header}</SOAP-ENV:Header>"
    body_xml = "" if body is None else f"<SOAP-ENV:Body>{body}</SOAP-ENV:Body>"
    return f"{prolog}<SOAP-ENV:Envelope {NAMESPACES}>{header_xml}{body_xml}</SOAP-ENV:Envelope>"


def header(*, drop: tuple[str, ...] = (), replace: dict[str, str] | None = None, extra: str = "") -> str:
    fields = {**FIELDS, **(replace or {})}
    return "".join(xml for name, xml in fields.items() if name not in drop) + extra


def request_text(
    *, drop: tuple[str, ...] = (), replace: dict[str, str] | None = None, extra: str = "", body: str = BODY
) -> str:
    return envelope(header(drop=drop, replace=replace, extra=extra), body)


def request(**kwargs: object) -> bytes:
    return request_text(**kwargs).encode()  # type: ignore[arg-type]


def fault_of(action: Callable[[], object]) -> XRoadFault:
    with pytest.raises(XRoadFault) as caught:
        action()
    return caught.value


# --- a valid request ------------------------------------------------------------------


def test_valid_request_is_parsed_into_its_fields() -> None:
    raw = request(
        extra="<repr:representedParty><repr:partyClass>COM</repr:partyClass>"
        "<repr:partyCode>12345678</repr:partyCode></repr:representedParty>"
        '<xrd:securityServer id:objectType="SERVER"><id:xRoadInstance>EE</id:xRoadInstance>'
        "<id:memberClass>GOV</id:memberClass><id:memberCode>70008440</id:memberCode>"
        "<id:serverCode>ss1</id:serverCode></xrd:securityServer>"
    )
    message = parse_request(raw, XML)
    assert message.client == ClientId("EE", "GOV", "70000310", "portal")
    assert message.service == ServiceId("EE", "GOV", "70008440", "registry", "getPerson", "v1")
    assert message.service.provider == ClientId("EE", "GOV", "70008440", "registry")
    assert message.id == "4894e35d-bf0f-44a6-867a-8e51f1daa7e0"
    assert message.protocol_version == "4.0"
    assert message.user_id == "EE12345678901"
    assert message.issue == "case-17"
    assert message.represented_party == RepresentedParty("COM", "12345678")
    assert message.security_server == SecurityServerId("EE", "GOV", "70008440", "ss1")
    assert message.request_hash is None
    assert (message.body_name, message.body_namespace) == ("getPerson", PRODUCER_NS)
    assert message.body.tag == f"{{{PRODUCER_NS}}}getPerson"
    assert message.soap_bytes is raw and message.raw is raw
    assert message.content_type == XML
    assert message.attachments == ()


def test_optional_fields_absent_are_none() -> None:
    message = parse_request(request(drop=("userId", "issue")), XML)
    assert message.user_id is None and message.issue is None
    assert message.represented_party is None and message.security_server is None


def test_foreign_header_blocks_comments_and_unknown_types_are_left_alone() -> None:
    extra = (
        '<wsa:Action xmlns:wsa="http://www.w3.org/2005/08/addressing">urn:getPerson</wsa:Action>'
        "<!-- a comment --><?audit note?>"
        '<c:trace xmlns:c="urn:custom" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        ' xsi:type="c:TraceType">1</c:trace>'
    )
    message = parse_request(request(extra=extra), XML)
    assert message.id == "4894e35d-bf0f-44a6-867a-8e51f1daa7e0"


def test_member_client_without_subsystem() -> None:
    member = (
        '<xrd:client id:objectType="MEMBER"><id:xRoadInstance>EE</id:xRoadInstance>'
        "<id:memberClass>GOV</id:memberClass><id:memberCode>70000310</id:memberCode></xrd:client>"
    )
    assert parse_request(request(replace={"client": member}), XML).client == ClientId("EE", "GOV", "70000310")


# --- one test per fault code ------------------------------------------------------------

MEMBER_WITH_SUBSYSTEM = CLIENT.replace('"SUBSYSTEM"', '"MEMBER"')
SUBSYSTEM_WITHOUT = CLIENT.replace("<id:subsystemCode>portal</id:subsystemCode>", "")
TWO_PARTS = (
    b"--b\r\nContent-Type: application/octet-stream\r\n\r\nnot soap\r\n"
    b"--b\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n--b--\r\n"
)

FAULT_CASES: list[tuple[str, bytes, str | None, str]] = [
    ("empty", b"", XML, faults.INVALID_SOAP),
    ("whitespace", b"  \r\n ", XML, faults.INVALID_SOAP),
    ("not xml", b"hello, gateway", XML, faults.INVALID_SOAP),
    ("truncated", request()[:-20], XML, faults.INVALID_SOAP),
    ("not an envelope", b"<getPerson/>", XML, faults.INVALID_SOAP),
    (
        "soap 1.2",
        request_text().replace(SOAP_ENV_NS, "http://www.w3.org/2003/05/soap-envelope").encode(),
        XML,
        faults.INVALID_SOAP,
    ),
    (
        "header after body",
        f"<SOAP-ENV:Envelope {NAMESPACES}><SOAP-ENV:Body>{BODY}</SOAP-ENV:Body>"
        f"<SOAP-ENV:Header>{header()}</SOAP-ENV:Header></SOAP-ENV:Envelope>".encode(),
        XML,
        faults.INVALID_SOAP,
    ),
    ("multipart without soap", TWO_PARTS, "multipart/related; boundary=b", faults.MISSING_SOAP),
    (
        "start names no part",
        TWO_PARTS,
        'multipart/related; boundary=b; start="<nowhere@x>"',
        faults.MISSING_SOAP,
    ),
    ("no header", envelope(None, BODY).encode(), XML, faults.MISSING_HEADER),
    ("no client", request(drop=("client",)), XML, faults.MISSING_HEADER_FIELD),
    ("no service", request(drop=("service",)), XML, faults.MISSING_HEADER_FIELD),
    ("no id", request(drop=("id",)), XML, faults.MISSING_HEADER_FIELD),
    ("empty id", request(replace={"id": "<xrd:id></xrd:id>"}), XML, faults.MISSING_HEADER_FIELD),
    ("no protocolVersion", request(drop=("protocolVersion",)), XML, faults.MISSING_HEADER_FIELD),
    ("two ids", request(extra="<xrd:id>again</xrd:id>"), XML, faults.DUPLICATE_HEADER_FIELD),
    ("two clients", request(extra=CLIENT), XML, faults.DUPLICATE_HEADER_FIELD),
    (
        "protocol 3.1",
        request(replace={"protocolVersion": "<xrd:protocolVersion>3.1</xrd:protocolVersion>"}),
        XML,
        faults.INVALID_PROTOCOL_VERSION,
    ),
    ("no body", envelope(header(), None).encode(), XML, faults.MISSING_BODY),
    ("empty body", envelope(header(), "").encode(), XML, faults.INVALID_BODY),
    ("two body elements", request(body=BODY + BODY), XML, faults.INVALID_BODY),
    ("text in body", request(body="just text"), XML, faults.INVALID_BODY),
    (
        "body is not the service",
        request(body=f'<p:getCar xmlns:p="{PRODUCER_NS}"/>'),
        XML,
        faults.INCONSISTENT_HEADERS,
    ),
    (
        "unknown objectType",
        request(replace={"client": CLIENT.replace('"SUBSYSTEM"', '"PERSON"')}),
        XML,
        faults.INVALID_XML,
    ),
    (
        "missing objectType",
        request(replace={"client": CLIENT.replace(' id:objectType="SUBSYSTEM"', "")}),
        XML,
        faults.INVALID_XML,
    ),
    (
        "codes out of order",
        request(
            replace={
                "client": CLIENT.replace(
                    "<id:memberClass>GOV</id:memberClass><id:memberCode>70000310</id:memberCode>",
                    "<id:memberCode>70000310</id:memberCode><id:memberClass>GOV</id:memberClass>",
                )
            }
        ),
        XML,
        faults.INVALID_XML,
    ),
    ("elements in id", request(replace={"id": "<xrd:id><b>1</b></xrd:id>"}), XML, faults.INVALID_XML),
    (
        "represented party without code",
        request(
            extra="<repr:representedParty><repr:partyClass>COM</repr:partyClass></repr:representedParty>"
        ),
        XML,
        faults.INVALID_XML,
    ),
    (
        "service with the wrong objectType",
        request(replace={"service": SERVICE.replace('"SERVICE"', '"SUBSYSTEM"')}),
        XML,
        faults.INVALID_XML,
    ),
    (
        "member with subsystem",
        request(replace={"client": MEMBER_WITH_SUBSYSTEM}),
        XML,
        faults.INVALID_CLIENT_IDENTIFIER,
    ),
    (
        "subsystem without",
        request(replace={"client": SUBSYSTEM_WITHOUT}),
        XML,
        faults.INVALID_CLIENT_IDENTIFIER,
    ),
    ("json", request(), "application/json", faults.INVALID_CONTENT_TYPE),
    ("soap 1.2 type", request(), "application/soap+xml; charset=utf-8", faults.INVALID_CONTENT_TYPE),
    ("no content type", request(), None, faults.INVALID_CONTENT_TYPE),
    ("garbage content type", request(), "xml please", faults.INVALID_CONTENT_TYPE),
    ("multipart without boundary", TWO_PARTS, "multipart/related", faults.INVALID_CONTENT_TYPE),
    ("multipart cut short", TWO_PARTS[:-8], "multipart/related; boundary=b", faults.INVALID_CONTENT_TYPE),
    (
        "multipart of SOAP 1.2",
        TWO_PARTS,
        'multipart/related; type="application/soap+xml"; boundary=b',
        faults.INVALID_CONTENT_TYPE,
    ),
]


@pytest.mark.parametrize(
    ("raw", "content_type", "code"), [c[1:] for c in FAULT_CASES], ids=[c[0] for c in FAULT_CASES]
)
def test_each_broken_rule_raises_its_fault_code(raw: bytes, content_type: str | None, code: str) -> None:
    fault = fault_of(lambda: parse_request(raw, content_type))
    assert fault.code == code, fault.message
    assert fault.message
    assert fault.detail  # an id for the log


def test_every_documented_client_parse_fault_is_exercised() -> None:
    documented = {
        faults.INVALID_SOAP,
        faults.MISSING_SOAP,
        faults.MISSING_HEADER,
        faults.MISSING_HEADER_FIELD,
        faults.DUPLICATE_HEADER_FIELD,
        faults.INVALID_PROTOCOL_VERSION,
        faults.MISSING_BODY,
        faults.INVALID_BODY,
        faults.INCONSISTENT_HEADERS,
        faults.INVALID_XML,
        faults.INVALID_CLIENT_IDENTIFIER,
        faults.INVALID_CONTENT_TYPE,
    }
    assert documented == {case[3] for case in FAULT_CASES}


def test_missing_header_field_names_the_field() -> None:
    for name in ("client", "service", "id", "protocolVersion"):
        assert name in fault_of(lambda n=name: parse_request(request(drop=(n,)), XML)).message  # type: ignore[misc]


def test_soap12_is_named_in_the_fault() -> None:
    raw = request_text().replace(SOAP_ENV_NS, "http://www.w3.org/2003/05/soap-envelope").encode()
    assert "SOAP 1.2" in fault_of(lambda: parse_request(raw, XML)).message


# --- the header schema, checked against a second XSD implementation ----------------------


@pytest.fixture(scope="module")
def reference_schema() -> xmlschema.XMLSchema10:
    files: list[Any] = [
        str(XSD_DIR / name) for name in ("xroad.xsd", "xroad-securityserver.xsd", "representation.xsd")
    ]
    return xmlschema.XMLSchema10(
        files,
        uri_mapper={
            "http://x-road.eu/xsd/identifiers.xsd": str(XSD_DIR / "identifiers.xsd"),
            "http://www.w3.org/2009/01/xml.xsd": str(XSD_DIR / "xml.xsd"),
        },
        allow="local",
    )


HEADER_VARIANTS = [
    CLIENT,
    CLIENT.replace('"SUBSYSTEM"', '"MEMBERS"'),
    CLIENT.replace("<id:xRoadInstance>EE</id:xRoadInstance>", ""),
    CLIENT.replace("<id:subsystemCode>portal</id:subsystemCode>", "<id:serviceCode>x</id:serviceCode>"),
    CLIENT.replace('id:objectType="SUBSYSTEM"', 'id:objectType="SUBSYSTEM" colour="red"'),
    "<xrd:userId>EE1</xrd:userId>",
    "<xrd:userId>EE<x/>1</xrd:userId>",
    '<xrd:requestHash algorithmId="urn:x">aGFzaA==</xrd:requestHash>',
    '<xrd:requestHash algorithm="urn:x">aGFzaA==</xrd:requestHash>',
    "<repr:representedParty><repr:partyCode>1</repr:partyCode></repr:representedParty>",
    "<repr:representedParty><repr:partyCode>1</repr:partyCode><repr:partyClass>C</repr:partyClass>"
    "</repr:representedParty>",
    '<xrd:securityServer id:objectType="SERVER"><id:xRoadInstance>EE</id:xRoadInstance>'
    "<id:memberClass>GOV</id:memberClass><id:memberCode>1</id:memberCode><id:serverCode>s</id:serverCode>"
    "</xrd:securityServer>",
    '<xrd:securityServer id:objectType="SERVER"><id:xRoadInstance>EE</id:xRoadInstance>'
    "<id:memberClass>GOV</id:memberClass><id:memberCode>1</id:memberCode></xrd:securityServer>",
]


@pytest.mark.parametrize("field", HEADER_VARIANTS)
def test_header_fields_are_judged_as_xmlschema_judges_them(
    field: str, reference_schema: xmlschema.XMLSchema10
) -> None:
    element = etree.fromstring(f"<w {NAMESPACES}>{field}</w>")[0]
    for node in element.iter():  # as X-Road, attributes the XSDs do not declare are ignored
        for name in [name for name in node.attrib if name not in DECLARED_ATTRIBUTES]:
            del node.attrib[name]
    valid = reference_schema.is_valid(element)
    tag = etree.QName(element).localname
    raw = request(replace={tag: field}) if tag in FIELDS else request(extra=field)
    if valid:
        parse_request(raw, XML)
    else:
        assert fault_of(lambda: parse_request(raw, XML)).code == faults.INVALID_XML


def test_messages_we_build_satisfy_the_schemas(reference_schema: xmlschema.XMLSchema10) -> None:
    raw = build_request(
        ClientId("EE", "GOV", "1", "a"),
        ServiceId("EE", "GOV", "2", None, "getPerson"),
        etree.fromstring(BODY),
        message_id="m1",
        user_id="u",
        issue="i",
        represented_party=RepresentedParty(None, "777"),
        security_server=SecurityServerId("EE", "GOV", "2", "ss"),
    )
    head = etree.fromstring(raw).find(f"{{{SOAP_ENV_NS}}}Header")
    assert head is not None and len(head) == 8
    for field in head:
        reference_schema.validate(field)


# --- character encodings -------------------------------------------------------------------


def test_iso_8859_1_declared_in_the_prolog() -> None:
    text = envelope(
        header(replace={"userId": "<xrd:userId>Jüri Õun</xrd:userId>"}),
        BODY,
        prolog='<?xml version="1.0" encoding="ISO-8859-1"?>',
    )
    raw = text.encode("iso-8859-1")
    assert parse_request(raw, "text/xml").user_id == "Jüri Õun"
    # The prolog is authoritative once read (XML 1.0 appendix F), even against the header.
    assert parse_request(raw, "text/xml; charset=UTF-8").user_id == "Jüri Õun"


def test_iso_8859_1_given_only_by_the_content_type() -> None:
    raw = envelope(header(replace={"issue": "<xrd:issue>Ärikeeld</xrd:issue>"}), BODY, prolog="").encode(
        "latin-1"
    )
    assert parse_request(raw, 'text/xml; charset="ISO-8859-1"').issue == "Ärikeeld"


@pytest.mark.parametrize("content_type", ["text/xml; charset=UTF-16", "text/xml"])
def test_utf16(content_type: str) -> None:
    text = envelope(
        header(replace={"userId": "<xrd:userId>Žofia Šťastná</xrd:userId>"}),
        BODY,
        prolog='<?xml version="1.0" encoding="UTF-16"?>',
    )
    message = parse_request(text.encode("utf-16"), content_type)
    assert message.user_id == "Žofia Šťastná"
    assert message.client == ClientId("EE", "GOV", "70000310", "portal")


def test_unknown_charset_is_a_fault() -> None:
    raw = envelope(header(), BODY, prolog="").encode()
    assert fault_of(lambda: parse_request(raw, "text/xml; charset=klingon")).code == faults.INVALID_SOAP


# --- attachments ---------------------------------------------------------------------------

BINARY = bytes(range(256)) + b"\r\n--MIME_bound\r\n\r\n--\r\n" + bytes(range(255, -1, -1))


def swa_message(soap: bytes, *, soap_first: bool = True) -> tuple[bytes, str]:
    soap_part = (
        b"Content-Type: text/xml; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n"
        b"Content-ID: <soap@client>\r\n\r\n" + soap
    )
    attachment = (
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n"
        b"Content-ID: <att1@client>\r\n\r\n" + BINARY
    )
    parts = [soap_part, attachment] if soap_first else [attachment, soap_part]
    body = b"preamble to ignore\r\n--MIME_boundary\r\n" + parts[0] + b"\r\n--MIME_boundary\r\n" + parts[1]
    body += b"\r\n--MIME_boundary--\r\nepilogue"
    start = "" if soap_first else '; start="<soap@client>"'
    return body, f'multipart/related; type="text/xml"; boundary=MIME_boundary{start}'


@pytest.mark.parametrize("soap_first", [True, False])
def test_soap_with_attachments(soap_first: bool) -> None:
    soap = request()
    raw, content_type = swa_message(soap, soap_first=soap_first)
    message = parse_request(raw, content_type)
    assert message.soap_bytes == soap
    assert message.raw is raw
    assert message.content_type == content_type
    assert message.attachments == (Attachment("att1@client", "application/octet-stream", BINARY),)
    assert not message.xop
    assert message.body_name == "getPerson"


def test_mtom_keeps_xop_include_as_a_reference() -> None:
    body = (
        f'<p:getPerson xmlns:p="{PRODUCER_NS}"><p:photo>'
        '<xop:Include xmlns:xop="http://www.w3.org/2004/08/xop/include" href="cid:photo@client"/>'
        "</p:photo></p:getPerson>"
    )
    soap = request(body=body)
    raw = (
        b"------=_Part_0_1\r\n"
        b'Content-Type: application/xop+xml; charset=UTF-8; type="text/xml"\r\n'
        b"Content-Transfer-Encoding: 8bit\r\nContent-ID: <rootpart@client>\r\n\r\n" + soap + b"\r\n"
        b"------=_Part_0_1\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: binary\r\n"
        b"Content-ID: <photo@client>\r\n\r\n" + BINARY + b"\r\n------=_Part_0_1--\r\n"
    )
    content_type = (
        'multipart/related; type="application/xop+xml"; start="<rootpart@client>"; '
        'start-info="text/xml"; boundary="----=_Part_0_1"'
    )
    message = parse_request(raw, content_type)
    assert message.xop
    assert message.soap_bytes == soap
    assert message.attachments == (Attachment("photo@client", "image/png", BINARY),)
    include = message.body.find(".//{http://www.w3.org/2004/08/xop/include}Include")
    assert include is not None and include.get("href") == "cid:photo@client"


def test_rebuilt_multipart_keeps_attachments_byte_exact() -> None:
    attachments = [Attachment("a@x", "application/pdf", BINARY), Attachment(None, "text/plain", b"")]
    raw, content_type = build_multipart(request(), attachments)
    message = parse_request(raw, content_type)
    assert message.attachments == tuple(attachments)
    assert unpack(raw, content_type).soap == request()


# --- responses -----------------------------------------------------------------------------


def response_text(
    *,
    drop: tuple[str, ...] = (),
    replace: dict[str, str] | None = None,
    extra: str = "",
    body: str = RESPONSE_BODY,
) -> str:
    return envelope(header(drop=drop, replace=replace, extra=extra), body)


def test_parse_response_requires_a_body_named_after_the_service() -> None:
    response = parse_response(response_text().encode(), XML)
    assert response.body_name == "getPersonResponse"
    other = f'<p:listPersonsResponse xmlns:p="{PRODUCER_NS}"/>'
    fault = fault_of(lambda: parse_response(response_text(body=other).encode(), XML))
    assert fault.code == faults.INCONSISTENT_HEADERS


def test_parse_response_requires_service_and_accepts_request_hash() -> None:
    assert fault_of(lambda: parse_response(response_text(drop=("service",)).encode(), XML)).code == (
        faults.MISSING_HEADER_FIELD
    )
    hashed = response_text(
        extra=f'<xrd:requestHash algorithmId="{SHA512_ALGORITHM_URI}">aGFzaA==</xrd:requestHash>'
    )
    response = parse_response(hashed.encode(), XML)
    assert response.request_hash == RequestHash("aGFzaA==", SHA512_ALGORITHM_URI)


def test_response_built_for_a_request_is_consistent_with_it() -> None:
    req = parse_request(request(), XML)
    raw = build_response(req, etree.fromstring(RESPONSE_BODY))
    response = parse_response(raw, "text/xml")
    check_response_consistency(req, response)
    assert response.body.findtext(f"{{{PRODUCER_NS}}}name") == "Mari"


ECHOED_CHANGES: dict[str, Any] = {
    "client": ClientId("EE", "GOV", "70000310", "other"),
    "service": ServiceId("EE", "GOV", "70008440", "registry", "getPerson", "v2"),
    "id": "another-id",
    "user_id": "EE99999999999",
    "issue": None,
    "represented_party": RepresentedParty(None, "1"),
    "body_name": "listPersonsResponse",
}


@pytest.mark.parametrize("field", list(ECHOED_CHANGES))
def test_each_echoed_field_changed_makes_the_response_inconsistent(field: str) -> None:
    req = parse_request(request(), XML)
    response = parse_response(build_response(req, etree.fromstring(RESPONSE_BODY)), XML)
    altered = dataclasses.replace(response, **{field: ECHOED_CHANGES[field]})
    assert fault_of(lambda: check_response_consistency(req, altered)).code == faults.INCONSISTENT_RESPONSE


def test_inconsistent_response_from_the_wire() -> None:
    req = parse_request(request(), XML)
    tampered = parse_response(
        response_text(replace={"issue": "<xrd:issue>case-18</xrd:issue>"}).encode(), XML
    )
    assert fault_of(lambda: check_response_consistency(req, tampered)).code == faults.INCONSISTENT_RESPONSE
    check_response_consistency(req, parse_response(response_text().encode(), XML))


# --- requestHash -------------------------------------------------------------------------


def test_request_hash_matches_openssl() -> None:
    soap = request()
    digest = subprocess.run(
        ["openssl", "dgst", "-sha512", "-binary"], input=soap, capture_output=True, check=True
    )
    assert request_hash(soap) == base64.b64encode(digest.stdout).decode()


def test_set_request_hash_inserts_one() -> None:
    value = request_hash(request())
    raw = set_request_hash(response_text().encode(), value, SHA512_ALGORITHM_URI)
    response = parse_response(raw, XML)
    assert response.request_hash == RequestHash(value, SHA512_ALGORITHM_URI)
    assert response.body.findtext(f"{{{PRODUCER_NS}}}name") == "Mari"


def test_set_request_hash_replaces_what_the_service_put_there() -> None:
    forged = (
        '<xrd:requestHash algorithmId="http://www.w3.org/2001/04/xmlenc#sha256">Zm9yZ2Vk</xrd:requestHash>'
    )
    value = request_hash(request())
    raw = set_request_hash(response_text(extra=forged).encode(), value)
    hashes = etree.fromstring(raw).findall(f".//{{{XROAD_NS}}}requestHash")
    assert [(h.text, h.get("algorithmId")) for h in hashes] == [(value, SHA512_ALGORITHM_URI)]
    assert parse_response(raw, XML).request_hash == RequestHash(value, SHA512_ALGORITHM_URI)


def test_set_request_hash_keeps_the_encoding() -> None:
    text = envelope(
        header(replace={"userId": "<xrd:userId>Jüri</xrd:userId>"}),
        RESPONSE_BODY,
        prolog='<?xml version="1.0" encoding="ISO-8859-1"?>',
    )
    raw = set_request_hash(text.encode("latin-1"), "aGFzaA==")
    assert raw.startswith(b"<?xml version='1.0' encoding='ISO-8859-1'?>")
    assert "Jüri".encode("latin-1") in raw
    assert parse_response(raw, "text/xml").user_id == "Jüri"


def test_set_request_hash_in_a_multipart_response_keeps_other_bytes() -> None:
    soap = response_text().encode()
    raw, content_type = swa_message(soap)
    message_hash = request_hash(request())
    new_soap = set_request_hash(unpack(raw, content_type).soap, message_hash)
    rebuilt = replace_soap_part(raw, content_type, new_soap)
    start = raw.index(soap)
    assert rebuilt[:start] == raw[:start]
    assert rebuilt[start + len(new_soap) :] == raw[start + len(soap) :]
    response = parse_response(rebuilt, content_type)
    assert response.request_hash == RequestHash(message_hash, SHA512_ALGORITHM_URI)
    assert response.attachments[0].data == BINARY


# --- faults --------------------------------------------------------------------------------


def test_built_fault_reads_back() -> None:
    raw = build_fault("Server.ClientProxy.UnknownMember", "no such member <EE/GOV/1>", "d-1", actor="gw-a")
    assert raw.startswith(b"<?xml")
    doc = etree.fromstring(raw)
    assert (
        doc.findtext(f"{{{SOAP_ENV_NS}}}Body/{{{SOAP_ENV_NS}}}Fault/faultcode")
        == "Server.ClientProxy.UnknownMember"
    )
    assert parse_fault(raw, XML) == SoapFault(
        "Server.ClientProxy.UnknownMember", "no such member <EE/GOV/1>", "gw-a", "d-1"
    )


def test_fault_text_with_characters_xml_cannot_hold() -> None:
    raw = build_fault("Client.InvalidSoap", "bad byte \x00\x1b here", "d-2")
    fault = parse_fault(raw, XML)
    assert fault is not None and fault.string == "bad byte \ufffd\ufffd here" and fault.actor is None


def test_fault_response_of_a_raised_fault() -> None:
    fault = fault_of(lambda: parse_request(b"", XML))
    parsed = parse_fault(fault_response(fault), XML)
    assert parsed == SoapFault(fault.code, fault.message, None, fault.detail)


def test_parse_fault_of_a_normal_response_is_none() -> None:
    assert parse_fault(response_text().encode(), XML) is None


def test_parse_response_of_a_fault_raises_service_fault() -> None:
    raw = build_fault("Server.ServerProxy.AccessDenied", "no access", "d-3")
    with pytest.raises(ServiceFault) as caught:
        parse_response(raw, XML)
    assert (caught.value.code, caught.value.message, caught.value.detail) == (
        "Server.ServerProxy.AccessDenied",
        "no access",
        "d-3",
    )
    assert caught.value.fault == SoapFault("Server.ServerProxy.AccessDenied", "no access", None, "d-3")


# --- builders ------------------------------------------------------------------------------


def test_build_request_round_trips() -> None:
    body = etree.fromstring(BODY)
    raw = build_request(
        ClientId("EE", "GOV", "1", "a"),
        ServiceId("EE", "GOV", "2", "b", "getPerson", "v1"),
        body,
        message_id="m-1",
        user_id="u-1",
        represented_party=RepresentedParty("COM", "9"),
    )
    assert body.getparent() is None  # the caller's element is copied, not taken
    message = parse_request(raw, XML)
    assert message.id == "m-1" and message.user_id == "u-1" and message.issue is None
    assert message.represented_party == RepresentedParty("COM", "9")
    assert b"ns0" not in raw  # namespaces declared once, with their usual prefixes


def test_build_response_keeps_foreign_header_blocks_and_their_namespaces() -> None:
    extra = (
        '<c:trace xmlns:c="urn:custom" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        ' xsi:type="c:T">1</c:trace>'
    )
    req = parse_request(request(extra=extra), XML)
    raw = build_response(req, etree.fromstring(RESPONSE_BODY))
    doc = etree.fromstring(raw)
    trace = doc.find(f"{{{SOAP_ENV_NS}}}Header/{{urn:custom}}trace")
    assert trace is not None and trace.text == "1"


# --- nothing but XRoadFault, whatever arrives --------------------------------------------

CONTENT_TYPES = [
    XML,
    "text/xml; charset=ISO-8859-1",
    "text/xml; charset=UTF-16",
    "multipart/related; boundary=MIME_boundary",
    'multipart/related; type="application/xop+xml"; boundary=MIME_boundary; start="<soap@client>"',
]
PARSERS = [parse_request, parse_response, parse_fault]


def only_xroad_faults(parser: Callable[[bytes, str | None], object], raw: bytes, content_type: str) -> None:
    try:
        parser(raw, content_type)
    except XRoadFault as fault:
        assert fault.code and fault.message is not None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=st.binary(max_size=2048), content_type=st.sampled_from(CONTENT_TYPES), which=st.sampled_from(PARSERS)
)
def test_random_bytes_raise_only_xroad_faults(
    raw: bytes, content_type: str, which: Callable[[bytes, str | None], object]
) -> None:
    only_xroad_faults(which, raw, content_type)


SEEDS = [
    (request(), XML),
    (response_text().encode(), XML),
    swa_message(request()),
    swa_message(response_text().encode(), soap_first=False),
]
TOKENS = [
    b"<",
    b">",
    b"</",
    b"/>",
    b"&",
    b"&amp;",
    b'"',
    b"xrd:",
    b"id:",
    b"<!DOCTYPE a>",
    b"<![CDATA[",
    b"\x00",
    b"\xff\xfe",
    b"\r\n",
    b"--MIME_boundary",
    b"\r\n--MIME_boundary--",
    b"MEMBER",
    b"4.0",
]


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, str]:
    raw, content_type = draw(st.sampled_from(SEEDS))
    data = bytearray(raw)
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "delete", "insert", "token"]))
        if action == "flip" and position < len(data):
            data[position] = draw(st.integers(0, 255))
        elif action == "delete":
            del data[position : position + draw(st.integers(1, 40))]
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        else:
            data[position:position] = draw(st.sampled_from(TOKENS))
    return bytes(data), content_type


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=mutated(), which=st.sampled_from(PARSERS))
def test_mutated_messages_raise_only_xroad_faults(
    message: tuple[bytes, str], which: Callable[[bytes, str | None], object]
) -> None:
    only_xroad_faults(which, *message)


def test_parsed_message_is_frozen() -> None:
    message: SoapMessage = parse_request(request(), XML)
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.id = "changed"  # type: ignore[misc]


def test_sha512_uri_is_the_xml_encryption_identifier() -> None:
    assert SHA512_ALGORITHM_URI == "http://www.w3.org/2001/04/xmlenc#sha512"
    assert len(base64.b64decode(request_hash(b"x"))) == hashlib.sha512().digest_size


# --- what X-Road accepts, and refuses (issue 17, build item 6) ------------------------------


@pytest.mark.parametrize(
    "body",
    [
        f'<p:getPersonRequest xmlns:p="{PRODUCER_NS}"/>',
        f'<p:getPerson_v2 xmlns:p="{PRODUCER_NS}"/>',
    ],
)
def test_a_body_element_that_starts_with_the_service_code_is_accepted(body: str) -> None:
    message = parse_request(request(body=body), XML)
    assert message.body_name.startswith("getPerson")


@pytest.mark.parametrize(
    "body", [f'<p:getPerso xmlns:p="{PRODUCER_NS}"/>', f'<p:GetPerson xmlns:p="{PRODUCER_NS}"/>']
)
def test_a_body_element_that_does_not_start_with_it_is_inconsistent(body: str) -> None:
    assert fault_of(lambda: parse_request(request(body=body), XML)).code == faults.INCONSISTENT_HEADERS


def test_a_response_body_that_starts_with_the_service_code_is_consistent() -> None:
    req = parse_request(request(), XML)
    response = parse_response(
        response_text(body=f'<p:getPersonResult xmlns:p="{PRODUCER_NS}"/>').encode(), XML
    )
    check_response_consistency(req, response)


@pytest.mark.parametrize(
    "extra",
    [
        "<xrd:priority>high</xrd:priority>",
        '<repr:somethingNew xmlns:repr="http://x-road.eu/xsd/representation.xsd">1</repr:somethingNew>',
        "<xrd:title>not where a title goes</xrd:title>",
    ],
)
def test_unknown_header_elements_are_ignored(extra: str) -> None:
    message = parse_request(request(extra=extra), XML)
    assert message.soap_bytes == request(extra=extra), "kept as sent: signed and logged unchanged"


@pytest.mark.parametrize(
    "replace",
    [
        {"client": CLIENT.replace('id:objectType="SUBSYSTEM"', 'id:objectType="SUBSYSTEM" colour="red"')},
        {"id": '<xrd:id SOAP-ENV:mustUnderstand="1">4894e35d-bf0f-44a6-867a-8e51f1daa7e0</xrd:id>'},
        {
            "client": CLIENT.replace(
                "<id:xRoadInstance>", '<id:xRoadInstance vendor:x="1" xmlns:vendor="urn:v">'
            )
        },
    ],
)
def test_extra_attributes_on_header_fields_are_ignored(replace: dict[str, str]) -> None:
    message = parse_request(request(replace=replace), XML)
    assert message.client == ClientId("EE", "GOV", "70000310", "portal")


@pytest.mark.parametrize(
    "replace",
    [
        {"client": CLIENT.replace('id:objectType="SUBSYSTEM"', 'objectType="SUBSYSTEM"')},
        {
            "client": CLIENT.replace('"SUBSYSTEM"', '"SUBSYSTEM" colour="red"').replace(
                '"SUBSYSTEM"', '"PERSON"'
            )
        },
        {"id": "<xrd:id><b>1</b></xrd:id>"},
    ],
)
def test_what_the_schemas_say_is_still_checked(replace: dict[str, str]) -> None:
    assert fault_of(lambda: parse_request(request(replace=replace), XML)).code == faults.INVALID_XML


def test_mtom_root_part_typed_soap_12_with_a_soap_11_envelope_is_accepted() -> None:
    soap = request()
    body = (
        b'--b\r\nContent-Type: application/xop+xml; charset=UTF-8; type="application/soap+xml"\r\n\r\n'
        + soap
        + b"\r\n--b--\r\n"
    )
    message = parse_request(body, 'multipart/related; type="application/xop+xml"; boundary=b')
    assert message.soap_bytes == soap and message.xop


def test_mtom_with_a_soap_12_envelope_is_still_refused() -> None:
    soap12 = (
        b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Header/><e:Body/></e:Envelope>'
    )
    body = (
        b'--b\r\nContent-Type: application/xop+xml; type="application/soap+xml"\r\n\r\n'
        + soap12
        + b"\r\n--b--"
    )
    fault = fault_of(lambda: parse_request(body, 'multipart/related; type="application/xop+xml"; boundary=b'))
    assert fault.code == faults.INVALID_SOAP and "1.2" in fault.message
