"""Registration requests: what a gateway asks of the central registry, signed, as bytes.

Sans-IO: values and keys in, bytes out (:func:`build_signed_request`); bytes, trusted CA
certificates and a time in, a checked request out (:func:`verify_signed_request`). The
registry's public endpoint (`POST /requests`) needs no API key because these signatures say
who asks (docs/central.md "Registration requests"):

* every request is signed with the signing key of the member that answers for it (the
  gateway's owner, or the member whose subsystem or membership is to go); the certificate
  must chain to a CA the registry trusts and name that member in its SAN URI
  (`gateway.crypto.certs`), so an agency cannot speak for another;
* a request registering an authentication certificate is signed with that certificate's
  key as well (proof of possession: nobody registers a certificate they do not hold);
* a request to host a subsystem is signed by the subsystem's member as well, with its
  signing key (its consent: no gateway hosts another member's subsystem unasked). X-Road's
  client registration request carries the same two signatures, the security server
  owner's and the client member's; for the owner's own subsystems one key signs as both;
* the content carries its creation time and a random nonce; the registry refuses stale
  requests here and replays by the nonce (the repository keeps it unique).

The content is canonical JSON (`gateway.globalconf.signed.canonical_json`), parsed strictly:
a missing, an unknown or a mistyped field refuses the request.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NoReturn
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.crypto.certs import (
    CertificateError,
    load_single_pem_certificate,
    member_of,
    server_of,
    verify_chain,
)
from gateway.crypto.keys import PrivateKey
from gateway.globalconf.signed import canonical_json, format_time, sign_content, verify_content_signature
from gateway.ids import ClientId, IdentifierError, SecurityServerId

REQUEST_FORMAT: Final = "xgate-registration-request/1"
SIGNED_REQUEST_FORMAT: Final = "xgate-signed-registration-request/1"

MAX_SIGNED_REQUEST_BYTES: Final = 256 * 1024
"""Three certificates, three signatures and a few identifiers fit in a few KiB; more is an attack."""

MAX_REQUEST_AGE: Final = dt.timedelta(minutes=10)
"""A signed request is submitted right after it is made; an older one is a replay or stuck."""

CLOCK_SKEW: Final = dt.timedelta(minutes=5)
"""How far in the future a gateway's clock may put a request (the same slack as the dev PKI's)."""

NONCE_BYTES: Final = 16
"""128 random bits: two gateways never pick the same nonce by chance."""

MAX_NONCE_LENGTH: Final = 64  # the registry's column; hex of up to 32 bytes

MAX_PORT: Final = 65535


class RequestType(enum.StrEnum):
    """What a request asks for; X-Road's management request types, in xgate's words."""

    AUTH_CERT_REGISTRATION = "auth_cert_registration"  # a new gateway, or a new/replacing TLS cert
    CLIENT_REGISTRATION = "client_registration"  # a gateway will host a subsystem
    ADDRESS_CHANGE = "address_change"  # a gateway moved
    CLIENT_DELETION = "client_deletion"  # a gateway stops hosting a subsystem
    SERVER_DELETION = "server_deletion"  # a gateway leaves the federation
    SUBSYSTEM_DELETION = "subsystem_deletion"  # a member retires one of its subsystems
    MEMBER_DELETION = "member_deletion"  # a member leaves the federation


class SignatureRole(enum.StrEnum):
    MEMBER = "member"  # the answering member's signing key
    AUTH = "auth"  # the key of the authentication certificate being registered
    CLIENT = "client"  # the signing key of the member whose subsystem is to be hosted (its consent)


def required_roles(request_type: RequestType) -> frozenset[SignatureRole]:
    """The signatures a request of this type carries, exactly."""
    if request_type is RequestType.AUTH_CERT_REGISTRATION:
        return frozenset({SignatureRole.MEMBER, SignatureRole.AUTH})
    if request_type is RequestType.CLIENT_REGISTRATION:
        return frozenset({SignatureRole.MEMBER, SignatureRole.CLIENT})
    return frozenset({SignatureRole.MEMBER})


_COMMON_FIELDS: Final = ("format", "type", "member", "created_at", "nonce")
_TYPE_FIELDS: Final[Mapping[RequestType, tuple[str, ...]]] = {
    RequestType.AUTH_CERT_REGISTRATION: ("server", "address", "auth_certificate", "replaces"),
    RequestType.CLIENT_REGISTRATION: ("server", "client"),
    RequestType.ADDRESS_CHANGE: ("server", "address"),
    RequestType.CLIENT_DELETION: ("server", "client"),
    RequestType.SERVER_DELETION: ("server",),
    RequestType.SUBSYSTEM_DELETION: ("client",),
    RequestType.MEMBER_DELETION: (),
}
"""Exactly the fields each type carries besides the common ones; others are refused."""

_SERVER_TYPES: Final = frozenset(t for t, fields in _TYPE_FIELDS.items() if "server" in fields)


class RequestRefused(Exception):
    """A registration request the registry will not take; the message says why, for the gateway."""


class MalformedRequest(RequestRefused):
    """The bytes break the format, or the content contradicts itself."""


class UntrustedRequest(RequestRefused):
    """A signature does not verify, a certificate is not trusted, names someone else, or is stale."""


def _fail(message: str) -> NoReturn:
    raise MalformedRequest(message)


def check_address(address: str) -> str:
    """`host:port` of a gateway's external interface (IPv6 in brackets), as the configuration wants."""
    try:
        parts = urlsplit(f"//{address}")
        port = parts.port
    except ValueError as exc:
        raise MalformedRequest(f"address {address!r} is not host:port ({exc})") from exc
    if not parts.hostname or port is None or not 0 < port <= MAX_PORT or parts.netloc != address:
        raise MalformedRequest(f"address {address!r} is not host:port")
    if "@" in address:
        raise MalformedRequest(f"address {address!r} is not host:port")
    return address


@dataclass(frozen=True)
class RegistrationRequest:
    """One request's content. `member` answers for it and signs it (module docstring)."""

    type: RequestType
    member: ClientId
    created_at: dt.datetime
    nonce: str
    server: SecurityServerId | None = None
    address: str | None = None
    auth_certificate: str | None = None  # PEM
    replaces: str | None = None  # SHA-256 (hex) of the authentication certificate to drop
    client: ClientId | None = None

    def __post_init__(self) -> None:
        expected = set(_TYPE_FIELDS[self.type])
        for name in ("server", "address", "auth_certificate", "client"):
            present = getattr(self, name) is not None
            if present != (name in expected):
                _fail(f"{self.type} {'needs' if name in expected else 'takes no'} {name}")
        if self.replaces is not None and self.type is not RequestType.AUTH_CERT_REGISTRATION:
            _fail(f"{self.type} takes no replaces")
        if self.member.subsystem_code is not None:
            _fail("member must be a member, not a subsystem")
        if self.created_at.tzinfo is None:
            _fail("created_at must be timezone-aware")
        if not self.nonce or len(self.nonce) > MAX_NONCE_LENGTH or not self.nonce.isascii():
            _fail(f"nonce must be 1 to {MAX_NONCE_LENGTH} ASCII characters")
        if self.type in _SERVER_TYPES and (self.server is None or self.server.owner != self.member):
            _fail("a request about a gateway is made by the gateway's owner member")
        if self.client is not None:
            if self.client.subsystem_code is None:
                _fail("client must be a subsystem")
            if self.client.instance != self.member.instance:
                _fail("client belongs to another instance")
        if self.type is RequestType.SUBSYSTEM_DELETION and self.client and self.client.member != self.member:
            _fail("a subsystem is retired by its own member")
        if self.address is not None:
            check_address(self.address)
        if self.auth_certificate is not None:
            load_single_certificate(self.auth_certificate, "auth_certificate")
        if self.replaces is not None and (len(self.replaces) != 64 or not _is_hex(self.replaces)):
            _fail("replaces must be a SHA-256 fingerprint in hex")

    @property
    def instance(self) -> str:
        return self.member.instance


def new_request(
    request_type: RequestType, member: ClientId, now: dt.datetime, **fields: Any
) -> RegistrationRequest:
    """A request with a fresh random nonce, created at `now`."""
    return RegistrationRequest(request_type, member, now, secrets.token_hex(NONCE_BYTES), **fields)


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return text == text.lower()


def load_single_certificate(pem: str, what: str) -> x509.Certificate:
    try:
        return load_single_pem_certificate(pem)
    except ValueError as exc:
        raise MalformedRequest(f"{what}: {exc}") from exc


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


# --- content ----------------------------------------------------------------------------------


def request_to_json(request: RegistrationRequest) -> bytes:
    """The content bytes that get signed."""
    optional: dict[str, Any] = {
        "server": request.server.to_text() if request.server else None,
        "address": request.address,
        "auth_certificate": request.auth_certificate,
        "replaces": request.replaces,
        "client": request.client.to_text() if request.client else None,
    }
    content: dict[str, Any] = {
        "format": REQUEST_FORMAT,
        "type": request.type.value,
        "member": request.member.to_text(),
        "created_at": format_time(request.created_at),
        "nonce": request.nonce,
    }
    content.update({name: optional[name] for name in _TYPE_FIELDS[request.type]})
    return canonical_json(content)


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        _fail("duplicate key in a JSON object")
    return result


def _refuse_constant(name: str) -> NoReturn:
    _fail(f"{name} is not JSON")


def _loads_object(data: bytes, where: str) -> dict[str, Any]:
    """RFC 8259 JSON in UTF-8 (§8.1) without the duplicate keys it leaves undefined (§4): an object."""
    try:
        value = json.loads(
            data.decode("utf-8"), object_pairs_hook=_refuse_duplicates, parse_constant=_refuse_constant
        )
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise MalformedRequest(f"{where}: not JSON ({type(exc).__name__}: {exc})") from exc
    if not isinstance(value, dict):
        _fail(f"{where}: expected a JSON object")
    return value


def _exact_keys(value: object, where: str, keys: Sequence[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        _fail(f"{where}: expected a JSON object")
    missing = sorted(set(keys) - value.keys())
    unknown = sorted(value.keys() - set(keys))
    if missing:
        _fail(f"{where}: missing field(s) {', '.join(missing)}")
    if unknown:
        _fail(f"{where}: unknown field(s) {', '.join(unknown)}")
    return value


def _text(value: dict[str, Any], key: str, where: str) -> str:
    text = value[key]
    if not isinstance(text, str):
        _fail(f"{where}.{key}: expected a string")
    return text


def _time(text: str, where: str) -> dt.datetime:
    # The one spelling format_time writes: RFC 3339 UTC with "Z" (docs/globalconf.md).
    if not text.endswith("Z"):
        _fail(f"{where}: {text!r} is not an RFC 3339 UTC time")
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise MalformedRequest(f"{where}: {exc}") from exc


def request_from_json(content: bytes) -> RegistrationRequest:
    """Parse content bytes strictly; MalformedRequest otherwise."""
    probe = _loads_object(content, "content")
    if probe.get("format") != REQUEST_FORMAT:
        _fail(f"unknown format {probe.get('format')!r}, expected {REQUEST_FORMAT!r}")
    try:
        request_type = RequestType(str(probe.get("type")))
    except ValueError:
        _fail(f"content.type: unknown request type {probe.get('type')!r}")
    value = _exact_keys(probe, "content", (*_COMMON_FIELDS, *_TYPE_FIELDS[request_type]))
    replaces = value.get("replaces")
    if replaces is not None and not isinstance(replaces, str):
        _fail("content.replaces: expected a string or null")
    try:
        return RegistrationRequest(
            type=request_type,
            member=ClientId.from_text(_text(value, "member", "content")),
            created_at=_time(_text(value, "created_at", "content"), "content.created_at"),
            nonce=_text(value, "nonce", "content"),
            server=SecurityServerId.from_text(_text(value, "server", "content"))
            if "server" in value
            else None,
            address=_text(value, "address", "content") if "address" in value else None,
            auth_certificate=_text(value, "auth_certificate", "content")
            if "auth_certificate" in value
            else None,
            replaces=replaces,
            client=ClientId.from_text(_text(value, "client", "content")) if "client" in value else None,
        )
    except IdentifierError as exc:
        raise MalformedRequest(f"content: {exc.message}") from exc


# --- signatures -------------------------------------------------------------------------------


def _check_signature(
    certificate: x509.Certificate, algorithm: str, value: bytes, data: bytes, what: str
) -> None:
    """The same algorithms as the global configuration's (RFC 5758 §3.2, RFC 4055 §5)."""
    try:
        verify_content_signature(certificate, algorithm, value, data)
    except ValueError as exc:
        raise UntrustedRequest(f"{what}: {exc}") from exc


def _matches(key: PrivateKey, certificate: x509.Certificate) -> bool:
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(*spki) == certificate.public_key().public_bytes(*spki)


def build_signed_request(
    request: RegistrationRequest,
    sign_key: PrivateKey,
    sign_cert: x509.Certificate,
    *,
    auth_key: PrivateKey | None = None,
    client_key: PrivateKey | None = None,
    client_cert: x509.Certificate | None = None,
) -> bytes:
    """The signed container: the member's signature; the auth key's when registering a
    certificate; the subsystem's member's (`client_key`, `client_cert`) when asking to host it."""
    if not _matches(sign_key, sign_cert):
        raise ValueError("the signing certificate is not for the signing key")
    roles = required_roles(request.type)
    needs_auth = SignatureRole.AUTH in roles
    if needs_auth != (auth_key is not None):
        raise ValueError(f"{request.type} {'needs' if needs_auth else 'takes no'} auth_key")
    needs_client = SignatureRole.CLIENT in roles
    if needs_client != (client_key is not None) or needs_client != (client_cert is not None):
        need = "needs" if needs_client else "takes no"
        raise ValueError(f"{request.type} {need} client_key and client_cert")
    content = request_to_json(request)
    signers: list[tuple[SignatureRole, PrivateKey, x509.Certificate]] = [
        (SignatureRole.MEMBER, sign_key, sign_cert)
    ]
    if auth_key is not None and request.auth_certificate is not None:
        auth_cert = load_single_certificate(request.auth_certificate, "auth_certificate")
        if not _matches(auth_key, auth_cert):
            raise ValueError("the authentication certificate is not for auth_key")
        signers.append((SignatureRole.AUTH, auth_key, auth_cert))
    if client_key is not None and client_cert is not None:
        if not _matches(client_key, client_cert):
            raise ValueError("the client member's certificate is not for client_key")
        signers.append((SignatureRole.CLIENT, client_key, client_cert))
    signatures = []
    for role, key, certificate in signers:
        algorithm, value = sign_content(key, content)
        signatures.append(
            {
                "role": role.value,
                "algorithm": algorithm,
                "value": base64.b64encode(value).decode("ascii"),
                "certificate": _pem(certificate),
            }
        )
    return canonical_json(
        {
            "format": SIGNED_REQUEST_FORMAT,
            "content": base64.b64encode(content).decode("ascii"),
            "signatures": signatures,
        }
    )


@dataclass(frozen=True)
class VerifiedRequest:
    """A request whose signatures hold, with the certificate of the member that signed it, and
    for a hosting request the certificate of the subsystem's member that consented."""

    request: RegistrationRequest
    member_certificate: x509.Certificate
    client_certificate: x509.Certificate | None = None


@dataclass(frozen=True)
class _Signature:
    algorithm: str
    value: bytes
    certificate: x509.Certificate


def _b64(value: dict[str, Any], key: str, where: str) -> bytes:
    try:
        return base64.b64decode(_text(value, key, where), validate=True)
    except binascii.Error as exc:
        raise MalformedRequest(f"{where}.{key}: not base64 ({exc})") from exc


def _read_container(data: bytes) -> tuple[bytes, dict[SignatureRole, _Signature]]:
    if len(data) > MAX_SIGNED_REQUEST_BYTES:
        _fail(f"a signed request is at most {MAX_SIGNED_REQUEST_BYTES} bytes")
    container = _exact_keys(_loads_object(data, "request"), "request", ("format", "content", "signatures"))
    if _text(container, "format", "request") != SIGNED_REQUEST_FORMAT:
        _fail(f"unknown format {container['format']!r}, expected {SIGNED_REQUEST_FORMAT!r}")
    content = _b64(container, "content", "request")
    raw = container["signatures"]
    if not isinstance(raw, list):
        _fail("request.signatures: expected an array")
    signatures: dict[SignatureRole, _Signature] = {}
    for index, item in enumerate(raw):
        where = f"request.signatures[{index}]"
        fields = _exact_keys(item, where, ("role", "algorithm", "value", "certificate"))
        try:
            role = SignatureRole(fields["role"])
        except ValueError:
            _fail(f"{where}.role: unknown role {fields['role']!r}")
        if role in signatures:
            _fail(f"two {role} signatures")
        signatures[role] = _Signature(
            _text(fields, "algorithm", where),
            _b64(fields, "value", where),
            load_single_certificate(_text(fields, "certificate", where), f"{where}.certificate"),
        )
    return content, signatures


def read_signed_request(data: bytes) -> RegistrationRequest:
    """The content of a signed request, without checking its signatures (for stored, verified ones)."""
    content, _ = _read_container(data)
    return request_from_json(content)


def signature_roles(data: bytes) -> frozenset[SignatureRole]:
    """Who signed a stored, verified request: the registry checks consent again before applying it."""
    _, signatures = _read_container(data)
    return frozenset(signatures)


def missing_consent(request: RegistrationRequest, roles: frozenset[SignatureRole]) -> str | None:
    """Why a hosting request cannot be applied without its subsystem's member's signature, or None."""
    if request.type is not RequestType.CLIENT_REGISTRATION or SignatureRole.CLIENT in roles:
        return None
    client = request.client.to_text() if request.client else "the subsystem"
    member = request.client.member.to_text() if request.client else "its member"
    return (
        f"hosting {client} needs the consent of its member {member}: the request must also be "
        f"signed with {member}'s signing key (signature role {SignatureRole.CLIENT.value!r})"
    )


def verify_signed_request(
    data: bytes,
    trusted_cas: Sequence[x509.Certificate],
    now: dt.datetime,
    *,
    instance: str,
) -> VerifiedRequest:
    """The request inside `data`, if it is fresh, for `instance`, and every signature it needs holds.

    Raises MalformedRequest or UntrustedRequest. Whether the registry's state allows it
    (the member is registered, the server exists...) is the repository's question.
    """
    content, signatures = _read_container(data)
    request = request_from_json(content)
    if request.instance != instance:
        raise UntrustedRequest(
            f"the request is for instance {request.instance!r}, this registry is {instance!r}"
        )
    if request.created_at < now - MAX_REQUEST_AGE:
        raise UntrustedRequest(f"the request was made at {format_time(request.created_at)}: too long ago")
    if request.created_at > now + CLOCK_SKEW:
        raise UntrustedRequest(f"the request was made at {format_time(request.created_at)}: in the future")

    expected = required_roles(request.type)
    consent = missing_consent(request, frozenset(signatures))
    if consent is not None:
        raise UntrustedRequest(consent)
    if set(signatures) != expected:
        roles = ", ".join(sorted(role.value for role in expected))
        raise UntrustedRequest(f"a {request.type} request is signed by exactly: {roles}")

    member_signature = signatures[SignatureRole.MEMBER]
    _check_trusted(member_signature.certificate, trusted_cas, now, "member signing certificate")
    _check_names_member(member_signature.certificate, request.member)
    _check_usage(member_signature.certificate, "member signing certificate")
    _check_signature(
        member_signature.certificate,
        member_signature.algorithm,
        member_signature.value,
        content,
        "member signature",
    )
    if request.type is RequestType.AUTH_CERT_REGISTRATION and request.auth_certificate and request.server:
        auth_signature = signatures[SignatureRole.AUTH]
        auth_certificate = load_single_certificate(request.auth_certificate, "auth_certificate")
        if auth_signature.certificate != auth_certificate:
            raise UntrustedRequest("the auth signature is not made with the certificate being registered")
        _check_trusted(auth_certificate, trusted_cas, now, "authentication certificate")
        _check_names_server(auth_certificate, request.server)
        _check_usage(auth_certificate, "authentication certificate")
        _check_signature(
            auth_certificate, auth_signature.algorithm, auth_signature.value, content, "auth signature"
        )
    client_certificate = None
    if request.type is RequestType.CLIENT_REGISTRATION and request.client:
        client_certificate = _check_consent(
            signatures[SignatureRole.CLIENT], request.client, content, trusted_cas, now
        )
    return VerifiedRequest(request, member_signature.certificate, client_certificate)


def _check_consent(
    signature: _Signature,
    client: ClientId,
    content: bytes,
    trusted_cas: Sequence[x509.Certificate],
    now: dt.datetime,
) -> x509.Certificate:
    """The subsystem's member signed the hosting request with its own signing key: its consent."""
    what = "client member signing certificate"
    _check_trusted(signature.certificate, trusted_cas, now, what)
    try:
        named = member_of(signature.certificate)
    except CertificateError as exc:
        raise UntrustedRequest(f"{what}: {exc}") from exc
    if named != client.member:
        who = named.to_text() if named else "no member"
        raise UntrustedRequest(
            f"the consent to host {client.to_text()} is signed by {who}, not by its member "
            f"{client.member.to_text()}"
        )
    _check_usage(signature.certificate, what)
    _check_signature(signature.certificate, signature.algorithm, signature.value, content, "client signature")
    return signature.certificate


def _check_trusted(
    certificate: x509.Certificate, trusted_cas: Sequence[x509.Certificate], now: dt.datetime, what: str
) -> None:
    try:
        verify_chain(certificate, (), trusted_cas, now)
    except CertificateError as exc:
        raise UntrustedRequest(f"{what}: {exc}") from exc


def _check_names_member(certificate: x509.Certificate, member: ClientId) -> None:
    """The signer must be the member itself: an agency's key cannot speak for another."""
    _check_names(certificate, member, member_of, "member signing certificate", "signing", "no member")


def _check_names_server(certificate: x509.Certificate, server: SecurityServerId) -> None:
    _check_names(certificate, server, server_of, "authentication certificate", "authentication", "no gateway")


def _check_names(
    certificate: x509.Certificate,
    expected: ClientId | SecurityServerId,
    named_by: Callable[[x509.Certificate], ClientId | SecurityServerId | None],
    what: str,
    role: str,
    nobody: str,
) -> None:
    """`certificate` must name `expected` (as `named_by` reads it): a key speaks only for its owner."""
    try:
        named = named_by(certificate)
    except CertificateError as exc:
        raise UntrustedRequest(f"{what}: {exc}") from exc
    if named != expected:
        who = named.to_text() if named else nobody
        raise UntrustedRequest(f"the {role} certificate names {who}, not {expected.to_text()}")


def _check_usage(certificate: x509.Certificate, what: str) -> None:
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not usage.digital_signature:
        raise UntrustedRequest(f"{what}: keyUsage does not allow digitalSignature")
