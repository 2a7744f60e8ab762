"""X-Road's SOAP habits through a federation of processes (docs/compatibility.md "SOAP").

Real sockets all the way: the client's request line as a proxy client writes it, gw-a to gw-b
over mutual TLS, and gw-b to a service on its own socket that dispatches on SOAPAction.
"""

from __future__ import annotations

import requests

from gateway import faults
from tests.conftest import (
    GET_PERSON,
    HTTP_TIMEOUT_SECONDS,
    KNOWN_PERSON,
    POPULATION_NS,
    Federation,
    assert_soap_fault,
    changed_service,
    get_person_request,
    serving_in_thread,
    soap_body,
)
from tests.test_compat_soap import GET_PERSON_ACTION, SOAP_XML, dispatching_service


def test_soap_action_reaches_a_dispatching_service_through_the_gateway_as_a_proxy(fed: Federation) -> None:
    seen: list[str | None] = []
    with (
        serving_in_thread(dispatching_service(seen), "127.0.0.1", 0) as port,
        changed_service(fed, "gw-b", GET_PERSON, backend_url=f"http://127.0.0.1:{port}/ws"),
    ):
        session = requests.Session()
        session.trust_env = False  # no NO_PROXY from the environment: always through gw-a
        session.proxies = {"http": fed.internal_url("gw-a")}  # requests writes absolute-URI lines
        answers = [
            session.post(
                f"http://127.0.0.1:{port}/ws",  # the provider's original address
                data=get_person_request(KNOWN_PERSON),
                headers={"Content-Type": SOAP_XML, "SOAPAction": action},
                timeout=HTTP_TIMEOUT_SECONDS,
            )
            for action in (GET_PERSON_ACTION, '"urn:other"', "unquoted")
        ]

    found, other, malformed = answers
    person = soap_body(found).find(f"{{{POPULATION_NS}}}person/{{{POPULATION_NS}}}personalCode")
    assert person is not None and person.text == KNOWN_PERSON
    assert b"no operation for SOAPAction" in other.content
    assert_soap_fault(malformed, faults.INVALID_SOAP_ACTION)
    assert seen == [GET_PERSON_ACTION, '"urn:other"']
