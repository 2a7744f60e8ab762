"""Finding rows by identifier inside a change's transaction; NotFound when they must exist."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.ids import ClientId, LocalGroupId, ServiceId
from gateway.serverconf.access import AccessRight, Endpoint
from gateway.serverconf.repository._rows import subject_to_row
from gateway.serverconf.repository.errors import NotFound
from gateway.serverconf.tables import (
    access_rights,
    local_group_members,
    local_groups,
    rest_endpoints,
    services,
    subsystems,
)


def new_id(result: sa.CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    if key is None:
        raise RuntimeError("the database gave no id for the new row")
    return int(key[0])


def find_subsystem(connection: Connection, client: ClientId) -> int | None:
    return connection.scalar(sa.select(subsystems.c.id).where(subsystems.c.client_id == client.to_text()))


def subsystem_pk(connection: Connection, client: ClientId) -> int:
    pk = find_subsystem(connection, client)
    if pk is None:
        raise NotFound(f"no subsystem {client} is registered")
    return pk


def find_service(connection: Connection, service: ServiceId) -> int | None:
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


def service_pk(connection: Connection, service: ServiceId) -> int:
    pk = find_service(connection, service)
    if pk is None:
        raise NotFound(f"no service {service} is registered")
    return pk


def service_code_registered(connection: Connection, provider_pk: int, service_code: str) -> bool:
    found = connection.scalar(
        sa.select(services.c.id)
        .where(services.c.subsystem_id == provider_pk, services.c.service_code == service_code)
        .limit(1)
    )
    return found is not None


def find_endpoint(connection: Connection, service_pk: int, endpoint: Endpoint) -> int | None:
    return connection.scalar(
        sa.select(rest_endpoints.c.id).where(
            rest_endpoints.c.service_id == service_pk,
            rest_endpoints.c.method == endpoint.method,
            rest_endpoints.c.path_pattern == endpoint.path_pattern,
        )
    )


def insert_endpoints(connection: Connection, service_pk: int, endpoints: Sequence[Endpoint]) -> None:
    if endpoints:
        connection.execute(
            sa.insert(rest_endpoints),
            [
                {"service_id": service_pk, "method": e.method, "path_pattern": e.path_pattern}
                for e in endpoints
            ],
        )


def find_right(connection: Connection, provider_pk: int, right: AccessRight) -> int | None:
    subject_type, subject_id = subject_to_row(right.subject)
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


def find_local_group(connection: Connection, owner_pk: int, group: LocalGroupId) -> int | None:
    return connection.scalar(
        sa.select(local_groups.c.id).where(
            local_groups.c.subsystem_id == owner_pk, local_groups.c.group_code == group.group_code
        )
    )


def local_group_pk(connection: Connection, owner_pk: int, owner: ClientId, group: LocalGroupId) -> int:
    pk = find_local_group(connection, owner_pk, group)
    if pk is None:
        raise NotFound(f"{owner} has no local group {group}")
    return pk


def find_member(connection: Connection, group_pk: int, member: ClientId) -> int | None:
    return connection.scalar(
        sa.select(local_group_members.c.id).where(
            local_group_members.c.group_id == group_pk, local_group_members.c.client_id == member.to_text()
        )
    )
