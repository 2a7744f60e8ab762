"""The outbound interface's own promises, checked with the in-process transport (no sockets).

The aiohttp transport's bounds against a real server are tests/test_backend.py's; its pinning
of peer certificates is proved end to end (test_e2e_security.py).
"""

from __future__ import annotations

import pytest

from gateway.outbound import (
    ExchangeFailed,
    InProcessTransport,
    OutboundError,
    OutboundRequest,
    OutboundResponse,
    ResponseTooLarge,
    header,
    post_for,
)

OCSP_REQUEST = "application/ocsp-request"
OCSP_RESPONSE = "application/ocsp-response"


async def post_ocsp_query(transport: InProcessTransport) -> bytes:
    """post_for with an OCSP query b"q" to http://ocsp/: 1 s, answers of up to 64 bytes."""
    return await post_for(
        transport,
        "http://ocsp/",
        b"q",
        content_type=OCSP_REQUEST,
        answer_type=OCSP_RESPONSE,
        timeout=1,
        max_bytes=64,
    )


def test_header_names_compare_without_case_and_the_first_value_wins() -> None:
    fields = (("content-TYPE", "text/xml; charset=UTF-8"), ("X-Road-Id", "1"), ("x-road-id", "2"))
    response = OutboundResponse(200, fields, b"")

    assert header(fields, "X-ROAD-ID") == "1"
    assert header(fields, "Accept") is None
    assert response.content_type == "text/xml; charset=UTF-8"
    assert response.media_type == "text/xml"


def test_too_large_says_by_how_much_where_it_is_known() -> None:
    assert ResponseTooLarge(10, 12).describe("the answer") == "the answer of 12 bytes exceeds 10"
    assert ResponseTooLarge(10).describe("the answer") == "the answer exceeds 10 bytes"


async def test_post_for_sends_the_media_types_and_returns_the_body() -> None:
    async def responder(request: OutboundRequest) -> OutboundResponse:
        return OutboundResponse(200, (("Content-Type", OCSP_RESPONSE),), b"answer:" + request.body)

    transport = InProcessTransport(responder)

    body = await post_ocsp_query(transport)

    assert body == b"answer:q"
    (sent,) = transport.requests
    assert (sent.method, sent.url, sent.timeout_seconds, sent.max_response_bytes) == (
        "POST",
        "http://ocsp/",
        1,
        64,
    )
    assert (
        header(sent.headers, "Content-Type") == OCSP_REQUEST
        and header(sent.headers, "Accept") == OCSP_RESPONSE
    )


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (OutboundResponse(503, (("Content-Type", OCSP_RESPONSE),), b""), "answered HTTP 503"),
        (OutboundResponse(200, (("Content-Type", "text/html"),), b"<html>"), "answered text/html, not"),
        (OutboundResponse(200, (("Content-Type", OCSP_RESPONSE),), b"x" * 65), "more than 64 bytes"),
        (OutboundError("ClientConnectorError: refused"), "unreachable"),
    ],
)
async def test_post_for_refuses_what_is_not_the_answer_asked_for(
    answer: OutboundResponse | OutboundError, reason: str
) -> None:
    async def responder(request: OutboundRequest) -> OutboundResponse:
        if isinstance(answer, OutboundError):
            raise answer
        return answer

    with pytest.raises(ExchangeFailed, match=reason):
        await post_ocsp_query(InProcessTransport(responder))
