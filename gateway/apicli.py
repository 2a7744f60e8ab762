"""What xgate's management command lines share: where the API is, its key, how it is called,
and how answers print.

`xgate admin` (a gateway's API), `xgate central` (the registry's) and `xgate log` (a gateway's,
for the security officer) talk to a JSON API with an API key, through :class:`JsonApiClient`.
The key is never a command-line argument (arguments end up in shell history and in `ps`): it
is read from an environment variable, or asked for without echo. Answers print as a table for
people, or as JSON. Identifiers are written in their text form INSTANCE/CLASS/MEMBER[/...]
everywhere, URL-encoded into paths (:func:`path_segment`).
"""

from __future__ import annotations

import abc
import base64
import binascii
import datetime as dt
import functools
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TextIO, TypeVar, cast
from urllib.parse import quote

import click
import requests

from gateway.ids import ClientId, IdentifierError, SecurityServerId, ServiceId, slash_form
from gateway.timetext import TimeTextError, parse_when
from gateway.webapi.types import DEFAULT_PAGE, MAX_PAGE

_F = TypeVar("_F", bound=Callable[..., Any])
_C = TypeVar("_C")

Columns = Sequence[tuple[str, str]]
"""(field of the API's answer, column title)."""


GATEWAY_API_URL: Final = "http://127.0.0.1:5588"
"""A gateway's management API: the admin listener of config/gateway.example.toml."""
GATEWAY_API_URL_ENV: Final = "XGATE_ADMIN_URL"
GATEWAY_API_KEY_ENV: Final = "XGATE_API_KEY"

API_PREFIX: Final = "/api/v1"

DEFAULT_TIMEOUT_SECONDS: Final = 60.0
"""Registering a large WSDL fetched by URL takes the gateway up to 30 s to fetch, then parsing."""


# --- calling the API ----------------------------------------------------------------------------


class ApiCallError(Exception):
    """The API answered with an error (or something that is not the API answered at all)."""

    def __init__(
        self, status: int, code: str, message: str, where: str = "", warnings: Sequence[Any] = ()
    ) -> None:
        super().__init__(f"{where + ': ' if where else ''}{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.where = where  # "METHOD URL" of the call that failed
        self.warnings = list(warnings)  # what to acknowledge before repeating ({"code", "message"})


def json_answer(response: requests.Response, error: type[ApiCallError] = ApiCallError) -> Any:
    """The decoded JSON of an xgate API's answer; `error` for an error answer (its JSON error's
    code and message when it has one) or for one that is not JSON."""
    where = f"{response.request.method} {response.url}" if response.request is not None else response.url
    try:
        body = response.json()
    except ValueError:
        raise error(
            response.status_code, "not_json", f"the answer is not JSON: {response.text[:200]!r}", where
        ) from None
    if response.status_code >= 400:
        if isinstance(body, dict):
            warnings = body.get("warnings")
            raise error(
                response.status_code,
                str(body.get("error")),
                str(body.get("message")),
                where,
                warnings if isinstance(warnings, list) else (),
            )
        raise error(response.status_code, "error", str(body), where)
    return body


def path_segment(value: str) -> str:
    """`value` (an identifier's text form, a code, a name) as one URL path segment."""
    return quote(value, safe="")


class JsonApiClient:
    """A JSON management API at `base_url`, called with `api_key` (X-Road's Authorization form)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.trust_env = False  # management listeners are local: never through a proxy
        if api_key is not None:
            self.session.headers["Authorization"] = f"X-Road-ApiKey token={api_key}"

    def request(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        """Call `path` (absolute, e.g. /api/v1/keys); the decoded answer (None for 204), or ApiCallError."""
        response = self.session.request(
            method,
            self.base_url + path,
            json=json,
            params=params,
            timeout=self.timeout,
            allow_redirects=False,
        )
        if response.status_code == 204:
            return None
        return json_answer(response)

    def _api(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, API_PREFIX + path, **kwargs)

    def health(self) -> dict[str, Any]:
        response = self.session.get(self.base_url + "/health", timeout=self.timeout)
        result: dict[str, Any] = response.json()
        return result

    def openapi(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/api/openapi.json")
        return result


# --- identifiers on the command line -------------------------------------------------------------


class IdentifierType(click.ParamType):
    """An identifier typed in its text form or X-Road's colon form (`DEV:GOV:1001`), checked
    and passed on in the one text form, so every answer and message shows it the same way."""

    def __init__(self, parse: Callable[[str], Any], form: str, parts: tuple[int, ...] | None = None) -> None:
        self._parse = parse
        self.name = form
        self._parts = parts

    def identifier(self, text: str) -> Any:
        """The identifier object of a value this type has already checked (its one text form)."""
        return self._parse(text)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = slash_form(str(value))
        if self._parts is not None and text.count("/") + 1 not in self._parts:
            self.fail(f"{value!r} is not of the form {self.name}", param, ctx)
        try:
            return str(self._parse(text).to_text())
        except IdentifierError as error:
            hint = "" if self.name in error.message else f"; write {self.name}"
            self.fail(f"{error.message}{hint}", param, ctx)


CLIENT_ID: Final = IdentifierType(ClientId.from_text, "INSTANCE/CLASS/MEMBER[/SUBSYSTEM]")
MEMBER_ID: Final = IdentifierType(ClientId.from_text, "INSTANCE/CLASS/MEMBER", (3,))
SUBSYSTEM_ID: Final = IdentifierType(ClientId.from_text, "INSTANCE/CLASS/MEMBER/SUBSYSTEM", (4,))
SERVER_ID: Final = IdentifierType(SecurityServerId.from_text, "INSTANCE/CLASS/MEMBER/SERVER")
SERVICE_ID: Final = IdentifierType(
    lambda text: ServiceId.from_text(text, has_subsystem=text.count("/") >= 4),
    "INSTANCE/CLASS/MEMBER[/SUBSYSTEM]/SERVICE[/VERSION]",
    (4, 5, 6),
)
"""A service with or without a subsystem and a version: five parts read as a subsystem's
service without a version (the common case, and every REST service)."""


# --- where the API is, and its key ---------------------------------------------------------------


def api_key_from_env(variable: str) -> str:
    """The API key in environment variable `variable`, or asked for without echo when it is unset."""
    return os.environ.get(variable) or click.prompt(f"API key ({variable} is not set)", hide_input=True)


@dataclass
class ApiSettings(abc.ABC, Generic[_C]):
    """Where the API is and where its key comes from; the client is made on first use, so commands
    that need no API never ask for a key."""

    url: str
    key_env: str
    _client: _C | None = None

    def client(self) -> _C:
        if self._client is None:
            self._client = self._connect(self.url, api_key_from_env(self.key_env))
        return self._client

    @abc.abstractmethod
    def _connect(self, url: str, key: str) -> _C:
        """The API client for this CLI (admin or registry)."""


class RenamingGroup(click.Group):
    """A group whose commands keep their old names for a release after a rename: hidden from
    --help, still run, with a note on stderr naming the new one. Its subgroups are of its class."""

    group_class = type

    def __init__(self, *args: Any, renamed: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.renamed = dict(renamed or {})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        new_name = self.renamed.get(cmd_name)
        if new_name is not None and new_name != cmd_name:
            note = f"note: `{cmd_name}` is now `{new_name}`; the old name goes in a later release"
            click.echo(note, err=True)
            cmd_name = new_name
        return super().get_command(ctx, cmd_name)


class ApiGroup(RenamingGroup):
    """Turns the API's errors and connection failures into one line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ApiCallError as error:
            settings = ctx.find_object(ApiSettings)  # type: ignore[type-abstract]
            raise click.ClickException(explain(error, settings.key_env if settings else None)) from None
        except requests.ConnectionError:
            settings = ctx.find_object(ApiSettings)  # type: ignore[type-abstract]
            where = settings.url if settings else "the management API"
            raise click.ClickException(f"cannot connect to {where}: is the node running?") from None
        except requests.RequestException as error:
            raise click.ClickException(f"request failed: {error}") from None
        except IdentifierError as error:
            raise click.ClickException(error.message) from None


def explain(error: ApiCallError, key_env: str | None) -> str:
    """One line: what was tried, what the API said, and what to do about it."""
    said = f"{error.where}: {error.status} {error.code}: {error.message}" if error.where else str(error)
    if error.status == 401:
        return f"{said}\n  the API key was refused: check the key in ${key_env or 'your key variable'}"
    if error.status == 403:
        return f"{said}\n  the key's role may not do this: use a key with the role this needs"
    if error.status == 404 and error.message in {"Not Found", "None"}:
        return (
            f"{said}\n  no such endpoint there: is --url the right API (a gateway's management API "
            "for `xgate admin`/`xgate log`, the registry's for `xgate central`), and is the node new enough?"
        )
    if error.code == "not_json":
        return f"{said}\n  that is not an xgate API: check --url"
    return said


def api_options(*, url_env: str, default_url: str, default_key_env: str, url_help: str) -> Callable[[_F], _F]:
    """The group options `--url` (or `url_env`) and `--api-key-env` naming the key's variable."""

    def decorate(function: _F) -> _F:
        with_key: _F = click.option(
            "--api-key-env",
            "key_env",
            default=default_key_env,
            show_default=True,
            metavar="VAR",
            help="Environment variable holding the API key; asked for when it is unset. "
            "Keys are never arguments.",
        )(function)
        with_url: _F = click.option(
            "--url", envvar=url_env, default=default_url, show_default=True, help=url_help
        )(with_key)
        return with_url

    return decorate


# --- output ------------------------------------------------------------------------------------------


def limit_option(what: str) -> Callable[[_F], _F]:
    """`--limit`: `what` per page, in the range and with the default every listing of the APIs has."""
    return click.option(
        "--limit",
        type=click.IntRange(1, MAX_PAGE),
        default=DEFAULT_PAGE,
        show_default=True,
        help=f"{what} per page (1..{MAX_PAGE}).",
    )


def _page_text(listing: str, position: int) -> bytes:
    return f"{listing}:{position}".encode("ascii")


def page_token(listing: str, position: int) -> str:
    """The token `--page` takes to go on from `position` of `listing` (opaque to people: each
    listing pages by its own means, an offset or the last id seen, and may change it)."""
    return base64.urlsafe_b64encode(_page_text(listing, position)).decode("ascii").rstrip("=")


def page_position(listing: str, token: str) -> int:
    """The position a token of `listing` names; a usage error for any other text."""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        text = ""
    name, _, position = text.rpartition(":")
    if name != listing or not position.isdigit():
        other = f" (it is a page of `{name}`)" if name and position.isdigit() else ""
        raise click.BadParameter(
            f"{token!r} is not a page token of `{listing}`{other}: give the one `next page:` printed",
            param_hint="--page",
        )
    return int(position)


def page_options(listing: str, legacy: str) -> Callable[[_F], _F]:
    """`--page TOKEN` (the one way every listing pages) passed as `page`: the position it names,
    or None for the first page. `legacy` (e.g. `--offset`), the listing's own option before,
    still works for a release, hidden, with a note on stderr."""

    def decorate(function: _F) -> _F:
        @functools.wraps(function)
        def merged(*args: Any, page: int | None, legacy_position: int | None, **kwargs: Any) -> Any:
            if legacy_position is not None:
                if page is not None:
                    raise click.UsageError(f"give --page, not {legacy} too")
                click.echo(f"note: {legacy} is deprecated: use --page TOKEN as `next page:` says", err=True)
                page = legacy_position
            return function(*args, page=page, **kwargs)

        hidden = click.option(legacy, "legacy_position", type=click.IntRange(min=0), hidden=True)
        token = click.option(
            "--page",
            metavar="TOKEN",
            callback=lambda ctx, param, value: None if value is None else page_position(listing, value),
            help="Go on from where the last page ended: the token it printed after `next page:`.",
        )
        return cast(_F, token(hidden(merged)))

    return decorate


def echo_next_page(listing: str, position: int | None) -> None:
    """After a page, on stderr (a script's output stays the listing): how to ask for the next one."""
    if position is not None:
        click.echo(f"next page: --page {page_token(listing, position)}", err=True)


def with_next_page(answer: Mapping[str, Any], listing: str, position: int | None) -> dict[str, Any]:
    """A page's JSON with `next_page`, the token for `--page` (null on the last page)."""
    return {**answer, "next_page": None if position is None else page_token(listing, position)}


def json_option(function: _F) -> _F:
    decorated: _F = click.option("--json", "as_json", is_flag=True, help="Print the API's JSON answer.")(
        function
    )
    return decorated


def confirmed(question: str | Callable[[Mapping[str, Any]], str]) -> Callable[[_F], _F]:
    """A destructive command's `--yes`; without it, `question` (formatted with, or made from, the
    command's parameters) is asked first, and anything but yes aborts. Every command that removes, revokes
    or purges takes this, so none of them destroys on a slip of the keyboard."""

    def decorate(function: _F) -> _F:
        @functools.wraps(function)
        def ask_first(*args: Any, yes: bool, **kwargs: Any) -> Any:
            if not yes:
                text = question.format(**kwargs) if isinstance(question, str) else question(kwargs)
                click.confirm(text, abort=True)
            return function(*args, **kwargs)

        option = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
        return cast(_F, option(ask_first))

    return decorate


PROGRESS_INTERVAL_SECONDS: Final = 0.2
"""Between redraws of a progress line: smooth to the eye, and no cost when items are fast."""


class Progress:
    """A line on stderr saying how far a long operation is (`exporting: 40/100 records`), drawn
    over itself. Only when stderr is a terminal: piped or logged, it stays silent, so a script's
    output and an operator's log hold the results only. Lines the operation prints meanwhile go
    through :meth:`echo`, which clears the progress line first."""

    def __init__(
        self, what: str, total: int | None = None, unit: str = "", *, stream: TextIO | None = None
    ) -> None:
        self.what, self.total, self.unit = what, total, unit
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        self.enabled = stream is not None or self._stream.isatty()
        self._shown = 0  # characters on the line now
        self._drawn_at = 0.0

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if self.enabled and (now - self._drawn_at >= PROGRESS_INTERVAL_SECONDS or self.done == self.total):
            self._drawn_at = now
            self._draw(self.text())

    def text(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if self.total:
            return f"{self.what}: {self.done}/{self.total}{unit} ({100 * self.done // self.total}%)"
        return f"{self.what}: {self.done}{unit}"

    def echo(self, message: str, err: bool = False) -> None:
        """Print a line of the operation's own, on a clean line."""
        self.clear()
        click.echo(message, err=err)

    def clear(self) -> None:
        if self._shown:
            self._draw("")

    def _draw(self, text: str) -> None:
        self._stream.write("\r" + text.ljust(self._shown) + ("\r" if not text else ""))
        self._stream.flush()
        self._shown = len(text)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.clear()


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def cell(value: Any) -> str:
    """A value as a table cell: '-' for nothing, yes/no, lists joined by commas."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(cell(item) for item in value) or "-"
    if isinstance(value, dict):  # e.g. an endpoint: "GET /pets/*"
        return " ".join(cell(item) for item in value.values())
    return str(value)


MIN_COLUMN_WIDTH: Final = 8
"""A column is never cut narrower than this (or its title): identifiers stay recognisable."""


def format_table(rows: Sequence[Mapping[str, Any]], columns: Columns, width: int | None = None) -> str:
    """Rows as left-aligned columns under a header line, within `width` characters when given
    (the terminal's, see `terminal_width`): the widest columns are cut, with "…", until it fits."""
    table = [[title.upper() for _, title in columns]]
    table += [[cell(row.get(field)) for field, _ in columns] for row in rows]
    widths = [max(len(line[index]) for line in table) for index in range(len(columns))]
    if width is not None:
        widths = fit_widths(widths, [len(title) for title in table[0]], width)
    return "\n".join(
        "  ".join(_cut(text, w).ljust(w) for text, w in zip(line, widths, strict=True)).rstrip()
        for line in table
    )


def fit_widths(widths: Sequence[int], floors: Sequence[int], width: int, gap: int = 2) -> list[int]:
    """Column widths summing (with gaps) to at most `width`, taking from the widest first and
    never below each column's floor (its title, or MIN_COLUMN_WIDTH)."""
    fitted = list(widths)
    minimum = [min(w, max(floor, MIN_COLUMN_WIDTH)) for w, floor in zip(widths, floors, strict=True)]
    excess = sum(fitted) + gap * (len(fitted) - 1) - width
    while excess > 0:
        index = max(range(len(fitted)), key=lambda i: fitted[i] - minimum[i])
        if fitted[index] <= minimum[index]:
            break  # nothing left to cut: the terminal wraps
        fitted[index] -= 1
        excess -= 1
    return fitted


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def terminal_width() -> int | None:
    """The terminal's width when standard output is one; None when piped (keep every character)."""
    if not sys.stdout.isatty():
        return None
    return shutil.get_terminal_size().columns


def emit(
    result: Any,
    as_json: bool,
    columns: Columns | None = None,
    message: str | None = None,
    *,
    show: Callable[[Any], str] = cell,
) -> None:
    """Print `result`: JSON, a table (lists), field: value lines (objects, each value by `show`),
    or `message`."""
    if as_json:
        echo_json(result)
    elif message is not None:
        click.echo(message)
    elif isinstance(result, list):
        click.echo(format_table(result, columns or (), terminal_width()) if result else "(none)")
    elif isinstance(result, dict):
        fields = [field for field, _ in columns] if columns else list(result)
        for field in fields:
            click.echo(f"{field}: {show(result.get(field))}")


def done(as_json: bool, message: str) -> None:
    """For operations answering nothing (204)."""
    emit({"status": "ok", "message": message}, as_json, message=message)


def rfc3339(text: str | None) -> str | None:
    """A time as the API takes it (RFC 3339 with its zone) from what was typed: ISO 8601, UTC
    when no zone is written, or relative (`2h`, `yesterday`: gateway.timetext)."""
    if text is None:
        return None
    try:
        return parse_when(text, dt.datetime.now(dt.UTC)).isoformat()
    except TimeTextError as exc:
        raise click.BadParameter(str(exc)) from None


def audit_chain_text(report: dict[str, Any]) -> str:
    """One line on the audit chain, for people."""
    if report["ok"]:
        before = f" ({report['unchained']} from before the chain)" if report.get("unchained") else ""
        return f"audit log valid: {report['checked']} chained entries{before}, head {report['head_hash']}"
    return f"audit log INVALID at entry {report['first_bad_id']}: {report['problem']}"


def audit_options(listing: str, action_example: str) -> Callable[[_F], _F]:
    """`audit`'s options, the same on every API: filters, --verify, --limit, --page."""
    options = [
        limit_option("Entries"),
        page_options(listing, "--before-id"),
        click.option("--actor", help="Only this actor (NAME#ID, or anonymous)."),
        click.option("--action", help=f"Only this action, e.g. {action_example}."),
        click.option(
            "--since",
            callback=lambda ctx, param, value: rfc3339(value),
            help="Only entries at or after this time: ISO 8601 (UTC unless it names a zone), or 2h, 7d, "
            "yesterday.",
        ),
        click.option(
            "--verify", is_flag=True, help="Check the audit log's hash chain instead; exit 1 if broken."
        ),
    ]

    def decorate(function: _F) -> _F:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate
