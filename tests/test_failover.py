"""Trust services in priority order with failover and recovery, and the clock check (sans-IO)."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.outbound.clockcheck import DEFAULT_CLOCK_SKEW_SECONDS, ClockCheck
from gateway.outbound.failover import Failover
from gateway.proxy.peers import PeerSelector
from tests.test_cache_core import Clock

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)


def test_the_first_healthy_service_is_asked_first_and_a_failed_one_again_after_its_rest() -> None:
    clock = Clock()
    failover = Failover(retry_after_seconds=60, clock=clock)
    urls = ["http://a", "http://b", "http://c"]
    assert failover.order(urls) == urls

    failover.failed("http://a", "a: cannot connect")
    assert failover.order(urls) == ["http://b", "http://c", "http://a"]
    assert failover.failures(urls) == {"http://a": "a: cannot connect"}

    failover.failed("http://b", "b: answered HTTP 503")
    assert failover.order(urls) == ["http://c", "http://a", "http://b"]  # never given up on

    clock.now += 61  # rested: back in its place, so a responder that returned is preferred again
    assert failover.order(urls) == urls
    failover.succeeded("http://a")
    assert failover.failures(urls) == {"http://b": "b: answered HTTP 503"}
    assert failover.failures(["http://a"]) == {}


def test_peers_that_failed_are_tried_last_until_their_penalty_is_over() -> None:
    clock = Clock()
    peers = PeerSelector(clock)
    peers.record_connect("b:1", 0.02)
    peers.record_connect("a:1", 0.01)
    assert peers.order(["b:1", "a:1", "new:1"]) == ["new:1", "a:1", "b:1"]
    peers.record_failure("new:1", "no connection within 5 s")
    assert peers.order(["b:1", "a:1", "new:1"]) == ["a:1", "b:1", "new:1"]
    clock.now += 31
    assert peers.order(["b:1", "a:1", "new:1"])[0] == "new:1"


def test_the_clock_check_warns_only_beyond_its_tolerance() -> None:
    check = ClockCheck(60)
    check.observe("TSA one", NOW, NOW + dt.timedelta(seconds=30), two_sided=True)
    assert check.problems() == []
    check.observe("TSA one", NOW, NOW + dt.timedelta(seconds=90), two_sided=True)
    assert check.problems() == ["this gateway's clock is 90 s ahead of TSA one's (tolerance 60 s)"]

    # A responder's producedAt only says when it signed: one from the past proves nothing ...
    check.observe("OCSP responder r", NOW - dt.timedelta(hours=2), NOW, two_sided=False)
    assert len(check.problems()) == 1
    # ... one from the future says our clock is behind.
    check.observe("OCSP responder r", NOW + dt.timedelta(seconds=120), NOW, two_sided=False)
    assert "120 s behind OCSP responder r's" in check.problems()[1]
    health = check.health()
    assert health["tolerance_seconds"] == 60 and len(health["warnings"]) == 2  # type: ignore[arg-type]


def test_the_default_tolerance_is_five_minutes_and_must_be_positive() -> None:
    assert DEFAULT_CLOCK_SKEW_SECONDS == 300
    with pytest.raises(ValueError):
        ClockCheck(0)
