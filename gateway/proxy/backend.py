"""Calling an agency's own service from the provider's gateway (DESIGN.md steps 6-7).

Every way a backend can fail maps to one documented `ServiceFailed.*` fault; nothing a
backend sends is held beyond the node's message limit (the transport reads no further).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from yarl import URL

from gateway import faults
from gateway.faults import XRoadFault
from gateway.monitoring.exchange import Step
from gateway.outbound import (
    InvalidUrl,
    OutboundError,
    OutboundRequest,
    OutboundResponse,
    OutboundTimeout,
    ResponseTooLarge,
    ServerTls,
    Transport,
)
from gateway.serverconf.model import BackendTls

if TYPE_CHECKING:
    from gateway.proxy.watching import Watch

SOAP_PASSED_HEADERS: Final = ("Content-Type", "SOAPAction")
"""Only these reach a SOAP service (PROTOCOL.md "SOAP message protocol 4.0")."""


def server_tls(settings: BackendTls) -> ServerTls:
    """A service's registered TLS settings as the outbound interface takes them."""
    return ServerTls(
        settings.verify, settings.ca_bundle_pem, settings.client_cert_path, settings.client_key_path
    )


def rest_service_url(backend_url: str, path_and_query: str) -> str:
    """The registered address, percent-encoded, followed by the client's path and query as sent.

    PR-REST §4.5: the query passes unmodified, and the path is the client's too (X-Road appends
    both to the address as they came). Only the address is encoded here (an administrator may
    have written a space or a non-ASCII host name); the client's part was checked to hold only
    characters a URL may carry (rest.parse_rest_request), so it needs nothing.
    """
    return str(URL(backend_url.rstrip("/"))) + path_and_query


async def call_backend(
    transport: Transport,
    method: str,
    url: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    *,
    timeout_seconds: float,
    max_bytes: int,
    tls: BackendTls | None = None,
    exact_url: bool = False,
    watch: Watch | None = None,
) -> OutboundResponse:
    """One HTTP exchange with the service; redirects are not followed (PROTOCOL.md REST r1).

    `tls`: the service's registered TLS settings for an https URL (docs/security.md "Backend
    TLS"): verification on or off, a pinned CA, a client certificate for mutual TLS.
    `exact_url`: `url` is percent-encoded already and goes on the request line as written
    (:func:`rest_service_url`). `watch`: the exchange's observation, told the call's time.
    """
    request = OutboundRequest(
        method,
        url,
        tuple(headers),
        body,
        timeout_seconds=timeout_seconds,
        max_response_bytes=max_bytes,
        tls=server_tls(tls) if tls is not None else None,
        exact_url=exact_url,
    )
    started = time.perf_counter()
    try:
        return await transport.send(request)
    except OutboundTimeout as exc:
        raise XRoadFault(faults.SERVICE_FAILED_TIMEOUT, f"the service timed out: {exc}") from exc
    except ResponseTooLarge as exc:
        raise XRoadFault(
            faults.SERVICE_FAILED_RESPONSE_TOO_LARGE, exc.describe("the service's response")
        ) from exc
    except InvalidUrl as exc:
        raise XRoadFault(faults.SERVICE_FAILED_NETWORK_ERROR, f"invalid service address: {exc}") from exc
    except OutboundError as exc:
        raise XRoadFault(faults.SERVICE_FAILED_NETWORK_ERROR, f"cannot reach the service: {exc}") from exc
    finally:
        if watch is not None:
            watch.add(Step.BACKEND, started)
