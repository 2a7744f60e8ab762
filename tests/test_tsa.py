"""RFC 3161: our TSA against openssl and rfc3161-client, and our verifier against tampering.

Independent implementations on both sides: openssl and rfc3161-client verify tokens our TSA
made; our verifier accepts tokens `openssl ts -reply` made and refuses everything that
should not pass.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import rfc3161_client
from asn1crypto import cms, tsp
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.crypto.keys import KeyAlgorithm, PrivateKey, generate_key, load_private_key
from gateway.crypto.timestamp import (
    TimestampError,
    TimestampProblem,
    TimestampRejected,
    build_timestamp_request,
    new_nonce,
    parse_timestamp_response,
    parse_timestamp_token,
    verify_timestamp_token,
)
from gateway.trust import pki
from gateway.trust.tsa import (
    DEFAULT_POLICY_OID,
    TimestampAuthority,
    TokenSigner,
    TsaConfigurationError,
)

NOW = dt.datetime(2026, 11, 27, 12, 0, 0, 654321, tzinfo=dt.UTC)
DATA = b"a batch of message log records\n"
DIGEST = hashlib.sha256(DATA).digest()


def openssl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30, check=False)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@dataclass(frozen=True)
class Tsa:
    directory: Path
    ca: pki.CertificateAuthority
    ca_path: Path
    key: PrivateKey
    key_path: Path
    certificate: x509.Certificate
    certificate_path: Path
    authority: TimestampAuthority


def make_tsa(directory: Path, algorithm: KeyAlgorithm) -> Tsa:
    ca = pki.init_pki(directory, now=NOW - dt.timedelta(days=1))
    issued = pki.issue(directory, ca, pki.TsaProfile(), algorithm=algorithm, now=NOW - dt.timedelta(days=1))
    key = load_private_key(issued.key_path)
    return Tsa(
        directory,
        ca,
        pki.ca_certificate_path(directory),
        key,
        issued.key_path,
        issued.certificate,
        issued.certificate_path,
        TimestampAuthority(key, issued.certificate),
    )


@pytest.fixture(scope="module", params=[KeyAlgorithm.EC, KeyAlgorithm.RSA2048], ids=["ec", "rsa"])
def tsa(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Tsa:
    return make_tsa(tmp_path_factory.mktemp("tsa"), request.param)


@pytest.fixture(scope="module")
def other_tsa(tmp_path_factory: pytest.TempPathFactory) -> Tsa:
    """A TSA of another CA: correct in every way except that nobody here trusts its CA."""
    return make_tsa(tmp_path_factory.mktemp("other-tsa"), KeyAlgorithm.EC)


def stamp(tsa: Tsa, digest: bytes = DIGEST, *, nonce: int = 42, now: dt.datetime = NOW) -> bytes:
    return parse_timestamp_response(tsa.authority.respond(build_timestamp_request(digest, nonce), now)).der


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- interoperability -----------------------------------------------------------------------


def test_openssl_query_is_answered_and_verified_by_openssl(tsa: Tsa, tmp_path: Path) -> None:
    data = write(tmp_path / "data", DATA)
    openssl("ts", "-query", "-data", str(data), "-sha256", "-cert", "-out", str(tmp_path / "q.tsq"))
    reply = tsa.authority.respond((tmp_path / "q.tsq").read_bytes(), NOW)
    write(tmp_path / "r.tsr", reply)

    text = openssl("ts", "-reply", "-in", str(tmp_path / "r.tsr"), "-text").stdout
    assert "Status: Granted." in text
    assert f"Policy OID: {DEFAULT_POLICY_OID}" in text
    assert "Time stamp: Nov 27 12:00:00 2026 GMT" in text
    assert "Accuracy: 0x01 seconds" in text
    # The request's nonce and imprint come back: openssl checks both against the query file.
    verified = openssl(
        "ts", "-verify", "-queryfile", str(tmp_path / "q.tsq"), "-in", str(tmp_path / "r.tsr"),
        "-CAfile", str(tsa.ca_path),
    )  # fmt: skip
    assert "Verification: OK" in verified.stdout


def test_token_without_certificates_verifies_with_openssl_given_the_tsa_cert(
    tsa: Tsa, tmp_path: Path
) -> None:
    data = write(tmp_path / "data", DATA)
    openssl("ts", "-query", "-data", str(data), "-sha256", "-no_nonce", "-out", str(tmp_path / "q.tsq"))
    write(tmp_path / "r.tsr", tsa.authority.respond((tmp_path / "q.tsq").read_bytes(), NOW))
    args = [
        "ts",
        "-verify",
        "-digest",
        DIGEST.hex(),
        "-in",
        str(tmp_path / "r.tsr"),
        "-CAfile",
        str(tsa.ca_path),
    ]
    assert openssl(*args, check=False).returncode != 0  # the signer is not in the token (certReq false)
    assert "Verification: OK" in openssl(*args, "-untrusted", str(tsa.certificate_path)).stdout


def test_openssl_rejects_a_token_for_other_data(tsa: Tsa, tmp_path: Path) -> None:
    write(tmp_path / "r.tsr", tsa.authority.respond(build_timestamp_request(DIGEST, 7), NOW))
    result = openssl(
        "ts", "-verify", "-digest", hashlib.sha256(b"other").hexdigest(), "-in", str(tmp_path / "r.tsr"),
        "-CAfile", str(tsa.ca_path), check=False,
    )  # fmt: skip
    assert result.returncode != 0


def test_rfc3161_client_verifies_our_tokens(tsa: Tsa) -> None:
    request = (
        rfc3161_client.TimestampRequestBuilder()
        .data(DATA)
        .nonce(nonce=True)
        .cert_request(cert_request=True)
        .build()
    )
    response = rfc3161_client.decode_timestamp_response(tsa.authority.respond(request.as_bytes(), NOW))
    assert response.tst_info.nonce == request.nonce
    verifier = (
        rfc3161_client.VerifierBuilder.from_request(request).add_root_certificate(tsa.ca.certificate).build()
    )
    assert verifier.verify_message(response, DATA)

    pinned = rfc3161_client.VerifierBuilder(
        roots=[tsa.ca.certificate], tsa_certificate=tsa.certificate
    ).build()
    without_certificates = rfc3161_client.decode_timestamp_response(
        tsa.authority.respond(build_timestamp_request(DIGEST, 9), NOW)
    )
    assert pinned.verify(without_certificates, DIGEST)
    with pytest.raises(rfc3161_client.VerificationError):
        pinned.verify(without_certificates, hashlib.sha256(b"other").digest())


def test_certificates_set_is_strict_der_even_with_a_chain(tsa: Tsa, tmp_path: Path) -> None:
    """openssl's own TSA emits the SET unsorted, which rfc3161-client refuses; ours sorts it."""
    with_chain = TimestampAuthority(tsa.key, tsa.certificate, chain=(tsa.ca.certificate,))
    query = rfc3161_client.TimestampRequestBuilder().data(DATA).cert_request(cert_request=True).build()
    ours = with_chain.respond(query.as_bytes(), NOW)
    response = rfc3161_client.decode_timestamp_response(ours)
    assert len(response.signed_data.certificates) == 2
    verifier = rfc3161_client.VerifierBuilder(roots=[tsa.ca.certificate]).build()
    assert verifier.verify_message(response, DATA)
    signed_data = tsp.TimeStampResp.load(ours)["time_stamp_token"]["content"]
    encodings = [c.dump() for c in signed_data["certificates"]]
    assert encodings == sorted(encodings)


def openssl_tsa_reply(tsa: Tsa, tmp_path: Path, query: bytes, ess_alg: str) -> bytes:
    config = tmp_path / "ts.cnf"
    write(tmp_path / "serial", b"01\n")
    config.write_text(
        "[ tsa ]\ndefault_tsa = cfg\n[ cfg ]\n"
        f"serial = {tmp_path / 'serial'}\ncrypto_device = builtin\n"
        f"signer_cert = {tsa.certificate_path}\nsigner_key = {tsa.key_path}\ncerts = {tsa.ca_path}\n"
        "signer_digest = sha256\ndefault_policy = 1.2.3.4.1\nother_policies = 1.2.3.4.2\n"
        "digests = sha256\naccuracy = secs:1\nordering = no\ntsa_name = yes\n"
        f"ess_cert_id_chain = no\ness_cert_id_alg = {ess_alg}\n"
    )
    write(tmp_path / "q.tsq", query)
    openssl(
        "ts",
        "-reply",
        "-config",
        str(config),
        "-queryfile",
        str(tmp_path / "q.tsq"),
        "-out",
        str(tmp_path / "o.tsr"),
    )
    return (tmp_path / "o.tsr").read_bytes()


@pytest.mark.parametrize("ess_alg", ["sha1", "sha256"])  # ESS signingCertificate v1 and v2
def test_our_verifier_accepts_tokens_made_by_openssl(tsa: Tsa, tmp_path: Path, ess_alg: str) -> None:
    nonce = new_nonce()
    token = parse_timestamp_response(
        openssl_tsa_reply(tsa, tmp_path, build_timestamp_request(DIGEST, nonce), ess_alg)
    )
    assert token.nonce == nonce
    assert token.policy == "1.2.3.4.1"
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    gen_time = verify_timestamp_token(token.der, DIGEST, [], [tsa.ca.certificate])
    assert before - dt.timedelta(seconds=1) <= gen_time <= dt.datetime.now(dt.UTC)


def test_openssl_understands_our_requests(tmp_path: Path) -> None:
    write(tmp_path / "q.tsq", build_timestamp_request(DIGEST, 0x1234ABCD))
    text = openssl("ts", "-query", "-in", str(tmp_path / "q.tsq"), "-text").stdout
    assert "Hash Algorithm: sha256" in text
    assert "Nonce: 0x1234ABCD" in text
    assert "Certificate required: yes" in text


# --- our verifier ---------------------------------------------------------------------------


def test_verifier_returns_gen_time_and_token_fields(tsa: Tsa) -> None:
    token_der = stamp(tsa, nonce=77)
    assert verify_timestamp_token(token_der, DIGEST, [], [tsa.ca.certificate]) == NOW.replace(microsecond=0)
    token = parse_timestamp_token(token_der)
    assert (token.nonce, token.hash_algorithm, token.hashed_message) == (77, "sha256", DIGEST)
    assert token.policy == DEFAULT_POLICY_OID
    assert stamp(tsa) != stamp(tsa)  # a fresh serial (and signature) each time
    assert parse_timestamp_token(stamp(tsa)).serial_number != parse_timestamp_token(stamp(tsa)).serial_number


def test_verifier_accepts_a_pinned_tsa_without_any_ca(tsa: Tsa) -> None:
    assert verify_timestamp_token(stamp(tsa), DIGEST, [tsa.certificate], []) == NOW.replace(microsecond=0)


def test_verifier_rejects_another_digest(tsa: Tsa) -> None:
    with pytest.raises(TimestampError) as caught:
        verify_timestamp_token(stamp(tsa), hashlib.sha256(b"other").digest(), [], [tsa.ca.certificate])
    assert caught.value.problem is TimestampProblem.WRONG_DIGEST


def _flip(data: bytes, index: int) -> bytes:
    changed = bytearray(data)
    changed[index] ^= 0x01
    return bytes(changed)


def test_verifier_rejects_a_tampered_tst_info(tsa: Tsa) -> None:
    token_der = stamp(tsa, nonce=0x5A5A5A5A5A5A)
    position = token_der.index((0x5A5A5A5A5A5A).to_bytes(6, "big"))
    with pytest.raises(TimestampError) as caught:
        verify_timestamp_token(_flip(token_der, position), DIGEST, [], [tsa.ca.certificate])
    assert caught.value.problem is TimestampProblem.BAD_SIGNATURE


def test_verifier_rejects_a_tampered_signature_or_signed_attribute(tsa: Tsa) -> None:
    token_der = stamp(tsa)
    signer_info = cms.ContentInfo.load(token_der)["content"]["signer_infos"][0]
    signature = signer_info["signature"].native
    message_digest = hashlib.sha256(parse_tst_info_der(token_der)).digest()
    for needle in (signature, message_digest):
        tampered = _flip(token_der, token_der.index(needle) + len(needle) - 1)
        with pytest.raises(TimestampError) as caught:
            verify_timestamp_token(tampered, DIGEST, [], [tsa.ca.certificate])
        assert caught.value.problem is TimestampProblem.BAD_SIGNATURE


def parse_tst_info_der(token_der: bytes) -> bytes:
    return bytes(cms.ContentInfo.load(token_der)["content"]["encap_content_info"]["content"])


def test_verifier_rejects_an_untrusted_tsa(tsa: Tsa, other_tsa: Tsa) -> None:
    token_der = stamp(other_tsa)
    for pinned, cas in (([], [tsa.ca.certificate]), ([tsa.certificate], []), ([], [])):
        with pytest.raises(TimestampError) as caught:
            verify_timestamp_token(token_der, DIGEST, pinned, cas)
        assert caught.value.problem is TimestampProblem.UNTRUSTED
    assert verify_timestamp_token(token_der, DIGEST, [], [other_tsa.ca.certificate])


@dataclass(frozen=True)
class _LaxTsaProfile:
    """A TSA certificate whose timeStamping EKU is not critical, against RFC 3161 §2.3."""

    kind: ClassVar[str] = "tsa"

    def subject(self) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lax TSA")])

    def extensions(self, public_key: object) -> list[tuple[x509.ExtensionType, bool]]:
        return [(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), False)]

    def file_stem(self) -> str:
        return "lax-tsa"


def test_verifier_rejects_a_tsa_certificate_without_the_critical_eku(tsa: Tsa) -> None:
    key = generate_key()
    lax = pki.issue_certificate(tsa.ca, _LaxTsaProfile(), key.public_key(), NOW - dt.timedelta(hours=1))  # type: ignore[arg-type]
    with pytest.raises(TsaConfigurationError):
        TimestampAuthority(key, lax)
    # A TSA that signs anyway: chain, signature and digest are all fine, only the EKU is not.
    request = tsp.TimeStampReq.load(build_timestamp_request(DIGEST, 3))
    tst_info = tsp.TSTInfo(
        {
            "version": "v1",
            "policy": DEFAULT_POLICY_OID,
            "message_imprint": request["message_imprint"],
            "serial_number": 1,
            "gen_time": NOW.replace(microsecond=0),
        }
    )
    token_der = TokenSigner(key, lax, [lax]).sign(tst_info, with_certificates=True)
    for pinned, cas in (([], [tsa.ca.certificate]), ([lax], [])):
        with pytest.raises(TimestampError) as caught:
            verify_timestamp_token(token_der, DIGEST, pinned, cas)
        assert caught.value.problem is TimestampProblem.UNTRUSTED


def test_verifier_rejects_a_token_from_before_the_tsa_certificate(tsa: Tsa) -> None:
    """Certificates are judged at genTime: a stamp dated before the certificate proves nothing."""
    token_der = stamp(tsa, now=NOW - dt.timedelta(days=30))
    with pytest.raises(TimestampError) as caught:
        verify_timestamp_token(token_der, DIGEST, [], [tsa.ca.certificate])
    assert caught.value.problem is TimestampProblem.UNTRUSTED


def test_tsa_refuses_a_key_that_is_not_its_certificates(tsa: Tsa) -> None:
    with pytest.raises(TsaConfigurationError):
        TimestampAuthority(generate_key(), tsa.certificate)


# --- rejections -----------------------------------------------------------------------------


def _rejected(tsa: Tsa, request: bytes) -> TimestampRejected:
    response = tsa.authority.respond(request, NOW)
    with pytest.raises(TimestampRejected) as caught:
        parse_timestamp_response(response)
    assert caught.value.status == "rejection"
    return caught.value


def test_rejections_carry_the_rfc_failure_info(tsa: Tsa, tmp_path: Path) -> None:
    data = write(tmp_path / "data", DATA)
    openssl("ts", "-query", "-data", str(data), "-sha1", "-out", str(tmp_path / "sha1.tsq"))
    assert _rejected(tsa, (tmp_path / "sha1.tsq").read_bytes()).failures == {"bad_alg"}

    openssl(
        "ts", "-query", "-data", str(data), "-sha256", "-tspolicy", "1.2.3.4", "-out", str(tmp_path / "p.tsq")
    )
    assert _rejected(tsa, (tmp_path / "p.tsq").read_bytes()).failures == {"unaccepted_policy"}

    short = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": b"x" * 20},
        }
    )
    assert _rejected(tsa, short.dump()).failures == {"bad_data_format"}

    with_extension = tsp.TimeStampReq.load(build_timestamp_request(DIGEST, 1)).copy()
    with_extension["extensions"] = [{"extn_id": "1.2.3.4", "critical": False, "extn_value": b"\x05\x00"}]
    assert _rejected(tsa, with_extension.dump(force=True)).failures == {"unaccepted_extensions"}

    assert _rejected(tsa, b"\x30\x03\x02\x01").failures == {"bad_data_format"}
    assert _rejected(tsa, b"").failures == {"bad_data_format"}

    # openssl reads our rejection as one.
    write(tmp_path / "r.tsr", tsa.authority.respond((tmp_path / "sha1.tsq").read_bytes(), NOW))
    text = openssl("ts", "-reply", "-in", str(tmp_path / "r.tsr"), "-text").stdout
    assert "Status: Rejected." in text
    assert "unrecognized or unsupported algorithm" in text


def test_build_request_refuses_what_is_not_a_sha256_digest() -> None:
    with pytest.raises(ValueError):
        build_timestamp_request(b"\x00" * 20, 1)


def test_parse_refuses_garbage() -> None:
    for garbage in (b"", b"\x30\x00", b"not DER at all"):
        with pytest.raises(TimestampError) as caught:
            parse_timestamp_response(garbage)
        assert caught.value.problem is TimestampProblem.MALFORMED


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_input_gets_a_well_formed_response(tsa: Tsa, data: st.DataObject) -> None:
    """Random bytes and single-byte corruptions of a valid request: always a TimeStampResp, never a crash."""
    valid = build_timestamp_request(DIGEST, 99)
    if data.draw(st.booleans()):
        request = data.draw(st.binary(max_size=200))
    else:
        position = data.draw(st.integers(0, len(valid) - 1))
        request = valid[:position] + bytes([data.draw(st.integers(0, 255))]) + valid[position + 1 :]
    response = tsa.authority.respond(request, NOW)
    try:
        token = parse_timestamp_response(response)
    except TimestampRejected as rejected:
        assert len(rejected.failures) == 1
    else:
        if token.hash_algorithm == "sha256":
            gen_time = verify_timestamp_token(
                token.der, token.hashed_message, [tsa.certificate], [tsa.ca.certificate]
            )
            assert gen_time == NOW.replace(microsecond=0)
