"""What every operation of the gateway's management API shares: the node's context, the operation
table, domain errors as JSON errors, and the reads of the configuration snapshot.

The repository is synchronous (SQLAlchemy Core) and the node's event loop also carries message
traffic, so every database call, key generation and description parse runs in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from gateway.cache.replication import Replicator
from gateway.cache.service import CacheService
from gateway.crypto.certs import CertificateError
from gateway.globalconf.model import GlobalConf
from gateway.ids import ClientId, IdentifierError, SecurityServerId
from gateway.messagelog.inspector import LogInspector
from gateway.monitoring.maintenance import MaintenanceMode
from gateway.monitoring.operational.service import OperationalMonitor
from gateway.serverconf.repository import (
    AlreadyExists,
    ConfigurationChanged,
    NotFound,
    ServerConfError,
    ServerConfRepository,
    ServerConfSnapshot,
    SubsystemConf,
)
from gateway.serverconf.wsdl import DescriptionError
from gateway.webapi import CONFLICT, NOT_FOUND, VALIDATION_ERROR, OperationTable, not_found
from gateway.webapi.certificates import CertificateSummary as CertificateSummary  # the operations' import
from gateway.webapi.certificates import certificate_summary as certificate_summary
from gateway.webapi.errors import domain_errors
from gateway.webapi.types import ClientIdField, Params


@dataclass(frozen=True)
class AdminContext:
    """What the management API needs from the node it runs in."""

    repository: ServerConfRepository
    data_dir: Path
    server_id: SecurityServerId
    health: Callable[[], Mapping[str, Any]] | None = None
    on_change: Callable[[], None] | None = None
    """Called after each successful change, so the node reloads its configuration snapshot."""
    message_log: LogInspector | None = None
    """The node's message log, for the security officer; None on a node that keeps none."""
    cache: CacheService | None = None
    """The node's interface cache; None on a node that keeps none."""
    replicator: Callable[[], Replicator | None] | None = None
    """The node's replication scheduler, once its internal interface runs."""
    globalconf: Callable[[], GlobalConf | None] | None = None
    """The current global configuration: cache policies name providers it must know."""
    maintenance: MaintenanceMode | None = None
    """The node's maintenance switch, which its health reads (gateway.admin.maintenance)."""
    in_flight: Callable[[], Mapping[str, int]] | None = None
    """Exchanges held or waiting per interface, read on the event loop."""
    opmonitor: OperationalMonitor | None = None
    """The node's operational monitoring records; None on a node that keeps none."""
    environment: Callable[[], Mapping[str, Any]] | None = None
    """The node's environment report (gateway.monitoring.environment); blocking, run in a thread."""


# Error codes of the JSON error body beyond the shared ones (gateway.webapi).
INVALID_DESCRIPTION: Final = "invalid_description"
FETCH_FAILED: Final = "fetch_failed"
WARNINGS_DETECTED: Final = "warnings_detected"  # X-Road's code: repeat with ignore_warnings to proceed
UNAVAILABLE: Final = "unavailable"


TABLE: Final = OperationTable()
"""Every operation of /api/v1, filled as the operation modules load (gateway.admin.api)."""


domain_error: Final = domain_errors(
    (NotFound, 404, NOT_FOUND),
    ((AlreadyExists, ConfigurationChanged), 409, CONFLICT),
    (DescriptionError, 400, INVALID_DESCRIPTION),
    ((IdentifierError, ServerConfError, CertificateError), 400, VALIDATION_ERROR),
)
"""The JSON error a domain error becomes; None for anything unforeseen (a 500)."""


# --- shared parameters and answers ------------------------------------------------------------


class ClientPath(Params):
    client_id: ClientIdField


# --- reading the configuration ------------------------------------------------------------


async def snapshot(ctx: AdminContext) -> ServerConfSnapshot:
    return await asyncio.to_thread(ctx.repository.snapshot)


async def with_subsystem(ctx: AdminContext, client: ClientId) -> ServerConfSnapshot:
    """The configuration, once it has the subsystem `client` (404 if not)."""
    conf = await snapshot(ctx)
    subsystem_of(conf, client)
    return conf


def subsystem_of(conf: ServerConfSnapshot, client: ClientId) -> SubsystemConf:
    found = conf.subsystem(client)
    if found is None:
        raise not_found(f"no subsystem {client} is registered")
    return found
