"""Outbound HTTP behind one interface: peers, backends, trust services and the registry.

The face names the sans-IO interface only; the aiohttp transport is `gateway.outbound.network`,
the trust-service clients `gateway.outbound.ocsp` and `gateway.outbound.tsa`.
"""

from gateway.outbound.inprocess import InProcessTransport
from gateway.outbound.interface import (
    ExchangeFailed,
    Headers,
    InvalidUrl,
    OutboundError,
    OutboundRequest,
    OutboundResponse,
    OutboundTimeout,
    PeerNotRegistered,
    ResponseTooLarge,
    ServerTls,
    Transport,
    header,
    post_for,
)

__all__ = [
    "ExchangeFailed",
    "Headers",
    "InProcessTransport",
    "InvalidUrl",
    "OutboundError",
    "OutboundRequest",
    "OutboundResponse",
    "OutboundTimeout",
    "PeerNotRegistered",
    "ResponseTooLarge",
    "ServerTls",
    "Transport",
    "header",
    "post_for",
]
