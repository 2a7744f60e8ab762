"""Metrics of real node processes: the development federation's metrics_url, scraped over HTTP
after calls through gw-a -> gw-b and a fault, read with prometheus_client's parser."""

from __future__ import annotations

import pytest
import requests

from gateway import faults
from gateway.ids import ServiceId
from gateway.metrics.summary import quantile, summary
from tests.conftest import (
    CONSUMER,
    GET_PERSON,
    KNOWN_PERSON,
    Federation,
    get_person_body,
    post_soap,
    soap_request,
    wait_until,
)
from tests.test_metrics import samples, value

EXCHANGES = "xgate_exchanges_total"


def scrape(fed: Federation, name: str) -> str:
    response = requests.get(fed.gateway(name)["metrics_url"], timeout=10)
    response.raise_for_status()
    return response.text


def test_metrics_url_counts_the_calls_and_faults_of_a_node_process(fed: Federation) -> None:
    service, client = GET_PERSON.to_text(), CONSUMER.to_text()
    ok = {"side": "client", "service": service, "client": client, "outcome": "ok"}
    before = samples(scrape(fed, "gw-a"))
    for _ in range(3):
        answer = post_soap(fed.internal_url("gw-a"), soap_request(GET_PERSON, get_person_body(KNOWN_PERSON)))
        assert answer.status_code == 200
    missing = ServiceId("DEV", "GOV", "1002", "population", "nosuch", "v1")
    assert post_soap(fed.internal_url("gw-a"), soap_request(missing, "<nosuch/>")).status_code != 200

    def counted() -> bool:
        return value(samples(scrape(fed, "gw-a")), EXCHANGES) >= value(before, EXCHANGES) + 4

    wait_until(counted, 10, "gw-a to count the calls")
    after = samples(scrape(fed, "gw-a"))
    assert value(after, EXCHANGES, **ok) - value(before, EXCHANGES, **ok) == 3
    fault = {"outcome": "fault", "fault_code": faults.UNKNOWN_SERVICE}
    assert (
        value(after, EXCHANGES, side="client", **fault) - value(before, EXCHANGES, side="client", **fault)
        == 1
    )
    assert value(samples(scrape(fed, "gw-b")), EXCHANGES, side="producer", **fault) >= 1
    ports = {labels["listener"].rsplit(":", 1)[1] for labels, _ in after["xgate_open_connections"]}
    assert {str(port) for port in fed.gateway("gw-a")["ports"].values()} == ports  # every listener
    lines = summary(scrape(fed, "gw-a"))
    assert any(line.startswith("client side:") and "ms, p95" in line for line in lines), lines


def test_quantiles_are_read_from_buckets_as_histogram_quantile_does() -> None:
    buckets = [(0.01, 0.0), (0.1, 50.0), (1.0, 100.0), (float("inf"), 100.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.1)
    assert quantile(0.75, buckets) == pytest.approx(0.55)
    assert quantile(0.5, [(float("inf"), 0.0)]) is None
