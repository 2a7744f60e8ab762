"""CPU per exchange with Prometheus metrics on and off, in one process: a figure a busy machine
does not blur as much as throughput.

Usage: .venv/bin/python bench/metrics_cost.py [--requests 300] [--rounds 5]

Runs the in-process federation (tests/inprocess.py: gw-a and gw-b in this event loop, the
same signatures, verification and message log as processes, no sockets between them) and sends
SOAP getPerson through gw-a -> gw-b one after another, in rounds alternating metrics off (no
exchange observer: the proxy times nothing) and on (each gateway's NodeRegistry observing, and
scraped once per round). Prints the process's CPU time per exchange for each round and the
ratio of the medians. bench/roundtrip.py --monitoring-cost measures throughput with processes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.metrics import NodeRegistry  # noqa: E402
from tests.conftest import KNOWN_PERSON, get_person_request  # noqa: E402
from tests.inprocess import InProcessFederation, inprocess_federation  # noqa: E402

SOAP_HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}


async def cpu_per_exchange(fed: InProcessFederation, requests: int) -> float:
    gw_a = fed["gw-a"]
    body = get_person_request(KNOWN_PERSON)
    started = time.process_time()
    for _ in range(requests):
        answer = await gw_a.post("/", body, SOAP_HEADERS)
        assert answer.status_code == 200, answer.text
    return (time.process_time() - started) / requests


async def main_async(requests: int, rounds: int) -> None:
    directory = Path(tempfile.mkdtemp(prefix="xgate-metrics-cost-")) / "federation"
    async with inprocess_federation(directory) as fed:
        registries = {
            name: NodeRegistry(gateway.runtime, [], max_label_values=200)
            for name, gateway in fed.gateways.items()
        }
        await cpu_per_exchange(fed, 50)  # warm: connections, caches, the first batch windows
        results: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(rounds):
            for enabled in (False, True):
                for name, gateway in fed.gateways.items():
                    gateway.runtime.exchange_observers[:] = [registries[name].exchanges] if enabled else []
                cpu = await cpu_per_exchange(fed, requests)
                if enabled:
                    for registry in registries.values():
                        registry.exposition()
                results[enabled].append(cpu)
                print(
                    f"metrics {'on ' if enabled else 'off'}: {cpu * 1e6:8.0f} µs CPU per exchange", flush=True
                )
    on, off = statistics.median(results[True]), statistics.median(results[False])
    print(
        f"median CPU per exchange (both gateways and the service, one process): on {on * 1e6:.0f} µs, "
        f"off {off * 1e6:.0f} µs, on/off = {on / off:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main_async(args.requests, args.rounds))


if __name__ == "__main__":
    main()
