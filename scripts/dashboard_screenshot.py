"""Makes docs/images/dashboard.png: the dashboard's panels over real metrics of a running federation.

1. `xgate federation up` in a temporary directory, with the demo's cache policies on gw-a;
2. a real Prometheus (Debian's `prometheus` package) scraping every gateway's `metrics_url`
   from federation.json every 5 s;
3. traffic for `--minutes`: SOAP getPerson and REST benefits calls through gw-a, a call to a
   service that does not exist every two seconds (a fault), and gw-b stopped for a stretch in
   the middle (gw-a answers getPerson from its cache, stale; its circuit opens);
4. scripts/dashboard_snapshot.py draws docs/grafana-dashboard.json's panels from that
   Prometheus, and headless Chromium (Debian's `chromium`) screenshots the page.

Usage: .venv/bin/python scripts/dashboard_screenshot.py [--minutes 8] [--out docs/images/dashboard.png]
Needs: apt-get install -y prometheus chromium
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.roundtrip import SOAP_REQUEST  # noqa: E402
from gateway.dev import federation  # noqa: E402

PROMETHEUS_PORT = 9590
MISSING_SERVICE_REQUEST = SOAP_REQUEST.replace("getPerson", "noSuchService")
BENEFITS_PATH = "/r1/DEV/GOV/1003/benefits/benefits/benefits/38001085718"


def prometheus_config(description: dict[str, Any]) -> str:
    targets = []
    for gw in description["gateways"]:
        url = urlsplit(gw["metrics_url"])
        # `instance` named after the gateway, so the panels' legends say gw-a rather than a port.
        targets.append(f'      - targets: ["{url.netloc}"]\n        labels: {{instance: "{gw["name"]}"}}')
    return (
        "global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n"
        "scrape_configs:\n  - job_name: xgate\n    static_configs:\n" + "\n".join(targets) + "\n"
    )


@contextlib.contextmanager
def prometheus(work: Path, description: dict[str, Any]) -> Iterator[str]:
    config = work / "prometheus.yml"
    config.write_text(prometheus_config(description))
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={work / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(work / "prometheus.log").open("w"),
    )
    try:
        yield f"http://127.0.0.1:{PROMETHEUS_PORT}"
    finally:
        process.terminate()
        process.wait(30)


def traffic(internal_url: str, stop: threading.Event) -> list[threading.Thread]:
    """A few clients at a modest pace: the machine is shared, the point is shapes, not peaks."""
    headers = {"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": '""'}
    rest_headers = {"X-Road-Client": "DEV/GOV/1001/benefits-office"}

    def soap_client() -> None:
        while not stop.is_set():
            body = SOAP_REQUEST.replace("bench-0001", str(uuid.uuid4())).encode()  # a fresh id: no replay
            with contextlib.suppress(requests.RequestException):
                requests.post(internal_url + "/", data=body, headers=headers, timeout=10)
            stop.wait(0.05)

    def rest_client() -> None:
        while not stop.is_set():
            with contextlib.suppress(requests.RequestException):
                requests.get(internal_url + BENEFITS_PATH, headers=rest_headers, timeout=10)
            stop.wait(0.5)

    def faulty_client() -> None:
        while not stop.is_set():
            with contextlib.suppress(requests.RequestException):
                body = MISSING_SERVICE_REQUEST.replace("bench-0001", str(uuid.uuid4())).encode()
                requests.post(internal_url + "/", data=body, headers=headers, timeout=10)
            stop.wait(2)

    threads = [threading.Thread(target=soap_client, daemon=True) for _ in range(3)]
    threads += [threading.Thread(target=rest_client, daemon=True), threading.Thread(target=faulty_client)]
    for thread in threads:
        thread.start()
    return threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=8)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "dashboard.png")
    args = parser.parse_args()
    for tool in ("prometheus", "chromium"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed: apt-get install -y prometheus chromium")
    work = Path(tempfile.mkdtemp(prefix="xgate-dashboard-"))
    fed = work / "federation"
    description = federation.up(fed)
    try:
        federation.set_demo_cache_policies(description)
        gw_a = next(gw for gw in description["gateways"] if gw["name"] == "gw-a")
        with prometheus(work, description) as prometheus_url:
            stop = threading.Event()
            threads = traffic(gw_a["internal_http_url"], stop)
            seconds = args.minutes * 60
            time.sleep(seconds * 0.45)
            print("stopping gw-b (gw-a answers from its cache)", flush=True)
            federation.stop_process(fed, "gw-b")
            time.sleep(seconds * 0.2)
            print("starting gw-b again", flush=True)
            federation.start_process(fed, "gw-b")
            time.sleep(seconds * 0.35)
            stop.set()
            for thread in threads:
                thread.join(15)
            time.sleep(6)  # one more scrape
            page = work / "dashboard.html"
            subprocess.run(
                [
                    sys.executable,
                    str(REPO / "scripts" / "dashboard_snapshot.py"),
                    f"--prometheus={prometheus_url}",
                    f"--minutes={args.minutes}",
                    "--rate-interval=30s",
                    f"--out={page}",
                ],
                check=True,
            )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--screenshot={args.out.resolve()}",
                "--window-size=1360,1900",
                page.as_uri(),
            ],
            check=True,
            timeout=120,
        )
        print(f"wrote {args.out}")
    finally:
        federation.down(fed)


if __name__ == "__main__":
    main()
