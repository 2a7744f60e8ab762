"""Asking a TSA for an RFC 3161 time-stamp over HTTP (RFC 3161 §3.4).

The HTTP edge of `gateway.crypto.timestamp`, which builds the request and parses and verifies
tokens sans-IO; the message log stamps its batches through here.
"""

from __future__ import annotations

import hmac

from gateway.crypto.timestamp import (
    MAX_RESPONSE_BYTES,
    TIMESTAMP_QUERY_TYPE,
    TIMESTAMP_REPLY_TYPE,
    TimestampError,
    TimestampProblem,
    build_timestamp_request,
    new_nonce,
    parse_timestamp_response,
)
from gateway.outbound.interface import ExchangeFailed, Transport, post_for


async def request_timestamp(transport: Transport, url: str, digest: bytes, timeout: float) -> bytes:
    """Ask the TSA at `url` to stamp `digest` (RFC 3161 §3.4); returns the token's DER.

    The answer must echo our nonce and imprint, so a replayed or misrouted response is
    refused; whether the token's signer is trusted is `verify_timestamp_token`'s to say.
    """
    nonce = new_nonce()
    request = build_timestamp_request(digest, nonce)
    try:
        body = await post_for(
            transport,
            url,
            request,
            content_type=TIMESTAMP_QUERY_TYPE,
            answer_type=TIMESTAMP_REPLY_TYPE,
            timeout=timeout,
            max_bytes=MAX_RESPONSE_BYTES,
        )
    except ExchangeFailed as exc:
        raise TimestampError(TimestampProblem.UNAVAILABLE, f"TSA {exc}") from exc
    token = parse_timestamp_response(body)
    if token.nonce != nonce:
        raise TimestampError(TimestampProblem.MISMATCH, "the TSA did not echo our nonce")
    if token.hash_algorithm != "sha256" or not hmac.compare_digest(token.hashed_message, digest):
        raise TimestampError(TimestampProblem.MISMATCH, "the TSA stamped another digest")
    return token.der
