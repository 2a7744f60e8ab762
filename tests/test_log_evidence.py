"""What log verification checks beyond a valid signature (issue 9, holes 3, 4, 5 and the verify part of 10).

Forged containers as an attacker would make them, each complete and re-stamped by the real TSA
so that only the check under test can catch it: re-signed with another member's key, a header
naming other identifiers, a stripped body or REST head, an OCSP response about another
certificate or saying revoked, a token from a TSA the federation does not list. Each is refused
by `verify_container` and by `xgate log verify`; docs/verification.md's hand check is run on the
same forgeries in tests/test_verification_doc.py. Then the live log (a stripped body or head, a
record older than `logged_parts`, a column of the wrong type) and many containers at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Final

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.x509.ocsp import OCSPCertStatus

from gateway.crypto.hashtree import build_tree
from gateway.crypto.keys import KeyAlgorithm, generate_key
from gateway.crypto.rootsig import RootSigner
from gateway.ids import ClientId
from gateway.messagelog import tables
from gateway.messagelog.asice import (
    MESSAGE_XML,
    RECORD,
    REST_REQUEST,
    LoggedMessage,
    build_container,
    encode_proof,
)
from gateway.messagelog.asice import build as asice_build
from gateway.messagelog.cli import cli
from gateway.messagelog.evidence import EvidenceError, check_header_ids, check_signer
from gateway.messagelog.links import ChainMember, link
from gateway.messagelog.record import GENESIS_HASH, Direction, LoggedPart, LogRecord, chain_hash
from gateway.messagelog.verify import Problem
from gateway.messagelog.verify_db import verify_log
from gateway.protocol.transport import manifest_digest, signed_parts
from gateway.trust.pki import (
    CaSettings,
    CertificateAuthority,
    MemberSigningProfile,
    TsaProfile,
    build_ca_certificate,
    issue_certificate,
)
from tests import logsamples
from tests import test_asice as asice_tests
from tests.test_asice import (
    NOW,
    REST_POST,
    SOAP_REQUEST,
    SOAP_RESPONSE,
    TSA_CONFIG,
    Trust,
    _record,
    failed,
    files_of,
    openssl_timestamp,
    rezip,
    with_manifest_rebuilt,
)

# --- forging, as an attacker with a member's key and access to any TSA would ------------------


# test_asice's module fixtures: the CA and TSA, and logged messages of each kind.
trust = asice_tests.trust
messages = asice_tests.messages


def stamped(trust: Trust, record: LogRecord) -> bytes:
    """A container of `record` alone, first of its chain, stamped by `trust`'s TSA: complete."""
    record_hash = chain_hash(GENESIS_HASH, record)
    root, (proof,) = build_tree([record_hash])
    return build_container(LoggedMessage(record, GENESIS_HASH, openssl_timestamp(trust, root), proof))


def signed_by(
    trust: Trust,
    record: LogRecord,
    key: object,
    cert: object,
    ocsp: bytes | None,
    payload: object = SOAP_REQUEST,
) -> LogRecord:
    """`record` re-signed (a batch of one) with `key`, its OCSP response replaced by `ocsp`."""
    leaf = manifest_digest(signed_parts(payload))  # type: ignore[arg-type]
    root, (proof,) = build_tree([leaf])
    signed_root = RootSigner(key, cert).sign(root, NOW)  # type: ignore[arg-type]
    return replace(
        record, signed_root_xml=signed_root, proof_json=encode_proof(leaf, proof), ocsp_response=ocsp
    )


def soap_request_record(trust: Trust, **changes: object) -> LogRecord:
    record = _record(SOAP_REQUEST, Direction.REQUEST, None, None, "m0")
    record = signed_by(trust, record, trust.signer_key, trust.signer_cert, trust.ocsp(trust.signer_cert))
    return replace(record, **changes)  # type: ignore[arg-type]


def other_tsa(trust: Trust, directory: Path) -> Trust:
    """A TSA the federation's CA certified, but which the global configuration does not list."""
    key = generate_key(KeyAlgorithm.EC)
    cert = issue_certificate(trust.ca, TsaProfile(), key.public_key(), NOW)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tsa.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "tsa.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (directory / "tsa.cnf").write_text(TSA_CONFIG.format(serial=directory / "tsaserial"))
    return dataclasses.replace(trust, tsa_key=key, tsa_cert=cert, directory=directory)


def forgeries(
    trust: Trust, messages: list[LoggedMessage], directory: Path
) -> dict[str, tuple[bytes, str, str]]:
    """name -> (container, the check that must refuse it, what it must say)."""
    resigned = signed_by(
        trust,
        soap_request_record(trust),
        trust.provider_key,
        trust.provider_cert,
        trust.ocsp(trust.provider_cert),
    )
    other_id = _record(SOAP_REQUEST, Direction.REQUEST, None, None, "m-other")
    other_id = signed_by(trust, other_id, trust.signer_key, trust.signer_cert, trust.ocsp(trust.signer_cert))
    without_body = files_of(build_container(messages[0]))
    del without_body[MESSAGE_XML]
    without_head = files_of(build_container(messages[1]))
    del without_head[REST_REQUEST]
    return {
        "resigned": (
            stamped(trust, resigned),
            "signer",
            "signed by DEV/COM/2222, but a request must be signed by the client's member DEV/GOV/1001",
        ),
        "other-identifiers": (stamped(trust, other_id), "identifiers", "id is 'm0', the record's 'm-other'"),
        "stripped-body": (
            rezip(with_manifest_rebuilt(without_body)),
            "logged parts",
            "the record says message was logged, but it is not there",
        ),
        "stripped-rest-head": (
            rezip(with_manifest_rebuilt(without_head)),
            "logged parts",
            "the record says rest-request was logged, but it is not there",
        ),
        "ocsp-of-another-certificate": (
            stamped(trust, soap_request_record(trust, ocsp_response=trust.ocsp(trust.provider_cert))),
            "certificate status",
            "(wrong_cert_id): the response is about another certificate",
        ),
        "ocsp-revoked": (
            stamped(
                trust,
                soap_request_record(
                    trust, ocsp_response=trust.ocsp(trust.signer_cert, OCSPCertStatus.REVOKED)
                ),
            ),
            "certificate status",
            "says the signer's certificate is revoked",
        ),
        "no-ocsp": (
            stamped(trust, soap_request_record(trust, ocsp_response=None)),
            "certificate status",
            "no OCSP response for the signer's certificate is attached",
        ),
        "token-from-another-tsa": (
            stamped(other_tsa(trust, directory / "other-tsa"), soap_request_record(trust)),
            "timestamp",
            "the signer is not a trusted TSA",
        ),
    }


@pytest.fixture(scope="module")
def forged(
    trust: Trust, messages: list[LoggedMessage], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[bytes, str, str]]:
    return forgeries(trust, messages, tmp_path_factory.mktemp("forged"))


def test_an_honest_container_of_each_kind_verifies(trust: Trust, messages: list[LoggedMessage]) -> None:
    for message in messages:
        report = trust.verify(build_container(message))
        assert report.valid, report.problems
        assert not report.warnings
    assert trust.verify(stamped(trust, soap_request_record(trust))).valid


@pytest.mark.parametrize(
    "name",
    [
        "resigned",
        "other-identifiers",
        "stripped-body",
        "stripped-rest-head",
        "ocsp-of-another-certificate",
        "ocsp-revoked",
        "no-ocsp",
        "token-from-another-tsa",
    ],
)
def test_each_forgery_is_refused_and_the_report_names_the_check(
    trust: Trust, forged: dict[str, tuple[bytes, str, str]], name: str
) -> None:
    container, check, evidence = forged[name]
    report = trust.verify(container)
    assert not report.valid
    problems = failed(report)
    assert check in problems, report.problems
    assert evidence in problems[check]
    assert report.problems[0].startswith(f"{check}: "), report.problems  # the first check that failed


def test_each_forgery_is_refused_by_xgate_log_verify(
    trust: Trust, forged: dict[str, tuple[bytes, str, str]], tmp_path: Path
) -> None:
    for name, (container, check, evidence) in forged.items():
        path = tmp_path / f"{name}.asice"
        path.write_bytes(container)
        result = run("verify", str(path), "--ca", str(trust.ca_pem), "--tsa-cert", str(trust.tsa_pem))
        assert result.exit_code == 1, (name, result.output)
        assert f"{name}.asice: INVALID" in result.stdout
        assert result.stderr == f"first problem: {check}: " + failed_detail(result, check) + "\n"
        assert evidence in result.stderr, (name, result.stderr)


def failed_detail(result: Result, check: str) -> str:
    return result.stderr.split(f"{check}: ", 1)[1].rstrip("\n")


def test_a_tsa_certificate_given_with_tsa_cert_is_pinned(trust: Trust, tmp_path: Path) -> None:
    """The other TSA verifies once it is named, but the CA having issued it is not enough."""
    tsa = other_tsa(trust, tmp_path / "tsa")
    container = stamped(tsa, soap_request_record(trust))
    assert not trust.verify(container).valid
    assert verify_pinned(trust, container, [tsa.tsa_cert]).valid


def verify_pinned(trust: Trust, container: bytes, tsas: list[object]) -> object:
    from gateway.messagelog.asice import verify_container

    return verify_container(container, trusted_cas=[trust.ca.certificate], trusted_tsa_certs=tsas)  # type: ignore[arg-type]


def test_a_response_must_be_signed_by_the_provider(trust: Trust, messages: list[LoggedMessage]) -> None:
    response = messages[3].record
    resigned = signed_by(
        trust, response, trust.signer_key, trust.signer_cert, trust.ocsp(trust.signer_cert), SOAP_RESPONSE
    )
    report = trust.verify(stamped(trust, resigned))
    assert "must be signed by the provider's member DEV/COM/2222" in failed(report)["signer"]


def test_ca_must_be_a_ca_certificate(trust: Trust, messages: list[LoggedMessage], tmp_path: Path) -> None:
    path = tmp_path / "c.asice"
    path.write_bytes(build_container(messages[0]))
    signer = tmp_path / "signer.pem"
    signer.write_bytes(trust.signer_cert.public_bytes(serialization.Encoding.PEM))
    result = run("verify", str(path), "--ca", str(signer), "--tsa-cert", str(trust.tsa_pem))
    assert result.exit_code == 2
    assert "is not a CA certificate (basicConstraints CA:TRUE)" in result.output


# --- the parts the log kept -----------------------------------------------------------------


def test_the_rest_head_is_kept_with_body_logging_off(trust: Trust, messages: list[LoggedMessage]) -> None:
    record = messages[1].record.without_body()
    assert record.message is None and record.rest_head == signed_parts(REST_POST)[0].data
    assert record.logged_parts == (LoggedPart.REST_REQUEST,)
    container = stamped(trust, replace(record, ocsp_response=record.ocsp_response))
    assert set(files_of(container)) >= {REST_REQUEST} and MESSAGE_XML not in files_of(container)
    report = trust.verify(container)
    assert report.valid, report.problems


def test_a_record_older_than_logged_parts_verifies_with_a_warning(
    trust: Trust, messages: list[LoggedMessage]
) -> None:
    legacy = replace(messages[0].record, logged_parts=None)
    assert legacy.content_fields()["format"] == "xgate-logrecord/2"
    assert "logged_parts" not in legacy.content_fields()
    report = trust.verify(stamped(trust, legacy))
    assert report.valid, report.problems
    assert report.warnings and "predates logged_parts" in report.warnings[0]


def test_logged_parts_are_covered_by_the_record_hash(messages: list[LoggedMessage]) -> None:
    record = messages[0].record
    assert record.logged_parts == (LoggedPart.MESSAGE,)
    assert chain_hash(GENESIS_HASH, record) != chain_hash(GENESIS_HASH, replace(record, logged_parts=()))


# --- bad input: one line per problem, never a traceback ----------------------------------------


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_bad_files_give_one_line_each_and_no_traceback(
    trust: Trust, messages: list[LoggedMessage], tmp_path: Path
) -> None:
    good = build_container(messages[0])
    files = files_of(good)
    typed = asice_build._record_json({**__import__("json").loads(files[RECORD]), "prev_hash": 5})
    wrong_type = rezip(with_manifest_rebuilt({**files, RECORD: typed}))
    directory = tmp_path / "in"
    directory.mkdir()
    (directory / "a-corrupt.asice").write_bytes(b"PK\x03\x04 this is not a zip")
    (directory / "b-truncated.asice").write_bytes(good[: len(good) // 2])
    (directory / "c-wrong-type.asice").write_bytes(wrong_type)
    (directory / "d-good.asice").write_bytes(good)
    result = run(
        "verify",
        str(directory),
        "--ca",
        str(trust.ca_pem),
        "--tsa-cert",
        str(trust.tsa_pem),
        UNSIGNED_OK,
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    problems = result.stderr.splitlines()
    assert [line.split(":", 2)[1].strip() for line in problems] == [
        "a-corrupt.asice",
        "b-truncated.asice",
        "c-wrong-type.asice",
    ]
    assert "prev_hash must be 64 lower-case hex digits" in problems[2]
    assert "d-good.asice: valid" in result.stdout


# --- many containers: chain links -----------------------------------------------------------


@pytest.fixture
def exported(messages: list[LoggedMessage], tmp_path: Path) -> Path:
    directory = tmp_path / "exported"
    directory.mkdir()
    for seq, message in reversed(list(enumerate(messages, start=1))):  # written out of order
        (directory / f"{seq:012d}-{message.record_hash.hex()[:16]}.asice").write_bytes(
            build_container(message)
        )
    return directory


UNSIGNED_OK: Final = "--allow-unsigned-records"
"""The sample containers carry no record signature (messagelog.logsig): what these tests leave aside."""


def test_a_directory_of_containers_links_into_one_run(trust: Trust, exported: Path) -> None:
    options = ["--ca", str(trust.ca_pem), "--tsa-cert", str(trust.tsa_pem), UNSIGNED_OK]
    result = run("verify", str(exported), *options)
    assert result.exit_code == 0, result.output
    assert "chain links: 5 valid containers in 1 runs" in result.stdout
    assert "run 1: DEV/GOV/1001/ss1, 5 containers" in result.stdout
    assert "(from the chain's first record)" in result.stdout


def test_a_missing_container_in_the_middle_is_a_gap(trust: Trust, exported: Path) -> None:
    middle = sorted(exported.iterdir())[2]
    middle.unlink()
    options = ["--ca", str(trust.ca_pem), "--tsa-cert", str(trust.tsa_pem), UNSIGNED_OK]
    result = run("verify", str(exported), *options)
    assert result.exit_code == 1
    assert "in 2 runs" in result.stdout
    assert "gap: " in result.stdout
    assert "problem: gap before 000000000004-" in result.stderr
    assert run("verify", str(exported), "--allow-gaps", *options).exit_code == 0


def test_links_find_forks_and_duplicates() -> None:
    def member(name: str, prev: bytes, own: bytes) -> ChainMember:
        return ChainMember(name, "G", name, prev, own)

    a, b, c = (bytes([n]) * 32 for n in (1, 2, 3))
    links = link(
        [
            member("1", GENESIS_HASH, a),
            member("2", a, b),
            member("2x", a, c),
            member("1again", GENESIS_HASH, a),
        ]
    )
    assert links.forks == (f"2 and 2x both follow record {a.hex()}",)
    assert links.duplicates == ("1again is the same record as 1",)
    assert not links.linked


# --- the live log -------------------------------------------------------------------------------


@pytest.fixture
def sample(tmp_path: Path) -> Iterator[logsamples.SampleLog]:
    log = asyncio.run(logsamples.build_log(tmp_path / "log"))
    yield log
    log.engine.dispose()


def verify_sample(log: logsamples.SampleLog) -> object:
    return verify_log(
        log.engine,
        logsamples.GATEWAY,
        logsamples.NODE,
        trusted_cas=[log.trust.ca],
        verify_token=log.trust.verify_token(),
    )


def edit(log: logsamples.SampleLog, seq: int, **values: object) -> None:
    with log.engine.begin() as connection:
        connection.execute(sa.update(tables.records).where(tables.records.c.seq == seq).values(**values))


def test_the_live_log_refuses_a_stripped_body_or_rest_head(sample: logsamples.SampleLog) -> None:
    report = verify_sample(sample)
    assert report.ok and report.legacy_records == 0  # type: ignore[attr-defined]
    edit(sample, 1, message=None)  # the body of soap-1's request, removed
    bad = verify_sample(sample).first_bad  # type: ignore[attr-defined]
    assert (bad.seq, bad.problem) == (1, Problem.INCOMPLETE)
    assert "message was logged, but it is not there" in bad.reason


def test_the_live_log_refuses_a_stripped_rest_head(sample: logsamples.SampleLog) -> None:
    edit(sample, 2, rest_head=None)
    bad = verify_sample(sample).first_bad  # type: ignore[attr-defined]
    assert (bad.seq, bad.problem) == (2, Problem.INCOMPLETE)
    assert "rest-request was logged" in bad.reason


def test_a_column_of_the_wrong_type_names_its_record(sample: logsamples.SampleLog) -> None:
    with sample.engine.begin() as connection:  # SQLite keeps whatever type is written
        connection.exec_driver_sql("UPDATE messagelog_records SET manifest = 'not bytes' WHERE seq = 3")
    bad = verify_sample(sample).first_bad  # type: ignore[attr-defined]
    assert (bad.seq, bad.problem) == (3, Problem.UNREADABLE)
    assert "record 3 of node node-1 cannot be read" in bad.reason
    result = run("--database", sample.url, "verify", *sample.trust_options())
    assert result.exit_code == 1
    assert "INVALID at record 3 (unreadable)" in result.stdout
    assert "Traceback" not in result.output


async def test_a_record_stored_before_logged_parts_verifies_with_a_count(tmp_path: Path) -> None:
    log = await logsamples.build_log(tmp_path / "log")
    try:
        writer = logsamples.MessageLogWriter(log.engine, gateway=logsamples.GATEWAY, node=logsamples.NODE)
        signer = logsamples.BatchSigner(log.trust.signer_key, log.trust.signer_cert)
        exchange = logsamples.ids("old-1", "msg-old-1")
        (record,) = await logsamples.signed(
            signer, [(exchange, Direction.REQUEST, logsamples.soap_request(exchange))]
        )
        await writer.append(replace(record, logged_parts=None))
        await writer.aclose()
        await signer.aclose()
        report = verify_sample(log)
        assert report.ok and report.legacy_records == 1  # type: ignore[attr-defined]
        # Written as before record signatures too (no record signer): accepted as such.
        result = run("--database", log.url, "verify", *log.trust_options(), "--allow-unsigned-records")
        assert result.exit_code == 0, result.output
        assert "1 older than logged_parts" in result.stdout
    finally:
        log.engine.dispose()


def test_the_forged_files_are_also_refused_by_openssl_alone(
    trust: Trust, forged: dict[str, tuple[bytes, str, str]], tmp_path: Path
) -> None:
    """Independent of xgate: openssl says the OCSP response is about another certificate."""
    container, _, _ = forged["ocsp-of-another-certificate"]
    (tmp_path / "ocsp.der").write_bytes(files_of(container)["META-INF/ocsp.der"])
    (tmp_path / "signer.pem").write_bytes(trust.signer_cert.public_bytes(serialization.Encoding.PEM))
    result = subprocess.run(
        ["openssl", "ocsp", "-respin", "ocsp.der", "-issuer", str(trust.ca_pem), "-cert", "signer.pem",
         "-CAfile", str(trust.ca_pem), "-no_nonce"],
        cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert "signer.pem: ERROR: No Status found." in result.stdout + result.stderr, result


_ = dt  # the module's times come from tests.test_asice.NOW


async def append_forged(log: logsamples.SampleLog, *, by_provider: bool, ocsp_of_provider: bool) -> None:
    """A request appended to the live log (and chained properly), signed and attested as told."""
    key, cert = (
        (log.trust.provider_key, log.trust.provider_cert)
        if by_provider
        else (log.trust.signer_key, log.trust.signer_cert)
    )
    signer = logsamples.BatchSigner(key, cert)
    writer = logsamples.MessageLogWriter(log.engine, gateway=logsamples.GATEWAY, node=logsamples.NODE)
    exchange = logsamples.ids("forged-1", "msg-forged-1")
    ocsp = log.trust.ocsp(log.trust.provider_cert if ocsp_of_provider else log.trust.signer_cert)
    try:
        (record,) = await logsamples.signed(
            signer, [(exchange, Direction.REQUEST, logsamples.soap_request(exchange))], ocsp
        )
        await writer.append(record)
    finally:
        await writer.aclose()
        await signer.aclose()


@pytest.mark.parametrize(
    ("by_provider", "ocsp_of_provider", "problem", "evidence"),
    [
        (True, True, Problem.SIGNER, "signed by DEV/COM/2222, but a request must be signed by"),
        (False, True, Problem.STATUS, "the response is about another certificate"),
    ],
)
async def test_the_live_log_checks_who_signed_and_their_status(
    tmp_path: Path, by_provider: bool, ocsp_of_provider: bool, problem: Problem, evidence: str
) -> None:
    log = await logsamples.build_log(tmp_path / "log")
    try:
        await append_forged(log, by_provider=by_provider, ocsp_of_provider=ocsp_of_provider)
        bad = verify_sample(log).first_bad  # type: ignore[attr-defined]
        assert (bad.seq, bad.problem) == (10, problem)
        assert evidence in bad.reason
        result = run("--database", log.url, "verify", *log.trust_options())
        assert result.exit_code == 1
        assert f"INVALID at record 10 ({problem.value})" in result.stdout
    finally:
        log.engine.dispose()


def test_whose_signature_a_record_expects() -> None:
    from gateway.messagelog.evidence import EvidenceError, expected_signer

    service = "DEV/COM/2222/crm/getPerson/v1"
    assert expected_signer("request", "DEV/GOV/1001/reg", service).to_text() == "DEV/GOV/1001"
    assert expected_signer("response", "DEV/GOV/1001/reg", service).to_text() == "DEV/COM/2222"
    for direction, client in (("sideways", "DEV/GOV/1001/reg"), ("request", ""), ("request", "no/such")):
        with pytest.raises(EvidenceError):
            expected_signer(direction, client, service)


def test_a_responder_the_global_configuration_lists_is_pinned(trust: Trust) -> None:
    """Listed responder certificates are the only delegates accepted; listed by URL, any the CA made."""
    from gateway.globalconf import GlobalConf, TrustedCa
    from gateway.globalconf.model import OcspResponder as ListedResponder
    from gateway.messagelog.asice import verify_container
    from gateway.messagelog.evidence import status_policy
    from gateway.trust.ocsp_responder import OcspResponder
    from gateway.trust.pki import OcspResponderProfile, RevocationStatus

    def delegate(name: str) -> tuple[object, object]:
        key = generate_key(KeyAlgorithm.EC)
        return key, issue_certificate(trust.ca, OcspResponderProfile(name), key.public_key(), NOW)

    (key, cert), (_, other_cert) = delegate("responder"), delegate("another responder")
    responder = OcspResponder(
        key,  # type: ignore[arg-type]
        cert,  # type: ignore[arg-type]
        trust.ca.certificate,
        lambda _serial: RevocationStatus(OCSPCertStatus.GOOD),
    )
    from gateway.crypto.ocsp import build_ocsp_request

    ocsp = responder.respond(
        build_ocsp_request(trust.signer_cert, trust.ca.certificate), NOW - dt.timedelta(minutes=1)
    )
    container = stamped(trust, soap_request_record(trust, ocsp_response=ocsp))

    def verdict(*listed: ListedResponder) -> list[str]:
        ca_pem = trust.ca.certificate.public_bytes(serialization.Encoding.PEM).decode()
        conf = GlobalConf(
            instance="DEV",
            version=1,
            generated_at=NOW,
            expires_at=NOW + dt.timedelta(days=1),
            trusted_cas=(TrustedCa("test CA", ca_pem, listed),),
        )
        report = verify_container(
            container,
            trusted_cas=[trust.ca.certificate],
            trusted_tsa_certs=[trust.tsa_cert],
            status_policy=status_policy(conf),
        )
        return list(report.problems)

    def pem(certificate: object) -> str:
        return certificate.public_bytes(serialization.Encoding.PEM).decode()  # type: ignore[attr-defined]

    assert verdict(ListedResponder("http://127.0.0.1:9/ocsp")) == []
    assert verdict(ListedResponder("http://127.0.0.1:9/ocsp", pem(cert))) == []
    (problem,) = verdict(ListedResponder("http://127.0.0.1:9/ocsp", pem(other_cert)))
    assert problem == (
        "certificate status: the OCSP response is signed by a responder the configuration does not list"
    )
    # A CA the configuration lists without any responder needs no status; one that has, does.
    assert verdict() == []


def test_a_gateways_own_fault_may_be_signed_by_a_listed_server_owner() -> None:
    """A provider gateway that holds no key of the provider signs its fault with its owner's."""
    now = dt.datetime.now(dt.UTC)
    ca_key = generate_key()
    ca = CertificateAuthority(build_ca_certificate(ca_key, "Owners' CA", now), ca_key, CaSettings())
    owner = ClientId.from_text("DEV/GOV/1003")
    owner_cert = issue_certificate(ca, MemberSigningProfile(owner), generate_key().public_key(), now)
    client, service = "DEV/GOV/1001/consumer", "DEV/COM/2001/provider/getPerson"

    said = check_signer(owner_cert, "response", client, service, fault=True, server_owners=frozenset({owner}))
    assert "owner of a security server" in said
    with pytest.raises(EvidenceError, match="must be signed by the provider's member DEV/COM/2001"):
        check_signer(owner_cert, "response", client, service, fault=True)  # not a listed owner
    with pytest.raises(EvidenceError, match="must be signed by the provider's member"):
        check_signer(owner_cert, "response", client, service, server_owners=frozenset({owner}))  # no fault
    with pytest.raises(EvidenceError, match="must be signed by the client's member"):
        check_signer(owner_cert, "request", client, service, fault=True, server_owners=frozenset({owner}))


def test_an_answer_from_the_cache_keeps_the_originals_ids_but_not_another_service() -> None:
    """A cached answer is the original exchange's signed answer: its id (and, shared, its client)
    are the original's; the service must still be the record's."""
    original = logsamples.ids("ex-1", "msg-original")
    answer = logsamples.soap_response(original)
    common = {"kind": "soap", "direction": "response", "content_type": answer.content_type}
    now = {
        "client": logsamples.OTHER_CLIENT,
        "message_id": "msg-now",
        "message": answer.body,
        "rest_head": None,
    }

    said = check_header_ids(**common, **now, outcome="cache.hit", service=logsamples.SERVICE)
    assert "served from the interface cache" in said
    with pytest.raises(EvidenceError, match="the signed message's client is"):
        check_header_ids(**common, **now, outcome="ok", service=logsamples.SERVICE)
    with pytest.raises(EvidenceError, match="service"):
        check_header_ids(**common, **now, outcome="cache.stale", service=logsamples.REST_SERVICE)
