"""`xgate pki`: run the development CA from the shell.

Passphrases come only from an environment variable or an interactive prompt, never from an
argument (arguments show up in `ps` and shell history). Private keys are never printed.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from cryptography import x509

from gateway.apicli import confirmed
from gateway.crypto.certs import CertificateError, serial_hex
from gateway.crypto.keys import KeyAlgorithm, KeyFileError, PassphraseRequired
from gateway.ids import ClientId, IdentifierError, SecurityServerId
from gateway.trust import pki

_F = TypeVar("_F", bound=Callable[..., Any])

_ALGORITHMS = click.Choice([a.value for a in KeyAlgorithm], case_sensitive=False)
_REASONS = click.Choice([r.value for r in pki.REVOCATION_REASONS])
_PKI_DIR = click.Path(file_okay=False, path_type=Path)


class _PkiCommandError(click.ClickException):
    """A failure the user can act on: shown as one line, exit status 1."""


def _passphrase_from_env(variable: str) -> bytes:
    value = os.environ.get(variable)
    if not value:
        raise click.UsageError(f"environment variable {variable} is not set or empty")
    return value.encode()


def _new_key_passphrase(env: str | None, prompt: bool, what: str) -> bytes | None:
    """The passphrase to encrypt a new key with, or None to leave it unencrypted (mode 0600 only)."""
    if env is not None and prompt:
        raise click.UsageError("give --passphrase-env or --passphrase-prompt, not both")
    if env is not None:
        return _passphrase_from_env(env)
    if prompt:
        text: str = click.prompt(f"Passphrase for the {what}", hide_input=True, confirmation_prompt=True)
        return text.encode()
    return None


def _load_ca(pki_dir: Path, ca_passphrase_env: str | None) -> pki.CertificateAuthority:
    """Load the CA, asking for its passphrase only when the key turns out to be encrypted."""
    passphrase = _passphrase_from_env(ca_passphrase_env) if ca_passphrase_env else None
    try:
        return pki.load_ca(pki_dir, passphrase)
    except PassphraseRequired:
        text: str = click.prompt("Passphrase for the CA key", hide_input=True)
        return pki.load_ca(pki_dir, text.encode())


def _friendly_errors(function: _F) -> _F:
    """Turn the PKI's typed errors into one-line messages instead of tracebacks."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except (pki.PkiError, KeyFileError, CertificateError, IdentifierError, ValueError) as exc:
            raise _PkiCommandError(str(exc)) from exc
        except FileNotFoundError as exc:
            raise _PkiCommandError(f"{exc.filename}: no such file") from exc

    return wrapper  # type: ignore[return-value]


@click.group(name="pki", context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Development PKI: a CA issuing gateway TLS, member signing, TSA and OCSP certificates.

    For tests and demos only: production federations use real CAs. Everything is kept in one
    directory (DIR): the CA in DIR/ca, issued certificates and keys in DIR/issued, and the
    record of every issue and revocation in DIR/index.jsonl.
    """


@cli.command()
@click.argument("pki_dir", metavar="DIR", type=_PKI_DIR)
@click.option(
    "--algorithm",
    type=_ALGORITHMS,
    default=KeyAlgorithm.EC.value,
    show_default=True,
    help="Key type of the CA: EC P-256, or RSA of 2048 or 3072 bits.",
)
@click.option("--common-name", default=pki.DEFAULT_CA_NAME, show_default=True, help="The CA's subject CN.")
@click.option(
    "--ocsp-url",
    metavar="URL",
    help="OCSP responder URL to put in every issued certificate (AuthorityInformationAccess).",
)
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=pki.DEFAULT_CA_VALIDITY.days,
    show_default=True,
    help="How long the CA certificate is valid.",
)
@click.option(
    "--passphrase-env", metavar="VAR", help="Encrypt the CA key with the passphrase in this variable."
)
@click.option("--passphrase-prompt", is_flag=True, help="Ask for a passphrase to encrypt the CA key.")
@_friendly_errors
def init(
    pki_dir: Path,
    algorithm: str,
    common_name: str,
    ocsp_url: str | None,
    days: int,
    passphrase_env: str | None,
    passphrase_prompt: bool,
) -> None:
    """Create a new CA in DIR: DIR/ca/ca.pem, DIR/ca/ca.key (mode 0600) and DIR/ca/settings.json."""
    passphrase = _new_key_passphrase(passphrase_env, passphrase_prompt, "CA key")
    settings = pki.CaSettings(common_name=common_name, ocsp_url=ocsp_url, algorithm=KeyAlgorithm(algorithm))
    ca = pki.init_pki(pki_dir, settings=settings, passphrase=passphrase, validity=dt.timedelta(days=days))
    click.echo(f"CA certificate: {pki.ca_certificate_path(pki_dir)}")
    click.echo(f"CA private key: {pki.ca_key_path(pki_dir)}{' (encrypted)' if passphrase else ''}")
    click.echo(f"valid until:    {ca.certificate.not_valid_after_utc.isoformat()}")


@cli.group()
@click.argument("pki_dir", metavar="DIR", type=_PKI_DIR)
@click.pass_context
def issue(ctx: click.Context, pki_dir: Path) -> None:
    """Issue a certificate from the CA in DIR, with a new key pair.

    Writes PREFIX.pem (certificate) and PREFIX.key (private key, mode 0600), records the
    certificate in DIR/index.jsonl, and prints the paths.
    """
    ctx.obj = pki_dir


def _issue_options(function: _F) -> _F:
    """Options every kind of certificate shares."""
    options = [
        click.option(
            "--algorithm",
            type=_ALGORITHMS,
            default=KeyAlgorithm.EC.value,
            show_default=True,
            help="Key type of the new key: EC P-256, or RSA of 2048 or 3072 bits.",
        ),
        click.option(
            "--out",
            "out_prefix",
            metavar="PREFIX",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Write PREFIX.pem and PREFIX.key [default: DIR/issued/KIND-NAME].",
        ),
        click.option(
            "--days",
            type=click.IntRange(min=1),
            default=pki.DEFAULT_CERT_VALIDITY.days,
            show_default=True,
            help="How long the certificate is valid (never beyond the CA's own validity).",
        ),
        click.option(
            "--passphrase-env", metavar="VAR", help="Encrypt the new key with the passphrase in VAR."
        ),
        click.option(
            "--passphrase-prompt", is_flag=True, help="Ask for a passphrase to encrypt the new key."
        ),
        click.option(
            "--ca-passphrase-env",
            metavar="VAR",
            help="Passphrase of an encrypted CA key, from VAR (asked for when needed and not given).",
        ),
        click.option("--force", is_flag=True, help="Overwrite PREFIX.pem and PREFIX.key if they exist."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _issue_and_report(pki_dir: Path, profile: pki.CertificateProfile, options: dict[str, Any]) -> None:
    ca = _load_ca(pki_dir, options["ca_passphrase_env"])
    passphrase = _new_key_passphrase(options["passphrase_env"], options["passphrase_prompt"], "new key")
    written = pki.issue(
        pki_dir,
        ca,
        profile,
        algorithm=KeyAlgorithm(options["algorithm"]),
        out_prefix=options["out_prefix"],
        passphrase=passphrase,
        validity=dt.timedelta(days=options["days"]),
        overwrite=options["force"],
    )
    click.echo(f"certificate: {written.certificate_path}")
    click.echo(f"private key: {written.key_path}{' (encrypted)' if passphrase else ''}")
    click.echo(f"serial:      {serial_hex(written.certificate)}")
    click.echo(f"valid until: {written.certificate.not_valid_after_utc.isoformat()}")


@issue.command()
@click.option(
    "--server",
    "server_text",
    required=True,
    metavar="INSTANCE/CLASS/MEMBER/SERVER",
    help="The gateway (security server) the certificate authenticates.",
)
@click.option(
    "--dns",
    "dns_names",
    multiple=True,
    metavar="NAME",
    help="DNS name the gateway is reached at; repeat for several [default: localhost].",
)
@click.option(
    "--ip",
    "ip_texts",
    multiple=True,
    metavar="ADDRESS",
    help="IP address the gateway is reached at; repeat for several [default: 127.0.0.1].",
)
@_issue_options
@click.pass_obj
@_friendly_errors
def gateway(
    pki_dir: Path, server_text: str, dns_names: tuple[str, ...], ip_texts: tuple[str, ...], **options: Any
) -> None:
    """A gateway's TLS authentication certificate (serverAuth and clientAuth, SAN xroad:server:...)."""
    profile = pki.GatewayProfile(
        server=SecurityServerId.from_text(server_text),
        dns_names=dns_names or pki.DEFAULT_DNS_NAMES,
        ip_addresses=tuple(ipaddress.ip_address(text) for text in ip_texts) or pki.DEFAULT_IP_ADDRESSES,
    )
    _issue_and_report(pki_dir, profile, options)


@issue.command()
@click.option(
    "--member",
    "member_text",
    required=True,
    metavar="INSTANCE/CLASS/MEMBER",
    help="The member whose messages the key will sign.",
)
@click.option("--name", help="The member's name, for the subject's O [default: the member code].")
@_issue_options
@click.pass_obj
@_friendly_errors
def member(pki_dir: Path, member_text: str, name: str | None, **options: Any) -> None:
    """A member's signing certificate (nonRepudiation and digitalSignature, SAN xroad:member:...)."""
    profile = pki.MemberSigningProfile(member=ClientId.from_text(member_text), name=name)
    _issue_and_report(pki_dir, profile, options)


@issue.command()
@click.option("--name", default=pki.DEFAULT_TSA_NAME, show_default=True, help="The TSA's subject CN.")
@_issue_options
@click.pass_obj
@_friendly_errors
def tsa(pki_dir: Path, name: str, **options: Any) -> None:
    """A time-stamping authority's certificate (critical EKU timeStamping, RFC 3161 §2.3)."""
    _issue_and_report(pki_dir, pki.TsaProfile(name=name), options)


@issue.command()
@click.option("--name", default=pki.DEFAULT_OCSP_NAME, show_default=True, help="The responder's subject CN.")
@_issue_options
@click.pass_obj
@_friendly_errors
def ocsp(pki_dir: Path, name: str, **options: Any) -> None:
    """An OCSP responder's certificate (EKU OCSPSigning and ocsp-nocheck, RFC 6960 §4.2.2.2)."""
    _issue_and_report(pki_dir, pki.OcspResponderProfile(name=name), options)


@cli.command()
@click.argument("pki_dir", metavar="DIR", type=_PKI_DIR)
@click.option(
    "--cert",
    "certificate_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The certificate file to revoke.",
)
@click.option(
    "--serial", metavar="HEX", help="Serial of the certificate to revoke, in hex as `xgate pki list` shows."
)
@click.option(
    "--reason",
    type=_REASONS,
    default=x509.ReasonFlags.unspecified.value,
    show_default=True,
    help="RFC 5280 revocation reason, reported by the OCSP responder.",
)
@confirmed(
    lambda given: (
        f"Revoke {given['certificate_path'] or 'serial ' + str(given['serial'])} ({given['reason']})? "
        "Revocation cannot be undone."
    )
)
@_friendly_errors
def revoke(pki_dir: Path, certificate_path: Path | None, serial: str | None, reason: str) -> None:
    """Revoke a certificate issued from DIR: give exactly one of --cert or --serial."""
    if (certificate_path is None) == (serial is None):
        raise click.UsageError("give exactly one of --cert FILE or --serial HEX")
    flag = x509.ReasonFlags(reason)
    if certificate_path is not None:
        revoked = pki.revoke_certificate_file(pki_dir, certificate_path, flag)
    else:
        revoked = pki.revoke(pki_dir, pki.parse_serial(serial or ""), flag)
    click.echo(f"revoked {revoked.serial:x} ({revoked.subject}): {reason}")


@cli.command(name="list")
@click.argument("pki_dir", metavar="DIR", type=_PKI_DIR)
@_friendly_errors
def list_(pki_dir: Path) -> None:
    """List the certificates issued from DIR with their status (good or revoked)."""
    issued = pki.read_index(pki_dir)
    click.echo("serial\tkind\tstatus\tnot_after\tsubject")
    for entry in issued.values():  # in order of issue
        status = entry.status.name.lower()
        if entry.reason is not None:
            status += f" ({entry.reason.value})"
        click.echo(
            f"{entry.serial:x}\t{entry.kind}\t{status}\t{entry.not_after.isoformat()}\t{entry.subject}"
        )
