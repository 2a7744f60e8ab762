"""How many bytes the message log stores per exchange (issue 16, build 1: <= 2 KB per exchange per
gateway on top of the message bodies themselves).

Run: `.venv/bin/python bench/logsize.py [--exchanges 5000] [--url postgresql://...]` (default:
SQLite in a temporary directory; with --url, PostgreSQL in a schema of its own, dropped after).

It writes what a consumer gateway logs for each exchange, through the log's own writer and
timestamper: the client's ~1 KB SOAP request (X-Road headers, a unique message id) signed by
this gateway's member, and the provider's ~1 KB response signed by the provider's member with
the provider's OCSP response (a real one from a development responder, shared by an hour of
records). Messages are batch-signed a few at a time (`--signing-batch`, what concurrency 32
gives), appended by 32 concurrent appenders that each wait for their commit (so commits are
small, as under real traffic), every commit signed by the owner's key (gateway.messagelog.logsig),
and timestamped every `--stamp-every` records by a development TSA.

It prints the database's growth per exchange (SQLite: pages in use after a checkpoint;
PostgreSQL: pg_total_relation_size of the log's tables, with their TOAST and indexes; in
--breakdown a table's figure includes its indexes), the bodies' own bytes per exchange, and the
difference: what the log adds on top of the bodies. The figure is the steady state: the growth
over the second half of the exchanges, on PostgreSQL between two VACUUMs (autovacuum's work on a
live gateway: the row versions the timestamper's UPDATE leaves dead are reused by later
inserts); the growth of the first half into an empty log, without vacuum, is printed beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa
from cryptography.x509.ocsp import OCSPCertStatus
from lxml import etree

from gateway.crypto.hashtree import build_tree
from gateway.crypto.keys import KeyAlgorithm, generate_key
from gateway.crypto.ocsp import build_ocsp_request
from gateway.crypto.rootsig import RootSigner
from gateway.crypto.timestamp import build_timestamp_request, new_nonce, parse_timestamp_response
from gateway.ids import ClientId, ServiceId
from gateway.messagelog.asice import encode_proof
from gateway.messagelog.db import create_engine, migrate
from gateway.messagelog.logsig import RecordSigner
from gateway.messagelog.record import Direction, LogRecord, MessageKind, Side
from gateway.messagelog.store import MessageLogWriter
from gateway.messagelog.timestamping import BatchTimestamper
from gateway.protocol import soap
from gateway.protocol.transport import SoapPayload, manifest, signed_parts
from gateway.trust.ocsp_responder import OcspResponder
from gateway.trust.pki import (
    CaSettings,
    CertificateAuthority,
    MemberSigningProfile,
    RevocationStatus,
    TsaProfile,
    build_ca_certificate,
    issue_certificate,
)
from gateway.trust.tsa import TimestampAuthority

GATEWAY = "DEV/GOV/1001/gw-a"
NODE = "bench"
CLIENT = ClientId.from_text("DEV/GOV/1001/benefits-office")
SERVICE = ServiceId.from_text("DEV/GOV/1002/population/getPerson/v1")
APPENDERS = 6  # ~5.6 records a commit through two gateways at concurrency 32 (store.writer)
NOW = dt.datetime.now(dt.UTC)
TARGET_OVERHEAD = 2048  # bytes per exchange per gateway on top of the bodies (issue 16)


def soap_request(i: int, message_id: str) -> bytes:
    """A getPerson request of ~1 KB: X-Road headers, a personal code, a few search fields."""
    body = etree.fromstring(
        f"<getPerson xmlns='http://xgate.example/population-register'><personalCode>3800108{i:04d}"
        "</personalCode><purpose>Verification of residence for a social benefit application"
        f"</purpose><caseNumber>SB-2026-{i:06d}</caseNumber><requestedBy>Social Insurance Board, "
        "benefits department</requestedBy><include>addressHistory familyRelations documents "
        "residencePermits contactData</include><paging><offset>0</offset><limit>50</limit></paging>"
        "</getPerson>".encode()
    )
    return soap.build_request(
        CLIENT, SERVICE, body, message_id=message_id, user_id=f"EE3800108{i % 10_000:04d}"
    )


def soap_response(request: bytes, i: int) -> bytes:
    """The answer: the request's headers echoed, a person's record in the body (~1 KB)."""
    person = (
        "<getPersonResponse xmlns='http://xgate.example/population-register'><person>"
        f"<personalCode>3800108{i:04d}</personalCode><firstName>Mari-Liis</firstName>"
        f"<lastName>Männik{i}</lastName><dateOfBirth>1980-01-08</dateOfBirth>"
        "<address>Raekoja plats 1, 51004 Tartu, Estonia</address><citizenship>EST</citizenship>"
        "</person></getPersonResponse>"
    )
    head = request.partition(b"<SOAP-ENV:Body>")[0]
    return head + b"<SOAP-ENV:Body>" + person.encode() + b"</SOAP-ENV:Body></SOAP-ENV:Envelope>"


def signed_records(
    signer: RootSigner, ocsp: bytes | None, messages: list[tuple[int, str, Direction, bytes]]
) -> list[LogRecord]:
    """One signing batch: the messages' manifests under one signed root, as the batch signer does."""
    payloads = [SoapPayload("text/xml; charset=UTF-8", body) for *_, body in messages]
    manifests = [manifest(signed_parts(p)) for p in payloads]
    leaves = [hashlib.sha256(m).digest() for m in manifests]
    root, proofs = build_tree(leaves)
    signed_root_xml = signer.sign(root, NOW)
    return [
        LogRecord(
            gateway=GATEWAY,
            exchange_id=exchange_id,
            side=Side.CONSUMER,
            direction=direction,
            kind=MessageKind.SOAP,
            logged_at=dt.datetime.now(dt.UTC),
            message_id=exchange_id,
            client=CLIENT.to_text(),
            service=SERVICE.to_text(),
            user_id=f"EE3800108{i % 10_000:04d}",
            issue=None,
            represented_party=None,
            content_type=payload.content_type,
            message=payload.body,
            manifest=manifest_text,
            signed_root_xml=signed_root_xml,
            proof_json=encode_proof(leaf, proof),
            ocsp_response=ocsp,
        ).with_parts_logged()
        for (i, exchange_id, direction, _), payload, manifest_text, leaf, proof in zip(
            messages, payloads, manifests, leaves, proofs, strict=True
        )
    ]


class Federation:
    """Keys and trust services of the two members: this gateway's and the provider's."""

    def __init__(self) -> None:
        ca_key = generate_key(KeyAlgorithm.EC)
        self.ca = CertificateAuthority(build_ca_certificate(ca_key, "bench CA", NOW), ca_key, CaSettings())
        consumer_key, provider_key, tsa_key = (generate_key(KeyAlgorithm.EC) for _ in range(3))
        consumer_cert = issue_certificate(
            self.ca, MemberSigningProfile(CLIENT.member), consumer_key.public_key(), NOW
        )
        provider_cert = issue_certificate(
            self.ca, MemberSigningProfile(SERVICE.provider.member), provider_key.public_key(), NOW
        )
        self.consumer = RootSigner(consumer_key, consumer_cert)
        self.provider = RootSigner(provider_key, provider_cert)
        self.record_signer = RecordSigner(consumer_key, consumer_cert)
        self.tsa = TimestampAuthority(
            tsa_key, issue_certificate(self.ca, TsaProfile(), tsa_key.public_key(), NOW)
        )
        responder = OcspResponder(
            ca_key, self.ca.certificate, self.ca.certificate, lambda _s: RevocationStatus(OCSPCertStatus.GOOD)
        )
        self.provider_ocsp = responder.respond(
            build_ocsp_request(provider_cert, self.ca.certificate), NOW - dt.timedelta(minutes=1)
        )

    async def stamp(self, digest: bytes) -> bytes:
        response = self.tsa.respond(build_timestamp_request(digest, new_nonce()), dt.datetime.now(dt.UTC))
        return parse_timestamp_response(response).der


def exchanges(fed: Federation, total: int, signing_batch: int) -> Iterator[tuple[list[LogRecord], int]]:
    """Rounds of APPENDERS exchanges: their requests signed by this gateway, their responses by the
    provider, `signing_batch` to a signed root; with the bodies' bytes of the round."""
    for start in range(0, total, APPENDERS):
        round_ = []
        for i in range(start, min(total, start + APPENDERS)):
            exchange_id = str(uuid.uuid4())
            request = soap_request(i, exchange_id)
            round_.append((i, exchange_id, request, soap_response(request, i)))
        requests = [(i, e, Direction.REQUEST, body) for i, e, body, _ in round_]
        responses = [(i, e, Direction.RESPONSE, body) for i, e, _, body in round_]
        made: list[LogRecord] = []
        for at in range(0, len(round_), signing_batch):
            made += signed_records(fed.consumer, None, requests[at : at + signing_batch])
            made += signed_records(fed.provider, fed.provider_ocsp, responses[at : at + signing_batch])
        yield made, sum(len(req) + len(resp) for _, _, req, resp in round_)


async def fill(
    url: str, fed: Federation, total: int, signing_batch: int, stamp_every: int
) -> tuple[int, int]:
    """Log `total` exchanges; returns the bodies' bytes and the writer's commits."""
    engine = create_engine(url)
    writer = MessageLogWriter(engine, gateway=GATEWAY, node=NODE, record_signer=fed.record_signer)
    stamper = BatchTimestamper(engine, gateway=GATEWAY, node=NODE, stamp=fed.stamp, max_batch=stamp_every)
    body_bytes, since_stamp = 0, 0
    for made, round_bytes in exchanges(fed, total, signing_batch):
        waiting = iter(made)

        async def appender(waiting: Iterator[LogRecord] = waiting) -> None:
            for record in waiting:
                await writer.append(record)

        await asyncio.gather(*(appender() for _ in range(APPENDERS)))
        body_bytes += round_bytes
        since_stamp += len(made)
        if since_stamp >= stamp_every:
            await stamper.run_once()
            since_stamp = 0
    while await stamper.run_once():
        pass
    await writer.aclose()
    commits = writer.commits
    engine.dispose()
    return body_bytes, commits


def stored_body(body: bytes) -> bytes:
    """The body as the log stores it: compressed since the lean layout (issue 16), as it is before."""
    try:
        from gateway.messagelog.packing import compress_body
    except ImportError:  # the code before lean records
        return body
    return compress_body(body)[1]


def database_bytes(url: str) -> int:
    """Bytes the log's tables hold: pages in use (SQLite) or their total relation size (PostgreSQL)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                pages = connection.exec_driver_sql("PRAGMA page_count").scalar_one()
                free = connection.exec_driver_sql("PRAGMA freelist_count").scalar_one()
                size = connection.exec_driver_sql("PRAGMA page_size").scalar_one()
                return int((pages - free) * size)
            return int(
                connection.exec_driver_sql(
                    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = current_schema() AND c.relkind = 'r' "
                    "AND left(c.relname, 10) = 'messagelog'"
                ).scalar_one()
            )
    finally:
        engine.dispose()


def breakdown(url: str) -> list[tuple[str, int]]:
    """Bytes per table and index where the database can say (SQLite's dbstat, PostgreSQL's sizes)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                try:
                    rows = connection.exec_driver_sql(
                        "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"
                    ).all()
                except sa.exc.OperationalError:
                    return []
            else:
                rows = connection.exec_driver_sql(
                    "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'i') "
                    "AND position('messagelog' in c.relname) > 0 ORDER BY 2 DESC"
                ).all()
            return [(str(name), int(size)) for name, size in rows]
    finally:
        engine.dispose()


@contextmanager
def database(url: str | None) -> Iterator[str]:
    """A migrated, empty log: SQLite in a temporary directory, or a new schema at the PostgreSQL `url`."""
    if url is None:
        with tempfile.TemporaryDirectory() as directory:
            yield f"sqlite:///{Path(directory) / 'messagelog.db'}"
        return
    schema = f"xgate_logsize_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    scoped = sa.make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield scoped.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def vacuum(url: str) -> None:
    """PostgreSQL: what autovacuum does on a live gateway, now: row versions the timestamper's
    UPDATE left dead become free space that later inserts reuse."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("VACUUM")
    finally:
        engine.dispose()


def measure(
    url: str | None, total: int, signing_batch: int, stamp_every: int, show: bool
) -> dict[str, float]:
    """Bytes per exchange: right after writing `total` exchanges into an empty log, and (the
    steady state) for a second half written after a vacuum, measured after another."""
    fed = Federation()
    half = total // 2
    with database(url) as scoped:
        migrate(scoped)
        postgres = not scoped.startswith("sqlite")
        empty = database_bytes(scoped)
        body_bytes, commits = asyncio.run(fill(scoped, fed, half, signing_batch, stamp_every))
        first_half = database_bytes(scoped)
        if postgres:
            vacuum(scoped)
        before_second = database_bytes(scoped)
        second_bytes, second_commits = asyncio.run(
            fill(scoped, fed, total - half, signing_batch, stamp_every)
        )
        if postgres:
            vacuum(scoped)
        steady = (database_bytes(scoped) - before_second) / (total - half)
        parts = breakdown(scoped) if show else []
    bodies = (body_bytes + second_bytes) / total
    sample = [
        body for made, _ in exchanges(fed, 64, signing_batch) for body in (r.message for r in made) if body
    ]
    result = {
        "stored_bodies": bodies * sum(len(stored_body(b)) for b in sample) / sum(len(b) for b in sample),
        "fresh": (first_half - empty) / half,
        "per_exchange": steady,
        "bodies": bodies,
        "overhead": steady - bodies,
        "records_per_commit": 2 * total / max(commits + second_commits, 1),
    }
    for name, size in parts:
        print(f"    {name:<48} {size / total:>8,.0f} bytes/exchange")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exchanges", type=int, default=5_000)
    parser.add_argument("--url", default=None, help="a PostgreSQL URL (default: SQLite in a temp dir)")
    parser.add_argument("--signing-batch", type=int, default=4, help="messages per signed root")
    parser.add_argument("--stamp-every", type=int, default=1_400, help="records per timestamp token")
    parser.add_argument("--breakdown", action="store_true", help="bytes per table and index")
    args = parser.parse_args()
    backend = "SQLite" if args.url is None else "PostgreSQL"
    result = measure(args.url, args.exchanges, args.signing_batch, args.stamp_every, args.breakdown)
    print(
        f"{backend}: {result['per_exchange']:,.0f} bytes/exchange stored (2 records each; "
        f"{result['fresh']:,.0f} in the first {args.exchanges // 2:,} into an empty log), "
        f"of which bodies {result['bodies']:,.0f}: overhead {result['overhead']:,.0f} bytes/exchange "
        f"(target <= {TARGET_OVERHEAD:,}); {result['records_per_commit']:.1f} records/commit"
    )
    print(
        f"  bodies as stored {result['stored_bodies']:,.0f} bytes/exchange: everything else "
        f"{result['per_exchange'] - result['stored_bodies']:,.0f} bytes/exchange"
    )


if __name__ == "__main__":
    main()
