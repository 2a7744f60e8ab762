"""Secure defaults on the internal interface (issue 9, Build 9 / hole 8): a subsystem registered
without a mode takes client systems that show its pinned TLS certificate, and nothing else.

Runs on the shared development federation; the subsystem is added to gw-a's database and
removed again, as the management API would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import faults
from gateway.ids import ClientId
from gateway.serverconf.model import ClientAuthMode
from tests.conftest import (
    CONSUMER,
    KNOWN_PERSON,
    Federation,
    assert_soap_fault,
    get_person_request,
    post_soap,
    soap_fault,
)
from tests.test_e2e_security import CertPair, self_signed_cert

NEW_SYSTEM = ClientId(CONSUMER.instance, CONSUMER.member_class, CONSUMER.member_code, "newsystem")


@pytest.fixture
def new_subsystem(fed: Federation, tmp_path: Path) -> Iterator[CertPair]:
    """NEW_SYSTEM added to gw-a with no mode given, one self-signed certificate pinned; then removed."""
    cert = self_signed_cert(tmp_path, "new-system")
    with fed.serverconf("gw-a") as repository:
        repository.add_subsystem(NEW_SYSTEM)
        repository.pin_certificate(NEW_SYSTEM, Path(cert[0]).read_bytes())
    try:
        yield cert
    finally:
        with fed.serverconf("gw-a") as repository:
            repository.remove_subsystem(NEW_SYSTEM)


def test_a_subsystem_added_without_a_mode_is_served_only_with_its_pinned_certificate(
    fed: Federation, new_subsystem: CertPair, tmp_path: Path
) -> None:
    with fed.serverconf("gw-a") as repository:
        conf = repository.snapshot().subsystem(NEW_SYSTEM)
    assert conf is not None and conf.auth_mode is ClientAuthMode.HTTPS_CERT

    https_url = fed.gateway("gw-a")["internal_https_url"]
    request = get_person_request(KNOWN_PERSON, client=NEW_SYSTEM)
    over_http = post_soap(fed.internal_url("gw-a"), request)
    without_cert = post_soap(https_url, request, verify=fed.ca_cert)
    # A certificate pinned for another subsystem passes the TLS handshake, not the check.
    stranger = self_signed_cert(tmp_path, "stranger")
    with fed.serverconf("gw-a") as repository:
        fingerprint = repository.pin_certificate(CONSUMER, Path(stranger[0]).read_bytes())
    try:
        with_other_cert = post_soap(https_url, request, verify=fed.ca_cert, cert=stranger)
    finally:
        with fed.serverconf("gw-a") as repository:
            repository.unpin_certificate(CONSUMER, fingerprint)
    with_pinned_cert = post_soap(https_url, request, verify=fed.ca_cert, cert=new_subsystem)

    assert_soap_fault(over_http, faults.SSL_AUTHENTICATION_FAILED)
    assert_soap_fault(without_cert, faults.SSL_AUTHENTICATION_FAILED)
    assert_soap_fault(with_other_cert, faults.SSL_AUTHENTICATION_FAILED)
    # Past authentication: the pinned system gets whatever the rest of the path decides.
    if with_pinned_cert.status_code != 200:
        assert soap_fault(with_pinned_cert).code != faults.SSL_AUTHENTICATION_FAILED
