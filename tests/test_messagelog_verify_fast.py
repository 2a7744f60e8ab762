"""Log verification's fast way (ChainVerifier.check_row) says what the full way says.

check_row verifies a lean row against its page's shared parts without building its records;
whenever it cannot tell, the full way (ChainVerifier.check on the row's StoredRecord) judges
the row. So the fast way must never pass a record the full way refuses: every edit of every
record of a real log (logsamples: SOAP and REST, a body not logged, faults, answers from the
cache, record signatures, a timestamp) must get the same verdict with the fast way as with the
full way alone; and an honest log must go the fast way.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import hashlib
import random
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.crypto.batchsigner import BatchSigner
from gateway.crypto.hashtree import build_tree
from gateway.messagelog import tables
from gateway.messagelog.crypto_at_rest import BodyCipher
from gateway.messagelog.db import create_engine
from gateway.messagelog.logsig import RecordSigner
from gateway.messagelog.packing import pack_steps, read_packed_steps
from gateway.messagelog.record import Direction, MessageKind, Side, canonical_json, content_json, log_time
from gateway.messagelog.timestamping import BatchTimestamper
from gateway.messagelog.verify import ChainVerifier, Problem, VerificationReport, _PathMemo
from gateway.messagelog.verify_db import verify_log
from tests import logsamples
from tests import test_messagelog_store as store_tests
from tests.test_messagelog_store import GATEWAY, Trust, openssl_stamp

engine = store_tests.engine
log_url = store_tests.log_url
trust = store_tests.trust

R = tables.records


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many records each way passed (the real methods, counted)."""
    seen = {"fast": 0, "full": 0}
    fast, full = ChainVerifier.check_row, ChainVerifier.check

    def check_row(self: ChainVerifier, *args: Any) -> bool:
        passed = fast(self, *args)
        seen["fast"] += passed
        return passed

    def check(self: ChainVerifier, *args: Any) -> object:
        bad = full(self, *args)
        seen["full"] += bad is None
        return bad

    monkeypatch.setattr(ChainVerifier, "check_row", check_row)
    monkeypatch.setattr(ChainVerifier, "check", check)
    return seen


@contextlib.contextmanager
def full_way_only() -> Iterator[None]:
    """The verifier with its fast way saying "cannot tell" for every row."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ChainVerifier, "check_row", lambda self, row, page: False)
        yield


# --- the sample log, edited ------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Trust]:
    """logsamples' log with its answers from the cache: 13 records, 1-8 stamped."""
    directory = tmp_path_factory.mktemp("sample")
    log = asyncio.run(logsamples.build_log(directory / "log"))
    asyncio.run(_append_cache_answers(log))
    log.engine.dispose()
    return Path(log.url.removeprefix("sqlite:///")), log.trust


async def _append_cache_answers(log: logsamples.SampleLog) -> None:
    """10-13: two exchanges answered from the interface cache (`cache.stale`, `cache.hit`: the
    provider's signed answer of soap-1, record 5), with their signers' OCSP responses."""
    client = BatchSigner(log.trust.signer_key, log.trust.signer_cert)
    provider = BatchSigner(log.trust.provider_key, log.trust.provider_cert)
    writer = logsamples.MessageLogWriter(
        log.engine,
        gateway=logsamples.GATEWAY,
        node=logsamples.NODE,
        record_signer=RecordSigner(log.trust.signer_key, log.trust.signer_cert),
    )
    try:
        for name, served in (("cache-1", "stale"), ("cache-2", "hit")):
            exchange = logsamples.ids(name, f"msg-{name}")
            request = logsamples.soap_request(exchange)
            (asked,) = await logsamples.signed(
                client, [(exchange, Direction.REQUEST, request)], log.trust.ocsp(log.trust.signer_cert)
            )
            (answer,) = await logsamples.signed(
                provider,
                [(exchange, Direction.RESPONSE, logsamples.soap_response(exchange))],
                log.trust.ocsp(log.trust.provider_cert),
                served_from_cache=(served, f"{logsamples.NODE}:5"),
            )
            await writer.append(asked)
            await writer.append(answer)
    finally:
        await writer.aclose()
        await client.aclose()
        await provider.aclose()


@pytest.fixture
def sample(sample_db: tuple[Path, Trust], tmp_path: Path) -> Iterator[tuple[sa.Engine, Trust]]:
    """A fresh copy of the sample log (SQLite's backup: the WAL's pages too)."""
    path, sample_trust = sample_db
    copy = tmp_path / "copy.db"
    with contextlib.closing(sqlite3.connect(path)) as source, contextlib.closing(sqlite3.connect(copy)) as to:
        source.backup(to)
    log_engine = create_engine(f"sqlite:///{copy}")
    yield log_engine, sample_trust
    log_engine.dispose()


def verify_both(log_engine: sa.Engine, sample_trust: Trust, **options: Any) -> tuple[VerificationReport, ...]:
    def run() -> VerificationReport:
        return verify_log(
            log_engine,
            logsamples.GATEWAY,
            logsamples.NODE,
            trusted_cas=[sample_trust.ca],
            verify_token=sample_trust.verify_token(),
            **options,
        )

    fast = run()
    with full_way_only():
        full = run()
    return fast, full


def same_verdict(fast: VerificationReport, full: VerificationReport) -> None:
    """The same first bad record and the same counts of good ones (a failed fast try may have
    checked a batch signature the full way, stopping earlier, did not reach: not compared then)."""
    assert fast.first_bad == full.first_bad
    assert (fast.checked, fast.unstamped, fast.legacy_records, fast.settled) == (
        full.checked,
        full.unstamped,
        full.legacy_records,
        full.settled,
    )
    if fast.ok:
        assert fast == full


def test_an_honest_log_goes_the_fast_way(sample: tuple[sa.Engine, Trust], counted: dict[str, int]) -> None:
    log_engine, sample_trust = sample
    fast, full = verify_both(log_engine, sample_trust, require_record_signatures=True)
    assert fast.ok and fast == full and fast.checked == 13
    # The REST records (2, 6) go the full way; the SOAP ones and the unsigned fault (8) do not.
    assert counted["fast"] == 11


def _flip(value: object) -> bytes:
    data = bytearray(bytes(value))  # type: ignore[arg-type]
    data[-1] ^= 1
    return bytes(data)


def _row(log_engine: sa.Engine, seq: int) -> sa.Row[Any]:
    with log_engine.connect() as connection:
        return connection.execute(sa.select(R).where(R.c.seq == seq)).one()


Edit = Callable[[sa.Row[Any]], dict[str, object] | None]

EDITS: dict[str, Edit] = {
    "client": lambda row: {"client": row.client + "x"},
    "service": lambda row: {"service": row.service + "x"},
    "message id": lambda row: {"message_id": "other"},
    "exchange id": lambda row: {"exchange_id": "other"},
    "direction": lambda row: {"direction": "response" if row.direction == "request" else "request"},
    "side": lambda row: {"side": Side.PROVIDER.value},
    "kind": lambda row: {"kind": MessageKind.REST.value if row.kind == "soap" else MessageKind.SOAP.value},
    "outcome": lambda row: {"outcome": "Server.X"},
    "fault detail": lambda row: {"fault_detail": "x"},
    "user id": lambda row: {"user_id": None},
    "content type": lambda row: {"content_type": "text/xml"},
    "logged at": lambda row: {"logged_at": row.logged_at.replace(year=2020)},
    "body": lambda row: None if row.message is None else {"message": _flip(row.message)},
    "body removed": lambda row: {"message": None, "body_codec": None},
    "body digest": lambda row: {"message_sha256": "0" * 64},
    "logged parts": lambda row: {"logged_parts": ""},
    "logged parts gone": lambda row: {"logged_parts": None},
    "manifest": lambda row: {"manifest": _flip(row.manifest)},
    "proof": lambda row: None if row.proof_steps is None else {"proof_steps": _flip(row.proof_steps)},
    "proof's top step": lambda row: (
        None if row.proof_steps is None else {"proof_steps": bytes(row.proof_steps)[:-32] + bytes(32)}
    ),
    "proof as text": lambda row: (
        None if row.proof_steps is None else {"proof_json": "{}", "proof_steps": None}
    ),
    "signed root gone": lambda row: {"signed_root_sha256": None},
    "ocsp gone": lambda row: {"ocsp_sha256": None},
    "record signature gone": lambda row: {"log_signature_sha256": None, "log_signature_proof": None},
    "record signature proof": lambda row: (
        None if row.log_signature_steps is None else {"log_signature_steps": _flip(row.log_signature_steps)}
    ),
    "record signature's top step": lambda row: (
        None
        if not row.log_signature_steps or len(row.log_signature_steps) < 34
        else {"log_signature_steps": bytes(row.log_signature_steps)[:-32] + bytes(32)}
    ),
    "timestamp gone": lambda row: {"timestamp_id": None, "timestamp_proof": None},
    "timestamp proof as text": lambda row: None if row.timestamp_id is None else {"timestamp_proof": "{}"},
    "prev hash": lambda row: {"prev_hash": _flip(row.prev_hash)},
    "record hash": lambda row: {"record_hash": _flip(row.record_hash)},
    "seq": lambda row: {"seq": row.seq + 100},
}


def _swap_blob(log_engine: sa.Engine, column: str) -> Callable[[sa.Row[Any]], dict[str, object] | None]:
    """The record names another record's blob of the kind (another batch's signed root, the
    other member's OCSP response)."""

    def edit(row: sa.Row[Any]) -> dict[str, object] | None:
        with log_engine.connect() as connection:
            others = connection.execute(
                sa.select(R.c[column]).where(R.c[column].is_not(None), R.c[column] != row._mapping[column])
            ).first()
        return None if others is None else {column: others[0]}

    return edit


@pytest.mark.parametrize("seq", range(1, 14))
def test_every_edit_of_every_record_gets_the_full_ways_verdict(
    sample: tuple[sa.Engine, Trust], seq: int
) -> None:
    log_engine, sample_trust = sample
    edits = {
        **EDITS,
        "another signed root": _swap_blob(log_engine, "signed_root_sha256"),
        "another ocsp": _swap_blob(log_engine, "ocsp_sha256"),
        "another record signature": _swap_blob(log_engine, "log_signature_sha256"),
    }
    original = _row(log_engine, seq)
    for name, edit in edits.items():
        values = edit(original)
        if values is None:
            continue
        with log_engine.begin() as connection:
            connection.execute(sa.update(R).where(R.c.id == original.id).values(**values))
        for required in (False, True):
            fast, full = verify_both(log_engine, sample_trust, require_record_signatures=required)
            assert not (fast.ok and not full.ok), name
            same_verdict(fast, full)
        restore = {key: original._mapping[key] for key in values}
        with log_engine.begin() as connection:
            connection.execute(sa.update(R).where(R.c.id == original.id).values(**restore))
    for column in ("manifest", "prev_hash", "proof_steps", "message"):  # SQLite keeps text where bytes belong
        with log_engine.begin() as connection:
            connection.exec_driver_sql(
                f"UPDATE messagelog_records SET {column} = 'text' WHERE id = ?",  # noqa: S608 (our names)
                (original.id,),
            )
        fast, full = verify_both(log_engine, sample_trust)
        assert not fast.ok
        same_verdict(fast, full)
        with log_engine.begin() as connection:
            restore = {column: original._mapping[column]}
            connection.execute(sa.update(R).where(R.c.id == original.id).values(**restore))
    fast, full = verify_both(log_engine, sample_trust)
    assert fast.ok and fast == full


def test_edited_shared_parts_get_the_full_ways_verdict(sample: tuple[sa.Engine, Trust]) -> None:
    """A blob's bytes, a timestamp's root, token or leaves: what a batch's records share."""
    log_engine, sample_trust = sample
    with log_engine.connect() as connection:
        blobs = connection.execute(sa.select(tables.blobs)).all()
        stamps = connection.execute(sa.select(tables.timestamps)).all()
    changes: list[tuple[sa.Table, sa.ColumnElement[bool], dict[str, object], dict[str, object]]] = []
    for blob in blobs:
        where = tables.blobs.c.sha256 == blob.sha256
        changes.append((tables.blobs, where, {"data": _flip(blob.data)}, {"data": blob.data}))
    for stamp in stamps:
        where = tables.timestamps.c.id == stamp.id
        for column in ("root", "token", "leaves"):
            value = stamp._mapping[column]
            changes.append((tables.timestamps, where, {column: _flip(value)}, {column: value}))
        changes.append(
            (tables.timestamps, where, {"first_seq": stamp.first_seq + 1}, {"first_seq": stamp.first_seq})
        )
    for table, where, values, restore in changes:
        with log_engine.begin() as connection:
            connection.execute(sa.update(table).where(where).values(**values))
        fast, full = verify_both(log_engine, sample_trust)
        assert not fast.ok or full.ok
        same_verdict(fast, full)
        with log_engine.begin() as connection:
            connection.execute(sa.update(table).where(where).values(**restore))


# --- both backends ---------------------------------------------------------------------------


@pytest.mark.parametrize("encrypted", [False, True], ids=["in clear", "encrypted at rest"])
async def test_a_lean_log_goes_the_fast_way_on_each_backend(
    engine: sa.Engine, trust: Trust, counted: dict[str, int], encrypted: bool
) -> None:
    """SOAP exchanges signed by their members, signed by the owner's record key and stamped,
    their bodies in clear or encrypted: every record goes the fast way (with the key given or
    not); an edit is still found, by the full way."""
    cipher = BodyCipher({"k1": bytes(range(32))}, "k1") if encrypted else None
    client = BatchSigner(trust.signer_key, trust.signer_cert)
    provider = BatchSigner(trust.provider_key, trust.provider_cert)
    writer = logsamples.MessageLogWriter(
        engine,
        gateway=logsamples.GATEWAY,
        node=logsamples.NODE,
        record_signer=RecordSigner(trust.signer_key, trust.signer_cert),
        cipher=cipher,
    )
    try:
        for batch in range(2):
            exchanges = [logsamples.ids(f"x-{batch}-{i}", f"m-{batch}-{i}") for i in range(8)]
            requests = [(e, Direction.REQUEST, logsamples.soap_request(e)) for e in exchanges]
            answers = [(e, Direction.RESPONSE, logsamples.soap_response(e)) for e in exchanges]
            for record in [
                *await logsamples.signed(client, requests, trust.ocsp(trust.signer_cert)),
                *await logsamples.signed(provider, answers, trust.ocsp(trust.provider_cert)),
            ]:
                await writer.append(record)
    finally:
        await writer.aclose()
        await client.aclose()
        await provider.aclose()
    stamper = BatchTimestamper(
        engine,
        gateway=logsamples.GATEWAY,
        node=logsamples.NODE,
        stamp=functools.partial(openssl_stamp, trust),
    )
    assert await stamper.run_once() == 32

    def run(key: BodyCipher | None = cipher) -> VerificationReport:
        return verify_log(
            engine,
            logsamples.GATEWAY,
            logsamples.NODE,
            trusted_cas=[trust.ca],
            verify_token=trust.verify_token(),
            require_record_signatures=True,
            cipher=key,
        )

    report = run()
    assert report.ok, report.first_bad
    assert report.checked == counted["fast"] == 32 and counted["full"] == 0
    if encrypted:  # without the key: the bodies are left to their GCM tags, the rest is checked
        assert run(None).ok and counted["fast"] == 64
        with engine.connect() as connection:
            body = connection.execute(sa.select(R.c.message).where(R.c.seq == 3)).scalar_one()
        with engine.begin() as connection:
            connection.execute(sa.update(R).where(R.c.seq == 3).values(message=_flip(body)))
        report = run()
        assert report.first_bad is not None
        assert (report.first_bad.seq, report.first_bad.problem) == (3, Problem.BODY)
    with engine.begin() as connection:
        connection.execute(sa.update(R).where(R.c.seq == 2).values(message_id="another"))
    report = run(None)
    assert report.first_bad is not None
    assert (report.first_bad.seq, report.first_bad.problem) == (2, Problem.MODIFIED)


# --- the fast way's parts --------------------------------------------------------------------

_TEXTS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), _TEXTS), min_size=12, max_size=12), st.booleans())
def test_content_json_is_the_canonical_json_of_the_record_hash(values: list[str | None], parts: bool) -> None:
    (fault_detail, issue, message_sha256, ocsp, proof, party, rest_head, signed_root, user_id) = values[:9]
    client, service, message_id = (value or "x" for value in values[9:])
    fields: dict[str, Any] = {
        "client": client,
        "content_type": "text/xml",
        "direction": Direction.REQUEST.value,
        "exchange_id": message_id + "e",
        "fault_detail": fault_detail,
        "format": "xgate-logrecord/3",
        "gateway": GATEWAY,
        "issue": issue,
        "kind": "soap",
        "logged_at": log_time(store_tests.NOW),
        "logged_parts": ["message"] if parts else [],
        "manifest_sha256": "ab" * 32,
        "message_id": message_id,
        "message_sha256": message_sha256,
        "ocsp_response_sha256": ocsp,
        "outcome": "ok",
        "proof_json": proof,
        "represented_party": party,
        "rest_head_sha256": rest_head,
        "service": service,
        "side": "consumer",
        "signed_root_sha256": signed_root,
        "user_id": user_id,
    }
    arguments = {key: value for key, value in fields.items() if key != "format"}
    assert content_json(**arguments) == canonical_json(fields)


def test_a_records_own_fields_give_the_same_text() -> None:
    for record in (store_tests.make_record(i).with_parts_logged() for i in range(3)):
        fields = record.content_fields()
        assert content_json(**{key: value for key, value in fields.items() if key != "format"}) == (
            canonical_json(fields)
        )


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 40), st.randoms(use_true_random=False), st.booleans())
def test_the_path_memo_answers_as_a_full_climb(size: int, rng: random.Random, damage: bool) -> None:
    leaves = [hashlib.sha256(bytes([i, size])).digest() for i in range(size)]
    root, proofs = build_tree(leaves)
    other_root, _ = build_tree([*leaves[::-1], bytes(32)])
    memo = _PathMemo()
    order = list(range(size)) if rng.random() < 0.5 else rng.sample(range(size), size)
    for index in order:
        packed = bytearray(pack_steps(proofs[index]))
        if damage and len(packed) > 2 and rng.random() < 0.3:
            packed[rng.randrange(2, len(packed))] ^= 1 << rng.randrange(8)
        count, sides, siblings = read_packed_steps(bytes(packed))
        climbed = _climb(leaves[index], count, sides, siblings)
        target = other_root if rng.random() < 0.1 else root
        assert memo.leads_to(target, leaves[index], count, sides, siblings) == (climbed == target)


def _climb(leaf: bytes, count: int, sides: int, siblings: bytes) -> bytes:
    from gateway.crypto.hashtree import leaf_hash, node_hash

    value = leaf_hash(leaf)
    for step in range(count):
        sibling = siblings[step * 32 : step * 32 + 32]
        value = node_hash(sibling, value) if sides >> step & 1 else node_hash(value, sibling)
    return value


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(min_value=dt.datetime(2, 1, 1), max_value=dt.datetime(9999, 12, 30)),
    st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=2)), dt.timezone(dt.timedelta(0))]),
)
def test_a_log_time_reads_as_it_always_did(moment: dt.datetime, zone: dt.tzinfo) -> None:
    """log_time (a record hash's `logged_at`) is the UTC time written out as strftime would."""
    aware = moment.replace(tzinfo=zone)
    utc = aware.astimezone(dt.UTC)
    if utc.year >= 1000:
        assert log_time(aware) == utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
