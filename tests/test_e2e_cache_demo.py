"""The demo's cache (issue 10, Build 9) with real processes: gw-a gets the policies `xgate federation
up` sets (fallback for getPerson, a replica of the benefits API's GET /benefits/{code}); with gw-b,
the population register's gateway, killed with SIGKILL, both demo calls are answered from gw-a's
cache, marked. It runs its own federation: records served from the cache stay in that
federation's message logs, not in the one the other end-to-end tests verify.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
import requests

from gateway.cache.marking import CacheMark, CacheStatus
from gateway.dev import federation
from tests.conftest import (
    BENEFITS_API,
    CONSUMER,
    GET_PERSON,
    KNOWN_PERSON,
    POPULATION_NS,
    Federation,
    get_person_body,
    post_soap,
    rest_headers,
    running_federation,
    soap_body,
    soap_request,
)


def _get_person(fed: Federation) -> requests.Response:
    return post_soap(fed.internal_url("gw-a"), soap_request(GET_PERSON, get_person_body(KNOWN_PERSON)))


def _get_benefits(fed: Federation) -> requests.Response:
    url = f"{fed.internal_url('gw-a')}/r1/{BENEFITS_API.to_text()}/benefits/{KNOWN_PERSON}"
    return requests.get(url, headers=rest_headers(CONSUMER), timeout=30)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    with running_federation(tmp_path_factory.mktemp("cache-demo")) as running:
        yield running


def test_the_demo_calls_are_answered_from_the_cache_with_gw_b_killed(fed: Federation) -> None:
    admin = fed.admin("gw-a")
    applied = federation.set_demo_cache_policies(fed.description)
    assert sorted(applied["added"]) == ["benefits-replica", "population-fallback"]
    try:
        run = admin.start_cache_run("benefits-replica")
        assert run["status"] == "ok" and run["fetched"] == 1, run
        fresh = _get_person(fed)
        assert "XGate-Cache" not in fresh.headers
        os.killpg(federation.read_pids(fed.dir)["gw-b"], signal.SIGKILL)
        try:
            person = _get_person(fed)
            found = soap_body(person).find(f"{{{POPULATION_NS}}}person")
            assert found is not None and found.findtext(f"{{{POPULATION_NS}}}personalCode") == KNOWN_PERSON
            assert CacheMark.parse(person.headers["XGate-Cache"]).status is CacheStatus.STALE
            benefits = _get_benefits(fed)
            assert benefits.status_code == 200 and benefits.json()["personalCode"] == KNOWN_PERSON
            mark = CacheMark.parse(benefits.headers["XGate-Cache"])
            assert mark.status is CacheStatus.HIT and mark.original_id.startswith("replication-")
            assert benefits.headers["Age"] == str(mark.age_seconds)
            stats = {row["service"]: row for row in admin.cache_stats()["services"]}
            assert stats[GET_PERSON.to_text()]["stale"] >= 1 and stats[BENEFITS_API.to_text()]["hit"] >= 1
        finally:
            federation.stop_process(fed.dir, "gw-b")  # forget the dead pid
            federation.start_process(fed.dir, "gw-b")
    finally:
        admin.apply_cache_policies({})
        admin.purge_cache(everything=True)
    fed.wait_ready()
    assert "XGate-Cache" not in _get_person(fed).headers
