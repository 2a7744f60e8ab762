"""Server configuration storage: migrations, repository, snapshots, on SQLite and PostgreSQL.

Every test runs against both backends. PostgreSQL needs XGATE_TEST_PG_DSN (CI sets it); each
run works in a schema of its own, so parallel runs never meet.
"""

from __future__ import annotations

import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.ids import ClientId, GlobalGroupId, LocalGroupId, ServiceId
from gateway.serverconf import tables
from gateway.serverconf.access import AccessRight, Endpoint
from gateway.serverconf.db import (
    ALEMBIC_VERSION_TABLE,
    SQLITE_BUSY_TIMEOUT_MS,
    alembic_config,
    begin_snapshot_read,
    begin_write,
    create_engine,
    migrate,
)
from gateway.serverconf.repository import (
    AlreadyExists,
    AuditResult,
    BackendTls,
    ClientAuthMode,
    KeyUsage,
    NotFound,
    ServerConfError,
    ServerConfRepository,
    ServerConfSnapshot,
    ServiceConf,
    ServiceDescription,
    ServiceKind,
)
from tests.certs import certificate_builder, common_name
from tests.conftest import BACKENDS, empty_tables, migrated_url_fixture

PROVIDER = ClientId("EE", "GOV", "70000001", "registry")
CONSUMER = ClientId("EE", "COM", "10000001", "app")
OTHER = ClientId("EE", "COM", "10000002", "crm")
NOBODY_IN_GLOBAL_GROUPS = lambda client, group: False  # noqa: E731


def soap_service(
    code: str = "getPerson", version: str | None = "v1", provider: ClientId = PROVIDER
) -> ServiceConf:
    service = ServiceId(
        provider.instance, provider.member_class, provider.member_code, provider.subsystem_code, code, version
    )
    return ServiceConf(service, ServiceKind.SOAP, "http://127.0.0.1:8080/soap")


def rest_service(code: str = "persons", provider: ClientId = PROVIDER) -> ServiceConf:
    service = ServiceId(
        provider.instance, provider.member_class, provider.member_code, provider.subsystem_code, code
    )
    return ServiceConf(
        service,
        ServiceKind.REST,
        "https://backend.example:8443/api",
        timeout_seconds=7.5,
        tls=BackendTls(False, "-----BEGIN CERTIFICATE-----\n...", "/etc/xgate/c.pem", "/etc/xgate/c.key"),
        description=ServiceDescription('{"openapi": "3.0.3"}', "https://backend.example/openapi.json"),
        endpoints=(
            Endpoint("GET", "/persons/{id}"),
            Endpoint("POST", "/persons"),
            Endpoint("*", "/admin/**"),
        ),
    )


def self_signed_pem(name: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = common_name(name)
    now = datetime.now(UTC)
    certificate = certificate_builder(
        subject, subject, key.public_key(), now - timedelta(minutes=1), now + timedelta(days=1)
    ).sign(key, hashes.SHA256())
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


# --- databases -------------------------------------------------------------------------


def run_together(threads: list[threading.Thread], timeout: float) -> None:
    """Start `threads` at once, then wait for each (at most `timeout` s apiece)."""
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database nothing has been created in yet."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'serverconf.db'}"
    url: str = request.getfixturevalue("fresh_pg_schema_url")
    return url


migrated_url = migrated_url_fixture("serverconf", "serverconf.db", migrate, "xgate_test")
"""One migrated database per backend for the module; `engine` empties it for each test."""


@pytest.fixture
def engine(migrated_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(migrated_url)
    with engine.begin() as connection:
        empty_tables(connection, tables.metadata, keep={tables.config_version.name})
        connection.execute(sa.update(tables.config_version).values(version=0))
    yield engine
    engine.dispose()


@pytest.fixture
def repo(engine: sa.Engine) -> ServerConfRepository:
    return ServerConfRepository(engine)


@pytest.fixture
def provider_repo(repo: ServerConfRepository) -> ServerConfRepository:
    """A repository with the provider, a consumer, one SOAP and one REST service."""
    repo.add_subsystem(PROVIDER)
    repo.add_subsystem(CONSUMER, ClientAuthMode.HTTPS_CERT)
    repo.add_service(soap_service())
    repo.add_service(rest_service())
    return repo


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


# --- engines and migrations ------------------------------------------------------------


def test_migration_from_empty_builds_exactly_the_tables_module(empty_database_url: str) -> None:
    migrate(empty_database_url)
    migrate(empty_database_url)  # a second run is a no-op
    engine = create_engine(empty_database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table": ALEMBIC_VERSION_TABLE})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # SQLite cannot reflect the expression indexes
                assert compare_metadata(context, tables.metadata) == []
            head = ScriptDirectory.from_config(alembic_config()).get_current_head()
            assert context.get_current_revision() == head == "0005"
            assert connection.execute(sa.select(tables.config_version.c.version)).scalars().all() == [0]
        assert ServerConfRepository(engine).snapshot().version == 0
    finally:
        engine.dispose()


def test_expression_unique_indexes_make_no_version_one_value(engine: sa.Engine) -> None:
    # NULLs are distinct in UNIQUE; the coalescing index must refuse a second unversioned service.
    repo = ServerConfRepository(engine)
    repo.add_subsystem(PROVIDER)
    repo.add_service(soap_service(version=None))
    with engine.connect() as connection:
        row = connection.execute(sa.select(tables.services)).one()._asdict()
        row.pop("id")
        with pytest.raises(sa.exc.IntegrityError):
            connection.execute(sa.insert(tables.services).values(**row))


def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == SQLITE_BUSY_TIMEOUT_MS
    finally:
        engine.dispose()


def test_sqlite_writers_that_read_first_queue_instead_of_failing(tmp_path: Path) -> None:
    # Two read-then-write transactions: with a deferred BEGIN the later writer's read snapshot
    # goes stale and SQLite fails it at once ("database is locked"); begin_write must queue it.
    url = f"sqlite:///{tmp_path / 'w.db'}"
    migrate(url)
    engine = create_engine(url)
    first_has_read = threading.Event()
    errors: list[BaseException] = []

    def writer(name: str, wait: threading.Event | None) -> None:
        try:
            if wait is not None:
                wait.wait(5)
            with begin_write(engine) as connection:
                connection.execute(sa.select(tables.config_version.c.version)).scalar_one()
                if wait is None:
                    first_has_read.set()
                    time.sleep(0.2)
                connection.execute(
                    sa.insert(tables.keys).values(
                        usage="auth", key_path=name, status="new", created_at=datetime.now(UTC)
                    )
                )
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [
        threading.Thread(target=writer, args=("first", None)),
        threading.Thread(target=writer, args=("second", first_has_read)),
    ]
    try:
        run_together(threads, timeout=30)
        assert errors == []
        assert count(engine, tables.keys) == 2
    finally:
        engine.dispose()


def test_postgresql_urls_get_psycopg_3_and_others_are_refused() -> None:
    for url in (
        "postgresql://u@127.0.0.1/db",
        "postgres://u@127.0.0.1/db",
        "postgresql+psycopg://u@127.0.0.1/db",
    ):
        assert create_engine(url).dialect.driver == "psycopg"
    for url in ("mysql://u@127.0.0.1/db", "postgresql+asyncpg://u@127.0.0.1/db", "sqlite+aiosqlite:///x.db"):
        with pytest.raises(ValueError):
            create_engine(url)


# --- subsystems ------------------------------------------------------------------------


def test_a_new_subsystem_needs_a_pinned_certificate_and_the_unauthenticated_are_listed(
    repo: ServerConfRepository,
) -> None:
    """Build 9: https_cert unless told otherwise; http and https are explicit and listed as such."""
    plain, no_cert = ClientId("DEV", "GOV", "1003", "plain"), ClientId("DEV", "GOV", "1003", "nocert")
    repo.add_subsystem(PROVIDER)
    repo.add_subsystem(no_cert, ClientAuthMode.HTTPS)
    repo.add_subsystem(plain, ClientAuthMode.HTTP)
    snapshot = repo.snapshot()
    provider = snapshot.subsystem(PROVIDER)
    assert provider is not None and provider.auth_mode is ClientAuthMode.HTTPS_CERT and provider.authenticated
    assert [conf.client for conf in snapshot.unauthenticated_subsystems()] == sorted([plain, no_cert])
    # Changing a mode is what flags or clears a subsystem; stored modes are read back as stored.
    repo.set_auth_mode(plain, ClientAuthMode.HTTPS_CERT)
    assert [conf.client for conf in repo.snapshot().unauthenticated_subsystems()] == [no_cert]
    assert ServerConfSnapshot.empty().unauthenticated_subsystems() == []


def test_subsystems_are_registered_changed_and_removed(repo: ServerConfRepository) -> None:
    repo.add_subsystem(CONSUMER, ClientAuthMode.HTTPS)
    repo.add_subsystem(CONSUMER.member, ClientAuthMode.HTTP)
    snapshot = repo.snapshot()
    assert snapshot.subsystem(CONSUMER).auth_mode is ClientAuthMode.HTTPS  # type: ignore[union-attr]
    assert snapshot.subsystem(CONSUMER.member).auth_mode is ClientAuthMode.HTTP  # type: ignore[union-attr]
    with pytest.raises(AlreadyExists):
        repo.add_subsystem(CONSUMER)
    repo.set_auth_mode(CONSUMER, ClientAuthMode.HTTPS_CERT)
    assert repo.snapshot().subsystem(CONSUMER).auth_mode is ClientAuthMode.HTTPS_CERT  # type: ignore[union-attr]
    repo.remove_subsystem(CONSUMER)
    assert repo.snapshot().subsystem(CONSUMER) is None
    assert repo.snapshot().subsystem(CONSUMER.member) is not None
    with pytest.raises(NotFound):
        repo.remove_subsystem(CONSUMER)


def test_the_logging_policy_defaults_to_bodies_and_batched_stamps_and_can_change(
    repo: ServerConfRepository,
) -> None:
    repo.add_subsystem(CONSUMER)
    conf = repo.snapshot().subsystem(CONSUMER)
    assert conf is not None and conf.log_bodies and not conf.timestamp_immediately
    version = repo.current_version()
    repo.set_logging_policy(CONSUMER, log_bodies=False)
    conf = repo.snapshot().subsystem(CONSUMER)
    assert conf is not None and not conf.log_bodies and not conf.timestamp_immediately
    repo.set_logging_policy(CONSUMER, timestamp_immediately=True)
    conf = repo.snapshot().subsystem(CONSUMER)
    assert conf is not None and not conf.log_bodies and conf.timestamp_immediately
    assert repo.current_version() == version + 2
    with pytest.raises(NotFound):
        repo.set_logging_policy(PROVIDER, log_bodies=True)


def test_pinned_certificates_are_fingerprinted_as_openssl_does(
    repo: ServerConfRepository, tmp_path: Path
) -> None:
    repo.add_subsystem(CONSUMER, ClientAuthMode.HTTPS_CERT)
    pem, other_pem = self_signed_pem("consumer"), self_signed_pem("stranger")
    fingerprint = repo.pin_certificate(CONSUMER, pem)

    (tmp_path / "c.pem").write_text(pem)
    out = subprocess.run(
        ["openssl", "x509", "-in", str(tmp_path / "c.pem"), "-noout", "-fingerprint", "-sha256"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert fingerprint == out.strip().split("=", 1)[1].replace(":", "").lower()

    conf = repo.snapshot().subsystem(CONSUMER)
    assert conf is not None and [c.sha256 for c in conf.certificates] == [fingerprint]
    der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)
    other_der = x509.load_pem_x509_certificate(other_pem.encode()).public_bytes(serialization.Encoding.DER)
    assert conf.accepts_certificate(der)
    assert not conf.accepts_certificate(other_der)

    with pytest.raises(AlreadyExists):
        repo.pin_certificate(CONSUMER, pem)
    with pytest.raises(ServerConfError):
        repo.pin_certificate(
            CONSUMER, "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
        )
    repo.unpin_certificate(CONSUMER, fingerprint.upper())
    assert repo.snapshot().subsystem(CONSUMER).certificates == ()  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        repo.unpin_certificate(CONSUMER, fingerprint)


# --- services --------------------------------------------------------------------------


def test_services_round_trip_with_every_setting(provider_repo: ServerConfRepository) -> None:
    snapshot = provider_repo.snapshot()
    rest = rest_service()
    assert snapshot.service(rest.service) == rest
    assert snapshot.service(soap_service().service) == soap_service()
    assert [c.service.service_code for c in snapshot.services_of(PROVIDER)] == ["getPerson", "persons"]
    assert snapshot.services_of(CONSUMER) == []


def test_a_version_is_part_of_the_service_identity(provider_repo: ServerConfRepository) -> None:
    provider_repo.add_service(soap_service(version=None))
    provider_repo.add_service(soap_service(version="v2"))
    with pytest.raises(AlreadyExists):
        provider_repo.add_service(soap_service(version=None))
    snapshot = provider_repo.snapshot()
    assert snapshot.service(soap_service(version=None).service) is not None
    assert snapshot.service(soap_service(version="v3").service) is None
    assert len(snapshot.services_of(PROVIDER)) == 4


def test_services_need_a_registered_provider(repo: ServerConfRepository) -> None:
    with pytest.raises(NotFound):
        repo.add_service(soap_service())


def test_services_are_updated_disabled_and_removed(provider_repo: ServerConfRepository) -> None:
    rest = rest_service()
    changed = ServiceConf(
        rest.service, ServiceKind.REST, "http://127.0.0.1:9000/", endpoints=(Endpoint("GET", "/x"),)
    )
    provider_repo.update_service(changed)
    assert provider_repo.snapshot().service(rest.service) == changed

    provider_repo.set_service_enabled(rest.service, False, "Maintenance until 18:00")
    conf = provider_repo.snapshot().service(rest.service)
    assert conf is not None and not conf.enabled and conf.disabled_notice == "Maintenance until 18:00"
    provider_repo.set_service_enabled(rest.service, True)
    conf = provider_repo.snapshot().service(rest.service)
    assert conf is not None and conf.enabled and conf.disabled_notice is None

    provider_repo.add_endpoint(rest.service, Endpoint("delete", "/persons/{id}"))
    with pytest.raises(AlreadyExists):
        provider_repo.add_endpoint(rest.service, Endpoint("DELETE", "/persons//{id}/"))
    with pytest.raises(ServerConfError):
        provider_repo.add_endpoint(soap_service().service, Endpoint("GET", "/x"))
    provider_repo.remove_endpoint(rest.service, Endpoint("GET", "/x"))
    assert provider_repo.snapshot().service(rest.service).endpoints == (  # type: ignore[union-attr]
        Endpoint("DELETE", "/persons/{id}"),
    )

    provider_repo.remove_service(rest.service)
    assert provider_repo.snapshot().service(rest.service) is None
    with pytest.raises(NotFound):
        provider_repo.remove_service(rest.service)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ServiceConf(ServiceId("EE", "GOV", "1", "s", "listMethods"), ServiceKind.SOAP, "http://h/"),
        lambda: ServiceConf(
            ServiceId("EE", "GOV", "1", "s", "a"), ServiceKind.SOAP, "http://h/", timeout_seconds=0
        ),
        lambda: ServiceConf(ServiceId("EE", "GOV", "1", "s", "a"), ServiceKind.SOAP, "ftp://h/"),
        lambda: ServiceConf(
            ServiceId("EE", "GOV", "1", "s", "a"),
            ServiceKind.SOAP,
            "http://h/",
            endpoints=(Endpoint("GET", "/"),),
        ),
        lambda: BackendTls(client_key_path="/k.pem"),
    ],
)
def test_invalid_service_settings_are_refused(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


# --- access rights ---------------------------------------------------------------------


def test_access_rights_decide_through_the_snapshot(provider_repo: ServerConfRepository) -> None:
    soap, rest = soap_service().service, rest_service().service
    group = GlobalGroupId("EE", "trusted")
    provider_repo.grant(PROVIDER, AccessRight(CONSUMER, "getPerson"))
    provider_repo.grant(PROVIDER, AccessRight(CONSUMER, "persons", Endpoint("GET", "/persons/*")))
    provider_repo.grant(PROVIDER, AccessRight(OTHER.member, "getPerson"))
    provider_repo.grant(PROVIDER, AccessRight(group, "persons"))
    snapshot = provider_repo.snapshot()
    in_group = lambda client, g: client == OTHER and g == group  # noqa: E731

    def allowed(
        client: ClientId, service: ServiceId, method: str | None = None, path: str | None = None
    ) -> bool:
        return snapshot.allowed(client, service, method, path, global_group_member=in_group)

    assert allowed(CONSUMER, soap)
    assert allowed(CONSUMER, rest, "GET", "/persons/38001010000")
    assert not allowed(CONSUMER, rest, "POST", "/persons")
    assert allowed(OTHER.member, soap) and not allowed(OTHER, soap)  # a member is not its subsystems
    assert allowed(OTHER, rest, "DELETE", "/persons/1")  # by the global group
    assert not allowed(CONSUMER.member, soap)
    # A version the right never named: rights are per service code.
    assert allowed(CONSUMER, soap_service(version="v9").service)

    assert [
        c.service for c in snapshot.allowed_services(CONSUMER, PROVIDER, global_group_member=in_group)
    ] == [
        soap,
        rest,
    ]
    assert snapshot.allowed_services(CONSUMER.member, PROVIDER, global_group_member=in_group) == []
    assert snapshot.allowed_endpoints(CONSUMER, rest, global_group_member=in_group) == [
        Endpoint("GET", "/persons/{id}")
    ]
    assert snapshot.allowed_endpoints(OTHER, rest, global_group_member=in_group) == list(
        rest_service().endpoints
    )
    assert len(snapshot.rights(PROVIDER)) == 4 and len(snapshot.rights(PROVIDER, "persons")) == 2

    provider_repo.revoke(PROVIDER, AccessRight(CONSUMER, "getPerson"))
    assert not provider_repo.snapshot().allowed(CONSUMER, soap, global_group_member=in_group)
    with pytest.raises(NotFound):
        provider_repo.revoke(PROVIDER, AccessRight(CONSUMER, "getPerson"))


def test_grants_are_checked(provider_repo: ServerConfRepository) -> None:
    provider_repo.grant(PROVIDER, AccessRight(CONSUMER, "persons", Endpoint("GET", "/persons/*")))
    with pytest.raises(AlreadyExists):
        provider_repo.grant(PROVIDER, AccessRight(CONSUMER, "persons", Endpoint("get", "/persons//*/")))
    provider_repo.grant(PROVIDER, AccessRight(CONSUMER, "persons"))  # whole service: a different right
    with pytest.raises(NotFound):
        provider_repo.grant(PROVIDER, AccessRight(CONSUMER, "noSuchService"))
    with pytest.raises(NotFound):
        provider_repo.grant(OTHER, AccessRight(CONSUMER, "persons"))
    with pytest.raises(ServerConfError):
        provider_repo.grant(PROVIDER, AccessRight(CONSUMER, "getPerson", Endpoint("GET", "/")))
    with pytest.raises(NotFound):
        provider_repo.grant(PROVIDER, AccessRight(LocalGroupId("nope"), "persons"))


def test_rights_go_with_the_last_version_of_their_service(provider_repo: ServerConfRepository) -> None:
    provider_repo.add_service(soap_service(version="v2"))
    provider_repo.grant(PROVIDER, AccessRight(CONSUMER, "getPerson"))
    provider_repo.remove_service(soap_service(version="v1").service)
    assert provider_repo.snapshot().rights(PROVIDER, "getPerson") == [AccessRight(CONSUMER, "getPerson")]
    provider_repo.remove_service(soap_service(version="v2").service)
    assert provider_repo.snapshot().rights(PROVIDER, "getPerson") == []


def test_local_groups_grant_to_their_members(provider_repo: ServerConfRepository) -> None:
    group = LocalGroupId("partners")
    provider_repo.add_local_group(PROVIDER, group, "Partner agencies")
    with pytest.raises(AlreadyExists):
        provider_repo.add_local_group(PROVIDER, group)
    provider_repo.add_local_group_member(PROVIDER, group, OTHER)
    with pytest.raises(AlreadyExists):
        provider_repo.add_local_group_member(PROVIDER, group, OTHER)
    provider_repo.grant(PROVIDER, AccessRight(group, "getPerson"))
    provider_repo.set_local_group_description(PROVIDER, group, "Partners")

    snapshot = provider_repo.snapshot()
    soap = soap_service().service
    assert snapshot.allowed(OTHER, soap, global_group_member=NOBODY_IN_GLOBAL_GROUPS)
    assert not snapshot.allowed(CONSUMER, soap, global_group_member=NOBODY_IN_GLOBAL_GROUPS)
    [stored] = snapshot.local_groups_of(PROVIDER)
    assert (stored.group, stored.description, stored.members) == (group, "Partners", frozenset({OTHER}))

    provider_repo.remove_local_group_member(PROVIDER, group, OTHER)
    assert not provider_repo.snapshot().allowed(OTHER, soap, global_group_member=NOBODY_IN_GLOBAL_GROUPS)
    with pytest.raises(NotFound):
        provider_repo.remove_local_group_member(PROVIDER, group, OTHER)
    provider_repo.remove_local_group(PROVIDER, group)
    snapshot = provider_repo.snapshot()
    assert snapshot.local_groups_of(PROVIDER) == [] and snapshot.rights(PROVIDER) == []


def test_removing_a_subsystem_takes_everything_of_it_along(provider_repo: ServerConfRepository) -> None:
    provider_repo.grant(PROVIDER, AccessRight(CONSUMER, "persons", Endpoint("GET", "/persons/*")))
    provider_repo.add_local_group(PROVIDER, LocalGroupId("g"))
    provider_repo.add_local_group_member(PROVIDER, LocalGroupId("g"), CONSUMER)
    provider_repo.pin_certificate(PROVIDER, self_signed_pem("provider"))
    provider_repo.remove_subsystem(PROVIDER)
    engine = provider_repo.engine
    for table in (
        tables.services,
        tables.rest_endpoints,
        tables.access_rights,
        tables.local_groups,
        tables.local_group_members,
        tables.client_certificates,
    ):
        assert count(engine, table) == 0, table.name  # foreign keys cascade (SQLite: only when switched on)


# --- versions, snapshots and nodes -----------------------------------------------------


def test_every_change_bumps_the_version_once_and_failures_do_not(repo: ServerConfRepository) -> None:
    changes = [
        lambda: repo.add_subsystem(PROVIDER),
        lambda: repo.add_subsystem(CONSUMER),
        lambda: repo.set_auth_mode(CONSUMER, ClientAuthMode.HTTP),
        lambda: repo.add_service(rest_service()),
        lambda: repo.add_endpoint(rest_service().service, Endpoint("PUT", "/p")),
        lambda: repo.grant(PROVIDER, AccessRight(CONSUMER, "persons")),
        lambda: repo.add_local_group(PROVIDER, LocalGroupId("g")),
        lambda: repo.add_local_group_member(PROVIDER, LocalGroupId("g"), CONSUMER),
        lambda: repo.set_service_enabled(rest_service().service, False, "off"),
        lambda: repo.create_api_key("ops", "observer"),
        lambda: repo.add_key(KeyUsage.AUTH, "/keys/auth.pem"),
    ]
    for expected, change in enumerate(changes, start=1):
        change()
        assert repo.current_version() == expected
    with pytest.raises(NotFound):
        repo.remove_subsystem(OTHER)
    with pytest.raises(AlreadyExists):
        repo.add_subsystem(PROVIDER)
    repo.audit("admin", "look", "")
    assert repo.current_version() == len(changes)


def test_snapshot_is_kept_until_the_version_moves(repo: ServerConfRepository) -> None:
    repo.add_subsystem(PROVIDER)
    first = repo.snapshot()
    assert repo.snapshot() is first
    repo.add_subsystem(CONSUMER)
    second = repo.snapshot()
    assert second is not first and second.version == first.version + 1
    assert first.subsystem(CONSUMER) is None and second.subsystem(CONSUMER) is not None
    with pytest.raises(TypeError):
        second.subsystems[OTHER] = second.subsystems[CONSUMER]  # type: ignore[index]


def test_a_snapshot_read_sees_one_state_while_others_commit(repo: ServerConfRepository) -> None:
    # Snapshot loading takes several queries; a commit between them must not show half-way.
    engine = repo.engine
    with begin_snapshot_read(engine) as connection:
        before = connection.execute(sa.select(tables.config_version.c.version)).scalar_one()
        repo.add_subsystem(PROVIDER)  # commits on another connection meanwhile
        assert connection.execute(sa.select(tables.config_version.c.version)).scalar_one() == before
        assert connection.execute(sa.select(sa.func.count()).select_from(tables.subsystems)).scalar_one() == 0
    assert repo.current_version() == before + 1


def test_two_nodes_see_each_others_changes(migrated_url: str, engine: sa.Engine) -> None:
    node_a = ServerConfRepository(create_engine(migrated_url))
    node_b = ServerConfRepository(create_engine(migrated_url))
    try:
        node_b.add_subsystem(PROVIDER)
        node_b.add_service(soap_service())
        before = node_a.snapshot(max_staleness=60)
        soap = soap_service().service
        assert not before.allowed(CONSUMER, soap, global_group_member=NOBODY_IN_GLOBAL_GROUPS)

        node_b.grant(PROVIDER, AccessRight(CONSUMER, "getPerson"))
        # Within max_staleness node A does not ask; asked, it sees the new version.
        assert node_a.snapshot(max_staleness=60) is before
        after = node_a.snapshot()
        assert after.version == node_b.current_version() == before.version + 1
        assert after.allowed(CONSUMER, soap, global_group_member=NOBODY_IN_GLOBAL_GROUPS)
        assert not before.allowed(CONSUMER, soap, global_group_member=NOBODY_IN_GLOBAL_GROUPS)
    finally:
        node_a.engine.dispose()
        node_b.engine.dispose()


def test_concurrent_writers_on_two_nodes_queue_and_lose_nothing(migrated_url: str, engine: sa.Engine) -> None:
    nodes = [ServerConfRepository(create_engine(migrated_url)) for _ in range(2)]
    errors: list[BaseException] = []

    def register(node: ServerConfRepository, prefix: str) -> None:
        try:
            for i in range(15):
                node.add_subsystem(ClientId("EE", "COM", f"{prefix}{i}", "app"))
                node.audit("admin", "add_subsystem", f"{prefix}{i}")
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=register, args=(node, p)) for node, p in zip(nodes, "ab", strict=True)]
    try:
        run_together(threads, timeout=60)
        assert errors == []
        assert nodes[0].current_version() == 30
        assert len(nodes[1].snapshot().subsystems) == 30
        assert len(nodes[0].audit_entries(limit=1000)) == 30
    finally:
        for node in nodes:
            node.engine.dispose()


def test_an_empty_snapshot_is_older_than_any_database(repo: ServerConfRepository) -> None:
    empty = ServerConfSnapshot.empty()
    assert empty.version < repo.current_version() + 1 and empty.services_of(PROVIDER) == []
    assert not empty.allowed(CONSUMER, soap_service().service, global_group_member=NOBODY_IN_GLOBAL_GROUPS)


# --- administrative tables -------------------------------------------------------------


def test_api_keys_are_shown_once_stored_hashed_verified_and_revoked(repo: ServerConfRepository) -> None:
    record, key = repo.create_api_key("ci", "service_administrator")
    assert len(key) >= 43 and record.role == "service_administrator" and not record.revoked
    assert record.created_at.tzinfo is not None
    with repo.engine.connect() as connection:
        stored = [str(v) for row in connection.execute(sa.select(tables.api_keys)) for v in row]
    assert all(key not in value for value in stored)

    verified = repo.verify_api_key(key)
    assert verified is not None and verified.id == record.id and verified.name == "ci"
    assert repo.verify_api_key(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert repo.verify_api_key("") is None
    assert repo.verify_api_key(key * 10) is None

    _, second_key = repo.create_api_key("observer", "observer")
    assert second_key != key
    repo.revoke_api_key(record.id)
    assert repo.verify_api_key(key) is None
    assert repo.verify_api_key(second_key) is not None
    assert [(k.name, k.revoked) for k in repo.list_api_keys()] == [("ci", True), ("observer", False)]
    with pytest.raises(NotFound):
        repo.revoke_api_key(record.id)


def test_audit_entries_are_kept_filtered_and_paged(repo: ServerConfRepository) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    ids = [
        repo.audit("alice", "add_subsystem", "EE/COM/1/app", {"auth_mode": "https", "n": [1, 2]}),
        repo.audit("bob", "grant", "EE/GOV/1/r", None, AuditResult.REFUSED),
        repo.audit("alice", "remove_service", "x", {"why": "gone"}, AuditResult.ERROR),
    ]
    entries = repo.audit_entries()
    assert [e.id for e in entries] == ids[::-1]
    first = entries[-1]
    assert first.details == {"auth_mode": "https", "n": [1, 2]} and first.result is AuditResult.OK
    assert first.at.tzinfo is not None and first.at >= start
    assert [e.action for e in repo.audit_entries(actor="alice")] == ["remove_service", "add_subsystem"]
    assert [e.result for e in repo.audit_entries(action="grant")] == [AuditResult.REFUSED]
    assert [e.id for e in repo.audit_entries(limit=1, before_id=ids[2])] == [ids[1]]
    assert repo.audit_entries(since=datetime.now(UTC) + timedelta(hours=1)) == []
    with pytest.raises(ValueError):
        repo.audit("alice", "x", "", None, "maybe")  # type: ignore[arg-type]


def test_keys_are_recorded_updated_and_removed(repo: ServerConfRepository) -> None:
    with pytest.raises(ServerConfError):
        repo.add_key(KeyUsage.SIGN, "/keys/sign.pem")
    auth = repo.add_key(KeyUsage.AUTH, "/keys/auth.pem", csr_pem="CSR")
    sign = repo.add_key(KeyUsage.SIGN, "/keys/sign.pem", member=CONSUMER.member, status="registered")
    assert repo.get_key(sign.id) == sign and sign.member == CONSUMER.member
    updated = repo.update_key(auth.id, cert_pem="CERT", status="in_use")
    assert (updated.cert_pem, updated.csr_pem, updated.status) == ("CERT", "CSR", "in_use")
    assert [k.id for k in repo.list_keys(KeyUsage.SIGN)] == [sign.id]
    assert len(repo.list_keys()) == 2
    repo.remove_key(auth.id)
    assert repo.get_key(auth.id) is None
    with pytest.raises(NotFound):
        repo.update_key(auth.id, status="x")
    with pytest.raises(NotFound):
        repo.remove_key(auth.id)
    with repo.engine.connect() as connection, pytest.raises(sa.exc.IntegrityError):
        # The schema itself refuses a signing key without a member.
        connection.execute(
            sa.insert(tables.keys).values(
                usage="sign", key_path="/k", status="new", created_at=datetime.now(UTC), member_id=None
            )
        )
