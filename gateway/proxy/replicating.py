"""Replicated calls through the consumer's own request path (gateway.cache.replication).

Each call becomes a synthetic internal request, as the policy's client subsystem would send
it, handed to the internal interface's handlers (proxy/consumer.py): it is signed, logged,
sent, verified, checked and kept like any client's request. No socket is opened: the request
never leaves the node, so the client-system authentication that the internal interface does
for connections (TLS, pinned certificates) has nothing to check; the client must still be a
subsystem registered at this gateway (consumer.authenticate_client).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Final
from unittest import mock

from aiohttp import StreamReader, web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from gateway.cache.marking import HEADER_CACHE
from gateway.cache.policy import CachePolicy, ReplicatedCall
from gateway.cache.replication import Fetch, Fetched
from gateway.protocol import rest, soap
from gateway.xmlsafe import parse_xml

REPLICATION_USER_ID: Final = "xgate-replication"
"""The X-Road user id replicated requests carry: the log shows who asked (the gateway's scheduler)."""

REPLICATION_ACCEPT: Final = "*/*"
"""The Accept field of replicated REST calls: part of the cache key (gateway.cache.key), and what
curl, requests and aiohttp send when told nothing, so their questions find the copies."""

ASK_PROVIDER: Final = {"Cache-Control": "no-cache"}
"""A fresh copy does not answer a replicated call (proxy/cached.py): the point is to ask."""

_READ_CHUNK_LIMIT: Final = 2**16


def consumer_fetch(app: web.Application) -> Fetch:
    """A `Fetch` that runs each call through the internal interface `app`, in process."""

    async def fetch(policy: CachePolicy, call: ReplicatedCall) -> Fetched:
        assert policy.replication is not None
        client = policy.replication.client
        message_id = f"replication-{uuid.uuid4()}"
        if call.soap_body is not None:
            element = parse_xml(call.soap_body.encode())
            body = soap.build_request(
                client, policy.service, element, message_id=message_id, user_id=REPLICATION_USER_ID
            )
            method, target = "POST", "/"
            headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""', **ASK_PROVIDER}
        else:
            assert call.method is not None and call.path is not None
            method, body = call.method, call.body
            target = f"/r1/{policy.service.to_text()}{call.path}" + (f"?{call.query}" if call.query else "")
            headers = {
                rest.HEADER_CLIENT: client.to_text(),
                rest.HEADER_ID: message_id,
                rest.HEADER_USER_ID: REPLICATION_USER_ID,
                "Accept": REPLICATION_ACCEPT,
                **ASK_PROVIDER,
            }
            if body:
                headers["Content-Type"] = "application/json"
        response = await _handle(app, method, target, headers, body)
        return _outcome(response)

    return fetch


async def _handle(
    app: web.Application, method: str, target: str, headers: dict[str, str], body: bytes
) -> web.Response:
    payload = StreamReader(
        mock.Mock(_reading_paused=False), _READ_CHUNK_LIMIT, loop=asyncio.get_running_loop()
    )
    payload.feed_data(body)
    payload.feed_eof()
    request = make_mocked_request(method, target, headers=CIMultiDict(headers), app=app, payload=payload)
    match = await app.router.resolve(request)
    match.add_app(app)
    request._match_info = match
    response = await match.handler(request)
    assert isinstance(response, web.Response)
    return response


def _outcome(response: web.Response) -> Fetched:
    """Kept only if the provider answered (not a fault, not from the cache)."""
    body = response.body if isinstance(response.body, bytes) else b""
    if HEADER_CACHE in response.headers:
        return Fetched(False, "answered from the cache, not by the provider")
    error = response.headers.get(rest.HEADER_ERROR)
    if error:
        return Fetched(False, error)
    if response.status != 200:
        return Fetched(False, f"HTTP {response.status}")
    content_type = response.headers.get("Content-Type", "")
    if "xml" in content_type or "multipart" in content_type:
        fault = soap.parse_fault(body, content_type)
        if fault is not None:
            return Fetched(False, fault.code)
    return Fetched(True)
