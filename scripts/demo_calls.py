"""Calls through the demo federation with ordinary clients: zeep for SOAP, curl for REST."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import zeep
from zeep.transports import Transport

REPO = Path(__file__).resolve().parents[1]


def soap_call(gateway_url: str) -> None:
    client = zeep.Client(str(REPO / "wsdl" / "population-register.wsdl"), transport=Transport(timeout=10))
    binding = next(iter(client.wsdl.bindings))
    service = client.create_service(binding, gateway_url)
    headers = {
        "client": {
            "objectType": "SUBSYSTEM",
            "xRoadInstance": "DEV",
            "memberClass": "GOV",
            "memberCode": "1001",
            "subsystemCode": "benefits-office",
        },
        "service": {
            "objectType": "SERVICE",
            "xRoadInstance": "DEV",
            "memberClass": "GOV",
            "memberCode": "1002",
            "subsystemCode": "population",
            "serviceCode": "getPerson",
            "serviceVersion": "v1",
        },
        "id": str(uuid.uuid4()),
        "protocolVersion": "4.0",
        "userId": "EE38001085718",
    }
    result = service.getPerson(personalCode="38001085718", _soapheaders=headers)
    print("SOAP getPerson through gw-a -> gw-b (zeep):")
    print(f"  {result}")


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


def main() -> None:
    federation = json.loads(Path(sys.argv[1]).read_text())
    gateway_a = next(gw for gw in federation["gateways"] if gw["name"] == "gw-a")
    soap_call(gateway_a["internal_http_url"])
    rest_call(gateway_a["internal_http_url"])
    message_log(gateway_a)


if __name__ == "__main__":
    main()
