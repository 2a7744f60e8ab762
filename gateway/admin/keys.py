"""Operations on this gateway's keys: generating them, their CSRs, importing their certificates."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from pydantic import ConfigDict, Field, model_validator

from gateway.admin.context import TABLE, AdminContext, CertificateSummary, certificate_summary
from gateway.admin.roles import Permission as P
from gateway.crypto.certs import (
    certificate_to_pem,
    fingerprint_sha256,
    identifiers_of,
    load_certificate,
    member_uri,
    server_uri,
)
from gateway.crypto.keys import (
    KeyAlgorithm,
    KeyFileError,
    PrivateKey,
    create_csr,
    generate_key,
    load_private_key,
    save_private_key,
)
from gateway.globalconf.signed import format_time
from gateway.ids import ClientId, SecurityServerId
from gateway.serverconf.repository import KeyRecord, KeyUsage
from gateway.webapi import INTERNAL_ERROR, ApiError, Call, Outcome, invalid, not_found
from gateway.webapi.types import MEMBER_PATTERN, Answer, Body, MemberIdField, Params, Pem, RecordId

log = logging.getLogger(__name__)

KEYS_DIR: Final = "keys"
"""Under the node's data directory: where generated private keys are written."""
KEYS_DIR_MODE: Final = 0o700

KEY_STATUS_NEW: Final = "new"  # generated, no CSR yet (the repository's default)
KEY_STATUS_CSR: Final = "csr_created"  # a CSR was made; waiting for the CA's certificate
KEY_STATUS_CERTIFIED: Final = "certified"  # its certificate was imported

MAX_NAME_ATTRIBUTE_LENGTH: Final = 64
"""RFC 5280 Appendix A's upper bounds (ub-common-name and the others we offer are 64)."""
MAX_DNS_NAMES: Final = 100
"""A gateway answers on a few names; a hundred is a mistake."""


class KeyView(Answer):
    id: int
    usage: KeyUsage
    member_id: str | None = Field(description="The member a signing key signs for.")
    key_path: str = Field(description="Where the private key file is, mode 0600.")
    status: str = Field(json_schema_extra={"enum": [KEY_STATUS_NEW, KEY_STATUS_CSR, KEY_STATUS_CERTIFIED]})
    created_at: str = Field(json_schema_extra={"format": "date-time"})
    has_csr: bool
    certificate: CertificateSummary | None


class KeyList(Answer):
    keys: list[KeyView]


def _sign_needs_a_member(schema: dict[str, Any]) -> None:
    """In the document as in the check: a signing key names its member, an auth key none."""
    schema["properties"]["member_id"] = {"type": "string", "pattern": MEMBER_PATTERN}
    schema["oneOf"] = [
        {"properties": {"usage": {"enum": [KeyUsage.SIGN.value]}}, "required": ["member_id"]},
        {"properties": {"usage": {"enum": [KeyUsage.AUTH.value]}}, "not": {"required": ["member_id"]}},
    ]


class NewKey(Body):
    """`auth` for the gateway's TLS (no member_id), `sign` for one member's signatures."""

    model_config = ConfigDict(json_schema_extra=_sign_needs_a_member)
    usage: KeyUsage
    algorithm: KeyAlgorithm = KeyAlgorithm.EC
    member_id: MemberIdField | None = None

    @model_validator(mode="after")
    def _owner(self) -> NewKey:
        if self.usage is KeyUsage.SIGN and self.member_id is None:
            raise ValueError("a signing key signs for a member: give member_id")
        if self.usage is KeyUsage.AUTH and self.member_id is not None:
            raise ValueError("an authentication key belongs to the gateway: give no member_id")
        return self


NameAttribute = Annotated[str | None, Field(None, min_length=1, max_length=MAX_NAME_ATTRIBUTE_LENGTH)]


class CsrSubject(Body):
    """Subject fields; those left out are derived (CN, O and serialNumber from the owner)."""

    common_name: NameAttribute = None
    organization: NameAttribute = None
    organizational_unit: NameAttribute = None
    country: str | None = Field(None, pattern="^[A-Za-z]{2}$")
    serial_number: NameAttribute = None


class CsrRequest(Body):
    subject: CsrSubject | None = None
    dns_names: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9*][A-Za-z0-9\-.]{0,252}$")]] = Field(
        default_factory=list,
        max_length=MAX_DNS_NAMES,
        description="Host names for an auth key's certificate.",
    )


class Csr(Answer):
    key_id: int
    csr_pem: str


class KeyPath(Params):
    key_id: RecordId


class CertificateImport(Body):
    certificate_pem: Pem


def key_json(record: KeyRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "usage": record.usage.value,
        "member_id": record.member.to_text() if record.member else None,
        "key_path": record.key_path,
        "status": record.status,
        "created_at": format_time(record.created_at),
        "has_csr": record.csr_pem is not None,
        "certificate": certificate_summary(record.cert_pem) if record.cert_pem else None,
    }


@TABLE.read("/keys", "key.list", P.READ_CONFIGURATION, KeyList)
async def list_keys(ctx: AdminContext, call: Call[None, None]) -> Outcome:
    """List this gateway's keys and their certificates."""
    records = await asyncio.to_thread(ctx.repository.list_keys)
    return Outcome({"keys": [key_json(record) for record in records]})


def write_new_key(data_dir: Path, usage: KeyUsage, key: PrivateKey) -> Path:
    """Store a fresh key under DATA_DIR/keys, mode 0600 (crypto.keys), in a directory only we read."""
    directory = data_dir / KEYS_DIR
    directory.mkdir(mode=KEYS_DIR_MODE, parents=True, exist_ok=True)
    path = directory / f"{usage.value}-{secrets.token_hex(8)}.key"
    save_private_key(path, key)
    return path


def _generate_and_register(
    ctx: AdminContext, usage: KeyUsage, member: ClientId | None, algorithm: KeyAlgorithm
) -> KeyRecord:
    path = write_new_key(ctx.data_dir, usage, generate_key(algorithm))
    try:
        return ctx.repository.add_key(usage, str(path), member=member, status=KEY_STATUS_NEW)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


@TABLE.create("/keys", "key.generate", P.MANAGE_KEYS, KeyView)
async def generate_new_key(ctx: AdminContext, call: Call[None, NewKey]) -> Outcome:
    """Generate a key: `auth` for the gateway's TLS, `sign` for one member's signatures."""
    body = call.body
    member = body.member_id if body.member_id else None
    record = await asyncio.to_thread(_generate_and_register, ctx, body.usage, member, body.algorithm)
    details = {"usage": body.usage.value, "algorithm": body.algorithm.value, "member_id": body.member_id}
    return Outcome(key_json(record), 201, f"key {record.id}", details)


_SUBJECT_FIELDS: Final[Mapping[str, x509.ObjectIdentifier]] = {
    "common_name": NameOID.COMMON_NAME,
    "organization": NameOID.ORGANIZATION_NAME,
    "organizational_unit": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "country": NameOID.COUNTRY_NAME,
    "serial_number": NameOID.SERIAL_NUMBER,
}


def csr_subject(record: KeyRecord, server: SecurityServerId, given: Mapping[str, Any]) -> x509.Name:
    """The CSR's subject: the fields given, the rest derived as gateway/trust/pki.py issues them.

    Derived: CN = server code (auth) or member code (sign), O = member code, serialNumber =
    INSTANCE/CLASS/MEMBER. Only the SAN URI decides anything (crypto/certs.py); this is for people.
    """
    owner = record.member if record.member is not None else server.owner
    derived = {
        "common_name": server.server_code if record.usage is KeyUsage.AUTH else owner.member_code,
        "organization": owner.member_code,
        "serial_number": "/".join((owner.instance, owner.member_class, owner.member_code)),
    }
    unknown = set(given) - set(_SUBJECT_FIELDS)
    if unknown:
        raise invalid(f"unknown subject fields {sorted(unknown)}: use {sorted(_SUBJECT_FIELDS)}")
    values = {**derived, **{name: value for name, value in given.items() if value is not None}}
    try:
        return x509.Name(
            [
                x509.NameAttribute(oid, str(values[name]))
                for name, oid in _SUBJECT_FIELDS.items()
                if values.get(name)
            ]
        )
    except ValueError as exc:
        raise invalid(f"bad subject: {exc}") from None


def csr_alternative_names(
    record: KeyRecord, server: SecurityServerId, dns_names: Sequence[str]
) -> list[x509.GeneralName]:
    """The identity URI crypto/certs.py reads (server for auth keys, member for sign keys), plus DNS names."""
    if record.usage is KeyUsage.SIGN:
        assert record.member is not None  # the repository refuses a signing key without one
        return [x509.UniformResourceIdentifier(member_uri(record.member))]
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(server_uri(server))]
    return names + [x509.DNSName(name) for name in dns_names]


def _load_key(record: KeyRecord) -> PrivateKey:
    try:
        return load_private_key(Path(record.key_path))
    except (OSError, KeyFileError) as exc:
        raise ApiError(500, INTERNAL_ERROR, f"the file of key {record.id} cannot be read: {exc}") from None


def _make_csr(ctx: AdminContext, key_id: int, given: Mapping[str, Any], dns_names: Sequence[str]) -> str:
    record = ctx.repository.get_key(key_id)
    if record is None:
        raise not_found(f"no key {key_id}")
    subject = csr_subject(record, ctx.server_id, given)
    try:
        names = csr_alternative_names(record, ctx.server_id, dns_names)
        csr = create_csr(_load_key(record), subject, names)
    except ValueError as exc:
        raise invalid(str(exc)) from None
    pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    status = KEY_STATUS_CSR if record.status == KEY_STATUS_NEW else None
    ctx.repository.update_key(key_id, csr_pem=pem, status=status)
    return pem


@TABLE.change("POST", "/keys/{key_id}/csr", "key.csr", P.MANAGE_KEYS, Csr)
async def make_csr(ctx: AdminContext, call: Call[KeyPath, CsrRequest]) -> Outcome:
    """Make a PKCS#10 request for the key, to hand to the federation's CA."""
    key_id = call.params.key_id
    given = call.body.subject.model_dump(exclude_none=True) if call.body.subject else {}
    dns_names = call.body.dns_names
    pem = await asyncio.to_thread(_make_csr, ctx, key_id, given, dns_names)
    details = {"subject": given, "dns_names": dns_names}
    return Outcome({"key_id": key_id, "csr_pem": pem}, 200, f"key {key_id}", details)


def _public_key_der(key: Any) -> bytes:
    der: bytes = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return der


def _key_public_der(record: KeyRecord) -> bytes | None:
    """The key's public half: from its CSR when there is one (no need to open the private key)."""
    if record.csr_pem is not None:
        csr = x509.load_pem_x509_csr(record.csr_pem.encode())
        return _public_key_der(csr.public_key())
    try:
        return _public_key_der(load_private_key(Path(record.key_path)).public_key())
    except (OSError, KeyFileError):
        log.warning("key %s: file %s cannot be read", record.id, record.key_path)
        return None


def _check_identity(record: KeyRecord, certificate: x509.Certificate, server: SecurityServerId) -> None:
    """A certificate naming someone else than its key is for is refused (crypto/certs.py URIs)."""
    member, named_server = identifiers_of(certificate)
    if record.usage is KeyUsage.SIGN and member is not None and member != record.member:
        raise invalid(f"the certificate names member {member}, but key {record.id} signs for {record.member}")
    if record.usage is KeyUsage.AUTH and named_server is not None and named_server != server:
        raise invalid(f"the certificate names gateway {named_server}, not this gateway {server}")


def _import_certificate(ctx: AdminContext, certificate: x509.Certificate) -> KeyRecord:
    wanted = _public_key_der(certificate.public_key())
    for record in ctx.repository.list_keys():
        if _key_public_der(record) == wanted:
            _check_identity(record, certificate, ctx.server_id)
            pem = certificate_to_pem(certificate).decode()
            return ctx.repository.update_key(record.id, cert_pem=pem, status=KEY_STATUS_CERTIFIED)
    raise invalid("no key of this gateway has the certificate's public key")


@TABLE.change("POST", "/certificates", "certificate.import", P.MANAGE_KEYS, KeyView)
async def import_certificate(ctx: AdminContext, call: Call[None, CertificateImport]) -> Outcome:
    """Import a certificate the CA issued for one of our keys, found by its public key."""
    certificate = load_certificate(call.body.certificate_pem.encode())
    record = await asyncio.to_thread(_import_certificate, ctx, certificate)
    details = {"sha256": fingerprint_sha256(certificate), "subject": certificate.subject.rfc4514_string()}
    return Outcome(key_json(record), 200, f"key {record.id}", details)
