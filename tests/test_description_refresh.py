"""Whole service descriptions through the management API, as X-Road 7.8 handles them: refresh from
the URL (kept services keep backend and access rights; removing rights needs confirmation), change
of URL, enable/disable, and the warnings step (SOAP 1.2-only bindings, OpenAPI without servers)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.ids import ClientId
from gateway.serverconf.access import AccessRight
from gateway.serverconf.repository import BACKEND_URL_NOT_SET, BACKEND_URL_NOT_SET_NOTICE
from tests import test_admin_api
from tests.conftest import BENEFITS_API, KNOWN_PERSON, rest_headers
from tests.inprocess import InProcessFederation
from tests.test_admin_api import CONSUMER, PROVIDER, PROVIDER_PATH, Admin, add_provider, start
from tests.test_admin_cli import ServerThread, serving
from tests.test_descriptions import wsdl

admin = test_admin_api.admin  # the management API fixture, running on its own database

DESCRIPTIONS = f"/api/v1/subsystems/{PROVIDER_PATH}/service-descriptions"
SERVICES = f"/api/v1/subsystems/{PROVIDER_PATH}/services"
ADDRESS = b"http://10.0.0.7:8080/secret-backend"

OPENAPI_WITHOUT_SERVERS = "openapi: 3.0.0\ninfo: {title: t, version: '1'}\npaths:\n  /pets:\n    get: {}\n"


@pytest.fixture
async def documents() -> AsyncIterator[tuple[str, dict[str, bytes]]]:
    """An HTTP server answering each path with the bytes the test puts in the returned dict."""
    served: dict[str, bytes] = {}

    async def document(request: web.Request) -> web.Response:
        if request.path not in served:
            raise web.HTTPNotFound()
        return web.Response(body=served[request.path], content_type="text/xml")

    app = web.Application()
    app.router.add_get("/{name:.*}", document)
    runner, base = await start(app)
    try:
        yield base, served
    finally:
        await runner.cleanup()


def provider() -> ClientId:
    return ClientId.from_text(PROVIDER)


def services_by_code(admin: Admin) -> dict[str, Any]:
    return {conf.service.service_code: conf for conf in admin.repository.snapshot().services_of(provider())}


async def serve_pets(admin: Admin, documents: tuple[str, dict[str, bytes]]) -> tuple[str, dict[str, bytes]]:
    """The provider added and a server-less OpenAPI document served: its URL, and the served map."""
    base, served = documents
    await add_provider(admin)
    served["/pets.yaml"] = OPENAPI_WITHOUT_SERVERS.encode()
    return base + "/pets.yaml", served


async def test_refresh_keeps_backend_and_rights_and_asks_before_removing_rights(
    admin: Admin,
    documents: tuple[str, dict[str, bytes]],
) -> None:
    base, served = documents
    await add_provider(admin)
    url = base + "/people.wsdl"
    served["/people.wsdl"] = wsdl(("getPerson", "v1"), ("getAddress", None), ("oldQuery", None))
    status, body = await admin.call("POST", DESCRIPTIONS + "/wsdl", json={"url": url})
    assert status == 201, body
    # The administrator's settings and rights on what is registered.
    status, body = await admin.call(
        "PATCH",
        SERVICES + "/getPerson",
        params={"version": "v1"},
        json={"backend_url": "https://people.internal/soap", "timeout_seconds": 7.0},
    )
    assert status == 200, body
    consumer = ClientId.from_text(CONSUMER)
    for code in ("getPerson", "oldQuery"):
        admin.repository.grant(provider(), AccessRight(consumer, code, None))
    status, _ = await admin.call("POST", SERVICES + "/getAddress/disable", json={"notice": "maintenance"})
    assert status == 200

    # The provider's WSDL moves on: oldQuery gone, newQuery added, getAddress at a new address.
    served["/people.wsdl"] = (
        wsdl(("getPerson", "v1"), ("getAddress", None), ("newQuery", None))
        .replace(b"<wsdl:service", b"<!--x--><wsdl:service")
        .replace(ADDRESS, b"http://10.0.0.8/people")
    )
    version = admin.repository.current_version()
    status, body = await admin.call("POST", DESCRIPTIONS + "/refresh", json={"url": url})
    assert status == 409 and body["error"] == "conflict", body
    assert [w["code"] for w in body["warnings"]] == ["removes_services_with_access_rights"]
    assert "oldQuery" in body["warnings"][0]["message"] and "confirm_removal" in body["message"]
    assert admin.repository.current_version() == version  # nothing changed

    status, body = await admin.call(
        "POST", DESCRIPTIONS + "/refresh", json={"url": url, "confirm_removal": True}
    )
    assert status == 200, body
    assert body["added"] == [f"{PROVIDER}/newQuery"]
    assert body["removed"] == [f"{PROVIDER}/oldQuery"]
    # Both kept services are "changed": the document's address moved; their backends stay.
    assert {change["id"] for change in body["changed"]} == {
        f"{PROVIDER}/getPerson/v1",
        f"{PROVIDER}/getAddress",
    }
    assert body["kept"] == [] and body["warnings"] == []

    services = services_by_code(admin)
    assert set(services) == {"getPerson", "getAddress", "newQuery"}
    person = services["getPerson"]
    assert (person.backend_url, person.timeout_seconds) == ("https://people.internal/soap", 7.0)
    assert services["getAddress"].backend_url == ADDRESS.decode()  # kept, though the document moved
    assert (services["getAddress"].enabled, services["getAddress"].disabled_notice) == (False, "maintenance")
    assert services["newQuery"].backend_url == "http://10.0.0.8/people"
    assert b"<!--x-->" in (person.description.document.encode() if person.description else b"")
    snapshot = admin.repository.snapshot()
    assert [r.subject for r in snapshot.rights(provider(), "getPerson")] == [consumer]
    assert snapshot.rights(provider(), "oldQuery") == []

    # Unchanged document: everything kept.
    status, body = await admin.call("POST", DESCRIPTIONS + "/refresh", json={"url": url})
    assert (
        status == 200 and len(body["kept"]) == 3 and body["added"] == body["removed"] == body["changed"] == []
    )

    entry = admin.audit(action="service.refresh_description")[0]
    assert entry.details is not None and entry.details["source"] == url


async def test_removing_services_without_rights_needs_no_confirmation(
    admin: Admin,
    documents: tuple[str, dict[str, bytes]],
) -> None:
    base, served = documents
    await add_provider(admin)
    served["/a.wsdl"] = wsdl(("keep", None), ("drop", None))
    assert (await admin.call("POST", DESCRIPTIONS + "/wsdl", json={"url": base + "/a.wsdl"}))[0] == 201
    served["/a.wsdl"] = wsdl(("keep", None))
    status, body = await admin.call("POST", DESCRIPTIONS + "/refresh", json={"url": base + "/a.wsdl"})
    assert status == 200 and body["removed"] == [f"{PROVIDER}/drop"], body


async def test_change_url_then_disable_and_enable_the_whole_description(
    admin: Admin,
    documents: tuple[str, dict[str, bytes]],
) -> None:
    base, served = documents
    await add_provider(admin)
    old, new = base + "/old.wsdl", base + "/new.wsdl"
    served["/old.wsdl"] = served["/new.wsdl"] = wsdl(("getPerson", "v1"), ("getAddress", None))
    served["/other.wsdl"] = wsdl(("other", None))
    for url in (old, base + "/other.wsdl"):
        assert (await admin.call("POST", DESCRIPTIONS + "/wsdl", json={"url": url}))[0] == 201

    status, body = await admin.call("POST", DESCRIPTIONS + "/change-url", json={"url": old, "new_url": new})
    assert status == 200, body
    assert body["source"] == new and len(body["kept"]) == 2
    conflict = {"url": new, "new_url": base + "/other.wsdl"}
    assert (await admin.call("POST", DESCRIPTIONS + "/change-url", json=conflict))[0] == 409
    status, body = await admin.call("POST", DESCRIPTIONS + "/refresh", json={"url": old})
    assert status == 404, body

    status, body = await admin.call("GET", DESCRIPTIONS)
    assert status == 200
    assert {(d["source"], d["kind"], d["enabled"], len(d["services"])) for d in body["descriptions"]} == {
        (new, "soap", True, 2),
        (base + "/other.wsdl", "soap", True, 1),
    }

    status, body = await admin.call("POST", DESCRIPTIONS + "/disable", json={"url": new, "notice": "moving"})
    assert status == 200 and body["enabled"] is False, body
    services = services_by_code(admin)
    assert {(s.enabled, s.disabled_notice) for code, s in services.items() if code != "other"} == {
        (False, "moving")
    }
    assert services["other"].enabled
    status, body = await admin.call("POST", DESCRIPTIONS + "/enable", json={"url": new})
    assert status == 200 and body["enabled"] is True
    assert all(s.enabled for s in services_by_code(admin).values())


async def test_soap12_only_wsdl_is_registered_after_the_warnings_step(admin: Admin) -> None:
    await add_provider(admin)
    document = wsdl(("getPerson", "v1"), soap="soap12").decode()
    status, body = await admin.call("POST", DESCRIPTIONS + "/wsdl", json={"wsdl": document})
    assert status == 400 and body["error"] == "warnings_detected", body
    assert [w["code"] for w in body["warnings"]] == ["soap12_only_binding"]
    assert "ignore_warnings" in body["message"]
    assert admin.repository.snapshot().services_of(provider()) == []

    status, body = await admin.call(
        "POST", DESCRIPTIONS + "/wsdl", json={"wsdl": document, "ignore_warnings": True}
    )
    assert status == 201, body
    assert [s["id"] for s in body["services"]] == [f"{PROVIDER}/getPerson/v1"]
    assert [w["code"] for w in body["warnings"]] == ["soap12_only_binding"]
    entry = admin.audit(action="service.add_wsdl")[0]
    assert entry.details is not None and entry.details["warnings"] == body["warnings"]


async def test_openapi_without_servers_waits_disabled_for_its_backend_url(
    admin: Admin,
    documents: tuple[str, dict[str, bytes]],
) -> None:
    url, served = await serve_pets(admin, documents)
    request = {"url": url, "service_code": "pets"}
    status, body = await admin.call("POST", DESCRIPTIONS + "/openapi", json=request)
    assert status == 400 and body["error"] == "warnings_detected", body
    assert [w["code"] for w in body["warnings"]] == ["openapi_missing_servers"]

    status, body = await admin.call(
        "POST", DESCRIPTIONS + "/openapi", json={**request, "ignore_warnings": True}
    )
    assert status == 201, body
    assert (body["backend_url"], body["enabled"], body["disabled_notice"]) == (
        None,
        False,
        BACKEND_URL_NOT_SET_NOTICE,
    )
    status, body = await admin.call("POST", SERVICES + "/pets/enable")
    assert status == 400 and "set the backend URL first" in body["message"], body
    status, body = await admin.call("POST", DESCRIPTIONS + "/enable", json={"url": request["url"]})
    assert status == 400, body

    # A refresh that now names a server sets the backend and enables the service.
    served["/pets.yaml"] = (
        OPENAPI_WITHOUT_SERVERS.replace("paths:", "servers: [{url: 'http://pets.internal/v1'}]\npaths:")
        + "  /pets/{id}:\n    get: {}\n"
    ).encode()
    status, body = await admin.call("POST", DESCRIPTIONS + "/refresh", json={"url": request["url"]})
    assert status == 200, body
    [change] = body["changed"]
    assert "http://pets.internal/v1" in change["change"] and "GET /pets/*" in change["change"]
    pets = services_by_code(admin)["pets"]
    assert (pets.backend_url, pets.enabled, pets.disabled_notice) == ("http://pets.internal/v1", True, None)


async def test_openapi_without_servers_with_a_backend_url_given_has_no_warnings_step(admin: Admin) -> None:
    await add_provider(admin)
    request = {"document": OPENAPI_WITHOUT_SERVERS, "service_code": "pets", "backend_url": "http://pets/v1"}
    status, body = await admin.call("POST", DESCRIPTIONS + "/openapi", json=request)
    assert status == 201 and body["enabled"] and body["backend_url"] == "http://pets/v1", body
    # Set later: a service registered without one is enabled once its backend URL is set.
    request = {"document": OPENAPI_WITHOUT_SERVERS, "service_code": "cats", "ignore_warnings": True}
    assert (await admin.call("POST", DESCRIPTIONS + "/openapi", json=request))[0] == 201
    status, body = await admin.call("PATCH", SERVICES + "/cats", json={"backend_url": "http://cats/v1"})
    assert status == 200 and body["enabled"] and body["disabled_notice"] is None, body


async def test_openapi_refresh_keeps_backend_and_reports_endpoints(
    admin: Admin,
    documents: tuple[str, dict[str, bytes]],
) -> None:
    url, served = await serve_pets(admin, documents)
    request = {"url": url, "service_code": "pets", "backend_url": "http://pets/v1"}
    assert (await admin.call("POST", DESCRIPTIONS + "/openapi", json=request))[0] == 201
    served["/pets.yaml"] = OPENAPI_WITHOUT_SERVERS.replace("get: {}", "post: {}").encode()
    status, body = await admin.call("POST", DESCRIPTIONS + "/refresh", json={"url": request["url"]})
    assert status == 200 and body["warnings"] == [], body  # the servers warning is moot: backend set
    assert body["changed"][0]["change"] == "endpoints added: POST /pets; endpoints removed: GET /pets"
    pets = services_by_code(admin)["pets"]
    assert pets.backend_url == "http://pets/v1" and [e.method for e in pets.endpoints] == ["POST"]


async def test_an_uploaded_description_cannot_be_refreshed(admin: Admin) -> None:
    await add_provider(admin)
    status, body = await admin.call(
        "POST", DESCRIPTIONS + "/refresh", json={"url": "http://nowhere.invalid/x"}
    )
    assert status == 404, body


# --- xgate admin -----------------------------------------------------------------------------


def test_cli_asks_about_warnings_and_removals(tmp_path: Path) -> None:
    served: dict[str, bytes] = {}

    async def document(request: web.Request) -> web.Response:
        return web.Response(body=served[request.path], content_type="text/xml")

    app = web.Application()
    app.router.add_get("/{name:.*}", document)
    with ServerThread(app) as documents, serving(tmp_path) as live:
        live.ok("subsystems", "add", PROVIDER)
        wsdl_file = tmp_path / "people.wsdl"
        wsdl_file.write_bytes(wsdl(("getPerson", "v1"), soap="soap12"))
        result = live.run("services", "add-wsdl", PROVIDER, "--file", str(wsdl_file), input="n\n")
        assert result.exit_code == 1 and "soap12_only_binding" in result.output, result.output
        assert live.repository.snapshot().services_of(provider()) == []
        result = live.run("services", "add-wsdl", PROVIDER, "--file", str(wsdl_file), input="y\n")
        assert result.exit_code == 0 and "getPerson" in result.output, result.output

        url = documents.url + "/a.wsdl"
        served["/a.wsdl"] = wsdl(("keep", None), ("drop", None))
        live.ok("services", "add-wsdl", PROVIDER, "--url", url)
        live.repository.grant(provider(), AccessRight(ClientId.from_text(CONSUMER), "drop", None))
        listed = live.json("descriptions", "list", PROVIDER)
        assert {(d["source"], len(d["services"])) for d in listed} == {("upload", 1), (url, 2)}

        served["/a.wsdl"] = wsdl(("keep", None))
        result = live.run("descriptions", "refresh", PROVIDER, url, input="n\n")
        assert result.exit_code == 1 and "drop: 1 access right(s)" in result.output, result.output
        out = live.ok("descriptions", "refresh", PROVIDER, url, "--yes")
        assert f"removed: {PROVIDER}/drop" in out and f"kept: {PROVIDER}/keep" in out

        disabled = live.json("descriptions", "disable", PROVIDER, url, "--notice", "moving")
        assert disabled["enabled"] is False
        served["/b.wsdl"] = served["/a.wsdl"]
        report = live.json("descriptions", "change-url", PROVIDER, url, documents.url + "/b.wsdl")
        assert report["source"] == documents.url + "/b.wsdl"
        assert live.json("descriptions", "enable", PROVIDER, documents.url + "/b.wsdl")["enabled"] is True


# --- what a client of a service without backend URL gets ------------------------------------


async def test_a_client_of_a_service_waiting_for_its_backend_url_gets_service_disabled(
    local: InProcessFederation,
) -> None:
    """What registration from a server-less OpenAPI document leaves: the fault every disabled
    service gives, with the notice saying why; never a connection error to a made-up address."""
    with local["gw-c"].serverconf() as repository:
        conf = repository.snapshot().service(BENEFITS_API)
        assert conf is not None
        repository.update_service(
            dataclasses.replace(
                conf,
                backend_url=BACKEND_URL_NOT_SET,
                enabled=False,
                disabled_notice=BACKEND_URL_NOT_SET_NOTICE,
            )
        )
    response = await local["gw-a"].request(
        "GET", f"/r1/{BENEFITS_API.to_text()}/benefits/{KNOWN_PERSON}", headers=rest_headers()
    )
    assert response.status_code >= 400
    # The code's spelling follows the gateway's fault style (CamelCase or X-Road 7.8 snake case).
    code = response.headers.get("X-Road-Error", "").replace("_", "").lower()
    assert code.endswith("servicedisabled"), response.headers
    assert response.json()["message"] == BACKEND_URL_NOT_SET_NOTICE
