"""The interface cache with real processes: the provider's gateway killed, the client still served.

gw-a gets a fallback policy for gw-b's getPerson; one answer with gw-b up is kept; then gw-b is
killed with SIGKILL (no goodbye on its connections) and the same question still gets the
answer, from gw-a's cache, marked, also after gw-a itself restarts. gw-b is started again and
the policy removed afterwards.
"""

from __future__ import annotations

import os
import signal
import uuid

import requests

from gateway.cache import policies
from gateway.cache.marking import CACHE_NS, CacheMark, CacheStatus
from gateway.cache.policy import CacheMode, CachePolicy
from gateway.dev import federation
from gateway.xmlsafe import parse_xml
from tests.conftest import (
    GET_PERSON,
    GLOBALCONF_WAIT_SECONDS,
    KNOWN_PERSON,
    POPULATION_NS,
    SOAP_ENV_NS,
    Federation,
    get_person_body,
    post_soap,
    soap_body,
    soap_request,
    wait_until,
)

POLICY = CachePolicy("e2e-population", GET_PERSON, CacheMode.FALLBACK)


def _get_person(fed: Federation) -> tuple[str, requests.Response]:
    message_id = f"cache-{uuid.uuid4()}"
    body = soap_request(GET_PERSON, get_person_body(KNOWN_PERSON), message_id=message_id)
    return message_id, post_soap(fed.internal_url("gw-a"), body)


def _ready(fed: Federation, name: str) -> bool:
    try:
        health = fed.health(name)
    except requests.RequestException:
        return False
    return bool(health["globalconf"]["valid"] and (health["ocsp"] or {}).get("ready"))


def test_a_killed_provider_gateway_is_answered_from_the_cache_marked(fed: Federation) -> None:
    with fed.serverconf("gw-a") as repository:
        policies.add_policy(repository, POLICY, {GET_PERSON})
    try:
        original_id, fresh = _get_person(fed)
        assert soap_body(fresh).find(f"{{{POPULATION_NS}}}person") is not None
        os.killpg(federation.read_pids(fed.dir)["gw-b"], signal.SIGKILL)
        try:
            _, cached = _get_person(fed)
            person = soap_body(cached).find(f"{{{POPULATION_NS}}}person")
            assert person is not None and person.findtext(f"{{{POPULATION_NS}}}personalCode") == KNOWN_PERSON
            mark = CacheMark.parse(cached.headers["XGate-Cache"])
            assert mark.status is CacheStatus.STALE and mark.original_id == original_id
            assert cached.headers["Age"] == str(mark.age_seconds)
            block = parse_xml(cached.content).find(f"{{{SOAP_ENV_NS}}}Header/{{{CACHE_NS}}}cache")
            assert block is not None and block.get("status") == "stale"

            # gw-a restarted: its cache is still there (the database, not the process, holds it).
            federation.stop_process(fed.dir, "gw-a")
            federation.start_process(fed.dir, "gw-a")
            wait_until(lambda: _ready(fed, "gw-a"), GLOBALCONF_WAIT_SECONDS, "gw-a to be ready again")
            _, after_restart = _get_person(fed)
            assert CacheMark.parse(after_restart.headers["XGate-Cache"]).original_id == original_id
        finally:
            federation.stop_process(fed.dir, "gw-b")  # forget the dead pid
            federation.start_process(fed.dir, "gw-b")
    finally:
        with fed.serverconf("gw-a") as repository:
            policies.remove_policy(repository, POLICY.name)
    fed.wait_ready()
    _, after = _get_person(fed)
    assert "XGate-Cache" not in after.headers
