"""A transport that hands each request to a function in this process (after httpx's MockTransport).

Tests give it the handler of the server they stand in for (another gateway's provider path, a
service, a TSA) and so run the consumer and provider paths without sockets. It keeps the
promises of the real transport that callers depend on: the response is bounded by the
request's `max_response_bytes`, the deadline holds, and a handler's OutboundError passes as is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from gateway.outbound.interface import (
    OutboundRequest,
    OutboundResponse,
    ResponseTooLarge,
    Transport,
    describe_timeout,
)

Handler = Callable[[OutboundRequest], Awaitable[OutboundResponse]]


class InProcessTransport(Transport):
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[OutboundRequest] = []
        """Every request sent, in order: what a test may assert about."""

    async def send(self, request: OutboundRequest) -> OutboundResponse:
        self.requests.append(request)
        try:
            response = await asyncio.wait_for(self.handler(request), request.timeout_seconds)
        except TimeoutError as exc:
            raise describe_timeout("the server", request, connecting=False) from exc
        if len(response.body) > request.max_response_bytes:
            raise ResponseTooLarge(request.max_response_bytes, len(response.body))
        return response
