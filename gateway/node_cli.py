"""`xgate gateway ...`: run a gateway node, look after its database, register it with the registry.

`register`, `add-subsystem` and `status` are the central registry's gateway-side commands
(gateway.central.gateway_cli), mounted here so an operator finds everything about a node
under one word.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from gateway import node_setup
from gateway.central import gateway_cli
from gateway.config import ConfigError, load_config
from gateway.ids import ClientId, IdentifierError, SecurityServerId


@click.group(
    "gateway", cls=gateway_cli.RegistryGroup, context_settings={"help_option_names": ["-h", "--help"]}
)
def cli() -> None:
    """Run a gateway node (security server), manage its local database, register it with the registry."""


for _command in (gateway_cli.register, gateway_cli.add_subsystem, gateway_cli.status):
    cli.add_command(_command)


def _identifier(parse: type[ClientId] | type[SecurityServerId], text: str, option: str) -> Any:
    try:
        return parse.from_text(text)
    except IdentifierError as exc:
        raise click.BadParameter(exc.message, param_hint=option) from None


_PORTS = node_setup.NodePorts()
_PORT = click.IntRange(0, 65535)


@cli.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--server-id",
    required=True,
    metavar="INSTANCE/CLASS/MEMBER/SERVER",
    help="The security server this node runs.",
)
@click.option(
    "--member",
    "members",
    multiple=True,
    metavar="INSTANCE/CLASS/MEMBER",
    help="A member whose messages the node signs; repeat for several [default: the server's owner].",
)
@click.option(
    "--pki-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Issue the TLS and signing keys from this development PKI (`xgate pki init`).",
)
@click.option("--ca-passphrase-env", metavar="VAR", help="Variable holding the PKI's CA key passphrase.")
@click.option(
    "--anchor",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The federation's anchor file (e.g. from `xgate central init`); copied to DIR/anchor.json.",
)
@click.option(
    "--globalconf",
    "globalconf_location",
    default=node_setup.DEFAULT_GLOBALCONF_LOCATION,
    show_default=True,
    help="Where the signed global configuration comes from (the registry's URL, or a file).",
)
@click.option("--internal-http-port", default=_PORTS.internal_http, show_default=True, type=_PORT)
@click.option("--internal-https-port", default=_PORTS.internal_https, show_default=True, type=_PORT)
@click.option("--external-port", default=_PORTS.external, show_default=True, type=_PORT)
@click.option("--admin-port", default=_PORTS.admin, show_default=True, type=_PORT)
@click.option("--force", is_flag=True, help="Overwrite DIR/gateway.toml (and the issued keys) if they exist.")
def init(
    directory: Path,
    server_id: str,
    members: tuple[str, ...],
    pki_dir: Path | None,
    ca_passphrase_env: str | None,
    anchor: Path | None,
    globalconf_location: str,
    internal_http_port: int,
    internal_https_port: int,
    external_port: int,
    admin_port: int,
    force: bool,
) -> None:
    """Make a node in DIR: DIR/gateway.toml (commented), DIR/data and DIR/keys (owner only).

    With --pki-dir the node's TLS and signing keys are issued at once; with --anchor the
    federation's anchor is copied in. Whatever is still missing is listed with how to make it.
    """
    from gateway.trust.pki import PkiError

    server = _identifier(SecurityServerId, server_id, "--server-id")
    passphrase = os.environ.get(ca_passphrase_env, "").encode() if ca_passphrase_env else None
    ports = node_setup.NodePorts(internal_http_port, internal_https_port, external_port, admin_port)
    try:
        created = node_setup.init_node(
            directory,
            server,
            members=tuple(_identifier(ClientId, member, "--member") for member in members),
            pki_dir=pki_dir,
            ca_passphrase=passphrase or None,
            anchor=anchor,
            globalconf_location=globalconf_location,
            ports=ports,
            force=force,
        )
    except (node_setup.NodeSetupError, PkiError, ConfigError, OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"configuration:   {created.config_path}")
    click.echo(f"data directory:  {created.config.data_dir}")
    for path in created.missing:
        click.echo(f"still missing:   {path}")
    if created.missing:
        keys = created.config_path.parent / node_setup.KEYS_DIR
        click.echo(
            f"make the keys with `xgate pki issue PKI_DIR gateway --server {server.to_text()} "
            f"--out {keys}/auth` (and internal, and `member` for each sign-* file), "
            "or run init again with --pki-dir and --force;"
        )
        click.echo(f"put the federation's anchor in {created.config.globalconf_anchor}")
    click.echo(f"start it with:   xgate gateway serve --config {created.config_path}")


@cli.command("serve")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The node's TOML file (see config/gateway.example.toml).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    help="Worker processes sharing the node's sockets, keys, configuration and databases "
    "(docs/deployment.md)  [default: one per core]",
)
def serve(config_path: Path, workers: int | None) -> None:
    """Serve the internal (HTTP/HTTPS), external (mutual TLS) and admin interfaces until SIGTERM.

    With several workers a parent process holds the listening sockets and starts the workers;
    each writes its own message-log chain (`<node>/w<index>`). On SIGTERM or SIGINT the node
    stops accepting connections and lets in-flight requests finish within
    limits.shutdown_grace_seconds, in every worker.
    """
    from gateway.node import run
    from gateway.workers import default_workers

    try:
        run(config_path, workers or default_workers())
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@cli.command("migrate")
@click.option(
    "--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
def migrate_command(config_path: Path) -> None:
    """Create or upgrade the node's server-configuration database to the newest schema."""
    from gateway.db import SchemaTooNew
    from gateway.serverconf.db import migrate

    try:
        migrate(load_config(config_path).database_url)
    except SchemaTooNew as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("database is at the newest schema")


@cli.command("create-api-key")
@click.option(
    "--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--name", required=True, help="Who the key is for (shown in the audit log).")
@click.option(
    "--role",
    required=True,
    type=click.Choice(
        [
            "system_administrator",
            "service_administrator",
            "security_officer",
            "registration_officer",
            "observer",
        ]
    ),
)
def create_api_key(config_path: Path, name: str, role: str) -> None:
    """Create a management-API key directly in the database (for the first administrator).

    The key is printed once and stored only as a digest.
    """
    from gateway.serverconf.db import migrate
    from gateway.serverconf.repository import ServerConfRepository
    from gateway.serverconf.tables import AuditResult

    url = load_config(config_path).database_url
    migrate(url)
    repository = ServerConfRepository.from_url(url)
    repository.audit("cli", "create_api_key", name, {"role": role}, AuditResult.OK)
    _, key = repository.create_api_key(name, role)
    click.echo(key)


def _backup_key(passphrase_env: str | None, key_file: Path | None) -> Any:
    """The key from --passphrase-env or --key-file (exactly one); the passphrase is never an argument."""
    from gateway.backup import BackupError, BackupKey

    if (passphrase_env is None) == (key_file is None):
        raise click.UsageError("give one of --passphrase-env VAR and --key-file FILE")
    try:
        if key_file is not None:
            return BackupKey.key_file(key_file)
        assert passphrase_env is not None
        passphrase = os.environ.get(passphrase_env)
        if not passphrase:
            raise click.UsageError(f"${passphrase_env} is not set: it must hold the backup passphrase")
        return BackupKey.passphrase(passphrase)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None


_KEY_OPTIONS = (
    click.option("--passphrase-env", metavar="VAR", help="Environment variable holding the passphrase."),
    click.option(
        "--key-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="A file of 32 random bytes (or 64 hex digits) instead of a passphrase.",
    ),
)


def _with_key_options(function: Any) -> Any:
    for option in reversed(_KEY_OPTIONS):
        function = option(function)
    return function


@cli.command("backup")
@click.option(
    "--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@_with_key_options
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The backup file."
)
def backup_command(
    config_path: Path, passphrase_env: str | None, key_file: Path | None, output: Path
) -> None:
    """Write an encrypted backup of the node: its TOML file, server configuration, keys, anchor.

    AES-256-GCM over the whole archive, with a manifest of every file's SHA-256; the key comes
    from scrypt(passphrase) or a key file. The message log is not in it (it has its own archives).
    """
    from gateway.backup import BackupError, write_backup

    key = _backup_key(passphrase_env, key_file)
    try:
        written = write_backup(config_path, key, output)
    except (BackupError, ConfigError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"backup written: {written} ({written.stat().st_size} bytes)")


@cli.command("restore")
@click.argument("backup_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--to",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="A fresh directory.",
)
@_with_key_options
@click.option(
    "--database-url",
    help="A PostgreSQL backup: load the configuration into this empty database, not the one the file names.",
)
def restore_command(
    backup_file: Path,
    directory: Path,
    passphrase_env: str | None,
    key_file: Path | None,
    database_url: str | None,
) -> None:
    """Restore a backup into DIR: every file checked against the manifest, keys 0600, paths rewritten.

    Start the node with `xgate gateway serve --config DIR/gateway.toml` (the file's name as backed up).
    """
    from gateway.backup import BackupError, restore

    key = _backup_key(passphrase_env, key_file)
    try:
        config_path = restore(backup_file.read_bytes(), key, directory, database_url=database_url)
    except (BackupError, ConfigError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"restored: start it with `xgate gateway serve --config {config_path}`")
