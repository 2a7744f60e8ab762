"""`xgate admin`: the management API from the command line, one subcommand per operation.

Talks to a running node's admin listener through :class:`gateway.admin.client.AdminClient`.
The API key is never a command-line argument (arguments end up in shell history and in `ps`):
it is read from an environment variable, XGATE_API_KEY unless --api-key-env names another,
or asked for without echo. Output is a table for people, or the API's JSON with --json.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, TypeVar

import click
import yaml

from gateway.admin.access import SubjectType, read_subject
from gateway.admin.client import DEFAULT_URL, AdminClient
from gateway.admin.context import WARNINGS_DETECTED
from gateway.admin.roles import Role
from gateway.apicli import (
    CLIENT_ID,
    GATEWAY_API_KEY_ENV,
    GATEWAY_API_URL_ENV,
    MEMBER_ID,
    ApiCallError,
    ApiGroup,
    ApiSettings,
    api_options,
    audit_chain_text,
    audit_options,
    confirmed,
    done,
    echo_next_page,
    emit,
    json_option,
    limit_option,
    page_options,
    with_next_page,
)
from gateway.apicli import format_table as format_table
from gateway.ids import slash_form

URL_ENV: Final = GATEWAY_API_URL_ENV
AUDIT_LISTING: Final = "admin audit"
CACHE_ENTRIES_LISTING: Final = "admin cache entries"
DEFAULT_KEY_ENV: Final = GATEWAY_API_KEY_ENV

_F = TypeVar("_F", bound=Callable[..., Any])


class AdminSettings(ApiSettings[AdminClient]):
    """Where a gateway's management API is and where its key comes from."""

    def _connect(self, url: str, key: str) -> AdminClient:
        return AdminClient(url, key)


pass_settings = click.make_pass_decorator(AdminSettings)


AdminGroup = ApiGroup
"""`xgate admin`'s group: the API's errors as one line (gateway.apicli.ApiGroup)."""


@click.group(
    cls=AdminGroup,
    renamed={"apikeys": "api-keys"},
    context_settings={"help_option_names": ["-h", "--help"]},
)
@api_options(
    url_env=URL_ENV,
    default_url=DEFAULT_URL,
    default_key_env=DEFAULT_KEY_ENV,
    url_help=f"The node's admin listener (or set {URL_ENV}).",
)
@click.pass_context
def cli(ctx: click.Context, url: str, key_env: str) -> None:
    """Manage a gateway: subsystems, services, access rights, groups, keys, API keys, audit log.

    Clients are written INSTANCE/CLASS/MEMBER[/SUBSYSTEM] (X-Road's DEV:GOV:1001 is read too);
    identifiers are case-sensitive. Listings page with --limit and the --page TOKEN that
    `next page:` prints. Every change is audited under the API key's name; what a key may do
    depends on its role.
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
@click.argument("client_id", type=CLIENT_ID)
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
    """Register CLIENT_ID (INSTANCE/CLASS/MEMBER[/SUBSYSTEM]; a member is a client too) here."""
    added = settings.client().add_subsystem(client_id, auth_mode)
    emit(added, as_json, _SUBSYSTEM_COLUMNS)
    _warn_unauthenticated([added], as_json)


@subsystems.command("remove")
@click.argument("client_id", type=CLIENT_ID)
@json_option
@confirmed("Remove {client_id} with its services, access rights and local groups?")
@pass_settings
def subsystems_remove(settings: AdminSettings, client_id: str, as_json: bool) -> None:
    """Unregister CLIENT_ID with all its services, access rights and local groups."""
    settings.client().remove_subsystem(client_id)
    done(as_json, f"removed {client_id}")


@subsystems.command("auth")
@click.argument("client_id", type=CLIENT_ID)
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
@click.argument("client_id", type=CLIENT_ID)
@click.argument("pem_file", type=_FILE)
@json_option
@pass_settings
def subsystems_pin_cert(settings: AdminSettings, client_id: str, pem_file: Path, as_json: bool) -> None:
    """Pin the client TLS certificate in PEM_FILE for CLIENT_ID (used in https_cert mode)."""
    emit(settings.client().pin_certificate(client_id, _read_text(pem_file)), as_json)


@subsystems.command("unpin-cert")
@click.argument("client_id", type=CLIENT_ID)
@click.argument("sha256")
@json_option
@confirmed("Unpin certificate {sha256} from {client_id}? Systems presenting it can no longer connect.")
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
@click.argument("client_id", type=CLIENT_ID)
@json_option
@pass_settings
def services_list(settings: AdminSettings, client_id: str, as_json: bool) -> None:
    """List CLIENT_ID's services."""
    emit(settings.client().list_services(client_id), as_json, _SERVICE_COLUMNS)


def _document_source(file: Path | None, url: str | None) -> tuple[str | None, str | None]:
    if (file is None) == (url is None):
        raise click.UsageError("give either --file or --url")
    return (_read_text(file) if file is not None else None), url


_ignore_warnings_option: Final = click.option(
    "--ignore-warnings",
    is_flag=True,
    help="Proceed despite the description's warnings (else they are shown and you are asked).",
)


def _acknowledged(call: Callable[..., Any], ignore_warnings: bool, yes: bool | None = None) -> Any:
    """`call` through X-Road's warnings step: warnings and removals the gateway reports are shown
    and, unless --ignore-warnings (or --yes for removals) says so already, asked about first; the
    call is then repeated with the acknowledgement. `yes` None: the call removes nothing."""
    flags = {"ignore_warnings": ignore_warnings}
    if yes is not None:
        flags["confirm_removal"] = yes
    while True:
        try:
            return call(**flags)
        except ApiCallError as error:
            if error.code == WARNINGS_DETECTED and error.warnings and not flags["ignore_warnings"]:
                flag, question = "ignore_warnings", "Proceed despite these warnings?"
            elif error.status == 409 and error.warnings and flags.get("confirm_removal") is False:
                flag, question = "confirm_removal", "Remove these services with their access rights?"
            else:
                raise
            for warning in error.warnings:
                click.echo(f"warning: {warning.get('message')} ({warning.get('code')})", err=True)
            click.confirm(question, abort=True, err=True)
            flags[flag] = True


@services.command("add-wsdl")
@click.argument("client_id", type=CLIENT_ID)
@click.option("--file", "file", type=_FILE, help="The WSDL document.")
@click.option("--url", "url", help="Let the gateway fetch the WSDL from this http(s) URL.")
@_ignore_warnings_option
@json_option
@pass_settings
def services_add_wsdl(
    settings: AdminSettings,
    client_id: str,
    file: Path | None,
    url: str | None,
    ignore_warnings: bool,
    as_json: bool,
) -> None:
    """Register one SOAP service per operation of a WSDL, called at the WSDL's address."""
    wsdl, url = _document_source(file, url)
    client = settings.client()
    result = _acknowledged(
        lambda **flags: client.add_wsdl(client_id, wsdl=wsdl, url=url, **flags), ignore_warnings
    )
    emit(result, as_json, _SERVICE_COLUMNS)


@services.command("add-openapi")
@click.argument("client_id", type=CLIENT_ID)
@click.argument("service_code")
@click.option("--file", "file", type=_FILE, help="The OpenAPI 3 document (YAML or JSON).")
@click.option("--url", "url", help="Let the gateway fetch the document from this http(s) URL.")
@click.option("--service-version", help="A version for the service, if it has one.")
@click.option("--backend-url", help="Where the service runs, if not the document's first server.")
@_ignore_warnings_option
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
    ignore_warnings: bool,
    as_json: bool,
) -> None:
    """Register SERVICE_CODE, a REST service, with an endpoint per operation of an OpenAPI document.

    Without --backend-url and a usable server in the document, the service is registered disabled
    (after the warnings step) until `services set-backend` gives it one."""
    document, url = _document_source(file, url)
    client = settings.client()
    result = _acknowledged(
        lambda **flags: client.add_openapi(
            client_id,
            service_code,
            document=document,
            url=url,
            service_version=service_version,
            backend_url=backend_url,
            **flags,
        ),
        ignore_warnings,
    )
    emit(result, as_json, (*_SERVICE_COLUMNS, ("endpoints", "endpoints")))


@services.command("set-backend")
@click.argument("client_id", type=CLIENT_ID)
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
@click.argument("client_id", type=CLIENT_ID)
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
@click.argument("client_id", type=CLIENT_ID)
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
@click.argument("client_id", type=CLIENT_ID)
@click.argument("service_code")
@_version_option
@json_option
@confirmed("Remove service {service_code} of {client_id} (with its access rights if it is the last version)?")
@pass_settings
def services_remove(
    settings: AdminSettings, client_id: str, service_code: str, version: str | None, as_json: bool
) -> None:
    """Unregister SERVICE_CODE (its access rights go with the code's last version)."""
    settings.client().remove_service(client_id, service_code, version)
    done(as_json, f"removed {service_code} of {client_id}")


# --- whole service descriptions ------------------------------------------------------------

_DESCRIPTION_COLUMNS: Final = (
    ("source", "source"),
    ("kind", "kind"),
    ("enabled", "enabled"),
    ("services", "services"),
)


@cli.group()
def descriptions() -> None:
    """Service descriptions (WSDL, OpenAPI) as wholes: refresh from the URL, move, enable, disable."""


@descriptions.command("list")
@click.argument("client_id", type=CLIENT_ID)
@json_option
@pass_settings
def descriptions_list(settings: AdminSettings, client_id: str, as_json: bool) -> None:
    """List CLIENT_ID's service descriptions with the services registered from each."""
    emit(settings.client().list_descriptions(client_id), as_json, _DESCRIPTION_COLUMNS)


def _refresh_options(function: _F) -> _F:
    function = click.option(
        "--yes", "-y", is_flag=True, help="Remove services that have access rights without asking."
    )(function)
    return _ignore_warnings_option(function)


def _emit_report(report: Mapping[str, Any], as_json: bool) -> None:
    if as_json:
        emit(report, True)
        return
    click.echo(f"source: {report['source']}")
    for name in ("added", "removed", "kept"):
        click.echo(f"{name}: {', '.join(report[name]) or '-'}")
    for change in report["changed"]:
        click.echo(f"changed: {change['id']}: {change['change']}")


@descriptions.command("refresh")
@click.argument("client_id", type=CLIENT_ID)
@click.argument("url")
@_refresh_options
@json_option
@pass_settings
def descriptions_refresh(
    settings: AdminSettings, client_id: str, url: str, ignore_warnings: bool, yes: bool, as_json: bool
) -> None:
    """Fetch the description at URL again and add, update and remove its services to match.

    Kept services keep their backend settings and access rights; removing services that have
    access rights is asked about first (--yes: do not ask)."""
    client = settings.client()
    report = _acknowledged(
        lambda **flags: client.refresh_description(client_id, url, **flags), ignore_warnings, yes
    )
    _emit_report(report, as_json)


@descriptions.command("change-url")
@click.argument("client_id", type=CLIENT_ID)
@click.argument("url")
@click.argument("new_url")
@_refresh_options
@json_option
@pass_settings
def descriptions_change_url(
    settings: AdminSettings,
    client_id: str,
    url: str,
    new_url: str,
    ignore_warnings: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Move the description at URL to NEW_URL: fetched from there and reconciled as by refresh."""
    client = settings.client()
    report = _acknowledged(
        lambda **flags: client.refresh_description(client_id, url, new_url=new_url, **flags),
        ignore_warnings,
        yes,
    )
    _emit_report(report, as_json)


@descriptions.command("enable")
@click.argument("client_id", type=CLIENT_ID)
@click.argument("url")
@json_option
@pass_settings
def descriptions_enable(settings: AdminSettings, client_id: str, url: str, as_json: bool) -> None:
    """Enable every service of the description at URL."""
    emit(settings.client().set_description_enabled(client_id, url, True), as_json, _DESCRIPTION_COLUMNS)


@descriptions.command("disable")
@click.argument("client_id", type=CLIENT_ID)
@click.argument("url")
@click.option("--notice", help="What clients are told (in the ServiceDisabled fault).")
@json_option
@pass_settings
def descriptions_disable(
    settings: AdminSettings, client_id: str, url: str, notice: str | None, as_json: bool
) -> None:
    """Disable every service of the description at URL."""
    result = settings.client().set_description_enabled(client_id, url, False, notice)
    emit(result, as_json, _DESCRIPTION_COLUMNS)


# --- access rights -------------------------------------------------------------------------


@cli.group()
def access() -> None:
    """Access rights to services (service administrator). Default deny: no right, no access."""


def _right_options(function: _F) -> _F:
    options = [
        click.argument("client_id", type=CLIENT_ID),
        click.argument("service_code"),
        click.argument("subject"),
        click.option(
            "--type",
            "subject_type",
            type=click.Choice([kind.value for kind in SubjectType]),
            help="What SUBJECT is; read from its form when not given: GROUP (a local group), "
            "INSTANCE/GROUP (a global group), INSTANCE/CLASS/MEMBER, INSTANCE/CLASS/MEMBER/SUBSYSTEM.",
        ),
        click.option("--method", help="For one REST endpoint only: its HTTP method, or *."),
        click.option("--path", help="For one REST endpoint only: its path pattern (* wildcards)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _subject(subject: str, subject_type: str | None) -> tuple[str, str]:
    """The subject in the one text form, and its type (given, or read from how it is written)."""
    try:
        kind, text = read_subject(subject)
    except ValueError as error:
        if subject_type is None:
            raise click.BadParameter(str(error), param_hint="SUBJECT") from None
        return slash_form(subject), subject_type  # the server names what is wrong with it
    if subject_type is not None and subject_type != kind.value:
        raise click.BadParameter(f"{subject} is a {kind.value}, not a {subject_type}", param_hint="SUBJECT")
    return text, subject_type or kind.value


@access.command("list")
@click.argument("client_id", type=CLIENT_ID)
@click.argument("service_code")
@json_option
@pass_settings
def access_list(settings: AdminSettings, client_id: str, service_code: str, as_json: bool) -> None:
    """List the rights to CLIENT_ID's SERVICE_CODE."""
    emit(settings.client().list_access_rights(client_id, service_code), as_json, _RIGHT_COLUMNS)


@access.command("grant")
@_right_options
@click.option("--force", is_flag=True, help="Grant even to a subject the global configuration does not list.")
@json_option
@pass_settings
def access_grant(
    settings: AdminSettings,
    client_id: str,
    service_code: str,
    subject: str,
    subject_type: str | None,
    method: str | None,
    path: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Let SUBJECT call CLIENT_ID's SERVICE_CODE (or one endpoint of it). A member, subsystem or
    global group the global configuration does not list is refused unless --force."""
    subject, kind = _subject(subject, subject_type)
    result = settings.client().grant(client_id, service_code, subject, kind, method, path, force=force)
    emit(result, as_json, _RIGHT_COLUMNS)


@access.command("revoke")
@_right_options
@json_option
@confirmed("Revoke {subject}'s access to {service_code} of {client_id}?")
@pass_settings
def access_revoke(
    settings: AdminSettings,
    client_id: str,
    service_code: str,
    subject: str,
    subject_type: str | None,
    method: str | None,
    path: str | None,
    as_json: bool,
) -> None:
    """Take back the right SUBJECT holds to CLIENT_ID's SERVICE_CODE (same arguments as grant)."""
    subject, kind = _subject(subject, subject_type)
    settings.client().revoke(client_id, service_code, subject, kind, method, path)
    done(as_json, f"revoked {subject}'s right to {service_code}")


# --- local groups --------------------------------------------------------------------------


@cli.group()
def groups() -> None:
    """Local groups: a subsystem's own lists of clients, for its access rights."""


@groups.command("list")
@click.argument("client_id", type=CLIENT_ID)
@json_option
@pass_settings
def groups_list(settings: AdminSettings, client_id: str, as_json: bool) -> None:
    """List CLIENT_ID's local groups and their members."""
    columns = (("code", "code"), ("description", "description"), ("members", "members"))
    emit(settings.client().list_local_groups(client_id), as_json, columns)


@groups.command("add")
@click.argument("client_id", type=CLIENT_ID)
@click.argument("code")
@click.option("--description", default="", help="What the group is for.")
@json_option
@pass_settings
def groups_add(settings: AdminSettings, client_id: str, code: str, description: str, as_json: bool) -> None:
    """Create local group CODE for CLIENT_ID."""
    emit(settings.client().add_local_group(client_id, code, description), as_json)


@groups.command("remove")
@click.argument("client_id", type=CLIENT_ID)
@click.argument("code")
@json_option
@confirmed("Remove local group {code} of {client_id}, and the access rights given to it?")
@pass_settings
def groups_remove(settings: AdminSettings, client_id: str, code: str, as_json: bool) -> None:
    """Delete local group CODE, its members and the rights granted to it."""
    settings.client().remove_local_group(client_id, code)
    done(as_json, f"removed group {code} of {client_id}")


@groups.command("add-member")
@click.argument("client_id", type=CLIENT_ID)
@click.argument("code")
@click.argument("member_id", type=CLIENT_ID)
@json_option
@pass_settings
def groups_add_member(
    settings: AdminSettings, client_id: str, code: str, member_id: str, as_json: bool
) -> None:
    """Add client MEMBER_ID to CLIENT_ID's local group CODE."""
    emit(settings.client().add_group_member(client_id, code, member_id), as_json)


@groups.command("remove-member")
@click.argument("client_id", type=CLIENT_ID)
@click.argument("code")
@click.argument("member_id", type=CLIENT_ID)
@json_option
@confirmed("Remove {member_id} from local group {code} of {client_id}?")
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
@click.option(
    "--member", "member_id", type=MEMBER_ID, help="The member a signing key signs for (INSTANCE/CLASS/MEMBER)"
)
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


@cli.group("api-keys")
def apikeys() -> None:
    """Management API keys and their roles (system administrator)."""


@apikeys.command("list")
@json_option
@pass_settings
def apikeys_list(settings: AdminSettings, as_json: bool) -> None:
    """List the API keys (names and roles; never the keys)."""
    emit(settings.client().list_api_keys(), as_json, _API_KEY_COLUMNS)


_ROLES = click.Choice([role.value for role in Role])


@apikeys.command("create")
@click.argument("name")
@click.argument("role_argument", metavar="[ROLE]", required=False, type=_ROLES)
@click.option("--role", type=_ROLES, help="The key's role (as `xgate central api-keys create` takes it).")
@json_option
@pass_settings
def apikeys_create(
    settings: AdminSettings, name: str, role_argument: str | None, role: str | None, as_json: bool
) -> None:
    """Create an API key NAME with --role ROLE; the key is printed this once."""
    if (role is None) == (role_argument is None):
        raise click.UsageError("give the key's role: --role ROLE")
    role = role or role_argument
    assert role is not None
    result = settings.client().create_api_key(name, role)
    if as_json:
        emit(result, True)
        return
    emit(result, False, (*_API_KEY_COLUMNS, ("key", "key")))
    click.echo("Store the key now: it is not shown again.", err=True)


@apikeys.command("revoke")
@click.argument("key_id", type=int)
@json_option
@confirmed("Revoke API key {key_id}? Whatever uses it stops working at once.")
@pass_settings
def apikeys_revoke(settings: AdminSettings, key_id: int, as_json: bool) -> None:
    """Revoke API key KEY_ID (see `api-keys list`)."""
    settings.client().revoke_api_key(key_id)
    done(as_json, f"revoked API key {key_id}")


@cli.command("audit")
@audit_options(AUDIT_LISTING, "subsystem.add")
@json_option
@pass_settings
@click.pass_context
def audit(
    ctx: click.Context,
    settings: AdminSettings,
    verify: bool,
    limit: int,
    page: int | None,
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
    found = settings.client().audit_log(limit=limit, before_id=page, actor=actor, action=action, since=since)
    next_position = found.get("next_before_id")
    if as_json:
        emit(with_next_page(found, AUDIT_LISTING, next_position), True)
        return
    emit(found["entries"], False, _AUDIT_COLUMNS)
    echo_next_page(AUDIT_LISTING, next_position)


# --- the interface cache -------------------------------------------------------------------------

_POLICY_COLUMNS: Final = (
    ("name", "name"),
    ("service", "service"),
    ("mode", "mode"),
    ("side", "side"),
    ("clients", "clients"),
    ("ttl_seconds", "ttl"),
    ("max_age_seconds", "max age"),
)
_ENTRY_COLUMNS: Final = (
    ("id", "id"),
    ("policy", "policy"),
    ("service", "service"),
    ("client", "client"),
    ("stored_at", "stored"),
    ("age_seconds", "age"),
    ("original_message_id", "original id"),
    ("log_record", "log record"),
    ("size", "bytes"),
)
_STATS_COLUMNS: Final = (
    ("service", "service"),
    ("hit", "hit"),
    ("stale", "stale"),
    ("miss", "miss"),
    ("stored", "stored"),
    ("refused", "refused"),
    ("circuit", "circuit"),
)
_RUN_COLUMNS: Final = (
    ("id", "id"),
    ("policy", "policy"),
    ("trigger", "trigger"),
    ("started_at", "started"),
    ("status", "status"),
    ("calls", "calls"),
    ("fetched", "fetched"),
    ("failures", "failures"),
    ("error", "first error"),
)


def policies_from_yaml(text: str) -> dict[str, dict[str, Any]]:
    """A declarative file's policies, by name: `policies: {NAME: {service: ..., mode: ...}}`."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise click.ClickException(f"not YAML: {error}") from None
    if not isinstance(document, dict) or set(document) != {"policies"}:
        raise click.ClickException("the file holds one key, `policies`, mapping names to policies")
    found = document["policies"] or {}
    if not isinstance(found, dict) or not all(isinstance(value, dict) for value in found.values()):
        raise click.ClickException("`policies` maps each policy's name to its settings")
    return {str(name): {k: v for k, v in value.items() if k != "name"} for name, value in found.items()}


def policies_to_yaml(policies: Mapping[str, Mapping[str, Any]]) -> str:
    """The declarative file of `policies` (name: document), as `export` writes it."""
    body = {name: {k: v for k, v in document.items() if k != "name"} for name, document in policies.items()}
    return yaml.safe_dump({"policies": body}, sort_keys=False, allow_unicode=True)


@cli.group()
def cache() -> None:
    """The interface cache: policies, entries, counters, purges, replication runs (docs/cache.md)."""


@cache.group("policies")
def cache_policies() -> None:
    """Cache policies per provider service or REST endpoint (service administrator)."""


@cache_policies.command("list")
@json_option
@pass_settings
def cache_policies_list(settings: AdminSettings, as_json: bool) -> None:
    """List the cache policies."""
    emit(settings.client().list_cache_policies(), as_json, _POLICY_COLUMNS)


@cache_policies.command("show")
@click.argument("name")
@pass_settings
def cache_policies_show(settings: AdminSettings, name: str) -> None:
    """Show policy NAME in full (YAML, as `apply` reads it)."""
    document = settings.client().get_cache_policy(name)
    click.echo(policies_to_yaml({name: document}), nl=False)


@cache_policies.command("set")
@click.argument("name")
@click.option(
    "--file", "file", type=_FILE, help="The policy's settings (YAML or JSON); other options override."
)
@click.option("--service", help="The provider service INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE[/VERSION].")
@click.option("--mode", type=click.Choice(["off", "fallback", "refresh", "replicate"]))
@click.option("--side", type=click.Choice(["consumer", "provider"]))
@click.option("--endpoint", help="A REST endpoint: 'METHOD /path/template'.")
@click.option(
    "--client", "clients", multiple=True, help="Only for this client (repeat); default: every client."
)
@click.option("--ttl", type=float, help="refresh/replicate: seconds a copy is fresh.")
@click.option("--max-age", type=float, help="Seconds beyond which nothing is served.")
@click.option("--shared/--per-client", default=None, help="Whether answers are the same for every client.")
@click.option("--idempotent/--not-idempotent", default=None, help="Whether failed calls may be retried.")
@json_option
@pass_settings
def cache_policies_set(
    settings: AdminSettings,
    name: str,
    file: Path | None,
    service: str | None,
    mode: str | None,
    side: str | None,
    endpoint: str | None,
    clients: tuple[str, ...],
    ttl: float | None,
    max_age: float | None,
    shared: bool | None,
    idempotent: bool | None,
    as_json: bool,
) -> None:
    """Create or replace cache policy NAME (validated by the gateway; every problem is named)."""
    document: dict[str, Any] = {}
    if file is not None:
        loaded = yaml.safe_load(_read_text(file))
        if not isinstance(loaded, dict):
            raise click.ClickException(f"{file} must hold one policy's settings")
        document.update(loaded)
    options = {
        "service": service,
        "mode": mode,
        "side": side,
        "ttl_seconds": ttl,
        "max_age_seconds": max_age,
        "shared": shared,
        "idempotent": idempotent,
    }
    document.update({key: value for key, value in options.items() if value is not None})
    if clients:
        document["clients"] = list(clients)
    if endpoint is not None:
        method, _, path = endpoint.partition(" ")
        if not path.strip():
            raise click.BadParameter("write the endpoint as 'METHOD /path'", param_hint="--endpoint")
        document["endpoint"] = {"method": method.upper(), "path": path.strip()}
    if "service" not in document:
        raise click.UsageError("give --service (or a --file naming it)")
    emit(settings.client().set_cache_policy(name, document), as_json, message=f"cache policy {name} set")


@cache_policies.command("remove")
@click.argument("name")
@json_option
@confirmed("Remove cache policy {name}? Its stored answers are no longer served.")
@pass_settings
def cache_policies_remove(settings: AdminSettings, name: str, as_json: bool) -> None:
    """Remove cache policy NAME (its entries are evicted at the next maintenance)."""
    settings.client().remove_cache_policy(name)
    done(as_json, f"cache policy {name} removed")


@cache.command("apply")
@click.argument("file", type=_FILE)
@json_option
@pass_settings
def cache_apply(settings: AdminSettings, file: Path, as_json: bool) -> None:
    """Make the gateway's cache policies exactly those of FILE (YAML): all validated, all or nothing."""
    result = settings.client().apply_cache_policies(policies_from_yaml(_read_text(file)))
    if as_json:
        emit(result, True)
        return
    for what in ("added", "changed", "removed", "unchanged"):
        click.echo(f"{what}: {', '.join(result[what]) or '-'}")


@cache.command("export")
@pass_settings
def cache_export(settings: AdminSettings) -> None:
    """Print the gateway's cache policies as a file `apply` reads."""
    found = settings.client().list_cache_policies()
    click.echo(policies_to_yaml({policy["name"]: policy for policy in found}), nl=False)


@cache.command("entries")
@click.option("--service", help="Only this provider service.")
@click.option("--client", help="Only this client.")
@click.option("--policy", help="Only this policy's entries.")
@limit_option("Entries")
@page_options(CACHE_ENTRIES_LISTING, "--offset")
@json_option
@pass_settings
def cache_entries(
    settings: AdminSettings,
    service: str | None,
    client: str | None,
    policy: str | None,
    limit: int,
    page: int | None,
    as_json: bool,
) -> None:
    """List cached entries, newest first, without their answers (audited)."""
    found = settings.client().cache_entries(
        service=service, client=client, policy=policy, limit=limit, offset=page or 0
    )
    # The API answers a page without saying whether more follow: a full page may.
    next_position = (page or 0) + limit if len(found["entries"]) == limit else None
    if as_json:
        emit(with_next_page(found, CACHE_ENTRIES_LISTING, next_position), True)
        return
    emit(found["entries"], False, _ENTRY_COLUMNS)
    echo_next_page(CACHE_ENTRIES_LISTING, next_position)


@cache.command("stats")
@json_option
@pass_settings
def cache_stats(settings: AdminSettings, as_json: bool) -> None:
    """Hit, stale and miss counts per service, and this node's circuit states."""
    stats = settings.client().cache_stats()
    if as_json:
        emit(stats, True)
        return
    click.echo(f"entries: {stats['entries']}, {stats['total_bytes']} bytes")
    rows = [{**row, "circuit": (row["circuit"] or {}).get("state", "-")} for row in stats["services"]]
    emit(rows, False, _STATS_COLUMNS)


@cache.command("purge")
@click.option("--service", help="The entries of this provider service.")
@click.option("--client", help="The entries of this client.")
@click.option("--key", help="The entry with this key.")
@click.option("--policy", help="The entries of this policy.")
@click.option("--subject", help="Every entry whose request names this person (erasure request).")
@click.option("--all", "everything", is_flag=True, help="Every entry.")
@json_option
@confirmed("Purge these cache entries? They cannot be served again until fetched anew.")
@pass_settings
def cache_purge(
    settings: AdminSettings,
    service: str | None,
    client: str | None,
    key: str | None,
    policy: str | None,
    subject: str | None,
    everything: bool,
    as_json: bool,
) -> None:
    """Purge cached entries: by filters (all must match), by data subject, or --all."""
    api = settings.client()
    if subject is not None:
        if any((service, client, key, policy, everything)):
            raise click.UsageError("--subject takes no other filter")
        count = api.purge_cache_subject(subject)
    else:
        count = api.purge_cache(service=service, client=client, key=key, policy=policy, everything=everything)
    emit({"purged": count}, as_json, message=f"{count} entries purged")


@cache.command("runs")
@click.option("--policy", help="Only this replicate policy.")
@limit_option("Runs")
@json_option
@pass_settings
def cache_runs(settings: AdminSettings, policy: str | None, limit: int, as_json: bool) -> None:
    """Replication plans (last and next run) and their runs, newest first."""
    result = settings.client().cache_runs(policy, limit)
    if as_json:
        emit(result, True)
        return
    for plan in result["plans"]:
        last = plan["last_run"]
        state = "never ran" if last is None else f"last run {last['started_at']}: {last['status']}"
        click.echo(f"{plan['policy']}: {state}; next run {plan['next_run'] or '-'}")
    emit(result["runs"], False, _RUN_COLUMNS)


@cache.command("run")
@click.argument("policy")
@json_option
@pass_settings
def cache_run(settings: AdminSettings, policy: str, as_json: bool) -> None:
    """Run replicate policy POLICY's plan now and show the run when it has finished."""
    emit(settings.client().start_cache_run(policy), as_json)


# --- maintenance -----------------------------------------------------------------------------


@cli.group()
def maintenance() -> None:
    """Take the node out from behind its load balancer: health 503 while it still serves."""


def _maintenance_text(state: Mapping[str, Any]) -> str:
    in_flight = ", ".join(f"{name} {count}" for name, count in sorted(state["in_flight"].items()))
    if not state["enabled"]:
        return f"maintenance: off; in flight: {in_flight or '-'}"
    reason = f" ({state['reason']})" if state.get("reason") else ""
    drained = "drained" if state["drained"] else "not drained yet"
    return (
        f"maintenance: on since {state['since']} by {state['by']}{reason}; "
        f"in flight: {in_flight or '-'}; {drained}"
    )


@maintenance.command("on")
@click.option("--reason", help="Why, for the audit log and the status.")
@json_option
@pass_settings
def maintenance_on(settings: AdminSettings, reason: str | None, as_json: bool) -> None:
    """Health answers 503 "maintenance"; requests are still served until the node has drained."""
    state = settings.client().set_maintenance(True, reason)
    emit(state, as_json, message=_maintenance_text(state))


@maintenance.command("off")
@json_option
@pass_settings
def maintenance_off(settings: AdminSettings, as_json: bool) -> None:
    """Health answers from its checks again, and the load balancer sends traffic back."""
    state = settings.client().set_maintenance(False)
    emit(state, as_json, message=_maintenance_text(state))


@maintenance.command("status")
@json_option
@pass_settings
def maintenance_status(settings: AdminSettings, as_json: bool) -> None:
    """Whether the node is in maintenance, and the exchanges still in flight per interface."""
    state = settings.client().maintenance()
    emit(state, as_json, message=_maintenance_text(state))
