"""A node's metrics listener over HTTP, with real traffic through the in-process federation.

Requests go agency system -> gw-a -> gw-b -> service (tests/inprocess.py); gw-a's and gw-b's
`/metrics` listeners are real sockets, scraped with aiohttp and read with prometheus_client's
parser, as Prometheus would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import web

from gateway import faults
from gateway.cache.policy import CacheMode
from gateway.config import Listener, MetricsSettings
from gateway.connections import ConnectionLimits
from gateway.ids import ServiceId
from gateway.metrics import NodeRegistry, start_metrics_listener
from tests.conftest import CONSUMER, GET_PERSON, KNOWN_PERSON, get_person_request, soap_request
from tests.inprocess import Gateway, InProcessFederation
from tests.test_cache_inprocess import person_policy, refused, set_policy
from tests.test_metrics import samples, value

SOAP_HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
SAMPLES = dict[str, list[tuple[dict[str, str], float]]]


@asynccontextmanager
async def metrics_of(gateway: Gateway) -> AsyncIterator[tuple[str, NodeRegistry]]:
    """gw's metrics listener on a free port: its /metrics URL and registry."""
    runners: list[web.AppRunner] = []
    settings = MetricsSettings(Listener("127.0.0.1", 0), max_label_values=50)
    registry = await start_metrics_listener(settings, gateway.runtime, runners, ConnectionLimits(), 1.0)
    port = runners[0].addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/metrics", registry
    finally:
        gateway.runtime.exchange_observers.remove(registry.exchanges)
        for runner in runners:
            await runner.cleanup()


async def scrape(url: str) -> SAMPLES:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        return samples(await response.text())


async def test_node_state_is_read_at_scrape_time(local: InProcessFederation) -> None:
    gw_a = local["gw-a"]
    async with metrics_of(gw_a) as (url, _registry):
        before = await scrape(url)
        for _ in range(3):
            response = await gw_a.post("/", get_person_request(KNOWN_PERSON), SOAP_HEADERS)
            assert response.status_code == 200
        after = await scrape(url)

    member = next(iter(gw_a.runtime.signers)).to_text()
    assert value(after, "xgate_signer_batch_size_count", member=member) >= 1
    assert (
        value(after, "xgate_signer_batch_size_sum", member=member)
        - value(before, "xgate_signer_batch_size_sum", member=member)
        == 3
    )  # one message signed per request, however they were batched
    assert (
        value(after, "xgate_messagelog_commit_records_sum")
        - value(before, "xgate_messagelog_commit_records_sum")
        >= 6
    )  # request and response of each exchange
    assert value(after, "xgate_messagelog_commit_seconds_count") >= 1
    assert value(after, "xgate_timestamp_failing") == 0
    assert value(after, "xgate_globalconf_expiry_seconds") > 0
    assert 0 <= value(after, "xgate_globalconf_age_seconds") < 3600
    certs = after["xgate_certificate_expiry_seconds"]
    assert {labels["role"] for labels, _ in certs} == {"auth", "sign"}
    assert all(left > 86400 for _, left in certs)
    gates = {labels["gate"] for labels, _ in after["xgate_admission_capacity"]}
    assert gates == {"internal", "external", "body_bytes"}
    listeners = {labels["listener"]: open_now for labels, open_now in after["xgate_open_connections"]}
    assert any(name.startswith("http://127.0.0.1:") for name in listeners)
    assert value(after, "process_cpu_seconds_total") > 0


async def test_each_node_has_its_own_registry(local: InProcessFederation) -> None:
    async with metrics_of(local["gw-a"]) as (url_a, a), metrics_of(local["gw-b"]) as (url_b, b):
        assert a.registry is not b.registry
        found_a, found_b = await scrape(url_a), await scrape(url_b)
    signers_a = {labels["member"] for labels, _ in found_a["xgate_signer_batch_size_count"]}
    signers_b = {labels["member"] for labels, _ in found_b["xgate_signer_batch_size_count"]}
    assert signers_a and signers_b and not signers_a & signers_b


async def test_exchange_metrics_move_as_traffic_flows_and_faults_happen(local: InProcessFederation) -> None:
    gw_a, gw_b = local["gw-a"], local["gw-b"]
    missing = ServiceId("DEV", "GOV", "1002", "population", "nosuch", "v1")
    async with metrics_of(gw_a) as (url_a, _), metrics_of(gw_b) as (url_b, _):
        for _ in range(4):
            answer = await gw_a.post("/", get_person_request(KNOWN_PERSON), SOAP_HEADERS)
            assert answer.status_code == 200
        answer = await gw_a.post("/", soap_request(missing, "<nosuch/>"), SOAP_HEADERS)
        assert answer.status_code != 200
        found_a = await settled(url_a, "xgate_exchanges_total", 5)
        found_b = await settled(url_b, "xgate_exchanges_total", 5)

    service, client = GET_PERSON.to_text(), CONSUMER.to_text()
    exchanges = "xgate_exchanges_total"
    ok = {"service": service, "client": client, "outcome": "ok", "fault_code": ""}
    assert value(found_a, exchanges, side="client", **ok) == 4
    assert value(found_b, exchanges, side="producer", **ok) == 4
    # The made-up service is refused on both sides; never proven, it is counted as "other".
    fault = {"outcome": "fault", "fault_code": faults.UNKNOWN_SERVICE, "service": "other"}
    assert value(found_a, exchanges, side="client", client=client, **fault) == 1
    assert value(found_b, exchanges, side="producer", **fault) == 1
    assert value(found_a, "xgate_exchange_duration_seconds_count", side="client", service=service) == 4
    for step in ("parse", "sign", "peer", "verify", "log"):
        assert value(found_a, "xgate_exchange_step_seconds_count", side="client", step=step) >= 4, step
    assert value(found_b, "xgate_exchange_step_seconds_count", side="producer", step="backend") == 4
    assert value(found_a, "xgate_exchange_request_bytes_count", side="client") == 5
    assert value(found_a, "xgate_exchange_response_bytes_sum", side="client") > 4 * 500


async def settled(url: str, name: str, count: int) -> SAMPLES:
    """The scrape once `name` sums to `count` (a record follows its answer, as the client reads it)."""
    for _ in range(200):
        found = await scrape(url)
        if value(found, name) >= count:
            return found
        await asyncio.sleep(0.01)
    raise AssertionError(f"{name} did not reach {count}: {found.get(name)}")


async def test_cache_answers_and_circuits_show(local: InProcessFederation) -> None:
    gw_a = local["gw-a"]
    set_policy(gw_a, person_policy(mode=CacheMode.FALLBACK))
    async with metrics_of(gw_a) as (url, _):
        answer = await gw_a.post("/", get_person_request(KNOWN_PERSON), SOAP_HEADERS)
        assert answer.status_code == 200 and "XGate-Cache" not in answer.headers
        gw_a.peers.handler = refused  # gw-b cannot be reached: the kept answer is served, stale
        stale = await gw_a.post("/", get_person_request(KNOWN_PERSON), SOAP_HEADERS)
        assert stale.headers["XGate-Cache"].startswith("stale")
        found = await settled(url, "xgate_exchanges_total", 2)

    service = GET_PERSON.to_text()
    assert value(found, "xgate_exchanges_total", side="client", service=service, outcome="cache_stale") == 1
    assert value(found, "xgate_cache_outcomes_total", service=service, outcome="stored") == 1
    assert value(found, "xgate_cache_outcomes_total", service=service, outcome="stale") == 1
    states = {
        labels["state"]: v for labels, v in found["xgate_circuit_state"] if labels["service"] == service
    }
    assert sum(states.values()) == 1 and set(states) == {"closed", "open", "half_open"}
