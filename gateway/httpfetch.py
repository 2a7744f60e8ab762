"""Asking an outside server over HTTP with bounds: no redirects, a deadline, a ceiling on the answer.

Whoever answers (an OCSP responder, a TSA, a configuration source, a description URL) may send
more than we are willing to hold; the body is read only up to the ceiling and refused past it,
so memory stays bounded whatever the peer sends. Each caller turns a failure into its own
typed error.
"""

from __future__ import annotations

import asyncio

import aiohttp


class ExchangeFailed(Exception):
    """The server could not be reached, or did not answer as asked; the message says how."""


async def read_at_most(response: aiohttp.ClientResponse, max_bytes: int) -> bytes | None:
    """The whole body, or None when it is longer than `max_bytes` (read no further than one byte past)."""
    try:
        await response.content.readexactly(max_bytes + 1)
    except asyncio.IncompleteReadError as short:
        return short.partial
    return None


async def post_for(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    *,
    content_type: str,
    answer_type: str,
    timeout: float,
    max_bytes: int,
) -> bytes:
    """POST `body` to `url`; the answer's body, which must be 200 and `answer_type`, else ExchangeFailed.

    Messages read after the server's name: "answered HTTP 503", "at URL unreachable: ...".
    """
    try:
        async with session.post(
            url,
            data=body,
            headers={"Content-Type": content_type, "Accept": answer_type},
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,
        ) as response:
            if response.status != 200:
                raise ExchangeFailed(f"answered HTTP {response.status}")
            if response.content_type != answer_type:
                raise ExchangeFailed(f"answered {response.content_type}, not {answer_type}")
            answer = await read_at_most(response, max_bytes)
            if answer is None:
                raise ExchangeFailed(f"answered more than {max_bytes} bytes")
            return answer
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ExchangeFailed(f"at {url} unreachable: {exc!r}") from exc
