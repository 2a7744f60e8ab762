"""This gateway's registrations, stored and read.

The package's face: the names others use. Modules: `store` (the repository: each change in
one transaction that bumps `config_version`), `snapshot` (every registration read at once for
the request path), `errors`; `_rows` and `_lookups` are internal. The values themselves live in
the sans-IO `gateway.serverconf.model` and are re-exported here for the repository's callers.
"""

from __future__ import annotations

from gateway.adminstore import (
    API_KEY_BYTES,
    DEFAULT_AUDIT_PAGE,
    MAX_API_KEY_LENGTH,
    MAX_AUDIT_PAGE,
    ApiKey,
    AuditEntry,
    AuditResult,
)
from gateway.serverconf.model import (
    BACKEND_URL_NOT_SET,
    BACKEND_URL_NOT_SET_NOTICE,
    DEFAULT_CLIENT_AUTH_MODE,
    DEFAULT_SERVICE_TIMEOUT_SECONDS,
    RESERVED_SERVICE_CODES,
    UNAUTHENTICATED_WARNING,
    BackendTls,
    CachePolicyRecord,
    ClientAuthMode,
    KeyRecord,
    KeyUsage,
    LocalGroup,
    PinnedCertificate,
    ServerConfSnapshot,
    ServiceConf,
    ServiceDescription,
    ServiceKind,
    SubsystemConf,
)
from gateway.serverconf.repository.errors import (
    AlreadyExists,
    ConfigurationChanged,
    NotFound,
    ServerConfError,
)
from gateway.serverconf.repository.snapshot import load_snapshot
from gateway.serverconf.repository.store import ServerConfRepository

__all__ = [
    "API_KEY_BYTES",
    "BACKEND_URL_NOT_SET",
    "BACKEND_URL_NOT_SET_NOTICE",
    "DEFAULT_AUDIT_PAGE",
    "DEFAULT_CLIENT_AUTH_MODE",
    "DEFAULT_SERVICE_TIMEOUT_SECONDS",
    "MAX_API_KEY_LENGTH",
    "MAX_AUDIT_PAGE",
    "RESERVED_SERVICE_CODES",
    "UNAUTHENTICATED_WARNING",
    "AlreadyExists",
    "ApiKey",
    "AuditEntry",
    "AuditResult",
    "BackendTls",
    "CachePolicyRecord",
    "ClientAuthMode",
    "ConfigurationChanged",
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
    "load_snapshot",
]
