"""How fast a message log verifies, in how much memory, and what writing it costs.

Targets (issue 16, item 3): >= 20,000 records/s per core offline; 1 million records verified with
less than 100 MB of RSS growth.

Run: `.venv/bin/python bench/logverify.py [records ...] [--batch N] [--db PATH] [--latency]
[--cost] [--unsigned-records] [--body-bytes N]` (default 20,000 records); `bench/logverify.py
header-cost` compares soap.parse_request with soap.parse_header_ids by message size.

The log is realistic: SOAP exchanges between two members whose X-Road headers name the record's
client, service and id, ~1 KB bodies (`--body-bytes N`: requests with N bytes of markup), requests
batch-signed N (default 64) at a time by the client member's EC key and responses by the
provider's (gateway.crypto.rootsig, keys certified by a development CA), each record carrying its
signer's real OCSP response, every commit (a batch's requests and responses) signed by the
owner's record key (gateway.messagelog.logsig), and a real RFC 3161 token
(gateway.trust.tsa) per 2,500 records. So verification runs every check it runs on a node:
chain, bodies, manifests, signatures, signer, header identifiers, OCSP status, timestamp proofs
and tokens, record signatures.

Records are written straight through the chain appender (one transaction per commit batch, as the
node's writer does, without its request-by-request waiting), so a million records take minutes,
not hours. Several sizes (`50000 100000 200000`) grow one log and verify it at each size, each
verification in a fresh process, so the RSS growth is verification's own: flat RSS across sizes is
what "constant memory" means. `--db PATH` writes the log there (anew) and leaves it.

A small `--batch` (2: what a gateway at modest concurrency signs) makes a signed root per few
records: what made the verifier's memory grow with the log before its caches were bounded.

`--latency` (or `latency DB_PATH` on a log an earlier run left with `--db`) then measures what
a running verification job does to the node's latency: a node's management API over the log
and, on the same event loop, an endpoint doing a request's in-loop work (parsing a signed SOAP
message); wrk measures that endpoint idle, then while a full verification job runs in its thread
(started through the API, as `xgate log verify` does).

Measured 2026-12-06 on the shared 2-core machine (load 7-14 from other work; CPU time is the
per-core figure, wall time swings with the load), against the verifier before this change on the
same logs:

    bench/logverify.py 50000 100000 200000 --db DB      (batches of 64)
      50,000: 4,091 records/s per core, RSS +22.2 MB
     100,000: 4,245 records/s per core, RSS +22.8 MB
     200,000: 4,206 records/s per core, RSS +23.7 MB   (before: 3,501 records/s, RSS +44.5 MB)
    bench/logverify.py 40000 --batch 2 --db DB          (a signed root per 2 records)
      40,000: 2,005 records/s per core, RSS +23.7 MB   (before: 1,437 records/s, RSS +95.4 MB)
    bench/logverify.py latency DB                       (the 200,000-record log, wrk -c8)
      idle p50 1.20 ms, p99 43.5 ms, 4,017 requests/s; during a full job p50 1.29 ms,
      p99 44.5 ms, 3,463 requests/s (the job at 2,871 records/s wall)

The issue's target of 20,000 records/s per core is not met. What one record costs (µs of CPU,
batches of 64, measured 2026-12-06 before the change below): reading it through store.read_chain
~52, its record hash (record.chain_hash) ~20, the SOAP header's identifiers (soap.parse_request:
safe parse, header schema) ~38 for a 1.5 KB message and ~520 for a 20 KB one, the rest of the
checks ~100 (three proofs read and climbed, manifest, parts, body digest, cached verdicts).

Since then (same logs in the layout before lean records, same machine, the least CPU of two
to four runs each: the load makes single runs swing by ±10%): the identifiers come from
soap.parse_header_ids, which reads the Header only (a pull parser stops at a large message's
Header end) with parse_request's checks on it; the record hash is written without json.dumps'
general encoder (the same text); the verifier's caches answer a repeated key without their lock.

    bench/logverify.py header-cost                    (CPU per message)
      1,516 bytes: parse_request 30.2 µs, parse_header_ids 29.9 µs
     21,516 bytes: parse_request 516 µs,  parse_header_ids 42.3 µs
    201,516 bytes: parse_request 4,659 µs, parse_header_ids 45.3 µs
    bench/logverify.py 20000 --body-bytes 20000 --db DB   (requests of ~21.5 KB)
      before: 8.63 s CPU, 2,320 records/s per core; after: 4.17 s CPU, 4,800 records/s per core
    bench/logverify.py 20000 --db DB                       (~1.5 KB messages)
      before: 4.29 s CPU, 4,660 records/s per core; after: 3.74 s CPU, 5,350 records/s per core
    bench/logverify.py 100000 200000 400000 1000000 --db DB   (after)
      100,000: 4,836 records/s per core, RSS +22.7 MB
      200,000: 4,553 records/s per core, RSS +23.8 MB
      400,000: 5,286 records/s per core, RSS +24.4 MB
    1,000,000: 5,771 records/s per core, RSS +24.8 MB (peak 99 MB; 197 s wall, 234 s to write)

So a record's cost no longer grows with its message's size, but a core still verified ~5,000
records/s: the storage read (~50 µs, store.queries: one row, its blobs and its dataclasses)
and the verifier's own Python (~100 µs) bound it.

Since then (issue 16 item 3, 2026-12-06): the chain is read as rows (store.read_chain_page)
and checked against what a page shares, without building records (ChainVerifier.check_row):
blobs hashed and signatures, signer, OCSP and token verdicts checked once per batch; a
record's packed proofs climbed only until they meet the previous record's path (verify.
_PathMemo, exactly a full climb's answer); its timestamp proof its place among the batch's
stored leaves; its record hash written by record.content_json; its Header, when a recent one's
but for the free fields' texts, read without a parser (soap.HeaderIdsReader). Rows it cannot
vouch for go the full way (ChainVerifier.check), which gives the same verdict
(tests/test_messagelog_verify_fast.py). The verifier before and after on the same 100,000-record
log, one after the other, the least CPU of three runs each (`bench/logverify.py verify DB CA`):

    load 8-10:  before 27.2 s CPU, 3,673 records/s per core; after 7.72 s, 12,952 records/s
    load 2.5-3: before 22.6 s CPU, 4,433 records/s per core; after 5.91 s, 16,933 records/s
    bench/logverify.py 1000000 --db DB   (load 4-7, after)
    1,000,000: 14,786 records/s per core, RSS +18.3 MB (peak 92 MB; 82 s wall, 658 s to write)

A record now costs ~60 µs of CPU on this machine at light load: no one part dominates any more
(cProfile, shares of the total): the row's own Python in check_row ~13%, the two proofs'
climbs ~12%, reading (SQLite, SQLAlchemy's rows, the page's blobs) ~12%, the evidence checks
(signer and OCSP verdicts looked up, the header's identifiers) ~16%, the record hash's JSON
~7% and its proof text ~5%, the body's decompression and digest ~5%, the batch signatures
and OCSP responses themselves ~6%. The target of 20,000 records/s per core is within ~15% on
a quiet core and not met under this machine's usual load; going further means fewer Python
operations per record: reading rows through the driver without SQLAlchemy's row processing,
or the per-record checks (proof climbs, the record's JSON, the header's bytes) in a compiled
extension.

`--cost` first prints what the log costs the gateway per record, in CPU time of the whole process
(every thread): appending 10,000 records from 32 concurrent appenders that each wait for their
commit as a request does (the concurrency of bench/roundtrip.py), then timestamping them. The
machine is shared, so the least of three runs is the figure; wall-clock rates swing far more.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.ocsp import OCSPCertStatus
from lxml import etree

from gateway.crypto.hashtree import build_tree
from gateway.crypto.keys import KeyAlgorithm, PrivateKey, generate_key
from gateway.crypto.ocsp import build_ocsp_request
from gateway.crypto.rootsig import RootSigner
from gateway.crypto.timestamp import (
    build_timestamp_request,
    new_nonce,
    parse_timestamp_response,
    verify_timestamp_token,
)
from gateway.ids import ClientId, ServiceId
from gateway.messagelog.asice import encode_proof
from gateway.messagelog.db import create_engine, migrate
from gateway.messagelog.evidence import StatusPolicy
from gateway.messagelog.logsig import RecordSigner
from gateway.messagelog.record import Direction, LoggedPart, LogRecord, MessageKind, Side
from gateway.messagelog.store import MessageLogWriter, chain_state
from gateway.messagelog.store.chain import _ChainAppender
from gateway.messagelog.timestamping import BatchTimestamper
from gateway.messagelog.verify_db import verify_log
from gateway.protocol import soap
from gateway.protocol.transport import SoapPayload, manifest, signed_parts
from gateway.trust.ocsp_responder import OcspResponder, RevocationStatus
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
CLIENT = "DEV/GOV/1001/benefits-office"
SERVICE = "DEV/COM/2222/population/getPerson/v1"
USER = "EE38001085718"
SIGNING_BATCH = 64  # messages per signed root: a 2 ms window at ~30,000 messages/s
STAMP_EVERY = 2_500  # records per timestamp: 5 s at 500 records/s
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
COST_RECORDS = 10_000
COST_APPENDERS = 32  # bench/roundtrip.py's concurrency
COST_RUNS = 3  # the least CPU time of several runs: other work on the machine only adds to it
_ID = b"@@message-id@@"


@dataclass(frozen=True)
class Federation:
    """A CA, the two members' signing keys with their OCSP answers, the TSA: what a log needs."""

    ca: CertificateAuthority
    client: RootSigner
    provider: RootSigner
    client_key: PrivateKey
    client_cert: x509.Certificate
    client_ocsp: bytes
    provider_ocsp: bytes
    tsa: TimestampAuthority

    @classmethod
    def make(cls) -> Federation:
        ca_key = generate_key(KeyAlgorithm.EC)
        ca = CertificateAuthority(build_ca_certificate(ca_key, "bench CA", NOW), ca_key, CaSettings())
        responder = OcspResponder(
            ca_key,
            ca.certificate,
            ca.certificate,
            lambda _serial: RevocationStatus(OCSPCertStatus.GOOD),
            validity=dt.timedelta(days=2),
        )

        def member(code: str, klass: str) -> tuple[PrivateKey, x509.Certificate, bytes]:
            key = generate_key(KeyAlgorithm.EC)
            profile = MemberSigningProfile(ClientId("DEV", klass, code))
            cert = issue_certificate(ca, profile, key.public_key(), NOW)
            status = responder.respond(
                build_ocsp_request(cert, ca.certificate), NOW - dt.timedelta(minutes=1)
            )
            return key, cert, status

        client_key, client_cert, client_ocsp = member("1001", "GOV")
        provider_key, provider_cert, provider_ocsp = member("2222", "COM")
        tsa_key = generate_key(KeyAlgorithm.EC)
        tsa = TimestampAuthority(tsa_key, issue_certificate(ca, TsaProfile(), tsa_key.public_key(), NOW))
        return cls(
            ca,
            RootSigner(client_key, client_cert),
            RootSigner(provider_key, provider_cert),
            client_key,
            client_cert,
            client_ocsp,
            provider_ocsp,
            tsa,
        )

    def record_signer(self) -> RecordSigner:
        """The gateway owner's (DEV/GOV/1001) record key, as the node's writer holds it."""
        return RecordSigner(self.client_key, self.client_cert)


def _templates(note_bytes: int = 560) -> tuple[bytes, bytes]:
    """A ~1 KB request and its response (more with `note_bytes`, in elements of 8 bytes: what a
    real payload's markup costs to parse), with a placeholder for the message id."""
    note = "x" * note_bytes if note_bytes <= 560 else "<a>z</a>" * (note_bytes // 8)
    body = etree.fromstring(f"<getPerson><id>38001085718</id><note>{note}</note></getPerson>".encode())
    request = soap.build_request(
        ClientId.from_text(CLIENT), ServiceId.from_text(SERVICE), body, message_id=_ID.decode(), user_id=USER
    )
    answer = etree.fromstring(f"<getPersonResponse><name>{'y' * 560}</name></getPersonResponse>".encode())
    response = soap.build_response(soap.parse_request(request, "text/xml"), answer)
    return request, response


REQUEST_TEMPLATE, RESPONSE_TEMPLATE = _templates()
CONTENT_TYPE = "text/xml; charset=utf-8"


def signed_batch(fed: Federation, first: int, count: int, direction: Direction) -> list[LogRecord]:
    """Messages of exchanges first.. signed as one batch by their signer: the client member for
    requests, the provider member for responses."""
    template, signer, ocsp = (
        (REQUEST_TEMPLATE, fed.client, fed.client_ocsp)
        if direction is Direction.REQUEST
        else (RESPONSE_TEMPLATE, fed.provider, fed.provider_ocsp)
    )
    exchanges = range(first, first + count)
    payloads = [SoapPayload(CONTENT_TYPE, template.replace(_ID, f"m-{i}".encode())) for i in exchanges]
    manifests = [manifest(signed_parts(p)) for p in payloads]
    leaves = [hashlib.sha256(m).digest() for m in manifests]
    root, proofs = build_tree(leaves)
    signed_root_xml = signer.sign(root, NOW)
    return [
        LogRecord(
            gateway=GATEWAY,
            exchange_id=f"exchange-{i}",
            side=Side.CONSUMER,
            direction=direction,
            kind=MessageKind.SOAP,
            logged_at=NOW + dt.timedelta(microseconds=i),
            message_id=f"m-{i}",
            client=CLIENT,
            service=SERVICE,
            user_id=USER,
            issue=None,
            represented_party=None,
            content_type=CONTENT_TYPE,
            message=payload.body,
            manifest=manifest_text,
            signed_root_xml=signed_root_xml,
            proof_json=encode_proof(leaf, proof),
            ocsp_response=ocsp,
            logged_parts=(LoggedPart.MESSAGE,),
        )
        for i, payload, manifest_text, leaf, proof in zip(
            exchanges, payloads, manifests, leaves, proofs, strict=True
        )
    ]


def exchanges(fed: Federation, first: int, count: int) -> list[LogRecord]:
    """`count` exchanges from `first`: their requests signed as one batch, then their responses."""
    return [
        *signed_batch(fed, first, count, Direction.REQUEST),
        *signed_batch(fed, first, count, Direction.RESPONSE),
    ]


async def _stamp(tsa: TimestampAuthority, digest: bytes) -> bytes:
    response = tsa.respond(build_timestamp_request(digest, new_nonce()), dt.datetime.now(dt.UTC))
    return parse_timestamp_response(response).der


def grow(
    url: str, fed: Federation, total: int, record_signer: RecordSigner | None, batch: int = SIGNING_BATCH
) -> float:
    """Append records until the chain holds `total`, stamping every STAMP_EVERY; returns seconds.

    Each commit holds `batch` exchanges: their requests signed as one batch, then their responses."""
    engine = create_engine(url)
    with engine.connect() as connection:
        state = chain_state(connection, GATEWAY, NODE)
    have = 0 if state is None else state.head_seq
    appender = _ChainAppender(engine, GATEWAY, NODE, None, record_signer)
    stamper = BatchTimestamper(
        engine, gateway=GATEWAY, node=NODE, stamp=functools.partial(_stamp, fed.tsa), max_batch=STAMP_EVERY
    )
    began = time.perf_counter()
    while have < total:
        pairs = min(batch, (total - have) // 2) or 1
        records = exchanges(fed, have // 2, pairs)[: total - have]
        appender.append(records)
        have += len(records)
        if have % STAMP_EVERY < len(records) or have == total:
            asyncio.run(stamper.run_once())
    appender.close()
    engine.dispose()
    return time.perf_counter() - began


# --- verification, in a process of its own ---------------------------------------------------


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def verify_here(url: str, ca_file: str) -> dict[str, float]:
    """Verify the whole log (the `verify` subcommand): rates and the RSS it grew by."""
    ca = x509.load_pem_x509_certificate(Path(ca_file).read_bytes())
    engine = create_engine(url)
    verify_token = functools.partial(verify_timestamp_token, trusted_tsa_certs=[], ca_certs=[ca])
    rss_before = _rss_kb("VmRSS")
    began, began_cpu = time.perf_counter(), time.process_time()
    report = verify_log(
        engine,
        GATEWAY,
        NODE,
        trusted_cas=[ca],
        verify_token=verify_token,
        status_policy=StatusPolicy(),
        require_record_signatures=True,
    )
    elapsed, cpu = time.perf_counter() - began, time.process_time() - began_cpu
    engine.dispose()
    assert report.ok, report.first_bad
    return {
        "checked": report.checked,
        "wall": elapsed,
        "cpu": cpu,
        "signatures": report.signatures_verified,
        "tokens": report.tokens_verified,
        "rss_growth_mb": (_rss_kb("VmHWM") - rss_before) / 1024,
        "peak_rss_mb": _rss_kb("VmHWM") / 1024,
    }


def verify_in_child(url: str, ca_file: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "verify", url, str(ca_file)], check=True, capture_output=True, text=True
    ).stdout
    result: dict[str, float] = json.loads(out.splitlines()[-1])
    return result


# --- the node's latency while a verification job runs -----------------------------------------

LATENCY_SECONDS = 8
LATENCY_CONNECTIONS = 8


def serve_here(url: str, ca_file: str, ready_file: str) -> None:
    """The `serve` subcommand: a node's management API over the log, and beside it on the same
    event loop an endpoint doing a request's typical in-loop work (parse a signed SOAP message,
    hash it), whose latency wrk measures while a verification job runs in its thread."""
    from aiohttp import web

    from gateway.admin.api import AdminContext, make_admin_app
    from gateway.ids import SecurityServerId
    from gateway.messagelog.archive import ContainerTrust
    from gateway.messagelog.inspector import LogInspector
    from gateway.serverconf.db import migrate as migrate_serverconf
    from gateway.serverconf.repository import ServerConfRepository

    ca = x509.load_pem_x509_certificate(Path(ca_file).read_bytes())
    trust = ContainerTrust([ca], [], [ca], StatusPolicy())
    directory = Path(ready_file).parent
    conf_url = f"sqlite:///{directory / 'serverconf.db'}"
    migrate_serverconf(conf_url)
    repository = ServerConfRepository.from_url(conf_url)
    _, key = repository.create_api_key("bench-officer", "security_officer")
    inspector = LogInspector(create_engine(url), GATEWAY, trust=lambda: trust)
    server = SecurityServerId.from_text(GATEWAY)
    admin = make_admin_app(
        AdminContext(repository=repository, data_dir=directory, server_id=server, message_log=inspector)
    )
    request = REQUEST_TEMPLATE.replace(_ID, b"m-latency")

    async def exchange(_: web.Request) -> web.Response:
        message = soap.parse_request(request, CONTENT_TYPE)
        return web.json_response({"id": message.id, "sha256": hashlib.sha256(message.raw).hexdigest()})

    traffic = web.Application()
    traffic.router.add_get("/", exchange)

    async def main() -> None:
        ports = []
        for app in (admin, traffic):
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            ports.append(runner.addresses[0][1])
        Path(ready_file).write_text(json.dumps({"admin": ports[0], "traffic": ports[1], "key": key}))
        await asyncio.Event().wait()

    asyncio.run(main())


def _wrk(port: int) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{LATENCY_CONNECTIONS}",
            f"-d{LATENCY_SECONDS}s",
            "--latency",
            f"http://127.0.0.1:{port}/",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found = {"rate": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for name, percentile in (("p50", "50%"), ("p99", "99%")):
        value, unit = re.search(rf"{percentile}\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        found[name] = float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
    return found


def _api(
    port: int, key: str, method: str, path: str, body: dict[str, object] | None = None
) -> dict[str, object]:
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"X-Road-ApiKey token={key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 (our own server)
        result: dict[str, object] = json.loads(answer.read())
    return result


def print_latency(url: str, ca_file: Path) -> None:
    """wrk against the in-loop endpoint, idle and while a full verification job runs."""
    ready = ca_file.with_suffix(".ready.json")
    ready.unlink(missing_ok=True)
    child = subprocess.Popen([sys.executable, __file__, "serve", url, str(ca_file), str(ready)])
    try:
        while not ready.exists():
            time.sleep(0.1)
        ports = json.loads(ready.read_text())
        idle = _wrk(ports["traffic"])
        job = _api(ports["admin"], ports["key"], "POST", "/message-log/verification-jobs", {"full": True})
        during = _wrk(ports["traffic"])
        path = f"/message-log/verification-jobs/{job['id']}"
        job = _api(ports["admin"], ports["key"], "GET", path)
        overlapped = "ran throughout" if job["state"] == "running" else "ENDED BEFORE wrk did"
        while job["state"] == "running":
            time.sleep(1)
            job = _api(ports["admin"], ports["key"], "GET", path)
        assert job["valid"], job
        print(
            f"latency at concurrency {LATENCY_CONNECTIONS} ({LATENCY_SECONDS} s of wrk each): "
            f"idle p50 {idle['p50']:.2f} ms, "
            f"p99 {idle['p99']:.2f} ms, {idle['rate']:,.0f} requests/s; while a verification job runs "
            f"p50 {during['p50']:.2f} ms, p99 {during['p99']:.2f} ms, {during['rate']:,.0f} requests/s "
            f"(the job {overlapped}: {job['records_verified']:,} records "
            f"at {job['records_per_second']:,} records/s)"
        )
    finally:
        child.terminate()
        child.wait()


# --- what reading a record's SOAP identifiers costs --------------------------------------------

HEADER_COST_RUNS = 5
HEADER_COST_MESSAGES = 2_000


def print_header_cost() -> None:
    """CPU µs per message: soap.parse_request (what verification parsed before) against
    soap.parse_header_ids (what it parses now), for the bench's ~1.5 KB request and the same
    request with ~20 KB and ~200 KB of body. Least of several runs: other work only adds."""
    for extra in (0, 20_000, 200_000):
        message = REQUEST_TEMPLATE.replace(_ID, b"m-1").replace(
            b"<note>", b"<note>" + b"<a>z</a>" * (extra // 8)
        )
        costs = []
        for parse in (soap.parse_request, soap.parse_header_ids):
            runs = []
            for _ in range(HEADER_COST_RUNS):
                began = time.process_time()
                for _ in range(HEADER_COST_MESSAGES):
                    parse(message, CONTENT_TYPE)
                runs.append((time.process_time() - began) / HEADER_COST_MESSAGES)
            costs.append(min(runs) * 1e6)
        print(
            f"a {len(message):,}-byte request: parse_request {costs[0]:,.1f} µs, "
            f"parse_header_ids {costs[1]:,.1f} µs CPU"
        )


# --- what writing costs ----------------------------------------------------------------------


async def cost(url: str, batch: list[LogRecord], fed: Federation) -> tuple[float, float]:
    """Process CPU seconds per record: appended by COST_APPENDERS waiting appenders, then timestamped."""
    engine = create_engine(url)
    writer = MessageLogWriter(  # the node's default window
        engine, gateway=GATEWAY, node=NODE, window_seconds=0.0, record_signer=fed.record_signer()
    )
    stamper = BatchTimestamper(
        engine, gateway=GATEWAY, node=NODE, stamp=functools.partial(_stamp, fed.tsa), max_batch=STAMP_EVERY
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


def print_cost(fed: Federation) -> None:
    batch = [
        r
        for first in range(0, COST_RECORDS // 2, SIGNING_BATCH)
        for r in exchanges(fed, first, SIGNING_BATCH)
    ]
    batch = batch[:COST_RECORDS]
    runs = []
    for _ in range(COST_RUNS):
        with tempfile.TemporaryDirectory() as directory:
            url = f"sqlite:///{Path(directory) / 'messagelog.db'}"
            migrate(url)
            runs.append(asyncio.run(cost(url, batch, fed)))
    append_cpu, stamp_cpu = min(a for a, _ in runs), min(s for _, s in runs)
    print(
        f"cost per record: {append_cpu * 1e6:,.0f} µs CPU to append ({COST_APPENDERS} appenders), "
        f"{stamp_cpu * 1e6:,.0f} µs to timestamp (process CPU, least of {COST_RUNS} runs of {COST_RECORDS:,})"
    )


def run(
    sizes: list[int],
    db: Path,
    *,
    unsigned_records: bool,
    show_cost: bool,
    latency: bool,
    batch: int,
    body_bytes: int | None,
) -> None:
    global REQUEST_TEMPLATE, RESPONSE_TEMPLATE  # the bench's one knob on its messages
    if body_bytes is not None:
        REQUEST_TEMPLATE, RESPONSE_TEMPLATE = _templates(body_bytes)
    fed = Federation.make()
    if db.exists():  # a kept log: its federation is gone, a new one signs the records added now
        db.unlink()
    ca_file = db.with_suffix(".ca.pem")
    ca_file.write_bytes(fed.ca.certificate.public_bytes(serialization.Encoding.PEM))
    if show_cost:
        print_cost(fed)
    url = f"sqlite:///{db}"
    migrate(url)
    for size in sizes:
        seconds = grow(url, fed, size, None if unsigned_records else fed.record_signer(), batch)
        print(
            f"log at {size:,} records ({seconds:.0f} s to write), "
            f"{db.stat().st_size / size:,.0f} bytes/record"
        )
        result = verify_in_child(url, ca_file)
        print(
            f"  verified {result['checked']:,.0f} records in {result['wall']:.1f} s wall, "
            f"{result['cpu']:.1f} s CPU: "
            f"{result['checked'] / result['wall']:,.0f} records/s wall, "
            f"{result['checked'] / result['cpu']:,.0f} records/s per core "
            f"({result['signatures']:,.0f} signed roots, {result['tokens']:,.0f} tokens); "
            f"RSS grew {result['rss_growth_mb']:.1f} MB (peak {result['peak_rss_mb']:.0f} MB)",
            flush=True,
        )
    if latency:
        print_latency(url, ca_file)


def main() -> None:
    arguments = sys.argv[1:]
    if arguments[:1] == ["verify"]:
        print(json.dumps(verify_here(arguments[1], arguments[2])))
        return
    if arguments[:1] == ["serve"]:
        serve_here(*arguments[1:4])
        return
    if arguments[:1] == ["header-cost"]:
        print_header_cost()
        return
    if arguments[:1] == ["latency"]:  # on a log written by an earlier run: latency DB_PATH
        db = Path(arguments[1])
        print_latency(f"sqlite:///{db}", db.with_suffix(".ca.pem"))
        return
    flags = {a for a in arguments if a in ("--cost", "--unsigned-records", "--latency")}
    valued = {
        name: arguments.index(name) for name in ("--db", "--batch", "--body-bytes") if name in arguments
    }
    values = {name: arguments[at + 1] for name, at in valued.items()}
    taken = {at for at in valued.values()} | {at + 1 for at in valued.values()}
    db_path = Path(values["--db"]) if "--db" in values else None
    sizes = sorted(int(a) for i, a in enumerate(arguments) if a not in flags and i not in taken) or [20_000]
    options = {
        "unsigned_records": "--unsigned-records" in flags,
        "show_cost": "--cost" in flags,
        "latency": "--latency" in flags,
        "batch": int(values.get("--batch", SIGNING_BATCH)),
        "body_bytes": int(values["--body-bytes"]) if "--body-bytes" in values else None,
    }
    if db_path is not None:
        run(sizes, db_path, **options)
        return
    with tempfile.TemporaryDirectory() as directory:
        run(sizes, Path(directory) / "messagelog.db", **options)


if __name__ == "__main__":
    main()
