"""`xgate trust`: run the development TSA and OCSP responder for a PKI directory.

On first run the TSA and OCSP responder certificates are issued from the directory's CA into
DIR/issued (and recorded in its index like any other); later runs reuse them. The services
listen on 127.0.0.1 unless told otherwise twice (--host and --allow-remote): they sign
whatever they are asked, so they are for one machine's federation, not a network's.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import logging
import os
import signal
from pathlib import Path
from typing import Final

import click
from aiohttp import web
from cryptography import x509

from gateway import listeners
from gateway.crypto.certs import CertificateError, load_certificate_file
from gateway.crypto.keys import KeyFileError, PassphraseRequired, PrivateKey, load_private_key
from gateway.logsetup import LogSetupError, active_format, setup_logging
from gateway.trust import pki
from gateway.trust.ocsp_responder import DEFAULT_VALIDITY, OcspResponder, OcspResponderError
from gateway.trust.server import build_app, index_status_lookup
from gateway.trust.tsa import TimestampAuthority, TsaConfigurationError

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8888
"""The OCSP port of the example global configuration (docs/globalconf.md); /tsa is served beside it."""

_FILE = click.Path(dir_okay=False, exists=True, path_type=Path)

log = logging.getLogger(__name__)


class _TrustCommandError(click.ClickException):
    """A failure the user can act on: shown as one line, exit status 1."""


@click.group(name="trust", context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Development trust services: an RFC 3161 TSA and an OCSP responder for the development CA."""


@cli.command()
@click.option(
    "--pki",
    "pki_dir",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The PKI directory (`xgate pki init DIR`) whose CA the services answer for.",
)
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="0 picks a free port.",
)
@click.option("--allow-remote", is_flag=True, help="Allow a --host other than a loopback address.")
@click.option("--tsa-key", type=_FILE, help="TSA private key [default: issued into DIR on first run].")
@click.option("--tsa-cert", type=_FILE, help="TSA certificate (critical EKU timeStamping).")
@click.option("--ocsp-key", type=_FILE, help="OCSP responder key [default: issued into DIR on first run].")
@click.option("--ocsp-cert", type=_FILE, help="OCSP responder certificate (EKU OCSPSigning, from the CA).")
@click.option(
    "--ocsp-validity",
    type=click.IntRange(min=1),
    default=int(DEFAULT_VALIDITY.total_seconds()),
    show_default=True,
    help="Seconds from thisUpdate to nextUpdate in OCSP answers.",
)
@click.option(
    "--only",
    type=click.Choice(["tsa", "ocsp"]),
    help="Serve only this service (a federation's second responder or TSA, stopped on its own).",
)
@click.option(
    "--ca-passphrase-env",
    metavar="VAR",
    help="Passphrase of an encrypted CA key, from VAR (only needed to issue certificates).",
)
def serve(
    pki_dir: Path,
    host: str,
    port: int,
    allow_remote: bool,
    tsa_key: Path | None,
    tsa_cert: Path | None,
    ocsp_key: Path | None,
    ocsp_cert: Path | None,
    ocsp_validity: int,
    only: str | None,
    ca_passphrase_env: str | None,
) -> None:
    """Serve POST /tsa, POST and GET /ocsp, and GET /health for the CA in DIR until interrupted."""
    if not allow_remote and not is_loopback(host):
        raise click.UsageError(f"{host} is not a loopback address; add --allow-remote if you mean it")
    try:
        logs = setup_logging()  # XGATE_LOG_LEVEL and XGATE_LOG_FORMAT (docs/logging.md)
    except LogSetupError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        keys = (tsa_key, tsa_cert, ocsp_key, ocsp_cert)
        _serve_trust(pki_dir, host, port, *keys, ocsp_validity, only, ca_passphrase_env)
    finally:
        logs.close()


def _say(text: str) -> None:
    """What the command tells its operator: on standard output as text, as a log line in JSON
    format (a log collector reading both streams then reads only JSON)."""
    if active_format() == "json":
        log.info("%s", text)
    else:
        click.echo(text)


def _serve_trust(
    pki_dir: Path,
    host: str,
    port: int,
    tsa_key: Path | None,
    tsa_cert: Path | None,
    ocsp_key: Path | None,
    ocsp_cert: Path | None,
    ocsp_validity: int,
    only: str | None,
    ca_passphrase_env: str | None,
) -> None:
    try:
        ca_certificate = load_certificate_file(pki.ca_certificate_path(pki_dir))
        issuer = _CaOnDemand(pki_dir, ca_passphrase_env)
        timestamp_authority = None
        if only in (None, "tsa"):
            key, certificate = _key_pair(pki_dir, tsa_key, tsa_cert, pki.TsaProfile(), issuer, "--tsa")
            timestamp_authority = TimestampAuthority(key, certificate)
        responder = None
        if only in (None, "ocsp"):
            key, certificate = _key_pair(
                pki_dir, ocsp_key, ocsp_cert, pki.OcspResponderProfile(), issuer, "--ocsp"
            )
            responder = OcspResponder(
                key,
                certificate,
                ca_certificate,
                index_status_lookup(pki_dir),
                dt.timedelta(seconds=ocsp_validity),
            )
    except (
        pki.PkiError,
        KeyFileError,
        CertificateError,
        TsaConfigurationError,
        OcspResponderError,
        FileNotFoundError,
    ) as exc:
        raise _TrustCommandError(str(exc)) from exc
    asyncio.run(_serve(build_app(timestamp_authority, responder), host, port, only))


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (a name other than localhost could resolve anywhere)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _CaOnDemand:
    """Loads the CA (and asks for its passphrase) only if a certificate must be issued."""

    def __init__(self, pki_dir: Path, passphrase_env: str | None) -> None:
        self._pki_dir = pki_dir
        self._passphrase_env = passphrase_env
        self._ca: pki.CertificateAuthority | None = None

    def get(self) -> pki.CertificateAuthority:
        if self._ca is None:
            passphrase = None
            if self._passphrase_env is not None:
                value = os.environ.get(self._passphrase_env)
                if not value:
                    raise click.UsageError(f"environment variable {self._passphrase_env} is not set or empty")
                passphrase = value.encode()
            try:
                self._ca = pki.load_ca(self._pki_dir, passphrase)
            except PassphraseRequired:
                text: str = click.prompt("Passphrase for the CA key", hide_input=True)
                self._ca = pki.load_ca(self._pki_dir, text.encode())
        return self._ca


def _key_pair(
    pki_dir: Path,
    key_path: Path | None,
    certificate_path: Path | None,
    profile: pki.TsaProfile | pki.OcspResponderProfile,
    ca: _CaOnDemand,
    option: str,
) -> tuple[PrivateKey, x509.Certificate]:
    """The given key and certificate, or DIR/issued/<kind>-<name>.{key,pem}, issued if missing."""
    if (key_path is None) != (certificate_path is None):
        raise click.UsageError(f"give both {option}-key and {option}-cert, or neither")
    if key_path is None or certificate_path is None:
        prefix = pki_dir / pki.ISSUED_DIR / profile.file_stem()
        key_path = prefix.with_name(prefix.name + ".key")
        certificate_path = prefix.with_name(prefix.name + ".pem")
        if not key_path.exists() and not certificate_path.exists():
            issued = pki.issue(pki_dir, ca.get(), profile)
            _say(f"issued {profile.kind} certificate {issued.certificate_path}")
    return load_private_key(key_path), load_certificate_file(certificate_path)


async def _serve(app: web.Application, host: str, port: int, only: str | None) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = listeners.site(runner, host, port)
        await site.start()
        for address in runner.addresses:
            bound_host, bound_port = address[0], address[1]
            shown = f"[{bound_host}]" if ":" in bound_host else bound_host
            base = f"http://{shown}:{bound_port}"
            served = {"tsa": f"TSA {base}/tsa", "ocsp": f"OCSP {base}/ocsp"}
            shown_services = ", ".join(text for name, text in served.items() if only in (None, name))
            _say(f"trust services on {base}: {shown_services}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
