"""Member classes, members, subsystems and global groups."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.central import tables as t
from gateway.central.repository._rows import _code, _new_id
from gateway.central.repository.base import RegistryBase
from gateway.central.repository.errors import AlreadyExists, Conflict, InvalidChange, NotFound
from gateway.ids import ClientId


class MemberChanges(RegistryBase):
    """Member classes, members and their subsystems, global groups."""

    # --- codes with descriptions: member classes, global groups

    def _add_described_code(
        self, code_column: sa.Column[Any], xml_name: str, code: str, description: str, what: str
    ) -> None:
        """A new row of `code_column`'s table; `xml_name` is the code's element in the protocol."""
        table = code_column.table
        with self._change() as connection:
            _code(code, xml_name)
            if connection.scalar(sa.select(table.c.id).where(code_column == code)):
                raise AlreadyExists(f"{what} {code!r} exists already")
            connection.execute(sa.insert(table).values({code_column.name: code, "description": description}))

    def _set_description(self, code_column: sa.Column[Any], code: str, description: str, what: str) -> None:
        table = code_column.table
        with self._change() as connection:
            pk = self._pk_by(connection, code_column, code, what)
            connection.execute(sa.update(table).where(table.c.id == pk).values(description=description))

    # --- member classes

    def add_member_class(self, code: str, description: str = "") -> None:
        self._add_described_code(t.member_classes.c.code, "memberClass", code, description, "member class")

    def set_member_class_description(self, code: str, description: str) -> None:
        self._set_description(t.member_classes.c.code, code, description, "member class")

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

    # --- global groups

    def add_global_group(self, code: str, description: str = "") -> None:
        self._add_described_code(t.global_groups.c.group_code, "groupCode", code, description, "global group")

    def set_global_group_description(self, code: str, description: str) -> None:
        self._set_description(t.global_groups.c.group_code, code, description, "global group")

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
