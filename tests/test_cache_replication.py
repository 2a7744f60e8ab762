"""Replication (gateway.cache.replication): a `replicate` policy's declared requests fetched through
the consumer's signed path, kept, served while the provider is down; runs visible; one runner
per plan across nodes sharing the cache's database."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from urllib.parse import unquote

import pytest

from gateway.cache.db import create_engine, migrate
from gateway.cache.marking import CacheMark, CacheStatus, rfc3339
from gateway.cache.policy import (
    LAST_SUCCESS_DEFAULT,
    CacheMode,
    CachePolicy,
    LastSuccessParameter,
    ListParameter,
    ReplicatedCall,
    ReplicatedRequest,
    ReplicationPlan,
)
from gateway.cache.replication import Fetched, Replicator
from gateway.cache.schedule import Schedule
from gateway.cache.tables import RunStatus
from gateway.outbound import OutboundRequest, OutboundResponse
from tests.conftest import BACKENDS, BENEFITS_API, CONSUMER, KNOWN_PERSON, migrated_database, rest_headers
from tests.inprocess import InProcessFederation
from tests.test_cache_inprocess import refused, set_policy, store_of


def benefits_plan(schedule: Schedule | None = None) -> CachePolicy:
    request = ReplicatedRequest(
        "benefits",
        method="GET",
        path="/benefits/${person}",
        query="changedSince=${since}",
        parameters=MappingProxyType(
            {"person": ListParameter((KNOWN_PERSON,)), "since": LastSuccessParameter()}
        ),
    )
    return CachePolicy(
        "benefits-replica",
        BENEFITS_API,
        CacheMode.REPLICATE,
        ttl_seconds=600.0,
        max_age_seconds=3600.0,
        replication=ReplicationPlan(CONSUMER, (request,), schedule or Schedule.every(3600)),
    )


async def test_replication_fills_the_cache_and_serves_while_the_provider_is_down(
    local: InProcessFederation,
) -> None:
    gw_a, gw_c = local["gw-a"], local["gw-c"]
    seen: list[str] = []
    original = gw_c.backends.handler

    async def recording(request: OutboundRequest) -> OutboundResponse:
        seen.append(request.url)
        return await original(request)

    gw_c.backends.handler = recording
    policy = benefits_plan()
    set_policy(gw_a, policy)
    replicator = gw_a.runtime.replicator
    assert replicator is not None

    first = await replicator.run(policy, "manual")
    assert first is not None and first.status is RunStatus.OK
    assert (first.calls, first.fetched, first.failures) == (1, 1, 0)
    assert first.last_success_used is None
    assert unquote(seen[-1]).endswith(f"/benefits/{KNOWN_PERSON}?changedSince={LAST_SUCCESS_DEFAULT}")
    assert store_of(gw_a).count_entries("benefits-replica") == 1

    # The next run asks for changes since the last successful run's start.
    second = await replicator.run(policy, "manual")
    assert second is not None and second.last_success_used == rfc3339(first.started_at)
    assert unquote(seen[-1]).endswith("changedSince=" + rfc3339(first.started_at))
    assert [run.id for run in replicator.runs.runs("benefits-replica")] == [second.id, first.id]
    next_run = replicator.next_run(policy)
    assert next_run is not None and next_run == second.started_at + dt.timedelta(hours=1)

    # The provider's gateway is gone: a client asking the replicated question gets the copy, marked.
    kept = store_of(gw_a).count_entries("benefits-replica")
    assert kept == 2  # one per question asked: each run's "since" differs
    gw_a.peers.handler = refused
    path = f"/r1/{BENEFITS_API.to_text()}/benefits/{KNOWN_PERSON}?changedSince=" + rfc3339(
        first.started_at
    ).replace(":", "%3A")
    answer = await gw_a.request("GET", path, headers=rest_headers())
    assert answer.status_code == 200 and answer.json()["personalCode"] == KNOWN_PERSON
    assert CacheMark.parse(answer.headers["XGate-Cache"]).status in (CacheStatus.HIT, CacheStatus.STALE)

    # A run while the provider is down is a visible failure, and changes nothing kept.
    failed = await replicator.run(policy, "manual")
    assert failed is not None and failed.status is RunStatus.FAILED and failed.failures == 1
    assert failed.error is not None and "NetworkError" in failed.error
    assert store_of(gw_a).count_entries("benefits-replica") == kept


async def test_the_scheduler_runs_a_never_run_plan_at_once(local: InProcessFederation) -> None:
    gw_a = local["gw-a"]
    policy = benefits_plan(Schedule.at("0 3 * * *"))
    set_policy(gw_a, policy)
    replicator = gw_a.runtime.replicator
    assert replicator is not None
    await replicator.tick()
    for _ in range(100):
        if (
            replicator.runs.runs("benefits-replica")
            and replicator.runs.runs("benefits-replica")[0].finished_at
        ):
            break
        await asyncio.sleep(0.05)
    (run,) = replicator.runs.runs("benefits-replica")
    assert run.trigger == "schedule" and run.status is RunStatus.OK
    due = replicator.next_run(policy)
    assert due is not None and (due.hour, due.minute) == (3, 0)
    await replicator.tick()  # not due: nothing more
    assert len(replicator.runs.runs("benefits-replica")) == 1


@pytest.fixture(params=BACKENDS)
def cache_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated cache database: SQLite, and PostgreSQL when XGATE_TEST_PG_DSN is set."""
    with migrated_database(request.param, tmp_path, "cache.db", migrate, "xgate_replication") as url:
        yield url


async def test_two_nodes_sharing_one_database_do_not_run_one_plan_twice(cache_url: str) -> None:
    calls: list[str] = []

    async def slow_fetch(policy: CachePolicy, call: ReplicatedCall) -> Fetched:
        calls.append(call.request)
        await asyncio.sleep(0.3)
        return Fetched(True)

    policy = benefits_plan()
    engines = [create_engine(cache_url), create_engine(cache_url)]
    try:
        one, two = (
            Replicator(engine, slow_fetch, lambda: [policy], node)
            for engine, node in zip(engines, ("a", "b"), strict=True)
        )
        first, second = await asyncio.gather(one.run(policy), two.run(policy))
        assert [first is None, second is None].count(True) == 1
        assert calls == ["benefits"]
        # The other node, scheduled a moment later, sees the run and waits for the schedule.
        assert await two.run(policy) is None and await one.run(policy) is None
        assert len(one.runs.runs()) == 1
        # By hand it runs, once the lease is free.
        manual = await two.run(policy, "manual")
        assert manual is not None and manual.node == "b" and manual.trigger == "manual"
    finally:
        for engine in engines:
            engine.dispose()


async def test_a_run_cut_short_by_a_stop_is_recorded_and_old_runs_are_forgotten(
    cache_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = asyncio.Event()

    async def hanging(policy: CachePolicy, call: ReplicatedCall) -> Fetched:
        started.set()
        await asyncio.sleep(3600)
        return Fetched(True)

    policy = benefits_plan()
    engine = create_engine(cache_url)
    try:
        replicator = Replicator(engine, hanging, lambda: [policy], "a", tick_seconds=0.01)
        replicator.start()
        await asyncio.wait_for(started.wait(), 10)
        await replicator.stop()
        (run,) = replicator.runs.runs()
        assert run.status is RunStatus.FAILED and run.error == "the node stopped during the run"
        assert run.finished_at is not None

        # The lease went with the run: another node may run the plan by hand at once.
        async def quick(policy: CachePolicy, call: ReplicatedCall) -> Fetched:
            return Fetched(True)

        other = Replicator(engine, quick, lambda: [policy], "b")
        monkeypatch.setattr("gateway.cache.replication.MAX_KEPT_RUNS", 2)
        for _ in range(3):
            assert await other.run(policy, "manual") is not None
        assert [r.node for r in other.runs.runs()] == ["b", "b"]
    finally:
        engine.dispose()
