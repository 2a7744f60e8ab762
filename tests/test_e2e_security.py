"""Who may talk to whom, end to end: client authentication, gateway authentication over mutual TLS,
message signatures, impersonation, an expired global configuration, and bad input that must
never bring a node down.

Certificates come from the federation's own development CA (gateway.trust.pki) or are made
here; transport messages for the provider's external interface are signed with a gateway's
real signing key and sent with `requests` and a client certificate, as another gateway would.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import functools
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway import faults
from gateway.crypto.batchsigner import BatchSigner
from gateway.crypto.certs import load_certificate_file
from gateway.crypto.keys import load_private_key, write_file_atomically
from gateway.globalconf import globalconf_from_json, sign_globalconf
from gateway.ids import ClientId, SecurityServerId
from gateway.protocol.transport import TRANSPORT_MEDIA_TYPE, Payload, SoapPayload, encode_transport
from gateway.proxy.steps import sign_payload
from gateway.serverconf.model import ClientAuthMode
from gateway.trust.pki import GatewayProfile, issue, load_ca
from tests.conftest import (
    BENEFITS,
    BENEFITS_API,
    CONSUMER,
    GLOBALCONF_WAIT_SECONDS,
    HTTP_TIMEOUT_SECONDS,
    KNOWN_PERSON,
    Federation,
    assert_rest_error,
    assert_soap_fault,
    get_person_request,
    peer_status_headers,
    post_soap,
    rest_headers,
    rest_url,
    soap_body,
    wait_until,
)

CertPair = tuple[str, str]
"""(certificate file, key file), as `requests` takes a client certificate."""


def issue_gateway_cert(
    fed: Federation, directory: Path, server_code: str, member_code: str = "1001"
) -> CertPair:
    """A gateway certificate from the federation's own CA, for a server the configuration does not list."""
    server = SecurityServerId("DEV", "GOV", member_code, server_code)
    files = issue(
        fed.pki_dir, load_ca(fed.pki_dir), GatewayProfile(server), out_prefix=directory / server_code
    )
    return str(files.certificate_path), str(files.key_path)


def self_signed_cert(directory: Path, name: str) -> CertPair:
    """What an agency system typically presents: a self-signed client certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_path), str(key_path)


def gateway_cert(fed: Federation, name: str) -> CertPair:
    gw = fed.gateway(name)
    return gw["auth_cert"], gw["auth_key"]


def signed_transport(fed: Federation, signing_gateway: str, payload: Payload) -> tuple[str, bytes]:
    """The transport message a gateway would send: `payload` signed with that gateway's member key."""
    return signed_by(fed.gateway(signing_gateway), payload)


def signed_by(gw: dict[str, Any], payload: Payload) -> tuple[str, bytes]:
    """`payload` signed with the member key of `gw` (a gateway as federation.json describes it)."""

    async def sign() -> tuple[str, bytes]:
        signer = BatchSigner(
            load_private_key(Path(gw["sign_key"])), load_certificate_file(Path(gw["sign_cert"]))
        )
        try:
            return encode_transport(await sign_payload(signer, payload))
        finally:
            await signer.aclose()

    return asyncio.run(sign())


def post_external(
    fed: Federation, provider: str, message: tuple[str, bytes], cert: CertPair | None
) -> requests.Response:
    """POST to a gateway's external (mutual TLS) interface, as a peer gateway."""
    content_type, body = message
    status = peer_status_headers(fed, cert[0]) if cert is not None else {}
    return requests.post(
        f"https://{fed.gateway(provider)['external_address']}/",
        data=body,
        headers={**status, "Content-Type": content_type},
        cert=cert,
        verify=fed.ca_cert,
        timeout=HTTP_TIMEOUT_SECONDS,
    )


def get_person_payload(personal_code: str = KNOWN_PERSON, client: ClientId = CONSUMER) -> SoapPayload:
    return SoapPayload("text/xml; charset=utf-8", get_person_request(personal_code, client=client))


def assert_signed_answer(response: requests.Response, expected: bytes) -> None:
    assert response.status_code == 200, response.text[:1000]
    assert response.headers["Content-Type"].startswith(TRANSPORT_MEDIA_TYPE)
    assert expected in response.content


# --- the client system on the internal interface -----------------------------------------------


@pytest.fixture
def pinned_client(fed: Federation, tmp_path: Path) -> Iterator[CertPair]:
    """gw-a's subsystem switched to https_cert mode with a self-signed certificate pinned; then back."""
    cert = self_signed_cert(tmp_path, "benefits-office-system")
    with fed.serverconf("gw-a") as repository:
        fingerprint = repository.pin_certificate(CONSUMER, Path(cert[0]).read_bytes())
        repository.set_auth_mode(CONSUMER, ClientAuthMode.HTTPS_CERT)
    try:
        yield cert
    finally:
        with fed.serverconf("gw-a") as repository:
            repository.set_auth_mode(CONSUMER, ClientAuthMode.HTTP)
            repository.unpin_certificate(CONSUMER, fingerprint)


def test_https_cert_mode_accepts_only_the_pinned_certificate(
    fed: Federation, pinned_client: CertPair, tmp_path: Path
) -> None:
    https_url = fed.gateway("gw-a")["internal_https_url"]
    request = get_person_request(KNOWN_PERSON)
    federation_issued = issue_gateway_cert(fed, tmp_path, "not-a-client-cert")

    over_http = post_soap(fed.internal_url("gw-a"), request)
    without_cert = post_soap(https_url, request, verify=fed.ca_cert)
    with_other_cert = post_soap(https_url, request, verify=fed.ca_cert, cert=federation_issued)
    with_pinned_cert = post_soap(https_url, request, verify=fed.ca_cert, cert=pinned_client)

    assert_soap_fault(over_http, faults.SSL_AUTHENTICATION_FAILED)
    assert_soap_fault(without_cert, faults.SSL_AUTHENTICATION_FAILED)
    assert_soap_fault(with_other_cert, faults.SSL_AUTHENTICATION_FAILED)
    assert soap_body(with_pinned_cert).tag.endswith("getPersonResponse")
    # REST goes through the same check.
    rest = requests.get(
        rest_url(fed, "gw-a", BENEFITS_API, f"/benefits/{KNOWN_PERSON}").replace(
            fed.internal_url("gw-a"), https_url
        ),
        headers=rest_headers(),
        verify=fed.ca_cert,
        cert=pinned_client,
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    assert rest.status_code == 200, rest.text


def test_an_unknown_self_signed_client_certificate_fails_the_handshake(
    fed: Federation, pinned_client: CertPair, tmp_path: Path
) -> None:
    """A certificate neither pinned nor from a federation CA is trusted for nothing: TLS refuses it."""
    stranger = self_signed_cert(tmp_path, "stranger")
    https_url = fed.gateway("gw-a")["internal_https_url"]

    with pytest.raises(requests.exceptions.ConnectionError):
        post_soap(https_url, get_person_request(KNOWN_PERSON), verify=fed.ca_cert, cert=stranger)


# --- gateways on the external interface ----------------------------------------------------------


def test_a_registered_gateway_with_a_valid_signature_is_served(fed: Federation) -> None:
    """The control for the tests below: this is how a real peer's request looks, and it works."""
    message = signed_transport(fed, "gw-a", get_person_payload())

    response = post_external(fed, "gw-b", message, gateway_cert(fed, "gw-a"))

    assert_signed_answer(response, b"Mart Tamm")


def test_a_gateway_certificate_from_the_right_ca_but_not_registered_is_refused(
    fed: Federation, tmp_path: Path
) -> None:
    rogue = issue_gateway_cert(fed, tmp_path, "gw-rogue")
    message = signed_transport(fed, "gw-a", get_person_payload())

    signed = post_external(fed, "gw-b", message, rogue)
    garbage = post_external(fed, "gw-b", ("text/plain", b"anything at all"), rogue)

    assert_soap_fault(signed, faults.SERVER_PROXY_SSL_AUTHENTICATION_FAILED)
    assert_soap_fault(garbage, faults.SERVER_PROXY_SSL_AUTHENTICATION_FAILED)


def test_a_gateway_certificate_from_another_ca_fails_the_handshake(fed: Federation, tmp_path: Path) -> None:
    outsider = self_signed_cert(tmp_path, "outsider-gateway")

    with pytest.raises(requests.exceptions.ConnectionError):
        post_external(fed, "gw-b", signed_transport(fed, "gw-a", get_person_payload()), outsider)


def test_a_peer_without_a_certificate_fails_the_handshake(fed: Federation) -> None:
    with pytest.raises(requests.exceptions.ConnectionError):
        post_external(fed, "gw-b", ("text/plain", b"hello"), None)


def test_a_message_altered_between_the_gateways_is_refused(fed: Federation) -> None:
    content_type, body = signed_transport(fed, "gw-a", get_person_payload())
    assert body.count(KNOWN_PERSON.encode()) == 1  # in the SOAP part only
    at = body.index(KNOWN_PERSON.encode()) + len(KNOWN_PERSON) - 1
    tampered = body[:at] + bytes([body[at] ^ 0x01]) + body[at + 1 :]  # one bit of one byte: …718 → …719

    response = post_external(fed, "gw-b", (content_type, tampered), gateway_cert(fed, "gw-a"))

    assert_soap_fault(response, faults.SERVER_PROXY_INVALID_SIGNATURE)


def test_a_message_signed_by_another_member_is_refused(fed: Federation) -> None:
    """gw-a's certificate and gw-a's client, but signed with gw-c's member key."""
    message = signed_transport(fed, "gw-c", get_person_payload())

    response = post_external(fed, "gw-b", message, gateway_cert(fed, "gw-a"))

    assert_soap_fault(response, faults.SERVER_PROXY_INVALID_SIGNATURE)


def test_a_gateway_speaking_for_a_client_it_does_not_host_is_refused(fed: Federation) -> None:
    """gw-c names gw-a's client: refused whoever signed, since gw-c does not host that client."""
    own_client = signed_transport(fed, "gw-c", get_person_payload(client=BENEFITS))
    impersonating = signed_transport(fed, "gw-c", get_person_payload(client=CONSUMER))
    with_stolen_key = signed_transport(fed, "gw-a", get_person_payload(client=CONSUMER))

    assert_signed_answer(post_external(fed, "gw-b", own_client, gateway_cert(fed, "gw-c")), b"Mart Tamm")
    for message in (impersonating, with_stolen_key):
        response = post_external(fed, "gw-b", message, gateway_cert(fed, "gw-c"))
        assert_soap_fault(response, faults.SERVER_PROXY_SSL_AUTHENTICATION_FAILED)


# --- the global configuration ---------------------------------------------------------------------


def publish_globalconf(fed: Federation, version: int, expires_in: dt.timedelta) -> None:
    """Sign the federation's configuration again as `version`, with its signer key, as the registry would."""
    path = fed.dir / "globalconf.signed.json"
    content = base64.b64decode(json.loads(path.read_bytes())["content"])
    now = dt.datetime.now(dt.UTC)
    conf = dataclasses.replace(
        globalconf_from_json(content),
        version=version,
        generated_at=min(now, now + expires_in) - dt.timedelta(hours=1),
        expires_at=now + expires_in,
    )
    key = load_private_key(fed.dir / "globalconf-signer.key")
    cert = load_certificate_file(fed.dir / "globalconf-signer.pem")
    write_file_atomically(path, sign_globalconf(conf, key, cert), 0o644)

    def adopted(name: str) -> bool:
        return bool(fed.health(name)["globalconf"]["version"] == version)

    for name in ("gw-a", "gw-b"):
        wait_until(
            functools.partial(adopted, name),
            GLOBALCONF_WAIT_SECONDS,
            f"{name} to adopt global configuration version {version}",
        )


def current_globalconf_version(fed: Federation) -> int:
    version: int = fed.health("gw-a")["globalconf"]["version"]
    return version


def test_an_expired_global_configuration_stops_traffic_until_a_valid_one_arrives(
    spare_fed: Federation,
) -> None:
    fed = spare_fed
    version = current_globalconf_version(fed)
    # Rollback protection refuses an older version, so the expired one is a newer one.
    publish_globalconf(fed, version + 1, -dt.timedelta(minutes=1))
    try:
        assert fed.health("gw-a")["globalconf"]["valid"] is False
        soap = post_soap(fed.internal_url("gw-a"), get_person_request(KNOWN_PERSON))
        rest = requests.get(
            rest_url(fed, "gw-a", BENEFITS_API, f"/benefits/{KNOWN_PERSON}"),
            headers=rest_headers(),
            timeout=HTTP_TIMEOUT_SECONDS,
        )
        clients = requests.get(fed.internal_url("gw-a") + "/listClients", timeout=HTTP_TIMEOUT_SECONDS)
        provider = post_external(
            fed, "gw-b", signed_transport(fed, "gw-a", get_person_payload()), gateway_cert(fed, "gw-a")
        )
    finally:
        publish_globalconf(fed, version + 2, dt.timedelta(days=1))

    assert_soap_fault(soap, faults.OUTDATED_GLOBALCONF)
    assert_rest_error(rest, faults.OUTDATED_GLOBALCONF, 500)
    assert_rest_error(clients, faults.OUTDATED_GLOBALCONF, 500)
    assert_soap_fault(provider, "Server.ServerProxy.OutdatedGlobalConf")
    # The newer valid version restores traffic.
    assert soap_body(post_soap(fed.internal_url("gw-a"), get_person_request(KNOWN_PERSON))) is not None


# --- bad input on the internal interface ----------------------------------------------------------


def raw_http(
    url: str, head: bytes, body_chunks: Iterator[bytes] | None = None, timeout: float = 10.0
) -> bytes:
    """Send a request byte for byte and read the answer until the server closes or stops."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head)
        try:
            for chunk in body_chunks or ():
                sock.sendall(chunk)
        except OSError:
            pass  # the server answered and closed early: what a size limit should do
        received = b""
        try:
            while b"\r\n\r\n" not in received or not _complete(received):
                data = sock.recv(65536)
                if not data:
                    break
                received += data
        except OSError:
            pass
        return received


def _complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def fault_code_of(response: bytes) -> str:
    body = response.partition(b"\r\n\r\n")[2]
    start = body.index(b"<faultcode>") + len(b"<faultcode>")
    return body[start : body.index(b"</faultcode>")].decode()


def test_get_on_the_soap_endpoint(fed: Federation) -> None:
    response = requests.get(fed.internal_url("gw-a") + "/", timeout=HTTP_TIMEOUT_SECONDS)

    assert_soap_fault(response, faults.INVALID_HTTP_METHOD)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", faults.INVALID_SOAP),
        (b"this is not XML <<<", faults.INVALID_SOAP),
        (b"<a><b></a>", faults.INVALID_SOAP),
        (b"\xff\xfe\x00<", faults.INVALID_SOAP),
    ],
    ids=["empty", "not-xml", "not-well-formed", "bad-encoding"],
)
def test_bad_soap_is_a_client_fault(fed: Federation, body: bytes, code: str) -> None:
    assert_soap_fault(post_soap(fed.internal_url("gw-a"), body), code)


def test_an_external_entity_is_never_resolved(fed: Federation) -> None:
    xxe = get_person_request("&xxe;").replace(
        b'<?xml version="1.0" encoding="UTF-8"?>\n',
        b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE e [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n',
    )

    response = post_soap(fed.internal_url("gw-a"), xxe)

    assert_soap_fault(response, faults.INVALID_SOAP)
    assert b"root:" not in response.content


def test_a_billion_laughs_document_is_refused_quickly(fed: Federation) -> None:
    entities = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    bomb = get_person_request("&l9;").replace(
        b'<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE e [<!ENTITY l0 "lol">{entities}]>\n'.encode(),
    )
    started = time.monotonic()

    response = post_soap(fed.internal_url("gw-a"), bomb)

    assert_soap_fault(response, faults.INVALID_SOAP)
    assert time.monotonic() - started < 2.0


def test_a_50_mb_body_announced_by_content_length_is_refused_at_once(fed: Federation) -> None:
    head = (
        b"POST / HTTP/1.1\r\nHost: gw-a\r\nContent-Type: text/xml\r\n"
        + f"Content-Length: {50 * 1024 * 1024}\r\n\r\n".encode()
    )
    started = time.monotonic()

    response = raw_http(fed.internal_url("gw-a"), head, iter([b"<" * 65536]))

    assert time.monotonic() - started < 2.0
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    assert fault_code_of(response) == faults.REQUEST_TOO_LARGE


def test_a_50_mb_chunked_body_is_refused_without_reading_it_all(fed: Federation) -> None:
    head = b"POST / HTTP/1.1\r\nHost: gw-a\r\nContent-Type: text/xml\r\nTransfer-Encoding: chunked\r\n\r\n"
    block = b"<" * (1024 * 1024)
    chunk = f"{len(block):x}\r\n".encode() + block + b"\r\n"
    started = time.monotonic()

    response = raw_http(fed.internal_url("gw-a"), head, iter([chunk] * 50))

    assert time.monotonic() - started < 5.0
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    assert fault_code_of(response) == faults.REQUEST_TOO_LARGE


@pytest.mark.parametrize(
    ("method", "path", "code", "status"),
    [
        ("TRACE", f"/benefits/{KNOWN_PERSON}", faults.INVALID_HTTP_METHOD, 400),
        ("GET", "/benefits/%2e%2e/%2e%2e/echo", faults.INVALID_REQUEST, 400),
    ],
    ids=["trace", "dot-segments"],
)
def test_bad_rest_requests_are_client_errors(
    fed: Federation, method: str, path: str, code: str, status: int
) -> None:
    response = requests.request(
        method,
        rest_url(fed, "gw-a", BENEFITS_API, path),
        headers=rest_headers(),
        timeout=HTTP_TIMEOUT_SECONDS,
    )

    assert_rest_error(response, code, status)


def test_the_node_still_serves_after_all_of_it(fed: Federation) -> None:
    assert soap_body(post_soap(fed.internal_url("gw-a"), get_person_request(KNOWN_PERSON))) is not None
    assert fed.health("gw-a")["globalconf"]["valid"] is True
