"""The internal interface: agency systems' requests, read top to bottom as in DESIGN.md.

SOAP on `POST /`, REST on `/r1/...`, and `GET /listClients`.  Each handler: read the
message within the size limit, parse it (sans-IO), authenticate the client system, check
the global configuration, sign, send to the provider's gateway, verify the answer, and
only then answer the client.  Every XRoadFault becomes a SOAP fault or a REST error here.
"""

from __future__ import annotations

import logging
import ssl
import uuid
from typing import Final

from aiohttp import web

from gateway.ids import ClientId
from gateway.messagelog.record import Direction, Side
from gateway.protocol import faults, rest, soap
from gateway.protocol.faults import XRoadFault, fault_detail_id
from gateway.protocol.transport import RestRequestPayload, RestResponsePayload, SoapPayload
from gateway.proxy import metadata
from gateway.proxy.exchange import PeerError, exchange, own_status, sign_payload
from gateway.proxy.records import ExchangeIds, ExchangeLog
from gateway.proxy.runtime import GatewayRuntime
from gateway.serverconf.model import ClientAuthMode

log = logging.getLogger(__name__)

RUNTIME: Final = web.AppKey("runtime", GatewayRuntime)
# Room for the gateways' own work beyond the backend's timeout before the consumer gives up.
HOP_MARGIN_SECONDS: Final = 5.0
# Without a good OCSP response for its TLS certificate the consumer cannot authenticate to the
# provider; without one for the signing certificate its signature would be refused.
_OWN_STATUS_FAULTS: Final = (faults.SSL_AUTHENTICATION_FAILED, faults.CLIENT_PROXY_INTERNAL_ERROR)


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The request body, refused as soon as it passes the limit (never buffered beyond it)."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise XRoadFault(
            faults.REQUEST_TOO_LARGE, f"message of {request.content_length} bytes exceeds {max_bytes}"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise XRoadFault(faults.REQUEST_TOO_LARGE, f"message exceeds {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def authenticate_client(runtime: GatewayRuntime, client: ClientId, request: web.Request) -> None:
    """DESIGN.md step 1: the client must be registered here and connect as its mode demands."""
    subsystem = runtime.snapshot.subsystem(client)
    if subsystem is None:
        raise XRoadFault(faults.UNKNOWN_MEMBER, f"client {client} is not registered at this gateway")
    if subsystem.auth_mode is ClientAuthMode.HTTP:
        return
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    if ssl_object is None:
        raise XRoadFault(faults.SSL_AUTHENTICATION_FAILED, f"client {client} must connect over HTTPS")
    if subsystem.auth_mode is ClientAuthMode.HTTPS_CERT:
        der = _client_certificate(ssl_object)
        if der is None or not subsystem.accepts_certificate(der):
            raise XRoadFault(
                faults.SSL_AUTHENTICATION_FAILED,
                f"client {client} did not present a certificate registered for it",
            )


def _client_certificate(ssl_object: ssl.SSLObject) -> bytes | None:
    return ssl_object.getpeercert(binary_form=True)


def soap_fault_response(fault: XRoadFault) -> web.Response:
    if not fault.is_client_error:
        log.warning("fault %s [%s]: %s", fault.code, fault.detail, fault.message)
    return web.Response(status=500, body=soap.fault_response(fault), content_type="text/xml", charset="utf-8")


def rest_fault_response(fault: XRoadFault, accept: str | None) -> web.Response:
    if not fault.is_client_error:
        log.warning("fault %s [%s]: %s", fault.code, fault.detail, fault.message)
    body, content_type, status = rest.rest_error_body(fault, accept)
    response = web.Response(status=status, body=body, headers=dict(rest.error_headers(fault)))
    response.headers["Content-Type"] = content_type
    return response


def _peer_error_response(error: PeerError) -> web.Response:
    """A provider gateway's own fault goes to the client as it came."""
    response = web.Response(status=error.status, body=error.body)
    response.headers["Content-Type"] = error.content_type or "application/octet-stream"
    if error.xroad_error:
        response.headers[rest.HEADER_ERROR] = error.xroad_error
    return response


def _peer_rest_error_response(error: PeerError, accept: str | None) -> web.Response:
    """A provider gateway's REST error, in the form this client's Accept asks for.

    The client's Accept never reaches the provider's gateway, which answers in JSON; the
    fault (code, message, detail id) is passed on unchanged, only its form follows the client.
    """
    fault = rest.parse_rest_error(error.body, error.content_type)
    return _peer_error_response(error) if fault is None else rest_fault_response(fault, accept)


def new_exchange_id() -> str:
    return str(uuid.uuid4())


async def logged_fault(journal: ExchangeLog, fault: XRoadFault, response: web.Response) -> web.Response:
    """Logs the fault this gateway answers with, then returns that answer."""
    body = response.body if isinstance(response.body, bytes) else b""
    await journal.fault(Direction.RESPONSE, fault, body, response.headers.get("Content-Type", "text/xml"))
    return response


def _peer_fault(error: PeerError) -> XRoadFault:
    """The provider gateway's unsigned fault (SOAP fault or REST error body), as the log records it."""
    rest_fault = rest.parse_rest_error(error.body, error.content_type)
    if rest_fault is not None:
        return rest_fault
    try:
        soap_fault = soap.parse_fault(error.body, error.content_type)
    except XRoadFault:
        soap_fault = None
    if soap_fault is not None and soap_fault.code:
        return XRoadFault(soap_fault.code, soap_fault.string, soap_fault.detail or fault_detail_id())
    code = error.xroad_error or faults.SERVER_PROXY_INTERNAL_ERROR
    return XRoadFault(code, f"the provider's gateway answered HTTP {error.status}")


def check_request_hash(request: soap.SoapMessage, response: soap.SoapMessage) -> None:
    """The provider's gateway must vouch for the request we sent, byte for byte (PROTOCOL.md)."""
    expected = soap.request_hash(request.soap_bytes)
    if response.request_hash is None or response.request_hash.value != expected:
        raise XRoadFault(faults.INCONSISTENT_RESPONSE, "the response's requestHash is not our request's")


async def handle_soap(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    journal = ExchangeLog(runtime.messagelog, runtime.snapshot, Side.CONSUMER)
    try:
        if request.method != "POST":
            raise XRoadFault(
                faults.INVALID_HTTP_METHOD, f"SOAP requests must be POSTed, not {request.method}"
            )
        body = await read_body(request, runtime.config.max_message_bytes)
        content_type = request.headers.get("Content-Type")
        message = soap.parse_request(body, content_type)
        journal.identify(
            ExchangeIds.of_soap(runtime.gateway_name, new_exchange_id(), Side.CONSUMER, message),
            message.client,
        )
        authenticate_client(runtime, message.client, request)
        conf = runtime.valid_globalconf()
        journal.check_ready()
        if not conf.is_known(message.service.provider):
            raise XRoadFault(
                faults.UNKNOWN_MEMBER, f"provider {message.service.provider} is not in the federation"
            )
        signer = runtime.signer_for(message.client.member, faults.CLIENT_PROXY_INTERNAL_ERROR)
        status = own_status(runtime, conf, message.client.member, *_OWN_STATUS_FAULTS)
        signed = await sign_payload(signer, SoapPayload(content_type or "text/xml", body))
        await journal.signed(Direction.REQUEST, signed, ocsp_response=status.signer_ocsp)
        answer = await exchange(
            runtime,
            conf,
            message.service.provider,
            message.security_server,
            signed,
            timeout_seconds=runtime.config.backend_timeout_seconds + HOP_MARGIN_SECONDS,
            status_headers=status.headers,
        )
        if not isinstance(answer.payload, SoapPayload):
            raise XRoadFault(faults.INCONSISTENT_RESPONSE, "the provider answered a SOAP request with REST")
        try:
            response = soap.parse_response(answer.payload.body, answer.payload.content_type)
        except soap.ServiceFault:
            response = None  # the service's own fault, signed by the provider: passed on as it is
        if response is not None:
            soap.check_response_consistency(message, response)
            check_request_hash(message, response)
        await journal.signed(Direction.RESPONSE, answer.message, ocsp_response=answer.signer_ocsp)
        reply = web.Response(status=200 if response is not None else 500, body=answer.payload.body)
        reply.headers["Content-Type"] = answer.payload.content_type
        return reply
    except PeerError as error:
        await journal.fault(Direction.RESPONSE, _peer_fault(error), error.body, error.content_type)
        return _peer_error_response(error)
    except XRoadFault as fault:
        return await logged_fault(journal, fault, soap_fault_response(fault))
    except Exception:  # never a stack trace to the caller
        log.exception("unexpected error on the SOAP path")
        internal = XRoadFault(faults.CLIENT_PROXY_INTERNAL_ERROR, "internal error")
        return await logged_fault(journal, internal, soap_fault_response(internal))


async def handle_rest(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    accept = request.headers.get("Accept")
    journal = ExchangeLog(runtime.messagelog, runtime.snapshot, Side.CONSUMER)
    try:
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
        journal.identify(
            ExchangeIds.of_rest(runtime.gateway_name, new_exchange_id(), Side.CONSUMER, call), call.client
        )
        authenticate_client(runtime, call.client, request)
        conf = runtime.valid_globalconf()
        journal.check_ready()
        if not conf.is_known(call.service.provider):
            raise XRoadFault(
                faults.UNKNOWN_MEMBER, f"provider {call.service.provider} is not in the federation"
            )
        signer = runtime.signer_for(call.client.member, faults.CLIENT_PROXY_INTERNAL_ERROR)
        payload = RestRequestPayload(
            method=request.method,
            path=request.rel_url.raw_path,
            query=request.rel_url.raw_query_string,
            headers=_forwarded_headers(request, call),
            body=body,
        )
        status = own_status(runtime, conf, call.client.member, *_OWN_STATUS_FAULTS)
        signed = await sign_payload(signer, payload)
        await journal.signed(Direction.REQUEST, signed, ocsp_response=status.signer_ocsp)
        answer = await exchange(
            runtime,
            conf,
            call.service.provider,
            call.security_server,
            signed,
            timeout_seconds=runtime.config.backend_timeout_seconds + HOP_MARGIN_SECONDS,
            status_headers=status.headers,
        )
        if not isinstance(answer.payload, RestResponsePayload):
            raise XRoadFault(faults.INCONSISTENT_RESPONSE, "the provider answered a REST request with SOAP")
        rest.check_rest_response_consistency(
            call, answer.payload.headers, request_hash=rest.rest_request_hash(call)
        )
        await journal.signed(Direction.RESPONSE, answer.message, ocsp_response=answer.signer_ocsp)
        reply = web.Response(status=answer.payload.status, body=answer.payload.body)
        for name, value in answer.payload.headers:
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                reply.headers.add(name, value)
        return reply
    except PeerError as error:
        await journal.fault(Direction.RESPONSE, _peer_fault(error), error.body, error.content_type)
        return _peer_rest_error_response(error, accept)
    except XRoadFault as fault:
        return await logged_fault(journal, fault, rest_fault_response(fault, accept))
    except Exception:
        log.exception("unexpected error on the REST path")
        internal = XRoadFault(faults.CLIENT_PROXY_INTERNAL_ERROR, "internal error")
        return await logged_fault(journal, internal, rest_fault_response(internal, accept))


def _forwarded_headers(request: web.Request, call: rest.RestRequest) -> tuple[tuple[str, str], ...]:
    """The client's fields as received, with the X-Road-Id the consumer settled on.

    The provider re-reads them with the same parser, so both gateways see the same request
    and compute the same request hash.
    """
    fields = [(name, value) for name, value in request.headers.items() if name.lower() != "x-road-id"]
    fields.append((rest.HEADER_ID, call.message_id))
    return tuple(rest.passable_headers(fields) + _protocol_fields(fields))


def _protocol_fields(fields: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(name, value) for name, value in fields if name.lower().startswith("x-road-")]


async def handle_list_clients(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    accept = request.headers.get("Accept", "")
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
        return rest_fault_response(fault, accept)


def make_internal_app(runtime: GatewayRuntime) -> web.Application:
    app = web.Application(client_max_size=runtime.config.max_message_bytes)
    app[RUNTIME] = runtime
    app.router.add_get("/listClients", handle_list_clients)
    app.router.add_route("*", "/r1/{tail:.*}", handle_rest)
    app.router.add_route("*", "/", handle_soap)
    return app
