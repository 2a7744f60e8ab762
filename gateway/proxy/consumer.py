"""The internal interface: agency systems' requests, read top to bottom as in DESIGN.md steps 1-4, 8.

SOAP on any path (docs/compatibility.md), REST on `/r1/...`, `GET /listClients` and the legacy
`GET /wsdl?...` WSDL download.  Each handler: read the
message within the size limit, parse it (sans-IO), authenticate the client system, check
the global configuration, then `_Hop` signs and logs the request and sends it to the
provider's gateway (which verifies the answer), the answer is checked against the request
and logged, and only then answers the client. The interface cache sits between the sending
and the answering (proxy/cached.py): with a policy for the request it may answer from a
stored verified answer instead, marked as such.
Every XRoadFault becomes a SOAP fault or a REST error here (answers.py).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway import faults
from gateway.admission import INTERNAL, Overloaded
from gateway.cache.copies import ServedCopy
from gateway.cache.marking import HEADER_CACHE, CacheMark, mark_in
from gateway.cache.replication import REPLICATING
from gateway.faults import FaultCompat, XRoadFault
from gateway.globalconf.model import GlobalConf
from gateway.ids import ClientId, SecurityServerId
from gateway.messagelog.record import Direction, Side
from gateway.monitoring.exchange import Role
from gateway.outbound import header
from gateway.protocol import rest, soap
from gateway.protocol.soapaction import FIELD as SOAP_ACTION
from gateway.protocol.soapaction import TRANSPORT_FIELD as SOAP_ACTION_BETWEEN_GATEWAYS
from gateway.protocol.soapaction import checked_soap_action
from gateway.protocol.transport import (
    Payload,
    RestRequestPayload,
    RestResponsePayload,
    SoapPayload,
    TransportMessage,
)
from gateway.proxy import cached, metadata, replicating
from gateway.proxy.admitting import WATCH, admission_middleware
from gateway.proxy.answers import (
    Answer,
    logged_fault,
    rest_answer,
    rest_fault_answer,
    soap_answer,
    soap_fault_answer,
    to_web,
)
from gateway.proxy.exchange import SignedAnswer, exchange
from gateway.proxy.records import ExchangeIds, ExchangeLog
from gateway.proxy.runtime import GatewayRuntime
from gateway.proxy.steps import (
    CONSUMER_OWN_STATUS_FAULTS,
    new_exchange_id,
    own_status,
    read_body,
    sign_payload,
)
from gateway.serverconf.model import ClientAuthMode

log = logging.getLogger(__name__)

RUNTIME: Final = web.AppKey("runtime", GatewayRuntime)

HOP_MARGIN_SECONDS: Final = 5.0
"""Room for the gateways' own work beyond the backend's timeout before the consumer gives up."""


async def handle_soap(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    journal = ExchangeLog(runtime.messagelog, runtime.snapshot, Side.CONSUMER, request.get(WATCH))
    try:
        answer = await _serve_soap(runtime, journal, request)
    except XRoadFault as fault:
        answer = await logged_fault(journal, fault, soap_fault_answer(fault, runtime.config.compat))
    except Exception:  # never a stack trace to the caller
        log.exception("unexpected error on the SOAP path")
        internal = XRoadFault(faults.CLIENT_PROXY_INTERNAL_ERROR, "internal error")
        answer = await logged_fault(journal, internal, soap_fault_answer(internal, runtime.config.compat))
    return to_web(answer)


async def _serve_soap(runtime: GatewayRuntime, journal: ExchangeLog, request: web.Request) -> Answer:
    if request.method != "POST":
        raise XRoadFault(faults.INVALID_HTTP_METHOD, f"SOAP requests must be POSTed, not {request.method}")
    soap_action = checked_soap_action(request.headers.get(SOAP_ACTION))
    body = await read_body(request, runtime.config.max_message_bytes)
    return await _exchange_soap(
        runtime, journal, request, body, request.headers.get("Content-Type"), soap_action
    )


async def _exchange_soap(
    runtime: GatewayRuntime,
    journal: ExchangeLog,
    request: web.Request,
    body: bytes,
    content_type: str | None,
    soap_action: str | None,
) -> Answer:
    """DESIGN.md steps 1-4, 8 for one SOAP request: what a client POSTed, or what the gateway
    asks on a client's behalf (the legacy WSDL download)."""
    message = soap.parse_request(body, content_type)
    watch = journal.watch
    if watch is not None:
        watch.request_size, watch.request_attachments = len(body), len(message.attachments)
    journal.identify(
        ExchangeIds.of_soap(runtime.gateway_name, new_exchange_id(), Side.CONSUMER, message), message.client
    )
    authenticate_client(runtime, message.client, request)
    conf = runtime.valid_globalconf()
    journal.check_ready()
    payload = SoapPayload(content_type or "text/xml", body)
    # The SOAPAction goes to the provider's gateway beside the signed message, as in X-Road.
    fields = () if soap_action is None else ((SOAP_ACTION_BETWEEN_GATEWAYS, soap_action),)
    hop = _Hop(
        runtime, journal, conf, message.client, message.service.provider, message.security_server, fields
    )
    return await cached.answer(
        runtime.cache,
        runtime.snapshot,
        conf,
        cached.soap_question(
            message, revalidate=cached.wants_revalidation(request.headers.get("Cache-Control"))
        ),
        hop.cache_steps(
            payload,
            lambda answer: _checked_soap_answer(journal, message, answer, runtime.config.compat),
            cached.serve_soap,
        ),
    )


async def handle_legacy_wsdl(request: web.Request) -> web.StreamResponse:
    """`GET /wsdl?xRoadInstance=..&serviceCode=..`: a getWsdl exchange made for the client the
    gateway is configured with (or the query's `client`), answered with the WSDL alone.

    Signed and logged like any getWsdl, the client authenticated like any client; a fault is
    answered as a SOAP fault.
    """
    runtime = request.app[RUNTIME]
    journal = ExchangeLog(runtime.messagelog, runtime.snapshot, Side.CONSUMER, request.get(WATCH))
    try:
        body = metadata.legacy_wsdl_request(request.query, runtime.config.wsdl_client, new_exchange_id())
        answer = await _exchange_soap(runtime, journal, request, body, metadata.WSDL_CONTENT_TYPE, '""')
        wsdl = metadata.wsdl_of_get_wsdl_answer(answer.body, answer.content_type)
        if wsdl is not None:  # else a fault, passed on as it came
            answer = Answer(200, (("Content-Type", metadata.WSDL_CONTENT_TYPE),), wsdl)
    except XRoadFault as fault:
        answer = await logged_fault(journal, fault, soap_fault_answer(fault, runtime.config.compat))
    except Exception:
        log.exception("unexpected error on the WSDL download")
        internal = XRoadFault(faults.CLIENT_PROXY_INTERNAL_ERROR, "internal error")
        answer = await logged_fault(journal, internal, soap_fault_answer(internal, runtime.config.compat))
    return to_web(answer)


async def _checked_soap_answer(
    journal: ExchangeLog, message: soap.SoapMessage, answer: SignedAnswer, compat: FaultCompat
) -> cached.Checked:
    """DESIGN.md step 8 for SOAP: the answer is the provider's, for this request; logged."""
    if not isinstance(answer.payload, SoapPayload):
        raise XRoadFault(faults.INCONSISTENT_RESPONSE, "the provider answered a SOAP request with REST")
    fault: XRoadFault | None = None
    own_fault: tuple[str, str] | None = None
    try:
        response = soap.parse_response(answer.payload.body, answer.payload.content_type)
    except soap.ServiceFault as service_fault:
        # The service's or the provider gateway's own fault, signed: passed on as it is; a
        # gateway's fault code (either style) becomes the log record's outcome, canonical.
        response = None
        own_fault = service_fault.code, service_fault.message
        if _is_gateway_code(service_fault.code):
            fault = XRoadFault(
                faults.canonical(service_fault.code), service_fault.message, service_fault.detail
            )
    if response is not None:
        answer.require_signer(message.service.provider.member)
        soap.check_response_consistency(message, response)
        check_request_hash(message, response)
    record = await journal.signed(
        Direction.RESPONSE, answer.message, ocsp_response=answer.signer_ocsp, fault=fault
    )
    if journal.watch is not None:
        if response is not None:
            journal.watch.response_attachments = len(response.attachments)
        elif fault is None and own_fault is not None:  # the service's own: not a success either
            journal.watch.failed(*own_fault)
    given = soap_answer(answer.payload, is_fault=response is None, fault_status=compat.soap_fault_status)
    # The provider's own cache marks an answer in its Header; the client sees the fields too.
    provider_mark = None if response is None else mark_in(response.envelope)
    if provider_mark is not None:
        given = Answer(given.status, (*given.headers, *provider_mark.http_fields()), given.body)
    return cached.Checked(
        given,
        answer,
        record,
        failure=cached.provider_failure(fault),
        keep=response is not None and provider_mark is None,
        fault=None if fault is None else fault.code,
    )


async def handle_rest(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    accept = request.headers.get("Accept")
    journal = ExchangeLog(runtime.messagelog, runtime.snapshot, Side.CONSUMER, request.get(WATCH))
    try:
        answer = await _serve_rest(runtime, journal, request)
    except XRoadFault as fault:
        answer = await logged_fault(journal, fault, rest_fault_answer(fault, accept, runtime.config.compat))
    except Exception:
        log.exception("unexpected error on the REST path")
        internal = XRoadFault(faults.CLIENT_PROXY_INTERNAL_ERROR, "internal error")
        answer = await logged_fault(
            journal, internal, rest_fault_answer(internal, accept, runtime.config.compat)
        )
    return to_web(answer)


async def _serve_rest(runtime: GatewayRuntime, journal: ExchangeLog, request: web.Request) -> Answer:
    body = await read_body(request, runtime.config.max_message_bytes)
    parsed = rest.parse_rest_request(
        request.method,
        request.rel_url.raw_path,
        request.rel_url.raw_query_string,
        list(request.headers.items()),
        body,
        max_body_bytes=runtime.config.max_message_bytes,
    )
    call = parsed.request if isinstance(parsed, rest.RestMetadataRequest) else parsed
    watch = journal.watch
    if watch is not None:
        watch.request_size, watch.rest_method, watch.rest_path = len(body), call.method, call.endpoint_path
    journal.identify(
        ExchangeIds.of_rest(runtime.gateway_name, new_exchange_id(), Side.CONSUMER, call), call.client
    )
    authenticate_client(runtime, call.client, request)
    conf = runtime.valid_globalconf()
    journal.check_ready()
    payload = RestRequestPayload(
        method=request.method,
        path=request.rel_url.raw_path,
        query=request.rel_url.raw_query_string,
        headers=_forwarded_headers(request, call),
        body=body,
    )
    hop = _Hop(runtime, journal, conf, call.client, call.service.provider, call.security_server)
    return await cached.answer(
        runtime.cache,
        runtime.snapshot,
        conf,
        cached.rest_question(call, revalidate=cached.wants_revalidation(request.headers.get("Cache-Control")))
        if call is parsed
        else None,
        hop.cache_steps(
            payload, lambda answer: _checked_rest_answer(journal, call, answer), cached.serve_rest
        ),
    )


async def _checked_rest_answer(
    journal: ExchangeLog, call: rest.RestRequest, answer: SignedAnswer
) -> cached.Checked:
    """DESIGN.md step 8 for REST: the answer is the provider's, for this request; logged."""
    if isinstance(answer.payload, SoapPayload):
        # A provider gateway's fault before it could tell the request was REST comes as a signed
        # SOAP fault: its code, message and detail go on in this client's form, logged as sent.
        raise _signed_soap_fault(answer.payload) or XRoadFault(
            faults.INCONSISTENT_RESPONSE, "the provider answered a REST request with SOAP"
        )
    if not isinstance(answer.payload, RestResponsePayload):
        raise XRoadFault(faults.INCONSISTENT_RESPONSE, "the provider answered a REST request with SOAP")
    fault = _gateway_fault(answer.payload)
    if fault is None:
        answer.require_signer(call.service.provider.member)
    if fault is None or header(answer.payload.headers, rest.HEADER_ID) is not None:
        # A gateway's fault before it could read the request has no identifiers to echo.
        rest.check_rest_response_consistency(
            call, answer.payload.headers, request_hash=rest.rest_request_hash(call)
        )
    record = await journal.signed(
        Direction.RESPONSE, answer.message, ocsp_response=answer.signer_ocsp, fault=fault
    )
    status = answer.payload.status
    return cached.Checked(
        rest_answer(answer.payload),
        answer,
        record,
        failure=cached.provider_failure(fault, status),
        keep=fault is None and 200 <= status < 300 and header(answer.payload.headers, HEADER_CACHE) is None,
        fault=None if fault is None else fault.code,
    )


def _signed_soap_fault(payload: SoapPayload) -> XRoadFault | None:
    """A gateway's X-Road fault inside a verified SOAP answer, or None."""
    try:
        fault = soap.parse_fault(payload.body, payload.content_type)
    except XRoadFault:
        return None
    if fault is None or not _is_gateway_code(fault.code):
        return None
    code = faults.canonical(fault.code)
    return XRoadFault(code, fault.string, fault.detail) if fault.detail else XRoadFault(code, fault.string)


def _is_gateway_code(code: str) -> bool:
    """An X-Road fault code (a gateway's), not a service's own `SOAP-ENV:Server` and the like."""
    return code.lower().startswith(("server.", "client."))  # in either style, any case


def _gateway_fault(payload: RestResponsePayload) -> XRoadFault | None:
    """The provider gateway's signed REST error (marked by `X-Road-Error`), as the log records it."""
    code = header(payload.headers, rest.HEADER_ERROR)
    if code is None:
        return None
    error = rest.parse_rest_error(payload.body, header(payload.headers, "Content-Type") or "")
    if error is None:
        return XRoadFault(faults.canonical(code[:200]), f"HTTP {payload.status}")
    return XRoadFault(faults.canonical(error.code), error.message, error.detail)


def authenticate_client(runtime: GatewayRuntime, client: ClientId, request: web.Request) -> None:
    """DESIGN.md step 1: the client must be registered here and connect as its mode demands."""
    subsystem = runtime.snapshot.subsystem(client)
    if subsystem is None:
        raise XRoadFault(faults.UNKNOWN_MEMBER, f"client {client} is not registered at this gateway")
    if subsystem.auth_mode is ClientAuthMode.HTTP or REPLICATING.get():
        return  # a replicated call never left the node: no connection to authenticate
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    if ssl_object is None:
        raise XRoadFault(faults.SSL_AUTHENTICATION_FAILED, f"client {client} must connect over HTTPS")
    if subsystem.auth_mode is ClientAuthMode.HTTPS_CERT:
        der = ssl_object.getpeercert(binary_form=True)
        if der is None or not subsystem.accepts_certificate(der):
            raise XRoadFault(
                faults.SSL_AUTHENTICATION_FAILED,
                f"client {client} did not present a certificate registered for it",
            )


@dataclass(frozen=True)
class _SignedRequest:
    message: TransportMessage
    status_headers: dict[str, str]
    signer_ocsp: bytes | None


@dataclass(frozen=True)
class _Hop:
    """DESIGN.md steps 3-4 and 8 for one client's request: sign and log it, send it, verify the answer."""

    runtime: GatewayRuntime
    journal: ExchangeLog
    conf: GlobalConf
    client: ClientId
    provider: ClientId
    requested_server: SecurityServerId | None
    fields: tuple[tuple[str, str], ...] = ()
    """Sent to the provider's gateway beside the transport message (the SOAPAction)."""

    async def sign(self, payload: Payload) -> _SignedRequest:
        if not self.conf.is_known(self.provider):
            raise XRoadFault(faults.UNKNOWN_MEMBER, f"provider {self.provider} is not in the federation")
        signer = self.runtime.signer_for(self.client.member, faults.CLIENT_PROXY_INTERNAL_ERROR)
        status = own_status(self.runtime, self.conf, self.client.member, CONSUMER_OWN_STATUS_FAULTS)
        signed = await sign_payload(signer, payload, self.journal.watch)
        return _SignedRequest(signed, status.headers, status.signer_ocsp)

    async def log(self, request: _SignedRequest) -> None:
        await self.journal.signed(Direction.REQUEST, request.message, ocsp_response=request.signer_ocsp)

    async def send(self, request: _SignedRequest) -> SignedAnswer:
        return await exchange(
            self.runtime,
            self.conf,
            self.provider,
            self.requested_server,
            request.message,
            timeout_seconds=self.runtime.config.backend_timeout_seconds + HOP_MARGIN_SECONDS,
            status_headers={**request.status_headers, **dict(self.fields)},
            watch=self.journal.watch,
        )

    def cache_steps(
        self,
        payload: Payload,
        check: Callable[[SignedAnswer], Awaitable[cached.Checked]],
        serve: Callable[[ExchangeLog, ServedCopy, CacheMark], Awaitable[Answer]],
    ) -> cached.Steps[_SignedRequest]:
        """This hop's steps for the cache: sign, log and send `payload`, `check` the answer, or
        `serve` a stored answer (held to the node's message size)."""
        return cached.Steps(
            sign=lambda: self.sign(payload),
            log=self.log,
            send=self.send,
            check=check,
            serve=lambda copy, mark: serve(self.journal, copy, mark),
            max_bytes=self.runtime.config.max_message_bytes,
            watch=self.journal.watch,
        )


def check_request_hash(request: soap.SoapMessage, response: soap.SoapMessage) -> None:
    """The provider's gateway must vouch for the request we sent, byte for byte (PROTOCOL.md)."""
    expected = soap.request_hash(request.soap_bytes)
    if response.request_hash is None or response.request_hash.value != expected:
        raise XRoadFault(faults.INCONSISTENT_RESPONSE, "the response's requestHash is not our request's")


def _forwarded_headers(request: web.Request, call: rest.RestRequest) -> tuple[tuple[str, str], ...]:
    """The client's fields as received, with the X-Road-Id the consumer settled on.

    The provider re-reads them with the same parser, so both gateways see the same request
    and compute the same request hash.
    """
    fields = [(name, value) for name, value in request.headers.items() if name.lower() != "x-road-id"]
    fields.append((rest.HEADER_ID, call.message_id))
    return tuple(rest.passable_headers(fields) + _protocol_fields(fields))


def _protocol_fields(fields: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(name, value) for name, value in fields if rest.is_consumed_header(name)]


async def handle_list_clients(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    accept = request.headers.get("Accept", "")
    watch = request.get(WATCH)
    if watch is not None:
        watch.ignored = True  # a listing of the configuration, not an exchange
    try:
        conf = runtime.valid_globalconf()
        instance = request.query.get("xRoadInstance")
        if instance is not None and instance != conf.instance:
            clients: list[tuple[ClientId, str | None]] = []
        else:
            clients = [(client, conf.member_name(client)) for client in conf.clients()]
        if "json" in accept.lower():
            return web.json_response(metadata.list_clients_json(clients))
        return web.Response(body=metadata.list_clients_xml(clients), content_type="text/xml", charset="utf-8")
    except XRoadFault as fault:
        return to_web(rest_fault_answer(fault, accept, runtime.config.compat))


def _refusal(request: web.Request, fault: Overloaded) -> Answer:
    """The Overloaded fault in the form the request's path speaks: REST error or SOAP fault."""
    compat = request.app[RUNTIME].config.compat
    if _is_rest_path(request):
        return rest_fault_answer(fault, request.headers.get("Accept"), compat)
    return soap_fault_answer(fault, compat)


def _is_rest_path(request: web.Request) -> bool:
    return rest.is_rest_path(request.rel_url.raw_path) or request.rel_url.raw_path == "/listClients"


async def handle_any(request: web.Request) -> web.StreamResponse:
    """Every request line the internal interface takes, dispatched by path as X-Road's client
    proxy does: REST under `/r1/`, metadata at its documented paths (GET), SOAP everywhere else.

    An absolute-URI request line (the gateway used as an HTTP proxy: `POST http://host/path`)
    routes by its path; one without a path (`POST http://host`) matches no route at all and
    comes here through `_pathless`.
    """
    path = request.rel_url.raw_path or "/"
    if rest.is_rest_path(path):
        return await handle_rest(request)
    if request.method == "GET" and path == "/listClients":
        return await handle_list_clients(request)
    if request.method == "GET" and path == metadata.LEGACY_WSDL_PATH:
        return await handle_legacy_wsdl(request)
    return await handle_soap(request)


@web.middleware
async def _pathless(request: web.Request, handler: Handler) -> web.StreamResponse:
    """`POST http://host HTTP/1.1` has an empty path, which aiohttp's router never matches."""
    if not request.rel_url.raw_path:
        return await handle_any(request)
    return await handler(request)


def make_internal_app(runtime: GatewayRuntime) -> web.Application:
    max_bytes = runtime.config.max_message_bytes
    admit = admission_middleware(runtime, INTERNAL, max_bytes, _refusal, Role.CLIENT)
    app = web.Application(client_max_size=max_bytes, middlewares=[admit, _pathless])
    app[RUNTIME] = runtime
    app.router.add_route("*", "/{tail:.*}", handle_any)
    app.on_startup.append(_start_replication)
    return app


async def _start_replication(app: web.Application) -> None:
    """Replicated calls go through this interface's handlers (proxy/replicating.py)."""
    app[RUNTIME].start_replication(replicating.consumer_fetch(app))
