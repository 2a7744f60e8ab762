"""The federation under chaos: with traffic flowing, each component stops and comes back in turn.

A development federation with redundant trust services (`up(..., redundant_trust=True)`: a primary
OCSP responder and a primary TSA as processes of their own, `trust` as every gateway's fallback)
carries SOAP (gw-a → gw-b) and REST (gw-a → gw-c) from a few concurrent clients, while the test
stops and restarts the primary OCSP responder, the primary TSA, the registry, the SOAP backend
and the REST provider's gateway (docs/resilience.md). Throughout:

- every answer a client got is in the logs: a success on both gateways, a fault on the consumer's;
- no request takes longer than the consumer's own deadline (backend timeout plus its margin);
- with one of two OCSP responders or TSAs down, or the registry, nothing fails at all;
- after each restart both kinds of traffic succeed again within seconds.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import pytest
import requests
import sqlalchemy as sa

from gateway.dev import federation
from gateway.messagelog.db import create_engine
from gateway.messagelog.tables import records
from gateway.proxy.consumer import HOP_MARGIN_SECONDS
from tests.conftest import (
    BENEFITS_API,
    GET_PERSON,
    KNOWN_PERSON,
    Federation,
    get_person_body,
    rest_headers,
    rest_url,
    running_federation,
    soap_request,
    wait_until,
)

CHAOS_TIMES: Final = federation.FederationTimes(
    ocsp_freshness_seconds=12,  # renewed every 6 s: an outage of 7 s always meets a renewal
    timestamping_interval_seconds=1,
    max_timestamp_failure_seconds=30.0,
)
CLIENTS_PER_KIND: Final = 2
BACKEND_TIMEOUT_SECONDS: Final = 3.0  # the development federation's services' timeout
DEADLINE_SECONDS: Final = BACKEND_TIMEOUT_SECONDS + HOP_MARGIN_SECONDS + 3.0
"""The consumer gives up after the backend's timeout plus its margin; 3 s more for a loaded machine."""
CLIENT_TIMEOUT_SECONDS: Final = 30.0
"""The clients' own limit, far beyond DEADLINE_SECONDS: a hang shows as a long duration, not an error."""
RECOVERY_SECONDS: Final = 10.0
OCSP_OUTAGE_SECONDS: Final = 7.0
OUTAGE_SECONDS: Final = 4.0


@dataclass(frozen=True)
class Exchange:
    kind: str  # "soap" or "rest"
    message_id: str
    started: float
    seconds: float
    ok: bool
    answered: bool  # the gateway answered (a success or its fault), not a client-side error
    detail: str


class Traffic:
    """Clients calling through gw-a until stopped; every exchange recorded."""

    def __init__(self, fed: Federation) -> None:
        self.fed = fed
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(kind,), daemon=True)
            for kind in ("soap", "rest")
            for _ in range(CLIENTS_PER_KIND)
        ]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(CLIENT_TIMEOUT_SECONDS + 5)

    def _run(self, kind: str) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                self._record(kind, session)
                time.sleep(0.05)

    def _record(self, kind: str, session: requests.Session) -> None:
        message_id = f"chaos-{uuid.uuid4()}"
        started = time.monotonic()
        try:
            if kind == "soap":
                response = session.post(
                    self.fed.internal_url("gw-a"),
                    data=soap_request(GET_PERSON, get_person_body(KNOWN_PERSON), message_id=message_id),
                    headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
                    timeout=CLIENT_TIMEOUT_SECONDS,
                )
            else:
                response = session.get(
                    rest_url(self.fed, "gw-a", BENEFITS_API, f"/benefits/{KNOWN_PERSON}"),
                    headers=rest_headers(extra={"X-Road-Id": message_id}),
                    timeout=CLIENT_TIMEOUT_SECONDS,
                )
            ok, answered = response.status_code == 200, True
            detail = response.headers.get("X-Road-Error") or response.text[:300]
        except requests.RequestException as exc:
            ok, answered, detail = False, False, f"{type(exc).__name__}: {exc}"
        exchange = Exchange(kind, message_id, started, time.monotonic() - started, ok, answered, detail)
        with self._lock:
            self.exchanges.append(exchange)

    def since(self, moment: float) -> list[Exchange]:
        with self._lock:
            return [e for e in self.exchanges if e.started >= moment]

    def recovered_after(self, moment: float) -> Callable[[], bool]:
        """Both kinds have succeeded with a request started after `moment`."""
        return lambda: {e.kind for e in self.since(moment) if e.ok} == {"soap", "rest"}


def logged_ids(fed: Federation, gateway: str) -> set[str]:
    engine = create_engine(f"sqlite:///{fed.dir / gateway / 'messagelog.sqlite'}")
    try:
        with engine.connect() as connection:
            return set(connection.scalars(sa.select(records.c.message_id).distinct()))
    finally:
        engine.dispose()


def ocsp_failing(fed: Federation, url: str) -> bool:
    """gw-a remembers the responder at `url` as failing for one of its certificates."""
    certificates = fed.health("gw-a")["ocsp"]["certificates"]
    return any(url in entry["responders_failing"] for entry in certificates)


def tsa_health(fed: Federation) -> dict[str, Any]:
    health: dict[str, Any] = fed.health("gw-a")["messagelog"]
    return health


@pytest.fixture(scope="module")
def chaos_fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    with running_federation(
        tmp_path_factory.mktemp("chaos"), times=CHAOS_TIMES, redundant_trust=True
    ) as running:
        yield running


@contextlib.contextmanager
def stopped(fed: Federation, name: str) -> Iterator[None]:
    federation.stop_process(fed.dir, name)
    try:
        yield
    finally:
        federation.start_process(fed.dir, name)


def failures(exchanges: list[Exchange]) -> list[str]:
    return [f"{e.kind} {e.message_id}: {e.detail}" for e in exchanges if not e.ok]


def test_traffic_survives_each_component_stopping_and_recovers_after_it(chaos_fed: Federation) -> None:
    fed = chaos_fed
    fed.wait_ready()
    trust = fed.description["trust"]
    primary_ocsp, primary_tsa = trust["ocsp_urls"][0], trust["tsa_urls"][0]
    recovery: dict[str, float] = {}
    without_failures: dict[str, list[str]] = {}

    with Traffic(fed) as traffic:
        wait_until(traffic.recovered_after(time.monotonic()), 20, "traffic to flow")

        for name, seconds, must_not_fail in (
            ("ocsp-primary", OCSP_OUTAGE_SECONDS, True),
            ("tsa-primary", OUTAGE_SECONDS, True),
            ("registry", OUTAGE_SECONDS, True),
            ("population_register", OUTAGE_SECONDS, False),
            ("gw-c", OUTAGE_SECONDS, False),
        ):
            began = time.monotonic()
            with stopped(fed, name):
                time.sleep(seconds)
                if name == "ocsp-primary":  # the failed responder is remembered, the fallback used
                    wait_until(lambda: ocsp_failing(fed, primary_ocsp), 10, "a renewal to fail over")
                if name == "tsa-primary":
                    wait_until(lambda: primary_tsa in tsa_health(fed)["tsa_failing"], 10, "a TSA failover")
                    assert tsa_health(fed)["timestamping_failing_since"] is None
            restarted = time.monotonic()
            wait_until(traffic.recovered_after(restarted), RECOVERY_SECONDS, f"traffic after {name}")
            recovery[name] = round(time.monotonic() - restarted, 2)
            if must_not_fail:
                without_failures[name] = failures(traffic.since(began))

    exchanges = traffic.exchanges
    slowest = max(exchanges, key=lambda e: e.seconds)
    faulted = sum(not e.ok for e in exchanges)
    print(
        f"{len(exchanges)} exchanges, {faulted} answered with a fault, slowest {slowest.seconds:.2f} s; "
        f"recovery after restart (s): {recovery}"
    )
    assert all(not problems for problems in without_failures.values()), without_failures
    assert slowest.seconds < DEADLINE_SECONDS, slowest
    assert all(e.answered for e in exchanges), [e for e in exchanges if not e.answered][:5]

    consumer = logged_ids(fed, "gw-a")
    providers = {"soap": logged_ids(fed, "gw-b"), "rest": logged_ids(fed, "gw-c")}
    missing = [
        f"{e.kind} {e.message_id}"
        for e in exchanges
        if e.message_id not in consumer or (e.ok and e.message_id not in providers[e.kind])
    ]
    assert not missing, missing[:10]
    assert sum(e.ok for e in exchanges) > 50
