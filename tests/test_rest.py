"""REST protocol r1 core (gateway.protocol.rest): parsing, normalisation, headers, hash, errors."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import posixpath
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from itertools import count
from urllib.parse import unquote, urljoin

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from multidict import CIMultiDict

from gateway import faults
from gateway.faults import XRoadFault
from gateway.ids import ClientId, SecurityServerId, ServiceId
from gateway.protocol.rest import (
    MAX_HEADER_COUNT,
    MAX_MESSAGE_ID_LENGTH,
    MAX_TARGET_LENGTH,
    RestMetadataRequest,
    RestRequest,
    check_rest_response_consistency,
    error_headers,
    normalise_path,
    parse_rest_error,
    parse_rest_request,
    passable_headers,
    response_headers,
    rest_error_body,
    rest_error_status,
    rest_request_hash,
    service_request_headers,
)

SERVICE_PATH = "/r1/EE/GOV/70000001/registry/persons"
CLIENT = "EE/COM/12345678/portal"
CLIENT_ID = ClientId("EE", "COM", "12345678", "portal")
SERVICE_ID = ServiceId("EE", "GOV", "70000001", "registry", "persons")


def ids() -> Iterator[str]:
    return (f"id-{n}" for n in count())


def parse(
    path: str = SERVICE_PATH,
    *,
    method: str = "GET",
    query: str = "",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    client: str | None = CLIENT,
    max_body_bytes: int | None = None,
) -> RestRequest | RestMetadataRequest:
    fields = [("X-Road-Client", client)] if client is not None else []
    fields += headers or []
    new_id = ids()
    kwargs = {} if max_body_bytes is None else {"max_body_bytes": max_body_bytes}
    return parse_rest_request(method, path, query, fields, body, new_id=lambda: next(new_id), **kwargs)


def parse_call(path: str = SERVICE_PATH, /, **kwargs: object) -> RestRequest:
    request = parse(path, **kwargs)  # type: ignore[arg-type]
    assert isinstance(request, RestRequest)
    return request


def fault_code(path: str = SERVICE_PATH, /, **kwargs: object) -> str:
    with pytest.raises(XRoadFault) as info:
        parse(path, **kwargs)  # type: ignore[arg-type]
    return info.value.code


# --- parsing -----------------------------------------------------------------------------


def test_full_request_is_read_into_typed_fields() -> None:
    request = parse_call(
        SERVICE_PATH + "/v1/people/38001085718",
        method="POST",
        query="fields=name&lang=et",
        headers=[
            ("x-road-id", "  msg-1 "),
            ("X-Road-UserId", "EE38001085718"),
            ("X-Road-Issue", "case 12/2026"),
            ("X-Road-Security-Server", "EE/GOV/70000001/ss1"),
            ("X-Road-Represented-Party", "COM/999"),
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer abc"),
            ("User-Agent", "curl/8"),
        ],
        body=b'{"a": 1}',
    )
    assert request.method == "POST"
    assert request.service == SERVICE_ID
    assert request.path == "/v1/people/38001085718"
    assert request.query == "fields=name&lang=et"
    assert request.client == CLIENT_ID
    assert request.message_id == "msg-1"
    assert request.user_id == "EE38001085718"
    assert request.issue == "case 12/2026"
    assert request.security_server == SecurityServerId("EE", "GOV", "70000001", "ss1")
    assert request.represented_party == ("COM", "999")
    assert request.headers == (("Content-Type", "application/json"), ("Authorization", "Bearer abc"))
    assert request.body == b'{"a": 1}'
    assert request.request_id == "id-0"
    assert request.target == SERVICE_PATH + "/v1/people/38001085718?fields=name&lang=et"
    assert request.endpoint_path == "/v1/people/38001085718"


def test_missing_optional_fields_and_generated_ids() -> None:
    request = parse_call()
    assert (request.message_id, request.request_id) == ("id-0", "id-1")
    assert request.user_id is request.issue is request.security_server is request.represented_party is None
    assert request.path == "" and request.endpoint_path == "/"


def test_default_ids_are_fresh_uuid4() -> None:
    request = parse_rest_request("GET", SERVICE_PATH, "", {"X-Road-Client": CLIENT}, b"")
    assert isinstance(request, RestRequest)
    assert uuid.UUID(request.message_id).version == 4
    assert uuid.UUID(request.request_id).version == 4
    assert request.message_id != request.request_id


def test_member_client_and_represented_party_without_class() -> None:
    request = parse_call(client="EE/COM/12345678", headers=[("X-Road-Represented-Party", "999")])
    assert request.client == ClientId("EE", "COM", "12345678")
    assert request.represented_party == (None, "999")


def test_percent_encoded_identifier_segments_are_decoded() -> None:
    request = parse_call("/r1/EE/GOV/70%2B01/registry/per%28s%29", client="EE/COM/a%2Cb/portal")
    assert request.service.member_code == "70+01"
    assert request.service.service_code == "per(s)"
    assert request.client.member_code == "a,b"


def test_query_may_come_inside_raw_path_as_aiohttp_gives_it() -> None:
    assert parse_call(SERVICE_PATH + "/x?a=1&b=%20").query == "a=1&b=%20"
    assert parse_call(SERVICE_PATH + "/x?a=1", query="a=1").query == "a=1"
    assert fault_code(SERVICE_PATH + "/x?a=1", query="a=2") == faults.INVALID_REQUEST


def test_multidict_headers_keep_repeated_fields_in_order() -> None:
    headers = CIMultiDict(
        [("X-Road-Client", CLIENT), ("Accept", "a/b"), ("Cookie", "x=1"), ("accept", "c/d")]
    )
    request = parse_rest_request("GET", SERVICE_PATH, "", headers, b"")
    assert isinstance(request, RestRequest)
    assert request.headers == (("Accept", "a/b"), ("Cookie", "x=1"), ("accept", "c/d"))


FAULT_CASES = [
    pytest.param({"client": None}, faults.MISSING_HEADER, id="no-client"),
    pytest.param({"client": "  "}, faults.MISSING_HEADER, id="empty-client"),
    pytest.param({"client": "EE/COM"}, faults.INVALID_CLIENT_IDENTIFIER, id="client-too-short"),
    pytest.param({"client": "EE/COM/1/2/3"}, faults.INVALID_CLIENT_IDENTIFIER, id="client-too-long"),
    pytest.param({"client": "EE/CO M/1"}, faults.INVALID_CLIENT_IDENTIFIER, id="client-bad-char"),
    pytest.param({"client": "EE/COM/%2e%2e"}, faults.INVALID_CLIENT_IDENTIFIER, id="client-dots"),
    pytest.param({"headers": [("x-road-client", CLIENT)]}, faults.DUPLICATE_HEADER_FIELD, id="client-twice"),
    pytest.param(
        {"headers": [("X-Road-Id", "a"), ("X-ROAD-ID", "b")]}, faults.DUPLICATE_HEADER_FIELD, id="id-twice"
    ),
    pytest.param({"method": "TRACE"}, faults.INVALID_HTTP_METHOD, id="trace"),
    pytest.param({"method": "CONNECT"}, faults.INVALID_HTTP_METHOD, id="connect"),
    pytest.param({"method": "get"}, faults.INVALID_HTTP_METHOD, id="lower-case-method"),
    pytest.param({"method": "G ET"}, faults.INVALID_HTTP_METHOD, id="garbage-method"),
    pytest.param({"body": b"x" * 11, "max_body_bytes": 10}, faults.REQUEST_TOO_LARGE, id="body-too-large"),
    pytest.param(
        {"headers": [("X-Road-Security-Server", "EE/GOV/1")]}, "Client.InvalidSecurityServer", id="bad-server"
    ),
    pytest.param(
        {"headers": [("X-Road-Represented-Party", "a/b/c")]}, faults.INVALID_REQUEST, id="bad-party"
    ),
    pytest.param(
        {"headers": [("X-Road-Id", "x" * (MAX_MESSAGE_ID_LENGTH + 1))]}, faults.INVALID_REQUEST, id="long-id"
    ),
    pytest.param({"headers": [("X-Road-UserId", "u" * 2000)]}, faults.INVALID_REQUEST, id="long-user-id"),
    pytest.param({"headers": [("X-Road-Issue", "i" * 2000)]}, faults.INVALID_REQUEST, id="long-issue"),
    pytest.param({"headers": [("X-Foo", "a\r\nX-Road-Client: EE/X/1")]}, faults.INVALID_REQUEST, id="crlf"),
    pytest.param({"headers": [("X-Foo", "a\x00b")]}, faults.INVALID_REQUEST, id="nul-in-value"),
    pytest.param({"headers": [("X-Foo", "\udc80")]}, faults.INVALID_REQUEST, id="not-utf8-value"),
    pytest.param({"headers": [("X Foo", "a")]}, faults.INVALID_REQUEST, id="space-in-name"),
    pytest.param({"headers": [("X-Foo:", "a")]}, faults.INVALID_REQUEST, id="colon-in-name"),
    pytest.param({"headers": [("", "a")]}, faults.INVALID_REQUEST, id="empty-name"),
    pytest.param(
        {"headers": [("X-N", "v")] * MAX_HEADER_COUNT}, faults.INVALID_REQUEST, id="too-many-headers"
    ),
    pytest.param({"query": "a=b c"}, faults.INVALID_REQUEST, id="space-in-query"),
    pytest.param({"query": "a=b#frag"}, faults.INVALID_REQUEST, id="fragment-in-query"),
    pytest.param({"query": "a=%zz"}, faults.INVALID_REQUEST, id="bad-escape-in-query"),
    pytest.param({"query": "a=\r\n"}, faults.INVALID_REQUEST, id="crlf-in-query"),
    pytest.param({"query": "a=" + "x" * MAX_TARGET_LENGTH}, faults.INVALID_REQUEST, id="target-too-long"),
]


@pytest.mark.parametrize(("kwargs", "code"), FAULT_CASES)
def test_bad_requests_get_their_fault_code(kwargs: dict[str, object], code: str) -> None:
    assert fault_code(**kwargs) == code


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/r2/EE/GOV/1/sub/svc", faults.INVALID_PROTOCOL_VERSION),
        ("/r0/EE/GOV/1/sub/svc", faults.INVALID_PROTOCOL_VERSION),
        ("/r1", faults.INVALID_REQUEST),
        ("/", faults.INVALID_REQUEST),
        ("", faults.INVALID_REQUEST),
        ("/soap", faults.INVALID_REQUEST),
        ("/R1/EE/GOV/1/sub/svc", faults.INVALID_REQUEST),
        ("r1/EE/GOV/1/sub/svc", faults.INVALID_REQUEST),
        ("http://evil/r1/EE/GOV/1/sub/svc", faults.INVALID_REQUEST),
        ("/r1/EE/GOV/1/sub", faults.INVALID_SERVICE_IDENTIFIER),
        ("/r1/EE/GOV/1/sub/", faults.INVALID_SERVICE_IDENTIFIER),
        ("/r1/EE/GOV/1%20/sub/svc", faults.INVALID_SERVICE_IDENTIFIER),
        ("/r1/EE/GOV/1/sub/sv%7Cc", faults.INVALID_SERVICE_IDENTIFIER),
    ],
)
def test_path_shape_faults(path: str, code: str) -> None:
    assert fault_code(path) == code


# --- metadata calls ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["listMethods", "allowedMethods"])
def test_list_and_allowed_methods_are_metadata_calls(name: str) -> None:
    metadata = parse("/r1/EE/GOV/70000001/registry/" + name)
    assert isinstance(metadata, RestMetadataRequest)
    assert metadata.name == name
    assert metadata.provider == SERVICE_ID.provider
    assert metadata.request.client == CLIENT_ID
    assert metadata.described_service is None


def test_get_openapi_names_the_described_service() -> None:
    metadata = parse("/r1/EE/GOV/70000001/registry/getOpenAPI", query="serviceCode=persons")
    assert isinstance(metadata, RestMetadataRequest)
    assert metadata.name == "getOpenAPI"
    assert metadata.described_service == SERVICE_ID


@pytest.mark.parametrize(
    ("path", "kwargs", "code"),
    [
        ("/listMethods", {"method": "POST"}, faults.INVALID_HTTP_METHOD),
        ("/allowedMethods", {"method": "DELETE"}, faults.INVALID_HTTP_METHOD),
        ("/listMethods/x", {}, faults.INVALID_REQUEST),
        ("/listMethods/", {}, faults.INVALID_REQUEST),
        ("/getOpenAPI", {}, faults.INVALID_REQUEST),
        ("/getOpenAPI", {"query": "servicecode=persons"}, faults.INVALID_REQUEST),
        ("/getOpenAPI", {"query": "serviceCode=a&serviceCode=b"}, faults.INVALID_REQUEST),
        ("/getOpenAPI", {"query": "serviceCode="}, faults.INVALID_SERVICE_IDENTIFIER),
        ("/getOpenAPI", {"query": "serviceCode=a%2Fb"}, faults.INVALID_SERVICE_IDENTIFIER),
        ("/listMethods", {"client": None}, faults.MISSING_HEADER),
    ],
)
def test_metadata_call_faults(path: str, kwargs: dict[str, object], code: str) -> None:
    assert fault_code("/r1/EE/GOV/70000001/registry" + path, **kwargs) == code


def test_metadata_name_is_case_sensitive_so_other_spellings_are_services() -> None:
    assert isinstance(parse("/r1/EE/GOV/70000001/registry/listmethods"), RestRequest)


# --- path normalisation ------------------------------------------------------------------

EVIL_SUFFIXES = [
    "/..",
    "/../admin",
    "/a/../../b",
    "/.",
    "/./a",
    "/a/.",
    "/%2e%2e/admin",
    "/%2E%2E",
    "/.%2e/a",
    "/%2e./a",
    "/%2e",
    "/a%2fb",
    "/a%2F..%2Fb",
    "/..%2f",
    "/%5c..%5cwin.ini",
    "/a\\b",
    "/..\\a",
    "/%252e%252e/admin",
    "/%25252e",
    "/%25%32%65%25%32%65",
    "/a%00b",
    "/a\x00b",
    "/%0d%0aSet-Cookie:x",
    "/a%7fb",
    "/a%c2%85b",
    "/a//b",
    "//etc/passwd",
    "/..;/admin",
    "/.;x/a",
    "/..%3bjsessionid/a",
    "/...",
    "/..%20",
    "/.%20",
    "/%20",
    "/%c0%ae%c0%ae/a",
    "/%e0%80%ae",
    "/%ef%bc%8e%ef%bc%8e/a",
    "/%e2%80%a5",
    "/%ef%bc%8f",
    "/%ef%bc%bc",
    "/%ff",
    "/a b",
    "/a\tb",
    "/a#b",
    "/ä",
    "/%zz",
    "/%2",
    "/a%",
    "/a[0]",
    "/{x}",
]


@pytest.mark.parametrize("suffix", EVIL_SUFFIXES)
def test_evil_paths_after_the_service_are_refused(suffix: str) -> None:
    assert fault_code(SERVICE_PATH + suffix) == faults.INVALID_REQUEST


@pytest.mark.parametrize(
    "path",
    [
        "/r1/EE/GOV/../registry/persons",
        "/r1/EE/GOV/%2e%2e/registry/persons",
        "/r1/EE/GOV/70000001/registry/%2E%2E",
        "/r1/EE/GOV/1%2f2/registry/persons",
        "/r1/EE/GOV/1%5C2/registry/persons",
        "/r1/./EE/GOV/1/registry/persons",
        "/r1//EE/GOV/1/registry/persons",
        "/r1/EE/GOV/1/registry/persons%00",
    ],
)
def test_evil_identifier_segments_are_refused(path: str) -> None:
    assert fault_code(path) == faults.INVALID_REQUEST


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("/", "/"),
        ("/a/b", "/a/b"),
        ("/a/b/", "/a/b/"),
        ("/%7e%41%2d%5F", "/~A-_"),
        ("/a%2a", "/a%2A"),
        ("/a%3b%3F", "/a%3B%3F"),
        ("/x;v=1/y", "/x;v=1/y"),
        ("/a.b/..c/c..", "/a.b/..c/c.."),
        ("/a%2eb", "/a.b"),
        ("/caf%C3%A9", "/caf%C3%A9"),
        ("/100%25", "/100%25"),
        ("/*:@!$&'()+,=", "/*:@!$&'()+,="),
    ],
)
def test_normalise_path_canonical_forms(raw: str, normal: str) -> None:
    assert normalise_path(raw) == normal
    assert normalise_path(normal) == normal


def test_request_path_is_normalised_and_keeps_trailing_slash() -> None:
    assert parse_call(SERVICE_PATH + "/pets/%7e1/").path == "/pets/~1/"
    assert parse_call(SERVICE_PATH + "/").path == "/"
    assert parse_call(SERVICE_PATH + "/").endpoint_path == "/"


PATH_PIECES = st.sampled_from(
    ["a", "b1", ".", "..", "%2e", "%2E", "%2f", "%5c", "\\", "%00", "%25", "%32", "/", "//", ";", "%3b",
     "%c0%ae", "%ef%bc%8e", " ", "%20", "~", "%7e", "%41", "é", "?", "#", "%", "%zz", "*", "%e2%80%a5"]
)  # fmt: skip
PATHS = st.one_of(
    st.lists(PATH_PIECES, max_size=12).map(lambda parts: "/" + "".join(parts)),
    st.text(max_size=40).map(lambda s: "/" + s),
)


@settings(max_examples=200, deadline=None)
@given(PATHS)
def test_accepted_paths_cannot_climb_and_are_fixed_points(raw: str) -> None:
    try:
        normal = normalise_path(raw)
    except XRoadFault as fault:
        assert fault.code == faults.INVALID_REQUEST
        return
    assert normalise_path(normal) == normal
    # Independent oracles: RFC 3986 §5.2.4 dot removal (urljoin) on the raw form, POSIX
    # resolution on the decoded form; neither may move an accepted path anywhere.
    # urljoin still splits ";params" off the last segment (RFC 1808); that is the oracle's
    # quirk, not a climb, so ';' is escaped for this comparison only.
    escaped = normal.replace(";", "%3B")
    assert urljoin("http://h/base/x", escaped) == "http://h" + escaped
    decoded = unquote(normal)
    assert "\\" not in decoded and "\x00" not in decoded
    assert posixpath.normpath(decoded) == (decoded.rstrip("/") or "/")


# --- hypothesis: nothing but XRoadFault escapes -------------------------------------------

HEADER_NAMES = st.one_of(
    st.sampled_from(
        ["X-Road-Client", "x-road-id", "X-Road-UserId", "X-Road-Issue", "X-Road-Security-Server",
         "X-Road-Represented-Party", "Connection", "Host", "Content-Type", "X-Road-Service"]
    ),
    st.text(max_size=12),
)  # fmt: skip
HEADER_VALUES = st.one_of(
    st.sampled_from([CLIENT, "EE/GOV/1/ss", "COM/1", "", "%", "%2e%2e", "EE/COM/1/%00", "a, b"]),
    st.text(max_size=30),
)


@settings(max_examples=200, deadline=None)
@given(
    method=st.one_of(st.sampled_from(["GET", "POST", "TRACE"]), st.text(max_size=6)),
    path=st.one_of(PATHS.map(lambda p: SERVICE_PATH + p), PATHS),
    query=st.text(max_size=20),
    headers=st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=8),
    body=st.binary(max_size=20),
)
def test_random_requests_raise_only_xroad_faults(
    method: str, path: str, query: str, headers: list[tuple[str, str]], body: bytes
) -> None:
    try:
        request = parse_rest_request(method, path, query, headers, body)
    except XRoadFault:
        return
    plain = request.request if isinstance(request, RestMetadataRequest) else request
    # Whatever is accepted can be hashed, echoed and forwarded.
    rest_request_hash(plain)
    check_rest_response_consistency(plain, response_headers(plain, "h"))
    assert all(not n.lower().startswith("x-road-") for n, _ in plain.headers)


@settings(max_examples=200, deadline=None)
@given(
    body=st.binary(max_size=200), content_type=st.sampled_from(["application/json", "text/xml", "x/y+xml"])
)
def test_random_error_bodies_parse_or_return_none(body: bytes, content_type: str) -> None:
    fault = parse_rest_error(body, content_type)
    assert fault is None or isinstance(fault, XRoadFault)


# --- header pass-through -----------------------------------------------------------------


def test_passable_headers_drop_hop_by_hop_gateway_and_xroad_protocol_fields() -> None:
    """The protocol's X-Road-* fields are the gateways'; an extension (X-Road-Foo) passes (PR-REST §4.3)."""
    given_headers = [
        ("Connection", "keep-alive, X-Secret"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Authorization", "Basic x"),
        ("Proxy-Connection", "close"),
        ("TE", "trailers"),
        ("Trailer", "X-Checksum"),
        ("Transfer-Encoding", "chunked"),
        ("Upgrade", "websocket"),
        ("X-Secret", "named by Connection"),
        ("Host", "gateway.example"),
        ("User-Agent", "curl/8"),
        ("Server", "nginx"),
        ("Content-Length", "12"),
        ("X-Road-Client", CLIENT),
        ("x-road-request-hash", "forged"),
        ("X-Road-Foo", "1"),
        ("Content-Type", "application/json"),
        ("Authorization", "Bearer t"),
        ("Cookie", "a=1"),
        ("accept", "application/json"),
        ("X-Custom", "1"),
        ("X-Custom", "2"),
        ("Bad Name", "x"),
        ("X-Split", "a\r\nb"),
    ]
    assert passable_headers(given_headers) == [
        ("X-Road-Foo", "1"),
        ("Content-Type", "application/json"),
        ("Authorization", "Bearer t"),
        ("Cookie", "a=1"),
        ("accept", "application/json"),
        ("X-Custom", "1"),
        ("X-Custom", "2"),
    ]


def test_service_response_headers_cannot_forge_protocol_fields() -> None:
    from_service = {
        "Content-Type": "application/json",
        "X-Road-Request-Hash": "forged",
        "X-Road-Id": "other",
        "Server": "gunicorn",
        "Transfer-Encoding": "chunked",
        "ETag": '"v1"',
    }
    assert passable_headers(from_service) == [("Content-Type", "application/json"), ("ETag", '"v1"')]


def test_request_headers_exclude_consumed_and_unknown_xroad_fields() -> None:
    request = parse_call(headers=[("X-Road-Request-Id", "mine"), ("X-Road-Service", "x"), ("Accept", "*/*")])
    assert request.headers == (("Accept", "*/*"),)
    assert request.request_id != "mine"


def test_service_request_headers_tell_the_service_who_calls() -> None:
    request = parse_call(
        SERVICE_PATH + "/a",
        headers=[
            ("X-Road-Id", "m1"),
            ("X-Road-UserId", "u1"),
            ("X-Road-Issue", "i1"),
            ("X-Road-Represented-Party", "COM/9"),
            ("X-Road-Security-Server", "EE/GOV/70000001/ss1"),
            ("Accept", "application/json"),
        ],
    )
    assert service_request_headers(request) == [
        ("X-Road-Client", CLIENT),
        ("X-Road-Service", "EE/GOV/70000001/registry/persons"),
        ("X-Road-Id", "m1"),
        ("X-Road-Request-Id", "id-0"),
        ("X-Road-UserId", "u1"),
        ("X-Road-Issue", "i1"),
        ("X-Road-Represented-Party", "COM/9"),
        ("X-Road-Security-Server", "EE/GOV/70000001/ss1"),
        ("Accept", "application/json"),
    ]


# --- response side -----------------------------------------------------------------------


def test_response_headers_echo_the_request() -> None:
    request = parse_call(headers=[("X-Road-Id", "m1")])
    assert response_headers(request, "HASH") == [
        ("X-Road-Client", CLIENT),
        ("X-Road-Service", "EE/GOV/70000001/registry/persons"),
        ("X-Road-Id", "m1"),
        ("X-Road-Request-Id", "id-0"),
        ("X-Road-Request-Hash", "HASH"),
    ]


def _echo(**changes: str | None) -> list[tuple[str, str]]:
    fields = {
        "X-Road-Id": "m1",
        "X-Road-Client": CLIENT,
        "X-Road-Service": "EE/GOV/70000001/registry/persons",
    }
    fields.update(changes)  # type: ignore[arg-type]
    return [(name, value) for name, value in fields.items() if value is not None]


def test_consistent_response_passes_including_other_spellings() -> None:
    request = parse_call(headers=[("X-Road-Id", "m1")])
    check_rest_response_consistency(request, _echo())
    check_rest_response_consistency(request, response_headers(request, "h"), request_hash="h")
    # The same identifiers, percent-encoded differently and in other case of field name.
    check_rest_response_consistency(
        request, [("x-road-id", "m1"), ("x-road-client", "EE/COM/1234567%38/portal"),
                  ("X-ROAD-SERVICE", "EE/GOV/70000001/registry/per%73ons")]
    )  # fmt: skip


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(_echo(**{"X-Road-Id": "m2"}), id="other-id"),
        pytest.param(_echo(**{"X-Road-Id": None}), id="no-id"),
        pytest.param(_echo(**{"X-Road-Client": "EE/COM/12345678/other"}), id="other-client"),
        pytest.param(_echo(**{"X-Road-Client": "EE/COM/12345678"}), id="member-not-subsystem"),
        pytest.param(_echo(**{"X-Road-Client": "garbage"}), id="unreadable-client"),
        pytest.param(_echo(**{"X-Road-Client": None}), id="no-client"),
        pytest.param(_echo(**{"X-Road-Service": "EE/GOV/70000001/registry/other"}), id="other-service"),
        pytest.param(_echo(**{"X-Road-Service": "EE/GOV/70000001/persons"}), id="unreadable-service"),
        pytest.param(_echo(**{"X-Road-Service": None}), id="no-service"),
        pytest.param([*_echo(), ("X-Road-Id", "m1")], id="id-twice"),
    ],
)
def test_inconsistent_responses_are_refused(response: list[tuple[str, str]]) -> None:
    request = parse_call(headers=[("X-Road-Id", "m1")])
    with pytest.raises(XRoadFault) as info:
        check_rest_response_consistency(request, response)
    assert info.value.code == faults.INCONSISTENT_RESPONSE


def test_response_with_other_request_hash_is_refused() -> None:
    request = parse_call(headers=[("X-Road-Id", "m1")])
    for response in (response_headers(request, "other"), _echo()):
        with pytest.raises(XRoadFault) as info:
            check_rest_response_consistency(request, response, request_hash="mine")
        assert info.value.code == faults.INCONSISTENT_RESPONSE


# --- request hash ------------------------------------------------------------------------

HASHED_HEADERS: list[tuple[str, str]] = [
    ("X-Road-Id", "m1"),
    ("X-Road-UserId", "u1"),
    ("X-Road-Security-Server", "EE/GOV/70000001/ss1"),
    ("Content-Type", "application/json"),
    ("Accept", "application/json"),
    ("X-B", "2"),
    ("X-B", "1"),
    ("User-Agent", "curl/8"),
]
HASHED: dict[str, object] = {
    "path": SERVICE_PATH + "/pets/%7e1",
    "method": "POST",
    "query": "q=1",
    "headers": HASHED_HEADERS,
    "body": b'{"name": "Rex"}',
}


def hash_of(**changes: object) -> str:
    args = {**HASHED, **changes}
    return rest_request_hash(parse_call(str(args.pop("path")), **args))


def test_request_hash_matches_the_documented_serialisation() -> None:
    expected_input = (
        b"POST /r1/EE/GOV/70000001/registry/persons/pets/~1?q=1\r\n"
        b"accept: application/json\r\n"
        b"content-type: application/json\r\n"
        b"x-b: 2\r\n"
        b"x-b: 1\r\n"
        b"x-road-client: EE/COM/12345678/portal\r\n"
        b"x-road-id: m1\r\n"
        b"x-road-security-server: EE/GOV/70000001/ss1\r\n"
        b"x-road-userid: u1\r\n"
        b"\r\n"
        b'{"name": "Rex"}'
    )
    digest = hash_of()
    assert digest == base64.b64encode(hashlib.sha512(expected_input).digest()).decode()
    assert len(base64.b64decode(digest)) == 64
    # The same with an independent tool.
    openssl = subprocess.run(
        ["openssl", "dgst", "-sha512", "-binary"], input=expected_input, capture_output=True, check=True
    )
    assert digest == base64.b64encode(openssl.stdout).decode()


def test_request_hash_ignores_what_does_not_reach_the_service() -> None:
    base = hash_of()
    reordered = [HASHED_HEADERS[i] for i in (5, 3, 0, 4, 6, 1, 2)]
    assert hash_of(headers=reordered) == base  # other names in other order (RFC 9110 §5.3)
    assert hash_of(headers=[(n.upper(), v) for n, v in HASHED_HEADERS]) == base
    assert hash_of(headers=[*HASHED_HEADERS, ("Connection", "close"), ("Host", "h")]) == base
    assert hash_of(path=SERVICE_PATH + "/pets/~%31") == base  # another spelling of the same path
    assert hash_of(headers=[*HASHED_HEADERS, ("X-Road-Request-Id", "x")]) == base


@pytest.mark.parametrize(
    "change",
    [
        {"method": "PUT"},
        {"path": SERVICE_PATH + "/pets/2"},
        {"path": SERVICE_PATH + "/pets/~1/"},
        {"query": "q=2"},
        {"body": b'{"name": "Rex"} '},
        {"client": "EE/COM/12345678"},
        {"headers": [h for h in HASHED_HEADERS if h[0] != "X-Road-UserId"]},
        {"headers": [h for h in HASHED_HEADERS if h[0] != "Accept"]},
        {"headers": [*HASHED_HEADERS, ("X-Road-Issue", "i")]},
        {"headers": [h if h != ("X-B", "2") else ("X-B", "3") for h in HASHED_HEADERS]},
    ],
)
def test_request_hash_covers_what_the_service_sees(change: dict[str, object]) -> None:
    assert hash_of(**change) != hash_of()


def test_request_hash_depends_on_order_of_repeated_fields() -> None:
    swapped = [
        ("X-B", "1") if h == ("X-B", "2") else ("X-B", "2") if h == ("X-B", "1") else h
        for h in HASHED_HEADERS
    ]
    assert hash_of(headers=swapped) != hash_of()


def test_request_hash_is_stable_across_parses() -> None:
    # Two parses get different request ids and the same hash: the id is the gateway's, not the client's.
    args = ("POST", SERVICE_PATH + "/pets/%7e1", "q=1", [("X-Road-Client", CLIENT), *HASHED_HEADERS], b"{}")
    first, second = parse_rest_request(*args), parse_rest_request(*args)
    assert isinstance(first, RestRequest) and isinstance(second, RestRequest)
    assert first.request_id != second.request_id
    assert rest_request_hash(first) == rest_request_hash(second)


# --- error bodies ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (faults.INVALID_HTTP_METHOD, 400),
        (faults.REQUEST_TOO_LARGE, 400),
        (faults.MISSING_HEADER, 400),
        (faults.INVALID_CLIENT_IDENTIFIER, 400),
        (faults.INVALID_REQUEST, 400),
        (faults.ACCESS_DENIED, 500),
        (faults.UNKNOWN_SERVICE, 500),
        (faults.UNKNOWN_MEMBER, 500),
        (faults.SERVER_PROXY_UNKNOWN_MEMBER, 500),
        (faults.SERVICE_DISABLED, 500),
        (faults.OUTDATED_GLOBALCONF, 500),
        (faults.NETWORK_ERROR, 500),
        (faults.SERVICE_FAILED_TIMEOUT, 500),
        (faults.SERVICE_FAILED, 500),
        (faults.SERVICE_FAILED_HTTP_ERROR, 500),
        (faults.SERVICE_FAILED_NETWORK_ERROR, 500),
        (faults.SERVICE_FAILED_RESPONSE_TOO_LARGE, 500),
        (faults.INCONSISTENT_RESPONSE, 500),
        (faults.SSL_AUTHENTICATION_FAILED, 500),
        (faults.CLIENT_PROXY_INTERNAL_ERROR, 500),
        (faults.TIMESTAMPER_FAILED, 500),
        (faults.CLIENT_PROXY_OVERLOADED, 500),
        ("Server.ClientProxy." + faults.ACCESS_DENIED, 500),
        ("Custom.Unclassified", 400),
    ],
)
def test_error_status_is_x_road_400_or_500_in_both_spellings(code: str, status: int) -> None:
    """X-Road 7.8's client proxy: 500 for `Server.*`, 400 for everything else, nothing finer."""
    assert rest_error_status(code) == status
    assert rest_error_status(faults.snake_case(code)) == status
    assert rest_error_body(XRoadFault(code, "m"), None)[2] == status


def test_json_error_body_by_default() -> None:
    fault = XRoadFault(faults.ACCESS_DENIED, 'no "right" \u00e9\x00')
    body, content_type, status = rest_error_body(fault, None)
    assert content_type == "application/json; charset=utf-8"
    assert status == 500
    assert json.loads(body) == {
        "type": faults.ACCESS_DENIED,
        "message": fault.message,
        "detail": fault.detail,
    }
    assert error_headers(fault) == [("X-Road-Error", faults.ACCESS_DENIED)]


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        (None, "application/json"),
        ("", "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        ("application/xml", "application/xml"),
        ("text/xml", "text/xml"),
        ("TEXT/XML; charset=utf-8", "text/xml"),
        ("application/xml, application/json", "application/xml"),
        ("application/json, text/xml", "text/xml"),
        ("application/json, text/*", "text/xml"),
        ("*/*, application/json", "application/json"),
        ("application/json;q=0.5, application/xml", "application/xml"),
        ("application/xml;q=0.9, application/json", "application/json"),
        ("application/*;q=0.1, application/xml", "application/xml"),
        ("application/xml;q=0", "application/json"),
        ("application/json;q=0, text/xml;q=0.1", "text/xml"),
        ("text/*", "text/xml"),
        ("text/html", "application/json"),
        ("application/xml;q=abc", "application/json"),
        ("application/xml;q=nan, application/json;q=0.5", "application/json"),
        ("application/xml;q=1.5", "application/json"),
        (",,;;=", "application/json"),
    ],
)
def test_error_body_media_type_follows_accept(accept: str | None, content_type: str) -> None:
    assert (
        rest_error_body(XRoadFault(faults.INVALID_REQUEST, "m"), accept)[1]
        == f"{content_type}; charset=utf-8"
    )


def test_xml_error_body_is_well_formed_and_escaped() -> None:
    fault = XRoadFault(faults.SERVICE_FAILED_TIMEOUT, "a <b> & \x00 \ud800 é")
    body, content_type, status = rest_error_body(fault, "application/xml")
    assert (content_type, status) == ("application/xml; charset=utf-8", 500)
    root = etree.fromstring(body)
    assert root.tag == "error"
    assert [child.tag for child in root] == ["type", "message", "detail"]
    assert root.findtext("type") == faults.SERVICE_FAILED_TIMEOUT
    assert root.findtext("message") == "a <b> & \ufffd \ufffd é"
    assert root.findtext("detail") == fault.detail


@pytest.mark.parametrize("accept", ["application/json", "application/xml", "text/xml"])
def test_error_bodies_read_back(accept: str) -> None:
    fault = XRoadFault(faults.UNKNOWN_SERVICE, "no such service: persons")
    body, content_type, _ = rest_error_body(fault, accept)
    read = parse_rest_error(body, content_type)
    assert read is not None
    assert (read.code, read.message, read.detail) == (fault.code, fault.message, fault.detail)


def test_peer_error_in_snake_case_or_without_detail_reads_back() -> None:
    read = parse_rest_error(
        b'{"type": "server.serverproxy.access_denied", "message": "no"}', "application/json"
    )
    assert read is not None and read.code == "server.serverproxy.access_denied" and read.detail
    read = parse_rest_error(
        b'<?xml version="1.0" encoding="ISO-8859-1"?>'
        b"<error><type>Client.X</type><message>\xe9</message></error>",
        "text/xml",
    )
    assert read is not None and (read.code, read.message) == ("Client.X", "é")


def test_bad_detail_from_a_peer_is_replaced() -> None:
    read = parse_rest_error(b'{"type": "Client.X", "message": "m", "detail": "a\\r\\nb"}', "application/json")
    assert read is not None and read.detail != "a\r\nb" and uuid.UUID(read.detail)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"error": "not found"}', "application/json"),
        (b'[{"type": "Client.X"}]', "application/json"),
        (b'{"type": 5, "message": "m"}', "application/json"),
        (b'{"type": "Client.X", "message": 5}', "application/json"),
        (b'{"type": "Client.X\\r\\nSet-Cookie: a=b", "message": "m"}', "application/json"),
        (b'{"type": "", "message": "m"}', "application/json"),
        (b'{"type": "' + b"A" * 300 + b'"}', "application/json"),
        (b"{not json", "application/json"),
        (b"[" * 50_000, "application/json"),
        (b'{"type": "Client.X", "pad": "' + b"x" * 70_000 + b'"}', "application/json"),
        (b'{"type": "Client.X"}', "text/plain"),
        (b'{"type": "Client.X"}', None),
        (b"<error><message>m</message></error>", "application/xml"),
        (b"<problem><type>Client.X</type></problem>", "application/xml"),
        (b'<e:error xmlns:e="urn:x"><type>Client.X</type></e:error>', "application/xml"),
        (b"<error><type>Client.X", "application/xml"),
        (
            b'<!DOCTYPE error [<!ENTITY x "Client.X">]><error><type>&x;</type></error>',
            "application/xml",
        ),
        (
            b'<!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]><error><type>&x;</type></error>',
            "text/xml",
        ),
    ],
)
def test_not_a_gateway_error(body: bytes, content_type: str | None) -> None:
    assert parse_rest_error(body, content_type) is None


# --- through a real aiohttp server -------------------------------------------------------


async def _handler(request: web.Request) -> web.Response:
    """What a proxy edge does with this module: parse, or answer with the gateway's error."""
    try:
        parsed = parse_rest_request(
            request.method, request.raw_path, "", request.headers, await request.read()
        )
    except XRoadFault as fault:
        body, content_type, status = rest_error_body(fault, request.headers.get("Accept"))
        response = web.Response(body=body, status=status, headers=error_headers(fault))
        response.headers["Content-Type"] = content_type
        return response
    assert isinstance(parsed, RestRequest)
    echo = {"path": parsed.path, "query": parsed.query, "headers": parsed.headers}
    return web.json_response(echo, headers=response_headers(parsed, rest_request_hash(parsed)))


async def _raw_exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in fields.items()}, body


@pytest.fixture
async def server_port() -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield port
    await runner.cleanup()


async def test_over_a_socket_raw_paths_reach_the_parser_unnormalised(server_port: int) -> None:
    ok = (
        f"GET {SERVICE_PATH}/pets/%7e1?a=1 HTTP/1.1\r\nHost: x\r\nX-Road-Client: {CLIENT}\r\n"
        "X-Road-Id: m1\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    ).encode()
    status, headers, body = await _raw_exchange(server_port, ok)
    assert status == 200
    assert json.loads(body) == {
        "path": "/pets/~1",
        "query": "a=1",
        "headers": [["Accept", "application/json"]],
    }
    assert headers["x-road-id"] == "m1"
    assert len(base64.b64decode(headers["x-road-request-hash"])) == 64

    evil = (
        f"GET {SERVICE_PATH}/%2e%2e/%2e%2e/admin HTTP/1.1\r\nHost: x\r\nX-Road-Client: {CLIENT}\r\n"
        "Accept: text/xml\r\nConnection: close\r\n\r\n"
    ).encode()
    status, headers, body = await _raw_exchange(server_port, evil)
    assert status == 400
    assert headers["x-road-error"] == faults.INVALID_REQUEST
    assert etree.fromstring(body).findtext("type") == faults.INVALID_REQUEST

    anonymous = f"DELETE {SERVICE_PATH}/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    status, headers, body = await _raw_exchange(server_port, anonymous)
    assert status == 400 and json.loads(body)["type"] == faults.MISSING_HEADER
