"""The steps both sides of an exchange take, in the order DESIGN.md "A request's path" names them.

Read a message within the limit; give the exchange its id; attach this gateway's own
certificate status and sign (step 4, step 7); verify a peer's signature and the status of its
certificates (step 5, step 8). The consumer (consumer.py, exchange.py) and the provider
(provider.py) call these with their own side's fault codes.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from aiohttp import StreamReader, web
from cryptography import x509

from gateway import faults
from gateway.admission import Ticket
from gateway.crypto.batchsigner import BatchSigner
from gateway.crypto.certs import member_of
from gateway.crypto.rootsig import SignatureVerificationError, VerifiedRoot, verify_message_signature
from gateway.faults import XRoadFault
from gateway.globalconf.model import GlobalConf
from gateway.ids import ClientId
from gateway.monitoring.exchange import Step
from gateway.outbound.network import read_at_most
from gateway.protocol.transport import Payload, TransportMessage, manifest_digest, signed_parts
from gateway.proxy.admitting import TICKET
from gateway.proxy.certstatus import CertificateStatusError, PeerStatusChecker, status_headers
from gateway.proxy.runtime import GatewayRuntime, utc_now

if TYPE_CHECKING:
    from gateway.proxy.watching import Watch

MAX_SIGNING_TIME_SKEW_SECONDS: Final = 300.0
"""A signature on the wire is fresh: a leaked key must not backdate messages into a
certificate's validity period. Five minutes covers clock drift between gateways."""


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The request body, refused as soon as it passes the limit (never buffered beyond it).

    A body without Content-Length holds room in the node's body budget chunk by chunk as it
    arrives (gateway/admission.py); one with it was given its room before the handler ran.
    """
    if request.content_length is not None and request.content_length > max_bytes:
        raise XRoadFault(
            faults.REQUEST_TOO_LARGE, f"message of {request.content_length} bytes exceeds {max_bytes}"
        )
    ticket = request.get(TICKET)
    if ticket is None or request.content_length is not None:
        body = await read_at_most(request.content, max_bytes)
    else:
        body = await _read_counted(request.content, max_bytes, ticket)
    if body is None:
        raise XRoadFault(faults.REQUEST_TOO_LARGE, f"message exceeds {max_bytes} bytes")
    return body


async def _read_counted(stream: StreamReader, max_bytes: int, ticket: Ticket) -> bytes | None:
    """The whole body as it arrives, each chunk's room held first; None past `max_bytes`."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream.iter_any():
        size += len(chunk)
        if size > max_bytes:
            return None
        await ticket.received(len(chunk))
        chunks.append(chunk)
    return b"".join(chunks)


def new_exchange_id() -> str:
    """The id that ties one exchange's log records together on this gateway."""
    return str(uuid.uuid4())


@dataclass(frozen=True)
class OwnStatus:
    """What this gateway attaches about its own certificates to one message it sends."""

    headers: dict[str, str]
    signer_ocsp: bytes | None


@dataclass(frozen=True)
class OwnStatusFaults:
    """What one side answers when it cannot vouch for its own certificates (docs/transport.md)."""

    auth: str
    """The TLS certificate is unusable (revoked, unknown, not from a trusted CA)."""
    signer: str
    """The signing certificate is, or this gateway holds none for the member."""
    stale: str
    """No fresh OCSP response for either: the responders, or the clock (docs/resilience.md)."""


CONSUMER_OWN_STATUS_FAULTS: Final = OwnStatusFaults(
    faults.SSL_AUTHENTICATION_FAILED, faults.CLIENT_PROXY_INTERNAL_ERROR, faults.OCSP_RESPONSE_STALE
)
PROVIDER_OWN_STATUS_FAULTS: Final = OwnStatusFaults(
    faults.SERVER_PROXY_SSL_AUTHENTICATION_FAILED,
    faults.SERVER_PROXY_INTERNAL_ERROR,
    faults.SERVER_PROXY_OCSP_RESPONSE_STALE,
)


def own_status(
    runtime: GatewayRuntime, conf: GlobalConf, member: ClientId, codes: OwnStatusFaults
) -> OwnStatus:
    """The OCSP responses for this node's TLS certificate and `member`'s signing certificate.

    Without a fresh, good response where the CA has a responder this gateway cannot send:
    `codes` says which fault, by certificate and cause.
    """
    auth = runtime.own_ocsp(runtime.auth_cert, conf, codes.auth, codes.stale)
    signer_cert = runtime.signing_certs.get(member)
    if signer_cert is None:
        raise XRoadFault(codes.signer, f"this gateway holds no signing key for {member}")
    signer = runtime.own_ocsp(signer_cert, conf, codes.signer, codes.stale)
    return OwnStatus(status_headers(auth, signer), signer)


async def sign_payload(signer: BatchSigner, payload: Payload, watch: Watch | None = None) -> TransportMessage:
    """One batch signature share for this message (DESIGN.md "One signer"); timed for `watch`."""
    started = time.perf_counter()
    signature = await signer.sign(manifest_digest(signed_parts(payload)))
    if watch is not None:
        watch.add(Step.SIGN, started)
    return TransportMessage(payload, signature)


def verify_signature(
    message: TransportMessage, conf: GlobalConf, expected_members: tuple[ClientId, ...], fault_code: str
) -> VerifiedRoot:
    """The signature is valid, fresh, chains to a federation CA and speaks for one of `expected_members`.

    Returns what the signature vouches for (signer, signing time, root): the replay check's key.
    """
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
    if signer not in expected_members:
        wanted = " or ".join(str(member) for member in dict.fromkeys(expected_members))
        raise XRoadFault(fault_code, f"the message is signed by {signer}, not by {wanted}")
    return verified


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
