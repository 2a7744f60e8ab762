"""docs/verification.md's hand check, run exactly as written, on real containers.

The script between the `verify-container` markers is extracted from the page and run with
bash in a directory holding `container.asice`, `ca.pem` and `tsa.pem`: what passes here is
what a security officer will see pass, and one changed byte of the message, the signature or
the token must make it fail.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest

from gateway.crypto.hashtree import build_tree
from gateway.messagelog import asice
from gateway.messagelog.asice import (
    MANIFEST_TXT,
    MESSAGE_XML,
    RECORD,
    SIGNATURE,
    TIMESTAMP,
    LoggedMessage,
    build_container,
)
from gateway.messagelog.asice import build as asice_build
from gateway.messagelog.asice.layout import LOG_SIGNATURE, LOG_SIGNATURE_PROOF
from gateway.messagelog.logsig import RecordSigner
from tests import test_asice as asice_tests
from tests.test_asice import (
    Trust,
    files_of,
    flip_signature_byte,
    openssl_timestamp,
    raw_zip,
    rezip,
    tampered,
    with_manifest_rebuilt,
)
from tests.test_log_evidence import forgeries

DOC = Path(__file__).resolve().parent.parent / "docs" / "verification.md"


def doc_script(marker: str) -> str:
    """The bash block between `<!-- MARKER:begin -->` and `<!-- MARKER:end -->`."""
    text = DOC.read_text()
    block = text.split(f"<!-- {marker}:begin -->")[1].split(f"<!-- {marker}:end -->")[0]
    match = re.fullmatch(r"\s*```bash\n(.*)```\s*", block, re.DOTALL)
    assert match is not None, f"the {marker} block must be exactly one bash code block"
    return match.group(1)


def run_hand_check(directory: Path, container: bytes, trust: Trust) -> subprocess.CompletedProcess[str]:
    directory.mkdir(parents=True)
    (directory / "container.asice").write_bytes(container)
    (directory / "ca.pem").write_bytes(trust.ca_pem.read_bytes())
    (directory / "tsa.pem").write_bytes(trust.tsa_pem.read_bytes())
    return run_doc_block("verify-container", directory)


# test_asice's module fixtures: the CA and TSA, logged messages of each kind, one container.
trust = asice_tests.trust
messages = asice_tests.messages
container = asice_tests.container


def test_the_documented_steps_pass_on_a_real_container(
    trust: Trust, container: bytes, messages: list[LoggedMessage], tmp_path: Path
) -> None:
    result = run_hand_check(tmp_path / "officer", container, trust)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "message.xml: OK" in output  # step 2 and step 3
    leaf = hashlib.sha256(messages[0].record.manifest).hexdigest()
    assert f"the proof leads from the manifest ({leaf})" in output
    assert re.search(r"^OK$", result.stderr, re.MULTILINE)  # xmlsec1
    assert "subject=CN = 1001" in output
    assert f"record hash: {messages[0].record_hash.hex()}" in output
    assert "Verification: OK" in output  # openssl ts
    assert "Time stamp:" in output
    assert "subject=CN = xgate development TSA" in output
    assert "logged parts present: message" in output  # step 8
    assert "signed by DEV/GOV/1001, the client's member" in output  # step 9
    assert "the SOAP header's client, service and id are the record's" in output
    assert "signer's certificate good at" in output  # step 10
    assert result.stdout.rstrip().endswith("container verified")
    # The independent checks agree with the code's.
    assert trust.verify(container).valid


def test_the_steps_pass_on_every_kind_of_container(
    trust: Trust, messages: list[LoggedMessage], tmp_path: Path
) -> None:
    for number, message in enumerate(
        messages[:4]
    ):  # an unsigned fault skips steps 4-5 by hand (the doc says)
        result = run_hand_check(tmp_path / str(number), build_container(message), trust)
        assert result.returncode == 0, (number, result.stdout + result.stderr)
        assert result.stdout.rstrip().endswith("container verified")
    response = run_hand_check(tmp_path / "response", build_container(messages[3]), trust).stdout
    assert "signed by DEV/COM/2222, the provider's member" in response


@pytest.fixture(scope="module")
def forged(
    trust: Trust, messages: list[LoggedMessage], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[bytes, str, str]]:
    return forgeries(trust, messages, tmp_path_factory.mktemp("forged"))


HAND_CHECK_SAYS = {
    "resigned": "signed by DEV/COM/2222, but a request must be signed by DEV/GOV/1001",
    "other-identifiers": "the signed id is 'm0', the record's 'm-other'",
    "stripped-body": "the record says message was logged, but it is NOT here",
    "stripped-rest-head": "the record says rest-request was logged, but it is NOT here",
    "ocsp-of-another-certificate": "is NOT a verified 'good' answer",
    "ocsp-revoked": "is NOT a verified 'good' answer",
    "no-ocsp": "no OCSP response for the signer is attached",
    "token-from-another-tsa": "Verification: FAILED",
}


@pytest.mark.parametrize("name", sorted(HAND_CHECK_SAYS))
def test_each_forged_container_fails_the_documented_steps(
    trust: Trust, forged: dict[str, tuple[bytes, str, str]], name: str, tmp_path: Path
) -> None:
    """The forgeries tests/test_log_evidence.py shows `xgate log verify` refusing fail by hand too."""
    container, _, _ = forged[name]
    assert not trust.verify(container).valid
    assert_fails(run_hand_check(tmp_path / name, container, trust), HAND_CHECK_SAYS[name])


def test_the_steps_check_a_rest_head_and_a_container_without_body(
    trust: Trust, messages: list[LoggedMessage], tmp_path: Path
) -> None:
    rest = run_hand_check(tmp_path / "rest", build_container(messages[1]), trust)
    assert rest.returncode == 0, rest.stdout + rest.stderr
    assert "c/rest-request.json: OK" in rest.stdout
    assert "c/message.bin: OK" in rest.stdout
    bodiless = run_hand_check(tmp_path / "bodiless", build_container(messages[3]), trust)
    assert bodiless.returncode == 0, bodiless.stdout + bodiless.stderr
    assert "message: not in the container (body logging off)" in bodiless.stdout


def assert_fails(result: subprocess.CompletedProcess[str], *evidence: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "container verified" not in output
    for text in evidence:
        assert text in output, output


def test_one_changed_byte_of_the_message_fails(trust: Trust, container: bytes, tmp_path: Path) -> None:
    def change(data: bytes) -> bytes:
        assert b"<id>7" in data
        return data.replace(b"<id>7", b"<id>8")

    naive = tampered(container, MESSAGE_XML, change, rebuild=False)
    assert_fails(run_hand_check(tmp_path / "naive", naive, trust), "message.xml: FAILED")
    careful = tampered(container, MESSAGE_XML, change)  # manifest.xml recomputed
    assert_fails(run_hand_check(tmp_path / "careful", careful, trust), "c/message.xml: FAILED")


def test_a_changed_message_with_its_manifest_line_fails_the_proof(
    trust: Trust, container: bytes, tmp_path: Path
) -> None:
    files = files_of(container)
    old = hashlib.sha256(files[MESSAGE_XML]).hexdigest().encode()
    files[MESSAGE_XML] = files[MESSAGE_XML].replace(b"<id>7", b"<id>8")
    files[MANIFEST_TXT] = files[MANIFEST_TXT].replace(
        old, hashlib.sha256(files[MESSAGE_XML]).hexdigest().encode()
    )
    result = run_hand_check(tmp_path / "o", rezip(with_manifest_rebuilt(files)), trust)
    assert_fails(result, "the proof starts at")


def test_one_changed_byte_of_the_signature_fails(trust: Trust, container: bytes, tmp_path: Path) -> None:
    def change(data: bytes) -> bytes:
        return flip_signature_byte(data, 0)

    naive = tampered(container, SIGNATURE, change, rebuild=False)
    assert_fails(run_hand_check(tmp_path / "naive", naive, trust), "META-INF/signatures0.xml: FAILED")
    careful = tampered(container, SIGNATURE, change)
    result = run_hand_check(tmp_path / "careful", careful, trust)
    assert_fails(result, 'Error: failed to verify file "c/META-INF/signatures0.xml"')  # xmlsec1, step 5
    assert not trust.verify(careful).valid


def test_a_changed_record_fails(trust: Trust, container: bytes, tmp_path: Path) -> None:
    files = files_of(container)
    document = json.loads(files[RECORD])
    document["content"]["user_id"] = "EE00000000000"
    files[RECORD] = asice_build._record_json(document)
    result = run_hand_check(tmp_path / "o", rezip(with_manifest_rebuilt(files)), trust)
    assert_fails(result, "content_digest does NOT match")


def test_a_token_over_another_root_fails(trust: Trust, container: bytes, tmp_path: Path) -> None:
    other = asice.timestamp_response(openssl_timestamp(trust, hashlib.sha256(b"another batch").digest()))
    result = run_hand_check(tmp_path / "o", tampered(container, TIMESTAMP, lambda _: other), trust)
    assert_fails(result, "Verification: FAILED", "message imprint mismatch")


def test_a_zip_slip_container_is_refused_before_anything_is_unpacked(
    trust: Trust, container: bytes, tmp_path: Path
) -> None:
    hostile = raw_zip([*files_of(container).items(), ("../escaped.txt", b"owned")])
    result = run_hand_check(tmp_path / "officer", hostile, trust)
    assert_fails(result, "../escaped.txt", "unexpected names above: refuse the container")
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "officer" / "c").exists()


# --- "Log record signatures and heads": the record signature and a signed head, by hand ---------


def _owner_signer(trust: Trust, member: str = "DEV/GOV/1001") -> RecordSigner:
    from gateway.crypto.keys import KeyAlgorithm, generate_key
    from gateway.ids import ClientId
    from gateway.trust.pki import MemberSigningProfile, issue_certificate
    from tests.test_asice import NOW

    key = generate_key(KeyAlgorithm.EC)
    cert = issue_certificate(
        trust.ca, MemberSigningProfile(ClientId.from_text(member)), key.public_key(), NOW
    )
    return RecordSigner(key, cert)


def _record_signed(message: LoggedMessage, signer: RecordSigner) -> LoggedMessage:
    """The message as the log writer stores it now: its record hash signed in a batch of one."""
    signed_root, proofs = signer.sign([message.record_hash])
    return dataclasses.replace(message, log_signature=signed_root, log_signature_proof=proofs[0])


def run_doc_block(marker: str, directory: Path) -> subprocess.CompletedProcess[str]:
    """The documented bash block `marker`, run in `directory` as a reader would run it."""
    return subprocess.run(
        ["bash", "-c", doc_script(marker)],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def run_links_check(directory: Path) -> subprocess.CompletedProcess[str]:
    return run_doc_block("verify-chain-links", directory)


def test_the_documented_chain_links_step_finds_a_gap(messages: list[LoggedMessage], tmp_path: Path) -> None:
    for seq, message in enumerate(messages, start=1):  # names that do not sort in chain order
        (tmp_path / f"{message.record_hash.hex()[:8]}-{seq}.asice").write_bytes(build_container(message))
    result = run_links_check(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "run 1: DEV/GOV/1001/ss1: 5 containers" in result.stdout
    assert "after the chain's first record" in result.stdout
    assert result.stdout.rstrip().endswith("chain links OK")
    next(tmp_path.glob(f"{messages[2].record_hash.hex()[:8]}-3.asice")).unlink()
    gap = run_links_check(tmp_path)
    assert gap.returncode != 0
    assert "1 gaps, 0 forks" in gap.stderr
    assert "run 2:" in gap.stdout


def run_record_signature_check(
    directory: Path, container: bytes, trust: Trust
) -> subprocess.CompletedProcess[str]:
    """The hand check, then the record-signature step in the same directory, as the page says."""
    first = run_hand_check(directory, container, trust)
    if first.returncode != 0:
        return first
    return run_doc_block("verify-record-signature", directory)


def test_the_record_signature_step_passes_on_a_signed_record(
    trust: Trust, messages: list[LoggedMessage], tmp_path: Path
) -> None:
    container = build_container(_record_signed(messages[0], _owner_signer(trust)))
    result = run_record_signature_check(tmp_path / "o", container, trust)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"record {messages[0].record_hash.hex()} signed by its gateway's owner" in output
    assert trust.verify(container, require_record_signature=True).valid


def test_a_rewritten_and_restamped_record_fails_the_record_signature(
    trust: Trust, messages: list[LoggedMessage], tmp_path: Path
) -> None:
    """Hole 2: record.json rewritten, its hashes recomputed and a fresh token got from a TSA: the
    container's own steps 1-10 pass, the record signature (step 11, and the code) does not."""
    original = _record_signed(messages[0], _owner_signer(trust))
    forged_record = dataclasses.replace(original.record, user_id="EE00000000000")
    rewritten = LoggedMessage(forged_record, original.prev_hash)
    new_hash = rewritten.record_hash
    token = openssl_timestamp(trust, build_tree([new_hash])[0])
    restamped = build_container(dataclasses.replace(rewritten, timestamp_token=token, timestamp_proof=()))
    files = files_of(restamped)
    old = files_of(build_container(original))
    files[LOG_SIGNATURE], files[LOG_SIGNATURE_PROOF] = old[LOG_SIGNATURE], old[LOG_SIGNATURE_PROOF]
    forged = rezip(with_manifest_rebuilt(files))
    report = trust.verify(forged, require_record_signature=True)
    assert not report.valid
    assert [p for p in report.problems if p.startswith("record signature")], report.problems
    assert run_hand_check(tmp_path / "steps", forged, trust).returncode == 0, "steps 1-10 alone pass"
    result = run_doc_block("verify-record-signature", tmp_path / "steps")
    assert result.returncode != 0
    assert "the proof starts at" in result.stdout + result.stderr
    # Stripped of its record signature: refused too.
    del files[LOG_SIGNATURE], files[LOG_SIGNATURE_PROOF]
    stripped = rezip(with_manifest_rebuilt(files))
    assert not trust.verify(stripped, require_record_signature=True).valid
    result = run_record_signature_check(tmp_path / "stripped", stripped, trust)
    assert result.returncode != 0 and "not signed by its gateway" in result.stdout


def test_a_record_signed_by_another_member_fails(
    trust: Trust, messages: list[LoggedMessage], tmp_path: Path
) -> None:
    container = build_container(_record_signed(messages[0], _owner_signer(trust, "DEV/COM/2222")))
    result = run_record_signature_check(tmp_path / "o", container, trust)
    assert result.returncode != 0
    assert "not by the gateway's owner DEV/GOV/1001" in result.stdout
    report = trust.verify(container, require_record_signature=True)
    assert [p for p in report.problems if "not signed by the owner" in p], report.problems


def _head_line(trust: Trust, signer: RecordSigner, seq: int = 42) -> str:
    from gateway.messagelog.heads import LogHead, sign_head
    from tests.test_asice import GATEWAY, NOW

    head = LogHead(GATEWAY, "node-1", seq, bytes(range(32)), NOW, audit_hash=bytes(32))
    return sign_head(head, signer.root_signer, openssl_timestamp(trust, head.digest())).to_line()


def run_head_check(directory: Path, line: str, trust: Trust) -> subprocess.CompletedProcess[str]:
    directory.mkdir(parents=True)
    (directory / "head.json").write_text(line + "\n")
    (directory / "ca.pem").write_bytes(trust.ca_pem.read_bytes())
    return run_doc_block("verify-log-head", directory)


def test_the_head_steps_pass_on_a_signed_head_and_refuse_forgeries(trust: Trust, tmp_path: Path) -> None:
    owner = _owner_signer(trust)
    line = _head_line(trust, owner)
    result = run_head_check(tmp_path / "ok", line, trust)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "seq 42" in result.stdout and result.stdout.rstrip().endswith("head verified")
    assert "Verification: OK" in result.stdout

    lowered = line.replace('"seq":42', '"seq":7')  # a lower head, to hide a cut
    result = run_head_check(tmp_path / "lowered", lowered, trust)
    assert result.returncode != 0 and "ANOTHER head" in result.stdout
    other = _head_line(trust, _owner_signer(trust, "DEV/COM/2222"))
    result = run_head_check(tmp_path / "other", other, trust)
    assert result.returncode != 0 and "not by the gateway's owner" in result.stdout
