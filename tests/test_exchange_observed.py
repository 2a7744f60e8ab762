"""Every exchange is reported once per gateway to the node's exchange observers (proxy/watching.py).

Real SOAP and REST calls through the in-process federation (tests/inprocess.py): gw-a is the
client's gateway, gw-b hosts the population register (SOAP), gw-c the benefits API (REST). A
list observer on each gateway collects what the proxy reports: one record per exchange and
side, with its steps, ids, sizes, status and outcome, faults on either side, cache answers
and overload refusals included.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from gateway import faults
from gateway.cache.policy import CacheMode
from gateway.ids import ClientId, ServiceId
from gateway.monitoring.exchange import ExchangeRecord, Role, Step
from gateway.outbound import OutboundRequest, OutboundResponse
from tests.conftest import (
    BENEFITS_API,
    CONSUMER,
    GET_PERSON,
    KNOWN_PERSON,
    get_person_body,
    rest_headers,
    soap_request,
)
from tests.inprocess import Built, Gateway, InProcessFederation, inprocess_federation
from tests.test_admission import HeldRequest
from tests.test_cache_inprocess import person_policy, refused, set_policy

SOAP_HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}


class Recorded:
    """An observer that keeps what it is told."""

    def __init__(self) -> None:
        self.records: list[ExchangeRecord] = []

    def exchange_done(self, record: ExchangeRecord) -> None:
        self.records.append(record)


def observe(local: InProcessFederation) -> dict[str, Recorded]:
    seen = {}
    for name, gateway in local.gateways.items():
        seen[name] = Recorded()
        gateway.runtime.exchange_observers.append(seen[name])
    return seen


async def settled(seen: dict[str, Recorded], expected: dict[str, int]) -> dict[str, list[ExchangeRecord]]:
    """The records once each gateway has reported `expected` exchanges (the consumer's record
    follows its answer's write, so the client may read the answer first)."""
    for _ in range(200):
        if all(len(seen[name].records) >= count for name, count in expected.items()):
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.02)  # nothing more arrives
    got = {name: list(recorded.records) for name, recorded in seen.items()}
    assert {name: len(records) for name, records in got.items()} == {
        name: expected.get(name, 0) for name in seen
    }
    return got


def server_text(gateway: Gateway) -> str:
    return gateway.runtime.gateway_name


async def test_a_soap_call_is_one_record_on_each_side(local: InProcessFederation) -> None:
    seen = observe(local)
    message_id = str(uuid.uuid4())
    request = soap_request(GET_PERSON, get_person_body(KNOWN_PERSON), message_id=message_id)

    answer = await local["gw-a"].post("/", request, SOAP_HEADERS)

    assert answer.status_code == 200
    got = await settled(seen, {"gw-a": 1, "gw-b": 1})
    client, producer = got["gw-a"][0], got["gw-b"][0]
    assert client.role is Role.CLIENT and producer.role is Role.PRODUCER
    for record in (client, producer):
        assert record.protocol == "soap" and record.succeeded and record.status == 200
        assert record.client == CONSUMER.to_text() and record.service == GET_PERSON.to_text()
        assert record.message_id == message_id
        assert record.fault_code is None and record.served_from_cache is None
        assert record.request_size == len(request)
        assert record.response_size > 0
        assert record.request_attachments == record.response_attachments == 0
        assert 0 < sum(record.steps.values()) <= record.duration < 5
    assert client.response_size == len(answer.content) == producer.response_size
    assert client.exchange_id != producer.exchange_id  # each gateway's own
    assert {Step.PARSE, Step.SIGN, Step.PEER, Step.VERIFY, Step.LOG} <= set(client.steps)
    assert Step.BACKEND not in client.steps
    assert {Step.PARSE, Step.VERIFY, Step.BACKEND, Step.SIGN, Step.LOG} <= set(producer.steps)
    assert Step.PEER not in producer.steps
    assert client.steps[Step.PEER] >= producer.duration * 0.5  # the hop holds the provider's work
    assert client.peer == f"{server_text(local['gw-b'])}@{local['gw-b'].address}"
    assert producer.peer == server_text(local["gw-a"])
    assert client.request_in <= producer.request_in <= producer.response_out <= client.response_out + 0.01


async def test_a_rest_call_names_method_path_and_the_providers_template(local: InProcessFederation) -> None:
    seen = observe(local)
    path = f"/r1/{BENEFITS_API.to_text()}/benefits/{KNOWN_PERSON}"

    answer = await local["gw-a"].request("GET", path, headers=rest_headers())

    assert answer.status_code == 200
    got = await settled(seen, {"gw-a": 1, "gw-c": 1})
    client, producer = got["gw-a"][0], got["gw-c"][0]
    for record in (client, producer):
        assert record.protocol == "rest" and record.rest_method == "GET" and record.succeeded
        assert record.service == BENEFITS_API.to_text() and record.status == 200
        assert record.request_size == 0 and record.response_size == len(answer.content)
    assert client.rest_path == f"/benefits/{KNOWN_PERSON}"  # the consumer has no service description
    registered = local["gw-c"].runtime.snapshot.service(BENEFITS_API)
    assert registered is not None
    templates = {endpoint.path_pattern for endpoint in registered.endpoints}
    assert producer.rest_path in templates and producer.rest_path.startswith("/benefits/")
    assert client.message_id == producer.message_id == answer.headers["X-Road-Id"]


async def test_a_fault_of_the_clients_gateway_is_its_record_alone(local: InProcessFederation) -> None:
    seen = observe(local)
    stranger = ClientId("DEV", "GOV", "1001", "not-registered")
    request = soap_request(GET_PERSON, get_person_body(KNOWN_PERSON), client=stranger)

    answer = await local["gw-a"].post("/", request, SOAP_HEADERS)
    garbage = await local["gw-a"].post("/", b"<not-xml", SOAP_HEADERS)

    assert answer.status_code != 200 and garbage.status_code != 200
    got = await settled(seen, {"gw-a": 2})
    unknown, unreadable = got["gw-a"]
    assert unknown.fault_code == faults.UNKNOWN_MEMBER and not unknown.succeeded
    assert unknown.client == stranger.to_text() and "not registered" in (unknown.fault_string or "")
    assert unknown.status == answer.status_code and unknown.peer is None
    assert Step.PEER not in unknown.steps and Step.SIGN not in unknown.steps
    assert unreadable.fault_code == faults.INVALID_SOAP and unreadable.client is None
    assert unreadable.message_id is None and unreadable.exchange_id  # an id all the same


async def test_a_fault_of_the_providers_gateway_is_on_both_records(local: InProcessFederation) -> None:
    seen = observe(local)
    missing = ServiceId("DEV", "GOV", "1002", "population", "nosuch", "v1")
    answer = await local["gw-a"].post("/", soap_request(missing, "<nosuch/>"), SOAP_HEADERS)

    assert answer.status_code != 200
    got = await settled(seen, {"gw-a": 1, "gw-b": 1})
    for record in (got["gw-a"][0], got["gw-b"][0]):
        assert record.fault_code == faults.UNKNOWN_SERVICE and not record.succeeded
        assert record.service == missing.to_text()
    assert Step.BACKEND not in got["gw-b"][0].steps


async def test_a_failing_service_is_a_fault_on_both_sides(local: InProcessFederation) -> None:
    seen = observe(local)

    async def service_500(request: OutboundRequest) -> OutboundResponse:
        return OutboundResponse(500, (("Content-Type", "text/plain"),), b"Internal Server Error")

    local["gw-b"].backends.handler = service_500
    await local["gw-a"].post("/", soap_request(GET_PERSON, get_person_body(KNOWN_PERSON)), SOAP_HEADERS)

    got = await settled(seen, {"gw-a": 1, "gw-b": 1})
    for record in (got["gw-a"][0], got["gw-b"][0]):
        assert record.fault_code == faults.SERVICE_FAILED_HTTP_ERROR and not record.succeeded
    assert Step.BACKEND in got["gw-b"][0].steps


async def test_cache_answers_are_marked_and_succeed(local: InProcessFederation) -> None:
    gw_a = local["gw-a"]
    seen = observe(local)
    set_policy(gw_a, person_policy(mode=CacheMode.REFRESH, ttl_seconds=600.0))
    await gw_a.post("/", soap_request(GET_PERSON, get_person_body(KNOWN_PERSON)), SOAP_HEADERS)
    await settled(seen, {"gw-a": 1, "gw-b": 1})  # kept

    hit = await gw_a.post("/", soap_request(GET_PERSON, get_person_body(KNOWN_PERSON)), SOAP_HEADERS)
    assert hit.headers["XGate-Cache"].startswith("hit")
    assert gw_a.runtime.cache is not None
    await gw_a.runtime.cache.drain()  # the background revalidation is not a client's exchange...
    got = await settled(seen, {"gw-a": 2, "gw-b": 2})  # ...though the provider served it
    record = got["gw-a"][1]
    assert record.served_from_cache == "hit" and record.succeeded and record.status == 200
    assert Step.CACHE in record.steps and Step.SIGN in record.steps

    set_policy(gw_a, person_policy(mode=CacheMode.FALLBACK))
    gw_a.peers.handler = refused
    stale = await gw_a.post("/", soap_request(GET_PERSON, get_person_body(KNOWN_PERSON)), SOAP_HEADERS)
    assert stale.headers["XGate-Cache"].startswith("stale")
    got = await settled(seen, {"gw-a": 3, "gw-b": 2})
    record = got["gw-a"][2]
    assert record.served_from_cache == "stale" and record.succeeded and record.fault_code is None


async def test_an_overload_refusal_and_list_clients(tmp_path: Path, template: Built) -> None:
    limits = "max_exchanges = 1\nadmission_wait_seconds = 0.2"
    async with inprocess_federation(tmp_path / "federation", template=template, limits=limits) as running:
        seen = observe(running)
        gw = running["gw-a"]
        request = soap_request(GET_PERSON, get_person_body(KNOWN_PERSON))
        held = await HeldRequest.open(gw, request, len(request) // 2)
        for _ in range(100):
            if not gw.runtime.admission.idle:
                break
            await asyncio.sleep(0.01)

        refusal = await gw.request(
            "GET", f"/r1/{BENEFITS_API.to_text()}/applications", headers=rest_headers()
        )
        assert refusal.status_code == 503
        got = await settled(seen, {"gw-a": 1})
        record = got["gw-a"][0]
        assert record.fault_code == faults.CLIENT_PROXY_OVERLOADED and record.status == 503
        assert record.protocol == "rest" and record.client is None and not record.succeeded

        status, _ = await held.finish()
        assert status == 200
        listing = await gw.request("GET", "/listClients")
        assert listing.status_code == 200
        got = await settled(seen, {"gw-a": 2, "gw-b": 1})  # the held exchange, not the listing
        assert got["gw-a"][1].succeeded and got["gw-a"][1].request_size == len(request)


@pytest.mark.parametrize("failing_first", [True, False])
async def test_an_observer_that_fails_does_not_fail_the_exchange_nor_the_others(
    local: InProcessFederation, failing_first: bool
) -> None:
    class Failing:
        def exchange_done(self, record: ExchangeRecord) -> None:
            raise RuntimeError("observer bug")

    kept = Recorded()
    observers = [Failing(), kept] if failing_first else [kept, Failing()]
    local["gw-a"].runtime.exchange_observers.extend(observers)

    answer = await local["gw-a"].post(
        "/", soap_request(GET_PERSON, get_person_body(KNOWN_PERSON)), SOAP_HEADERS
    )

    assert answer.status_code == 200
    for _ in range(100):
        if kept.records:
            break
        await asyncio.sleep(0.01)
    assert len(kept.records) == 1 and kept.records[0].succeeded


async def test_a_client_gone_before_its_answer_is_still_one_record_and_no_error(
    local: InProcessFederation, caplog: pytest.LogCaptureFixture
) -> None:
    seen = observe(local)
    answering = local["gw-b"].backends.handler

    async def slow(request: OutboundRequest) -> OutboundResponse:
        await asyncio.sleep(0.3)
        return await answering(request)

    local["gw-b"].backends.handler = slow
    request = soap_request(GET_PERSON, get_person_body(KNOWN_PERSON))
    held = await HeldRequest.open(local["gw-a"], request, len(request))  # all of it sent
    await asyncio.sleep(0.05)
    held.abort()  # gone while the provider works

    got = await settled(seen, {"gw-a": 1, "gw-b": 1})
    for record in (got["gw-a"][0], got["gw-b"][0]):
        assert record.status == 0 and not record.succeeded and record.fault_code is None
        assert record.fault_string == "the client went away before its answer"
    assert not [r for r in caplog.records if r.levelname == "ERROR" and r.name.startswith("aiohttp")]
