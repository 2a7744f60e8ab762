"""The node's state as Prometheus metrics, read when the metrics listener is scraped.

Nothing here runs on the request path: the collector reads what the node's parts already keep
(the signer's and log writer's tallies, the timestamper's watermarks, the configuration's
times, the listeners' and admission gates' counts, the cache's counters and circuits) at
scrape time, on the event loop, without touching a database. docs/metrics.md lists them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gateway.cache.breaker import CircuitState
from gateway.connections import LimitedSite
from gateway.metrics.exchanges import histogram
from gateway.proxy.runtime import GatewayRuntime


class NodeMetrics:
    """A prometheus_client collector over one running node (`runners`: its listeners' runners)."""

    def __init__(self, runtime: GatewayRuntime, runners: Iterable[web.BaseRunner]) -> None:
        self.runtime = runtime
        self.runners = runners

    def collect(self) -> Iterator[Metric]:
        now = dt.datetime.now(dt.UTC)
        yield from self._signers()
        yield from self._messagelog()
        yield from self._globalconf(now)
        yield from self._own_certificates(now)
        yield from self._connections()
        yield from self._admission()
        yield from self._cache()

    def _signers(self) -> Iterator[Metric]:
        signers = {member.to_text(): signer for member, signer in self.runtime.signers.items()}
        yield histogram(
            "xgate_signer_batch_size",
            "Messages signed with one signature (per batch).",
            ["member"],
            [((member,), signer.batch_sizes) for member, signer in signers.items()],
        )
        yield histogram(
            "xgate_signer_batch_wait_seconds",
            "How long a batch's first message waited for its batch to close.",
            ["member"],
            [((member,), signer.batch_waits) for member, signer in signers.items()],
        )

    def _messagelog(self) -> Iterator[Metric]:
        log = self.runtime.messagelog
        if log is None:
            return
        writer, stamper = log.writer, log.timestamper
        yield histogram(
            "xgate_messagelog_commit_seconds",
            "Message log transactions (group commits), as long as each took.",
            [],
            [((), writer.commit_seconds)],
        )
        yield histogram(
            "xgate_messagelog_commit_records",
            "Records per message log transaction.",
            [],
            [((), writer.commit_records)],
        )
        heads = [seq for seq in (writer.head_seq, stamper.head_seq) if seq is not None]
        if heads and stamper.stamped_seq is not None:
            yield GaugeMetricFamily(
                "xgate_timestamp_backlog_records",
                "Logged records not yet timestamped.",
                value=max(0, max(heads) - stamper.stamped_seq),
            )
        if stamper.last_success_at is not None:
            yield GaugeMetricFamily(
                "xgate_timestamp_last_success_timestamp_seconds",
                "When timestamping last left nothing it read unstamped (unix time).",
                value=stamper.last_success_at,
            )
        yield GaugeMetricFamily(
            "xgate_timestamp_failing",
            "1 while timestamping fails (since the time in the health document), else 0.",
            value=0 if stamper.failing_since is None else 1,
        )
        yield CounterMetricFamily(
            "xgate_timestamp_tokens", "Timestamp tokens stored by this node.", value=stamper.tokens_stored
        )

    def _globalconf(self, now: dt.datetime) -> Iterator[Metric]:
        conf = self.runtime.globalconf_source.current
        if conf is None:
            return
        yield GaugeMetricFamily(
            "xgate_globalconf_age_seconds",
            "Age of the global configuration in use (since it was generated).",
            value=(now - conf.generated_at).total_seconds(),
        )
        yield GaugeMetricFamily(
            "xgate_globalconf_expiry_seconds",
            "Time until the global configuration in use expires (negative: expired).",
            value=(conf.expires_at - now).total_seconds(),
        )

    def _own_certificates(self, now: dt.datetime) -> Iterator[Metric]:
        status = self.runtime.own_status
        if status is None:
            return
        certs = GaugeMetricFamily(
            "xgate_certificate_expiry_seconds",
            "Time until this node's own certificates expire.",
            labels=["role", "serial"],
        )
        ocsp = GaugeMetricFamily(
            "xgate_ocsp_response_expiry_seconds",
            "Time until the newest OCSP response for an own certificate stops counting (negative: stale).",
            labels=["role", "serial"],
        )
        for role, serial, left, ocsp_left in status.time_left(now):
            certs.add_metric([role, serial], left)
            if ocsp_left is not None:
                ocsp.add_metric([role, serial], ocsp_left)
        yield certs
        yield ocsp

    def _connections(self) -> Iterator[Metric]:
        open_now = GaugeMetricFamily(
            "xgate_open_connections", "Connections each listener serves now.", labels=["listener"]
        )
        refused = CounterMetricFamily(
            "xgate_connections_refused",
            "Connections closed at once: the listener was full.",
            labels=["listener"],
        )
        timed_out = CounterMetricFamily(
            "xgate_connections_timed_out",
            "Connections closed because a request head or body was overdue.",
            labels=["listener"],
        )
        for runner in self.runners:
            for site in runner.sites:
                if isinstance(site, LimitedSite):
                    open_now.add_metric([site.name], site.open_connections)
                    refused.add_metric([site.name], site.refused)
                    timed_out.add_metric([site.name], site.timed_out)
        yield open_now
        yield refused
        yield timed_out

    def _admission(self) -> Iterator[Metric]:
        admission = self.runtime.admission
        gates = {**admission.interfaces, "body_bytes": admission.bodies}
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "in_use": GaugeMetricFamily(
                "xgate_admission_in_use", "Exchanges (or body bytes) held now.", labels=["gate"]
            ),
            "capacity": GaugeMetricFamily(
                "xgate_admission_capacity", "The most a gate holds at once.", labels=["gate"]
            ),
            "waiting": GaugeMetricFamily(
                "xgate_admission_waiting", "Requests waiting for room.", labels=["gate"]
            ),
            "refused": CounterMetricFamily(
                "xgate_admission_refused", "Requests refused as overloaded.", labels=["gate"]
            ),
        }
        for name, gate in gates.items():
            for field, family in families.items():
                family.add_metric([name], getattr(gate, field))
        yield from families.values()

    def _cache(self) -> Iterator[Metric]:
        cache = self.runtime.cache
        if cache is None:
            return
        lookups = CounterMetricFamily(
            "xgate_cache_outcomes",
            "What the interface cache did per request, by service: hit, stale, miss, stored, refused.",
            labels=["service", "outcome"],
        )
        for (service, outcome), count in cache.store.totals().items():
            lookups.add_metric([service, outcome.value], count)
        yield lookups
        circuits = GaugeMetricFamily(
            "xgate_circuit_state",
            "Each provider service's circuit on this node: 1 for its current state, 0 for the others.",
            labels=["service", "state"],
        )
        for service, status in cache.breaker_states().items():
            for state in CircuitState:
                circuits.add_metric([service, state.value], 1 if status.state is state else 0)
        yield circuits
