"""Calls through the demo federation with ordinary clients: zeep for SOAP, curl for REST."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import requests
import zeep
from zeep import Plugin
from zeep.transports import Transport

from gateway.dev import federation as dev_federation
from gateway.developer_cli import zeep_headers
from gateway.ids import ClientId, ServiceId
from gateway.metrics.summary import summary
from gateway.resources import descriptions_dir


class CacheMark(Plugin):  # type: ignore[misc]
    """Keeps the XGate-Cache and Age fields of the last answer: how a zeep client sees the cache."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}

    def ingress(
        self, envelope: object, http_headers: dict[str, str], operation: object
    ) -> tuple[object, object]:
        self.fields = {name: http_headers[name] for name in ("XGate-Cache", "Age") if name in http_headers}
        return envelope, http_headers


def soap_call(gateway_url: str) -> None:
    mark = CacheMark()
    client = zeep.Client(
        str(descriptions_dir() / "population-register.wsdl"), transport=Transport(timeout=10), plugins=[mark]
    )
    binding = next(iter(client.wsdl.bindings))
    service = client.create_service(binding, gateway_url)
    headers = zeep_headers(
        ClientId.from_text("DEV/GOV/1001/benefits-office"),
        ServiceId.from_text("DEV/GOV/1002/population/getPerson/v1"),
        id=str(uuid.uuid4()),
        protocolVersion="4.0",
        userId="EE38001085718",
    )
    result = service.getPerson(personalCode="38001085718", _soapheaders=headers)
    print("SOAP getPerson through gw-a -> gw-b (zeep):")
    print(f"  {result}")
    for name, value in mark.fields.items():
        print(f"  {name}: {value}")


def rest_call(gateway_url: str) -> None:
    url = f"{gateway_url}/r1/DEV/GOV/1003/benefits/benefits/benefits/38001085718"
    print("REST GET through gw-a -> gw-c (curl):")
    print(f"  curl -i -H 'X-Road-Client: DEV/GOV/1001/benefits-office' {url}")
    output = subprocess.run(
        ["curl", "-s", "-i", "-H", "X-Road-Client: DEV/GOV/1001/benefits-office", url],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    print("  " + output.replace("\n", "\n  "))


def message_log(gateway: dict[str, str]) -> None:
    """What gw-a's message log kept, as a security officer asks for it (the query is audited)."""
    print("gw-a's message log (xgate log search):")
    env = {**os.environ, "XGATE_DEMO_API_KEY": gateway["api_key"]}
    xgate = str(Path(sys.executable).with_name("xgate"))
    command = [xgate, "log", "--url", gateway["admin_url"], "--api-key-env", "XGATE_DEMO_API_KEY"]
    output = subprocess.run(
        [*command, "search", "--limit", "4"], check=True, capture_output=True, text=True, env=env, timeout=60
    ).stdout
    print("  " + output.replace("\n", "\n  "))


def cache_demo(description_file: Path, gateway_a: dict[str, str]) -> None:
    """docs/cache.md: gw-b (the civil registry's gateway) stops; both calls are answered from
    gw-a's interface cache, marked (XGate-Cache, Age); gw-b starts again."""
    fed = description_file.parent
    print("Stopping gw-b, the population register's gateway ...")
    dev_federation.stop_process(fed, "gw-b")
    try:
        print("The same calls, answered from gw-a's cache (fallback for getPerson, replica for benefits):")
        soap_call(gateway_a["internal_http_url"])
        rest_call(gateway_a["internal_http_url"])
    finally:
        print("Starting gw-b again ...")
        dev_federation.start_process(fed, "gw-b")


def metrics(gateway: dict[str, str]) -> None:
    """A few of gw-a's Prometheus metrics (docs/metrics.md), read from its metrics_url."""
    url = gateway["metrics_url"]
    print(f"gw-a's metrics (curl {url}):")
    for line in summary(requests.get(url, timeout=10).text):
        print(f"  {line}")


def main() -> None:
    description_file = Path(sys.argv[1])
    federation = json.loads(description_file.read_text())
    gateway_a = next(gw for gw in federation["gateways"] if gw["name"] == "gw-a")
    soap_call(gateway_a["internal_http_url"])
    rest_call(gateway_a["internal_http_url"])
    message_log(gateway_a)
    print()
    cache_demo(description_file, gateway_a)
    print()
    metrics(gateway_a)


if __name__ == "__main__":
    main()
