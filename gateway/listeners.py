"""Listening sockets: bound here, or handed over already bound by the process that started this one.

A parent that starts a server on a port it chose (the development federation, tests) would
otherwise pick a free port, close it and let the child bind it again, and in between any other
process may take it. Instead the parent binds the socket itself, keeps it open, and passes it
to the child (`subprocess.Popen(pass_fds=...)`) naming it in :data:`LISTEN_FDS_ENV`; the child
serves on the socket it was given. Servers look every listener up here first, and bind the
address themselves when nothing was handed over, which is what a node in production does.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
from collections.abc import Mapping
from typing import Final

from aiohttp import web

from gateway.connections import ConnectionLimits, LimitedSite

LISTEN_FDS_ENV: Final = "XGATE_LISTEN_FDS"
"""`host:port=fd` items, comma-separated: listening sockets the parent bound for this process."""


def listen_fds_value(sockets: Mapping[str, int]) -> str:
    """The value of :data:`LISTEN_FDS_ENV` for sockets given as {"host:port": fd}."""
    return ",".join(f"{address}={fd}" for address, fd in sockets.items())


def _handed_over(environ: Mapping[str, str]) -> dict[str, int]:
    handed: dict[str, int] = {}
    for item in environ.get(LISTEN_FDS_ENV, "").split(","):
        address, _, fd = item.rpartition("=")
        if address and fd.isdigit():
            handed[address] = int(fd)
    return handed


def inherited_socket(host: str, port: int, environ: Mapping[str, str] | None = None) -> socket.socket | None:
    """The listening socket handed over for host:port, or None.

    The variable may outlive the descriptors (a grandchild inherits the environment, not the
    sockets), so a descriptor counts only if it is a socket bound to that very port.
    """
    fd = _handed_over(os.environ if environ is None else environ).get(f"{host}:{port}")
    if fd is None:
        return None
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return None
    try:
        bound_port = sock.getsockname()[1]
    except (OSError, IndexError):
        bound_port = None
    if bound_port != port or sock.type != socket.SOCK_STREAM:
        sock.detach()  # not ours to close: leave the descriptor as it was
        return None
    return sock


def listening_socket(host: str, port: int) -> socket.socket:
    """The socket handed over for host:port, or a new one bound and listening there."""
    inherited = inherited_socket(host, port)
    if inherited is not None:
        return inherited
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family)


def site(
    runner: web.BaseRunner,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    reuse_address: bool | None = None,
    limits: ConnectionLimits | None = None,
) -> web.BaseSite:
    """An aiohttp site on host:port: on the handed-over socket if there is one, else bound here.

    With `limits`, the site holds its connections to them (header, body and idle deadlines, a cap).
    """
    inherited = inherited_socket(host, port)
    if inherited is None:
        if limits is not None:
            return LimitedSite(
                runner, limits, host=host, port=port, ssl_context=ssl_context, reuse_address=reuse_address
            )
        return web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_address=reuse_address)
    with contextlib.suppress(OSError):
        inherited.listen()  # the parent may have bound it only; listening twice is harmless
    if limits is not None:
        return LimitedSite(runner, limits, sock=inherited, ssl_context=ssl_context)
    return web.SockSite(runner, inherited, ssl_context=ssl_context)
