"""The `xgate` command: one entry point, one sub-group per audience (pki, gateway, federation, ...)."""

from __future__ import annotations

import importlib

import click

# Sub-groups live beside the code they drive; each module exposes a click group named `cli`
# (or the command named after the colon).
# They are imported lazily so that `xgate --help` stays fast and one broken extra does not
# take the whole command down.
SUBCOMMANDS: dict[str, str] = {
    "pki": "gateway.trust.pki_cli",
    "gateway": "gateway.node_cli",
    "federation": "gateway.dev.federation_cli",
    "admin": "gateway.admin.cli",
    "config": "gateway.admin.config_cli",
    "log": "gateway.messagelog.cli",
    "monitor": "gateway.admin.monitor_cli",
    "trust": "gateway.trust.trust_cli",
    "central": "gateway.central.cli",
    "services": "gateway.developer_cli:services_command",
    "call": "gateway.developer_cli:call_command",
}


class LazyGroup(click.Group):
    """A click group whose sub-groups are imported only when used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *SUBCOMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in SUBCOMMANDS:
            module_name, _, attribute = SUBCOMMANDS[cmd_name].partition(":")
            command: click.Command = getattr(importlib.import_module(module_name), attribute or "cli")
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="xgate")
def main() -> None:
    """xgate: an X-Road-style interoperability gateway.

    Agency systems call their own gateway on its internal interface (SOAP 4.0 or REST r1);
    gateways call each other over mutual TLS, sign every message and log it.
    """


if __name__ == "__main__":
    main()
