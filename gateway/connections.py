"""How many clients a listener serves at once, and how long a client may take to send its request.

aiohttp (3.14) closes an idle keep-alive connection (`keepalive_timeout`) but has no deadline
for the request head on a new connection beyond that idle timer, none for a request body
that stops arriving, and no cap on connections: a few hundred clients that open a
connection and send half a request head hold their sockets until the idle timer (by default
an hour), and a body that stalls holds a handler for ever.  `LimitedSite` is an aiohttp site whose connections
each carry one timer and are counted per listener:

- the **head deadline**: a new connection must deliver a complete request head within
  `header_timeout_seconds` of its TLS handshake (or TCP accept); the handshake itself gets the
  same time;
- the **body deadline**: while a request body is still arriving, the client must send
  something every `body_timeout_seconds` (a stalled upload is closed, a slow steady one is not);
- the **idle deadline**: between requests aiohttp's own keep-alive timer closes a connection
  after `idle_timeout_seconds` without a complete next request (`runner_options()`);
- the **cap**: a listener with `max_connections` open connections closes each new one at once,
  while those it holds keep being served.

A connection that misses a deadline, or finds the listener full, is aborted (TCP reset): a
client that stalls gets no further time, and no TLS close handshake is waited for.

Each request also carries when its first bytes arrived (`ARRIVED`, loop time): a busy event
loop may take a while to get from there to the handler, and a bound on how long a request
waits (gateway/admission.py) counts that time too.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any, Final, Protocol, cast

from aiohttp import StreamReader, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_parser import RawRequestMessage

log = logging.getLogger(__name__)

# Defaults in the spirit of nginx and X-Road; a gateway's clients are machines, not people.
# X-Road proxies' connector-initial-idle-time is 30 s (nginx client_header_timeout: 60 s).
DEFAULT_HEADER_TIMEOUT_SECONDS: Final = 30.0
# nginx client_body_timeout: 60 s between two reads (X-Road's connector max-idle-time: 0, none).
DEFAULT_BODY_TIMEOUT_SECONDS: Final = 60.0
# nginx keepalive_timeout: 75 s, above X-Road's 60 s client-side idle monitor, so pools close first.
DEFAULT_IDLE_TIMEOUT_SECONDS: Final = 75.0
# nginx worker_connections: 512; four listeners' worth stays within a common 1024-file ulimit's reach.
DEFAULT_MAX_CONNECTIONS: Final = 512
ARRIVED: Final = web.RequestKey("arrived", float)
"""Loop time at which a request's first bytes were read from its connection (a site's requests)."""

# A full listener says so at most this often: a flood of refused connections is one line a minute.
FULL_WARNING_INTERVAL_SECONDS: Final = 60.0


@dataclass(frozen=True)
class ConnectionLimits:
    """The deadlines and the cap every listener of a node applies (the cap counts per listener)."""

    header_timeout_seconds: float = DEFAULT_HEADER_TIMEOUT_SECONDS
    body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS
    idle_timeout_seconds: float = DEFAULT_IDLE_TIMEOUT_SECONDS
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    def runner_options(self) -> dict[str, Any]:
        """Keyword arguments for `web.AppRunner`: aiohttp's own keep-alive timer is the idle deadline."""
        return {"keepalive_timeout": self.idle_timeout_seconds}

    @classmethod
    def of(cls, settings: ConnectionLimitSettings) -> ConnectionLimits:
        """The limits a configuration file's [limits] table names (gateway's and registry's alike)."""
        return cls(
            header_timeout_seconds=settings.header_timeout_seconds,
            body_timeout_seconds=settings.body_timeout_seconds,
            idle_timeout_seconds=settings.idle_timeout_seconds,
            max_connections=settings.max_connections,
        )


class ConnectionLimitSettings(Protocol):
    """What names the four limits under their own names: a configuration file's [limits] table."""

    header_timeout_seconds: float
    body_timeout_seconds: float
    idle_timeout_seconds: float
    max_connections: int


class LimitedSite(web.BaseSite):
    """An aiohttp site on host:port or on a listening socket, holding its connections to `limits`.

    Use it with a runner made with `limits.runner_options()`; several sites may share a runner.
    """

    def __init__(
        self,
        runner: web.BaseRunner,
        limits: ConnectionLimits,
        *,
        host: str | None = None,
        port: int | None = None,
        sock: socket.socket | None = None,
        ssl_context: ssl.SSLContext | None = None,
        reuse_address: bool | None = None,
    ) -> None:
        if (sock is None) == (port is None):
            raise ValueError("a site listens on host and port or on a socket, one of the two")
        # The kernel's queue of connections not yet accepted holds as many as the cap (the
        # kernel cuts it to net.core.somaxconn): with aiohttp's 128, a burst of a thousand
        # clients overflowed it, and each connection dropped there waited for the client's
        # retransmission, 1, 3 or 7 s, before the gateway saw a byte (issue 16's overload runs).
        super().__init__(runner, ssl_context=ssl_context, backlog=max(limits.max_connections, 128))
        self.limits = limits
        self._host = host
        self._port = port
        self._sock = sock
        self._reuse_address = reuse_address
        self.open_connections = 0
        """Connections this listener serves now (after their TLS handshake)."""
        self.refused = 0
        """Connections closed at once because the listener was full."""
        self.timed_out = 0
        """Connections closed because a request head or body was overdue."""
        self._next_full_warning = 0.0
        self._bound_port: int | None = None

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host or '*'}:{self.port}"

    @property
    def port(self) -> int:
        """The port listened on (the one the system chose, for port 0, once started)."""
        if self._bound_port is not None:
            return self._bound_port
        if self._sock is not None:
            return int(self._sock.getsockname()[1])
        return self._port or 0

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None  # BaseSite.__init__ checked the runner was set up
        heads = _HeadWatch.of(server)
        loop = asyncio.get_running_loop()

        def connection() -> asyncio.Protocol:
            return _Connection(self, server, heads, loop)

        # The TLS handshake is part of what a client must finish before its request head.
        handshake = self.limits.header_timeout_seconds if self._ssl_context is not None else None
        if self._sock is not None:
            listening = await loop.create_server(
                connection,
                sock=self._sock,
                ssl=self._ssl_context,
                backlog=self._backlog,
                ssl_handshake_timeout=handshake,
            )
        else:
            assert self._port is not None  # __init__ checked: a port when there is no socket
            listening = await loop.create_server(
                connection,
                host=self._host,
                port=self._port,
                ssl=self._ssl_context,
                backlog=self._backlog,
                reuse_address=self._reuse_address,
                ssl_handshake_timeout=handshake,
            )
        self._server = listening
        self._bound_port = int(listening.sockets[0].getsockname()[1])

    def _admit(self) -> bool:
        if self.open_connections < self.limits.max_connections:
            self.open_connections += 1
            return True
        self.refused += 1
        now = time.monotonic()
        if now >= self._next_full_warning:
            log.warning(
                "%s is full (%d connections): closing new ones (%d so far)",
                self.name,
                self.open_connections,
                self.refused,
            )
            self._next_full_warning = now + FULL_WARNING_INTERVAL_SECONDS
        return False

    def _release(self) -> None:
        self.open_connections -= 1


class _HeadWatch:
    """The runner's request factory, wrapped to tell a connection that its request head arrived.

    aiohttp calls the factory once per parsed request head, with the connection's handler;
    `Server.request_factory` is the documented place to replace it.  One watch per runner,
    shared by its sites.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.connections: dict[web.RequestHandler, _Connection] = {}

    @classmethod
    def of(cls, server: web.Server) -> _HeadWatch:
        if not isinstance(server.request_factory, _HeadWatch):
            server.request_factory = cls(server.request_factory)
        return server.request_factory

    def __call__(
        self,
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: web.RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> Any:
        connection = self.connections.get(protocol)
        request = self.inner(message, payload, protocol, writer, task)
        if connection is not None:
            request[ARRIVED] = connection.head_received(payload)
        return request


class _Connection(asyncio.Protocol):
    """One accepted connection: aiohttp's request handler inside, the listener's count and timer around it.

    Every callback the transport makes is passed on to the handler unchanged; this object only
    counts the connection and arms one timer: for the head while it is awaited, for the body
    while it arrives.
    """

    def __init__(
        self, site: LimitedSite, server: web.Server, heads: _HeadWatch, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._site = site
        self._server = server
        self._heads = heads
        self._loop = loop
        self._handler: web.RequestHandler | None = None
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._body: StreamReader | None = None
        self._last_read = 0.0
        self._head_began: float | None = None
        """When the first bytes of the request head now awaited arrived (None: none yet)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's are not asyncio.Transport subclasses; aiohttp casts as well).
        stream = cast(asyncio.Transport, transport)
        if not self._site._admit():
            stream.abort()
            return
        self._transport = stream
        self._handler = handler = self._server()
        self._heads.connections[handler] = self
        self._timer = self._loop.call_later(self._site.limits.header_timeout_seconds, self._head_overdue)
        handler.connection_made(stream)

    def data_received(self, data: bytes) -> None:
        if self._handler is None:
            return
        body = self._body
        if body is not None and not body.is_eof():
            self._last_read = self._loop.time()
        elif self._head_began is None:
            self._head_began = self._loop.time()  # the next request's first bytes
        self._handler.data_received(data)

    def eof_received(self) -> None:
        # As with aiohttp's handler on its own: None lets the transport close at the client's end.
        if self._handler is not None:
            self._handler.eof_received()

    def pause_writing(self) -> None:
        if self._handler is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        if self._handler is not None:
            self._handler.resume_writing()

    def connection_lost(self, exc: BaseException | None) -> None:
        handler = self._handler
        if handler is None:
            return
        self._handler = None
        self._cancel_timer()
        self._body = None
        self._heads.connections.pop(handler, None)
        self._site._release()
        handler.connection_lost(exc)

    # --- deadlines ----------------------------------------------------------------------------

    def head_received(self, payload: StreamReader) -> float:
        """A request head arrived: its deadline ends; the body's starts if a body is to come.

        Returns when the request's first bytes arrived."""
        self._cancel_timer()
        now = self._loop.time()
        arrived = now if self._head_began is None else min(self._head_began, now)
        self._head_began = None
        if payload.is_eof():
            self._body = None
            return arrived
        self._body = payload
        self._last_read = now
        self._timer = self._loop.call_later(self._site.limits.body_timeout_seconds, self._body_check)
        return arrived

    def _head_overdue(self) -> None:
        self._timer = None
        self._abort("no complete request head in time")

    def _body_check(self) -> None:
        """Fires at the latest moment the body may have been silent; re-arms while it is not overdue."""
        self._timer = None
        body, transport = self._body, self._transport
        if body is None or transport is None or body.is_eof():
            self._body = None
            return
        now = self._loop.time()
        if not transport.is_reading():
            # aiohttp paused reading until the handler consumes what it holds: not the client's delay.
            self._last_read = now
        due = self._last_read + self._site.limits.body_timeout_seconds
        if now < due:
            self._timer = self._loop.call_at(due, self._body_check)
            return
        self._abort("request body silent too long")

    def _abort(self, reason: str) -> None:
        if self._transport is None:
            return
        self._site.timed_out += 1
        log.debug("%s: closing %s: %s", self._site.name, self._transport.get_extra_info("peername"), reason)
        self._transport.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
