"""The server configuration as values: what this gateway hosts, and the access decision (sans-IO).

The domain's enums and value types, and :class:`ServerConfSnapshot`, an immutable copy of
every registration at one `config_version`, which the request path asks (DESIGN.md steps 1
and 6). Nothing here touches the database: `gateway.serverconf.repository` reads and
changes the stored registrations and builds snapshots from them.
"""

from __future__ import annotations

import enum
import hashlib
import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Final
from urllib.parse import urlsplit

from gateway.ids import ClientId, LocalGroupId, ServiceId
from gateway.serverconf.access import (
    AccessRight,
    Endpoint,
    GlobalGroupMembership,
    LocalGroups,
    ServiceRights,
    is_allowed,
    rights_of,
)

__all__ = [
    "DEFAULT_CLIENT_AUTH_MODE",
    "DEFAULT_SERVICE_TIMEOUT_SECONDS",
    "RESERVED_SERVICE_CODES",
    "UNAUTHENTICATED_WARNING",
    "BackendTls",
    "CachePolicyRecord",
    "ClientAuthMode",
    "KeyRecord",
    "KeyUsage",
    "LocalGroup",
    "PinnedCertificate",
    "RightsKey",
    "ServerConfSnapshot",
    "ServiceConf",
    "ServiceDescription",
    "ServiceKind",
    "SubsystemConf",
]

# --- enums -----------------------------------------------------------------------------


class ClientAuthMode(enum.StrEnum):
    """How a client system must connect to the internal interface (DESIGN.md, step 1)."""

    HTTP = "http"  # plain HTTP allowed
    HTTPS = "https"  # HTTPS, no client certificate asked
    HTTPS_CERT = "https_cert"  # HTTPS with one of the subsystem's pinned client certificates

    @property
    def authenticates(self) -> bool:
        """Whether the mode proves which system connects; only a pinned certificate does.

        Plain HTTP and HTTPS without a client certificate name the subsystem in the message
        alone: any process that reaches the internal interface can claim to be it.
        """
        return self is ClientAuthMode.HTTPS_CERT


class ServiceKind(enum.StrEnum):
    SOAP = "soap"
    REST = "rest"


class KeyUsage(enum.StrEnum):
    AUTH = "auth"  # TLS authentication between gateways; belongs to the gateway
    SIGN = "sign"  # message signatures; belongs to one member


# --- values ----------------------------------------------------------------------------

DEFAULT_CLIENT_AUTH_MODE: Final = ClientAuthMode.HTTPS_CERT
"""A new subsystem's systems must show a pinned TLS client certificate, as X-Road's `SSLAUTH`
client connection type: without one, any local process could act as the subsystem. Plain
HTTP and HTTPS alone are explicit choices, flagged wherever subsystems are listed."""

UNAUTHENTICATED_WARNING: Final = "unauthenticated: any local process can act as this subsystem"
"""What `xgate admin subsystems list` (and health details) say of a subsystem in http or https mode."""

DEFAULT_SERVICE_TIMEOUT_SECONDS: Final = 60.0
"""X-Road's default time to wait for a service's answer."""

RESERVED_SERVICE_CODES: Final = frozenset(
    {"listClients", "listMethods", "allowedMethods", "getWsdl", "getOpenAPI"}
)
"""The metadata services' names; no agency may register a service under them (PROTOCOL.md
"Service metadata")."""


@dataclass(frozen=True, slots=True)
class PinnedCertificate:
    """A client TLS certificate a subsystem in `https_cert` mode may connect with."""

    sha256: str  # lower-case hex of the DER encoding
    pem: str


@dataclass(frozen=True, slots=True)
class SubsystemConf:
    """A client this gateway hosts, and how its systems must connect (DESIGN.md step 1)."""

    client: ClientId
    auth_mode: ClientAuthMode
    certificates: tuple[PinnedCertificate, ...] = ()
    log_bodies: bool = True  # False: the message log keeps headers and digests only
    timestamp_immediately: bool = False  # True: each record is stamped before the answer

    @property
    def authenticated(self) -> bool:
        """Whether its client systems must prove who they are (ClientAuthMode.authenticates)."""
        return self.auth_mode.authenticates

    def accepts_certificate(self, der: bytes) -> bool:
        """Whether a client certificate (DER) is one pinned for this subsystem."""
        fingerprint = hashlib.sha256(der).hexdigest()
        return any(pinned.sha256 == fingerprint for pinned in self.certificates)


@dataclass(frozen=True, slots=True)
class BackendTls:
    """How the gateway connects to a service over HTTPS."""

    verify: bool = True
    ca_bundle_pem: str | None = None  # trust these instead of the system's CAs
    client_cert_path: str | None = None  # may hold the key too, as ssl.load_cert_chain allows
    client_key_path: str | None = None

    def __post_init__(self) -> None:
        if self.client_key_path is not None and self.client_cert_path is None:
            raise ValueError("a client key needs its certificate")


BACKEND_URL_NOT_SET: Final = "http://backend-url-not-set.invalid/"
"""The backend of a service registered from an OpenAPI document without a usable server, until
the administrator sets one (RFC 2606: `.invalid` never resolves). Such a service is registered
disabled with :data:`BACKEND_URL_NOT_SET_NOTICE`, so its clients get ServiceDisabled, not a
connection error."""

BACKEND_URL_NOT_SET_NOTICE: Final = "the provider has not set this service's backend URL yet"


@dataclass(frozen=True, slots=True)
class ServiceDescription:
    """The WSDL or OpenAPI document a service was registered from, and where it came from."""

    document: str
    source: str  # URL or file path


@dataclass(frozen=True, slots=True)
class ServiceConf:
    """A service of a hosted subsystem: where it runs and whether it may be called."""

    service: ServiceId
    kind: ServiceKind
    backend_url: str
    timeout_seconds: float = DEFAULT_SERVICE_TIMEOUT_SECONDS
    tls: BackendTls = BackendTls()
    enabled: bool = True
    disabled_notice: str | None = None  # the faultstring of ServiceDisabled (PROTOCOL.md)
    description: ServiceDescription | None = None
    endpoints: tuple[Endpoint, ...] = ()  # REST only

    def __post_init__(self) -> None:
        if self.service.service_code in RESERVED_SERVICE_CODES:
            raise ValueError(f"{self.service.service_code!r} is reserved for service metadata")
        if not (math.isfinite(self.timeout_seconds) and self.timeout_seconds > 0):
            raise ValueError(f"timeout must be a positive number of seconds, not {self.timeout_seconds}")
        url = urlsplit(self.backend_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"backend URL must be http:// or https:// with a host: {self.backend_url!r}")
        if self.kind is ServiceKind.SOAP and self.endpoints:
            raise ValueError("SOAP services have no REST endpoints")
        object.__setattr__(self, "endpoints", tuple(dict.fromkeys(self.endpoints)))

    @property
    def provider(self) -> ClientId:
        return self.service.provider


@dataclass(frozen=True, slots=True)
class LocalGroup:
    """A group of clients one hosted subsystem defines for its own access rights."""

    owner: ClientId
    group: LocalGroupId
    description: str
    members: frozenset[ClientId]


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One of the gateway's keys: the private key's file, and its CSR and certificate as issued."""

    id: int
    usage: KeyUsage
    member: ClientId | None  # the member a signing key signs for
    key_path: str
    cert_pem: str | None
    csr_pem: str | None
    status: str
    created_at: datetime


# --- the snapshot ----------------------------------------------------------------------

RightsKey = tuple[ClientId, str]
"""(provider, service code): how rights are indexed for the decision."""

_ProviderKey = tuple[str, str, str, str | None]
"""A provider as its plain codes: built from a ServiceId without making (and validating) a
ClientId, which would cost more than the decision itself."""


def _provider_key(client: ClientId) -> _ProviderKey:
    return (client.instance, client.member_class, client.member_code, client.subsystem_code)


def _service_provider_key(service: ServiceId) -> _ProviderKey:
    return (service.instance, service.member_class, service.member_code, service.subsystem_code)


@dataclass(frozen=True)
class CachePolicyRecord:
    """An interface-cache policy as stored: its name and its JSON document.

    The document's meaning is `gateway.cache.policy.CachePolicy.from_document`; the server
    configuration keeps it, versioned with the registrations it names, without reading it.
    """

    name: str
    document: Mapping[str, object]
    updated_at: datetime


@dataclass(frozen=True, eq=False)
class ServerConfSnapshot:
    """The registrations at one `config_version`, immutable, for the request path.

    Built by `gateway.serverconf.repository.load_snapshot` in one consistent read; nothing
    here touches the database.
    """

    version: int
    subsystems: Mapping[ClientId, SubsystemConf]
    services: Mapping[ServiceId, ServiceConf]
    access_rights: Mapping[RightsKey, tuple[AccessRight, ...]]
    local_groups: Mapping[ClientId, Mapping[LocalGroupId, LocalGroup]]
    cache_policies: Mapping[str, CachePolicyRecord] = field(default_factory=lambda: MappingProxyType({}))
    """The interface cache's policies by name, as stored documents (gateway.cache.policy reads them)."""
    _by_provider: Mapping[ClientId, tuple[ServiceConf, ...]] = field(init=False, repr=False)
    _decision: Mapping[tuple[_ProviderKey, str], ServiceRights] = field(init=False, repr=False)
    _group_members: Mapping[_ProviderKey, LocalGroups] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        by_provider: dict[ClientId, list[ServiceConf]] = defaultdict(list)
        for service_id in sorted(self.services):
            by_provider[service_id.provider].append(self.services[service_id])
        decision = {
            (_provider_key(provider), code): ServiceRights.arrange(rights)
            for (provider, code), rights in self.access_rights.items()
        }
        members = {
            _provider_key(owner): MappingProxyType({code: group.members for code, group in groups.items()})
            for owner, groups in self.local_groups.items()
        }
        object.__setattr__(
            self, "_by_provider", MappingProxyType({k: tuple(v) for k, v in by_provider.items()})
        )
        object.__setattr__(self, "_decision", MappingProxyType(decision))
        object.__setattr__(self, "_group_members", MappingProxyType(members))

    @classmethod
    def empty(cls) -> ServerConfSnapshot:
        """Nothing registered; version -1, older than any database's (a fresh one starts at 0)."""
        return cls(-1, MappingProxyType({}), MappingProxyType({}), MappingProxyType({}), MappingProxyType({}))

    def subsystem(self, client: ClientId) -> SubsystemConf | None:
        return self.subsystems.get(client)

    def service(self, service: ServiceId) -> ServiceConf | None:
        """The service registered under exactly this identifier.

        No version means "registered without a version", not "any version": X-Road looks
        services up by code and version alike, and a guess would change meaning silently
        when a second version is registered.
        """
        return self.services.get(service)

    def unauthenticated_subsystems(self) -> list[SubsystemConf]:
        """The hosted subsystems any process reaching the internal interface can act as (http
        or https mode), in identifier order: what `subsystems list` and health details flag."""
        return sorted(
            (conf for conf in self.subsystems.values() if not conf.authenticated),
            key=lambda conf: conf.client,
        )

    def services_of(self, provider: ClientId) -> list[ServiceConf]:
        """The provider's services in identifier order (for `listMethods`)."""
        return list(self._by_provider.get(provider, ()))

    def local_groups_of(self, owner: ClientId) -> list[LocalGroup]:
        groups = self.local_groups.get(owner, {})
        return [groups[code] for code in sorted(groups)]

    def rights(self, provider: ClientId, service_code: str | None = None) -> list[AccessRight]:
        """The provider's access rights, all of them or for one service code."""
        if service_code is not None:
            return list(self.access_rights.get((provider, service_code), ()))
        return [
            right
            for (owner, _code), granted in sorted(self.access_rights.items(), key=lambda item: item[0][1])
            if owner == provider
            for right in granted
        ]

    def allowed(
        self,
        client: ClientId,
        service: ServiceId,
        method: str | None = None,
        path: str | None = None,
        *,
        global_group_member: GlobalGroupMembership,
    ) -> bool:
        """The access decision for one request (access.is_allowed); method and path for REST only."""
        provider = _service_provider_key(service)
        rights = self._decision.get((provider, service.service_code))
        if rights is None:
            return False  # default deny: nobody holds a right to this service
        return is_allowed(
            client,
            service,
            rights.candidates(client),
            method=method,
            path=path,
            global_group_member=global_group_member,
            local_groups=self._group_members.get(provider, {}),
        )

    def _client_rights(
        self,
        client: ClientId,
        provider: ClientId,
        service_code: str,
        global_group_member: GlobalGroupMembership,
    ) -> list[AccessRight]:
        return rights_of(
            client,
            self.access_rights.get((provider, service_code), ()),
            global_group_member=global_group_member,
            local_groups=self._group_members.get(_provider_key(provider), {}),
        )

    def allowed_services(
        self, client: ClientId, provider: ClientId, *, global_group_member: GlobalGroupMembership
    ) -> list[ServiceConf]:
        """The provider's services the client holds any right to, whole or per endpoint
        (`allowedMethods`)."""
        return [
            conf
            for conf in self.services_of(provider)
            if self._client_rights(client, provider, conf.service.service_code, global_group_member)
        ]

    def allowed_endpoints(
        self, client: ClientId, service: ServiceId, *, global_group_member: GlobalGroupMembership
    ) -> list[Endpoint]:
        """The service's registered endpoints some right of the client's covers.

        A right covers an endpoint when its method is `*` or the same, and its pattern
        matches the endpoint's pattern read as a path (`/pets/*` covers `/pets/{id}`).
        """
        conf = self.services.get(service)
        if conf is None:
            return []
        granted = self._client_rights(client, service.provider, service.service_code, global_group_member)
        if any(right.endpoint is None for right in granted):
            return list(conf.endpoints)
        return [
            endpoint
            for endpoint in conf.endpoints
            if any(right.endpoint is not None and right.endpoint.covers(endpoint) for right in granted)
        ]
