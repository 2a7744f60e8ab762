"""A few lines a person reads from a node's /metrics text: exchanges and their p50/p95 (sans-IO).

For the demo and quick looks; a dashboard reads the same families through Prometheus
(docs/grafana-dashboard.json). Quantiles are estimated from the histogram buckets the way
PromQL's `histogram_quantile` does: linearly within the bucket that holds the rank.
"""

from __future__ import annotations

from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The q-quantile of cumulative (upper bound, count) buckets ending with +Inf; None if empty."""
    buckets = sorted(buckets)
    total = buckets[-1][1] if buckets else 0
    if total == 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower  # beyond the last bound: its lower edge, as histogram_quantile
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = bound, count
    return lower


def summary(exposition: str) -> list[str]:
    """Per side: exchanges by outcome (faults by code) and the p50/p95 of whole exchanges."""
    outcomes: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "xgate_exchanges_total":
                outcome = labels["outcome"]
                if outcome == "fault":
                    outcome = f"fault {labels['fault_code']}"
                outcomes[labels["side"]][outcome] += sample.value
            elif sample.name == "xgate_exchange_duration_seconds_bucket":
                buckets[labels["side"]][float(labels["le"])] += sample.value
    lines = []
    for side in sorted(outcomes):
        counted = ", ".join(f"{name} {count:g}" for name, count in sorted(outcomes[side].items()))
        lines.append(f"{side} side: {counted}")
        cumulative = sorted(buckets[side].items())
        p50, p95 = quantile(0.5, cumulative), quantile(0.95, cumulative)
        if p50 is not None and p95 is not None:
            lines.append(f"{side} side: p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms")
    return lines
