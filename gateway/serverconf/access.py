"""Access-rights decisions: may this client call this service, and this REST endpoint of it?

Sans-IO: identifiers, rights and group memberships in, a yes or no out (DESIGN.md step 6,
"check access rights (default deny)"). The provider's gateway asks for every request, so
the caller hands in only the rights that could apply (the snapshot indexes them by provider,
service code and client: :class:`ServiceRights`) and the check is a short loop.

Decisions held here, as X-Road holds them:

- Default deny: no right, no access.
- A right names a subject: a client (member or subsystem), a global group (the central
  registry decides membership) or a local group (the provider's own list of clients).
- A right for a MEMBER applies to requests whose client is that member itself, not to its
  subsystems: X-Road treats a member and each of its subsystems as distinct clients, and a
  subsystem is the usual grain of trust (one information system, one certificate).
- A right is per service code, whatever the version (X-Road's access rights name the
  service code only).
- A right without an endpoint covers the whole service: every SOAP call, every REST method
  and path. A right with an endpoint covers only REST requests whose method and path it
  matches (PROTOCOL.md "REST protocol r1": per-endpoint access, `*` wildcards, normalised
  before matching). SOAP requests have no method and path, so only whole-service rights
  cover them.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from gateway.faults import INVALID_REQUEST
from gateway.ids import ClientId, GlobalGroupId, IdentifierError, LocalGroupId, ObjectType, ServiceId

AccessSubject = ClientId | GlobalGroupId | LocalGroupId
"""Who a right is for."""


def subject_from_text(object_type: ObjectType, text: str) -> AccessSubject:
    """A right's subject from its identifiers.xsd objectType and text form; IdentifierError when
    the text names another kind of subject (a member where a subsystem was said, say)."""
    if object_type is ObjectType.GLOBALGROUP:
        return GlobalGroupId.from_text(text)
    if object_type is ObjectType.LOCALGROUP:
        return LocalGroupId.from_text(text)
    client = ClientId.from_text(text)
    if client.object_type is not object_type:
        shown = f"{client.object_type.value.lower()}, not a {object_type.value.lower()}"
        raise IdentifierError(INVALID_REQUEST, f"{text} is a {shown}")
    return client


GlobalGroupMembership = Callable[[ClientId, GlobalGroupId], bool]
"""Whether a client is in a global group: answered from the global configuration."""

LocalGroups = Mapping[LocalGroupId, frozenset[ClientId]]
"""The provider's local groups and their members."""

ANY_METHOD: Final = "*"
"""An endpoint method matching every HTTP method."""

ANY_REMAINDER: Final = "**"
"""A last pattern segment matching the path above it and everything beneath."""

MAX_PATH_PATTERN_LENGTH: Final = 2048
"""Patterns come from administrators and OpenAPI documents; longer ones are mistakes, and the
bound keeps the compiled matcher small. (Typical servers refuse request lines past 8 KB.)"""

# RFC 9110 §5.6.2 token: what an HTTP method may be made of.
_METHOD_RE: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_PERCENT_RE: Final = re.compile(r"%([0-9A-Fa-f]{2})")
# RFC 3986 §2.3: unreserved characters, equivalent whether percent-encoded or not.
_UNRESERVED: Final = frozenset(string.ascii_letters + string.digits + "-._~")
# RFC 3986 §5.2.4 dot-segments.
_DOT_SEGMENTS: Final = frozenset({".", ".."})
# An OpenAPI path template (OpenAPI 3 "Path Templating"): `{name}` stands for one segment part.
_TEMPLATE_OR_STAR_RE: Final = re.compile(r"\{[^{}/]*\}|\*")


def _normalise_percent(segment: str) -> str:
    """RFC 3986 §6.2.2.1-2: upper-case hex digits, decode what is unreserved.

    Anything else stays encoded, so `%2F` stays inside its segment and never becomes a '/'.
    """

    def one(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else "%" + match.group(1).upper()

    return _PERCENT_RE.sub(one, segment) if "%" in segment else segment


def normalise_path(path: str) -> str | None:
    """The path as compared with endpoint patterns, or None if it has a dot-segment.

    Takes the raw (percent-encoded) path without query. Empty segments are dropped (`//`
    collapses, a trailing `/` goes, `""` is `/`), percent-encoding is normalised per segment.
    A `.` or `..` segment, raw or encoded, matches nothing: the REST parser refuses those
    (PROTOCOL.md "REST protocol r1"), and a path a backend would resolve differently from
    us must not be granted by a pattern.
    """
    segments = [_normalise_percent(s) for s in path.split("/") if s]
    if any(s in _DOT_SEGMENTS for s in segments):
        return None
    return "/" + "/".join(segments)


def _segment_regex(segment: str) -> str:
    """One pattern segment as a regex that never crosses '/'.

    Each run of wildcards but the last becomes an atomic, earliest-match group (as fnmatch
    translates `*`): always correct for globs, and an attacker-chosen path cannot make a
    pattern like `*a*a*a*b` backtrack exponentially.
    """
    literals = _TEMPLATE_OR_STAR_RE.split(segment)
    wildcards = _TEMPLATE_OR_STAR_RE.findall(segment)
    runs: list[tuple[int, str]] = []  # (least characters the run needs, literal after it)
    pending: int | None = None
    for wildcard, literal in zip(wildcards, literals[1:], strict=True):
        pending = (pending or 0) + (wildcard != "*")
        if literal:
            runs.append((pending, literal))
            pending = None
    if pending is not None:
        runs.append((pending, ""))
    parts = [re.escape(literals[0])]
    for index, (least, literal) in enumerate(runs):
        any_chars = f"[^/]{{{least},}}" if least else "[^/]*"
        if index < len(runs) - 1:
            parts.append(f"(?>{any_chars}?{re.escape(literal)})")
        else:
            parts.append(any_chars + re.escape(literal))
    return "".join(parts)


def _compile_pattern(pattern: str) -> re.Pattern[str]:
    segments = pattern.split("/")[1:] if pattern != "/" else []
    if ANY_REMAINDER in segments[:-1]:
        raise ValueError(f"{ANY_REMAINDER!r} may only be the last segment of a path pattern")
    subtree = bool(segments) and segments[-1] == ANY_REMAINDER
    # Every pattern segment stands for one real, so non-empty, segment: `/*` is not `/`.
    prefix = "".join("/(?=[^/])" + _segment_regex(s) for s in (segments[:-1] if subtree else segments))
    if subtree:
        # `/a/**` covers `/a` and all beneath it; `/**` covers every path.
        return re.compile(prefix + "(?:/.*)?" if prefix else "/.*")
    return re.compile(prefix or "/")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A REST endpoint: an HTTP method (or `*`) and a path pattern.

    Pattern segments are compared one by one: `*` inside a segment matches any characters
    but '/', `{name}` matches one non-empty run of them, and a last segment `**` matches
    the rest of the path, however deep (as in Ant-style globs and X-Road's `**`). Method and
    pattern are normalised on construction, so equal endpoints compare equal.
    """

    method: str
    path_pattern: str
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        method = self.method.upper()
        if method != ANY_METHOD and _METHOD_RE.fullmatch(method) is None:
            raise ValueError(f"not an HTTP method: {self.method!r}")
        if not self.path_pattern.startswith("/"):
            raise ValueError(f"a path pattern starts with '/': {self.path_pattern!r}")
        if len(self.path_pattern) > MAX_PATH_PATTERN_LENGTH:
            raise ValueError(f"path pattern longer than {MAX_PATH_PATTERN_LENGTH} characters")
        pattern = normalise_path(self.path_pattern)
        if pattern is None:
            raise ValueError(f"dot-segment in path pattern {self.path_pattern!r}")
        object.__setattr__(self, "method", method)
        object.__setattr__(self, "path_pattern", pattern)
        object.__setattr__(self, "_regex", _compile_pattern(pattern))

    def matches(self, method: str, path: str) -> bool:
        """Whether a request with this method and raw path (no query) is this endpoint's."""
        normal = normalise_path(path)
        return normal is not None and self.matches_normalised(method.upper(), normal)

    def matches_normalised(self, method: str, path: str) -> bool:
        """:meth:`matches` for an upper-case method and a path already through normalise_path."""
        if self.method != ANY_METHOD and method != self.method:
            return False
        return self._regex.fullmatch(path) is not None

    def covers(self, other: Endpoint) -> bool:
        """Whether this endpoint grants what `other` describes: the same method (or `*`), and
        a pattern matching `other`'s read as a path (`/pets/*` covers `/pets/{id}`).

        For listing which registered endpoints a right reaches (`allowedMethods`); an
        approximation where `other` has wildcards, exact where it is a plain path.
        """
        if self.method != ANY_METHOD and other.method != self.method:
            return False
        return self._regex.fullmatch(other.path_pattern) is not None


@dataclass(frozen=True, slots=True)
class AccessRight:
    """`subject` may call the provider's service `service_code` (at `endpoint` only, if given)."""

    subject: AccessSubject
    service_code: str
    endpoint: Endpoint | None = None


@dataclass(frozen=True, slots=True)
class ServiceRights:
    """The rights to one service code of one provider, arranged for the request path.

    Rights naming a client are found by that client, so a service open to thousands of
    clients costs a dictionary lookup, not a scan; group rights are few and asked in turn.
    """

    by_client: Mapping[ClientId, tuple[AccessRight, ...]]
    for_groups: tuple[AccessRight, ...]

    @classmethod
    def arrange(cls, rights: Iterable[AccessRight]) -> ServiceRights:
        by_client: dict[ClientId, list[AccessRight]] = {}
        for_groups: list[AccessRight] = []
        for right in rights:
            if isinstance(right.subject, ClientId):
                by_client.setdefault(right.subject, []).append(right)
            else:
                for_groups.append(right)
        return cls(MappingProxyType({k: tuple(v) for k, v in by_client.items()}), tuple(for_groups))

    def candidates(self, client: ClientId) -> tuple[AccessRight, ...]:
        """The only rights that can cover `client`; is_allowed decides among them."""
        return self.by_client.get(client, ()) + self.for_groups


def subject_includes(
    subject: AccessSubject,
    client: ClientId,
    *,
    global_group_member: GlobalGroupMembership,
    local_groups: LocalGroups,
) -> bool:
    """Whether a right's subject covers the client (a MEMBER covers only itself; see above)."""
    if isinstance(subject, ClientId):
        return subject == client
    if isinstance(subject, LocalGroupId):
        return client in local_groups.get(subject, frozenset())
    return global_group_member(client, subject)


def is_allowed(
    client: ClientId,
    service: ServiceId,
    rights: Iterable[AccessRight],
    *,
    method: str | None = None,
    path: str | None = None,
    global_group_member: GlobalGroupMembership,
    local_groups: LocalGroups,
) -> bool:
    """Whether `client` may call `service`: some right of the provider's covers the request.

    `rights` are the provider's (rights of other providers must not be passed: a right does
    not name its provider). `method` and `path` are given for REST requests and omitted for
    SOAP. `local_groups` are the provider's. Default deny.
    """
    if (method is None) != (path is None):
        raise ValueError("give both method and path (REST) or neither (SOAP)")
    request_method = method.upper() if method is not None else None
    request_path = normalise_path(path) if path is not None else None
    for right in rights:
        if right.service_code != service.service_code:
            continue
        endpoint = right.endpoint
        if endpoint is not None and (
            request_method is None
            or request_path is None
            or not endpoint.matches_normalised(request_method, request_path)
        ):
            continue
        if subject_includes(
            right.subject, client, global_group_member=global_group_member, local_groups=local_groups
        ):
            return True
    return False


def rights_of(
    client: ClientId,
    rights: Iterable[AccessRight],
    *,
    global_group_member: GlobalGroupMembership,
    local_groups: LocalGroups,
) -> list[AccessRight]:
    """The rights whose subject covers `client`: what `allowedMethods` lists."""
    return [
        right
        for right in rights
        if subject_includes(
            right.subject, client, global_group_member=global_group_member, local_groups=local_groups
        )
    ]
