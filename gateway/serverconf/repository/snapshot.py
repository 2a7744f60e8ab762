"""Reading every registration into one immutable snapshot for the request path."""

from __future__ import annotations

from collections import defaultdict
from types import MappingProxyType

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.ids import ClientId, LocalGroupId, ServiceId
from gateway.serverconf.access import AccessRight, Endpoint
from gateway.serverconf.model import (
    CachePolicyRecord,
    ClientAuthMode,
    LocalGroup,
    PinnedCertificate,
    RightsKey,
    ServerConfSnapshot,
    ServiceConf,
    SubsystemConf,
)
from gateway.serverconf.repository._rows import (
    CONFIG_ROW,
    client_from_row,
    endpoint_from_row,
    service_from_row,
    subject_from_row,
)
from gateway.serverconf.repository.errors import ServerConfError
from gateway.serverconf.tables import (
    access_rights,
    cache_policies,
    client_certificates,
    config_version,
    local_group_members,
    local_groups,
    rest_endpoints,
    services,
    subsystems,
)


def load_snapshot(connection: Connection) -> ServerConfSnapshot:
    """Read every registration; give a connection in one transaction (db.begin_snapshot_read)."""
    version = connection.scalar(sa.select(config_version.c.version).where(config_version.c.id == CONFIG_ROW))
    if version is None:
        raise ServerConfError("config_version is empty: was the database migrated?")

    subsystem_rows = connection.execute(sa.select(subsystems)).all()
    clients = {row.id: client_from_row(row) for row in subsystem_rows}
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
        conf = service_from_row(row, clients[row.subsystem_id], endpoints[row.id])
        service_confs[conf.service] = conf

    rights: dict[RightsKey, list[AccessRight]] = defaultdict(list)
    for row in connection.execute(sa.select(access_rights).order_by(access_rights.c.id)):
        right = AccessRight(
            subject_from_row(row.subject_type, row.subject_id),
            row.service_code,
            endpoint_from_row(row.endpoint_method, row.endpoint_path),
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

    policies = {
        row.name: CachePolicyRecord(row.name, MappingProxyType(dict(row.document)), row.updated_at)
        for row in connection.execute(sa.select(cache_policies).order_by(cache_policies.c.name))
    }

    return ServerConfSnapshot(
        version=version,
        subsystems=MappingProxyType(subsystem_confs),
        services=MappingProxyType(service_confs),
        access_rights=MappingProxyType({key: tuple(value) for key, value in rights.items()}),
        local_groups=MappingProxyType({k: MappingProxyType(v) for k, v in groups.items()}),
        cache_policies=MappingProxyType(policies),
    )
