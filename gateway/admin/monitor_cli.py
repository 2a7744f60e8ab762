"""`xgate monitor`: what a node does and how it fares, read through its management API."""

from __future__ import annotations

import click

from gateway.admin.cli import DEFAULT_KEY_ENV, URL_ENV, AdminSettings
from gateway.admin.client import DEFAULT_URL
from gateway.admin.environment_cli import environment
from gateway.admin.opmon_cli import records, services
from gateway.apicli import ApiGroup, api_options


@click.group(name="monitor", cls=ApiGroup, context_settings={"help_option_names": ["-h", "--help"]})
@api_options(
    url_env=URL_ENV,
    default_url=DEFAULT_URL,
    default_key_env=DEFAULT_KEY_ENV,
    url_help=f"The node's admin listener (or set {URL_ENV}).",
)
@click.pass_context
def cli(ctx: click.Context, url: str, key_env: str) -> None:
    """Operational records, per-service statistics and the node's environment."""
    ctx.obj = AdminSettings(url, key_env)


cli.add_command(records)
cli.add_command(services)
cli.add_command(environment)
