"""`xgate central`: run the central registry, set one up, and manage it through its API.

`serve`, `init`, `new-signing-key` and `create-api-key` work on the registry's files; every
other command is a twin of one management API operation, through
:class:`gateway.central.api_client.RegistryClient`. As with `xgate admin`, the API key is
never an argument: it is read from an environment variable (XGATE_CENTRAL_API_KEY unless
--api-key-env names another) or asked for without echo.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import click

from gateway.apicli import (
    CLIENT_ID,
    MEMBER_ID,
    SERVER_ID,
    ApiGroup,
    ApiSettings,
    Columns,
    api_options,
    audit_chain_text,
    audit_options,
    confirmed,
    done,
    echo_json,
    echo_next_page,
    emit,
    json_option,
    with_next_page,
)
from gateway.central.api_client import DEFAULT_URL, RegistryClient, client_path, segment, server_path
from gateway.central.roles import Role
from gateway.ids import ClientId, slash_form

URL_ENV: Final = "XGATE_CENTRAL_URL"
DEFAULT_KEY_ENV: Final = "XGATE_CENTRAL_API_KEY"

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


class RegistrySettings(ApiSettings[RegistryClient]):
    """Where the registry's management API is and where its key comes from."""

    def _connect(self, url: str, key: str) -> RegistryClient:
        return RegistryClient(url, key)


pass_registry = click.make_pass_decorator(RegistrySettings)


@click.group(
    name="central",
    cls=ApiGroup,
    renamed={"apikeys": "api-keys"},
    context_settings={"help_option_names": ["-h", "--help"]},
)
@api_options(
    url_env=URL_ENV,
    default_url=DEFAULT_URL,
    default_key_env=DEFAULT_KEY_ENV,
    url_help=f"The management API (or set {URL_ENV}).",
)
@click.pass_context
def cli(ctx: click.Context, url: str, key_env: str) -> None:
    """The central registry: members, gateways, trust services, requests, the signed configuration.

    Members and subsystems are written INSTANCE/CLASS/MEMBER[/SUBSYSTEM], gateways
    INSTANCE/CLASS/MEMBER/SERVER (X-Road's DEV:GOV:1001 is read too); identifiers are
    case-sensitive. Listings page with --limit and the --page TOKEN that `next page:` prints.
    Every change is audited under the API key's name.
    """
    ctx.obj = RegistrySettings(url, key_env)


def _shown(value: Any) -> str:
    """An object's field: nested values as JSON, the rest as they are."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else str(value)


def _emit(result: Any, as_json: bool, columns: Columns = (), message: str | None = None) -> None:
    emit(result, as_json, columns, message, show=_shown)


def _pem(path: Path) -> str:
    return path.read_text(encoding="ascii")


def _env_passphrase(variable: str | None) -> bytes | None:
    """A passphrase from the named environment variable; None when no variable is named."""
    if variable is None:
        return None
    value = os.environ.get(variable)
    if value is None:
        raise click.ClickException(f"{variable} is not set")
    return value.encode()


# --- running and setting up -----------------------------------------------------------------


@cli.command("serve")
@click.option("--config", "config_path", required=True, type=_FILE, help="The registry's TOML file.")
def serve(config_path: Path) -> None:
    """Serve the management API and the distribution endpoints until SIGTERM."""
    from gateway.central.config import load_config
    from gateway.central.repository import RegistryError
    from gateway.central.server import run
    from gateway.configfile import ConfigError, check_database_directory, ensure_data_dir
    from gateway.db import SchemaTooNew

    try:
        config = load_config(config_path)
        ensure_data_dir(config.data_dir, "registry.data_dir", "set up a registry with `xgate central init`")
        check_database_directory(config.database_url, "registry.database_url")
        run(config_path)
    except (ConfigError, RegistryError, OSError, SchemaTooNew) as exc:
        raise click.ClickException(str(exc)) from exc


@cli.command("init")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--instance", required=True, help="The federation instance code, e.g. DEV.")
@click.option(
    "--pki-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Issue the signing certificate from this PKI's CA (and trust that CA); default: a CA of its own.",
)
@click.option("--ca-passphrase-env", metavar="VAR", help="Variable holding the CA key's passphrase.")
@click.option("--management-port", default=4400, show_default=True, type=int)
@click.option("--distribution-port", default=4401, show_default=True, type=int)
def init(
    directory: Path,
    instance: str,
    pki_dir: Path | None,
    ca_passphrase_env: str | None,
    management_port: int,
    distribution_port: int,
) -> None:
    """Create a registry in DIR: config, signing key and certificate, database, anchor, first API key."""
    from gateway.central.bootstrap import RegistrySetupError, init_registry
    from gateway.configfile import ConfigError
    from gateway.trust.pki import PkiError

    try:
        created = init_registry(
            directory,
            instance,
            pki_dir=pki_dir,
            ca_passphrase=_env_passphrase(ca_passphrase_env),
            management_port=management_port,
            distribution_port=distribution_port,
        )
    except (RegistrySetupError, PkiError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"configuration:   {created.config_path}")
    click.echo(f"signing key:     {created.signing_key_path}")
    click.echo(f"anchor:          {created.anchor_path}")
    click.echo(f"anchor cert:     sha256 {created.anchor_sha256}  (give gateways the anchor; check this)")
    click.echo(f"start it with:   xgate central serve --config {created.config_path}")
    click.echo(f"API key ({Role.REGISTRY_ADMINISTRATOR.value}, shown once): {created.api_key}")


@cli.command("new-signing-key")
@click.option("--pki-dir", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option(
    "--out", "out_prefix", required=True, type=click.Path(path_type=Path), help="Writes OUT.key, OUT.pem."
)
@click.option("--name", help="The certificate's CN [default: derived from OUT].")
@click.option("--ca-passphrase-env", metavar="VAR", help="Variable holding the CA key's passphrase.")
def new_signing_key(pki_dir: Path, out_prefix: Path, name: str | None, ca_passphrase_env: str | None) -> None:
    """Issue a configuration-signing key and certificate (then `signing-keys add` them)."""
    from gateway.trust import pki

    ca = pki.load_ca(pki_dir, _env_passphrase(ca_passphrase_env))
    profile = pki.ConfigurationSignerProfile(name=name or f"configuration signer {out_prefix.name}")
    issued = pki.issue(pki_dir, ca, profile, out_prefix=out_prefix)
    click.echo(f"certificate: {issued.certificate_path}")
    click.echo(f"private key: {issued.key_path}")


@cli.command("create-api-key")
@click.option("--config", "config_path", required=True, type=_FILE)
@click.option("--name", required=True, help="Who the key is for (shown in the audit log).")
@click.option("--role", required=True, type=click.Choice([role.value for role in Role]))
def create_api_key_offline(config_path: Path, name: str, role: str) -> None:
    """Create an API key straight in the database (for when no key is left); printed once."""
    from gateway.central.config import load_config
    from gateway.central.db import migrate
    from gateway.central.repository import CentralRepository
    from gateway.configfile import ConfigError

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    migrate(config.database_url)
    repository = CentralRepository.from_url(config.database_url, config.instance)
    try:
        record, key = repository.admin.create_api_key(name, role)
        repository.admin.audit("cli", "api_key.create", f"api key {record.id}", {"name": name, "role": role})
    finally:
        repository.engine.dispose()
    click.echo(key)


# --- member classes, members, subsystems ----------------------------------------------------


@cli.group("member-classes")
def member_classes() -> None:
    """Member classes (GOV, COM, ...)."""


_CLASS_COLUMNS: Final = (("code", "code"), ("description", "description"))


@dataclass(frozen=True)
class _DescribedCodes:
    """A collection of codes with descriptions at `path` of the API (member classes, global
    groups): the same four commands manage each, with these help texts and messages."""

    path: str
    listed: str
    """The answer's field holding the list."""
    noun: str
    """As in "removed <noun> CODE"."""
    columns: Columns
    list_help: str
    add_help: str
    remove_help: str


def _described_code_commands(group: click.Group, codes: _DescribedCodes) -> None:
    """`list`, `add CODE [--description]`, `describe CODE DESCRIPTION`, `remove CODE` in `group`."""

    @group.command("list", help=codes.list_help)
    @json_option
    @pass_registry
    def list_codes(settings: RegistrySettings, as_json: bool) -> None:
        _emit(settings.client().get(codes.path)[codes.listed], as_json, codes.columns)

    @group.command("add", help=codes.add_help)
    @click.argument("code")
    @click.option("--description", default="")
    @json_option
    @pass_registry
    def add_code(settings: RegistrySettings, code: str, description: str, as_json: bool) -> None:
        _emit(settings.client().post(codes.path, {"code": code, "description": description}), as_json)

    @group.command("describe", help="Change CODE's description.")
    @click.argument("code")
    @click.argument("description")
    @json_option
    @pass_registry
    def describe_code(settings: RegistrySettings, code: str, description: str, as_json: bool) -> None:
        _emit(settings.client().put(f"{codes.path}/{segment(code)}", {"description": description}), as_json)

    @group.command("remove", help=codes.remove_help)
    @click.argument("code")
    @json_option
    @confirmed(f"Remove {codes.noun} {{code}}?")
    @pass_registry
    def remove_code(settings: RegistrySettings, code: str, as_json: bool) -> None:
        settings.client().delete(f"{codes.path}/{segment(code)}")
        done(as_json, f"removed {codes.noun} {code}")


_described_code_commands(
    member_classes,
    _DescribedCodes(
        "/member-classes",
        "member_classes",
        "member class",
        _CLASS_COLUMNS,
        list_help="List the member classes.",
        add_help="Add member class CODE.",
        remove_help="Delete member class CODE (no member may belong to it).",
    ),
)


@cli.group()
def members() -> None:
    """Member institutions."""


_MEMBER_COLUMNS: Final = (("member_id", "member"), ("name", "name"), ("subsystems", "subsystems"))


@members.command("list")
@json_option
@pass_registry
def members_list(settings: RegistrySettings, as_json: bool) -> None:
    """List the members."""
    _emit(settings.client().get("/members")["members"], as_json, _MEMBER_COLUMNS)


@members.command("add")
@click.argument("member_id", metavar="MEMBER_ID")
@click.argument("name", nargs=-1, required=True)
@json_option
@pass_registry
def members_add(settings: RegistrySettings, member_id: str, name: tuple[str, ...], as_json: bool) -> None:
    """Register the member MEMBER_ID (INSTANCE/CLASS/MEMBER, or CLASS/MEMBER in this registry's
    instance) called NAME. The older form `CLASS CODE NAME` is still read."""
    member_class, member_code, full_name = _new_member(settings, member_id, name)
    body = {"member_class": member_class, "member_code": member_code, "name": full_name}
    _emit(settings.client().post("/members", body), as_json, _MEMBER_COLUMNS)


def _new_member(settings: RegistrySettings, first: str, rest: tuple[str, ...]) -> tuple[str, str, str]:
    """(class, code, name) from `MEMBER_ID NAME` or the older `CLASS CODE NAME`."""
    text = slash_form(first)
    if "/" not in text:
        if len(rest) != 2:
            raise click.UsageError("write MEMBER_ID NAME, e.g. DEV/GOV/1001 'Agency'")
        text = f"{text}/{rest[0]}"
        rest = rest[1:]
    if len(rest) != 1:
        raise click.UsageError("write MEMBER_ID NAME, quoting a NAME with spaces")
    registry_instance = str(settings.client().get("/globalconf")["instance"])
    if text.count("/") == 1:
        text = f"{registry_instance}/{text}"
    member = ClientId.from_text(text)
    if member.is_subsystem:
        raise click.UsageError(f"{member} is a subsystem: `central subsystems add` registers it")
    if member.instance != registry_instance:
        raise click.UsageError(f"{member} is not of this registry's instance {registry_instance}")
    return member.member_class, member.member_code, rest[0]


@members.command("show")
@click.argument("member_id", type=MEMBER_ID)
@json_option
@pass_registry
def members_show(settings: RegistrySettings, member_id: str, as_json: bool) -> None:
    """Show MEMBER_ID (INSTANCE/CLASS/MEMBER)."""
    _emit(settings.client().get(f"/members/{client_path(member_id)}"), as_json)


@members.command("rename")
@click.argument("member_id", type=MEMBER_ID)
@click.argument("name")
@json_option
@pass_registry
def members_rename(settings: RegistrySettings, member_id: str, name: str, as_json: bool) -> None:
    """Change MEMBER_ID's name."""
    _emit(
        settings.client().put(f"/members/{client_path(member_id)}", {"name": name}), as_json, _MEMBER_COLUMNS
    )


@members.command("remove")
@click.argument("member_id", type=MEMBER_ID)
@json_option
@confirmed("Delete {member_id} with its subsystems and security servers?")
@pass_registry
def members_remove(settings: RegistrySettings, member_id: str, as_json: bool) -> None:
    """Delete MEMBER_ID with its subsystems and security servers."""
    settings.client().delete(f"/members/{client_path(member_id)}")
    done(as_json, f"removed {member_id}")


@cli.group()
def subsystems() -> None:
    """Subsystems of members."""


@subsystems.command("list")
@json_option
@pass_registry
def subsystems_list(settings: RegistrySettings, as_json: bool) -> None:
    """List the subsystems and the gateways hosting them."""
    rows = settings.client().get("/subsystems")["subsystems"]
    _emit(rows, as_json, (("client_id", "subsystem"), ("servers", "hosted by")))


@subsystems.command("add")
@click.argument("client_id", type=CLIENT_ID)
@json_option
@pass_registry
def subsystems_add(settings: RegistrySettings, client_id: str, as_json: bool) -> None:
    """Register CLIENT_ID (INSTANCE/CLASS/MEMBER/SUBSYSTEM) of a registered member."""
    _emit(settings.client().post("/subsystems", {"client_id": client_id}), as_json)


@subsystems.command("remove")
@click.argument("client_id", type=CLIENT_ID)
@json_option
@confirmed("Remove subsystem {client_id} from the federation?")
@pass_registry
def subsystems_remove(settings: RegistrySettings, client_id: str, as_json: bool) -> None:
    """Delete CLIENT_ID; no gateway hosts it afterwards."""
    settings.client().delete(f"/subsystems/{client_path(client_id)}")
    done(as_json, f"removed {client_id}")


# --- security servers -----------------------------------------------------------------------


@cli.group()
def servers() -> None:
    """Security servers (gateways): addresses, certificates, hosted subsystems."""


_SERVER_COLUMNS: Final = (("server_id", "server"), ("address", "address"), ("clients", "hosts"))


def _server_row(server: dict[str, Any]) -> dict[str, Any]:
    return {**server, "auth_certificates": [c["sha256"] for c in server["auth_certificates"]]}


@servers.command("list")
@json_option
@pass_registry
def servers_list(settings: RegistrySettings, as_json: bool) -> None:
    """List the security servers."""
    _emit(settings.client().get("/security-servers")["security_servers"], as_json, _SERVER_COLUMNS)


@servers.command("show")
@click.argument("server_id", type=SERVER_ID)
@json_option
@pass_registry
def servers_show(settings: RegistrySettings, server_id: str, as_json: bool) -> None:
    """Show SERVER_ID with its certificates' fingerprints."""
    server = settings.client().get(f"/security-servers/{server_path(server_id)}")
    _emit(server if as_json else _server_row(server), as_json)


@servers.command("add")
@click.argument("server_id", type=SERVER_ID)
@click.argument("address")
@click.option("--auth-cert", "certs", type=_FILE, multiple=True, required=True, help="Repeat for several.")
@json_option
@pass_registry
def servers_add(
    settings: RegistrySettings, server_id: str, address: str, certs: tuple[Path, ...], as_json: bool
) -> None:
    """Register SERVER_ID at ADDRESS directly (without a request from the gateway)."""
    body = {"server_id": server_id, "address": address, "auth_certificates": [_pem(path) for path in certs]}
    _emit(settings.client().post("/security-servers", body), as_json, _SERVER_COLUMNS)


@servers.command("address")
@click.argument("server_id", type=SERVER_ID)
@click.argument("address")
@json_option
@pass_registry
def servers_address(settings: RegistrySettings, server_id: str, address: str, as_json: bool) -> None:
    """Set where SERVER_ID's external interface listens (host:port)."""
    path = f"/security-servers/{server_path(server_id)}/address"
    _emit(settings.client().put(path, {"address": address}), as_json, _SERVER_COLUMNS)


@servers.command("add-cert")
@click.argument("server_id", type=SERVER_ID)
@click.argument("cert", type=_FILE)
@json_option
@pass_registry
def servers_add_cert(settings: RegistrySettings, server_id: str, cert: Path, as_json: bool) -> None:
    """Register one more TLS authentication certificate (PEM file) for SERVER_ID."""
    path = f"/security-servers/{server_path(server_id)}/auth-certificates"
    _emit(settings.client().post(path, {"certificate": _pem(cert)}), as_json, _SERVER_COLUMNS)


@servers.command("remove-cert")
@click.argument("server_id", type=SERVER_ID)
@click.argument("sha256")
@json_option
@confirmed("Remove certificate {sha256} of {server_id}? The gateway cannot authenticate with it any more.")
@pass_registry
def servers_remove_cert(settings: RegistrySettings, server_id: str, sha256: str, as_json: bool) -> None:
    """Remove the certificate with fingerprint SHA256 from SERVER_ID."""
    settings.client().delete(
        f"/security-servers/{server_path(server_id)}/auth-certificates/{segment(sha256)}"
    )
    done(as_json, f"removed certificate {sha256} from {server_id}")


@servers.command("add-client")
@click.argument("server_id", type=SERVER_ID)
@click.argument("client_id", type=CLIENT_ID)
@json_option
@pass_registry
def servers_add_client(settings: RegistrySettings, server_id: str, client_id: str, as_json: bool) -> None:
    """Let SERVER_ID host the subsystem CLIENT_ID."""
    path = f"/security-servers/{server_path(server_id)}/clients"
    _emit(settings.client().post(path, {"client_id": client_id}), as_json, _SERVER_COLUMNS)


@servers.command("remove-client")
@click.argument("server_id", type=SERVER_ID)
@click.argument("client_id", type=CLIENT_ID)
@json_option
@confirmed("Stop {server_id} hosting {client_id}?")
@pass_registry
def servers_remove_client(settings: RegistrySettings, server_id: str, client_id: str, as_json: bool) -> None:
    """Stop SERVER_ID hosting CLIENT_ID."""
    settings.client().delete(f"/security-servers/{server_path(server_id)}/clients/{client_path(client_id)}")
    done(as_json, f"{server_id} no longer hosts {client_id}")


@servers.command("remove")
@click.argument("server_id", type=SERVER_ID)
@json_option
@confirmed("Remove security server {server_id} from the federation?")
@pass_registry
def servers_remove(settings: RegistrySettings, server_id: str, as_json: bool) -> None:
    """Delete SERVER_ID."""
    settings.client().delete(f"/security-servers/{server_path(server_id)}")
    done(as_json, f"removed {server_id}")


# --- trust services -------------------------------------------------------------------------


def _responders(urls: Sequence[str], certs: Sequence[Path]) -> list[dict[str, Any]]:
    """--ocsp URL, with --ocsp-cert FILE for the first ones that delegate."""
    if len(certs) > len(urls):
        raise click.UsageError("more --ocsp-cert than --ocsp")
    return [
        {"url": url, "certificate": _pem(certs[i]) if i < len(certs) else None} for i, url in enumerate(urls)
    ]


@cli.group()
def cas() -> None:
    """Trusted certification authorities and their OCSP responders."""


_CA_COLUMNS: Final = (("name", "name"), ("certificate", "certificate"), ("ocsp_responders", "ocsp"))


@cas.command("list")
@json_option
@pass_registry
def cas_list(settings: RegistrySettings, as_json: bool) -> None:
    """List the trusted CAs."""
    rows = settings.client().get("/trusted-cas")["trusted_cas"]
    if not as_json:
        rows = [
            {
                **r,
                "certificate": r["certificate"]["subject"],
                "ocsp_responders": [o["url"] for o in r["ocsp_responders"]],
            }
            for r in rows
        ]
    _emit(rows, as_json, _CA_COLUMNS)


@cas.command("add")
@click.argument("name")
@click.argument("cert", type=_FILE)
@click.option("--ocsp", "urls", multiple=True, help="An OCSP responder URL; repeat for several.")
@click.option("--ocsp-cert", "certs", type=_FILE, multiple=True, help="A delegated responder's certificate.")
@json_option
@pass_registry
def cas_add(
    settings: RegistrySettings,
    name: str,
    cert: Path,
    urls: tuple[str, ...],
    certs: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Trust the CA certificate CERT under NAME, with its OCSP responders."""
    body = {"name": name, "certificate": _pem(cert), "ocsp_responders": _responders(urls, certs)}
    _emit(settings.client().post("/trusted-cas", body), as_json)


@cas.command("ocsp")
@click.argument("name")
@click.option("--ocsp", "urls", multiple=True, help="An OCSP responder URL; repeat; none removes all.")
@click.option("--ocsp-cert", "certs", type=_FILE, multiple=True, help="A delegated responder's certificate.")
@json_option
@pass_registry
def cas_ocsp(
    settings: RegistrySettings, name: str, urls: tuple[str, ...], certs: tuple[Path, ...], as_json: bool
) -> None:
    """Replace NAME's OCSP responders."""
    path = f"/trusted-cas/{segment(name)}/ocsp-responders"
    _emit(settings.client().put(path, {"ocsp_responders": _responders(urls, certs)}), as_json)


@cas.command("remove")
@click.argument("name")
@json_option
@confirmed("Remove CA {name}? Certificates it issued are no longer trusted anywhere.")
@pass_registry
def cas_remove(settings: RegistrySettings, name: str, as_json: bool) -> None:
    """Stop trusting the CA NAME."""
    settings.client().delete(f"/trusted-cas/{segment(name)}")
    done(as_json, f"removed trusted CA {name}")


@cli.group(renamed={"update": "set"})
def tsas() -> None:
    """RFC 3161 timestamping authorities."""


@tsas.command("list")
@json_option
@pass_registry
def tsas_list(settings: RegistrySettings, as_json: bool) -> None:
    """List the timestamping authorities."""
    rows = settings.client().get("/timestamping-authorities")["timestamping_authorities"]
    _emit(rows, as_json, (("name", "name"), ("url", "url")))


@tsas.command("add")
@click.argument("name")
@click.argument("url")
@click.argument("cert", type=_FILE)
@json_option
@pass_registry
def tsas_add(settings: RegistrySettings, name: str, url: str, cert: Path, as_json: bool) -> None:
    """Add the TSA NAME at URL with certificate CERT."""
    body = {"name": name, "url": url, "certificate": _pem(cert)}
    _emit(settings.client().post("/timestamping-authorities", body), as_json)


@tsas.command("set")
@click.argument("name")
@click.argument("url")
@click.argument("cert", type=_FILE)
@json_option
@pass_registry
def tsas_update(settings: RegistrySettings, name: str, url: str, cert: Path, as_json: bool) -> None:
    """Change TSA NAME's URL and certificate."""
    body = {"url": url, "certificate": _pem(cert)}
    _emit(settings.client().put(f"/timestamping-authorities/{segment(name)}", body), as_json)


@tsas.command("remove")
@click.argument("name")
@json_option
@confirmed("Remove TSA {name}? Gateways stop using it and stop trusting its timestamps.")
@pass_registry
def tsas_remove(settings: RegistrySettings, name: str, as_json: bool) -> None:
    """Remove the TSA NAME."""
    settings.client().delete(f"/timestamping-authorities/{segment(name)}")
    done(as_json, f"removed timestamping authority {name}")


# --- global groups --------------------------------------------------------------------------


@cli.group()
def groups() -> None:
    """Global groups: sets of members and subsystems usable in access rights everywhere."""


_GROUP_COLUMNS: Final = (("code", "code"), ("description", "description"), ("members", "members"))


_described_code_commands(
    groups,
    _DescribedCodes(
        "/global-groups",
        "global_groups",
        "global group",
        _GROUP_COLUMNS,
        list_help="List the global groups.",
        add_help="Create the global group CODE.",
        remove_help="Delete the global group CODE.",
    ),
)


@groups.command("add-member")
@click.argument("code")
@click.argument("client_id", type=CLIENT_ID)
@json_option
@pass_registry
def groups_add_member(settings: RegistrySettings, code: str, client_id: str, as_json: bool) -> None:
    """Add CLIENT_ID (member or subsystem) to the group CODE."""
    _emit(
        settings.client().post(f"/global-groups/{segment(code)}/members", {"client_id": client_id}), as_json
    )


@groups.command("remove-member")
@click.argument("code")
@click.argument("client_id", type=CLIENT_ID)
@json_option
@confirmed("Remove {client_id} from global group {code}?")
@pass_registry
def groups_remove_member(settings: RegistrySettings, code: str, client_id: str, as_json: bool) -> None:
    """Remove CLIENT_ID from the group CODE."""
    settings.client().delete(f"/global-groups/{segment(code)}/members/{client_path(client_id)}")
    done(as_json, f"removed {client_id} from {code}")


# --- settings, requests, signing keys, the configuration ------------------------------------


@cli.group("settings")
def settings_group() -> None:
    """Federation-wide settings published in the configuration."""


@settings_group.command("show")
@json_option
@pass_registry
def settings_show(settings: RegistrySettings, as_json: bool) -> None:
    """Show the federation-wide settings."""
    _emit(settings.client().get("/settings"), as_json)


@settings_group.command("set")
@click.option("--validity", "validity_seconds", type=int, help="Seconds each configuration stays valid.")
@click.option(
    "--refresh-interval", "refresh_interval_seconds", type=int, help="Seconds between gateway fetches."
)
@click.option(
    "--ocsp-freshness", "ocsp_freshness_seconds", type=int, help="Oldest OCSP response that counts."
)
@click.option(
    "--timestamping-interval", "timestamping_interval_seconds", type=int, help="Seconds between stamps."
)
@click.option(
    "--monitoring-client",
    type=CLIENT_ID,
    help="The client that may read every gateway's operational monitoring records.",
)
@click.option("--no-monitoring-client", is_flag=True, help="Name no monitoring client.")
@json_option
@pass_registry
def settings_set(
    settings: RegistrySettings,
    as_json: bool,
    monitoring_client: str | None,
    no_monitoring_client: bool,
    **values: int | None,
) -> None:
    """Change some federation-wide settings (a new configuration is published)."""
    changes: dict[str, int | str] = {name: value for name, value in values.items() if value is not None}
    if monitoring_client is not None and no_monitoring_client:
        raise click.UsageError("give --monitoring-client or --no-monitoring-client, not both")
    if monitoring_client is not None or no_monitoring_client:
        changes["monitoring_client"] = monitoring_client or ""
    if not changes:
        raise click.UsageError("give at least one setting")
    _emit(settings.client().put("/settings", changes), as_json)


@cli.group("requests")
def requests_group() -> None:
    """Registration requests from gateways: list, show, approve, reject."""


_REQUEST_COLUMNS: Final = (
    ("id", "id"),
    ("type", "type"),
    ("state", "state"),
    ("server", "server"),
    ("client", "client"),
    ("submitted_at", "submitted"),
)


@requests_group.command("list")
@click.option("--state", type=click.Choice(["pending", "approved", "rejected"]))
@json_option
@pass_registry
def requests_list(settings: RegistrySettings, state: str | None, as_json: bool) -> None:
    """List registration requests, newest first."""
    params = {"state": state} if state else None
    _emit(settings.client().get("/requests", params)["requests"], as_json, _REQUEST_COLUMNS)


@requests_group.command("show")
@click.argument("request_id")
@json_option
@pass_registry
def requests_show(settings: RegistrySettings, request_id: str, as_json: bool) -> None:
    """Show one request."""
    _emit(settings.client().get(f"/requests/{segment(request_id)}"), as_json)


@requests_group.command("approve")
@click.argument("request_id")
@click.option("--reason", help="Why, for the record.")
@json_option
@pass_registry
def requests_approve(settings: RegistrySettings, request_id: str, reason: str | None, as_json: bool) -> None:
    """Approve a pending request: its change is applied and published."""
    body = {"reason": reason} if reason else {}
    _emit(settings.client().post(f"/requests/{segment(request_id)}/approve", body), as_json, _REQUEST_COLUMNS)


@requests_group.command("reject")
@click.argument("request_id")
@click.option("--reason", required=True, help="Why; the gateway sees it.")
@json_option
@pass_registry
def requests_reject(settings: RegistrySettings, request_id: str, reason: str, as_json: bool) -> None:
    """Reject a pending request; the gateway sees the reason."""
    path = f"/requests/{segment(request_id)}/reject"
    _emit(settings.client().post(path, {"reason": reason}), as_json, _REQUEST_COLUMNS)


@cli.group("signing-keys")
def signing_keys() -> None:
    """Configuration-signing keys: add (standby, in the anchor), activate, retire."""


def _key_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {**r, "sha256": r["certificate"]["sha256"], "expires": r["certificate"]["not_after"]} for r in rows
    ]


_KEY_COLUMNS: Final = (("id", "id"), ("status", "status"), ("sha256", "certificate"), ("expires", "expires"))


@signing_keys.command("list")
@json_option
@pass_registry
def signing_keys_list(settings: RegistrySettings, as_json: bool) -> None:
    """List the configuration-signing keys."""
    rows = settings.client().get("/signing-keys")["signing_keys"]
    _emit(rows if as_json else _key_rows(rows), as_json, _KEY_COLUMNS)


@signing_keys.command("add")
@click.option(
    "--key", "key_path", required=True, type=_FILE, help="The private key file (on the registry's host)."
)
@click.option("--cert", "cert_path", required=True, type=_FILE, help="Its certificate.")
@click.option(
    "--passphrase-env", metavar="VAR", help="Variable holding the key's passphrase (in the registry)."
)
@json_option
@pass_registry
def signing_keys_add(
    settings: RegistrySettings, key_path: Path, cert_path: Path, passphrase_env: str | None, as_json: bool
) -> None:
    """Add a signing key; it joins the anchor as standby."""
    body = {
        "key_path": str(key_path.resolve()),
        "cert_path": str(cert_path.resolve()),
        "passphrase_env": passphrase_env,
    }
    _emit(_key_rows([settings.client().post("/signing-keys", body)]), as_json, _KEY_COLUMNS)


@signing_keys.command("activate")
@click.argument("key_id", type=int)
@json_option
@pass_registry
def signing_keys_activate(settings: RegistrySettings, key_id: int, as_json: bool) -> None:
    """Sign with KEY_ID from now on (the previous key stays in the anchor)."""
    _emit(_key_rows([settings.client().post(f"/signing-keys/{key_id}/activate")]), as_json, _KEY_COLUMNS)


@signing_keys.command("retire")
@click.argument("key_id", type=int)
@json_option
@pass_registry
def signing_keys_retire(settings: RegistrySettings, key_id: int, as_json: bool) -> None:
    """Take the standby key KEY_ID out of the anchor for good."""
    _emit(_key_rows([settings.client().post(f"/signing-keys/{key_id}/retire")]), as_json, _KEY_COLUMNS)


@cli.group(renamed={"status": "show"})
def globalconf() -> None:
    """The published configuration."""


@globalconf.command("show")
@json_option
@pass_registry
def globalconf_status(settings: RegistrySettings, as_json: bool) -> None:
    """Show the published version, its signer, and the anchor's certificates."""
    _emit(settings.client().get("/globalconf"), as_json)


@globalconf.command("publish")
@json_option
@pass_registry
def globalconf_publish(settings: RegistrySettings, as_json: bool) -> None:
    """Publish a new version now."""
    settings.client().post("/globalconf/publish")
    _emit(settings.client().get("/globalconf"), as_json)


# --- API keys and the audit log -------------------------------------------------------------


@cli.group("api-keys")
def api_keys() -> None:
    """Management API keys."""


_API_KEY_COLUMNS: Final = (("id", "id"), ("name", "name"), ("role", "role"), ("revoked", "revoked"))


@api_keys.command("list")
@json_option
@pass_registry
def api_keys_list(settings: RegistrySettings, as_json: bool) -> None:
    """List the API keys (never the keys themselves)."""
    _emit(settings.client().get("/api-keys")["api_keys"], as_json, _API_KEY_COLUMNS)


@api_keys.command("create")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice([role.value for role in Role]))
@json_option
@pass_registry
def api_keys_create(settings: RegistrySettings, name: str, role: str, as_json: bool) -> None:
    """Create a key; it is printed once."""
    created = settings.client().post("/api-keys", {"name": name, "role": role})
    _emit(created, as_json, message=f"key {created['id']} ({role}): {created['key']}")


@api_keys.command("revoke")
@click.argument("key_id", type=int)
@json_option
@confirmed("Revoke API key {key_id}? Whatever uses it stops working at once.")
@pass_registry
def api_keys_revoke(settings: RegistrySettings, key_id: int, as_json: bool) -> None:
    """Revoke API key KEY_ID."""
    settings.client().delete(f"/api-keys/{key_id}")
    done(as_json, f"revoked API key {key_id}")


AUDIT_LISTING: Final = "central audit"


@cli.command("audit")
@audit_options(AUDIT_LISTING, "member.add")
@json_option
@pass_registry
@click.pass_context
def audit(
    ctx: click.Context,
    settings: RegistrySettings,
    actor: str | None,
    action: str | None,
    since: str | None,
    verify: bool,
    limit: int,
    page: int | None,
    as_json: bool,
) -> None:
    """Read the audit log, newest first; or, with --verify, check its hash chain."""
    if verify:
        report = settings.client().get("/audit-log/verify", {})
        if as_json:
            click.echo(json.dumps(report, indent=2))
        else:
            click.echo(audit_chain_text(report))
        ctx.exit(0 if report["ok"] else 1)
    asked = {"actor": actor, "action": action, "since": since, "limit": str(limit), "before_id": page}
    found = settings.client().get("/audit-log", {k: str(v) for k, v in asked.items() if v is not None})
    next_position = found.get("next_before_id")
    if as_json:
        echo_json(with_next_page(found, AUDIT_LISTING, next_position))
        return
    columns = (
        ("id", "id"),
        ("at", "at"),
        ("actor", "actor"),
        ("action", "action"),
        ("target", "target"),
        ("result", "result"),
    )
    _emit(found["entries"], False, columns)
    echo_next_page(AUDIT_LISTING, next_position)
