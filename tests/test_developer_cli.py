"""`xgate services` and `xgate call`: a developer's first calls, through a real federation.

The commands run through click's CliRunner in this process and talk to gw-a's internal interface
over real HTTP, so every question they ask is a signed, logged exchange across the federation.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner, Result

from gateway.developer_cli import call_command, request_element, services_command
from gateway.resources import descriptions_dir
from tests.conftest import KNOWN_PERSON, Federation

CLIENT = "DEV/GOV/1001/benefits-office"
GET_PERSON = "DEV/GOV/1002/population/getPerson/v1"
BENEFITS = "DEV/GOV/1003/benefits/benefits"
POPULATION_NS = "http://xgate.example/population-register"


def run(command: object, fed: Federation, *args: str, client: str = CLIENT) -> Result:
    env = {"XGATE_GATEWAY_URL": fed.internal_url("gw-a"), "XGATE_CLIENT": client}
    return CliRunner().invoke(command, list(args), env=env, catch_exceptions=False)  # type: ignore[arg-type]


def test_services_lists_what_the_client_may_call_with_how(fed: Federation) -> None:
    result = run(services_command, fed, "--json")
    assert result.exit_code == 0, result.output
    listed = {entry["service"]: entry for entry in json.loads(result.output)}
    assert listed[GET_PERSON]["kind"] == "soap"
    assert listed[BENEFITS]["kind"] == "rest"
    assert {"method": "GET", "path": "/benefits/*"} in listed[BENEFITS]["endpoints"]
    assert listed[BENEFITS]["url"] == f"{fed.internal_url('gw-a')}/r1/DEV/GOV/1003/benefits/benefits"
    table = run(services_command, fed).output
    assert GET_PERSON in table and "How to call one" in table


def test_a_client_not_registered_at_the_gateway_is_told_so(fed: Federation) -> None:
    result = run(services_command, fed, "--json", client="DEV/GOV/1001/nobody")
    assert result.exit_code == 1
    assert "your gateway refused the client" in result.output and "UnknownMember" in result.output


def test_how_to_call_a_rest_service_is_a_curl_line(fed: Federation) -> None:
    result = run(services_command, fed, BENEFITS)
    assert result.exit_code == 0, result.output
    assert (
        f"curl -X GET -H 'X-Road-Client: {CLIENT}' {fed.internal_url('gw-a')}/r1/{BENEFITS}/benefits/VALUE"
        in (result.output)
    )


def test_how_to_call_a_soap_service_names_its_body_element_and_saves_its_wsdl(
    fed: Federation, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    saved = tmp_path / "getPerson.wsdl"
    result = run(services_command, fed, GET_PERSON, "--save-wsdl", str(saved))
    assert result.exit_code == 0, result.output
    assert f'xmlns:m="{POPULATION_NS}"' in result.output and "_soapheaders=headers" in result.output
    assert request_element(saved.read_bytes(), "getPerson") == (POPULATION_NS, "getPerson")
    assert b"127.0.0.1" not in saved.read_bytes()  # getWsdl hides the service's real address


def test_a_service_the_client_may_not_call_is_an_error(fed: Federation) -> None:
    result = run(services_command, fed, "DEV/GOV/1002/population/noSuchService/v1")
    assert result.exit_code != 0
    assert "is not among the services" in result.output


def test_call_rest_shows_the_answer_and_its_log_reference(fed: Federation) -> None:
    result = run(call_command, fed, BENEFITS, f"/benefits/{KNOWN_PERSON}")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("HTTP 200")
    assert "X-Road-Request-Hash: " in result.output and KNOWN_PERSON in result.output
    assert "xgate log search --message-id " in result.output


def test_call_soap_builds_the_envelope(fed: Federation) -> None:
    code = f"<m:personalCode>{KNOWN_PERSON}</m:personalCode>"
    body = f'<m:getPerson xmlns:m="{POPULATION_NS}">{code}</m:getPerson>'
    result = run(call_command, fed, GET_PERSON, "--soap", body)
    assert result.exit_code == 0, result.output
    assert "requestHash: " in result.output and "getPersonResponse" in result.output
    assert "<SOAP-ENV:Header" not in result.output  # the Body's content unless --envelope


def test_a_failed_call_exits_non_zero_with_the_fault(fed: Federation) -> None:
    result = run(call_command, fed, "DEV/GOV/1002/population/getPerson/v1", "--soap", "<not-closed>")
    assert result.exit_code == 2 and "not a well-formed XML element" in result.output
    refused = run(call_command, fed, "DEV/GOV/1003/benefits/nothing", "/x")
    assert refused.exit_code == 1 and "X-Road-Error: " in refused.output


@pytest.mark.parametrize("text", ["DEV/GOV", "not an id"])
def test_a_malformed_client_is_refused_with_the_form_to_use(fed: Federation, text: str) -> None:
    result = run(services_command, fed, client=text)
    assert result.exit_code == 2 and "INSTANCE/CLASS/MEMBER[/SUBSYSTEM]" in result.output


def test_the_example_wsdl_declares_the_body_elements() -> None:
    wsdl = (descriptions_dir() / "population-register.wsdl").read_bytes()
    assert request_element(wsdl, "listPersons") == (POPULATION_NS, "listPersons")
    assert request_element(wsdl, "noSuch") is None


def test_a_table_is_cut_to_the_terminal_from_its_widest_column() -> None:
    from gateway.apicli import format_table

    rows = [{"service": "DEV/GOV/1002/population/getPerson/v1", "kind": "soap", "call": "GET /a, " * 20}]
    columns = (("service", "SERVICE"), ("kind", "KIND"), ("call", "CALL"))
    whole = format_table(rows, columns)
    assert ("GET /a, " * 20).strip() in whole  # piped: nothing is cut
    fitted = format_table(rows, columns, width=80)
    assert max(len(line) for line in fitted.splitlines()) <= 80
    assert "DEV/GOV/1002/population/getPerson/v1" in fitted and "…" in fitted
