"""The interface cache with real processes, the provider's gateway up and its backend failing.

gw-a has `fallback` policies for gw-b's getPerson (SOAP, called with zeep) and gw-c's benefits
API (REST, called with requests). Each case first gets good answers (kept), then breaks both
providers' backends one way, with their gateways running:

- the example service processes stopped (nothing listens: connection refused);
- a backend that accepts connections and never answers (gw-b's and gw-c's backend timeout
  shortened for the case);
- a backend answering HTTP 500;
- a backend answering garbage: not XML, or an answer cut short.

Each time the client gets the kept answer, marked (`XGate-Cache`, `Age`, the SOAP header block)
while within max age; the provider's ServiceFailed fault once max age is shortened below the
entry's age; and nothing from the cache once the provider revoked its access. The officer
finds every answer served from the cache with `outcome=cache.*`.

The failing backend is tests/broken_backend.py, a process of its own on the services' ports.
The module runs its own federation, so the records of served copies and failures stay out of
the shared one; its gateways evict expired entries hourly, so an entry whose policy's max age
was shortened for a moment is still there when the max age is long again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import zeep
import zeep.exceptions
from zeep.plugins import HistoryPlugin
from zeep.transports import Transport

from gateway import faults
from gateway.admin.client import AdminClient
from gateway.cache.marking import CACHE_NS, CacheMark, CacheStatus, rfc3339
from gateway.dev import federation
from gateway.protocol.rest import rest_error_status
from tests.broken_backend import SOAP_FAULT_STRING
from tests.conftest import (
    BENEFITS_API,
    CONSUMER,
    GET_PERSON,
    HTTP_TIMEOUT_SECONDS,
    KNOWN_PERSON,
    POPULATION_BINDING,
    POPULATION_WSDL,
    REPO,
    SOAP_ENV_NS,
    Federation,
    assert_rest_error,
    rest_headers,
    rest_url,
    running_federation,
    wait_until,
    zeep_headers,
)
from tests.docblocks import claimed_blocks
from tests.test_docs import reader_env, run_block

SERVICES = ("population_register", "benefits_api")
"""The example services' processes, on gw-b's and gw-c's backend ports."""
LONG_MAX_AGE = 3600.0
SHORT_MAX_AGE = 0.001
"""Below any kept answer's age by the time it is asked for: "beyond max age" without waiting."""
SHORT_BACKEND_TIMEOUT = 0.5


@dataclass(frozen=True)
class Failure:
    """One way for the providers' backends to fail, and what gw-a's client gets beyond max age."""

    mode: str | None
    """tests/broken_backend.py's mode; None: the services are stopped, nothing listens."""
    soap_fault: str
    rest_fault: str | None
    """The REST client's X-Road-Error beyond max age; None: the service's own 500, passed on."""
    rest: bool = True
    """Whether the REST call is part of the case."""
    backend_timeout: float | None = None


FAILURES = {
    "service-stopped": Failure(
        None, faults.SERVICE_FAILED_NETWORK_ERROR, faults.SERVICE_FAILED_NETWORK_ERROR
    ),
    "never-answers": Failure(
        "hang",
        faults.SERVICE_FAILED_TIMEOUT,
        faults.SERVICE_FAILED_TIMEOUT,
        backend_timeout=SHORT_BACKEND_TIMEOUT,
    ),
    "http-500": Failure("http500", faults.SERVICE_FAILED_HTTP_ERROR, None),
    # A REST body is the service's own business: garbage in a 200 is an answer, so only SOAP.
    "not-xml": Failure("garbage", faults.SERVICE_FAILED_INVALID_SOAP, None, rest=False),
    "truncated": Failure(
        "truncated", faults.SERVICE_FAILED_NETWORK_ERROR, faults.SERVICE_FAILED_NETWORK_ERROR
    ),
}


def _policies(max_age: float) -> dict[str, dict[str, Any]]:
    # No breaker: every call reaches the provider, so each case sees its own failure's fault.
    common = {"mode": "fallback", "max_age_seconds": max_age, "breaker": None}
    return {
        "e2e-population": {"service": GET_PERSON.to_text(), **common},
        "e2e-benefits": {"service": BENEFITS_API.to_text(), **common},
    }


@pytest.fixture(scope="module")
def cache_fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    times = dataclasses.replace(federation.DEV_TIMES, cache_maintenance_seconds=3600.0)
    with running_federation(tmp_path_factory.mktemp("cache-failures"), times=times) as running:
        yield running


# --- the clients -----------------------------------------------------------------------------


@dataclass
class SoapAnswer:
    """What zeep made of an answer, and what it received: the HTTP fields and the envelope."""

    result: Any
    fields: requests.structures.CaseInsensitiveDict[str]
    envelope: Any


def get_person(fed: Federation, message_id: str | None = None) -> SoapAnswer:
    """getPerson through gw-a, with zeep reading the service's own WSDL."""
    history = HistoryPlugin()
    transport = Transport(timeout=HTTP_TIMEOUT_SECONDS, operation_timeout=HTTP_TIMEOUT_SECONDS)
    client = zeep.Client(str(POPULATION_WSDL), transport=transport, plugins=[history])
    service = client.create_service(POPULATION_BINDING, fed.internal_url("gw-a"))
    headers = zeep_headers(CONSUMER, GET_PERSON, id=message_id or str(uuid.uuid4()), protocolVersion="4.0")
    result = service.getPerson(personalCode=KNOWN_PERSON, _soapheaders=headers)
    received = history.last_received
    assert received is not None
    return SoapAnswer(result, received["http_headers"], received["envelope"])


def get_person_fault(fed: Federation) -> zeep.exceptions.Fault:
    with pytest.raises(zeep.exceptions.Fault) as raised:
        get_person(fed)
    return raised.value


def get_benefits(fed: Federation, message_id: str | None = None) -> requests.Response:
    """GET /benefits/{code} of the benefits API through gw-a, with an HTTP client."""
    headers = rest_headers(CONSUMER, {"X-Road-Id": message_id} if message_id else None)
    url = rest_url(fed, "gw-a", BENEFITS_API, f"/benefits/{KNOWN_PERSON}")
    return requests.get(url, headers=headers, timeout=HTTP_TIMEOUT_SECONDS)


def stale_mark(fields: Any, original_id: str) -> CacheMark:
    """The answer's XGate-Cache and Age fields: a stale copy of the answer to `original_id`."""
    mark = CacheMark.parse(fields["XGate-Cache"])
    assert mark.status is CacheStatus.STALE and mark.original_id == original_id
    assert fields["Age"] == str(mark.age_seconds)
    return mark


# --- breaking the backends -------------------------------------------------------------------


def _backend_ports(fed: Federation) -> list[str]:
    return [fed.description["backends"][name].rsplit(":", 1)[1] for name in SERVICES]


@contextlib.contextmanager
def shorter_backend_timeouts(
    admin_b: AdminClient, admin_c: AdminClient, seconds: float | None
) -> Iterator[None]:
    """gw-b's getPerson and gw-c's benefits API with backend timeout `seconds` (None: unchanged)."""
    services = ((admin_b, GET_PERSON), (admin_c, BENEFITS_API))
    before = [
        admin.get_service(s.provider.to_text(), s.service_code, s.service_version) for admin, s in services
    ]
    if seconds is not None:
        for admin, s in services:
            admin.set_backend(
                s.provider.to_text(), s.service_code, s.service_version, timeout_seconds=seconds
            )
    try:
        yield
    finally:
        if seconds is not None:
            for (admin, s), old in zip(services, before, strict=True):
                admin.set_backend(
                    s.provider.to_text(),
                    s.service_code,
                    s.service_version,
                    timeout_seconds=old["timeout_seconds"],
                )


@contextlib.contextmanager
def broken_backends(fed: Federation, failure: Failure) -> Iterator[None]:
    """The example services stopped and, unless the failure is just that, a broken backend on their ports."""
    for name in SERVICES:
        federation.stop_process(fed.dir, name)
    process = None
    try:
        if failure.mode is not None:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.broken_backend", failure.mode, *_backend_ports(fed)],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.strip() == "ready", line
        with shorter_backend_timeouts(fed.admin("gw-b"), fed.admin("gw-c"), failure.backend_timeout):
            yield
    finally:
        if process is not None:
            process.terminate()
            process.wait(10)
        for name in SERVICES:
            federation.start_process(fed.dir, name)


@contextlib.contextmanager
def access_revoked(fed: Federation) -> Iterator[None]:
    """The consumer's access rights to getPerson (at gw-b) and the benefits API (at gw-c) revoked."""
    rights = (("gw-b", GET_PERSON), ("gw-c", BENEFITS_API))
    for gateway, service in rights:
        fed.admin(gateway).revoke(
            service.provider.to_text(), service.service_code, CONSUMER.to_text(), "subsystem"
        )
    try:
        yield
    finally:
        for gateway, service in rights:
            fed.admin(gateway).grant(
                service.provider.to_text(), service.service_code, CONSUMER.to_text(), "subsystem"
            )


# --- the cases -------------------------------------------------------------------------------


@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
def test_a_failing_backend_is_answered_from_the_consumers_cache_within_max_age(
    cache_fed: Federation, failure: Failure
) -> None:
    fed = cache_fed
    admin = fed.admin("gw-a")
    admin.apply_cache_policies(_policies(LONG_MAX_AGE))
    soap_id, rest_id = f"fresh-{uuid.uuid4()}", f"fresh-{uuid.uuid4()}"
    asked_at = dt.datetime.now(dt.UTC).replace(microsecond=0)  # stored-at is in whole seconds
    fresh = get_person(fed, soap_id)
    assert fresh.result.body.person.personalCode == KNOWN_PERSON and "XGate-Cache" not in fresh.fields
    fresh_rest = get_benefits(fed, rest_id)
    assert fresh_rest.status_code == 200 and "XGate-Cache" not in fresh_rest.headers

    with broken_backends(fed, failure):
        served_id = f"served-{uuid.uuid4()}"
        cached = get_person(fed, served_id)
        assert cached.result.body.person.personalCode == KNOWN_PERSON
        mark = stale_mark(cached.fields, soap_id)
        block = cached.envelope.find(f"{{{SOAP_ENV_NS}}}Header/{{{CACHE_NS}}}cache")
        assert block is not None
        assert asked_at <= mark.stored_at <= dt.datetime.now(dt.UTC)
        assert (block.get("status"), block.get("originalId"), block.get("age"), block.get("storedAt")) == (
            "stale",
            soap_id,
            str(mark.age_seconds),
            rfc3339(mark.stored_at),
        )
        if failure.rest:
            cached_rest = get_benefits(fed)
            assert cached_rest.status_code == 200 and cached_rest.json()["personalCode"] == KNOWN_PERSON
            stale_mark(cached_rest.headers, rest_id)

        # Beyond max age: the fault the failure produced.
        admin.apply_cache_policies(_policies(SHORT_MAX_AGE))
        assert get_person_fault(fed).code == failure.soap_fault
        if failure.rest:
            late = get_benefits(fed)
            assert "XGate-Cache" not in late.headers
            if failure.rest_fault is None:
                assert late.status_code == 500 and "X-Road-Error" not in late.headers
            else:
                assert_rest_error(late, failure.rest_fault, rest_error_status(failure.rest_fault))

        # Within max age again, but the providers revoked the client's access: nothing from the cache.
        admin.apply_cache_policies(_policies(LONG_MAX_AGE))
        assert len(admin.cache_entries(service=GET_PERSON.to_text())["entries"]) == 1
        assert len(admin.cache_entries(service=BENEFITS_API.to_text())["entries"]) == 1
        with access_revoked(fed):
            assert get_person_fault(fed).code == faults.ACCESS_DENIED
            if failure.rest:
                denied = get_benefits(fed)
                assert "XGate-Cache" not in denied.headers
                assert_rest_error(denied, faults.ACCESS_DENIED, 500)
        # The providers' refusals purged the client's entries.
        assert admin.cache_entries(service=GET_PERSON.to_text())["entries"] == []
        if failure.rest:
            assert admin.cache_entries(service=BENEFITS_API.to_text())["entries"] == []

    # The security officer finds every answer the cache gave, and only those, with `cache.*`.
    served = admin.log_search({"outcome": "cache.*", "limit": "1000"})["records"]
    assert served and {r["outcome"] for r in served} == {"cache.stale"}
    assert [r["direction"] for r in served if r["message_id"] == served_id] == ["response"]


def test_a_services_own_soap_fault_is_its_answer_and_not_hidden_by_the_cache(cache_fed: Federation) -> None:
    """HTTP 500 with a SOAP Fault is how SOAP 1.1 sends every fault, "no such person" included:
    the service answered, so the client gets its fault, and the kept answer stays kept."""
    fed = cache_fed
    admin = fed.admin("gw-a")
    admin.apply_cache_policies(_policies(LONG_MAX_AGE))
    get_person(fed)
    with broken_backends(fed, Failure("soapfault", "soapenv:Server", None, rest=False)):
        fault = get_person_fault(fed)
    assert (fault.code, fault.message) == ("soapenv:Server", SOAP_FAULT_STRING)
    assert len(admin.cache_entries(service=GET_PERSON.to_text())["entries"]) == 1


def test_a_served_copy_verifies_with_xgate_and_by_hand(cache_fed: Federation, tmp_path: Path) -> None:
    """The officer exports the record of an answer the cache gave and checks it as any other:
    `xgate log verify` against the signed global configuration, and docs/verification.md's
    independent steps (unzip, openssl, xmlsec1) on the container."""
    fed = cache_fed
    fed.admin("gw-a").apply_cache_policies(_policies(LONG_MAX_AGE))
    original_id, served_id = f"fresh-{uuid.uuid4()}", f"served-{uuid.uuid4()}"
    get_person(fed, original_id)
    with broken_backends(fed, FAILURES["service-stopped"]):
        stale_mark(get_person(fed, served_id).fields, original_id)

    gw_a = fed.gateway("gw-a")
    env = reader_env(XGATE_ADMIN_URL=gw_a["admin_url"], XGATE_API_KEY=gw_a["api_key"])
    distribution = fed.registry_url.rstrip("/")
    (tmp_path / "globalconf.signed.json").write_bytes(
        requests.get(distribution + "/globalconf", timeout=HTTP_TIMEOUT_SECONDS).content
    )
    trust = ["--globalconf", "globalconf.signed.json", "--anchor", str(fed.description["anchor"])]
    (check,) = claimed_blocks(
        "tests/test_verification_doc.py::test_the_documented_steps_pass_on_a_real_container"
    )
    trust_files = (  # as docs/verification.md writes them from the signed global configuration
        "jq -r .content globalconf.signed.json | base64 -d | jq -r '.trusted_cas[].certificate' > ca.pem\n"
        "jq -r .content globalconf.signed.json | base64 -d"
        " | jq -r '.timestamping_authorities[].certificate' > tsa.pem\n"
    )
    subprocess.run(["bash", "-c", "set -euo pipefail\n" + trust_files], cwd=tmp_path, check=True)

    def exported_and_verified() -> bool:
        subprocess.run(["rm", "-rf", "exported", "c", "container.asice"], cwd=tmp_path, check=True)
        export = ["xgate", "log", "export", "--message-id", served_id, "--out", "exported"]
        verify = ["xgate", "log", "verify", *trust, "--allow-gaps", "exported"]
        for command in (export, verify):
            if subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, timeout=120).returncode:
                return False
        exported = {_outcome(p): p for p in (tmp_path / "exported").glob("*.asice")}
        response = exported["cache.stale"]  # the answer the cache gave, logged as served
        (tmp_path / "container.asice").write_bytes(response.read_bytes())
        checked.append(run_block(check, tmp_path, env).stdout)
        return checked[-1].rstrip().endswith("container verified")

    # The served exchange's records are checked once their timestamping batch is stamped.
    checked: list[str] = []
    wait_until(exported_and_verified, 30, "the served copy's containers to verify with xgate and by hand")
    assert "signed by DEV/GOV/1002, the provider's member" in checked[-1]
    assert "(served from the cache: the original answer, record " in checked[-1]


def _outcome(container: Path) -> str:
    with zipfile.ZipFile(container) as archive:
        content = json.loads(archive.read("META-INF/record.json"))["content"]
    return (
        f"{content['direction']}:{content['outcome']}"
        if content["outcome"] != "cache.stale"
        else "cache.stale"
    )


VERIFY_CONTAINER_BY_HAND = (
    "tests/test_verification_doc.py::test_the_documented_steps_pass_on_a_real_container"
)
