"""soap.parse_header_ids: the identifiers parse_request reads, without parsing the Body.

Log verification relies on it for every record's SOAP identifiers (gateway.messagelog.evidence),
so it must read the same identifiers from every message parse_request accepts, and refuse, with
parse_request's fault code, every message whose header or envelope parse_request refuses; a
large message (read by the pull parser up to its Header) as well as a small one (parsed whole).
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import faults
from gateway.faults import XRoadFault
from gateway.protocol.schema import SOAP_ENV_NS
from gateway.protocol.soap import HEADER_CHUNK, WHOLE_PARSE_BYTES, parse_header_ids, parse_request
from gateway.xmlsafe import MAX_XML_BYTES
from tests.test_soap import (
    BODY,
    CLIENT,
    FAULT_CASES,
    FIELDS,
    NAMESPACES,
    PRODUCER_NS,
    SERVICE,
    XML,
    envelope,
    fault_of,
    header,
    request,
)

BIG_BODY = (
    f'<p:getPerson xmlns:p="{PRODUCER_NS}"><p:note>{"x" * (2 * WHOLE_PARSE_BYTES)}</p:note></p:getPerson>'
)
"""A Body that makes a message large enough for the pull parser."""

BODY_RULES = {"no body", "empty body", "two body elements", "text in body", "body is not the service"}
"""parse_request's faults about the Body, which says nothing about whose message it is."""

_code = st.text(
    st.sampled_from("ABCxyz019'()+,-.=?") | st.sampled_from("/:& <>%é"),  # the last few: not a code's
    min_size=0,
    max_size=8,
)


def _xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """A request with drawn identifier codes (sometimes not valid ones), id and protocol
    version, a foreign header block of drawn size before or after the X-Road fields (moving the
    Header's end across chunk boundaries), and a small or large Body."""
    instance, member_class, member_code, subsystem, version = (draw(_code) for _ in range(5))
    client = (
        f'<xrd:client id:objectType="SUBSYSTEM"><id:xRoadInstance>{_xml_text(instance)}</id:xRoadInstance>'
        f"<id:memberClass>{_xml_text(member_class)}</id:memberClass>"
        f"<id:memberCode>{_xml_text(member_code)}</id:memberCode>"
        f"<id:subsystemCode>{_xml_text(subsystem)}</id:subsystemCode></xrd:client>"
    )
    service = SERVICE.replace(">v1<", f">{_xml_text(version)}<")
    message_id = draw(st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"))))
    id_xml = f"<xrd:id>{_xml_text(message_id)}</xrd:id>"
    if draw(st.booleans()) and len(message_id) > 1:  # a comment splitting the id's text
        id_xml = f"<xrd:id>{_xml_text(message_id[:1])}<!-- c -->{_xml_text(message_id[1:])}</xrd:id>"
    fields = {"client": client, "service": service, "id": id_xml}
    if draw(st.booleans()):
        fields["protocolVersion"] = "<xrd:protocolVersion>3.1</xrd:protocolVersion>"
    padding = draw(st.integers(0, 3 * HEADER_CHUNK))
    foreign = f'<f:trace xmlns:f="urn:foreign">{"t" * padding}</f:trace>' if padding else ""
    xroad = header(replace=fields, drop=draw(st.sampled_from([(), (), ("client",), ("userId", "issue")])))
    blocks = (foreign + xroad) if draw(st.booleans()) else (xroad + foreign)
    return envelope(blocks, draw(st.sampled_from([BODY, BIG_BODY]))).encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_the_same_identifiers_or_the_same_refusal_as_parse_request(raw: bytes) -> None:
    try:
        parsed = parse_request(raw, XML)
    except XRoadFault as refused:
        assert fault_of(lambda: parse_header_ids(raw, XML)).code == refused.code
        return
    ids = parse_header_ids(raw, XML)
    assert (ids.client, ids.service, ids.id) == (parsed.client, parsed.service, parsed.id)


def _large(raw: bytes) -> bytes:
    """`raw` with a Body large enough for the pull parser, where it has the test's Body."""
    return raw.replace(BODY.encode(), BIG_BODY.encode())


HEADER_FAULTS = [case for case in FAULT_CASES if case[0] not in BODY_RULES]


# Every case small and large, except a message cut after its Header, which the pull parser does
# not read to its end when large: test_a_large_message_cut_after_its_header_... says what then.
HEADER_FAULT_SIZES = [
    (size, *case[1:]) if size == "small" or case[1] != request()[:-20] else None
    for case in HEADER_FAULTS
    for size in ("small", "large")
]
SIZED_CASES = [
    pytest.param(*entry, id=f"{case[0]}-{entry[0]}")
    for entry, case in zip(HEADER_FAULT_SIZES, [c for c in HEADER_FAULTS for _ in (0, 1)], strict=True)
    if entry is not None
]


@pytest.mark.parametrize(("size", "raw", "content_type", "code"), SIZED_CASES)
def test_refuses_what_parse_request_refuses(
    size: str, raw: bytes, content_type: str | None, code: str
) -> None:
    message = raw if size == "small" else _large(raw)
    assert fault_of(lambda: parse_request(message, content_type)).code == code
    assert fault_of(lambda: parse_header_ids(message, content_type)).code == code


UNSAFE = [
    ("doctype", f'<!DOCTYPE e [<!ENTITY a "b">]>{envelope(header(), BIG_BODY, prolog="")}'),
    ("entity in the id", envelope(header(replace={"id": "<xrd:id>&a;</xrd:id>"}), BIG_BODY)),
    ("header inside the body", envelope(None, f"<SOAP-ENV:Header>{header()}</SOAP-ENV:Header>{BIG_BODY}")),
    (
        "element before the header",
        envelope(None, None).replace(
            "</SOAP-ENV:Envelope>",
            f"<x/><SOAP-ENV:Header>{header()}</SOAP-ENV:Header><SOAP-ENV:Body>{BIG_BODY}"
            "</SOAP-ENV:Body></SOAP-ENV:Envelope>",
        ),
    ),
    (
        "header of a soap 1.2 envelope",
        envelope(header(), BIG_BODY)
        .replace(
            f'xmlns:SOAP-ENV="{SOAP_ENV_NS}"',
            f'xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope" xmlns:s11="{SOAP_ENV_NS}"',
        )
        .replace("SOAP-ENV:Header", "s11:Header"),
    ),
    (
        "header in another root",
        f"<w>{envelope(header(), BIG_BODY, prolog='')}</w>".replace(
            "<SOAP-ENV:Envelope", "<SOAP-ENV:Wrapper"
        ).replace("</SOAP-ENV:Envelope>", "</SOAP-ENV:Wrapper>"),
    ),
    ("too large", envelope(header(), BIG_BODY.replace("<p:note>", "<p:note>" + "x" * MAX_XML_BYTES))),
]


@pytest.mark.parametrize("text", [u[1] for u in UNSAFE], ids=[u[0] for u in UNSAFE])
def test_large_messages_the_pull_parser_does_not_take_are_parsed_whole_and_refused(text: str) -> None:
    raw = text.encode()
    assert len(raw) > WHOLE_PARSE_BYTES
    refused = fault_of(lambda: parse_request(raw, XML))
    assert fault_of(lambda: parse_header_ids(raw, XML)).code == refused.code


def test_after_a_refused_message_the_next_one_parses() -> None:
    """The pull parser is reused: a document refused half way must not leave state behind."""
    broken = _large(request())[: WHOLE_PARSE_BYTES + 100]  # well past the Header, cut in the Body
    good = _large(request(replace={"id": "<xrd:id>next</xrd:id>"}))
    for raw in (broken, b"<oops" + b" " * WHOLE_PARSE_BYTES, good):
        with contextlib.suppress(XRoadFault):
            parse_header_ids(raw, XML)
    assert parse_header_ids(good, XML).id == "next"


@pytest.mark.parametrize("case", sorted(BODY_RULES))
def test_the_body_is_not_judged(case: str) -> None:
    """What parse_request refuses about the Body says nothing about whose message it is."""
    raw, content_type, _ = next(c[1:] for c in FAULT_CASES if c[0] == case)
    ids = parse_header_ids(raw, content_type)
    assert ids.id == "4894e35d-bf0f-44a6-867a-8e51f1daa7e0"
    assert ids.client == parse_request(request(), XML).client


def test_a_large_message_cut_after_its_header_still_names_its_identifiers() -> None:
    """The pull parser stops at the Header's end: the rest's well-formedness is not judged
    (the signature covers the bytes; the Body is the service's business)."""
    raw = _large(request())[:-200]
    assert fault_of(lambda: parse_request(raw, XML)).code == faults.INVALID_SOAP
    assert parse_header_ids(raw, XML).id == parse_request(_large(request()), XML).id
    assert CLIENT and FIELDS and NAMESPACES


@pytest.mark.parametrize("encoding", ["utf-16", "iso-8859-1"])
def test_a_large_message_in_another_encoding(encoding: str) -> None:
    """Fed in chunks that may split a character: the parser joins them as parse_request's does."""
    long_id = "é-ü-" + "x" * (HEADER_CHUNK + 7)
    raw = envelope(header(replace={"id": f"<xrd:id>{long_id}</xrd:id>"}), BIG_BODY, prolog="").encode(
        encoding
    )
    content_type = f"text/xml; charset={encoding}"
    assert len(raw) > WHOLE_PARSE_BYTES
    assert parse_header_ids(raw, content_type).id == parse_request(raw, content_type).id == long_id
