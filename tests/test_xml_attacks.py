"""Hostile XML gets a clear fault, quickly, without memory growing or anything fetched.

DESIGN.md "Security rules": no DTDs, no entities, no network, size and depth limits.
Each attack goes through the same entry points a gateway uses (parse_request,
parse_response, set_request_hash), bare and inside a multipart message. The entity
attacks sit in an otherwise valid message's `userId`, so a parser that expanded them
would return a message instead of a fault. The network attacks point at a real HTTP
server on 127.0.0.1 that counts what it is asked for (libxml2 2.14 has no HTTP client at
all; the server is there for the build or parser setting that brings one back).
"""

from __future__ import annotations

import http.server
import pathlib
import resource
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from lxml import etree

from gateway import faults
from gateway.faults import XRoadFault
from gateway.ids import ClientId, ServiceId
from gateway.protocol.mime import build_multipart
from gateway.protocol.soap import (
    build_request,
    build_response,
    parse_request,
    parse_response,
    set_request_hash,
)

XML = "text/xml; charset=UTF-8"
TIME_LIMIT_S = 2.0
MEMORY_LIMIT_BYTES = 200 * 1024 * 1024
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/">
<SOAP-ENV:Body><lolz>&lol9;</lolz></SOAP-ENV:Body></SOAP-ENV:Envelope>"""


def with_doctype(doctype: str, body: str = "<x>&xxe;</x>") -> bytes:
    return (
        f'<?xml version="1.0"?>\n{doctype}\n<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV}">'
        f"<SOAP-ENV:Body>{body}</SOAP-ENV:Body></SOAP-ENV:Envelope>"
    ).encode()


PLACEHOLDER = "USER-PLACEHOLDER"


def _valid_request() -> bytes:
    return build_request(
        ClientId("EE", "GOV", "1", "client"),
        ServiceId("EE", "GOV", "2", "provider", "getPerson"),
        etree.Element("{urn:p}getPerson"),
        message_id="m-1",
        user_id=PLACEHOLDER,
    )


def _valid_response() -> bytes:
    return build_response(parse_request(_valid_request(), XML), etree.Element("{urn:p}getPersonResponse"))


def with_entity(message: bytes, doctype: str) -> bytes:
    """`message` with `doctype` after its XML declaration and `&xxe;` as its userId."""
    declaration, rest = message.split(b"\n", 1)
    return declaration + b"\n" + doctype.encode() + b"\n" + rest.replace(PLACEHOLDER.encode(), b"&xxe;")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def attack(action: Callable[[], object]) -> XRoadFault:
    """Run one attack; it must fail with an XRoadFault, in time, with bounded memory."""
    before = peak_rss_bytes()
    started = time.perf_counter()
    with pytest.raises(XRoadFault) as caught:
        action()
    elapsed = time.perf_counter() - started
    growth = peak_rss_bytes() - before
    assert elapsed < TIME_LIMIT_S, f"took {elapsed:.2f} s"
    assert growth < MEMORY_LIMIT_BYTES, f"peak memory grew by {growth / 2**20:.0f} MiB"
    return caught.value


# name: (the valid message an entity attack is planted in, how it is fed to the gateway)
ENTRY_POINTS: dict[str, tuple[Callable[[], bytes], Callable[[bytes], object]]] = {
    "request": (_valid_request, lambda raw: parse_request(raw, XML)),
    "response": (_valid_response, lambda raw: parse_response(raw, XML)),
    "request hash": (_valid_response, lambda raw: set_request_hash(raw, "aGFzaA==")),
    "multipart": (_valid_request, lambda raw: parse_request(*build_multipart(raw, []))),
}


@pytest.fixture(params=list(ENTRY_POINTS))
def entry_point(request: pytest.FixtureRequest) -> tuple[Callable[[], bytes], Callable[[bytes], object]]:
    return ENTRY_POINTS[request.param]


@pytest.fixture
def entry(entry_point: tuple[Callable[[], bytes], Callable[[bytes], object]]) -> Callable[[bytes], object]:
    return entry_point[1]


def test_the_victims_are_valid_without_the_attack() -> None:
    for victim, feed in ENTRY_POINTS.values():
        feed(victim())


class CountingHandler(http.server.BaseHTTPRequestHandler):
    hits: list[str]

    def do_GET(self) -> None:
        self.hits.append(self.path)
        body = b'<!ENTITY xxe "fetched">'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_server() -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server on 127.0.0.1 that records every request it gets."""
    hits: list[str] = []
    handler = type("Handler", (CountingHandler,), {"hits": hits})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def listener(http_server: tuple[str, list[str]]) -> tuple[str, list[str]]:
    http_server[1].clear()
    return http_server


def test_billion_laughs(entry: Callable[[bytes], object]) -> None:
    fault = attack(lambda: entry(BILLION_LAUGHS))
    assert fault.code == faults.INVALID_SOAP
    # libxml2 stops the entity declarations themselves before xmlsafe sees the DTD.
    assert "document type" in fault.message or "entity" in fault.message
    assert "lol" * 10 not in fault.message


@pytest.mark.parametrize("target", ["/etc/passwd", "secret"])
def test_xxe_local_file(
    target: str,
    entry_point: tuple[Callable[[], bytes], Callable[[bytes], object]],
    tmp_path: pathlib.Path,
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("SECRET-MARKER")
    path = secret if target == "secret" else pathlib.Path(target)
    victim, feed = entry_point
    raw = with_entity(victim(), f'<!DOCTYPE x [<!ENTITY xxe SYSTEM "{path.as_uri()}">]>')
    fault = attack(lambda: feed(raw))
    assert fault.code == faults.INVALID_SOAP
    assert "document type" in fault.message
    assert "root:" not in fault.message and "SECRET-MARKER" not in fault.message


@pytest.mark.parametrize(
    "doctype",
    [
        '<!DOCTYPE x [<!ENTITY xxe SYSTEM "{url}/entity">]>',
        '<!DOCTYPE x SYSTEM "{url}/external.dtd">',
        '<!DOCTYPE x [<!ENTITY % remote SYSTEM "{url}/parameter.dtd"> %remote;]>',
    ],
    ids=["external entity", "external dtd", "parameter entity"],
)
def test_xxe_over_http_fetches_nothing(
    doctype: str,
    entry_point: tuple[Callable[[], bytes], Callable[[bytes], object]],
    listener: tuple[str, list[str]],
) -> None:
    url, hits = listener
    victim, feed = entry_point
    raw = with_entity(victim(), doctype.format(url=url))
    fault = attack(lambda: feed(raw))
    assert fault.code == faults.INVALID_SOAP
    assert hits == []
    assert "fetched" not in fault.message


def test_entity_reference_without_doctype() -> None:
    fault = attack(lambda: parse_request(with_entity(_valid_request(), ""), XML))
    assert fault.code == faults.INVALID_SOAP


def test_megabyte_deep_nesting(entry: Callable[[bytes], object]) -> None:
    depth = 1024 * 1024 // 7  # "<a>" + "</a>": a megabyte of markup
    raw = with_doctype("", body="<a>" * depth + "</a>" * depth)
    assert len(raw) > 1024 * 1024
    fault = attack(lambda: entry(raw))
    assert fault.code == faults.INVALID_SOAP
    assert "deeper" in fault.message


def test_fifty_megabyte_body() -> None:
    filler = b"<p>" + b"x" * (50 * 1024 * 1024) + b"</p>"
    raw = with_doctype("", body="%s").replace(b"%s", filler)
    fault = attack(lambda: parse_request(raw, XML))
    assert fault.code == faults.INVALID_SOAP
    assert "exceeds the limit" in fault.message


def test_fifty_megabyte_soap_part_in_multipart() -> None:
    filler = b"<p>" + b"x" * (50 * 1024 * 1024) + b"</p>"
    raw, content_type = build_multipart(with_doctype("", body="%s").replace(b"%s", filler), [])
    fault = attack(lambda: parse_request(raw, content_type))
    assert fault.code == faults.INVALID_SOAP


def test_fifty_megabytes_of_empty_parts() -> None:
    raw = b"--b\r\n\r\n\r\n" * (50 * 1024 * 1024 // 9) + b"--b--"
    fault = attack(lambda: parse_request(raw, "multipart/related; boundary=b"))
    assert fault.code == faults.INVALID_CONTENT_TYPE
