"""The registry's static settings, read from one TOML file (config/central.example.toml).

What the registry registers lives in its database; this file says which instance it
serves, where it listens, where its database and signing keys are, and the values the
federation settings start from. Relative paths are resolved against the file's directory.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sqlalchemy.engine import make_url

from gateway.config import LOOPBACK_HOSTS, ConfigError, Listener
from gateway.globalconf.model import DEFAULT_REFRESH_INTERVAL_SECONDS, DEFAULT_VALIDITY_SECONDS
from gateway.ids import IdentifierError, validate_code

DEFAULT_MANAGEMENT_PORT: Final = 4400
DEFAULT_DISTRIBUTION_PORT: Final = 4401

DEFAULT_REGENERATE_SECONDS: Final = 60.0
"""X-Road's central server generates the configuration every minute; gateways fetch as often."""

DATABASE_FILE: Final = "central.sqlite"


@dataclass(frozen=True)
class SigningKeyFiles:
    """A configuration-signing key named in the file; imported into the registry at start-up."""

    key: Path
    cert: Path
    active: bool = False
    passphrase_env: str | None = None


@dataclass(frozen=True)
class CentralConfig:
    instance: str
    data_dir: Path
    database_url: str
    management: Listener
    distribution: Listener
    public_url: str | None
    """Base URL gateways reach the distribution listener at; None: http://HOST:PORT of the listener."""
    signing_keys: tuple[SigningKeyFiles, ...]
    validity_seconds: int = DEFAULT_VALIDITY_SECONDS
    refresh_interval_seconds: int = DEFAULT_REFRESH_INTERVAL_SECONDS
    regenerate_seconds: float = DEFAULT_REGENERATE_SECONDS


def _table(doc: dict[str, Any], name: str) -> dict[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table")
    return value


def _path(base: Path, value: object, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a path")
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _listener(table: dict[str, Any], where: str, default_port: int) -> Listener:
    port = table.get("port", default_port)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ConfigError(f"{where}.port must be a port number")
    return Listener(host=str(table.get("host", "127.0.0.1")), port=port)


def _positive(table: dict[str, Any], key: str, default: float, where: str) -> float:
    value = table.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{where}.{key} must be a positive number")
    return float(value)


def _database_url(value: object, base: Path, data_dir: Path) -> str:
    """The URL, with a relative SQLite path taken relative to the file, like every other path here."""
    if value is None:
        return f"sqlite:///{data_dir / DATABASE_FILE}"
    if not isinstance(value, str):
        raise ConfigError("registry.database_url must be a string")
    try:
        url = make_url(value)
    except Exception as exc:  # SQLAlchemy raises ArgumentError, and ValueError for bad ports
        raise ConfigError(f"registry.database_url: {exc}") from exc
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        database = Path(url.database)
        if not database.is_absolute():
            return url.set(database=str(base / database)).render_as_string(hide_password=False)
    return value


def load_config(path: Path) -> CentralConfig:
    """Read and check the registry's TOML file; ConfigError names the offending key."""
    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    return parse_config(doc, Path(path).resolve().parent)


def parse_config(doc: dict[str, Any], base: Path) -> CentralConfig:
    registry = _table(doc, "registry")
    instance = registry.get("instance")
    if not isinstance(instance, str):
        raise ConfigError("missing registry.instance")
    try:
        validate_code(instance, "registry.instance")
    except IdentifierError as exc:
        raise ConfigError(exc.message) from exc
    data_dir = _path(base, registry.get("data_dir", "."), "registry.data_dir")

    management = _listener(_table(doc, "management"), "management", DEFAULT_MANAGEMENT_PORT)
    # DESIGN.md: management interfaces are localhost only; the distribution one may be public.
    if management.host not in LOOPBACK_HOSTS:
        raise ConfigError(f"management.host must be a loopback address, not {management.host!r}")
    distribution_table = _table(doc, "distribution")
    public_url = distribution_table.get("public_url")
    if public_url is not None and (
        not isinstance(public_url, str) or not public_url.startswith(("http://", "https://"))
    ):
        raise ConfigError("distribution.public_url must be an http(s) URL")

    keys = []
    entries = doc.get("signing_keys", [])
    if not isinstance(entries, list):
        raise ConfigError("signing_keys must be an array of tables ([[signing_keys]])")
    for index, entry in enumerate(entries):
        where = f"signing_keys[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a table")
        active = entry.get("active", False)
        if not isinstance(active, bool):
            raise ConfigError(f"{where}.active must be true or false")
        keys.append(
            SigningKeyFiles(
                key=_path(base, entry.get("key"), f"{where}.key"),
                cert=_path(base, entry.get("cert"), f"{where}.cert"),
                active=active,
                passphrase_env=entry.get("passphrase_env"),
            )
        )
    if sum(key.active for key in keys) > 1:
        raise ConfigError("at most one of signing_keys may be active")

    globalconf = _table(doc, "globalconf")
    validity = _positive(globalconf, "validity_seconds", DEFAULT_VALIDITY_SECONDS, "globalconf")
    refresh = _positive(
        globalconf, "refresh_interval_seconds", DEFAULT_REFRESH_INTERVAL_SECONDS, "globalconf"
    )
    if validity != int(validity) or refresh != int(refresh):
        raise ConfigError("globalconf.validity_seconds and refresh_interval_seconds are whole seconds")
    return CentralConfig(
        instance=instance,
        data_dir=data_dir,
        database_url=_database_url(registry.get("database_url"), base, data_dir),
        management=management,
        distribution=_listener(distribution_table, "distribution", DEFAULT_DISTRIBUTION_PORT),
        public_url=public_url.rstrip("/") if public_url else None,
        signing_keys=tuple(keys),
        validity_seconds=int(validity),
        refresh_interval_seconds=int(refresh),
        regenerate_seconds=_positive(
            globalconf, "regenerate_seconds", DEFAULT_REGENERATE_SECONDS, "globalconf"
        ),
    )
