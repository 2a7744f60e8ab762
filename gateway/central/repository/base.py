"""The central registry's state, stored and read: members, gateways, trust services, requests, keys.

:class:`CentralRepository` makes every change in one transaction and, before it commits,
builds the global configuration the change leads to: a change that would make it
inconsistent (a gateway without certificates, a certificate registered twice, an unknown
hosted client...) is refused whole, so whatever the database holds can always be published.
Approving a registration request applies it the same way, in the same transaction that
marks it approved. Publishing (:meth:`CentralRepository.publish`) bumps the persisted version
and stores the signed bytes; the signing itself is the caller's (`publisher.py`).
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

import sqlalchemy as sa
from cryptography import x509
from sqlalchemy.engine import Connection, Engine, Row

from gateway.adminstore import AdminStore
from gateway.central import tables as t
from gateway.central.requests import (
    RegistrationRequest,
    RequestRefused,
    RequestType,
    VerifiedRequest,
    check_address,
    read_signed_request,
)
from gateway.central.tables import RequestState, SigningKeyStatus
from gateway.crypto.certs import certificate_to_pem, fingerprint_sha256
from gateway.db import begin_snapshot_read, begin_write, create_engine
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
from gateway.ids import ClientId, GlobalGroupId, IdentifierError, SecurityServerId, validate_code

REQUEST_ID_BYTES: Final = 16
"""128 random bits: a request's id is its public handle, so it must not be guessable."""

DEFAULT_REQUEST_PAGE: Final = 100
MAX_REQUEST_PAGE: Final = 1000

_SINGLE_ROW: Final = 1


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --- errors ---------------------------------------------------------------------------------


class RegistryError(Exception):
    """A change the registry refuses; the message says why, for the administrator."""


class NotFound(RegistryError):
    """The change names something not registered."""


class Conflict(RegistryError):
    """The change clashes with what is stored (a duplicate, a decided request, a key in use)."""


class AlreadyExists(Conflict):
    """The change would register something a second time."""


class InvalidChange(RegistryError):
    """The change breaks a rule, or would make the published configuration inconsistent."""


# --- values ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemberClass:
    code: str
    description: str


@dataclass(frozen=True)
class RequestRecord:
    """A registration request and its decision, as both the registry and the gateway see it."""

    id: str
    request: RegistrationRequest
    state: RequestState
    submitted_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    reason: str | None


@dataclass(frozen=True)
class SigningKeyRecord:
    """A configuration-signing key: where its private key is, its certificate, its place in a rotation."""

    id: int
    key_path: str
    passphrase_env: str | None
    certificate: x509.Certificate
    sha256: str
    status: SigningKeyStatus
    created_at: datetime
    activated_at: datetime | None
    retired_at: datetime | None


@dataclass(frozen=True)
class PublishedConf:
    """The configuration last published: its version and the signed container's bytes."""

    version: int
    generated_at: datetime
    expires_at: datetime
    signed: bytes
    signer_sha256: str


Signer = Callable[[GlobalConf, SigningKeyRecord], bytes]
"""Signs a configuration with a key record: the publisher's, which reads private keys."""


def _request_record(row: Row[Any]) -> RequestRecord:
    return RequestRecord(
        row.id,
        read_signed_request(row.signed_request.encode()),
        RequestState(row.state),
        row.submitted_at,
        row.decided_at,
        row.decided_by,
        row.reason,
    )


def _signing_key_record(row: Row[Any]) -> SigningKeyRecord:
    return SigningKeyRecord(
        row.id,
        row.key_path,
        row.passphrase_env,
        x509.load_pem_x509_certificate(row.cert_pem.encode()),
        row.sha256,
        SigningKeyStatus(row.status),
        row.created_at,
        row.activated_at,
        row.retired_at,
    )


def _certificate(pem: str, what: str) -> tuple[str, str]:
    """(canonical PEM, SHA-256) of exactly one PEM certificate."""
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise InvalidChange(f"{what}: not a PEM certificate ({exc})") from exc
    if len(certificates) != 1:
        raise InvalidChange(f"{what}: expected one PEM certificate, found {len(certificates)}")
    return certificate_to_pem(certificates[0]).decode("ascii"), fingerprint_sha256(certificates[0])


def _code(value: str, what: str) -> str:
    try:
        return validate_code(value, what)
    except IdentifierError as exc:
        raise InvalidChange(exc.message) from exc


# --- the repository -------------------------------------------------------------------------


class CentralRepository:
    """The registry of one instance in one database (SQLite or PostgreSQL, migrated by db.migrate)."""

    def __init__(self, engine: Engine, instance: str, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self._engine = engine
        self.instance = _code(instance, "instance")
        self._clock = clock
        self.admin = AdminStore(engine, t.api_keys, t.audit_log, clock)

    @classmethod
    def from_url(cls, url: str, instance: str) -> CentralRepository:
        return cls(create_engine(url), instance)

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
        pk = self._find_member(connection, member)
        if pk is None:
            raise NotFound(f"no member {member} is registered")
        return pk

    def _find_subsystem(self, connection: Connection, client: ClientId) -> int | None:
        member_pk = self._find_member(connection, client.member)
        if member_pk is None:
            return None
        return connection.scalar(
            sa.select(t.subsystems.c.id).where(
                t.subsystems.c.member_id == member_pk, t.subsystems.c.subsystem_code == client.subsystem_code
            )
        )

    def _subsystem_pk(self, connection: Connection, client: ClientId) -> int:
        if client.subsystem_code is None:
            raise InvalidChange(f"{client} is a member, not a subsystem")
        pk = self._find_subsystem(connection, client)
        if pk is None:
            raise NotFound(f"no subsystem {client} is registered")
        return pk

    def _find_server(self, connection: Connection, server: SecurityServerId) -> int | None:
        owner_pk = self._find_member(connection, server.owner)
        if owner_pk is None:
            return None
        return connection.scalar(
            sa.select(t.security_servers.c.id).where(
                t.security_servers.c.owner_id == owner_pk,
                t.security_servers.c.server_code == server.server_code,
            )
        )

    def _server_pk(self, connection: Connection, server: SecurityServerId) -> int:
        pk = self._find_server(connection, server)
        if pk is None:
            raise NotFound(f"no security server {server} is registered")
        return pk

    @staticmethod
    def _pk_by(connection: Connection, column: sa.Column[Any], value: str, what: str) -> int:
        pk = connection.scalar(sa.select(column.table.c.id).where(column == value))
        if pk is None:
            raise NotFound(f"no {what} {value!r} is registered")
        return int(pk)

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
        tsas = tuple(
            TimestampingAuthority(row.name, row.url, row.cert_pem)
            for row in connection.execute(
                sa.select(t.timestamping_authorities).order_by(t.timestamping_authorities.c.name)
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
        )

    # --- member classes

    def add_member_class(self, code: str, description: str = "") -> None:
        with self._change() as connection:
            _code(code, "memberClass")
            if connection.scalar(sa.select(t.member_classes.c.id).where(t.member_classes.c.code == code)):
                raise AlreadyExists(f"member class {code!r} exists already")
            connection.execute(sa.insert(t.member_classes).values(code=code, description=description))

    def set_member_class_description(self, code: str, description: str) -> None:
        with self._change() as connection:
            pk = self._pk_by(connection, t.member_classes.c.code, code, "member class")
            connection.execute(
                sa.update(t.member_classes).where(t.member_classes.c.id == pk).values(description=description)
            )

    def remove_member_class(self, code: str) -> None:
        with self._change() as connection:
            pk = self._pk_by(connection, t.member_classes.c.code, code, "member class")
            if (
                connection.scalar(sa.select(t.members.c.id).where(t.members.c.class_id == pk).limit(1))
                is not None
            ):
                raise Conflict(f"member class {code!r} has members; delete them first")
            connection.execute(sa.delete(t.member_classes).where(t.member_classes.c.id == pk))

    # --- members and subsystems

    def add_member(self, member: ClientId, name: str) -> None:
        if member.subsystem_code is not None:
            raise InvalidChange(f"{member} is a subsystem, not a member")
        if not name:
            raise InvalidChange("a member needs a name")
        with self._change() as connection:
            class_pk = self._pk_by(connection, t.member_classes.c.code, member.member_class, "member class")
            if self._find_member(connection, member) is not None:
                raise AlreadyExists(f"member {member} is registered already")
            connection.execute(
                sa.insert(t.members).values(
                    class_id=class_pk, member_code=member.member_code, name=name, created_at=self._clock()
                )
            )

    def rename_member(self, member: ClientId, name: str) -> None:
        if not name:
            raise InvalidChange("a member needs a name")
        with self._change() as connection:
            pk = self._member_pk(connection, member)
            connection.execute(sa.update(t.members).where(t.members.c.id == pk).values(name=name))

    def remove_member(self, member: ClientId) -> None:
        """Delete a member with its subsystems, its gateways, and all hosting and grouping of them."""
        with self._change() as connection:
            self._delete_member(connection, member)

    def _delete_member(self, connection: Connection, member: ClientId) -> None:
        connection.execute(sa.delete(t.members).where(t.members.c.id == self._member_pk(connection, member)))

    def add_subsystem(self, client: ClientId) -> None:
        with self._change() as connection:
            self._insert_subsystem(connection, client)

    def _insert_subsystem(self, connection: Connection, client: ClientId) -> int:
        if client.subsystem_code is None:
            raise InvalidChange(f"{client} is a member, not a subsystem")
        member_pk = self._member_pk(connection, client.member)
        if self._find_subsystem(connection, client) is not None:
            raise AlreadyExists(f"subsystem {client} is registered already")
        result = connection.execute(
            sa.insert(t.subsystems).values(
                member_id=member_pk, subsystem_code=client.subsystem_code, created_at=self._clock()
            )
        )
        return _new_id(result)

    def remove_subsystem(self, client: ClientId) -> None:
        """Delete a subsystem; gateways stop hosting it and groups lose it."""
        with self._change() as connection:
            self._delete_subsystem(connection, client)

    def _delete_subsystem(self, connection: Connection, client: ClientId) -> None:
        pk = self._subsystem_pk(connection, client)
        connection.execute(sa.delete(t.subsystems).where(t.subsystems.c.id == pk))

    # --- security servers

    def add_security_server(self, server: SecurityServerId, address: str, certificates: list[str]) -> None:
        with self._change() as connection:
            pk = self._insert_server(connection, server, address)
            for pem in certificates:
                self._insert_auth_certificate(connection, pk, pem)

    def _insert_server(self, connection: Connection, server: SecurityServerId, address: str) -> int:
        owner_pk = self._member_pk(connection, server.owner)
        if self._find_server(connection, server) is not None:
            raise AlreadyExists(f"security server {server} is registered already")
        result = connection.execute(
            sa.insert(t.security_servers).values(
                owner_id=owner_pk,
                server_code=server.server_code,
                address=_address(address),
                created_at=self._clock(),
            )
        )
        return _new_id(result)

    def set_server_address(self, server: SecurityServerId, address: str) -> None:
        with self._change() as connection:
            self._update_address(connection, self._server_pk(connection, server), address)

    @staticmethod
    def _update_address(connection: Connection, server_pk: int, address: str) -> None:
        connection.execute(
            sa.update(t.security_servers)
            .where(t.security_servers.c.id == server_pk)
            .values(address=_address(address))
        )

    def add_auth_certificate(self, server: SecurityServerId, pem: str) -> str:
        """Register one more TLS certificate for a gateway; returns its SHA-256."""
        with self._change() as connection:
            return self._insert_auth_certificate(connection, self._server_pk(connection, server), pem)

    def _insert_auth_certificate(self, connection: Connection, server_pk: int, pem: str) -> str:
        canonical, sha256 = _certificate(pem, "authentication certificate")
        if connection.scalar(
            sa.select(t.auth_certificates.c.id).where(t.auth_certificates.c.sha256 == sha256)
        ):
            raise AlreadyExists(f"authentication certificate {sha256} is registered already")
        connection.execute(
            sa.insert(t.auth_certificates).values(
                server_id=server_pk, sha256=sha256, cert_pem=canonical, added_at=self._clock()
            )
        )
        return sha256

    def remove_auth_certificate(self, server: SecurityServerId, sha256: str) -> None:
        with self._change() as connection:
            self._delete_auth_certificate(connection, self._server_pk(connection, server), sha256, server)

    @staticmethod
    def _delete_auth_certificate(
        connection: Connection, server_pk: int, sha256: str, server: SecurityServerId
    ) -> None:
        deleted = connection.execute(
            sa.delete(t.auth_certificates).where(
                t.auth_certificates.c.server_id == server_pk, t.auth_certificates.c.sha256 == sha256.lower()
            )
        )
        if deleted.rowcount == 0:
            raise NotFound(f"security server {server} has no authentication certificate {sha256}")

    def add_server_client(self, server: SecurityServerId, client: ClientId) -> None:
        with self._change() as connection:
            self._host(
                connection,
                self._server_pk(connection, server),
                self._subsystem_pk(connection, client),
                server,
                client,
            )

    @staticmethod
    def _host(
        connection: Connection, server_pk: int, subsystem_pk: int, server: SecurityServerId, client: ClientId
    ) -> None:
        exists = connection.scalar(
            sa.select(t.server_clients.c.id).where(
                t.server_clients.c.server_id == server_pk, t.server_clients.c.subsystem_id == subsystem_pk
            )
        )
        if exists is not None:
            raise AlreadyExists(f"{server} hosts {client} already")
        connection.execute(sa.insert(t.server_clients).values(server_id=server_pk, subsystem_id=subsystem_pk))

    def remove_server_client(self, server: SecurityServerId, client: ClientId) -> None:
        with self._change() as connection:
            self._unhost(connection, server, client)

    def _unhost(self, connection: Connection, server: SecurityServerId, client: ClientId) -> None:
        deleted = connection.execute(
            sa.delete(t.server_clients).where(
                t.server_clients.c.server_id == self._server_pk(connection, server),
                t.server_clients.c.subsystem_id == self._subsystem_pk(connection, client),
            )
        )
        if deleted.rowcount == 0:
            raise NotFound(f"{server} does not host {client}")

    def remove_security_server(self, server: SecurityServerId) -> None:
        with self._change() as connection:
            self._delete_server(connection, server)

    def _delete_server(self, connection: Connection, server: SecurityServerId) -> None:
        pk = self._server_pk(connection, server)
        connection.execute(sa.delete(t.security_servers).where(t.security_servers.c.id == pk))

    # --- trust services

    def add_trusted_ca(self, ca: TrustedCa) -> None:
        with self._change() as connection:
            if connection.scalar(sa.select(t.trusted_cas.c.id).where(t.trusted_cas.c.name == ca.name)):
                raise AlreadyExists(f"trusted CA {ca.name!r} exists already")
            canonical, _ = _certificate(ca.certificate, f"trusted CA {ca.name}")
            pk = _new_id(
                connection.execute(sa.insert(t.trusted_cas).values(name=ca.name, cert_pem=canonical))
            )
            self._insert_responders(connection, pk, ca.ocsp_responders)

    def set_ocsp_responders(self, name: str, responders: tuple[OcspResponder, ...]) -> None:
        with self._change() as connection:
            pk = self._pk_by(connection, t.trusted_cas.c.name, name, "trusted CA")
            connection.execute(sa.delete(t.ocsp_responders).where(t.ocsp_responders.c.ca_id == pk))
            self._insert_responders(connection, pk, responders)

    @staticmethod
    def _insert_responders(connection: Connection, ca_pk: int, responders: tuple[OcspResponder, ...]) -> None:
        if responders:
            connection.execute(
                sa.insert(t.ocsp_responders),
                [
                    {
                        "ca_id": ca_pk,
                        "url": r.url,
                        "cert_pem": _certificate(r.certificate, f"OCSP responder {r.url}")[0]
                        if r.certificate
                        else None,
                    }
                    for r in responders
                ],
            )

    def remove_trusted_ca(self, name: str) -> None:
        with self._change() as connection:
            pk = self._pk_by(connection, t.trusted_cas.c.name, name, "trusted CA")
            connection.execute(sa.delete(t.trusted_cas).where(t.trusted_cas.c.id == pk))

    def add_timestamping_authority(self, tsa: TimestampingAuthority) -> None:
        with self._change() as connection:
            if connection.scalar(
                sa.select(t.timestamping_authorities.c.id).where(
                    t.timestamping_authorities.c.name == tsa.name
                )
            ):
                raise AlreadyExists(f"timestamping authority {tsa.name!r} exists already")
            canonical, _ = _certificate(tsa.certificate, f"timestamping authority {tsa.name}")
            connection.execute(
                sa.insert(t.timestamping_authorities).values(name=tsa.name, url=tsa.url, cert_pem=canonical)
            )

    def update_timestamping_authority(self, tsa: TimestampingAuthority) -> None:
        """Replace the URL and certificate of the TSA named `tsa.name`."""
        with self._change() as connection:
            pk = self._pk_by(
                connection, t.timestamping_authorities.c.name, tsa.name, "timestamping authority"
            )
            canonical, _ = _certificate(tsa.certificate, f"timestamping authority {tsa.name}")
            connection.execute(
                sa.update(t.timestamping_authorities)
                .where(t.timestamping_authorities.c.id == pk)
                .values(url=tsa.url, cert_pem=canonical)
            )

    def remove_timestamping_authority(self, name: str) -> None:
        with self._change() as connection:
            pk = self._pk_by(connection, t.timestamping_authorities.c.name, name, "timestamping authority")
            connection.execute(
                sa.delete(t.timestamping_authorities).where(t.timestamping_authorities.c.id == pk)
            )

    # --- global groups

    def add_global_group(self, code: str, description: str = "") -> None:
        with self._change() as connection:
            _code(code, "groupCode")
            if connection.scalar(sa.select(t.global_groups.c.id).where(t.global_groups.c.group_code == code)):
                raise AlreadyExists(f"global group {code!r} exists already")
            connection.execute(sa.insert(t.global_groups).values(group_code=code, description=description))

    def set_global_group_description(self, code: str, description: str) -> None:
        with self._change() as connection:
            pk = self._pk_by(connection, t.global_groups.c.group_code, code, "global group")
            connection.execute(
                sa.update(t.global_groups).where(t.global_groups.c.id == pk).values(description=description)
            )

    def remove_global_group(self, code: str) -> None:
        with self._change() as connection:
            pk = self._pk_by(connection, t.global_groups.c.group_code, code, "global group")
            connection.execute(sa.delete(t.global_groups).where(t.global_groups.c.id == pk))

    def add_global_group_member(self, code: str, client: ClientId) -> None:
        with self._change() as connection:
            group_pk = self._pk_by(connection, t.global_groups.c.group_code, code, "global group")
            member_pk = self._member_pk(connection, client.member)
            subsystem_pk = (
                self._subsystem_pk(connection, client) if client.subsystem_code is not None else None
            )
            exists = connection.scalar(
                sa.select(t.global_group_members.c.id).where(
                    t.global_group_members.c.group_id == group_pk,
                    t.global_group_members.c.client_id == client.to_text(),
                )
            )
            if exists is not None:
                raise AlreadyExists(f"{client} is in global group {code!r} already")
            connection.execute(
                sa.insert(t.global_group_members).values(
                    group_id=group_pk,
                    member_id=member_pk,
                    subsystem_id=subsystem_pk,
                    client_id=client.to_text(),
                    added_at=self._clock(),
                )
            )

    def remove_global_group_member(self, code: str, client: ClientId) -> None:
        with self._change() as connection:
            group_pk = self._pk_by(connection, t.global_groups.c.group_code, code, "global group")
            deleted = connection.execute(
                sa.delete(t.global_group_members).where(
                    t.global_group_members.c.group_id == group_pk,
                    t.global_group_members.c.client_id == client.to_text(),
                )
            )
            if deleted.rowcount == 0:
                raise NotFound(f"{client} is not in global group {code!r}")

    # --- settings

    def initialise_settings(self, settings: GlobalConfSettings) -> GlobalConfSettings:
        """Store `settings` unless the registry has settings already; the stored ones either way."""
        with begin_write(self._engine) as connection:
            if connection.scalar(sa.select(t.settings.c.id)) is None:
                connection.execute(sa.insert(t.settings).values(id=_SINGLE_ROW, **_settings_values(settings)))
            return _read_settings(connection)

    def update_settings(self, **changes: int) -> GlobalConfSettings:
        """Change some settings (GlobalConfSettings field names); the result as stored."""
        with self._change() as connection:
            try:
                updated = GlobalConfSettings(**{**_settings_values(_read_settings(connection)), **changes})
            except (GlobalConfError, TypeError) as exc:
                raise InvalidChange(str(exc)) from exc
            values = _settings_values(updated)
            if connection.execute(sa.update(t.settings).values(**values)).rowcount == 0:
                connection.execute(sa.insert(t.settings).values(id=_SINGLE_ROW, **values))
            return updated

    # --- registration requests

    def submit_request(self, verified: VerifiedRequest, signed: bytes) -> RequestRecord:
        """Store a verified request as pending, if it could be approved as things stand now.

        The check is a dry run: the change is applied inside a savepoint, checked for
        consistency and rolled back. A request whose nonce was seen before is a replay.
        """
        request = verified.request
        request_id = secrets.token_hex(REQUEST_ID_BYTES)
        now = self._clock()
        try:
            with begin_write(self._engine) as connection:
                self._member_pk(connection, request.member)
                if connection.scalar(
                    sa.select(t.registration_requests.c.id).where(
                        t.registration_requests.c.nonce == request.nonce
                    )
                ):
                    raise Conflict("this request was received before (same nonce)")
                savepoint = connection.begin_nested()
                try:
                    self._apply(connection, request)
                    self._check_publishable(connection)
                finally:
                    savepoint.rollback()
                connection.execute(
                    sa.insert(t.registration_requests).values(
                        id=request_id,
                        type=request.type.value,
                        state=RequestState.PENDING.value,
                        server_id=request.server.to_text() if request.server else None,
                        member_id=request.member.to_text(),
                        client_id=request.client.to_text() if request.client else None,
                        nonce=request.nonce,
                        signed_request=signed.decode("utf-8"),
                        submitted_at=now,
                    )
                )
        except sa.exc.IntegrityError as error:
            raise Conflict(f"the request conflicts with the registry: {error.orig}") from error
        return RequestRecord(request_id, request, RequestState.PENDING, now, None, None, None)

    def _apply(self, connection: Connection, request: RegistrationRequest) -> None:
        """Make the change a request asks for (the caller's transaction decides whether it stays)."""
        kind = RequestType
        if request.type is kind.AUTH_CERT_REGISTRATION:
            server, address = _needs(request.server, "server"), _needs(request.address, "address")
            pk = self._find_server(connection, server)
            if pk is None:
                pk = self._insert_server(connection, server, address)
            else:
                self._update_address(connection, pk, address)
            self._insert_auth_certificate(
                connection, pk, _needs(request.auth_certificate, "auth_certificate")
            )
            if request.replaces is not None:
                self._delete_auth_certificate(connection, pk, request.replaces, server)
        elif request.type is kind.CLIENT_REGISTRATION:
            server, client = _needs(request.server, "server"), _needs(request.client, "client")
            server_pk = self._server_pk(connection, server)
            self._member_pk(connection, client.member)  # the subsystem's member must be registered
            subsystem_pk = self._find_subsystem(connection, client) or self._insert_subsystem(
                connection, client
            )
            self._host(connection, server_pk, subsystem_pk, server, client)
        elif request.type is kind.ADDRESS_CHANGE:
            server_pk = self._server_pk(connection, _needs(request.server, "server"))
            self._update_address(connection, server_pk, _needs(request.address, "address"))
        elif request.type is kind.CLIENT_DELETION:
            self._unhost(connection, _needs(request.server, "server"), _needs(request.client, "client"))
        elif request.type is kind.SERVER_DELETION:
            self._delete_server(connection, _needs(request.server, "server"))
        elif request.type is kind.SUBSYSTEM_DELETION:
            self._delete_subsystem(connection, _needs(request.client, "client"))
        else:
            self._delete_member(connection, request.member)

    def approve_request(self, request_id: str, actor: str, reason: str | None = None) -> RequestRecord:
        """Apply a pending request and mark it approved, in one transaction."""
        with self._change() as connection:
            row = self._pending_request(connection, request_id)
            self._apply(connection, read_signed_request(row.signed_request.encode()))
            self._decide(connection, request_id, RequestState.APPROVED, actor, reason)
        return self.request(request_id)

    def reject_request(self, request_id: str, actor: str, reason: str) -> RequestRecord:
        with begin_write(self._engine) as connection:
            self._pending_request(connection, request_id)
            self._decide(connection, request_id, RequestState.REJECTED, actor, reason)
        return self.request(request_id)

    @staticmethod
    def _pending_request(connection: Connection, request_id: str) -> Row[Any]:
        row = connection.execute(
            sa.select(t.registration_requests)
            .where(t.registration_requests.c.id == request_id)
            .with_for_update()
        ).first()
        if row is None:
            raise NotFound(f"no request {request_id}")
        if row.state != RequestState.PENDING:
            raise Conflict(f"request {request_id} is {row.state} already")
        return row

    def _decide(
        self, connection: Connection, request_id: str, state: RequestState, actor: str, reason: str | None
    ) -> None:
        connection.execute(
            sa.update(t.registration_requests)
            .where(t.registration_requests.c.id == request_id)
            .values(state=state.value, decided_at=self._clock(), decided_by=actor, reason=reason)
        )

    def request(self, request_id: str) -> RequestRecord:
        with self._engine.connect() as connection:
            row = connection.execute(
                sa.select(t.registration_requests).where(t.registration_requests.c.id == request_id)
            ).first()
        if row is None:
            raise NotFound(f"no request {request_id}")
        return _request_record(row)

    def requests(
        self, state: RequestState | None = None, limit: int = DEFAULT_REQUEST_PAGE
    ) -> list[RequestRecord]:
        """Requests newest first, all or in one state."""
        table = t.registration_requests
        query = (
            sa.select(table)
            .order_by(table.c.submitted_at.desc(), table.c.id)
            .limit(max(1, min(limit, MAX_REQUEST_PAGE)))
        )
        if state is not None:
            query = query.where(table.c.state == state.value)
        with self._engine.connect() as connection:
            return [_request_record(row) for row in connection.execute(query)]

    # --- configuration-signing keys

    def add_signing_key(
        self,
        key_path: str,
        certificate: x509.Certificate,
        *,
        passphrase_env: str | None = None,
        activate: bool = False,
    ) -> SigningKeyRecord:
        """Register a key (its private key stays in `key_path`); it enters the anchor at once."""
        sha256 = fingerprint_sha256(certificate)
        with begin_write(self._engine) as connection:
            if connection.scalar(sa.select(t.signing_keys.c.id).where(t.signing_keys.c.sha256 == sha256)):
                raise AlreadyExists(f"signing key with certificate {sha256} is registered already")
            pk = _new_id(
                connection.execute(
                    sa.insert(t.signing_keys).values(
                        key_path=key_path,
                        passphrase_env=passphrase_env,
                        cert_pem=certificate_to_pem(certificate).decode("ascii"),
                        sha256=sha256,
                        status=SigningKeyStatus.STANDBY.value,
                        created_at=self._clock(),
                    )
                )
            )
            if activate:
                self._activate(connection, pk)
        return self.signing_key(pk)

    def activate_signing_key(self, key_id: int) -> SigningKeyRecord:
        """Make a key the one that signs; the active one until now stays in the anchor as standby."""
        with begin_write(self._engine) as connection:
            row = self._signing_key_row(connection, key_id)
            if row.status == SigningKeyStatus.RETIRED:
                raise Conflict(f"signing key {key_id} is retired: gateways no longer trust it")
            self._activate(connection, key_id)
        return self.signing_key(key_id)

    def _activate(self, connection: Connection, key_id: int) -> None:
        keys = t.signing_keys
        connection.execute(
            sa.update(keys)
            .where(keys.c.status == SigningKeyStatus.ACTIVE.value, keys.c.id != key_id)
            .values(status=SigningKeyStatus.STANDBY.value)
        )
        connection.execute(
            sa.update(keys)
            .where(keys.c.id == key_id, keys.c.status != SigningKeyStatus.ACTIVE.value)
            .values(status=SigningKeyStatus.ACTIVE.value, activated_at=self._clock())
        )

    def retire_signing_key(self, key_id: int) -> SigningKeyRecord:
        """Take a key out of the anchor; the active key cannot go (activate another first)."""
        with begin_write(self._engine) as connection:
            row = self._signing_key_row(connection, key_id)
            if row.status == SigningKeyStatus.ACTIVE:
                raise Conflict(f"signing key {key_id} is the active one: activate another key first")
            if row.status == SigningKeyStatus.RETIRED:
                raise Conflict(f"signing key {key_id} is retired already")
            connection.execute(
                sa.update(t.signing_keys)
                .where(t.signing_keys.c.id == key_id)
                .values(status=SigningKeyStatus.RETIRED.value, retired_at=self._clock())
            )
        return self.signing_key(key_id)

    @staticmethod
    def _signing_key_row(connection: Connection, key_id: int) -> Row[Any]:
        row = connection.execute(
            sa.select(t.signing_keys).where(t.signing_keys.c.id == key_id).with_for_update()
        ).first()
        if row is None:
            raise NotFound(f"no signing key {key_id}")
        return row

    def signing_key(self, key_id: int) -> SigningKeyRecord:
        with self._engine.connect() as connection:
            return _signing_key_record(self._signing_key_row(connection, key_id))

    def signing_keys(self) -> list[SigningKeyRecord]:
        with self._engine.connect() as connection:
            rows = connection.execute(sa.select(t.signing_keys).order_by(t.signing_keys.c.id))
            return [_signing_key_record(row) for row in rows]

    def anchor_certificates(self) -> list[x509.Certificate]:
        """The verification certificates gateways must hold: the active key's first, then the standby ones."""
        live = [key for key in self.signing_keys() if key.status is not SigningKeyStatus.RETIRED]
        live.sort(key=lambda key: (key.status is not SigningKeyStatus.ACTIVE, key.id))
        return [key.certificate for key in live]

    # --- publishing

    def publish(self, sign: Signer) -> PublishedConf:
        """Build the next version, sign it with the active key, store it: one transaction."""
        now = self._clock()
        with begin_write(self._engine) as connection:
            state = connection.execute(sa.select(t.published).with_for_update()).one()
            key_row = connection.execute(
                sa.select(t.signing_keys).where(t.signing_keys.c.status == SigningKeyStatus.ACTIVE.value)
            ).first()
            if key_row is None:
                raise RegistryError("no active configuration-signing key: add or activate one")
            key = _signing_key_record(key_row)
            conf = self._load_conf(connection, int(state.version) + 1, now)
            signed = sign(conf, key)
            connection.execute(
                sa.update(t.published).values(
                    version=conf.version,
                    generated_at=conf.generated_at,
                    expires_at=conf.expires_at,
                    signed=signed.decode("ascii"),
                    signer_sha256=key.sha256,
                )
            )
        return PublishedConf(conf.version, conf.generated_at, conf.expires_at, signed, key.sha256)

    def published(self) -> PublishedConf | None:
        with self._engine.connect() as connection:
            row = connection.execute(sa.select(t.published)).one()
        if row.signed is None:
            return None
        return PublishedConf(
            row.version, row.generated_at, row.expires_at, row.signed.encode("ascii"), row.signer_sha256
        )


# --- helpers --------------------------------------------------------------------------------


def _new_id(result: sa.CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    if key is None:
        raise RuntimeError("the database gave no id for the new row")
    return int(key[0])


def _address(address: str) -> str:
    try:
        return check_address(address)
    except RequestRefused as exc:
        raise InvalidChange(str(exc)) from exc


_T = TypeVar("_T")


def _needs(value: _T | None, name: str) -> _T:
    """A field RegistrationRequest guarantees for the request's type."""
    if value is None:
        raise InvalidChange(f"the request has no {name}")
    return value


def _settings_values(settings: GlobalConfSettings) -> dict[str, int]:
    return {item.name: getattr(settings, item.name) for item in fields(settings)}


def _read_settings(connection: Connection) -> GlobalConfSettings:
    row = connection.execute(sa.select(t.settings)).first()
    if row is None:
        return GlobalConfSettings()
    return GlobalConfSettings(**{item.name: getattr(row, item.name) for item in fields(GlobalConfSettings)})
