"""The registry's public face: the signed configuration, the anchor, and registration requests.

Served on the distribution listener, which gateways reach (it may listen on all interfaces
in production). Nothing here needs an API key:

* ``GET /globalconf`` answers the last published signed configuration, as bytes; its
  signature, not the transport, is what gateways trust (docs/globalconf.md), so plain HTTP
  is enough;
* ``GET /anchor`` answers the anchor a gateway needs: the instance, the configuration URL
  and every certificate that may sign (active and standby keys); operators hand it to
  gateways out of band and check its fingerprint;
* ``POST /requests`` takes a signed registration request (`requests.py`): the signatures
  say who asks. Each submission, accepted or refused, is audited;
* ``GET /requests/{id}`` tells the gateway how its request was decided, by whom and why;
* ``POST /heads`` takes a signed message-log head (gateway.messagelog.heads) from a listed
  gateway, signed by its owner: the registry is the logs' witness (refusals are audited);
* ``GET /heads/{gateway}`` answers the newest head of each of its nodes (`?node=` for one),
  one JSON line each, for `xgate log verify --witness`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from gateway.adminstore import AuditResult
from gateway.central.api import (
    RegistryContext,
    as_api_error,
    audit,
    errors_as_json,
    health_handler,
    request_json,
)
from gateway.central.repository import Conflict, RequestRecord
from gateway.central.repository.heads import UntrustedHead
from gateway.central.requests import (
    MAX_SIGNED_REQUEST_BYTES,
    RequestRefused,
    UntrustedRequest,
    read_signed_request,
    verify_signed_request,
)
from gateway.globalconf.signed import anchor_to_json
from gateway.webapi import (
    ANONYMOUS,
    CONFLICT,
    NOT_FOUND,
    PAYLOAD_TOO_LARGE,
    VALIDATION_ERROR,
    ApiError,
    error_response,
    json_response,
)
from gateway.webapi.errors import incident

log = logging.getLogger(__name__)

GLOBALCONF_PATH: Final = "/globalconf"
ANCHOR_PATH: Final = "/anchor"
REQUESTS_PATH: Final = "/requests"
HEADS_PATH: Final = "/heads"
HEAD_ACTION: Final = "loghead.submit"

SUBMIT_ACTION: Final = "request.submit"

_JSON: Final = "application/json"


def make_distribution_app(ctx: RegistryContext) -> web.Application:
    app = web.Application(client_max_size=MAX_SIGNED_REQUEST_BYTES, middlewares=[errors_as_json])
    app.router.add_get(GLOBALCONF_PATH, _globalconf(ctx))
    app.router.add_get(ANCHOR_PATH, _anchor(ctx))
    app.router.add_post(REQUESTS_PATH, _submit(ctx))
    app.router.add_get(REQUESTS_PATH + "/{request_id}", _status(ctx))
    app.router.add_post(HEADS_PATH, _accept_head(ctx))
    app.router.add_get(HEADS_PATH + "/{gateway:.+}", _newest_heads(ctx))
    app.router.add_get("/health", health_handler(ctx))
    return app


Route = Callable[[web.Request], Awaitable[web.Response]]


def _globalconf(ctx: RegistryContext) -> Route:
    async def serve(request: web.Request) -> web.Response:
        current = ctx.publisher.current
        if current is None:
            return error_response(ApiError(503, "unavailable", "no configuration is published yet"))
        # Gateways must see a new version as soon as it exists: never cached on the way.
        return web.Response(body=current.signed, content_type=_JSON, headers={"Cache-Control": "no-cache"})

    return serve


def _anchor(ctx: RegistryContext) -> Route:
    async def serve(request: web.Request) -> web.Response:
        anchor = await asyncio.to_thread(ctx.publisher.anchor, ctx.configuration_urls)
        return web.Response(
            body=anchor_to_json(anchor), content_type=_JSON, headers={"Cache-Control": "no-cache"}
        )

    return serve


def _submit(ctx: RegistryContext) -> Route:
    async def submit(request: web.Request) -> web.Response:
        actor, target = ANONYMOUS, REQUESTS_PATH
        details = {"remote": request.remote}
        try:
            data = await _body(request)
            try:  # who claims to ask, for the audit log, before anything is trusted
                claimed = read_signed_request(data)
                actor, target = f"member:{claimed.member.to_text()}", claimed.type.value
            except RequestRefused:
                pass
            record = await asyncio.to_thread(_verify_and_store, ctx, data)
        except Exception as exc:
            error = _submission_error(exc)
            await audit(
                ctx, actor, SUBMIT_ACTION, target, {**details, "message": error.message}, _result(error)
            )
            return error_response(error)
        await audit(
            ctx, actor, SUBMIT_ACTION, f"request {record.id}", {**details, "type": target}, AuditResult.OK
        )
        return json_response(request_json(record), 202)

    return submit


def _verify_and_store(ctx: RegistryContext, data: bytes) -> RequestRecord:
    repository = ctx.repository
    verified = verify_signed_request(
        data, repository.trusted_ca_certificates(), repository.now(), instance=repository.instance
    )
    return repository.submit_request(verified, data)


async def _body(request: web.Request) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(
            413, PAYLOAD_TOO_LARGE, f"a request is at most {MAX_SIGNED_REQUEST_BYTES} bytes"
        ) from None


def _submission_error(exc: Exception) -> ApiError:
    if isinstance(exc, UntrustedRequest):
        return ApiError(403, "untrusted_request", str(exc))
    if isinstance(exc, RequestRefused):
        return ApiError(400, VALIDATION_ERROR, str(exc))
    if isinstance(exc, Conflict):
        return ApiError(409, CONFLICT, str(exc))
    error = as_api_error(exc)
    if error.status >= 500:
        error = incident(error, exc, "registration request")
    return error


def _result(error: ApiError) -> AuditResult:
    return AuditResult.ERROR if error.status >= 500 else AuditResult.REFUSED


def _status(ctx: RegistryContext) -> Route:
    async def status(request: web.Request) -> web.Response:
        try:
            record = await asyncio.to_thread(ctx.repository.request, request.match_info["request_id"])
        except Exception as exc:
            error = as_api_error(exc)
            if error.status == 404:
                error = ApiError(404, NOT_FOUND, "no such request")
            elif error.status >= 500:
                error = incident(error, exc, "request status")
            return error_response(error)
        return json_response(request_json(record))

    return status


def _accept_head(ctx: RegistryContext) -> Route:
    """A head is accepted quietly (one every few seconds per node); a refusal is audited."""

    async def accept(request: web.Request) -> web.Response:
        try:
            data = await _body(request)
            signed = await asyncio.to_thread(ctx.repository.accept_log_head, data)
        except Exception as exc:
            error = _head_error(exc)
            await audit(
                ctx,
                ANONYMOUS,
                HEAD_ACTION,
                HEADS_PATH,
                {"remote": request.remote, "message": error.message},
                _result(error),
            )
            return error_response(error)
        return json_response(
            {"gateway": signed.head.gateway, "node": signed.head.node, "seq": signed.head.seq}
        )

    return accept


def _head_error(exc: Exception) -> ApiError:
    if isinstance(exc, UntrustedHead):
        return ApiError(403, "untrusted_head", str(exc))
    if isinstance(exc, Conflict):
        return ApiError(409, CONFLICT, str(exc))
    error = as_api_error(exc)
    if error.status >= 500:
        log.error("log head refused", exc_info=exc)
    return error


def _newest_heads(ctx: RegistryContext) -> Route:
    async def newest(request: web.Request) -> web.Response:
        lines = await asyncio.to_thread(
            ctx.repository.newest_log_heads, request.match_info["gateway"], request.query.get("node")
        )
        body = "".join(line + "\n" for line in lines)
        return web.Response(
            text=body, content_type="application/x-ndjson", headers={"Cache-Control": "no-cache"}
        )

    return newest
