"""Overload: a gateway pair ramped to 1,024 concurrent clients, and 48 concurrent 9 MiB requests.

Usage: .venv/bin/python bench/overload.py [--seconds 10] [--max-exchanges N] [--wait S]
       [--clients polite|eager] [--no-admission] [--skip-ramp] [--skip-memory] [--repeat N]

Starts a development federation (gateway.dev.federation), gives gw-a and gw-b the admission
caps asked for (and room for 2,048 connections per listener, so that the listener's own cap
does not refuse the clients first), and drives SOAP getPerson through gw-a and gw-b with wrk
at concurrency 8, 16, 32 and 64 (the peak is the best of these), then 256 and 1,024.  Polite
clients (the default) wait as Retry-After says before their next request; eager ones retry at
once, the harshest client there is.  For each run
it prints answered exchanges/s (non-fault answers), the p50, p99 and max time to any answer,
the faults, and gw-a's and gw-b's CPU time per answered exchange (steadier than throughput on
a shared machine); during the 1,024 run a probe sends one request every 0.25 s on a
fresh connection and records its time to an answer or a fault.  From gw-a's /health it reads
the longest any request waited for admission (it must not pass the configured wait) and that
every count is back to zero.  Each ramp ends with a summary line: peak throughput (the best
below 256), throughput and CPU per answer at the top, the slowest probe, the longest time an
admitted and a refused request waited for admission (from its first bytes; the bound is
`--wait`), and gw-a's and gw-b's RSS before the ramp and once it settled; `--repeat N` ramps N
times on freshly restarted gateways and prints each figure's range (a shared machine's figures
vary: compare ranges, with the load average shown).

Then memory: gw-a's and gw-b's RSS before, at the peak of and 5 s after 48 concurrent
requests of 9 MiB each, twice (a heap that keeps what a burst took grows, or stays high,
on the second).

`--no-admission` sets the caps so high that nothing waits: the "before" figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402

from bench.roundtrip import (  # noqa: E402
    GATEWAYS,
    SOAP_REQUEST,
    WRK_SCRIPT,
    _ms,
    gateway_pids,
    process_cpu_seconds,
)
from gateway.dev import federation  # noqa: E402

RAMP = (8, 16, 32, 64, 256, 1024)
PEAK_CONCURRENCIES = (8, 16, 32, 64)
PROBE_INTERVAL_SECONDS = 0.25
PROBE_TIMEOUT_SECONDS = 30.0
BIG_REQUESTS = 48
BIG_BODY_BYTES = 9 * 1024 * 1024
SETTLE_SECONDS = 3.0
IDLE_TIMEOUT_SECONDS = 120.0
RSS_SAMPLE_SECONDS = 0.05
CONNECTIONS = 2048
READY_TIMEOUT_SECONDS = 60.0

# wrk's Lua: the request, and the longest time to an answer, in µs.
EAGER_SCRIPT = (
    WRK_SCRIPT
    + """
done = function(summary, latency, requests)
  io.write(string.format("latency_max_us %d\\n", latency.max))
end
"""
)
# ... and clients that honour Retry-After: wrk calls `response` with each answer and `delay`
# when a connection is about to send its next request, but tells neither which connection it
# is; so each refusal's pause is queued and the next request of the thread to come waits it:
# as many requests are held back, as long, as there were refusals.
POLITE_SCRIPT = (
    EAGER_SCRIPT
    + """
local pauses = {{}}
response = function(status, headers, body)
  local after = headers["Retry-After"]
  if after ~= nil then table.insert(pauses, tonumber(after) * 1000) end
end
delay = function()
  if #pauses > 0 then return table.remove(pauses, 1) end
  return 0
end
"""
)


@dataclass
class Run:
    concurrency: int
    answered_per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    faults: int
    total: int
    cpu_ms_per_answer: float
    """gw-a's and gw-b's CPU time per answered exchange: steadier than throughput on a shared machine."""
    cpu_share: float
    """gw-a's and gw-b's CPU seconds per second of the run (2.0: both cores all the time)."""
    listen_overflows: int
    """Connections the machine's accept queues dropped during the run (any process's)."""
    probes_ms: list[float] = field(default_factory=list)


def wrk(url: str, script: Path, concurrency: int, seconds: int, pids: tuple[int, ...] = ()) -> Run:
    """One wrk run; with `pids`, those processes' CPU time per answered exchange."""
    threads = 2 if concurrency > 1 else 1
    cpu_before = sum(process_cpu_seconds(pid) for pid in pids)
    overflows_before = listen_overflows()
    out = subprocess.run(
        [
            *("wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "30s", "--latency"),
            *("-s", str(script), url),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    ).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    duration = _ms(*re.search(r"requests in ([\d.]+)(us|ms|s)", out).groups()) / 1000  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    faults = int(non2xx.group(1)) if non2xx else 0
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    latency_max = re.search(r"latency_max_us (\d+)", out)
    cpu = sum(process_cpu_seconds(pid) for pid in pids) - cpu_before
    answered = total - faults
    return Run(
        concurrency,
        (total - faults) / duration,
        _ms(*p50.groups()) if p50 else float("nan"),
        _ms(*p99.groups()) if p99 else float("nan"),
        int(latency_max.group(1)) / 1000 if latency_max else float("nan"),
        faults,
        total,
        cpu * 1000 / answered if pids and answered else float("nan"),
        cpu / duration,
        listen_overflows() - overflows_before,
    )


def listen_overflows() -> int:
    """The machine's count of connections its listeners' accept queues had no room for (a client
    then waits for TCP to retransmit, 1, 3, 7 s: seconds that no gateway figure shows)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split(), values.split(), strict=True)).get("ListenOverflows", 0))
    return 0


def probe(url: str, body: bytes, stop: threading.Event, times_ms: list[float]) -> None:
    """One request on a fresh connection every interval; its time to any answer (fault or not)."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    head = (
        f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/xml; charset=UTF-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    while not stop.wait(PROBE_INTERVAL_SECONDS):
        started = time.perf_counter()
        try:
            with socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_SECONDS) as sock:
                sock.sendall(head + body)
                if not sock.recv(12):
                    continue
        except OSError:
            times_ms.append(float("inf"))
            continue
        times_ms.append((time.perf_counter() - started) * 1000)


def sample_gate(gw: dict[str, Any], stop: threading.Event, samples: list[tuple[int, int]]) -> None:
    """gw-a's internal gate every interval: (exchanges in use, waiting); a gate that is not kept
    full while clients are sent away loses throughput to the clients' absence, not to work."""
    while not stop.wait(PROBE_INTERVAL_SECONDS * 2):
        gate = ((federation.gateway_health(gw) or {}).get("admission") or {}).get("internal") or {}
        if "in_use" in gate:
            samples.append((gate["in_use"], gate["waiting"]))


def limits_table(args: argparse.Namespace) -> str:
    if args.no_admission:
        exchanges, wait = 1_000_000, 3600.0
        budget = 64 * 1024**3
    else:
        exchanges, wait, budget = args.max_exchanges, args.wait, args.body_budget
    return (
        f"[limits]\nmax_connections = {CONNECTIONS}\nmax_exchanges = {exchanges}\n"
        f"admission_wait_seconds = {wait}\nmax_body_bytes_in_flight = {budget}\n"
    )


def configure(fed: Path, description: dict[str, Any], table: str) -> None:
    """Restart gw-a and gw-b with `table` as the head of their [limits] ("": as they are)."""
    for gw in description["gateways"]:
        if gw["name"] not in GATEWAYS:
            continue
        if table:
            config = Path(gw["config"])
            config.write_text(config.read_text().replace("[limits]\n", table, 1))
        federation.stop_process(fed, gw["name"])
        federation.start_process(fed, gw["name"])
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    for gw in description["gateways"]:
        if gw["name"] in GATEWAYS:
            while not _ready(gw):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{gw['name']} did not come back")
                time.sleep(0.2)


def _ready(gw: dict[str, Any]) -> bool:
    health = federation.gateway_health(gw)
    return (
        health is not None
        and health["globalconf"]["version"] is not None
        and bool((health.get("ocsp") or {}).get("ready"))
    )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _sample_peaks(pids: tuple[int, ...], peak: list[float], done: threading.Event) -> None:
    while not done.wait(RSS_SAMPLE_SECONDS):
        for i, pid in enumerate(pids):
            peak[i] = max(peak[i], rss_mb(pid))


async def big_burst(url: str, body: bytes) -> list[str]:
    """Each answer's HTTP status and, for a fault, its code."""
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def one() -> str:
            async with session.post(url, data=body, headers={"Content-Type": "text/xml"}) as response:
                code = re.search(rb"<faultcode>(?:\w+:)?([^<]+)</faultcode>", await response.read())
                return f"{response.status} {code.group(1).decode()}" if code else str(response.status)

        return list(await asyncio.gather(*(one() for _ in range(BIG_REQUESTS))))


def wait_idle(gateways: list[dict[str, Any]]) -> None:
    """Until no exchange is held or waiting on the gateways (a peer may still work on one its
    consumer gave up on), then SETTLE_SECONDS more."""
    deadline = time.monotonic() + IDLE_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        admissions = [(federation.gateway_health(gw) or {}).get("admission") or {} for gw in gateways]
        if all(
            gate.get("in_use") == 0 and gate.get("waiting") == 0
            for admission in admissions
            for gate in admission.values()
            if isinstance(gate, dict)
        ):
            break
        time.sleep(0.5)
    time.sleep(SETTLE_SECONDS)


def memory_test(url: str, pids: tuple[int, ...], gateways: list[dict[str, Any]]) -> list[dict[str, Any]]:
    pad = "A" * BIG_BODY_BYTES
    body = SOAP_REQUEST.replace("</pr:personalCode>", f"</pr:personalCode><!-- {pad} -->").encode()
    rounds = []
    for round_no in (1, 2):
        before = [rss_mb(pid) for pid in pids]
        peak = list(before)
        done = threading.Event()
        sampler = threading.Thread(target=_sample_peaks, args=(pids, peak, done), daemon=True)
        sampler.start()
        started = time.monotonic()
        statuses = asyncio.run(big_burst(url, body))
        elapsed = time.monotonic() - started
        done.set()
        sampler.join()
        wait_idle(gateways)
        after = [rss_mb(pid) for pid in pids]
        rounds.append(
            {
                "round": round_no,
                "seconds": round(elapsed, 1),
                "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
                **{
                    name: {"before": round(b), "peak": round(p), "after": round(a)}
                    for name, b, p, a in zip(GATEWAYS, before, peak, after, strict=True)
                },
            }
        )
        print(json.dumps(rounds[-1]), flush=True)
    return rounds


def ramp(
    args: argparse.Namespace,
    fed: Path,
    url: str,
    script: Path,
    gw_a: dict[str, Any],
    pair: list[dict[str, Any]],
) -> dict[str, Any]:
    """One ramp: a run per concurrency, the probe during the last; its figures as a dict."""
    pids = gateway_pids(fed)
    wrk(url, script, 8, 2)  # warm connections and caches
    rss_before = [round(rss_mb(pid)) for pid in pids]
    runs = []
    gate_means = (float("nan"), float("nan"))
    for concurrency in args.ramp:
        probes: list[float] = []
        stop = threading.Event()
        prober = threading.Thread(target=probe, args=(url, SOAP_REQUEST.encode(), stop, probes))
        gate: list[tuple[int, int]] = []
        sampler = threading.Thread(target=sample_gate, args=(gw_a, stop, gate))
        if concurrency == args.ramp[-1]:
            prober.start()
            sampler.start()
        run = wrk(url, script, concurrency, args.seconds, pids)
        stop.set()
        for thread in (prober, sampler):
            if thread.is_alive():
                thread.join()
        run.probes_ms = probes
        if gate:
            in_use = statistics.mean(g[0] for g in gate)
            waiting = statistics.mean(g[1] for g in gate)
            gate_means = (round(in_use, 1), round(waiting, 1))
            print(f"  gw-a internal gate: mean in use {in_use:.1f}, mean waiting {waiting:.1f}", flush=True)
        runs.append(run)
        print(
            f"c={run.concurrency:>5} answered/s={run.answered_per_second:>7.0f} "
            f"p50={run.p50_ms:>8.1f} ms p99={run.p99_ms:>8.1f} ms max={run.max_ms:>8.1f} ms "
            f"faults={run.faults}/{run.total} cpu/answer={run.cpu_ms_per_answer:.2f} ms "
            f"cpu/s={run.cpu_share:.2f} listen overflows={run.listen_overflows}"
            + (f" probe max={max(probes):.0f} ms n={len(probes)}" if probes else ""),
            flush=True,
        )
    load = os.getloadavg()[0]
    admission = (federation.gateway_health(gw_a) or {}).get("admission") or {}
    wait_idle(pair)
    rss_after = [round(rss_mb(pid)) for pid in pids]
    lower = [r for r in runs if r.concurrency in PEAK_CONCURRENCIES] or runs[:-1]
    peak = max(r.answered_per_second for r in lower)
    top = runs[-1]
    internal = admission.get("internal") or {}
    figures = {
        "load_average_1min": round(load, 1),
        "peak_answered_per_second": round(peak),
        "top_answered_per_second": round(top.answered_per_second),
        "throughput_top_vs_peak": round(top.answered_per_second / peak, 3),
        "cpu_per_answer_top_vs_best": round(
            top.cpu_ms_per_answer / min(r.cpu_ms_per_answer for r in lower), 3
        ),
        "top_p50_p99_max_ms": [round(top.p50_ms), round(top.p99_ms), round(top.max_ms)],
        "top_gate_mean_in_use_waiting": gate_means,
        "top_cpu_share_vs_peak_run": round(
            top.cpu_share / max(lower, key=lambda r: r.answered_per_second).cpu_share, 2
        ),
        "top_listen_overflows": top.listen_overflows,
        "probe_max_ms": round(max(top.probes_ms), 1) if top.probes_ms else None,
        "probes_within_1s": f"{sum(p < 1000 for p in top.probes_ms)}/{len(top.probes_ms)}",
        "longest_admitted_wait_s": internal.get("longest_admitted_wait_seconds"),
        "longest_refused_wait_s": internal.get("longest_refused_wait_seconds"),
        "refused": internal.get("refused"),
        "refused_at_once": internal.get("refused_at_once"),
        "waited_past_bound": f"{internal.get('past_bound')}/{internal.get('queued')}",
        "rss_mb_before_after": {
            name: [b, a] for name, b, a in zip(GATEWAYS, rss_before, rss_after, strict=True)
        },
        "runs": [r.__dict__ for r in runs],
    }
    print(json.dumps({k: v for k, v in figures.items() if k != "runs"}), flush=True)
    return figures


def summarise(rounds: list[dict[str, Any]], bound: float) -> None:
    """Each figure's range over the rounds."""

    def span(key: str) -> str:
        values = [r[key] for r in rounds if isinstance(r[key], int | float)]
        return f"{min(values):g}-{max(values):g}" if values else "-"

    print(f"over {len(rounds)} rounds (load average {span('load_average_1min')}):")
    print(f"  peak answered/s {span('peak_answered_per_second')}; at top {span('top_answered_per_second')}")
    print(f"  throughput at top vs peak {span('throughput_top_vs_peak')}")
    print(f"  CPU per answer at top vs best {span('cpu_per_answer_top_vs_best')}")
    within = [r["probes_within_1s"] for r in rounds]
    print(f"  probe slowest {span('probe_max_ms')} ms (within 1 s: {within})")
    print(
        f"  longest wait (bound {bound:g} s): admitted {span('longest_admitted_wait_s')} s, "
        f"refused {span('longest_refused_wait_s')} s; of those that waited, past the bound: "
        f"{[r['waited_past_bound'] for r in rounds]}"
    )
    print(f"  listen overflows during the top run: {[r['top_listen_overflows'] for r in rounds]}")
    print(f"  RSS MB before/after: {[r['rss_mb_before_after'] for r in rounds]}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--max-exchanges", type=int, default=32)
    parser.add_argument(
        "--clients",
        choices=("polite", "eager"),
        default="polite",
        help="polite clients wait as Retry-After says; eager ones retry at once",
    )
    parser.add_argument("--wait", type=float, default=0.5)
    parser.add_argument("--body-budget", type=int, default=128 * 1024 * 1024)
    parser.add_argument("--no-admission", action="store_true")
    parser.add_argument("--skip-ramp", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--repeat", type=int, default=1, help="ramps, each on freshly restarted gateways")
    parser.add_argument(
        "--ramp", type=int, nargs="+", default=list(RAMP), help="concurrencies, the largest last"
    )
    parser.add_argument("--dir", type=Path, default=None, help="federation directory (default: a temp dir)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed (apt-get install wrk)")

    work = args.dir or Path(tempfile.mkdtemp(prefix="xgate-overload-"))
    fed = work / "federation"
    description = federation.up(fed)
    result: dict[str, Any] = {"limits": limits_table(args), "clients": args.clients}
    try:
        configure(fed, description, limits_table(args))
        gw_a = next(gw for gw in description["gateways"] if gw["name"] == "gw-a")
        url = gw_a["internal_http_url"] + "/"
        body_file = work / "request.xml"
        body_file.write_text(SOAP_REQUEST)
        script = work / "post.lua"
        lua = POLITE_SCRIPT if args.clients == "polite" else EAGER_SCRIPT
        script.write_text(lua.format(body=body_file))
        pair = [gw for gw in description["gateways"] if gw["name"] in GATEWAYS]
        if not args.skip_ramp:
            rounds = []
            for round_no in range(1, args.repeat + 1):
                if round_no > 1:
                    configure(fed, description, "")  # fresh counts: the longest waits are kept per process
                rounds.append(ramp(args, fed, url, script, gw_a, pair))
            result["ramp"] = rounds
            summarise(rounds, args.wait)
        if not args.skip_memory:
            result["memory"] = memory_test(url, gateway_pids(fed), pair)
        result["gw_a_admission_final"] = (federation.gateway_health(gw_a) or {}).get("admission")
    finally:
        federation.down(fed)
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
