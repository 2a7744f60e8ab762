"""What xgate's management command lines share: where the API is, its key, and how answers print.

`xgate admin` (a gateway's API), `xgate central` (the registry's) and `xgate log` (a gateway's,
for the security officer) talk to a JSON API with an API key. The key is never a command-line
argument (arguments end up in shell history and in `ps`): it is read from an environment
variable, or asked for without echo. Answers print as a table for people, or as JSON.
"""

from __future__ import annotations

import abc
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import click

_F = TypeVar("_F", bound=Callable[..., Any])
_C = TypeVar("_C")

Columns = Sequence[tuple[str, str]]
"""(field of the API's answer, column title)."""


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


def json_option(function: _F) -> _F:
    decorated: _F = click.option("--json", "as_json", is_flag=True, help="Print the API's JSON answer.")(
        function
    )
    return decorated


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


def format_table(rows: Sequence[Mapping[str, Any]], columns: Columns) -> str:
    """Rows as left-aligned columns under a header line."""
    table = [[title.upper() for _, title in columns]]
    table += [[cell(row.get(field)) for field, _ in columns] for row in rows]
    widths = [max(len(line[index]) for line in table) for index in range(len(columns))]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in table
    )


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
        click.echo(format_table(result, columns or ()) if result else "(none)")
    elif isinstance(result, dict):
        fields = [field for field, _ in columns] if columns else list(result)
        for field in fields:
            click.echo(f"{field}: {show(result.get(field))}")


def done(as_json: bool, message: str) -> None:
    """For operations answering nothing (204)."""
    emit({"status": "ok", "message": message}, as_json, message=message)
