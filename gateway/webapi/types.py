"""The value types of the management APIs' requests: identifiers, pages, certificates.

Each is a pydantic annotated type, so that the constraint the server enforces is also what the
OpenAPI document says (``pattern``, ``minimum``/``maximum``, ``maxLength``).

Identifiers are written in their text form ``INSTANCE/CLASS/MEMBER[/SUBSYSTEM]`` everywhere
(X-Road's REST headers, the CLI, the answers, the audit log). In a path they are URL-encoded
(``DEV%2FGOV%2F1001``); X-Road's management API's colon form ``DEV:GOV:1001`` is accepted
there and in bodies too, so that nothing written for it breaks.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Annotated, Final, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, WithJsonSchema

from gateway.db import MAX_SQL_BIGINT, MAX_SQL_INTEGER
from gateway.ids import MAX_CODE_LENGTH, ClientId, IdentifierError, SecurityServerId, slash_form

# X-Road REST protocol §4.8 (gateway.ids): the code alphabet, never "." or "..". The look-ahead
# needs Python's regular expressions (the models say regex_engine="python-re"); JSON Schema's
# ECMA-262 patterns have it too.
_CODE: Final = rf"(?!\.\.?(?:[:/]|$))[A-Za-z0-9'()+,\-.=?]{{1,{MAX_CODE_LENGTH}}}"


def _identifier(parts: int, optional: int = 0) -> str:
    """A pattern for `parts` codes (and up to `optional` more), all "/"- or all ":"-separated."""
    forms = [rf"{_CODE}(?:{sep}{_CODE}){{{parts - 1},{parts - 1 + optional}}}" for sep in ("/", ":")]
    return "^(?:" + "|".join(forms) + ")$"


CODE_PATTERN: Final = f"^{_CODE}$"
CLIENT_PATTERN: Final = _identifier(3, 1)
MEMBER_PATTERN: Final = _identifier(3)
SUBSYSTEM_PATTERN: Final = _identifier(4)
SERVER_PATTERN: Final = _identifier(4)
GLOBAL_GROUP_PATTERN: Final = _identifier(2)

PATTERN_MEANINGS: Final[dict[str, str]] = {
    CODE_PATTERN: "a code of A-Z a-z 0-9 ' ( ) + , - . = ? (not . or ..)",
    CLIENT_PATTERN: "a client INSTANCE/CLASS/MEMBER[/SUBSYSTEM]",
    MEMBER_PATTERN: "a member INSTANCE/CLASS/MEMBER",
    GLOBAL_GROUP_PATTERN: "a global group INSTANCE/GROUP",
    # A subsystem and a security server are both four codes: one pattern, one meaning.
    SUBSYSTEM_PATTERN: "a subsystem INSTANCE/CLASS/MEMBER/SUBSYSTEM (a server: INSTANCE/CLASS/MEMBER/SERVER)",
}
"""What a pattern means, for the error message that names it (gateway.webapi.errors)."""

Code = Annotated[str, Field(pattern=CODE_PATTERN, description="An identifier code (X-Road's alphabet).")]
GlobalGroupText = Annotated[str, Field(pattern=GLOBAL_GROUP_PATTERN)]

_Id = TypeVar("_Id", ClientId, SecurityServerId)


def _parser(kind: type[_Id], pattern: str, meaning: str) -> Callable[[object], _Id]:
    """Read an identifier from its text form, "/"- or ":"-separated (codes hold neither)."""
    compiled = re.compile(pattern)

    def parse(value: object) -> _Id:
        if isinstance(value, kind):
            return value
        if not isinstance(value, str) or compiled.fullmatch(value) is None:
            raise ValueError(f"must be {meaning}")
        try:
            return kind.from_text(slash_form(value))
        except IdentifierError as exc:
            raise ValueError(exc.message) from None

    return parse


def _text_form(pattern: str, meaning: str) -> WithJsonSchema:
    return WithJsonSchema(
        {"type": "string", "pattern": pattern, "description": f"{meaning[0].upper()}{meaning[1:]}."}
    )


_CLIENT: Final = "a client INSTANCE/CLASS/MEMBER[/SUBSYSTEM]"
_MEMBER: Final = "a member INSTANCE/CLASS/MEMBER"
_SUBSYSTEM: Final = "a subsystem INSTANCE/CLASS/MEMBER/SUBSYSTEM"
_SERVER: Final = "a security server INSTANCE/CLASS/MEMBER/SERVER"

ClientIdField = Annotated[
    ClientId, PlainValidator(_parser(ClientId, CLIENT_PATTERN, _CLIENT)), _text_form(CLIENT_PATTERN, _CLIENT)
]
MemberIdField = Annotated[
    ClientId, PlainValidator(_parser(ClientId, MEMBER_PATTERN, _MEMBER)), _text_form(MEMBER_PATTERN, _MEMBER)
]
SubsystemIdField = Annotated[
    ClientId,
    PlainValidator(_parser(ClientId, SUBSYSTEM_PATTERN, _SUBSYSTEM)),
    _text_form(SUBSYSTEM_PATTERN, _SUBSYSTEM),
]
ServerIdField = Annotated[
    SecurityServerId,
    PlainValidator(_parser(SecurityServerId, SERVER_PATTERN, _SERVER)),
    _text_form(SERVER_PATTERN, _SERVER),
]


# --- pages ---------------------------------------------------------------------------------

MAX_PAGE: Final = 1000
"""Every listing answers at most this many items per call: a page that large is already more than
a person reads, and bounds the work one call costs the database."""
DEFAULT_PAGE: Final = 100
"""The page when `limit` is left out."""

# MAX_SQL_INTEGER and MAX_SQL_BIGINT (gateway.db) bound every integer a caller may send: no
# value reaches the database that it cannot take (an offset past them is a 400, not a 500).

Limit = Annotated[
    int, Field(ge=1, le=MAX_PAGE, description=f"Items per page, 1..{MAX_PAGE} (default {DEFAULT_PAGE}).")
]
Offset = Annotated[
    int, Field(ge=0, le=MAX_SQL_INTEGER, description="Items to skip: the last page's next_offset.")
]
BeforeId = Annotated[
    int,
    Field(
        ge=1, le=MAX_SQL_BIGINT, description="Only items older than this id: the last page's next_before_id."
    ),
]
RecordId = Annotated[int, Field(ge=1, le=MAX_SQL_BIGINT, description="A numeric id.")]

RFC3339_PATTERN: Final = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})$"
_RFC3339: Final = re.compile(RFC3339_PATTERN)


def _rfc3339(value: object) -> object:
    """An RFC 3339 time with its zone (JSON Schema's date-time), nothing looser: not a number of
    seconds, not a date alone, not a time without a zone."""
    if isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str) or _RFC3339.fullmatch(value) is None:
        raise ValueError("must be an RFC 3339 time with its zone, e.g. 2026-11-27T10:00:00Z")
    text = value.upper().replace("Z", "+00:00")
    whole, dot, rest = text.partition(".")
    if dot:  # Python reads at most 6 digits of a fraction
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{whole}.{rest[: min(digits, 6)]}{rest[digits:]}"
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("must be an RFC 3339 time with its zone, e.g. 2026-11-27T10:00:00Z") from None


Time = Annotated[
    dt.datetime,
    BeforeValidator(_rfc3339),
    WithJsonSchema(
        {"type": "string", "format": "date-time", "description": "An RFC 3339 time with its zone."}
    ),
]


def utc(value: dt.datetime | None) -> dt.datetime | None:
    """`value` with its zone, UTC when it was written without one."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


# --- texts -------------------------------------------------------------------------------

MAX_NAME_LENGTH: Final = 200
"""Names and descriptions are for people; longer ones are mistakes."""
MAX_TEXT_LENGTH: Final = 1000
"""A reason, a notice, a name to search for: a sentence or two; longer ones are mistakes."""
MAX_IDENTIFIER_LENGTH: Final = 6 * (MAX_CODE_LENGTH + 1)
"""An identifier's text form: six codes at most (a service's), each with its separator."""
MAX_URL_LENGTH: Final = 2000
"""What browsers and most servers take in a URL; a longer one would fail on the way anyway."""
MAX_FILE_PATH_LENGTH: Final = 4096
"""Linux's PATH_MAX."""

Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)]
Description = Annotated[str, Field(max_length=MAX_NAME_LENGTH)]
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_LENGTH)]
Sha256 = Annotated[
    str,
    Field(pattern="^[0-9A-Fa-f]{1,64}$", description="A certificate's SHA-256, hex (lower case answered)."),
]
HTTP_URL_PATTERN: Final = r"^https?://[A-Za-z0-9._~\-]+(?::[0-9]{1,5})?(?:[/?#][^\s]*)?$"
PATTERN_MEANINGS[HTTP_URL_PATTERN] = "an http:// or https:// URL with a host"
HttpUrl = Annotated[
    str,
    Field(
        pattern=HTTP_URL_PATTERN,
        max_length=MAX_URL_LENGTH,
        description="An http:// or https:// URL with a host.",
    ),
]
Pem = Annotated[str, Field(min_length=1, description="One or more PEM certificates.")]


# --- model bases ----------------------------------------------------------------------------


class Body(BaseModel):
    """A JSON request body: types as written (no "5" for 5), unknown fields refused."""

    model_config = ConfigDict(strict=True, extra="forbid", regex_engine="python-re")


class Params(BaseModel):
    """Path and query parameters: text converted to the declared types, unknown ones refused."""

    model_config = ConfigDict(extra="forbid", regex_engine="python-re")


class Answer(BaseModel):
    """A JSON answer's shape, for the document."""


class Page(Params):
    """The paging parameters of a listing that pages by count."""

    limit: Limit = DEFAULT_PAGE
