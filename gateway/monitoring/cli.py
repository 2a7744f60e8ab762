"""`xgate monitor`: what a node does and how it fares, read through its management API."""

from __future__ import annotations

from typing import Final

import click

from gateway.apicli import GATEWAY_API_KEY_ENV, GATEWAY_API_URL, GATEWAY_API_URL_ENV, ApiGroup, api_options
from gateway.monitoring.operational.cli import MonitorSettings, records, services

URL_ENV: Final = GATEWAY_API_URL_ENV


@click.group(name="monitor", cls=ApiGroup, context_settings={"help_option_names": ["-h", "--help"]})
@api_options(
    url_env=URL_ENV,
    default_url=GATEWAY_API_URL,
    default_key_env=GATEWAY_API_KEY_ENV,
    url_help=f"The node's admin listener (or set {URL_ENV}).",
)
@click.pass_context
def cli(ctx: click.Context, url: str, key_env: str) -> None:
    """Operational records, per-service statistics and the node's environment."""
    ctx.obj = MonitorSettings(url, key_env)


cli.add_command(records)
cli.add_command(services)
