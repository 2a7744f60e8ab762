"""Fault compatibility (issue 17, build item 5): SOAP fault status and fault code style per gateway.

X-Road 7.8's client proxy answers a SOAP fault with HTTP 200 and writes its codes in lower snake
case (`server.clientproxy.unknown_member`); older X-Road and xgate before the setting answer 500
with CamelCase. Defaults follow X-Road 7.8; the dev federation pins the legacy form (its other
tests read CamelCase), so the in-process tests here set each gateway's table themselves.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner, Result

from gateway import faults
from gateway.cli import main as xgate
from gateway.config import ConfigError, load_config
from gateway.faults import LEGACY_COMPAT, FaultCompat, XRoadFault
from gateway.protocol.rest import rest_error_status
from gateway.proxy.answers import rest_fault_answer, soap_fault_answer
from gateway.serverconf.access import AccessRight
from gateway.xmlsafe import parse_xml
from tests.conftest import (
    BENEFITS,
    BENEFITS_API,
    CONSUMER,
    KNOWN_PERSON,
    LIST_PERSONS,
    POPULATION,
    POPULATION_NS,
    SOAP_ENV_NS,
    get_person_request,
    rest_headers,
    soap_request,
)
from tests.inprocess import Gateway, inprocess_federation
from tests.test_peer_answers import last_response_logged

DOCS = Path(__file__).resolve().parents[1] / "docs" / "compatibility.md"
SOAP_HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
LEGACY_TABLE = 'soap_fault_status = 500\nfault_code_style = "legacy"'


def fault_of(response: requests.Response) -> tuple[str, str]:
    """(faultcode, faultDetail) of a SOAP fault answer, whatever its HTTP status."""
    fault = parse_xml(response.content).find(f"{{{SOAP_ENV_NS}}}Body/{{{SOAP_ENV_NS}}}Fault")
    assert fault is not None, response.text[:500]
    return fault.findtext("faultcode") or "", fault.findtext("detail/faultDetail") or ""


def last_logged_outcome(gateway: Gateway) -> str:
    return last_response_logged(gateway).outcome


# --- the two spellings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "xroad_78"),
    [
        (faults.UNKNOWN_MEMBER, "server.clientproxy.unknown_member"),
        (faults.ACCESS_DENIED, "server.serverproxy.access_denied"),
        (faults.MISSING_HEADER, "client.missing_header"),
        (faults.SSL_AUTHENTICATION_FAILED, "server.clientproxy.ssl_authentication_failed"),
        (faults.OUTDATED_GLOBALCONF, "server.clientproxy.global_conf_outdated"),
        (faults.TIMESTAMPER_FAILED, "server.clientproxy.logging_failed.timestamper_failed"),
        (faults.SERVICE_FAILED_HTTP_ERROR, "server.serverproxy.service_failed.http_error"),
        (faults.INVALID_XML, "client.invalid_xml"),
    ],
)
def test_xroad_78_spelling_of_known_codes(code: str, xroad_78: str) -> None:
    assert faults.styled(code, "xroad-7.8") == xroad_78
    assert faults.styled(code, "legacy") == code
    assert faults.canonical(xroad_78) == code


def test_every_code_reads_back_from_either_spelling() -> None:
    codes = faults.all_codes().values()
    assert len(set(codes)) == len(codes), "two constants name one code"
    for code in codes:
        assert faults.canonical(code) == code
        assert faults.canonical(faults.snake_case(code)) == code
        assert faults.canonical(code.upper()) == code, "peers' codes compare case-insensitively"


def test_unknown_codes_and_services_own_codes() -> None:
    assert faults.canonical("server.serverproxy.database_error") == "Server.ServerProxy.DatabaseError"
    assert faults.canonical("SOAP-ENV:Server") == "SOAP-ENV:Server"
    assert faults.styled("SOAP-ENV:Client", "xroad-7.8") == "SOAP-ENV:Client", "a service's code is its own"


# --- the edge that writes them --------------------------------------------------------------


def test_soap_fault_answer_in_each_setting() -> None:
    fault = XRoadFault(faults.UNKNOWN_MEMBER, "who?")

    new = soap_fault_answer(fault, FaultCompat())
    old = soap_fault_answer(fault, LEGACY_COMPAT)

    assert new.status == 200 and new.content_type == "text/xml; charset=UTF-8"
    assert b"<faultcode>server.clientproxy.unknown_member</faultcode>" in new.body
    assert old.status == 500 and b"<faultcode>Server.ClientProxy.UnknownMember</faultcode>" in old.body
    assert fault.code == faults.UNKNOWN_MEMBER, "the fault itself (what the log records) stays canonical"
    assert fault.detail.encode() in new.body and fault.detail.encode() in old.body


def test_rest_fault_answer_styles_header_and_body_not_status() -> None:
    fault = XRoadFault(faults.OUTDATED_GLOBALCONF, "old")

    new = rest_fault_answer(fault, None, FaultCompat())
    xml = rest_fault_answer(fault, "application/xml", FaultCompat())
    old = rest_fault_answer(fault, None, LEGACY_COMPAT)

    assert dict(new.headers)["X-Road-Error"] == "server.clientproxy.global_conf_outdated"
    assert b'"type": "server.clientproxy.global_conf_outdated"' in new.body
    assert b"<type>server.clientproxy.global_conf_outdated</type>" in xml.body
    assert dict(old.headers)["X-Road-Error"] == faults.OUTDATED_GLOBALCONF
    assert new.status == old.status == rest_error_status(faults.OUTDATED_GLOBALCONF)


# --- configuration --------------------------------------------------------------------------


def init_node(directory: Path) -> Result:
    args = ["gateway", "init", str(directory), "--server-id", "DEV/GOV/1001/gw-x", "--member", "DEV/GOV/1001"]
    return CliRunner().invoke(xgate, args)


def test_a_fresh_gateway_init_file_follows_xroad_78(tmp_path: Path) -> None:
    directory = tmp_path / "node"
    result = CliRunner().invoke(
        xgate,
        ["gateway", "init", str(directory), "--server-id", "DEV/GOV/1001/gw-x", "--member", "DEV/GOV/1001"],
    )
    assert result.exit_code == 0, result.output

    text = (directory / "gateway.toml").read_text()
    config = load_config(directory / "gateway.toml")

    assert "[compatibility]" in text and 'fault_code_style = "xroad-7.8"' in text
    assert config.compat == FaultCompat(200, "xroad-7.8") == FaultCompat()
    assert faults.DEFAULT_FAULT_STYLE == "xroad-7.8" and faults.DEFAULT_SOAP_FAULT_STATUS == 200


@pytest.mark.parametrize(
    ("table", "key"),
    [("soap_fault_status = 404", "soap_fault_status"), ('fault_code_style = "snake"', "fault_code_style")],
)
def test_a_wrong_setting_is_named(tmp_path: Path, table: str, key: str) -> None:
    directory = tmp_path / "node"
    CliRunner().invoke(
        xgate,
        ["gateway", "init", str(directory), "--server-id", "DEV/GOV/1001/gw-x", "--member", "DEV/GOV/1001"],
    )
    path = directory / "gateway.toml"
    text = path.read_text()
    path.write_text(re.sub(rf"^{key} = .*$", table, text, flags=re.MULTILINE))

    with pytest.raises(ConfigError, match=f"compatibility.{key}"):
        load_config(path)


# --- through the gateways -------------------------------------------------------------------


async def test_clients_see_xroad_78_faults_by_default_and_the_log_keeps_the_canonical_code(
    tmp_path: Path,
) -> None:
    """gw-a with the defaults: its own faults as X-Road 7.8's client proxy writes them."""
    async with inprocess_federation(tmp_path / "fed", compatibility={"gw-a": ""}) as fed:
        # gw-c's subsystem is a member of the federation, but gw-a does not host it.
        soap = await fed["gw-a"].post("/", get_person_request(KNOWN_PERSON, client=BENEFITS), SOAP_HEADERS)
        outcome = last_logged_outcome(fed["gw-a"])
        rest = await fed["gw-a"].request(
            "GET",
            f"/r1/{BENEFITS_API.to_text()}/benefits/{KNOWN_PERSON}",
            headers=rest_headers(client=BENEFITS),
        )

    assert soap.status_code == 200, soap.text[:300]
    assert soap.headers["Content-Type"] == "text/xml; charset=UTF-8"
    code, detail = fault_of(soap)
    assert code == "server.clientproxy.unknown_member" and detail
    assert outcome == faults.UNKNOWN_MEMBER
    assert rest.headers["X-Road-Error"] == "server.clientproxy.unknown_member"
    assert rest.json()["type"] == "server.clientproxy.unknown_member"
    assert rest.status_code == rest_error_status(faults.UNKNOWN_MEMBER)


async def test_a_legacy_consumer_understands_an_xroad_78_provider(tmp_path: Path) -> None:
    """gw-b (provider) writes X-Road 7.8 codes; gw-a (consumer, legacy) passes the signed fault on as
    the provider wrote it, with its own status, and logs the canonical code."""
    compatibility = {"gw-a": LEGACY_TABLE, "gw-b": "", "gw-c": ""}
    async with inprocess_federation(tmp_path / "fed", compatibility=compatibility) as fed:
        right = AccessRight(CONSUMER, "listPersons", None)
        with fed["gw-b"].serverconf() as repository:
            repository.revoke(POPULATION, right)
        request = soap_request(LIST_PERSONS, f'<pr:listPersons xmlns:pr="{POPULATION_NS}"/>')
        denied = await fed["gw-a"].post("/", request, SOAP_HEADERS)
        outcome = last_logged_outcome(fed["gw-a"])
        with fed["gw-c"].serverconf() as repository:
            repository.revoke(BENEFITS_API.provider, AccessRight(CONSUMER, "benefits", None))
        rest = await fed["gw-a"].request(
            "GET", f"/r1/{BENEFITS_API.to_text()}/benefits/{KNOWN_PERSON}", headers=rest_headers()
        )
        rest_outcome = last_logged_outcome(fed["gw-a"])

    assert denied.status_code == 500
    assert fault_of(denied)[0] == "server.serverproxy.access_denied", "the provider's signed bytes, unchanged"
    assert outcome == faults.ACCESS_DENIED
    assert rest.headers["X-Road-Error"] == "server.serverproxy.access_denied"
    assert rest_outcome == faults.ACCESS_DENIED


# --- the documented table -------------------------------------------------------------------


def code_table() -> str:
    """docs/compatibility.md's table of every fault code, as gateway/faults.py defines them."""
    rows = ["| constant | legacy | xroad-7.8 |", "|---|---|---|"]
    for name, code in sorted(faults.all_codes().items(), key=lambda item: item[1]):
        rows.append(f"| `{name}` | `{code}` | `{faults.snake_case(code)}` |")
    return "\n".join(rows)


def test_the_documented_code_table_is_gateway_faults() -> None:
    text = DOCS.read_text()
    assert code_table() in text, (
        "regenerate: python -c 'from tests.test_fault_compat import code_table as t; print(t())'"
    )
