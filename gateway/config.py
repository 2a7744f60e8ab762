"""A gateway node's static settings, read from one TOML file (DESIGN.md "Configuration").

Everything that changes at run time (subsystems, services, access rights) lives in the
server-configuration database instead; this file says where things are and how the
node listens.  Relative paths are resolved against the file's own directory so a node's
directory can be moved as a whole.

The file is checked by the models below (`NodeFile`, one model per table, no unknown keys;
config/gateway.example.toml explains every key) and becomes a `NodeConfig`, the value the
node's code reads.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from gateway.admission import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_EXCHANGES,
    DEFAULT_RETRY_AFTER_SECONDS,
    DEFAULT_WAIT_SECONDS,
    AdmissionLimits,
)
from gateway.cache.settings import DEFAULT_MAINTENANCE_INTERVAL_SECONDS, CacheSettings
from gateway.configfile import (
    LOOPBACK_HOSTS,
    ConfigError,
    DatabaseUrl,
    FileModel,
    FilePath,
    Listener,
    LoggingSection,
    LoopbackHost,
    NonNegativeInt,
    NonNegativeSeconds,
    Percent,
    Port,
    Positive,
    Seconds,
    identifier,
    load_file,
    validate,
)
from gateway.connections import (
    DEFAULT_BODY_TIMEOUT_SECONDS,
    DEFAULT_HEADER_TIMEOUT_SECONDS,
    DEFAULT_IDLE_TIMEOUT_SECONDS,
    DEFAULT_MAX_CONNECTIONS,
    ConnectionLimits,
)
from gateway.crypto.batchsigner import DEFAULT_WINDOW_SECONDS
from gateway.crypto.tls import TlsIdentity
from gateway.faults import DEFAULT_FAULT_STYLE, DEFAULT_SOAP_FAULT_STATUS, FaultCompat, FaultStyle
from gateway.globalconf.model import DEFAULT_REFRESH_INTERVAL_SECONDS
from gateway.ids import ClientId, SecurityServerId
from gateway.logsetup import LogSettings
from gateway.messagelog.diskspace import (
    DEFAULT_CRITICAL_FREE_BYTES,
    DEFAULT_CRITICAL_FREE_PERCENT,
    DEFAULT_WARNING_FREE_BYTES,
    DEFAULT_WARNING_FREE_PERCENT,
    DiskWatermarks,
    Watermark,
)
from gateway.messagelog.heads import DEFAULT_HEAD_INTERVAL_SECONDS, HEAD_FILE_NAME
from gateway.messagelog.settings import (
    ARCHIVE_DIR_NAME,
    DEFAULT_ARCHIVE_EVERY_BYTES,
    DEFAULT_ARCHIVE_INTERVAL_SECONDS,
    DEFAULT_MAINTENANCE_CHECK_SECONDS,
    DEFAULT_MAX_TIMESTAMP_FAILURE_SECONDS,
    DEFAULT_RETENTION_DAYS,
    MessageLogSettings,
)
from gateway.messagelog.store import DEFAULT_WINDOW_SECONDS as DEFAULT_LOG_WINDOW_SECONDS
from gateway.messagelog.timestamping import DEFAULT_INTERVAL_SECONDS as DEFAULT_TIMESTAMP_INTERVAL_SECONDS
from gateway.monitoring.health import DEFAULT_CACHE_SECONDS, DEFAULT_PROBE_TIMEOUT_SECONDS
from gateway.monitoring.operational.settings import (
    DEFAULT_FLUSH_INTERVAL_SECONDS,
    DEFAULT_PURGE_INTERVAL_SECONDS,
    DEFAULT_QUEUE_SIZE,
    MonitoringSettings,
)
from gateway.monitoring.operational.settings import DEFAULT_RETENTION_DAYS as DEFAULT_OPMON_RETENTION_DAYS
from gateway.outbound.clockcheck import DEFAULT_CLOCK_SKEW_SECONDS
from gateway.outbound.ocsp import DEFAULT_FETCH_INTERVAL_SECONDS
from gateway.protocol.limits import DEFAULT_MAX_MESSAGE_BYTES

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "LOOPBACK_HOSTS",
    "BackupSettings",
    "CacheSettings",
    "ConfigError",
    "Listener",
    "MessageLogSettings",
    "MetricsSettings",
    "NodeConfig",
    "NodeFile",
    "SigningKey",
    "TlsFiles",
    "load_config",
    "parse_config",
]

# What a backend gets by default before ServiceFailed.Timeout; X-Road uses 30 s as well.
DEFAULT_BACKEND_TIMEOUT_SECONDS: Final = 30.0
# Connecting to a peer gateway: fail over quickly to the next registered gateway.
DEFAULT_CONNECT_TIMEOUT_SECONDS: Final = 5.0
# Graceful shutdown: in-flight requests get this long to finish.
DEFAULT_SHUTDOWN_GRACE_SECONDS: Final = 10.0
# Until the global configuration says otherwise, fetch it as often as X-Road's gateways do.
DEFAULT_GLOBALCONF_REFRESH_SECONDS: Final = float(DEFAULT_REFRESH_INTERVAL_SECONDS)

SERVERCONF_DATABASE_FILE: Final = "serverconf.sqlite"
MESSAGELOG_DATABASE_FILE: Final = "messagelog.sqlite"
CACHE_DATABASE_FILE: Final = "cache.sqlite"
OPMON_DATABASE_FILE: Final = "opmonitor.sqlite"

DEFAULT_METRICS_MAX_LABEL_VALUES: Final = 200
"""Services (and clients) the metrics name, each; others count as "other" (docs/metrics.md). A
large gateway serves tens; 200 keeps a node's series in the thousands, easy for one Prometheus."""


# --- what the node's code reads ---------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    passphrase_env: str | None = None

    def identity(self) -> TlsIdentity:
        """The certificate and key for a TLS context, with the passphrase read from its variable now."""
        passphrase = os.environ.get(self.passphrase_env) if self.passphrase_env else None
        return TlsIdentity(self.cert, self.key, passphrase)


@dataclass(frozen=True)
class SigningKey:
    """A member's signing key hosted on this node."""

    member: ClientId
    cert: Path
    key: Path
    passphrase_env: str | None = None


DEFAULT_BACKUP_INTERVAL_SECONDS: Final = 86400.0
"""Scheduled backups once a day: the configuration changes by administrators' hands, rarely."""
DEFAULT_BACKUP_KEEP: Final = 7


@dataclass(frozen=True)
class BackupSettings:
    """[backup]: scheduled, encrypted backups of the node (gateway.backup), and how many to keep."""

    directory: Path
    interval_seconds: float = DEFAULT_BACKUP_INTERVAL_SECONDS
    keep: int = DEFAULT_BACKUP_KEEP
    passphrase_env: str | None = None
    key_file: Path | None = None


@dataclass(frozen=True)
class HealthSettings:
    """The load balancers' health endpoint (gateway.proxy.health, docs/operations.md)."""

    listener: Listener | None = None
    """Where `GET /health` is served apart from the admin listener; None: only on the admin one."""
    cache_seconds: float = DEFAULT_CACHE_SECONDS
    probe_timeout_seconds: float = DEFAULT_PROBE_TIMEOUT_SECONDS


@dataclass(frozen=True)
class MetricsSettings:
    """The Prometheus listener ([metrics], gateway.metrics)."""

    listener: Listener
    max_label_values: int = DEFAULT_METRICS_MAX_LABEL_VALUES


@dataclass(frozen=True)
class NodeConfig:
    server_id: SecurityServerId
    data_dir: Path
    database_url: str
    globalconf_location: str
    globalconf_anchor: Path
    internal_http: Listener | None
    internal_https: Listener | None
    internal_tls: TlsFiles | None
    external: Listener
    auth_tls: TlsFiles
    admin: Listener
    signing_keys: tuple[SigningKey, ...]
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    backend_timeout_seconds: float = DEFAULT_BACKEND_TIMEOUT_SECONDS
    connect_timeout_seconds: float = DEFAULT_CONNECT_TIMEOUT_SECONDS
    sign_window_seconds: float = DEFAULT_WINDOW_SECONDS
    shutdown_grace_seconds: float = DEFAULT_SHUTDOWN_GRACE_SECONDS
    globalconf_refresh_seconds: float = DEFAULT_GLOBALCONF_REFRESH_SECONDS
    messagelog: MessageLogSettings | None = None
    cache: CacheSettings | None = None
    monitoring: MonitoringSettings | None = None
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)
    clock_skew_seconds: float = DEFAULT_CLOCK_SKEW_SECONDS
    ocsp_fetch_interval_seconds: float = DEFAULT_FETCH_INTERVAL_SECONDS
    admission: AdmissionLimits = field(default_factory=AdmissionLimits)
    wsdl_client: ClientId | None = None
    """The client the legacy `GET /wsdl?...` download asks getWsdl for; None: the download is off."""
    compat: FaultCompat = field(default_factory=FaultCompat)
    health: HealthSettings = field(default_factory=HealthSettings)
    metrics: MetricsSettings | None = None
    """Where `/metrics` is served; None: metrics are off."""
    logging: LogSettings = field(default_factory=LogSettings)
    backup: BackupSettings | None = None
    """Scheduled backups; None: none (`xgate gateway backup` still makes one by hand)."""

    @property
    def ocsp_store_dir(self) -> Path:
        """Where this node keeps its own certificates' OCSP responses across restarts."""
        return self.data_dir / "ocsp"

    @property
    def globalconf_cache(self) -> Path:
        return self.data_dir / "globalconf.cache.json"


# --- the file, table by table -----------------------------------------------------------------


class NodeSection(FileModel):
    server_id: Annotated[SecurityServerId, identifier(SecurityServerId.from_text)]
    data_dir: FilePath | None = None
    """Default: the file's own directory."""
    database_url: DatabaseUrl | None = None
    """Default: SQLite in data_dir."""


class GlobalconfSection(FileModel):
    location: str
    anchor: FilePath
    refresh_seconds: Seconds = DEFAULT_GLOBALCONF_REFRESH_SECONDS


class ListenerSection(FileModel):
    host: str = "127.0.0.1"
    port: Port

    def listener(self) -> Listener:
        return Listener(self.host, self.port)


class TlsListenerSection(ListenerSection):
    cert: FilePath
    key: FilePath
    passphrase_env: str | None = None

    def files(self) -> TlsFiles:
        return TlsFiles(self.cert, self.key, self.passphrase_env)


class InternalSection(FileModel):
    http: ListenerSection | None = None
    https: TlsListenerSection | None = None
    wsdl_client: Annotated[ClientId, identifier(ClientId.from_text)] | None = None
    """Turns on the legacy WSDL download (`GET /wsdl?...`) as this client (docs/compatibility.md)."""

    @model_validator(mode="after")
    def _some_listener(self) -> InternalSection:
        if self.http is None and self.https is None:
            raise PydanticCustomError("listener", "needs an http or an https listener ([internal.http])")
        return self


class AdminSection(ListenerSection):
    # DESIGN.md: the admin interface (management API, health) is localhost only; [metrics] is apart.
    host: LoopbackHost = "127.0.0.1"


class HealthSection(FileModel):
    """The health listener: unlike [admin], it may bind any address (a load balancer probes it)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: Port
    cache_seconds: NonNegativeSeconds = DEFAULT_CACHE_SECONDS
    """The checks' results are reused this long: probes stay cheap however many balancers ask."""
    probe_timeout_seconds: Seconds = DEFAULT_PROBE_TIMEOUT_SECONDS
    """A database that has not answered within this is failing; health answers within about this plus 1 s."""

    def settings(self) -> HealthSettings:
        listener = Listener(self.host, self.port) if self.enabled else None
        return HealthSettings(listener, self.cache_seconds, self.probe_timeout_seconds)


class SigningKeySection(FileModel):
    member: Annotated[ClientId, identifier(ClientId.from_text)]
    cert: FilePath
    key: FilePath
    passphrase_env: str | None = None


class SignerSection(FileModel):
    window_seconds: NonNegativeSeconds = DEFAULT_WINDOW_SECONDS


class LimitsSection(FileModel):
    max_message_bytes: Positive = DEFAULT_MAX_MESSAGE_BYTES
    backend_timeout_seconds: Seconds = DEFAULT_BACKEND_TIMEOUT_SECONDS
    connect_timeout_seconds: Seconds = DEFAULT_CONNECT_TIMEOUT_SECONDS
    shutdown_grace_seconds: Seconds = DEFAULT_SHUTDOWN_GRACE_SECONDS
    header_timeout_seconds: Seconds = DEFAULT_HEADER_TIMEOUT_SECONDS
    body_timeout_seconds: Seconds = DEFAULT_BODY_TIMEOUT_SECONDS
    idle_timeout_seconds: Seconds = DEFAULT_IDLE_TIMEOUT_SECONDS
    max_connections: Positive = DEFAULT_MAX_CONNECTIONS
    """Per listener: the internal HTTP and HTTPS, the external and the admin listener each."""
    max_exchanges: Positive = DEFAULT_MAX_EXCHANGES
    """Per interface: the internal one (HTTP and HTTPS together) and the external one each."""
    max_body_bytes_in_flight: Positive = DEFAULT_MAX_BODY_BYTES
    """Per node: request bodies both interfaces hold at once."""
    admission_wait_seconds: NonNegativeSeconds = DEFAULT_WAIT_SECONDS
    retry_after_seconds: Positive = DEFAULT_RETRY_AFTER_SECONDS

    @model_validator(mode="after")
    def _room_for_one_message(self) -> LimitsSection:
        if self.max_body_bytes_in_flight < self.max_message_bytes:
            raise PydanticCustomError(
                "limits",
                "max_body_bytes_in_flight ({budget}) must hold one message of max_message_bytes ({size})",
                {"budget": self.max_body_bytes_in_flight, "size": self.max_message_bytes},
            )
        return self

    def connections(self) -> ConnectionLimits:
        return ConnectionLimits.of(self)

    def admission(self) -> AdmissionLimits:
        return AdmissionLimits(
            max_exchanges=self.max_exchanges,
            max_body_bytes=self.max_body_bytes_in_flight,
            wait_seconds=self.admission_wait_seconds,
            retry_after_seconds=self.retry_after_seconds,
        )


class MessageLogSection(FileModel):
    database_url: DatabaseUrl | None = None
    """Default: SQLite in node.data_dir."""
    enabled: bool = True
    window_seconds: NonNegativeSeconds = DEFAULT_LOG_WINDOW_SECONDS
    timestamp_interval_seconds: Seconds = DEFAULT_TIMESTAMP_INTERVAL_SECONDS
    max_timestamp_failure_seconds: Seconds = DEFAULT_MAX_TIMESTAMP_FAILURE_SECONDS
    body_key_file: FilePath | None = None
    archive: bool = True
    """Archive timestamped records into chained archive files; off: nothing is ever purged."""
    archive_dir: FilePath | None = None
    """Default: node.data_dir/archive."""
    archive_interval_seconds: Seconds = DEFAULT_ARCHIVE_INTERVAL_SECONDS
    archive_every_bytes: NonNegativeInt = DEFAULT_ARCHIVE_EVERY_BYTES
    """Archive also once the log has grown this much since the last round; 0: the schedule only."""
    retention_days: NonNegativeSeconds = DEFAULT_RETENTION_DAYS
    """Archived records older than this are purged from the database (0: once archived)."""
    archive_hook: list[str] | None = None
    """A command and its arguments, run with each finished archive's path."""
    disk_warning_free_percent: Percent = DEFAULT_WARNING_FREE_PERCENT
    disk_warning_free_bytes: NonNegativeInt = DEFAULT_WARNING_FREE_BYTES
    disk_critical_free_percent: Percent = DEFAULT_CRITICAL_FREE_PERCENT
    disk_critical_free_bytes: NonNegativeInt = DEFAULT_CRITICAL_FREE_BYTES
    """Below the warning watermark an alarm; below the critical one on the log database's disk
    new exchanges are refused (gateway.messagelog.diskspace). 0 switches a half off."""
    maintenance_check_seconds: Seconds = DEFAULT_MAINTENANCE_CHECK_SECONDS
    head_interval_seconds: Seconds = DEFAULT_HEAD_INTERVAL_SECONDS
    """How often the node signs and timestamps its log head (gateway.messagelog.heads)."""
    head_file: FilePath | None = None
    """Where signed heads are appended, outside the database. Default: beside node.data_dir."""
    witness: bool = True
    """Send each signed head to the central registry, the federation's witness."""
    witness_url: str | None = None
    """The registry's distribution URL. Default: globalconf.location without its /globalconf."""

    @model_validator(mode="after")
    def _critical_below_warning(self) -> MessageLogSection:
        if (
            self.disk_critical_free_percent > self.disk_warning_free_percent
            or self.disk_critical_free_bytes > self.disk_warning_free_bytes
        ):
            raise PydanticCustomError(
                "watermarks", "the disk_critical_* watermarks must not lie above the disk_warning_* ones"
            )
        return self

    def watermarks(self) -> DiskWatermarks:
        return DiskWatermarks(
            warning=Watermark(self.disk_warning_free_percent, self.disk_warning_free_bytes),
            critical=Watermark(self.disk_critical_free_percent, self.disk_critical_free_bytes),
        )

    def settings(self, data_dir: Path, globalconf_location: str = "") -> MessageLogSettings:
        witness_url = self.witness_url
        if witness_url is None and globalconf_location.endswith("/globalconf"):
            witness_url = globalconf_location.removesuffix("/globalconf")
        return MessageLogSettings(
            database_url=self.database_url or f"sqlite:///{data_dir / MESSAGELOG_DATABASE_FILE}",
            enabled=self.enabled,
            window_seconds=self.window_seconds,
            timestamp_interval_seconds=self.timestamp_interval_seconds,
            max_timestamp_failure_seconds=self.max_timestamp_failure_seconds,
            body_key_file=self.body_key_file,
            archive_dir=(self.archive_dir or data_dir / ARCHIVE_DIR_NAME) if self.archive else None,
            archive_interval_seconds=self.archive_interval_seconds,
            archive_every_bytes=self.archive_every_bytes or None,
            retention_days=self.retention_days,
            archive_hook=tuple(self.archive_hook) if self.archive_hook else None,
            head_interval_seconds=self.head_interval_seconds,
            head_file=self.head_file or data_dir.parent / f"{data_dir.name}-{HEAD_FILE_NAME}",
            witness=self.witness,
            witness_url=witness_url if self.witness else None,
            disk_watermarks=self.watermarks(),
            maintenance_check_seconds=self.maintenance_check_seconds,
        )


class CacheSection(FileModel):
    database_url: DatabaseUrl | None = None
    """Default: SQLite in node.data_dir; a PostgreSQL URL lets the nodes of one gateway share it."""
    enabled: bool = True
    body_key_file: FilePath | None = None
    """Encrypts cached answers at rest; the message log's key-file format (may be the same file)."""
    maintenance_interval_seconds: Seconds = DEFAULT_MAINTENANCE_INTERVAL_SECONDS

    def settings(self, data_dir: Path) -> CacheSettings:
        return CacheSettings(
            database_url=self.database_url or f"sqlite:///{data_dir / CACHE_DATABASE_FILE}",
            enabled=self.enabled,
            body_key_file=self.body_key_file,
            maintenance_interval_seconds=self.maintenance_interval_seconds,
        )


class MonitoringSection(FileModel):
    """Operational monitoring (docs/monitoring.md): one record per exchange, no bodies."""

    enabled: bool = True
    database_url: DatabaseUrl | None = None
    """Default: SQLite in node.data_dir (its own file); a PostgreSQL URL lets the nodes of one
    gateway share it (each record names its node)."""
    retention_days: Seconds = DEFAULT_OPMON_RETENTION_DAYS
    """Records older than this are purged (X-Road's op-monitor keeps 7 days)."""
    queue_size: Positive = DEFAULT_QUEUE_SIZE
    """Records waiting to be written; beyond it new ones are dropped and counted, never waited for."""
    purge_interval_seconds: Seconds = DEFAULT_PURGE_INTERVAL_SECONDS
    flush_interval_seconds: Seconds = DEFAULT_FLUSH_INTERVAL_SECONDS
    """How often the writer's thread inserts what queued (records reach the database within it)."""

    def settings(self, data_dir: Path) -> MonitoringSettings:
        return MonitoringSettings(
            database_url=self.database_url or f"sqlite:///{data_dir / OPMON_DATABASE_FILE}",
            enabled=self.enabled,
            retention_days=self.retention_days,
            queue_size=self.queue_size,
            purge_interval_seconds=self.purge_interval_seconds,
            flush_interval_seconds=self.flush_interval_seconds,
        )


class BackupSection(FileModel):
    """Scheduled backups (docs/lifecycle.md): on once `directory` is set, sealed with the
    passphrase in `passphrase_env` or the key in `key_file` (one of them)."""

    directory: FilePath | None = None
    interval_seconds: Seconds = DEFAULT_BACKUP_INTERVAL_SECONDS
    keep: Positive = DEFAULT_BACKUP_KEEP
    passphrase_env: str | None = None
    key_file: FilePath | None = None

    @model_validator(mode="after")
    def _one_key(self) -> BackupSection:
        if self.directory is not None and (self.passphrase_env is None) == (self.key_file is None):
            raise PydanticCustomError("backup_key", "give one of passphrase_env and key_file")
        return self

    def settings(self) -> BackupSettings | None:
        if self.directory is None:
            return None
        return BackupSettings(
            self.directory, self.interval_seconds, int(self.keep), self.passphrase_env, self.key_file
        )


class TrustSection(FileModel):
    """How this node uses the trust services (docs/resilience.md)."""

    clock_skew_seconds: Seconds = DEFAULT_CLOCK_SKEW_SECONDS
    """How far a signed time (OCSP thisUpdate, TSA genTime) may be from this node's clock."""
    ocsp_fetch_interval_seconds: Seconds = DEFAULT_FETCH_INTERVAL_SECONDS
    """Renew own OCSP responses this often (sooner when the freshness limit is short)."""


class CompatibilitySection(FileModel):
    """How faults look to this gateway's clients (docs/compatibility.md "Faults and leniency")."""

    soap_fault_status: Literal[200, 500] = DEFAULT_SOAP_FAULT_STATUS
    """200 as X-Road's client proxy answers SOAP faults, or 500 (SOAP 1.1 §6.2, xgate before)."""
    fault_code_style: FaultStyle = DEFAULT_FAULT_STYLE
    """"xroad-7.8" (`server.clientproxy.unknown_member`) or "legacy" (`Server.ClientProxy.UnknownMember`)."""

    def compat(self) -> FaultCompat:
        return FaultCompat(self.soap_fault_status, self.fault_code_style)


class MetricsSection(FileModel):
    """The Prometheus listener: apart from [admin], and it may listen beyond loopback."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: Port | None = None
    max_label_values: Positive = DEFAULT_METRICS_MAX_LABEL_VALUES

    @model_validator(mode="after")
    def _port_when_enabled(self) -> MetricsSection:
        if self.enabled and self.port is None:
            raise PydanticCustomError("listener", "enabled metrics need a port ([metrics] port)")
        return self

    def settings(self) -> MetricsSettings | None:
        if not self.enabled or self.port is None:
            return None
        return MetricsSettings(Listener(self.host, self.port), self.max_label_values)


class NodeLoggingSection(LoggingSection):
    """The servers' [logging] table, and the gateway's access log (docs/logging.md)."""

    access_log: bool = True
    """A line per exchange on logger xgate.access: ids, client, service, status, fault code, time."""

    def settings(self) -> LogSettings:
        return dataclasses.replace(super().settings(), access_log=self.access_log)


class NodeFile(FileModel):
    """The whole file, as written (config/gateway.example.toml)."""

    node: NodeSection
    globalconf: GlobalconfSection
    internal: InternalSection
    external: TlsListenerSection
    admin: AdminSection
    health: HealthSection | None = None
    signing_keys: list[SigningKeySection] = Field(default_factory=list)
    signer: SignerSection = SignerSection()
    limits: LimitsSection = LimitsSection()
    messagelog: MessageLogSection = MessageLogSection()
    cache: CacheSection = CacheSection()
    monitoring: MonitoringSection = MonitoringSection()
    trust: TrustSection = TrustSection()
    compatibility: CompatibilitySection = CompatibilitySection()
    metrics: MetricsSection = MetricsSection()
    logging: NodeLoggingSection = NodeLoggingSection()
    backup: BackupSection = BackupSection()

    def node_config(self, base: Path) -> NodeConfig:
        data_dir = self.node.data_dir or base
        internal = self.internal
        return NodeConfig(
            server_id=self.node.server_id,
            data_dir=data_dir,
            database_url=self.node.database_url or f"sqlite:///{data_dir / SERVERCONF_DATABASE_FILE}",
            globalconf_location=self.globalconf.location,
            globalconf_anchor=self.globalconf.anchor,
            globalconf_refresh_seconds=self.globalconf.refresh_seconds,
            internal_http=internal.http.listener() if internal.http else None,
            internal_https=internal.https.listener() if internal.https else None,
            internal_tls=internal.https.files() if internal.https else None,
            wsdl_client=internal.wsdl_client,
            external=self.external.listener(),
            auth_tls=self.external.files(),
            admin=self.admin.listener(),
            signing_keys=tuple(
                SigningKey(entry.member, entry.cert, entry.key, entry.passphrase_env)
                for entry in self.signing_keys
            ),
            max_message_bytes=self.limits.max_message_bytes,
            backend_timeout_seconds=self.limits.backend_timeout_seconds,
            connect_timeout_seconds=self.limits.connect_timeout_seconds,
            shutdown_grace_seconds=self.limits.shutdown_grace_seconds,
            connections=self.limits.connections(),
            admission=self.limits.admission(),
            sign_window_seconds=self.signer.window_seconds,
            messagelog=self.messagelog.settings(data_dir, self.globalconf.location),
            cache=self.cache.settings(data_dir),
            monitoring=self.monitoring.settings(data_dir),
            clock_skew_seconds=self.trust.clock_skew_seconds,
            ocsp_fetch_interval_seconds=self.trust.ocsp_fetch_interval_seconds,
            compat=self.compatibility.compat(),
            health=self.health.settings() if self.health is not None else HealthSettings(),
            metrics=self.metrics.settings(),
            logging=self.logging.settings(),
            backup=self.backup.settings(),
        )


def parse_config(doc: dict[str, object], base: Path) -> NodeConfig:
    """The file's tables checked; relative paths taken from `base`. ConfigError names the key."""
    return validate(NodeFile, doc, base).node_config(base)


def load_config(path: Path) -> NodeConfig:
    """Read and check a node's TOML file; ConfigError is one line naming the file and the key."""
    return load_file(path, parse_config)
