"""A hostile provider gateway, run as a process of its own: it holds a registered gateway's TLS key
but not its member's signing key, and answers every request over mutual TLS with an unsigned,
forged 200: a SOAP answer, or JSON when the request carries a REST head.

    python -m tests.hostile_peer CERT KEY CA HOST PORT

It prints `ready` once it listens. Used by tests/test_e2e_peer_trust.py.
"""

from __future__ import annotations

import ssl
import sys
from typing import Final

from aiohttp import web

FORGED: Final = "Forged Person 0xDEADBEEF"

FORGED_SOAP: Final = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    f'<soapenv:Body><pr:getPersonResponse xmlns:pr="http://xgate.example/population-register">'
    f"<pr:name>{FORGED}</pr:name></pr:getPersonResponse></soapenv:Body></soapenv:Envelope>"
).encode()


async def answer(request: web.Request) -> web.Response:
    body = await request.read()
    if b"rest-request" in body:
        return web.json_response({"name": FORGED, "benefit": 1_000_000})
    return web.Response(body=FORGED_SOAP, content_type="text/xml", charset="utf-8")


def main(argv: list[str]) -> None:
    cert, key, ca, host, port = argv
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.load_verify_locations(ca)
    context.verify_mode = ssl.CERT_REQUIRED
    app = web.Application()
    app.router.add_post("/", answer)

    async def announce(_app: web.Application) -> None:
        print("ready", flush=True)

    app.on_startup.append(announce)
    web.run_app(app, host=host, port=int(port), ssl_context=context, print=None, reuse_address=True)


if __name__ == "__main__":
    main(sys.argv[1:])
