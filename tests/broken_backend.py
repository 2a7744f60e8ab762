"""A provider's backend that fails, run as a process of its own in place of an example service:

    python -m tests.broken_backend MODE PORT [PORT ...]

on 127.0.0.1, every request answered the same way whatever it asks, by MODE:

- `hang`: accepts the connection and never reads or answers (a backend that stopped responding);
- `http500`: HTTP 500, text/plain, as a crashed application server answers;
- `garbage`: 200 `text/xml` whose body is not XML;
- `truncated`: 200 announcing more body than it sends, then closes (a backend dying mid-answer);
- `soapfault`: HTTP 500 with a SOAP Fault whose faultcode is `soapenv:Server`: the service's
  own answer (SOAP 1.1 §6.2 sends every fault with 500), not a failure to answer.

Raw asyncio streams, not aiohttp: the truncated answer is what a web framework would never
send. It prints `ready` once it listens on every port. Used by tests/test_e2e_cache_failures.py.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Final

MODES: Final = ("hang", "http500", "garbage", "truncated", "soapfault")
SOAP_FAULT_STRING: Final = "the register is closed for maintenance"
_SOAP_FAULT: Final = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
    f"<soapenv:Fault><faultcode>soapenv:Server</faultcode><faultstring>{SOAP_FAULT_STRING}</faultstring>"
    "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
).encode()

_ANSWERS: Final = {
    "http500": (
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n"
        b"Connection: close\r\n\r\nInternal Server Error"
    ),
    "garbage": (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: 19\r\n"
        b"Connection: close\r\n\r\nthis is not XML <<<"
    ),
    "truncated": (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: 4096\r\n"
        b'Connection: close\r\n\r\n<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv='
    ),
    "soapfault": (
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/xml; charset=utf-8\r\n"
        + f"Content-Length: {len(_SOAP_FAULT)}\r\nConnection: close\r\n\r\n".encode()
        + _SOAP_FAULT
    ),
}


async def _serve(mode: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        if mode == "hang":
            await reader.read()  # until the gateway gives up and closes
            return
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        await reader.readexactly(length)
        writer.write(_ANSWERS[mode])
        await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def _main(mode: str, ports: list[int]) -> None:
    servers = [
        await asyncio.start_server(lambda r, w: _serve(mode, r, w), "127.0.0.1", port, reuse_address=True)
        for port in ports
    ]
    print("ready", flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[0] not in MODES:
        sys.exit(f"usage: python -m tests.broken_backend {{{','.join(MODES)}}} PORT [PORT ...]")
    asyncio.run(_main(argv[0], [int(port) for port in argv[1:]]))


if __name__ == "__main__":
    main(sys.argv[1:])
