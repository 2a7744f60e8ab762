"""The global configuration: what the central registry tells every gateway about the federation.

One :class:`GlobalConf` value holds members and their subsystems, the gateways (security
servers) with their addresses, registered TLS certificates and hosted clients, the trusted
CAs with their OCSP responders, the timestamping authorities, the global groups and the
federation-wide settings (DESIGN.md "The federation"). It is immutable and checked for
consistency when built, and it indexes itself once at construction, because the proxy asks
it on every request "which gateways host this provider?" and "whose certificate is this?".

Nothing here reads files or sockets: `signed.py` turns bytes into a GlobalConf, `source.py`
fetches the bytes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from gateway.crypto.certs import load_single_pem_certificate
from gateway.ids import ClientId, GlobalGroupId, IdentifierError, SecurityServerId, validate_code

# X-Road's defaults for the same settings (X-Road system parameters: ocspFreshnessSeconds,
# timeStampingIntervalSeconds, the configuration client's 60 s update interval, and the 600 s
# validity of a published global configuration).
DEFAULT_OCSP_FRESHNESS_SECONDS: Final = 3600
DEFAULT_TIMESTAMPING_INTERVAL_SECONDS: Final = 60
DEFAULT_REFRESH_INTERVAL_SECONDS: Final = 60
DEFAULT_VALIDITY_SECONDS: Final = 600

MAX_PORT: Final = 65535

# "host:port" of a gateway's external interface; IPv6 literals in brackets (RFC 3986 §3.2.2).
_ADDRESS_RE: Final = re.compile(
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(?P<port>\d{1,5})"
)
_HEX_SEPARATORS: Final = str.maketrans("", "", ": ")


class GlobalConfError(Exception):
    """A global configuration could not be used; the subclasses say why."""


class MalformedGlobalConf(GlobalConfError):
    """The content breaks the format or is inconsistent (unknown reference, duplicate, bad value)."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise MalformedGlobalConf(message)


def _check_code(value: str, what: str) -> None:
    try:
        validate_code(value, what)
    except IdentifierError as exc:
        raise MalformedGlobalConf(exc.message) from exc


def _load_pem_certificate(pem: str, what: str) -> x509.Certificate:
    """Exactly one PEM certificate; anything else in a signed configuration is a registry error."""
    try:
        return load_single_pem_certificate(pem)
    except ValueError as exc:
        raise MalformedGlobalConf(f"{what}: {exc}") from exc


def _check_url(url: str, what: str) -> None:
    parts = urlsplit(url)
    _require(
        parts.scheme in ("http", "https") and bool(parts.hostname), f"{what}: not an http(s) URL: {url!r}"
    )


def _check_positive(value: int, what: str) -> None:
    _require(
        isinstance(value, int) and not isinstance(value, bool) and value > 0,
        f"{what} must be a positive integer",
    )


def normalise_fingerprint(fingerprint: str) -> str:
    """Lower-case hex without separators, so `AB:CD...` from openssl matches `abcd...`."""
    return fingerprint.translate(_HEX_SEPARATORS).lower()


@dataclass(frozen=True)
class Member:
    """A member institution of the instance and the codes of its subsystems."""

    member_class: str
    member_code: str
    name: str
    subsystems: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        what = f"member {self.member_class}/{self.member_code}"
        _check_code(self.member_class, f"{what}: memberClass")
        _check_code(self.member_code, f"{what}: memberCode")
        for code in self.subsystems:
            _check_code(code, f"{what}: subsystemCode")
        _require(bool(self.name), f"{what}: name must not be empty")
        _require(len(set(self.subsystems)) == len(self.subsystems), f"{what}: a subsystem is listed twice")

    def client_id(self, instance: str) -> ClientId:
        return ClientId(instance, self.member_class, self.member_code)

    def subsystem_ids(self, instance: str) -> list[ClientId]:
        return [ClientId(instance, self.member_class, self.member_code, code) for code in self.subsystems]


@dataclass(frozen=True)
class SecurityServerInfo:
    """A registered gateway: where its external interface listens and which TLS certificates are its own.

    `auth_certificates` holds the full PEM of each registered certificate so peers can pin the
    certificate itself (DESIGN.md step 5); `auth_cert_sha256` is derived from them. The owner
    member is always hosted by its own gateway (as in X-Road, where the owner is a client of
    its server), whether or not `clients` lists it.
    """

    id: SecurityServerId
    address: str
    auth_certificates: tuple[str, ...]
    clients: tuple[ClientId, ...] = ()
    auth_cert_sha256: tuple[str, ...] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        what = f"security server {self.id.to_text()}"
        match = _ADDRESS_RE.fullmatch(self.address)
        if match is None or not 0 < int(match["port"]) <= MAX_PORT:
            raise MalformedGlobalConf(f"{what}: address {self.address!r} is not host:port")
        _require(bool(self.auth_certificates), f"{what}: at least one authentication certificate is needed")
        fingerprints = tuple(
            _load_pem_certificate(pem, f"{what} certificate").fingerprint(hashes.SHA256()).hex()
            for pem in self.auth_certificates
        )
        _require(len(set(fingerprints)) == len(fingerprints), f"{what}: the same certificate is listed twice")
        _require(len(set(self.clients)) == len(self.clients), f"{what}: a client is listed twice")
        object.__setattr__(self, "auth_cert_sha256", fingerprints)

    @property
    def host(self) -> str:
        """The host part, without IPv6 brackets (what a socket connect wants)."""
        return self.address.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])

    def hosts(self, client: ClientId) -> bool:
        return client == self.id.owner or client in self.clients


@dataclass(frozen=True)
class OcspResponder:
    """Where to ask about a CA's certificates; `certificate` if the CA delegates (RFC 6960 §4.2.2.2)."""

    url: str
    certificate: str | None = None

    def __post_init__(self) -> None:
        _check_url(self.url, "OCSP responder")
        if self.certificate is not None:
            _load_pem_certificate(self.certificate, f"OCSP responder {self.url}")


@dataclass(frozen=True)
class TrustedCa:
    """A CA whose certificates the federation accepts for gateways' TLS and members' signing keys."""

    name: str
    certificate: str
    ocsp_responders: tuple[OcspResponder, ...] = ()

    def __post_init__(self) -> None:
        _require(bool(self.name), "trusted CA: name must not be empty")
        _load_pem_certificate(self.certificate, f"trusted CA {self.name}")


@dataclass(frozen=True)
class TimestampingAuthority:
    """An RFC 3161 TSA the message logs may use."""

    name: str
    url: str
    certificate: str

    def __post_init__(self) -> None:
        _require(bool(self.name), "timestamping authority: name must not be empty")
        _check_url(self.url, f"timestamping authority {self.name}")
        _load_pem_certificate(self.certificate, f"timestamping authority {self.name}")


@dataclass(frozen=True)
class GlobalGroup:
    """A group of clients defined centrally, usable as the subject of access rights."""

    id: GlobalGroupId
    description: str
    members: tuple[ClientId, ...] = ()


@dataclass(frozen=True)
class GlobalConfSettings:
    """Federation-wide parameters every gateway must apply alike."""

    ocsp_freshness_seconds: int = DEFAULT_OCSP_FRESHNESS_SECONDS
    timestamping_interval_seconds: int = DEFAULT_TIMESTAMPING_INTERVAL_SECONDS
    refresh_interval_seconds: int = DEFAULT_REFRESH_INTERVAL_SECONDS
    validity_seconds: int = DEFAULT_VALIDITY_SECONDS

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            _check_positive(getattr(self, item.name), f"settings.{item.name}")


@dataclass(frozen=True)
class _Index:
    """Lookups the hot path needs, built once per configuration."""

    members: Mapping[ClientId, Member]
    known: frozenset[ClientId]
    servers_by_client: Mapping[ClientId, tuple[SecurityServerInfo, ...]]
    server_by_id: Mapping[SecurityServerId, SecurityServerInfo]
    server_by_fingerprint: Mapping[str, SecurityServerInfo]
    group_members: Mapping[GlobalGroupId, frozenset[ClientId]]
    ca_certificates: tuple[x509.Certificate, ...]


@dataclass(frozen=True)
class GlobalConf:
    """One version of the federation's global configuration, consistent and indexed.

    Construction refuses a configuration that contradicts itself (an identifier of another
    instance, a server owned by or hosting an unknown client, one certificate registered for
    two servers...), raising MalformedGlobalConf: a gateway must never act on half-sense.
    """

    instance: str
    version: int
    generated_at: dt.datetime
    expires_at: dt.datetime
    members: tuple[Member, ...] = ()
    security_servers: tuple[SecurityServerInfo, ...] = ()
    trusted_cas: tuple[TrustedCa, ...] = ()
    timestamping_authorities: tuple[TimestampingAuthority, ...] = ()
    global_groups: tuple[GlobalGroup, ...] = ()
    settings: GlobalConfSettings = field(default_factory=GlobalConfSettings)
    monitoring_client: ClientId | None = None
    """The federation's monitoring system (X-Road's optional `monitoringClient`): the client that
    may read every gateway's operational monitoring records (getSecurityServerOperationalData)."""
    _index: _Index = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_code(self.instance, "instance")
        _require(
            isinstance(self.version, int) and not isinstance(self.version, bool) and self.version >= 1,
            "version must be an integer >= 1",
        )
        for name in ("generated_at", "expires_at"):
            value = getattr(self, name)
            _require(
                isinstance(value, dt.datetime) and value.tzinfo is not None, f"{name} must be timezone-aware"
            )
            object.__setattr__(self, name, value.astimezone(dt.UTC))
        _require(self.expires_at > self.generated_at, "expires_at must be after generated_at")
        object.__setattr__(self, "_index", self._build_index())
        if self.monitoring_client is not None:
            _require(
                self.is_known(self.monitoring_client),
                f"monitoring client {self.monitoring_client.to_text()} is not a registered client",
            )

    # --- construction -----------------------------------------------------------------------

    def _build_index(self) -> _Index:
        members: dict[ClientId, Member] = {}
        known: set[ClientId] = set()
        for member in self.members:
            member_id = member.client_id(self.instance)
            _require(member_id not in members, f"member {member_id.to_text()} is listed twice")
            members[member_id] = member
            known.add(member_id)
            known.update(member.subsystem_ids(self.instance))

        servers_by_client: dict[ClientId, list[SecurityServerInfo]] = {}
        server_by_id: dict[SecurityServerId, SecurityServerInfo] = {}
        server_by_fingerprint: dict[str, SecurityServerInfo] = {}
        for server in self.security_servers:
            what = f"security server {server.id.to_text()}"
            _require(server.id.instance == self.instance, f"{what} belongs to another instance")
            _require(server.id not in server_by_id, f"{what} is listed twice")
            _require(server.id.owner in members, f"{what}: owner is not a member")
            server_by_id[server.id] = server
            for fingerprint in server.auth_cert_sha256:
                other = server_by_fingerprint.setdefault(fingerprint, server)
                _require(
                    other is server,
                    f"{what}: certificate {fingerprint} is registered to {other.id.to_text()} too",
                )
            hosted = [server.id.owner, *(c for c in server.clients if c != server.id.owner)]
            for client in hosted:
                _require(client in known, f"{what} hosts unknown client {client.to_text()}")
                servers_by_client.setdefault(client, []).append(server)

        group_members: dict[GlobalGroupId, frozenset[ClientId]] = {}
        for group in self.global_groups:
            what = f"global group {group.id.to_text()}"
            _require(group.id.instance == self.instance, f"{what} belongs to another instance")
            _require(group.id not in group_members, f"{what} is listed twice")
            unknown = [c.to_text() for c in group.members if c not in known]
            _require(not unknown, f"{what} has unknown members: {', '.join(unknown)}")
            group_members[group.id] = frozenset(group.members)

        names = [ca.name for ca in self.trusted_cas]
        _require(len(set(names)) == len(names), "two trusted CAs share a name")
        ca_certificates = tuple(
            _load_pem_certificate(ca.certificate, f"trusted CA {ca.name}") for ca in self.trusted_cas
        )
        return _Index(
            members=members,
            known=frozenset(known),
            servers_by_client={client: tuple(servers) for client, servers in servers_by_client.items()},
            server_by_id=server_by_id,
            server_by_fingerprint=server_by_fingerprint,
            group_members=group_members,
            ca_certificates=ca_certificates,
        )

    # --- lookups (hot path) -----------------------------------------------------------------

    def servers_for(self, client: ClientId) -> list[SecurityServerInfo]:
        """The gateways hosting exactly this client: for a subsystem, those hosting the subsystem."""
        return list(self._index.servers_by_client.get(client, ()))

    def server(self, server_id: SecurityServerId) -> SecurityServerInfo | None:
        """A gateway by its identifier (the `securityServer` header names one)."""
        return self._index.server_by_id.get(server_id)

    def server_by_cert_fingerprint(self, fingerprint: str) -> SecurityServerInfo | None:
        """The gateway that registered the TLS certificate with this SHA-256 fingerprint, if any."""
        return self._index.server_by_fingerprint.get(normalise_fingerprint(fingerprint))

    def is_known(self, client: ClientId) -> bool:
        """True when the member, or the member's subsystem, is registered in this instance."""
        return client in self._index.known

    def is_member_of(self, client: ClientId, group: GlobalGroupId) -> bool:
        """Group membership is by exact identifier: a member's subsystem is not the member."""
        return client in self._index.group_members.get(group, frozenset())

    def clients(self) -> list[ClientId]:
        """Every member and subsystem, in registry order: what listClients answers."""
        result: list[ClientId] = []
        for member in self.members:
            result.append(member.client_id(self.instance))
            result.extend(member.subsystem_ids(self.instance))
        return result

    def member_name(self, client: ClientId) -> str | None:
        """The registered name of the client's member (listClients shows it for subsystems too)."""
        member = self._index.members.get(client.member)
        return None if member is None or not self.is_known(client) else member.name

    def trusted_ca_certs(self) -> list[x509.Certificate]:
        return list(self._index.ca_certificates)

    def is_expired(self, now: dt.datetime) -> bool:
        """Past expires_at a gateway stops serving (PROTOCOL.md: Server.ClientProxy.OutdatedGlobalConf)."""
        return now >= self.expires_at
