"""The consumer gateway's half of the gateway-to-gateway hop (DESIGN.md steps 3-4 and 8).

Sign the client's message, send it over mutual TLS to one of the provider's gateways
(fastest first, failing over on connection errors), check the peer is the gateway the
global configuration registers, and verify the signed answer.  A peer's own error (a SOAP
fault or a REST error body, unsigned) comes back as :class:`PeerError` for the handler to
pass on.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import aiohttp
from cryptography import x509

from gateway.crypto.batchsigner import BatchSigner
from gateway.crypto.certs import member_of
from gateway.crypto.rootsig import SignatureVerificationError, verify_message_signature
from gateway.globalconf import GlobalConf, SecurityServerInfo
from gateway.ids import ClientId, SecurityServerId
from gateway.protocol import faults
from gateway.protocol.faults import XRoadFault
from gateway.protocol.transport import (
    TRANSPORT_MEDIA_TYPE,
    Direction,
    Payload,
    TransportMessage,
    decode_transport,
    encode_transport,
    manifest_digest,
    signed_parts,
)
from gateway.proxy.backend import read_limited
from gateway.proxy.certstatus import (
    AUTH_OCSP_HEADER,
    SIGNER_OCSP_HEADER,
    CertificateStatusError,
    PeerStatusChecker,
    status_headers,
)
from gateway.proxy.peers import PeerNotRegistered
from gateway.proxy.runtime import GatewayRuntime, utc_now

# A signature on the wire is fresh: a leaked key must not backdate messages into a
# certificate's validity period. Five minutes covers clock drift between gateways.
MAX_SIGNING_TIME_SKEW_SECONDS: Final = 300.0


@dataclass(frozen=True)
class PeerError(Exception):
    """The provider's gateway answered with its own fault instead of a signed message."""

    status: int
    content_type: str
    body: bytes
    xroad_error: str | None


@dataclass(frozen=True)
class SignedAnswer:
    message: TransportMessage
    server: SecurityServerId
    signer_ocsp: bytes | None = None
    """The provider's OCSP response for its signing certificate, as checked: for the message log."""

    @property
    def payload(self) -> Payload:
        return self.message.payload


async def sign_payload(signer: BatchSigner, payload: Payload) -> TransportMessage:
    """One batch signature share for this message (DESIGN.md "One signer")."""
    signature = await signer.sign(manifest_digest(signed_parts(payload)))
    return TransportMessage(payload, signature)


def verify_signed(
    message: TransportMessage, conf: GlobalConf, expected_member: ClientId, fault_code: str
) -> x509.Certificate:
    """The signature is valid, chains to a federation CA and speaks for `expected_member`: its signer."""
    try:
        verified = verify_message_signature(
            message.signature.leaf, message.signature, conf.trusted_ca_certs()
        )
    except SignatureVerificationError as exc:
        raise XRoadFault(fault_code, f"invalid signature: {exc}") from exc
    skew = abs((utc_now() - verified.signing_time).total_seconds())
    if skew > MAX_SIGNING_TIME_SKEW_SECONDS:
        raise XRoadFault(fault_code, f"the signing time is {skew:.0f} s away from this gateway's clock")
    signer = member_of(verified.signer_cert)
    if signer != expected_member:
        raise XRoadFault(fault_code, f"the message is signed by {signer}, not by {expected_member}")
    return verified.signer_cert


def check_peer_status(
    checker: PeerStatusChecker,
    header: str | None,
    certificate: x509.Certificate | None,
    conf: GlobalConf,
    fault_code: str,
    what: str,
) -> bytes | None:
    """The peer's OCSP response for `certificate`, checked (docs/transport.md "Certificate status")."""
    if certificate is None:
        raise XRoadFault(fault_code, f"the {what} is not known")
    try:
        return checker.check(header, certificate, conf, utc_now())
    except CertificateStatusError as exc:
        raise XRoadFault(fault_code, f"the {what}: {exc}") from exc


@dataclass(frozen=True)
class OwnStatus:
    """What this gateway attaches about its own certificates to one message it sends."""

    headers: dict[str, str]
    signer_ocsp: bytes | None


def own_status(
    runtime: GatewayRuntime, conf: GlobalConf, member: ClientId, auth_fault: str, signer_fault: str
) -> OwnStatus:
    """The OCSP responses for this node's TLS certificate and `member`'s signing certificate.

    Without a fresh, good response where the CA has a responder this gateway cannot send:
    `auth_fault` or `signer_fault` says which certificate is the problem.
    """
    auth = runtime.own_ocsp(runtime.auth_cert, conf, auth_fault)
    signer_cert = runtime.signing_certs.get(member)
    if signer_cert is None:
        raise XRoadFault(signer_fault, f"this gateway holds no signing key for {member}")
    signer = runtime.own_ocsp(signer_cert, conf, signer_fault)
    return OwnStatus(status_headers(auth, signer), signer)


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
) -> SignedAnswer:
    """Send to the provider's gateways in turn until one answers; raise NetworkError if none can.

    `status_headers` carry this gateway's OCSP responses (certstatus.status_headers).
    """
    content_type, body = encode_transport(message)
    servers = {server.address: server for server in candidate_servers(conf, provider, requested_server)}
    session, connector = runtime.peer_session, runtime.peer_connector
    assert session is not None and connector is not None, "runtime.start() was not called"
    problems: list[str] = []
    for address in runtime.peer_selector.order(list(servers)):
        server = servers[address]
        started = time.perf_counter()
        try:
            async with session.post(
                f"https://{address}/",
                data=body,
                headers={**status_headers, "Content-Type": content_type},
                timeout=aiohttp.ClientTimeout(
                    total=timeout_seconds, sock_connect=runtime.config.connect_timeout_seconds
                ),
                allow_redirects=False,
            ) as response:
                runtime.peer_selector.record_connect(address, time.perf_counter() - started)
                peer_cert = connector.peer_certificate(response)
                answer = await read_limited(
                    response,
                    runtime.config.max_message_bytes,
                    faults.CLIENT_PROXY_RESPONSE_TOO_LARGE,
                    "the provider gateway's answer",
                )
                return _answer(runtime, response, answer, server, conf, provider, peer_cert)
        except PeerNotRegistered as exc:
            runtime.peer_selector.record_failure(address)
            raise XRoadFault(faults.SSL_AUTHENTICATION_FAILED, f"{server.id}: {exc}") from exc
        except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError, ConnectionError) as exc:
            runtime.peer_selector.record_failure(address)
            problems.append(f"{server.id}: {type(exc).__name__}")
        except TimeoutError as exc:
            raise XRoadFault(
                faults.NETWORK_ERROR, f"{server.id} did not answer within {timeout_seconds:g} s"
            ) from exc
        except aiohttp.ClientError as exc:
            runtime.peer_selector.record_failure(address)
            problems.append(f"{server.id}: {type(exc).__name__}")
    raise XRoadFault(faults.NETWORK_ERROR, "cannot reach the provider's gateway: " + "; ".join(problems))


def _answer(
    runtime: GatewayRuntime,
    response: aiohttp.ClientResponse,
    body: bytes,
    server: SecurityServerInfo,
    conf: GlobalConf,
    provider: ClientId,
    peer_cert: x509.Certificate | None,
) -> SignedAnswer:
    """DESIGN.md step 8: the provider gateway's certificate status, its signature, the signer's status."""
    content_type = response.headers.get("Content-Type", "")
    if not content_type.lower().startswith(TRANSPORT_MEDIA_TYPE):
        raise PeerError(response.status, content_type, body, response.headers.get("X-Road-Error"))
    check_peer_status(
        runtime.peer_status,
        response.headers.get(AUTH_OCSP_HEADER),
        peer_cert,
        conf,
        faults.SSL_AUTHENTICATION_FAILED,
        "provider gateway's TLS certificate",
    )
    max_bytes = runtime.config.max_message_bytes
    message = decode_transport(content_type, body, max_bytes=max_bytes, direction=Direction.RESPONSE)
    signer_cert = verify_signed(message, conf, provider.member, faults.CLIENT_PROXY_INVALID_SIGNATURE)
    signer_ocsp = check_peer_status(
        runtime.peer_status,
        response.headers.get(SIGNER_OCSP_HEADER),
        signer_cert,
        conf,
        faults.CLIENT_PROXY_INVALID_SIGNATURE,
        "provider's signing certificate",
    )
    return SignedAnswer(message, server.id, signer_ocsp)
