"""What a gateway answers: the value of one HTTP answer, faults in the form each interface speaks.

Handlers build an :class:`Answer` and the aiohttp edge turns it into a response in one place
(`to_web`), so a path can also be run and checked without a server. A fault is a SOAP fault
(SOAP 1.1 §4.4) on the SOAP paths and a REST error body (PROTOCOL.md "REST protocol r1") on
the REST paths, its HTTP status and code style as the gateway's `[compatibility]` says. A
provider gateway signs its faults (provider.py), and the consumer passes on only what
verified (exchange.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from aiohttp import hdrs, web
from multidict import CIMultiDict

from gateway.admission import Overloaded
from gateway.faults import CLIENT_PROXY_INTERNAL_ERROR, SERVER_PROXY_INTERNAL_ERROR, FaultCompat, XRoadFault
from gateway.messagelog.record import Direction
from gateway.outbound import Headers, header
from gateway.protocol import rest, soap
from gateway.protocol.transport import RestResponsePayload, SoapPayload
from gateway.proxy.records import ExchangeLog

log = logging.getLogger(__name__)

SOAP_FAULT_STATUS: Final = 500
"""SOAP 1.1 §6.2: a fault goes back with HTTP 500 (between gateways; to clients as configured)."""

SOAP_FAULT_CONTENT_TYPE: Final = "text/xml; charset=UTF-8"

OVERLOAD_STATUS: Final = 503
"""RFC 9110 §15.6.4 Service Unavailable: temporary overload, with Retry-After."""

HOP_BY_HOP_FIELDS: Final = frozenset({"content-length", "transfer-encoding", "connection"})
"""Fields of one connection, not of the message (RFC 9110 §7.6.1): set again by this hop."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Headers
    body: bytes

    @property
    def content_type(self) -> str:
        return header(self.headers, "Content-Type") or ""


class _Untyped(web.Response):
    """A response whose body goes out without Content-Type, as its sender sent it.

    aiohttp gives every body one (`application/octet-stream`, RFC 9110 §8.3 lets a recipient
    assume that type anyway); a REST service's answer without one reaches the client without
    one, as through X-Road. Hooks aiohttp's `_prepare_headers` (pinned aiohttp version).
    """

    async def _prepare_headers(self) -> None:
        await super()._prepare_headers()
        self.headers.popall(hdrs.CONTENT_TYPE, None)


def to_web(answer: Answer) -> web.Response:
    if header(answer.headers, hdrs.CONTENT_TYPE) is not None:
        return web.Response(status=answer.status, body=answer.body, headers=CIMultiDict(answer.headers))
    untyped = _Untyped(status=answer.status, body=answer.body, headers=CIMultiDict(answer.headers))
    untyped.headers.popall(hdrs.CONTENT_TYPE, None)  # set with the body, however empty
    return untyped


def soap_fault_answer(fault: XRoadFault, compat: FaultCompat) -> Answer:
    """`fault` as a SOAP fault, its code in `compat`'s style, with `compat`'s HTTP status.

    The fault itself keeps the canonical code: that is what the message log records.
    """
    _log_fault(fault)
    headers = (("Content-Type", SOAP_FAULT_CONTENT_TYPE), *_retry_after(fault))
    return Answer(compat.soap_fault_status, headers, soap.fault_response(_styled(fault, compat)))


def rest_fault_answer(fault: XRoadFault, accept: str | None, compat: FaultCompat) -> Answer:
    """`fault` as a REST error, `X-Road-Error` and the body's `type` in `compat`'s style: X-Road's
    400 or 500 (rest.rest_error_status), except the refusal for lack of room: 503 with
    `Retry-After`, which load balancers and HTTP clients know to retry elsewhere or later
    (docs/compatibility.md "REST r1", a knowing difference from X-Road, whose proxies queue)."""
    _log_fault(fault)
    shown = _styled(fault, compat)
    body, content_type, status = rest.rest_error_body(shown, accept)
    if isinstance(fault, Overloaded):
        status = OVERLOAD_STATUS
    headers = (*rest.error_headers(shown), ("Content-Type", content_type), *_retry_after(fault))
    return Answer(status, headers, body)


def peer_compat(compat: FaultCompat) -> FaultCompat:
    """What the external interface uses: the code style, but HTTP 500 as between gateways."""
    return FaultCompat(SOAP_FAULT_STATUS, compat.fault_code_style)


def _styled(fault: XRoadFault, compat: FaultCompat) -> XRoadFault:
    code = compat.code(fault.code)
    return fault if code == fault.code else XRoadFault(code, fault.message, fault.detail)


def overload_refusal(fault: Overloaded) -> Answer:
    """What the external interface answers when it has no room: unsigned, before reading the body.

    Signing and logging are the work an overloaded gateway has no room for; the consumer
    recognises this answer (HTTP 503 with the fault code in `X-Road-Error`, not a signed
    message) and tries the provider's next gateway (exchange.py).
    """
    body = soap.fault_response(fault)
    headers = (*rest.error_headers(fault), ("Content-Type", "text/xml; charset=utf-8"), *_retry_after(fault))
    return Answer(OVERLOAD_STATUS, headers, body)


def _retry_after(fault: XRoadFault) -> tuple[tuple[str, str], ...]:
    """RFC 9110 §10.2.3: when to come back; only a refusal for lack of room says it."""
    if isinstance(fault, Overloaded):
        return (("Retry-After", str(fault.retry_after_seconds)),)
    return ()


_LOGGED_WHERE_CAUGHT: Final = frozenset({CLIENT_PROXY_INTERNAL_ERROR, SERVER_PROXY_INTERNAL_ERROR})
"""Internal errors: the handler that caught the exception logged it, once, at ERROR with its traceback."""


def _log_fault(fault: XRoadFault) -> None:
    """A server-side fault the operator may act on (a service down, a key unusable), one line.
    A client's mistake is not the gateway's: the access log's fault code is all it gets."""
    if fault.is_client_error or isinstance(fault, Overloaded):  # admission.Gate warns for overload
        return
    if fault.code not in _LOGGED_WHERE_CAUGHT:
        log.warning("fault %s [%s]: %s", fault.code, fault.detail, fault.message)


async def logged_fault(journal: ExchangeLog, fault: XRoadFault, answer: Answer) -> Answer:
    """Logs the fault this gateway answers with, then returns that answer."""
    await journal.fault(Direction.RESPONSE, fault, answer.body, answer.content_type or "text/xml")
    return answer


def soap_answer(payload: SoapPayload, *, is_fault: bool, fault_status: int = SOAP_FAULT_STATUS) -> Answer:
    """The provider's signed SOAP answer, or a fault it signed (bytes as sent, `fault_status`)."""
    status = fault_status if is_fault else 200
    return Answer(status, (("Content-Type", payload.content_type),), payload.body)


def rest_answer(payload: RestResponsePayload) -> Answer:
    """The provider's signed REST answer with its fields, less those of the provider's connection."""
    fields = tuple((name, value) for name, value in payload.headers if name.lower() not in HOP_BY_HOP_FIELDS)
    return Answer(payload.status, fields, payload.body)
