"""`xgate federation ...`: a development federation on this machine."""

from __future__ import annotations

import json
from pathlib import Path

import click

from gateway.dev import federation


@click.group("federation")
def cli() -> None:
    """Start and stop a development federation on 127.0.0.1 (PKI, trust services, central
    registry, three gateways registered through it, example SOAP and REST services)."""


@cli.command("up")
@click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where everything is generated.",
)
@click.option(
    "--redundant-trust",
    is_flag=True,
    help="Also run a primary OCSP responder and TSA as processes of their own (ocsp-primary, tsa-primary).",
)
@click.option(
    "--nodes",
    type=click.IntRange(1, 2),
    default=1,
    show_default=True,
    help=f"Nodes of {federation.TWO_NODE_GATEWAY}: 2 runs a second node sharing --database "
    "(docs/deployment.md).",
)
@click.option(
    "--database",
    envvar="XGATE_TEST_PG_DSN",
    metavar="URL",
    help="With --nodes 2: the PostgreSQL database both nodes share (or set XGATE_TEST_PG_DSN); "
    "its tables are created, and an empty database is best.",
)
def up(directory: Path, redundant_trust: bool, nodes: int, database: str | None) -> None:
    """Generate and start the federation through its registry; writes DIR/federation.json describing it.

    The registry's first administrator API key is in federation.json (registry.api_key).
    """
    _refuse_a_used_directory(directory)
    if nodes == 2 and not database:
        raise click.UsageError("--nodes 2 needs --database (or XGATE_TEST_PG_DSN): a PostgreSQL URL")
    try:
        description = federation.up(
            directory.resolve(), redundant_trust=redundant_trust, database=database if nodes == 2 else None
        )
        federation.set_demo_cache_policies(description)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"federation up in {directory}; description in {directory / 'federation.json'}")
    registry, trust = description["registry"], description["trust"]
    click.echo(
        f"  registry: management {registry['management_url']}, gateways use {registry['globalconf_url']}"
    )
    click.echo(f"  trust services: TSA {', '.join(trust['tsa_urls'])}; OCSP {', '.join(trust['ocsp_urls'])}")
    for gw in federation.nodes(description):
        click.echo(
            f"  {gw['name']}: {gw['server_id']} internal {gw['internal_http_url']} admin {gw['admin_url']}"
            f" health {gw['health_url']}"
        )
    for service in description["services"]:
        click.echo(f"  service {service['service']} ({service['kind']}) on {service['gateway']}")
    click.echo("  gw-a cache policies: population-fallback (getPerson), benefits-replica (GET /benefits/*)")


PIDS_FILE = "pids.json"
"""What `up` writes with the PIDs it started and `down` removes (gateway.dev.federation)."""


def _refuse_a_used_directory(directory: Path) -> None:
    """`up` generates a new PKI and registry: it will not overwrite a federation, running or not."""
    if (directory / PIDS_FILE).exists():
        raise click.ClickException(
            f"a federation is already running in {directory}: stop it first with "
            f"`xgate federation down --dir {directory}`"
        )
    if directory.is_dir() and any(directory.iterdir()):
        raise click.ClickException(
            f"{directory} already holds a (stopped) federation or other files; `up` makes a new one "
            f"from nothing: remove it first (`rm -rf {directory}`) or choose another --dir"
        )


@cli.command("down")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, path_type=Path))
def down(directory: Path) -> None:
    """Stop every process of the federation in DIR (gateways finish in-flight requests first).

    A recorded PID is signalled only while it is still the process `up` started.
    """
    if not directory.is_dir():
        raise click.ClickException(f"{directory} does not exist: no federation to stop there")
    if not (directory / PIDS_FILE).exists():
        click.echo(f"nothing is running in {directory} (no {PIDS_FILE}): already stopped")
        return
    for name in federation.down(directory.resolve()):
        click.echo(f"{name}: not signalled, its recorded PID is no longer the process started", err=True)
    click.echo(f"federation in {directory} stopped")


@cli.command("show")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, path_type=Path))
def show(directory: Path) -> None:
    """Print DIR/federation.json."""
    click.echo(json.dumps(json.loads((directory / "federation.json").read_text()), indent=2))
