"""getSecurityServerOperationalData through the federation (in-process, tests/inprocess.py).

The federation's configuration is signed again naming gw-c's subsystem `benefits` the monitoring
client, and every gateway adopts it. Exchanges leave records on gw-b (the population register's
gateway); then three clients ask gw-b for its operational data through their own gateways, as
X-Road's monitoring clients do: the monitoring client gets every record, the gateway owner's own
subsystem every record, any other client only its own. The answer is X-Road's: a SOAP part with
recordsCount and a cid reference, the records gzipped JSON in the attachment.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import json
import time
import uuid
from pathlib import Path

import pytest
import requests

from gateway import faults
from gateway.crypto.certs import load_certificate_file
from gateway.crypto.keys import load_private_key, write_file_atomically
from gateway.globalconf import globalconf_from_json, sign_globalconf
from gateway.ids import ClientId, ServiceId
from gateway.monitoring.operational import xroad
from gateway.protocol import mime
from gateway.xmlsafe import parse_xml
from tests.conftest import (
    BENEFITS,
    CONSUMER,
    GET_PERSON,
    KNOWN_PERSON,
    POPULATION,
    assert_soap_fault,
    client_xml,
    get_person_body,
    soap_request,
)
from tests.inprocess import Gateway, InProcessFederation

SOAP_HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
OPERATIONAL_DATA = ServiceId("DEV", "GOV", "1002", None, xroad.OPERATIONAL_DATA)
GW_B_SERVER = (
    '<xrd:securityServer id:objectType="SERVER"><id:xRoadInstance>DEV</id:xRoadInstance>'
    "<id:memberClass>GOV</id:memberClass><id:memberCode>1002</id:memberCode>"
    "<id:serverCode>gw-b</id:serverCode></xrd:securityServer>"
)


async def name_monitoring_client(local: InProcessFederation, client: ClientId) -> None:
    """A new version of the signed configuration naming `client`, adopted by every gateway."""
    fed = Path(local.description["dir"])
    path = fed / "globalconf.signed.json"
    content = base64.b64decode(json.loads(path.read_bytes())["content"])
    conf = globalconf_from_json(content)
    assert conf.monitoring_client is None, "configurations without one stay as they were"
    now = dt.datetime.now(dt.UTC)
    newer = dataclasses.replace(conf, version=conf.version + 1, generated_at=now, monitoring_client=client)
    key = load_private_key(fed / "globalconf-signer.key")
    signed = sign_globalconf(newer, key, load_certificate_file(fed / "globalconf-signer.pem"))
    write_file_atomically(path, signed, 0o644)
    for gateway in local.gateways.values():
        adopted = await gateway.runtime.globalconf_source.refresh()
        assert adopted.monitoring_client == client


def request_body(
    records_from: int, records_to: int, *, client: ClientId | None = None, fields: str = ""
) -> str:
    ns = f'xmlns:om="{xroad.OPM_NS}"'
    criteria = f"<om:recordsFrom>{records_from}</om:recordsFrom><om:recordsTo>{records_to}</om:recordsTo>"
    if client is not None:
        criteria += client_xml(client).replace("xrd:client", "om:client")
    spec = f"<om:outputSpec>{fields}</om:outputSpec>" if fields else ""
    name = f"om:{xroad.OPERATIONAL_DATA}"
    return f"<{name} {ns}><om:searchCriteria>{criteria}</om:searchCriteria>{spec}</{name}>"


async def ask(
    gateway: Gateway, requester: ClientId, body: str
) -> tuple[requests.Response, dict[str, str], list[dict[str, object]]]:
    """Ask gw-b for its operational data through `gateway`: the answer, its fields, its records."""
    request = soap_request(OPERATIONAL_DATA, body, client=requester, extra_header=GW_B_SERVER)
    answer = await gateway.post("/", request, SOAP_HEADERS)
    if answer.status_code != 200:
        return answer, {}, []
    package = mime.unpack(answer.content, answer.headers["Content-Type"])
    response = parse_xml(package.soap).find(".//{*}getSecurityServerOperationalDataResponse")
    assert response is not None, answer.text
    fields = {child.tag.split("}")[1]: child.text or "" for child in response}
    (attachment,) = package.attachments
    assert attachment.content_type == "application/gzip"
    assert fields["records"] == f"cid:{attachment.content_id}"
    records = xroad.records_of_answer(attachment.data)
    assert int(fields["recordsCount"]) == len(records)
    return answer, fields, records


@pytest.fixture
async def monitored(local: InProcessFederation) -> dict[str, str]:
    """gw-c's `benefits` is the monitoring client; two exchanges with gw-b by different clients,
    old enough to be answered (xroad.OFFSET_SECONDS)."""
    await name_monitoring_client(local, BENEFITS)
    ids = {"consumer": f"c-{uuid.uuid4()}", "benefits": f"b-{uuid.uuid4()}"}
    await local["gw-a"].post(
        "/", soap_request(GET_PERSON, get_person_body(KNOWN_PERSON), message_id=ids["consumer"]), SOAP_HEADERS
    )
    await local["gw-c"].post(
        "/",
        soap_request(GET_PERSON, get_person_body(KNOWN_PERSON), client=BENEFITS, message_id=ids["benefits"]),
        SOAP_HEADERS,
    )
    await asyncio.sleep(xroad.OFFSET_SECONDS + 1.5)  # written (0.5 s) and past the offset
    return ids


async def test_the_monitoring_client_gets_every_record_in_x_roads_form(
    local: InProcessFederation, monitored: dict[str, str]
) -> None:
    now = int(time.time())
    answer, fields, records = await ask(local["gw-c"], BENEFITS, request_body(now - 600, now + 600))

    assert answer.status_code == 200
    by_id = {record.get("messageId"): record for record in records}
    assert {monitored["consumer"], monitored["benefits"]} <= set(by_id)
    mine = by_id[monitored["consumer"]]
    assert mine["securityServerType"] == "Producer" and mine["serviceType"] == "WSDL"
    assert (mine["clientXRoadInstance"], mine["clientMemberCode"], mine["clientSubsystemCode"]) == (
        "DEV",
        "1001",
        "benefits-office",
    )
    assert (mine["serviceMemberCode"], mine["serviceSubsystemCode"]) == ("1002", "population")
    assert (mine["serviceCode"], mine["serviceVersion"]) == ("getPerson", "v1")
    assert isinstance(mine["requestInTs"], int) and mine["responseOutTs"] >= mine["requestInTs"]
    assert mine["succeeded"] is True and mine["statusCode"] == 200 and mine["requestSize"] > 0
    assert "backend" in mine["xgateSteps"]  # type: ignore[operator]
    # recordsTo was in the future: moved back, and the next query starts after it.
    assert now - xroad.OFFSET_SECONDS - 2 <= int(fields["nextRecordsFrom"]) <= now + 1

    narrow = "<om:outputField>messageId</om:outputField><om:outputField>succeeded</om:outputField>"
    _, _, chosen = await ask(local["gw-c"], BENEFITS, request_body(now - 600, now, fields=narrow))
    assert chosen and all(set(record) <= {"messageId", "succeeded"} for record in chosen)
    _, _, filtered = await ask(local["gw-c"], BENEFITS, request_body(now - 600, now, client=CONSUMER))
    assert {record["messageId"] for record in filtered} == {monitored["consumer"]}


async def test_another_client_gets_only_its_own_records_and_the_owner_all(
    local: InProcessFederation, monitored: dict[str, str]
) -> None:
    now = int(time.time())
    _, _, own = await ask(local["gw-a"], CONSUMER, request_body(now - 600, now))
    assert own and {record["clientSubsystemCode"] for record in own} == {"benefits-office"}
    assert monitored["benefits"] not in {record.get("messageId") for record in own}
    # Naming another client in the criteria does not widen what it sees.
    _, _, other = await ask(local["gw-a"], CONSUMER, request_body(now - 600, now, client=BENEFITS))
    assert other == []

    _, _, everything = await ask(local["gw-b"], POPULATION, request_body(now - 600, now))
    assert {monitored["consumer"], monitored["benefits"]} <= {
        record.get("messageId") for record in everything
    }


async def test_a_malformed_request_is_a_fault(local: InProcessFederation, monitored: dict[str, str]) -> None:
    answer, _, _ = await ask(local["gw-a"], CONSUMER, request_body(200, 100))
    assert_soap_fault(answer, faults.INVALID_BODY)
    answer, _, _ = await ask(
        local["gw-a"], CONSUMER, request_body(0, 100, fields="<om:outputField>secret</om:outputField>")
    )
    assert_soap_fault(answer, faults.INVALID_BODY)
