"""The global configuration on the wire: canonical JSON content in a signed container.

Bytes in, values out (docs/globalconf.md is the format's description):

* the content is canonical JSON (sorted keys, UTF-8, no insignificant whitespace) of a
  :class:`GlobalConf`, tagged ``"format": "xgate-globalconf/1"``;
* the container carries the content's exact bytes in base64 with a detached signature over
  them, so that ``openssl dgst -sha256 -verify`` checks it independently;
* the signer is trusted when its certificate is one of the gateway's anchor certificates or
  is issued directly by one: the registry may rotate its signing key under an anchor, and
  an anchor file may list the old and the new anchor at once (no flag day).

Parsing is strict: an unknown format string, a missing or unknown field, a duplicate key or
a value of the wrong type is an error. A gateway must not act on a rule it did not
understand, so a new field means a new format version.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, NoReturn, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from gateway.crypto.certs import CertificateError, verify_chain
from gateway.crypto.keys import PrivateKey
from gateway.globalconf.model import (
    GlobalConf,
    GlobalConfError,
    GlobalConfSettings,
    GlobalGroup,
    MalformedGlobalConf,
    Member,
    OcspResponder,
    SecurityServerInfo,
    TimestampingAuthority,
    TrustedCa,
)
from gateway.ids import ClientId, GlobalGroupId, IdentifierError, SecurityServerId, validate_code

CONTENT_FORMAT: Final = "xgate-globalconf/1"
SIGNED_FORMAT: Final = "xgate-signed-globalconf/1"
ANCHOR_FORMAT: Final = "xgate-globalconf-anchor/1"

ECDSA_SHA256: Final = "ecdsa-with-SHA256"
RSA_SHA256: Final = "sha256WithRSAEncryption"
"""Signature algorithm names as RFC 5758 §3.2 and RFC 4055 §5 spell them (PKCS#1 v1.5 for RSA)."""

MAX_SIGNED_GLOBALCONF_BYTES: Final = 32 * 1024 * 1024
"""Room for tens of thousands of gateways with their certificates; anything bigger is an attack."""

MAX_ANCHOR_BYTES: Final = 1024 * 1024
"""An anchor holds a few certificates and URLs."""

# RFC 3339 §5.6 date-time in UTC ("Z"), optional fraction: the one spelling we write and read.
_TIME_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")

_T = TypeVar("_T")


class UntrustedGlobalConf(GlobalConfError):
    """The signature does not verify, the signer is not trusted, or it speaks for another instance."""


# --- canonical JSON ---------------------------------------------------------------------------


def canonical_json(value: object) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8: one byte string per value, so it can be signed."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def _refuse_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise MalformedGlobalConf("duplicate key in a JSON object")
    return result


def _refuse_constant(name: str) -> NoReturn:
    raise MalformedGlobalConf(f"{name} is not JSON")


def _strict_loads(data: bytes, what: str) -> object:
    """RFC 8259 JSON in UTF-8 (§8.1), without the duplicate keys it leaves undefined (§4)."""
    try:
        return json.loads(
            data.decode("utf-8"), object_pairs_hook=_refuse_duplicates, parse_constant=_refuse_constant
        )
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise MalformedGlobalConf(f"{what}: not JSON ({type(exc).__name__}: {exc})") from exc


class _Fields:
    """One JSON object read strictly: exactly the expected keys, each of the expected type."""

    def __init__(self, value: object, where: str, keys: Iterable[str], optional: Iterable[str] = ()) -> None:
        if not isinstance(value, dict):
            raise MalformedGlobalConf(f"{where}: expected a JSON object")
        expected = set(keys) | set(optional)
        missing = sorted(expected - set(optional) - value.keys())
        unknown = sorted(value.keys() - expected)
        if missing:
            raise MalformedGlobalConf(f"{where}: missing field(s) {', '.join(missing)}")
        if unknown:
            raise MalformedGlobalConf(f"{where}: unknown field(s) {', '.join(unknown)}")
        self._value: dict[str, object] = value
        self._where = where

    def where(self, key: str) -> str:
        return f"{self._where}.{key}"

    def _typed(self, key: str, kind: type[_T], kind_name: str) -> _T:
        value = self._value[key]
        # bool is an int in Python, never in JSON's sense of a number.
        if not isinstance(value, kind) or isinstance(value, bool):
            raise MalformedGlobalConf(f"{self.where(key)}: expected {kind_name}")
        return value

    def text(self, key: str) -> str:
        return self._typed(key, str, "a string")

    def optional_text(self, key: str) -> str | None:
        return None if self._value[key] is None else self.text(key)

    def absent_or(self, key: str, parse: Callable[[str], _T]) -> _T | None:
        """An optional key's identifier: None when the key is not there."""
        return None if key not in self._value else self.identifier(key, parse)

    def integer(self, key: str) -> int:
        return self._typed(key, int, "an integer")

    def raw(self, key: str) -> object:
        return self._value[key]

    def array(self, key: str) -> list[object]:
        return self._typed(key, list, "an array")

    def texts(self, key: str) -> tuple[str, ...]:
        values = self.array(key)
        if not all(isinstance(v, str) for v in values):
            raise MalformedGlobalConf(f"{self.where(key)}: expected an array of strings")
        return tuple(str(v) for v in values)

    def objects(self, key: str, keys: Iterable[str]) -> list[_Fields]:
        expected = tuple(keys)
        return [_Fields(item, f"{self.where(key)}[{i}]", expected) for i, item in enumerate(self.array(key))]

    def identifiers(self, key: str, parse: Callable[[str], _T]) -> tuple[_T, ...]:
        return tuple(_identifier(text, parse, self.where(key)) for text in self.texts(key))

    def identifier(self, key: str, parse: Callable[[str], _T]) -> _T:
        return _identifier(self.text(key), parse, self.where(key))

    def time(self, key: str) -> dt.datetime:
        return parse_time(self.text(key), self.where(key))

    def base64(self, key: str) -> bytes:
        try:
            return base64.b64decode(self.text(key), validate=True)
        except binascii.Error as exc:
            raise MalformedGlobalConf(f"{self.where(key)}: not base64 ({exc})") from exc


def _identifier(text: str, parse: Callable[[str], _T], where: str) -> _T:
    try:
        return parse(text)
    except IdentifierError as exc:
        raise MalformedGlobalConf(f"{where}: {exc.message}") from exc


def format_time(value: dt.datetime) -> str:
    """RFC 3339 in UTC with "Z"; a fraction only when there is one, so whole seconds stay short."""
    utc = value.astimezone(dt.UTC)
    fraction = f".{utc.microsecond:06d}" if utc.microsecond else ""
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def parse_time(text: str, where: str = "time") -> dt.datetime:
    if _TIME_RE.fullmatch(text) is None:
        raise MalformedGlobalConf(
            f"{where}: {text!r} is not an RFC 3339 UTC time (YYYY-MM-DDTHH:MM:SS[.ffffff]Z)"
        )
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise MalformedGlobalConf(f"{where}: {exc}") from exc


def _check_format(fields: _Fields, expected: str) -> None:
    found = fields.text("format")
    if found != expected:
        raise MalformedGlobalConf(f"unknown format {found!r}, expected {expected!r}")


# --- the content ------------------------------------------------------------------------------

_CONTENT_KEYS: Final = (
    "format",
    "instance",
    "version",
    "generated_at",
    "expires_at",
    "settings",
    "members",
    "security_servers",
    "trusted_cas",
    "timestamping_authorities",
    "global_groups",
)
_OPTIONAL_CONTENT_KEYS: Final = ("monitoring_client",)
"""Written only when set, so a configuration without them is what it was before they existed
(and gateways that predate them read it)."""
_SETTINGS_KEYS: Final = tuple(f.name for f in dataclasses.fields(GlobalConfSettings))
_MEMBER_KEYS: Final = ("member_class", "member_code", "name", "subsystems")
_SERVER_KEYS: Final = ("id", "address", "auth_certificates", "clients")
_CA_KEYS: Final = ("name", "certificate", "ocsp_responders")
_OCSP_KEYS: Final = ("url", "certificate")
_TSA_KEYS: Final = ("name", "url", "certificate")
_GROUP_KEYS: Final = ("id", "description", "members")


def globalconf_to_json(conf: GlobalConf) -> bytes:
    """The content bytes that get signed (docs/globalconf.md "Content")."""
    content = {
        "format": CONTENT_FORMAT,
        "instance": conf.instance,
        "version": conf.version,
        "generated_at": format_time(conf.generated_at),
        "expires_at": format_time(conf.expires_at),
        "settings": dataclasses.asdict(conf.settings),
        "members": [
            {
                "member_class": m.member_class,
                "member_code": m.member_code,
                "name": m.name,
                "subsystems": list(m.subsystems),
            }
            for m in conf.members
        ],
        "security_servers": [
            {
                "id": s.id.to_text(),
                "address": s.address,
                "auth_certificates": list(s.auth_certificates),
                "clients": [c.to_text() for c in s.clients],
            }
            for s in conf.security_servers
        ],
        "trusted_cas": [
            {
                "name": ca.name,
                "certificate": ca.certificate,
                "ocsp_responders": [{"url": r.url, "certificate": r.certificate} for r in ca.ocsp_responders],
            }
            for ca in conf.trusted_cas
        ],
        "timestamping_authorities": [
            {"name": t.name, "url": t.url, "certificate": t.certificate}
            for t in conf.timestamping_authorities
        ],
        "global_groups": [
            {"id": g.id.to_text(), "description": g.description, "members": [c.to_text() for c in g.members]}
            for g in conf.global_groups
        ],
    }
    if conf.monitoring_client is not None:
        content["monitoring_client"] = conf.monitoring_client.to_text()
    return canonical_json(content)


def globalconf_from_json(content: bytes) -> GlobalConf:
    """Parse content bytes strictly into a consistent GlobalConf; MalformedGlobalConf otherwise."""
    top = _Fields(
        _strict_loads(content, "global configuration content"),
        "content",
        _CONTENT_KEYS,
        _OPTIONAL_CONTENT_KEYS,
    )
    _check_format(top, CONTENT_FORMAT)
    settings = _Fields(top.raw("settings"), "content.settings", _SETTINGS_KEYS)
    return GlobalConf(
        instance=top.text("instance"),
        version=top.integer("version"),
        generated_at=top.time("generated_at"),
        expires_at=top.time("expires_at"),
        settings=GlobalConfSettings(**{key: settings.integer(key) for key in _SETTINGS_KEYS}),
        members=tuple(
            Member(m.text("member_class"), m.text("member_code"), m.text("name"), m.texts("subsystems"))
            for m in top.objects("members", _MEMBER_KEYS)
        ),
        security_servers=tuple(
            SecurityServerInfo(
                id=s.identifier("id", SecurityServerId.from_text),
                address=s.text("address"),
                auth_certificates=s.texts("auth_certificates"),
                clients=s.identifiers("clients", ClientId.from_text),
            )
            for s in top.objects("security_servers", _SERVER_KEYS)
        ),
        trusted_cas=tuple(
            TrustedCa(
                name=ca.text("name"),
                certificate=ca.text("certificate"),
                ocsp_responders=tuple(
                    OcspResponder(r.text("url"), r.optional_text("certificate"))
                    for r in ca.objects("ocsp_responders", _OCSP_KEYS)
                ),
            )
            for ca in top.objects("trusted_cas", _CA_KEYS)
        ),
        timestamping_authorities=tuple(
            TimestampingAuthority(t.text("name"), t.text("url"), t.text("certificate"))
            for t in top.objects("timestamping_authorities", _TSA_KEYS)
        ),
        global_groups=tuple(
            GlobalGroup(
                id=g.identifier("id", GlobalGroupId.from_text),
                description=g.text("description"),
                members=g.identifiers("members", ClientId.from_text),
            )
            for g in top.objects("global_groups", _GROUP_KEYS)
        ),
        monitoring_client=top.absent_or("monitoring_client", ClientId.from_text),
    )


# --- signing and verification -----------------------------------------------------------------


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def sign_globalconf(conf: GlobalConf, key: PrivateKey, cert: x509.Certificate) -> bytes:
    """The signed container for `conf`, signed with `key` whose certificate is `cert`."""
    public = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*public) != cert.public_key().public_bytes(*public):
        raise ValueError("the certificate is not for this key")
    content = globalconf_to_json(conf)
    algorithm, value = sign_content(key, content)
    return canonical_json(
        {
            "format": SIGNED_FORMAT,
            "content": base64.b64encode(content).decode("ascii"),
            "signature": {
                "algorithm": algorithm,
                "value": base64.b64encode(value).decode("ascii"),
                "signer_certificate": _pem(cert),
            },
        }
    )


def verify_signed_globalconf(
    data: bytes,
    anchors: Sequence[x509.Certificate],
    now: dt.datetime,
    *,
    instance: str | None = None,
) -> GlobalConf:
    """The GlobalConf inside a signed container, if its signer is trusted and the signature holds.

    `anchors` are the anchor file's certificates; `instance`, when given, is the anchor's
    instance and must be the content's. Expiry is not checked here: a gateway keeps the last
    good copy and reports expiry with GlobalConf.is_expired. Raises MalformedGlobalConf or
    UntrustedGlobalConf.
    """
    if len(data) > MAX_SIGNED_GLOBALCONF_BYTES:
        raise MalformedGlobalConf(
            f"signed global configuration larger than {MAX_SIGNED_GLOBALCONF_BYTES} bytes"
        )
    container = _Fields(
        _strict_loads(data, "signed global configuration"), "container", ("format", "content", "signature")
    )
    _check_format(container, SIGNED_FORMAT)
    signature = _Fields(
        container.raw("signature"), "container.signature", ("algorithm", "value", "signer_certificate")
    )
    content = container.base64("content")
    value = signature.base64("value")
    signer = _signer_certificate(signature.text("signer_certificate"))

    _check_signer(signer, anchors, now)
    _check_signature(signer, signature.text("algorithm"), value, content)
    conf = globalconf_from_json(content)
    if instance is not None and conf.instance != instance:
        raise UntrustedGlobalConf(
            f"configuration is for instance {conf.instance!r}, the anchor for {instance!r}"
        )
    return conf


def _signer_certificate(pem: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise MalformedGlobalConf(f"signer_certificate: not a PEM certificate ({exc})") from exc


def _check_signer(signer: x509.Certificate, anchors: Sequence[x509.Certificate], now: dt.datetime) -> None:
    """Trusted: an anchor itself, or an end-entity certificate issued directly by an anchor CA."""
    if signer in anchors:
        if not signer.not_valid_before_utc <= now <= signer.not_valid_after_utc:
            raise UntrustedGlobalConf("the signer (an anchor) is outside its validity period")
    else:
        try:
            verify_chain(signer, (), anchors, now)
        except CertificateError as exc:
            raise UntrustedGlobalConf(f"the signer is not an anchor nor issued by one: {exc}") from exc
    try:
        usage = signer.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not usage.digital_signature:
        raise UntrustedGlobalConf("the signer's keyUsage does not allow digitalSignature")


def _check_signature(signer: x509.Certificate, algorithm: str, value: bytes, content: bytes) -> None:
    try:
        verify_content_signature(signer, algorithm, value, content)
    except ValueError as exc:
        raise UntrustedGlobalConf(str(exc)) from exc


def sign_content(key: PrivateKey, content: bytes) -> tuple[str, bytes]:
    """(algorithm name, signature) of `content` by `key`: ECDSA, or RSA PKCS#1 v1.5, with SHA-256.

    The registry's signed documents (the global configuration, registration requests) all sign
    and check this way."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return ECDSA_SHA256, key.sign(content, ec.ECDSA(hashes.SHA256()))
    return RSA_SHA256, key.sign(content, padding.PKCS1v15(), hashes.SHA256())


def verify_content_signature(
    certificate: x509.Certificate, algorithm: str, value: bytes, content: bytes
) -> None:
    """Raises ValueError saying why `value` is not `certificate`'s signature of `content` under
    `algorithm` (ECDSA_SHA256 or RSA_SHA256, and it must fit the certificate's key type)."""
    key = certificate.public_key()
    try:
        if algorithm == ECDSA_SHA256 and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(value, content, ec.ECDSA(hashes.SHA256()))
        elif algorithm == RSA_SHA256 and isinstance(key, rsa.RSAPublicKey):
            key.verify(value, content, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise ValueError(f"algorithm {algorithm!r} does not fit the certificate's key")
    except InvalidSignature as exc:
        raise ValueError("the signature does not match the content") from exc


# --- the anchor -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Anchor:
    """What a gateway trusts before it has any configuration: the instance, where to fetch, who signs.

    Listing the old and the new verification certificate at once lets the registry switch
    signing keys without a flag day (docs/globalconf.md "Rotating the signing key").
    """

    instance: str
    configuration_urls: tuple[str, ...]
    certificates: tuple[x509.Certificate, ...]

    def __post_init__(self) -> None:
        try:
            validate_code(self.instance, "instance")
        except IdentifierError as exc:
            raise MalformedGlobalConf(f"anchor: {exc.message}") from exc
        if not self.certificates:
            raise MalformedGlobalConf("anchor: at least one verification certificate is needed")
        if not all(self.configuration_urls):
            raise MalformedGlobalConf("anchor: empty configuration URL")


def anchor_to_json(anchor: Anchor) -> bytes:
    return canonical_json(
        {
            "format": ANCHOR_FORMAT,
            "instance": anchor.instance,
            "configuration_urls": list(anchor.configuration_urls),
            "certificates": [_pem(c) for c in anchor.certificates],
        }
    )


def anchor_from_json(data: bytes) -> Anchor:
    if len(data) > MAX_ANCHOR_BYTES:
        raise MalformedGlobalConf(f"anchor larger than {MAX_ANCHOR_BYTES} bytes")
    fields = _Fields(
        _strict_loads(data, "anchor"), "anchor", ("format", "instance", "configuration_urls", "certificates")
    )
    _check_format(fields, ANCHOR_FORMAT)
    certificates = []
    for i, pem in enumerate(fields.texts("certificates")):
        try:
            certificates.append(x509.load_pem_x509_certificate(pem.encode("ascii")))
        except (ValueError, UnicodeEncodeError) as exc:
            raise MalformedGlobalConf(f"anchor.certificates[{i}]: not a PEM certificate ({exc})") from exc
    return Anchor(fields.text("instance"), fields.texts("configuration_urls"), tuple(certificates))
