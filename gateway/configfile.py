"""What the gateway's and the registry's TOML files share: strict typed models, loading, one-line errors.

Each file is read into pydantic models shaped like the file itself (one model per table),
which refuse unknown keys and wrong types; gateway.config and gateway.central.config then
build the values the rest of the code uses.  Every mistake becomes one ConfigError whose
message names the key's full path (`limits.max_mesage_bytes: unknown key`), so a command
that reads a file can print it as one line and exit.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
)
from pydantic_core import PydanticCustomError
from sqlalchemy.engine import make_url

from gateway.ids import IdentifierError
from gateway.logsetup import LogFormat, LogLevel, LogSettings

LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "::1", "localhost"})
"""DESIGN.md: management interfaces listen on the machine itself only."""

_BASE: Final = "base"
"""Validation-context key: the directory relative paths are resolved against."""


class ConfigError(ValueError):
    """A configuration file is missing something or holds a wrong value; the message is one line."""


class FileModel(BaseModel):
    """One table of a TOML file: no unknown keys, no silent type coercion ("30" is not 30)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class LoggingSection(FileModel):
    """How the server logs (docs/logging.md); XGATE_LOG_LEVEL and XGATE_LOG_FORMAT override it."""

    format: LogFormat = "text"
    level: LogLevel = "INFO"
    levels: dict[str, LogLevel] = Field(default_factory=dict)
    """Per logger and the loggers beneath it, e.g. {"gateway.proxy" = "DEBUG"}."""

    def settings(self) -> LogSettings:
        return LogSettings(self.format, self.level, dict(self.levels))


@dataclass(frozen=True)
class Listener:
    host: str
    port: int


# --- field types ----------------------------------------------------------------------------


def _resolve_path(value: object, info: ValidationInfo) -> Path:
    if not isinstance(value, str) or not value:
        raise PydanticCustomError("path", "must be a path (a non-empty string)")
    path = Path(value).expanduser()
    base = info.context.get(_BASE) if isinstance(info.context, dict) else None
    return path if path.is_absolute() or base is None else Path(base) / path


FilePath = Annotated[Path, BeforeValidator(_resolve_path)]
"""A path in the file: relative ones are taken relative to the file's own directory."""


def _port(value: int) -> int:
    if not 0 <= value <= 65535:
        raise PydanticCustomError("port", "must be a port number (0..65535), not {value}", {"value": value})
    return value


Port = Annotated[int, AfterValidator(_port)]


def _positive(value: float) -> float:
    if not value > 0:
        raise PydanticCustomError("positive", "must be greater than 0, not {value}", {"value": value})
    return value


def _not_negative(value: float) -> float:
    if value < 0:
        raise PydanticCustomError("not_negative", "must be 0 or more, not {value}", {"value": value})
    return value


Seconds = Annotated[float, AfterValidator(_positive)]
"""A duration, timeout or interval: more than zero."""
Positive = Annotated[int, AfterValidator(_positive)]
"""A size or a count: a whole number more than zero."""
NonNegativeSeconds = Annotated[float, AfterValidator(_not_negative)]
"""A window that may be switched off with 0."""
NonNegativeInt = Annotated[int, AfterValidator(_not_negative)]
"""A size that may be switched off with 0."""


def _percent(value: float) -> float:
    if not 0 <= value < 100:
        raise PydanticCustomError(
            "percent", "must be a percentage (0 or more, below 100), not {value}", {"value": value}
        )
    return value


Percent = Annotated[float, AfterValidator(_percent)]
"""A share of something, in percent; 0 switches it off."""


def _loopback(value: str) -> str:
    if value not in LOOPBACK_HOSTS:
        raise PydanticCustomError(
            "loopback",
            "must be a loopback address (127.0.0.1, ::1, localhost), not {value}",
            {"value": value},
        )
    return value


LoopbackHost = Annotated[str, AfterValidator(_loopback)]


def _database_url(value: str, info: ValidationInfo) -> str:
    """The URL, with a relative SQLite path taken relative to the file, like every other path here."""
    try:
        url = make_url(value)
        url.get_dialect()  # an unknown database kind is a mistake in the file, not at first use
    except Exception as exc:  # ArgumentError, NoSuchModuleError, and ValueError for bad ports
        raise PydanticCustomError("database_url", "{error}", {"error": str(exc)}) from None
    base = info.context.get(_BASE) if isinstance(info.context, dict) else None
    if base is not None and url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        database = Path(str(url.database)).expanduser()
        if not database.is_absolute():
            return url.set(database=str(Path(base) / database)).render_as_string(hide_password=False)
    return value


DatabaseUrl = Annotated[str, AfterValidator(_database_url)]
"""An SQLAlchemy URL; a relative SQLite file is relative to the file's directory."""

_Parsed = TypeVar("_Parsed")


def identifier(parse: Callable[[str], _Parsed]) -> BeforeValidator:
    """A field holding an identifier in text form, parsed with `parse` (ids.ClientId.from_text ...)."""

    def validate(value: object) -> _Parsed:
        if not isinstance(value, str):
            raise PydanticCustomError("identifier", "must be a string")
        try:
            return parse(value)
        except IdentifierError as exc:
            raise PydanticCustomError("identifier", "{message}", {"message": exc.message}) from None

    return BeforeValidator(validate)


# --- loading and errors ---------------------------------------------------------------------

_Model = TypeVar("_Model", bound=BaseModel)

_TYPE_NAMES: Final = {
    "string_type": "a string",
    "int_type": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "list_type": "an array",
    "tuple_type": "an array",
    "model_type": "a table",
    "dict_type": "a table",
    "model_attributes_type": "a table",
}


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _table_model(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model of the table at `loc` (list items and optional tables looked through), if any."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part)
        if field is None:
            return None
        current = _table_in(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _table_in(annotation: Any) -> Any:
    """`X`, `X | None` and `list[X]` all hold tables of X."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in getattr(annotation, "__args__", ()):
        if isinstance(argument, type) and issubclass(argument, BaseModel):
            return argument
    return annotation


def _suggestion(model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    table = _table_model(model, loc[:-1])
    if table is None or not isinstance(loc[-1], str):
        return ""
    close = difflib.get_close_matches(loc[-1], list(table.model_fields), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def error_line(exc: ValidationError, model: type[BaseModel]) -> str:
    """One of pydantic's errors as one line that names the key's full path.

    An unknown key comes first: a misspelt key is also a missing one, and the misspelling is
    what the reader has to fix.
    """
    errors = exc.errors(include_url=False)
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = tuple(error["loc"])
    where = _location(loc)
    kind = error["type"]
    if kind == "missing":
        table = _table_model(model, loc) is not None and not any(isinstance(part, int) for part in loc)
        return f"missing [{where}] section" if table else f"missing {where}"
    if kind == "extra_forbidden":
        return f"{where}: unknown key{_suggestion(model, loc)}"
    if kind in _TYPE_NAMES:
        return f"{where}: must be {_TYPE_NAMES[kind]}, not {error['input']!r}"
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def validate(model: type[_Model], doc: Mapping[str, Any], base: Path) -> _Model:
    """`doc` checked against `model`, relative paths taken from `base`; ConfigError on the first mistake."""
    try:
        return model.model_validate(doc, context={_BASE: base})
    except ValidationError as exc:
        raise ConfigError(error_line(exc, model)) from None


def read_toml(path: Path) -> tuple[dict[str, Any], Path]:
    """The file's tables and the directory its relative paths are relative to."""
    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    return doc, Path(path).resolve().parent


def in_file(path: Path, error: ConfigError) -> ConfigError:
    """The same error, saying which file it is in."""
    return ConfigError(f"{path}: {error}")


_Config = TypeVar("_Config")


def load_file(path: Path, parse: Callable[[dict[str, Any], Path], _Config]) -> _Config:
    """Read a TOML file and check it with `parse`; ConfigError is one line naming the file and the key."""
    doc, base = read_toml(path)
    try:
        return parse(doc, base)
    except ConfigError as exc:
        raise in_file(path, exc) from None


# --- directories a file names ---------------------------------------------------------------

DATA_DIR_MODE: Final = 0o700
"""Databases, cached configurations and logs: nothing for others on the machine."""

CONFIG_FILE_MODE: Final = 0o600
"""A configuration file `init` writes names key paths and passphrase variables: nothing for others
on the machine."""

ANCHOR_FILE: Final = "anchor.json"
"""The federation's anchor, in the directory `xgate gateway init` and `xgate central init` make."""


def ensure_data_dir(data_dir: Path, key: str, hint: str) -> None:
    """Create the working directory when only it is missing; otherwise say in one line what to do.

    Only the last level is created (mode 0700): a missing parent usually means a mistyped path
    or a file run from somewhere unexpected, which a quiet `mkdir -p` would hide.
    """
    if data_dir.is_dir():
        return
    if data_dir.exists():
        raise ConfigError(f"{key} {data_dir} is not a directory")
    if not data_dir.parent.is_dir():
        raise ConfigError(
            f"{key} {data_dir} does not exist, nor does its parent: create it "
            f"(mkdir -p -m 700 {data_dir}) or {hint}"
        )
    data_dir.mkdir(mode=DATA_DIR_MODE)


def sqlite_file(database_url: str) -> Path | None:
    """The file of an SQLite URL; None for another database or an in-memory one."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(str(url.database))


def check_database_directory(database_url: str, key: str) -> None:
    """An SQLite database's directory must exist: SQLite creates the file, not the directories."""
    file = sqlite_file(database_url)
    if file is None:
        return
    directory = file.parent
    if not directory.is_dir():
        raise ConfigError(f"{key}: directory {directory} does not exist (mkdir -p -m 700 {directory})")
