"""The interface cache on the request path, in one process (tests/inprocess.py).

gw-a caches gw-b's getPerson (SOAP) and gw-c's benefits API (REST). Each test first gets a
good answer with the provider up, then breaks the provider in one way (its gateway refuses
connections, answers garbage, never answers; its service answers 500 or garbage) and checks
what the client gets: the stored answer, marked, within max age; the failure's fault beyond.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable

import pytest
import requests
import sqlalchemy as sa
from lxml import etree

from gateway import faults
from gateway.cache import policies, tables
from gateway.cache.copies import stored_message
from gateway.cache.marking import CACHE_NS, CacheMark, CacheStatus
from gateway.cache.policy import BreakerSettings, CacheMode, CachePolicy, CacheSide, RetrySettings
from gateway.cache.store import CacheStore
from gateway.crypto.rootsig import verify_message_signature
from gateway.messagelog.store import search
from gateway.outbound import OutboundError, OutboundRequest, OutboundResponse, OutboundTimeout
from gateway.serverconf.access import AccessRight
from gateway.xmlsafe import parse_xml
from tests.conftest import (
    BENEFITS,
    BENEFITS_API,
    CONSUMER,
    GET_PERSON,
    KNOWN_PERSON,
    POPULATION,
    POPULATION_NS,
    SOAP_ENV_NS,
    assert_soap_fault,
    get_person_request,
    rest_headers,
    soap_body,
)
from tests.inprocess import Gateway, InProcessFederation

SOAP_HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
Handler = Callable[[OutboundRequest], Awaitable[OutboundResponse]]


def set_policy(gateway: Gateway, policy: CachePolicy) -> None:
    with gateway.serverconf() as repository:
        known = {GET_PERSON, BENEFITS_API}
        if repository.get_cache_policy(policy.name) is None:
            policies.add_policy(repository, policy, known)
        else:
            policies.update_policy(repository, policy, known)


def person_policy(**changes: object) -> CachePolicy:
    values: dict[str, object] = {"name": "population", "service": GET_PERSON, "mode": CacheMode.FALLBACK}
    values.update(changes)
    return CachePolicy(**values)  # type: ignore[arg-type]


def benefits_policy(**changes: object) -> CachePolicy:
    values: dict[str, object] = {"name": "benefits", "service": BENEFITS_API, "mode": CacheMode.FALLBACK}
    values.update(changes)
    return CachePolicy(**values)  # type: ignore[arg-type]


async def get_person(gateway: Gateway) -> requests.Response:
    return await gateway.post("/", get_person_request(KNOWN_PERSON), SOAP_HEADERS)


async def get_benefits(gateway: Gateway) -> requests.Response:
    path = f"/r1/{BENEFITS_API.to_text()}/benefits/{KNOWN_PERSON}"
    return await gateway.request("GET", path, headers=rest_headers())


def store_of(gateway: Gateway) -> CacheStore:
    assert gateway.runtime.cache is not None
    return gateway.runtime.cache.store


def personal_code(response: requests.Response) -> str | None:
    person = soap_body(response).find(f"{{{POPULATION_NS}}}person")
    return None if person is None else person.findtext(f"{{{POPULATION_NS}}}personalCode")


def cache_mark(response: requests.Response) -> CacheMark:
    mark = CacheMark.parse(response.headers["XGate-Cache"])
    assert response.headers["Age"] == str(mark.age_seconds)
    return mark


# --- ways for a provider to fail ------------------------------------------------------------------


async def refused(request: OutboundRequest) -> OutboundResponse:
    raise OutboundError(f"ClientConnectorError: connection refused by {request.url}")


async def never_answers(request: OutboundRequest) -> OutboundResponse:
    raise OutboundTimeout(f"{request.url} did not answer in time")


async def garbage_gateway(request: OutboundRequest) -> OutboundResponse:
    return OutboundResponse(200, (("Content-Type", "text/html"),), b"<html>proxy error</html>")


async def service_500(request: OutboundRequest) -> OutboundResponse:
    return OutboundResponse(500, (("Content-Type", "text/plain"),), b"Internal Server Error")


async def service_garbage(request: OutboundRequest) -> OutboundResponse:
    # XML that is not, for the SOAP service; JSON that is not, for the REST one.
    if "benefits" in request.url:
        return OutboundResponse(200, (("Content-Type", "application/json"),), b"{not json")
    return OutboundResponse(200, (("Content-Type", "text/xml"),), b"<not-soap")


def break_provider(local: InProcessFederation, how: Handler, *, at_service: bool) -> None:
    if at_service:
        local["gw-b"].backends.handler = how
        local["gw-c"].backends.handler = how
    else:
        local["gw-a"].peers.handler = how


# --- fallback -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("how", "at_service", "soap_fault_code", "rest_fault_code"),
    [
        (refused, False, faults.NETWORK_ERROR, faults.NETWORK_ERROR),
        (never_answers, False, faults.NETWORK_ERROR, faults.NETWORK_ERROR),
        (
            garbage_gateway,
            False,
            faults.CLIENT_PROXY_INVALID_SIGNATURE,
            faults.CLIENT_PROXY_INVALID_SIGNATURE,
        ),
        (service_500, True, faults.SERVICE_FAILED_HTTP_ERROR, None),
        (service_garbage, True, faults.SERVICE_FAILED_INVALID_SOAP, None),
    ],
)
async def test_a_failing_provider_is_answered_from_the_cache_within_max_age(
    local: InProcessFederation,
    how: Handler,
    at_service: bool,
    soap_fault_code: str,
    rest_fault_code: str | None,
) -> None:
    gw_a = local["gw-a"]
    set_policy(gw_a, person_policy(max_age_seconds=3600.0))
    set_policy(gw_a, benefits_policy(max_age_seconds=3600.0))
    fresh = await get_person(gw_a)
    fresh_rest = await get_benefits(gw_a)
    assert personal_code(fresh) == KNOWN_PERSON and "XGate-Cache" not in fresh.headers
    assert fresh_rest.status_code == 200 and "XGate-Cache" not in fresh_rest.headers
    assert store_of(gw_a).count_entries() == 2

    break_provider(local, how, at_service=at_service)
    cached = await get_person(gw_a)
    cached_rest = await get_benefits(gw_a)

    assert personal_code(cached) == KNOWN_PERSON
    mark = cache_mark(cached)
    assert mark.status is CacheStatus.STALE and mark.age_seconds >= 0
    block = parse_xml(cached.content).find(f"{{{SOAP_ENV_NS}}}Header/{{{CACHE_NS}}}cache")
    assert (
        block is not None and block.get("status") == "stale" and block.get("originalId") == mark.original_id
    )
    assert cached_rest.status_code == 200 and cached_rest.json()["personalCode"] == KNOWN_PERSON
    assert cache_mark(cached_rest).status is CacheStatus.STALE

    # Beyond max age the client gets the fault the failure produced.
    assert gw_a.runtime.cache is not None
    gw_a.runtime.cache.clock = lambda: dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    late = await get_person(gw_a)
    assert_soap_fault(late, soap_fault_code)
    if rest_fault_code is not None:
        late_rest = await get_benefits(gw_a)
        assert late_rest.headers.get("X-Road-Error") == rest_fault_code


async def test_a_rest_service_answering_500_is_answered_from_the_cache(local: InProcessFederation) -> None:
    gw_a = local["gw-a"]
    set_policy(gw_a, benefits_policy())
    assert (await get_benefits(gw_a)).status_code == 200
    local["gw-c"].backends.handler = service_500
    cached = await get_benefits(gw_a)
    assert cached.status_code == 200 and cache_mark(cached).status is CacheStatus.STALE
    # Without a policy the client sees the failure itself.
    with gw_a.serverconf() as repository:
        policies.remove_policy(repository, "benefits")
    uncached = await get_benefits(gw_a)
    assert uncached.status_code >= 500 and "XGate-Cache" not in uncached.headers


async def test_nothing_stored_is_the_failures_fault_and_other_faults_are_not_hidden(
    local: InProcessFederation,
) -> None:
    gw_a = local["gw-a"]
    set_policy(gw_a, person_policy())
    local["gw-a"].peers.handler = refused
    assert_soap_fault(await get_person(gw_a), faults.NETWORK_ERROR)
    assert store_of(gw_a).stats()[GET_PERSON.to_text()]["miss"] == 1


async def test_a_cached_soap_answer_still_verifies_and_is_logged_as_served(
    local: InProcessFederation,
) -> None:
    gw_a = local["gw-a"]
    set_policy(gw_a, person_policy())
    fresh = await get_person(gw_a)
    local["gw-a"].peers.handler = refused
    cached = await get_person(gw_a)
    mark = cache_mark(cached)

    store = store_of(gw_a)
    (info,) = store.list_entries()
    entry = store.get(info.key)
    assert entry is not None and info.client == CONSUMER.to_text()
    message = stored_message(entry, gw_a.runtime.config.max_message_bytes)
    conf = gw_a.runtime.globalconf_source.current
    assert conf is not None
    verified = verify_message_signature(message.signature.leaf, message.signature, conf.trusted_ca_certs())
    assert verified.signer_cert is not None
    # The stored answer is the provider's, byte for byte; the client's copy only adds the mark.
    assert message.payload.body == fresh.content  # type: ignore[union-attr]
    unmarked = parse_xml(cached.content)
    header = unmarked.find(f"{{{SOAP_ENV_NS}}}Header")
    assert header is not None
    header.remove(header.find(f"{{{CACHE_NS}}}cache"))
    assert etree.tostring(unmarked, method="c14n") == etree.tostring(parse_xml(fresh.content), method="c14n")

    messagelog = gw_a.runtime.messagelog
    assert messagelog is not None
    (served,) = search(messagelog.engine, outcome="cache.stale")
    assert served.record.fault_detail == info.log_record and info.log_record is not None
    node, seq = info.log_record.split(":")
    original = [r for r in search(messagelog.engine, message_id=mark.original_id) if r.seq == int(seq)]
    assert original and original[0].record.outcome == "ok" and original[0].node == node
    assert served.record.message_sha256 == original[0].record.message_sha256


# --- refresh ------------------------------------------------------------------------------------


async def test_refresh_serves_a_young_copy_and_revalidates_in_the_background(
    local: InProcessFederation,
) -> None:
    gw_a = local["gw-a"]
    set_policy(gw_a, person_policy(mode=CacheMode.REFRESH, ttl_seconds=600.0))
    await get_person(gw_a)
    calls = len(local["gw-b"].backends.requests)

    hit = await get_person(gw_a)

    assert personal_code(hit) == KNOWN_PERSON and cache_mark(hit).status is CacheStatus.HIT
    cache = gw_a.runtime.cache
    assert cache is not None
    await cache.drain()
    assert len(local["gw-b"].backends.requests) == calls + 1, "revalidated once, in the background"
    assert store_of(gw_a).stats()[GET_PERSON.to_text()]["hit"] == 1

    # Cache-Control: no-cache asks the provider (how the replication scheduler fetches).
    asked = await gw_a.post(
        "/", get_person_request(KNOWN_PERSON), {**SOAP_HEADERS, "Cache-Control": "no-cache"}
    )
    assert personal_code(asked) == KNOWN_PERSON and "XGate-Cache" not in asked.headers
    assert len(local["gw-b"].backends.requests) == calls + 2


# --- who may be served ----------------------------------------------------------------------------


async def test_revoking_access_purges_the_clients_entries(local: InProcessFederation) -> None:
    gw_a = local["gw-a"]
    set_policy(gw_a, person_policy())
    await get_person(gw_a)
    assert store_of(gw_a).count_entries() == 1
    await provider_revokes_and_nothing_is_served(local)


async def provider_revokes_and_nothing_is_served(local: InProcessFederation) -> None:
    """gw-b revokes the client's access: it gets AccessDenied, and then no cached answer."""
    gw_a = local["gw-a"]
    with local["gw-b"].serverconf() as repository:
        repository.revoke(POPULATION, AccessRight(CONSUMER, GET_PERSON.service_code))
    assert_soap_fault(await get_person(gw_a), faults.ACCESS_DENIED)
    assert store_of(gw_a).count_entries() == 0
    gw_a.peers.handler = refused
    assert_soap_fault(await get_person(gw_a), faults.NETWORK_ERROR)


async def test_a_rest_providers_refusal_purges_the_clients_entries(local: InProcessFederation) -> None:
    gw_a = local["gw-a"]
    set_policy(gw_a, benefits_policy())
    assert (await get_benefits(gw_a)).status_code == 200
    assert store_of(gw_a).count_entries() == 1
    with local["gw-c"].serverconf() as repository:
        repository.revoke(BENEFITS, AccessRight(CONSUMER, BENEFITS_API.service_code))

    denied = await get_benefits(gw_a)
    assert denied.headers.get("X-Road-Error") == faults.ACCESS_DENIED and "XGate-Cache" not in denied.headers
    assert store_of(gw_a).count_entries() == 0
    local["gw-a"].peers.handler = refused
    assert (await get_benefits(gw_a)).headers.get("X-Road-Error") == faults.NETWORK_ERROR


async def test_a_client_the_provider_never_answered_gets_nothing_even_from_shared_data(
    local: InProcessFederation,
) -> None:
    gw_a = local["gw-a"]
    set_policy(gw_a, person_policy(shared=True))
    await get_person(gw_a)
    store = store_of(gw_a)
    (info,) = store.list_entries()
    assert info.client is None, "shared data is kept without its client"
    # As for another client, never answered: the shared entry is there, its confirmation not.
    with store.engine.begin() as connection:
        connection.execute(sa.delete(tables.cache_clients))
    local["gw-a"].peers.handler = refused
    assert_soap_fault(await get_person(gw_a), faults.NETWORK_ERROR)
    assert store.count_entries() == 1


async def test_a_data_subjects_entries_are_purged_by_their_identifier(local: InProcessFederation) -> None:
    gw_a = local["gw-a"]
    set_policy(gw_a, person_policy())
    set_policy(gw_a, benefits_policy())
    await get_person(gw_a)
    await get_benefits(gw_a)
    store = store_of(gw_a)
    assert store.purge(subject="000000000000") == 0
    assert store.purge(subject=KNOWN_PERSON) == 2  # the SOAP body's leaf and the REST path segment
    assert store.count_entries() == 0


async def test_entries_are_per_client_unless_shared(local: InProcessFederation) -> None:
    gw_a = local["gw-a"]
    set_policy(gw_a, person_policy())
    await get_person(gw_a)
    (own,) = store_of(gw_a).list_entries()
    assert own.client == CONSUMER.to_text()
    set_policy(gw_a, person_policy(shared=True))
    await get_person(gw_a)
    keys = {info.key: info.client for info in store_of(gw_a).list_entries()}
    assert len(keys) == 2 and None in keys.values()


async def test_a_client_no_longer_registered_loses_its_entries(local: InProcessFederation) -> None:
    gw_a = local["gw-a"]
    set_policy(gw_a, person_policy())
    await get_person(gw_a)
    cache = gw_a.runtime.cache
    assert cache is not None
    with gw_a.serverconf() as repository:
        repository.remove_subsystem(CONSUMER)
    await cache.maintain(gw_a.runtime.snapshot)
    assert store_of(gw_a).count_entries() == 0


# --- the breaker ----------------------------------------------------------------------------------


async def test_the_breaker_opens_sends_nothing_while_open_and_closes_after_probes(
    local: InProcessFederation,
) -> None:
    gw_a = local["gw-a"]
    cache = gw_a.runtime.cache
    assert cache is not None
    now = [0.0]
    cache.monotonic = lambda: now[0]
    settings = BreakerSettings(consecutive_failures=2, open_seconds=30.0, half_open_successes=2)
    set_policy(gw_a, person_policy(breaker=settings))
    await get_person(gw_a)
    honest = gw_a.peers.handler
    gw_a.peers.handler = refused
    for _ in range(2):
        assert cache_mark(await get_person(gw_a)).status is CacheStatus.STALE
    sent = len(gw_a.peers.requests)

    while_open = await get_person(gw_a)

    assert cache_mark(while_open).status is CacheStatus.STALE
    assert len(gw_a.peers.requests) == sent, "nothing goes out while the circuit is open"
    assert cache.breaker_states()[GET_PERSON.to_text()].state.value == "open"
    circuits = gw_a.runtime.health()["cache"]["circuits"]  # type: ignore[index]
    assert circuits[GET_PERSON.to_text()] == {"state": "open", "last_fault": faults.NETWORK_ERROR}
    # Open and nothing stored for this request: the fault that opened the circuit, at once.
    store_of(gw_a).purge(everything=True)
    assert_soap_fault(await get_person(gw_a), faults.NETWORK_ERROR)
    assert len(gw_a.peers.requests) == sent

    gw_a.peers.handler = honest
    now[0] = 31.0
    for _ in range(2):
        probe = await get_person(gw_a)
        assert personal_code(probe) == KNOWN_PERSON and "XGate-Cache" not in probe.headers
    assert cache.breaker_states()[GET_PERSON.to_text()].state.value == "closed"


async def test_idempotent_calls_are_retried(local: InProcessFederation) -> None:
    gw_a = local["gw-a"]
    set_policy(
        gw_a,
        person_policy(idempotent=True, retry=RetrySettings(attempts=2, backoff_seconds=0.01), breaker=None),
    )
    honest = gw_a.peers.handler
    failures = [2]

    async def flaky(request: OutboundRequest) -> OutboundResponse:
        if failures[0]:
            failures[0] -= 1
            raise OutboundError("ClientConnectorError: connection reset")
        return await honest(request)

    gw_a.peers.handler = flaky
    response = await get_person(gw_a)
    assert personal_code(response) == KNOWN_PERSON and failures == [0]
    # Not idempotent: one try.
    set_policy(gw_a, person_policy(idempotent=False, breaker=None))
    failures[0] = 1
    store_of(gw_a).purge(everything=True)
    assert_soap_fault(await get_person(gw_a), faults.NETWORK_ERROR)
    assert failures == [0]


async def test_requests_of_other_services_do_not_touch_the_cache(local: InProcessFederation) -> None:
    gw_a = local["gw-a"]
    set_policy(gw_a, benefits_policy())
    await get_person(gw_a)
    assert store_of(gw_a).count_entries() == 0


# --- the provider side ----------------------------------------------------------------------------


async def test_the_provider_answers_from_its_backends_last_good_answer_signed_afresh(
    local: InProcessFederation,
) -> None:
    gw_a, gw_b, gw_c = local["gw-a"], local["gw-b"], local["gw-c"]
    set_policy(gw_b, person_policy(side=CacheSide.PROVIDER))
    set_policy(gw_c, benefits_policy(side=CacheSide.PROVIDER))
    fresh = await get_person(gw_a)
    assert (await get_benefits(gw_a)).status_code == 200
    assert store_of(gw_b).count_entries() == 1 and store_of(gw_c).count_entries() == 1
    assert store_of(gw_a).count_entries() == 0

    gw_b.backends.handler = refused
    gw_c.backends.handler = service_500
    cached = await get_person(gw_a)
    cached_rest = await get_benefits(gw_a)

    # gw-a verified gw-b's fresh signature and the echo of this request, as for any answer.
    assert personal_code(cached) == KNOWN_PERSON
    assert cache_mark(cached).status is CacheStatus.STALE
    block = parse_xml(cached.content).find(f"{{{SOAP_ENV_NS}}}Header/{{{CACHE_NS}}}cache")
    assert block is not None and block.get("originalId") == cache_mark(cached).original_id
    assert cached.content != fresh.content
    assert cached_rest.status_code == 200 and cache_mark(cached_rest).status is CacheStatus.STALE
    assert store_of(gw_a).count_entries() == 0, "a provider's cached answer is not cached again"
    messagelog = gw_b.runtime.messagelog
    assert messagelog is not None
    (served,) = search(messagelog.engine, outcome="cache.stale")
    assert served.record.side.value == "provider"

    # Access is checked before the cache is asked.
    with gw_b.serverconf() as repository:
        repository.revoke(POPULATION, AccessRight(CONSUMER, GET_PERSON.service_code))
    assert_soap_fault(await get_person(gw_a), faults.ACCESS_DENIED)


# --- copies kept decoded in memory (gateway.cache.copies) -----------------------------------------


async def served_from_memory(local: InProcessFederation) -> CacheMark:
    """gw-a keeps an answer, its provider goes down, and one stale answer fills the memory."""
    gw_a = local["gw-a"]
    set_policy(gw_a, person_policy())
    await get_person(gw_a)
    local["gw-a"].peers.handler = refused
    mark = cache_mark(await get_person(gw_a))
    (info,) = store_of(gw_a).list_entries()
    cache = gw_a.runtime.cache
    assert cache is not None and cache.copies.current(info.key, CONSUMER.to_text()) is not None
    return mark


def count_reads(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys the store is asked for from now on."""
    store = store_of(gateway)
    reads: list[str] = []
    lookup = store.lookup

    def counted(key: str, *args: object, **kwargs: object) -> object:
        reads.append(key)
        return lookup(key, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "lookup", counted)
    return reads


async def test_a_copy_in_memory_is_served_without_reading_its_row_again_for_a_while(
    local: InProcessFederation, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw_a = local["gw-a"]
    first = await served_from_memory(local)
    reads = count_reads(gw_a, monkeypatch)
    again = cache_mark(await get_person(gw_a))
    assert again.original_id == first.original_id and reads == []
    # Past the recheck bound the row is read again (its body is not: the digest still matches).
    cache = gw_a.runtime.cache
    assert cache is not None
    later = cache.monotonic() + 60
    cache.monotonic = lambda: later
    assert cache_mark(await get_person(gw_a)).original_id == first.original_id
    assert len(reads) == 1
    messagelog = gw_a.runtime.messagelog
    assert messagelog is not None
    served = search(messagelog.engine, outcome="cache.stale")
    assert len(served) == 3, "every answer served from memory is logged as served"


async def test_a_purge_drops_the_copy_in_memory(local: InProcessFederation) -> None:
    gw_a = local["gw-a"]
    await served_from_memory(local)
    assert store_of(gw_a).purge(everything=True) == 1
    assert_soap_fault(await get_person(gw_a), faults.NETWORK_ERROR)


async def test_an_eviction_drops_the_copy_in_memory(local: InProcessFederation) -> None:
    gw_a = local["gw-a"]
    await served_from_memory(local)
    assert store_of(gw_a).evict([]) == 1  # under no policy: nothing may serve it any more
    assert_soap_fault(await get_person(gw_a), faults.NETWORK_ERROR)


async def test_a_newer_answer_replaces_the_copy_in_memory(local: InProcessFederation) -> None:
    gw_a = local["gw-a"]
    working = gw_a.peers.handler
    first = await served_from_memory(local)
    gw_a.peers.handler = working  # the provider answers again; its answer is kept
    fresh = await get_person(gw_a)
    assert "XGate-Cache" not in fresh.headers
    local["gw-a"].peers.handler = refused
    second = cache_mark(await get_person(gw_a))
    (info,) = store_of(gw_a).list_entries()
    assert second.original_id == info.original_message_id != first.original_id


async def test_a_copy_in_memory_is_not_served_beyond_max_age(local: InProcessFederation) -> None:
    gw_a = local["gw-a"]
    await served_from_memory(local)
    cache = gw_a.runtime.cache
    assert cache is not None
    cache.clock = lambda: dt.datetime.now(dt.UTC) + dt.timedelta(days=2)  # past the default max age
    assert_soap_fault(await get_person(gw_a), faults.NETWORK_ERROR)


async def test_revocation_still_refuses_a_copy_in_memory(local: InProcessFederation) -> None:
    gw_a = local["gw-a"]
    working = gw_a.peers.handler
    await served_from_memory(local)
    # The provider refuses the client: its entries and their copies go.
    gw_a.peers.handler = working
    await provider_revokes_and_nothing_is_served(local)


async def test_another_nodes_revocation_reaches_the_memory_within_the_recheck_bound(
    local: InProcessFederation,
) -> None:
    gw_a = local["gw-a"]
    await served_from_memory(local)
    store = store_of(gw_a)
    # Another node sharing the database forgets the client (its provider refused it there).
    with store.engine.begin() as connection:
        connection.execute(sa.delete(tables.cache_clients))
    cache = gw_a.runtime.cache
    assert cache is not None
    later = cache.monotonic() + 60
    cache.monotonic = lambda: later
    assert_soap_fault(await get_person(gw_a), faults.NETWORK_ERROR)


async def test_a_client_no_longer_registered_is_refused_whatever_the_memory_holds(
    local: InProcessFederation,
) -> None:
    gw_a = local["gw-a"]
    await served_from_memory(local)
    with gw_a.serverconf() as repository:
        repository.remove_subsystem(CONSUMER)
    assert_soap_fault(await get_person(gw_a), faults.UNKNOWN_MEMBER)
