"""The development CA: certificates for a whole federation on one machine.

Production federations use real CAs by URL (DESIGN.md, "Trust services"); this one exists so
that tests, demos and the quickstart can run gateways, a TSA and an OCSP responder without
one. Certificate building is pure (`build_ca_certificate`, `issue_certificate`: keys and
values in, certificates out); the functions below the line keep a PKI directory:

    DIR/ca/ca.pem          the CA certificate (trust anchor to hand to gateways)
    DIR/ca/ca.key          its private key, mode 0600, optionally encrypted
    DIR/ca/settings.json   CA settings (common name, OCSP URL, key algorithm)
    DIR/issued/*.pem|.key  certificates and keys issued, unless written elsewhere
    DIR/index.jsonl        one JSON object per line, appended, never rewritten:
                           {"serial", "status": "good", "kind", "subject", "not_before",
                            "not_after", "fingerprint_sha256", "path", "issued_at"} per issue,
                           {"serial", "status": "revoked", "revoked_at", "reason"} per revocation.
                           Serials are lower-case hex; the last line for a serial wins. This is
                           what the OCSP responder answers from.

How a certificate names the gateway or member it belongs to is documented in
`gateway.crypto.certs` (SAN URIs `xroad:server:...` / `xroad:member:...`, authoritative).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.ocsp import OCSPCertStatus
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.crypto.certs import (
    fingerprint_sha256,
    load_certificate_file,
    member_uri,
    save_certificate,
    serial_hex,
    server_uri,
)
from gateway.crypto.keys import (
    KeyAlgorithm,
    PrivateKey,
    PublicKey,
    generate_key,
    load_private_key,
    save_private_key,
    signature_hash_for,
    write_file_atomically,
)
from gateway.ids import ClientId, SecurityServerId

DEFAULT_CA_NAME = "xgate development CA"
DEFAULT_TSA_NAME = "xgate development TSA"
DEFAULT_OCSP_NAME = "xgate development OCSP responder"
DEFAULT_CONFIGURATION_SIGNER_NAME = "xgate development configuration signer"

DEFAULT_CA_VALIDITY = dt.timedelta(days=3650)
"""Ten years: a development CA should outlive every checkout that uses it."""

DEFAULT_CERT_VALIDITY = dt.timedelta(days=730)
"""Two years: long enough not to surprise a demo, short enough that renewal gets exercised."""

CLOCK_SKEW_ALLOWANCE = dt.timedelta(minutes=5)
"""notBefore is backdated this much so a peer whose clock lags accepts a fresh certificate."""

SERIAL_BITS = 128
"""Random serials (CA/B Forum BR §7.1 asks for at least 64 bits of entropy; we take 128)."""

DEFAULT_DNS_NAMES: tuple[str, ...] = ("localhost",)
DEFAULT_IP_ADDRESSES: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = (
    ipaddress.ip_address("127.0.0.1"),
)

CA_DIR = "ca"
CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
SETTINGS_FILE = "settings.json"
ISSUED_DIR = "issued"
INDEX_FILE = "index.jsonl"

PUBLIC_FILE_MODE = 0o644

REVOCATION_REASONS: tuple[x509.ReasonFlags, ...] = tuple(
    reason for reason in x509.ReasonFlags if reason is not x509.ReasonFlags.remove_from_crl
)
"""RFC 5280 §5.3.1 reasons; removeFromCRL only means something in delta CRLs, which we never make."""


class PkiError(Exception):
    """The PKI directory cannot do what was asked (missing, already there, unknown serial...)."""


# --- settings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaSettings:
    """What a PKI directory remembers about its CA between commands."""

    common_name: str = DEFAULT_CA_NAME
    ocsp_url: str | None = None
    algorithm: KeyAlgorithm = KeyAlgorithm.EC

    def __post_init__(self) -> None:
        if self.ocsp_url is not None:
            _check_ocsp_url(self.ocsp_url)

    def to_json(self) -> bytes:
        data = {"common_name": self.common_name, "ocsp_url": self.ocsp_url, "algorithm": self.algorithm.value}
        return (json.dumps(data, indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> CaSettings:
        try:
            raw = json.loads(data)
            return cls(
                common_name=str(raw["common_name"]),
                ocsp_url=raw.get("ocsp_url"),
                algorithm=KeyAlgorithm(raw.get("algorithm", KeyAlgorithm.EC.value)),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise PkiError(f"bad CA settings: {exc}") from exc


def _check_ocsp_url(url: str) -> None:
    # RFC 6960 Appendix A: OCSP is carried over HTTP; the AIA accessLocation is that URL.
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"OCSP URL must be an http(s) URL with a host, not {url!r}")


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA ready to sign: its certificate, its key, its settings."""

    certificate: x509.Certificate
    key: PrivateKey
    settings: CaSettings


# --- certificate profiles -------------------------------------------------------------------


Extension = tuple[x509.ExtensionType, bool]
"""An extension value and whether it is critical."""


@dataclass(frozen=True)
class GatewayProfile:
    """A gateway's TLS authentication certificate: it is both server and client in mutual TLS."""

    server: SecurityServerId
    dns_names: tuple[str, ...] = DEFAULT_DNS_NAMES
    ip_addresses: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = DEFAULT_IP_ADDRESSES
    kind: ClassVar[str] = "gateway"

    def subject(self) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, self.server.server_code),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.server.member_code),
                x509.NameAttribute(NameOID.SERIAL_NUMBER, _member_path(self.server.owner)),
            ]
        )

    def extensions(self, public_key: PublicKey) -> list[Extension]:
        general_names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(server_uri(self.server))]
        general_names += [x509.DNSName(name) for name in self.dns_names]
        general_names += [x509.IPAddress(address) for address in self.ip_addresses]
        # RSA key exchange (TLS 1.2 RSA suites) encrypts to the key: keyEncipherment (RFC 5246 §7.4.2).
        is_rsa = isinstance(public_key, rsa.RSAPublicKey)
        return [
            (key_usage(digital_signature=True, key_encipherment=is_rsa), True),
            (
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                False,
            ),
            (x509.SubjectAlternativeName(general_names), False),
        ]

    def file_stem(self) -> str:
        return "gateway-" + _file_safe(self.server.to_text())


@dataclass(frozen=True)
class MemberSigningProfile:
    """A member's signing certificate: the key behind every message signature it makes."""

    member: ClientId
    name: str | None = None
    kind: ClassVar[str] = "member"

    def __post_init__(self) -> None:
        if self.member.subsystem_code is not None:
            raise ValueError("signing certificates are issued to members, not subsystems")

    def subject(self) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, self.member.member_code),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.name or self.member.member_code),
                x509.NameAttribute(NameOID.SERIAL_NUMBER, _member_path(self.member)),
            ]
        )

    def extensions(self, public_key: PublicKey) -> list[Extension]:
        del public_key
        return [
            (key_usage(digital_signature=True, content_commitment=True), True),
            (x509.SubjectAlternativeName([x509.UniformResourceIdentifier(member_uri(self.member))]), False),
        ]

    def file_stem(self) -> str:
        return "member-" + _file_safe(self.member.to_text())


@dataclass(frozen=True)
class _NamedProfile:
    """A certificate known by its common name alone: a trust service's, the configuration signer's."""

    name: str
    file_prefix: ClassVar[str]

    def subject(self) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.name)])

    def file_stem(self) -> str:
        return self.file_prefix + _file_safe(self.name)


@dataclass(frozen=True)
class TsaProfile(_NamedProfile):
    """An RFC 3161 time-stamping authority's certificate."""

    name: str = DEFAULT_TSA_NAME
    kind: ClassVar[str] = "tsa"
    file_prefix: ClassVar[str] = "tsa-"

    def extensions(self, public_key: PublicKey) -> list[Extension]:
        del public_key
        return [
            (key_usage(digital_signature=True, content_commitment=True), True),
            # RFC 3161 §2.3: the TSA's certificate MUST have exactly this EKU, marked critical.
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), True),
        ]


@dataclass(frozen=True)
class OcspResponderProfile(_NamedProfile):
    """A delegated OCSP responder's certificate (RFC 6960 §4.2.2.2)."""

    name: str = DEFAULT_OCSP_NAME
    kind: ClassVar[str] = "ocsp"
    file_prefix: ClassVar[str] = "ocsp-"

    def extensions(self, public_key: PublicKey) -> list[Extension]:
        del public_key
        return [
            (key_usage(digital_signature=True), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), False),
            # RFC 6960 §4.2.2.2.1: clients need not ask for the responder's own status.
            (x509.OCSPNoCheck(), False),
        ]


@dataclass(frozen=True)
class ConfigurationSignerProfile(_NamedProfile):
    """The federation's global-configuration signing certificate.

    Gateways pin this certificate itself in their anchor (not the CA that issued it), so no
    other certificate of the CA can sign a configuration; a rotation lists old and new.
    """

    name: str = DEFAULT_CONFIGURATION_SIGNER_NAME
    kind: ClassVar[str] = "configuration-signer"
    file_prefix: ClassVar[str] = "confsign-"

    def extensions(self, public_key: PublicKey) -> list[Extension]:
        del public_key
        return [(key_usage(digital_signature=True, content_commitment=True), True)]


CertificateProfile = (
    GatewayProfile | MemberSigningProfile | TsaProfile | OcspResponderProfile | ConfigurationSignerProfile
)


def key_usage(
    *,
    digital_signature: bool = False,
    content_commitment: bool = False,
    key_encipherment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    """An X.509 KeyUsage with the named bits set and every other bit clear."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=content_commitment,  # nonRepudiation's name since X.509 2005
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _member_path(member: ClientId) -> str:
    """`INSTANCE/CLASS/MEMBER` unencoded, for the subject's serialNumber (codes are PrintableString-safe)."""
    return "/".join((member.instance, member.member_class, member.member_code))


_FILE_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")


def _file_safe(text: str) -> str:
    return _FILE_UNSAFE.sub("_", text).strip("._") or "cert"


# --- building certificates (no I/O) ---------------------------------------------------------


def random_serial() -> int:
    """A positive random serial of SERIAL_BITS bits (RFC 5280 §4.1.2.2: positive, at most 20 octets)."""
    while True:
        serial = secrets.randbits(SERIAL_BITS)
        if serial:
            return serial


def build_ca_certificate(
    key: PrivateKey,
    common_name: str,
    now: dt.datetime,
    validity: dt.timedelta = DEFAULT_CA_VALIDITY,
) -> x509.Certificate:
    """A self-signed root: basicConstraints CA (critical), keyCertSign and cRLSign (critical)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    public_key = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(random_serial())
        .not_valid_before(now - CLOCK_SKEW_ALLOWANCE)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False)
    )
    return builder.sign(key, signature_hash_for(key))


def issue_certificate(
    ca: CertificateAuthority,
    profile: CertificateProfile,
    public_key: PublicKey,
    now: dt.datetime,
    validity: dt.timedelta = DEFAULT_CERT_VALIDITY,
) -> x509.Certificate:
    """Sign a certificate for `public_key` as `profile` describes.

    Every issued certificate gets basicConstraints cA=false, subject and authority key
    identifiers, a random serial, and an AIA OCSP pointer when the CA has an OCSP URL. Its
    validity never outlasts the CA's own.
    """
    not_after = min(now + validity, ca.certificate.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(profile.subject())
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)
        .serial_number(random_serial())
        .not_valid_before(now - CLOCK_SKEW_ALLOWANCE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(_authority_key_identifier(ca.certificate), critical=False)
    )
    for extension, critical in profile.extensions(public_key):
        builder = builder.add_extension(extension, critical=critical)
    if ca.settings.ocsp_url is not None:
        ocsp = x509.AccessDescription(
            x509.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ca.settings.ocsp_url)
        )
        builder = builder.add_extension(x509.AuthorityInformationAccess([ocsp]), critical=False)
    return builder.sign(ca.key, signature_hash_for(ca.key))


def _authority_key_identifier(ca_certificate: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """The CA's own SKI (RFC 5280 §4.2.1.1: AKI keyIdentifier matches the issuer's SKI)."""
    ski = ca_certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


# --- the index (no I/O) ---------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedCertificate:
    """One certificate as the index knows it, with its current status."""

    serial: int
    kind: str
    subject: str
    not_after: dt.datetime
    fingerprint_sha256: str
    path: str | None
    status: OCSPCertStatus = OCSPCertStatus.GOOD
    revoked_at: dt.datetime | None = None
    reason: x509.ReasonFlags | None = None


@dataclass(frozen=True)
class RevocationStatus:
    """What an OCSP responder says about a serial (RFC 6960 §2.2: good, revoked or unknown)."""

    status: OCSPCertStatus
    revoked_at: dt.datetime | None = None
    reason: x509.ReasonFlags | None = None


_READABLE_ATTRIBUTE_NAMES = {NameOID.SERIAL_NUMBER: "serialNumber"}
"""RFC 4514 has no short name for serialNumber; without this it prints as 2.5.4.5."""


def issued_record(
    certificate: x509.Certificate, kind: str, path: Path | None, now: dt.datetime
) -> dict[str, Any]:
    """The index line for a newly issued certificate."""
    return {
        "serial": serial_hex(certificate),
        "status": "good",
        "kind": kind,
        "subject": certificate.subject.rfc4514_string(_READABLE_ATTRIBUTE_NAMES),
        "not_before": certificate.not_valid_before_utc.isoformat(),
        "not_after": certificate.not_valid_after_utc.isoformat(),
        "fingerprint_sha256": fingerprint_sha256(certificate),
        "path": None if path is None else str(path),
        "issued_at": now.isoformat(),
    }


def revocation_record(serial: int, reason: x509.ReasonFlags, at: dt.datetime) -> dict[str, Any]:
    """The index line for a revocation."""
    return {
        "serial": format(serial, "x"),
        "status": "revoked",
        "revoked_at": at.astimezone(dt.UTC).isoformat(),
        "reason": reason.value,
    }


def fold_index(lines: Iterable[str]) -> dict[int, IssuedCertificate]:
    """Every certificate the index knows, by serial, with the status its last line gives."""
    known: dict[int, IssuedCertificate] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            serial = int(record["serial"], 16)
            if record["status"] == "good":
                known[serial] = IssuedCertificate(
                    serial=serial,
                    kind=record["kind"],
                    subject=record["subject"],
                    not_after=dt.datetime.fromisoformat(record["not_after"]),
                    fingerprint_sha256=record["fingerprint_sha256"],
                    path=record.get("path"),
                )
            elif record["status"] == "revoked" and serial in known:
                known[serial] = _revoked(known[serial], record)
            else:
                raise ValueError(f"unexpected status {record['status']!r} or unknown serial")
        except (ValueError, KeyError, TypeError) as exc:
            raise PkiError(f"{INDEX_FILE} line {number}: {exc}") from exc
    return known


def _revoked(issued: IssuedCertificate, record: dict[str, Any]) -> IssuedCertificate:
    return replace(
        issued,
        status=OCSPCertStatus.REVOKED,
        revoked_at=dt.datetime.fromisoformat(record["revoked_at"]),
        reason=x509.ReasonFlags(record["reason"]),
    )


# --- the PKI directory (I/O) ----------------------------------------------------------------


@dataclass(frozen=True)
class IssuedFiles:
    """What `issue` wrote."""

    certificate: x509.Certificate
    certificate_path: Path
    key_path: Path


def ca_certificate_path(pki_dir: Path) -> Path:
    return Path(pki_dir) / CA_DIR / CA_CERT_FILE


def ca_key_path(pki_dir: Path) -> Path:
    return Path(pki_dir) / CA_DIR / CA_KEY_FILE


def init_pki(
    pki_dir: Path,
    *,
    settings: CaSettings | None = None,
    passphrase: bytes | None = None,
    validity: dt.timedelta = DEFAULT_CA_VALIDITY,
    now: dt.datetime | None = None,
) -> CertificateAuthority:
    """Create a new CA in `pki_dir`; refuses a directory that already holds one."""
    pki_dir = Path(pki_dir)
    if ca_key_path(pki_dir).exists() or ca_certificate_path(pki_dir).exists():
        raise PkiError(f"{pki_dir} already holds a CA; remove {pki_dir / CA_DIR} to start over")
    settings = settings or CaSettings()
    now = now or dt.datetime.now(dt.UTC)
    key = generate_key(settings.algorithm)
    certificate = build_ca_certificate(key, settings.common_name, now, validity)
    (pki_dir / CA_DIR).mkdir(parents=True, exist_ok=True)
    (pki_dir / ISSUED_DIR).mkdir(exist_ok=True)
    save_private_key(ca_key_path(pki_dir), key, passphrase)
    save_certificate(ca_certificate_path(pki_dir), certificate)
    write_file_atomically(pki_dir / CA_DIR / SETTINGS_FILE, settings.to_json(), PUBLIC_FILE_MODE)
    return CertificateAuthority(certificate, key, settings)


def load_settings(pki_dir: Path) -> CaSettings:
    path = Path(pki_dir) / CA_DIR / SETTINGS_FILE
    if not path.exists():
        raise PkiError(
            f"{pki_dir} is not a PKI directory (no {CA_DIR}/{SETTINGS_FILE}): run `xgate pki init`"
        )
    return CaSettings.from_json(path.read_bytes())


def load_ca(pki_dir: Path, passphrase: bytes | None = None) -> CertificateAuthority:
    """The CA of `pki_dir`; raises keys.PassphraseRequired when its key is encrypted and none given."""
    settings = load_settings(pki_dir)
    certificate = load_certificate_file(ca_certificate_path(pki_dir))
    key = load_private_key(ca_key_path(pki_dir), passphrase)
    if key.public_key() != certificate.public_key():
        raise PkiError(f"{ca_key_path(pki_dir)} is not the key of {ca_certificate_path(pki_dir)}")
    return CertificateAuthority(certificate, key, settings)


def issue(
    pki_dir: Path,
    ca: CertificateAuthority,
    profile: CertificateProfile,
    *,
    algorithm: KeyAlgorithm = KeyAlgorithm.EC,
    out_prefix: Path | None = None,
    passphrase: bytes | None = None,
    validity: dt.timedelta = DEFAULT_CERT_VALIDITY,
    overwrite: bool = False,
    now: dt.datetime | None = None,
) -> IssuedFiles:
    """Generate a key, issue its certificate, write PREFIX.pem and PREFIX.key, record it in the index.

    PREFIX defaults to DIR/issued/<kind>-<identifier>. Existing files are kept unless `overwrite`.
    """
    pki_dir = Path(pki_dir)
    prefix = Path(out_prefix) if out_prefix is not None else pki_dir / ISSUED_DIR / profile.file_stem()
    certificate_path = prefix.with_name(prefix.name + ".pem")
    key_path = prefix.with_name(prefix.name + ".key")
    if not overwrite:
        for path in (certificate_path, key_path):
            if path.exists():
                raise PkiError(f"{path} exists; choose another output prefix or overwrite it")
    now = now or dt.datetime.now(dt.UTC)
    key = generate_key(algorithm)
    certificate = issue_certificate(ca, profile, key.public_key(), now, validity)
    certificate_path.parent.mkdir(parents=True, exist_ok=True)
    save_private_key(key_path, key, passphrase)
    save_certificate(certificate_path, certificate)
    _append_index(pki_dir, issued_record(certificate, profile.kind, certificate_path.resolve(), now))
    return IssuedFiles(certificate, certificate_path, key_path)


def read_index(pki_dir: Path) -> dict[int, IssuedCertificate]:
    """Every certificate issued from `pki_dir`, by serial, with its current status."""
    path = Path(pki_dir) / INDEX_FILE
    if not path.exists():
        load_settings(pki_dir)  # a clear error when this is no PKI directory at all
        return {}
    return fold_index(path.read_text(encoding="utf-8").splitlines())


def status_of(pki_dir: Path, serial: int) -> RevocationStatus:
    """The OCSP answer for `serial`: unknown when this CA never issued it."""
    issued = read_index(pki_dir).get(serial)
    if issued is None:
        return RevocationStatus(OCSPCertStatus.UNKNOWN)
    return RevocationStatus(issued.status, issued.revoked_at, issued.reason)


def revoke(
    pki_dir: Path,
    serial: int,
    reason: x509.ReasonFlags = x509.ReasonFlags.unspecified,
    *,
    at: dt.datetime | None = None,
) -> IssuedCertificate:
    """Record that `serial` is revoked from `at` (default now); returns the revoked entry."""
    if reason not in REVOCATION_REASONS:
        raise PkiError(f"revocation reason {reason.value} is not allowed here")
    issued = read_index(pki_dir).get(serial)
    if issued is None:
        raise PkiError(f"serial {serial:x} was not issued by the CA in {pki_dir}")
    if issued.status is OCSPCertStatus.REVOKED:
        raise PkiError(f"serial {serial:x} is already revoked")
    record = revocation_record(serial, reason, at or dt.datetime.now(dt.UTC))
    _append_index(pki_dir, record)
    return _revoked(issued, record)


def revoke_certificate_file(
    pki_dir: Path, certificate_path: Path, reason: x509.ReasonFlags = x509.ReasonFlags.unspecified
) -> IssuedCertificate:
    """Revoke the certificate stored in `certificate_path` (it must come from this CA)."""
    certificate = load_certificate_file(certificate_path)
    ca_certificate = load_certificate_file(ca_certificate_path(pki_dir))
    if certificate.issuer != ca_certificate.subject:
        raise PkiError(f"{certificate_path} was not issued by the CA in {pki_dir}")
    return revoke(pki_dir, certificate.serial_number, reason)


def _append_index(pki_dir: Path, record: dict[str, Any]) -> None:
    """Append one line in one write, so concurrent appenders never interleave within a line."""
    line = (json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n").encode()
    fd = os.open(Path(pki_dir) / INDEX_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PUBLIC_FILE_MODE)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def parse_serial(text: str) -> int:
    """A serial as `openssl x509 -serial` prints it (hex, optional `serial=`, `0x` or colons)."""
    cleaned = text.strip().lower().removeprefix("serial=").removeprefix("0x").replace(":", "")
    try:
        serial = int(cleaned, 16)
    except ValueError as exc:
        raise PkiError(f"not a hexadecimal serial: {text!r}") from exc
    if serial <= 0:
        raise PkiError("serials are positive")
    return serial
