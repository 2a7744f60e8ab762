"""Batch timestamping of the message log, with a real TSA (`openssl ts -reply`).

The TSA's tokens are checked by `openssl ts -verify` (not our code) and by the gateway's own
RFC 3161 verifier. A TSA that is down is a closed port on 127.0.0.1; a hung one is a server
there that never answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.crypto.hashtree import Proof, build_tree, root_from_proof
from gateway.crypto.timestamp import parse_timestamp_token
from gateway.faults import TIMESTAMPER_FAILED
from gateway.messagelog import tables, timestamping
from gateway.messagelog.timestamping import NO_AUTHORITY, BatchTimestamper, TimestampingFailed
from gateway.messagelog.verify_db import verify_log
from tests import test_messagelog_store as store_tests
from tests.test_messagelog_store import (
    GATEWAY,
    NODE,
    Trust,
    append_all,
    count,
    make_record,
    openssl_stamp,
    stored_chain,
)

# The storage tests' fixtures: one migrated database per backend, the CA and the TSA.
engine = store_tests.engine
log_url = store_tests.log_url
trust = store_tests.trust


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Tsa:
    """The openssl TSA behind a switch: when down, stamping hits a closed port as a dead TSA would."""

    trust: Trust
    up: bool = True
    calls: int = 0
    digests: list[bytes] = field(default_factory=list)

    async def stamp(self, digest: bytes) -> bytes:
        self.calls += 1
        self.digests.append(digest)
        if not self.up:
            _, writer = await asyncio.open_connection("127.0.0.1", closed_port())
            writer.close()
        return await openssl_stamp(self.trust, digest)


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


def stamper(engine: sa.Engine, tsa: Tsa, **options: object) -> BatchTimestamper:
    return BatchTimestamper(engine, gateway=GATEWAY, node=NODE, stamp=tsa.stamp, **options)  # type: ignore[arg-type]


def openssl_verify(trust: Trust, token: bytes, digest: bytes, tmp_path: Path) -> int:
    """`openssl ts -verify`'s exit status for `token` over `digest`, trusting the test CA."""
    (tmp_path / "token.der").write_bytes(token)
    command = [
        "openssl", "ts", "-verify", "-digest", digest.hex(), "-in", "token.der", "-token_in",
        "-CAfile", str(trust.directory / "ca.pem"), "-untrusted", str(trust.directory / "tsa.pem"),
    ]  # fmt: skip
    return subprocess.run(command, cwd=tmp_path, capture_output=True, timeout=30, check=False).returncode


async def test_one_token_covers_the_whole_backlog_up_to_the_chain_head(
    engine: sa.Engine, trust: Trust, tmp_path: Path
) -> None:
    await append_all(engine, [make_record(i) for i in range(10)])
    tsa = Tsa(trust)
    assert await stamper(engine, tsa).run_once() == 10
    assert tsa.calls == 1 and count(engine, tables.timestamps) == 1
    chain = stored_chain(engine)
    timestamp = chain[0].timestamp
    assert timestamp is not None and (timestamp.first_seq, timestamp.last_seq) == (1, 10)
    for stored in chain:  # the head (the last record) included
        assert stored.timestamp == timestamp
        proof = stored.timestamp_proof()
        assert proof is not None and root_from_proof(stored.record_hash, proof) == timestamp.root
    assert openssl_verify(trust, timestamp.token, timestamp.root, tmp_path) == 0
    gen_time = trust.verify_token()(timestamp.token, timestamp.root)
    assert abs(gen_time - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    assert parse_timestamp_token(timestamp.token).hashed_message == timestamp.root
    # The independent check refuses the token for any other digest.
    assert openssl_verify(trust, timestamp.token, chain[0].record_hash, tmp_path) != 0


async def test_later_batches_take_only_new_records_and_idle_rounds_ask_nothing(
    engine: sa.Engine, trust: Trust
) -> None:
    tsa = Tsa(trust)
    timestamper = stamper(engine, tsa)
    assert await timestamper.run_once() == 0  # no chain yet
    await append_all(engine, [make_record(i) for i in range(3)])
    assert await timestamper.run_once() == 3
    assert await timestamper.run_once() == 0
    assert tsa.calls == 1
    await append_all(engine, [make_record(i) for i in range(3, 5)])
    assert await timestamper.run_once() == 2
    chain = stored_chain(engine)
    assert chain[3].timestamp is not None
    assert chain[3].timestamp == chain[4].timestamp != chain[2].timestamp
    assert tsa.calls == 2 and count(engine, tables.timestamps) == 2
    report = verify_log(engine, GATEWAY, NODE, trusted_cas=[], verify_token=trust.verify_token())
    assert report.ok and report.tokens_verified == 2 and report.unstamped == 0, report


async def test_failures_are_tracked_and_the_backlog_is_stamped_in_bounded_batches(
    engine: sa.Engine, trust: Trust
) -> None:
    clock, tsa = Clock(), Tsa(trust, up=False)
    timestamper = stamper(engine, tsa, max_batch=4, clock=clock)
    await append_all(engine, [make_record(i) for i in range(10)])
    first_failure = clock.now
    with pytest.raises(TimestampingFailed) as failed:
        await timestamper.run_once()
    assert failed.value.fault_code == TIMESTAMPER_FAILED
    assert isinstance(failed.value.__cause__, ConnectionRefusedError)
    clock.now += dt.timedelta(seconds=30)
    with pytest.raises(TimestampingFailed):
        await timestamper.run_once()
    assert timestamper.failing_since == first_failure  # since the first of the run of failures
    assert not timestamper.is_overdue(first_failure + dt.timedelta(seconds=60), max_failure_seconds=60)
    assert timestamper.is_overdue(first_failure + dt.timedelta(seconds=61), max_failure_seconds=60)
    assert count(engine, tables.timestamps) == 0

    tsa.up = True
    assert await timestamper.run_once() == 10
    assert timestamper.failing_since is None
    assert not timestamper.is_overdue(clock.now + dt.timedelta(days=1), max_failure_seconds=60)
    with engine.connect() as connection:
        batches = connection.execute(
            sa.select(tables.timestamps.c.first_seq, tables.timestamps.c.last_seq).order_by("first_seq")
        ).all()
    assert [tuple(b) for b in batches] == [(1, 4), (5, 8), (9, 10)]
    report = verify_log(engine, GATEWAY, NODE, trusted_cas=[], verify_token=trust.verify_token())
    assert report.ok and report.tokens_verified == 3, report


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A TSA that accepts connections and never answers."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()


async def test_a_hung_tsa_counts_as_failing(engine: sa.Engine) -> None:
    async with silent_server() as port:

        async def stamp(digest: bytes) -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(digest)
                return await reader.read(1)
            finally:
                writer.close()

        timestamper = BatchTimestamper(
            engine, gateway=GATEWAY, node=NODE, stamp=stamp, stamp_timeout_seconds=0.2
        )
        await append_all(engine, [make_record(0)])
        with pytest.raises(TimestampingFailed):
            await asyncio.wait_for(timestamper.run_once(), 10)
    assert timestamper.failing_since is not None
    assert count(engine, tables.timestamps) == 0


async def test_stamp_now_stamps_a_record_before_returning(engine: sa.Engine, trust: Trust) -> None:
    tsa = Tsa(trust)
    timestamper = stamper(engine, tsa)
    seqs = await append_all(engine, [make_record(i) for i in range(3)])
    await timestamper.stamp_now(seqs[1])
    assert all(stored.timestamp is not None for stored in stored_chain(engine))
    await timestamper.stamp_now(seqs[2])  # already stamped: no TSA request
    assert tsa.calls == 1
    with pytest.raises(ValueError, match="not in the log"):
        await timestamper.stamp_now(99)


async def test_the_periodic_loop_stamps_what_arrives(engine: sa.Engine, trust: Trust) -> None:
    timestamper = stamper(engine, Tsa(trust), interval_seconds=0.05)
    timestamper.start()
    try:
        await append_all(engine, [make_record(i) for i in range(5)])
        for _ in range(200):
            if all(stored.timestamp is not None for stored in stored_chain(engine)):
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the periodic loop did not stamp the records")
    finally:
        await timestamper.aclose()
    # The table, not the counter: aclose() may cancel the loop between the commit and the count.
    assert count(engine, tables.timestamps) >= 1


async def test_two_timestampers_never_stamp_a_record_twice(engine: sa.Engine, trust: Trust) -> None:
    await append_all(engine, [make_record(i) for i in range(6)])
    first, second = stamper(engine, Tsa(trust)), stamper(engine, Tsa(trust))
    await asyncio.gather(first.run_once(), second.run_once())
    assert first.tokens_stored + second.tokens_stored == count(engine, tables.timestamps) == 1
    report = verify_log(engine, GATEWAY, NODE, trusted_cas=[], verify_token=trust.verify_token())
    assert report.ok and report.checked == 6 and report.unstamped == 0, report


# --- a missing or failing TSA costs little -------------------------------------------------------


def statements_run(engine: sa.Engine) -> list[str]:
    """The SQL statements the engine runs from now on."""
    run: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda _c, _cur, statement, *_: run.append(statement))
    return run


async def test_without_a_tsa_nothing_is_read_or_hashed(engine: sa.Engine, trust: Trust) -> None:
    tsa, listed = Tsa(trust), False
    timestamper = stamper(engine, tsa, has_authority=lambda: listed)
    assert await timestamper.run_once() == 0  # nothing waiting, nothing wrong
    assert timestamper.failing_since is None
    await append_all(engine, [make_record(i) for i in range(10)])
    run = statements_run(engine)
    with pytest.raises(TimestampingFailed, match=NO_AUTHORITY):
        await timestamper.run_once()
    assert timestamper.failing_since is not None and tsa.calls == 0
    assert run and not any("messagelog_records" in statement for statement in run), run
    listed = True  # the next configuration lists one
    assert await timestamper.run_once() == 10
    assert timestamper.failing_since is None and tsa.calls == 1


async def test_a_failing_tsa_costs_one_bounded_tree_and_no_proofs(
    engine: sa.Engine, trust: Trust, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoded: list[bytes] = []
    encode_proof = timestamping.encode_proof

    def counting_encode_proof(leaf: bytes, steps: Proof) -> str:
        encoded.append(leaf)
        return encode_proof(leaf, steps)

    monkeypatch.setattr(timestamping, "encode_proof", counting_encode_proof)
    tsa = Tsa(trust, up=False)
    timestamper = stamper(engine, tsa, max_batch=4)
    await append_all(engine, [make_record(i) for i in range(10)])
    run = statements_run(engine)
    for _ in range(3):
        with pytest.raises(TimestampingFailed):
            await timestamper.run_once()
    # Each attempt asked for the first four records only, over one tree read once; no proof encoded.
    assert len([statement for statement in run if "FROM messagelog_records" in statement]) == 1, run
    first_four = [stored.record_hash for stored in stored_chain(engine)[:4]]
    assert tsa.digests == [build_tree(first_four)[0]] * 3
    assert encoded == []
    await append_all(engine, [make_record(i) for i in range(10, 12)])  # the backlog grows behind
    tsa.up = True
    assert await timestamper.run_once() == 12
    assert encoded == []  # the batches' leaves are stored once; proofs are rebuilt on reading
    report = verify_log(engine, GATEWAY, NODE, trusted_cas=[], verify_token=trust.verify_token())
    assert report.ok and report.tokens_verified == 3 and report.unstamped == 0, report


async def test_the_loop_backs_off_while_stamping_fails_and_resumes_on_success(
    engine: sa.Engine, trust: Trust
) -> None:
    tsa = Tsa(trust, up=False)
    delays: list[float] = []
    resumed = asyncio.Event()

    async def sleep(delay: float) -> None:
        delays.append(delay)
        if len(delays) == 5:
            tsa.up = True  # the fifth attempt finds the TSA back
        if len(delays) == 7:
            resumed.set()
        await asyncio.sleep(0)

    await append_all(engine, [make_record(i) for i in range(3)])
    timestamper = stamper(engine, tsa, interval_seconds=1.0, max_retry_delay_seconds=4.0, sleep=sleep)
    timestamper.start()
    try:
        await asyncio.wait_for(resumed.wait(), 30)
    finally:
        await timestamper.aclose()
    assert delays[:7] == [1.0, 2.0, 4.0, 4.0, 4.0, 1.0, 1.0]
    assert tsa.calls == 5 and timestamper.failing_since is None
    assert all(stored.timestamp is not None for stored in stored_chain(engine))
