"""Shared end-to-end fixtures: running federations on 127.0.0.1, and the client side of the protocol.

One federation (`xgate federation up`: trust services, the central registry, three gateways
registered through it, two example services) serves the whole run; tests that change its
server configuration put it back. Tests that must forge the global configuration get a second
one whose configuration is a locally signed file; tests that stop the registry, revoke
certificates or wait for expiries get a third, through the registry with short validity and
OCSP freshness. Every federation is stopped, whatever happened.

The SOAP requests here are written out as text, not built by the code under test, so a test
states the exact bytes an agency system would send.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import socket
import ssl
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
import requests
import sqlalchemy as sa
from aiohttp import web
from alembic.migration import MigrationContext
from lxml import etree

from gateway.admin.client import AdminClient
from gateway.central.api_client import RegistryClient
from gateway.crypto.certs import load_certificate_file
from gateway.crypto.ocsp import OCSP_REQUEST_TYPE, build_ocsp_request
from gateway.dev import federation
from gateway.developer_cli import zeep_headers as developer_zeep_headers
from gateway.ids import ClientId, ServiceId
from gateway.protocol.transport import TRANSPORT_MEDIA_TYPE, Direction, SoapPayload, decode_transport
from gateway.proxy.certstatus import status_headers
from gateway.serverconf.db import create_engine
from gateway.serverconf.repository import ServerConfRepository
from gateway.xmlsafe import parse_xml
from tests.inprocess import Built, InProcessFederation, build_template, inprocess_federation

REPO: Final = Path(__file__).resolve().parents[1]
POPULATION_WSDL: Final = REPO / "wsdl" / "population-register.wsdl"
POPULATION_BINDING: Final = "{http://xgate.example/population-register}populationRegisterBinding"
POPULATION_NS: Final = "http://xgate.example/population-register"
SOAP_ENV_NS: Final = "http://schemas.xmlsoap.org/soap/envelope/"
XROAD_NS: Final = "http://x-road.eu/xsd/xroad.xsd"
ID_NS: Final = "http://x-road.eu/xsd/identifiers"

# A person services.population_register and services.benefits_api both know.
KNOWN_PERSON: Final = "38001085718"

CONSUMER: Final = ClientId("DEV", "GOV", "1001", "benefits-office")  # hosted on gw-a
POPULATION: Final = ClientId("DEV", "GOV", "1002", "population")  # hosted on gw-b
BENEFITS: Final = ClientId("DEV", "GOV", "1003", "benefits")  # hosted on gw-c
GET_PERSON: Final = ServiceId("DEV", "GOV", "1002", "population", "getPerson", "v1")
LIST_PERSONS: Final = ServiceId("DEV", "GOV", "1002", "population", "listPersons", "v1")
BENEFITS_API: Final = ServiceId("DEV", "GOV", "1003", "benefits", "benefits")

# A node sees database changes within a second (proxy.runtime.SNAPSHOT_POLL_SECONDS) and a new
# global configuration within 2-5 s (gateway/dev/federation.py's refresh intervals); these leave
# room for a busy CI.
SERVERCONF_WAIT_SECONDS: Final = 10.0
GLOBALCONF_WAIT_SECONDS: Final = 20.0
# Every HTTP call a test makes gets a timeout: a hung gateway fails the test instead of the run.
HTTP_TIMEOUT_SECONDS: Final = 20.0


PG_DSN_ENV: Final = "XGATE_TEST_PG_DSN"
"""Where the PostgreSQL variants of the storage tests connect; they skip when it is unset."""

BACKENDS: Final = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
"""The database backends a storage test runs on (parametrise a fixture with them)."""


def pytest_configure(config: pytest.Config) -> None:
    """In CI the PostgreSQL variants must run: a missing DSN is an error there, not a skip."""
    if os.environ.get("CI") and not os.environ.get(PG_DSN_ENV):
        raise pytest.UsageError(f"CI is set but {PG_DSN_ENV} is not: the PostgreSQL tests would skip")


# --- PostgreSQL: a schema per test or module ------------------------------------------------


def pg_dsn() -> str:
    """The test server's DSN; skips the test when none is set."""
    dsn = os.environ.get(PG_DSN_ENV)
    if not dsn:
        pytest.skip(f"{PG_DSN_ENV} is not set")
    return dsn


@contextlib.contextmanager
def pg_schema_url(prefix: str = "xgate_test") -> Iterator[str]:
    """A URL whose connections work in a new, empty schema (its search_path), dropped on leaving:
    tests and modules running at once on one server never see each other's tables."""
    dsn = pg_dsn()
    schema = f"{prefix}_{uuid.uuid4().hex[:16]}"
    admin = create_engine(dsn)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = sa.make_url(dsn).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@contextlib.contextmanager
def migrated_database(
    backend: str, directory: Path, file_name: str, migrate: Callable[[str], object], schema_prefix: str
) -> Iterator[str]:
    """One database on `backend` (of BACKENDS), migrated by `migrate`: the SQLite file `file_name`
    in `directory`, or a PostgreSQL schema of its own (dropped on leaving)."""
    if backend == "sqlite":
        url = f"sqlite:///{directory / file_name}"
        migrate(url)
        yield url
        return
    with pg_schema_url(schema_prefix) as url:
        migrate(url)
        yield url


def migrated_url_fixture(
    name: str, file_name: str, migrate: Callable[[str], object], schema_prefix: str
) -> Any:
    """A module-scoped fixture (assign it to `migrated_url`): one database per backend of BACKENDS
    for the module, migrated by `migrate`, in a temporary directory `name` or a schema of its own."""

    @pytest.fixture(scope="module", params=BACKENDS)
    def migrated_url(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[str]:
        directory = tmp_path_factory.mktemp(name)
        with migrated_database(request.param, directory, file_name, migrate, schema_prefix) as url:
            yield url

    return migrated_url


def empty_tables(connection: sa.Connection, metadata: sa.MetaData, keep: Collection[str] = ()) -> None:
    """Delete every row of `metadata`'s tables (children first) but those named in `keep`: a
    module's database back as a fresh migration left it, for the next test."""
    for table in reversed(metadata.sorted_tables):
        if table.name not in keep:
            connection.execute(sa.delete(table))


def own_tables_context(
    connection: sa.Connection, version_table: str, metadata: sa.MetaData
) -> MigrationContext:
    """An Alembic context that compares only `metadata`'s tables: the database is shared, so the
    other packages' tables (and their version tables) are not this module's drift."""
    return MigrationContext.configure(
        connection,
        opts={
            "version_table": version_table,
            "include_name": lambda name, kind, _: kind != "table" or name in metadata.tables,
        },
    )


@pytest.fixture
def fresh_pg_schema_url() -> Iterator[str]:
    """A URL whose connections work in a new, empty schema, dropped afterwards."""
    with pg_schema_url() as url:
        yield url


def one_row(database_url: str, query: str, **params: object) -> sa.Row[Any]:
    """The one row `query` finds in a gateway's database (its message log, say), read with an
    engine of its own: tests look at what a running gateway wrote."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text(query), params).one()
    finally:
        engine.dispose()


@contextlib.contextmanager
def serving_in_thread(
    app: web.Application, host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> Iterator[int]:
    """`app` listening on host:port (0: any free port) from an event loop in a thread of its own,
    for tests that call it synchronously; yields the port it bound, and stops it on leaving."""
    runner = web.AppRunner(app)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, host, port, ssl_context=ssl_context).start())
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        try:
            yield runner.addresses[0][1]
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
    finally:
        loop.close()


# --- in-process federations (tests.inprocess) ------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """One in-process federation's files for the module, built once and copied for each test."""
    return build_template(tmp_path_factory.mktemp("template") / "federation")


@pytest.fixture
async def local(tmp_path: Path, template: Built) -> AsyncIterator[InProcessFederation]:
    """A fresh copy for each test: tests change access rights, services and certificates freely."""
    async with inprocess_federation(tmp_path / "federation", template=template) as running:
        yield running


@dataclass(frozen=True)
class Federation:
    """A running development federation, as federation.json describes it."""

    dir: Path
    description: dict[str, Any]

    def gateway(self, name: str) -> dict[str, Any]:
        return next(gw for gw in self.description["gateways"] if gw["name"] == name)

    def internal_url(self, name: str) -> str:
        return str(self.gateway(name)["internal_http_url"])

    @property
    def ca_cert(self) -> str:
        return str(self.description["ca_cert"])

    @property
    def pki_dir(self) -> Path:
        return self.dir / "pki"

    @property
    def registry(self) -> RegistryClient:
        """The registry's management API, as its administrator (federations through the registry)."""
        registry = self.description["registry"]
        return RegistryClient(registry["management_url"], registry["api_key"], timeout=HTTP_TIMEOUT_SECONDS)

    @property
    def registry_url(self) -> str:
        """Where gateways reach the registry (distribution listener)."""
        return str(self.description["registry"]["distribution_url"])

    def admin(self, name: str) -> AdminClient:
        """The gateway's management API as its system administrator (who may do everything)."""
        gw = self.gateway(name)
        return AdminClient(gw["admin_url"], gw["api_key"], timeout=HTTP_TIMEOUT_SECONDS)

    def health(self, name: str) -> dict[str, Any]:
        """The admin listener's /health with the node's details: 200 healthy, 503 not (either is read)."""
        response = requests.get(self.gateway(name)["admin_url"] + "/health", timeout=HTTP_TIMEOUT_SECONDS)
        if response.status_code != 503:
            response.raise_for_status()
        health: dict[str, Any] = response.json()
        return health

    def wait_ready(self, timeout: float = GLOBALCONF_WAIT_SECONDS) -> None:
        """Every gateway on a valid configuration, with good OCSP responses where its CA has a responder."""

        def ready(name: str) -> bool:
            health = self.health(name)
            return bool(health["globalconf"]["valid"] and (health["ocsp"] or {}).get("ready"))

        for gw in self.description["gateways"]:
            wait_until(functools.partial(ready, gw["name"]), timeout, f"{gw['name']} to be ready")

    @contextlib.contextmanager
    def serverconf(self, name: str) -> Iterator[ServerConfRepository]:
        """The gateway's server-configuration database; on leaving, waits until the node runs on it."""
        repository = ServerConfRepository.from_url(f"sqlite:///{self.dir / name / 'serverconf.sqlite'}")
        try:
            yield repository
            version = repository.current_version()
        finally:
            repository.engine.dispose()
        wait_until(
            lambda: self.health(name)["serverconf_version"] >= version,
            SERVERCONF_WAIT_SECONDS,
            f"{name} to load server configuration version {version}",
        )


def ocsp_response(fed: Federation, certificate_path: str | Path) -> bytes:
    """The federation's OCSP responder's answer about a certificate its CA issued (RFC 6960 A.1)."""
    request = build_ocsp_request(
        load_certificate_file(Path(certificate_path)), load_certificate_file(Path(fed.ca_cert))
    )
    response = requests.post(
        fed.description["trust"]["ocsp_url"],
        data=request,
        headers={"Content-Type": OCSP_REQUEST_TYPE},
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    response.raise_for_status()
    return response.content


def peer_status_headers(fed: Federation, auth_cert: str) -> dict[str, str]:
    """What a gateway attaches to what it sends (docs/transport.md "Certificate status"): fresh OCSP
    responses for its TLS certificate `auth_cert` and for the signing certificate beside it
    (DIR/<gateway>/sign.pem), if there is one. None in a federation without trust services."""
    if "trust" not in fed.description:
        return {}
    sign_cert = Path(auth_cert).with_name("sign.pem")
    return status_headers(
        ocsp_response(fed, auth_cert), ocsp_response(fed, sign_cert) if sign_cert.exists() else None
    )


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def running_federation(directory: Path, **options: Any) -> Iterator[Federation]:
    """`federation.up` in `directory`, and `federation.down` however the block ends."""
    try:
        description = federation.up(directory, **options)
        yield Federation(directory, description)
    finally:
        federation.down(directory)


@pytest.fixture(scope="session")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """The federation the end-to-end tests share; tests that change it restore it."""
    with running_federation(tmp_path_factory.mktemp("federation")) as running:
        yield running


@pytest.fixture(scope="session")
def spare_fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """A second federation for tests that break its global configuration (they restore it).

    Its configuration is a file signed with DIR/globalconf-signer.key (no registry), so tests
    can re-sign it. It lists a dead standby gateway for gw-b's subsystem before gw-b itself:
    what failover is tested with.
    """
    with running_federation(
        tmp_path_factory.mktemp("spare"), unreachable_standby=True, registry=False
    ) as running:
        yield running


SHORT_TIMES: Final = federation.FederationTimes(
    validity_seconds=10,
    regenerate_seconds=2.0,
    refresh_interval_seconds=1,
    ocsp_freshness_seconds=8,
    timestamping_interval_seconds=2,
    # Longer than the trust services are ever down in a test that is not about timestamping.
    max_timestamp_failure_seconds=15.0,
)
"""Seconds where the development federation has minutes: expiries and staleness within a test."""


@pytest.fixture(scope="session")
def short_fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """A federation through the registry with SHORT_TIMES, for tests that stop its registry, revoke
    certificates or stand in for its gateways (each says what it leaves changed)."""
    with running_federation(tmp_path_factory.mktemp("short"), times=SHORT_TIMES) as running:
        yield running


# --- the client side of the protocol --------------------------------------------------------


def _identifier(element: str, object_type: str, parts: list[tuple[str, str | None]]) -> str:
    fields = "".join(f"<id:{name}>{value}</id:{name}>" for name, value in parts if value is not None)
    return f'<xrd:{element} id:objectType="{object_type}">{fields}</xrd:{element}>'


def _client_parts(client: ClientId) -> list[tuple[str, str | None]]:
    return [
        ("xRoadInstance", client.instance),
        ("memberClass", client.member_class),
        ("memberCode", client.member_code),
        ("subsystemCode", client.subsystem_code),
    ]


def _client_type(client: ClientId) -> str:
    return "SUBSYSTEM" if client.subsystem_code else "MEMBER"


def _service_parts(service: ServiceId) -> list[tuple[str, str | None]]:
    """The provider's parts, then the service's own (identifiers.xsd XRoadServiceIdentifierType)."""
    return [
        *_client_parts(service.provider),
        ("serviceCode", service.service_code),
        ("serviceVersion", service.service_version),
    ]


def client_xml(client: ClientId) -> str:
    return _identifier("client", _client_type(client), _client_parts(client))


def service_xml(service: ServiceId) -> str:
    return _identifier("service", "SERVICE", _service_parts(service))


def zeep_headers(
    client: ClientId = CONSUMER, service: ServiceId = GET_PERSON, **fields: Any
) -> dict[str, Any]:
    """The X-Road SOAP headers as zeep takes them (`_soapheaders=`): `client` calls `service`,
    with `fields` (id, protocolVersion, userId, ...) beside them (gateway.developer_cli)."""
    return developer_zeep_headers(client, service, **fields)


def soap_request(
    service: ServiceId,
    body: str,
    *,
    client: ClientId = CONSUMER,
    message_id: str | None = None,
    extra_header: str = "",
) -> bytes:
    """A SOAP 4.0 request as an agency system writes one; `body` is the Body's one element."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV_NS}" xmlns:xrd="{XROAD_NS}" xmlns:id="{ID_NS}">'
        "<soapenv:Header>"
        f"{client_xml(client)}{service_xml(service)}"
        f"<xrd:id>{message_id or uuid.uuid4()}</xrd:id>"
        "<xrd:protocolVersion>4.0</xrd:protocolVersion>"
        f"{extra_header}"
        "</soapenv:Header>"
        f"<soapenv:Body>{body}</soapenv:Body>"
        "</soapenv:Envelope>"
    ).encode()


def get_person_body(personal_code: str) -> str:
    return (
        f'<pr:getPerson xmlns:pr="{POPULATION_NS}"><pr:personalCode>{personal_code}</pr:personalCode>'
        "</pr:getPerson>"
    )


def get_person_request(personal_code: str, *, client: ClientId = CONSUMER) -> bytes:
    return soap_request(GET_PERSON, get_person_body(personal_code), client=client)


def post_soap(url: str, body: bytes, **kwargs: Any) -> requests.Response:
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
    return requests.post(url, data=body, headers=headers, timeout=HTTP_TIMEOUT_SECONDS, **kwargs)


@dataclass(frozen=True)
class Fault:
    code: str
    string: str
    detail: str | None


def signed_soap_fault(response: requests.Response) -> requests.Response:
    """A provider gateway's signed fault (docs/security.md "Answers from peers") as the SOAP
    fault inside it, the way the consumer passes it on; the transport reader checks its framing
    and that the signature's manifest covers exactly these parts."""
    assert response.status_code == 500, response.text[:500]
    message = decode_transport(
        response.headers["Content-Type"], response.content, max_bytes=2**24, direction=Direction.RESPONSE
    )
    assert isinstance(message.payload, SoapPayload), message.payload
    inner = requests.Response()
    inner.status_code = 500
    inner.headers = requests.structures.CaseInsensitiveDict({"Content-Type": message.payload.content_type})
    inner._content = message.payload.body
    return inner


def soap_fault(response: requests.Response) -> Fault:
    """The SOAP 1.1 Fault of a response (SOAP 1.1 §4.4); fails the test when there is none.

    A provider gateway's own answer to a peer is signed: its fault is the one inside.
    """
    if response.headers.get("Content-Type", "").startswith(TRANSPORT_MEDIA_TYPE):
        response = signed_soap_fault(response)
    assert response.status_code == 500, response.text[:500]
    assert response.headers["Content-Type"].startswith("text/xml"), response.headers["Content-Type"]
    envelope = parse_xml(response.content)
    fault = envelope.find(f"{{{SOAP_ENV_NS}}}Body/{{{SOAP_ENV_NS}}}Fault")
    assert fault is not None, response.text[:500]
    return Fault(
        fault.findtext("faultcode") or "",
        fault.findtext("faultstring") or "",
        fault.findtext("detail/faultDetail"),
    )


def assert_soap_fault(response: requests.Response, code: str) -> Fault:
    fault = soap_fault(response)
    assert fault.code == code, f"{fault.code}: {fault.string}"
    assert fault.detail, "a gateway fault carries the id of its log entry"
    return fault


def soap_body(response: requests.Response) -> etree._Element:
    """The one element of a successful response's Body."""
    assert response.status_code == 200, response.text[:1000]
    body = parse_xml(response.content).find(f"{{{SOAP_ENV_NS}}}Body")
    assert body is not None, response.text[:1000]
    (element,) = body
    return element


def assert_rest_error(response: requests.Response, code: str, status: int) -> dict[str, Any]:
    """A gateway's REST error (PROTOCOL.md "REST protocol r1"): JSON type, X-Road-Error, status."""
    assert response.status_code == status, f"{response.status_code}: {response.text[:500]}"
    assert response.headers.get("X-Road-Error") == code, response.headers
    assert response.headers["Content-Type"].startswith("application/json")
    error: dict[str, Any] = response.json()
    assert error["type"] == code, error
    assert error["message"] and error["detail"], error
    return error


def rest_url(fed: Federation, gateway: str, service: ServiceId, path: str = "") -> str:
    return f"{fed.internal_url(gateway)}/r1/{service.to_text()}{path}"


def rest_headers(client: ClientId = CONSUMER, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"X-Road-Client": client.to_text(), **(extra or {})}


@contextlib.contextmanager
def changed_service(fed: Federation, gateway: str, service: ServiceId, **changes: Any) -> Iterator[None]:
    """The service registered with `changes` (ServiceConf fields) while the block runs, then as before."""
    with fed.serverconf(gateway) as repository:
        before = repository.snapshot().service(service)
        assert before is not None, f"{service} is not registered at {gateway}"
        repository.update_service(dataclasses.replace(before, **changes))
    try:
        yield
    finally:
        with fed.serverconf(gateway) as repository:
            repository.update_service(before)


@pytest.fixture
def closed_port_url() -> Iterator[str]:
    """An http URL on 127.0.0.1 where nothing listens: a service that is down.

    The port stays bound, not listening, while the test runs: connections to it are refused,
    and no other process can start listening there meanwhile.
    """
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{bound.getsockname()[1]}/"
