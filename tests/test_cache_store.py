"""The cache's store on SQLite and PostgreSQL (XGATE_TEST_PG_DSN), and policies kept in the
server configuration.

Each PostgreSQL test runs in a schema of its own; two stores on two engines stand for two
nodes of one gateway sharing the database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata

from gateway.cache import policies as cache_policies
from gateway.cache import tables
from gateway.cache.db import ALEMBIC_VERSION_TABLE, create_engine, migrate
from gateway.cache.key import CacheKey
from gateway.cache.policy import CacheMode, CachePolicy, PolicyError
from gateway.cache.store import CacheStore, CacheStoreError, NewEntry, subject_secrets
from gateway.cache.tables import EntryKind, Outcome
from gateway.ids import ClientId, ServiceId
from gateway.messagelog.crypto_at_rest import BodyCipher
from gateway.serverconf.db import migrate as migrate_serverconf
from gateway.serverconf.repository import AlreadyExists, NotFound, ServerConfRepository
from tests.conftest import own_tables_context

PG_DSN_ENV = "XGATE_TEST_PG_DSN"
CLIENT = ClientId("DEV", "GOV", "1111", "benefits")
OTHER_CLIENT = ClientId("DEV", "GOV", "1111", "pensions")
SERVICE = ServiceId("DEV", "GOV", "2222", "population", "getPerson", "v1")
OTHER_SERVICE = ServiceId("DEV", "GOV", "2222", "population", "getAddress")
KEYS = {"2026-12": bytes(range(32)), "2026-11": bytes(range(1, 33))}
SECRET_TEXT = b"Mari Maasikas, born 1980-01-08, lives at Tartu mnt 1"


def _pg_dsn() -> str:
    dsn = os.environ.get(PG_DSN_ENV)
    if not dsn:
        pytest.skip(f"{PG_DSN_ENV} is not set")
    return dsn


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'cache.db'}"
        migrate(url)
        yield url
        return
    dsn = _pg_dsn()
    schema = f"xgate_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(dsn)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = sa.make_url(dsn).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(False)
    try:
        migrate(url)
        yield url
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(url: str, clock: Clock) -> Iterator[CacheStore]:
    store = CacheStore(create_engine(url), clock=clock)
    yield store
    store.close()


def policy(name: str = "population", **changes: object) -> CachePolicy:
    values: dict[str, object] = {"name": name, "service": SERVICE, "mode": CacheMode.FALLBACK}
    values.update(changes)
    return CachePolicy(**values)  # type: ignore[arg-type]


def entry(
    digest: str = "a" * 64,
    *,
    client: ClientId | None = CLIENT,
    service: ServiceId = SERVICE,
    body: bytes = b"signed answer",
    identifiers: tuple[str, ...] = (),
    message_id: str = "msg-1",
) -> NewEntry:
    return NewEntry(
        CacheKey(digest, service, client),
        EntryKind.SOAP,
        message_id,
        "record-7",
        "multipart/mixed; boundary=x",
        body,
        signer_ocsp=b"ocsp",
        identifiers=identifiers,
    )


def test_the_migration_builds_exactly_the_tables_module(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context = own_tables_context(connection, ALEMBIC_VERSION_TABLE, tables.metadata)
            assert compare_metadata(context, tables.metadata) == []
            assert context.get_current_revision() == "0002"  # 0002: replication runs and leases
    finally:
        engine.dispose()


def test_a_lookup_reads_the_row_and_the_confirmation_at_once_and_the_body_only_when_new(
    store: CacheStore, clock: Clock
) -> None:
    changes: list[str | None] = []
    store.watch(changes.append)
    assert store.lookup("a" * 64, SERVICE, CLIENT) is None
    store.put(policy(), entry())
    assert changes == ["a" * 64]
    found = store.lookup("a" * 64, SERVICE, CLIENT)
    assert found is not None and not found.confirmed
    assert found.answer is not None and found.answer.transport == b"signed answer"
    assert found.answer.signer_ocsp == b"ocsp" and found.info.log_record == "record-7"
    store.confirm_client(SERVICE, CLIENT)
    held = store.lookup("a" * 64, SERVICE, CLIENT, held_sha256=found.body_sha256)
    assert held is not None and held.confirmed and held.answer is None and held.info == found.info
    clock.now += timedelta(minutes=5)
    store.put(policy(), entry(body=b"newer answer", message_id="msg-2"))
    newer = store.lookup("a" * 64, SERVICE, CLIENT, held_sha256=found.body_sha256)
    assert newer is not None and newer.answer is not None and newer.answer.transport == b"newer answer"
    assert newer.info.stored_at == clock.now and newer.body_sha256 != found.body_sha256
    assert store.purge(everything=True) == 1
    assert changes[-1] is None
    assert store.purge(everything=True) == 0 and len(changes) == 3, "nothing removed, nothing told"


def test_an_answer_is_kept_found_and_replaced(store: CacheStore, clock: Clock) -> None:
    stored = store.put(policy(), entry())
    assert stored is not None and not stored.encrypted
    found = store.get("a" * 64)
    assert found is not None
    assert found.transport == b"signed answer" and found.signer_ocsp == b"ocsp"
    assert found.transport_content_type == "multipart/mixed; boundary=x"
    assert found.info.client == CLIENT.to_text() and found.info.service == SERVICE.to_text()
    assert found.info.stored_at == clock.now and found.info.log_record == "record-7"
    clock.now += timedelta(minutes=5)
    store.put(policy(), entry(body=b"newer answer", message_id="msg-2"))
    again = store.get("a" * 64)
    assert again is not None and again.transport == b"newer answer"
    assert again.info.original_message_id == "msg-2" and again.info.stored_at == clock.now
    assert store.count_entries() == 1
    assert store.get("b" * 64) is None


def test_shared_entries_have_no_client(store: CacheStore) -> None:
    store.put(policy(shared=True), entry(client=None))
    found = store.get("a" * 64)
    assert found is not None and found.info.client is None


def test_an_answer_over_the_entry_limit_is_not_kept(store: CacheStore) -> None:
    assert store.put(policy(max_entry_bytes=5), entry(body=b"123456")) is None
    assert store.get("a" * 64) is None
    assert store.stats()[SERVICE.to_text()][Outcome.REFUSED.value] == 1


def test_the_oldest_entries_go_when_a_policy_is_over_its_total(store: CacheStore, clock: Clock) -> None:
    small = policy(max_entry_bytes=10, max_total_bytes=25)
    for index in range(4):
        store.put(small, entry(f"{index}" * 64, body=b"0123456789"))
        clock.now += timedelta(seconds=1)
    assert store.total_bytes("population") == 20
    assert [info.key[0] for info in store.list_entries()] == ["3", "2"]
    # Another policy's entries are not counted against it.
    store.put(policy("other", service=OTHER_SERVICE), entry("9" * 64, service=OTHER_SERVICE, body=b"x" * 30))
    assert store.total_bytes("population") == 20


def test_eviction_by_age_size_and_orphaned_policies(store: CacheStore, clock: Clock) -> None:
    short = policy(max_age_seconds=60.0)
    store.put(short, entry("1" * 64))
    store.put(policy("gone", service=OTHER_SERVICE), entry("2" * 64, service=OTHER_SERVICE))
    clock.now += timedelta(seconds=30)
    store.put(short, entry("3" * 64))
    clock.now += timedelta(seconds=31)
    assert store.evict([short]) == 2  # the old one, and the entry of a policy that no longer exists
    assert [info.key[0] for info in store.list_entries()] == ["3"]
    store.put(short, entry("4" * 64, client=OTHER_CLIENT))
    assert store.evict([policy(max_age_seconds=60.0, clients=frozenset({OTHER_CLIENT}))]) == 1
    assert [info.key[0] for info in store.list_entries()] == ["4"]


def test_purge_by_service_client_key_policy_and_everything(store: CacheStore) -> None:
    store.put(policy(), entry("1" * 64, client=CLIENT))
    store.put(policy(), entry("2" * 64, client=OTHER_CLIENT))
    store.put(policy("addr", service=OTHER_SERVICE), entry("3" * 64, service=OTHER_SERVICE))
    store.put(
        policy("addr", service=OTHER_SERVICE), entry("4" * 64, service=OTHER_SERVICE, client=OTHER_CLIENT)
    )
    with pytest.raises(ValueError, match="say what to purge"):
        store.purge()
    assert store.purge(key="1" * 64) == 1
    assert store.purge(service=OTHER_SERVICE, client=CLIENT) == 1
    assert store.purge_clients([OTHER_CLIENT], service=SERVICE) == 1
    assert store.purge(policy="addr") == 1
    store.put(policy(), entry("5" * 64))
    assert store.purge(everything=True) == 1
    assert store.count_entries() == 0


def test_purge_by_data_subject_finds_any_spelling(store: CacheStore) -> None:
    store.put(policy(), entry("1" * 64, identifiers=("EE-380 0108 5718", "getPerson")))
    store.put(policy(), entry("2" * 64, identifiers=("49002124277",)))
    assert store.purge(subject="no such person") == 0
    assert store.purge(subject="ab") == 0  # not an identifier at all
    assert store.purge(subject="ee38001085718") == 1
    assert [info.key[0] for info in store.list_entries()] == ["2"]
    with store.engine.connect() as connection:
        tokens = connection.execute(sa.select(tables.cache_entry_subjects.c.token)).scalars().all()
    assert tokens and all(b"4900212" not in bytes(token) for token in tokens)  # hashed, not in clear


def test_listing_filters_and_pages(store: CacheStore, clock: Clock) -> None:
    for index in range(5):
        store.put(policy(), entry(f"{index}" * 64, client=CLIENT if index % 2 else OTHER_CLIENT))
        clock.now += timedelta(seconds=1)
    assert [i.key[0] for i in store.list_entries(client=CLIENT)] == ["3", "1"]
    assert [i.key[0] for i in store.list_entries(limit=2, offset=1)] == ["3", "2"]
    assert store.list_entries(service=OTHER_SERVICE) == []


def test_counters_add_up_across_flushes_and_nodes(url: str, store: CacheStore) -> None:
    name = SERVICE.to_text()
    store.count(name, Outcome.HIT)
    store.count(name, Outcome.HIT)
    store.count(name, Outcome.MISS)
    assert store.stats() == {name: {"hit": 2, "miss": 1}}
    store.flush_stats()
    other = CacheStore(create_engine(url))
    try:
        other.count(name, Outcome.STALE)
        other.flush_stats()
        store.count(name, Outcome.HIT)
        assert store.stats(SERVICE) == {name: {"hit": 3, "miss": 1, "stale": 1}}
        assert store.stats(OTHER_SERVICE) == {}
    finally:
        other.close()


def test_two_nodes_sharing_a_database_see_each_others_entries(url: str, store: CacheStore) -> None:
    other = CacheStore(create_engine(url))
    try:
        other.put(policy(), entry())
        found = store.get("a" * 64)
        assert found is not None and found.transport == b"signed answer"
        store.purge(everything=True)
        assert other.get("a" * 64) is None
    finally:
        other.close()


def test_entries_survive_a_restart(url: str, clock: Clock) -> None:
    first = CacheStore(create_engine(url), clock=clock)
    first.put(policy(), entry())
    first.count(SERVICE.to_text(), Outcome.STALE)
    first.close()  # flushes the counters
    second = CacheStore(create_engine(url))
    try:
        found = second.get("a" * 64)
        assert found is not None and found.transport == b"signed answer"
        assert second.stats()[SERVICE.to_text()]["stale"] == 1
    finally:
        second.close()


def test_bodies_are_encrypted_at_rest_and_keys_rotate(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cache.db'}"
    migrate(url)
    old = CacheStore(
        create_engine(url),
        cipher=BodyCipher(KEYS, "2026-11"),
        secrets=subject_secrets(KEYS, "2026-11"),
    )
    info = old.put(policy(), entry(body=SECRET_TEXT, identifiers=("38001085718",)))
    assert info is not None and info.encrypted
    old.close()
    raw = b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.name.startswith("cache.db"))
    assert b"Mari Maasikas" not in raw and b"38001085718" not in raw
    # After rotation the old entry still reads, and a purge by subject still finds it.
    rotated = CacheStore(
        create_engine(url), cipher=BodyCipher(KEYS, "2026-12"), secrets=subject_secrets(KEYS, "2026-12")
    )
    try:
        found = rotated.get("a" * 64)
        assert found is not None and found.transport == SECRET_TEXT
        assert rotated.purge(subject="380-0108-5718") == 1
    finally:
        rotated.close()
    # Without the key, an encrypted entry is refused, not served as ciphertext.
    keyless = CacheStore(create_engine(url))
    try:
        keyless_store_entry = CacheStore(create_engine(url), cipher=BodyCipher(KEYS, "2026-12"))
        keyless_store_entry.put(policy(), entry(body=SECRET_TEXT))
        keyless_store_entry.close()
        with pytest.raises(CacheStoreError, match="no cache key"):
            keyless.get("a" * 64)
    finally:
        keyless.close()


def test_an_altered_clear_body_is_refused(store: CacheStore) -> None:
    store.put(policy(), entry())
    with store.engine.begin() as connection:
        connection.execute(sa.update(tables.cache_entries).values(body=b"forged answer"))
    with pytest.raises(CacheStoreError, match="does not match its digest"):
        store.get("a" * 64)


# --- policies in the server configuration ----------------------------------------------------


@pytest.fixture
def repository(tmp_path: Path) -> Iterator[ServerConfRepository]:
    url = f"sqlite:///{tmp_path / 'serverconf.db'}"
    migrate_serverconf(url)
    repository = ServerConfRepository.from_url(url)
    yield repository
    repository.engine.dispose()


def test_policies_are_validated_kept_listed_and_versioned(repository: ServerConfRepository) -> None:
    known = frozenset({SERVICE, OTHER_SERVICE})
    first = policy(clients=frozenset({CLIENT}), ttl_seconds=60.0, mode=CacheMode.REFRESH)
    version = repository.current_version()
    cache_policies.add_policy(repository, first, known)
    assert repository.current_version() == version + 1
    assert cache_policies.get_policy(repository, "population") == first
    with pytest.raises(AlreadyExists):
        cache_policies.add_policy(repository, first, known)
    with pytest.raises(PolicyError, match="unknown service"):
        cache_policies.add_policy(
            repository, policy("x", service=ServiceId("DEV", "GOV", "9", "s", "c")), known
        )
    second = policy("address", service=OTHER_SERVICE)
    cache_policies.add_policy(repository, second, known)
    assert [p.name for p in cache_policies.list_policies(repository)] == ["address", "population"]
    changed = policy(mode=CacheMode.OFF)
    cache_policies.update_policy(repository, changed, known)
    snapshot = repository.snapshot()
    assert set(snapshot.cache_policies) == {"address", "population"}
    assert set(cache_policies.policies_of(snapshot)) == {changed, second}
    cache_policies.remove_policy(repository, "address")
    with pytest.raises(NotFound):
        cache_policies.remove_policy(repository, "address")
    with pytest.raises(NotFound):
        cache_policies.update_policy(repository, second, known)
    assert [p.name for p in cache_policies.policies_of(repository.snapshot())] == ["population"]


def test_confirmed_clients_and_revocation(store: CacheStore) -> None:
    assert not store.is_confirmed(SERVICE, CLIENT)
    store.confirm_client(SERVICE, CLIENT)
    store.confirm_client(SERVICE, CLIENT)  # again: one row
    store.confirm_client(OTHER_SERVICE, CLIENT)
    assert store.is_confirmed(SERVICE, CLIENT) and not store.is_confirmed(SERVICE, OTHER_CLIENT)
    store.put(policy(), entry("1" * 64))
    store.put(policy("addr", service=OTHER_SERVICE), entry("2" * 64, service=OTHER_SERVICE))
    assert store.clients() == {CLIENT.to_text()}
    assert store.revoke_client(CLIENT, SERVICE) == 1
    assert not store.is_confirmed(SERVICE, CLIENT) and store.is_confirmed(OTHER_SERVICE, CLIENT)
    assert store.revoke_client(CLIENT) == 1
    assert store.clients() == set()


def test_known_services_depend_on_the_policys_side(repository: ServerConfRepository) -> None:
    from gateway.cache.policy import CacheSide

    snapshot = repository.snapshot()
    consumer = cache_policies.known_services(policy(), snapshot, None)
    assert SERVICE not in consumer  # no configuration: nothing is known
    provider = cache_policies.known_services(policy(side=CacheSide.PROVIDER), snapshot, None)
    assert SERVICE not in provider and "text" not in provider


async def test_a_node_cache_from_settings_encrypts_with_the_logs_key_file(tmp_path: Path) -> None:
    import base64
    import json

    from gateway.cache.service import CacheService
    from gateway.cache.settings import CacheSettings

    key_file = tmp_path / "body.keys"
    key_file.write_text(
        json.dumps({"current": "k1", "keys": {"k1": base64.b64encode(KEYS["2026-12"]).decode()}})
    )
    key_file.chmod(0o600)
    url = f"sqlite:///{tmp_path / 'node-cache.db'}"
    service = CacheService.from_settings(CacheSettings(url, body_key_file=key_file))
    try:
        info = service.store.put(policy(), entry(body=SECRET_TEXT, identifiers=("38001085718",)))
        assert info is not None and info.encrypted
        found = service.store.get("a" * 64)
        assert found is not None and found.transport == SECRET_TEXT
        assert service.store.purge(subject="38001085718") == 1
    finally:
        await service.close()
    raw = b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.name.startswith("node-cache.db"))
    assert b"Mari Maasikas" not in raw
