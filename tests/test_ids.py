"""Identifiers: every spelling round-trips, every mistake gets its fault code, and our
structural XML check agrees with a real schema validator (xmlschema over identifiers.xsd)."""

from __future__ import annotations

import contextlib
import dataclasses
import string
from pathlib import Path
from urllib.parse import unquote

import pytest
import xmlschema
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.faults import (
    INVALID_CLIENT_IDENTIFIER,
    INVALID_REQUEST,
    INVALID_SERVICE_IDENTIFIER,
    INVALID_XML,
    XRoadFault,
)
from gateway.ids import (
    ID_NS,
    MAX_CODE_LENGTH,
    ClientId,
    GlobalGroupId,
    IdentifierError,
    LocalGroupId,
    ObjectType,
    SecurityServerId,
    ServiceId,
    XRoadId,
    format_represented_party,
    identifier_from_xml,
    parse_represented_party,
    validate_code,
)
from gateway.xmlsafe import parse_xml

INVALID_SECURITY_SERVER = "Client.InvalidSecurityServer"
WSDL_DIR = Path(__file__).resolve().parents[1] / "wsdl" / "xroad"
XROAD_NS = "http://x-road.eu/xsd/xroad.xsd"
TEST_NS = "urn:xgate:test-ids"

# One element per restricted identifier type, so each type can be checked by the schema itself.
_WRAPPER_XSD = f"""<?xml version="1.0"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:id="{ID_NS}"
           targetNamespace="{TEST_NS}" elementFormDefault="qualified">
  <xs:import namespace="{ID_NS}" schemaLocation="identifiers.xsd"/>
  <xs:element name="client" type="id:XRoadClientIdentifierType"/>
  <xs:element name="service" type="id:XRoadServiceIdentifierType"/>
  <xs:element name="securityServer" type="id:XRoadSecurityServerIdentifierType"/>
  <xs:element name="globalGroup" type="id:XRoadGlobalGroupIdentifierType"/>
  <xs:element name="localGroup" type="id:XRoadLocalGroupIdentifierType"/>
</xs:schema>
"""


_SCHEMA: xmlschema.XMLSchema | None = None


def wrapper_schema() -> xmlschema.XMLSchema:
    """The same schema for hypothesis tests, which cannot take function-scoped fixtures."""
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = xmlschema.XMLSchema(_WRAPPER_XSD, base_url=str(WSDL_DIR) + "/")
    return _SCHEMA


@pytest.fixture
def schema() -> xmlschema.XMLSchema:
    return wrapper_schema()


def tag(name: str) -> str:
    return f"{{{TEST_NS}}}{name}"


def reparse(el: etree._Element) -> etree._Element:
    """Serialise and parse back the way a request arrives: bytes through the hardened parser."""
    return parse_xml(etree.tostring(el))


# --- strategies ----------------------------------------------------------------------------

CODE_ALPHABET = string.ascii_letters + string.digits + "'()+,-.=?"
codes = st.text(alphabet=CODE_ALPHABET, min_size=1, max_size=12).filter(lambda c: c not in {".", ".."})
optional_codes = st.none() | codes
clients = st.builds(ClientId, codes, codes, codes, optional_codes)
services = st.builds(ServiceId, codes, codes, codes, optional_codes, codes, optional_codes)
rest_services = st.builds(ServiceId, codes, codes, codes, codes, codes)
servers = st.builds(SecurityServerId, codes, codes, codes, codes)
global_groups = st.builds(GlobalGroupId, codes, codes)
local_groups = st.builds(LocalGroupId, codes)
any_ids: st.SearchStrategy[XRoadId] = st.one_of(clients, services, servers, global_groups, local_groups)

# What a service's own path may hold: unreserved characters and some escapes, never a dot-segment.
rest_segments = st.text(alphabet=string.ascii_letters + string.digits + "-._~", max_size=8).filter(
    lambda s: s not in {".", ".."}
) | st.sampled_from(["%20", "a%2Fb", "%C3%A9", "x.y", "..."])
rest_paths = st.lists(rest_segments, max_size=4).map(lambda segs: "".join("/" + s for s in segs))


def from_text(identifier: XRoadId, text: str) -> XRoadId:
    if isinstance(identifier, ServiceId):
        return ServiceId.from_text(text, has_subsystem=identifier.subsystem_code is not None)
    return type(identifier).from_text(text)


# --- validate_code -------------------------------------------------------------------------


def test_every_allowed_character_is_a_valid_code() -> None:
    assert validate_code(CODE_ALPHABET, "memberCode") == CODE_ALPHABET
    assert validate_code("x" * MAX_CODE_LENGTH, "memberCode") == "x" * MAX_CODE_LENGTH


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "a b",
        "a/b",
        "a\\b",
        "a:b",
        "a;b",
        "a%b",
        "a_b",
        "a~b",
        "a*b",
        "ä",
        "a\n",
        "\tb",
        ".",
        "..",
        "x" * 256,
    ],
)
def test_invalid_codes_are_refused(value: str) -> None:
    with pytest.raises(IdentifierError) as caught:
        validate_code(value, "memberCode")
    assert caught.value.code == INVALID_REQUEST
    assert "memberCode" in caught.value.message


def test_validate_code_uses_the_callers_fault_code() -> None:
    with pytest.raises(IdentifierError) as caught:
        validate_code("a b", "serviceCode", fault_code=INVALID_SERVICE_IDENTIFIER)
    assert caught.value.code == INVALID_SERVICE_IDENTIFIER
    assert isinstance(caught.value, XRoadFault)
    assert caught.value.is_client_error


def test_dots_are_allowed_when_not_a_dot_segment() -> None:
    assert validate_code("...", "memberCode") == "..."
    assert validate_code("v1.0", "serviceVersion") == "v1.0"


# --- construction --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "code"),
    [
        (lambda: ClientId("", "GOV", "1"), INVALID_CLIENT_IDENTIFIER),
        (lambda: ClientId("EE", "G V", "1"), INVALID_CLIENT_IDENTIFIER),
        (lambda: ClientId("EE", "GOV", "1/2"), INVALID_CLIENT_IDENTIFIER),
        (lambda: ClientId("EE", "GOV", "1", ""), INVALID_CLIENT_IDENTIFIER),
        (lambda: ClientId("EE", "GOV", "1", ".."), INVALID_CLIENT_IDENTIFIER),
        (lambda: ServiceId("EE", "GOV", "1", None, ""), INVALID_SERVICE_IDENTIFIER),
        (lambda: ServiceId("EE", "GOV", "1", "sub", "get", "v 1"), INVALID_SERVICE_IDENTIFIER),
        (lambda: ServiceId("EE", "GOV", "1", "s%2F", "get"), INVALID_SERVICE_IDENTIFIER),
        (lambda: ServiceId("EE", "GÖV", "1", None, "get"), INVALID_SERVICE_IDENTIFIER),
        (lambda: SecurityServerId("EE", "GOV", "1", "server 1"), INVALID_SECURITY_SERVER),
        (lambda: SecurityServerId("EE", "", "1", "ss1"), INVALID_SECURITY_SERVER),
        (lambda: GlobalGroupId("EE", "all members"), INVALID_CLIENT_IDENTIFIER),
        (lambda: GlobalGroupId("", "group"), INVALID_CLIENT_IDENTIFIER),
        (lambda: LocalGroupId("a/b"), INVALID_CLIENT_IDENTIFIER),
    ],
)
def test_an_invalid_identifier_cannot_be_built(build: object, code: str) -> None:
    assert callable(build)
    with pytest.raises(IdentifierError) as caught:
        build()
    assert caught.value.code == code


def test_identifiers_are_frozen() -> None:
    client = ClientId("EE", "GOV", "1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        client.member_code = "2"  # type: ignore[misc]


def test_derived_identifiers() -> None:
    subsystem = ClientId("EE", "GOV", "70000310", "sub")
    member = ClientId("EE", "GOV", "70000310")
    assert subsystem.object_type is ObjectType.SUBSYSTEM and subsystem.is_subsystem
    assert member.object_type is ObjectType.MEMBER and not member.is_subsystem
    assert subsystem.member == member and member.member is member
    service = ServiceId("EE", "GOV", "70000310", "sub", "getRandom", "v1")
    assert service.provider == subsystem
    assert service.object_type is ObjectType.SERVICE
    assert SecurityServerId("EE", "GOV", "70000310", "ss1").owner == member
    assert GlobalGroupId("EE", "all").object_type is ObjectType.GLOBALGROUP
    assert LocalGroupId("admins").object_type is ObjectType.LOCALGROUP


# --- ordering and hashing ------------------------------------------------------------------


def test_member_sorts_before_its_subsystems_without_comparing_none_to_str() -> None:
    member = ClientId("EE", "GOV", "1")
    a, b = ClientId("EE", "GOV", "1", "a"), ClientId("EE", "GOV", "1", "b")
    other = ClientId("EE", "GOV", "2")
    assert sorted([b, other, a, member]) == [member, a, b, other]
    assert member < a <= a < b and b > member and a >= a
    unversioned = ServiceId("EE", "GOV", "1", None, "get")
    versioned = ServiceId("EE", "GOV", "1", None, "get", "v1")
    assert sorted([versioned, unversioned]) == [unversioned, versioned]
    assert ServiceId("EE", "GOV", "1", None, "z") < ServiceId("EE", "GOV", "1", "a", "a")


def test_identifiers_of_different_types_do_not_compare() -> None:
    with pytest.raises(TypeError):
        assert ClientId("EE", "GOV", "1") < GlobalGroupId("EE", "GOV")
    assert ClientId("EE", "GOV", "1") != LocalGroupId("1")


# Few distinct codes, so that identifiers often share a prefix and differ only by an absent part.
few_codes = st.sampled_from(["A", "B", "b", "1"])
close_clients = st.builds(ClientId, few_codes, few_codes, few_codes, st.none() | few_codes)
close_services = st.builds(
    ServiceId, few_codes, few_codes, few_codes, st.none() | few_codes, few_codes, st.none() | few_codes
)


def absent_first(identifier: XRoadId) -> tuple[tuple[bool, str], ...]:
    """An independent statement of the order: field by field, an absent part before any code."""
    return tuple((value is not None, value or "") for value in dataclasses.astuple(identifier))


@settings(max_examples=150)
@given(st.lists(close_clients, max_size=6), st.lists(close_services, max_size=6))
def test_ordering_is_total_and_consistent_with_equality(cs: list[ClientId], ss: list[ServiceId]) -> None:
    for items in (cs, ss):
        assert sorted(items) == sorted(items, key=absent_first)
        for x in items:
            for y in items:
                assert (x == y) == (not x < y and not y < x) == (x <= y and x >= y)
                assert (x < y) == (y > x)
                if x == y:
                    assert hash(x) == hash(y)
    assert len(set(cs)) == len({c.to_text() for c in cs})


@settings(max_examples=200)
@given(any_ids)
def test_equal_identifiers_hash_equal_and_work_as_keys(identifier: XRoadId) -> None:
    twin = dataclasses.replace(identifier)
    assert twin == identifier and hash(twin) == hash(identifier)
    assert {identifier: 1}[twin] == 1


# --- text form -----------------------------------------------------------------------------


def test_text_form_examples() -> None:
    assert ClientId.from_text("EE/GOV/70000310") == ClientId("EE", "GOV", "70000310")
    assert ClientId.from_text("EE/GOV/70000310/sub") == ClientId("EE", "GOV", "70000310", "sub")
    assert str(ClientId("EE", "GOV", "70000310", "sub")) == "EE/GOV/70000310/sub"
    # Each part percent-encoded on its own (PROTOCOL.md "Identifiers").
    odd = ClientId("EE", "C=(1)", "a+b,c?", "x'y")
    assert odd.to_text() == "EE/C%3D%281%29/a%2Bb%2Cc%3F/x%27y"
    assert ClientId.from_text(odd.to_text()) == odd
    assert ClientId.from_text("EE/GOV/%37%30") == ClientId("EE", "GOV", "70")
    service = ServiceId("EE", "GOV", "1", "sub", "getRandom", "v1")
    assert service.to_text() == "EE/GOV/1/sub/getRandom/v1"
    assert ServiceId.from_text("EE/GOV/1/sub/getRandom") == ServiceId("EE", "GOV", "1", "sub", "getRandom")
    assert ServiceId.from_text("EE/GOV/1/sub/getRandom/v1") == service
    assert ServiceId.from_text("EE/GOV/1/getRandom", has_subsystem=False) == ServiceId(
        "EE", "GOV", "1", None, "getRandom"
    )
    assert ServiceId.from_text("EE/GOV/1/getRandom/v1", has_subsystem=False) == ServiceId(
        "EE", "GOV", "1", None, "getRandom", "v1"
    )
    assert SecurityServerId.from_text("EE/GOV/1/ss1") == SecurityServerId("EE", "GOV", "1", "ss1")
    assert GlobalGroupId.from_text("EE/security-server-owners") == GlobalGroupId(
        "EE", "security-server-owners"
    )
    assert LocalGroupId.from_text("admins") == LocalGroupId("admins")


@pytest.mark.parametrize(
    ("parse", "text", "code"),
    [
        (ClientId.from_text, "", INVALID_CLIENT_IDENTIFIER),
        (ClientId.from_text, "EE/GOV", INVALID_CLIENT_IDENTIFIER),
        (ClientId.from_text, "EE/GOV/1/sub/extra", INVALID_CLIENT_IDENTIFIER),
        (ClientId.from_text, "EE/GOV/1/", INVALID_CLIENT_IDENTIFIER),
        (ClientId.from_text, "EE//1", INVALID_CLIENT_IDENTIFIER),
        (ClientId.from_text, "EE/GOV/a%2Fb", INVALID_CLIENT_IDENTIFIER),  # decoded after splitting
        (ClientId.from_text, "EE/GOV/a b", INVALID_CLIENT_IDENTIFIER),
        (ClientId.from_text, "EE/GOV/%zz", INVALID_CLIENT_IDENTIFIER),
        (ClientId.from_text, "EE/GOV/%FF", INVALID_CLIENT_IDENTIFIER),
        (ClientId.from_text, "EE/GOV/%2e%2e", INVALID_CLIENT_IDENTIFIER),
        (ServiceId.from_text, "EE/GOV/1/sub", INVALID_SERVICE_IDENTIFIER),
        (ServiceId.from_text, "EE/GOV/1/sub/get/v1/x", INVALID_SERVICE_IDENTIFIER),
        (lambda t: ServiceId.from_text(t, has_subsystem=False), "EE/GOV/1", INVALID_SERVICE_IDENTIFIER),
        (lambda t: ServiceId.from_text(t, has_subsystem=False), "EE/GOV/1/s/g/v", INVALID_SERVICE_IDENTIFIER),
        (SecurityServerId.from_text, "EE/GOV/1", INVALID_SECURITY_SERVER),
        (SecurityServerId.from_text, "EE/GOV/1/ss 1", INVALID_SECURITY_SERVER),
        (GlobalGroupId.from_text, "EE", INVALID_CLIENT_IDENTIFIER),
        (GlobalGroupId.from_text, "EE/a/b", INVALID_CLIENT_IDENTIFIER),
        (LocalGroupId.from_text, "a/b", INVALID_CLIENT_IDENTIFIER),
        (LocalGroupId.from_text, "", INVALID_CLIENT_IDENTIFIER),
    ],
)
def test_bad_text_forms_are_refused(parse: object, text: str, code: str) -> None:
    assert callable(parse)
    with pytest.raises(IdentifierError) as caught:
        parse(text)
    assert caught.value.code == code


@settings(max_examples=200)
@given(any_ids)
def test_every_identifier_round_trips_through_text(identifier: XRoadId) -> None:
    text = identifier.to_text()
    assert str(identifier) == text
    assert from_text(identifier, text) == identifier
    # Each part is encoded on its own: the separators are exactly the structure's.
    assert text.count("/") == len([f for f in dataclasses.astuple(identifier) if f is not None]) - 1


@settings(max_examples=200)
@given(st.text(alphabet=CODE_ALPHABET + "/%2fF ", max_size=30))
def test_text_parsers_fail_only_with_identifier_errors(text: str) -> None:
    for parse in (
        ClientId.from_text,
        ServiceId.from_text,
        SecurityServerId.from_text,
        GlobalGroupId.from_text,
    ):
        with contextlib.suppress(IdentifierError):
            parse(text)


def test_represented_party() -> None:
    assert parse_represented_party("COM/12345") == ("COM", "12345")
    assert parse_represented_party("12345") == (None, "12345")
    assert parse_represented_party("C%3D1/a%2Bb") == ("C=1", "a+b")
    assert format_represented_party("C=1", "a+b") == "C%3D1/a%2Bb"
    assert format_represented_party(None, "12345") == "12345"
    for bad in ["", "/1", "COM/", "a/b/c", "a b", "COM/%2F"]:
        with pytest.raises(IdentifierError) as caught:
            parse_represented_party(bad)
        assert caught.value.code == INVALID_REQUEST


@settings(max_examples=200)
@given(optional_codes, codes)
def test_represented_party_round_trips(party_class: str | None, party_code: str) -> None:
    assert parse_represented_party(format_represented_party(party_class, party_code)) == (
        party_class,
        party_code,
    )


# --- REST path -----------------------------------------------------------------------------


def test_rest_path_examples() -> None:
    service = ServiceId("EE", "GOV", "70000310", "sub", "petstore")
    assert ServiceId.from_rest_path("/r1/EE/GOV/70000310/sub/petstore") == (service, "")
    assert ServiceId.from_rest_path("/r1/EE/GOV/70000310/sub/petstore/") == (service, "/")
    assert ServiceId.from_rest_path("/r1/EE/GOV/70000310/sub/petstore/pets/1") == (service, "/pets/1")
    # The service's own path is passed on as it came, still encoded.
    assert ServiceId.from_rest_path("/r1/EE/GOV/70000310/sub/petstore/a%2Fb/%20") == (service, "/a%2Fb/%20")
    assert ServiceId.from_rest_path("/r1/EE/GOV/70000310/sub/petstore/v1.0/...") == (service, "/v1.0/...")
    odd = ServiceId("EE", "C=1", "a+b", "s?", "list(all)")
    assert odd.to_rest_path() == "/r1/EE/C%3D1/a%2Bb/s%3F/list%28all%29"
    assert ServiceId.from_rest_path(odd.to_rest_path("/x")) == (odd, "/x")
    metadata = ServiceId.from_rest_path("/r1/EE/GOV/70000310/sub/listMethods")
    assert metadata == (ServiceId("EE", "GOV", "70000310", "sub", "listMethods"), "")


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/r2/EE/GOV/1/sub/svc", INVALID_REQUEST),
        ("r1/EE/GOV/1/sub/svc", INVALID_REQUEST),
        ("/r1/EE/GOV/1/sub/svc?x=1", INVALID_REQUEST),
        ("/r1/EE/GOV/1/sub/svc#frag", INVALID_REQUEST),
        ("/r1/EE/GOV/1/sub", INVALID_SERVICE_IDENTIFIER),
        ("/r1/", INVALID_SERVICE_IDENTIFIER),
        ("/r1/EE//1/sub/svc", INVALID_SERVICE_IDENTIFIER),
        ("/r1/EE/GOV/1/sub/", INVALID_SERVICE_IDENTIFIER),
        ("/r1/EE/GOV/1/s b/svc", INVALID_SERVICE_IDENTIFIER),
        ("/r1/EE/GOV/1/s%20b/svc", INVALID_SERVICE_IDENTIFIER),
        ("/r1/EE/GOV/1/s_b/svc", INVALID_SERVICE_IDENTIFIER),
        # Traversal in the identifier part, plain or encoded.
        ("/r1/EE/GOV/../sub/svc", INVALID_REQUEST),
        ("/r1/EE/GOV/1/./svc", INVALID_REQUEST),
        ("/r1/EE/GOV/%2e%2e/sub/svc", INVALID_REQUEST),
        ("/r1/EE/GOV/%2E./sub/svc", INVALID_REQUEST),
        ("/r1/EE/GOV/1/sub/%2e", INVALID_REQUEST),
        ("/r1/EE/GOV/1/a%2Fb/svc", INVALID_REQUEST),
        ("/r1/EE/GOV/1/a%2fb/svc", INVALID_REQUEST),
        ("/r1/EE/GOV/1/a%5Cb/svc", INVALID_REQUEST),
        ("/r1/EE/GOV/1/sub/svc%2F..", INVALID_REQUEST),
        # Traversal in the part passed on to the service.
        ("/r1/EE/GOV/1/sub/svc/..", INVALID_REQUEST),
        ("/r1/EE/GOV/1/sub/svc/../admin", INVALID_REQUEST),
        ("/r1/EE/GOV/1/sub/svc/a/./b", INVALID_REQUEST),
        ("/r1/EE/GOV/1/sub/svc/%2e%2e/admin", INVALID_REQUEST),
        ("/r1/EE/GOV/1/sub/svc/%2E%2e", INVALID_REQUEST),
        ("/r1/EE/GOV/1/sub/svc/.%2e/x", INVALID_REQUEST),
        ("/r1/EE/GOV/1/sub/svc/..%2Fadmin", INVALID_REQUEST),
        ("/r1/EE/GOV/1/sub/svc/a%2F..%2Fadmin", INVALID_REQUEST),
        ("/r1/EE/GOV/1/sub/svc/..%5Cadmin", INVALID_REQUEST),
        ("/r1/EE/GOV/1/sub/svc/..\\admin", INVALID_REQUEST),
    ],
)
def test_bad_rest_paths_are_refused(path: str, code: str) -> None:
    with pytest.raises(IdentifierError) as caught:
        ServiceId.from_rest_path(path)
    assert caught.value.code == code


def test_only_rest_shaped_services_have_a_rest_path() -> None:
    with pytest.raises(ValueError, match="subsystem"):
        ServiceId("EE", "GOV", "1", None, "svc").to_rest_path()
    with pytest.raises(ValueError, match="version"):
        ServiceId("EE", "GOV", "1", "sub", "svc", "v1").to_rest_path()
    with pytest.raises(ValueError, match="'/'"):
        ServiceId("EE", "GOV", "1", "sub", "svc").to_rest_path("x")


@settings(max_examples=200)
@given(rest_services, rest_paths)
def test_rest_services_round_trip_through_the_path(service: ServiceId, rest: str) -> None:
    path = service.to_rest_path(rest)
    assert ServiceId.from_rest_path(path) == (service, rest)
    assert ServiceId.from_text(path.removeprefix("/r1/").removesuffix(rest)) == service


@settings(max_examples=300)
@given(
    st.lists(
        st.sampled_from(["a", "B", "1", ".", "..", "%2e", "%2E", "%2f", "%5c", "\\", "", "%", "x.y"]),
        max_size=9,
    )
)
def test_no_accepted_rest_path_hides_a_dot_segment(pieces: list[str]) -> None:
    path = "/r1/" + "/".join(pieces)
    try:
        service, rest = ServiceId.from_rest_path(path)
    except IdentifierError as error:
        assert error.code in {INVALID_REQUEST, INVALID_SERVICE_IDENTIFIER}
        return
    assert service.subsystem_code is not None
    for segment in rest.split("/"):
        for piece in unquote(segment).replace("\\", "/").split("/"):
            assert piece not in {".", ".."}


# --- XML form ------------------------------------------------------------------------------


def test_client_xml_is_what_the_schema_describes(schema: xmlschema.XMLSchema) -> None:
    client = ClientId("EE", "GOV", "70000310", "sub")
    el = client.to_xml(f"{{{XROAD_NS}}}client", nsmap={"xrd": XROAD_NS})
    assert el.get(f"{{{ID_NS}}}objectType") == "SUBSYSTEM"
    assert [etree.QName(c).localname for c in el] == [
        "xRoadInstance",
        "memberClass",
        "memberCode",
        "subsystemCode",
    ]
    assert all(etree.QName(c).namespace == ID_NS for c in el)
    assert etree.tostring(el).startswith(b'<xrd:client xmlns:xrd="http://x-road.eu/xsd/xroad.xsd"')
    # The real xroad.xsd header elements accept what we build.
    xroad = xmlschema.XMLSchema(str(WSDL_DIR / "xroad.xsd"))
    xroad.validate(etree.tostring(el).decode())
    service = ServiceId("EE", "GOV", "70000310", "sub", "getRandom", "v1")
    xroad.validate(etree.tostring(service.to_xml(etree.QName(XROAD_NS, "service"))).decode())
    member = ClientId("EE", "GOV", "70000310").to_xml(tag("client"))
    assert member.get(f"{{{ID_NS}}}objectType") == "MEMBER"
    assert len(member) == 3
    schema.validate(etree.tostring(member).decode())


def test_identifier_joins_a_document_without_redeclaring_namespaces() -> None:
    envelope = etree.Element("{urn:envelope}Header", nsmap={"xrd": XROAD_NS, "id": ID_NS})
    envelope.append(ClientId("EE", "GOV", "1").to_xml(f"{{{XROAD_NS}}}client"))
    assert etree.tostring(envelope).count(b"xmlns:id=") == 1


@settings(max_examples=150, deadline=None)
@given(any_ids)
def test_every_identifier_round_trips_through_schema_valid_xml(identifier: XRoadId) -> None:
    element_name = {
        ClientId: "client",
        ServiceId: "service",
        SecurityServerId: "securityServer",
        GlobalGroupId: "globalGroup",
        LocalGroupId: "localGroup",
    }[type(identifier)]
    el = identifier.to_xml(tag(element_name))
    wrapper_schema().validate(etree.tostring(el).decode())
    parsed = reparse(el)
    assert type(identifier).from_xml(parsed) == identifier
    assert identifier_from_xml(parsed) == identifier


ID = f'xmlns:t="{TEST_NS}" xmlns:id="{ID_NS}"'
CLIENT_CODES = (
    "<id:xRoadInstance>EE</id:xRoadInstance><id:memberClass>GOV</id:memberClass>"
    "<id:memberCode>1</id:memberCode>"
)
SERVICE_CODES = CLIENT_CODES + "<id:serviceCode>get</id:serviceCode>"
SERVER_CODES = CLIENT_CODES + "<id:serverCode>ss1</id:serverCode>"


def member(inner: str, object_type: str = "MEMBER") -> str:
    return f'<t:client {ID} id:objectType="{object_type}">{inner}</t:client>'


@pytest.mark.parametrize(
    ("parse", "xml", "code"),
    [
        # Structure: what identifiers.xsd forbids is Client.InvalidXml.
        (ClientId.from_xml, f"<t:client {ID}>{CLIENT_CODES}</t:client>", INVALID_XML),
        (ClientId.from_xml, f'<t:client {ID} objectType="MEMBER">{CLIENT_CODES}</t:client>', INVALID_XML),
        (ClientId.from_xml, f'<t:client {ID} id:objectType="PERSON">{CLIENT_CODES}</t:client>', INVALID_XML),
        (ClientId.from_xml, f'<t:client {ID} id:objectType="member">{CLIENT_CODES}</t:client>', INVALID_XML),
        (ClientId.from_xml, f'<t:client {ID} id:objectType=" MEMBER">{CLIENT_CODES}</t:client>', INVALID_XML),
        (
            ClientId.from_xml,
            f'<t:client {ID} id:objectType="MEMBER" extra="1">{CLIENT_CODES}</t:client>',
            INVALID_XML,
        ),
        (
            ClientId.from_xml,
            f'<t:client {ID} id:objectType="MEMBER"><id:xRoadInstance>EE</id:xRoadInstance>'
            "<id:memberClass>GOV</id:memberClass></t:client>",
            INVALID_XML,
        ),
        (
            ClientId.from_xml,
            f'<t:client {ID} id:objectType="MEMBER"><id:memberClass>GOV</id:memberClass>'
            "<id:xRoadInstance>EE</id:xRoadInstance><id:memberCode>1</id:memberCode></t:client>",
            INVALID_XML,
        ),
        (
            ClientId.from_xml,
            member(CLIENT_CODES + "<id:memberCode>2</id:memberCode>"),
            INVALID_XML,
        ),
        (
            ClientId.from_xml,
            f'<t:client {ID} id:objectType="MEMBER"><id:xRoadInstance>EE</id:xRoadInstance>'
            "<id:memberClass>GOV</id:memberClass><memberCode>1</memberCode></t:client>",
            INVALID_XML,
        ),
        (
            ClientId.from_xml,
            member(CLIENT_CODES + "<id:serviceCode>x</id:serviceCode>"),
            INVALID_XML,
        ),
        (
            ClientId.from_xml,
            f'<t:client {ID} id:objectType="MEMBER">{CLIENT_CODES}<id:unknown>x</id:unknown></t:client>',
            INVALID_XML,
        ),
        (
            ClientId.from_xml,
            f'<t:client {ID} id:objectType="MEMBER"><id:xRoadInstance>EE</id:xRoadInstance>'
            "<id:memberClass>GOV</id:memberClass><id:memberCode><b>1</b></id:memberCode></t:client>",
            INVALID_XML,
        ),
        (ClientId.from_xml, f'<t:client {ID} id:objectType="MEMBER">x{CLIENT_CODES}</t:client>', INVALID_XML),
        (
            ClientId.from_xml,
            f'<t:client {ID} id:objectType="MEMBER">{CLIENT_CODES}tail</t:client>',
            INVALID_XML,
        ),
        # Schema-valid, but not a client the protocol allows.
        (
            ClientId.from_xml,
            member(CLIENT_CODES + "<id:subsystemCode>s</id:subsystemCode>"),
            INVALID_CLIENT_IDENTIFIER,
        ),
        (
            ClientId.from_xml,
            f'<t:client {ID} id:objectType="SUBSYSTEM">{CLIENT_CODES}</t:client>',
            INVALID_CLIENT_IDENTIFIER,
        ),
        (
            ClientId.from_xml,
            f'<t:client {ID} id:objectType="SERVER">{CLIENT_CODES}</t:client>',
            INVALID_CLIENT_IDENTIFIER,
        ),
        (
            ClientId.from_xml,
            f'<t:client {ID} id:objectType="MEMBER"><id:xRoadInstance>EE</id:xRoadInstance>'
            "<id:memberClass>GOV</id:memberClass><id:memberCode/></t:client>",
            INVALID_CLIENT_IDENTIFIER,
        ),
        (
            ClientId.from_xml,
            f'<t:client {ID} id:objectType="MEMBER"><id:xRoadInstance>EE</id:xRoadInstance>'
            "<id:memberClass>GOV</id:memberClass><id:memberCode> 1</id:memberCode></t:client>",
            INVALID_CLIENT_IDENTIFIER,
        ),
        # Services, gateways and groups.
        (
            ServiceId.from_xml,
            f'<t:service {ID} id:objectType="MEMBER">{SERVICE_CODES}</t:service>',
            INVALID_XML,
        ),
        (
            ServiceId.from_xml,
            f'<t:service {ID} id:objectType="SERVICE">{CLIENT_CODES}</t:service>',
            INVALID_XML,
        ),
        (
            ServiceId.from_xml,
            f'<t:service {ID} id:objectType="SERVICE">{CLIENT_CODES}'
            "<id:serviceCode>get it</id:serviceCode></t:service>",
            INVALID_SERVICE_IDENTIFIER,
        ),
        (
            ServiceId.from_xml,
            f'<t:service {ID} id:objectType="SERVICE">{SERVICE_CODES}<id:serviceVersion/></t:service>',
            INVALID_SERVICE_IDENTIFIER,
        ),
        (
            SecurityServerId.from_xml,
            f'<t:securityServer {ID} id:objectType="SERVICE">{SERVER_CODES}</t:securityServer>',
            INVALID_XML,
        ),
        (
            SecurityServerId.from_xml,
            f'<t:securityServer {ID} id:objectType="SERVER">{CLIENT_CODES}</t:securityServer>',
            INVALID_XML,
        ),
        (
            SecurityServerId.from_xml,
            f'<t:securityServer {ID} id:objectType="SERVER">{CLIENT_CODES}<id:serverCode>s/1</id:serverCode>'
            "</t:securityServer>",
            INVALID_SECURITY_SERVER,
        ),
        (
            GlobalGroupId.from_xml,
            f'<t:globalGroup {ID} id:objectType="GLOBALGROUP"><id:groupCode>g</id:groupCode></t:globalGroup>',
            INVALID_XML,
        ),
        (
            GlobalGroupId.from_xml,
            f'<t:globalGroup {ID} id:objectType="GLOBALGROUP"><id:xRoadInstance>EE</id:xRoadInstance>'
            "<id:groupCode>all members</id:groupCode></t:globalGroup>",
            INVALID_CLIENT_IDENTIFIER,
        ),
        (
            LocalGroupId.from_xml,
            f'<t:localGroup {ID} id:objectType="LOCALGROUP"><id:xRoadInstance>EE</id:xRoadInstance>'
            "<id:groupCode>g</id:groupCode></t:localGroup>",
            INVALID_XML,
        ),
        (
            LocalGroupId.from_xml,
            f'<t:localGroup {ID} id:objectType="GLOBALGROUP"><id:groupCode>g</id:groupCode></t:localGroup>',
            INVALID_XML,
        ),
        (identifier_from_xml, f"<t:client {ID}>{CLIENT_CODES}</t:client>", INVALID_XML),
        (identifier_from_xml, f'<t:client {ID} id:objectType="X">{CLIENT_CODES}</t:client>', INVALID_XML),
    ],
)
def test_bad_xml_identifiers_get_their_fault_code_and_the_schema_agrees(
    schema: xmlschema.XMLSchema, parse: object, xml: str, code: str
) -> None:
    assert callable(parse)
    with pytest.raises(IdentifierError) as caught:
        parse(parse_xml(xml.encode()))
    assert caught.value.code == code
    # Client.InvalidXml exactly when identifiers.xsd itself rejects the element.
    assert schema.is_valid(xml) == (code != INVALID_XML)


def test_xml_tolerates_what_the_schema_tolerates(schema: xmlschema.XMLSchema) -> None:
    xsi = "http://www.w3.org/2001/XMLSchema-instance"
    pretty = f"""<t:client {ID} xmlns:xsi="{xsi}"
                  id:objectType="SUBSYSTEM" xsi:type="id:XRoadClientIdentifierType">
        <!-- the consumer -->
        <id:xRoadInstance>EE</id:xRoadInstance>
        <id:memberClass>GOV</id:memberClass>
        <id:memberCode>700<!-- split -->00310</id:memberCode>
        <?note a processing instruction?>
        <id:subsystemCode>sub</id:subsystemCode>
    </t:client>"""
    schema.validate(pretty)
    assert ClientId.from_xml(parse_xml(pretty.encode())) == ClientId("EE", "GOV", "70000310", "sub")


# Children drawn from every identifier element (and an intruder), in any order and number,
# with any objectType: our verdict on structure must match the schema validator's.
_CHILD_NAMES = ["xRoadInstance", "memberClass", "memberCode", "subsystemCode", "groupCode", "serviceCode"]
_CHILD_NAMES += ["serviceVersion", "serverCode", "other"]
_PARSERS = {
    "client": ClientId.from_xml,
    "service": ServiceId.from_xml,
    "securityServer": SecurityServerId.from_xml,
    "globalGroup": GlobalGroupId.from_xml,
    "localGroup": LocalGroupId.from_xml,
}


@settings(max_examples=250, deadline=None)
@given(
    st.sampled_from(sorted(_PARSERS)),
    st.none() | st.sampled_from([t.value for t in ObjectType] + ["OTHER"]),
    st.lists(st.tuples(st.sampled_from(_CHILD_NAMES), st.sampled_from(["EE", "", "a b"])), max_size=7),
)
def test_structure_verdicts_match_the_schema_validator(
    root: str, object_type: str | None, children: list[tuple[str, str]]
) -> None:
    attribute = "" if object_type is None else f' id:objectType="{object_type}"'
    inner = "".join(f"<id:{name}>{text}</id:{name}>" for name, text in children)
    xml = f"<t:{root} {ID}{attribute}>{inner}</t:{root}>"
    try:
        _PARSERS[root](parse_xml(xml.encode()))
        structurally_valid = True
    except IdentifierError as error:
        structurally_valid = error.code != INVALID_XML
    assert structurally_valid == wrapper_schema().is_valid(xml), xml


def test_identifier_from_xml_dispatches_on_object_type() -> None:
    subjects: list[XRoadId] = [
        ClientId("EE", "GOV", "1"),
        ClientId("EE", "GOV", "1", "sub"),
        GlobalGroupId("EE", "all"),
        LocalGroupId("admins"),
        SecurityServerId("EE", "GOV", "1", "ss1"),
        ServiceId("EE", "GOV", "1", None, "get"),
    ]
    for subject in subjects:
        assert identifier_from_xml(reparse(subject.to_xml(tag("subject")))) == subject
