"""The aiohttp edge of admission control (gateway/admission.py) for the internal and external interfaces.

A middleware holds each request's place on its interface and room for its announced body
before the handler runs, and answers the interface's Overloaded fault when none comes within
the bounded wait; the request's `Ticket` rides on the request so that `steps.read_body` can
hold room for a body without Content-Length as it arrives.  A refusal here is counted
(`/health` "admission") and not written to the message log: no message was read, like a
connection the listener closes when full (gateway/connections.py), and an overloaded node has
no room for log writes.  A refusal while a body without Content-Length arrives is raised in
the handler and logged like any fault there.  The wait is bounded from the request's arrival
(connections.ARRIVED), not from when the busy loop got to it.

The middleware is also where an exchange's observation starts and ends (proxy/watching.py):
the watch starts before the wait for room, so the record's times include it, and the record
goes to the node's observers once the answer is written, refusals included.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway.admission import Overloaded, Ticket
from gateway.connections import ARRIVED
from gateway.monitoring.exchange import Role
from gateway.protocol.rest import is_rest_path
from gateway.proxy.answers import Answer, to_web
from gateway.proxy.runtime import GatewayRuntime
from gateway.proxy.watching import Watch

TICKET: Final = web.RequestKey("admission_ticket", Ticket)
WATCH: Final = web.RequestKey("exchange_watch", Watch)
"""The exchange's observation, when the node has observers (handlers read it with `.get`)."""

Refusal = Callable[[web.Request, Overloaded], Answer]
"""The interface's answer to a request it has no room for, in the form that interface speaks."""


def admission_middleware(
    runtime: GatewayRuntime, interface: str, max_body_bytes: int, refusal: Refusal, role: Role
) -> Middleware:
    """Every request on `interface` waits for room (bounded), or gets `refusal`'s answer; each
    exchange is observed as `role`'s (GatewayRuntime.observe_exchange) when anyone listens."""
    admission = runtime.admission

    @web.middleware
    async def admit(request: web.Request, handler: Handler) -> web.StreamResponse:
        watch = None
        if runtime.exchange_observers:
            watch = Watch(role, "rest" if is_rest_path(request.rel_url.raw_path) else "soap")
            request[WATCH] = watch
        try:
            arrived = request.get(ARRIVED)  # set by the listener (connections.LimitedSite)
            async with admission.exchange(
                interface, request.content_length, max_body_bytes, arrived
            ) as ticket:
                request[TICKET] = ticket
                response = await handler(request)
        except asyncio.CancelledError:  # the client went away: no answer, the exchange ended all the same
            if watch is not None and not watch.ignored:
                runtime.observe_exchange(watch.abandoned())
            raise
        except Overloaded as fault:
            if watch is not None:
                watch.failed(fault.code, fault.message)
            response = to_web(refusal(request, fault))
        if watch is not None and not watch.ignored:
            await _written_then_observed(runtime, request, response, watch)
        return response

    return admit


async def _written_then_observed(
    runtime: GatewayRuntime, request: web.Request, response: web.StreamResponse, watch: Watch
) -> None:
    """Write the answer now (aiohttp leaves a prepared answer as it is), then report the
    exchange, whether or not the client was still there to take it. A client gone before its
    answer is left to aiohttp, which ignores it when it writes the answer again."""
    try:
        await response.prepare(request)
        await response.write_eof()
    except ConnectionError:
        pass
    finally:
        body = response.body if isinstance(response, web.Response) else None
        size = len(body) if isinstance(body, bytes) else 0
        runtime.observe_exchange(watch.record(response.status, size))
