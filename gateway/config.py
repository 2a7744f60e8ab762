"""A gateway node's static settings, read from one TOML file (DESIGN.md "Configuration").

Everything that changes at run time (subsystems, services, access rights) lives in the
server-configuration database instead; this file says where things are and how the
node listens.  Relative paths are resolved against the file's own directory so a node's
directory can be moved as a whole.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from gateway.ids import ClientId, IdentifierError, SecurityServerId

_Id = TypeVar("_Id", ClientId, SecurityServerId)

# X-Road's own default limit for a message on the internal interface.
DEFAULT_MAX_MESSAGE_BYTES: Final = 10 * 1024 * 1024
# What a backend gets by default before ServiceFailed.Timeout; X-Road uses 30 s as well.
DEFAULT_BACKEND_TIMEOUT_SECONDS: Final = 30.0
# Connecting to a peer gateway: fail over quickly to the next registered gateway.
DEFAULT_CONNECT_TIMEOUT_SECONDS: Final = 5.0
# Batch window of the signer: long enough to gather concurrent messages, short enough to
# add little latency at concurrency 1 (DESIGN.md "One signer").
DEFAULT_SIGN_WINDOW_SECONDS: Final = 0.002
# Graceful shutdown: in-flight requests get this long to finish.
DEFAULT_SHUTDOWN_GRACE_SECONDS: Final = 10.0


LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "::1", "localhost"})


class ConfigError(ValueError):
    """The node's TOML file is missing something or holds a wrong value."""


@dataclass(frozen=True)
class Listener:
    host: str
    port: int


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    passphrase_env: str | None = None


@dataclass(frozen=True)
class SigningKey:
    """A member's signing key hosted on this node."""

    member: ClientId
    cert: Path
    key: Path
    passphrase_env: str | None = None


@dataclass(frozen=True)
class MessageLogSettings:
    """The `[messagelog]` section: where and how this node keeps its message log."""

    database_url: str
    enabled: bool = True
    # Group commit: the writer commits everything that arrived while its previous commit ran,
    # so no extra wait is needed; a positive window trades latency for fewer transactions, and
    # is waited only while appends overlap (store.DEFAULT_WINDOW_SECONDS says what was measured).
    window_seconds: float = 0.0
    timestamp_interval_seconds: float = 5.0  # one RFC 3161 request per batch, this often
    # How long timestamping may keep failing before new requests are refused (X-Road allows
    # hours; a gateway that promises timestamped logs should say so sooner).
    max_timestamp_failure_seconds: float = 600.0
    body_key_file: Path | None = None  # AES-GCM keys for bodies at rest (messagelog/service.py)
    archive_dir: Path | None = None
    archive_interval_seconds: float = 3600.0
    retention_days: float | None = None  # purge archived records older than this
    archive_hook: tuple[str, ...] | None = None  # command run with each finished archive's path


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
    sign_window_seconds: float = DEFAULT_SIGN_WINDOW_SECONDS
    shutdown_grace_seconds: float = DEFAULT_SHUTDOWN_GRACE_SECONDS
    globalconf_refresh_seconds: float = 60.0
    messagelog: MessageLogSettings | None = None

    @property
    def globalconf_cache(self) -> Path:
        return self.data_dir / "globalconf.cache.json"


def _section(doc: dict[str, Any], name: str, *, required: bool = True) -> dict[str, Any]:
    value = doc.get(name)
    if value is None:
        if required:
            raise ConfigError(f"missing [{name}] section")
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table")
    return value


def _get(table: dict[str, Any], key: str, where: str) -> Any:
    if key not in table:
        raise ConfigError(f"missing {where}.{key}")
    return table[key]


def _number(table: dict[str, Any], key: str, where: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{where}.{key} must be a positive number, not {value!r}")
    return float(value)


def _identifier(parse: Callable[[str], _Id], value: Any, where: str) -> _Id:
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string")
    try:
        return parse(value)
    except IdentifierError as exc:
        raise ConfigError(f"{where}: {exc.message}") from exc


def _path(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path)


def _listener(table: dict[str, Any], where: str, *, default_host: str = "127.0.0.1") -> Listener:
    port = _get(table, "port", where)
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"{where}.port must be a port number")
    return Listener(host=str(table.get("host", default_host)), port=port)


def _tls(table: dict[str, Any], base: Path, where: str) -> TlsFiles:
    return TlsFiles(
        cert=_path(base, _get(table, "cert", where)),
        key=_path(base, _get(table, "key", where)),
        passphrase_env=table.get("passphrase_env"),
    )


def _admin_listener(table: dict[str, Any]) -> Listener:
    # DESIGN.md: the admin interface (management API, health, metrics) is localhost only.
    listener = _listener(table, "admin")
    if listener.host not in LOOPBACK_HOSTS:
        raise ConfigError(f"admin.host must be a loopback address, not {listener.host!r}")
    return listener


def load_config(path: Path) -> NodeConfig:
    """Read and check a node's TOML file; raise ConfigError with the offending key."""
    base = path.resolve().parent
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    return parse_config(doc, base)


def parse_config(doc: dict[str, Any], base: Path) -> NodeConfig:
    node = _section(doc, "node")
    globalconf = _section(doc, "globalconf")
    internal = _section(doc, "internal")
    external = _section(doc, "external")
    admin = _section(doc, "admin")
    limits = _section(doc, "limits", required=False)
    signer = _section(doc, "signer", required=False)

    data_dir = _path(base, node.get("data_dir", "."))
    database_url = str(node.get("database_url", f"sqlite:///{data_dir / 'serverconf.sqlite'}"))
    http = internal.get("http")
    https = internal.get("https")
    if http is None and https is None:
        raise ConfigError("[internal] needs an http or an https listener")
    keys = tuple(
        SigningKey(
            member=_identifier(
                ClientId.from_text, _get(entry, "member", "signing_keys"), "signing_keys.member"
            ),
            cert=_path(base, _get(entry, "cert", "signing_keys")),
            key=_path(base, _get(entry, "key", "signing_keys")),
            passphrase_env=entry.get("passphrase_env"),
        )
        for entry in doc.get("signing_keys", [])
    )
    return NodeConfig(
        server_id=_identifier(SecurityServerId.from_text, _get(node, "server_id", "node"), "node.server_id"),
        data_dir=data_dir,
        database_url=database_url,
        globalconf_location=str(_get(globalconf, "location", "globalconf")),
        globalconf_anchor=_path(base, _get(globalconf, "anchor", "globalconf")),
        globalconf_refresh_seconds=_number(globalconf, "refresh_seconds", "globalconf", 60.0),
        internal_http=_listener(http, "internal.http") if http is not None else None,
        internal_https=_listener(https, "internal.https") if https is not None else None,
        internal_tls=_tls(https, base, "internal.https") if https is not None else None,
        external=_listener(external, "external"),
        auth_tls=_tls(external, base, "external"),
        admin=_admin_listener(admin),
        signing_keys=keys,
        max_message_bytes=int(_number(limits, "max_message_bytes", "limits", DEFAULT_MAX_MESSAGE_BYTES)),
        backend_timeout_seconds=_number(
            limits, "backend_timeout_seconds", "limits", DEFAULT_BACKEND_TIMEOUT_SECONDS
        ),
        connect_timeout_seconds=_number(
            limits, "connect_timeout_seconds", "limits", DEFAULT_CONNECT_TIMEOUT_SECONDS
        ),
        shutdown_grace_seconds=_number(
            limits, "shutdown_grace_seconds", "limits", DEFAULT_SHUTDOWN_GRACE_SECONDS
        ),
        sign_window_seconds=float(signer.get("window_seconds", DEFAULT_SIGN_WINDOW_SECONDS)),
        messagelog=_messagelog(_section(doc, "messagelog", required=False), base, data_dir),
    )


def _messagelog(table: dict[str, Any], base: Path, data_dir: Path) -> MessageLogSettings:
    where = "messagelog"
    hook = table.get("archive_hook")
    if hook is not None and (not isinstance(hook, list) or not all(isinstance(p, str) for p in hook)):
        raise ConfigError("messagelog.archive_hook must be a list of strings (a command and its arguments)")
    retention = table.get("retention_days")
    return MessageLogSettings(
        database_url=str(table.get("database_url", f"sqlite:///{data_dir / 'messagelog.sqlite'}")),
        enabled=bool(table.get("enabled", True)),
        window_seconds=float(table.get("window_seconds", 0.0)),
        timestamp_interval_seconds=_number(table, "timestamp_interval_seconds", where, 5.0),
        max_timestamp_failure_seconds=_number(table, "max_timestamp_failure_seconds", where, 600.0),
        body_key_file=_path(base, table["body_key_file"]) if "body_key_file" in table else None,
        archive_dir=_path(base, table["archive_dir"]) if "archive_dir" in table else None,
        archive_interval_seconds=_number(table, "archive_interval_seconds", where, 3600.0),
        retention_days=None if retention is None else _number(table, "retention_days", where, 1.0),
        archive_hook=tuple(hook) if hook else None,
    )
