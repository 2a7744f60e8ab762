"""How fast `xgate log verify DIR` checks exported containers (target: >= 200 containers/s).

Run: `.venv/bin/python bench/containers.py [containers]` (default 1,000). It writes a chain of
realistic containers into a temporary directory: 1 KB SOAP requests with X-Road headers,
batch-signed 64 at a time with a real EC member key from the development CA, each carrying the
CA's OCSP response for the signer (one per batch, as a gateway refreshes it), chained, and
timestamped every 250 records by the development TSA (gateway.trust.tsa). Then it runs the
command itself, in process (click's runner): every container read from disk and checked
completely (zip, digests, signature, proof, record, logged parts, signer identity, header
identifiers, OCSP status, timestamp) and the chain links between them. It prints containers/s
in wall-clock and CPU time; the machine is shared, so the best of three runs is the figure.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.x509.ocsp import OCSPCertStatus
from lxml import etree

from gateway.crypto.hashtree import build_tree
from gateway.crypto.keys import KeyAlgorithm, generate_key
from gateway.crypto.ocsp import build_ocsp_request
from gateway.crypto.rootsig import RootSigner
from gateway.crypto.timestamp import build_timestamp_request, new_nonce, parse_timestamp_response
from gateway.ids import ClientId, ServiceId
from gateway.messagelog.asice import LoggedMessage, build_container, encode_proof
from gateway.messagelog.cli import cli
from gateway.messagelog.record import GENESIS_HASH, Direction, LogRecord, MessageKind, Side, chain_hash
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

GATEWAY = "DEV/GOV/1001/ss1"
CLIENT = ClientId.from_text("DEV/GOV/1001/benefits-office")
SERVICE = ServiceId.from_text("DEV/GOV/1002/population/getPerson/v1")
SIGNING_BATCH = 64  # messages per signed root, as bench/logverify.py
STAMP_EVERY = 250  # records per timestamp token
RUNS = 3
TARGET = 200  # containers/s (issue 9, build 6)
NOW = dt.datetime.now(dt.UTC)


def soap_request(i: int) -> bytes:
    body = etree.fromstring(f"<getPerson><id>{i}</id><note>{'x' * 600}</note></getPerson>".encode())
    return soap.build_request(CLIENT, SERVICE, body, message_id=f"message-{i}", user_id="EE38001085718")


def records(signer: RootSigner, ocsp: bytes, total: int) -> list[LogRecord]:
    made: list[LogRecord] = []
    for start in range(0, total, SIGNING_BATCH):
        payloads = [
            SoapPayload("text/xml; charset=utf-8", soap_request(i))
            for i in range(start, min(total, start + SIGNING_BATCH))
        ]
        manifests = [manifest(signed_parts(p)) for p in payloads]
        leaves = [hashlib.sha256(m).digest() for m in manifests]
        root, proofs = build_tree(leaves)
        signed_root = signer.sign(root, NOW)
        made += [
            LogRecord(
                gateway=GATEWAY,
                exchange_id=f"exchange-{start + n}",
                side=Side.CONSUMER,
                direction=Direction.REQUEST,
                kind=MessageKind.SOAP,
                logged_at=NOW + dt.timedelta(milliseconds=start + n),
                message_id=f"message-{start + n}",
                client=CLIENT.to_text(),
                service=SERVICE.to_text(),
                user_id="EE38001085718",
                issue=None,
                represented_party=None,
                content_type=payload.content_type,
                message=payload.body,
                manifest=manifest_text,
                signed_root_xml=signed_root,
                proof_json=encode_proof(leaf, proof),
                ocsp_response=ocsp,
            ).with_parts_logged()
            for n, (payload, manifest_text, leaf, proof) in enumerate(
                zip(payloads, manifests, leaves, proofs, strict=True)
            )
        ]
    return made


def write_containers(directory: Path, chain: list[LogRecord], tsa: TimestampAuthority) -> None:
    prev = GENESIS_HASH
    linked: list[tuple[LogRecord, bytes, bytes]] = []
    for record in chain:
        record_hash = chain_hash(prev, record)
        linked.append((record, prev, record_hash))
        prev = record_hash
    for start in range(0, len(linked), STAMP_EVERY):
        batch = linked[start : start + STAMP_EVERY]
        root, proofs = build_tree([record_hash for _, _, record_hash in batch])
        response = tsa.respond(build_timestamp_request(root, new_nonce()), dt.datetime.now(dt.UTC))
        token = parse_timestamp_response(response).der
        for seq, ((record, prev_hash, record_hash), proof) in enumerate(
            zip(batch, proofs, strict=True), start + 1
        ):
            container = build_container(LoggedMessage(record, prev_hash, token, proof))
            (directory / f"{seq:012d}-{record_hash.hex()[:16]}.asice").write_bytes(container)


def main() -> None:
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000
    ca_key = generate_key(KeyAlgorithm.EC)
    ca = CertificateAuthority(build_ca_certificate(ca_key, "bench CA", NOW), ca_key, CaSettings())
    signer_key, tsa_key = generate_key(KeyAlgorithm.EC), generate_key(KeyAlgorithm.EC)
    signer_cert = issue_certificate(ca, MemberSigningProfile(CLIENT.member), signer_key.public_key(), NOW)
    tsa_cert = issue_certificate(ca, TsaProfile(), tsa_key.public_key(), NOW)
    tsa = TimestampAuthority(tsa_key, tsa_cert)
    responder = OcspResponder(
        ca_key, ca.certificate, ca.certificate, lambda _serial: RevocationStatus(OCSPCertStatus.GOOD)
    )
    ocsp = responder.respond(build_ocsp_request(signer_cert, ca.certificate), NOW - dt.timedelta(minutes=1))

    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        (directory / "containers").mkdir()
        write_containers(
            directory / "containers", records(RootSigner(signer_key, signer_cert), ocsp, total), tsa
        )
        (directory / "ca.pem").write_bytes(ca.certificate.public_bytes(serialization.Encoding.PEM))
        (directory / "tsa.pem").write_bytes(tsa_cert.public_bytes(serialization.Encoding.PEM))
        size = sum(path.stat().st_size for path in (directory / "containers").iterdir())
        print(f"wrote {total:,} containers, {size / total:,.0f} bytes each")
        command = [
            "verify", str(directory / "containers"),
            "--ca", str(directory / "ca.pem"), "--tsa-cert", str(directory / "tsa.pem"),
        ]  # fmt: skip
        runs = []
        for _ in range(RUNS):
            began, began_cpu = time.perf_counter(), time.process_time()
            result = CliRunner().invoke(cli, command, catch_exceptions=False)
            runs.append((time.perf_counter() - began, time.process_time() - began_cpu))
            assert result.exit_code == 0, result.output[-2000:]
            assert f"chain links: {total} valid containers in 1 runs" in result.output, result.output[-2000:]
    wall, cpu = min(w for w, _ in runs), min(c for _, c in runs)
    print(
        f"verified {total:,} containers and their links in {wall:.2f} s wall, {cpu:.2f} s CPU: "
        f"{total / wall:,.0f} containers/s wall, {total / cpu:,.0f} per core "
        f"(best of {RUNS}; target {TARGET}/s)"
    )


if __name__ == "__main__":
    main()
