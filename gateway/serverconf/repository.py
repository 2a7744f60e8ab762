"""This gateway's registrations, stored and read: subsystems, services, access rights, groups.

Two faces. :class:`ServerConfRepository` makes changes, each in one transaction that also
bumps `config_version`, and keeps the administrative tables (API keys, audit log, keys).
:class:`ServerConfSnapshot` is an immutable copy of the registrations for the request path,
loaded in one consistent read and replaced when `config_version` moves: that is how several
nodes sharing one PostgreSQL see each other's changes without asking the database per request.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import urlsplit

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from sqlalchemy.engine import Connection, Engine, Row

from gateway.adminstore import (
    API_KEY_BYTES,
    DEFAULT_AUDIT_PAGE,
    MAX_API_KEY_LENGTH,
    MAX_AUDIT_PAGE,
    AdminStore,
    ApiKey,
    AuditEntry,
    AuditResult,
)
from gateway.ids import ClientId, LocalGroupId, ObjectType, ServiceId
from gateway.serverconf.access import (
    AccessRight,
    AccessSubject,
    Endpoint,
    GlobalGroupMembership,
    LocalGroups,
    ServiceRights,
    is_allowed,
    rights_of,
    subject_from_text,
)
from gateway.serverconf.db import begin_snapshot_read, begin_write, create_engine
from gateway.serverconf.tables import (
    ClientAuthMode,
    KeyUsage,
    ServiceKind,
    SubjectType,
    access_rights,
    api_keys,
    audit_log,
    client_certificates,
    config_version,
    keys,
    local_group_members,
    local_groups,
    rest_endpoints,
    services,
    subsystems,
)

__all__ = [
    "API_KEY_BYTES",
    "DEFAULT_AUDIT_PAGE",
    "MAX_API_KEY_LENGTH",
    "MAX_AUDIT_PAGE",
    "AlreadyExists",
    "ApiKey",
    "AuditEntry",
    "AuditResult",
    "BackendTls",
    "ClientAuthMode",
    "KeyRecord",
    "KeyUsage",
    "LocalGroup",
    "NotFound",
    "PinnedCertificate",
    "ServerConfError",
    "ServerConfRepository",
    "ServerConfSnapshot",
    "ServiceConf",
    "ServiceDescription",
    "ServiceKind",
    "SubsystemConf",
]

DEFAULT_SERVICE_TIMEOUT_SECONDS: Final = 60.0
"""X-Road's default time to wait for a service's answer."""

RESERVED_SERVICE_CODES: Final = frozenset(
    {"listClients", "listMethods", "allowedMethods", "getWsdl", "getOpenAPI"}
)
"""The metadata services' names; no agency may register a service under them (PROTOCOL.md
"Service metadata")."""

_CONFIG_ROW: Final = 1


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --- errors ----------------------------------------------------------------------------


class ServerConfError(Exception):
    """A change the configuration refuses; the message says why, for the administrator."""


class NotFound(ServerConfError):
    """The change names something not registered."""


class AlreadyExists(ServerConfError):
    """The change would register something a second time."""


# --- values ----------------------------------------------------------------------------


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


# --- rows <-> values -------------------------------------------------------------------


def _client_from_row(row: Row[Any]) -> ClientId:
    return ClientId(row.instance, row.member_class, row.member_code, row.subsystem_code)


def _subject_to_row(subject: AccessSubject) -> tuple[str, str]:
    return SubjectType(subject.object_type.value).value, subject.to_text()


def _subject_from_row(subject_type: str, text: str) -> AccessSubject:
    return subject_from_text(ObjectType(SubjectType(subject_type).value), text)


def _endpoint_from_row(method: str | None, path: str | None) -> Endpoint | None:
    return None if method is None or path is None else Endpoint(method, path)


def _service_values(conf: ServiceConf) -> dict[str, Any]:
    description = conf.description
    return {
        "service_code": conf.service.service_code,
        "service_version": conf.service.service_version,
        "kind": conf.kind.value,
        "description_document": description.document if description else None,
        "description_source": description.source if description else None,
        "backend_url": conf.backend_url,
        "timeout_seconds": conf.timeout_seconds,
        "tls_verify": conf.tls.verify,
        "tls_ca_bundle_pem": conf.tls.ca_bundle_pem,
        "tls_client_cert_path": conf.tls.client_cert_path,
        "tls_client_key_path": conf.tls.client_key_path,
        "enabled": conf.enabled,
        "disabled_notice": conf.disabled_notice,
    }


def _service_from_row(row: Row[Any], provider: ClientId, endpoints: Sequence[Endpoint]) -> ServiceConf:
    description = None
    if row.description_document is not None:
        description = ServiceDescription(row.description_document, row.description_source or "")
    service = ServiceId(
        provider.instance,
        provider.member_class,
        provider.member_code,
        provider.subsystem_code,
        row.service_code,
        row.service_version,
    )
    return ServiceConf(
        service=service,
        kind=ServiceKind(row.kind),
        backend_url=row.backend_url,
        timeout_seconds=row.timeout_seconds,
        tls=BackendTls(
            row.tls_verify, row.tls_ca_bundle_pem, row.tls_client_cert_path, row.tls_client_key_path
        ),
        enabled=row.enabled,
        disabled_notice=row.disabled_notice,
        description=description,
        endpoints=tuple(endpoints),
    )


def _key_from_row(row: Row[Any]) -> KeyRecord:
    member = ClientId.from_text(row.member_id) if row.member_id is not None else None
    return KeyRecord(
        row.id,
        KeyUsage(row.usage),
        member,
        row.key_path,
        row.cert_pem,
        row.csr_pem,
        row.status,
        row.created_at,
    )


def _pinned_certificate(cert_pem: str | bytes) -> PinnedCertificate:
    data = cert_pem.encode() if isinstance(cert_pem, str) else cert_pem
    try:
        certificate = x509.load_pem_x509_certificate(data)
    except ValueError as error:
        raise ServerConfError(f"not a PEM certificate: {error}") from error
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    return PinnedCertificate(certificate.fingerprint(hashes.SHA256()).hex(), pem)


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


@dataclass(frozen=True, eq=False)
class ServerConfSnapshot:
    """The registrations at one `config_version`, immutable, for the request path.

    Built by :meth:`load` in one consistent read; nothing here touches the database.
    """

    version: int
    subsystems: Mapping[ClientId, SubsystemConf]
    services: Mapping[ServiceId, ServiceConf]
    access_rights: Mapping[RightsKey, tuple[AccessRight, ...]]
    local_groups: Mapping[ClientId, Mapping[LocalGroupId, LocalGroup]]
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

    @classmethod
    def load(cls, connection: Connection) -> ServerConfSnapshot:
        """Read every registration; give a connection in one transaction (db.begin_snapshot_read)."""
        version = connection.scalar(
            sa.select(config_version.c.version).where(config_version.c.id == _CONFIG_ROW)
        )
        if version is None:
            raise ServerConfError("config_version is empty: was the database migrated?")

        subsystem_rows = connection.execute(sa.select(subsystems)).all()
        clients = {row.id: _client_from_row(row) for row in subsystem_rows}
        certificates: dict[int, list[PinnedCertificate]] = defaultdict(list)
        for row in connection.execute(sa.select(client_certificates).order_by(client_certificates.c.id)):
            certificates[row.subsystem_id].append(PinnedCertificate(row.sha256, row.cert_pem))
        subsystem_confs = {
            clients[row.id]: SubsystemConf(
                clients[row.id],
                ClientAuthMode(row.auth_mode),
                tuple(certificates[row.id]),
                log_bodies=bool(row.log_bodies),
                timestamp_immediately=bool(row.timestamp_immediately),
            )
            for row in subsystem_rows
        }

        endpoints: dict[int, list[Endpoint]] = defaultdict(list)
        for row in connection.execute(sa.select(rest_endpoints).order_by(rest_endpoints.c.id)):
            endpoints[row.service_id].append(Endpoint(row.method, row.path_pattern))
        service_confs: dict[ServiceId, ServiceConf] = {}
        for row in connection.execute(sa.select(services)):
            conf = _service_from_row(row, clients[row.subsystem_id], endpoints[row.id])
            service_confs[conf.service] = conf

        rights: dict[RightsKey, list[AccessRight]] = defaultdict(list)
        for row in connection.execute(sa.select(access_rights).order_by(access_rights.c.id)):
            right = AccessRight(
                _subject_from_row(row.subject_type, row.subject_id),
                row.service_code,
                _endpoint_from_row(row.endpoint_method, row.endpoint_path),
            )
            rights[(clients[row.subsystem_id], row.service_code)].append(right)

        members: dict[int, set[ClientId]] = defaultdict(set)
        for row in connection.execute(sa.select(local_group_members)):
            members[row.group_id].add(ClientId.from_text(row.client_id))
        groups: dict[ClientId, dict[LocalGroupId, LocalGroup]] = defaultdict(dict)
        for row in connection.execute(sa.select(local_groups)):
            owner = clients[row.subsystem_id]
            code = LocalGroupId(row.group_code)
            groups[owner][code] = LocalGroup(owner, code, row.description, frozenset(members[row.id]))

        return cls(
            version=version,
            subsystems=MappingProxyType(subsystem_confs),
            services=MappingProxyType(service_confs),
            access_rights=MappingProxyType({key: tuple(value) for key, value in rights.items()}),
            local_groups=MappingProxyType({k: MappingProxyType(v) for k, v in groups.items()}),
        )

    def subsystem(self, client: ClientId) -> SubsystemConf | None:
        return self.subsystems.get(client)

    def service(self, service: ServiceId) -> ServiceConf | None:
        """The service registered under exactly this identifier.

        No version means "registered without a version", not "any version": X-Road looks
        services up by code and version alike, and a guess would change meaning silently
        when a second version is registered.
        """
        return self.services.get(service)

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


# --- the repository --------------------------------------------------------------------


class ServerConfRepository:
    """Reads and changes the server configuration in one database (SQLite or PostgreSQL).

    Every change bumps `config_version` in its own transaction, first, so concurrent writers
    queue on that row (PostgreSQL) or on SQLite's write lock, and other nodes see the change
    at their next :meth:`snapshot`. The audit log is a record, not configuration: writing to
    it does not bump the version.
    """

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self._engine = engine
        self._clock = clock
        self._admin = AdminStore(engine, api_keys, audit_log, clock, key_change=self._change)
        self._lock = threading.Lock()
        self._snapshot: ServerConfSnapshot | None = None
        self._confirmed_at = -math.inf

    @classmethod
    def from_url(cls, url: str) -> ServerConfRepository:
        """A repository on its own engine (db.create_engine); the database must be migrated."""
        return cls(create_engine(url))

    @property
    def engine(self) -> Engine:
        return self._engine

    # --- versions and snapshots

    def current_version(self) -> int:
        with self._engine.connect() as connection:
            version = connection.scalar(
                sa.select(config_version.c.version).where(config_version.c.id == _CONFIG_ROW)
            )
        if version is None:
            raise ServerConfError("config_version is empty: was the database migrated?")
        return int(version)

    def snapshot(self, *, max_staleness: float = 0.0) -> ServerConfSnapshot:
        """The registrations as the database holds them, reloaded only when the version moved.

        With `max_staleness` > 0, a snapshot confirmed current less than that many seconds
        ago is returned without asking the database: what the request path wants (one
        version query per interval, not per request).
        """
        with self._lock:
            now = time.monotonic()
            cached = self._snapshot
            if cached is not None and now - self._confirmed_at < max_staleness:
                return cached
            if cached is None or self.current_version() != cached.version:
                with begin_snapshot_read(self._engine) as connection:
                    cached = ServerConfSnapshot.load(connection)
                self._snapshot = cached
            self._confirmed_at = now
            return cached

    @contextmanager
    def _change(self) -> Iterator[Connection]:
        """One configuration change: a write transaction that bumps config_version first."""
        try:
            with begin_write(self._engine) as connection:
                connection.execute(
                    sa.update(config_version)
                    .where(config_version.c.id == _CONFIG_ROW)
                    .values(version=config_version.c.version + 1, changed_at=self._clock())
                )
                yield connection
        except sa.exc.IntegrityError as error:
            # What the checks below did not foresee, e.g. a race on a unique column.
            raise AlreadyExists(
                f"the change conflicts with the stored configuration: {error.orig}"
            ) from error

    # --- subsystems

    def add_subsystem(self, client: ClientId, auth_mode: ClientAuthMode = ClientAuthMode.HTTPS) -> None:
        with self._change() as connection:
            if _find_subsystem(connection, client) is not None:
                raise AlreadyExists(f"subsystem {client} is registered already")
            connection.execute(
                sa.insert(subsystems).values(
                    client_id=client.to_text(),
                    instance=client.instance,
                    member_class=client.member_class,
                    member_code=client.member_code,
                    subsystem_code=client.subsystem_code,
                    auth_mode=ClientAuthMode(auth_mode).value,
                )
            )

    def set_auth_mode(self, client: ClientId, auth_mode: ClientAuthMode) -> None:
        with self._change() as connection:
            pk = _subsystem_pk(connection, client)
            connection.execute(
                sa.update(subsystems)
                .where(subsystems.c.id == pk)
                .values(auth_mode=ClientAuthMode(auth_mode).value)
            )

    def set_logging_policy(
        self, client: ClientId, *, log_bodies: bool | None = None, timestamp_immediately: bool | None = None
    ) -> None:
        """The subsystem's message-log policy; None leaves a setting as it is."""
        values: dict[str, bool] = {}
        if log_bodies is not None:
            values["log_bodies"] = log_bodies
        if timestamp_immediately is not None:
            values["timestamp_immediately"] = timestamp_immediately
        if not values:
            return
        with self._change() as connection:
            pk = _subsystem_pk(connection, client)
            connection.execute(sa.update(subsystems).where(subsystems.c.id == pk).values(**values))

    def remove_subsystem(self, client: ClientId) -> None:
        """Unregister a client with its services, rights, groups and certificates."""
        with self._change() as connection:
            pk = _subsystem_pk(connection, client)
            connection.execute(sa.delete(subsystems).where(subsystems.c.id == pk))

    def pin_certificate(self, client: ClientId, cert_pem: str | bytes) -> str:
        """Pin a client TLS certificate for the subsystem; returns its SHA-256 fingerprint (hex)."""
        pinned = _pinned_certificate(cert_pem)
        with self._change() as connection:
            pk = _subsystem_pk(connection, client)
            exists = connection.scalar(
                sa.select(client_certificates.c.id).where(
                    client_certificates.c.subsystem_id == pk, client_certificates.c.sha256 == pinned.sha256
                )
            )
            if exists is not None:
                raise AlreadyExists(f"certificate {pinned.sha256} is pinned for {client} already")
            connection.execute(
                sa.insert(client_certificates).values(
                    subsystem_id=pk, sha256=pinned.sha256, cert_pem=pinned.pem
                )
            )
        return pinned.sha256

    def unpin_certificate(self, client: ClientId, sha256: str) -> None:
        with self._change() as connection:
            pk = _subsystem_pk(connection, client)
            deleted = connection.execute(
                sa.delete(client_certificates).where(
                    client_certificates.c.subsystem_id == pk, client_certificates.c.sha256 == sha256.lower()
                )
            )
            if deleted.rowcount == 0:
                raise NotFound(f"no certificate {sha256} pinned for {client}")

    # --- services and endpoints

    def add_service(self, conf: ServiceConf) -> None:
        with self._change() as connection:
            provider_pk = _subsystem_pk(connection, conf.provider)
            if _find_service(connection, conf.service) is not None:
                raise AlreadyExists(f"service {conf.service} is registered already")
            result = connection.execute(
                sa.insert(services).values(subsystem_id=provider_pk, **_service_values(conf))
            )
            _insert_endpoints(connection, _new_id(result), conf.endpoints)

    def update_service(self, conf: ServiceConf) -> None:
        """Replace a registered service's settings and endpoints with `conf`'s."""
        with self._change() as connection:
            pk = _service_pk(connection, conf.service)
            connection.execute(sa.update(services).where(services.c.id == pk).values(**_service_values(conf)))
            connection.execute(sa.delete(rest_endpoints).where(rest_endpoints.c.service_id == pk))
            _insert_endpoints(connection, pk, conf.endpoints)

    def set_service_enabled(self, service: ServiceId, enabled: bool, notice: str | None = None) -> None:
        """Enable or disable a service; a disabled one answers ServiceDisabled with `notice`."""
        with self._change() as connection:
            pk = _service_pk(connection, service)
            connection.execute(
                sa.update(services)
                .where(services.c.id == pk)
                .values(enabled=enabled, disabled_notice=None if enabled else notice)
            )

    def remove_service(self, service: ServiceId) -> None:
        """Unregister a service; its access rights go with its last version (as in X-Road)."""
        with self._change() as connection:
            pk = _service_pk(connection, service)
            provider_pk = _subsystem_pk(connection, service.provider)
            connection.execute(sa.delete(services).where(services.c.id == pk))
            if not _service_code_registered(connection, provider_pk, service.service_code):
                connection.execute(
                    sa.delete(access_rights).where(
                        access_rights.c.subsystem_id == provider_pk,
                        access_rights.c.service_code == service.service_code,
                    )
                )

    def add_endpoint(self, service: ServiceId, endpoint: Endpoint) -> None:
        with self._change() as connection:
            pk = _service_pk(connection, service)
            kind = connection.scalar(sa.select(services.c.kind).where(services.c.id == pk))
            if kind != ServiceKind.REST.value:
                raise ServerConfError(f"{service} is not a REST service")
            if _find_endpoint(connection, pk, endpoint) is not None:
                raise AlreadyExists(f"endpoint {endpoint.method} {endpoint.path_pattern} exists already")
            _insert_endpoints(connection, pk, (endpoint,))

    def remove_endpoint(self, service: ServiceId, endpoint: Endpoint) -> None:
        with self._change() as connection:
            pk = _service_pk(connection, service)
            endpoint_pk = _find_endpoint(connection, pk, endpoint)
            if endpoint_pk is None:
                raise NotFound(f"no endpoint {endpoint.method} {endpoint.path_pattern} on {service}")
            connection.execute(sa.delete(rest_endpoints).where(rest_endpoints.c.id == endpoint_pk))

    # --- access rights

    def grant(self, provider: ClientId, right: AccessRight) -> None:
        """Give `right` to its subject on the provider's service (any version of its code)."""
        with self._change() as connection:
            provider_pk = _subsystem_pk(connection, provider)
            kinds = set(
                connection.scalars(
                    sa.select(services.c.kind).where(
                        services.c.subsystem_id == provider_pk, services.c.service_code == right.service_code
                    )
                )
            )
            if not kinds:
                raise NotFound(f"{provider} has no service {right.service_code!r}")
            if right.endpoint is not None and ServiceKind.REST.value not in kinds:
                raise ServerConfError(f"{right.service_code!r} is a SOAP service: it has no endpoints")
            if isinstance(right.subject, LocalGroupId):
                _local_group_pk(connection, provider_pk, provider, right.subject)
            if _find_right(connection, provider_pk, right) is not None:
                raise AlreadyExists(f"{right.subject} holds this right to {right.service_code!r} already")
            subject_type, subject_id = _subject_to_row(right.subject)
            endpoint = right.endpoint
            connection.execute(
                sa.insert(access_rights).values(
                    subsystem_id=provider_pk,
                    service_code=right.service_code,
                    subject_type=subject_type,
                    subject_id=subject_id,
                    endpoint_method=endpoint.method if endpoint else None,
                    endpoint_path=endpoint.path_pattern if endpoint else None,
                    created_at=self._clock(),
                )
            )

    def revoke(self, provider: ClientId, right: AccessRight) -> None:
        with self._change() as connection:
            provider_pk = _subsystem_pk(connection, provider)
            right_pk = _find_right(connection, provider_pk, right)
            if right_pk is None:
                raise NotFound(f"{right.subject} holds no such right to {right.service_code!r}")
            connection.execute(sa.delete(access_rights).where(access_rights.c.id == right_pk))

    # --- local groups

    def add_local_group(self, owner: ClientId, group: LocalGroupId, description: str = "") -> None:
        with self._change() as connection:
            owner_pk = _subsystem_pk(connection, owner)
            if _find_local_group(connection, owner_pk, group) is not None:
                raise AlreadyExists(f"{owner} has a local group {group} already")
            connection.execute(
                sa.insert(local_groups).values(
                    subsystem_id=owner_pk, group_code=group.group_code, description=description
                )
            )

    def set_local_group_description(self, owner: ClientId, group: LocalGroupId, description: str) -> None:
        with self._change() as connection:
            pk = _local_group_pk(connection, _subsystem_pk(connection, owner), owner, group)
            connection.execute(
                sa.update(local_groups).where(local_groups.c.id == pk).values(description=description)
            )

    def remove_local_group(self, owner: ClientId, group: LocalGroupId) -> None:
        """Delete a local group, its members and the rights granted to it (as X-Road does)."""
        with self._change() as connection:
            owner_pk = _subsystem_pk(connection, owner)
            pk = _local_group_pk(connection, owner_pk, owner, group)
            subject_type, subject_id = _subject_to_row(group)
            connection.execute(
                sa.delete(access_rights).where(
                    access_rights.c.subsystem_id == owner_pk,
                    access_rights.c.subject_type == subject_type,
                    access_rights.c.subject_id == subject_id,
                )
            )
            connection.execute(sa.delete(local_groups).where(local_groups.c.id == pk))

    def add_local_group_member(self, owner: ClientId, group: LocalGroupId, member: ClientId) -> None:
        with self._change() as connection:
            pk = _local_group_pk(connection, _subsystem_pk(connection, owner), owner, group)
            if _find_member(connection, pk, member) is not None:
                raise AlreadyExists(f"{member} is in {group} already")
            connection.execute(
                sa.insert(local_group_members).values(
                    group_id=pk, client_id=member.to_text(), added_at=self._clock()
                )
            )

    def remove_local_group_member(self, owner: ClientId, group: LocalGroupId, member: ClientId) -> None:
        with self._change() as connection:
            pk = _local_group_pk(connection, _subsystem_pk(connection, owner), owner, group)
            member_pk = _find_member(connection, pk, member)
            if member_pk is None:
                raise NotFound(f"{member} is not in {group}")
            connection.execute(sa.delete(local_group_members).where(local_group_members.c.id == member_pk))

    # --- management API keys and the audit log (gateway.adminstore, on this gateway's tables)

    def create_api_key(self, name: str, role: str) -> tuple[ApiKey, str]:
        """A new key for the management API: its record, and the key itself, shown this once."""
        return self._admin.create_api_key(name, role)

    def verify_api_key(self, key: str) -> ApiKey | None:
        """The live (not revoked) key record for a presented key, or None."""
        return self._admin.verify_api_key(key)

    def list_api_keys(self) -> list[ApiKey]:
        return self._admin.list_api_keys()

    def revoke_api_key(self, key_id: int) -> None:
        if not self._admin.revoke_api_key(key_id):
            raise NotFound(f"no live API key {key_id}")

    def audit(
        self,
        actor: str,
        action: str,
        target: str = "",
        details: Mapping[str, Any] | None = None,
        result: AuditResult = AuditResult.OK,
    ) -> int:
        """Record one administrative act (DESIGN.md: every change is audited); returns its id."""
        return self._admin.audit(actor, action, target, details, result)

    def audit_entries(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        before_id: int | None = None,
        limit: int = DEFAULT_AUDIT_PAGE,
    ) -> list[AuditEntry]:
        """Audit entries, newest first; page back with `before_id` (the last id seen)."""
        return self._admin.audit_entries(
            actor=actor, action=action, since=since, before_id=before_id, limit=limit
        )

    # --- the gateway's keys

    def add_key(
        self,
        usage: KeyUsage,
        key_path: str,
        *,
        member: ClientId | None = None,
        cert_pem: str | None = None,
        csr_pem: str | None = None,
        status: str = "new",
    ) -> KeyRecord:
        usage = KeyUsage(usage)
        if usage is KeyUsage.SIGN and member is None:
            raise ServerConfError("a signing key signs for a member: name it")
        created_at = self._clock()
        with self._change() as connection:
            result = connection.execute(
                sa.insert(keys).values(
                    usage=usage.value,
                    member_id=member.to_text() if member is not None else None,
                    key_path=key_path,
                    cert_pem=cert_pem,
                    csr_pem=csr_pem,
                    status=status,
                    created_at=created_at,
                )
            )
        return KeyRecord(_new_id(result), usage, member, key_path, cert_pem, csr_pem, status, created_at)

    def update_key(
        self,
        key_id: int,
        *,
        cert_pem: str | None = None,
        csr_pem: str | None = None,
        status: str | None = None,
    ) -> KeyRecord:
        """Set the given fields (None leaves a field as it is); returns the record as stored."""
        changes = {
            name: value
            for name, value in (("cert_pem", cert_pem), ("csr_pem", csr_pem), ("status", status))
            if value is not None
        }
        with self._change() as connection:
            if changes:
                connection.execute(sa.update(keys).where(keys.c.id == key_id).values(**changes))
            row = connection.execute(sa.select(keys).where(keys.c.id == key_id)).first()
            if row is None:
                raise NotFound(f"no key {key_id}")
            return _key_from_row(row)

    def remove_key(self, key_id: int) -> None:
        with self._change() as connection:
            if connection.execute(sa.delete(keys).where(keys.c.id == key_id)).rowcount == 0:
                raise NotFound(f"no key {key_id}")

    def get_key(self, key_id: int) -> KeyRecord | None:
        with self._engine.connect() as connection:
            row = connection.execute(sa.select(keys).where(keys.c.id == key_id)).first()
        return _key_from_row(row) if row is not None else None

    def list_keys(self, usage: KeyUsage | None = None) -> list[KeyRecord]:
        query = sa.select(keys).order_by(keys.c.id)
        if usage is not None:
            query = query.where(keys.c.usage == KeyUsage(usage).value)
        with self._engine.connect() as connection:
            return [_key_from_row(row) for row in connection.execute(query)]


# --- lookups inside a transaction ------------------------------------------------------


def _new_id(result: sa.CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    if key is None:
        raise RuntimeError("the database gave no id for the new row")
    return int(key[0])


def _find_subsystem(connection: Connection, client: ClientId) -> int | None:
    return connection.scalar(sa.select(subsystems.c.id).where(subsystems.c.client_id == client.to_text()))


def _subsystem_pk(connection: Connection, client: ClientId) -> int:
    pk = _find_subsystem(connection, client)
    if pk is None:
        raise NotFound(f"no subsystem {client} is registered")
    return pk


def _find_service(connection: Connection, service: ServiceId) -> int | None:
    return connection.scalar(
        sa.select(services.c.id)
        .join(subsystems, services.c.subsystem_id == subsystems.c.id)
        .where(
            subsystems.c.client_id == service.provider.to_text(),
            services.c.service_code == service.service_code,
            # `== None` renders IS NULL: a service without version is found only as such.
            services.c.service_version == service.service_version,
        )
    )


def _service_pk(connection: Connection, service: ServiceId) -> int:
    pk = _find_service(connection, service)
    if pk is None:
        raise NotFound(f"no service {service} is registered")
    return pk


def _service_code_registered(connection: Connection, provider_pk: int, service_code: str) -> bool:
    found = connection.scalar(
        sa.select(services.c.id)
        .where(services.c.subsystem_id == provider_pk, services.c.service_code == service_code)
        .limit(1)
    )
    return found is not None


def _find_endpoint(connection: Connection, service_pk: int, endpoint: Endpoint) -> int | None:
    return connection.scalar(
        sa.select(rest_endpoints.c.id).where(
            rest_endpoints.c.service_id == service_pk,
            rest_endpoints.c.method == endpoint.method,
            rest_endpoints.c.path_pattern == endpoint.path_pattern,
        )
    )


def _insert_endpoints(connection: Connection, service_pk: int, endpoints: Sequence[Endpoint]) -> None:
    if endpoints:
        connection.execute(
            sa.insert(rest_endpoints),
            [
                {"service_id": service_pk, "method": e.method, "path_pattern": e.path_pattern}
                for e in endpoints
            ],
        )


def _find_right(connection: Connection, provider_pk: int, right: AccessRight) -> int | None:
    subject_type, subject_id = _subject_to_row(right.subject)
    endpoint = right.endpoint
    return connection.scalar(
        sa.select(access_rights.c.id).where(
            access_rights.c.subsystem_id == provider_pk,
            access_rights.c.service_code == right.service_code,
            access_rights.c.subject_type == subject_type,
            access_rights.c.subject_id == subject_id,
            access_rights.c.endpoint_method == (endpoint.method if endpoint else None),
            access_rights.c.endpoint_path == (endpoint.path_pattern if endpoint else None),
        )
    )


def _find_local_group(connection: Connection, owner_pk: int, group: LocalGroupId) -> int | None:
    return connection.scalar(
        sa.select(local_groups.c.id).where(
            local_groups.c.subsystem_id == owner_pk, local_groups.c.group_code == group.group_code
        )
    )


def _local_group_pk(connection: Connection, owner_pk: int, owner: ClientId, group: LocalGroupId) -> int:
    pk = _find_local_group(connection, owner_pk, group)
    if pk is None:
        raise NotFound(f"{owner} has no local group {group}")
    return pk


def _find_member(connection: Connection, group_pk: int, member: ClientId) -> int | None:
    return connection.scalar(
        sa.select(local_group_members.c.id).where(
            local_group_members.c.group_id == group_pk, local_group_members.c.client_id == member.to_text()
        )
    )
