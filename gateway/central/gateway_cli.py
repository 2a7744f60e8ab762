"""`xgate gateway register | add-subsystem | status`: a gateway's requests to the central registry.

Mounted under `xgate gateway` (gateway/node_cli.py). Keys and certificates come from the
node's TOML file (--config: the external interface's certificate and key are the
authentication pair, the owner member's [[signing_keys]] entry the signing pair, and for
`add-subsystem` the subsystem's member's entry its consent) or from explicit paths, which
win. Passphrases come from the environment variables the file names, never from arguments.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Final

import click
import requests
from cryptography import x509

from gateway.central.client import (
    RegistryRequestError,
    RequestStatus,
    register_server,
    request_status,
    request_subsystem,
)
from gateway.config import ConfigError, NodeConfig, load_config
from gateway.crypto.certs import fingerprint_sha256, load_certificate_file
from gateway.crypto.keys import KeyFileError, PrivateKey, load_private_key
from gateway.ids import ClientId, IdentifierError, SecurityServerId

REGISTRY_ENV: Final = "XGATE_REGISTRY_URL"


class RegistryGroup(click.Group):
    """Turns the registry's refusals and connection failures into one line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RegistryRequestError as error:
            raise click.ClickException(f"{error.status} {error.code}: {error.message}") from None
        except requests.RequestException as error:
            raise click.ClickException(f"cannot reach the registry: {error}") from None
        except (ConfigError, KeyFileError, OSError) as error:
            raise click.ClickException(str(error)) from None
        except IdentifierError as error:
            raise click.ClickException(error.message) from None


@click.group(name="gateway", cls=RegistryGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Register this gateway with the central registry and follow its requests."""


def _passphrase(env: str | None) -> bytes | None:
    if not env:
        return None
    value = os.environ.get(env)
    if value is None:
        raise click.ClickException(f"the key's passphrase variable {env} is not set")
    return value.encode()


def _node(config_path: Path | None) -> NodeConfig | None:
    return load_config(config_path) if config_path else None


def _server(node: NodeConfig | None, server_text: str | None) -> SecurityServerId:
    if server_text:
        return SecurityServerId.from_text(server_text)
    if node is not None:
        return node.server_id
    raise click.UsageError("give --server-id or --config")


def _signing_pair(
    node: NodeConfig | None,
    member: ClientId,
    cert_path: Path | None,
    key_path: Path | None,
    options: str = "--sign-cert/--sign-key",
) -> tuple[x509.Certificate, PrivateKey]:
    """The member's signing certificate and key: explicit paths, or the node file's entry for it."""
    entry = next((k for k in node.signing_keys if k.member == member), None) if node else None
    cert_path = cert_path or (entry.cert if entry else None)
    key_path = key_path or (entry.key if entry else None)
    if cert_path is None or key_path is None:
        raise click.UsageError(f"no signing key for {member}: give {options} or --config")
    key = load_private_key(key_path, _passphrase(entry.passphrase_env if entry else None))
    return load_certificate_file(cert_path), key


def _auth_pair(
    node: NodeConfig | None, cert_path: Path | None, key_path: Path | None
) -> tuple[x509.Certificate, PrivateKey]:
    """The gateway's authentication certificate and key: explicit paths, or the node's external TLS pair."""
    cert_path = cert_path or (node.auth_tls.cert if node else None)
    key_path = key_path or (node.auth_tls.key if node else None)
    if cert_path is None or key_path is None:
        raise click.UsageError("no authentication key: give --auth-cert/--auth-key or --config")
    key = load_private_key(key_path, _passphrase(node.auth_tls.passphrase_env if node else None))
    return load_certificate_file(cert_path), key


def _show(status: RequestStatus, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(status.details, indent=2, ensure_ascii=False))
        return
    click.echo(f"request {status.id}: {status.type}, {status.state}")
    if status.decided_at:
        click.echo(
            f"decided {status.decided_at} by {status.decided_by}: {status.reason or '(no reason given)'}"
        )


_PATH = click.Path(exists=True, dir_okay=False, path_type=Path)

_registry_option = click.option(
    "--registry",
    "registry_url",
    envvar=REGISTRY_ENV,
    required=True,
    help=f"The registry's distribution URL, e.g. http://registry.example:4401 (or set {REGISTRY_ENV}).",
)
_config_option = click.option("--config", "config_path", type=_PATH, help="The node's TOML file.")
_server_option = click.option(
    "--server-id", "server_text", help="INSTANCE/CLASS/MEMBER/SERVER [from --config]."
)
_sign_options = (
    click.option("--sign-cert", type=_PATH, help="The owner member's signing certificate [from --config]."),
    click.option("--sign-key", type=_PATH, help="Its private key [from --config]."),
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print the registry's JSON answer.")


@cli.command("register")
@_registry_option
@_config_option
@_server_option
@click.option(
    "--address", required=True, help="host:port where this gateway's external interface is reached."
)
@click.option(
    "--auth-cert", type=_PATH, help="The TLS authentication certificate to register [from --config]."
)
@click.option("--auth-key", type=_PATH, help="Its private key [from --config].")
@_sign_options[0]
@_sign_options[1]
@click.option("--replaces", metavar="SHA256", help="A registered certificate this one replaces on approval.")
@_json_option
def register(
    registry_url: str,
    config_path: Path | None,
    server_text: str | None,
    address: str,
    auth_cert: Path | None,
    auth_key: Path | None,
    sign_cert: Path | None,
    sign_key: Path | None,
    replaces: str | None,
    as_json: bool,
) -> None:
    """Ask the registry to register this gateway's TLS authentication certificate (new gateway or cert)."""
    node = _node(config_path)
    server = _server(node, server_text)
    certificate, key = _auth_pair(node, auth_cert, auth_key)
    signing_cert, signing_key = _signing_pair(node, server.owner, sign_cert, sign_key)
    status = register_server(
        registry_url, server, address, certificate, key, signing_cert, signing_key, replaces=replaces
    )
    _show(status, as_json)
    if not as_json:
        click.echo(f"authentication certificate {fingerprint_sha256(certificate)}")
        click.echo(f"follow it with: xgate gateway status --registry {registry_url} {status.id}")


@cli.command("add-subsystem")
@_registry_option
@_config_option
@_server_option
@click.option("--subsystem", "subsystem_text", required=True, metavar="INSTANCE/CLASS/MEMBER/SUBSYSTEM")
@_sign_options[0]
@_sign_options[1]
@click.option(
    "--member-sign-cert",
    type=_PATH,
    help="The subsystem's member's signing certificate, its consent [from --config; for the "
    "owner's own subsystems the owner's pair].",
)
@click.option("--member-sign-key", type=_PATH, help="Its private key [from --config].")
@_json_option
def add_subsystem(
    registry_url: str,
    config_path: Path | None,
    server_text: str | None,
    subsystem_text: str,
    sign_cert: Path | None,
    sign_key: Path | None,
    member_sign_cert: Path | None,
    member_sign_key: Path | None,
    as_json: bool,
) -> None:
    """Ask the registry to let this gateway host a subsystem (its member must be registered).

    The request is signed by the gateway's owner and by the subsystem's member, as X-Road's
    client registration is: a gateway cannot host another member's subsystem unasked.
    """
    subsystem = ClientId.from_text(subsystem_text)
    if subsystem.subsystem_code is None:
        raise click.UsageError("--subsystem must name a subsystem")
    node = _node(config_path)
    server = _server(node, server_text)
    signing_cert, signing_key = _signing_pair(node, server.owner, sign_cert, sign_key)
    if subsystem.member == server.owner and member_sign_cert is None and member_sign_key is None:
        member_cert, member_key = signing_cert, signing_key  # the owner consents with its own key
    else:
        member_cert, member_key = _signing_pair(
            node, subsystem.member, member_sign_cert, member_sign_key, "--member-sign-cert/--member-sign-key"
        )
    status = request_subsystem(
        registry_url,
        server,
        subsystem,
        signing_cert,
        signing_key,
        member_cert=member_cert,
        member_key=member_key,
    )
    _show(status, as_json)


@cli.command("status")
@_registry_option
@click.argument("request_id")
@_json_option
def status(registry_url: str, request_id: str, as_json: bool) -> None:
    """Show how the registry decided a request: state, when, by whom, why."""
    _show(request_status(registry_url, request_id), as_json)
