"""`xgate gateway ...`: run a gateway node, look after its database, register it with the registry.

`register`, `add-subsystem` and `status` are the central registry's gateway-side commands
(gateway.central.gateway_cli), mounted here so an operator finds everything about a node
under one word.
"""

from __future__ import annotations

from pathlib import Path

import click

from gateway.central import gateway_cli
from gateway.config import ConfigError, load_config


@click.group(
    "gateway", cls=gateway_cli.RegistryGroup, context_settings={"help_option_names": ["-h", "--help"]}
)
def cli() -> None:
    """Run a gateway node (security server), manage its local database, register it with the registry."""


for _command in (gateway_cli.register, gateway_cli.add_subsystem, gateway_cli.status):
    cli.add_command(_command)


@cli.command("serve")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The node's TOML file (see config/gateway.example.toml).",
)
def serve(config_path: Path) -> None:
    """Serve the internal (HTTP/HTTPS), external (mutual TLS) and admin interfaces until SIGTERM.

    On SIGTERM or SIGINT the node stops accepting connections and lets in-flight requests
    finish within limits.shutdown_grace_seconds.
    """
    from gateway.node import run

    try:
        run(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@cli.command("migrate")
@click.option(
    "--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
def migrate_command(config_path: Path) -> None:
    """Create or upgrade the node's server-configuration database to the newest schema."""
    from gateway.serverconf.db import migrate

    migrate(load_config(config_path).database_url)
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
