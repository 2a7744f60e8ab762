"""Certificate status between gateways, end to end (docs/transport.md "Certificate status").

Every message a gateway sends carries fresh OCSP responses for its TLS certificate and for the
certificate that signed it; the receiving gateway checks both, logs the signer's, and `openssl
ocsp` verifies them all. Responses come from the federation's own responder (`xgate trust
serve`), or are made here with the development CA's key when a test needs one the responder
would not give: too old, revoked, unknown, or with a broken signature.

Transport messages are sent to a provider's external interface with a gateway's real keys, as
that gateway would send them; the provider side of the consumer is played by a stand-in
gateway that answers with chosen headers.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
import requests
import sqlalchemy as sa
from aiohttp import web
from cryptography import x509
from cryptography.x509 import ocsp
from cryptography.x509.ocsp import OCSPCertStatus

from gateway import faults
from gateway.crypto.batchsigner import BatchSigner
from gateway.crypto.certs import certificate_to_pem, load_certificate_file
from gateway.crypto.keys import load_private_key
from gateway.crypto.ocsp import build_ocsp_request
from gateway.dev import federation
from gateway.globalconf import GlobalConf, GlobalConfSettings, OcspResponder, TrustedCa
from gateway.ids import SecurityServerId
from gateway.messagelog.store import search
from gateway.protocol.transport import (
    TRANSPORT_MEDIA_TYPE,
    RestResponsePayload,
    SoapPayload,
    TransportMessage,
    encode_transport,
)
from gateway.proxy.certstatus import (
    AUTH_OCSP_HEADER,
    SIGNER_OCSP_HEADER,
    CertificateStatusError,
    PeerStatusChecker,
    encode_response,
)
from gateway.proxy.steps import sign_payload
from gateway.trust import ocsp_responder
from gateway.trust.pki import CaSettings, GatewayProfile, RevocationStatus, init_pki, issue, load_ca
from tests.conftest import (
    BENEFITS_API,
    CONSUMER,
    GET_PERSON,
    HTTP_TIMEOUT_SECONDS,
    KNOWN_PERSON,
    Federation,
    assert_rest_error,
    assert_soap_fault,
    get_person_body,
    get_person_request,
    ocsp_response,
    peer_status_headers,
    post_soap,
    rest_headers,
    rest_url,
    serving_in_thread,
    soap_body,
    soap_request,
    wait_until,
)
from tests.test_e2e_security import signed_transport

# Beyond the federation's freshness limit by a margin no clock drift explains away.
STALE_MARGIN: Final = dt.timedelta(seconds=30)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def crafted_response(
    fed: Federation,
    certificate_path: str | Path,
    *,
    at: dt.datetime | None = None,
    status: OCSPCertStatus = OCSPCertStatus.GOOD,
) -> bytes:
    """An OCSP response signed by the federation's CA itself, saying `status` as of `at`."""
    authority = load_ca(fed.pki_dir)
    revoked_at = utc_now() - dt.timedelta(minutes=1) if status is OCSPCertStatus.REVOKED else None
    responder = ocsp_responder.OcspResponder(
        authority.key,
        authority.certificate,
        authority.certificate,
        lambda serial: RevocationStatus(
            status, revoked_at, x509.ReasonFlags.key_compromise if revoked_at else None
        ),
        dt.timedelta(hours=1),
    )
    request = build_ocsp_request(load_certificate_file(Path(certificate_path)), authority.certificate)
    return responder.respond(request, at or utc_now())


def with_broken_signature(der: bytes) -> bytes:
    """The same response with the last byte of its signature changed (still well-formed DER)."""
    signature = ocsp.load_der_ocsp_response(der).signature
    at = der.rindex(signature) + len(signature) - 1
    return der[:at] + bytes([der[at] ^ 0x01]) + der[at + 1 :]


def get_person_transport(fed: Federation, message_id: str | None = None) -> tuple[str, bytes]:
    """gw-a's client asks gw-b's getPerson, signed with gw-a's member key."""
    request = soap_request(GET_PERSON, get_person_body(KNOWN_PERSON), message_id=message_id)
    return signed_transport(fed, "gw-a", SoapPayload("text/xml; charset=utf-8", request))


def post_as_gw_a(fed: Federation, message: tuple[str, bytes], headers: dict[str, str]) -> requests.Response:
    """POST to gw-b's external interface with gw-a's TLS certificate, as gw-a would."""
    return post_to_gw_b(fed, fed.gateway("gw-a"), message, headers)


def post_to_gw_b(
    fed: Federation, sender: dict[str, Any], message: tuple[str, bytes], headers: dict[str, str]
) -> requests.Response:
    """POST to gw-b's external interface with `sender`'s TLS certificate, as that gateway would."""
    content_type, body = message
    return requests.post(
        f"https://{fed.gateway('gw-b')['external_address']}/",
        data=body,
        headers={**headers, "Content-Type": content_type},
        cert=(sender["auth_cert"], sender["auth_key"]),
        verify=fed.ca_cert,
        timeout=HTTP_TIMEOUT_SECONDS,
    )


def freshness(fed: Federation) -> dt.timedelta:
    return dt.timedelta(seconds=fed.description["settings"]["ocsp_freshness_seconds"])


def openssl_ocsp(response: bytes, certificate: str, ca_cert: str, directory: Path, name: str) -> str:
    """`openssl ocsp` checks the response's signature and responder against the CA, and reads the status."""
    path = directory / f"{name}.der"
    path.write_bytes(response)
    result = subprocess.run(
        [
            "openssl",
            "ocsp",
            "-respin",
            str(path),
            "-issuer",
            ca_cert,
            "-cert",
            certificate,
            "-CAfile",
            ca_cert,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "Response verify OK" in result.stderr + result.stdout, result.stderr
    return result.stdout


# --- the provider's side: what a calling gateway attaches -------------------------------------


def test_responses_travel_both_ways_are_logged_and_verify_with_openssl(
    fed: Federation, tmp_path: Path
) -> None:
    gw_a, gw_b = fed.gateway("gw-a"), fed.gateway("gw-b")
    sent = peer_status_headers(fed, gw_a["auth_cert"])
    message_id = str(uuid.uuid4())

    response = post_as_gw_a(fed, get_person_transport(fed, message_id), sent)

    assert response.status_code == 200, response.text[:500]
    assert response.headers["Content-Type"].startswith(TRANSPORT_MEDIA_TYPE)
    received = {
        name: base64.b64decode(response.headers[name]) for name in (AUTH_OCSP_HEADER, SIGNER_OCSP_HEADER)
    }
    checks = [
        (base64.b64decode(sent[AUTH_OCSP_HEADER]), gw_a["auth_cert"], "accepted-auth"),
        (base64.b64decode(sent[SIGNER_OCSP_HEADER]), gw_a["sign_cert"], "accepted-signer"),
        (received[AUTH_OCSP_HEADER], gw_b["auth_cert"], "produced-auth"),
        (received[SIGNER_OCSP_HEADER], gw_b["sign_cert"], "produced-signer"),
    ]
    for der, certificate, name in checks:
        assert f"{certificate}: good" in openssl_ocsp(der, certificate, fed.ca_cert, tmp_path, name)

    # gw-b's message log keeps each signer's response beside the message it vouches for.
    engine = sa.create_engine(f"sqlite:///{fed.dir / 'gw-b' / 'messagelog.sqlite'}")
    try:
        records = {
            stored.record.direction.value: stored.record for stored in search(engine, message_id=message_id)
        }
    finally:
        engine.dispose()
    assert records["request"].ocsp_response == base64.b64decode(sent[SIGNER_OCSP_HEADER])
    assert records["response"].ocsp_response == received[SIGNER_OCSP_HEADER]


def _bad_status_cases(certificate: str) -> list[Any]:
    """How a status response about the gateway's `certificate` (auth_cert or sign_cert) is bad
    whichever certificate it is for: missing, stale, revoked."""
    return [
        pytest.param(lambda fed: None, "no OCSP response", id="missing"),
        pytest.param(
            lambda fed: crafted_response(
                fed, fed.gateway("gw-a")[certificate], at=utc_now() - freshness(fed) - STALE_MARGIN
            ),
            "older than",
            id="stale",
        ),
        pytest.param(
            lambda fed: crafted_response(
                fed, fed.gateway("gw-a")[certificate], status=OCSPCertStatus.REVOKED
            ),
            "revoked",
            id="revoked",
        ),
    ]


def _auth_header_cases() -> list[Any]:
    return [
        *_bad_status_cases("auth_cert"),
        pytest.param(
            lambda fed: crafted_response(
                fed, fed.gateway("gw-a")["auth_cert"], status=OCSPCertStatus.UNKNOWN
            ),
            "unknown",
            id="unknown",
        ),
        pytest.param(
            lambda fed: ocsp_response(fed, fed.gateway("gw-c")["auth_cert"]), "wrong_cert_id", id="other-cert"
        ),
        pytest.param(
            lambda fed: with_broken_signature(crafted_response(fed, fed.gateway("gw-a")["auth_cert"])),
            "bad_signature",
            id="bad-signature",
        ),
        pytest.param(lambda fed: b"not an OCSP response", "malformed", id="garbage"),
    ]


def _post_with_status(fed: Federation, header: str, make: Any) -> requests.Response:
    """gw-a's request with good status headers but for `header`: what `make` makes (None: none)."""
    headers = peer_status_headers(fed, fed.gateway("gw-a")["auth_cert"])
    status = make(fed)
    if status is None:
        del headers[header]
    else:
        headers[header] = encode_response(status)
    return post_as_gw_a(fed, get_person_transport(fed), headers)


@pytest.mark.parametrize(("make", "reason"), _auth_header_cases())
def test_the_calling_gateway_needs_fresh_good_status_for_its_tls_certificate(
    fed: Federation, make: Any, reason: str
) -> None:
    fault = assert_soap_fault(
        _post_with_status(fed, AUTH_OCSP_HEADER, make), faults.SERVER_PROXY_SSL_AUTHENTICATION_FAILED
    )

    assert reason in fault.string


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        *_bad_status_cases("sign_cert"),
        pytest.param(
            lambda fed: ocsp_response(fed, fed.gateway("gw-a")["auth_cert"]),
            "wrong_cert_id",
            id="auth-cert's",
        ),
    ],
)
def test_a_signers_bad_status_makes_the_signature_invalid(fed: Federation, make: Any, reason: str) -> None:
    fault = assert_soap_fault(
        _post_with_status(fed, SIGNER_OCSP_HEADER, make), faults.SERVER_PROXY_INVALID_SIGNATURE
    )

    assert reason in fault.string


# --- the check itself: verified once per response, aged every time ------------------------------


def test_verified_responses_are_remembered_but_still_age(tmp_path: Path) -> None:
    authority = init_pki(tmp_path / "pki", settings=CaSettings(common_name="status test CA"))
    ca_pem = certificate_to_pem(authority.certificate).decode("ascii")
    first, second = (
        issue(
            tmp_path / "pki", authority, GatewayProfile(SecurityServerId("DEV", "GOV", "1001", code))
        ).certificate
        for code in ("one", "two")
    )
    now = utc_now()
    conf = globalconf(ca_pem, now, responders=(OcspResponder("http://127.0.0.1:9/ocsp"),))
    responder = ocsp_responder.OcspResponder(
        authority.key,
        authority.certificate,
        authority.certificate,
        lambda serial: RevocationStatus(OCSPCertStatus.GOOD),
        dt.timedelta(hours=1),
    )
    answer = responder.respond(build_ocsp_request(first, authority.certificate), now)
    checker = PeerStatusChecker()

    assert checker.check(encode_response(answer), first, conf, now) == answer
    assert checker.check(encode_response(answer), first, conf, now + dt.timedelta(seconds=30)) == answer
    assert checker.verifications == 1
    with pytest.raises(CertificateStatusError, match="older than 60 s"):
        checker.check(encode_response(answer), first, conf, now + dt.timedelta(seconds=61))
    with pytest.raises(CertificateStatusError, match="wrong_cert_id"):
        checker.check(encode_response(answer), second, conf, now)
    assert checker.verifications == 2
    # A CA the registry lists without a responder has no status service: nothing is required.
    assert checker.check(None, first, globalconf(ca_pem, now, responders=()), now) is None


def globalconf(ca_pem: str, now: dt.datetime, responders: tuple[OcspResponder, ...]) -> GlobalConf:
    return GlobalConf(
        instance="DEV",
        version=1,
        generated_at=now,
        expires_at=now + dt.timedelta(hours=1),
        trusted_cas=(TrustedCa("status test CA", ca_pem, responders),),
        settings=GlobalConfSettings(ocsp_freshness_seconds=60),
    )


# --- the consumer's side: what a provider gateway attaches ---------------------------------------


@contextlib.contextmanager
def stand_in_provider(fed: Federation, name: str, mode: dict[str, str | None]) -> Iterator[None]:
    """A stand-in for gateway `name` on its address, with its keys: answers every request with a signed
    REST response and the OCSP headers `mode` holds at that moment (the real node is stopped meanwhile)."""
    gw = fed.gateway(name)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(gw["auth_cert"], gw["auth_key"])
    context.load_verify_locations(fed.ca_cert)
    context.verify_mode = ssl.CERT_REQUIRED
    key, cert = load_private_key(Path(gw["sign_key"])), load_certificate_file(Path(gw["sign_cert"]))

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        signer = BatchSigner(key, cert)
        try:
            signed: TransportMessage = await sign_payload(
                signer, RestResponsePayload(200, (("Content-Type", "application/json"),), b"{}")
            )
        finally:
            await signer.aclose()
        content_type, body = encode_transport(signed)
        headers = {header: value for header, value in mode.items() if value is not None}
        return web.Response(body=body, headers={**headers, "Content-Type": content_type})

    app = web.Application()
    app.router.add_post("/", answer)
    host, port = gw["external_address"].rsplit(":", 1)
    federation.stop_process(fed.dir, name)
    try:
        with serving_in_thread(app, host, int(port), ssl_context=context):
            yield
    finally:
        federation.start_process(fed.dir, name)


def test_the_consumer_refuses_a_provider_without_fresh_good_status(short_fed: Federation) -> None:
    fed = short_fed
    fed.wait_ready()
    gw_c = fed.gateway("gw-c")
    good_auth = encode_response(ocsp_response(fed, gw_c["auth_cert"]))
    stale_auth = encode_response(
        crafted_response(fed, gw_c["auth_cert"], at=utc_now() - freshness(fed) - STALE_MARGIN)
    )
    mode: dict[str, str | None] = {}
    url = rest_url(fed, "gw-a", BENEFITS_API, f"/benefits/{KNOWN_PERSON}")

    def call() -> requests.Response:
        return requests.get(url, headers=rest_headers(CONSUMER), timeout=HTTP_TIMEOUT_SECONDS)

    with stand_in_provider(fed, "gw-c", mode):
        mode.update({AUTH_OCSP_HEADER: None, SIGNER_OCSP_HEADER: None})
        missing = call()
        mode.update({AUTH_OCSP_HEADER: stale_auth})
        stale = call()
        mode.update({AUTH_OCSP_HEADER: good_auth})
        no_signer_status = call()

    assert "no OCSP response" in assert_rest_error(missing, faults.SSL_AUTHENTICATION_FAILED, 500)["message"]
    assert "older than" in assert_rest_error(stale, faults.SSL_AUTHENTICATION_FAILED, 500)["message"]
    error = assert_rest_error(no_signer_status, faults.CLIENT_PROXY_INVALID_SIGNATURE, 500)
    assert "signing certificate" in error["message"]
    wait_until(lambda: call().status_code == 200, 20, "gw-c to serve again")


def test_a_gateway_without_fresh_status_for_its_own_certificates_cannot_send(short_fed: Federation) -> None:
    fed = short_fed
    fed.wait_ready()
    federation.stop_process(fed.dir, "trust")
    try:
        wait_until(
            lambda: fed.health("gw-a")["ocsp"]["ready"] is False,
            freshness(fed).total_seconds() + 5,
            "gw-a's own OCSP responses to go stale",
        )
        # Whichever of its certificates' responses went stale first (TLS or signing), the fault
        # names that cause, not an authentication failure (docs/resilience.md).
        fault = assert_soap_fault(
            post_soap(fed.internal_url("gw-a"), get_person_request(KNOWN_PERSON)),
            faults.OCSP_RESPONSE_STALE,
        )
    finally:
        federation.start_process(fed.dir, "trust")

    assert "no fresh OCSP response for own certificate" in fault.string
    limit = f"(limit {freshness(fed).total_seconds():g} s)"
    assert " s old " + limit in fault.string, fault.string  # how old the newest response is
    responder = fed.description["trust"]["ocsp_url"]
    assert f"responders: responder at {responder} unreachable" in fault.string, fault.string
    assert "cannot send: no fresh OCSP response" in (fed.dir / "logs" / "gw-a.log").read_text()
    fed.wait_ready()
    assert soap_body(post_soap(fed.internal_url("gw-a"), get_person_request(KNOWN_PERSON))) is not None
