"""A new registry in one directory (`xgate central init`): config, signing key, database, anchor, API key.

The configuration-signing certificate comes from the development PKI (`gateway.trust.pki`,
ConfigurationSignerProfile): from a given PKI directory's CA, which the registry then also
trusts for gateways' and members' certificates, or from a CA of the registry's own that
issues nothing else. Production registries put their own key and certificate in the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gateway.central.config import (
    DEFAULT_DISTRIBUTION_PORT,
    DEFAULT_MANAGEMENT_PORT,
    DEFAULT_REGENERATE_SECONDS,
    load_config,
)
from gateway.central.repository import CentralRepository
from gateway.central.roles import Role
from gateway.central.server import prepare
from gateway.configfile import ANCHOR_FILE, CONFIG_FILE_MODE
from gateway.crypto.certs import certificate_to_pem, fingerprint_sha256
from gateway.crypto.keys import write_file_atomically
from gateway.globalconf import Anchor, TrustedCa
from gateway.globalconf.model import DEFAULT_REFRESH_INTERVAL_SECONDS, DEFAULT_VALIDITY_SECONDS
from gateway.globalconf.source import save_anchor
from gateway.ids import validate_code
from gateway.trust import pki

CONFIG_FILE: Final = "central.toml"

FIRST_KEY_NAME: Final = "initial administrator"


class RegistrySetupError(Exception):
    """The directory cannot take a new registry (one is there already)."""


@dataclass(frozen=True)
class CreatedRegistry:
    config_path: Path
    signing_key_path: Path
    signing_cert_path: Path
    anchor_path: Path
    anchor_sha256: str
    api_key: str


@dataclass(frozen=True)
class PublishingTimes:
    """The `[globalconf]` values a new registry starts with (config/central.example.toml)."""

    validity_seconds: int = DEFAULT_VALIDITY_SECONDS
    refresh_interval_seconds: int = DEFAULT_REFRESH_INTERVAL_SECONDS
    regenerate_seconds: float = DEFAULT_REGENERATE_SECONDS


def config_text(
    instance: str,
    management_port: int,
    distribution_port: int,
    key: str,
    cert: str,
    times: PublishingTimes = PublishingTimes(),
) -> str:
    return f"""# The central registry of instance {instance} (`xgate central serve --config THIS_FILE`).
# Written by `xgate central init`; config/central.example.toml explains every key.

[registry]
instance = "{instance}"
data_dir = "."
database_url = "sqlite:///central.sqlite"

[management]
host = "127.0.0.1"
port = {management_port}

[distribution]
host = "127.0.0.1"
port = {distribution_port}

[globalconf]
validity_seconds = {times.validity_seconds}
refresh_interval_seconds = {times.refresh_interval_seconds}
regenerate_seconds = {times.regenerate_seconds:g}

[[signing_keys]]
key = "{key}"
cert = "{cert}"
active = true
"""


def init_registry(
    directory: Path,
    instance: str,
    *,
    pki_dir: Path | None = None,
    ca_passphrase: bytes | None = None,
    management_port: int = DEFAULT_MANAGEMENT_PORT,
    distribution_port: int = DEFAULT_DISTRIBUTION_PORT,
    times: PublishingTimes = PublishingTimes(),
) -> CreatedRegistry:
    validate_code(instance, "instance")
    directory = Path(directory).resolve()
    config_path = directory / CONFIG_FILE
    if config_path.exists():
        raise RegistrySetupError(f"{config_path} exists: a registry is set up in {directory} already")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    if pki_dir is None:
        ca_dir = directory / "pki"
        ca = pki.init_pki(ca_dir, settings=pki.CaSettings(common_name=f"{instance} registry CA"))
    else:
        ca_dir = Path(pki_dir)
        ca = pki.load_ca(ca_dir, ca_passphrase)
    profile = pki.ConfigurationSignerProfile(name=f"{instance} configuration signer 1")
    signer = pki.issue(ca_dir, ca, profile, out_prefix=directory / "keys" / "confsign-1")
    key_rel, cert_rel = (
        str(path.relative_to(directory)) for path in (signer.key_path, signer.certificate_path)
    )
    text = config_text(instance, management_port, distribution_port, key_rel, cert_rel, times)
    write_file_atomically(config_path, text.encode(), CONFIG_FILE_MODE)

    config = load_config(config_path)
    repository: CentralRepository = prepare(config, os.environ)
    try:
        if pki_dir is not None:
            certificate = certificate_to_pem(ca.certificate).decode("ascii")
            repository.add_trusted_ca(TrustedCa(ca.settings.common_name, certificate))
        record, api_key = repository.admin.create_api_key(FIRST_KEY_NAME, Role.REGISTRY_ADMINISTRATOR.value)
        repository.admin.audit("init", "api_key.create", f"api key {record.id}", {"name": FIRST_KEY_NAME})
        anchor = Anchor(
            instance,
            (f"http://127.0.0.1:{distribution_port}/globalconf",),
            tuple(repository.anchor_certificates()),
        )
    finally:
        repository.engine.dispose()
    anchor_path = directory / ANCHOR_FILE
    save_anchor(anchor_path, anchor)
    return CreatedRegistry(
        config_path,
        signer.key_path,
        signer.certificate_path,
        anchor_path,
        fingerprint_sha256(signer.certificate),
        api_key,
    )
