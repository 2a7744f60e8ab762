"""The development PKI: keys, certificate profiles, chain checks, identities, revocation, CLI.

Certificates are real and are checked against openssl as the independent implementation.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.ocsp import OCSPCertStatus
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.cli import main
from gateway.crypto.certs import (
    CertificateError,
    CertificateProblem,
    fingerprint_sha256,
    identifiers_of,
    load_certificate,
    load_certificate_file,
    serial_hex,
    verify_chain,
)
from gateway.crypto.keys import (
    KeyAlgorithm,
    KeyFileError,
    PassphraseRequired,
    WrongPassphrase,
    create_csr,
    generate_key,
    load_private_key,
    save_private_key,
)
from gateway.ids import ClientId, SecurityServerId
from gateway.trust import pki

SERVER = SecurityServerId("DEV", "GOV", "1001", "gw-a")
MEMBER = ClientId("DEV", "GOV", "1001")
OCSP_URL = "http://127.0.0.1:8899/ocsp"
NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module", autouse=True)
def _now_when_the_module_runs() -> None:
    """The development CA issues certificates at the real time a fixture runs (valid from five
    minutes before): verify at that time too, not at import, which in a long suite is minutes
    earlier."""
    global NOW
    NOW = dt.datetime.now(dt.UTC)


def openssl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *args], capture_output=True, text=True, timeout=30, check=False, env=env
    )


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


_E = TypeVar("_E", bound=x509.ExtensionType)


def ext(certificate: x509.Certificate, kind: type[_E]) -> x509.Extension[_E]:
    return certificate.extensions.get_extension_for_class(kind)


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    pki.init_pki(directory, settings=pki.CaSettings(ocsp_url=OCSP_URL))
    return directory


@pytest.fixture(scope="module")
def ca(pki_dir: Path) -> pki.CertificateAuthority:
    return pki.load_ca(pki_dir)


@pytest.fixture(scope="module")
def issued(pki_dir: Path, ca: pki.CertificateAuthority) -> dict[str, pki.IssuedFiles]:
    """One certificate of each kind, issued through the file-writing path."""
    return {
        "gateway": pki.issue(pki_dir, ca, pki.GatewayProfile(SERVER, dns_names=("localhost", "gw-a.test"))),
        "gateway-rsa": pki.issue(
            pki_dir,
            ca,
            pki.GatewayProfile(SERVER),
            algorithm=KeyAlgorithm.RSA2048,
            out_prefix=pki_dir / "rsa-gw",
        ),
        "member": pki.issue(pki_dir, ca, pki.MemberSigningProfile(MEMBER, name="Agency 1001")),
        "tsa": pki.issue(pki_dir, ca, pki.TsaProfile()),
        "ocsp": pki.issue(pki_dir, ca, pki.OcspResponderProfile()),
    }


# --- keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "kind", "size"),
    [
        (KeyAlgorithm.EC, ec.EllipticCurvePrivateKey, 256),
        (KeyAlgorithm.RSA2048, rsa.RSAPrivateKey, 2048),
        (KeyAlgorithm.RSA3072, rsa.RSAPrivateKey, 3072),
    ],
)
def test_generate_key_gives_the_requested_type_and_size(
    algorithm: KeyAlgorithm, kind: type, size: int, tmp_path: Path
) -> None:
    key = generate_key(algorithm)
    assert isinstance(key, kind)
    assert key.key_size == size
    path = tmp_path / "k.key"
    save_private_key(path, key)
    assert openssl("pkey", "-in", str(path), "-noout", "-check").returncode == 0
    assert load_private_key(path).public_key() == key.public_key()


def test_saved_key_is_0600_even_under_a_permissive_umask(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    old = os.umask(0)
    try:
        save_private_key(path, generate_key())
        save_private_key(path, generate_key())  # replacing keeps the mode
    finally:
        os.umask(old)
    assert mode_of(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.key"]  # no temporary file left


def test_encrypted_key_needs_its_passphrase(tmp_path: Path) -> None:
    key = generate_key()
    path = tmp_path / "enc.key"
    save_private_key(path, key, b"correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    with pytest.raises(PassphraseRequired):
        load_private_key(path)
    with pytest.raises(WrongPassphrase):
        load_private_key(path, b"wrong horse!")
    assert load_private_key(path, b"correct horse").public_key() == key.public_key()
    # openssl opens it with the passphrase and not without: standard PKCS#8 encryption.
    env = {**os.environ, "KEYPASS": "correct horse"}
    assert openssl("pkey", "-in", str(path), "-passin", "env:KEYPASS", "-noout", env=env).returncode == 0
    assert openssl("pkey", "-in", str(path), "-passin", "pass:nope", "-noout").returncode != 0


def test_plain_key_with_a_passphrase_and_too_short_passphrase_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.key"
    save_private_key(path, generate_key())
    with pytest.raises(KeyFileError):
        load_private_key(path, b"unneeded passphrase")
    with pytest.raises(ValueError, match="at least"):
        save_private_key(tmp_path / "short.key", generate_key(), b"short")


def test_csr_is_signed_and_carries_subject_and_san(tmp_path: Path) -> None:
    key = generate_key(KeyAlgorithm.RSA2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw-a")])
    csr = create_csr(key, subject, [x509.DNSName("gw-a.test")])
    assert csr.is_signature_valid
    assert csr.subject == subject
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["gw-a.test"]
    path = tmp_path / "req.pem"
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    assert openssl("req", "-in", str(path), "-verify", "-noout").returncode == 0


# --- certificate profiles -------------------------------------------------------------------


def test_ca_certificate_profile(ca: pki.CertificateAuthority) -> None:
    cert = ca.certificate
    constraints = ext(cert, x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = ext(cert, x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == pki.DEFAULT_CA_NAME
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert pki.DEFAULT_CA_VALIDITY <= lifetime <= pki.DEFAULT_CA_VALIDITY + pki.CLOCK_SKEW_ALLOWANCE
    cert.verify_directly_issued_by(cert)


def test_gateway_certificate_profile(
    issued: dict[str, pki.IssuedFiles], ca: pki.CertificateAuthority
) -> None:
    cert = issued["gateway"].certificate
    eku = ext(cert, x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    usage = ext(cert, x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature
    assert not usage.value.key_encipherment  # EC keys cannot encipher
    san = ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["xroad:server:DEV/GOV/1001/gw-a"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "gw-a.test"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    subject = {a.oid: a.value for a in cert.subject}
    assert subject == {
        NameOID.COMMON_NAME: "gw-a",
        NameOID.ORGANIZATION_NAME: "1001",
        NameOID.SERIAL_NUMBER: "DEV/GOV/1001",
    }
    assert ext(cert, x509.BasicConstraints).value.ca is False
    ca_ski = ext(ca.certificate, x509.SubjectKeyIdentifier).value.digest
    assert ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == ca_ski
    assert (
        ext(cert, x509.SubjectKeyIdentifier).value.digest
        == x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest
    )


def test_rsa_gateway_certificate_allows_key_encipherment(issued: dict[str, pki.IssuedFiles]) -> None:
    cert = issued["gateway-rsa"].certificate
    assert isinstance(cert.public_key(), rsa.RSAPublicKey)
    usage = ext(cert, x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment
    assert issued["gateway-rsa"].certificate_path.name == "rsa-gw.pem"


def test_member_signing_certificate_profile(issued: dict[str, pki.IssuedFiles]) -> None:
    cert = issued["member"].certificate
    usage = ext(cert, x509.KeyUsage)
    assert usage.critical and usage.value.content_commitment and usage.value.digital_signature
    assert not usage.value.key_encipherment
    with pytest.raises(x509.ExtensionNotFound):
        ext(cert, x509.ExtendedKeyUsage)
    san = ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["xroad:member:DEV/GOV/1001"]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "1001"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Agency 1001"


def test_tsa_certificate_has_critical_timestamping_eku(issued: dict[str, pki.IssuedFiles]) -> None:
    cert = issued["tsa"].certificate
    eku = ext(cert, x509.ExtendedKeyUsage)
    assert eku.critical  # RFC 3161 §2.3
    assert list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    usage = ext(cert, x509.KeyUsage).value
    assert usage.digital_signature and usage.content_commitment
    purposes = openssl("x509", "-in", str(issued["tsa"].certificate_path), "-noout", "-purpose").stdout
    assert "Time Stamp signing : Yes" in purposes


def test_ocsp_certificate_has_ocsp_signing_and_nocheck(issued: dict[str, pki.IssuedFiles]) -> None:
    cert = issued["ocsp"].certificate
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    assert isinstance(ext(cert, x509.OCSPNoCheck).value, x509.OCSPNoCheck)  # RFC 6960 §4.2.2.2.1
    text = openssl("x509", "-in", str(issued["ocsp"].certificate_path), "-noout", "-text").stdout
    assert "OCSP No Check" in text


def test_every_issued_certificate_points_to_the_ocsp_url_and_has_a_random_serial(
    issued: dict[str, pki.IssuedFiles],
) -> None:
    serials = set()
    for files in issued.values():
        cert = files.certificate
        aia = ext(cert, x509.AuthorityInformationAccess).value
        assert [d.access_location.value for d in aia] == [OCSP_URL]
        assert 0 < cert.serial_number < 2**pki.SERIAL_BITS
        serials.add(cert.serial_number)
    assert len(serials) == len(issued)


def test_no_aia_without_ocsp_url(tmp_path: Path) -> None:
    ca = pki.init_pki(tmp_path)
    cert = pki.issue_certificate(ca, pki.TsaProfile(), generate_key().public_key(), NOW)
    with pytest.raises(x509.ExtensionNotFound):
        ext(cert, x509.AuthorityInformationAccess)


def test_issued_validity_never_outlasts_the_ca(tmp_path: Path) -> None:
    ca = pki.init_pki(tmp_path, validity=dt.timedelta(days=30))
    cert = pki.issue_certificate(
        ca, pki.TsaProfile(), generate_key().public_key(), NOW, dt.timedelta(days=700)
    )
    assert cert.not_valid_after_utc == ca.certificate.not_valid_after_utc


@pytest.mark.parametrize("kind", ["gateway", "gateway-rsa", "member", "tsa", "ocsp"])
def test_openssl_verifies_every_issued_certificate(
    kind: str, issued: dict[str, pki.IssuedFiles], pki_dir: Path
) -> None:
    result = openssl(
        "verify", "-CAfile", str(pki.ca_certificate_path(pki_dir)), str(issued[kind].certificate_path)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(": OK")


@pytest.mark.parametrize(
    ("kind", "purpose", "accepted"),
    [
        ("gateway", "sslserver", True),
        ("gateway", "sslclient", True),
        ("tsa", "timestampsign", True),
        ("member", "timestampsign", False),
        ("gateway", "timestampsign", False),
    ],
)
def test_openssl_checks_purposes(
    kind: str, purpose: str, accepted: bool, issued: dict[str, pki.IssuedFiles], pki_dir: Path
) -> None:
    ca_file = str(pki.ca_certificate_path(pki_dir))
    result = openssl("verify", "-purpose", purpose, "-CAfile", ca_file, str(issued[kind].certificate_path))
    assert (result.returncode == 0) is accepted, result.stdout + result.stderr


# --- loading, fingerprints, identities -----------------------------------------------------


def test_load_pem_and_der_and_fingerprint_match_openssl(issued: dict[str, pki.IssuedFiles]) -> None:
    path = issued["gateway"].certificate_path
    cert = load_certificate_file(path)
    der = cert.public_bytes(serialization.Encoding.DER)
    assert load_certificate(der) == cert
    printed = openssl("x509", "-in", str(path), "-noout", "-fingerprint", "-sha256").stdout
    assert printed.strip().split("=", 1)[1].replace(":", "").lower() == fingerprint_sha256(cert)
    serial = openssl("x509", "-in", str(path), "-noout", "-serial").stdout
    assert pki.parse_serial(serial) == cert.serial_number == int(serial_hex(cert), 16)
    with pytest.raises(CertificateError) as caught:
        load_certificate(b"not a certificate")
    assert caught.value.problem is CertificateProblem.MALFORMED


def test_identifiers_are_read_from_san_uris(issued: dict[str, pki.IssuedFiles]) -> None:
    assert identifiers_of(issued["gateway"].certificate) == (None, SERVER)
    assert identifiers_of(issued["member"].certificate) == (MEMBER, None)
    assert identifiers_of(issued["tsa"].certificate) == (None, None)


_CODE = st.text(alphabet="ABCXYZabcxyz0129'()+,-.=?", min_size=1, max_size=12).filter(
    lambda c: c not in (".", "..")
)
_ROUND_TRIP_CA_KEY = generate_key()
_CA_FOR_ROUND_TRIP = pki.CertificateAuthority(
    pki.build_ca_certificate(_ROUND_TRIP_CA_KEY, "round trip CA", NOW), _ROUND_TRIP_CA_KEY, pki.CaSettings()
)
_LEAF_KEY = generate_key().public_key()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instance=_CODE, member_class=_CODE, member_code=_CODE, server_code=_CODE)
def test_identifiers_round_trip_through_certificates(
    instance: str, member_class: str, member_code: str, server_code: str
) -> None:
    server = SecurityServerId(instance, member_class, member_code, server_code)
    member = server.owner
    gateway_cert = pki.issue_certificate(_CA_FOR_ROUND_TRIP, pki.GatewayProfile(server), _LEAF_KEY, NOW)
    member_cert = pki.issue_certificate(_CA_FOR_ROUND_TRIP, pki.MemberSigningProfile(member), _LEAF_KEY, NOW)
    reloaded = load_certificate(gateway_cert.public_bytes(serialization.Encoding.DER))
    assert identifiers_of(reloaded) == (None, server)
    assert identifiers_of(member_cert) == (member, None)


def _cert_with_uris(*uris: str) -> x509.Certificate:
    key = generate_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]), False)
        .sign(key, hashes.SHA256())
    )


@pytest.mark.parametrize(
    "uris",
    [
        ("xroad:server:DEV/GOV/1001/a", "xroad:server:DEV/GOV/1001/b"),  # ambiguous
        ("xroad:server:DEV/GOV/1001",),  # too few parts
        ("xroad:member:DEV/GOV/1001/SUB",),  # a subsystem cannot hold a signing key
        ("xroad:member:DEV/GOV/bad code",),  # outside the code alphabet
    ],
)
def test_bad_identity_uris_are_refused(uris: tuple[str, ...]) -> None:
    with pytest.raises(CertificateError) as caught:
        identifiers_of(_cert_with_uris(*uris))
    assert caught.value.problem is CertificateProblem.BAD_IDENTITY


def test_unrelated_uris_are_ignored() -> None:
    assert identifiers_of(_cert_with_uris("https://example.test/", "urn:x:y")) == (None, None)


# --- chain verification ---------------------------------------------------------------------


def test_verify_chain_accepts_an_issued_certificate(
    issued: dict[str, pki.IssuedFiles], ca: pki.CertificateAuthority
) -> None:
    leaf = issued["gateway"].certificate
    chain = verify_chain(leaf, [], [ca.certificate], NOW, purpose=ExtendedKeyUsageOID.CLIENT_AUTH)
    assert chain == [leaf, ca.certificate]
    for kind in ("member", "tsa", "ocsp", "gateway-rsa"):
        assert (
            verify_chain(issued[kind].certificate, [], [ca.certificate], NOW)[0] == issued[kind].certificate
        )


def test_verify_chain_refuses_a_certificate_of_another_ca(
    issued: dict[str, pki.IssuedFiles], tmp_path: Path
) -> None:
    other = pki.init_pki(
        tmp_path, settings=pki.CaSettings(common_name=pki.DEFAULT_CA_NAME)
    )  # same name, other key
    with pytest.raises(CertificateError) as caught:
        verify_chain(issued["gateway"].certificate, [], [other.certificate], NOW)
    assert caught.value.problem is CertificateProblem.UNTRUSTED


@pytest.mark.parametrize(
    ("offset", "problem"),
    [
        (dt.timedelta(days=pki.DEFAULT_CERT_VALIDITY.days + 1), CertificateProblem.EXPIRED),
        (-dt.timedelta(hours=1), CertificateProblem.NOT_YET_VALID),
    ],
)
def test_verify_chain_checks_the_time(
    offset: dt.timedelta,
    problem: CertificateProblem,
    issued: dict[str, pki.IssuedFiles],
    ca: pki.CertificateAuthority,
) -> None:
    with pytest.raises(CertificateError) as caught:
        verify_chain(issued["member"].certificate, [], [ca.certificate], NOW + offset)
    assert caught.value.problem is problem


def test_verify_chain_refuses_expired_ca(tmp_path: Path) -> None:
    start = NOW - dt.timedelta(days=20)
    ca = pki.init_pki(tmp_path, validity=dt.timedelta(days=10), now=start)
    leaf = pki.issue_certificate(ca, pki.TsaProfile(), generate_key().public_key(), start)
    verify_chain(leaf, [], [ca.certificate], start + dt.timedelta(days=1))
    with pytest.raises(CertificateError) as caught:
        verify_chain(leaf, [], [ca.certificate], NOW)
    assert caught.value.problem is CertificateProblem.EXPIRED  # the leaf is clamped to the CA


def test_verify_chain_purpose_and_leaf_checks(
    issued: dict[str, pki.IssuedFiles], ca: pki.CertificateAuthority
) -> None:
    with pytest.raises(CertificateError) as caught:
        verify_chain(
            issued["gateway"].certificate,
            [],
            [ca.certificate],
            NOW,
            purpose=ExtendedKeyUsageOID.TIME_STAMPING,
        )
    assert caught.value.problem is CertificateProblem.WRONG_PURPOSE
    with pytest.raises(CertificateError) as caught:
        verify_chain(
            issued["member"].certificate, [], [ca.certificate], NOW, purpose=ExtendedKeyUsageOID.CLIENT_AUTH
        )
    assert caught.value.problem is CertificateProblem.WRONG_PURPOSE
    with pytest.raises(CertificateError) as caught:
        verify_chain(ca.certificate, [], [ca.certificate], NOW)
    assert caught.value.problem is CertificateProblem.NOT_END_ENTITY
    with pytest.raises(ValueError, match="timezone"):
        verify_chain(issued["tsa"].certificate, [], [ca.certificate], dt.datetime(2030, 1, 1))


def test_verify_chain_through_an_intermediate(ca: pki.CertificateAuthority) -> None:
    sub_key = generate_key()
    sub_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "xgate intermediate")]))
        .issuer_name(ca.certificate.subject)
        .public_key(sub_key.public_key())
        .serial_number(pki.random_serial())
        .not_valid_before(NOW - dt.timedelta(minutes=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(ext(ca.certificate, x509.KeyUsage).value, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(sub_key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.certificate.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    intermediate = pki.CertificateAuthority(sub_cert, sub_key, pki.CaSettings())
    leaf = pki.issue_certificate(intermediate, pki.TsaProfile(), generate_key().public_key(), NOW)
    assert verify_chain(leaf, [sub_cert], [ca.certificate], NOW) == [leaf, sub_cert, ca.certificate]
    with pytest.raises(CertificateError):
        verify_chain(leaf, [], [ca.certificate], NOW)  # the intermediate is needed


def test_a_remembered_chain_is_held_to_each_new_time() -> None:
    """verify_chain remembers chains it built; a later call must still check every validity period."""
    start = NOW - dt.timedelta(days=20)
    ca_key = generate_key()
    ca_cert = pki.build_ca_certificate(ca_key, "short-lived CA", start, validity=dt.timedelta(days=10))
    leaf = (  # outlives its CA, which the development PKI would not issue
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "long-lived leaf")]))
        .issuer_name(ca_cert.subject)
        .public_key(generate_key().public_key())
        .serial_number(pki.random_serial())
        .not_valid_before(start)
        .not_valid_after(NOW + dt.timedelta(days=10))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    while_valid = start + dt.timedelta(days=1)
    assert verify_chain(leaf, [], [ca_cert], while_valid) == [leaf, ca_cert]
    assert verify_chain(leaf, [], [ca_cert], while_valid + dt.timedelta(hours=1)) == [leaf, ca_cert]
    with pytest.raises(CertificateError) as caught:
        verify_chain(leaf, [], [ca_cert], NOW)  # the leaf still is valid; its CA no longer is
    assert caught.value.problem is CertificateProblem.UNTRUSTED
    with pytest.raises(CertificateError) as caught:
        verify_chain(leaf, [], [ca_cert], start - dt.timedelta(days=1))
    assert caught.value.problem is CertificateProblem.NOT_YET_VALID


def test_a_remembered_chain_counts_only_for_its_own_anchors(
    issued: dict[str, pki.IssuedFiles], ca: pki.CertificateAuthority, tmp_path: Path
) -> None:
    leaf = issued["member"].certificate
    assert verify_chain(leaf, [], [ca.certificate], NOW)[0] == leaf
    stranger = pki.init_pki(tmp_path, settings=pki.CaSettings(common_name=pki.DEFAULT_CA_NAME))
    with pytest.raises(CertificateError) as caught:
        verify_chain(leaf, [], [stranger.certificate], NOW)
    assert caught.value.problem is CertificateProblem.UNTRUSTED
    assert verify_chain(leaf, [], [stranger.certificate, ca.certificate], NOW)[-1] == ca.certificate


# --- the PKI directory and revocation -------------------------------------------------------


def test_pki_directory_layout_and_modes(pki_dir: Path, issued: dict[str, pki.IssuedFiles]) -> None:
    assert mode_of(pki.ca_key_path(pki_dir)) == 0o600
    for files in issued.values():
        assert mode_of(files.key_path) == 0o600
        assert load_private_key(files.key_path).public_key() == files.certificate.public_key()
    settings_data = json.loads((pki_dir / "ca" / "settings.json").read_text())
    assert settings_data == {"common_name": pki.DEFAULT_CA_NAME, "ocsp_url": OCSP_URL, "algorithm": "ec"}
    with pytest.raises(pki.PkiError, match="already holds a CA"):
        pki.init_pki(pki_dir)
    with pytest.raises(pki.PkiError, match="exists"):
        pki.issue(pki_dir, pki.load_ca(pki_dir), pki.TsaProfile())


def test_index_records_every_issue(pki_dir: Path, issued: dict[str, pki.IssuedFiles]) -> None:
    index = pki.read_index(pki_dir)
    for files in issued.values():
        entry = index[files.certificate.serial_number]
        assert entry.status is OCSPCertStatus.GOOD
        assert entry.not_after == files.certificate.not_valid_after_utc
        assert entry.fingerprint_sha256 == fingerprint_sha256(files.certificate)
    assert (
        index[issued["gateway"].certificate.serial_number].subject
        == "serialNumber=DEV/GOV/1001,O=1001,CN=gw-a"
    )
    assert index[issued["ocsp"].certificate.serial_number].kind == "ocsp"


def test_revoke_and_status(tmp_path: Path) -> None:
    ca = pki.init_pki(tmp_path)
    files = pki.issue(tmp_path, ca, pki.MemberSigningProfile(MEMBER))
    serial = files.certificate.serial_number
    assert pki.status_of(tmp_path, serial).status is OCSPCertStatus.GOOD
    assert pki.status_of(tmp_path, serial + 1).status is OCSPCertStatus.UNKNOWN
    when = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
    pki.revoke(tmp_path, serial, x509.ReasonFlags.key_compromise, at=when)
    status = pki.status_of(tmp_path, serial)
    assert status == pki.RevocationStatus(OCSPCertStatus.REVOKED, when, x509.ReasonFlags.key_compromise)
    last = json.loads((tmp_path / "index.jsonl").read_text().splitlines()[-1])
    assert last == {
        "serial": format(serial, "x"),
        "status": "revoked",
        "revoked_at": when.isoformat(),
        "reason": "keyCompromise",
    }
    with pytest.raises(pki.PkiError, match="already revoked"):
        pki.revoke(tmp_path, serial)
    with pytest.raises(pki.PkiError, match="not issued"):
        pki.revoke(tmp_path, serial + 1)


def test_encrypted_ca_key_needs_its_passphrase(tmp_path: Path) -> None:
    pki.init_pki(tmp_path, passphrase=b"ca passphrase")
    with pytest.raises(PassphraseRequired):
        pki.load_ca(tmp_path)
    ca = pki.load_ca(tmp_path, b"ca passphrase")
    assert ca.key.public_key() == ca.certificate.public_key()


def test_rsa3072_ca(tmp_path: Path) -> None:
    ca = pki.init_pki(tmp_path, settings=pki.CaSettings(algorithm=KeyAlgorithm.RSA3072))
    assert isinstance(ca.key, rsa.RSAPrivateKey) and ca.key.key_size == 3072
    files = pki.issue(tmp_path, ca, pki.GatewayProfile(SERVER), algorithm=KeyAlgorithm.RSA2048)
    assert verify_chain(files.certificate, [], [ca.certificate], NOW)[-1] == ca.certificate
    ca_file = str(pki.ca_certificate_path(tmp_path))
    assert openssl("verify", "-CAfile", ca_file, str(files.certificate_path)).returncode == 0


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="OCSP URL"):
        pki.CaSettings(ocsp_url="ftp://127.0.0.1/")
    with pytest.raises(ValueError, match="members"):
        pki.MemberSigningProfile(ClientId("DEV", "GOV", "1001", "SUB"))


# --- the CLI --------------------------------------------------------------------------------


@pytest.fixture
def runner() -> Iterator[CliRunner]:
    yield CliRunner()


@pytest.mark.parametrize(
    "command",
    [
        ["pki"],
        ["pki", "init"],
        ["pki", "issue"],
        ["pki", "issue", "DIR", "gateway"],
        ["pki", "issue", "DIR", "member"],
        ["pki", "issue", "DIR", "tsa"],
        ["pki", "issue", "DIR", "ocsp"],
        ["pki", "revoke"],
        ["pki", "list"],
    ],
)
def test_help_works_everywhere(command: list[str], runner: CliRunner) -> None:
    result = runner.invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert "-h, --help" in result.output


def test_cli_end_to_end(tmp_path: Path, runner: CliRunner) -> None:
    directory = tmp_path / "pki"
    env = {"CA_PASS": "ca passphrase", "GW_PASS": "gateway passphrase"}
    result = runner.invoke(
        main, ["pki", "init", str(directory), "--ocsp-url", OCSP_URL, "--passphrase-env", "CA_PASS"], env=env
    )
    assert result.exit_code == 0, result.output
    assert mode_of(directory / "ca" / "ca.key") == 0o600
    assert b"ENCRYPTED" in (directory / "ca" / "ca.key").read_bytes()

    gateway_args = [
        "pki",
        "issue",
        str(directory),
        "gateway",
        "--server",
        "DEV/GOV/1001/gw-a",
        "--dns",
        "gw-a.test",
    ]
    result = runner.invoke(
        main,
        [
            *gateway_args,
            "--ip",
            "::1",
            "--algorithm",
            "rsa2048",
            "--ca-passphrase-env",
            "CA_PASS",
            "--passphrase-env",
            "GW_PASS",
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    gateway_pem = directory / "issued" / "gateway-DEV_GOV_1001_gw-a.pem"
    gateway_key = directory / "issued" / "gateway-DEV_GOV_1001_gw-a.key"
    assert f"certificate: {gateway_pem}" in result.output
    assert f"private key: {gateway_key} (encrypted)" in result.output
    assert "PRIVATE KEY" not in result.output
    with pytest.raises(PassphraseRequired):
        load_private_key(gateway_key)
    gateway_cert = load_certificate_file(gateway_pem)
    assert identifiers_of(gateway_cert) == (None, SERVER)
    san = ext(gateway_cert, x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["::1"]

    # The CA passphrase may also be typed at the prompt.
    out = tmp_path / "signing" / "sign"
    result = runner.invoke(
        main,
        [
            "pki",
            "issue",
            str(directory),
            "member",
            "--member",
            "DEV/GOV/1001",
            "--name",
            "Agency",
            "--out",
            str(out),
        ],
        input="ca passphrase\n",
    )
    assert result.exit_code == 0, result.output
    assert "ca passphrase" not in result.output
    assert identifiers_of(load_certificate_file(out.with_suffix(".pem"))) == (MEMBER, None)
    assert mode_of(out.with_suffix(".key")) == 0o600

    for kind in ("tsa", "ocsp"):
        result = runner.invoke(
            main, ["pki", "issue", str(directory), kind, "--ca-passphrase-env", "CA_PASS"], env=env
        )
        assert result.exit_code == 0, result.output
    tsa_pem = directory / "issued" / "tsa-xgate_development_TSA.pem"
    ca_file = str(directory / "ca" / "ca.pem")
    for pem in (gateway_pem, out.with_suffix(".pem"), tsa_pem):
        assert openssl("verify", "-CAfile", ca_file, str(pem)).returncode == 0

    revoke_gateway = ["pki", "revoke", str(directory), "--cert", str(gateway_pem)]
    revoke_gateway += ["--reason", "keyCompromise"]
    declined = runner.invoke(main, revoke_gateway, input="n\n")
    assert declined.exit_code == 1 and "Revocation cannot be undone" in declined.output
    assert pki.status_of(directory, gateway_cert.serial_number).status is OCSPCertStatus.GOOD
    result = runner.invoke(main, [*revoke_gateway, "--yes"])
    assert result.exit_code == 0, result.output
    tsa_serial = openssl("x509", "-in", str(tsa_pem), "-noout", "-serial").stdout.strip().split("=")[1]
    result = runner.invoke(main, ["pki", "revoke", str(directory), "--serial", tsa_serial, "--yes"])
    assert result.exit_code == 0, result.output

    result = runner.invoke(main, ["pki", "list", str(directory)])
    assert result.exit_code == 0, result.output
    rows = {line.split("\t")[0]: line.split("\t") for line in result.output.splitlines()[1:]}
    assert len(rows) == 4
    assert rows[serial_hex(gateway_cert)][1:3] == ["gateway", "revoked (keyCompromise)"]
    # openssl pads the hex serial to whole bytes; `pki list` writes it without a leading zero.
    assert rows[format(int(tsa_serial, 16), "x")][1:3] == ["tsa", "revoked (unspecified)"]
    assert sorted(row[2] for row in rows.values()).count("good") == 2
    status = pki.status_of(directory, gateway_cert.serial_number)
    assert status.status is OCSPCertStatus.REVOKED and status.reason is x509.ReasonFlags.key_compromise


def test_cli_errors_are_one_line_messages(tmp_path: Path, runner: CliRunner) -> None:
    directory = tmp_path / "pki"
    result = runner.invoke(main, ["pki", "list", str(directory)])
    assert result.exit_code == 1 and "not a PKI directory" in result.output
    assert runner.invoke(main, ["pki", "init", str(directory)]).exit_code == 0
    result = runner.invoke(main, ["pki", "init", str(directory)])
    assert result.exit_code == 1 and "already holds a CA" in result.output
    result = runner.invoke(main, ["pki", "issue", str(directory), "gateway", "--server", "DEV/GOV/1001"])
    assert result.exit_code == 1 and "INSTANCE/CLASS/MEMBER/SERVER" in result.output
    result = runner.invoke(main, ["pki", "revoke", str(directory), "--yes"])
    assert result.exit_code == 2 and "exactly one" in result.output
    result = runner.invoke(main, ["pki", "revoke", str(directory), "--serial", "abc123", "--yes"])
    assert result.exit_code == 1 and "not issued" in result.output
    result = runner.invoke(
        main, ["pki", "issue", str(directory), "tsa", "--passphrase-env", "UNSET_VARIABLE_X"]
    )
    assert result.exit_code == 2 and "UNSET_VARIABLE_X" in result.output
    result = runner.invoke(
        main,
        ["pki", "issue", str(directory), "tsa", "--passphrase-env", "P", "--passphrase-prompt"],
        env={"P": "long enough passphrase"},
    )
    assert result.exit_code == 2 and "not both" in result.output
    # Passphrases are never arguments.
    result = runner.invoke(main, ["pki", "init", str(tmp_path / "other"), "--passphrase", "secret"])
    assert result.exit_code == 2 and not (tmp_path / "other").exists()
    assert "Traceback" not in result.output
