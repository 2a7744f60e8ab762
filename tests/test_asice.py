"""ASiC-E containers of logged messages: round trips, every tamper case, hostile zips.

The evidence is real: signatures from RootSigner over a real hash tree, certificates from the
development CA (gateway.trust.pki), RFC 3161 tokens from `openssl ts -reply` (an independent
TSA), and `unzip` as an independent reader of the zip.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import re
import subprocess
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.ocsp import OCSPCertStatus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.crypto.hashtree import build_tree
from gateway.crypto.keys import KeyAlgorithm, PrivateKey, generate_key
from gateway.crypto.ocsp import build_ocsp_request
from gateway.crypto.rootsig import RootSigner
from gateway.ids import ClientId, ServiceId
from gateway.messagelog import asice
from gateway.messagelog.asice import (
    ASIC_MANIFEST,
    MANIFEST_TXT,
    MEDIA_TYPE,
    MESSAGE_BIN,
    MESSAGE_XML,
    PROOF,
    RECORD,
    REST_REQUEST,
    SIGNATURE,
    TIMESTAMP,
    TIMESTAMP_PROOF,
    ContainerReport,
    LoggedMessage,
    ZipLimits,
    build_container,
    decode_proof,
    encode_proof,
    read_container,
    verify_container,
)
from gateway.messagelog.asice import build as asice_build
from gateway.messagelog.asice import proof as asice_proof
from gateway.messagelog.asice import verify as asice_verify
from gateway.messagelog.record import GENESIS_HASH, Direction, LogRecord, MessageKind, Side, chain_hash
from gateway.protocol import soap
from gateway.protocol.transport import (
    Payload,
    RestRequestPayload,
    SoapPayload,
    manifest,
    manifest_digest,
    signed_parts,
)
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

NOW = dt.datetime.now(dt.UTC).replace(microsecond=123000)
GATEWAY = "DEV/GOV/1001/ss1"

CLIENT = "DEV/GOV/1001/reg"
SERVICE = "DEV/COM/2222/crm/getPerson/v1"
REST_SERVICE = "DEV/COM/2222/crm/persons"


def _soap(body: bytes, message_id: str, *, response: bool = False) -> bytes:
    """An X-Road SOAP message whose header names CLIENT, SERVICE and `message_id`."""
    client, service = ClientId.from_text(CLIENT), ServiceId.from_text(SERVICE)
    request = soap.build_request(
        client, service, etree.fromstring(b"<getPerson/>"), message_id=message_id, user_id="EE30101010007"
    )
    if response:
        request = soap.build_response(soap.parse_request(request, "text/xml"), etree.fromstring(b"<x/>"))
    start = b"<x/>" if response else b"<getPerson/>"
    assert start in request
    return request.replace(start, body)


SOAP_REQUEST = SoapPayload("text/xml; charset=utf-8", _soap(b"<getPerson><id>7</id></getPerson>", "m0"))
SOAP_RESPONSE = SoapPayload(
    "text/xml; charset=utf-8",
    _soap("<getPersonResponse><name>Jüri</name></getPersonResponse>".encode(), "m3", response=True),
)
SOAP_WITH_ATTACHMENT = SoapPayload(
    'multipart/related; type="text/xml"; boundary="MIME_boundary"; start="<soap@x>"',
    b"--MIME_boundary\r\nContent-Type: text/xml\r\nContent-ID: <soap@x>\r\n\r\n"
    + _soap(b"<getPerson><id>9</id></getPerson>", "m2")
    + b"\r\n--MIME_boundary\r\nContent-Type: application/octet-stream\r\n\r\n"
    + bytes(range(256)) * 4
    + b"\r\n--MIME_boundary--\r\n",
)
REST_POST = RestRequestPayload(
    "POST",
    "/r1/DEV/COM/2222/crm/persons",
    "",
    (
        ("Content-Type", "application/json; charset=utf-8"),
        ("X-Road-Client", CLIENT),
        ("X-Road-Id", "m1"),
        ("X-Road-UserId", "Jüri Õun"),
    ),
    '{"name": "Jüri"}'.encode(),
)
FAULT = SoapPayload(
    "text/xml; charset=utf-8", b"<Envelope><Body><Fault>Server.ServerProxy.X</Fault></Body></Envelope>"
)

TSA_CONFIG = """\
[ tsa ]
default_tsa = tsa_config1

[ tsa_config1 ]
serial = {serial}
crypto_device = builtin
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256
accuracy = secs:1
ordering = no
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


# --- evidence: a CA, a signer, a TSA, a signed batch, a chain and a stamp -------------------


@dataclass(frozen=True)
class Trust:
    """The development CA, a member's signing key and an RFC 3161 TSA it certified."""

    ca: CertificateAuthority
    signer_key: PrivateKey
    signer_cert: x509.Certificate
    tsa_key: PrivateKey
    tsa_cert: x509.Certificate
    directory: Path
    provider_key: PrivateKey
    provider_cert: x509.Certificate

    def ocsp(self, certificate: x509.Certificate, status: OCSPCertStatus = OCSPCertStatus.GOOD) -> bytes:
        """The CA's own OCSP answer about `certificate`, as of a minute before the signing time."""
        responder = OcspResponder(
            self.ca.key, self.ca.certificate, self.ca.certificate, lambda _serial: RevocationStatus(status)
        )
        request = build_ocsp_request(certificate, self.ca.certificate)
        return responder.respond(request, NOW - dt.timedelta(minutes=1))

    @property
    def ca_pem(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def tsa_pem(self) -> Path:
        return self.directory / "tsa.pem"

    def verify(self, data: bytes, **kwargs: object) -> ContainerReport:
        return verify_container(
            data,
            trusted_cas=[self.ca.certificate],
            trusted_tsa_certs=[self.tsa_cert],
            **kwargs,  # type: ignore[arg-type]
        )


def make_trust(directory: Path) -> Trust:
    ca_key = generate_key(KeyAlgorithm.EC)
    ca = CertificateAuthority(build_ca_certificate(ca_key, "xgate test CA", NOW), ca_key, CaSettings())
    signer_key = generate_key(KeyAlgorithm.EC)
    member = ClientId("DEV", "GOV", "1001")
    signer_cert = issue_certificate(ca, MemberSigningProfile(member), signer_key.public_key(), NOW)
    tsa_key = generate_key(KeyAlgorithm.EC)
    tsa_cert = issue_certificate(ca, TsaProfile(), tsa_key.public_key(), NOW)
    provider_key = generate_key(KeyAlgorithm.EC)
    provider = ClientId("DEV", "COM", "2222")
    provider_cert = issue_certificate(ca, MemberSigningProfile(provider), provider_key.public_key(), NOW)
    directory.mkdir(parents=True, exist_ok=True)
    trust = Trust(ca, signer_key, signer_cert, tsa_key, tsa_cert, directory, provider_key, provider_cert)
    trust.ca_pem.write_bytes(ca.certificate.public_bytes(serialization.Encoding.PEM))
    trust.tsa_pem.write_bytes(tsa_cert.public_bytes(serialization.Encoding.PEM))
    (directory / "tsa.key").write_bytes(
        tsa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (directory / "tsa.cnf").write_text(TSA_CONFIG.format(serial=directory / "tsaserial"))
    return trust


def openssl_timestamp(trust: Trust, digest: bytes) -> bytes:
    """A TimeStampToken over `digest` from `openssl ts -reply`: a TSA that is not our code."""
    directory = trust.directory
    query, token = directory / "query.tsq", directory / "token.der"
    ask = f"openssl ts -query -digest {digest.hex()} -sha256 -cert -no_nonce -out {query}"
    reply = (
        f"openssl ts -reply -config tsa.cnf -queryfile {query} -inkey tsa.key -signer tsa.pem"
        f" -token_out -out {token}"
    )
    for command in (ask, reply):
        subprocess.run(command.split(), cwd=directory, check=True, capture_output=True, timeout=30)
    return token.read_bytes()


def _record(
    payload: Payload,
    direction: Direction,
    signed_root_xml: bytes | None,
    proof_json: str | None,
    message_id: str,
    outcome: str = "ok",
) -> LogRecord:
    (*_head, message_part) = signed_parts(payload)
    return LogRecord(
        gateway=GATEWAY,
        exchange_id=f"x-{message_id}",
        side=Side.CONSUMER,
        direction=direction,
        kind=MessageKind.REST if isinstance(payload, RestRequestPayload) else MessageKind.SOAP,
        logged_at=NOW,
        message_id=message_id,
        client=CLIENT,
        service=REST_SERVICE if isinstance(payload, RestRequestPayload) else SERVICE,
        user_id="EE30101010007",
        issue=None,
        represented_party=None,
        content_type=message_part.content_type,
        message=message_part.data,
        manifest=manifest(signed_parts(payload)),
        signed_root_xml=signed_root_xml,
        proof_json=proof_json,
        ocsp_response=None,
        outcome=outcome,
    ).with_parts_logged()


def make_messages(trust: Trust) -> list[LoggedMessage]:
    """Five logged messages of one chain, all stamped in one batch.

    0: SOAP request (message.xml), 1: REST request with its head (message.bin, rest-request.json),
    2: SOAP with an attachment (message.bin), all three signed in one batch by the client's
    member; 3: SOAP response with body logging off, signed by the provider's member; 4: a fault
    the gateway logged unsigned. Each signed record carries its signer's OCSP response.
    """
    requests: list[Payload] = [SOAP_REQUEST, REST_POST, SOAP_WITH_ATTACHMENT]
    leaves = [manifest_digest(signed_parts(payload)) for payload in requests]
    root, proofs = build_tree(leaves)
    signed_root = RootSigner(trust.signer_key, trust.signer_cert).sign(root, NOW)
    client_ocsp = trust.ocsp(trust.signer_cert)
    records = [
        replace(
            _record(payload, Direction.REQUEST, signed_root, encode_proof(leaf, proof), f"m{i}"),
            ocsp_response=client_ocsp,
        )
        for i, (payload, leaf, proof) in enumerate(zip(requests, leaves, proofs, strict=True))
    ]
    records[1] = replace(records[1], rest_head=signed_parts(REST_POST)[0].data).with_parts_logged()
    response_leaf = manifest_digest(signed_parts(SOAP_RESPONSE))
    response_root, (response_proof,) = build_tree([response_leaf])
    provider_root = RootSigner(trust.provider_key, trust.provider_cert).sign(response_root, NOW)
    response = _record(
        SOAP_RESPONSE, Direction.RESPONSE, provider_root, encode_proof(response_leaf, response_proof), "m3"
    )
    records.append(replace(response, ocsp_response=trust.ocsp(trust.provider_cert)).without_body())
    records.append(_record(FAULT, Direction.RESPONSE, None, None, "m4", outcome="Server.ServerProxy.X"))
    prev_hashes, prev = [], GENESIS_HASH
    for record in records:
        prev_hashes.append(prev)
        prev = chain_hash(prev, record)
    record_hashes = [chain_hash(p, r) for p, r in zip(prev_hashes, records, strict=True)]
    stamped_root, stamp_proofs = build_tree(record_hashes)
    token = openssl_timestamp(trust, stamped_root)
    return [
        LoggedMessage(record, prev_hash, token, stamp_proof)
        for record, prev_hash, stamp_proof in zip(records, prev_hashes, stamp_proofs, strict=True)
    ]


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> Trust:
    return make_trust(tmp_path_factory.mktemp("trust"))


@pytest.fixture(scope="module")
def messages(trust: Trust) -> list[LoggedMessage]:
    return make_messages(trust)


@pytest.fixture(scope="module")
def container(messages: list[LoggedMessage]) -> bytes:
    return build_container(messages[0])


# --- zip rewriting, as an attacker would ------------------------------------------------------


def files_of(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def rezip(files: Mapping[str, bytes], *, first: str = "mimetype", compress_first: bool = False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        order = [first, *(name for name in files if name != first)]
        for name in order:
            method = zipfile.ZIP_DEFLATED if (name != first or compress_first) else zipfile.ZIP_STORED
            archive.writestr(name, files[name], method)
    return buffer.getvalue()


def with_manifest_rebuilt(files: dict[str, bytes]) -> dict[str, bytes]:
    """What a careful forger does: recompute the unsigned manifest.xml over the changed files."""
    listed = asice_verify._read_asic_manifest(files[ASIC_MANIFEST])
    data = {name: files[name] for name in files if name not in ("mimetype", ASIC_MANIFEST)}
    types = {name: listed.get(name, ("application/octet-stream", b""))[0] for name in data}
    return {**files, ASIC_MANIFEST: asice_build._asic_manifest(data, types)}


def tampered(container: bytes, name: str, change: Callable[[bytes], bytes], *, rebuild: bool = True) -> bytes:
    files = files_of(container)
    files[name] = change(files[name])
    return rezip(with_manifest_rebuilt(files) if rebuild else files)


def failed(report: ContainerReport) -> dict[str, str]:
    return {check.name: check.detail for check in report.checks if not check.passed}


# --- round trips --------------------------------------------------------------------------


def test_a_container_of_a_signed_soap_message_verifies(trust: Trust, container: bytes) -> None:
    report = trust.verify(container)
    assert report.valid, report.problems
    assert [check.name for check in report.checks] == [
        "zip", "data files", "message", "signature", "proof", "record", "logged parts", "signer",
        "identifiers", "certificate status", "timestamp",
    ]  # fmt: skip
    assert report.signer_member == "DEV/GOV/1001"
    assert not report.warnings
    assert report.body_included
    assert report.signer is not None and "CN=1001" in report.signer
    assert report.signed_at == NOW.replace(microsecond=123000)
    assert report.timestamped_at is not None
    assert abs(report.timestamped_at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)
    assert report.record is not None and report.record["message_id"] == "m0"


def test_the_layout_is_asic_e(container: bytes, messages: list[LoggedMessage]) -> None:
    # EN 319 162-1 A.1: mimetype first, stored, no extra field, so its value sits at byte 38.
    assert container[30:38] == b"mimetype"
    assert container[38 : 38 + len(MEDIA_TYPE)] == MEDIA_TYPE.encode()
    with zipfile.ZipFile(io.BytesIO(container)) as archive:
        first = archive.infolist()[0]
        assert (first.filename, first.compress_type, first.extra) == ("mimetype", zipfile.ZIP_STORED, b"")
        names = archive.namelist()
    assert sorted(names) == sorted(
        [
            "mimetype", MESSAGE_XML, MANIFEST_TXT, SIGNATURE, PROOF, RECORD, TIMESTAMP,
            TIMESTAMP_PROOF, asice.OCSP, ASIC_MANIFEST,
        ]
    )  # fmt: skip
    files = files_of(container)
    record = messages[0].record
    assert files[MESSAGE_XML] == record.message
    assert files[MANIFEST_TXT] == record.manifest
    assert files[SIGNATURE] == record.signed_root_xml
    assert files[PROOF].decode() == record.proof_json
    assert files[asice.OCSP] == record.ocsp_response
    document = json.loads(files[RECORD])
    assert document["content"] == record.content_fields()
    assert document["record_hash"] == messages[0].record_hash.hex()
    assert document["prev_hash"] == GENESIS_HASH.hex()


def test_unzip_reads_the_container_and_finds_every_file_intact(container: bytes, tmp_path: Path) -> None:
    (tmp_path / "c.asice").write_bytes(container)
    tested = subprocess.run(
        ["unzip", "-t", "c.asice"], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "No errors detected" in tested.stdout


def test_manifest_xml_lists_every_file_with_its_media_type_and_digest(container: bytes) -> None:
    files = files_of(container)
    xml = files[ASIC_MANIFEST].decode()
    assert xml.startswith("<?xml version='1.0' encoding='UTF-8'?>\n<asic:ASiCManifest")
    listed = asice_verify._read_asic_manifest(files[ASIC_MANIFEST])
    assert set(listed) == set(files) - {"mimetype", ASIC_MANIFEST}
    for name, (_, digest) in listed.items():
        assert digest == hashlib.sha256(files[name]).digest()
    assert listed[MESSAGE_XML][0] == "text/xml; charset=utf-8"
    assert listed[TIMESTAMP][0] == "application/timestamp-reply"


def test_the_same_record_always_gives_the_same_container(messages: list[LoggedMessage]) -> None:
    assert build_container(messages[1]) == build_container(messages[1])


def test_a_rest_request_carries_its_head_and_body(trust: Trust, messages: list[LoggedMessage]) -> None:
    data = build_container(messages[1])
    files = files_of(data)
    assert files[REST_REQUEST] == signed_parts(REST_POST)[0].data
    assert files[MESSAGE_BIN] == REST_POST.body
    report = trust.verify(data)
    assert report.valid, report.problems
    assert "rest-request.json" in {c.name: c.detail for c in report.checks}["message"]


def test_soap_with_attachments_is_kept_as_bytes(trust: Trust, messages: list[LoggedMessage]) -> None:
    data = build_container(messages[2])
    assert files_of(data)[MESSAGE_BIN] == SOAP_WITH_ATTACHMENT.body
    assert trust.verify(data).valid


def test_without_the_body_the_manifest_still_proves_its_digest(
    trust: Trust, messages: list[LoggedMessage]
) -> None:
    data = build_container(messages[3])
    files = files_of(data)
    assert MESSAGE_XML not in files and MESSAGE_BIN not in files
    report = trust.verify(data)
    assert report.valid, report.problems
    assert not report.body_included
    digest = hashlib.sha256(SOAP_RESPONSE.body).hexdigest()
    assert f"message {digest} text/xml" in files[MANIFEST_TXT].decode()
    assert report.record is not None and report.record["message_sha256"] == digest


def test_an_unsigned_fault_verifies_by_its_record_and_timestamp(
    trust: Trust, messages: list[LoggedMessage]
) -> None:
    data = build_container(messages[4])
    assert SIGNATURE not in files_of(data)
    report = trust.verify(data)
    assert report.valid, report.problems
    assert report.signer is None
    # Stripping a signed message's signature: the record still names it.
    files = files_of(build_container(messages[0]))
    del files[SIGNATURE], files[PROOF]
    problems = failed(trust.verify(rezip(with_manifest_rebuilt(files))))
    assert problems["record"] == "the record's signed_root_sha256 does not match the container's file"
    # A record rewritten to match is still of a message the gateway answered "ok".
    document = json.loads(files[RECORD])
    document["content"].update(signed_root_sha256=None, proof_json=None)
    files[RECORD] = asice_build._record_json(document)
    problems = failed(trust.verify(rezip(with_manifest_rebuilt(files))))
    assert "content_digest" in problems["record"]
    files[RECORD] = rehashed(document)
    problems = failed(trust.verify(rezip(with_manifest_rebuilt(files))))
    assert problems["record"] == "the record is of a signed message, but the container has no signature"


def test_every_container_of_the_batch_verifies(trust: Trust, messages: list[LoggedMessage]) -> None:
    for message in messages:
        report = trust.verify(build_container(message))
        assert report.valid, (message.record.message_id, report.problems)


# --- tampering ----------------------------------------------------------------------------


def flip_first(old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    def change(data: bytes) -> bytes:
        assert old in data
        return data.replace(old, new, 1)

    return change


def test_a_changed_message_byte_fails_the_index_and_the_signed_manifest(
    trust: Trust, container: bytes
) -> None:
    naive = failed(
        trust.verify(tampered(container, MESSAGE_XML, flip_first(b"<id>7", b"<id>8"), rebuild=False))
    )
    assert naive["data files"] == "message.xml does not match its digest in manifest.xml"
    careful = failed(trust.verify(tampered(container, MESSAGE_XML, flip_first(b"<id>7", b"<id>8"))))
    assert set(careful) == {"message"}
    assert "message.xml is not the message manifest.txt lists" in careful["message"]


def test_a_changed_manifest_fails_the_proof_and_the_record(trust: Trust, container: bytes) -> None:
    """A forger who changes the message and its manifest line gets past the message check only."""
    files = files_of(container)
    forged_body = files[MESSAGE_XML].replace(b"<id>7", b"<id>8")
    old_digest = hashlib.sha256(files[MESSAGE_XML]).hexdigest().encode()
    files[MESSAGE_XML] = forged_body
    files[MANIFEST_TXT] = files[MANIFEST_TXT].replace(
        old_digest, hashlib.sha256(forged_body).hexdigest().encode()
    )
    problems = failed(trust.verify(rezip(with_manifest_rebuilt(files))))
    assert set(problems) == {"proof", "record", "timestamp"}
    assert problems["proof"] == "the proof's leaf is not SHA-256(manifest.txt)"
    assert "manifest_sha256" in problems["record"]


def flip_signature_byte(signature_xml: bytes, index: int) -> bytes:
    """The XML signature with one bit of its SignatureValue's byte `index` changed."""
    value = re.search(rb"<ds:SignatureValue>([^<]*)<", signature_xml)
    assert value is not None
    raw = bytearray(base64.b64decode(value[1]))
    raw[index] ^= 0x01
    return signature_xml.replace(value[1], base64.b64encode(bytes(raw)))


def rehashed(document: dict[str, Any]) -> bytes:
    """A record document whose content digest and record hash are recomputed, as record.json."""
    content_digest = hashlib.sha256(asice_proof._canonical_json(document["content"])).digest()
    document["content_digest"] = content_digest.hex()
    document["record_hash"] = hashlib.sha256(
        bytes.fromhex(document["prev_hash"]) + content_digest
    ).hexdigest()
    return asice_build._record_json(document)


def test_a_changed_signature_fails(trust: Trust, container: bytes) -> None:
    problems = failed(
        trust.verify(tampered(container, SIGNATURE, lambda data: flip_signature_byte(data, 10)))
    )
    assert "XML signature does not verify" in problems["signature"]
    assert "signed_root_sha256" in problems["record"]


def test_a_signed_root_from_another_batch_does_not_fit_the_proof(trust: Trust, container: bytes) -> None:
    other = RootSigner(trust.signer_key, trust.signer_cert).sign(hashlib.sha256(b"other").digest(), NOW)
    problems = failed(trust.verify(tampered(container, SIGNATURE, lambda _: other)))
    assert "signature" not in problems  # a genuine signature...
    assert problems["proof"] == "the proof does not lead to the signed root"  # ...over something else


def test_a_signature_by_an_untrusted_ca_fails(trust: Trust, container: bytes, tmp_path: Path) -> None:
    stranger = make_trust(tmp_path / "stranger")
    files = files_of(container)
    root = decode_proof(files[PROOF].decode()).root
    forged = RootSigner(stranger.signer_key, stranger.signer_cert).sign(root, NOW)
    problems = failed(trust.verify(tampered(container, SIGNATURE, lambda _: forged)))
    assert "signer certificate is not trusted" in problems["signature"]


def test_a_changed_proof_fails(trust: Trust, messages: list[LoggedMessage]) -> None:
    container = build_container(messages[1])  # in a batch of four: two steps
    proof = decode_proof(files_of(container)[PROOF].decode())
    assert len(proof.steps) == 2
    other_sibling = bytes(32)
    forged = encode_proof(proof.leaf, (proof.steps[0]._replace(sibling=other_sibling), proof.steps[1]))
    problems = failed(trust.verify(tampered(container, PROOF, lambda _: forged.encode())))
    assert problems["proof"] == "the proof does not lead to the signed root"
    assert "proof_json" in problems["record"]


def test_a_changed_record_fails_its_digest_or_its_timestamp(trust: Trust, container: bytes) -> None:
    files = files_of(container)
    document = json.loads(files[RECORD])
    document["content"]["client"] = "DEV/GOV/9999/evil"
    files[RECORD] = asice_build._record_json(document)
    problems = failed(trust.verify(rezip(with_manifest_rebuilt(files))))
    assert problems["record"] == "content_digest is not the SHA-256 of the record's content"
    # Recomputing the record's hashes moves it off the stamped tree.
    files[RECORD] = rehashed(document)
    problems = failed(trust.verify(rezip(with_manifest_rebuilt(files))))
    # The signer is not the member the record now names, nor does the signed header name it.
    assert set(problems) == {"signer", "identifiers", "timestamp"}
    assert "must be signed by the client's member DEV/GOV/9999" in problems["signer"]
    assert "client is 'DEV/GOV/1001/reg', the record's 'DEV/GOV/9999/evil'" in problems["identifiers"]
    assert problems["timestamp"] == "the timestamp proof does not start at this record's hash"


def test_a_changed_token_fails(trust: Trust, container: bytes) -> None:
    files = files_of(container)
    response = bytearray(files[TIMESTAMP])
    response[-10] ^= 0x01  # inside the token's signature
    files[TIMESTAMP] = bytes(response)
    problems = failed(trust.verify(rezip(with_manifest_rebuilt(files))))
    assert set(problems) == {"timestamp"}
    assert problems["timestamp"] == (
        "the timestamp token does not verify: the token's signature does not verify"
    )


def test_a_token_over_another_root_fails(trust: Trust, container: bytes) -> None:
    other = asice.timestamp_response(openssl_timestamp(trust, hashlib.sha256(b"another batch").digest()))
    problems = failed(trust.verify(tampered(container, TIMESTAMP, lambda _: other)))
    assert problems["timestamp"] == (
        "the timestamp token does not verify: the token time-stamps another digest"
    )


def test_a_token_from_an_untrusted_tsa_fails(trust: Trust, container: bytes, tmp_path: Path) -> None:
    stranger = make_trust(tmp_path / "stranger")
    root = decode_proof(files_of(container)[TIMESTAMP_PROOF].decode()).root
    forged = asice.timestamp_response(openssl_timestamp(stranger, root))
    problems = failed(trust.verify(tampered(container, TIMESTAMP, lambda _: forged)))
    assert "the timestamp token does not verify" in problems["timestamp"]


def test_a_missing_timestamp_fails_unless_not_required(trust: Trust, container: bytes) -> None:
    files = files_of(container)
    del files[TIMESTAMP], files[TIMESTAMP_PROOF]
    stripped = rezip(with_manifest_rebuilt(files))
    assert failed(trust.verify(stripped)) == {"timestamp": "the container has no timestamp"}
    assert trust.verify(stripped, require_timestamp=False).valid


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_changed_byte_of_any_file_fails_even_with_a_rebuilt_index(
    trust: Trust, messages: list[LoggedMessage], data: st.DataObject
) -> None:
    container = build_container(messages[data.draw(st.sampled_from([0, 1]), label="message")])
    files = files_of(container)
    # manifest.xml is the unsigned index the forger rebuilds; the token has unsigned parts (below).
    name = data.draw(st.sampled_from(sorted(set(files) - {ASIC_MANIFEST, TIMESTAMP})), label="file")
    position = data.draw(st.integers(0, len(files[name]) - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="mask")
    changed = bytearray(files[name])
    changed[position] ^= mask
    files[name] = bytes(changed)
    assert not trust.verify(rezip(with_manifest_rebuilt(files))).valid


def test_every_signed_byte_of_the_token_matters(trust: Trust, container: bytes) -> None:
    """The TSTInfo, the signed attributes and the signature: a change anywhere there fails.

    CMS leaves some of a token unsigned (the certificates it carries, checked separately below;
    the digestAlgorithms hint, the spelling of the signer's name); no RFC 3161 verifier,
    openssl included, notices changes in the latter, and they change nothing the token proves.
    """
    files = files_of(container)
    response = files[TIMESTAMP]
    token = asice.timestamp_token_of(response)
    signed_data = cms.ContentInfo.load(token)["content"]
    signer_info = signed_data["signer_infos"][0]
    regions = [
        signed_data["encap_content_info"]["content"].contents,
        signer_info["signed_attrs"].contents,
        signer_info["signature"].contents,
    ]
    for region in regions:
        start = response.index(region)
        for position in range(start, start + len(region)):
            changed = bytearray(response)
            changed[position] ^= 0x01
            files[TIMESTAMP] = bytes(changed)
            report = trust.verify(rezip(with_manifest_rebuilt(files)))
            assert set(failed(report)) == {"timestamp"}, position


def test_a_corrupted_certificate_carried_in_the_token_fails(trust: Trust, container: bytes) -> None:
    """openssl builds its chain from the carried certificates, so verify_container checks them too."""
    files = files_of(container)
    response = files[TIMESTAMP]
    signed_data = cms.ContentInfo.load(asice.timestamp_token_of(response))["content"]
    carried = signed_data["certificates"][0].chosen.dump()
    assert carried in response
    changed = bytearray(carried)
    changed[-1] ^= 0x01  # the last byte of the CA's signature over the TSA certificate
    files[TIMESTAMP] = response.replace(carried, bytes(changed))
    problems = failed(trust.verify(rezip(with_manifest_rebuilt(files))))
    assert problems == {"timestamp": "the timestamp token carries a certificate no trusted CA issued"}


# --- hostile zips -------------------------------------------------------------------------


def raw_zip(entries: list[tuple[str, bytes]], method: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries:
            archive.writestr(
                zipfile.ZipInfo(name), data, zipfile.ZIP_STORED if name == "mimetype" else method
            )
    return buffer.getvalue()


def zip_problem(trust: Trust, data: bytes, **kwargs: object) -> str:
    report = trust.verify(data, **kwargs)
    assert not report.valid
    assert [check.name for check in report.checks] == ["zip"]
    return report.checks[0].detail


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../../etc/cron.d/evil", "climbs out of its directory"),
        ("META-INF/../../evil", "climbs out of its directory"),
        ("/etc/passwd", "absolute or non-portable path"),
        ("C:/Windows/evil", "absolute or non-portable path"),
        ("..\\evil", "absolute or non-portable path"),
        ("extra.txt", "unexpected files in the container: extra.txt"),
        ("META-INF/", "is a directory"),
    ],
)
def test_zip_slip_and_strange_names_are_refused(
    trust: Trust, container: bytes, name: str, reason: str
) -> None:
    files = files_of(container)
    data = raw_zip([*files.items(), (name, b"x")])
    assert reason in zip_problem(trust, data)


def test_duplicate_names_are_refused(trust: Trust, container: bytes) -> None:
    files = files_of(container)
    entries = [*files.items(), (MESSAGE_XML, b"<other/>")]
    with pytest.warns(UserWarning, match="Duplicate name"):
        data = raw_zip(entries)
    assert "appears twice" in zip_problem(trust, data)


def test_a_zip_bomb_is_refused_by_its_declared_size(trust: Trust, container: bytes) -> None:
    files = files_of(container)
    bomb = raw_zip(
        [*((n, d) for n, d in files.items() if n != MESSAGE_XML), (MESSAGE_XML, bytes(4 << 20))],
        zipfile.ZIP_DEFLATED,
    )
    assert len(bomb) < 64 * 1024
    reason = zip_problem(trust, bomb, limits=ZipLimits(max_entry_bytes=1 << 20))
    assert reason == "zip entry 'message.xml' declares 4194304 bytes, over the limit"
    reason = zip_problem(trust, bomb, limits=ZipLimits(max_total_bytes=2 << 20))
    assert "more than 2097152 bytes in all" in reason


def test_a_zip_bomb_that_lies_about_its_size_is_cut_off(trust: Trust, container: bytes) -> None:
    """Declared sizes are the attacker's word: reading stops at the limit whatever they say."""
    files = files_of(container)
    bomb = raw_zip(
        [*((n, d) for n, d in files.items() if n != MESSAGE_XML), (MESSAGE_XML, bytes(4 << 20))],
        zipfile.ZIP_DEFLATED,
    )
    declared = (4 << 20).to_bytes(4, "little")
    assert bomb.count(declared) == 2  # the local header and the central directory entry
    lying = bomb.replace(declared, (1000).to_bytes(4, "little"))
    reason = zip_problem(trust, lying, limits=ZipLimits(max_entry_bytes=1 << 20))
    assert "message.xml" in reason and ("cannot be read" in reason or "expands beyond" in reason)


def test_an_evidence_file_cannot_be_big(trust: Trust, container: bytes) -> None:
    files = files_of(container)
    files[RECORD] = b" " * (2 << 20)
    assert "expands beyond 1048576 bytes" in zip_problem(trust, rezip(files))


def test_the_container_size_is_bounded(trust: Trust, container: bytes) -> None:
    assert "over the 1000-byte limit" in zip_problem(trust, container, limits=ZipLimits(max_bytes=1000))


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda files: rezip(files, first=MANIFEST_TXT), "mimetype must be the first entry"),
        (lambda files: rezip(files, compress_first=True), "stored uncompressed and without an extra field"),
        (lambda files: rezip({**files, "mimetype": b"application/zip"}), "mimetype must be"),
        (lambda files: b"not a zip at all" * 10, "not a zip file"),
    ],
)
def test_the_mimetype_rules_of_asic_e_hold(
    trust: Trust, container: bytes, make: Callable[[dict[str, bytes]], bytes], reason: str
) -> None:
    assert reason in zip_problem(trust, make(files_of(container)))


def test_a_mimetype_with_an_extra_field_is_refused(trust: Trust, container: bytes) -> None:
    files = files_of(container)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("mimetype")
        info.extra = b"\xfe\xca\x00\x00"  # the JAR marker some zip tools add
        archive.writestr(info, files["mimetype"], zipfile.ZIP_STORED)
        for name, data in files.items():
            if name != "mimetype":
                archive.writestr(name, data)
    assert "without an extra field" in zip_problem(trust, buffer.getvalue())


def test_read_container_gives_the_files(container: bytes, messages: list[LoggedMessage]) -> None:
    assert read_container(container)[MESSAGE_XML] == messages[0].record.message


# --- building refuses evidence that does not fit ---------------------------------------------


def test_build_refuses_evidence_that_could_never_verify(messages: list[LoggedMessage]) -> None:
    message = messages[0]
    other_body = replace(message, record=replace(message.record, message=b"<other/>"))
    with pytest.raises(ValueError, match="does not have the digest the manifest lists"):
        build_container(other_body)
    other_head = replace(messages[1].record, rest_head=b"{}")
    with pytest.raises(ValueError, match="does not have the digest"):
        build_container(replace(messages[1], record=other_head, rest_head=None))
    with pytest.raises(ValueError, match="not the one the record keeps"):
        replace(messages[1], rest_head=b"{}")
    with pytest.raises(ValueError, match="proof is not for its manifest"):
        build_container(
            replace(message, record=replace(message.record, proof_json=messages[1].record.proof_json))
        )
    with pytest.raises(ValueError, match="does not stamp the root"):
        build_container(replace(message, timestamp_proof=messages[1].timestamp_proof))
    with pytest.raises(ValueError, match="with its proof, or neither"):
        build_container(replace(message, timestamp_proof=None))
    unsigned_ok = replace(message.record, signed_root_xml=None, proof_json=None)
    with pytest.raises(ValueError, match="only a fault is logged unsigned"):
        build_container(replace(message, record=unsigned_ok))


def test_proofs_have_one_canonical_form(messages: list[LoggedMessage]) -> None:
    text = messages[1].record.proof_json
    assert text is not None
    document = decode_proof(text)
    assert encode_proof(document.leaf, document.steps) == text
    assert json.loads(text)["format"] == "xgate-proof/1"
    with pytest.raises(ValueError, match="canonical"):
        decode_proof(json.dumps(json.loads(text), indent=1))
    with pytest.raises(ValueError, match="do not lead"):
        decode_proof(text.replace(document.root.hex(), bytes(32).hex()))


def test_a_local_header_that_disagrees_with_the_directory_is_refused(trust: Trust, container: bytes) -> None:
    """zipfile reads the central directory, `unzip` may read the local headers: both must agree."""
    with zipfile.ZipFile(io.BytesIO(container)) as archive:
        info = archive.getinfo(SIGNATURE)
    changed = bytearray(container)
    changed[info.header_offset + 20] ^= 0x01  # the local header's compressed size
    assert "its local header and the directory disagree" in zip_problem(trust, bytes(changed))
