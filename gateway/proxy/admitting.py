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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway.admission import Admission, Overloaded, Ticket
from gateway.connections import ARRIVED
from gateway.proxy.answers import Answer, to_web

TICKET: Final = web.RequestKey("admission_ticket", Ticket)

Refusal = Callable[[web.Request, Overloaded], Answer]
"""The interface's answer to a request it has no room for, in the form that interface speaks."""


def admission_middleware(
    admission: Admission, interface: str, max_body_bytes: int, refusal: Refusal
) -> Middleware:
    """Every request on `interface` waits for room (bounded), or gets `refusal`'s answer."""

    @web.middleware
    async def admit(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            arrived = request.get(ARRIVED)  # set by the listener (connections.LimitedSite)
            async with admission.exchange(
                interface, request.content_length, max_body_bytes, arrived
            ) as ticket:
                request[TICKET] = ticket
                return await handler(request)
        except Overloaded as fault:
            return to_web(refusal(request, fault))

    return admit
