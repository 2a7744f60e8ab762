"""`xgate federation ...`: a development federation on this machine."""

from __future__ import annotations

import json
from pathlib import Path

import click

from gateway import federation


@click.group("federation")
def cli() -> None:
    """Start and stop a development federation on 127.0.0.1 (PKI, global configuration,
    three gateways, example SOAP and REST services)."""


@cli.command("up")
@click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where everything is generated.",
)
def up(directory: Path) -> None:
    """Generate and start the federation; writes DIR/federation.json describing it."""
    try:
        description = federation.up(directory.resolve())
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"federation up in {directory}; description in {directory / 'federation.json'}")
    for gw in description["gateways"]:
        click.echo(
            f"  {gw['name']}: {gw['server_id']} internal {gw['internal_http_url']} admin {gw['admin_url']}"
        )
    for service in description["services"]:
        click.echo(f"  service {service['service']} ({service['kind']}) on {service['gateway']}")


@cli.command("down")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, path_type=Path))
def down(directory: Path) -> None:
    """Stop every process of the federation in DIR (gateways finish in-flight requests first)."""
    federation.down(directory.resolve())
    click.echo(f"federation in {directory} stopped")


@cli.command("show")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, path_type=Path))
def show(directory: Path) -> None:
    """Print DIR/federation.json."""
    click.echo(json.dumps(json.loads((directory / "federation.json").read_text()), indent=2))
