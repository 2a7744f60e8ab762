"""`xgate admin`: the management API from the command line, one subcommand per operation.

Talks to a running node's admin listener through :class:`gateway.admin.client.AdminClient`.
The API key is never a command-line argument (arguments end up in shell history and in `ps`):
it is read from an environment variable, XGATE_API_KEY unless --api-key-env names another,
or asked for without echo. Output is a table for people, or the API's JSON with --json.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, TypeVar

import click

from gateway.admin.client import DEFAULT_URL, AdminClient
from gateway.admin.roles import Role
from gateway.apicli import (
    GATEWAY_API_KEY_ENV,
    GATEWAY_API_URL_ENV,
    ApiGroup,
    ApiSettings,
    api_options,
    done,
    emit,
    json_option,
    limit_option,
)
from gateway.apicli import format_table as format_table

URL_ENV: Final = GATEWAY_API_URL_ENV
DEFAULT_KEY_ENV: Final = GATEWAY_API_KEY_ENV

_F = TypeVar("_F", bound=Callable[..., Any])


class AdminSettings(ApiSettings[AdminClient]):
    """Where a gateway's management API is and where its key comes from."""

    def _connect(self, url: str, key: str) -> AdminClient:
        return AdminClient(url, key)


pass_settings = click.make_pass_decorator(AdminSettings)


AdminGroup = ApiGroup
"""`xgate admin`'s group: the API's errors as one line (gateway.apicli.ApiGroup)."""


@click.group(cls=AdminGroup, context_settings={"help_option_names": ["-h", "--help"]})
@api_options(
    url_env=URL_ENV,
    default_url=DEFAULT_URL,
    default_key_env=DEFAULT_KEY_ENV,
    url_help=f"The node's admin listener (or set {URL_ENV}).",
)
@click.pass_context
def cli(ctx: click.Context, url: str, key_env: str) -> None:
    """Manage a gateway: subsystems, services, access rights, groups, keys, API keys, audit log.

    Clients are written INSTANCE/CLASS/MEMBER[/SUBSYSTEM]. Every change is audited under the
    API key's name; what a key may do depends on its role.
    """
    ctx.obj = AdminSettings(url, key_env)


# --- output --------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
_SUBSYSTEM_COLUMNS: Final = (
    ("client_id", "client"),
    ("auth_mode", "auth mode"),
    ("certificates", "pinned"),
    ("warning", "warning"),
)
_SERVICE_COLUMNS: Final = (
    ("service_code", "code"),
    ("service_version", "version"),
    ("kind", "kind"),
    ("enabled", "enabled"),
    ("backend_url", "backend"),
    ("disabled_notice", "notice"),
)
_RIGHT_COLUMNS: Final = (
    ("subject_type", "type"),
    ("subject", "subject"),
    ("service_code", "service"),
    ("method", "method"),
    ("path", "path"),
)
_KEY_COLUMNS: Final = (
    ("id", "id"),
    ("usage", "usage"),
    ("member_id", "member"),
    ("status", "status"),
    ("certificate_subject", "certificate"),
    ("certificate_not_after", "expires"),
    ("key_path", "file"),
)
_API_KEY_COLUMNS: Final = (
    ("id", "id"),
    ("name", "name"),
    ("role", "role"),
    ("revoked", "revoked"),
    ("created_at", "created"),
)
_AUDIT_COLUMNS: Final = (
    ("id", "id"),
    ("at", "at"),
    ("actor", "actor"),
    ("action", "action"),
    ("target", "target"),
    ("result", "result"),
)


def _version_option(function: _F) -> _F:
    decorated: _F = click.option("--version", "version", help="The service version, if it has one.")(function)
    return decorated


# --- subsystems ----------------------------------------------------------------------------


@cli.group()
def subsystems() -> None:
    """Hosted subsystems and how their client systems connect (registration officer)."""


@subsystems.command("list")
@json_option
@pass_settings
def subsystems_list(settings: AdminSettings, as_json: bool) -> None:
    """List the subsystems this gateway hosts."""
    result = settings.client().list_subsystems()
    rows = result if as_json else [{**row, "certificates": len(row["certificates"])} for row in result]
    emit(rows, as_json, _SUBSYSTEM_COLUMNS)
    _warn_unauthenticated(result, as_json)


def _warn_unauthenticated(subsystems: list[dict[str, Any]], as_json: bool) -> None:
    """Name the subsystems in http or https mode on stderr, so a script's output stays clean."""
    if as_json:
        return
    for row in subsystems:
        if row.get("unauthenticated"):
            click.echo(f"warning: {row['client_id']} is {row['warning']}", err=True)


@subsystems.command("add")
@click.argument("client_id")
@click.option(
    "--auth-mode",
    type=click.Choice(["http", "https", "https_cert"]),
    default="https_cert",
    show_default=True,
    help="How its client systems must connect: HTTPS with a pinned certificate (pin it with "
    "pin-cert), or, unauthenticated, plain HTTP or HTTPS without one.",
)
@json_option
@pass_settings
def subsystems_add(settings: AdminSettings, client_id: str, auth_mode: str, as_json: bool) -> None:
    """Register CLIENT_ID (INSTANCE/CLASS/MEMBER/SUBSYSTEM) on this gateway."""
    added = settings.client().add_subsystem(client_id, auth_mode)
    emit(added, as_json, _SUBSYSTEM_COLUMNS)
    _warn_unauthenticated([added], as_json)


@subsystems.command("remove")
@click.argument("client_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_settings
def subsystems_remove(settings: AdminSettings, client_id: str, yes: bool, as_json: bool) -> None:
    """Unregister CLIENT_ID with all its services, access rights and local groups."""
    if not yes:
        click.confirm(f"Remove {client_id} with its services, rights and groups?", abort=True)
    settings.client().remove_subsystem(client_id)
    done(as_json, f"removed {client_id}")


@subsystems.command("auth")
@click.argument("client_id")
@click.argument("mode", type=click.Choice(["http", "https", "https_cert"]))
@json_option
@pass_settings
def subsystems_auth(settings: AdminSettings, client_id: str, mode: str, as_json: bool) -> None:
    """Set how CLIENT_ID's systems connect: https_cert (pinned certificates), or, unauthenticated,
    http or https."""
    changed = settings.client().set_auth_mode(client_id, mode)
    emit(changed, as_json, _SUBSYSTEM_COLUMNS)
    _warn_unauthenticated([changed], as_json)


@subsystems.command("pin-cert")
@click.argument("client_id")
@click.argument("pem_file", type=_FILE)
@json_option
@pass_settings
def subsystems_pin_cert(settings: AdminSettings, client_id: str, pem_file: Path, as_json: bool) -> None:
    """Pin the client TLS certificate in PEM_FILE for CLIENT_ID (used in https_cert mode)."""
    emit(settings.client().pin_certificate(client_id, _read_text(pem_file)), as_json)


@subsystems.command("unpin-cert")
@click.argument("client_id")
@click.argument("sha256")
@json_option
@pass_settings
def subsystems_unpin_cert(settings: AdminSettings, client_id: str, sha256: str, as_json: bool) -> None:
    """Unpin the certificate with fingerprint SHA256 (hex) from CLIENT_ID."""
    settings.client().unpin_certificate(client_id, sha256)
    done(as_json, f"unpinned {sha256} from {client_id}")


# --- services ------------------------------------------------------------------------------


@cli.group()
def services() -> None:
    """Services of hosted subsystems: register, configure, enable, disable (service administrator)."""


@services.command("list")
@click.argument("client_id")
@json_option
@pass_settings
def services_list(settings: AdminSettings, client_id: str, as_json: bool) -> None:
    """List CLIENT_ID's services."""
    emit(settings.client().list_services(client_id), as_json, _SERVICE_COLUMNS)


def _document_source(file: Path | None, url: str | None) -> tuple[str | None, str | None]:
    if (file is None) == (url is None):
        raise click.UsageError("give either --file or --url")
    return (_read_text(file) if file is not None else None), url


@services.command("add-wsdl")
@click.argument("client_id")
@click.option("--file", "file", type=_FILE, help="The WSDL document.")
@click.option("--url", "url", help="Let the gateway fetch the WSDL from this http(s) URL.")
@json_option
@pass_settings
def services_add_wsdl(
    settings: AdminSettings, client_id: str, file: Path | None, url: str | None, as_json: bool
) -> None:
    """Register one SOAP service per operation of a WSDL, called at the WSDL's address."""
    wsdl, url = _document_source(file, url)
    emit(settings.client().add_wsdl(client_id, wsdl=wsdl, url=url), as_json, _SERVICE_COLUMNS)


@services.command("add-openapi")
@click.argument("client_id")
@click.argument("service_code")
@click.option("--file", "file", type=_FILE, help="The OpenAPI 3 document (YAML or JSON).")
@click.option("--url", "url", help="Let the gateway fetch the document from this http(s) URL.")
@click.option("--service-version", help="A version for the service, if it has one.")
@click.option("--backend-url", help="Where the service runs, if not the document's first server.")
@json_option
@pass_settings
def services_add_openapi(
    settings: AdminSettings,
    client_id: str,
    service_code: str,
    file: Path | None,
    url: str | None,
    service_version: str | None,
    backend_url: str | None,
    as_json: bool,
) -> None:
    """Register SERVICE_CODE, a REST service, with an endpoint per operation of an OpenAPI document."""
    document, url = _document_source(file, url)
    result = settings.client().add_openapi(
        client_id,
        service_code,
        document=document,
        url=url,
        service_version=service_version,
        backend_url=backend_url,
    )
    emit(result, as_json, (*_SERVICE_COLUMNS, ("endpoints", "endpoints")))


@services.command("set-backend")
@click.argument("client_id")
@click.argument("service_code")
@_version_option
@click.option("--backend-url", help="The service's new address.")
@click.option(
    "--timeout", type=click.FloatRange(min=0, min_open=True), help="Seconds to wait for the service."
)
@click.option("--tls-verify/--no-tls-verify", default=None, help="Check the service's TLS certificate.")
@click.option("--ca-file", type=_FILE, help="PEM CA certificates to trust for the service.")
@click.option("--clear-ca", is_flag=True, help="Trust the system's CAs again.")
@click.option(
    "--client-cert",
    help="PEM file on the gateway's host: its client certificate for a backend that requires mutual TLS.",
)
@click.option("--client-key", help="PEM file on the gateway's host: that certificate's key, if separate.")
@click.option("--clear-client-cert", is_flag=True, help="Call the backend without a client certificate.")
@json_option
@pass_settings
def services_set_backend(
    settings: AdminSettings,
    client_id: str,
    service_code: str,
    version: str | None,
    backend_url: str | None,
    timeout: float | None,
    tls_verify: bool | None,
    ca_file: Path | None,
    clear_ca: bool,
    client_cert: str | None,
    client_key: str | None,
    clear_client_cert: bool,
    as_json: bool,
) -> None:
    """Change where and how the gateway calls SERVICE_CODE; what is not given stays."""
    if ca_file is not None and clear_ca:
        raise click.UsageError("give --ca-file or --clear-ca, not both")
    if clear_client_cert and (client_cert or client_key):
        raise click.UsageError("give --client-cert (and --client-key) or --clear-client-cert, not both")
    changes: dict[str, Any] = {}
    if backend_url is not None:
        changes["backend_url"] = backend_url
    if timeout is not None:
        changes["timeout_seconds"] = timeout
    if tls_verify is not None:
        changes["tls_verify"] = tls_verify
    if ca_file is not None:
        changes["tls_ca_pem"] = _read_text(ca_file)
    if clear_ca:
        changes["tls_ca_pem"] = None
    if client_cert or client_key:
        changes["tls_client_cert_path"] = client_cert
        changes["tls_client_key_path"] = client_key
    if clear_client_cert:
        changes["tls_client_cert_path"] = None
    if not changes:
        raise click.UsageError(
            "nothing to change: give --backend-url, --timeout, --tls-verify,"
            " a CA or a client-certificate option"
        )
    result = settings.client().set_backend(client_id, service_code, version, **changes)
    emit(result, as_json, (*_SERVICE_COLUMNS, ("timeout_seconds", "timeout"), ("tls_verify", "tls verify")))


@services.command("enable")
@click.argument("client_id")
@click.argument("service_code")
@_version_option
@json_option
@pass_settings
def services_enable(
    settings: AdminSettings, client_id: str, service_code: str, version: str | None, as_json: bool
) -> None:
    """Enable SERVICE_CODE of CLIENT_ID."""
    emit(settings.client().enable_service(client_id, service_code, version), as_json, _SERVICE_COLUMNS)


@services.command("disable")
@click.argument("client_id")
@click.argument("service_code")
@_version_option
@click.option("--notice", help="What callers are told (the ServiceDisabled fault's text).")
@json_option
@pass_settings
def services_disable(
    settings: AdminSettings,
    client_id: str,
    service_code: str,
    version: str | None,
    notice: str | None,
    as_json: bool,
) -> None:
    """Disable SERVICE_CODE of CLIENT_ID; callers get ServiceDisabled with the notice."""
    result = settings.client().disable_service(client_id, service_code, version, notice)
    emit(result, as_json, _SERVICE_COLUMNS)


@services.command("remove")
@click.argument("client_id")
@click.argument("service_code")
@_version_option
@json_option
@pass_settings
def services_remove(
    settings: AdminSettings, client_id: str, service_code: str, version: str | None, as_json: bool
) -> None:
    """Unregister SERVICE_CODE (its access rights go with the code's last version)."""
    settings.client().remove_service(client_id, service_code, version)
    done(as_json, f"removed {service_code} of {client_id}")


# --- access rights -------------------------------------------------------------------------


@cli.group()
def access() -> None:
    """Access rights to services (service administrator). Default deny: no right, no access."""


def _right_options(function: _F) -> _F:
    options = [
        click.argument("client_id"),
        click.argument("service_code"),
        click.argument("subject"),
        click.option(
            "--type",
            "subject_type",
            type=click.Choice(["member", "subsystem", "globalgroup", "localgroup"]),
            required=True,
            help="What SUBJECT is: a client (INSTANCE/CLASS/MEMBER[/SUB]), INSTANCE/GROUP, or a local GROUP.",
        ),
        click.option("--method", help="For one REST endpoint only: its HTTP method, or *."),
        click.option("--path", help="For one REST endpoint only: its path pattern (* wildcards)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@access.command("list")
@click.argument("client_id")
@click.argument("service_code")
@json_option
@pass_settings
def access_list(settings: AdminSettings, client_id: str, service_code: str, as_json: bool) -> None:
    """List the rights to CLIENT_ID's SERVICE_CODE."""
    emit(settings.client().list_access_rights(client_id, service_code), as_json, _RIGHT_COLUMNS)


@access.command("grant")
@_right_options
@json_option
@pass_settings
def access_grant(
    settings: AdminSettings,
    client_id: str,
    service_code: str,
    subject: str,
    subject_type: str,
    method: str | None,
    path: str | None,
    as_json: bool,
) -> None:
    """Let SUBJECT call CLIENT_ID's SERVICE_CODE (or one endpoint of it)."""
    result = settings.client().grant(client_id, service_code, subject, subject_type, method, path)
    emit(result, as_json, _RIGHT_COLUMNS)


@access.command("revoke")
@_right_options
@json_option
@pass_settings
def access_revoke(
    settings: AdminSettings,
    client_id: str,
    service_code: str,
    subject: str,
    subject_type: str,
    method: str | None,
    path: str | None,
    as_json: bool,
) -> None:
    """Take back the right SUBJECT holds to CLIENT_ID's SERVICE_CODE (same arguments as grant)."""
    settings.client().revoke(client_id, service_code, subject, subject_type, method, path)
    done(as_json, f"revoked {subject}'s right to {service_code}")


# --- local groups --------------------------------------------------------------------------


@cli.group()
def groups() -> None:
    """Local groups: a subsystem's own lists of clients, for its access rights."""


@groups.command("list")
@click.argument("client_id")
@json_option
@pass_settings
def groups_list(settings: AdminSettings, client_id: str, as_json: bool) -> None:
    """List CLIENT_ID's local groups and their members."""
    columns = (("code", "code"), ("description", "description"), ("members", "members"))
    emit(settings.client().list_local_groups(client_id), as_json, columns)


@groups.command("add")
@click.argument("client_id")
@click.argument("code")
@click.option("--description", default="", help="What the group is for.")
@json_option
@pass_settings
def groups_add(settings: AdminSettings, client_id: str, code: str, description: str, as_json: bool) -> None:
    """Create local group CODE for CLIENT_ID."""
    emit(settings.client().add_local_group(client_id, code, description), as_json)


@groups.command("remove")
@click.argument("client_id")
@click.argument("code")
@json_option
@pass_settings
def groups_remove(settings: AdminSettings, client_id: str, code: str, as_json: bool) -> None:
    """Delete local group CODE, its members and the rights granted to it."""
    settings.client().remove_local_group(client_id, code)
    done(as_json, f"removed group {code} of {client_id}")


@groups.command("add-member")
@click.argument("client_id")
@click.argument("code")
@click.argument("member_id")
@json_option
@pass_settings
def groups_add_member(
    settings: AdminSettings, client_id: str, code: str, member_id: str, as_json: bool
) -> None:
    """Add client MEMBER_ID to CLIENT_ID's local group CODE."""
    emit(settings.client().add_group_member(client_id, code, member_id), as_json)


@groups.command("remove-member")
@click.argument("client_id")
@click.argument("code")
@click.argument("member_id")
@json_option
@pass_settings
def groups_remove_member(
    settings: AdminSettings, client_id: str, code: str, member_id: str, as_json: bool
) -> None:
    """Remove client MEMBER_ID from CLIENT_ID's local group CODE."""
    settings.client().remove_group_member(client_id, code, member_id)
    done(as_json, f"removed {member_id} from {code}")


# --- keys ----------------------------------------------------------------------------------


@cli.group()
def keys() -> None:
    """The gateway's keys, CSRs and certificates (security officer)."""


def _key_row(key: Mapping[str, Any]) -> dict[str, Any]:
    certificate = key.get("certificate") or {}
    return {
        **key,
        "certificate_subject": certificate.get("subject"),
        "certificate_not_after": certificate.get("not_after"),
    }


@keys.command("list")
@json_option
@pass_settings
def keys_list(settings: AdminSettings, as_json: bool) -> None:
    """List the keys, their status and certificates."""
    result = settings.client().list_keys()
    emit(result if as_json else [_key_row(key) for key in result], as_json, _KEY_COLUMNS)


@keys.command("generate")
@click.option(
    "--usage",
    type=click.Choice(["auth", "sign"]),
    required=True,
    help="auth: the gateway's TLS key; sign: a member's message-signing key.",
)
@click.option("--member", "member_id", help="The member a signing key signs for (INSTANCE/CLASS/MEMBER).")
@click.option("--algorithm", type=click.Choice(["ec", "rsa2048", "rsa3072"]), default="ec", show_default=True)
@json_option
@pass_settings
def keys_generate(
    settings: AdminSettings, usage: str, member_id: str | None, algorithm: str, as_json: bool
) -> None:
    """Generate a key on the node (written under its data directory, mode 0600)."""
    result = settings.client().generate_key(usage, member_id, algorithm)
    emit(_key_row(result) if not as_json else result, as_json, _KEY_COLUMNS)


@keys.command("csr")
@click.argument("key_id", type=int)
@click.option("--cn", "common_name", help="Subject CN (default: server code, or member code).")
@click.option("--o", "organization", help="Subject O (default: member code).")
@click.option("--ou", "organizational_unit", help="Subject OU.")
@click.option("--c", "country", help="Subject C, two letters.")
@click.option("--serial", "serial_number", help="Subject serialNumber (default: INSTANCE/CLASS/MEMBER).")
@click.option(
    "--dns", "dns_names", multiple=True, help="A DNS name for an auth key's certificate; repeatable."
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the CSR here, not to stdout."
)
@json_option
@pass_settings
def keys_csr(
    settings: AdminSettings,
    key_id: int,
    common_name: str | None,
    organization: str | None,
    organizational_unit: str | None,
    country: str | None,
    serial_number: str | None,
    dns_names: tuple[str, ...],
    out: Path | None,
    as_json: bool,
) -> None:
    """Make a certificate signing request (PEM) for key KEY_ID, for the federation's CA."""
    subject = {
        name: value
        for name, value in (
            ("common_name", common_name),
            ("organization", organization),
            ("organizational_unit", organizational_unit),
            ("country", country),
            ("serial_number", serial_number),
        )
        if value is not None
    }
    pem = settings.client().make_csr(key_id, subject, list(dns_names))
    if out is not None:
        out.write_text(pem, encoding="utf-8")
        emit({"key_id": key_id, "csr_file": str(out)}, as_json, message=f"wrote {out}")
    else:
        emit({"key_id": key_id, "csr_pem": pem}, as_json, message=pem.rstrip("\n"))


@keys.command("import-cert")
@click.argument("pem_file", type=_FILE)
@json_option
@pass_settings
def keys_import_cert(settings: AdminSettings, pem_file: Path, as_json: bool) -> None:
    """Import the certificate in PEM_FILE; it is matched to its key by public key."""
    result = settings.client().import_certificate(_read_text(pem_file))
    emit(_key_row(result) if not as_json else result, as_json, _KEY_COLUMNS)


# --- API keys and the audit log --------------------------------------------------------------


@cli.group()
def apikeys() -> None:
    """Management API keys and their roles (system administrator)."""


@apikeys.command("list")
@json_option
@pass_settings
def apikeys_list(settings: AdminSettings, as_json: bool) -> None:
    """List the API keys (names and roles; never the keys)."""
    emit(settings.client().list_api_keys(), as_json, _API_KEY_COLUMNS)


@apikeys.command("create")
@click.argument("name")
@click.argument("role", type=click.Choice([role.value for role in Role]))
@json_option
@pass_settings
def apikeys_create(settings: AdminSettings, name: str, role: str, as_json: bool) -> None:
    """Create an API key NAME with ROLE; the key is printed this once."""
    result = settings.client().create_api_key(name, role)
    if as_json:
        emit(result, True)
        return
    emit(result, False, (*_API_KEY_COLUMNS, ("key", "key")))
    click.echo("Store the key now: it is not shown again.", err=True)


@apikeys.command("revoke")
@click.argument("key_id", type=int)
@json_option
@pass_settings
def apikeys_revoke(settings: AdminSettings, key_id: int, as_json: bool) -> None:
    """Revoke API key KEY_ID (see `apikeys list`)."""
    settings.client().revoke_api_key(key_id)
    done(as_json, f"revoked API key {key_id}")


def _rfc3339(text: str | None) -> str | None:
    """An ISO 8601 time as the API takes it: RFC 3339 with its zone, UTC when none is written."""
    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time, e.g. 2026-11-27T10:00:00Z") from None
    return (value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)).isoformat()


def audit_chain_text(report: dict[str, Any]) -> str:
    """One line on the audit chain, for people."""
    if report["ok"]:
        return (
            f"audit log valid: {report['checked']} chained entries"
            f" ({report['unchained']} from before the chain), head {report['head_hash']}"
        )
    return f"audit log INVALID at entry {report['first_bad_id']}: {report['problem']}"


@cli.command("audit")
@limit_option("Entries")
@click.option("--before-id", type=int, help="Older than this entry: the id `next page` printed.")
@click.option("--actor", help="Only this actor (NAME#ID, or anonymous).")
@click.option("--action", help="Only this action, e.g. subsystem.add.")
@click.option(
    "--since",
    callback=lambda ctx, param, value: _rfc3339(value),
    help="Only entries at or after this ISO 8601 time (UTC unless it names a zone).",
)
@click.option("--verify", is_flag=True, help="Check the audit log's hash chain instead; exit 1 if broken.")
@json_option
@pass_settings
@click.pass_context
def audit(
    ctx: click.Context,
    settings: AdminSettings,
    verify: bool,
    limit: int,
    before_id: int | None,
    actor: str | None,
    action: str | None,
    since: str | None,
    as_json: bool,
) -> None:
    """Read the audit log, newest first (security officer, system administrator)."""
    if verify:
        report = settings.client().audit_verify()
        if as_json:
            emit(report, True)
        else:
            click.echo(audit_chain_text(report))
        ctx.exit(0 if report["ok"] else 1)
    page = settings.client().audit_log(
        limit=limit, before_id=before_id, actor=actor, action=action, since=since
    )
    if as_json:
        emit(page, True)
        return
    emit(page["entries"], False, _AUDIT_COLUMNS)
    if page.get("next_before_id") is not None:
        click.echo(f"next page: --before-id {page['next_before_id']}", err=True)
