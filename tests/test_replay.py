"""Replay protection at the provider (issue 9, hole 7): one signed request is served once.

The key (gateway.proxy.replay), its store on SQLite and PostgreSQL (XGATE_TEST_PG_DSN, which CI
sets), the batching guard, and the provider path in one process: a request captured between
gw-a and gw-b, sent again with gw-a's TLS certificate, is refused with DuplicateMessage, by gw-b
and by a second gw-b node sharing its PostgreSQL. Over real sockets: test_e2e_peer_trust.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway import faults
from gateway.config import load_config
from gateway.crypto.rootsig import VerifiedRoot
from gateway.faults import XRoadFault
from gateway.outbound import InProcessTransport, OutboundError, OutboundRequest, OutboundResponse
from gateway.protocol.transport import Direction, decode_transport
from gateway.proxy import provider
from gateway.proxy.replay import ReplayGuard, expiry, replay_key
from gateway.proxy.runtime import GatewayRuntime
from gateway.serverconf.db import create_engine, migrate
from gateway.serverconf.seen import SeenRequests
from gateway.serverconf.tables import seen_requests
from tests.conftest import KNOWN_PERSON, assert_soap_fault, get_person_request, pg_schema_url, soap_body
from tests.inprocess import Gateway, InProcessFederation

SOAP_HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)


# --- databases -----------------------------------------------------------------------------


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A migrated server configuration in a PostgreSQL schema of its own, dropped afterwards."""
    with pg_schema_url() as url:
        migrate(url)
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'serverconf.db'}"
        migrate(url)
        return url
    pg: str = request.getfixturevalue("pg_url")
    return pg


def key(n: int) -> bytes:
    return n.to_bytes(32, "big")


# --- the store -----------------------------------------------------------------------------


def test_a_key_is_new_once_across_nodes_and_purged_after_expiry(database_url: str) -> None:
    node_1, node_2 = create_engine(database_url), create_engine(database_url)
    try:
        first, second = SeenRequests(node_1), SeenRequests(node_2)
        later = NOW + dt.timedelta(minutes=6)

        assert first.claim([(key(1), later), (key(2), NOW)]) == {key(1), key(2)}
        assert second.claim([(key(1), later), (key(3), later)]) == {key(3)}
        assert first.claim([(key(3), later), (key(4), later), (key(4), later)]) == {key(4)}

        assert second.purge(NOW + dt.timedelta(seconds=1)) == 1  # key 2 only
        with node_1.connect() as connection:
            left = set(connection.scalars(sa.select(seen_requests.c.digest)))
        assert left == {key(1), key(3), key(4)}
        assert first.claim([(key(2), later)]) == {key(2)}  # purged: new again (its request is too old)
    finally:
        node_1.dispose()
        node_2.dispose()


@pytest.mark.postgres
def test_two_nodes_racing_for_one_key_on_postgresql_one_wins(pg_url: str) -> None:
    engines = [create_engine(pg_url) for _ in range(8)]
    results: list[set[bytes]] = []
    start = threading.Barrier(len(engines))

    def race(engine: sa.Engine) -> None:
        start.wait()
        results.append(SeenRequests(engine).claim([(key(7), NOW)]))

    threads = [threading.Thread(target=race, args=(engine,)) for engine in engines]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for engine in engines:
            engine.dispose()

    assert sorted(len(won) for won in results) == [0] * 7 + [1]


# --- the guard -----------------------------------------------------------------------------


class CountingStore:
    def __init__(self) -> None:
        self.claims: list[list[tuple[bytes, dt.datetime]]] = []
        self.seen: set[bytes] = set()
        self.fail = False

    def claim(self, keys: list[tuple[bytes, dt.datetime]]) -> set[bytes]:
        if self.fail:
            raise OSError("database down")
        self.claims.append(keys)
        fresh = {k for k, _ in keys} - self.seen
        self.seen |= fresh
        return fresh

    def purge(self, now: dt.datetime) -> int:
        return 0

    def close(self) -> None:
        pass


async def test_concurrent_requests_share_a_claim_and_a_repeat_within_it_loses() -> None:
    store = CountingStore()
    guard = ReplayGuard(store)
    try:
        outcomes = await asyncio.gather(*(guard.first_time(key(n % 5), NOW) for n in range(20)))
        assert outcomes.count(True) == 5  # one winner per key, however they were batched
        assert [outcomes[n] for n in range(5)] == [True] * 5  # the first of each key
        assert len(store.claims) < 20, "concurrent requests share transactions"

        with pytest.raises(XRoadFault) as repeat:
            await guard.admit(key(1), NOW)
        assert repeat.value.code == faults.SERVER_PROXY_DUPLICATE_MESSAGE

        store.fail = True
        with pytest.raises(XRoadFault) as down:
            await guard.admit(key(99), NOW)
        assert down.value.code == faults.SERVER_PROXY_INTERNAL_ERROR, "no check, no service"
    finally:
        guard.close()


def test_the_key_covers_what_the_signature_vouches_for_not_its_bytes() -> None:
    from gateway.crypto.hashtree import ProofStep, Side
    from gateway.crypto.rootsig import MessageSignature
    from gateway.protocol.transport import SoapPayload, TransportMessage

    def message(signed_root: bytes, proof: tuple[ProofStep, ...] = ()) -> TransportMessage:
        return TransportMessage(
            SoapPayload("text/xml", b"<x/>"), MessageSignature(signed_root, proof, key(1))
        )

    verified = VerifiedRoot(key(2), None, NOW)  # type: ignore[arg-type]
    base = replay_key(message(b"<a/>"), verified)

    assert replay_key(message(b"<other bytes, same signed content/>"), verified) == base
    assert (
        replay_key(message(b"<a/>"), dataclasses.replace(verified, signing_time=NOW.replace(microsecond=1)))
        != base
    )
    assert replay_key(message(b"<a/>"), dataclasses.replace(verified, root=key(3))) != base
    assert replay_key(message(b"<a/>", (ProofStep(Side.LEFT, key(4)),)), verified) != base
    assert expiry(verified, 300) >= NOW + dt.timedelta(seconds=300)


# --- the provider path, in one process ----------------------------------------------------------


def capture(gateway: Gateway) -> list[OutboundRequest]:
    """Every transport message `gateway` sends to a peer, as on the wire."""
    return gateway.peers.requests


async def replay(consumer: Gateway, target: GatewayRuntime, request: OutboundRequest) -> OutboundResponse:
    """`request` sent again over a connection with the consumer's TLS certificate."""

    async def body(max_bytes: int) -> bytes:
        return request.body

    answer = await provider.serve(target, consumer.auth_cert, request.headers, body)
    return OutboundResponse(answer.status, answer.headers, answer.body)


def fault_code(answer: OutboundResponse) -> str | None:
    """The fault code inside a provider's (signed) answer, or None for a signed non-fault."""
    from gateway.protocol import soap

    message = decode_transport(
        answer.content_type, answer.body, max_bytes=2**24, direction=Direction.RESPONSE
    )
    try:
        soap.parse_response(message.payload.body, message.payload.content_type)  # type: ignore[union-attr]
    except soap.ServiceFault as fault:
        return fault.code
    return None


async def test_a_captured_request_sent_again_is_refused(local: InProcessFederation) -> None:
    gw_a, gw_b = local["gw-a"], local["gw-b"]
    assert soap_body(await gw_a.post("/", get_person_request(KNOWN_PERSON), SOAP_HEADERS)) is not None
    (captured,) = capture(gw_a)
    served = len(gw_b.backends.requests)

    again = await replay(gw_a, gw_b.runtime, captured)

    assert fault_code(again) == faults.SERVER_PROXY_DUPLICATE_MESSAGE
    assert len(gw_b.backends.requests) == served, "the service is not called again"
    # A new request from the client is signed anew: served.
    assert soap_body(await gw_a.post("/", get_person_request(KNOWN_PERSON), SOAP_HEADERS)) is not None


async def test_a_replay_through_the_consumer_path_reaches_the_client_as_duplicate(
    local: InProcessFederation,
) -> None:
    """A hostile network re-sends gw-a's first request instead of its second: gw-a's client is told."""
    gw_a = local["gw-a"]
    honest = gw_a.peers.handler
    first: list[OutboundRequest] = []

    async def replaying(request: OutboundRequest) -> OutboundResponse:
        if not first:
            first.append(request)
        return await honest(first[0])

    gw_a.peers.handler = replaying
    assert soap_body(await gw_a.post("/", get_person_request(KNOWN_PERSON), SOAP_HEADERS)) is not None

    response = await gw_a.post("/", get_person_request(KNOWN_PERSON), SOAP_HEADERS)

    assert_soap_fault(response, faults.SERVER_PROXY_DUPLICATE_MESSAGE)


async def _no_network(request: OutboundRequest) -> OutboundResponse:
    raise AssertionError(f"the second node asked {request.url}")


@pytest.mark.postgres
async def test_a_second_node_sharing_postgresql_refuses_the_replay_too(
    local: InProcessFederation, pg_url: str
) -> None:
    """gw-b as two nodes whose replay keys live in one PostgreSQL: what one served, the other refuses."""
    gw_a, gw_b = local["gw-a"], local["gw-b"]
    config = next(Path(gw["config"]) for gw in local.description["gateways"] if gw["name"] == "gw-b")
    node_2 = GatewayRuntime.create(load_config(config))
    node_2.messagelog = None  # its own log is not what this test is about
    await node_2.start(
        peers=InProcessTransport(_no_network),
        backends=gw_b.backends,
        services=InProcessTransport(_no_network),
    )
    engines = [create_engine(pg_url), create_engine(pg_url)]
    try:
        for runtime, engine in zip((gw_b.runtime, node_2), engines, strict=True):
            assert runtime.replay_guard is not None
            runtime.replay_guard.close()
            runtime.replay_guard = ReplayGuard(SeenRequests(engine))

        assert soap_body(await gw_a.post("/", get_person_request(KNOWN_PERSON), SOAP_HEADERS)) is not None
        assert soap_body(await gw_a.post("/", get_person_request(KNOWN_PERSON), SOAP_HEADERS)) is not None
        served_by_node_1 = capture(gw_a)
        assert len(served_by_node_1) == 2
        gw_a.peers.requests.clear()

        for captured in served_by_node_1:
            assert fault_code(await replay(gw_a, node_2, captured)) == faults.SERVER_PROXY_DUPLICATE_MESSAGE

        # A request that went to neither node yet: node 2 serves it once, node 1 then refuses it.
        gw_a.peers.handler = _capture_only
        refused = await gw_a.post("/", get_person_request(KNOWN_PERSON), SOAP_HEADERS)
        assert refused.status_code != 200
        (fresh,) = capture(gw_a)
        assert fault_code(await replay(gw_a, node_2, fresh)) is None
        assert fault_code(await replay(gw_a, gw_b.runtime, fresh)) == faults.SERVER_PROXY_DUPLICATE_MESSAGE
    finally:
        await node_2.close()
        for engine in engines:
            engine.dispose()


async def _capture_only(request: OutboundRequest) -> OutboundResponse:
    """A peer that takes the request (the transport records it) and never delivers it."""
    raise OutboundError("captured, not delivered")
