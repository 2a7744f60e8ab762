"""Message log storage: migrations, group commit, durability, bodies at rest, search, purge.

Every database test runs on SQLite and PostgreSQL (XGATE_TEST_PG_DSN, which CI sets; each
run works in a schema of its own). The evidence is real: batch signatures from RootSigner over
a real hash tree, certificates from the development CA, RFC 3161 tokens from `openssl ts
-reply` (a TSA that is not our code). The helpers here are shared by the timestamping and
verification tests.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import itertools
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from cryptography import x509
from cryptography.x509.ocsp import OCSPCertStatus

from gateway.crypto.hashtree import build_tree
from gateway.crypto.keys import PrivateKey
from gateway.crypto.ocsp import build_ocsp_request
from gateway.crypto.rootsig import sign_root
from gateway.crypto.timestamp import verify_timestamp_token
from gateway.faults import LOGGING_FAILED
from gateway.messagelog import tables
from gateway.messagelog.asice import encode_proof
from gateway.messagelog.crypto_at_rest import (
    BodyCipher,
    BodyDecryptionError,
    BodyIntegrityError,
    EncryptedBody,
)
from gateway.messagelog.db import ALEMBIC_VERSION_TABLE, alembic_config, create_engine, migrate
from gateway.messagelog.record import GENESIS_HASH, Direction, LogRecord, MessageKind, Side, chain_hash
from gateway.messagelog.store import (
    ChainArchive,
    LoggingFailed,
    MessageLogWriter,
    StoredRecord,
    get_exchange,
    get_record,
    mark_archived,
    purge,
    read_chain,
    records_to_archive,
    search,
)
from gateway.messagelog.timestamping import BatchTimestamper
from gateway.messagelog.verify import Problem, TokenVerifier
from gateway.messagelog.verify_db import verify_log
from gateway.protocol.transport import SoapPayload, manifest, signed_parts
from gateway.serverconf.db import migrate as migrate_serverconf
from gateway.trust.ocsp_responder import OcspResponder
from gateway.trust.pki import (
    CertificateAuthority,
    RevocationStatus,
)
from tests import test_asice as asice_tests
from tests.conftest import empty_tables, migrated_url_fixture, own_tables_context

REPO = Path(__file__).resolve().parents[1]
GATEWAY = "DEV/GOV/1001/ss1"
NODE = "node-1"
NOW = dt.datetime.now(dt.UTC)
CLIENT = "DEV/GOV/1001/benefits-office"
SERVICE = "DEV/GOV/1002/population/getPerson/v1"
OCSP_RESPONSE = b"0\x82\x01\x00 an OCSP response shared by a whole hour of records"


# --- databases -----------------------------------------------------------------------------


# One migrated log database per backend for the module; `engine` empties it for each test.
log_url = migrated_url_fixture("messagelog", "messagelog.db", migrate, "xgate_test")


@pytest.fixture
def engine(log_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(log_url)
    with engine.begin() as connection:
        empty_tables(connection, tables.metadata)
    yield engine
    engine.dispose()


def execute(engine: sa.Engine, *statements: sa.Executable) -> None:
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(statement)


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


def stored_chain(engine: sa.Engine, node: str = NODE) -> list[StoredRecord]:
    with engine.connect() as connection:
        return read_chain(connection, GATEWAY, node, after_seq=0, limit=100_000)


# --- evidence: a CA, a member's signing key, a TSA -----------------------------------------

TSA_CONFIG = """\
[ tsa ]
default_tsa = tsa_config1

[ tsa_config1 ]
serial = {serial}
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256
accuracy = secs:1
ess_cert_id_alg = sha256
"""


@dataclass(frozen=True)
class Trust:
    """The development CA, a member's signing key and an RFC 3161 TSA it certified, on disk for openssl."""

    ca: x509.Certificate
    signer_key: PrivateKey
    signer_cert: x509.Certificate
    tsa_cert: x509.Certificate
    directory: Path
    authority: CertificateAuthority
    provider_key: PrivateKey
    provider_cert: x509.Certificate

    def ocsp(self, certificate: x509.Certificate) -> bytes:
        """The CA's own OCSP answer (good) about `certificate`, as of a minute before NOW."""
        responder = OcspResponder(
            self.authority.key,
            self.ca,
            self.ca,
            lambda _serial: RevocationStatus(OCSPCertStatus.GOOD),
            validity=dt.timedelta(days=1),
        )
        return responder.respond(build_ocsp_request(certificate, self.ca), NOW - dt.timedelta(minutes=1))

    def verify_token(self) -> TokenVerifier:
        """The gateway's own RFC 3161 verifier, trusting this CA."""
        return functools.partial(verify_timestamp_token, trusted_tsa_certs=[], ca_certs=[self.ca])


def make_trust(directory: Path) -> Trust:
    """test_asice's CA, signer, TSA and provider, seen the way the storage tests use them."""
    made = asice_tests.make_trust(directory)
    return Trust(
        made.ca.certificate,
        made.signer_key,
        made.signer_cert,
        made.tsa_cert,
        directory,
        made.ca,
        made.provider_key,
        made.provider_cert,
    )


@pytest.fixture(scope="session")
def trust(tmp_path_factory: pytest.TempPathFactory) -> Trust:
    return make_trust(tmp_path_factory.mktemp("trust"))


async def _run(*args: str, cwd: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{args[:3]} failed: {stderr.decode(errors='replace')}")


async def openssl_stamp(trust: Trust, digest: bytes) -> bytes:
    """A TimeStampToken over `digest` from `openssl ts -reply`: a real TSA that is not our code."""
    name = uuid.uuid4().hex
    query, token, config = f"{name}.tsq", f"{name}.der", f"{name}.cnf"
    directory = trust.directory
    # A serial file per request: concurrent `openssl ts -reply` runs would race on a shared one.
    (directory / f"{name}.serial").write_text(f"{uuid.uuid4().int >> 64:016x}\n")
    (directory / config).write_text(TSA_CONFIG.format(serial=directory / f"{name}.serial"))
    await _run(
        "openssl", "ts", "-query", "-digest", digest.hex(), "-sha256", "-cert", "-out", query, cwd=directory
    )
    await _run(
        "openssl", "ts", "-reply", "-config", config, "-queryfile", query,
        "-inkey", "tsa.key", "-signer", "tsa.pem", "-token_out", "-out", token,
        cwd=directory,
    )  # fmt: skip
    return (directory / token).read_bytes()


# --- records ---------------------------------------------------------------------------------


def soap_payload(i: int, size: int = 1024) -> SoapPayload:
    """A ~1 KB SOAP message, different for every `i`."""
    head = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
        f"<getPerson><id>{i}</id><note>"
    ).encode()
    tail = b"</note></getPerson></s:Body></s:Envelope>"
    return SoapPayload("text/xml; charset=utf-8", head + b"x" * max(0, size - len(head) - len(tail)) + tail)


def make_record(
    i: int,
    *,
    payload: SoapPayload | None = None,
    signed_root_xml: bytes | None = None,
    proof_json: str | None = None,
    logged_at: dt.datetime | None = None,
    **changes: Any,
) -> LogRecord:
    """Record `i`: exchange i // 2, request for even i and response for odd."""
    payload = payload or soap_payload(i)
    record = LogRecord(
        gateway=GATEWAY,
        exchange_id=f"exchange-{i // 2}",
        side=Side.CONSUMER,
        direction=Direction.REQUEST if i % 2 == 0 else Direction.RESPONSE,
        kind=MessageKind.SOAP,
        logged_at=logged_at or NOW + dt.timedelta(milliseconds=i),
        message_id=f"message-{i // 2}",
        client=CLIENT,
        service=SERVICE,
        user_id=f"EE{38000000 + i % 3}",
        issue=None,
        represented_party=None,
        content_type=payload.content_type,
        message=payload.body,
        manifest=manifest(signed_parts(payload)),
        signed_root_xml=signed_root_xml,
        proof_json=proof_json,
        ocsp_response=OCSP_RESPONSE,
    )
    return replace(record, **changes) if changes else record


def signed_records(trust: Trust, indexes: Sequence[int], **changes: Any) -> list[LogRecord]:
    """Records whose messages were signed as one batch: one SignedRoot, a proof each."""
    payloads = [soap_payload(i) for i in indexes]
    leaves = [hashlib.sha256(manifest(signed_parts(p))).digest() for p in payloads]
    root, proofs = build_tree(leaves)
    signed_root_xml = sign_root(root, trust.signer_key, trust.signer_cert, NOW)
    return [
        make_record(
            i, payload=p, signed_root_xml=signed_root_xml, proof_json=encode_proof(leaf, proof), **changes
        )
        for i, p, leaf, proof in zip(indexes, payloads, leaves, proofs, strict=True)
    ]


async def append_all(
    engine: sa.Engine, batch: Sequence[LogRecord], node: str = NODE, **options: Any
) -> list[int]:
    """Append concurrently through one writer, as concurrent requests do."""
    writer = MessageLogWriter(engine, gateway=GATEWAY, node=node, **options)
    try:
        return list(await asyncio.gather(*(writer.append(record) for record in batch)))
    finally:
        await writer.aclose()


async def append_in_order(engine: sa.Engine, batch: Sequence[LogRecord], **options: Any) -> list[int]:
    writer = MessageLogWriter(engine, gateway=GATEWAY, node=NODE, **options)
    try:
        return [await writer.append(record) for record in batch]
    finally:
        await writer.aclose()


# --- migrations ------------------------------------------------------------------------------


def test_log_migrates_into_the_server_configurations_database_beside_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    migrate_serverconf(url)
    migrate(url)
    migrate(url)  # a second start finds nothing to do
    engine = create_engine(url)
    try:
        names = set(sa.inspect(engine).get_table_names())
        assert {"messagelog_records", "messagelog_chains", "subsystems", ALEMBIC_VERSION_TABLE} <= names
        with engine.connect() as connection:
            version = sa.table(ALEMBIC_VERSION_TABLE, sa.column("version_num"))
            assert connection.scalar(sa.select(version.c.version_num)) == "0006"
        command.downgrade(alembic_config(url), "base")
        names = set(sa.inspect(engine).get_table_names())
        assert not any(name.startswith("messagelog_") for name in names)
        assert "subsystems" in names  # the neighbour's tables are not the log's to drop
    finally:
        engine.dispose()


def test_migrated_schema_is_the_tables_module(engine: sa.Engine) -> None:
    with engine.connect() as connection:
        context = own_tables_context(connection, ALEMBIC_VERSION_TABLE, tables.metadata)
        assert compare_metadata(context, tables.metadata) == []


# --- the writer ------------------------------------------------------------------------------


async def test_appends_get_contiguous_numbers_and_form_a_chain(engine: sa.Engine) -> None:
    seqs = await append_in_order(engine, [make_record(i) for i in range(5)])
    assert seqs == [1, 2, 3, 4, 5]
    chain = stored_chain(engine)
    assert [s.seq for s in chain] == [1, 2, 3, 4, 5]
    prev = GENESIS_HASH
    for stored, i in zip(chain, range(5), strict=True):
        assert stored.prev_hash == prev
        assert stored.record_hash == chain_hash(prev, make_record(i))
        prev = stored.record_hash
    # A new writer (a restart) continues the chain where it ended.
    assert await append_in_order(engine, [make_record(5)]) == [6]
    assert stored_chain(engine)[-1].prev_hash == prev


async def test_records_read_back_as_written_with_shared_parts_stored_once(
    engine: sa.Engine, trust: Trust
) -> None:
    batch = signed_records(trust, range(8))
    seqs = await append_all(engine, batch)
    for seq, record in zip(seqs, batch, strict=True):
        stored = get_record(engine, GATEWAY, NODE, seq)
        assert stored is not None
        assert stored.record == record
        assert stored.record.message_sha256 == record.message_sha256
        assert stored.record_hash == chain_hash(stored.prev_hash, record)
    assert count(engine, tables.blobs) == 3  # one SignedRoot, its signer's certificate, one OCSP response


async def test_concurrent_appends_share_one_transaction(engine: sa.Engine) -> None:
    writer = MessageLogWriter(engine, gateway=GATEWAY, node=NODE, window_seconds=0.05)
    seqs = await asyncio.gather(*(writer.append(make_record(i)) for i in range(64)))
    await writer.aclose()
    assert sorted(seqs) == list(range(1, 65))
    assert writer.commits == 1


async def test_a_full_batch_commits_without_waiting_for_the_window(engine: sa.Engine) -> None:
    writer = MessageLogWriter(engine, gateway=GATEWAY, node=NODE, window_seconds=30.0, max_batch=8)
    seqs = await asyncio.wait_for(asyncio.gather(*(writer.append(make_record(i)) for i in range(32))), 10)
    await writer.aclose()
    assert sorted(seqs) == list(range(1, 33))
    assert writer.commits == 4


async def test_a_failed_batch_writes_nothing_and_every_append_in_it_fails(engine: sa.Engine) -> None:
    writer = MessageLogWriter(engine, gateway=GATEWAY, node=NODE, window_seconds=0.05)
    good = [make_record(i) for i in range(5)]
    broken = make_record(5, outcome=cast(str, None))  # NOT NULL: the database refuses the row
    results = await asyncio.gather(*(writer.append(r) for r in [*good, broken]), return_exceptions=True)
    assert all(isinstance(result, LoggingFailed) for result in results), results
    assert LoggingFailed.fault_code == LOGGING_FAILED
    assert count(engine, tables.records) == 0
    assert count(engine, tables.blobs) == 0
    # The writer goes on; the chain starts where the failed batch would have.
    assert await writer.append(make_record(6)) == 1
    await writer.aclose()
    with pytest.raises(LoggingFailed):
        await writer.append(make_record(7))
    assert verify_log(engine, GATEWAY, NODE, trusted_cas=[]).ok


async def test_an_unreachable_database_fails_the_append(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'no such directory' / 'log.db'}")
    writer = MessageLogWriter(engine, gateway=GATEWAY, node=NODE)
    with pytest.raises(LoggingFailed) as failure:
        await writer.append(make_record(0))
    assert isinstance(failure.value.__cause__, sa.exc.OperationalError)
    await writer.aclose()


async def test_records_that_are_not_this_chains_are_refused(engine: sa.Engine) -> None:
    writer = MessageLogWriter(engine, gateway=GATEWAY, node=NODE)
    with pytest.raises(ValueError, match="gateway"):
        await writer.append(make_record(0, gateway="DEV/GOV/9999/other"))
    with pytest.raises(ValueError, match="digest"):
        await writer.append(make_record(0, message_sha256="0" * 64))
    await writer.aclose()
    assert count(engine, tables.records) == 0


CRASHING_WRITER = """
import asyncio, sys
from gateway.messagelog.db import create_engine
from gateway.messagelog.store import MessageLogWriter
from tests.test_messagelog_store import GATEWAY, NODE, make_record

async def main(url: str) -> None:
    writer = MessageLogWriter(create_engine(url), gateway=GATEWAY, node=NODE)
    counter = iter(range(10**9))
    async def client() -> None:
        while True:
            seq = await writer.append(make_record(next(counter)))
            print(seq, flush=True)  # the gateway would answer its client now
    await asyncio.gather(*(client() for _ in range(16)))

asyncio.run(main(sys.argv[1]))
"""


def test_an_acknowledged_record_survives_sigkill(engine: sa.Engine, log_url: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING_WRITER, log_url], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    acknowledged: list[int] = []
    try:
        assert child.stdout is not None
        while len(acknowledged) < 300:
            line = child.stdout.readline()
            assert line, "the writer process ended early"
            acknowledged.append(int(line))
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    seqs = {stored.seq for stored in stored_chain(engine)}
    assert set(acknowledged) <= seqs
    report = verify_log(engine, GATEWAY, NODE, trusted_cas=[])
    assert report.ok, report.first_bad
    assert report.checked == len(seqs) >= len(acknowledged)


async def test_two_nodes_keep_separate_chains_in_one_database(engine: sa.Engine) -> None:
    first, second = await asyncio.gather(
        append_all(engine, [make_record(i) for i in range(0, 40, 2)], node="node-1", window_seconds=0.001),
        append_all(engine, [make_record(i) for i in range(1, 40, 2)], node="node-2", window_seconds=0.001),
    )
    assert sorted(first) == sorted(second) == list(range(1, 21))
    for node in ("node-1", "node-2"):
        report = verify_log(engine, GATEWAY, node, trusted_cas=[])
        assert report.ok and report.checked == 20, report


async def test_two_writers_of_one_chain_take_turns_without_forking_it(engine: sa.Engine) -> None:
    """Worker processes of one node share its chain: a writer remembers the head it wrote, and
    must notice when the other one has moved it since."""
    first = MessageLogWriter(engine, gateway=GATEWAY, node=NODE, window_seconds=0)
    second = MessageLogWriter(engine, gateway=GATEWAY, node=NODE, window_seconds=0)
    try:
        assert await first.append(make_record(0)) == 1
        assert await second.append(make_record(1)) == 2
        assert await first.append(make_record(2)) == 3  # its head (1) is stale
        writers = itertools.cycle((first, second))
        seqs = await asyncio.gather(*(next(writers).append(make_record(i)) for i in range(3, 43)))
    finally:
        await first.aclose()
        await second.aclose()
    assert sorted(seqs) == list(range(4, 44))
    report = verify_log(engine, GATEWAY, NODE, trusted_cas=[])
    assert report.ok and report.checked == 43, report


async def test_the_writer_keeps_one_connection_and_thread_for_its_commits(engine: sa.Engine) -> None:
    checkouts: list[object] = []
    sa.event.listen(engine, "checkout", lambda connection, *_: checkouts.append(connection))
    writer = MessageLogWriter(engine, gateway=GATEWAY, node=NODE, window_seconds=0)
    assert [await writer.append(make_record(i)) for i in range(20)] == list(range(1, 21))
    assert writer.commits == 20 and len(checkouts) == 1
    await writer.aclose()
    assert f"messagelog writer {NODE}" not in {thread.name for thread in threading.enumerate()}
    assert verify_log(engine, GATEWAY, NODE, trusted_cas=[]).checked == 20


# Only a database server can drop the writer's connection, so this runs on PostgreSQL alone.
@pytest.mark.postgres
@pytest.mark.parametrize("log_url", ["postgresql"], indirect=True)
async def test_a_connection_lost_between_commits_is_replaced(engine: sa.Engine, log_url: str) -> None:
    """A database restart or failover between two commits must not fail the next batch."""
    name = f"xgate-test-{uuid.uuid4().hex[:8]}"
    writer_engine = create_engine(log_url, connect_args={"application_name": name})
    writer = MessageLogWriter(writer_engine, gateway=GATEWAY, node=NODE, window_seconds=0)
    try:
        assert await writer.append(make_record(0)) == 1
        with engine.connect() as connection:
            terminated = connection.scalar(
                sa.select(sa.func.count(sa.func.pg_terminate_backend(sa.column("pid"))))
                .select_from(sa.table("pg_stat_activity"))
                .where(sa.column("application_name") == name)
            )
        assert terminated == 1
        assert await writer.append(make_record(1)) == 2
    finally:
        await writer.aclose()
        writer_engine.dispose()
    report = verify_log(engine, GATEWAY, NODE, trusted_cas=[])
    assert report.ok and report.checked == 2, report


# --- body logging policy and encryption at rest -----------------------------------------------


async def test_a_record_without_its_body_keeps_the_digest_and_chains_the_same(engine: sa.Engine) -> None:
    full = make_record(0)
    await append_in_order(engine, [full.without_body()])
    (stored,) = stored_chain(engine)
    assert stored.record.message is None
    assert stored.record.message_sha256 == hashlib.sha256(full.message or b"").hexdigest()
    assert stored.record_hash == chain_hash(GENESIS_HASH, full)
    with engine.connect() as connection:
        assert connection.scalar(sa.select(tables.records.c.message)) is None


KEY_2025 = bytes(range(32))
KEY_2026 = bytes(range(32, 64))


async def test_bodies_are_encrypted_at_rest_and_read_back_with_the_key(engine: sa.Engine) -> None:
    cipher = BodyCipher({"2026": KEY_2026}, current="2026")
    record = make_record(0)
    await append_in_order(engine, [record], cipher=cipher)
    with engine.connect() as connection:
        row = connection.execute(sa.select(tables.records)).one()
    assert row.body_key_id == "2026" and len(row.body_nonce) == 12
    assert record.message is not None and record.message[:40] not in bytes(row.message)
    without_key = get_record(engine, GATEWAY, NODE, 1)
    assert without_key is not None and without_key.record.message is None
    assert without_key.encrypted_body is not None and without_key.encrypted_body.key_id == "2026"
    with_key = get_record(engine, GATEWAY, NODE, 1, cipher=cipher)
    assert with_key is not None and with_key.record == record
    # The chain covers the plaintext's digest, so it verifies without the key, and with it.
    assert verify_log(engine, GATEWAY, NODE, trusted_cas=[]).ok
    assert verify_log(engine, GATEWAY, NODE, trusted_cas=[], cipher=cipher).ok


async def test_key_rotation_keeps_old_bodies_readable(engine: sa.Engine) -> None:
    old = BodyCipher({"2025": KEY_2025}, current="2025")
    rotated = BodyCipher({"2025": KEY_2025, "2026": KEY_2026}, current="2026")
    await append_in_order(engine, [make_record(0)], cipher=old)
    await append_in_order(engine, [make_record(1)], cipher=rotated)
    first, second = (get_record(engine, GATEWAY, NODE, seq, cipher=rotated) for seq in (1, 2))
    assert first is not None and first.encrypted_body is not None and first.encrypted_body.key_id == "2025"
    assert second is not None and second.encrypted_body is not None and second.encrypted_body.key_id == "2026"
    assert first.record == make_record(0) and second.record == make_record(1)
    only_new = BodyCipher({"2026": KEY_2026}, current="2026")
    with pytest.raises(BodyDecryptionError, match="2025"):
        get_record(engine, GATEWAY, NODE, 1, cipher=only_new)


def test_altered_or_swapped_ciphertexts_are_refused() -> None:
    cipher = BodyCipher({"k1": KEY_2026}, current="k1")
    one, two = b"first body", b"second body"
    sealed_one, sealed_two = cipher.encrypt(one), cipher.encrypt(two)
    digest_one = hashlib.sha256(one).hexdigest()
    assert cipher.decrypt(sealed_one, digest_one) == one
    flipped = bytes([sealed_one.ciphertext[0] ^ 1]) + sealed_one.ciphertext[1:]
    with pytest.raises(BodyDecryptionError):
        cipher.decrypt(EncryptedBody("k1", sealed_one.nonce, flipped), digest_one)
    with pytest.raises(BodyIntegrityError):  # a valid ciphertext of another record
        cipher.decrypt(sealed_two, digest_one)
    assert sealed_one.nonce != cipher.encrypt(one).nonce


@pytest.mark.parametrize(
    ("keys", "current"),
    [({"k": bytes(16)}, "k"), ({"k": bytes(32)}, "other"), ({"bad id!": bytes(32)}, "bad id!"), ({}, "")],
)
def test_unusable_key_configurations_are_refused(keys: dict[str, bytes], current: str) -> None:
    with pytest.raises(ValueError):
        BodyCipher(keys, current)


# --- search -------------------------------------------------------------------------------------


async def test_security_officer_search_filters_and_pages(engine: sa.Engine) -> None:
    batch = [make_record(i) for i in range(12)]
    batch[5] = replace(batch[5], client="DEV/COM/2222/crm", outcome="Server.ServerProxy.AccessDenied")
    batch[7] = replace(batch[7], service="DEV/GOV/1003/benefits/benefits")
    await append_all(engine, batch)

    assert [s.record.message_id for s in search(engine, message_id="message-3")] == ["message-3"] * 2
    assert [s.seq for s in search(engine, client="DEV/COM/2222/crm")] == [6]
    assert [s.seq for s in search(engine, outcome="Server.ServerProxy.AccessDenied")] == [6]
    assert [s.seq for s in search(engine, service="DEV/GOV/1003/benefits/benefits")] == [8]
    assert [s.seq for s in search(engine, user_id="EE38000002")] == [12, 9, 6, 3]
    window = search(engine, since=batch[2].logged_at, until=batch[5].logged_at)
    assert [s.seq for s in window] == [5, 4, 3]  # newest first, `until` exclusive
    assert [s.seq for s in search(engine, limit=3)] == [12, 11, 10]
    assert [s.seq for s in search(engine, limit=3, offset=3)] == [9, 8, 7]
    assert search(engine, client=CLIENT, service=SERVICE, outcome="ok", limit=100)[-1].seq == 1
    assert search(engine, message_id="no such message") == []
    with pytest.raises(ValueError):
        search(engine, limit=0)


async def test_a_search_on_two_filters_looks_at_recent_spans_first_and_answers_as_one_over_all(
    engine: sa.Engine,
) -> None:
    """store.RECENT_FIRST_SPANS: each span is looked at with the page's limit and offset, and the
    answer is the one a single search over the whole log gives, whether the page lies in the last
    day, further back, or beyond every span."""
    ages_days = [0.1, 0.2, 0.5, 2, 3, 5, 7.5, 20, 40, 63, 70, 100, 400]
    other = "DEV/GOV/1009/other/other/v1"
    batch = [
        make_record(i, logged_at=NOW - dt.timedelta(days=age), service=SERVICE if i % 3 else other)
        for i, age in enumerate(sorted(ages_days, reverse=True))
    ]
    await append_in_order(engine, batch)
    expected = [seq for seq, r in sorted(enumerate(batch, 1), reverse=True) if r.service == SERVICE]

    for limit, offset in ((1, 0), (2, 0), (3, 1), (4, 2), (6, 0), (8, 0), (2, 6), (100, 0), (3, 100)):
        found = search(engine, client=CLIENT, service=SERVICE, limit=limit, offset=offset)
        assert [s.seq for s in found] == expected[offset : offset + limit], (limit, offset)
    since = NOW - dt.timedelta(days=4)
    assert [s.seq for s in search(engine, client=CLIENT, service=SERVICE, since=since)] == [
        seq for seq in expected if batch[seq - 1].logged_at >= since
    ]
    until = NOW - dt.timedelta(days=6)
    assert [s.seq for s in search(engine, client=CLIENT, service=SERVICE, until=until, limit=2)] == [
        seq for seq in expected if batch[seq - 1].logged_at < until
    ][:2]


async def test_an_outcome_ending_in_dot_star_finds_that_outcome_and_every_one_beneath_it(
    engine: sa.Engine,
) -> None:
    outcomes = [
        "ok",
        "cache.hit",
        "cache.stale",
        "cachestale",  # not beneath `cache`: the dot is part of the prefix
        "Server.ServerProxy.ServiceFailed",
        "Server.ServerProxy.ServiceFailed.Timeout",
        "Server.ServerProxy.ServiceFailedX",
        "server.server_proxy.access_denied",
        "server.serverXproxy.access_denied",  # `_` is no wildcard here
    ]
    await append_all(engine, [make_record(i, outcome=o) for i, o in enumerate(outcomes)])

    def found(outcome: str) -> list[str]:
        return sorted(s.record.outcome for s in search(engine, outcome=outcome, limit=100))

    assert found("cache.*") == ["cache.hit", "cache.stale"]
    assert found("cache.stale") == ["cache.stale"]
    assert found("Server.ServerProxy.ServiceFailed.*") == [
        "Server.ServerProxy.ServiceFailed",
        "Server.ServerProxy.ServiceFailed.Timeout",
    ]
    assert found("server.server_proxy.*") == ["server.server_proxy.access_denied"]
    assert found("Server.*") == sorted(o for o in outcomes if o.startswith("Server."))


async def test_an_exchange_reads_back_request_then_response(engine: sa.Engine) -> None:
    await append_all(engine, [make_record(i) for i in range(6)])
    exchange = get_exchange(engine, "exchange-1")
    assert [(s.seq, s.record.direction) for s in exchange] == [
        (3, Direction.REQUEST),
        (4, Direction.RESPONSE),
    ]


@pytest.mark.parametrize(
    ("where", "index"),
    [
        ("message_id = 'm'", "ix_messagelog_records_message_id"),
        ("exchange_id = 'e'", "ix_messagelog_records_exchange_id"),
        ("client = 'c' ORDER BY logged_at DESC", "ix_messagelog_records_client"),
        ("service = 's' ORDER BY logged_at DESC", "ix_messagelog_records_service"),
        ("user_id = 'u'", "ix_messagelog_records_user_id"),
        ("logged_at >= '2026-01-01'", "ix_messagelog_records_logged_at"),
    ],
)
def test_searched_columns_are_indexed(tmp_path: Path, where: str, index: str) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    migrate(url)
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            plan = connection.exec_driver_sql(
                f"EXPLAIN QUERY PLAN SELECT * FROM messagelog_records WHERE {where}"  # noqa: S608  (the test's own text)
            )
            assert index in " ".join(str(row) for row in plan)
    finally:
        engine.dispose()


# --- archiving and purge --------------------------------------------------------------------------


async def stamp_all(engine: sa.Engine, trust: Trust) -> None:
    stamper = BatchTimestamper(
        engine, gateway=GATEWAY, node=NODE, stamp=functools.partial(openssl_stamp, trust)
    )
    await stamper.run_once()


async def test_archiver_gets_stamped_records_in_order_and_marks_them(engine: sa.Engine, trust: Trust) -> None:
    await append_all(engine, [make_record(i) for i in range(6)])
    assert records_to_archive(engine, gateway=GATEWAY, node=NODE, limit=10) == []  # nothing stamped yet
    assert mark_archived(engine, gateway=GATEWAY, node=NODE, seqs=[1], archive_name="a.asice") == 0
    await stamp_all(engine, trust)
    await append_all(engine, [make_record(6)])  # not stamped: not for the archive
    due = records_to_archive(engine, gateway=GATEWAY, node=NODE, limit=4)
    assert [s.seq for s in due] == [1, 2, 3, 4]
    assert all(s.timestamp is not None and s.timestamp_proof() is not None for s in due)
    assert (
        mark_archived(engine, gateway=GATEWAY, node=NODE, seqs=[1, 2, 3, 4, 7], archive_name="a.asice") == 4
    )
    assert [s.seq for s in records_to_archive(engine, gateway=GATEWAY, node=NODE, limit=10)] == [5, 6]
    archived = get_record(engine, GATEWAY, NODE, 2)
    assert archived is not None and archived.archive_id == "a.asice" and archived.archived_at is not None
    # The same, bound to the chain, as the archiver reads it.
    chain = ChainArchive(engine, GATEWAY, NODE)
    assert [s.seq for s in chain.records_to_archive(1)] == [5]
    assert chain.mark_archived([5, 6], "b.asice") == 2
    assert chain.records_to_archive(10) == []


async def test_purge_deletes_only_archived_old_records_from_the_start(
    engine: sa.Engine, trust: Trust
) -> None:
    old, new = NOW - dt.timedelta(days=40), NOW
    batch = [make_record(i, logged_at=old + dt.timedelta(seconds=i)) for i in range(6)]
    batch += [make_record(i, logged_at=new + dt.timedelta(seconds=i)) for i in range(6, 10)]
    await append_all(engine, batch)
    await stamp_all(engine, trust)
    cutoff = NOW - dt.timedelta(days=30)

    mark_archived(engine, gateway=GATEWAY, node=NODE, seqs=[1, 2, 3, 5, 8], archive_name="first.asice")
    assert purge(engine, cutoff) == 3  # record 4 is not archived: 5 must stay, 8 is too new
    assert [s.seq for s in stored_chain(engine)] == [4, 5, 6, 7, 8, 9, 10]
    report = verify_log(engine, GATEWAY, NODE, trusted_cas=[], verify_token=trust.verify_token())
    assert report.ok and report.checked == 7, report

    mark_archived(engine, gateway=GATEWAY, node=NODE, seqs=[4, 6, 7, 9, 10], archive_name="second.asice")
    assert purge(engine, cutoff) == 3  # 4, 5, 6: old and archived; 7 on are new
    assert purge(engine, cutoff) == 0
    assert [s.seq for s in stored_chain(engine)] == [7, 8, 9, 10]
    assert verify_log(engine, GATEWAY, NODE, trusted_cas=[], verify_token=trust.verify_token()).ok

    # Deleting the new start without the purge's bookkeeping shows.
    execute(engine, sa.delete(tables.records).where(tables.records.c.seq == 7))
    report = verify_log(engine, GATEWAY, NODE, trusted_cas=[])
    assert report.first_bad is not None and (report.first_bad.seq, report.first_bad.problem) == (
        7,
        Problem.MISSING,
    )


async def test_purge_removes_shared_parts_nothing_needs_any_more(engine: sa.Engine, trust: Trust) -> None:
    old = NOW - dt.timedelta(days=40)
    first = signed_records(trust, range(3), logged_at=old)
    second = signed_records(trust, range(3, 6), logged_at=old, ocsp_response=b"a newer OCSP response")
    await append_all(engine, first)
    await stamp_all(engine, trust)
    await append_all(engine, second)
    await stamp_all(engine, trust)
    # two signed roots and their signer's one certificate, two OCSP responses
    assert (count(engine, tables.blobs), count(engine, tables.timestamps)) == (5, 2)
    mark_archived(engine, gateway=GATEWAY, node=NODE, seqs=[1, 2], archive_name="a.asice")
    assert purge(engine, NOW) == 2
    assert (count(engine, tables.blobs), count(engine, tables.timestamps)) == (5, 2)  # record 3 needs them
    mark_archived(engine, gateway=GATEWAY, node=NODE, seqs=[3, 4, 5], archive_name="b.asice")
    assert purge(engine, NOW - dt.timedelta(days=1), max_records=1) == 3  # three short transactions
    assert (count(engine, tables.blobs), count(engine, tables.timestamps)) == (3, 1)
    report = verify_log(engine, GATEWAY, NODE, trusted_cas=[trust.ca], verify_token=trust.verify_token())
    assert report.ok and report.checked == 1, report


async def test_search_by_member_or_versionless_service_finds_what_is_beneath_case_sensitively(
    engine: sa.Engine,
) -> None:
    """A member's identifier finds its subsystems' records, a service's without version every
    version; on both databases, and never across case (SQLite's LIKE would ignore it)."""
    batch = [make_record(i) for i in range(4)]
    batch[1] = replace(batch[1], client="DEV/COM/2222/crm", service="DEV/GOV/1003/benefits/benefits/v2")
    batch[2] = replace(batch[2], client="DEV/COM/2222", service="DEV/GOV/1003/benefits/benefits")
    batch[3] = replace(batch[3], client="DEV/COM/22220/crm")
    await append_all(engine, batch)

    assert [s.seq for s in search(engine, client="DEV/COM/2222")] == [3, 2]
    assert [s.seq for s in search(engine, client="DEV/COM/2222/crm")] == [2]
    assert [s.seq for s in search(engine, service="DEV/GOV/1003/benefits/benefits")] == [3, 2]
    assert [s.seq for s in search(engine, service="DEV/GOV/1003/benefits/benefits/v2")] == [2]
    assert search(engine, client="dev/com/2222") == []
