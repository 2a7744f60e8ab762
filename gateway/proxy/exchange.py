"""The consumer gateway's hop to the provider's gateway (DESIGN.md steps 3-4 and 8).

Send the signed message over the peer transport (mutual TLS, pinned to the certificates the
global configuration registers) to one of the provider's gateways, fastest first, failing
over on connection errors; check the peer's certificate status and verify the signed answer.

Nothing from the peer reaches the client unverified: a provider gateway signs its own faults
like any answer, so an answer that is not a signed transport message, whatever its status or
content type, or whose signature does not verify, becomes this gateway's own fault
(`Server.ClientProxy.InvalidSignatureValue`, or the transport reader's code), worded here:
the peer's text is never copied into it (docs/security.md "Answers from peers").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway import faults
from gateway.crypto.certs import member_of
from gateway.faults import XRoadFault
from gateway.globalconf.model import GlobalConf, SecurityServerInfo
from gateway.ids import ClientId, SecurityServerId
from gateway.monitoring.exchange import Step
from gateway.outbound import (
    OutboundError,
    OutboundRequest,
    OutboundResponse,
    OutboundTimeout,
    PeerNotRegistered,
    ResponseTooLarge,
)
from gateway.protocol.rest import HEADER_ERROR
from gateway.protocol.transport import (
    TRANSPORT_MEDIA_TYPE,
    Direction,
    Payload,
    TransportMessage,
    decode_transport,
    encode_transport,
)
from gateway.proxy.answers import OVERLOAD_STATUS
from gateway.proxy.certstatus import AUTH_OCSP_HEADER, SIGNER_OCSP_HEADER
from gateway.proxy.runtime import GatewayRuntime
from gateway.proxy.steps import check_peer_status, verify_signature

if TYPE_CHECKING:
    from gateway.proxy.watching import Watch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SignedAnswer:
    message: TransportMessage
    server: SecurityServerId
    signer_ocsp: bytes | None = None
    """The provider's OCSP response for its signing certificate, as checked: for the message log."""
    signer: ClientId | None = None
    """The member whose key signed it: the provider's, or for a gateway's own fault the server owner's."""

    def require_signer(self, member: ClientId) -> None:
        """An answer that is not a fault must be signed by the provider itself."""
        if self.signer != member:
            raise XRoadFault(
                faults.CLIENT_PROXY_INVALID_SIGNATURE,
                f"the answer of {self.server} is signed by {self.signer}, not by {member}",
            )

    @property
    def payload(self) -> Payload:
        return self.message.payload


def candidate_servers(
    conf: GlobalConf, provider: ClientId, requested: SecurityServerId | None
) -> list[SecurityServerInfo]:
    servers = conf.servers_for(provider)
    if requested is not None:
        servers = [server for server in servers if server.id == requested]
    if not servers:
        where = f" on {requested}" if requested is not None else ""
        raise XRoadFault(
            faults.UNKNOWN_MEMBER, f"no gateway in the global configuration hosts {provider}{where}"
        )
    return servers


async def exchange(
    runtime: GatewayRuntime,
    conf: GlobalConf,
    provider: ClientId,
    requested_server: SecurityServerId | None,
    message: TransportMessage,
    *,
    timeout_seconds: float,
    status_headers: Mapping[str, str],
    watch: Watch | None = None,
) -> SignedAnswer:
    """Send to the provider's gateways in turn until one answers; the NetworkError fault if none can.

    `status_headers` carry this gateway's OCSP responses (certstatus.status_headers); `watch`
    learns the peer asked and the time spent with it and verifying its answer.
    """
    content_type, body = encode_transport(message)
    servers = {server.address: server for server in candidate_servers(conf, provider, requested_server)}
    problems: list[str] = []
    for address in runtime.peer_selector.order(list(servers)):
        server = servers[address]
        request = OutboundRequest(
            "POST",
            f"https://{address}/",
            (*status_headers.items(), ("Content-Type", content_type)),
            body,
            timeout_seconds=timeout_seconds,
            connect_timeout_seconds=runtime.config.connect_timeout_seconds,
            max_response_bytes=runtime.config.max_message_bytes,
        )
        if watch is not None:
            watch.peer = f"{server.id.to_text()}@{address}"
        started = time.perf_counter()
        try:
            response = await _sent(runtime, request, watch)
        except PeerNotRegistered as exc:
            runtime.peer_selector.record_failure(address)
            raise XRoadFault(faults.SSL_AUTHENTICATION_FAILED, f"{server.id}: {exc}") from exc
        except OutboundTimeout as exc:
            if exc.connecting:  # nothing was sent: the next registered gateway may be asked
                runtime.peer_selector.record_failure(address, str(exc))
                problems.append(f"{server.id}: {exc}")
                continue
            raise XRoadFault(faults.NETWORK_ERROR, f"{server.id}: {exc}") from exc
        except ResponseTooLarge as exc:
            raise XRoadFault(
                faults.CLIENT_PROXY_RESPONSE_TOO_LARGE, exc.describe("the provider gateway's answer")
            ) from exc
        except OutboundError as exc:
            runtime.peer_selector.record_failure(address)
            problems.append(f"{server.id}: {exc}")
            continue
        runtime.peer_selector.record_connect(address, time.perf_counter() - started)
        if _refused_for_overload(response):
            # It did not process the request (admission.py): the next gateway may have room.
            problems.append(f"{server.id}: overloaded (HTTP {response.status}), request not processed")
            continue
        if watch is None:
            return _answer(runtime, response, server, conf, provider)
        verifying = time.perf_counter()
        try:
            return _answer(runtime, response, server, conf, provider)
        finally:
            watch.add(Step.VERIFY, verifying)
    raise XRoadFault(faults.NETWORK_ERROR, "cannot reach the provider's gateway: " + "; ".join(problems))


async def _sent(runtime: GatewayRuntime, request: OutboundRequest, watch: Watch | None) -> OutboundResponse:
    """The peer's answer, its time (failed attempts included) counted for `watch`."""
    if watch is None:
        return await runtime.peers.send(request)
    started = time.perf_counter()
    try:
        return await runtime.peers.send(request)
    finally:
        watch.add(Step.PEER, started)


def _refused_for_overload(response: OutboundResponse) -> bool:
    """A provider gateway's unsigned refusal for lack of room (answers.overload_refusal).

    The peer is the one its pinned TLS certificate says; its unsigned words are still not
    passed on: the client gets this gateway's NetworkError if no other gateway answers.
    """
    return (
        response.status == OVERLOAD_STATUS
        and faults.canonical(response.header(HEADER_ERROR) or "") == faults.SERVER_PROXY_OVERLOADED
        and not response.content_type.lower().startswith(TRANSPORT_MEDIA_TYPE)
    )


def _answer(
    runtime: GatewayRuntime,
    response: OutboundResponse,
    server: SecurityServerInfo,
    conf: GlobalConf,
    provider: ClientId,
) -> SignedAnswer:
    """DESIGN.md step 8: the provider gateway's certificate status, its signature, the signer's status.

    Any HTTP status is accepted with a signed message (a REST status travels signed inside it);
    anything else is refused with a fault of this gateway's own words.
    """
    content_type = response.content_type
    if not content_type.lower().startswith(TRANSPORT_MEDIA_TYPE):
        log.warning(
            "unsigned answer from %s: HTTP %d, Content-Type %r", server.id, response.status, content_type[:80]
        )
        raise XRoadFault(
            faults.CLIENT_PROXY_INVALID_SIGNATURE,
            f"the answer of {server.id} (HTTP {response.status}) is not a signed message",
        )
    check_peer_status(
        runtime.peer_status,
        response.header(AUTH_OCSP_HEADER),
        response.peer_certificate,
        conf,
        faults.SSL_AUTHENTICATION_FAILED,
        "provider gateway's TLS certificate",
    )
    max_bytes = runtime.config.max_message_bytes
    try:
        message = decode_transport(
            content_type, response.body, max_bytes=max_bytes, direction=Direction.RESPONSE
        )
    except XRoadFault as exc:  # its message may quote the peer's bytes: logged, not passed on
        log.warning("malformed answer from %s: %s", server.id, exc.message)
        raise XRoadFault(exc.code, f"the answer of {server.id} is not a well-formed signed message") from exc
    # A gateway signs its own faults with the provider's key or, before it knows the provider
    # (or when it does not host it), with its owner's; the caller requires the provider's key
    # for anything that is not a fault (SignedAnswer.require_signer).
    verified = verify_signature(
        message, conf, (provider.member, server.id.owner), faults.CLIENT_PROXY_INVALID_SIGNATURE
    )
    signer_ocsp = check_peer_status(
        runtime.peer_status,
        response.header(SIGNER_OCSP_HEADER),
        verified.signer_cert,
        conf,
        faults.CLIENT_PROXY_INVALID_SIGNATURE,
        "provider's signing certificate",
    )
    return SignedAnswer(message, server.id, signer_ocsp, member_of(verified.signer_cert))
