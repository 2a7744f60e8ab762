"""What a gateway logs when a request fails (docs/logging.md "Errors: one line, or one traceback").

A client's mistake is its own: the access line's fault code, and no traceback. A failure of the
gateway itself is one ERROR record with one traceback, logged where it was caught, and not again
on the way out. The gateways run in-process (tests/inprocess.py) with the access log observing.

The internal error is injected (the signing step raises): a real bug cannot be had on demand.
"""

from __future__ import annotations

import logging

import pytest

from gateway import faults
from gateway.ids import ServiceId
from gateway.monitoring.accesslog import ACCESS_LOGGER, AccessLog
from gateway.proxy import consumer
from tests.conftest import KNOWN_PERSON, assert_soap_fault, get_person_request, soap_request
from tests.inprocess import InProcessFederation

SOAP_HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}


def _access(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == ACCESS_LOGGER]


async def test_a_client_error_is_its_access_line_only(
    local: InProcessFederation, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = local["gw-a"]
    gateway.runtime.exchange_observers.append(AccessLog())
    caplog.set_level(logging.INFO)
    unknown = soap_request(ServiceId("DEV", "GOV", "9999", "nobody", "getPerson", "v1"), "<x/>")
    for body in (b"<not-xml", unknown):
        answer = await gateway.post("/", body, SOAP_HEADERS)
        assert answer.status_code in (200, 500)
    assert not [record for record in caplog.records if record.exc_info or record.exc_text]
    lines = _access(caplog)
    assert len(lines) == 2 and all(line.levelno == logging.INFO for line in lines)
    codes = [line.__dict__["fault_code"] for line in lines]
    assert all(code is not None and faults.XRoadFault(code, "").is_client_error for code in codes), codes
    beyond = [
        r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("gateway.proxy")
    ]
    assert not beyond, [r.getMessage() for r in beyond]


async def test_an_internal_error_is_one_error_with_one_traceback(
    local: InProcessFederation, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = local["gw-a"]
    gateway.runtime.exchange_observers.append(AccessLog())

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("injected failure in the signer")

    monkeypatch.setattr(consumer, "sign_payload", broken)
    caplog.set_level(logging.INFO)
    answer = await gateway.post("/", get_person_request(KNOWN_PERSON), SOAP_HEADERS)
    assert_soap_fault(answer, faults.CLIENT_PROXY_INTERNAL_ERROR)
    with_traceback = [record for record in caplog.records if record.exc_info]
    assert len(with_traceback) == 1
    [error] = with_traceback
    assert error.levelno == logging.ERROR and error.name == "gateway.proxy.consumer"
    assert error.exc_info is not None and "injected failure" in str(error.exc_info[1])
    others = [r for r in caplog.records if r.levelno >= logging.WARNING and r is not error]
    assert not others, [r.getMessage() for r in others]  # not logged again on the way out
    [line] = _access(caplog)
    assert line.__dict__["fault_code"] == faults.CLIENT_PROXY_INTERNAL_ERROR
