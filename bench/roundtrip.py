"""Round-trip throughput and latency: a client calling the service directly, and through two
gateways (mutual TLS, batch signing, verification, message log), in the same run.

Usage: .venv/bin/python bench/roundtrip.py [--seconds 8] [--dir DIR] [--cache-only] [--monitoring-cost]
       [--profile-cache FILE] [--workers N] [--workers-only]

Starts a development federation (gateway.dev.federation), then drives SOAP getPerson with wrk
(a C load generator, so the client is not the bottleneck) at concurrency 1 and 32, against
(a) the population-register service itself and (b) gw-a's internal interface, which passes
through gw-b to the same service.  Prints requests/s, p50 and p99 for each, and the ratios
b/a; these machines are noisy, so only ratios from one run mean much.

Then it restarts gw-a and gw-b with their message log off (`[messagelog] enabled = false`),
measures (b) again, and once more with the log back on, and prints what logging costs at
concurrency 32: "logging cost: throughput on/off = X" (the issue's target: X >= 0.85), with
both runs with the log on averaged against the one between them. Beside each run's requests/s
it prints the two gateways' CPU time per request (from /proc): on a shared machine that
figure moves much less than throughput does.

Last, the interface cache's hit path (docs/cache.md): gw-a gets a `fallback` policy for
getPerson, one answer is kept, gw-b (the provider's gateway) is stopped, and (c) gw-a is
measured again at concurrency 1 and 32, every answer now from its cache (the circuit to gw-b
open, so no connection is tried). It prints "cache hit: throughput c/b = X (concurrency 32);
added p50 c = Y ms vs b = Z ms (concurrency 1)" (the issue's targets: X >= 2, Y <= Z), each
with "met" or "NOT met". `--cache-only` skips the message-log runs (the direct and normal paths
are still measured, in the same run, for the cache's ratios). `--monitoring-cost` measures instead
what watching the exchanges costs: concurrency 32 through gw-a and gw-b with Prometheus metrics
(scraped every second, docs/metrics.md), operational monitoring (docs/monitoring.md) and the
access log (docs/logging.md) all on, and all off, three runs each, alternating, and prints
"metrics + monitoring + access log cost: throughput on/off = X" (the issue's target: X >= 0.95).
Each run prints the machine's 1-minute load average beside it: on a shared machine a ratio means
little without it.

`--workers N` restarts gw-a and gw-b as nodes of N worker processes each (gateway.workers)
before measuring; `--workers-only` stops after the direct and two-gateway runs, which is what
docs/deployment.md compares for 1 and 2 workers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.dev import federation  # noqa: E402

_CLIENT = (
    '<xrd:client id:objectType="SUBSYSTEM"><id:xRoadInstance>DEV</id:xRoadInstance>'
    "<id:memberClass>GOV</id:memberClass><id:memberCode>1001</id:memberCode>"
    "<id:subsystemCode>benefits-office</id:subsystemCode></xrd:client>"
)
_SERVICE = (
    '<xrd:service id:objectType="SERVICE"><id:xRoadInstance>DEV</id:xRoadInstance>'
    "<id:memberClass>GOV</id:memberClass><id:memberCode>1002</id:memberCode>"
    "<id:subsystemCode>population</id:subsystemCode><id:serviceCode>getPerson</id:serviceCode>"
    "<id:serviceVersion>v1</id:serviceVersion></xrd:service>"
)
SOAP_REQUEST = f"""<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"
    xmlns:xrd="http://x-road.eu/xsd/xroad.xsd" xmlns:id="http://x-road.eu/xsd/identifiers"
    xmlns:pr="http://xgate.example/population-register">
  <SOAP-ENV:Header>
    {_CLIENT}
    {_SERVICE}
    <xrd:id>bench-0001</xrd:id>
    <xrd:userId>EE38001085718</xrd:userId>
    <xrd:protocolVersion>4.0</xrd:protocolVersion>
  </SOAP-ENV:Header>
  <SOAP-ENV:Body><pr:getPerson><pr:personalCode>38001085718</pr:personalCode></pr:getPerson></SOAP-ENV:Body>
</SOAP-ENV:Envelope>
"""

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "text/xml; charset=UTF-8"
local f = io.open("{body}", "rb")
wrk.body = f:read("*all")
f:close()
"""


GATEWAYS = ("gw-a", "gw-b")
"""The two gateways of the path, whose message log is switched off and on."""

READY_TIMEOUT_SECONDS = 60.0
"""A restarted gateway fetches the configuration and OCSP responses again within seconds."""


@dataclass(frozen=True)
class Run:
    label: str
    concurrency: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_ms_per_request: float = float("nan")  # gw-a and gw-b together
    load: float = float("nan")  # the 1-minute load average when the run ended


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(
    url: str, script: Path, concurrency: int, seconds: int, label: str, pids: tuple[int, ...] = ()
) -> Run:
    """One wrk run; with `pids`, also those processes' CPU time per request."""
    threads = 1 if concurrency == 1 else 2
    cpu_before = sum(process_cpu_seconds(pid) for pid in pids)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        check=True,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total = re.search(r"(\d+) requests in", out)
    cpu = sum(process_cpu_seconds(pid) for pid in pids) - cpu_before
    return Run(
        label,
        concurrency,
        rps,
        _ms(*p50.groups()) if p50 else float("nan"),
        _ms(*p99.groups()) if p99 else float("nan"),
        int(errors.group(1)) if errors else 0,
        cpu * 1000 / int(total.group(1)) if pids and total and int(total.group(1)) else float("nan"),
        os.getloadavg()[0],
    )


def process_cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process, all its threads (proc(5): utime, stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gateway_pids(fed: Path) -> tuple[int, ...]:
    """gw-a's and gw-b's processes: with --workers, each node's parent and its workers."""
    pids = json.loads((fed / "pids.json").read_text())
    nodes = [int(pids[name]) for name in GATEWAYS]
    return tuple(pid for node in nodes for pid in (node, *_children(node)))


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def set_workers(fed: Path, description: dict[str, Any], workers: int) -> None:
    """Restart gw-a and gw-b as nodes of `workers` processes (gateway.workers)."""
    for name in GATEWAYS:
        federation.restart_with_workers(fed, name, workers)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    for gw in description["gateways"]:
        while gw["name"] in GATEWAYS and not _serves(gw, True):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{gw['name']} did not come back with {workers} workers")
            time.sleep(0.2)


def switch_message_log(fed: Path, description: dict[str, Any], enabled: bool) -> None:
    """Restart gw-a and gw-b with `[messagelog] enabled` set, and wait until they serve again."""
    for gw in description["gateways"]:
        if gw["name"] not in GATEWAYS:
            continue
        config = Path(gw["config"])
        text = re.sub(r"(?m)^enabled = (true|false)\n", "", config.read_text())
        switch = f"[messagelog]\nenabled = {'true' if enabled else 'false'}\n"
        config.write_text(text.replace("[messagelog]\n", switch, 1))
        federation.stop_process(fed, gw["name"])
        federation.start_process(fed, gw["name"])
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    for gw in description["gateways"]:
        if gw["name"] in GATEWAYS:
            while not _serves(gw, enabled):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{gw['name']} did not come back with its message log switched")
                time.sleep(0.2)


OBSERVERS_SWITCH = "\n# bench/roundtrip.py: operational monitoring and the access log\n"


def switch_observers(fed: Path, description: dict[str, Any], enabled: bool) -> None:
    """Restart gw-a and gw-b with Prometheus metrics, operational monitoring and the access log all
    on or all off (off: no exchange observer at all, so the proxy does not time exchanges either),
    and wait until they serve again."""
    flag = str(enabled).lower()
    for gw in description["gateways"]:
        if gw["name"] not in GATEWAYS:
            continue
        config = Path(gw["config"])
        text = re.sub(r"(?m)^\[metrics\]\nenabled = (true|false)\n", "[metrics]\n", config.read_text())
        text = text.replace("[metrics]\n", f"[metrics]\nenabled = {flag}\n", 1).split(OBSERVERS_SWITCH, 1)[0]
        tables = f"[monitoring]\nenabled = {flag}\n\n[logging]\naccess_log = {flag}\n"
        config.write_text(f"{text}{OBSERVERS_SWITCH}{tables}")
        federation.stop_process(fed, gw["name"])
        federation.start_process(fed, gw["name"])
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    for gw in description["gateways"]:
        if gw["name"] in GATEWAYS:
            while not _serves(gw, True):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{gw['name']} did not come back with its observers switched")
                time.sleep(0.2)


class Scraper:
    """Scrapes gw-a's and gw-b's /metrics every `interval` seconds while a run lasts, as a Prometheus
    would (15 s is common; 1 s here, to count the scrapes' cost too)."""

    def __init__(self, description: dict[str, Any], interval: float = 1.0) -> None:
        self.urls = [gw["metrics_url"] for gw in description["gateways"] if gw["name"] in GATEWAYS]
        self.interval = interval
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import requests

        while not self._stop.wait(self.interval):
            for url in self.urls:
                requests.get(url, timeout=5).raise_for_status()
                self.scrapes += 1


def observer_runs(fed: Path, description: dict[str, Any], script: Path, url: str, seconds: int) -> list[Run]:
    """Concurrency 32 through gw-a and gw-b with metrics (scraped every second), operational
    monitoring and the access log on, and all off; three runs each, alternating so that the
    machine's drift falls on both alike."""
    runs = []
    for _ in range(3):
        for enabled in (True, False):
            switch_observers(fed, description, enabled)
            wrk(url, script, 4, 2, "warm")
            label = "observers on" if enabled else "observers off"
            if enabled:
                with Scraper(description):
                    runs.append(wrk(url, script, 32, seconds, label, gateway_pids(fed)))
            else:
                runs.append(wrk(url, script, 32, seconds, label, gateway_pids(fed)))
    return runs


def observers_cost(runs: list[Run]) -> dict[str, Any]:
    """Throughput with the observers on against off at concurrency 32 (means of the runs), and each run."""
    on = [r for r in runs if r.label == "observers on"]
    off = [r for r in runs if r.label == "observers off"]
    on_rps = sum(r.requests_per_second for r in on) / len(on)
    off_rps = sum(r.requests_per_second for r in off) / len(off)
    on_cpu = sum(r.cpu_ms_per_request for r in on) / len(on)
    off_cpu = sum(r.cpu_ms_per_request for r in off) / len(off)
    ratio = on_rps / off_rps
    print(
        f"metrics + monitoring + access log cost: throughput on/off = {on_rps:.0f}/{off_rps:.0f} = "
        f"{ratio:.3f} (concurrency 32, "
        f"3 runs each); gateways' CPU per request on/off = {on_cpu:.2f}/{off_cpu:.2f} ms; "
        f"criterion on/off >= 0.95: {_met(ratio >= 0.95)}"
    )
    return {
        "throughput_on_off": ratio,
        "rps_on": [r.requests_per_second for r in on],
        "rps_off": [r.requests_per_second for r in off],
        "cpu_ms_per_request_on": on_cpu,
        "cpu_ms_per_request_off": off_cpu,
        "load": [r.load for r in runs],
    }


def _serves(gw: dict[str, Any], log_enabled: bool) -> bool:
    """The gateway runs on a configuration, with fresh OCSP responses, and its log as asked."""
    health = federation.gateway_health(gw)
    return (
        health is not None
        and health["globalconf"]["version"] is not None
        and bool((health.get("ocsp") or {}).get("ready"))
        and (health.get("messagelog") is not None) == log_enabled
    )


CACHE_POLICY = {
    "bench-population": {
        "service": "DEV/GOV/1002/population/getPerson/v1",
        "mode": "fallback",
        "max_age_seconds": 3600,
    }
}
"""gw-a's policy for the cache-hit path: answer getPerson from the last good answer when gw-b cannot."""


def cache_hit_runs(fed: Path, description: dict[str, Any], script: Path, url: str, seconds: int) -> list[Run]:
    """(c): gw-a answering from its cache with gw-b stopped, at concurrency 1 and 32."""
    from gateway.admin.client import AdminClient

    gw_a = next(gw for gw in description["gateways"] if gw["name"] == "gw-a")
    AdminClient(gw_a["admin_url"], gw_a["api_key"]).apply_cache_policies(CACHE_POLICY)
    wrk(url, script, 1, 1, "warm")  # gw-b up: the answer is kept
    federation.stop_process(fed, "gw-b")
    gw_a_pid = (int(json.loads((fed / "pids.json").read_text())["gw-a"]),)
    wrk(url, script, 4, 2, "warm")  # the circuit to gw-b opens
    return [wrk(url, script, concurrency, seconds, "cache hit", gw_a_pid) for concurrency in (1, 32)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--dir", type=Path, default=None, help="federation directory (default: a temp dir)")
    parser.add_argument(
        "--cache-only",
        action="store_true",
        help="measure the direct, normal and cache-hit paths only (skip the message-log on/off runs)",
    )
    parser.add_argument(
        "--monitoring-cost",
        action="store_true",
        help="measure concurrency 32 through two gateways with metrics, operational monitoring and "
        "the access log on and off only (3 runs each)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes per gateway node (`xgate gateway serve --workers`)",
    )
    parser.add_argument(
        "--workers-only",
        action="store_true",
        help="measure the direct and two-gateway paths only (for comparing --workers 1 and 2)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)

    work = args.dir or Path(tempfile.mkdtemp(prefix="xgate-bench-"))
    body = work / "request.xml"
    fed = work / "federation"
    description = federation.up(fed)
    try:
        if args.workers != 1:
            set_workers(fed, description, args.workers)
        body.write_text(SOAP_REQUEST)
        script = work / "post.lua"
        script.write_text(WRK_SCRIPT.format(body=body))
        direct = description["backends"]["population_register"] + "/population-register"
        gateway_a = (
            next(gw for gw in description["gateways"] if gw["name"] == "gw-a")["internal_http_url"] + "/"
        )
        # Warm both paths (connections, caches) before measuring.
        wrk(direct, script, 4, 2, "warm")
        wrk(gateway_a, script, 4, 2, "warm")
        if args.monitoring_cost:
            runs = observer_runs(fed, description, script, gateway_a, args.seconds)
            _table(runs)
            print(json.dumps({"monitoring_cost": observers_cost(runs)}))
            return
        runs = []
        for concurrency in (1, 32):
            runs.append(wrk(direct, script, concurrency, args.seconds, "direct"))
            runs.append(wrk(gateway_a, script, concurrency, args.seconds, "two gateways", gateway_pids(fed)))
        if args.workers_only:
            pass
        elif not args.cache_only:
            # The log's cost: the same path with the log off, between two runs with it on.
            for enabled, label in ((False, "log off"), (True, "log on again")):
                switch_message_log(fed, description, enabled)
                wrk(gateway_a, script, 4, 2, "warm")
                runs.append(wrk(gateway_a, script, 32, args.seconds, label, gateway_pids(fed)))
        if not args.workers_only:
            runs.extend(cache_hit_runs(fed, description, script, gateway_a, args.seconds))
    finally:
        federation.down(fed)

    _table(runs)
    result: dict[str, Any] = {}
    for concurrency in (1, 32):
        a = next(r for r in runs if r.label == "direct" and r.concurrency == concurrency)
        b = next(r for r in runs if r.label == "two gateways" and r.concurrency == concurrency)
        ratio = b.requests_per_second / a.requests_per_second
        added = b.p50_ms - a.p50_ms
        result[str(concurrency)] = {"ratio": ratio, "added_p50_ms": added}
        print(f"concurrency {concurrency}: throughput ratio b/a = {ratio:.3f}; added p50 = {added:.2f} ms")
    print(f"workers per gateway node: {args.workers}")
    result["workers"] = args.workers
    if args.workers_only:
        print(json.dumps(result))
        return
    if not args.cache_only:
        result["logging_cost"] = logging_cost(runs)
    direct_1 = next(r for r in runs if r.label == "direct" and r.concurrency == 1)
    normal = {r.concurrency: r for r in runs if r.label == "two gateways"}
    cached = {r.concurrency: r for r in runs if r.label == "cache hit"}
    speedup = cached[32].requests_per_second / normal[32].requests_per_second
    cached_added = cached[1].p50_ms - direct_1.p50_ms
    normal_added = normal[1].p50_ms - direct_1.p50_ms
    print(
        f"cache hit: throughput c/b = {speedup:.2f} (concurrency 32); "
        f"added p50 c = {cached_added:.2f} ms vs b = {normal_added:.2f} ms (concurrency 1)"
    )
    print(f"  criterion 1, throughput c/b at concurrency 32 >= 2: {speedup:.2f} {_met(speedup >= 2)}")
    print(
        f"  criterion 2, added p50 at concurrency 1, cache hit <= normal: {cached_added:.2f} ms vs "
        f"{normal_added:.2f} ms {_met(cached_added <= normal_added)}"
    )
    print(
        f"  load average (1 min) at the cache-hit runs: {', '.join(f'{r.load:.2f}' for r in cached.values())}"
    )
    result["cache_hit"] = {
        "throughput_vs_normal_32": speedup,
        "added_p50_ms_1": cached_added,
        "normal_added_p50_ms_1": normal_added,
        "non_2xx": sum(r.errors for r in cached.values()),
        "load": [r.load for r in runs],
    }
    print(json.dumps(result))


def _table(runs: list[Run]) -> None:
    print(
        f"{'path':<14} {'conc':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} "
        f"{'CPU ms/req':>10} {'load':>6}"
    )
    for run in runs:
        print(
            f"{run.label:<14} {run.concurrency:>4} {run.requests_per_second:>9.0f} "
            f"{run.p50_ms:>8.2f} {run.p99_ms:>8.2f} {run.errors:>8} {run.cpu_ms_per_request:>10.2f} "
            f"{run.load:>6.2f}"
        )


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def logging_cost(runs: list[Run]) -> dict[str, float]:
    """Throughput with the log on (both runs averaged) against the run with it off, at concurrency 32."""
    on = [r for r in runs if r.label in ("two gateways", "log on again") and r.concurrency == 32]
    off = next(r for r in runs if r.label == "log off")
    on_rps = sum(r.requests_per_second for r in on) / len(on)
    on_cpu = sum(r.cpu_ms_per_request for r in on) / len(on)
    cost = on_rps / off.requests_per_second
    print(
        f"logging cost: throughput on/off = {cost:.3f} (concurrency 32); "
        f"gateways' CPU per request on/off = {on_cpu:.2f}/{off.cpu_ms_per_request:.2f} ms"
    )
    return {
        "throughput_on_off": cost,
        "cpu_ms_per_request_on": on_cpu,
        "cpu_ms_per_request_off": off.cpu_ms_per_request,
    }


if __name__ == "__main__":
    main()
