"""`xgate config`: a gateway's registrations as one declarative YAML file, exported and applied.

Reads and writes through the management API (gateway.admin.declarative), so a remote
administrator uses the same path, checks and audit log as every other change; the file is read
with yaml.safe_load only (no tags, no objects). The JSON Schema it follows is
docs/config-schema.json (`xgate config schema` prints it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import yaml

from gateway.admin.cli import AdminGroup, AdminSettings, pass_settings
from gateway.admin.client import DEFAULT_URL
from gateway.apicli import GATEWAY_API_KEY_ENV, GATEWAY_API_URL_ENV, api_options


class _BlockDumper(yaml.SafeDumper):
    """Multi-line text (certificates, WSDL documents) as YAML block scalars, readable and diffable."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = (
        "|" if "\n" in value and not any(c in value for c in "\r\t") and value == value.rstrip(" ") else None
    )
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _text)


def to_yaml(document: dict[str, Any]) -> str:
    return yaml.dump(document, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=110)


def read_file(path: Path) -> dict[str, Any]:
    """A declarative file (YAML, or JSON which is YAML too) as a mapping; safe_load only."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise click.ClickException(f"{path} is not YAML: {error}") from None
    if not isinstance(document, dict):
        raise click.ClickException(f"{path} must hold a mapping with `format` and `subsystems`")
    try:
        json.dumps(document)
    except (TypeError, ValueError) as error:  # a YAML date or a non-text key: quote it
        raise click.ClickException(f"{path} holds a value that is not JSON ({error}): quote it") from None
    return document


@click.group(cls=AdminGroup, context_settings={"help_option_names": ["-h", "--help"]})
@api_options(
    url_env=GATEWAY_API_URL_ENV,
    default_url=DEFAULT_URL,
    default_key_env=GATEWAY_API_KEY_ENV,
    url_help=f"The node's admin listener (or set {GATEWAY_API_URL_ENV}).",
)
@click.pass_context
def cli(ctx: click.Context, url: str, key_env: str) -> None:
    """Declarative configuration: export the gateway's registrations as YAML, apply a file back.

    The file holds subsystems (auth mode, pinned certificates, message-log policy), services,
    access rights, local groups and cache policies; never keys or API keys.
    """
    ctx.obj = AdminSettings(url, key_env)


@cli.command("export")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here, not stdout."
)
@pass_settings
def export(settings: AdminSettings, output: Path | None) -> None:
    """Print every registration as one YAML file that `apply` reads."""
    text = to_yaml(settings.client().export_config())
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


@cli.command("apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Show the changes, make none.")
@click.option("--json", "as_json", is_flag=True, help="The API's answer as JSON.")
@pass_settings
def apply(settings: AdminSettings, file: Path, dry_run: bool, as_json: bool) -> None:
    """Make the gateway's registrations exactly those of FILE: validated whole, all or nothing.

    Prints the changes as a diff (+ added, - removed, ~ changed); what FILE leaves out is removed.
    """
    result = settings.client().apply_config(read_file(file), dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    for change in result["changes"]:
        detail = f": {change['detail']}" if change["detail"] else ""
        click.echo(f"{change['change']} {change['action']} {change['target']}{detail}")
    count = len(result["changes"])
    if not count:
        click.echo("no changes: the gateway is as the file declares")
    elif dry_run:
        click.echo(f"dry run: {count} change(s) planned, none made")
    else:
        click.echo(f"applied {count} change(s) in one transaction")


@cli.command("schema")
def schema() -> None:
    """Print the file's JSON Schema (docs/config-schema.json)."""
    from gateway.admin.declarative import config_schema

    click.echo(json.dumps(config_schema(), indent=2))
