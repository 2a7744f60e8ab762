"""Exchange metrics: an `ExchangeObserver` that counts what each finished exchange says.

The proxy hands every finished exchange to its observers on the event loop
(gateway.monitoring.exchange), so counting must cost little: each record costs a few dict
lookups and tally increments (gateway.tally), no lock and no metrics library. The
metrics listener turns the counts into Prometheus families only when it is scraped
(`ExchangeMetrics.collect`).

Label values are bounded, so that no client can grow the node's memory or its metrics by
sending made-up identifiers (docs/metrics.md "Cardinality"):

- `service` and `client` take a value only if the node's configuration registers it (`known`)
  or an exchange with it succeeded (the identifiers passed every check: the client is
  authenticated and allowed, the service answered), and only up to `max_label_values`
  values each; anything else is counted as "other";
- `fault_code` is one of the fault codes gateway.faults names (peers' codes in either style
  are mapped to them), the longest such code a longer one starts with (a service's own
  `Server.ServerProxy.ServiceFailed.X`), or "Client.other", "Server.other", "other".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Final

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from gateway import faults
from gateway.monitoring.exchange import ExchangeRecord, Role, Step
from gateway.tally import BYTES_BOUNDS, SECONDS_BOUNDS, Tally

DEFAULT_MAX_LABEL_VALUES: Final = 200
"""Services (and clients) one node reports by name: a large ministry's gateway serves tens;
200 x 2 sides x a few outcomes stays a few thousand series, well within one Prometheus's means."""

OTHER: Final = "other"
NONE: Final = ""
"""The label value for a field the exchange never learnt (a request that failed to parse)."""

OK: Final = "ok"
FAULT: Final = "fault"
CACHE_HIT: Final = "cache_hit"
CACHE_STALE: Final = "cache_stale"

KNOWN_FAULT_CODES: Final = frozenset(faults.all_codes().values())

_STEPS: Final = frozenset(step.value for step in Step)


def fault_label(code: str | None) -> str:
    """The bounded label for a fault code: a code gateway.faults names, else its family."""
    if not code:
        return NONE
    canonical = faults.canonical(code)
    candidate = canonical
    while True:
        if candidate in KNOWN_FAULT_CODES:
            return candidate
        if "." not in candidate:
            break
        candidate = candidate.rsplit(".", 1)[0]
    if canonical.startswith("Client."):
        return "Client.other"
    if canonical.startswith("Server."):
        return "Server.other"
    return OTHER


class LabelValues:
    """The values one label may take: known or proven ones, at most `limit` of them."""

    def __init__(self, limit: int, known: Callable[[str], bool]) -> None:
        self.limit = limit
        self._known = known
        self._admitted: dict[str | None, str] = {None: NONE, "": NONE}

    def label(self, value: str | None, proven: bool) -> str:
        label = self._admitted.get(value)
        if label is not None:
            return label
        assert value is not None  # None is always admitted
        if len(self._admitted) - 2 >= self.limit or not (proven or self._known(value)):
            return OTHER  # not remembered: the value may prove itself later
        self._admitted[value] = value
        return value

    def __len__(self) -> int:
        return len(self._admitted) - 2


def _nothing_known(_value: str) -> bool:
    return False


class _Side:
    """One side's tallies, made once: the hot path looks each up in one small dict."""

    __slots__ = ("durations", "name", "request_bytes", "response_bytes", "steps")

    def __init__(self, name: str) -> None:
        self.name = name
        self.durations: dict[str, Tally] = {}  # by service label
        self.steps = {step: Tally(SECONDS_BOUNDS) for step in _STEPS}
        self.request_bytes = Tally(BYTES_BOUNDS)
        self.response_bytes = Tally(BYTES_BOUNDS)


class ExchangeMetrics:
    """Counts exchanges by side, service, client, outcome and fault code; times and sizes them."""

    def __init__(
        self,
        *,
        max_label_values: int = DEFAULT_MAX_LABEL_VALUES,
        known: Callable[[str], bool] = _nothing_known,
    ) -> None:
        self.services = LabelValues(max_label_values, known)
        self.clients = LabelValues(max_label_values, known)
        self._fault_labels: dict[str | None, str] = {None: NONE}
        self._exchanges: dict[tuple[str, str, str, str, str], int] = {}
        self._sides = {role: _Side(role.value.lower()) for role in Role}

    def exchange_done(self, record: ExchangeRecord) -> None:
        side = self._sides[record.role]
        ok = record.succeeded
        service = self.services.label(record.service, ok)
        client = self.clients.label(record.client, ok)
        fault = self._fault_labels.get(record.fault_code)
        if fault is None:
            fault = fault_label(record.fault_code)
            if len(self._fault_labels) < 4 * len(KNOWN_FAULT_CODES):  # peers' spellings; bounded
                self._fault_labels[record.fault_code] = fault
        if not ok:
            outcome = FAULT
        elif record.served_from_cache is None:
            outcome = OK
        else:
            outcome = CACHE_STALE if record.served_from_cache == "stale" else CACHE_HIT
        key = (side.name, service, client, outcome, fault)
        exchanges = self._exchanges
        exchanges[key] = exchanges.get(key, 0) + 1
        duration = side.durations.get(service)
        if duration is None:
            duration = side.durations[service] = Tally(SECONDS_BOUNDS)
        duration.observe(record.response_out - record.request_in)
        steps = side.steps
        for step, seconds in record.steps.items():
            tally = steps.get(step)
            if tally is not None:  # else a step this version does not know: not a label value
                tally.observe(seconds)
        side.request_bytes.observe(record.request_size)
        side.response_bytes.observe(record.response_size)

    def collect(self) -> Iterator[Metric]:
        exchanges = CounterMetricFamily(
            "xgate_exchanges",
            "Exchanges this node finished, by side, service, client, outcome and fault code.",
            labels=["side", "service", "client", "outcome", "fault_code"],
        )
        for labels, count in self._exchanges.items():
            exchanges.add_metric(list(labels), count)
        yield exchanges
        sides = self._sides.values()
        yield histogram(
            "xgate_exchange_duration_seconds",
            "Whole exchanges, from the request's arrival to the answer's departure.",
            ["side", "service"],
            [((side.name, service), t) for side in sides for service, t in side.durations.items()],
        )
        yield histogram(
            "xgate_exchange_step_seconds",
            "Time an exchange spent in each step (summed over the exchange).",
            ["side", "step"],
            [((side.name, step), t) for side in sides for step, t in side.steps.items() if t.count],
        )
        yield histogram(
            "xgate_exchange_request_bytes",
            "Request sizes as received.",
            ["side"],
            [((side.name,), side.request_bytes) for side in sides if side.request_bytes.count],
        )
        yield histogram(
            "xgate_exchange_response_bytes",
            "Response sizes as sent.",
            ["side"],
            [((side.name,), side.response_bytes) for side in sides if side.response_bytes.count],
        )


def histogram(
    name: str, documentation: str, labels: list[str], tallies: Iterable[tuple[tuple[str, ...], Tally]]
) -> HistogramMetricFamily:
    """A Prometheus histogram family from (label values, tally) pairs."""
    family = HistogramMetricFamily(name, documentation, labels=labels)
    for values, tally in tallies:
        buckets = [(_le(bound), float(count)) for bound, count in tally.cumulative()]
        family.add_metric(list(values), buckets, tally.sum)
    return family


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))
