"""The external interface: another gateway's signed request, read top to bottom (DESIGN.md 5-7).

Check the peer is a registered gateway hosting the client, verify the signature, check the
service and the access rights, call the service, set the request hash, sign the answer.
Faults go back unsigned (a SOAP fault or a REST error body) for the consumer to pass on.
"""

from __future__ import annotations

import json
import logging
from typing import Final

from aiohttp import web
from cryptography import x509

from gateway.crypto.certs import fingerprint_sha256
from gateway.crypto.tls import peer_certificate
from gateway.globalconf import GlobalConf
from gateway.ids import ClientId, ServiceId
from gateway.messagelog.record import Direction as LogDirection
from gateway.messagelog.record import Side
from gateway.protocol import faults, mime, rest, soap
from gateway.protocol.faults import XRoadFault
from gateway.protocol.transport import (
    Direction,
    Payload,
    RestRequestPayload,
    RestResponsePayload,
    SoapPayload,
    TransportMessage,
    decode_transport,
    encode_transport,
)
from gateway.proxy import metadata
from gateway.proxy.backend import SOAP_PASSED_HEADERS, BackendResponse, call_backend
from gateway.proxy.certstatus import AUTH_OCSP_HEADER, SIGNER_OCSP_HEADER
from gateway.proxy.consumer import (
    logged_fault,
    new_exchange_id,
    read_body,
    rest_fault_response,
    soap_fault_response,
)
from gateway.proxy.exchange import OwnStatus, check_peer_status, own_status, sign_payload, verify_signed
from gateway.proxy.records import ExchangeIds, ExchangeLog
from gateway.proxy.runtime import GatewayRuntime
from gateway.serverconf.model import ServiceConf, ServiceKind

log = logging.getLogger(__name__)

RUNTIME: Final = web.AppKey("provider_runtime", GatewayRuntime)
SOAP_CONTENT_TYPES: Final = ("text/xml", "multipart/related")


async def handle_transport(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    is_rest = False
    journal = ExchangeLog(runtime.messagelog, runtime.snapshot, Side.PROVIDER)
    try:
        conf = runtime.valid_globalconf("Server.ServerProxy.OutdatedGlobalConf")
        caller, peer_cert = _authenticate_peer(request, conf)
        check_peer_status(
            runtime.peer_status,
            request.headers.get(AUTH_OCSP_HEADER),
            peer_cert,
            conf,
            faults.SERVER_PROXY_SSL_AUTHENTICATION_FAILED,
            "calling gateway's TLS certificate",
        )
        body = await read_body(request, runtime.config.max_message_bytes + 256 * 1024)
        message = decode_transport(
            request.headers.get("Content-Type", ""),
            body,
            max_bytes=runtime.config.max_message_bytes + 256 * 1024,
            direction=Direction.REQUEST,
        )
        is_rest = isinstance(message.payload, RestRequestPayload)
        answer, status = await _serve(
            runtime, conf, caller, message, request.headers.get(SIGNER_OCSP_HEADER), journal
        )
        await journal.signed(LogDirection.RESPONSE, answer, ocsp_response=status.signer_ocsp)
        content_type, out = encode_transport(answer)
        return web.Response(body=out, headers={**status.headers, "Content-Type": content_type})
    except XRoadFault as fault:
        response = rest_fault_response(fault, None) if is_rest else soap_fault_response(fault)
        return await logged_fault(journal, fault, response)
    except Exception:
        log.exception("unexpected error on the provider path")
        internal = XRoadFault(faults.SERVER_PROXY_INTERNAL_ERROR, "internal error")
        response = rest_fault_response(internal, None) if is_rest else soap_fault_response(internal)
        return await logged_fault(journal, internal, response)


def _authenticate_peer(request: web.Request, conf: GlobalConf) -> tuple[str, x509.Certificate]:
    """DESIGN.md step 5: only a certificate the configuration registers for a gateway; its holder and it."""
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    cert = peer_certificate(ssl_object)
    server = conf.server_by_cert_fingerprint(fingerprint_sha256(cert)) if cert is not None else None
    if cert is None or server is None:
        raise XRoadFault(
            faults.SERVER_PROXY_SSL_AUTHENTICATION_FAILED,
            "the calling gateway's certificate is not registered in the global configuration",
        )
    return server.id.to_text(), cert


async def _serve(
    runtime: GatewayRuntime,
    conf: GlobalConf,
    caller: str,
    message: TransportMessage,
    signer_ocsp_header: str | None,
    journal: ExchangeLog,
) -> tuple[TransportMessage, OwnStatus]:
    payload = message.payload
    exchange_id = new_exchange_id()
    if isinstance(payload, SoapPayload):
        request = soap.parse_request(payload.body, payload.content_type)
        client, service = request.client, request.service
        ids = ExchangeIds.of_soap(runtime.gateway_name, exchange_id, Side.PROVIDER, request)
    elif isinstance(payload, RestRequestPayload):
        parsed = rest.parse_rest_request(
            payload.method,
            payload.path,
            payload.query,
            list(payload.headers),
            payload.body,
            max_body_bytes=runtime.config.max_message_bytes,
        )
        call = parsed.request if isinstance(parsed, rest.RestMetadataRequest) else parsed
        client, service = call.client, call.service
        ids = ExchangeIds.of_rest(runtime.gateway_name, exchange_id, Side.PROVIDER, call)
    else:
        raise XRoadFault(faults.INVALID_CONTENT_TYPE, "a request must carry a SOAP or REST request")
    journal.identify(ids, service.provider)
    _check_caller_hosts_client(conf, caller, client)
    signer_cert = verify_signed(message, conf, client.member, faults.SERVER_PROXY_INVALID_SIGNATURE)
    signer_ocsp = check_peer_status(
        runtime.peer_status,
        signer_ocsp_header,
        signer_cert,
        conf,
        faults.SERVER_PROXY_INVALID_SIGNATURE,
        "consumer's signing certificate",
    )
    journal.check_ready()
    await journal.signed(LogDirection.REQUEST, message, ocsp_response=signer_ocsp)
    signer = runtime.signer_for(service.provider.member, faults.SERVER_PROXY_INTERNAL_ERROR)
    # Before the service is called: an answer this gateway could not vouch for is not worth asking.
    status = own_status(
        runtime,
        conf,
        service.provider.member,
        faults.SERVER_PROXY_SSL_AUTHENTICATION_FAILED,
        faults.SERVER_PROXY_INTERNAL_ERROR,
    )
    if isinstance(payload, SoapPayload):
        answer: Payload = await _serve_soap(runtime, conf, request)
    else:
        answer = await _serve_rest(runtime, conf, parsed)
    return await sign_payload(signer, answer), status


def _check_caller_hosts_client(conf: GlobalConf, caller: str, client: ClientId) -> None:
    """The calling gateway must be one the configuration lists for the client (no impersonation)."""
    if not conf.is_known(client):
        raise XRoadFault(faults.SERVER_PROXY_UNKNOWN_MEMBER, f"client {client} is not in the federation")
    if all(server.id.to_text() != caller for server in conf.servers_for(client)):
        raise XRoadFault(
            faults.SERVER_PROXY_SSL_AUTHENTICATION_FAILED, f"gateway {caller} does not host client {client}"
        )


def _registered_service(runtime: GatewayRuntime, service: ServiceId) -> ServiceConf:
    conf = runtime.snapshot.service(service)
    if conf is None:
        raise XRoadFault(faults.UNKNOWN_SERVICE, f"service {service} is not registered at this gateway")
    if not conf.enabled:
        raise XRoadFault(faults.SERVICE_DISABLED, conf.disabled_notice or f"service {service} is disabled")
    return conf


async def _serve_soap(runtime: GatewayRuntime, conf: GlobalConf, request: soap.SoapMessage) -> SoapPayload:
    if request.service.service_code in metadata.SOAP_METADATA_SERVICES:
        body, content_type = metadata.answer_soap_metadata(runtime.snapshot, conf, request)
        return SoapPayload(content_type, with_request_hash(request, body, content_type))
    service = _registered_service(runtime, request.service)
    if service.kind is not ServiceKind.SOAP:
        raise XRoadFault(faults.UNKNOWN_SERVICE, f"{request.service} is a REST service")
    if not runtime.snapshot.allowed(request.client, request.service, global_group_member=conf.is_member_of):
        raise XRoadFault(faults.ACCESS_DENIED, f"{request.client} may not call {request.service}")
    headers = [("Content-Type", request.content_type), ("SOAPAction", '""')]
    assert {name for name, _ in headers} <= set(SOAP_PASSED_HEADERS)
    answer = await call_backend(
        runtime.backend_session,  # type: ignore[arg-type]
        "POST",
        service.backend_url,
        headers,
        request.raw,
        timeout_seconds=service.timeout_seconds,
        max_bytes=runtime.config.max_message_bytes,
    )
    return SoapPayload(*_checked_soap_answer(request, answer))


def _checked_soap_answer(request: soap.SoapMessage, answer: BackendResponse) -> tuple[str, bytes]:
    """DESIGN.md step 7: validate, then set requestHash over the request as received."""
    media_type = answer.content_type.split(";", 1)[0].strip().lower()
    if media_type not in SOAP_CONTENT_TYPES:
        if answer.status >= 400:
            raise XRoadFault(faults.SERVICE_FAILED_HTTP_ERROR, f"the service answered HTTP {answer.status}")
        raise XRoadFault(
            faults.SERVICE_FAILED_INVALID_CONTENT_TYPE,
            f"the service answered with content type {answer.content_type[:80]!r}",
        )
    try:
        soap.parse_response(answer.body, answer.content_type)
    except soap.ServiceFault:
        return answer.content_type, answer.body  # the service's own fault, passed on
    except XRoadFault as fault:
        if answer.status >= 400:
            raise XRoadFault(
                faults.SERVICE_FAILED_HTTP_ERROR, f"the service answered HTTP {answer.status}"
            ) from fault
        raise XRoadFault(f"{faults.SERVICE_FAILED}.{fault.code.split('.')[-1]}", fault.message) from fault
    if answer.status != 200:
        raise XRoadFault(faults.SERVICE_FAILED_HTTP_ERROR, f"the service answered HTTP {answer.status}")
    return answer.content_type, with_request_hash(request, answer.body, answer.content_type)


def with_request_hash(request: soap.SoapMessage, body: bytes, content_type: str) -> bytes:
    """The response with `requestHash` over the request's SOAP part as received (PROTOCOL.md)."""
    package = mime.unpack(body, content_type)
    digest = soap.request_hash(request.soap_bytes)
    hashed = soap.set_request_hash(package.soap, digest, charset=package.charset)
    return mime.replace_soap_part(body, content_type, hashed)


async def _serve_rest(
    runtime: GatewayRuntime, conf: GlobalConf, parsed: rest.RestRequest | rest.RestMetadataRequest
) -> RestResponsePayload:
    if isinstance(parsed, rest.RestMetadataRequest):
        status, content_type, body = metadata.answer_rest_metadata(runtime.snapshot, conf, parsed)
        headers = [
            ("Content-Type", content_type),
            *rest.response_headers(parsed.request, rest.rest_request_hash(parsed.request)),
        ]
        return RestResponsePayload(status, tuple(headers), body)
    call = parsed
    service = _registered_service(runtime, call.service)
    if service.kind is not ServiceKind.REST:
        raise XRoadFault(faults.UNKNOWN_SERVICE, f"{call.service} is a SOAP service")
    if not runtime.snapshot.allowed(
        call.client, call.service, call.method, call.endpoint_path, global_group_member=conf.is_member_of
    ):
        raise XRoadFault(
            faults.ACCESS_DENIED,
            f"{call.client} may not call {call.method} {call.endpoint_path} of {call.service}",
        )
    url = service.backend_url.rstrip("/") + call.path + (f"?{call.query}" if call.query else "")
    answer = await call_backend(
        runtime.backend_session,  # type: ignore[arg-type]
        call.method,
        url,
        rest.service_request_headers(call),
        call.body,
        timeout_seconds=service.timeout_seconds,
        max_bytes=runtime.config.max_message_bytes,
    )
    _check_rest_answer(answer)
    headers = [
        *rest.passable_headers(list(answer.headers)),
        *rest.response_headers(call, rest.rest_request_hash(call)),
    ]
    return RestResponsePayload(answer.status, tuple(headers), answer.body)


def _check_rest_answer(answer: BackendResponse) -> None:
    """What a gateway can check of a REST answer: a JSON body that says it is JSON must be JSON."""
    media_type = answer.content_type.split(";", 1)[0].strip().lower()
    if answer.body and (media_type == "application/json" or media_type.endswith("+json")):
        try:
            json.loads(answer.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise XRoadFault(
                faults.SERVICE_FAILED_INVALID_CONTENT_TYPE, "the service's JSON answer is not JSON"
            ) from exc


def make_external_app(runtime: GatewayRuntime) -> web.Application:
    app = web.Application(client_max_size=runtime.config.max_message_bytes + 256 * 1024)
    app[RUNTIME] = runtime
    app.router.add_post("/", handle_transport)
    return app
