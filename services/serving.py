"""How the example services run from the command line: `--host` and `--port`, or a listening
socket the starting process bound for them (gateway.listeners)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from aiohttp import web

from gateway.listeners import listening_socket


def serve(
    make_app: Callable[[], web.Application],
    module: str,
    description: str,
    default_port: int,
    argv: list[str] | None = None,
) -> None:
    """`python -m <module>`: parse `argv` and serve `make_app()` until interrupted."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    args = parser.parse_args(argv)
    # A socket the starting process bound for us (gateway.listeners), or the address itself.
    web.run_app(make_app(), sock=listening_socket(args.host, args.port))
