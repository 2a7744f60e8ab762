"""This gateway's registrations, stored and read: subsystems, services, access rights, groups.

Two faces. :class:`ServerConfRepository` makes changes, each in one transaction that also
bumps `config_version`, and keeps the administrative tables (API keys, audit log, keys).
:func:`load_snapshot` reads a :class:`~gateway.serverconf.model.ServerConfSnapshot`, an
immutable copy of the registrations for the request path, in one consistent read; the
repository replaces it when `config_version` moves: that is how several nodes sharing one
PostgreSQL see each other's changes without asking the database per request.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gateway.adminstore import (
    DEFAULT_AUDIT_PAGE,
    AdminStore,
    ApiKey,
    AuditChainReport,
    AuditEntry,
    AuditResult,
)
from gateway.ids import ClientId, LocalGroupId, ServiceId
from gateway.serverconf.access import AccessRight, Endpoint
from gateway.serverconf.db import begin_snapshot_read, begin_write, create_engine
from gateway.serverconf.model import (
    DEFAULT_CLIENT_AUTH_MODE,
    CachePolicyRecord,
    ClientAuthMode,
    KeyRecord,
    KeyUsage,
    ServerConfSnapshot,
    ServiceConf,
    ServiceKind,
)
from gateway.serverconf.repository._lookups import (
    find_endpoint,
    find_local_group,
    find_member,
    find_right,
    find_service,
    find_subsystem,
    insert_endpoints,
    local_group_pk,
    new_id,
    service_code_registered,
    service_pk,
    subsystem_pk,
)
from gateway.serverconf.repository._rows import (
    CONFIG_ROW,
    key_from_row,
    pinned_certificate,
    service_values,
    subject_to_row,
)
from gateway.serverconf.repository.errors import AlreadyExists, NotFound, ServerConfError
from gateway.serverconf.repository.snapshot import load_snapshot
from gateway.serverconf.tables import (
    access_rights,
    api_keys,
    audit_log,
    cache_policies,
    client_certificates,
    config_version,
    keys,
    local_group_members,
    local_groups,
    rest_endpoints,
    services,
    subsystems,
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


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
        self._batch = threading.local()  # .connection: the transaction of batch() in this thread
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
                sa.select(config_version.c.version).where(config_version.c.id == CONFIG_ROW)
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
                    cached = load_snapshot(connection)
                self._snapshot = cached
            self._confirmed_at = now
            return cached

    @contextmanager
    def batch(self) -> Iterator[int]:
        """The changes made in this block (by this thread) as one transaction: all or none of them.

        For a declarative apply (gateway.admin.declarative): each change method still checks
        what it checks, but within one transaction that bumps config_version once, so other
        nodes never load half of it and a failure midway leaves nothing behind. Yields the
        configuration version the batch will commit as (the one before it, plus one).
        """
        if getattr(self._batch, "connection", None) is not None:
            raise ServerConfError("a batch of changes is open already")
        with self._change() as connection:
            self._batch.connection = connection
            try:
                yield int(
                    connection.scalar(
                        sa.select(config_version.c.version).where(config_version.c.id == CONFIG_ROW)
                    )
                    or 0
                )
            finally:
                self._batch.connection = None

    @contextmanager
    def _change(self) -> Iterator[Connection]:
        """One configuration change: a write transaction that bumps config_version first
        (or the open :meth:`batch`'s transaction)."""
        open_batch = getattr(self._batch, "connection", None)
        if open_batch is not None:
            yield open_batch
            return
        try:
            with begin_write(self._engine) as connection:
                connection.execute(
                    sa.update(config_version)
                    .where(config_version.c.id == CONFIG_ROW)
                    .values(version=config_version.c.version + 1, changed_at=self._clock())
                )
                yield connection
        except sa.exc.IntegrityError as error:
            # What the checks below did not foresee, e.g. a race on a unique column.
            raise AlreadyExists(
                f"the change conflicts with the stored configuration: {error.orig}"
            ) from error

    # --- subsystems

    def add_subsystem(self, client: ClientId, auth_mode: ClientAuthMode = DEFAULT_CLIENT_AUTH_MODE) -> None:
        """Register a subsystem; its systems connect with a pinned certificate unless told otherwise."""
        with self._change() as connection:
            if find_subsystem(connection, client) is not None:
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

    def register_owner(self, owner: ClientId) -> bool:
        """Register the gateway's owner member itself as a client, unless it is; True if added now.

        X-Road lists a security server's owner member among its clients from the start, and the
        protocols allow member-level clients (`X-Road-Client: INSTANCE/CLASS/MEMBER`), signed
        with the member's own key. Added in the default mode, like any new client: its systems
        connect with a certificate pinned for it.
        """
        if owner.subsystem_code is not None:
            raise ValueError(f"the owner is a member, not the subsystem {owner}")
        try:
            self.add_subsystem(owner)
        except AlreadyExists:
            return False
        return True

    def set_auth_mode(self, client: ClientId, auth_mode: ClientAuthMode) -> None:
        with self._change() as connection:
            pk = subsystem_pk(connection, client)
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
            pk = subsystem_pk(connection, client)
            connection.execute(sa.update(subsystems).where(subsystems.c.id == pk).values(**values))

    def remove_subsystem(self, client: ClientId) -> None:
        """Unregister a client with its services, rights, groups and certificates."""
        with self._change() as connection:
            pk = subsystem_pk(connection, client)
            connection.execute(sa.delete(subsystems).where(subsystems.c.id == pk))

    def pin_certificate(self, client: ClientId, cert_pem: str | bytes) -> str:
        """Pin a client TLS certificate for the subsystem; returns its SHA-256 fingerprint (hex)."""
        pinned = pinned_certificate(cert_pem)
        with self._change() as connection:
            pk = subsystem_pk(connection, client)
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
            pk = subsystem_pk(connection, client)
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
            self._insert_service(connection, conf)

    def update_service(self, conf: ServiceConf) -> None:
        """Replace a registered service's settings and endpoints with `conf`'s."""
        with self._change() as connection:
            self._update_service(connection, conf)

    def set_service_enabled(self, service: ServiceId, enabled: bool, notice: str | None = None) -> None:
        """Enable or disable a service; a disabled one answers ServiceDisabled with `notice`."""
        self.set_services_enabled((service,), enabled, notice)

    def set_services_enabled(
        self, services_: Sequence[ServiceId], enabled: bool, notice: str | None = None
    ) -> None:
        """Enable or disable several services (a whole description) at once, or none of them."""
        with self._change() as connection:
            for service in services_:
                pk = service_pk(connection, service)
                connection.execute(
                    sa.update(services)
                    .where(services.c.id == pk)
                    .values(enabled=enabled, disabled_notice=None if enabled else notice)
                )

    def remove_service(self, service: ServiceId) -> None:
        """Unregister a service; its access rights go with its last version (as in X-Road)."""
        with self._change() as connection:
            self._remove_service(connection, service)

    def apply_description(
        self, add: Sequence[ServiceConf], update: Sequence[ServiceConf], remove: Sequence[ServiceId]
    ) -> None:
        """A description's services added, updated and removed in one transaction: all or nothing."""
        with self._change() as connection:
            for service in remove:
                self._remove_service(connection, service)
            for conf in update:
                self._update_service(connection, conf)
            for conf in add:
                self._insert_service(connection, conf)

    @staticmethod
    def _insert_service(connection: Connection, conf: ServiceConf) -> None:
        provider_pk = subsystem_pk(connection, conf.provider)
        if find_service(connection, conf.service) is not None:
            raise AlreadyExists(f"service {conf.service} is registered already")
        result = connection.execute(
            sa.insert(services).values(subsystem_id=provider_pk, **service_values(conf))
        )
        insert_endpoints(connection, new_id(result), conf.endpoints)

    @staticmethod
    def _update_service(connection: Connection, conf: ServiceConf) -> None:
        pk = service_pk(connection, conf.service)
        connection.execute(sa.update(services).where(services.c.id == pk).values(**service_values(conf)))
        connection.execute(sa.delete(rest_endpoints).where(rest_endpoints.c.service_id == pk))
        insert_endpoints(connection, pk, conf.endpoints)

    @staticmethod
    def _remove_service(connection: Connection, service: ServiceId) -> None:
        pk = service_pk(connection, service)
        provider_pk = subsystem_pk(connection, service.provider)
        connection.execute(sa.delete(services).where(services.c.id == pk))
        if not service_code_registered(connection, provider_pk, service.service_code):
            connection.execute(
                sa.delete(access_rights).where(
                    access_rights.c.subsystem_id == provider_pk,
                    access_rights.c.service_code == service.service_code,
                )
            )

    def add_endpoint(self, service: ServiceId, endpoint: Endpoint) -> None:
        with self._change() as connection:
            pk = service_pk(connection, service)
            kind = connection.scalar(sa.select(services.c.kind).where(services.c.id == pk))
            if kind != ServiceKind.REST.value:
                raise ServerConfError(f"{service} is not a REST service")
            if find_endpoint(connection, pk, endpoint) is not None:
                raise AlreadyExists(f"endpoint {endpoint.method} {endpoint.path_pattern} exists already")
            insert_endpoints(connection, pk, (endpoint,))

    def remove_endpoint(self, service: ServiceId, endpoint: Endpoint) -> None:
        with self._change() as connection:
            pk = service_pk(connection, service)
            endpoint_pk = find_endpoint(connection, pk, endpoint)
            if endpoint_pk is None:
                raise NotFound(f"no endpoint {endpoint.method} {endpoint.path_pattern} on {service}")
            connection.execute(sa.delete(rest_endpoints).where(rest_endpoints.c.id == endpoint_pk))

    # --- access rights

    def grant(self, provider: ClientId, right: AccessRight) -> None:
        """Give `right` to its subject on the provider's service (any version of its code)."""
        with self._change() as connection:
            provider_pk = subsystem_pk(connection, provider)
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
                local_group_pk(connection, provider_pk, provider, right.subject)
            if find_right(connection, provider_pk, right) is not None:
                raise AlreadyExists(f"{right.subject} holds this right to {right.service_code!r} already")
            subject_type, subject_id = subject_to_row(right.subject)
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
            provider_pk = subsystem_pk(connection, provider)
            right_pk = find_right(connection, provider_pk, right)
            if right_pk is None:
                raise NotFound(f"{right.subject} holds no such right to {right.service_code!r}")
            connection.execute(sa.delete(access_rights).where(access_rights.c.id == right_pk))

    # --- local groups

    def add_local_group(self, owner: ClientId, group: LocalGroupId, description: str = "") -> None:
        with self._change() as connection:
            owner_pk = subsystem_pk(connection, owner)
            if find_local_group(connection, owner_pk, group) is not None:
                raise AlreadyExists(f"{owner} has a local group {group} already")
            connection.execute(
                sa.insert(local_groups).values(
                    subsystem_id=owner_pk, group_code=group.group_code, description=description
                )
            )

    def set_local_group_description(self, owner: ClientId, group: LocalGroupId, description: str) -> None:
        with self._change() as connection:
            pk = local_group_pk(connection, subsystem_pk(connection, owner), owner, group)
            connection.execute(
                sa.update(local_groups).where(local_groups.c.id == pk).values(description=description)
            )

    def remove_local_group(self, owner: ClientId, group: LocalGroupId) -> None:
        """Delete a local group, its members and the rights granted to it (as X-Road does)."""
        with self._change() as connection:
            owner_pk = subsystem_pk(connection, owner)
            pk = local_group_pk(connection, owner_pk, owner, group)
            subject_type, subject_id = subject_to_row(group)
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
            pk = local_group_pk(connection, subsystem_pk(connection, owner), owner, group)
            if find_member(connection, pk, member) is not None:
                raise AlreadyExists(f"{member} is in {group} already")
            connection.execute(
                sa.insert(local_group_members).values(
                    group_id=pk, client_id=member.to_text(), added_at=self._clock()
                )
            )

    def remove_local_group_member(self, owner: ClientId, group: LocalGroupId, member: ClientId) -> None:
        with self._change() as connection:
            pk = local_group_pk(connection, subsystem_pk(connection, owner), owner, group)
            member_pk = find_member(connection, pk, member)
            if member_pk is None:
                raise NotFound(f"{member} is not in {group}")
            connection.execute(sa.delete(local_group_members).where(local_group_members.c.id == member_pk))

    # --- interface cache policies (documents of gateway.cache.policy, validated by it)

    def add_cache_policy(self, name: str, service: ServiceId, document: Mapping[str, Any]) -> None:
        with self._change() as connection:
            if self._cache_policy_row(connection, name) is not None:
                raise AlreadyExists(f"cache policy {name!r} exists already")
            now = self._clock()
            connection.execute(
                sa.insert(cache_policies).values(
                    name=name,
                    service=service.to_text(),
                    document=dict(document),
                    created_at=now,
                    updated_at=now,
                )
            )

    def update_cache_policy(self, name: str, service: ServiceId, document: Mapping[str, Any]) -> None:
        with self._change() as connection:
            if self._cache_policy_row(connection, name) is None:
                raise NotFound(f"no cache policy {name!r}")
            connection.execute(
                sa.update(cache_policies)
                .where(cache_policies.c.name == name)
                .values(service=service.to_text(), document=dict(document), updated_at=self._clock())
            )

    def remove_cache_policy(self, name: str) -> None:
        with self._change() as connection:
            if self._cache_policy_row(connection, name) is None:
                raise NotFound(f"no cache policy {name!r}")
            connection.execute(sa.delete(cache_policies).where(cache_policies.c.name == name))

    def get_cache_policy(self, name: str) -> CachePolicyRecord | None:
        with self._engine.connect() as connection:
            row = self._cache_policy_row(connection, name)
        return None if row is None else CachePolicyRecord(row.name, dict(row.document), row.updated_at)

    def list_cache_policies(self) -> list[CachePolicyRecord]:
        with self._engine.connect() as connection:
            rows = connection.execute(sa.select(cache_policies).order_by(cache_policies.c.name)).all()
        return [CachePolicyRecord(row.name, dict(row.document), row.updated_at) for row in rows]

    @staticmethod
    def _cache_policy_row(connection: Connection, name: str) -> Any:
        return connection.execute(sa.select(cache_policies).where(cache_policies.c.name == name)).first()

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

    def audit_head(self) -> bytes | None:
        """The audit chain's newest hash, covered by the signed log heads (adminstore)."""
        return self._admin.audit_head()

    def verify_audit_chain(self) -> AuditChainReport:
        return self._admin.verify_audit_chain()

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
        return KeyRecord(new_id(result), usage, member, key_path, cert_pem, csr_pem, status, created_at)

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
            return key_from_row(row)

    def remove_key(self, key_id: int) -> None:
        with self._change() as connection:
            if connection.execute(sa.delete(keys).where(keys.c.id == key_id)).rowcount == 0:
                raise NotFound(f"no key {key_id}")

    def get_key(self, key_id: int) -> KeyRecord | None:
        with self._engine.connect() as connection:
            row = connection.execute(sa.select(keys).where(keys.c.id == key_id)).first()
        return key_from_row(row) if row is not None else None

    def list_keys(self, usage: KeyUsage | None = None) -> list[KeyRecord]:
        query = sa.select(keys).order_by(keys.c.id)
        if usage is not None:
            query = query.where(keys.c.usage == KeyUsage(usage).value)
        with self._engine.connect() as connection:
            return [key_from_row(row) for row in connection.execute(query)]
