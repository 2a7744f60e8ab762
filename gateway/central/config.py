"""The registry's static settings, read from one TOML file (config/central.example.toml).

What the registry registers lives in its database; this file says which instance it
serves, where it listens, where its database and signing keys are, and the values the
federation settings start from. Relative paths are resolved against the file's directory.

The file is checked by `CentralFile` (one model per table, no unknown keys) and becomes a
`CentralConfig`, the value the registry's code reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Final

from pydantic import AfterValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from gateway.configfile import ConfigError as ConfigError  # re-exported: callers catch it from here
from gateway.configfile import (
    DatabaseUrl,
    FileModel,
    FilePath,
    Listener,
    LoggingSection,
    LoopbackHost,
    Port,
    Positive,
    Seconds,
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
from gateway.globalconf.model import DEFAULT_REFRESH_INTERVAL_SECONDS, DEFAULT_VALIDITY_SECONDS
from gateway.ids import IdentifierError, validate_code
from gateway.logsetup import LogSettings

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
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)
    """Both listeners' deadlines and cap, as a gateway's (gateway/connections.py)."""
    logging: LogSettings = field(default_factory=LogSettings)


# --- the file, table by table -----------------------------------------------------------------


def _instance_code(value: str) -> str:
    try:
        validate_code(value, "instance")
    except IdentifierError as exc:
        raise PydanticCustomError("identifier", "{message}", {"message": exc.message}) from None
    return value


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise PydanticCustomError("url", "must be an http(s) URL, not {value!r}", {"value": value})
    return value.rstrip("/")


class RegistrySection(FileModel):
    instance: Annotated[str, AfterValidator(_instance_code)]
    data_dir: FilePath | None = None
    """Default: the file's own directory."""
    database_url: DatabaseUrl | None = None
    """Default: SQLite in data_dir."""


class ManagementSection(FileModel):
    # DESIGN.md: management interfaces are localhost only; the distribution one may be public.
    host: LoopbackHost = "127.0.0.1"
    port: Port = DEFAULT_MANAGEMENT_PORT


class DistributionSection(FileModel):
    host: str = "127.0.0.1"
    port: Port = DEFAULT_DISTRIBUTION_PORT
    public_url: Annotated[str, AfterValidator(_http_url)] | None = None


class GlobalconfSection(FileModel):
    validity_seconds: Positive = DEFAULT_VALIDITY_SECONDS
    refresh_interval_seconds: Positive = DEFAULT_REFRESH_INTERVAL_SECONDS
    regenerate_seconds: Seconds = DEFAULT_REGENERATE_SECONDS


class LimitsSection(FileModel):
    """The gateway's connection limits, with the same names and defaults (docs/configuration.md,
    "Connection limits"): the distribution listener faces every gateway, and may face the
    Internet, so half-sent requests must not hold it."""

    header_timeout_seconds: Seconds = DEFAULT_HEADER_TIMEOUT_SECONDS
    body_timeout_seconds: Seconds = DEFAULT_BODY_TIMEOUT_SECONDS
    idle_timeout_seconds: Seconds = DEFAULT_IDLE_TIMEOUT_SECONDS
    max_connections: Positive = DEFAULT_MAX_CONNECTIONS
    """Per listener: the management and the distribution listener each."""

    def connections(self) -> ConnectionLimits:
        return ConnectionLimits.of(self)


class SigningKeySection(FileModel):
    key: FilePath
    cert: FilePath
    active: bool = False
    passphrase_env: str | None = None


class CentralFile(FileModel):
    """The whole file, as written (config/central.example.toml)."""

    registry: RegistrySection
    management: ManagementSection = ManagementSection()
    distribution: DistributionSection = DistributionSection()
    globalconf: GlobalconfSection = GlobalconfSection()
    limits: LimitsSection = LimitsSection()
    signing_keys: list[SigningKeySection] = Field(default_factory=list)
    logging: LoggingSection = LoggingSection()

    @model_validator(mode="after")
    def _one_active_key(self) -> CentralFile:
        if sum(key.active for key in self.signing_keys) > 1:
            raise PydanticCustomError("signing_keys", "at most one of signing_keys may be active")
        return self

    def central_config(self, base: Path) -> CentralConfig:
        data_dir = self.registry.data_dir or base
        distribution = self.distribution
        return CentralConfig(
            instance=self.registry.instance,
            data_dir=data_dir,
            database_url=self.registry.database_url or f"sqlite:///{data_dir / DATABASE_FILE}",
            management=Listener(self.management.host, self.management.port),
            distribution=Listener(distribution.host, distribution.port),
            public_url=distribution.public_url,
            signing_keys=tuple(
                SigningKeyFiles(entry.key, entry.cert, entry.active, entry.passphrase_env)
                for entry in self.signing_keys
            ),
            validity_seconds=self.globalconf.validity_seconds,
            refresh_interval_seconds=self.globalconf.refresh_interval_seconds,
            regenerate_seconds=self.globalconf.regenerate_seconds,
            connections=self.limits.connections(),
            logging=self.logging.settings(),
        )


def parse_config(doc: dict[str, object], base: Path) -> CentralConfig:
    """The file's tables checked; relative paths taken from `base`. ConfigError names the key."""
    return validate(CentralFile, doc, base).central_config(base)


def load_config(path: Path) -> CentralConfig:
    """Read and check the registry's TOML file; ConfigError is one line naming the file and the key."""
    return load_file(path, parse_config)
