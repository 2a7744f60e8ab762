"""Security servers: their addresses, authentication certificates and hosted clients."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.central import tables as t
from gateway.central.repository._rows import _address, _certificate, _new_id
from gateway.central.repository.base import RegistryBase
from gateway.central.repository.errors import AlreadyExists, NotFound
from gateway.ids import ClientId, SecurityServerId


class ServerChanges(RegistryBase):
    """Security servers, their addresses, authentication certificates and clients."""

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
