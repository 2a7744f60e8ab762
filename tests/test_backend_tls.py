"""A service's registered TLS settings are what the backend call uses (issue 9, hole 9), and an
outbound failure reads as plain words, never a library's internals (hole 10).

A real HTTPS service on 127.0.0.1 with a CA of its own (not the federation's, not the system's),
through the node's aiohttp backend transport: the right CA pinned works, a wrong CA is
`ServiceFailed`, verification off works, and a service that requires a client certificate works
with the one registered and fails without. Then the same settings through gw-b's provider path
(tests/inprocess.py with the real backend transport).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway import faults
from gateway.faults import XRoadFault
from gateway.outbound.network import AiohttpTransport, backend_transport
from gateway.proxy.backend import call_backend
from gateway.serverconf.model import BackendTls
from tests.conftest import BENEFITS_API, KNOWN_PERSON, assert_rest_error, rest_headers
from tests.inprocess import InProcessFederation

LIMIT = 64 * 1024
LIBRARY_INTERNALS = ("ConnectionKey", "SSLContext", "object at 0x", "Client", "Error(", "ssl:")
"""What aiohttp's own messages show (its ConnectionKey, SSL context objects, exception reprs)."""


@dataclass(frozen=True)
class Issued:
    cert_pem: bytes
    key_pem: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(name: str) -> tuple[Issued, ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return _pem(cert, key), key, cert


def issue(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, name: str, *, server: bool
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    return _pem(builder.sign(ca_key, hashes.SHA256()), key)


def _pem(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Issued:
    return Issued(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


@dataclass(frozen=True)
class Pki:
    service_ca: str
    other_ca: str
    client_ca: str
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_combined: Path
    """Certificate and key in one file, as ssl.load_cert_chain also takes them."""
    stranger_cert: Path
    stranger_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("backend-pki")
    service_ca, service_key, service_cert = make_ca("Agency Service CA")
    other_ca, other_key, other_cert = make_ca("Some Other CA")
    client_ca, client_key, client_cert = make_ca("Agency Client CA")
    server = issue(service_key, service_cert, "service.agency.test", server=True)
    client = issue(client_key, client_cert, "gw-b backend client", server=False)
    stranger = issue(other_key, other_cert, "a stranger", server=False)

    def write(name: str, data: bytes) -> Path:
        path = directory / name
        path.write_bytes(data)
        path.chmod(0o600)
        return path

    return Pki(
        service_ca.cert_pem.decode(),
        other_ca.cert_pem.decode(),
        client_ca.cert_pem.decode(),
        write("server.pem", server.cert_pem),
        write("server.key", server.key_pem),
        write("client.pem", client.cert_pem),
        write("client.key", client.key_pem),
        write("client-combined.pem", client.cert_pem + client.key_pem),
        write("stranger.pem", stranger.cert_pem),
        write("stranger.key", stranger.key_pem),
    )


async def _hello(request: web.Request) -> web.Response:
    return web.json_response({"hello": "backend"})


def _server_context(pki: Pki, *, require_client: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    if require_client:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=pki.client_ca)
    return context


@pytest.fixture(params=[False, True], ids=["tls", "mutual-tls"])
async def https_service(request: pytest.FixtureRequest, pki: Pki) -> AsyncIterator[tuple[str, bool]]:
    app = web.Application()
    app.router.add_get("/{tail:.*}", _hello)
    require_client: bool = request.param
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=_server_context(pki, require_client=require_client))
    try:
        yield f"https://127.0.0.1:{server.port}/hello", require_client
    finally:
        await server.close()


@pytest.fixture
async def transport() -> AsyncIterator[AiohttpTransport]:
    transport = backend_transport()
    try:
        yield transport
    finally:
        await transport.aclose()


async def call(transport: AiohttpTransport, url: str, tls: BackendTls | None) -> int:
    answer = await call_backend(transport, "GET", url, (), b"", timeout_seconds=5, max_bytes=LIMIT, tls=tls)
    return answer.status


def assert_plain(fault: XRoadFault, url: str) -> None:
    """A fault a client reads names host:port and the failure, in words of its own."""
    address = url.split("/")[2]
    assert address in fault.message, fault.message
    for internal in LIBRARY_INTERNALS:
        assert internal not in fault.message, fault.message


async def test_backend_tls_settings_are_applied(
    https_service: tuple[str, bool], transport: AiohttpTransport, pki: Pki
) -> None:
    url, requires_client = https_service
    client = {"client_cert_path": str(pki.client_cert), "client_key_path": str(pki.client_key)}
    right_ca = BackendTls(True, pki.service_ca, **client)
    wrong_ca = BackendTls(True, pki.other_ca, **client)
    no_verify = BackendTls(False, None, **client)

    assert await call(transport, url, right_ca) == 200
    assert await call(transport, url, no_verify) == 200
    assert await call(transport, url, BackendTls(True, pki.service_ca, str(pki.client_combined))) == 200
    for settings in (wrong_ca, BackendTls(), None):  # a CA of its own is in no system store
        with pytest.raises(XRoadFault) as refused:
            await call(transport, url, settings)
        assert refused.value.code == faults.SERVICE_FAILED_NETWORK_ERROR
        assert "certificate" in refused.value.message
        assert_plain(refused.value, url)

    if requires_client:
        for without in (
            BackendTls(True, pki.service_ca),
            BackendTls(False),
            BackendTls(True, pki.service_ca, str(pki.stranger_cert), str(pki.stranger_key)),
        ):
            with pytest.raises(XRoadFault) as refused:
                await call(transport, url, without)
            assert refused.value.code.startswith(faults.SERVICE_FAILED), refused.value.code
            assert_plain(refused.value, url)


async def test_unusable_tls_settings_are_a_service_fault_not_a_crash(
    https_service: tuple[str, bool], transport: AiohttpTransport, pki: Pki, tmp_path: Path
) -> None:
    url, _ = https_service
    for broken in (
        BackendTls(True, "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"),
        BackendTls(True, pki.service_ca, str(tmp_path / "missing.pem"), str(tmp_path / "missing.key")),
        BackendTls(True, pki.service_ca, str(pki.client_cert), str(pki.stranger_key)),  # key of another
    ):
        with pytest.raises(XRoadFault) as refused:
            await call(transport, url, broken)
        assert refused.value.code == faults.SERVICE_FAILED_NETWORK_ERROR
        assert "TLS settings" in refused.value.message
        assert_plain(refused.value, url)


async def test_a_refused_connection_reads_as_plain_words(
    transport: AiohttpTransport, closed_port_url: str
) -> None:
    """Hole 10: aiohttp says `Cannot connect to host ... ssl:default [...]` or shows its ConnectionKey."""
    for url in (closed_port_url, closed_port_url.replace("http:", "https:")):
        with pytest.raises(XRoadFault) as refused:
            await call(transport, url, BackendTls(True, None))
        assert refused.value.code == faults.SERVICE_FAILED_NETWORK_ERROR
        assert "cannot connect (connection refused)" in refused.value.message
        assert_plain(refused.value, url)


# --- through the provider's path ---------------------------------------------------------------


@pytest.fixture
async def real_backends(local: InProcessFederation) -> AsyncIterator[None]:
    """gw-c (BENEFITS_API's gateway) calls its services over real sockets."""
    runtime = local["gw-c"].runtime
    in_process, real = runtime._backends, backend_transport()
    runtime._backends = real
    try:
        yield
    finally:
        runtime._backends = in_process
        await real.aclose()


async def test_the_provider_uses_the_services_registered_tls(
    local: InProcessFederation, real_backends: None, https_service: tuple[str, bool], pki: Pki
) -> None:
    url, _ = https_service
    base = url.removesuffix("/hello")
    path = f"/r1/{BENEFITS_API.to_text()}/benefits/{KNOWN_PERSON}"
    client = (str(pki.client_cert), str(pki.client_key))

    def register(tls: BackendTls) -> None:
        with local["gw-c"].serverconf() as repository:
            service = repository.snapshot().service(BENEFITS_API)
            assert service is not None
            repository.update_service(dataclasses.replace(service, backend_url=base, tls=tls))

    register(BackendTls(True, pki.other_ca, *client))
    wrong = await local["gw-a"].request("GET", path, headers=rest_headers())
    register(BackendTls(True, pki.service_ca, *client))
    right = await local["gw-a"].request("GET", path, headers=rest_headers())

    assert_rest_error(wrong, faults.SERVICE_FAILED_NETWORK_ERROR, 500)
    assert "ConnectionKey" not in wrong.text
    assert right.status_code == 200, right.text
    assert right.json() == {"hello": "backend"}
