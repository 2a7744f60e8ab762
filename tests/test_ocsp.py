"""OCSP: our responder checked by `openssl ocsp`, our verifier against every way a response can lie.

Responses are real (cryptography builds them, the development CA's index feeds them) and the
independent judge is openssl; the negative cases are built by hand with cryptography so each
breaks exactly one rule of RFC 6960 §3.2.
"""

from __future__ import annotations

import datetime as dt
import functools
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.ocsp import OCSPCertStatus, OCSPResponderEncoding, OCSPResponseStatus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.crypto.keys import KeyAlgorithm, PrivateKey, load_private_key
from gateway.crypto.ocsp import (
    OcspError,
    OcspProblem,
    build_ocsp_request,
    verify_ocsp_response,
)
from gateway.ids import ClientId
from gateway.trust import pki
from gateway.trust.ocsp_responder import OcspResponder, OcspResponderError


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


NOW = _now()


@pytest.fixture(scope="module", autouse=True)
def _now_when_the_module_runs() -> None:
    """The development CA issues certificates at the real time a fixture runs (valid from five
    minutes before): verify at that time too, not at import, which in a long suite is minutes
    earlier."""
    global NOW
    NOW = _now()


HOUR = 3600
NONCE = b"\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10"


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30, check=False)


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca: pki.CertificateAuthority
    ca_path: Path
    responder_key: PrivateKey
    responder_cert: x509.Certificate

    def issue_member(self, code: str) -> pki.IssuedFiles:
        return pki.issue(self.directory, self.ca, pki.MemberSigningProfile(ClientId("DEV", "GOV", code)))

    def lookup(self, serial: int) -> pki.RevocationStatus:
        return pki.status_of(self.directory, serial)

    def responder(self, delegated: bool, validity: dt.timedelta = dt.timedelta(hours=1)) -> OcspResponder:
        if delegated:
            return OcspResponder(
                self.responder_key, self.responder_cert, self.ca.certificate, self.lookup, validity
            )
        return OcspResponder(self.ca.key, self.ca.certificate, self.ca.certificate, self.lookup, validity)


def make_pki(directory: Path, algorithm: KeyAlgorithm = KeyAlgorithm.EC) -> Pki:
    ca = pki.init_pki(directory, settings=pki.CaSettings(algorithm=algorithm))
    responder = pki.issue(directory, ca, pki.OcspResponderProfile(), algorithm=algorithm)
    return Pki(
        directory,
        ca,
        pki.ca_certificate_path(directory),
        load_private_key(responder.key_path),
        responder.certificate,
    )


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("foreign-pki"))


@pytest.fixture(scope="module")
def member(ours: Pki) -> pki.IssuedFiles:
    return ours.issue_member("1001")


def ask(
    responder: OcspResponder,
    certificate: x509.Certificate,
    issuer: x509.Certificate,
    now: dt.datetime | None = None,
) -> bytes:
    return responder.respond(build_ocsp_request(certificate, issuer, nonce=NONCE), now or NOW)


def openssl_status(pki_: Pki, response: bytes, certificate_path: Path, tmp_path: Path) -> str:
    """What `openssl ocsp` says of a response for the certificate in `certificate_path`."""
    (tmp_path / "resp.der").write_bytes(response)
    result = openssl(
        "ocsp", "-respin", str(tmp_path / "resp.der"), "-issuer", str(pki_.ca_path),
        "-cert", str(certificate_path), "-CAfile", str(pki_.ca_path), "-no_nonce",
    )  # fmt: skip
    assert "Response verify OK" in result.stderr, result.stderr
    return result.stdout


# --- the responder, judged by openssl and by our verifier -----------------------------------


@pytest.mark.parametrize("delegated", [False, True], ids=["ca-signed", "delegated"])
def test_good_revoked_and_unknown(ours: Pki, delegated: bool, tmp_path: Path) -> None:
    responder = ours.responder(delegated)
    issued = ours.issue_member(f"good-{delegated}")
    response = ask(responder, issued.certificate, ours.ca.certificate)
    assert f"{issued.certificate_path}: good" in openssl_status(
        ours, response, issued.certificate_path, tmp_path
    )
    status = verify_ocsp_response(response, issued.certificate, ours.ca.certificate, NOW, HOUR, nonce=NONCE)
    assert status.status is OCSPCertStatus.GOOD and status.is_good
    assert status.this_update == NOW and status.next_update == NOW + dt.timedelta(hours=1)

    revoked_at = NOW - dt.timedelta(minutes=5)
    pki.revoke(
        ours.directory, issued.certificate.serial_number, x509.ReasonFlags.key_compromise, at=revoked_at
    )
    response = ask(responder, issued.certificate, ours.ca.certificate)
    text = openssl_status(ours, response, issued.certificate_path, tmp_path)
    assert f"{issued.certificate_path}: revoked" in text
    assert "Reason: keyCompromise" in text
    status = verify_ocsp_response(response, issued.certificate, ours.ca.certificate, NOW, HOUR)
    assert (status.status, status.revoked_at, status.reason) == (
        OCSPCertStatus.REVOKED,
        revoked_at,
        x509.ReasonFlags.key_compromise,
    )

    # Issued by our CA but never recorded in its index: the CA does not vouch for it.
    stray = pki.issue_certificate(ours.ca, pki.TsaProfile(), ours.responder_key.public_key(), NOW)
    stray_path = tmp_path / "stray.pem"
    stray_path.write_bytes(stray.public_bytes(serialization.Encoding.PEM))
    response = ask(responder, stray, ours.ca.certificate)
    assert f"{stray_path}: unknown" in openssl_status(ours, response, stray_path, tmp_path)
    assert (
        verify_ocsp_response(response, stray, ours.ca.certificate, NOW, HOUR).status is OCSPCertStatus.UNKNOWN
    )


def test_openssl_request_and_nonce_are_answered(ours: Pki, member: pki.IssuedFiles, tmp_path: Path) -> None:
    """openssl builds the request (with its own nonce) and checks the nonce comes back."""
    request, response = tmp_path / "req.der", tmp_path / "resp.der"
    made = openssl(
        "ocsp", "-issuer", str(ours.ca_path), "-cert", str(member.certificate_path), "-reqout", str(request)
    )
    assert made.returncode == 0, made.stderr
    response.write_bytes(ours.responder(delegated=True).respond(request.read_bytes(), NOW))
    result = openssl(
        "ocsp", "-reqin", str(request), "-respin", str(response), "-issuer", str(ours.ca_path),
        "-CAfile", str(ours.ca_path), "-resp_text",
    )  # fmt: skip
    assert "Response verify OK" in result.stderr, result.stderr
    assert "Cert Status: good" in result.stdout
    assert "WARNING" not in result.stdout + result.stderr  # a missing or wrong nonce is warned about


def test_rsa_ca_signed_responses(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    rsa_pki = make_pki(tmp_path_factory.mktemp("rsa-pki"), KeyAlgorithm.RSA2048)
    issued = rsa_pki.issue_member("rsa")
    response = ask(rsa_pki.responder(delegated=False), issued.certificate, rsa_pki.ca.certificate)
    assert ": good" in openssl_status(rsa_pki, response, issued.certificate_path, tmp_path)
    assert verify_ocsp_response(response, issued.certificate, rsa_pki.ca.certificate, NOW, HOUR).is_good


def test_revocation_scheduled_for_later_is_not_yet_in_force(ours: Pki) -> None:
    issued = ours.issue_member("later")
    pki.revoke(ours.directory, issued.certificate.serial_number, at=NOW + dt.timedelta(hours=2))
    response = ask(ours.responder(delegated=True), issued.certificate, ours.ca.certificate)
    assert verify_ocsp_response(response, issued.certificate, ours.ca.certificate, NOW, HOUR).is_good
    later = NOW + dt.timedelta(hours=3)
    response = ask(ours.responder(delegated=True), issued.certificate, ours.ca.certificate, now=later)
    status = verify_ocsp_response(response, issued.certificate, ours.ca.certificate, later, HOUR)
    assert status.status is OCSPCertStatus.REVOKED and status.reason is None  # unspecified is left out


def _response_status(der: bytes) -> OCSPResponseStatus:
    return ocsp.load_der_ocsp_response(der).response_status


def test_malformed_and_foreign_requests(ours: Pki, foreign: Pki, member: pki.IssuedFiles) -> None:
    responder = ours.responder(delegated=True)
    for garbage in (b"", b"\x30\x00", b"no DER here", b"\x30" * 20_000):
        answer = responder.respond(garbage, NOW)
        assert _response_status(answer) is OCSPResponseStatus.MALFORMED_REQUEST
        with pytest.raises(OcspError) as caught:
            verify_ocsp_response(answer, member.certificate, ours.ca.certificate, NOW, HOUR)
        assert caught.value.problem is OcspProblem.UNSUCCESSFUL
    # A certificate of another CA: this responder has no authority to answer (RFC 5019 §2.2.3).
    other = foreign.issue_member("2002")
    answer = responder.respond(build_ocsp_request(other.certificate, foreign.ca.certificate), NOW)
    assert _response_status(answer) is OCSPResponseStatus.UNAUTHORIZED


def test_responder_refuses_a_delegate_the_ca_did_not_make(
    ours: Pki, foreign: Pki, member: pki.IssuedFiles
) -> None:
    with pytest.raises(OcspResponderError):
        OcspResponder(foreign.responder_key, foreign.responder_cert, ours.ca.certificate, ours.lookup)
    member_key = load_private_key(member.key_path)
    with pytest.raises(OcspResponderError):  # issued by the CA, but not for OCSPSigning
        OcspResponder(member_key, member.certificate, ours.ca.certificate, ours.lookup)
    with pytest.raises(OcspResponderError):
        OcspResponder(ours.ca.key, ours.responder_cert, ours.ca.certificate, ours.lookup)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_request_gets_a_response(ours: Pki, member: pki.IssuedFiles, data: st.DataObject) -> None:
    valid = build_ocsp_request(member.certificate, ours.ca.certificate, nonce=NONCE)
    if data.draw(st.booleans()):
        request = data.draw(st.binary(max_size=300))
    else:
        position = data.draw(st.integers(0, len(valid) - 1))
        request = valid[:position] + bytes([data.draw(st.integers(0, 255))]) + valid[position + 1 :]
    answer = ours.responder(delegated=True).respond(request, NOW)
    assert _response_status(answer) in (
        OCSPResponseStatus.SUCCESSFUL,
        OCSPResponseStatus.MALFORMED_REQUEST,
        OCSPResponseStatus.UNAUTHORIZED,
    )


# --- the verifier refuses -------------------------------------------------------------------


def _refused(problem: OcspProblem, verify: Callable[[], object]) -> None:
    with pytest.raises(OcspError) as caught:
        verify()
    assert caught.value.problem is problem, caught.value


def test_stale_and_expired_responses(ours: Pki, member: pki.IssuedFiles) -> None:
    long_lived = ours.responder(delegated=True, validity=dt.timedelta(days=1))
    old = ask(long_lived, member.certificate, ours.ca.certificate, now=NOW - dt.timedelta(hours=2))
    assert verify_ocsp_response(old, member.certificate, ours.ca.certificate, NOW, 3 * HOUR).is_good
    _refused(
        OcspProblem.STALE,
        lambda: verify_ocsp_response(old, member.certificate, ours.ca.certificate, NOW, HOUR),
    )

    short_lived = ours.responder(delegated=True, validity=dt.timedelta(minutes=10))
    expired = ask(short_lived, member.certificate, ours.ca.certificate, now=NOW - dt.timedelta(minutes=20))
    _refused(
        OcspProblem.STALE,
        lambda: verify_ocsp_response(expired, member.certificate, ours.ca.certificate, NOW, HOUR),
    )


def test_response_from_the_future(ours: Pki, member: pki.IssuedFiles) -> None:
    future = ask(
        ours.responder(delegated=True),
        member.certificate,
        ours.ca.certificate,
        now=NOW + dt.timedelta(hours=1),
    )
    _refused(
        OcspProblem.NOT_YET_VALID,
        lambda: verify_ocsp_response(future, member.certificate, ours.ca.certificate, NOW, HOUR),
    )
    slightly_ahead = ask(
        ours.responder(delegated=True),
        member.certificate,
        ours.ca.certificate,
        now=NOW + dt.timedelta(seconds=20),
    )
    assert verify_ocsp_response(slightly_ahead, member.certificate, ours.ca.certificate, NOW, HOUR).is_good


def test_wrong_cert_id(ours: Pki, foreign: Pki, member: pki.IssuedFiles) -> None:
    other_member = ours.issue_member("1002")
    response = ask(ours.responder(delegated=True), member.certificate, ours.ca.certificate)
    _refused(
        OcspProblem.WRONG_CERT_ID,
        lambda: verify_ocsp_response(response, other_member.certificate, ours.ca.certificate, NOW, HOUR),
    )
    _refused(  # same serial and issuer name, but the issuer named is another CA
        OcspProblem.WRONG_CERT_ID,
        lambda: verify_ocsp_response(response, member.certificate, foreign.ca.certificate, NOW, HOUR),
    )


def _hand_made(
    certificate: x509.Certificate,
    issuer: x509.Certificate,
    signer_key: PrivateKey,
    signer_cert: x509.Certificate,
    *,
    embed: bool = True,
    encoding: OCSPResponderEncoding = OCSPResponderEncoding.HASH,
) -> bytes:
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            certificate,
            issuer,
            hashes.SHA1(),  # noqa: S303  (the CertID hash openssl and RFC 5019 use)
            OCSPCertStatus.GOOD,
            NOW,
            NOW + dt.timedelta(hours=1),
            None,
            None,
        )
        .responder_id(encoding, signer_cert)
    )
    if embed:
        builder = builder.certificates([signer_cert])
    return builder.sign(signer_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_wrong_responder(ours: Pki, foreign: Pki, member: pki.IssuedFiles) -> None:
    def verify(response: bytes) -> Callable[[], object]:
        return lambda: verify_ocsp_response(response, member.certificate, ours.ca.certificate, NOW, HOUR)

    # Another CA's delegated responder, and another CA itself, answering about our certificate.
    _refused(
        OcspProblem.UNAUTHORIZED_RESPONDER,
        verify(
            _hand_made(member.certificate, ours.ca.certificate, foreign.responder_key, foreign.responder_cert)
        ),
    )
    _refused(
        OcspProblem.UNAUTHORIZED_RESPONDER,
        verify(_hand_made(member.certificate, ours.ca.certificate, foreign.ca.key, foreign.ca.certificate)),
    )
    # A certificate of our own CA, but not issued for OCSP signing.
    member_key = load_private_key(member.key_path)
    _refused(
        OcspProblem.UNAUTHORIZED_RESPONDER,
        verify(_hand_made(member.certificate, ours.ca.certificate, member_key, member.certificate)),
    )
    # A self-made certificate that copies our CA's name: named like the CA, signed by another key.
    impostor = (
        x509.CertificateBuilder()
        .subject_name(ours.ca.certificate.subject)
        .issuer_name(ours.ca.certificate.subject)
        .public_key(foreign.ca.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(foreign.ca.key, hashes.SHA256())
    )
    name_only = _hand_made(
        member.certificate, ours.ca.certificate, foreign.ca.key, impostor, encoding=OCSPResponderEncoding.NAME
    )
    _refused(OcspProblem.BAD_SIGNATURE, verify(name_only))


def test_delegate_not_embedded_needs_to_be_given(ours: Pki, member: pki.IssuedFiles) -> None:
    bare = _hand_made(
        member.certificate, ours.ca.certificate, ours.responder_key, ours.responder_cert, embed=False
    )
    _refused(
        OcspProblem.UNAUTHORIZED_RESPONDER,
        lambda: verify_ocsp_response(bare, member.certificate, ours.ca.certificate, NOW, HOUR),
    )
    status = verify_ocsp_response(
        bare, member.certificate, ours.ca.certificate, NOW, HOUR, responder_certs=[ours.responder_cert]
    )
    assert status.is_good
    by_name = _hand_made(
        member.certificate, ours.ca.certificate, ours.responder_key, ours.responder_cert,
        encoding=OCSPResponderEncoding.NAME,
    )  # fmt: skip
    assert verify_ocsp_response(by_name, member.certificate, ours.ca.certificate, NOW, HOUR).is_good


def test_bad_signature(ours: Pki, member: pki.IssuedFiles) -> None:
    for delegated in (False, True):
        response = ask(ours.responder(delegated), member.certificate, ours.ca.certificate)
        signature = ocsp.load_der_ocsp_response(response).signature
        position = response.index(signature) + len(signature) - 1
        tampered = response[:position] + bytes([response[position] ^ 0x01]) + response[position + 1 :]
        _refused(
            OcspProblem.BAD_SIGNATURE,
            functools.partial(
                verify_ocsp_response, tampered, member.certificate, ours.ca.certificate, NOW, HOUR
            ),
        )


def test_nonce_must_match_when_sent(ours: Pki, member: pki.IssuedFiles) -> None:
    responder = ours.responder(delegated=True)
    response = ask(responder, member.certificate, ours.ca.certificate)
    _refused(
        OcspProblem.NONCE_MISMATCH,
        lambda: verify_ocsp_response(
            response, member.certificate, ours.ca.certificate, NOW, HOUR, nonce=b"other nonce 1234"
        ),
    )
    without = responder.respond(build_ocsp_request(member.certificate, ours.ca.certificate), NOW)
    assert verify_ocsp_response(without, member.certificate, ours.ca.certificate, NOW, HOUR).is_good
    _refused(
        OcspProblem.NONCE_MISMATCH,
        lambda: verify_ocsp_response(
            without, member.certificate, ours.ca.certificate, NOW, HOUR, nonce=NONCE
        ),
    )


def test_garbage_is_malformed(ours: Pki, member: pki.IssuedFiles) -> None:
    for garbage in (b"", b"\x30\x03\x0a\x01\x00", b"not an OCSP response"):
        _refused(
            OcspProblem.MALFORMED,
            functools.partial(
                verify_ocsp_response, garbage, member.certificate, ours.ca.certificate, NOW, HOUR
            ),
        )


@pytest.fixture(scope="module")
def good_response(ours: Pki, member: pki.IssuedFiles) -> bytes:
    return ask(ours.responder(delegated=True), member.certificate, ours.ca.certificate)


@settings(max_examples=200, deadline=None)
@given(position=st.integers(min_value=0), value=st.integers(0, 255))
def test_no_single_byte_change_passes_unnoticed(
    ours: Pki, member: pki.IssuedFiles, good_response: bytes, position: int, value: int
) -> None:
    """Any change to a response either fails verification or leaves what it says unchanged."""
    position %= len(good_response)
    changed = good_response[:position] + bytes([value]) + good_response[position + 1 :]
    try:
        status = verify_ocsp_response(
            changed, member.certificate, ours.ca.certificate, NOW, HOUR, nonce=NONCE
        )
    except OcspError:
        return
    assert status == verify_ocsp_response(good_response, member.certificate, ours.ca.certificate, NOW, HOUR)
