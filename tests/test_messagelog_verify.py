"""Tamper evidence: every way of altering a stored log is found, and the first bad record named.

The log under test is real: messages batch-signed with an EC key certified by the development
CA, written through the group-committing writer, timestamped by `openssl ts -reply`, checked
with the gateway's RFC 3161 verifier. Each test alters the database directly, as someone with
access to it would, and verification must name the first record that no longer checks out.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.crypto.hashtree import build_tree
from gateway.crypto.keys import KeyAlgorithm, generate_key
from gateway.crypto.timestamp import verify_timestamp_token
from gateway.messagelog import tables
from gateway.messagelog import verify as verify_module
from gateway.messagelog.asice import decode_proof, encode_proof
from gateway.messagelog.crypto_at_rest import BodyCipher
from gateway.messagelog.record import GENESIS_HASH, chain_hash
from gateway.messagelog.store import MessageLogWriter
from gateway.messagelog.timestamping import BatchTimestamper
from gateway.messagelog.verify import Problem, VerificationReport, _KnownNodes, _read_proof
from gateway.messagelog.verify_db import save_verified_point, verified_point, verify_log
from gateway.trust.pki import CaSettings, CertificateAuthority, build_ca_certificate
from tests import test_messagelog_store as store_tests
from tests.test_messagelog_store import (
    GATEWAY,
    NODE,
    NOW,
    Trust,
    append_all,
    append_in_order,
    execute,
    make_record,
    openssl_stamp,
    signed_records,
    soap_payload,
    stored_chain,
)

# The storage tests' fixtures: one migrated database per backend, the CA and the TSA.
engine = store_tests.engine
log_url = store_tests.log_url
trust = store_tests.trust

R = tables.records
LAST_SEQ = 14
STAMPED_SEQ = 12


@pytest.fixture
async def signed_log(engine: sa.Engine, trust: Trust) -> sa.Engine:
    """14 records: 3 signing batches, one body not logged, one unsigned fault; 1-12 stamped in 2 tokens."""
    first = signed_records(trust, range(6))
    first[2] = first[2].without_body()
    fault = make_record(6, outcome="Server.ClientProxy.NetworkError", fault_detail="connection refused")
    await append_all(engine, [*first, fault, *signed_records(trust, range(7, 12))])
    stamper = BatchTimestamper(
        engine, gateway=GATEWAY, node=NODE, stamp=functools.partial(openssl_stamp, trust), max_batch=8
    )
    assert await stamper.run_once() == STAMPED_SEQ
    await append_all(engine, signed_records(trust, range(12, 14)))
    return engine


def verify(engine: sa.Engine, trust: Trust, **options: object) -> VerificationReport:
    options.setdefault("trusted_cas", [trust.ca])
    options.setdefault("verify_token", trust.verify_token())
    return verify_log(engine, GATEWAY, NODE, **options)  # type: ignore[arg-type]


def update(at_seq: int, /, **values: object) -> sa.Update:
    return sa.update(R).where(R.c.seq == at_seq).values(**values)


def row_of(engine: sa.Engine, seq: int) -> dict[str, Any]:
    with engine.connect() as connection:
        row = connection.execute(sa.select(R).where(R.c.seq == seq)).one()
    values = dict(row._mapping)
    del values["id"]
    return values


def set_head(engine: sa.Engine, seq: int) -> None:
    execute(engine, sa.update(tables.chains).values(head_seq=seq))


def shift_up_from(engine: sa.Engine, seq: int) -> None:
    """Make room at `seq` (highest first, so the unique (gateway, node, seq) never clashes)."""
    for moved in range(LAST_SEQ, seq - 1, -1):
        execute(engine, update(moved, seq=moved + 1))


def rechain(engine: sa.Engine, from_seq: int) -> None:
    """What a careful forger does after an edit: recompute every hash from `from_seq` on."""
    chain = stored_chain(engine)
    prev = GENESIS_HASH if from_seq == 1 else chain[from_seq - 2].record_hash
    for stored in chain[from_seq - 1 :]:
        record_hash = chain_hash(prev, stored.record)
        execute(engine, update(stored.seq, prev_hash=prev, record_hash=record_hash))
        prev = record_hash
    execute(engine, sa.update(tables.chains).values(head_hash=prev))


async def test_an_untouched_log_verifies(signed_log: sa.Engine, trust: Trust) -> None:
    report = verify(signed_log, trust)
    assert report.ok, report.first_bad
    assert report.checked == LAST_SEQ
    assert report.signatures_verified == 3
    assert report.tokens_verified == 2
    assert report.unstamped == LAST_SEQ - STAMPED_SEQ


@dataclass(frozen=True)
class Tampering:
    name: str
    apply: Callable[[sa.Engine], None]
    seq: int
    problem: Problem


def _edit(seq: int, **values: object) -> Callable[[sa.Engine], None]:
    return lambda engine: execute(engine, update(seq, **values))


def _delete(seq: int) -> Callable[[sa.Engine], None]:
    return lambda engine: execute(engine, sa.delete(R).where(R.c.seq == seq))


def _delete_and_renumber(engine: sa.Engine) -> None:
    execute(engine, sa.delete(R).where(R.c.seq == 5))
    for seq in range(6, LAST_SEQ + 1):
        execute(engine, update(seq, seq=seq - 1))
    set_head(engine, LAST_SEQ - 1)


def _insert_replayed_copy(engine: sa.Engine) -> None:
    copy = {**row_of(engine, 3), "seq": 5}
    shift_up_from(engine, 5)
    execute(engine, sa.insert(R).values(**copy))
    set_head(engine, LAST_SEQ + 1)


def _insert_rechained_forgery(engine: sa.Engine) -> None:
    forged = {**row_of(engine, 6), "seq": 5, "timestamp_id": None, "timestamp_proof": None}
    shift_up_from(engine, 5)
    execute(engine, sa.insert(R).values(**forged))
    set_head(engine, LAST_SEQ + 1)
    rechain(engine, 5)


def _append_copy_beyond_head(engine: sa.Engine) -> None:
    execute(engine, sa.insert(R).values(**{**row_of(engine, 3), "seq": LAST_SEQ + 1}))


def _swap(engine: sa.Engine) -> None:
    execute(engine, update(5, seq=-5), update(6, seq=5), update(-5, seq=6))


def _edit_and_rechain(engine: sa.Engine) -> None:
    execute(engine, update(9, client="DEV/GOV/6666/someone-else"))
    rechain(engine, 9)


def _replace_body_and_rechain(engine: sa.Engine) -> None:
    other = soap_payload(99).body
    execute(engine, update(5, message=other, message_sha256=hashlib.sha256(other).hexdigest()))
    rechain(engine, 5)


def _alter_signed_root(engine: sa.Engine) -> None:
    """The signed root rewritten in the blobs table, stored plainly (packing.pack_blob's codec NULL)."""
    first = store_tests.get_record(engine, GATEWAY, NODE, 1)
    assert first is not None and first.record.signed_root_xml is not None
    xml = first.record.signed_root_xml
    altered = xml.replace(b"<xg:SigningTime>2", b"<xg:SigningTime>1")
    assert altered != xml
    execute(
        engine,
        sa.update(tables.blobs)
        .where(tables.blobs.c.sha256 == hashlib.sha256(xml).digest())
        .values(data=altered, codec=None, ref_sha256=None),
    )


def _swap_tokens(engine: sa.Engine) -> None:
    t = tables.timestamps
    with engine.connect() as connection:
        (first_id, _), (_, second_token) = connection.execute(
            sa.select(t.c.id, t.c.token).order_by(t.c.id)
        ).all()
    execute(engine, sa.update(t).where(t.c.id == first_id).values(token=second_token))


def _move_signature_proof(engine: sa.Engine) -> None:
    """Record 1's proof, in the form it is stored (packed steps, or JSON), given to record 2."""
    first = row_of(engine, 1)
    execute(engine, update(2, proof_json=first["proof_json"], proof_steps=first["proof_steps"]))


def _move_timestamp_proof(engine: sa.Engine) -> None:
    """Record 4's timestamp proof written as JSON into record 3's row (a lean row rebuilds its
    proof from the batch's leaves; a proof stored in the row is read as it is)."""
    fourth = store_tests.get_record(engine, GATEWAY, NODE, 4)
    assert fourth is not None and fourth.timestamp_proof_json
    execute(engine, update(3, timestamp_proof=fourth.timestamp_proof_json))


def _edit_timestamp_leaves(engine: sa.Engine) -> None:
    """The first batch's stored leaves (packing.pack_leaves) with record 3's hash zeroed."""
    t = tables.timestamps
    with engine.connect() as connection:
        first_id, leaves = connection.execute(sa.select(t.c.id, t.c.leaves).order_by(t.c.id)).first() or (
            0,
            b"",
        )
    assert leaves, "the batch's leaves are stored"
    altered = bytes(leaves[:64]) + bytes(32) + bytes(leaves[96:])
    execute(engine, sa.update(t).where(t.c.id == first_id).values(leaves=altered))


TAMPERINGS = [
    Tampering("client edited", _edit(5, client="DEV/GOV/6666/someone-else"), 5, Problem.MODIFIED),
    Tampering("outcome edited", _edit(9, outcome="ok", fault_detail="x"), 9, Problem.MODIFIED),
    Tampering("logged_at edited", _edit(4, logged_at=NOW.replace(year=2020)), 4, Problem.MODIFIED),
    Tampering("fault turned into success", _edit(7, outcome="ok"), 7, Problem.MODIFIED),
    Tampering("body edited", _edit(5, message=soap_payload(99).body), 5, Problem.BODY),
    Tampering("body and its digest edited", _replace_body_and_rechain, 5, Problem.MANIFEST),
    Tampering("digest edited", _edit(3, message_sha256="0" * 64), 3, Problem.MODIFIED),
    Tampering("record hash edited", _edit(5, record_hash=bytes(32)), 5, Problem.MODIFIED),
    Tampering("prev hash edited", _edit(5, prev_hash=bytes(32)), 5, Problem.NOT_LINKED),
    Tampering("signature proof edited", _move_signature_proof, 2, Problem.MODIFIED),
    Tampering("signed root edited", _alter_signed_root, 1, Problem.MODIFIED),
    Tampering("edited and chain recomputed", _edit_and_rechain, 9, Problem.TIMESTAMP),
    Tampering("record deleted", _delete(5), 5, Problem.MISSING),
    Tampering("last record deleted", _delete(LAST_SEQ), LAST_SEQ, Problem.MISSING),
    Tampering("deleted and renumbered", _delete_and_renumber, 5, Problem.NOT_LINKED),
    Tampering("replayed copy inserted", _insert_replayed_copy, 5, Problem.NOT_LINKED),
    Tampering("forgery inserted and chain recomputed", _insert_rechained_forgery, 5, Problem.NOT_STAMPED),
    Tampering("copy appended past the head", _append_copy_beyond_head, LAST_SEQ + 1, Problem.BEYOND_HEAD),
    Tampering("two records swapped", _swap, 5, Problem.NOT_LINKED),
    Tampering("timestamp removed", _edit(3, timestamp_id=None, timestamp_proof=None), 3, Problem.NOT_STAMPED),
    Tampering("timestamp proof moved", _move_timestamp_proof, 3, Problem.TIMESTAMP),
    Tampering("timestamp proof garbled", _edit(3, timestamp_proof='{"steps": []}'), 3, Problem.TIMESTAMP),
    Tampering("timestamp leaves edited", _edit_timestamp_leaves, 1, Problem.TIMESTAMP),
    Tampering("token swapped", _swap_tokens, 1, Problem.TIMESTAMP),
]  # fmt: skip


@pytest.mark.parametrize("tampering", TAMPERINGS, ids=[t.name for t in TAMPERINGS])
async def test_tampering_is_found_at_the_first_bad_record(
    signed_log: sa.Engine, trust: Trust, tampering: Tampering
) -> None:
    tampering.apply(signed_log)
    report = verify(signed_log, trust)
    assert report.first_bad is not None, "tampering went unnoticed"
    assert (report.first_bad.seq, report.first_bad.problem) == (tampering.seq, tampering.problem), (
        report.first_bad
    )
    assert report.checked == tampering.seq - 1
    assert report.first_bad.reason


async def test_a_signer_from_another_ca_is_not_trusted(signed_log: sa.Engine, trust: Trust) -> None:
    key = generate_key(KeyAlgorithm.EC)
    stranger = CertificateAuthority(
        build_ca_certificate(key, "another CA", NOW), key, CaSettings()
    ).certificate
    report = verify(signed_log, trust, trusted_cas=[stranger])
    assert report.first_bad is not None and (report.first_bad.seq, report.first_bad.problem) == (
        1,
        Problem.SIGNATURE,
    )
    untrusted_tsa = functools.partial(verify_timestamp_token, trusted_tsa_certs=[], ca_certs=[stranger])
    report = verify(signed_log, trust, verify_token=untrusted_tsa)
    assert report.first_bad is not None and (report.first_bad.seq, report.first_bad.problem) == (
        1,
        Problem.TIMESTAMP,
    )
    # Without a token verifier the proofs still lead to the stored roots; the tokens go unchecked.
    report = verify(signed_log, trust, verify_token=None)
    assert report.ok and report.tokens_verified == 0


async def test_a_proof_for_another_message_is_found(engine: sa.Engine, trust: Trust) -> None:
    one, two = signed_records(trust, range(2))
    await append_in_order(engine, [one, replace(two, proof_json=one.proof_json)])
    report = verify(engine, trust)
    assert report.first_bad is not None and (report.first_bad.seq, report.first_bad.problem) == (
        2,
        Problem.SIGNATURE,
    )


async def test_a_body_the_signed_manifest_does_not_list_is_found(engine: sa.Engine, trust: Trust) -> None:
    one, two = signed_records(trust, range(2))
    other = soap_payload(50).body
    await append_in_order(
        engine, [one, replace(two, message=other, message_sha256=hashlib.sha256(other).hexdigest())]
    )
    report = verify(engine, trust)
    assert report.first_bad is not None and (report.first_bad.seq, report.first_bad.problem) == (
        2,
        Problem.MANIFEST,
    )


async def test_an_altered_ciphertext_is_found_with_the_key(engine: sa.Engine, trust: Trust) -> None:
    cipher = BodyCipher({"2026": bytes(range(32))}, current="2026")
    await append_in_order(engine, signed_records(trust, range(3)), cipher=cipher)
    ciphertext = bytes(row_of(engine, 2)["message"])
    execute(engine, update(2, message=bytes([ciphertext[0] ^ 1]) + ciphertext[1:]))
    assert verify(engine, trust).ok  # the chain covers the plaintext's digest; GCM guards the rest
    report = verify(engine, trust, cipher=cipher)
    assert report.first_bad is not None and (report.first_bad.seq, report.first_bad.problem) == (
        2,
        Problem.BODY,
    )


async def test_verification_runs_while_the_gateway_keeps_logging(engine: sa.Engine, trust: Trust) -> None:
    await append_all(engine, signed_records(trust, range(200)))
    writer = MessageLogWriter(engine, gateway=GATEWAY, node=NODE)
    more = signed_records(trust, range(200, 600))
    appending = asyncio.gather(*(writer.append(record) for record in more))
    report = await asyncio.to_thread(verify, engine, trust, page_size=64)
    await appending
    await writer.aclose()
    assert report.ok, report.first_bad
    assert 200 <= report.checked <= 600
    final = verify(engine, trust)
    assert final.ok and final.checked == 600


def test_a_log_never_written_verifies_empty(engine: sa.Engine, trust: Trust) -> None:
    report = verify(engine, trust)
    assert report.ok and report.checked == 0


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(min_value=1, max_value=40),
    order=st.randoms(use_true_random=False),
    forged=st.integers(min_value=0, max_value=39),
)
def test_proven_nodes_accept_every_member_of_a_tree_and_nothing_else(
    size: int, order: random.Random, forged: int
) -> None:
    """The shortcut that keeps verification fast must not let a non-member through."""
    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(size)]
    root, proofs = build_tree(leaves)
    steps = [[(sibling.hex(), str(side)) for side, sibling in proof] for proof in proofs]
    known = _KnownNodes(roots_kept=4)
    members = list(range(size))
    order.shuffle(members)
    outsider = hashlib.sha256(b"not in the tree").digest()
    victim = forged % size
    for position, index in enumerate(members):
        assert known.contains(root, leaves[index], steps[index])
        if position == size // 2:  # however much of the tree is proven, an outsider stays out
            assert not known.contains(root, outsider, steps[victim])
            if steps[victim]:
                sibling_hex, side = steps[victim][-1]
                flipped = (("1" if sibling_hex[0] == "0" else "0") + sibling_hex[1:], side)
                assert not known.contains(root, outsider, [*steps[victim][:-1], flipped])
    assert not known.contains(hashlib.sha256(b"another root").digest(), leaves[0], steps[0])


@settings(max_examples=100, deadline=None)
@given(size=st.integers(min_value=1, max_value=70), index=st.integers(min_value=0, max_value=69))
def test_proofs_read_fast_are_the_canonical_decoders_proofs(size: int, index: int) -> None:
    """The verifier's reader (steps decoded as climbed) agrees with asice.decode_proof on every proof,
    and refuses a text the canonical form does not allow."""
    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(size)]
    root, proofs = build_tree(leaves)
    leaf, proof = leaves[index % size], proofs[index % size]
    text = encode_proof(leaf, proof)
    read, decoded = _read_proof(text), decode_proof(text)
    assert (read.leaf, read.root) == (decoded.leaf, root)
    assert read.steps == [(sibling.hex(), str(side)) for side, sibling in decoded.steps]
    for altered in (text.replace('"left"', '"Left"', 1), text.replace(":", ": ", 1), text + " "):
        if altered != text:
            with pytest.raises(ValueError):
                _read_proof(altered)


# --- at scale: bounded memory, incremental ---------------------------------------------------


async def test_verdicts_forgotten_are_checked_again_not_trusted(
    signed_log: sa.Engine, trust: Trust, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With room for one verdict of each kind, every batch's signature is checked when met again."""
    monkeypatch.setattr(verify_module, "KNOWN_VERDICTS", 1)
    report = verify(signed_log, trust)
    assert report.ok and report.checked == LAST_SEQ
    assert report.signatures_verified == 3 and report.tokens_verified == 2
    execute(signed_log, update(9, user_id="EE49002020000"))
    assert verify(signed_log, trust).first_bad == verify_module.BadRecord(
        9, Problem.MODIFIED, "the record's content does not match its record_hash"
    )


async def test_verification_resumes_after_the_point_it_reached(signed_log: sa.Engine, trust: Trust) -> None:
    full = verify(signed_log, trust, progress=(seen := _Seen()))
    assert full.ok and full.first_seq == 1
    assert full.settled == (STAMPED_SEQ, stored_chain(signed_log)[STAMPED_SEQ - 1].record_hash)
    assert seen.calls[-1] == (LAST_SEQ, LAST_SEQ)  # one page: the progress once, complete
    save_verified_point(signed_log, GATEWAY, NODE, full.settled)
    assert verified_point(signed_log, GATEWAY, NODE) == full.settled

    resumed = verify(signed_log, trust, resume_after=full.settled)
    assert resumed.ok and (resumed.first_seq, resumed.checked) == (STAMPED_SEQ + 1, LAST_SEQ - STAMPED_SEQ)
    # A record after the point is still checked; one before it is for a full verification only.
    execute(signed_log, update(13, user_id="EE49002020000"))
    bad = verify(signed_log, trust, resume_after=full.settled).first_bad
    assert bad is not None and (bad.seq, bad.problem) == (13, Problem.MODIFIED)
    execute(signed_log, update(13, user_id=row_of(signed_log, 12)["user_id"]))


async def test_a_resumed_verification_sees_a_forgery_rechained_across_its_point(
    signed_log: sa.Engine, trust: Trust
) -> None:
    point = verify(signed_log, trust).settled
    assert point is not None
    _edit_and_rechain(signed_log)  # edits record 9 and rewrites every hash from it on
    bad = verify(signed_log, trust, resume_after=point).first_bad
    assert bad is not None and (bad.seq, bad.problem) == (point[0] + 1, Problem.NOT_LINKED)


async def test_a_chain_shorter_than_the_point_it_reached_is_truncated(
    signed_log: sa.Engine, trust: Trust
) -> None:
    report = verify(signed_log, trust, resume_after=(LAST_SEQ + 5, bytes(32)))
    assert report.first_bad == verify_module.BadRecord(
        LAST_SEQ + 1,
        Problem.TRUNCATED,
        f"records up to {LAST_SEQ + 5} were verified before, the chain now ends at {LAST_SEQ}: "
        "records were removed",
    )


class _Seen:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, checked: int, total: int) -> None:
        self.calls.append((checked, total))
