"""Content types and multipart bodies: finding the SOAP part, keeping every other byte.

The multipart bodies we build are also read back by the standard library's email parser,
an independent MIME implementation.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import faults
from gateway.faults import XRoadFault
from gateway.protocol.mime import (
    MAX_MIME_PARTS,
    Attachment,
    ContentType,
    build_multipart,
    normalise_content_id,
    parse_content_type,
    replace_soap_part,
    split_multipart,
    unpack,
    with_close_delimiter,
)

SOAP = b'<?xml version="1.0"?><e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"/>'


def code_of(action: object) -> str:
    with pytest.raises(XRoadFault) as caught:
        action()  # type: ignore[operator]
    return caught.value.code


# --- Content-Type --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("text/xml", ContentType("text/xml")),
        ("Text/XML; Charset=UTF-8", ContentType("text/xml", (("charset", "UTF-8"),))),
        ('text/xml;charset="utf-8";', ContentType("text/xml", (("charset", "utf-8"),))),
        ("text/xml ; charset = latin1 ;; ", ContentType("text/xml", (("charset", "latin1"),))),
        (
            'multipart/related; type="application/xop+xml"; start="<root@x>"; boundary="a;b\\"c"',
            ContentType(
                "multipart/related",
                (("type", "application/xop+xml"), ("start", "<root@x>"), ("boundary", 'a;b"c')),
            ),
        ),
        # Unquoted values outside the token alphabet are common enough to accept.
        ("multipart/related; start=<root@x>", ContentType("multipart/related", (("start", "<root@x>"),))),
    ],
)
def test_parse_content_type(value: str, expected: ContentType) -> None:
    assert parse_content_type(value) == expected


@pytest.mark.parametrize("value", ["", "xml", "text/", "/xml", "text/xml charset=utf-8", 'text/xml; a="open'])
def test_malformed_content_type(value: str) -> None:
    assert code_of(lambda: parse_content_type(value)) == faults.INVALID_CONTENT_TYPE


def test_param_lookup() -> None:
    parsed = parse_content_type('text/xml; charset="UTF-8"')
    assert parsed.param("charset") == "UTF-8"
    assert parsed.param("boundary") is None


def test_normalise_content_id() -> None:
    assert normalise_content_id(" <a@b> ") == "a@b"
    assert normalise_content_id("a@b") == "a@b"


# --- unpack --------------------------------------------------------------------------------


def test_text_xml_is_the_envelope_itself() -> None:
    package = unpack(SOAP, "text/xml; charset=ISO-8859-1")
    assert package.soap is SOAP
    assert package.charset == "ISO-8859-1"
    assert package.attachments == () and not package.xop


@pytest.mark.parametrize(
    "content_type", [None, "application/soap+xml", "application/xop+xml", "multipart/mixed"]
)
def test_other_types_are_refused(content_type: str | None) -> None:
    assert code_of(lambda: unpack(SOAP, content_type)) == faults.INVALID_CONTENT_TYPE


def test_bare_lf_line_ends_and_transport_padding() -> None:
    body = (
        b"--b  \t\nContent-Type: text/xml; charset=UTF-8\n\n" + SOAP + b"\n--b\n"
        b"Content-Type: text/plain\nContent-ID: <t>\n\nhello\n--b--"
    )
    package = unpack(body, "multipart/related; boundary=b")
    assert package.soap == SOAP
    assert package.charset == "UTF-8"
    assert package.attachments == (Attachment("t", "text/plain", b"hello"),)


def test_lines_that_only_begin_like_the_boundary_are_content() -> None:
    data = b"line\r\n--bx not a delimiter\r\n--b_ nor this\r\n-- b"
    body = b"--b\r\nContent-Type: text/xml\r\n\r\n" + SOAP + b"\r\n--b\r\n\r\n" + data + b"\r\n--b--\r\n"
    parts = split_multipart(body, "b")
    assert [part.data for part in parts] == [SOAP, data]


def test_folded_headers_and_defaults() -> None:
    body = (
        b"--b\r\nContent-Type: text/xml;\r\n charset=UTF-8\r\nX-Other: 1\r\n\r\n" + SOAP + b"\r\n"
        b"--b\r\n\r\nno headers at all\r\n--b--\r\n"
    )
    parts = split_multipart(body, "b")
    assert parts[0].content_type == "text/xml; charset=UTF-8"
    assert parts[0].headers == (("content-type", "text/xml; charset=UTF-8"), ("x-other", "1"))
    assert (parts[1].content_type, parts[1].content_id, parts[1].data) == (
        "text/plain",
        None,
        b"no headers at all",
    )
    assert body[parts[0].start : parts[0].end] == SOAP


def test_empty_parts() -> None:
    body = b"--b\r\nContent-Type: text/xml\r\n\r\n" + SOAP + b"\r\n--b\r\nContent-Type: a/b\r\n\r\n\r\n--b--"
    assert split_multipart(body, "b")[1].data == b""


@pytest.mark.parametrize(
    ("body", "content_type", "code"),
    [
        (b"--b\r\n\r\n" + SOAP + b"\r\n--b--", "multipart/related", faults.INVALID_CONTENT_TYPE),
        (
            b"--b\r\n\r\n" + SOAP + b"\r\n--b--",
            "multipart/related; boundary=" + "b" * 71,
            faults.INVALID_CONTENT_TYPE,
        ),
        (b"no boundary here", "multipart/related; boundary=b", faults.INVALID_CONTENT_TYPE),
        (
            b"--b\r\nContent-Type: text/xml\r\n\r\n" + SOAP,
            "multipart/related; boundary=b",
            faults.INVALID_CONTENT_TYPE,
        ),
        (
            b"--b\r\nnot a header\r\n\r\n" + SOAP + b"\r\n--b--",
            "multipart/related; boundary=b",
            faults.INVALID_CONTENT_TYPE,
        ),
        (b"--b--\r\n", "multipart/related; boundary=b", faults.MISSING_SOAP),
        (
            b"--b\r\nContent-Type: image/png\r\n\r\nPNG\r\n--b--",
            "multipart/related; boundary=b",
            faults.MISSING_SOAP,
        ),
        (
            b"--b\r\n\r\n" + SOAP + b"\r\n--b--",
            'multipart/related; boundary=b; start="<x>"',
            faults.MISSING_SOAP,
        ),
    ],
    ids=[
        "no boundary param",
        "boundary too long",
        "boundary absent from body",
        "no close delimiter",
        "malformed part header",
        "no parts",
        "root is not xml",
        "start names nothing",
    ],
)
def test_broken_multipart(body: bytes, content_type: str, code: str) -> None:
    assert code_of(lambda: unpack(body, content_type)) == code


def test_too_many_parts() -> None:
    body = b"--b\r\n\r\nx\r\n" * (MAX_MIME_PARTS + 1) + b"--b--"
    assert code_of(lambda: split_multipart(body, "b")) == faults.INVALID_CONTENT_TYPE
    split_multipart(b"--b\r\n\r\nx\r\n" * MAX_MIME_PARTS + b"--b--", "b")


def test_oversized_part_headers() -> None:
    body = b"--b\r\nX-Long: " + b"a" * 20_000 + b"\r\n\r\n" + SOAP + b"\r\n--b--"
    assert code_of(lambda: split_multipart(body, "b")) == faults.INVALID_CONTENT_TYPE


# --- building and replacing ----------------------------------------------------------------


def email_parts(body: bytes, content_type: str) -> list[tuple[str, str | None, bytes]]:
    """Read a multipart body with the standard library, independently of our parser."""
    message: Any = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    return [
        (part.get_content_type(), part.get("Content-ID"), part.get_payload(decode=True))
        for part in message.iter_parts()
    ]


@pytest.mark.parametrize("xop", [False, True])
def test_build_multipart_reads_back_here_and_in_the_email_package(xop: bool) -> None:
    attachments = [
        Attachment("a@x", "application/octet-stream", bytes(range(256)) * 3),
        Attachment("b@x", "text/plain", b"second\r\n"),
    ]
    body, content_type = build_multipart(SOAP, attachments, xop=xop)
    package = unpack(body, content_type)
    assert package.soap == SOAP and package.xop is xop
    assert package.attachments == tuple(attachments)
    parts = email_parts(body, content_type)
    assert parts[0][0] == ("application/xop+xml" if xop else "text/xml")
    assert parts[1:] == [
        ("application/octet-stream", "<a@x>", attachments[0].data),
        ("text/plain", "<b@x>", b"second\r\n"),
    ]


def test_build_multipart_refuses_header_injection() -> None:
    with pytest.raises(ValueError, match="line break"):
        build_multipart(SOAP, [Attachment("a", "text/plain\r\nX-Evil: 1", b"")])


def test_replace_soap_part_keeps_every_other_byte() -> None:
    body = (
        b"preamble\r\n--b\r\nContent-Type: text/xml\r\n\r\n"
        + SOAP
        + b"\r\n--b\r\nContent-Type: a/b\r\n\r\nDATA\r\n--b--\r\nepilogue"
    )
    new = SOAP.replace(b"/>", b"><e:Body/></e:Envelope>")
    replaced = replace_soap_part(body, "multipart/related; boundary=b", new)
    assert replaced == body.replace(SOAP, new)
    assert replace_soap_part(SOAP, "text/xml", new) == new
    with pytest.raises(ValueError, match="boundary"):
        replace_soap_part(body, "multipart/related; boundary=b", new + b"\r\n--b")


@settings(max_examples=150, deadline=None)
@given(
    datas=st.lists(st.binary(max_size=300), max_size=4),
    noise=st.sampled_from([b"", b"\r\n--", b"--xgate-", b"\r\n\r\n", b"\n--b\n"]),
)
def test_round_trip_keeps_any_attachment_bytes(datas: list[bytes], noise: bytes) -> None:
    attachments = [
        Attachment(f"part{i}@x", "application/octet-stream", noise + data + noise)
        for i, data in enumerate(datas)
    ]
    body, content_type = build_multipart(SOAP, attachments)
    assert unpack(body, content_type).attachments == tuple(attachments)


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=600), boundary=st.sampled_from(["b", "MIME_boundary", "----=_Part_0"]))
def test_random_bodies_raise_only_xroad_faults(body: bytes, boundary: str) -> None:
    with contextlib.suppress(XRoadFault):
        unpack(body, f'multipart/related; boundary="{boundary}"')


# --- what X-Road accepts (issue 17, build item 6) -----------------------------------------


def test_an_mtom_root_part_may_say_soap_12_the_envelope_decides() -> None:
    body = (
        b'--b\r\nContent-Type: application/xop+xml; type="application/soap+xml"\r\n\r\n' + SOAP + b"\r\n--b--"
    )
    package = unpack(body, 'multipart/related; type="application/xop+xml"; boundary=b')
    assert package.soap == SOAP and package.xop


UNCLOSED = (
    b"--b\r\nContent-Type: text/xml\r\n\r\n" + SOAP + b"\r\n--b\r\nContent-Type: image/png\r\n"
    b"Content-ID: <p>\r\n\r\n\x89PNG\r\n"
)


def test_a_service_answer_without_its_close_delimiter_is_completed() -> None:
    completed = with_close_delimiter(UNCLOSED, "multipart/related; boundary=b")

    assert completed == UNCLOSED + b"\r\n--b--\r\n"
    package = unpack(completed, "multipart/related; boundary=b")
    assert package.soap == SOAP
    assert [a.data for a in package.attachments] == [b"\x89PNG\r\n"], (
        "the last part runs to the end, unchanged"
    )


def test_a_closed_or_plain_answer_is_left_as_it_is() -> None:
    closed = UNCLOSED + b"--b--\r\n"
    assert with_close_delimiter(closed, "multipart/related; boundary=b") is closed
    assert with_close_delimiter(SOAP, "text/xml") is SOAP


def test_a_clients_message_without_its_close_delimiter_is_still_refused() -> None:
    assert code_of(lambda: unpack(UNCLOSED, "multipart/related; boundary=b")) == faults.INVALID_CONTENT_TYPE
