"""The external interface: another gateway's signed request, read top to bottom (DESIGN.md 5-7).

`serve` takes what arrived — the peer's TLS certificate, the header fields, the body — and
returns the answer as a value, so the aiohttp handler is a thin edge and tests can run the
whole path in-process. The path: check the peer is a registered gateway, decode the
transport message, then one of two paths, SOAP or REST: parse, check the caller hosts the
client, verify the signature (`_admit`), check the service and the access rights, call the
service, set the request hash, sign the answer. A fault is signed like an answer (a SOAP fault,
or a REST error with the request's identifiers where they are known) so that the consumer can
pass on only what verified; it goes unsigned only when this gateway cannot sign at all (no key,
no status for its certificate), and the consumer then answers with a fault of its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from aiohttp import web
from cryptography import x509

from gateway import faults
from gateway.admission import EXTERNAL
from gateway.cache.marking import CacheMark, mark_soap, marked_fields
from gateway.crypto.batchsigner import BatchSigner
from gateway.crypto.certs import fingerprint_sha256
from gateway.crypto.tls import peer_certificate
from gateway.faults import XRoadFault
from gateway.globalconf.model import GlobalConf
from gateway.ids import ClientId, ServiceId
from gateway.messagelog.record import Direction as LogDirection
from gateway.messagelog.record import Side
from gateway.monitoring.exchange import Role, Step
from gateway.monitoring.operational import xroad as opdata
from gateway.outbound import Headers, OutboundResponse, header
from gateway.protocol import mime, rest, soap
from gateway.protocol.soapaction import FIELD as SOAP_ACTION
from gateway.protocol.soapaction import TRANSPORT_FIELD as SOAP_ACTION_BETWEEN_GATEWAYS
from gateway.protocol.soapaction import checked_soap_action
from gateway.protocol.transport import (
    MAX_SIGNATURE_PART_BYTES,
    Direction,
    RestRequestPayload,
    RestResponsePayload,
    SoapPayload,
    TransportMessage,
    decode_transport,
    encode_transport,
)
from gateway.proxy import cached, metadata
from gateway.proxy.admitting import WATCH, admission_middleware
from gateway.proxy.answers import (
    Answer,
    logged_fault,
    overload_refusal,
    peer_compat,
    rest_fault_answer,
    soap_fault_answer,
    to_web,
)
from gateway.proxy.backend import SOAP_PASSED_HEADERS, call_backend, rest_service_url
from gateway.proxy.certstatus import AUTH_OCSP_HEADER, SIGNER_OCSP_HEADER
from gateway.proxy.records import ExchangeIds, ExchangeLog
from gateway.proxy.replay import expiry, replay_key
from gateway.proxy.runtime import GatewayRuntime
from gateway.proxy.steps import (
    MAX_SIGNING_TIME_SKEW_SECONDS,
    PROVIDER_OWN_STATUS_FAULTS,
    OwnStatus,
    check_peer_status,
    new_exchange_id,
    own_status,
    read_body,
    sign_payload,
    verify_signature,
)
from gateway.proxy.watching import Watch
from gateway.serverconf.model import ServiceConf, ServiceKind

log = logging.getLogger(__name__)

RUNTIME: Final = web.AppKey("provider_runtime", GatewayRuntime)

SOAP_CONTENT_TYPES: Final = ("text/xml", "multipart/related")
"""What a SOAP service may answer with (PROTOCOL.md "SOAP message protocol 4.0": SOAP or SwA)."""

TRANSPORT_ALLOWANCE_BYTES: Final = 2 * MAX_SIGNATURE_PART_BYTES
"""Room beyond the node's message limit for what the transport format wraps a message in: the
signature part (at most MAX_SIGNATURE_PART_BYTES), the manifest, the REST head and the framing."""

BodyReader = Callable[[int], Awaitable[bytes]]
"""Reads the request's body up to the given limit, else raises the RequestTooLarge fault."""


async def handle_transport(request: web.Request) -> web.StreamResponse:
    """The aiohttp edge of `serve`: the TLS peer's certificate, the fields and the body."""
    runtime = request.app[RUNTIME]
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None

    async def body(max_bytes: int) -> bytes:
        return await read_body(request, max_bytes)

    watch = request.get(WATCH)
    if watch is not None:
        watch.peer_address = request.remote
    answer = await serve(runtime, peer_certificate(ssl_object), tuple(request.headers.items()), body, watch)
    return to_web(answer)


@dataclass
class _Known:
    """What a fault's answer can say about the request, filled in as the path learns it."""

    is_rest: bool = False
    accept: str | None = None
    provider: ClientId | None = None
    call: rest.RestRequest | None = None
    backend: cached.BackendAnswer[SoapPayload] | cached.BackendAnswer[RestResponsePayload] | None = None
    """The backend's answer as the interface cache saw it (provider-side policies)."""


async def serve(
    runtime: GatewayRuntime,
    peer_cert: x509.Certificate | None,
    headers: Headers,
    body: BodyReader,
    watch: Watch | None = None,
) -> Answer:
    """One peer request, as received, to the answer that goes back: signed, faults included.

    `watch`: the exchange's observation, which the edge that started it reports
    (admitting.py); without one, and with observers, the exchange is reported here as the
    answer is ready (in-process peers have no HTTP edge).
    """
    if watch is not None or not runtime.exchange_observers:
        return await _serve(runtime, peer_cert, headers, body, watch)
    watch = Watch(Role.PRODUCER)
    try:
        answer = await _serve(runtime, peer_cert, headers, body, watch)
    except asyncio.CancelledError:  # the calling gateway went away
        runtime.observe_exchange(watch.abandoned())
        raise
    runtime.observe_exchange(watch.record(answer.status, len(answer.body)))
    return answer


async def _serve(
    runtime: GatewayRuntime,
    peer_cert: x509.Certificate | None,
    headers: Headers,
    body: BodyReader,
    watch: Watch | None,
) -> Answer:
    known = _Known()
    journal = ExchangeLog(runtime.messagelog, runtime.snapshot, Side.PROVIDER, watch)
    try:
        conf = runtime.valid_globalconf(faults.SERVER_PROXY_OUTDATED_GLOBALCONF)
        caller = _authenticate_peer(peer_cert, conf)
        if watch is not None:
            watch.peer = caller
        check_peer_status(
            runtime.peer_status,
            header(headers, AUTH_OCSP_HEADER),
            peer_cert,
            conf,
            faults.SERVER_PROXY_SSL_AUTHENTICATION_FAILED,
            "calling gateway's TLS certificate",
        )
        limit = runtime.config.max_message_bytes + TRANSPORT_ALLOWANCE_BYTES
        message = decode_transport(
            header(headers, "Content-Type") or "",
            await body(limit),
            max_bytes=limit,
            direction=Direction.REQUEST,
        )
        peer = _Peer(caller, header(headers, SIGNER_OCSP_HEADER))
        if watch is not None:
            watch.request_size = len(message.payload.body)
        if isinstance(message.payload, SoapPayload):
            # Checked again here, as X-Road's server proxy does: it reaches the service as is.
            soap_action = checked_soap_action(header(headers, SOAP_ACTION_BETWEEN_GATEWAYS))
            answer, status = await _serve_soap(
                runtime, conf, peer, message, message.payload, journal, known, soap_action
            )
        elif isinstance(message.payload, RestRequestPayload):
            known.is_rest, known.accept = True, header(message.payload.headers, "Accept")
            if watch is not None:
                watch.protocol = "rest"
            answer, status = await _serve_rest(runtime, conf, peer, message, message.payload, journal, known)
        else:
            raise XRoadFault(faults.INVALID_CONTENT_TYPE, "a request must carry a SOAP or REST request")
        backend = known.backend
        record = await journal.signed(
            LogDirection.RESPONSE,
            answer,
            ocsp_response=status.signer_ocsp,
            served_from_cache=None if backend is None else backend.served_from_cache,
        )
        if backend is not None and backend.keep is not None:
            await backend.keep(answer, record)
        if watch is not None:
            watch.response_size = len(answer.payload.body)
        content_type, out = encode_transport(answer)
        return Answer(200, (*status.headers.items(), ("Content-Type", content_type)), out)
    except XRoadFault as fault:
        return await _fault(runtime, journal, fault, known)
    except Exception:
        log.exception("unexpected error on the provider path")
        internal = XRoadFault(faults.SERVER_PROXY_INTERNAL_ERROR, "internal error")
        return await _fault(runtime, journal, internal, known)


async def _fault(runtime: GatewayRuntime, journal: ExchangeLog, fault: XRoadFault, known: _Known) -> Answer:
    """The fault as a signed answer, logged as sent; unsigned only when this gateway cannot sign."""
    compat = peer_compat(runtime.config.compat)
    plain = (
        rest_fault_answer(fault, known.accept, compat) if known.is_rest else soap_fault_answer(fault, compat)
    )
    if journal.watch is not None:
        journal.watch.response_size = len(plain.body)
    try:
        signed, status = await _sign_fault(runtime, plain, known, journal.watch)
    except XRoadFault as unsignable:
        log.warning("fault %s [%s] goes unsigned: %s", fault.code, fault.detail, unsignable.message)
        return await logged_fault(journal, fault, plain)
    await journal.signed_fault(LogDirection.RESPONSE, signed, fault, status.signer_ocsp)
    content_type, out = encode_transport(signed)
    # The HTTP status says what the signed content says (the consumer reads only the content).
    return Answer(plain.status, (*status.headers.items(), ("Content-Type", content_type)), out)


async def _sign_fault(
    runtime: GatewayRuntime, plain: Answer, known: _Known, watch: Watch | None
) -> tuple[TransportMessage, OwnStatus]:
    """Signed with the provider's key where this gateway holds it, else with its owner's.

    The configuration in hand is used even when it has expired: an OutdatedGlobalConf fault is
    worth signing too, and the certificate status it needs does not depend on its age.
    """
    conf = runtime.globalconf_source.current
    if conf is None:
        raise XRoadFault(faults.SERVER_PROXY_INTERNAL_ERROR, "no global configuration to sign with")
    owner = runtime.config.server_id.owner
    members = [known.provider.member] if known.provider is not None else []
    member = next((m for m in (*members, owner) if m in runtime.signers), None)
    if member is None:
        raise XRoadFault(faults.SERVER_PROXY_INTERNAL_ERROR, f"this gateway holds no signing key for {owner}")
    status = own_status(runtime, conf, member, PROVIDER_OWN_STATUS_FAULTS)
    payload: SoapPayload | RestResponsePayload
    if known.is_rest:
        ids = (
            ()
            if known.call is None
            else rest.response_headers(known.call, rest.rest_request_hash(known.call))
        )
        payload = RestResponsePayload(plain.status, (*plain.headers, *ids), plain.body)
    else:
        payload = SoapPayload(plain.content_type, plain.body)
    return await sign_payload(runtime.signers[member], payload, watch), status


def _authenticate_peer(cert: x509.Certificate | None, conf: GlobalConf) -> str:
    """DESIGN.md step 5: only a certificate the configuration registers for a gateway; its holder."""
    server = conf.server_by_cert_fingerprint(fingerprint_sha256(cert)) if cert is not None else None
    if server is None:
        raise XRoadFault(
            faults.SERVER_PROXY_SSL_AUTHENTICATION_FAILED,
            "the calling gateway's certificate is not registered in the global configuration",
        )
    return server.id.to_text()


@dataclass(frozen=True)
class _Peer:
    """The calling gateway, as authenticated, and the status it sent for its signing certificate."""

    server: str
    signer_ocsp_header: str | None


# --- the SOAP path ---------------------------------------------------------------------------


async def _serve_soap(
    runtime: GatewayRuntime,
    conf: GlobalConf,
    peer: _Peer,
    message: TransportMessage,
    payload: SoapPayload,
    journal: ExchangeLog,
    known: _Known,
    soap_action: str | None,
) -> tuple[TransportMessage, OwnStatus]:
    request = soap.parse_request(payload.body, payload.content_type)
    known.provider = request.service.provider
    watch = journal.watch
    if watch is not None:
        watch.request_attachments = len(request.attachments)
    ids = ExchangeIds.of_soap(runtime.gateway_name, new_exchange_id(), Side.PROVIDER, request)
    signer, status = await _admit(runtime, conf, peer, message, ids, request.client, request.service, journal)
    if request.service.service_code in metadata.SOAP_METADATA_SERVICES:
        body, content_type = metadata.answer_soap_metadata(runtime.snapshot, conf, request)
        answer = SoapPayload(content_type, with_request_hash(request, body, content_type))
    elif opdata.is_request(request, runtime.config.server_id.owner):
        body, content_type = await _operational_data(runtime, conf, request)
        answer = SoapPayload(content_type, with_request_hash(request, body, content_type))
    else:
        backend = await cached.backend_answer(
            runtime.cache,
            runtime.snapshot,
            cached.soap_question(request),
            lambda: _call_soap_service(runtime, conf, request, soap_action, watch),
            failure=lambda _payload: None,  # failures are faults (_checked_soap_answer)
            keepable=_is_soap_answer,
            reuse=lambda stored, mark: _reused_soap_answer(request, stored, mark),
            watch=watch,
        )
        known.backend, answer = backend, backend.payload
    return await sign_payload(signer, answer, watch), status


async def _call_soap_service(
    runtime: GatewayRuntime,
    conf: GlobalConf,
    request: soap.SoapMessage,
    soap_action: str | None,
    watch: Watch | None,
) -> SoapPayload:
    service = _registered_service(runtime, request.service)
    if service.kind is not ServiceKind.SOAP:
        raise XRoadFault(faults.UNKNOWN_SERVICE, f"{request.service} is a REST service")
    if not runtime.snapshot.allowed(request.client, request.service, global_group_member=conf.is_member_of):
        raise XRoadFault(faults.ACCESS_DENIED, f"{request.client} may not call {request.service}")
    headers = [("Content-Type", request.content_type)]
    if soap_action is not None:  # exactly as the client sent it; absent stays absent
        headers.append((SOAP_ACTION, soap_action))
    assert {name for name, _ in headers} <= set(SOAP_PASSED_HEADERS)
    answer = await call_backend(
        runtime.backends,
        "POST",
        service.backend_url,
        headers,
        request.raw,
        timeout_seconds=service.timeout_seconds,
        max_bytes=runtime.config.max_message_bytes,
        tls=service.tls,
        watch=watch,
    )
    return SoapPayload(*_checked_soap_answer(request, answer, watch))


def _checked_soap_answer(
    request: soap.SoapMessage, answer: OutboundResponse, watch: Watch | None = None
) -> tuple[str, bytes]:
    """DESIGN.md step 7: validate, then set requestHash over the request as received; the
    service's own fault is passed on, and `watch` notes it (an answer, not a success)."""
    if answer.media_type not in SOAP_CONTENT_TYPES:
        if answer.status >= 400:
            raise XRoadFault(faults.SERVICE_FAILED_HTTP_ERROR, f"the service answered HTTP {answer.status}")
        raise XRoadFault(
            faults.SERVICE_FAILED_INVALID_CONTENT_TYPE,
            f"the service answered with content type {answer.content_type[:80]!r}",
        )
    body = _with_close_delimiter(answer)
    try:
        response = soap.parse_response(body, answer.content_type)
    except soap.ServiceFault as fault:
        if watch is not None:
            watch.failed(fault.code, fault.message)
        return answer.content_type, body  # the service's own fault, passed on
    except XRoadFault as fault:
        if answer.status >= 400:
            raise XRoadFault(
                faults.SERVICE_FAILED_HTTP_ERROR, f"the service answered HTTP {answer.status}"
            ) from fault
        raise XRoadFault(faults.service_failed(fault.code), fault.message) from fault
    if answer.status != 200:
        raise XRoadFault(faults.SERVICE_FAILED_HTTP_ERROR, f"the service answered HTTP {answer.status}")
    if watch is not None:
        watch.response_attachments = len(response.attachments)
    return answer.content_type, with_request_hash(request, body, answer.content_type)


async def _operational_data(
    runtime: GatewayRuntime, conf: GlobalConf, request: soap.SoapMessage
) -> tuple[bytes, str]:
    """getSecurityServerOperationalData (gateway/monitoring/operational/xroad.py): every record
    for the federation's monitoring client and the owner's own clients, else the caller's own."""
    monitor = runtime.opmonitor
    if monitor is None:
        raise XRoadFault(faults.UNKNOWN_SERVICE, "this gateway keeps no operational monitoring records")
    criteria = opdata.parse_criteria(request.body)
    requester = request.client
    sees_all = requester == conf.monitoring_client or requester.member == runtime.config.server_id.owner
    plan = opdata.plan(criteria, time.time(), sees_all, requester)
    found, _ = await asyncio.to_thread(monitor.store.search, plan.query)
    return opdata.answer(request, plan, criteria, found)


def _with_close_delimiter(answer: OutboundResponse) -> bytes:
    """The answer completed as X-Road tolerates it (mime.with_close_delimiter), else as it came."""
    try:
        return mime.with_close_delimiter(answer.body, answer.content_type)
    except XRoadFault:
        return answer.body  # parse_response names what is wrong with it


def _is_soap_answer(payload: SoapPayload) -> bool:
    """Not the service's own fault: only answers are kept for the backend's bad days."""
    return soap.parse_fault(payload.body, payload.content_type) is None


def _reused_soap_answer(request: soap.SoapMessage, stored: TransportMessage, mark: CacheMark) -> SoapPayload:
    """The backend's last good answer for this request: its Body under this request's Header,
    with this request's hash, marked; signed afresh by the path like any answer."""
    payload = stored.payload
    assert isinstance(payload, SoapPayload)
    answer = soap.parse_response(payload.body, payload.content_type)
    envelope = soap.build_response(request, answer.body)
    body = with_request_hash(
        request, mime.replace_soap_part(payload.body, payload.content_type, envelope), payload.content_type
    )
    return SoapPayload(payload.content_type, mark_soap(body, payload.content_type, mark))


def _reused_rest_answer(
    call: rest.RestRequest, stored: TransportMessage, mark: CacheMark
) -> RestResponsePayload:
    """The backend's last good answer with this request's identifiers and hash, marked."""
    payload = stored.payload
    assert isinstance(payload, RestResponsePayload)
    fields = [(name, value) for name, value in payload.headers if not name.lower().startswith("x-road-")]
    fields.extend(rest.response_headers(call, rest.rest_request_hash(call)))
    return RestResponsePayload(payload.status, marked_fields(tuple(fields), mark), payload.body)


def with_request_hash(request: soap.SoapMessage, body: bytes, content_type: str) -> bytes:
    """The response with `requestHash` over the request's SOAP part as received (PROTOCOL.md)."""
    package = mime.unpack(body, content_type)
    digest = soap.request_hash(request.soap_bytes)
    hashed = soap.set_request_hash(package.soap, digest, charset=package.charset)
    return mime.replace_soap_part(body, content_type, hashed)


# --- the REST path ---------------------------------------------------------------------------


async def _serve_rest(
    runtime: GatewayRuntime,
    conf: GlobalConf,
    peer: _Peer,
    message: TransportMessage,
    payload: RestRequestPayload,
    journal: ExchangeLog,
    known: _Known,
) -> tuple[TransportMessage, OwnStatus]:
    parsed = rest.parse_rest_request(
        payload.method,
        payload.path,
        payload.query,
        list(payload.headers),
        payload.body,
        max_body_bytes=runtime.config.max_message_bytes,
    )
    call = parsed.request if isinstance(parsed, rest.RestMetadataRequest) else parsed
    known.provider, known.call = call.service.provider, call
    watch = journal.watch
    if watch is not None:
        watch.rest_method, watch.rest_path = call.method, call.endpoint_path
    ids = ExchangeIds.of_rest(runtime.gateway_name, new_exchange_id(), Side.PROVIDER, call)
    signer, status = await _admit(runtime, conf, peer, message, ids, call.client, call.service, journal)
    if isinstance(parsed, rest.RestMetadataRequest):
        answer = _rest_metadata_answer(runtime, conf, parsed)
    else:
        rest_backend = await cached.backend_answer(
            runtime.cache,
            runtime.snapshot,
            cached.rest_question(parsed),
            lambda: _call_rest_service(runtime, conf, parsed, watch),
            failure=lambda payload: cached.provider_failure(None, payload.status),
            keepable=lambda payload: 200 <= payload.status < 300,
            reuse=lambda stored, mark: _reused_rest_answer(parsed, stored, mark),
            watch=watch,
        )
        known.backend, answer = rest_backend, rest_backend.payload
    return await sign_payload(signer, answer, watch), status


def _rest_metadata_answer(
    runtime: GatewayRuntime, conf: GlobalConf, parsed: rest.RestMetadataRequest
) -> RestResponsePayload:
    status, content_type, body = metadata.answer_rest_metadata(runtime.snapshot, conf, parsed)
    headers = [
        ("Content-Type", content_type),
        *rest.response_headers(parsed.request, rest.rest_request_hash(parsed.request)),
    ]
    return RestResponsePayload(status, tuple(headers), body)


async def _call_rest_service(
    runtime: GatewayRuntime, conf: GlobalConf, call: rest.RestRequest, watch: Watch | None
) -> RestResponsePayload:
    service = _registered_service(runtime, call.service)
    if service.kind is not ServiceKind.REST:
        raise XRoadFault(faults.UNKNOWN_SERVICE, f"{call.service} is a SOAP service")
    if watch is not None:  # the service description's template, when one of its endpoints is this
        template = next((e for e in service.endpoints if e.matches(call.method, call.endpoint_path)), None)
        if template is not None:
            watch.rest_path = template.path_pattern
    if not runtime.snapshot.allowed(
        call.client, call.service, call.method, call.endpoint_path, global_group_member=conf.is_member_of
    ):
        raise XRoadFault(
            faults.ACCESS_DENIED,
            f"{call.client} may not call {call.method} {call.endpoint_path} of {call.service}",
        )
    answer = await call_backend(
        runtime.backends,
        call.method,
        rest_service_url(service.backend_url, call.service_path),
        rest.service_request_headers(call),
        call.body,
        timeout_seconds=service.timeout_seconds,
        max_bytes=runtime.config.max_message_bytes,
        tls=service.tls,
        exact_url=True,
        watch=watch,
    )
    _check_rest_answer(answer)
    headers = [
        *rest.passable_headers(list(answer.headers)),
        *rest.response_headers(call, rest.rest_request_hash(call)),
    ]
    return RestResponsePayload(answer.status, tuple(headers), answer.body)


def _check_rest_answer(answer: OutboundResponse) -> None:
    """What a gateway can check of a REST answer: a JSON body that says it is JSON must be JSON."""
    media_type = answer.media_type
    if answer.body and (media_type == "application/json" or media_type.endswith("+json")):
        try:
            json.loads(answer.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise XRoadFault(
                faults.SERVICE_FAILED_INVALID_CONTENT_TYPE, "the service's JSON answer is not JSON"
            ) from exc


# --- the steps both paths take ---------------------------------------------------------------


async def _admit(
    runtime: GatewayRuntime,
    conf: GlobalConf,
    peer: _Peer,
    message: TransportMessage,
    ids: ExchangeIds,
    client: ClientId,
    service: ServiceId,
    journal: ExchangeLog,
) -> tuple[BatchSigner, OwnStatus]:
    """DESIGN.md step 5: the caller hosts the client, the client signed, the request is logged.

    Returns the provider's signer and its own certificate status, both settled before the
    service is called: an answer this gateway could not vouch for is not worth asking for.
    """
    journal.identify(ids, service.provider)
    _check_caller_hosts_client(conf, peer.server, client)
    verifying = time.perf_counter()
    verified = verify_signature(message, conf, (client.member,), faults.SERVER_PROXY_INVALID_SIGNATURE)
    signer_ocsp = check_peer_status(
        runtime.peer_status,
        peer.signer_ocsp_header,
        verified.signer_cert,
        conf,
        faults.SERVER_PROXY_INVALID_SIGNATURE,
        "consumer's signing certificate",
    )
    if journal.watch is not None:
        journal.watch.add(Step.VERIFY, verifying)
    journal.check_ready()
    if runtime.replay_guard is not None:  # once verified: only a real signature can claim a key
        await runtime.replay_guard.admit(
            replay_key(message, verified), expiry(verified, MAX_SIGNING_TIME_SKEW_SECONDS)
        )
    await journal.signed(LogDirection.REQUEST, message, ocsp_response=signer_ocsp)
    signer = runtime.signer_for(service.provider.member, faults.SERVER_PROXY_INTERNAL_ERROR)
    status = own_status(runtime, conf, service.provider.member, PROVIDER_OWN_STATUS_FAULTS)
    return signer, status


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


def make_external_app(runtime: GatewayRuntime) -> web.Application:
    max_bytes = runtime.config.max_message_bytes + TRANSPORT_ALLOWANCE_BYTES
    refusal = lambda _request, fault: overload_refusal(fault)  # noqa: E731
    admit = admission_middleware(runtime, EXTERNAL, max_bytes, refusal, Role.PRODUCER)
    app = web.Application(client_max_size=max_bytes, middlewares=[admit])
    app[RUNTIME] = runtime
    app.router.add_post("/", handle_transport)
    return app
