"""A gateway node's operational monitoring records survive a clean shutdown (SIGTERM).

gw-c runs as `xgate gateway serve` in its own process, with a writer that would not flush for an
hour; its own subsystem calls its own REST service through it (consumer and provider paths, the
external interface over real mutual TLS), the service a thread of the test. After SIGTERM every
exchange answered before it has both its records in the node's monitoring database.
"""

from __future__ import annotations

import dataclasses
import signal
import time
from pathlib import Path
from typing import Any

import requests
from aiohttp import web

from gateway.config import load_config
from gateway.dev.processes import Child, wait_for
from gateway.monitoring.exchange import Role
from gateway.monitoring.operational.query import RecordQuery
from gateway.monitoring.operational.store import OpMonitorStore
from gateway.serverconf.access import AccessRight
from gateway.serverconf.repository import ServerConfRepository
from tests.conftest import BENEFITS, BENEFITS_API, HTTP_TIMEOUT_SECONDS, rest_headers, serving_in_thread
from tests.test_node import NODE_START_SECONDS, _healthy, built, gateway_of, node_process

__all__ = ["built"]  # the module-scoped federation, generated and not started

CALLS = 6


def test_records_of_exchanges_answered_before_sigterm_are_in_the_database(
    built: dict[str, Any], tmp_path: Path
) -> None:
    gw_c = gateway_of(built, "gw-c")
    config = Path(gw_c["config"])
    config.write_text(config.read_text() + "\n[monitoring]\nflush_interval_seconds = 3600\n")

    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path})

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    with serving_in_thread(app, "127.0.0.1", 0) as port:
        repository = ServerConfRepository.from_url(f"sqlite:///{config.parent / 'serverconf.sqlite'}")
        registered = repository.snapshot().service(BENEFITS_API)
        assert registered is not None
        repository.update_service(dataclasses.replace(registered, backend_url=f"http://127.0.0.1:{port}"))
        repository.grant(BENEFITS, AccessRight(BENEFITS, "benefits", None))
        repository.engine.dispose()

        log = tmp_path / "gw-c.log"
        with node_process(str(config), log) as node:
            child = Child("gw-c", node, log)
            wait_for(lambda: _healthy(gw_c), time.monotonic() + NODE_START_SECONDS, "gw-c to start", [child])
            url = f"{gw_c['internal_http_url']}/r1/{BENEFITS_API.to_text()}/benefits/38001085718"
            ids = []
            for _ in range(CALLS):
                response = requests.get(
                    url, headers=rest_headers(client=BENEFITS), timeout=HTTP_TIMEOUT_SECONDS
                )
                assert response.status_code == 200, response.text
                ids.append(response.headers["X-Road-Id"])
            health = requests.get(gw_c["admin_url"] + "/health", timeout=HTTP_TIMEOUT_SECONDS).json()
            assert health["monitoring"]["written"] == 0, "nothing written before the shutdown"

            node.send_signal(signal.SIGTERM)
            assert node.wait(20) == 0
    assert "Traceback" not in log.read_text()

    monitoring = load_config(config).monitoring
    assert monitoring is not None
    store = OpMonitorStore.from_url(monitoring.database_url)
    try:
        found, _ = store.search(RecordQuery(limit=100, oldest_first=True))
    finally:
        store.close()
    assert len(found) == 2 * CALLS
    for role in Role:
        mine = [stored.record for stored in found if stored.record.role is role]
        assert sorted(record.message_id or "" for record in mine) == sorted(ids)
        for record in mine:
            assert record.succeeded and record.status == 200 and record.protocol == "rest"
            assert record.client == BENEFITS.to_text() and record.service == BENEFITS_API.to_text()
            assert record.peer is not None and record.peer.startswith("DEV/GOV/1003/gw-c")
    producer = next(stored.record for stored in found if stored.record.role is Role.PRODUCER)
    assert "@127.0.0.1" in (producer.peer or ""), "the real external interface knows the caller's address"
    assert producer.rest_path == "/benefits/*" and "backend" in producer.steps
