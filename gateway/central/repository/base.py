"""The registry's core: one transaction per change, checked publishable before it commits;
identifiers to rows; the configuration as stored."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from cryptography import x509
from sqlalchemy.engine import Connection, Engine

from gateway.adminstore import AdminStore
from gateway.central import tables as t
from gateway.central.repository._rows import _code, _read_monitoring_client, _read_settings
from gateway.central.repository.errors import Conflict, InvalidChange, NotFound
from gateway.central.repository.values import MemberClass
from gateway.db import begin_snapshot_read, begin_write
from gateway.globalconf.model import (
    GlobalConf,
    GlobalConfError,
    GlobalConfSettings,
    GlobalGroup,
    Member,
    OcspResponder,
    SecurityServerInfo,
    TimestampingAuthority,
    TrustedCa,
)
from gateway.ids import ClientId, GlobalGroupId, SecurityServerId


def _utc_now() -> datetime:
    return datetime.now(UTC)


class RegistryBase:
    """One instance's registry in one database: transactions, lookups by identifier, and reading
    the configuration a change leads to. The concerns in the sibling modules build on it."""

    def __init__(self, engine: Engine, instance: str, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self._engine = engine
        self.instance = _code(instance, "instance")
        self._clock = clock
        self.admin = AdminStore(engine, t.api_keys, t.audit_log, clock)

    @property
    def engine(self) -> Engine:
        return self._engine

    def now(self) -> datetime:
        return self._clock()

    @contextmanager
    def _change(self) -> Iterator[Connection]:
        """One change: a write transaction that checks, before committing, that it can be published."""
        try:
            with begin_write(self._engine) as connection:
                yield connection
                self._check_publishable(connection)
        except sa.exc.IntegrityError as error:
            raise Conflict(f"the change conflicts with the registry: {error.orig}") from error

    def _check_publishable(self, connection: Connection) -> None:
        try:
            self._load_conf(connection, 1, self._clock())
        except GlobalConfError as exc:
            raise InvalidChange(f"the configuration would be inconsistent: {exc}") from exc

    # --- identifiers to rows

    def _own(self, instance: str, what: str) -> None:
        if instance != self.instance:
            raise InvalidChange(
                f"{what} belongs to instance {instance!r}, this registry is {self.instance!r}"
            )

    def _find_member(self, connection: Connection, member: ClientId) -> int | None:
        self._own(member.instance, member.to_text())
        return connection.scalar(
            sa.select(t.members.c.id)
            .join(t.member_classes, t.members.c.class_id == t.member_classes.c.id)
            .where(
                t.member_classes.c.code == member.member_class, t.members.c.member_code == member.member_code
            )
        )

    def _member_pk(self, connection: Connection, member: ClientId) -> int:
        if member.subsystem_code is not None:
            raise InvalidChange(f"{member} is a subsystem, not a member")
        return _registered(self._find_member(connection, member), f"member {member}")

    def _find_subsystem(self, connection: Connection, client: ClientId) -> int | None:
        subsystems = t.subsystems.c
        return self._find_members_row(
            connection, client.member, subsystems.member_id, subsystems.subsystem_code, client.subsystem_code
        )

    def _subsystem_pk(self, connection: Connection, client: ClientId) -> int:
        if client.subsystem_code is None:
            raise InvalidChange(f"{client} is a member, not a subsystem")
        return _registered(self._find_subsystem(connection, client), f"subsystem {client}")

    def _find_server(self, connection: Connection, server: SecurityServerId) -> int | None:
        servers = t.security_servers.c
        return self._find_members_row(
            connection, server.owner, servers.owner_id, servers.server_code, server.server_code
        )

    def _server_pk(self, connection: Connection, server: SecurityServerId) -> int:
        return _registered(self._find_server(connection, server), f"security server {server}")

    def _find_members_row(
        self,
        connection: Connection,
        member: ClientId,
        member_column: sa.Column[Any],
        code_column: sa.Column[Any],
        code: str | None,
    ) -> int | None:
        """The row of one of `member`'s subsystems or gateways: `code` in `code_column` of the
        table whose `member_column` points at the member's row. None if either is not there."""
        member_pk = self._find_member(connection, member)
        if member_pk is None:
            return None
        return connection.scalar(
            sa.select(code_column.table.c.id).where(member_column == member_pk, code_column == code)
        )

    @staticmethod
    def _pk_by(connection: Connection, column: sa.Column[Any], value: str, what: str) -> int:
        pk = connection.scalar(sa.select(column.table.c.id).where(column == value))
        return _registered(pk, f"{what} {value!r}")

    # --- reading

    def configuration(self) -> GlobalConf:
        """What the registry would publish now (version: the last published, at least 1)."""
        with begin_snapshot_read(self._engine) as connection:
            version = connection.scalar(sa.select(t.published.c.version)) or 1
            return self._load_conf(connection, int(version), self._clock())

    def member_classes(self) -> list[MemberClass]:
        with self._engine.connect() as connection:
            rows = connection.execute(sa.select(t.member_classes).order_by(t.member_classes.c.code))
            return [MemberClass(row.code, row.description) for row in rows]

    def settings(self) -> GlobalConfSettings:
        with self._engine.connect() as connection:
            return _read_settings(connection)

    def trusted_ca_certificates(self) -> list[x509.Certificate]:
        """The CAs members' signing and gateways' authentication certificates must chain to."""
        with self._engine.connect() as connection:
            pems = connection.scalars(sa.select(t.trusted_cas.c.cert_pem).order_by(t.trusted_cas.c.name))
            return [x509.load_pem_x509_certificate(pem.encode()) for pem in pems]

    def _load_conf(self, connection: Connection, version: int, generated_at: datetime) -> GlobalConf:
        """The global configuration as the tables hold it, in a stable order (raises GlobalConfError)."""
        settings = _read_settings(connection)
        classes = {row.id: row.code for row in connection.execute(sa.select(t.member_classes))}
        member_ids: dict[int, ClientId] = {}
        names: dict[int, str] = {}
        for row in connection.execute(sa.select(t.members)):
            member_ids[row.id] = ClientId(self.instance, classes[row.class_id], row.member_code)
            names[row.id] = row.name
        subsystem_ids: dict[int, ClientId] = {}
        subsystem_codes: dict[int, list[str]] = defaultdict(list)
        for row in connection.execute(sa.select(t.subsystems)):
            member = member_ids[row.member_id]
            subsystem_ids[row.id] = ClientId(
                self.instance, member.member_class, member.member_code, row.subsystem_code
            )
            subsystem_codes[row.member_id].append(row.subsystem_code)
        members = sorted(
            (
                Member(m.member_class, m.member_code, names[pk], tuple(sorted(subsystem_codes[pk])))
                for pk, m in member_ids.items()
            ),
            key=lambda m: (m.member_class, m.member_code),
        )

        certificates: dict[int, list[str]] = defaultdict(list)
        for row in connection.execute(sa.select(t.auth_certificates).order_by(t.auth_certificates.c.id)):
            certificates[row.server_id].append(row.cert_pem)
        hosted: dict[int, list[ClientId]] = defaultdict(list)
        for row in connection.execute(sa.select(t.server_clients)):
            hosted[row.server_id].append(subsystem_ids[row.subsystem_id])
        servers = sorted(
            (
                SecurityServerInfo(
                    SecurityServerId(self.instance, owner.member_class, owner.member_code, row.server_code),
                    row.address,
                    tuple(certificates[row.id]),
                    tuple(sorted(hosted[row.id])),
                )
                for row in connection.execute(sa.select(t.security_servers))
                for owner in (member_ids[row.owner_id],)
            ),
            key=lambda server: server.id,
        )

        responders: dict[int, list[OcspResponder]] = defaultdict(list)
        for row in connection.execute(sa.select(t.ocsp_responders).order_by(t.ocsp_responders.c.id)):
            responders[row.ca_id].append(OcspResponder(row.url, row.cert_pem))
        cas = tuple(
            TrustedCa(row.name, row.cert_pem, tuple(responders[row.id]))
            for row in connection.execute(sa.select(t.trusted_cas).order_by(t.trusted_cas.c.name))
        )
        # Registration order is priority order, as for a CA's OCSP responders: gateways ask the
        # first that answers (gateway.outbound.failover, docs/resilience.md).
        tsas = tuple(
            TimestampingAuthority(row.name, row.url, row.cert_pem)
            for row in connection.execute(
                sa.select(t.timestamping_authorities).order_by(t.timestamping_authorities.c.id)
            )
        )
        group_members: dict[int, list[ClientId]] = defaultdict(list)
        for row in connection.execute(sa.select(t.global_group_members)):
            client = (
                subsystem_ids[row.subsystem_id] if row.subsystem_id is not None else member_ids[row.member_id]
            )
            group_members[row.group_id].append(client)
        groups = tuple(
            GlobalGroup(
                GlobalGroupId(self.instance, row.group_code),
                row.description,
                tuple(sorted(group_members[row.id])),
            )
            for row in connection.execute(sa.select(t.global_groups).order_by(t.global_groups.c.group_code))
        )
        return GlobalConf(
            instance=self.instance,
            version=version,
            generated_at=generated_at,
            expires_at=generated_at + timedelta(seconds=settings.validity_seconds),
            members=tuple(members),
            security_servers=tuple(servers),
            trusted_cas=cas,
            timestamping_authorities=tsas,
            global_groups=groups,
            settings=settings,
            monitoring_client=_read_monitoring_client(connection),
        )


def _registered(pk: int | None, what: str) -> int:
    """`pk`, the row of `what`; NotFound when there is none."""
    if pk is None:
        raise NotFound(f"no {what} is registered")
    return int(pk)
