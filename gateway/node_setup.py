"""A new gateway node in one directory (`xgate gateway init DIR`): its TOML file and directories.

Layout (every path in the file is relative, so the directory can be moved as a whole):

    DIR/gateway.toml   the node's settings, mode 0600 (config/gateway.example.toml explains each key)
    DIR/data/          databases, the cached global configuration (0700)
    DIR/keys/          TLS and signing keys and certificates (0700; keys 0600)
    DIR/anchor.json    the federation's anchor (copied from --anchor, or put there by hand)

With a development PKI (`--pki-dir`, `xgate pki init`) the keys and certificates are issued
at once; otherwise the file names where they are expected and `xgate gateway init` says how
to make them.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from gateway.config import NodeConfig, load_config
from gateway.configfile import ANCHOR_FILE, CONFIG_FILE_MODE, DATA_DIR_MODE
from gateway.crypto.keys import write_file_atomically
from gateway.faults import DEFAULT_FAULT_STYLE, DEFAULT_SOAP_FAULT_STATUS
from gateway.ids import ClientId, SecurityServerId
from gateway.messagelog.settings import ARCHIVE_DIR_NAME, DEFAULT_ARCHIVE_EVERY_BYTES, DEFAULT_RETENTION_DAYS
from gateway.trust import pki

CONFIG_FILE: Final = "gateway.toml"
DATA_DIR: Final = "data"
KEYS_DIR: Final = "keys"

DEFAULT_GLOBALCONF_LOCATION: Final = "http://127.0.0.1:4401/globalconf"
"""Where `xgate central init`'s registry distributes the configuration by default."""


class NodeSetupError(Exception):
    """The directory cannot take a new node (a file is there already)."""


@dataclass(frozen=True)
class NodePorts:
    """The listeners of a new node (the ports of config/gateway.example.toml)."""

    internal_http: int = 8080
    internal_https: int = 8443
    external: int = 5500
    admin: int = 5588


@dataclass(frozen=True)
class CreatedNode:
    config_path: Path
    config: NodeConfig
    missing: tuple[Path, ...] = field(default=())
    """Files the configuration names that are not there yet (keys, certificates, anchor)."""


def _member_stem(member: ClientId) -> str:
    return f"sign-{member.member_class}-{member.member_code}"


def config_text(
    server_id: SecurityServerId,
    members: tuple[ClientId, ...],
    globalconf_location: str,
    ports: NodePorts,
) -> str:
    keys = "".join(
        f"""
[[signing_keys]]
member = "{member.to_text()}"
cert = "{KEYS_DIR}/{_member_stem(member)}.pem"
key = "{KEYS_DIR}/{_member_stem(member)}.key"
# passphrase_env = "XGATE_SIGN_KEY_PASSPHRASE"   # if the key file is encrypted
"""
        for member in members
    )
    return f"""# Gateway node {server_id.to_text()} (`xgate gateway serve --config THIS_FILE`).
# Written by `xgate gateway init`; config/gateway.example.toml explains every key.
# Relative paths are relative to this file's directory.

[node]
server_id = "{server_id.to_text()}"
# Databases and the last good global configuration.
data_dir = "{DATA_DIR}"

[globalconf]
# The registry's distribution endpoint (or a file path), and the anchor that says who signs.
location = "{globalconf_location}"
anchor = "{ANCHOR_FILE}"

[internal.http]
host = "127.0.0.1"
port = {ports.internal_http}

[internal.https]
host = "127.0.0.1"
port = {ports.internal_https}
cert = "{KEYS_DIR}/internal.pem"
key = "{KEYS_DIR}/internal.key"

[external]
# Mutual TLS for other gateways: the authentication certificate the registry registers.
host = "127.0.0.1"
port = {ports.external}
cert = "{KEYS_DIR}/auth.pem"
key = "{KEYS_DIR}/auth.key"
# passphrase_env = "XGATE_AUTH_KEY_PASSPHRASE"   # if the key file is encrypted

[admin]
# Management API and health; loopback only.
# The first API key:
# `xgate gateway create-api-key --config THIS_FILE --name NAME --role system_administrator`.
host = "127.0.0.1"
port = {ports.admin}

# For a load balancer: GET /health on a listener of its own, any address (docs/operations.md).
# [health]
# host = "0.0.0.0"
# port = {ports.admin + 1}
{keys}
[messagelog]
# Archives of the log go to {DATA_DIR}/{ARCHIVE_DIR_NAME} hourly and whenever the log has
# grown {DEFAULT_ARCHIVE_EVERY_BYTES >> 20} MiB; archived records are purged from the database after
# retention_days. Copy the archives off the machine (archive_hook runs a command with each
# one): they are the evidence.
# Below the critical free-space watermark new exchanges are refused (docs/resilience.md).
# archive_dir = "/var/lib/xgate/archive"
# archive_hook = ["/usr/local/bin/ship-archive"]
retention_days = {DEFAULT_RETENTION_DAYS:g}

[compatibility]
# Faults as X-Road 7.8's client proxy sends them: HTTP 200 and codes such as
# server.clientproxy.unknown_member. Clients written for older X-Road may want
# soap_fault_status = 500 and fault_code_style = "legacy" (Server.ClientProxy.UnknownMember).
soap_fault_status = {DEFAULT_SOAP_FAULT_STATUS}
fault_code_style = "{DEFAULT_FAULT_STYLE}"
"""


def _issue_keys(
    directory: Path,
    server_id: SecurityServerId,
    members: tuple[ClientId, ...],
    pki_dir: Path,
    ca_passphrase: bytes | None,
    overwrite: bool,
) -> None:
    ca = pki.load_ca(pki_dir, ca_passphrase)
    keys = directory / KEYS_DIR
    for stem in ("auth", "internal"):
        pki.issue(pki_dir, ca, pki.GatewayProfile(server_id), out_prefix=keys / stem, overwrite=overwrite)
    for member in members:
        profile = pki.MemberSigningProfile(member)
        pki.issue(pki_dir, ca, profile, out_prefix=keys / _member_stem(member), overwrite=overwrite)


def init_node(
    directory: Path,
    server_id: SecurityServerId,
    *,
    members: tuple[ClientId, ...] = (),
    pki_dir: Path | None = None,
    ca_passphrase: bytes | None = None,
    anchor: Path | None = None,
    globalconf_location: str = DEFAULT_GLOBALCONF_LOCATION,
    ports: NodePorts = NodePorts(),
    force: bool = False,
) -> CreatedNode:
    """Write DIR/gateway.toml and make DIR/data and DIR/keys; refuse an existing file unless `force`."""
    members = members or (server_id.owner,)
    directory = Path(directory).resolve()
    config_path = directory / CONFIG_FILE
    if config_path.exists() and not force:
        raise NodeSetupError(f"{config_path} exists: give --force to overwrite it")
    for path in (directory, directory / DATA_DIR, directory / KEYS_DIR):
        path.mkdir(parents=True, exist_ok=True, mode=DATA_DIR_MODE)
        path.chmod(DATA_DIR_MODE)
    if pki_dir is not None:
        _issue_keys(directory, server_id, members, Path(pki_dir), ca_passphrase, force)
    if anchor is not None:
        shutil.copyfile(anchor, directory / ANCHOR_FILE)
    text = config_text(server_id, members, globalconf_location, ports)
    write_file_atomically(config_path, text.encode(), CONFIG_FILE_MODE)
    config = load_config(config_path)
    named = [config.globalconf_anchor, config.auth_tls.cert, config.auth_tls.key]
    if config.internal_tls is not None:
        named += [config.internal_tls.cert, config.internal_tls.key]
    for key in config.signing_keys:
        named += [key.cert, key.key]
    return CreatedNode(config_path, config, tuple(path for path in named if not path.exists()))
