"""Signed log records and signed log heads (issue 9, holes 2 and 6).

Records are signed by the gateway owner's key in the writer's group commit; a forger who
rewrites a record and recomputes the chain (and could get fresh timestamps) lacks that key.
Signed heads, kept in a file outside the database (and by the witness), show a chain cut at
its end: inside a timestamp batch, after it, and deleted entirely.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.crypto.keys import KeyAlgorithm, generate_key
from gateway.crypto.rootsig import RootSigner
from gateway.messagelog import tables
from gateway.messagelog.headkeeper import HeadKeeper, stored_heads
from gateway.messagelog.heads import HeadError, LogHead, newest_heads, parse_head, sign_head, verify_head
from gateway.messagelog.logsig import RecordSigner, is_rightmost, verify_record_signature
from gateway.messagelog.record import GENESIS_HASH, chain_hash
from gateway.messagelog.timestamping import BatchTimestamper
from gateway.messagelog.verify import Problem, VerificationReport
from gateway.messagelog.verify_db import verify_log
from gateway.trust.pki import CaSettings, CertificateAuthority, build_ca_certificate
from tests import test_messagelog_store as store_tests
from tests.test_messagelog_store import (
    GATEWAY,
    NODE,
    NOW,
    Trust,
    append_all,
    execute,
    make_record,
    openssl_stamp,
    signed_records,
    stored_chain,
)

engine = store_tests.engine
log_url = store_tests.log_url
trust = store_tests.trust

R = tables.records
LAST_SEQ = 12
STAMPED_SEQ = 8


def record_signer(trust: Trust) -> RecordSigner:
    return RecordSigner(trust.signer_key, trust.signer_cert)


@pytest.fixture
async def signed_log(engine: sa.Engine, trust: Trust) -> sa.Engine:
    """12 records in three commits of 4, each commit signed by the owner; 1-8 stamped in one token."""
    for batch in range(2):
        await append_all(
            engine, signed_records(trust, range(batch * 4, batch * 4 + 4)), record_signer=record_signer(trust)
        )
    stamper = BatchTimestamper(
        engine, gateway=GATEWAY, node=NODE, stamp=functools.partial(openssl_stamp, trust)
    )
    assert await stamper.run_once() == STAMPED_SEQ
    await append_all(engine, signed_records(trust, range(8, 12)), record_signer=record_signer(trust))
    return engine


def verify(engine: sa.Engine, trust: Trust, **options: object) -> VerificationReport:
    options.setdefault("trusted_cas", [trust.ca])
    options.setdefault("verify_token", trust.verify_token())
    options.setdefault("require_record_signatures", True)
    return verify_log(engine, GATEWAY, NODE, **options)  # type: ignore[arg-type]


def rechain(engine: sa.Engine, from_seq: int) -> None:
    chain = stored_chain(engine)
    prev = GENESIS_HASH if from_seq == 1 else chain[from_seq - 2].record_hash
    for stored in chain[from_seq - 1 :]:
        record_hash = chain_hash(prev, stored.record)
        execute(
            engine, sa.update(R).where(R.c.seq == stored.seq).values(prev_hash=prev, record_hash=record_hash)
        )
        prev = record_hash
    execute(engine, sa.update(tables.chains).values(head_hash=prev))


def cut_after(engine: sa.Engine, seq: int) -> None:
    """What a careful forger does to hide the newest records: delete them, move the chain row back."""
    last = stored_chain(engine)[seq - 1] if seq else None
    execute(
        engine,
        sa.delete(R).where(R.c.seq > seq),
        sa.delete(tables.timestamps).where(tables.timestamps.c.first_seq > seq),
        sa.update(tables.chains).values(
            head_seq=seq,
            head_hash=last.record_hash if last else GENESIS_HASH,
            stamped_seq=min(STAMPED_SEQ, seq),
        ),
    )


async def test_each_commit_shares_one_owner_signature(signed_log: sa.Engine, trust: Trust) -> None:
    chain = stored_chain(signed_log)
    assert len({stored.log_signature for stored in chain}) == 3
    for stored in chain:
        assert stored.log_signature is not None and stored.log_signature_proof_json is not None
        verified, _ = verify_record_signature(
            stored.record_hash, stored.log_signature, stored.log_signature_proof_json, [trust.ca]
        )
        assert verified.signer_cert == trust.signer_cert
    report = verify(signed_log, trust)
    assert report.ok, report.first_bad
    assert report.checked == LAST_SEQ


async def test_a_rewritten_and_rechained_record_is_refused(signed_log: sa.Engine, trust: Trust) -> None:
    """Hole 2: a record past the last token, edited and the chain recomputed, verified before."""
    execute(signed_log, sa.update(R).where(R.c.seq == 10).values(outcome="Server.ServerProxy.Forged"))
    rechain(signed_log, 10)
    without = verify(signed_log, trust, require_record_signatures=False)
    report = verify(signed_log, trust)
    assert report.first_bad is not None
    assert (report.first_bad.seq, report.first_bad.problem) == (10, Problem.RECORD_SIGNATURE)
    assert without.first_bad is not None and without.first_bad.problem is Problem.RECORD_SIGNATURE


async def test_a_record_stripped_of_its_signature_is_refused(signed_log: sa.Engine, trust: Trust) -> None:
    execute(
        signed_log,
        sa.update(R).where(R.c.seq == 11).values(log_signature_sha256=None, log_signature_proof=None),
    )
    report = verify(signed_log, trust)
    assert report.first_bad is not None
    assert (report.first_bad.seq, report.first_bad.problem) == (11, Problem.RECORD_SIGNATURE)


async def test_a_signature_by_another_key_is_refused(signed_log: sa.Engine, trust: Trust) -> None:
    key = generate_key(KeyAlgorithm.EC)
    other_ca = CertificateAuthority(build_ca_certificate(key, "another CA", NOW), key, CaSettings())
    stored = stored_chain(signed_log)[4]
    xml, proofs = RecordSigner(other_ca.key, other_ca.certificate).sign([stored.record_hash])
    execute(
        signed_log,
        sa.insert(tables.blobs).values(sha256=hashlib.sha256(xml).digest(), data=xml),
        sa.update(R)
        .where(R.c.seq == 5)
        .values(log_signature_sha256=hashlib.sha256(xml).digest(), log_signature_proof=proofs[0]),
    )
    report = verify(signed_log, trust)
    assert report.first_bad is not None
    assert (report.first_bad.seq, report.first_bad.problem) == (5, Problem.RECORD_SIGNATURE)


async def test_a_signature_by_another_member_of_the_federation_is_refused(engine: sa.Engine) -> None:
    """A member's key certified by the federation's CA, but not the gateway owner's: refused."""
    from gateway.ids import ClientId
    from gateway.trust.pki import MemberSigningProfile, issue_certificate

    ca_key = generate_key(KeyAlgorithm.EC)
    ca = CertificateAuthority(build_ca_certificate(ca_key, "federation CA", NOW), ca_key, CaSettings())
    faults = [make_record(i, outcome="Server.ClientProxy.NetworkError") for i in range(3)]
    for member, expected in ((ClientId("DEV", "GOV", "1001"), None), (ClientId("DEV", "COM", "2222"), 4)):
        key = generate_key(KeyAlgorithm.EC)
        cert = issue_certificate(ca, MemberSigningProfile(member), key.public_key(), NOW)
        await append_all(engine, faults, record_signer=RecordSigner(key, cert))
        report = verify_log(
            engine, GATEWAY, NODE, trusted_cas=[ca.certificate], require_record_signatures=True
        )
        if expected is None:
            assert report.ok, report.first_bad
            continue
        assert report.first_bad is not None
        assert (report.first_bad.seq, report.first_bad.problem) == (expected, Problem.RECORD_SIGNATURE)
        assert "owner" in report.first_bad.reason


def test_the_fast_proof_text_is_encode_proofs_canonical_text() -> None:
    from gateway.crypto.hashtree import build_tree
    from gateway.messagelog.asice import encode_proof
    from gateway.messagelog.logsig import proof_text

    for size in (1, 2, 3, 7, 16, 33):
        leaves = [bytes([i]) * 32 for i in range(size)]
        root, proofs = build_tree(leaves)
        for leaf, proof in zip(leaves, proofs, strict=True):
            assert proof_text(leaf, proof, root.hex()) == encode_proof(leaf, proof)


def test_the_last_leaf_alone_has_only_left_siblings() -> None:
    from gateway.crypto.hashtree import build_tree

    for size in range(1, 20):
        _, proofs = build_tree([bytes([i]) * 32 for i in range(size)])
        assert [is_rightmost(p) for p in proofs] == [False] * (size - 1) + [True]


# --- truncation -------------------------------------------------------------------------------


async def write_head(engine: sa.Engine, trust: Trust, head_file: Path) -> HeadKeeper:
    keeper = HeadKeeper(
        engine,
        gateway=GATEWAY,
        node=NODE,
        signer=RootSigner(trust.signer_key, trust.signer_cert),
        head_file=head_file,
        interval_seconds=10,
        stamp=functools.partial(openssl_stamp, trust),
    )
    assert await keeper.write_now() is not None
    return keeper


def file_head(head_file: Path, trust: Trust) -> tuple[int, bytes, str]:
    newest, problems = newest_heads(
        head_file.read_text().splitlines(), [trust.ca], verify_token=trust.verify_token()
    )
    assert not problems
    head = newest[(GATEWAY, NODE)].head
    return head.seq, head.record_hash, str(head_file)


async def test_heads_are_kept_in_the_file_and_the_database(
    signed_log: sa.Engine, trust: Trust, tmp_path: Path
) -> None:
    head_file = tmp_path / "heads.jsonl"
    keeper = await write_head(signed_log, trust, head_file)
    assert await keeper.write_now() is None, "an unmoved head is not signed again"
    await keeper.aclose()  # the shutdown head is written even so
    lines = head_file.read_text().splitlines()
    assert len(lines) == 2
    assert [parse_head(line).head.seq for line in lines] == [LAST_SEQ, LAST_SEQ]
    assert [h.to_line() for h in stored_heads(signed_log, GATEWAY, NODE)] == lines
    assert json.loads(lines[0])["timestamp"] is not None
    assert verify(signed_log, trust, expect_head=file_head(head_file, trust)).ok


@pytest.mark.parametrize(
    ("cut", "expected"),
    [
        pytest.param(10, Problem.TRUNCATED, id="after the timestamp batch, inside a signing batch"),
        pytest.param(8, Problem.TRUNCATED, id="at a batch boundary after the timestamp batch"),
        pytest.param(6, Problem.TRUNCATED, id="inside the timestamp batch"),
        pytest.param(0, Problem.TRUNCATED, id="every record deleted"),
    ],
)
async def test_truncation_is_found_by_the_file_head(
    signed_log: sa.Engine, trust: Trust, tmp_path: Path, cut: int, expected: Problem
) -> None:
    """Hole 6: without the head the chain still verifies for a cut at a batch boundary."""
    head_file = tmp_path / "heads.jsonl"
    await write_head(signed_log, trust, head_file)
    cut_after(signed_log, cut)
    if cut == 0:
        execute(signed_log, sa.delete(tables.chains))
    report = verify(signed_log, trust, expect_head=file_head(head_file, trust))
    assert report.first_bad is not None, "truncation went unnoticed"
    assert report.first_bad.problem is expected
    assert report.first_bad.seq == cut + 1
    assert "missing" in report.first_bad.reason or "batch" in report.first_bad.reason


async def test_a_cut_inside_a_batch_shows_even_without_a_head(signed_log: sa.Engine, trust: Trust) -> None:
    cut_after(signed_log, 6)  # inside the timestamp batch and inside the second signing batch
    report = verify(signed_log, trust)
    assert report.first_bad is not None
    assert (report.first_bad.seq, report.first_bad.problem) == (7, Problem.TRUNCATED)


async def test_a_forged_head_is_refused(signed_log: sa.Engine, trust: Trust, tmp_path: Path) -> None:
    head_file = tmp_path / "heads.jsonl"
    await write_head(signed_log, trust, head_file)
    genuine = parse_head(head_file.read_text().splitlines()[0])
    # A lower head, to make a cut look complete: signed by a key the CA never certified.
    key = generate_key(KeyAlgorithm.EC)
    rogue = CertificateAuthority(build_ca_certificate(key, "rogue", NOW), key, CaSettings())
    lowered = LogHead(GATEWAY, NODE, 4, stored_chain(signed_log)[3].record_hash, NOW)
    forged = sign_head(lowered, RootSigner(rogue.key, rogue.certificate))
    with pytest.raises(HeadError, match="signature"):
        verify_head(forged, [trust.ca])
    # The genuine signature kept, the seq edited: the signature is over another head.
    text = genuine.to_line().replace(f'"seq":{LAST_SEQ}', '"seq":4')
    with pytest.raises(HeadError, match="another head"):
        verify_head(parse_head(text), [trust.ca])
    newest, problems = newest_heads([genuine.to_line(), forged.to_line(), text], [trust.ca])
    assert newest[(GATEWAY, NODE)].head.seq == LAST_SEQ
    assert len(problems) == 2


def test_the_head_settings_come_from_the_messagelog_table(tmp_path: Path) -> None:
    from gateway import config as node_config
    from tests.test_config import EXAMPLES

    example = (EXAMPLES / "gateway.example.toml").read_text()
    loaded = node_config.load_config(EXAMPLES / "gateway.example.toml")
    settings = loaded.messagelog
    assert settings is not None and settings.head_interval_seconds == 10 and settings.witness
    assert settings.head_file == loaded.data_dir.parent / f"{loaded.data_dir.name}-messagelog-heads.jsonl"
    assert settings.witness_url is not None and not settings.witness_url.endswith("/globalconf")
    edited = example.replace(
        "head_interval_seconds = 10", "head_interval_seconds = 3\nwitness_url = 'http://r:1'"
    )
    path = EXAMPLES / "gateway.heads-test.toml.tmp"  # not *.toml: no other test sees it
    try:
        path.write_text(edited)
        settings = node_config.load_config(path).messagelog
        assert (
            settings is not None
            and settings.head_interval_seconds == 3
            and settings.witness_url == "http://r:1"
        )
        path.write_text(example.replace("head_interval_seconds = 10", "head_interval_secs = 10"))
        with pytest.raises(Exception, match="head_interval_secs"):
            node_config.load_config(path)
    finally:
        path.unlink(missing_ok=True)
