"""`xgate monitor`: what a node does and how it fares, read through its management API."""

from __future__ import annotations

import click


@click.group(name="monitor")
def cli() -> None:
    """Operational records, per-service statistics and the node's environment."""
