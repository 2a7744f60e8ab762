"""The global configuration: model lookups, signed format, anchors, and the fetching edge.

Real keys and certificates throughout; the signature is also checked with `openssl dgst`
exactly as docs/globalconf.md tells an operator to, and the source fetches from a real
aiohttp server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.globalconf import (
    Anchor,
    GlobalConf,
    GlobalConfSettings,
    GlobalGroup,
    MalformedGlobalConf,
    Member,
    OcspResponder,
    SecurityServerInfo,
    TimestampingAuthority,
    TrustedCa,
    UntrustedGlobalConf,
    anchor_from_json,
    anchor_to_json,
    globalconf_from_json,
    globalconf_to_json,
    sign_globalconf,
    verify_signed_globalconf,
)
from gateway.globalconf.signed import canonical_json
from gateway.globalconf.source import (
    GlobalConfRollback,
    GlobalConfSource,
    GlobalConfUnavailable,
    load_anchor,
    save_anchor,
)
from gateway.ids import ClientId, GlobalGroupId, SecurityServerId
from gateway.trust.pki import key_usage
from tests.certs import certificate_builder

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
INSTANCE = "DEV"

Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


# --- certificates -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Signer:
    key: Key
    cert: x509.Certificate


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _self_issued(
    common_name: str, key: Key, not_before: dt.datetime, not_after: dt.datetime
) -> x509.CertificateBuilder:
    """A certificate of `key` whose subject and issuer are both `common_name`, yet to be signed."""
    return certificate_builder(
        _name(common_name), _name(common_name), key.public_key(), not_before, not_after
    )


def make_ca(common_name: str) -> Signer:
    """A root CA in the shape the development CA (gateway/trust) gives its root."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _self_issued(common_name, key, NOW - 30 * DAY, NOW + 3650 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Signer(key, cert)


def issue(
    ca: Signer,
    common_name: str,
    key: Key | None = None,
    *,
    not_after: dt.datetime = NOW + 365 * DAY,
    signing: bool = True,
) -> Signer:
    """An end-entity certificate issued by `ca`: a configuration-signing certificate by default."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    cert = (
        certificate_builder(_name(common_name), ca.cert.subject, key.public_key(), NOW - 10 * DAY, not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(digital_signature=signing), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return Signer(key, cert)


def self_signed(common_name: str, key: Key | None = None) -> Signer:
    """A bare self-signed signing certificate: the simplest anchor a development federation uses."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    cert = _self_issued(common_name, key, NOW - DAY, NOW + 365 * DAY).sign(key, hashes.SHA256())
    return Signer(key, cert)


@pytest.fixture(scope="module")
def anchor_ca() -> Signer:
    return make_ca("DEV global configuration anchor")


@pytest.fixture(scope="module")
def signer(anchor_ca: Signer) -> Signer:
    return issue(anchor_ca, "DEV central registry signer 1")


@pytest.fixture(scope="module")
def rsa_signer() -> Signer:
    return self_signed("DEV central registry RSA signer", rsa.generate_private_key(65537, 2048))


@pytest.fixture(scope="module")
def auth_certs() -> dict[str, x509.Certificate]:
    tls_ca = make_ca("DEV TLS CA")
    return {name: issue(tls_ca, name).cert for name in ("ss1", "ss2", "ssb")} | {"tls-ca": tls_ca.cert}


# --- a federation -----------------------------------------------------------------------------

AGENCY = ClientId(INSTANCE, "GOV", "1111")
AGENCY_REG = ClientId(INSTANCE, "GOV", "1111", "reg")
AGENCY_TAX = ClientId(INSTANCE, "GOV", "1111", "tax")
FIRM = ClientId(INSTANCE, "COM", "2222")
FIRM_CRM = ClientId(INSTANCE, "COM", "2222", "crm")
LONER = ClientId(INSTANCE, "GOV", "3333")
SS1 = SecurityServerId(INSTANCE, "GOV", "1111", "ss1")
SS2 = SecurityServerId(INSTANCE, "GOV", "1111", "ss2")
SSB = SecurityServerId(INSTANCE, "COM", "2222", "ssb")
OWNERS = GlobalGroupId(INSTANCE, "security-server-owners")
TAX_READERS = GlobalGroupId(INSTANCE, "tax-readers")


def make_conf(auth_certs: dict[str, x509.Certificate], version: int = 1, **changes: object) -> GlobalConf:
    conf = GlobalConf(
        instance=INSTANCE,
        version=version,
        generated_at=NOW,
        expires_at=NOW + dt.timedelta(minutes=10),
        members=(
            Member("GOV", "1111", "Agency A", ("reg", "tax")),
            Member("COM", "2222", "Firm B — Ltd", ("crm",)),
            Member("GOV", "3333", "Agency C"),
        ),
        security_servers=(
            SecurityServerInfo(SS1, "ss1.dev.example:5500", (_pem(auth_certs["ss1"]),), (AGENCY_REG,)),
            # The agency's tax subsystem is hosted by the firm's gateway, not the agency's own.
            SecurityServerInfo(SSB, "127.0.0.1:5502", (_pem(auth_certs["ssb"]),), (FIRM_CRM, AGENCY_TAX)),
            SecurityServerInfo(SS2, "[::1]:5501", (_pem(auth_certs["ss2"]),), (AGENCY_REG,)),
        ),
        trusted_cas=(
            TrustedCa(
                "DEV TLS CA",
                _pem(auth_certs["tls-ca"]),
                (
                    OcspResponder("http://127.0.0.1:8888/ocsp"),
                    OcspResponder("http://ocsp.dev.example/", None),
                ),
            ),
        ),
        timestamping_authorities=(
            TimestampingAuthority("DEV TSA", "http://127.0.0.1:8889/tsa", _pem(auth_certs["tls-ca"])),
        ),
        global_groups=(
            GlobalGroup(OWNERS, "Owners of security servers", (AGENCY, FIRM)),
            GlobalGroup(TAX_READERS, "Systems that may read tax data", (FIRM_CRM,)),
        ),
        settings=GlobalConfSettings(ocsp_freshness_seconds=1200),
    )
    return dataclasses.replace(conf, **changes) if changes else conf  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def conf(auth_certs: dict[str, x509.Certificate]) -> GlobalConf:
    return make_conf(auth_certs)


def _container(data: bytes) -> dict[str, object]:
    value = json.loads(data)
    assert isinstance(value, dict)
    return value


def _content_of(data: bytes) -> dict[str, object]:
    return _container(base64.b64decode(_container(data)["content"]))  # type: ignore[arg-type]


def _with_content(data: bytes, content: bytes) -> bytes:
    container = _container(data)
    container["content"] = base64.b64encode(content).decode()
    return canonical_json(container)


# --- lookups ----------------------------------------------------------------------------------


def test_servers_for_a_subsystem_are_the_ones_hosting_it_not_the_members_own(conf: GlobalConf) -> None:
    assert [s.id for s in conf.servers_for(AGENCY_REG)] == [SS1, SS2]
    assert [s.id for s in conf.servers_for(AGENCY_TAX)] == [SSB]


def test_servers_for_a_member_are_the_ones_it_owns_or_that_host_it(conf: GlobalConf) -> None:
    assert [s.id for s in conf.servers_for(AGENCY)] == [SS1, SS2]
    assert [s.id for s in conf.servers_for(FIRM)] == [SSB]
    assert conf.servers_for(LONER) == []
    assert conf.servers_for(ClientId(INSTANCE, "GOV", "9999", "reg")) == []
    assert conf.servers_for(ClientId("OTHER", "GOV", "1111", "reg")) == []


def test_server_by_cert_fingerprint_accepts_openssl_spelling(
    conf: GlobalConf, auth_certs: dict[str, x509.Certificate]
) -> None:
    digest = auth_certs["ssb"].fingerprint(hashes.SHA256())
    openssl_style = ":".join(f"{b:02X}" for b in digest)
    found = conf.server_by_cert_fingerprint(openssl_style)
    assert found is not None and found.id == SSB
    assert found.auth_cert_sha256 == (digest.hex(),)
    assert conf.server_by_cert_fingerprint(auth_certs["tls-ca"].fingerprint(hashes.SHA256()).hex()) is None
    assert conf.server(SS2) is not None and conf.server(SS2).port == 5501  # type: ignore[union-attr]
    assert conf.server(SS2).host == "::1"  # type: ignore[union-attr]


def test_groups_match_exact_identifiers(conf: GlobalConf) -> None:
    assert conf.is_member_of(AGENCY, OWNERS)
    assert not conf.is_member_of(AGENCY_REG, OWNERS)  # a subsystem is not its member
    assert conf.is_member_of(FIRM_CRM, TAX_READERS)
    assert not conf.is_member_of(FIRM, TAX_READERS)
    assert not conf.is_member_of(AGENCY, GlobalGroupId(INSTANCE, "nobody"))


def test_known_clients_and_their_names(conf: GlobalConf) -> None:
    assert conf.clients() == [AGENCY, AGENCY_REG, AGENCY_TAX, FIRM, FIRM_CRM, LONER]
    assert all(conf.is_known(c) for c in conf.clients())
    assert not conf.is_known(ClientId(INSTANCE, "GOV", "1111", "nope"))
    assert not conf.is_known(ClientId("OTHER", "GOV", "1111"))
    assert conf.member_name(FIRM_CRM) == "Firm B — Ltd"
    assert conf.member_name(ClientId(INSTANCE, "GOV", "1111", "nope")) is None


def test_trusted_ca_certs_and_expiry(conf: GlobalConf, auth_certs: dict[str, x509.Certificate]) -> None:
    assert conf.trusted_ca_certs() == [auth_certs["tls-ca"]]
    assert not conf.is_expired(NOW)
    assert not conf.is_expired(conf.expires_at - dt.timedelta(microseconds=1))
    assert conf.is_expired(conf.expires_at)


def test_inconsistent_configurations_are_refused(conf: GlobalConf) -> None:
    ss1 = conf.security_servers[0]
    stranger = dataclasses.replace(ss1, clients=(ClientId(INSTANCE, "GOV", "1111", "ghost"),))
    with pytest.raises(MalformedGlobalConf, match="unknown client"):
        dataclasses.replace(conf, security_servers=(stranger,))
    twin = SecurityServerInfo(SecurityServerId(INSTANCE, "COM", "2222", "twin"), "h:1", ss1.auth_certificates)
    with pytest.raises(MalformedGlobalConf, match="registered to"):
        dataclasses.replace(conf, security_servers=(ss1, twin))
    with pytest.raises(MalformedGlobalConf, match="timezone-aware"):
        dataclasses.replace(conf, generated_at=dt.datetime(2026, 1, 1))
    with pytest.raises(MalformedGlobalConf, match="host:port"):
        dataclasses.replace(ss1, address="ss1.dev.example:99999")
    with pytest.raises(MalformedGlobalConf, match="unknown members"):
        dataclasses.replace(
            conf, global_groups=(GlobalGroup(OWNERS, "", (LONER, ClientId(INSTANCE, "X", "Y"))),)
        )


# --- signing and verification -----------------------------------------------------------------


def test_round_trip_with_a_signer_issued_by_the_anchor(
    conf: GlobalConf, anchor_ca: Signer, signer: Signer
) -> None:
    data = sign_globalconf(conf, signer.key, signer.cert)
    assert verify_signed_globalconf(data, [anchor_ca.cert], NOW, instance=INSTANCE) == conf


def test_round_trip_with_an_rsa_signer_that_is_the_anchor(conf: GlobalConf, rsa_signer: Signer) -> None:
    data = sign_globalconf(conf, rsa_signer.key, rsa_signer.cert)
    signature = _container(data)["signature"]
    assert isinstance(signature, dict) and signature["algorithm"] == "sha256WithRSAEncryption"
    assert verify_signed_globalconf(data, [rsa_signer.cert], NOW) == conf


def test_content_is_canonical_json(conf: GlobalConf) -> None:
    content = globalconf_to_json(conf)
    parsed = json.loads(content)
    assert content == json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert parsed["format"] == "xgate-globalconf/1"
    assert "Firm B — Ltd".encode() in content  # UTF-8, not \\u escapes
    assert parsed["generated_at"] == "2026-11-27T12:00:00Z"
    assert globalconf_from_json(content) == conf


def test_the_monitoring_client_is_optional_and_written_only_when_set(conf: GlobalConf) -> None:
    assert conf.monitoring_client is None
    assert "monitoring_client" not in json.loads(globalconf_to_json(conf))  # as before it existed
    monitored = dataclasses.replace(conf, monitoring_client=FIRM_CRM)
    content = globalconf_to_json(monitored)
    assert json.loads(content)["monitoring_client"] == FIRM_CRM.to_text()
    assert globalconf_from_json(content) == monitored
    with pytest.raises(MalformedGlobalConf, match=r"monitoring client .* is not a registered client"):
        dataclasses.replace(conf, monitoring_client=ClientId(INSTANCE, "GOV", "1111", "ghost"))
    broken = json.loads(content)
    broken["monitoring_client"] = "not an identifier"
    with pytest.raises(MalformedGlobalConf, match="monitoring_client"):
        globalconf_from_json(canonical_json(broken))


def test_tampered_content_is_refused(conf: GlobalConf, anchor_ca: Signer, signer: Signer) -> None:
    data = sign_globalconf(conf, signer.key, signer.cert)
    content = _content_of(data)
    content["version"] = 2
    with pytest.raises(UntrustedGlobalConf, match="does not match"):
        verify_signed_globalconf(_with_content(data, canonical_json(content)), [anchor_ca.cert], NOW)


def test_tampered_signature_is_refused(conf: GlobalConf, anchor_ca: Signer, signer: Signer) -> None:
    container = _container(sign_globalconf(conf, signer.key, signer.cert))
    other = _container(sign_globalconf(dataclasses.replace(conf, version=9), signer.key, signer.cert))
    container["signature"]["value"] = other["signature"]["value"]  # type: ignore[index]
    with pytest.raises(UntrustedGlobalConf):
        verify_signed_globalconf(canonical_json(container), [anchor_ca.cert], NOW)


def test_wrong_signer_is_refused(conf: GlobalConf, anchor_ca: Signer, signer: Signer) -> None:
    impostor = issue(make_ca("DEV global configuration anchor"), "DEV central registry signer 1")
    with pytest.raises(UntrustedGlobalConf, match="not an anchor nor issued by one"):
        verify_signed_globalconf(sign_globalconf(conf, impostor.key, impostor.cert), [anchor_ca.cert], NOW)
    # Claiming the real signer's certificate does not help a different key.
    container = _container(sign_globalconf(conf, impostor.key, impostor.cert))
    container["signature"]["signer_certificate"] = _pem(signer.cert)  # type: ignore[index]
    with pytest.raises(UntrustedGlobalConf, match="does not match"):
        verify_signed_globalconf(canonical_json(container), [anchor_ca.cert], NOW)


def test_signer_must_be_valid_now_and_allowed_to_sign(conf: GlobalConf, anchor_ca: Signer) -> None:
    short_lived = issue(anchor_ca, "short-lived signer", not_after=NOW + DAY)
    data = sign_globalconf(conf, short_lived.key, short_lived.cert)
    assert verify_signed_globalconf(data, [anchor_ca.cert], NOW) == conf
    with pytest.raises(UntrustedGlobalConf, match="expired"):
        verify_signed_globalconf(data, [anchor_ca.cert], NOW + 2 * DAY)
    no_signing = issue(anchor_ca, "encryption only", signing=False)
    with pytest.raises(UntrustedGlobalConf, match="digitalSignature"):
        verify_signed_globalconf(
            sign_globalconf(conf, no_signing.key, no_signing.cert), [anchor_ca.cert], NOW
        )


def test_new_signing_key_under_the_same_anchor_needs_no_anchor_change(
    conf: GlobalConf, anchor_ca: Signer, signer: Signer
) -> None:
    successor = issue(anchor_ca, "DEV central registry signer 2")
    for who in (signer, successor):
        assert (
            verify_signed_globalconf(sign_globalconf(conf, who.key, who.cert), [anchor_ca.cert], NOW) == conf
        )


def test_rotation_with_old_and_new_anchor_listed(conf: GlobalConf) -> None:
    old, new = self_signed("registry 2025"), self_signed("registry 2026")
    old_signed, new_signed = (sign_globalconf(conf, s.key, s.cert) for s in (old, new))
    both = [old.cert, new.cert]
    assert verify_signed_globalconf(old_signed, both, NOW) == conf
    assert verify_signed_globalconf(new_signed, both, NOW) == conf
    with pytest.raises(UntrustedGlobalConf):
        verify_signed_globalconf(old_signed, [new.cert], NOW)


def test_configuration_of_another_instance_is_refused(
    conf: GlobalConf, anchor_ca: Signer, signer: Signer
) -> None:
    data = sign_globalconf(conf, signer.key, signer.cert)
    with pytest.raises(UntrustedGlobalConf, match="instance"):
        verify_signed_globalconf(data, [anchor_ca.cert], NOW, instance="PROD")


def test_expired_configuration_still_verifies(conf: GlobalConf, anchor_ca: Signer, signer: Signer) -> None:
    later = conf.expires_at + DAY
    verified = verify_signed_globalconf(
        sign_globalconf(conf, signer.key, signer.cert), [anchor_ca.cert], later
    )
    assert verified.is_expired(later)


def test_key_and_certificate_must_match(conf: GlobalConf, signer: Signer, rsa_signer: Signer) -> None:
    with pytest.raises(ValueError, match="not for this key"):
        sign_globalconf(conf, rsa_signer.key, signer.cert)


def _mutations() -> list[tuple[str, Callable[[dict[str, Any]], object]]]:
    def set_key(key: str, value: object) -> Callable[[dict[str, Any]], object]:
        return lambda c: c.__setitem__(key, value)

    return [
        ("unknown format", set_key("format", "xgate-globalconf/2")),
        ("missing field", lambda c: c.pop("global_groups")),
        ("unknown field", set_key("extra", 1)),
        ("boolean version", set_key("version", True)),
        ("version as text", set_key("version", "3")),
        ("time without zone", set_key("expires_at", "2026-11-27T12:10:00")),
        ("time with offset", set_key("expires_at", "2026-11-27T14:10:00+02:00")),
        ("bad client", lambda c: c["global_groups"][0].__setitem__("members", ["DEV/GOV"])),
        ("missing nested", lambda c: c["members"][0].pop("subsystems")),
        ("unknown setting", lambda c: c["settings"].__setitem__("x", 1)),
        ("zero setting", lambda c: c["settings"].__setitem__("validity_seconds", 0)),
        ("not PEM", lambda c: c["trusted_cas"][0].__setitem__("certificate", "hello")),
    ]


@pytest.mark.parametrize(("what", "mutate"), _mutations(), ids=[m[0] for m in _mutations()])
def test_strict_parsing_even_when_properly_signed(
    conf: GlobalConf,
    signer: Signer,
    anchor_ca: Signer,
    what: str,
    mutate: Callable[[dict[str, Any]], object],
) -> None:
    content = json.loads(globalconf_to_json(conf))
    mutate(content)
    with pytest.raises(MalformedGlobalConf):
        globalconf_from_json(canonical_json(content))
    # The registry's own signature does not make a malformed configuration acceptable.
    data = sign_globalconf(conf, signer.key, signer.cert)
    container = _container(data)
    raw = canonical_json(content)
    container["content"] = base64.b64encode(raw).decode()
    assert isinstance(signer.key, ec.EllipticCurvePrivateKey)
    container["signature"]["value"] = base64.b64encode(  # type: ignore[index]
        signer.key.sign(raw, ec.ECDSA(hashes.SHA256()))
    ).decode()
    with pytest.raises(MalformedGlobalConf):
        verify_signed_globalconf(canonical_json(container), [anchor_ca.cert], NOW)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"format":"xgate-globalconf/1","format":"xgate-globalconf/1"}',
        b'{"version":NaN}',
        b"\xff\xfe{}",
        b"[" * 100_000,
        b"",
    ],
    ids=["duplicate key", "NaN", "not UTF-8", "deep nesting", "empty"],
)
def test_content_that_is_not_strict_json_is_refused(raw: bytes) -> None:
    with pytest.raises(MalformedGlobalConf):
        globalconf_from_json(raw)


def test_unknown_container_format_is_refused(conf: GlobalConf, signer: Signer, anchor_ca: Signer) -> None:
    container = _container(sign_globalconf(conf, signer.key, signer.cert))
    container["format"] = "xgate-signed-globalconf/0"
    with pytest.raises(MalformedGlobalConf, match="unknown format"):
        verify_signed_globalconf(canonical_json(container), [anchor_ca.cert], NOW)


_CODES = st.text(alphabet="ABCXYZabc0129'()+,-.=?", min_size=1, max_size=8).filter(
    lambda s: s not in (".", "..")
)


@settings(max_examples=60, deadline=None)
@given(
    members=st.dictionaries(
        st.tuples(_CODES, _CODES),
        st.tuples(st.text(min_size=1, max_size=20), st.sets(_CODES, max_size=3)),
        max_size=6,
    ),
    version=st.integers(min_value=1, max_value=2**53),
    micros=st.integers(min_value=0, max_value=999_999),
)
def test_any_membership_round_trips_and_indexes(
    members: dict[tuple[str, str], tuple[str, set[str]]], version: int, micros: int
) -> None:
    generated = NOW.replace(microsecond=micros)
    conf = GlobalConf(
        INSTANCE,
        version,
        generated,
        generated + DAY,
        members=tuple(Member(c, m, name, tuple(sorted(subs))) for (c, m), (name, subs) in members.items()),
    )
    assert globalconf_from_json(globalconf_to_json(conf)) == conf
    assert len(conf.clients()) == len(members) + sum(len(subs) for _, subs in members.values())
    for (member_class, member_code), (name, subs) in members.items():
        for sub in [None, *subs]:
            client = ClientId(INSTANCE, member_class, member_code, sub)
            assert conf.is_known(client) and conf.member_name(client) == name


# --- the anchor -------------------------------------------------------------------------------


def test_anchor_file_round_trip(tmp_path: Path, anchor_ca: Signer, rsa_signer: Signer) -> None:
    anchor = Anchor(INSTANCE, ("https://registry.dev.example/globalconf",), (anchor_ca.cert, rsa_signer.cert))
    save_anchor(tmp_path / "anchor.json", anchor)
    assert load_anchor(tmp_path / "anchor.json") == anchor
    parsed = json.loads(anchor_to_json(anchor))
    assert parsed["format"] == "xgate-globalconf-anchor/1"
    assert len(parsed["certificates"]) == 2
    parsed["certificates"] = []
    with pytest.raises(MalformedGlobalConf, match="at least one"):
        anchor_from_json(canonical_json(parsed))


# --- openssl as the independent verifier ------------------------------------------------------


@pytest.mark.skipif(shutil.which("jq") is None, reason="the documented extraction uses jq")
@pytest.mark.parametrize(
    "kind", ["ec-issued-by-anchor", "rsa-self-signed-anchor", "ec-anchor-is-a-signer-issued-by-another-ca"]
)
def test_openssl_verifies_as_documented(
    tmp_path: Path, conf: GlobalConf, anchor_ca: Signer, signer: Signer, rsa_signer: Signer, kind: str
) -> None:
    # The third is what `xgate central init` makes: the anchor holds the signing certificate,
    # issued by a CA that is not in the anchor (only -partial_chain lets openssl accept it).
    who, anchor_cert = {
        "ec-issued-by-anchor": (signer, anchor_ca.cert),
        "rsa-self-signed-anchor": (rsa_signer, rsa_signer.cert),
        "ec-anchor-is-a-signer-issued-by-another-ca": (signer, signer.cert),
    }[kind]
    (tmp_path / "globalconf.signed.json").write_bytes(sign_globalconf(conf, who.key, who.cert))
    (tmp_path / "anchor.pem").write_text(_pem(anchor_cert))

    def run(command: str) -> subprocess.CompletedProcess[str]:
        # The commands of docs/globalconf.md "Checking a configuration with openssl", verbatim.
        return subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, check=False
        )

    for step in (
        "jq -r .content globalconf.signed.json | base64 -d > content.json",
        "jq -r .signature.value globalconf.signed.json | base64 -d > sig.bin",
        "jq -r .signature.signer_certificate globalconf.signed.json > signer.pem",
        "openssl x509 -in signer.pem -pubkey -noout > pub.pem",
        "openssl verify -partial_chain -CAfile anchor.pem signer.pem",
    ):
        assert run(step).returncode == 0, step
    assert (tmp_path / "content.json").read_bytes() == globalconf_to_json(conf)

    verified = run("openssl dgst -sha256 -verify pub.pem -signature sig.bin content.json")
    assert verified.returncode == 0 and "Verified OK" in verified.stdout

    content = (tmp_path / "content.json").read_bytes()
    (tmp_path / "content.json").write_bytes(content.replace(b'"version":1', b'"version":7'))
    refused = run("openssl dgst -sha256 -verify pub.pem -signature sig.bin content.json")
    assert refused.returncode != 0 and "Verification failure" in refused.stdout


# --- the source -------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def anchor(anchor_ca: Signer) -> Anchor:
    return Anchor(INSTANCE, ("http://127.0.0.1/globalconf",), (anchor_ca.cert,))


async def test_file_source_refreshes_caches_and_refuses_rollback(
    tmp_path: Path, conf: GlobalConf, anchor_ca: Signer, signer: Signer, anchor: Anchor
) -> None:
    published, cache = tmp_path / "globalconf.signed.json", tmp_path / "cache" / "globalconf.json"
    cache.parent.mkdir()
    v1 = sign_globalconf(conf, signer.key, signer.cert)
    v2 = sign_globalconf(dataclasses.replace(conf, version=2), signer.key, signer.cert)
    source = GlobalConfSource(str(published), anchor, cache, clock=Clock(NOW))
    assert source.current is None and not source.is_valid(NOW)

    published.write_bytes(v2)
    assert (await source.refresh()).version == 2
    assert cache.read_bytes() == v2

    published.write_bytes(v1)
    with pytest.raises(GlobalConfRollback, match="older"):
        await source.refresh()
    same_version_other_content = dataclasses.replace(
        conf, version=2, settings=GlobalConfSettings(validity_seconds=60)
    )
    published.write_bytes(sign_globalconf(same_version_other_content, signer.key, signer.cert))
    with pytest.raises(GlobalConfRollback, match="published before"):
        await source.refresh()
    assert source.current is not None and source.current.version == 2
    assert isinstance(source.last_error, GlobalConfRollback)
    assert cache.read_bytes() == v2

    # The same content re-signed by a new key under the anchor is taken, and cached.
    resigner = issue(anchor_ca, "DEV central registry signer 2")
    resigned = sign_globalconf(dataclasses.replace(conf, version=2), resigner.key, resigner.cert)
    published.write_bytes(resigned)
    assert (await source.refresh()).version == 2
    assert cache.read_bytes() == resigned and source.last_error is None


async def test_cached_copy_survives_a_restart_and_keeps_rollback_protection(
    tmp_path: Path, conf: GlobalConf, signer: Signer, anchor: Anchor
) -> None:
    published, cache = tmp_path / "published.json", tmp_path / "cache.json"
    published.write_bytes(sign_globalconf(dataclasses.replace(conf, version=5), signer.key, signer.cert))
    await GlobalConfSource(str(published), anchor, cache, clock=Clock(NOW)).refresh()

    restarted = GlobalConfSource(str(published), anchor, cache, clock=Clock(NOW))
    loaded = restarted.load_cached()
    assert loaded is not None and loaded.version == 5 and restarted.current == loaded
    published.write_bytes(sign_globalconf(dataclasses.replace(conf, version=4), signer.key, signer.cert))
    with pytest.raises(GlobalConfRollback):
        await restarted.refresh()

    stranger = Anchor(INSTANCE, (), (self_signed("someone else").cert,))
    with pytest.raises(UntrustedGlobalConf):
        GlobalConfSource(str(published), stranger, cache).load_cached()
    assert GlobalConfSource(str(published), anchor, tmp_path / "none.json").load_cached() is None


async def test_validity_follows_the_clock(
    tmp_path: Path, conf: GlobalConf, signer: Signer, anchor: Anchor
) -> None:
    published = tmp_path / "published.json"
    published.write_bytes(sign_globalconf(conf, signer.key, signer.cert))
    clock = Clock(conf.expires_at + DAY)  # an expired copy is still adopted: it is the best there is
    source = GlobalConfSource(str(published), anchor, tmp_path / "cache.json", clock=clock)
    await source.refresh()
    assert source.current == conf
    assert source.is_valid(NOW) and not source.is_valid(conf.expires_at)


@dataclasses.dataclass
class Registry:
    """A stand-in for the central registry's distribution point on 127.0.0.1."""

    url: str
    body: bytes = b""
    status: int = 200
    delay: float = 0.0


@pytest.fixture
async def registry() -> AsyncIterator[Registry]:
    state = Registry(url="")

    async def serve(request: web.Request) -> web.Response:
        del request
        await asyncio.sleep(state.delay)
        return web.Response(body=state.body, status=state.status, content_type="application/json")

    app = web.Application()
    app.router.add_get("/globalconf", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    state.url = f"http://{host}:{port}/globalconf"
    try:
        yield state
    finally:
        await runner.cleanup()


async def test_http_source_keeps_the_last_good_copy_when_a_download_is_tampered(
    tmp_path: Path, registry: Registry, conf: GlobalConf, signer: Signer, anchor: Anchor
) -> None:
    cache = tmp_path / "cache.json"
    good = sign_globalconf(conf, signer.key, signer.cert)
    registry.body = good
    source = GlobalConfSource(registry.url, anchor, cache, clock=Clock(NOW))
    assert await source.refresh() == conf

    # A man in the middle points the agency's gateway at his own host.
    content = _content_of(sign_globalconf(dataclasses.replace(conf, version=2), signer.key, signer.cert))
    content["security_servers"][0]["address"] = "evil.example:5500"  # type: ignore[index]
    registry.body = _with_content(good, canonical_json(content))
    with pytest.raises(UntrustedGlobalConf):
        await source.refresh()
    assert source.current == conf and source.is_valid(NOW)
    assert cache.read_bytes() == good
    assert isinstance(source.last_error, UntrustedGlobalConf)

    registry.body = b"<html>captive portal</html>"
    with pytest.raises(MalformedGlobalConf):
        await source.refresh()
    assert source.current == conf and cache.read_bytes() == good


async def test_http_source_failures_are_unavailable(
    tmp_path: Path, registry: Registry, conf: GlobalConf, signer: Signer, anchor: Anchor
) -> None:
    good = sign_globalconf(conf, signer.key, signer.cert)
    registry.body = good
    registry.status = 404
    with pytest.raises(GlobalConfUnavailable, match="HTTP 404"):
        await GlobalConfSource(registry.url, anchor, tmp_path / "c.json").refresh()

    registry.status = 200
    small = GlobalConfSource(
        registry.url, anchor, tmp_path / "c.json", max_bytes=len(good) - 1, clock=Clock(NOW)
    )
    with pytest.raises(GlobalConfUnavailable, match="bytes"):
        await small.refresh()

    registry.delay = 0.5
    slow = GlobalConfSource(registry.url, anchor, tmp_path / "c.json", timeout_seconds=0.1, clock=Clock(NOW))
    with pytest.raises(GlobalConfUnavailable, match="Timeout"):
        await slow.refresh()
    assert not (tmp_path / "c.json").exists()

    with pytest.raises(GlobalConfUnavailable):
        await GlobalConfSource("http://127.0.0.1:9/globalconf", anchor, tmp_path / "c.json").refresh()
    with pytest.raises(ValueError, match="http"):
        GlobalConfSource("ftp://127.0.0.1/globalconf", anchor, tmp_path / "c.json")
