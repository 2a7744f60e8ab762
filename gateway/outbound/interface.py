"""The one outbound interface: a request value in, a response value out (after httpx's transports).

Everything the gateway asks of another server over HTTP — a peer gateway, an agency's
service, an OCSP responder, a TSA, the registry — is an :class:`OutboundRequest` handed to a
:class:`Transport`, which answers with an :class:`OutboundResponse` or raises an
:class:`OutboundError`. Callers never see which transport they hold: the node's aiohttp one
(`gateway.outbound.network`) or a test's in-process one (`gateway.outbound.inprocess`). Every
request names its deadline and the largest answer it will hold (DESIGN.md "Security rules":
every outbound call a timeout); redirects are never followed.

Sans-IO: values, the abstract transport and errors; no network library is imported here.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import KW_ONLY, dataclass
from typing import Final

from cryptography import x509

Headers = tuple[tuple[str, str], ...]
"""Header fields in order, repeats kept; names compare without case (RFC 9110 §5.1)."""

BODYLESS_METHODS: Final = frozenset({"GET", "HEAD"})
"""Methods whose empty body is sent as no body at all (RFC 9110 §9.3.1-2: content has no meaning)."""


def header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    """The first value of field `name`, or None."""
    wanted = name.lower()
    return next((value for field, value in headers if field.lower() == wanted), None)


@dataclass(frozen=True)
class ServerTls:
    """How to speak TLS to one server, where it differs from the transport's own default.

    For agencies' services (their registration's settings, docs/security.md "Backend TLS"):
    whether to check the server's certificate at all, which CAs to trust instead of the
    system's (PEM), and a client certificate (and key file) for a server that requires one.
    """

    verify: bool = True
    ca_pem: str | None = None
    client_cert_path: str | None = None
    client_key_path: str | None = None


@dataclass(frozen=True)
class OutboundRequest:
    method: str
    url: str
    headers: Headers = ()
    body: bytes = b""
    _: KW_ONLY
    timeout_seconds: float
    """The whole exchange, connection to last byte of the answer."""
    max_response_bytes: int
    """The answer is refused (ResponseTooLarge) past this many bytes, and never held beyond it."""
    connect_timeout_seconds: float | None = None
    """Establishing the connection alone; None leaves only the whole deadline."""
    tls: ServerTls | None = None
    """For an https URL: the TLS settings to use instead of the transport's default."""
    exact_url: bool = False
    """The URL is percent-encoded already: sent as written, not normalised (a REST client's
    path and query reach its service byte for byte, PR-REST §4.5)."""


@dataclass(frozen=True)
class OutboundResponse:
    status: int
    headers: Headers
    body: bytes
    peer_certificate: x509.Certificate | None = None
    """The TLS certificate the server presented, where the transport pins peers (else None)."""

    def header(self, name: str) -> str | None:
        return header(self.headers, name)

    @property
    def content_type(self) -> str:
        """The Content-Type field as sent, or ""."""
        return self.header("Content-Type") or ""

    @property
    def media_type(self) -> str:
        """The Content-Type without parameters, lower case (RFC 9110 §8.3.1)."""
        return self.content_type.split(";", 1)[0].strip().lower()


class OutboundError(Exception):
    """No usable answer: the server could not be reached or the exchange broke off; the message says how.

    The message is plain words naming host:port and the kind of failure, never a library's
    internals (it ends up in faults that clients read).
    """


class OutboundTimeout(OutboundError):
    """A deadline passed: before a connection was made (`connecting`), or before the whole answer came.

    The two differ for the caller: without a connection nothing was sent, so another server may
    be asked; after it the server may have acted on the request. `seconds` is the limit that ran out.
    """

    def __init__(self, message: str, *, connecting: bool = False, seconds: float | None = None) -> None:
        super().__init__(message)
        self.connecting = connecting
        self.seconds = seconds


def describe_timeout(address: str, request: OutboundRequest, *, connecting: bool) -> OutboundTimeout:
    """The timeout of `request` to `address` as what it was: no connection, or no whole answer, in time."""
    total = request.timeout_seconds
    if connecting:
        limit = min(request.connect_timeout_seconds or total, total)
        return OutboundTimeout(f"{address}: no connection within {limit:g} s", connecting=True, seconds=limit)
    return OutboundTimeout(f"{address}: connected, but no whole answer within {total:g} s", seconds=total)


class InvalidUrl(OutboundError):
    """The request's URL cannot be asked at all."""


class ResponseTooLarge(OutboundError):
    """The answer is (or announces itself as) longer than the request's `max_response_bytes`."""

    def __init__(self, limit: int, announced: int | None = None) -> None:
        self.limit = limit
        self.announced = announced
        super().__init__(self.describe("the answer"))

    def describe(self, what: str) -> str:
        """`what` (e.g. "the service's response") in a sentence that says by how much, where known."""
        if self.announced is not None:
            return f"{what} of {self.announced} bytes exceeds {self.limit}"
        return f"{what} exceeds {self.limit} bytes"


class PeerNotRegistered(OutboundError):
    """The peer's TLS certificate chains to a federation CA but is not the one registered for it."""


class Transport(abc.ABC):
    """Sends one request and returns its whole answer (bounded), or raises OutboundError."""

    @abc.abstractmethod
    async def send(self, request: OutboundRequest) -> OutboundResponse: ...

    async def aclose(self) -> None:
        """Release what the transport holds (connections); a closed transport is not used again."""
        return None


class ExchangeFailed(Exception):
    """A server did not answer as asked (status, media type, size, reachability); the message says how."""


async def post_for(
    transport: Transport,
    url: str,
    body: bytes,
    *,
    content_type: str,
    answer_type: str,
    timeout: float,
    max_bytes: int,
) -> bytes:
    """POST `body` to `url`; the answer's body, which must be 200 and `answer_type`, else ExchangeFailed.

    For the request-response services of RFC 6960 A.1 (OCSP) and RFC 3161 §3.4 (TSA). Messages
    read after the server's name: "answered HTTP 503", "at URL unreachable: ...".
    """
    request = OutboundRequest(
        "POST",
        url,
        (("Content-Type", content_type), ("Accept", answer_type)),
        body,
        timeout_seconds=timeout,
        max_response_bytes=max_bytes,
    )
    try:
        response = await transport.send(request)
    except ResponseTooLarge as exc:
        raise ExchangeFailed(f"answered more than {max_bytes} bytes") from exc
    except OutboundError as exc:
        raise ExchangeFailed(f"at {url} unreachable: {exc}") from exc
    if response.status != 200:
        raise ExchangeFailed(f"answered HTTP {response.status}")
    if response.media_type != answer_type:
        raise ExchangeFailed(f"answered {response.media_type}, not {answer_type}")
    return response.body
