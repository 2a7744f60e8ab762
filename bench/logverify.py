"""How fast a message log verifies (target: >= 5,000 records/s on one core), and what writing it costs.

Run: `.venv/bin/python bench/logverify.py [records]` (default 20,000). It fills a temporary
SQLite log with realistic records: 1 KB SOAP messages, batch-signed 64 at a time with a real
EC key from the development CA (gateway.crypto.rootsig), written through MessageLogWriter by
256 concurrent senders, and timestamped every 2,500 records (5 s at 500 records/s) with a
real RFC 3161 token from the development TSA (gateway.trust.tsa). Then it runs `verify_log`
(chain, bodies, manifests, signatures, timestamp proofs and tokens) and prints records/s.

Records are signed by the owner's key in each commit (gateway.messagelog.logsig), as a node
does; `--unsigned-records` leaves that out, to measure what record signing costs.

First it prints what the log costs the gateway per record, in CPU time of the whole process
(every thread): appending 10,000 records from 32 concurrent appenders that each wait for their
commit as a request does (the concurrency of bench/roundtrip.py), then timestamping them. The
machine is shared, so the least of three runs is the figure; wall-clock rates swing far more.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.crypto.hashtree import build_tree
from gateway.crypto.keys import KeyAlgorithm, generate_key
from gateway.crypto.rootsig import RootSigner
from gateway.crypto.timestamp import (
    build_timestamp_request,
    new_nonce,
    parse_timestamp_response,
    verify_timestamp_token,
)
from gateway.ids import ClientId
from gateway.messagelog.asice import encode_proof
from gateway.messagelog.db import create_engine, migrate
from gateway.messagelog.logsig import RecordSigner
from gateway.messagelog.record import Direction, LogRecord, MessageKind, Side
from gateway.messagelog.store import MessageLogWriter
from gateway.messagelog.timestamping import BatchTimestamper
from gateway.messagelog.verify_db import verify_log
from gateway.protocol.transport import SoapPayload, manifest, signed_parts
from gateway.trust.pki import (
    CaSettings,
    CertificateAuthority,
    MemberSigningProfile,
    TsaProfile,
    build_ca_certificate,
    issue_certificate,
)
from gateway.trust.tsa import TimestampAuthority

GATEWAY = "DEV/GOV/1001/ss1"
NODE = "bench"
SIGNING_BATCH = 64  # messages per signed root: a 2 ms window at ~30,000 messages/s
STAMP_EVERY = 2_500  # records per timestamp: 5 s at 500 records/s
SENDERS = 256
NOW = dt.datetime.now(dt.UTC)
COST_RECORDS = 10_000
COST_APPENDERS = 32  # bench/roundtrip.py's concurrency
COST_RUNS = 3  # the least CPU time of several runs: other work on the machine only adds to it


def soap_body(i: int) -> bytes:
    head = (
        '<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">'
        f"<s:Body><getPerson><id>{i}</id><note>"
    ).encode()
    tail = b"</note></getPerson></s:Body></s:Envelope>"
    return head + b"x" * (1024 - len(head) - len(tail)) + tail


def signed_batch(signer: RootSigner, start: int, count: int) -> list[LogRecord]:
    payloads = [SoapPayload("text/xml; charset=utf-8", soap_body(i)) for i in range(start, start + count)]
    manifests = [manifest(signed_parts(p)) for p in payloads]
    leaves = [hashlib.sha256(m).digest() for m in manifests]
    root, proofs = build_tree(leaves)
    signed_root_xml = signer.sign(root, NOW)
    return [
        LogRecord(
            gateway=GATEWAY,
            exchange_id=f"exchange-{i // 2}",
            side=Side.CONSUMER,
            direction=Direction.REQUEST if i % 2 == 0 else Direction.RESPONSE,
            kind=MessageKind.SOAP,
            logged_at=NOW + dt.timedelta(microseconds=i),
            message_id=f"message-{i // 2}",
            client="DEV/GOV/1001/benefits-office",
            service="DEV/GOV/1002/population/getPerson/v1",
            user_id="EE38001085718",
            issue=None,
            represented_party=None,
            content_type=payload.content_type,
            message=payload.body,
            manifest=manifest_text,
            signed_root_xml=signed_root_xml,
            proof_json=encode_proof(leaf, proof),
            ocsp_response=b"an OCSP response, shared by an hour of records",
        )
        for i, payload, manifest_text, leaf, proof in zip(
            range(start, start + count), payloads, manifests, leaves, proofs, strict=True
        )
    ]


async def fill(url: str, total: int, signer: RootSigner, tsa: TimestampAuthority) -> tuple[float, int]:
    """Write `total` records and stamp them; returns the seconds spent appending and the tokens made."""
    engine = create_engine(url)
    writer = MessageLogWriter(engine, gateway=GATEWAY, node=NODE, record_signer=_RECORD_SIGNER)
    stamper = BatchTimestamper(
        engine, gateway=GATEWAY, node=NODE, stamp=functools.partial(_stamp, tsa), max_batch=STAMP_EVERY
    )
    appending = 0.0
    for start in range(0, total, STAMP_EVERY):
        count = min(STAMP_EVERY, total - start)
        batch = [
            r
            for s in range(start, start + count, SIGNING_BATCH)
            for r in signed_batch(signer, s, min(SIGNING_BATCH, start + count - s))
        ]
        began = time.perf_counter()
        for chunk in range(0, len(batch), SENDERS):
            await asyncio.gather(*(writer.append(record) for record in batch[chunk : chunk + SENDERS]))
        appending += time.perf_counter() - began
        await stamper.run_once()
    await writer.aclose()
    engine.dispose()
    return appending, stamper.tokens_stored


async def cost(url: str, batch: list[LogRecord], tsa: TimestampAuthority) -> tuple[float, float]:
    """Process CPU seconds per record: appended by COST_APPENDERS waiting appenders, then timestamped."""
    engine = create_engine(url)
    writer = MessageLogWriter(  # the node's default window
        engine, gateway=GATEWAY, node=NODE, window_seconds=0.0, record_signer=_RECORD_SIGNER
    )
    stamper = BatchTimestamper(
        engine, gateway=GATEWAY, node=NODE, stamp=functools.partial(_stamp, tsa), max_batch=STAMP_EVERY
    )
    waiting = iter(batch)

    async def appender() -> None:
        for record in waiting:
            await writer.append(record)

    began = time.process_time()
    await asyncio.gather(*(appender() for _ in range(COST_APPENDERS)))
    appended = time.process_time()
    stamped = await stamper.run_once()
    done = time.process_time()
    await writer.aclose()
    engine.dispose()
    assert stamped == len(batch), stamped
    return (appended - began) / len(batch), (done - appended) / len(batch)


async def _stamp(tsa: TimestampAuthority, digest: bytes) -> bytes:
    response = tsa.respond(build_timestamp_request(digest, new_nonce()), dt.datetime.now(dt.UTC))
    return parse_timestamp_response(response).der


def print_cost(signer: RootSigner, tsa: TimestampAuthority) -> None:
    batch = [
        r
        for s in range(0, COST_RECORDS, SIGNING_BATCH)
        for r in signed_batch(signer, s, min(SIGNING_BATCH, COST_RECORDS - s))
    ]
    runs = []
    for _ in range(COST_RUNS):
        with tempfile.TemporaryDirectory() as directory:
            url = f"sqlite:///{Path(directory) / 'messagelog.db'}"
            migrate(url)
            runs.append(asyncio.run(cost(url, batch, tsa)))
    append_cpu, stamp_cpu = min(a for a, _ in runs), min(s for _, s in runs)
    print(
        f"cost per record: {append_cpu * 1e6:,.0f} µs CPU to append ({COST_APPENDERS} appenders), "
        f"{stamp_cpu * 1e6:,.0f} µs to timestamp (process CPU, least of {COST_RUNS} runs of {COST_RECORDS:,})"
    )


_RECORD_SIGNER: RecordSigner | None = None
"""The owner's record signer, as a node has one; None with --unsigned-records."""


def main() -> None:
    global _RECORD_SIGNER
    arguments = [a for a in sys.argv[1:] if a != "--unsigned-records"]
    total = int(arguments[0]) if arguments else 20_000
    ca_key = generate_key(KeyAlgorithm.EC)
    ca = CertificateAuthority(build_ca_certificate(ca_key, "bench CA", NOW), ca_key, CaSettings())
    signer_key, tsa_key = generate_key(KeyAlgorithm.EC), generate_key(KeyAlgorithm.EC)
    member = MemberSigningProfile(ClientId("DEV", "GOV", "1001"))
    signer_cert = issue_certificate(ca, member, signer_key.public_key(), NOW)
    signer = RootSigner(signer_key, signer_cert)
    if "--unsigned-records" not in sys.argv[1:]:
        _RECORD_SIGNER = RecordSigner(signer_key, signer_cert)
    tsa = TimestampAuthority(tsa_key, issue_certificate(ca, TsaProfile(), tsa_key.public_key(), NOW))
    print_cost(signer, tsa)

    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{Path(directory) / 'messagelog.db'}"
        migrate(url)
        appending, tokens = asyncio.run(fill(url, total, signer, tsa))
        size = (Path(directory) / "messagelog.db").stat().st_size
        print(f"wrote {total} records in {appending:.2f} s: {total / appending:,.0f} records/s appended")
        print(f"  {tokens} timestamp tokens, database {size / total:,.0f} bytes/record")

        engine = create_engine(url)
        verify_token = functools.partial(
            verify_timestamp_token, trusted_tsa_certs=[], ca_certs=[ca.certificate]
        )
        began, began_cpu = time.perf_counter(), time.process_time()
        report = verify_log(
            engine,
            GATEWAY,
            NODE,
            trusted_cas=[ca.certificate],
            verify_token=verify_token,
            require_record_signatures=_RECORD_SIGNER is not None,
        )
        elapsed, cpu = time.perf_counter() - began, time.process_time() - began_cpu
        engine.dispose()
    assert report.ok and report.checked == total, report
    # CPU time is the one-core figure when other work shares the machine; wall time is what a user waits.
    print(
        f"verified {report.checked} records in {elapsed:.2f} s wall, {cpu:.2f} s CPU: "
        f"{report.checked / elapsed:,.0f} records/s wall, {report.checked / cpu:,.0f} records/s per core "
        f"({report.signatures_verified} signed roots, {report.tokens_verified} tokens)"
    )


if __name__ == "__main__":
    main()
