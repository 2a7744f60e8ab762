"""Service descriptions: what registration accepts and refuses, and the copies the metadata services publish.

Samples are the public ones in PROTOCOL.md "Samples"; the rest are small variations of them.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.serverconf.openapi import (
    MISSING_SERVERS,
    TEMPLATED_SERVER,
    Endpoint,
    endpoint_path_pattern,
    hide_openapi_servers,
    parse_openapi,
)
from gateway.serverconf.wsdl import (
    MAX_DESCRIPTION_BYTES,
    RESERVED_SERVICE_CODES,
    SOAP12_ONLY,
    VALIDATOR_WARNINGS,
    DescriptionError,
    WsdlOperation,
    hide_wsdl_address,
    parse_wsdl,
)
from gateway.xmlsafe import parse_xml

# Copies of shared/xroad/samples (public X-Road test documents), kept in the repo so the
# suite never depends on a folder outside it.
SAMPLES = Path(__file__).resolve().parent / "samples"
REPO = Path(__file__).resolve().parents[1]


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def refused(parse: Callable[[bytes], object], data: bytes, pattern: str) -> str:
    """Assert `parse(data)` raises DescriptionError matching `pattern`; return its message."""
    with pytest.raises(DescriptionError, match=pattern) as caught:
        parse(data)
    return caught.value.message


# A minimal X-Road WSDL; OPERATIONS is replaced by each test's binding operations.
WSDL = """<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions targetNamespace="urn:t" xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/"
    xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:soap12="http://schemas.xmlsoap.org/wsdl/soap12/"
    xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xrd="http://x-road.eu/xsd/xroad.xsd" xmlns:tns="urn:t">
  <wsdl:types>
    <xs:schema targetNamespace="urn:t">
      <xs:import namespace="http://x-road.eu/xsd/xroad.xsd" schemaLocation="http://x-road.eu/xsd/xroad.xsd"/>
      <xs:element name="req" type="xs:string"/>
    </xs:schema>
  </wsdl:types>
  <wsdl:message name="m"><wsdl:part name="body" element="tns:req"/></wsdl:message>
  <wsdl:message name="h"><wsdl:part name="client" element="xrd:client"/></wsdl:message>
  <wsdl:portType name="pt">PORT_OPERATIONS</wsdl:portType>
  <wsdl:binding name="b" type="tns:pt">
    <BINDING transport="http://schemas.xmlsoap.org/soap/http"/>
    OPERATIONS
  </wsdl:binding>
  <wsdl:service name="s">
    <wsdl:port name="p" binding="tns:b"><ADDRESS location="http://10.0.0.7:8080/secret-backend"/></wsdl:port>
  </wsdl:service>
</wsdl:definitions>
"""


def wsdl(*operations: tuple[str, str | None], soap: str = "soap") -> bytes:
    """A WSDL whose one binding has these (name, version) operations, over SOAP 1.1 (or `soap12`)."""
    port_ops = "".join(
        f'<wsdl:operation name="{name}"><wsdl:input message="tns:m"/><wsdl:output message="tns:m"/>'
        "</wsdl:operation>"
        for name, _ in operations
    )
    ops = "".join(
        f'<wsdl:operation name="{name}"><{soap}:operation soapAction=""/>'
        + (f"<xrd:version>{version}</xrd:version>" if version is not None else "")
        + f'<wsdl:input><{soap}:body use="literal"/>'
        + f'<{soap}:header message="tns:h" part="client" use="literal"/>'
        + f'</wsdl:input><wsdl:output><{soap}:body use="literal"/></wsdl:output></wsdl:operation>'
        for name, version in operations
    )
    text = (
        WSDL.replace("PORT_OPERATIONS", port_ops)
        .replace("OPERATIONS", ops)
        .replace("BINDING", f"{soap}:binding")
        .replace("ADDRESS", f"{soap}:address")
    )
    return text.encode()


# --- WSDL: accepted --------------------------------------------------------------------------


def test_valid_sample_offers_its_three_operations_with_legacy_version_namespace() -> None:
    description = parse_wsdl(sample("valid.wsdl"))
    address = "http://iks2-testhost:8080/testservice-0.1/xroad"
    assert description.operations == (
        WsdlOperation("xroadGetRandom", "v1", address),
        WsdlOperation("xroadSmallAttachment", "v1", address),
        WsdlOperation("xroadBigAttachment", "v1", address),
    )
    assert description.target_namespace == "http://xroad-andmekogu.x-road.ee/producer"


def test_testservice_sample_has_one_address_per_port() -> None:
    description = parse_wsdl(sample("testservice.wsdl"))
    assert description.find("xroadGetRandom", "v1") == WsdlOperation(
        "xroadGetRandom", "v1", "http://xroad-lxd-web.lxd:8088/xroadGetRandom"
    )
    assert description.find("bodyMassIndex", "v1") == WsdlOperation(
        "bodyMassIndex", "v1", "http://xroad-lxd-web.lxd:8088/bodyMassIndex"
    )
    assert description.find("bodyMassIndex", None) is None


def test_example_population_register_wsdl_is_registrable() -> None:
    description = parse_wsdl((REPO / "wsdl" / "population-register.wsdl").read_bytes())
    assert [(op.service_code, op.service_version) for op in description.operations] == [
        ("getPerson", "v1"),
        ("listPersons", "v1"),
    ]
    assert {op.address for op in description.operations} == {"http://127.0.0.1:8081/population-register"}


def test_version_is_optional_and_codes_may_use_every_allowed_character() -> None:
    description = parse_wsdl(wsdl(("plain", None), ("A-z.0,9'(x)+=?", "v2.1")))
    assert [(op.service_code, op.service_version) for op in description.operations] == [
        ("plain", None),
        ("A-z.0,9'(x)+=?", "v2.1"),
    ]


def test_same_code_with_two_versions_is_two_services() -> None:
    data = wsdl(("getPerson", "v1")).replace(
        b"</wsdl:service>",
        b'</wsdl:service><wsdl:service name="s2"><wsdl:port name="p2" binding="tns:b2">'
        b'<soap:address location="http://10.0.0.7:8080/v2"/></wsdl:port></wsdl:service>',
    )
    data = data.replace(
        b"<wsdl:service ",
        b'<wsdl:binding name="b2" type="tns:pt"><soap:binding transport="http://schemas.xmlsoap.org/soap/http"/>'
        b'<wsdl:operation name="getPerson"><soap:operation soapAction=""/><xrd:version>v2</xrd:version>'
        b'<wsdl:input><soap:body use="literal"/></wsdl:input>'
        b'<wsdl:output><soap:body use="literal"/></wsdl:output>'
        b"</wsdl:operation></wsdl:binding><wsdl:service ",
        1,
    )
    description = parse_wsdl(data)
    assert description.find("getPerson", "v1") == WsdlOperation(
        "getPerson", "v1", "http://10.0.0.7:8080/secret-backend"
    )
    assert description.find("getPerson", "v2") == WsdlOperation("getPerson", "v2", "http://10.0.0.7:8080/v2")


# --- WSDL: refused ---------------------------------------------------------------------------


def test_invalid_sample_is_refused_as_not_xml() -> None:
    refused(parse_wsdl, sample("invalid.wsdl"), "not well-formed XML")


def test_xxe_sample_is_refused_before_any_entity_is_read(tmp_path: Path) -> None:
    refused(parse_wsdl, sample("xxe.wsdl"), "document type declarations are not allowed")
    # The same attack at a file that exists: refused, and its content appears nowhere.
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    attack = sample("xxe.wsdl").replace(
        b"file:src/test/resources/wsdl/invalid.wsdl", secret.as_uri().encode()
    )
    message = refused(parse_wsdl, attack, "document type declarations")
    assert "TOP-SECRET" not in message
    refused(hide_wsdl_address, attack, "document type declarations")


def test_document_that_is_not_wsdl_11_is_refused() -> None:
    refused(parse_wsdl, b"<definitions/>", "not a WSDL 1.1 document")
    refused(parse_wsdl, b'<w:definitions xmlns:w="http://www.w3.org/ns/wsdl"/>', "not a WSDL 1.1 document")


def test_wsdl_without_operations_is_refused() -> None:
    refused(parse_wsdl, b'<w:definitions xmlns:w="http://schemas.xmlsoap.org/wsdl/"/>', "binds no operation")


def test_soap12_only_binding_is_registered_with_a_warning() -> None:
    # X-Road 7.8 registers it; X-Road messages are SOAP 1.1, hence the warning.
    description = parse_wsdl(wsdl(("getPerson", "v1"), ("getAddress", None), soap="soap12"))
    assert [(op.service_code, op.service_version) for op in description.operations] == [
        ("getPerson", "v1"),
        ("getAddress", None),
    ]
    assert description.operations[0].address == "http://10.0.0.7:8080/secret-backend"
    [warning] = description.warnings
    assert warning.code == SOAP12_ONLY
    assert "'getPerson/v1'" in warning.message and "'getAddress'" in warning.message


def test_operation_bound_over_both_soap_versions_uses_the_soap11_port_without_warning() -> None:
    soap11 = wsdl(("getPerson", "v1")).decode()
    binding12 = (
        '<wsdl:binding name="b12" type="tns:pt"><soap12:binding transport="http://schemas.xmlsoap.org/soap/http"/>'
        '<wsdl:operation name="getPerson"><soap12:operation soapAction=""/>'
        "<xrd:version>v1</xrd:version>"
        '<wsdl:input><soap12:body use="literal"/></wsdl:input><wsdl:output><soap12:body use="literal"/>'
        "</wsdl:output></wsdl:operation></wsdl:binding>"
    )
    port12 = (
        '<wsdl:port name="p12" binding="tns:b12"><soap12:address location="http://other/12"/></wsdl:port>'
    )
    data = soap11.replace("<wsdl:service", binding12 + "<wsdl:service").replace(
        "</wsdl:service>", port12 + "</wsdl:service>"
    )
    description = parse_wsdl(data.encode())
    assert description.operations == (
        WsdlOperation("getPerson", "v1", "http://10.0.0.7:8080/secret-backend"),
    )
    assert description.warnings == ()


def test_binding_no_port_uses_is_a_validator_warning() -> None:
    unused = (
        '<wsdl:binding name="spare" type="tns:pt"><soap:binding transport="http://schemas.xmlsoap.org/soap/http"/>'
        "</wsdl:binding>"
    )
    data = wsdl(("getPerson", "v1")).replace(b"<wsdl:service", unused.encode() + b"<wsdl:service")
    [warning] = parse_wsdl(data).warnings
    assert warning.code == VALIDATOR_WARNINGS and "'spare'" in warning.message


def test_every_invalid_service_code_is_named_in_one_error() -> None:
    message = refused(
        parse_wsdl,
        wsdl(("get Person", None), ("ok", "v/1"), ("getInfo", None), ("listMethods", None)),
        "3 invalid service code",
    )
    assert "'get Person'" in message and "'v/1'" in message and "'listMethods'" in message


@pytest.mark.parametrize("name", sorted(RESERVED_SERVICE_CODES))
def test_reserved_metadata_names_are_refused(name: str) -> None:
    refused(parse_wsdl, wsdl(("getPerson", "v1"), (name, None)), f"'{name}' is reserved")


@pytest.mark.parametrize(
    ("code", "version"),
    [
        ("get Person", "v1"),
        ("getPerson", "v/1"),
        ("päring", None),
        ("getPerson", ""),
        ("get*", None),
        ("..", None),
    ],
)
def test_codes_and_versions_outside_the_allowed_characters_are_refused(
    code: str, version: str | None
) -> None:
    refused(parse_wsdl, wsdl((code, version)), "has a character outside|must not be")


def test_two_versions_elements_on_one_operation_are_refused() -> None:
    data = wsdl(("getPerson", "v1")).replace(
        b"<xrd:version>v1</xrd:version>", b"<xrd:version>v1</xrd:version>" * 2
    )
    refused(parse_wsdl, data, "2 xrd:version elements")


def test_duplicate_code_and_version_at_different_addresses_is_refused() -> None:
    second_port = (
        b'<wsdl:port name="p2" binding="tns:b"><soap:address location="http://10.0.0.8/other"/></wsdl:port>'
        b"</wsdl:service>"
    )
    data = wsdl(("getPerson", "v1")).replace(b"</wsdl:service>", second_port)
    refused(parse_wsdl, data, "'getPerson/v1' is defined twice")


def test_description_over_the_size_limit_is_refused() -> None:
    refused(parse_wsdl, wsdl(("a", None)) + b" " * MAX_DESCRIPTION_BYTES, "exceeds the limit")


# --- WSDL: the zeep check --------------------------------------------------------------------


def test_zeep_refuses_a_message_part_naming_an_undefined_element() -> None:
    data = sample("testservice.wsdl").replace(b'element="tns:bodyMassIndex"', b'element="tns:nosuch"')
    refused(parse_wsdl, data, r"zeep cannot load the WSDL: .*bodyMassIndex.*invalid part")


def test_zeep_checks_xroad_header_parts_against_the_real_xroad_schema() -> None:
    data = sample("testservice.wsdl").replace(b'element="xrd:userId"', b'element="xrd:userID"')
    refused(parse_wsdl, data, r"zeep cannot load the WSDL: .*requestHeader.*invalid part \('userId'\)")


def test_zeep_refuses_a_binding_of_an_undefined_port_type() -> None:
    data = sample("testservice.wsdl").replace(b'type="tns:testServicePort"', b'type="tns:nosuch"', 1)
    refused(parse_wsdl, data, r"zeep cannot load the WSDL: .*nosuch.*port_types")


def test_zeep_refuses_an_undefined_type_in_the_inline_schema() -> None:
    data = sample("testservice.wsdl").replace(b'type="xs:decimal"', b'type="tns:Nosuch"', 1)
    message = refused(parse_wsdl, data, r"zeep cannot load the WSDL: Unable to resolve type .*Nosuch")
    assert "description.invalid" not in message  # the checker's internal URLs are not shown


@pytest.mark.parametrize(
    ("anchor", "reference"),
    [
        (b"<wsdl:types>", b'<wsdl:import namespace="urn:x" location="http://127.0.0.1:9/other.wsdl"/>'),
        (b'<xs:element name="req"', b'<xs:include schemaLocation="file:///etc/passwd"/>'),
        (b'<xs:element name="req"', b'<xs:import schemaLocation="no-namespace.xsd"/>'),
    ],
    ids=["wsdl-import", "xs-include", "no-namespace-import"],
)
def test_documents_that_pull_in_other_documents_are_refused_without_fetching(
    anchor: bytes, reference: bytes
) -> None:
    data = wsdl(("getPerson", "v1")).replace(anchor, reference + anchor, 1)
    message = refused(parse_wsdl, data, "which is not fetched: a description must be one document")
    assert "root:" not in message


def test_imports_of_unknown_schemas_are_trusted_only_for_the_names_the_document_uses() -> None:
    # valid.wsdl imports the X-Road 5 schema, which is not bundled: its header parts load...
    parse_wsdl(sample("valid.wsdl"))
    # ...and the document's own mistakes are still found.
    broken = sample("valid.wsdl").replace(b'element="tns:xroadGetRandom"', b'element="tns:xroadGetRandm"')
    refused(parse_wsdl, broken, "zeep cannot load the WSDL")


def test_zeep_check_is_fast_enough_for_registration() -> None:
    data = sample("testservice.wsdl")
    parse_wsdl(data)  # warm zeep's caches
    started = time.perf_counter()
    for _ in range(10):
        parse_wsdl(data)
    assert (time.perf_counter() - started) / 10 < 0.2  # measured ~5 ms on the 2-core machine


# --- WSDL: the published copy ----------------------------------------------------------------


def test_hidden_address_copy_reveals_no_port_address_and_still_registers() -> None:
    original = sample("testservice.wsdl")
    hidden = hide_wsdl_address(original, replacement="http://gateway.invalid/")
    assert b"xroad-lxd-web.lxd" not in hidden
    assert {op.address for op in parse_wsdl(hidden).operations} == {"http://gateway.invalid/"}
    assert [op.service_code for op in parse_wsdl(hidden).operations] == [
        op.service_code for op in parse_wsdl(original).operations
    ]


def test_hidden_address_copy_rewrites_soap12_addresses_and_keeps_the_rest() -> None:
    original = wsdl(("getPerson", "v1"), soap="soap12")
    hidden = hide_wsdl_address(original)
    assert b"10.0.0.7" not in hidden
    root = parse_xml(hidden)
    locations = [
        node.get("location") for node in root.iter("{http://schemas.xmlsoap.org/wsdl/soap12/}address")
    ]
    assert locations == ["http://example.invalid/"]
    # Everything but the address is unchanged.
    restored = hidden.replace(b"http://example.invalid/", b"http://10.0.0.7:8080/secret-backend")
    assert _canonical(restored) == _canonical(original)


def _canonical(data: bytes) -> bytes:
    return etree.tostring(parse_xml(data), method="c14n")


# --- OpenAPI: accepted -----------------------------------------------------------------------


def test_openapi_30_sample_is_accepted() -> None:
    description = parse_openapi(sample("valid.yaml"))
    assert description.openapi_version == "3.0.2"
    assert description.endpoints == (Endpoint("GET", "/test"), Endpoint("POST", "/test"))
    assert description.default_url == "https://example.org/api"
    assert description.title == "Test"


def test_openapi_310_sample_is_accepted() -> None:
    description = parse_openapi(sample("v310.yaml"))
    assert description.openapi_version == "3.1.0"
    assert [(e.method, e.path) for e in description.endpoints] == [
        ("GET", "/test"),
        ("POST", "/test"),
        ("POST", "/file"),
    ]


def test_petstore_uses_the_first_server_and_ignores_broken_later_ones() -> None:
    description = parse_openapi(sample("petstore.yaml"))
    assert description.default_url == "http://petstore.swagger.io/v1/cats"
    assert [e.path_pattern for e in description.endpoints] == ["/pets", "/pets", "/pets/*"]


def test_example_benefits_api_description_is_registrable() -> None:
    description = parse_openapi((REPO / "wsdl" / "benefits-api.yaml").read_bytes())
    assert description.openapi_version == "3.0.3"
    assert description.default_url == "http://127.0.0.1:8082"
    assert Endpoint("GET", "/benefits/{personalCode}") in description.endpoints


def test_json_description_with_server_variables_and_a_local_path_item_reference() -> None:
    document = {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "servers": [
            {
                "url": "https://{host}:{port}/v1",
                "variables": {"host": {"default": "api"}, "port": {"default": 8443}},
            }
        ],
        "paths": {"/a/{x}.{y}": {"$ref": "#/components/pathItems/a~1b", "post": {}}},
        "components": {"pathItems": {"a/b": {"get": {}}}},
    }
    description = parse_openapi(json.dumps(document).encode())
    assert description.default_url == "https://api:8443/v1"
    assert description.endpoints == (Endpoint("GET", "/a/{x}.{y}"), Endpoint("POST", "/a/{x}.{y}"))
    assert description.endpoints[0].path_pattern == "/a/*.*"


def test_description_without_servers_has_no_default_url_and_a_warning() -> None:
    description = parse_openapi(b"openapi: 3.0.0\npaths:\n  /a:\n    get: {}\n")
    assert description.default_url is None
    assert [warning.code for warning in description.warnings] == [MISSING_SERVERS]


@pytest.mark.parametrize(
    ("servers", "default_url"),
    [
        ('[{url: "https://{host}/v1", variables: {host: {default: api.example}}}]', "https://api.example/v1"),
        ('[{url: "https://{host}/v1"}]', None),
        ('[{url: "/v1"}]', None),
    ],
)
def test_templated_or_relative_server_is_a_warning(servers: str, default_url: str | None) -> None:
    description = parse_openapi(
        f"openapi: 3.0.0\nservers: {servers}\npaths:\n  /a:\n    get: {{}}\n".encode()
    )
    assert description.default_url == default_url
    assert [warning.code for warning in description.warnings] == [TEMPLATED_SERVER]


# --- OpenAPI: refused ------------------------------------------------------------------------


def test_unsupported_version_sample_is_refused() -> None:
    refused(parse_openapi, sample("invalid_version.yaml"), "OpenAPI version '3.1.1' is not supported")


@pytest.mark.parametrize(
    ("head", "pattern"),
    [
        ('swagger: "2.0"', "Swagger 2.0 is not supported"),
        ("openapi: 2.0.0", "'2.0.0' is not supported"),
        ("openapi: 4.0.0", "'4.0.0' is not supported"),
        ("openapi: 3.0", "3.0 is not supported"),  # a YAML float, not the string "3.0.x"
        ("openapi: 3.0.1-rc1", "is not supported"),
        ("info: {title: t}", "the `openapi` field is missing"),
    ],
)
def test_versions_other_than_30x_and_310_are_refused(head: str, pattern: str) -> None:
    refused(parse_openapi, f"{head}\npaths:\n  /a:\n    get: {{}}\n".encode(), pattern)


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (b"openapi: [3.0.0", "neither JSON nor YAML"),
        (b"\xff\xfe\xfa", "neither JSON nor YAML"),
        (b"", "empty"),
        (b"- openapi: 3.0.0\n", "not a JSON object"),
        (b"openapi: 3.0.0\n", "no `paths` mapping"),
        (b"openapi: 3.0.0\npaths: [/a]\n", "no `paths` mapping"),
        (b"openapi: 3.0.0\npaths:\n  a:\n    get: {}\n", "does not begin with '/'"),
        (b"openapi: 3.0.0\npaths:\n  /a: 3\n", "not a Path Item"),
        (b"openapi: 3.0.0\npaths:\n  /a:\n    summary: nothing\n", "describes no operations"),
        (
            b"openapi: 3.0.0\npaths:\n  /a:\n    $ref: 'other.yaml#/x'\n",
            "only references within the document",
        ),
        (b"openapi: 3.0.0\npaths:\n  /a:\n    $ref: '#/nope'\n", "does not define"),
    ],
)
def test_malformed_descriptions_are_refused(data: bytes, pattern: str) -> None:
    refused(parse_openapi, data, pattern)


def test_endpoints_differing_only_in_parameter_names_are_duplicates() -> None:
    data = b"openapi: 3.0.0\npaths:\n  /pets/{id}:\n    get: {}\n  /pets/{petId}:\n    get: {}\n    put: {}\n"
    refused(parse_openapi, data, r"GET /pets/\{petId\} duplicates GET /pets/\{id\}")


def test_duplicate_keys_are_refused_rather_than_silently_merged() -> None:
    data = b"openapi: 3.0.0\npaths:\n  /pets:\n    get: {}\n  /pets:\n    post: {}\n"
    refused(parse_openapi, data, "duplicate key '/pets'")
    refused(
        parse_openapi,
        b'{"openapi": "3.0.0", "openapi": "3.0.1", "paths": {"/a": {"get": {}}}}',
        "duplicate key",
    )


def test_yaml_alias_bomb_is_refused_quickly() -> None:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    started = time.perf_counter()
    refused(parse_openapi, "\n".join(lines).encode(), "expands to more than")
    assert time.perf_counter() - started < 1.0


def test_deeply_nested_description_is_refused() -> None:
    refused(parse_openapi, b"[" * 50_000 + b"]" * 50_000, "nested too deeply|neither JSON nor YAML")


def test_openapi_over_the_size_limit_is_refused() -> None:
    refused(parse_openapi, b"openapi: 3.0.0\n" + b"#" * MAX_DESCRIPTION_BYTES, "over the limit")


def test_python_tags_are_not_constructed() -> None:
    refused(
        parse_openapi,
        b"openapi: !!python/object/apply:os.system ['true']\npaths: {}\n",
        "neither JSON nor YAML",
    )


# --- OpenAPI: path patterns ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "pattern"),
    [
        ("/pets", "/pets"),
        ("/pets/{petId}", "/pets/*"),
        ("/pets/{petId}/photos/{n}", "/pets/*/photos/*"),
        ("/files/{name}.{ext}", "/files/*.*"),
        ("/", "/"),
    ],
)
def test_endpoint_path_pattern_turns_parameters_into_wildcards(template: str, pattern: str) -> None:
    assert endpoint_path_pattern(template) == pattern


_SEGMENT = st.one_of(
    st.from_regex(r"[a-z0-9\-]{1,8}", fullmatch=True).map(lambda text: ("literal", text)),
    st.from_regex(r"[A-Za-z_]{1,8}", fullmatch=True).map(lambda text: ("parameter", text)),
)


@settings(max_examples=150, deadline=None)
@given(segments=st.lists(_SEGMENT, min_size=1, max_size=6), method=st.sampled_from(["get", "post", "delete"]))
def test_renaming_path_parameters_never_makes_a_new_endpoint(
    segments: list[tuple[str, str]], method: str
) -> None:
    def template(suffix: str) -> str:
        return "/" + "/".join(
            f"{{{text}{suffix}}}" if kind == "parameter" else text for kind, text in segments
        )

    first, renamed = template(""), template("Renamed")
    assert endpoint_path_pattern(first) == endpoint_path_pattern(renamed)
    assert "{" not in endpoint_path_pattern(first)
    assert endpoint_path_pattern(first).count("/") == first.count("/")
    document = {"openapi": "3.0.3", "paths": {first: {method: {}}}}
    if renamed != first:
        document["paths"][renamed] = {method: {}}  # type: ignore[index]
        refused(parse_openapi, json.dumps(document).encode(), "duplicates")
    else:
        assert parse_openapi(json.dumps(document).encode()).endpoints == (Endpoint(method.upper(), first),)


# --- OpenAPI: the published copy -------------------------------------------------------------


def test_hidden_servers_copy_of_yaml_stays_yaml_and_hides_every_level() -> None:
    data = (
        b"openapi: 3.0.3\n"
        b"servers:\n  - url: http://10.1.1.1:8080/internal\n"
        b"paths:\n"
        b"  /a:\n    servers: [{url: 'http://10.1.1.2/path-level'}]\n"
        b"    get:\n      servers: [{url: 'http://10.1.1.3/operation-level'}]\n"
        b"    post: {}\n"
        b"components:\n  pathItems:\n    p:\n      servers: [{url: 'http://10.1.1.4/component-level'}]\n"
    )
    hidden = hide_openapi_servers(data)
    assert not re.search(rb"10\.1\.1\.", hidden)
    assert not hidden.lstrip().startswith(b"{")
    assert b"&id" not in hidden  # no YAML anchors for the repeated neutral entry
    document = yaml.safe_load(hidden)
    assert document["servers"][0]["url"] == "http://example.invalid/"
    assert document["paths"]["/a"]["servers"][0]["url"] == "http://example.invalid/"
    assert document["paths"]["/a"]["get"]["servers"][0]["url"] == "http://example.invalid/"
    assert parse_openapi(hidden).endpoints == parse_openapi(data).endpoints


def test_hidden_servers_copy_of_json_stays_json() -> None:
    document = json.loads(json.dumps(yaml.safe_load(sample("v310.yaml"))))
    hidden = hide_openapi_servers(json.dumps(document).encode(), replacement="https://gw.invalid/")
    result = json.loads(hidden)
    assert result["servers"] == [
        {"url": "https://gw.invalid/", "description": "reached through the X-Road gateway"}
    ]
    assert b"example.org" not in hidden
    assert result["paths"] == document["paths"]


def test_hidden_servers_copy_of_samples_keeps_their_endpoints() -> None:
    for name in ("valid.yaml", "v310.yaml", "petstore.yaml"):
        original = sample(name)
        hidden = hide_openapi_servers(original)
        assert parse_openapi(hidden).endpoints == parse_openapi(original).endpoints
        assert parse_openapi(hidden).default_url == "http://example.invalid/"
