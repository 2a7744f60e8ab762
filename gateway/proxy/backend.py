"""Calling an agency's own service from the provider's gateway (DESIGN.md step 6-7).

Every way a backend can fail maps to one documented `ServiceFailed.*` fault; nothing a
backend sends is buffered beyond the node's message limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from ssl import SSLContext

import aiohttp
from multidict import CIMultiDict

from gateway.httpfetch import read_at_most
from gateway.protocol import faults
from gateway.protocol.faults import XRoadFault

# Only these reach a SOAP service (PROTOCOL.md "SOAP message protocol 4.0").
SOAP_PASSED_HEADERS = ("Content-Type", "SOAPAction")


@dataclass(frozen=True)
class BackendResponse:
    status: int
    content_type: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


async def read_limited(
    response: aiohttp.ClientResponse,
    max_bytes: int,
    fault_code: str = faults.SERVICE_FAILED_RESPONSE_TOO_LARGE,
    what: str = "the service's response",
) -> bytes:
    """The body, or the `fault_code` fault as soon as it passes `max_bytes` (never buffered beyond)."""
    if response.content_length is not None and response.content_length > max_bytes:
        raise XRoadFault(fault_code, f"{what} of {response.content_length} bytes exceeds {max_bytes}")
    body = await read_at_most(response, max_bytes)
    if body is None:
        raise XRoadFault(fault_code, f"{what} exceeds {max_bytes} bytes")
    return body


async def call_backend(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    *,
    timeout_seconds: float,
    max_bytes: int,
    ssl: SSLContext | None = None,
) -> BackendResponse:
    """One HTTP exchange with the service; redirects are not followed (PROTOCOL.md REST r1)."""
    timeout = aiohttp.ClientTimeout(total=timeout_seconds)
    try:
        async with session.request(
            method,
            url,
            headers=CIMultiDict(headers),
            data=body if body or method not in ("GET", "HEAD") else None,
            timeout=timeout,
            allow_redirects=False,
            ssl=ssl if ssl is not None else True,
        ) as response:
            payload = await read_limited(response, max_bytes)
            return BackendResponse(
                status=response.status,
                content_type=response.headers.get("Content-Type", ""),
                headers=tuple(response.headers.items()),
                body=payload,
            )
    except TimeoutError as exc:
        raise XRoadFault(
            faults.SERVICE_FAILED_TIMEOUT, f"the service did not answer within {timeout_seconds:g} s"
        ) from exc
    except aiohttp.InvalidURL as exc:
        raise XRoadFault(faults.SERVICE_FAILED_NETWORK_ERROR, f"invalid service address: {exc}") from exc
    except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
        raise XRoadFault(
            faults.SERVICE_FAILED_NETWORK_ERROR, f"cannot reach the service: {type(exc).__name__}"
        ) from exc
