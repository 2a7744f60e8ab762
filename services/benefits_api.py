"""Example agency service: a social benefits REST API (JSON), described by ``wsdl/benefits-api.yaml``.

- ``GET /benefits/{personalCode}`` → 200 ``{"personalCode", "benefits": [{"type", "monthlyAmount",
  "currency", "since"}]}``; 404 for a person the register does not know.
- ``POST /applications`` with ``{"personalCode", "benefitType", "note"?}`` → 201, the application
  as JSON and a ``Location`` header; 400 for a malformed application, 415 for a body that is not JSON.
- ``GET /applications/{id}`` → 200 with the application, or 404.
- ``GET|POST /echo`` → 200 with the request as the service saw it (method, path, rawPath, query,
  headers, body), so gateway tests can check which headers reach a service (PROTOCOL.md "REST protocol r1").

Errors are ``{"error": message}``. Applications live in memory, per application object.

Test-only behaviours, chosen by the personal code of ``GET /benefits/{personalCode}`` (for gateway
tests of the provider's ``ServiceFailed.*`` paths):

- ``SLOW``: waits :data:`SLOW_SECONDS` (5 s; ``make_app(slow_seconds=...)``), then answers an empty list;
- ``GARBAGE``: answers 200 with ``Content-Type: application/json`` and a body that is not JSON;
- ``HTTP500``: answers 500 with a JSON error.

``GET /openapi.yaml`` returns the description. Run with ``python -m services.benefits_api --port 8082``
(listens on 127.0.0.1; the description's ``servers`` entry is http://127.0.0.1:8082).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from .serving import serve

DEFAULT_PORT: Final = 8082  # the `servers` URL in wsdl/benefits-api.yaml
OPENAPI_FILE: Final = Path(__file__).resolve().parents[1] / "wsdl" / "benefits-api.yaml"

# Long enough to trip any sensible gateway timeout in a test, short enough not to hang a demo.
SLOW_SECONDS: Final = 5.0
# An application is a few hundred bytes; a megabyte is aiohttp's default and plenty.
MAX_REQUEST_BYTES: Final = 1024 * 1024
# A free-text note longer than this is a mistake, not an application.
MAX_NOTE_CHARS: Final = 2000

SLOW: Final = "SLOW"
GARBAGE: Final = "GARBAGE"
HTTP500: Final = "HTTP500"

BENEFIT_TYPES: Final = frozenset({"unemployment", "family-allowance", "pension", "disability", "housing"})


@dataclass(frozen=True)
class Benefit:
    """A benefit a person currently receives."""

    type: str
    monthly_amount: float
    currency: str
    since: date

    def as_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "monthlyAmount": self.monthly_amount,
            "currency": self.currency,
            "since": self.since.isoformat(),
        }


# Keyed by the personal codes of services.population_register; a known person may receive none.
BENEFITS: Final[Mapping[str, tuple[Benefit, ...]]] = {
    "38001085718": (Benefit("unemployment", 612.45, "EUR", date(2025, 9, 1)),),
    "49002124277": (
        Benefit("family-allowance", 80.00, "EUR", date(2021, 3, 1)),
        Benefit("housing", 145.20, "EUR", date(2024, 1, 1)),
    ),
    "37605030299": (),
    "48512245710": (Benefit("disability", 242.00, "EUR", date(2019, 6, 15)),),
    "50304150023": (),
    "46108090036": (Benefit("pension", 804.32, "EUR", date(2024, 8, 9)),),
}


@dataclass(frozen=True)
class Application:
    """An application for a benefit, as received."""

    id: str
    personal_code: str
    benefit_type: str
    note: str | None
    submitted_at: datetime
    status: str = "received"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "personalCode": self.personal_code,
            "benefitType": self.benefit_type,
            "note": self.note,
            "status": self.status,
            "submittedAt": self.submitted_at.isoformat(),
        }


class InvalidApplication(ValueError):
    """An application body this service refuses (400)."""


def new_application(body: Any, now: datetime) -> Application:
    """An Application from a decoded JSON body, or InvalidApplication saying what is wrong."""
    if not isinstance(body, dict):
        raise InvalidApplication("the application must be a JSON object")
    code, benefit_type, note = body.get("personalCode"), body.get("benefitType"), body.get("note")
    if not isinstance(code, str) or code not in BENEFITS:
        raise InvalidApplication("personalCode must be the code of a person in the register")
    if benefit_type not in BENEFIT_TYPES:
        raise InvalidApplication(f"benefitType must be one of {', '.join(sorted(BENEFIT_TYPES))}")
    if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE_CHARS):
        raise InvalidApplication(f"note must be a string of at most {MAX_NOTE_CHARS} characters")
    return Application(str(uuid.uuid4()), code, str(benefit_type), note, now)


_SLOW_SECONDS_KEY: Final = web.AppKey("slow_seconds", float)
_APPLICATIONS_KEY: Final = web.AppKey("applications", dict)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def get_benefits(request: web.Request) -> web.Response:
    code = request.match_info["personalCode"]
    if code == SLOW:
        await asyncio.sleep(request.app[_SLOW_SECONDS_KEY])
        return web.json_response({"personalCode": code, "benefits": []})
    if code == GARBAGE:
        return web.Response(
            body=b'{"personalCode": "GARBAGE", "benefits": [', content_type="application/json"
        )
    if code == HTTP500:
        return _error(500, "the benefits register failed (test-only HTTP500)")
    benefits = BENEFITS.get(code)
    if benefits is None:
        return _error(404, f"no person with personal code {code!r} in the register")
    return web.json_response({"personalCode": code, "benefits": [benefit.as_json() for benefit in benefits]})


async def post_application(request: web.Request) -> web.Response:
    if request.content_type != "application/json":
        return _error(415, "send the application as application/json")
    try:
        application = new_application(json.loads(await request.read()), datetime.now(UTC))
    except (ValueError, UnicodeDecodeError) as exc:  # json.JSONDecodeError and InvalidApplication
        return _error(400, str(exc))
    request.app[_APPLICATIONS_KEY][application.id] = application
    return web.json_response(
        application.as_json(), status=201, headers={"Location": f"/applications/{application.id}"}
    )


async def get_application(request: web.Request) -> web.Response:
    application = request.app[_APPLICATIONS_KEY].get(request.match_info["id"])
    if application is None:
        return _error(404, "no such application")
    return web.json_response(application.as_json())


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "path": request.path,
            "rawPath": request.raw_path,  # as received: percent-encoding and query intact
            "query": request.raw_path.partition("?")[2],
            "headers": [[name, value] for name, value in request.headers.items()],
            "body": body.decode("utf-8", errors="replace"),
        }
    )


async def get_openapi(request: web.Request) -> web.Response:
    return web.Response(body=OPENAPI_FILE.read_bytes(), content_type="application/yaml")


def make_app(*, slow_seconds: float = SLOW_SECONDS) -> web.Application:
    """The API as an aiohttp application (``slow_seconds``: how long ``SLOW`` waits)."""
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[_SLOW_SECONDS_KEY] = slow_seconds
    app[_APPLICATIONS_KEY] = {}
    app.router.add_get("/benefits/{personalCode}", get_benefits)
    app.router.add_post("/applications", post_application)
    app.router.add_get("/applications/{id}", get_application)
    app.router.add_get("/echo", echo)
    app.router.add_post("/echo", echo)
    app.router.add_get("/openapi.yaml", get_openapi)
    return app


def main(argv: list[str] | None = None) -> None:
    """Command line: serve the benefits API on 127.0.0.1."""
    serve(make_app, "services.benefits_api", "Example REST service.", DEFAULT_PORT, argv)


if __name__ == "__main__":
    main()
