"""Metrics: exchange counts from hand-made records, bounded labels, and the exposition format
read back with prometheus_client's own parser (an independent reading of what we write)."""

from __future__ import annotations

import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway import faults
from gateway.config import ConfigError, Listener, MetricsSettings, NodeConfig, parse_config
from gateway.metrics.exchanges import ExchangeMetrics, fault_label
from gateway.monitoring.exchange import ExchangeRecord, Role
from gateway.tally import Tally

SERVICE = "SERVICE:DEV/GOV/1002/population/getPerson/v1"
CLIENT = "SUBSYSTEM:DEV/GOV/1001/benefits-office"
EXAMPLES = Path(__file__).resolve().parents[1] / "config"


def record(**fields: Any) -> ExchangeRecord:
    now = time.time()
    values: dict[str, Any] = {
        "role": Role.CLIENT,
        "exchange_id": "x",
        "protocol": "soap",
        "request_in": now - 0.02,
        "response_out": now,
        "steps": {"parse": 0.001, "sign": 0.002, "peer": 0.015, "log": 0.001},
        "client": CLIENT,
        "service": SERVICE,
        "request_size": 900,
        "response_size": 1500,
        "succeeded": True,
        "status": 200,
    }
    values.update(fields)
    return ExchangeRecord(**values)


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples by name, as Prometheus's text format parser reads them."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def value(found: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when there is none)."""
    return sum(v for have, v in found.get(name, []) if all(have.get(k) == x for k, x in labels.items()))


def scrape(metrics: ExchangeMetrics) -> dict[str, list[tuple[dict[str, str], float]]]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    return samples(generate_latest(registry).decode())


def test_tally_buckets_are_inclusive_upper_bounds() -> None:
    tally = Tally((1, 2, 5))
    for v in (0.5, 1, 1.5, 2, 7):
        tally.observe(v)
    assert tally.cumulative() == [(1, 2), (2, 4), (5, 4), (float("inf"), 5)]
    assert tally.sum == 12 and tally.count == 5


def test_exchanges_counted_by_side_service_client_outcome_and_fault() -> None:
    metrics = ExchangeMetrics(max_label_values=10)
    metrics.exchange_done(record())
    metrics.exchange_done(record())
    metrics.exchange_done(record(role=Role.PRODUCER, steps={"parse": 0.001, "backend": 0.01}))
    metrics.exchange_done(record(succeeded=False, status=500, fault_code=faults.SERVICE_FAILED_TIMEOUT))
    metrics.exchange_done(record(served_from_cache="stale"))
    found = scrape(metrics)
    total = "xgate_exchanges_total"
    assert (
        value(found, total, side="client", service=SERVICE, client=CLIENT, outcome="ok", fault_code="") == 2
    )
    assert value(found, total, side="producer", outcome="ok") == 1
    assert value(found, total, side="client", outcome="fault", fault_code=faults.SERVICE_FAILED_TIMEOUT) == 1
    assert value(found, total, side="client", outcome="cache_stale") == 1
    assert value(found, "xgate_exchange_duration_seconds_count", side="client", service=SERVICE) == 4
    assert value(found, "xgate_exchange_duration_seconds_bucket", side="client", le="0.025") == 4
    assert value(found, "xgate_exchange_step_seconds_count", side="client", step="sign") == 4
    assert value(found, "xgate_exchange_step_seconds_count", side="producer", step="backend") == 1
    assert value(found, "xgate_exchange_request_bytes_sum", side="client") == 4 * 900
    assert value(found, "xgate_exchange_response_bytes_bucket", side="client", le="4096.0") == 4


def test_fault_codes_are_bounded_to_the_known_codes_and_their_families() -> None:
    assert fault_label(None) == ""
    assert fault_label(faults.ACCESS_DENIED) == faults.ACCESS_DENIED
    assert fault_label("server.serverproxy.access_denied") == faults.ACCESS_DENIED  # X-Road 7.8 spelling
    assert fault_label(faults.SERVICE_FAILED + ".SomethingNew") == faults.SERVICE_FAILED
    assert fault_label("Client.MadeUp.Whatever") == "Client.other"
    assert fault_label("Server.Backend.Custom") == "Server.other"
    assert fault_label("ns1:weird") == "other"


def test_unproven_identifiers_and_those_beyond_the_limit_count_as_other() -> None:
    registered = "SERVICE:DEV/GOV/1002/population/listPeople/v1"
    metrics = ExchangeMetrics(max_label_values=3, known=lambda text: text == registered)
    # Made-up identifiers in failed requests never become label values ...
    for n in range(50):
        metrics.exchange_done(
            record(
                service=f"SERVICE:DEV/GOV/9/x/s{n}",
                client=f"SUBSYSTEM:DEV/GOV/9/c{n}",
                succeeded=False,
                fault_code=faults.UNKNOWN_SERVICE,
            )
        )
    # ... a registered one does, failed or not; succeeded exchanges prove theirs, up to the limit.
    metrics.exchange_done(record(service=registered, succeeded=False, fault_code=faults.ACCESS_DENIED))
    for n in range(5):
        metrics.exchange_done(record(service=f"SERVICE:DEV/GOV/1002/population/s{n}/v1"))
    found = scrape(metrics)
    services = {labels["service"] for labels, _ in found["xgate_exchanges_total"]}
    assert services == {
        "other",
        registered,
        "SERVICE:DEV/GOV/1002/population/s0/v1",
        "SERVICE:DEV/GOV/1002/population/s1/v1",
    }
    assert value(found, "xgate_exchanges_total", service="other") == 50 + 3
    assert len(metrics.services) == 3 and len(metrics.clients) == 1  # CLIENT, proven by the successes


def test_the_metrics_table_turns_the_listener_on_and_needs_a_port() -> None:
    example = (EXAMPLES / "gateway.example.toml").read_text()
    assert load(example).metrics is None  # off by default
    on = example.replace(
        'enabled = false\nhost = "127.0.0.1"\n# port = 9588', 'enabled = true\nhost = "0.0.0.0"\nport = 9588'
    )
    config = load(on)
    assert config.metrics == MetricsSettings(Listener("0.0.0.0", 9588), 200)  # beyond loopback: allowed
    no_port = example.replace("enabled = false\n", "enabled = true\n")
    with pytest.raises(ConfigError, match="metrics: enabled metrics need a port"):
        load(no_port)


def load(text: str) -> NodeConfig:
    """The example's text as a node reads it, relative paths against config/ as for the file."""
    return parse_config(tomllib.loads(text), EXAMPLES)
