"""soap.HeaderIdsReader: parse_header_ids' answer for every message, reading a message whose
Header is a known one's (but for its free fields' texts) without a parser.

Log verification reads every SOAP record's header identifiers through one reader (gateway.
messagelog.verify), so the reader must give parse_header_ids' identifiers, or its fault, for
any message: whatever the free texts hold (markup, references, comments, line breaks), and
whatever tries to pass another element's text off as the id.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.faults import XRoadFault
from gateway.protocol import soap
from gateway.protocol.soap import HeaderIds, HeaderIdsReader, parse_header_ids
from tests.test_soap import XML, request
from tests.test_soap_header_ids import BIG_BODY


def answer(
    read: Callable[[bytes, str | None], HeaderIds], raw: bytes, content_type: str | None = XML
) -> HeaderIds | str:
    """The identifiers, or the fault code."""
    try:
        return read(raw, content_type)
    except XRoadFault as fault:
        return fault.code


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The messages the reader hands to parse_header_ids (the real one, counted)."""
    seen: list[bytes] = []
    real = soap.parse_header_ids

    def counted(raw: bytes, content_type: str | None) -> HeaderIds:
        seen.append(raw)
        return real(raw, content_type)

    monkeypatch.setattr(soap, "parse_header_ids", counted)
    return seen


def _id(text: str) -> dict[str, str]:
    return {"id": f"<xrd:id>{text}</xrd:id>"}


def test_a_known_header_is_read_without_a_parser(parses: list[bytes]) -> None:
    reader = HeaderIdsReader()
    first = request(replace=_id("m-1"))
    assert reader.read(first, XML) == parse_header_ids(first, XML)
    learnt = len(parses)  # the message, and the probe that shows where its id is
    for number in range(2, 50):
        raw = request(
            replace={
                **_id(f"m-{number}"),
                "userId": f"<xrd:userId>EE{number}</xrd:userId>",
                "issue": f"<xrd:issue>case {number}</xrd:issue>",
            }
        )
        assert reader.read(raw, XML) == parse_header_ids(raw, XML)
    assert len(parses) == learnt


_TEXT = st.lists(
    st.sampled_from(list("abcXYZ019 -._:/+=@,;()"))
    | st.sampled_from(["<!-- c -->", "&amp;", "&#65;", "<x/>", "]]>", "\r\n", "\t", "é", "<", "&", ">"]),
    max_size=12,
).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_TEXT, _TEXT, st.booleans()), min_size=1, max_size=6))
def test_any_free_text_reads_as_parse_header_ids(variants: list[tuple[str, str, bool]]) -> None:
    """Messages of a known Header with drawn texts in its id and userId (any markup), small or large."""
    reader = HeaderIdsReader()
    assert isinstance(answer(reader.read, request()), HeaderIds)
    for message_id, user_id, large in variants:
        raw = request(
            replace={**_id(message_id), "userId": f"<xrd:userId>{user_id}</xrd:userId>"},
            **({"body": BIG_BODY} if large else {}),
        )
        assert answer(reader.read, raw) == answer(parse_header_ids, raw)


FOREIGN_ID = '<f:id xmlns:f="urn:foreign">m-1</f:id>'

DECOYS = [
    pytest.param({"replace": _id("m-1"), "extra": FOREIGN_ID}, id="a foreign id with the id's text"),
    pytest.param({"extra": FOREIGN_ID}, id="a foreign id with another text"),
    pytest.param(
        {"replace": {"id": '<xrd:id note="a>b">m-1</xrd:id>'}, "extra": FOREIGN_ID},
        id="the id out of the pattern's reach, a foreign one in it",
    ),
    pytest.param(
        {"replace": _id("m-1"), "extra": "<!-- <xrd:id>m-1</xrd:id> -->"}, id="a comment holding an id"
    ),
    pytest.param({"replace": {"id": "<xrd:id><![CDATA[m-1]]></xrd:id>"}}, id="the id in CDATA"),
    pytest.param({"replace": {"id": "<xrd:id>m-&#49;</xrd:id>"}}, id="a reference in the id"),
]


@pytest.mark.parametrize("shape", DECOYS)
def test_no_other_text_is_taken_for_the_id(shape: dict[str, object]) -> None:
    """Whatever the Header holds, a message changed elsewhere than its id keeps its id."""
    reader = HeaderIdsReader()
    first = request(**shape)  # type: ignore[arg-type]
    assert answer(reader.read, first) == answer(parse_header_ids, first)
    for text in ("m-2", "m-1", "other"):
        changed = first.replace(b">m-1</f:id>", f">{text}</f:id>".encode()).replace(
            b"<xrd:id>m-1</xrd:id> -->", f"<xrd:id>{text}</xrd:id> -->".encode()
        )
        assert answer(reader.read, changed) == answer(parse_header_ids, changed)


def test_a_header_is_known_for_its_content_type_only(parses: list[bytes]) -> None:
    reader = HeaderIdsReader()
    reader.read(request(replace=_id("m-1")), XML)
    before = len(parses)
    other = request(replace=_id("m-2"))
    assert answer(reader.read, other, "text/xml; charset=ISO-8859-1") == answer(
        parse_header_ids, other, "text/xml; charset=ISO-8859-1"
    )
    assert len(parses) > before
