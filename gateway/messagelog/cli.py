"""`xgate log`: the message log for the security officer: search, show, export, verify.

Two ways to a log. Against a running node's management API (`--url`, the API key from an
environment variable as for `xgate admin`; a security_officer or system_administrator key):
the node audits every query. Or straight on a log database (`--database URL`): an auditor
with a copy of the database and no gateway. `verify` of a container, an archive or a
directory of archives needs no log at all, only the federation's trust anchors: `--ca` and
`--tsa-cert`, or a global configuration with its anchor (`--globalconf`, `--anchor`).
Everything is offline; nothing here writes to a log.

The answers come from gateway.messagelog.officer either way (through the API or through
gateway.messagelog.inspector), so both modes print the same.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import sys
import textwrap
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any, Final, TypeVar

import click
import sqlalchemy.exc
from cryptography import x509

from gateway.apicli import (
    GATEWAY_API_KEY_ENV,
    GATEWAY_API_URL,
    GATEWAY_API_URL_ENV,
    SERVER_ID,
    ApiGroup,
    ApiSettings,
    Progress,
    api_options,
    echo_json,
    echo_next_page,
    format_table,
    limit_option,
    page_options,
    terminal_width,
    with_next_page,
)
from gateway.crypto.certs import CertificateError, load_certificates
from gateway.globalconf import GlobalConfError, verify_signed_globalconf
from gateway.globalconf.source import load_anchor
from gateway.messagelog.apiclient import MessageLogClient
from gateway.messagelog.archive import ContainerTrust, verify_archive_chain
from gateway.messagelog.asice import MAX_CONTAINER_BYTES, ContainerReport
from gateway.messagelog.crypto_at_rest import BodyCipher
from gateway.messagelog.inspector import LogInspector
from gateway.messagelog.links import ChainMember, describe, link
from gateway.messagelog.officer import (
    DEFAULT_SEARCH_LIMIT,
    MAX_EXPORT_PER_CALL,
    STEPS,
    ExportedContainer,
    ExportFailure,
    QueryError,
    SearchQuery,
    TrustUnavailable,
    export_from_json,
    first_problem,
    globalconf_trust,
    parse_time,
)
from gateway.messagelog.store import MAX_SEARCH_LIMIT

DATABASE_ENV: Final = "XGATE_LOG_DATABASE"
ARCHIVE_GLOB: Final = "xgate-archive-*.zip"  # gateway.messagelog.archive.archive_name
CONTAINER_GLOB: Final = "*.asice"  # what `xgate log export` writes

COLUMN_WIDTH: Final = 64
"""Of each side in `show`'s side-by-side table: a SHA-256 in hex fits on one line."""

_F = TypeVar("_F", bound=Callable[..., Any])


class LogApiSettings(ApiSettings[MessageLogClient]):
    """Where a gateway's management API is and where its key comes from (as for `xgate admin`)."""

    def _connect(self, url: str, key: str) -> MessageLogClient:
        return MessageLogClient(url, key)


class LogGroup(ApiGroup):
    """The management CLIs' error handling, plus the log's own: bad queries, databases, trust files."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except QueryError as error:
            raise click.UsageError(str(error)) from None
        except TrustUnavailable as error:
            raise click.UsageError(
                f"{error}: give --ca and --tsa-cert, or --globalconf and --anchor"
            ) from None
        except (GlobalConfError, CertificateError) as error:
            raise click.ClickException(f"trust anchors: {error}") from None
        except sqlalchemy.exc.SQLAlchemyError as error:
            raise click.ClickException(f"database: {error.__class__.__name__}: {error}") from None


@dataclass
class LogSettings:
    """Where the log is: a node's management API, or a database of one's own."""

    admin: LogApiSettings
    database: str | None
    gateway: str | None
    body_keys: Path | None
    _engine: sqlalchemy.Engine | None = field(default=None, repr=False)

    def inspector(self, trust: ContainerTrust | None = None) -> LogInspector:
        from gateway.messagelog.db import create_engine

        assert self.database is not None
        if self._engine is None:
            self._engine = create_engine(log_database_url(self.database))
        cipher = None
        if self.body_keys is not None:
            from gateway.messagelog.service import load_body_keys

            cipher = BodyCipher(*load_body_keys(self.body_keys))
        return LogInspector(self._engine, self.gateway, cipher, lambda: trust)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


pass_settings = click.make_pass_decorator(LogSettings)


def log_database_url(text: str) -> str:
    """The log database `--database` names: a SQLAlchemy URL, or the path of a SQLite file.

    A SQLite file must exist: opening a mistyped path would create an empty log, and an empty
    log finds nothing and verifies, which an audit must never mistake for "no calls".
    """
    if "://" not in text:
        path, url = Path(text), f"sqlite:///{Path(text).resolve()}"
    else:
        url = text
        parsed = sqlalchemy.engine.make_url(text)
        if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
            return url
        path = Path(parsed.database)
    if not path.is_file():
        raise click.ClickException(
            f"--database: no log database at {path}: give an existing SQLite file, or a database URL"
        )
    return url


@click.group(cls=LogGroup, context_settings={"help_option_names": ["-h", "--help"]})
@api_options(
    url_env=GATEWAY_API_URL_ENV,
    default_url=GATEWAY_API_URL,
    default_key_env=GATEWAY_API_KEY_ENV,
    url_help=f"The node's admin listener (or set {GATEWAY_API_URL_ENV}); used unless --database is given.",
)
@click.option(
    "--database",
    envvar=DATABASE_ENV,
    metavar="URL|FILE",
    help=f"Read this log database directly instead of a node: a SQLAlchemy URL, or the path of a "
    f"SQLite file, which must exist (or set {DATABASE_ENV}).",
)
@click.option(
    "--gateway",
    metavar="ID",
    type=SERVER_ID,
    help="With --database: only this gateway's records (INSTANCE/CLASS/MEMBER/SERVER).",
)
@click.option(
    "--body-keys",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="With --database: the node's body key file, to read bodies encrypted at rest.",
)
@click.pass_context
def cli(
    ctx: click.Context,
    url: str,
    key_env: str,
    database: str | None,
    gateway: str | None,
    body_keys: Path | None,
) -> None:
    """The message log: search, show and export logged messages, and verify logs and evidence.

    Against a node, every query is audited under the API key's name (security officer or
    system administrator). With --database, the log is read directly and offline. Identifiers
    are INSTANCE/CLASS/MEMBER[/SUBSYSTEM] (X-Road's DEV:GOV:1001 is read too) and
    case-sensitive; a malformed filter is an error, never an empty result.
    """
    ctx.obj = LogSettings(LogApiSettings(url, key_env), database, gateway, body_keys)
    ctx.call_on_close(ctx.obj.close)


# --- options ---------------------------------------------------------------------------------


def _json_option(function: _F) -> _F:
    decorated: _F = click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")(
        function
    )
    return decorated


def _filter_options(function: _F) -> _F:
    options = [
        click.option("--message-id", help="Only this message id."),
        click.option(
            "--client",
            help="Only this client, INSTANCE/CLASS/MEMBER[/SUBSYSTEM]; a member matches its subsystems too. "
            "Identifiers are case-sensitive.",
        ),
        click.option(
            "--service",
            help="Only this service, INSTANCE/CLASS/MEMBER[/SUBSYSTEM]/SERVICE[/VERSION]; without a version "
            "it matches every version. Case-sensitive.",
        ),
        click.option("--user-id", help="Only this user id."),
        click.option(
            "--since",
            metavar="TIME",
            help="Logged at or after (ISO 8601, UTC if no zone; or 2h, 7d, yesterday).",
        ),
        click.option(
            "--until", metavar="TIME", help="Logged before (ISO 8601, UTC if no zone; or 30m, today)."
        ),
        click.option(
            "--outcome",
            help="`ok`, `cache.hit`, `cache.stale`, `cache.*` (every answer served from the cache), a fault"
            " code such as Server.ServerProxy.AccessDenied, or a code's start and .* (Client.*).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


SEARCH_LISTING: Final = "log search"
"""Search and export page through the same records: one token serves both."""


def _query(filters: Mapping[str, Any], limit: int, page: int | None) -> SearchQuery:
    times = {name: parse_time(filters[name], name) if filters[name] else None for name in ("since", "until")}
    return SearchQuery(
        message_id=filters["message_id"],
        client=filters["client"],
        service=filters["service"],
        user_id=filters["user_id"],
        outcome=filters["outcome"],
        limit=limit,
        offset=page or 0,
        **times,
    )


_PEM_FILES = click.Path(exists=True, dir_okay=False, path_type=Path)


def _trust_options(function: _F) -> _F:
    options = [
        click.option(
            "--ca",
            "ca_files",
            multiple=True,
            type=_PEM_FILES,
            help="A trusted CA's certificate(s), PEM; repeatable.",
        ),
        click.option(
            "--tsa-cert",
            "tsa_files",
            multiple=True,
            type=_PEM_FILES,
            help="A trusted TSA's certificate, PEM; repeatable.",
        ),
        click.option(
            "--globalconf", type=_PEM_FILES, help="A signed global configuration: take its CAs and TSAs."
        ),
        click.option("--anchor", type=_PEM_FILES, help="The anchor that verifies --globalconf."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def load_trust(
    ca_files: Sequence[Path], tsa_files: Sequence[Path], globalconf: Path | None, anchor: Path | None
) -> ContainerTrust | None:
    """The trust anchors the options name; None when they name none."""
    if (globalconf is None) != (anchor is None):
        raise click.UsageError("--globalconf and --anchor go together")
    cas: list[x509.Certificate] = []
    for path in ca_files:
        for certificate in load_certificates(path.read_bytes()):
            if not _is_ca(certificate):
                raise click.UsageError(
                    f"--ca {path}: {certificate.subject.rfc4514_string()} is not a CA certificate "
                    "(basicConstraints CA:TRUE): give the CA that issued the signers, not a signer"
                )
            cas.append(certificate)
    tsas: list[x509.Certificate] = [c for path in tsa_files for c in load_certificates(path.read_bytes())]
    if globalconf is not None and anchor is not None:
        trusted_anchor = load_anchor(anchor)
        conf = verify_signed_globalconf(
            globalconf.read_bytes(),
            trusted_anchor.certificates,
            dt.datetime.now(dt.UTC),
            instance=trusted_anchor.instance,
        )
        from_conf = globalconf_trust(conf)
        cas += from_conf.trusted_cas
        tsas += from_conf.trusted_tsa_certs
        return ContainerTrust(trusted_cas=cas, trusted_tsa_certs=tsas, status=from_conf.status)
    if not cas and not tsas:
        return None
    return ContainerTrust(trusted_cas=cas, trusted_tsa_certs=tsas)


def _is_ca(certificate: x509.Certificate) -> bool:
    """RFC 5280 §4.2.1.9: only a certificate with basicConstraints CA:TRUE may issue others."""
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except (x509.ExtensionNotFound, ValueError):
        return False


def _no_trust_over_api(settings: LogSettings, trust: ContainerTrust | None) -> None:
    if settings.database is None and trust is not None:
        raise click.UsageError("trust options are for --database and files: a node verifies with its own")


# --- search ----------------------------------------------------------------------------------


@cli.command()
@_filter_options
@limit_option("Records")
@page_options(SEARCH_LISTING, "--offset")
@_json_option
@pass_settings
def search(settings: LogSettings, limit: int, page: int | None, as_json: bool, **filters: Any) -> None:
    """Records matching every filter given, newest first, one page (--limit, --page)."""
    query = _query(filters, limit, page)
    if settings.database is not None:
        answer = settings.inspector().search(query)
    else:
        answer = settings.admin.client().log_search(query.to_params())
    if as_json:
        echo_json(with_next_page(answer, SEARCH_LISTING, answer.get("next_offset")))
    else:
        click.echo(format_search(answer))
        echo_next_page(SEARCH_LISTING, answer.get("next_offset"))


# --- show ------------------------------------------------------------------------------------


@cli.command()
@click.argument("ident", metavar="ID")
@_trust_options
@_json_option
@pass_settings
def show(
    settings: LogSettings,
    ident: str,
    ca_files: Sequence[Path],
    tsa_files: Sequence[Path],
    globalconf: Path | None,
    anchor: Path | None,
    as_json: bool,
) -> None:
    """An exchange (by exchange id, or by message id): request and response side by side.

    Each record is verified: its place in the chain, its content, its signature and its
    timestamp. With --database, give trust anchors to check signatures and timestamps.
    """
    trust = load_trust(ca_files, tsa_files, globalconf, anchor)
    _no_trust_over_api(settings, trust)
    if settings.database is not None:
        answer = settings.inspector(trust).show(ident)
        if not answer["exchanges"]:
            raise click.ClickException(f"no record of {ident!r} in the message log")
    else:
        answer = settings.admin.client().log_show(ident)
    if as_json:
        echo_json(answer)
    else:
        click.echo(format_exchanges(answer))


# --- export ----------------------------------------------------------------------------------


@cli.command()
@click.argument("ident", metavar="[ID]", required=False)
@_filter_options
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_SEARCH_LIMIT),
    default=DEFAULT_SEARCH_LIMIT,
    show_default=True,
    help="With filters: export at most this many records.",
)
@page_options(SEARCH_LISTING, "--offset")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write the containers to (created if missing; files are never overwritten).",
)
@_json_option
@pass_settings
def export(
    settings: LogSettings,
    ident: str | None,
    limit: int,
    page: int | None,
    out_dir: Path,
    as_json: bool,
    **filters: Any,
) -> None:
    """ASiC-E containers, one per record, for an exchange or message ID, or for the records
    the filters find. Each container verifies offline (`xgate log verify FILE`)."""
    query = _query(filters, limit, page)
    if (ident is None) == (not query.has_filters):
        raise click.UsageError("name the records to export: an ID, or search filters, not both")
    next_position = None
    if ident is not None:
        if settings.database is not None:
            containers, failures, _ = settings.inspector().export(ident=ident)
        else:
            containers, failures = export_from_json(settings.admin.client().log_export({"id": ident}))
    else:
        containers, failures, next_position = _export_pages(settings, query)
    if not containers and not failures:
        raise click.ClickException("no records to export")
    written = _write_containers(out_dir, containers)
    rows = [{**c.entry, "file": str(path)} for c, path in zip(containers, written, strict=True)]
    if as_json:
        failed = [dataclasses.asdict(f) for f in failures]
        echo_json(with_next_page({"written": rows, "failures": failed}, SEARCH_LISTING, next_position))
    else:
        columns = (
            ("file", "file"),
            ("direction", "dir"),
            ("message_id", "message id"),
            ("logged_at", "logged at"),
        )
        click.echo(format_table(rows, columns, terminal_width()) if rows else "(no containers)")
    for row in rows:
        if not row.get("timestamped", True):
            click.echo(f"note: {row['file']} is not timestamped yet: export it again once it is", err=True)
    for failure in failures:
        click.echo(
            f"record {failure.seq} of node {failure.node} ({failure.message_id}): {failure.error}", err=True
        )
    if not as_json:
        echo_next_page(SEARCH_LISTING, next_position)
    if failures:
        raise click.ClickException(f"{len(failures)} records could not be exported")


def _export_pages(
    settings: LogSettings, query: SearchQuery
) -> tuple[list[ExportedContainer], list[ExportFailure], int | None]:
    """The records `query` finds, a few at a time (officer.MAX_EXPORT_PER_CALL: over the API each
    page is one audited call), with a progress line; and where the next page starts."""
    containers: list[ExportedContainer] = []
    failures: list[ExportFailure] = []
    offset, remaining = query.offset, query.limit
    next_position: int | None = None
    with Progress("exporting", query.limit, "records") as progress:
        while remaining > 0:
            chunk = min(remaining, MAX_EXPORT_PER_CALL)
            page = dataclasses.replace(query, limit=chunk, offset=offset)
            if settings.database is not None:
                found, failed, next_position = settings.inspector().export(query=page)
            else:
                answer = settings.admin.client().log_export(page.to_params())
                found, failed = export_from_json(answer)
                next_position = answer["next_offset"]
            containers += found
            failures += failed
            remaining -= len(found) + len(failed)
            progress.advance(len(found) + len(failed))
            if next_position is None:
                break
            offset = next_position
    return containers, failures, next_position


def _write_containers(directory: Path, containers: Sequence[ExportedContainer]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for container in containers:
        path = directory / Path(container.name).name  # a name from the API must not climb out
        try:
            with open(path, "xb") as handle:
                handle.write(container.data)
        except FileExistsError:
            raise click.ClickException(f"{path} exists: export into an empty directory") from None
        written.append(path)
    return written


# --- verify ----------------------------------------------------------------------------------


@cli.command()
@click.argument("paths", metavar="[PATH]...", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--node", help="Live log: only this node's chain.")
@click.option(
    "--allow-gaps",
    is_flag=True,
    help="Containers: accept runs that do not link up (a selection, or several nodes' chains).",
)
@click.option(
    "--heads",
    "head_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Live log: a file of signed log heads (the node's head file, or the witness's export); "
    "records missing after the newest head are reported as truncation. Repeatable.",
)
@click.option(
    "--witness",
    "witness_url",
    metavar="URL",
    help="Live log: also the newest heads the central registry witnessed (its distribution URL).",
)
@click.option(
    "--allow-unsigned-records",
    is_flag=True,
    help="Accept records without their gateway's record signature (logs written before it).",
)
@click.option(
    "--full",
    is_flag=True,
    help="Through the API: verify every chain from its start, not from where the node's last "
    "verification reached. (--database always verifies in full.)",
)
@_trust_options
@pass_settings
@click.pass_context
def verify(
    ctx: click.Context,
    settings: LogSettings,
    paths: Sequence[Path],
    node: str | None,
    allow_gaps: bool,
    head_files: Sequence[Path],
    witness_url: str | None,
    allow_unsigned_records: bool,
    full: bool,
    ca_files: Sequence[Path],
    tsa_files: Sequence[Path],
    globalconf: Path | None,
    anchor: Path | None,
) -> None:
    """Verify containers, archives, directories of them, or the live log.

    PATH: ASiC-E containers (.asice), archives (.zip), or directories holding either, checked
    with the trust anchors given; containers given together must link into their chain by
    prev_hash (gaps are reported; --allow-gaps accepts them). Without PATH: the log with
    --database (every chain, or --node's), or the node's own log through its API: there
    it runs as a job on the node (one at a time), going on from where the last verification
    reached unless --full, with a progress line on stderr. Exit status 0 when everything is
    valid, 1 when anything is not (one line per problem on stderr).
    """
    trust = load_trust(ca_files, tsa_files, globalconf, anchor)
    if paths:
        if trust is None:
            raise TrustUnavailable("no trust anchors to verify the files with")
        valid = _verify_paths(
            paths, trust, allow_gaps=allow_gaps, require_record_signature=not allow_unsigned_records
        )
    elif settings.database is not None:
        sources = [(path.name, path.read_bytes().splitlines()) for path in head_files]
        if witness_url is not None:
            for gateway in _gateways(settings, sources):
                sources.append((f"witness {witness_url}", fetch_witness_heads(witness_url, gateway)))
        heads = _newest_heads(sources, trust)
        answer = settings.inspector(trust).verify(
            node, heads=heads, require_record_signatures=not allow_unsigned_records
        )
        click.echo(format_verification(answer))
        valid = bool(answer["valid"]) and heads is not None
        if not valid:
            click.echo(f"first problem: {first_problem(answer)}", err=True)
    else:
        _no_trust_over_api(settings, trust)
        on_terminal = sys.stderr.isatty()
        job = settings.admin.client().log_verify(
            node, full=full, on_progress=_show_progress if on_terminal else None
        )
        if on_terminal:
            click.echo("\r\033[K", nl=False, err=True)
        if job["state"] != "done":
            raise click.ClickException(f"verification job {job['id']} failed: {job['error']}")
        answer = job["result"]
        click.echo(format_verification(answer))
        valid = bool(answer["valid"])
        for problem in job["problems"]:
            click.echo(f"problem: {problem}", err=True)
        if job["problem_count"] > len(job["problems"]):
            click.echo(f"... {job['problem_count']} problems in all", err=True)
    ctx.exit(0 if valid else 1)


def _show_progress(job: Mapping[str, Any]) -> None:
    """One line on a terminal's stderr, rewritten at each poll: records verified of how many, the rate."""
    done, total = job["records_verified"], job["records_total"]
    share = f" ({100 * done // total}%)" if total else ""
    line = f"verifying: {done:,} of {total:,} records{share}, {job['records_per_second']:,} records/s"
    click.echo(f"\r\033[K{line}", nl=False, err=True)


WITNESS_TIMEOUT_SECONDS: Final = 30.0
MAX_WITNESS_ANSWER_BYTES: Final = 16 * 1024 * 1024
"""Newest heads of one gateway: a few KB per node."""


def fetch_witness_heads(witness_url: str, gateway: str, node: str | None = None) -> list[bytes]:
    """The newest head line of each node of `gateway` that the registry witnessed."""
    import urllib.parse
    import urllib.request

    url = f"{witness_url.rstrip('/')}/heads/{urllib.parse.quote(gateway, safe='/')}"
    if node is not None:
        url += "?" + urllib.parse.urlencode({"node": node})
    if not url.startswith(("http://", "https://")):
        raise click.ClickException(f"--witness must be an http(s) URL, not {witness_url!r}")
    try:
        opened = urllib.request.urlopen(url, timeout=WITNESS_TIMEOUT_SECONDS)  # noqa: S310 (http(s), checked above)
        with opened as answer:
            body: bytes = answer.read(MAX_WITNESS_ANSWER_BYTES + 1)
    except OSError as exc:
        raise click.ClickException(f"the witness at {witness_url} did not answer: {exc}") from exc
    if len(body) > MAX_WITNESS_ANSWER_BYTES:
        raise click.ClickException("the witness's answer is too large")
    return body.splitlines()


def _gateways(settings: LogSettings, sources: Sequence[tuple[str, Sequence[bytes]]]) -> list[str]:
    """Whose heads to ask the witness for: --gateway, else every gateway the log or the files name."""
    if settings.gateway is not None:
        return [settings.gateway]
    from gateway.messagelog.db import begin_snapshot_read
    from gateway.messagelog.heads import HeadError, parse_head
    from gateway.messagelog.store import chain_states

    found: set[str] = set()
    with begin_snapshot_read(settings.inspector().engine) as connection:
        found.update(chain.gateway for chain in chain_states(connection))
    for _, lines in sources:
        for line in lines:
            with contextlib.suppress(HeadError):
                found.add(parse_head(line).head.gateway)
    if not found:
        raise click.ClickException("give --gateway: the log and the head files name no gateway")
    return sorted(found)


def _newest_heads(
    sources: Sequence[tuple[str, Sequence[bytes]]], trust: ContainerTrust | None
) -> dict[tuple[str, str], tuple[int, bytes, str]] | None:
    """The newest verified head of each chain in the files; None (and the reasons said) when a
    head line does not verify: a forged head is a finding, never silently skipped."""
    from gateway.messagelog.heads import newest_heads
    from gateway.messagelog.logsig import signed_by_owner
    from gateway.messagelog.officer import token_verifier

    found: dict[tuple[str, str], tuple[int, bytes, str]] = {}
    refused = False
    for name, lines in sources:
        newest, problems = newest_heads(
            lines,
            None if trust is None else trust.trusted_cas,
            verify_token=None if trust is None else token_verifier(trust),
            is_owner_cert=signed_by_owner,
        )
        for problem in problems:
            click.echo(f"{name}: {problem}", err=True)
            refused = True
        for key, signed in newest.items():
            if key not in found or signed.head.seq > found[key][0]:
                found[key] = (
                    signed.head.seq,
                    signed.head.record_hash,
                    f"{name} ({signed.head.time:%Y-%m-%dT%H:%M:%SZ})",
                )
    return None if refused else found


@cli.command("witness-heads")
@click.argument("witness_url", metavar="URL")
@click.argument("gateway", type=SERVER_ID)
@click.option("--node", help="Only this node's head.")
def witness_heads(witness_url: str, gateway: str, node: str | None) -> None:
    """Print the newest signed log head of each node of GATEWAY that the registry at URL keeps,
    one JSON line each (save them for `xgate log verify --heads FILE`)."""
    for line in fetch_witness_heads(witness_url, gateway, node):
        click.echo(line.decode("utf-8", errors="replace"))


def _verify_paths(
    paths: Sequence[Path], trust: ContainerTrust, *, allow_gaps: bool, require_record_signature: bool
) -> bool:
    """Archives as chained archives, containers one by one and then as links of their chain."""
    archives: list[Path] = []
    containers: list[Path] = []
    for path in paths:
        if path.is_dir():
            found_archives = sorted(path.glob(ARCHIVE_GLOB))
            found_containers = sorted(path.glob(CONTAINER_GLOB))
            if not found_archives and not found_containers:
                raise click.ClickException(
                    f"{path} holds no archives ({ARCHIVE_GLOB}) or containers ({CONTAINER_GLOB})"
                )
            archives += found_archives
            containers += found_containers
        elif _is_archive(path):
            archives.append(path)
        else:
            containers.append(path)
    valid = True
    if archives:
        valid = _verify_archives(archives, trust)
    if containers:
        valid = (
            _verify_containers(
                containers, trust, allow_gaps=allow_gaps, require_record_signature=require_record_signature
            )
            and valid
        )
    return valid


def _verify_containers(
    paths: Sequence[Path], trust: ContainerTrust, *, allow_gaps: bool, require_record_signature: bool
) -> bool:
    single = len(paths) == 1
    members: list[ChainMember] = []
    problems: list[str] = []
    with Progress("verifying", len(paths), "containers") as progress:
        for path in paths:
            report = _verify_container_file(path, trust, require_record_signature)
            if report is None:
                problems.append(
                    f"{path.name}: cannot be read as a container of at most {MAX_CONTAINER_BYTES} bytes"
                )
                progress.echo(f"{path.name}: INVALID: {problems[-1].split(': ', 1)[1]}")
            else:
                format_one = format_container_report if single else format_container_line
                progress.echo(format_one(path.name, report))
                _take_member(path, report, members, problems)
            progress.advance()
    if not single:
        links = link(members)
        click.echo(f"chain links: {len(members)} valid containers in {len(links.runs)} runs")
        for line in describe(links):
            click.echo(f"  {line}")
        problems += [f"fork: {fork}" for fork in links.forks]
        if not allow_gaps:
            problems += [f"gap before {gap.before.name} (give --allow-gaps to accept)" for gap in links.gaps]
    if single and problems:
        click.echo(f"first problem: {problems[0].split(': ', 1)[1]}", err=True)
    else:
        for problem in problems:
            click.echo(f"problem: {problem}", err=True)
    return not problems


def _take_member(
    path: Path, report: ContainerReport, members: list[ChainMember], problems: list[str]
) -> None:
    """A valid container joins the chain to link; an invalid one adds its first problem."""
    if not report.valid:
        problems.append(f"{path.name}: {report.problems[0]}")
    elif report.record is not None and report.record_hash is not None and report.prev_hash is not None:
        members.append(
            ChainMember(
                path.name,
                str(report.record.get("gateway")),
                str(report.record.get("logged_at")),
                report.prev_hash,
                report.record_hash,
            )
        )


def _verify_container_file(
    path: Path, trust: ContainerTrust, require_record_signature: bool
) -> ContainerReport | None:
    """The report for one file; None when it cannot even be read (too large, unreadable)."""
    try:
        if path.stat().st_size > MAX_CONTAINER_BYTES:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    return trust.verify(data, require_record_signature=require_record_signature)


def _is_archive(path: Path) -> bool:
    """An archive holds index.json; a container's first entry is mimetype (asice.py)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return "index.json" in archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def _verify_archives(paths: Sequence[Path], trust: ContainerTrust) -> bool:
    with Progress("verifying", len(paths), "archives") as progress:
        report = verify_archive_chain(paths, trust=trust, checked=lambda path: progress.advance())
    for archive in report.archives:
        state = "valid" if not archive.problems else "INVALID"
        click.echo(f"{archive.path.name}: {state} ({archive.containers} containers, sha256 {archive.sha256})")
        for problem in archive.problems:
            click.echo(f"  {problem}")
    if not report.valid:
        click.echo(f"first problem: {report.problems[0]}", err=True)
    return report.valid


# --- text for people -------------------------------------------------------------------------

_SEARCH_COLUMNS: Final = (
    ("logged_at", "logged at"),
    ("node", "node"),
    ("seq", "seq"),
    ("side", "side"),
    ("direction", "dir"),
    ("message_id", "message id"),
    ("client", "client"),
    ("service", "service"),
    ("user_id", "user"),
    ("outcome", "outcome"),
)

_SHOWN_FIELDS: Final = (
    ("message_id", "message id"),
    ("logged_at", "logged at"),
    ("node", "node"),
    ("seq", "seq"),
    ("kind", "kind"),
    ("client", "client"),
    ("service", "service"),
    ("user_id", "user id"),
    ("issue", "issue"),
    ("represented_party", "represented party"),
    ("outcome", "outcome"),
    ("fault_detail", "fault detail"),
    ("content_type", "content type"),
    ("message_sha256", "message sha256"),
    ("manifest_sha256", "manifest sha256"),
    ("record_hash", "record hash"),
    ("archive", "archive"),
)


def format_search(answer: Mapping[str, Any]) -> str:
    records = answer["records"]
    if not records:
        return "(no records)"
    return format_table(records, _SEARCH_COLUMNS, terminal_width())


def format_exchanges(answer: Mapping[str, Any]) -> str:
    """`show`'s answer: per exchange, request and response side by side, then their bodies."""
    exchanges = answer["exchanges"]
    if not exchanges:
        return f"no record of {answer['id']!r}"
    trusted = bool(answer.get("verified_with_trust", True))
    text = "\n\n".join(_format_exchange(exchange, trusted) for exchange in exchanges)
    if not trusted:
        text += "\n\n(no trust anchors: signatures and timestamp tokens were not checked)"
    return text


def _format_exchange(exchange: Mapping[str, Any], trusted: bool) -> str:
    request, response = exchange["request"], exchange["response"]
    first = request or response or exchange["other"][0]
    lines = [f"exchange {exchange['exchange_id']} ({first['side']} side of {first['gateway']})"]
    rows: list[tuple[str, str, str]] = [("", "REQUEST", "RESPONSE")]
    rows += [(title, _value(request, key), _value(response, key)) for key, title in _SHOWN_FIELDS]
    rows += [(step, _verdict(request, step), _verdict(response, step)) for step in STEPS]
    rows.append(("verdict", _overall(request, trusted), _overall(response, trusted)))
    label_width = max(len(label) for label, _, _ in rows)
    for label, left, right in rows:
        lines += _side_by_side(label, label_width, left, right)
    for record in (request, response, *exchange["other"]):
        if record is not None:
            lines += ["", *_format_body(record)]
    return "\n".join(lines)


def _value(record: Mapping[str, Any] | None, key: str) -> str:
    if record is None:
        return "(none)"
    value = record.get(key)
    return "-" if value is None else str(value)


def _verdict(record: Mapping[str, Any] | None, step: str) -> str:
    return "" if record is None else str(record["verification"][step])


def _overall(record: Mapping[str, Any] | None, trusted: bool) -> str:
    if record is None:
        return ""
    if not record["verification"]["valid"]:
        return "INVALID"
    return "VALID" if trusted else "no problem found (signature and token not checked)"


def _side_by_side(label: str, label_width: int, left: str, right: str) -> list[str]:
    left_lines = textwrap.wrap(left, COLUMN_WIDTH, break_on_hyphens=False) or [""]
    right_lines = textwrap.wrap(right, COLUMN_WIDTH, break_on_hyphens=False) or [""]
    return [
        f"{(label if index == 0 else '').ljust(label_width)}  {a.ljust(COLUMN_WIDTH)}  {b}".rstrip()
        for index, (a, b) in enumerate(zip_longest(left_lines, right_lines, fillvalue=""))
    ]


def _format_body(record: Mapping[str, Any]) -> list[str]:
    lines = [f"--- {record['direction']} (node {record['node']}, record {record['seq']})"]
    head = record.get("rest_head")
    if isinstance(head, dict):
        if "method" in head:
            query = f"?{head['query']}" if head.get("query") else ""
            lines.append(f"{head['method']} {head['path']}{query}")
        elif "status" in head:
            lines.append(f"status {head['status']}")
        lines += [f"{name}: {value}" for name, value in head.get("headers", [])]
        lines.append("")
    elif head is not None:
        lines.append(str(head))
    body = record["body"]
    if body["state"] == "not_logged":
        lines.append("(body not logged: body logging was off; its digest is above)")
    elif body["state"] == "encrypted":
        lines.append("(body encrypted at rest: give --body-keys to read it)")
    else:
        lines.append(body["preview"])
        if body["truncated"]:
            lines.append(f"... ({body['size']} bytes in all; export the record for the whole body)")
    return lines


def format_verification(answer: Mapping[str, Any]) -> str:
    """A live verification's answer: one line per chain, and the first problem of a bad one."""
    if not answer["chains"]:
        return "no chains to verify"
    lines = []
    for chain in answer["chains"]:
        name = f"{chain['gateway']} node {chain['node']}"
        bad = chain["first_bad"]
        if bad is None:
            counts = (
                f"{chain['checked']} records, {chain['signatures_verified']} signatures, "
                f"{chain['tokens_verified']} timestamps, {chain['unstamped']} not yet stamped"
            )
            if chain.get("legacy_records"):
                legacy = chain["legacy_records"]
                counts += f"; warning: {legacy} older than logged_parts, their completeness unknown"
            lines.append(f"{name}: valid ({counts})")
        else:
            lines.append(f"{name}: INVALID at record {bad['seq']} ({bad['problem']}): {bad['reason']}")
            lines.append(f"  the {chain['checked']} records before it check out")
        if chain.get("first_seq", 1) > 1:
            lines.append(
                f"  (checked from record {chain['first_seq']}: purged, or verified before, up to it)"
            )
    lines += [f"INVALID: {problem}" for problem in answer.get("problems") or ()]
    return "\n".join(lines)


def format_container_report(name: str, report: ContainerReport) -> str:
    """Every step verify_container took, and what a valid container proves."""
    lines = [f"{name}: {'valid' if report.valid else 'INVALID'}"]
    lines += [f"  {'ok ' if c.passed else 'BAD'} {c.name}: {c.detail}" for c in report.checks]
    if report.valid and report.record is not None:
        record = report.record
        lines.append(
            f"  {record.get('direction')} {record.get('message_id')!r} of {record.get('client')} "
            f"to {record.get('service')}, logged {record.get('logged_at')} by {record.get('gateway')}"
        )
    lines += [f"  {warning}" for warning in report.warnings]
    return "\n".join(lines)


def format_container_line(name: str, report: ContainerReport) -> str:
    """One container among many: its verdict, and its first problem or what it proves."""
    if not report.valid:
        return f"{name}: INVALID: {report.problems[0]}"
    record = report.record or {}
    signer = report.signer_member or "nobody (an unsigned fault)"
    stamped = report.timestamped_at.isoformat() if report.timestamped_at else "not stamped"
    warning = f" ({report.warnings[0]})" if report.warnings else ""
    what = f"{record.get('direction')} {record.get('message_id')!r}"
    return f"{name}: valid: {what} signed by {signer}, stamped {stamped}{warning}"
