"""The development trust services on HTTP: a TSA and an OCSP responder in one small aiohttp app.

Routes (the transports the RFCs define, so any client works):

    POST /tsa               application/timestamp-query → application/timestamp-reply (RFC 3161 §3.4)
    POST /ocsp              application/ocsp-request → application/ocsp-response (RFC 6960 A.1)
    GET  /ocsp/{base64}     the same request, base64 then URL-encoded in the path (RFC 6960 A.1)
    GET  /health            liveness, and which certificates the services sign with

The handlers only translate HTTP: `TimestampAuthority` and `OcspResponder` do the work. The
revocation status comes from the PKI directory's index on every request (a small file read),
so `xgate pki revoke` shows on the next answer without a restart.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Final

from aiohttp import web

from gateway.crypto.certs import fingerprint_sha256
from gateway.crypto.ocsp import OCSP_REQUEST_TYPE, OCSP_RESPONSE_TYPE
from gateway.crypto.timestamp import TIMESTAMP_QUERY_TYPE, TIMESTAMP_REPLY_TYPE
from gateway.trust import ocsp_responder, pki, tsa
from gateway.trust.ocsp_responder import OcspResponder, StatusLookup
from gateway.trust.tsa import TimestampAuthority

MAX_BODY_BYTES: Final = max(tsa.MAX_REQUEST_BYTES, ocsp_responder.MAX_REQUEST_BYTES)
"""Neither request is anywhere near this; aiohttp refuses bigger bodies with 413 before we read."""

Clock = Callable[[], dt.datetime]

_TSA_KEY: Final = web.AppKey("tsa", TimestampAuthority)
_OCSP_KEY: Final = web.AppKey("ocsp", OcspResponder)
_CLOCK_KEY: Final[web.AppKey[Clock]] = web.AppKey("clock")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def index_status_lookup(pki_dir: Path) -> StatusLookup:
    """Statuses from `pki_dir`'s index, read afresh on each call so revocations apply at once."""

    def lookup(serial: int) -> pki.RevocationStatus:
        return pki.status_of(pki_dir, serial)

    return lookup


def build_app(
    timestamp_authority: TimestampAuthority | None, responder: OcspResponder | None, clock: Clock = utc_now
) -> web.Application:
    """The trust services' aiohttp application; a service given as None is not served (404), so
    a federation can run its OCSP responders and TSAs as processes that fail on their own."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[_CLOCK_KEY] = clock
    if timestamp_authority is not None:
        app[_TSA_KEY] = timestamp_authority
        app.router.add_post("/tsa", _timestamp)
    if responder is not None:
        app[_OCSP_KEY] = responder
        app.router.add_post("/ocsp", _ocsp_post)
        app.router.add_get("/ocsp/{encoded:.+}", _ocsp_get)
    app.router.add_get("/health", _health)
    return app


async def _timestamp(request: web.Request) -> web.Response:
    _require_content_type(request, TIMESTAMP_QUERY_TYPE)
    body = await request.read()
    reply = request.app[_TSA_KEY].respond(body, request.app[_CLOCK_KEY]())
    return web.Response(body=reply, content_type=TIMESTAMP_REPLY_TYPE)


async def _ocsp_post(request: web.Request) -> web.Response:
    _require_content_type(request, OCSP_REQUEST_TYPE)
    return _ocsp_answer(request, await request.read())


async def _ocsp_get(request: web.Request) -> web.Response:
    # RFC 6960 A.1: GET {url}/{url-encoding of base64 encoding of the DER request}. aiohttp has
    # already undone the URL encoding of the path.
    encoded = request.match_info["encoded"]
    if len(encoded) > MAX_BODY_BYTES * 2:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY_BYTES * 2, actual_size=len(encoded))
    try:
        der = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise web.HTTPBadRequest(text="the path is not base64") from None
    return _ocsp_answer(request, der)


def _ocsp_answer(request: web.Request, der: bytes) -> web.Response:
    # A malformed request still gets a 200 with an OCSP malformedRequest answer (RFC 6960 §2.3).
    answer = request.app[_OCSP_KEY].respond(der, request.app[_CLOCK_KEY]())
    return web.Response(body=answer, content_type=OCSP_RESPONSE_TYPE)


async def _health(request: web.Request) -> web.Response:
    health: dict[str, object] = {"status": "ok"}
    timestamp_authority = request.app.get(_TSA_KEY)
    if timestamp_authority is not None:
        health["tsa"] = {
            "subject": timestamp_authority.certificate.subject.rfc4514_string(),
            "fingerprint_sha256": fingerprint_sha256(timestamp_authority.certificate),
            "policy": timestamp_authority.policy_oid,
        }
    responder = request.app.get(_OCSP_KEY)
    if responder is not None:
        health["ocsp"] = {
            "subject": responder.certificate.subject.rfc4514_string(),
            "fingerprint_sha256": fingerprint_sha256(responder.certificate),
            "ca_fingerprint_sha256": fingerprint_sha256(responder.ca_certificate),
        }
    return web.json_response(health)


def _require_content_type(request: web.Request, expected: str) -> None:
    if request.content_type != expected:
        raise web.HTTPUnsupportedMediaType(text=f"expected Content-Type {expected}")
