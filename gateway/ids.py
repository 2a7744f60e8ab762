"""X-Road identifiers: the values that name members, subsystems, services, gateways and groups.

Every request carries at least two (client and service), in one of three spellings: XML in
the SOAP header (PROTOCOL.md "Identifiers", `xsd/identifiers.xsd`), text in REST headers
(`INSTANCE/CLASS/MEMBER[/SUBSYSTEM]`, each part percent-encoded on its own) and the REST
path (PROTOCOL.md "REST protocol r1"). The classes here are the one place those spellings
are read and written. Each validates on construction, so an invalid identifier cannot
exist; each parser raises :class:`IdentifierError` carrying the fault code the protocol
gives for that mistake.
"""

from __future__ import annotations

import abc
import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar, Final
from urllib.parse import quote, unquote

from lxml import etree

from gateway.faults import (
    INVALID_CLIENT_IDENTIFIER,
    INVALID_REQUEST,
    INVALID_SECURITY_SERVER,
    INVALID_SERVICE_IDENTIFIER,
    INVALID_XML,
    XRoadFault,
)

ID_NS: Final = "http://x-road.eu/xsd/identifiers"
_XSI_NS: Final = "http://www.w3.org/2001/XMLSchema-instance"

# X-Road stores every code in varchar(255) columns, so a longer code can never name a
# registered entity; refusing it early also bounds what we echo back in fault messages.
MAX_CODE_LENGTH: Final = 255

# The REST path prefix of protocol r1 (PROTOCOL.md "REST protocol r1").
REST_PREFIX: Final = "/r1/"

ID_TEXT_CACHE_SIZE: Final = 4096
"""Text forms remembered (gateway.ids._join): a node's members, subsystems and services fit;
percent-encoding each part again on every message costs more than the rest of writing one."""

# X-Road REST protocol §4.8 "Identifier Character Restrictions" (PROTOCOL.md "Identifiers").
_CODE_CHARS: Final = "A-Z a-z 0-9 ' ( ) + , - . = ?"
_CODE_RE: Final = re.compile(r"[A-Za-z0-9'()+,\-.=?]+")
# RFC 3986 §5.2.4: "." and ".." are dot-segments that any URL normaliser removes, so a code
# spelled so could not survive a REST path; they are the only path-traversal shapes the
# alphabet allows.
_DOT_SEGMENTS: Final = frozenset({".", ".."})
_PATH_SEPARATORS_RE: Final = re.compile(r"[/\\]")


class ObjectType(enum.StrEnum):
    """`id:objectType` (identifiers.xsd `XRoadObjectType`)."""

    MEMBER = "MEMBER"
    SUBSYSTEM = "SUBSYSTEM"
    SERVER = "SERVER"
    GLOBALGROUP = "GLOBALGROUP"
    LOCALGROUP = "LOCALGROUP"
    SERVICE = "SERVICE"


class IdentifierError(XRoadFault):
    """An identifier that breaks the protocol; `code` is the fault code to answer with."""


def _shorten(value: str) -> str:
    return repr(value if len(value) <= 64 else value[:64] + "...")


def validate_code(value: str, what: str, *, fault_code: str = INVALID_REQUEST) -> str:
    """Return `value` if it is a well-formed identifier code, else raise IdentifierError.

    `what` names the field in the fault message; `fault_code` is the code the caller's
    context calls for (each identifier class passes its own).
    """
    if _CODE_RE.fullmatch(value) is None:
        if not value:
            raise IdentifierError(fault_code, f"{what} must not be empty")
        raise IdentifierError(fault_code, f"{what} {_shorten(value)} has a character outside {_CODE_CHARS}")
    if len(value) > MAX_CODE_LENGTH:
        raise IdentifierError(fault_code, f"{what} is longer than {MAX_CODE_LENGTH} characters")
    if value in _DOT_SEGMENTS:
        raise IdentifierError(fault_code, f"{what} must not be {value!r}")
    return value


def _validate_optional(value: str | None, what: str, fault_code: str) -> None:
    if value is not None:
        validate_code(value, what, fault_code=fault_code)


# --- text form -------------------------------------------------------------------------


@lru_cache(maxsize=ID_TEXT_CACHE_SIZE)
def _join(segments: tuple[str | None, ...]) -> str:
    """The text form; remembered, as the few identifiers a node sees are written on every message."""
    return "/".join(quote(s, safe="") for s in segments if s is not None)


def _split(text: str, counts: tuple[int, ...], fault_code: str, what: str, shape: str) -> list[str]:
    """Split on "/" first, then percent-decode each part, so an encoded slash stays in its part."""
    parts = text.split("/")
    if len(parts) not in counts:
        raise IdentifierError(fault_code, f"{what} {_shorten(text)} is not of the form {shape}")
    return [unquote(p) if "%" in p else p for p in parts]


def slash_form(text: str) -> str:
    """`text` with X-Road's colon separators (`DEV:GOV:1001`, as its own tools write them) as
    the one text form's slashes; codes hold neither character, so nothing else changes."""
    return text.replace(":", "/")


# An identifier in colon form inside free text (an audit target written from a URL path):
# three to six codes, so a time of day (two colons, digits only) is the only look-alike.
_COLON_FORM_RE: Final = re.compile(
    r"(?<![A-Za-z0-9'()+,\-.=?%:])[A-Za-z0-9'()+,\-.=?%]+(?::[A-Za-z0-9'()+,\-.=?%]+){2,5}(?![A-Za-z0-9:])"
)
_TIME_RE: Final = re.compile(r"\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?")


def slash_forms_in(text: str) -> str:
    """Free text (an audit target, perhaps written before one form was used everywhere) with
    every colon-form identifier in it spelled in the one text form; times of day are left."""
    return _COLON_FORM_RE.sub(
        lambda m: m.group(0) if _TIME_RE.fullmatch(m.group(0)) else slash_form(m.group(0)), text
    )


# --- XML form --------------------------------------------------------------------------

# identifiers.xsd `XRoadIdentifierType`: the children, in the order the sequence demands.
_XML_FIELDS: Final = (
    "xRoadInstance",
    "memberClass",
    "memberCode",
    "subsystemCode",
    "groupCode",
    "serviceCode",
    "serviceVersion",
    "serverCode",
)
_INSTANCE, _CLASS, _MEMBER, _SUBSYSTEM, _GROUP, _SERVICE, _VERSION, _SERVER = range(len(_XML_FIELDS))
_XML_TAGS: Final = tuple(f"{{{ID_NS}}}{name}" for name in _XML_FIELDS)
_XML_POSITION: Final = {tag: i for i, tag in enumerate(_XML_TAGS)}
_OBJECT_TYPE_ATTR: Final = f"{{{ID_NS}}}objectType"
_OBJECT_TYPE_BY_VALUE: Final[Mapping[str, ObjectType]] = {t.value: t for t in ObjectType}
_NSMAP: Final = {"id": ID_NS}

XmlTag = str | etree.QName


def _xml_fault(el: etree._Element, message: str) -> IdentifierError:
    return IdentifierError(INVALID_XML, f"<{etree.QName(el).localname}>: {message}")


def _read_xml(el: etree._Element) -> tuple[ObjectType, list[str | None]]:
    """The objectType and the eight code slots of an identifier element, structure checked.

    Enforces what identifiers.xsd's base type says (known objectType, known children in
    sequence order, each at most once, text only) by walking the children once: this runs on
    every request, so no schema validator is involved.
    """
    object_type = _read_object_type(el)
    if len(el.attrib) > 1:
        for name in map(str, el.attrib):  # lxml gives str; its stubs allow bytes
            if name != _OBJECT_TYPE_ATTR and not name.startswith(f"{{{_XSI_NS}}}"):
                raise _xml_fault(el, f"unexpected attribute {name}")
    if el.text is not None and not el.text.isspace():
        raise _xml_fault(el, "text outside the code elements")
    values: list[str | None] = [None] * len(_XML_FIELDS)
    last = -1
    for child in el:
        tag = child.tag
        if isinstance(tag, str):  # comments and processing instructions have no str tag
            position = _XML_POSITION.get(tag)
            if position is None:
                raise _xml_fault(el, f"unexpected element {tag}")
            if position <= last:
                raise _xml_fault(el, f"element {tag} repeated or out of order")
            last = position
            values[position] = _code_text(el, child)
        if child.tail is not None and not child.tail.isspace():
            raise _xml_fault(el, "text outside the code elements")
    return object_type, values


def _read_object_type(el: etree._Element) -> ObjectType:
    # identifiers.xsd: `id:objectType` is required and one of XRoadObjectType's values.
    object_type = el.get(_OBJECT_TYPE_ATTR)
    if object_type is None:
        raise _xml_fault(el, "attribute id:objectType is missing")
    known = _OBJECT_TYPE_BY_VALUE.get(object_type)
    if known is None:
        raise _xml_fault(el, f"unknown id:objectType {_shorten(object_type)}")
    return known


def _code_text(parent: etree._Element, child: etree._Element) -> str:
    if len(child) == 0:
        return child.text or ""
    # Only comments or processing instructions may sit inside a code (xs:string content).
    if any(isinstance(node.tag, str) for node in child):
        raise _xml_fault(parent, f"element {child.tag} holds elements, not text")
    return "".join(map(str, child.itertext()))


def _expect(
    el: etree._Element, values: list[str | None], required: tuple[int, ...], optional: tuple[int, ...]
) -> list[str]:
    """Check the children against one restriction of the base type (XRoadClientIdentifierType...);
    return the required codes, in `required`'s order."""
    codes: list[str] = []
    for position in required:
        value = values[position]
        if value is None:
            raise _xml_fault(el, f"element id:{_XML_FIELDS[position]} is missing")
        codes.append(value)
    for position, value in enumerate(values):
        if value is not None and position not in required and position not in optional:
            raise _xml_fault(el, f"element id:{_XML_FIELDS[position]} does not belong here")
    return codes


def _read_typed_xml(el: etree._Element, expected: ObjectType) -> list[str | None]:
    """The slots of an identifier element whose objectType must be `expected`."""
    actual, values = _read_xml(el)
    # The restricted types fix objectType (identifiers.xsd `fixed="..."`): a schema violation.
    if actual is not expected:
        raise _xml_fault(el, f"id:objectType is {actual}, expected {expected}")
    return values


def _build_xml(
    tag: XmlTag,
    object_type: ObjectType,
    slots: Iterable[tuple[int, str | None]],
    nsmap: Mapping[str, str] | None,
) -> etree._Element:
    namespaces = _NSMAP if nsmap is None else {**nsmap, **_NSMAP}
    el = etree.Element(tag, {_OBJECT_TYPE_ATTR: object_type.value}, nsmap=namespaces)
    for position, value in slots:
        if value is not None:
            etree.SubElement(el, _XML_TAGS[position]).text = value
    return el


# --- the identifiers -------------------------------------------------------------------


class _Identifier(abc.ABC):
    """Shared behaviour: text form as str(), and ordering that tolerates absent codes."""

    __slots__ = ()

    @abc.abstractmethod
    def _sort_key(self) -> tuple[str, ...]: ...

    @abc.abstractmethod
    def to_text(self) -> str: ...

    def __str__(self) -> str:
        return self.to_text()

    # Ordered by a key where an absent code is "" (codes are never empty), because the
    # dataclass's own order would compare None with str and fail.
    def __lt__(self, other: object) -> bool:
        if not isinstance(other, _Identifier) or type(other) is not type(self):
            return NotImplemented
        return self._sort_key() < other._sort_key()

    def __le__(self, other: object) -> bool:
        if not isinstance(other, _Identifier) or type(other) is not type(self):
            return NotImplemented
        return self._sort_key() <= other._sort_key()

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, _Identifier) or type(other) is not type(self):
            return NotImplemented
        return self._sort_key() > other._sort_key()

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, _Identifier) or type(other) is not type(self):
            return NotImplemented
        return self._sort_key() >= other._sort_key()


@dataclass(frozen=True, slots=True)
class ClientId(_Identifier):
    """A member (`instance/class/code`) or one of its subsystems: who sends or provides."""

    instance: str
    member_class: str
    member_code: str
    subsystem_code: str | None = None

    FAULT_CODE: ClassVar[str] = INVALID_CLIENT_IDENTIFIER

    def __post_init__(self) -> None:
        validate_code(self.instance, "xRoadInstance", fault_code=self.FAULT_CODE)
        validate_code(self.member_class, "memberClass", fault_code=self.FAULT_CODE)
        validate_code(self.member_code, "memberCode", fault_code=self.FAULT_CODE)
        _validate_optional(self.subsystem_code, "subsystemCode", self.FAULT_CODE)

    @property
    def object_type(self) -> ObjectType:
        return ObjectType.MEMBER if self.subsystem_code is None else ObjectType.SUBSYSTEM

    @property
    def is_subsystem(self) -> bool:
        return self.subsystem_code is not None

    @property
    def member(self) -> ClientId:
        """The member itself: who owns gateways and signing keys, even for a subsystem."""
        if self.subsystem_code is None:
            return self
        return ClientId(self.instance, self.member_class, self.member_code)

    def _sort_key(self) -> tuple[str, ...]:
        return (self.instance, self.member_class, self.member_code, self.subsystem_code or "")

    def to_text(self) -> str:
        return _join((self.instance, self.member_class, self.member_code, self.subsystem_code))

    @classmethod
    def from_text(cls, text: str) -> ClientId:
        """Parse `INSTANCE/CLASS/MEMBER[/SUBSYSTEM]` (the `X-Road-Client` header)."""
        parts = _split(text, (3, 4), cls.FAULT_CODE, "client", "INSTANCE/CLASS/MEMBER[/SUBSYSTEM]")
        return cls(*parts)

    def to_xml(self, tag: XmlTag, *, nsmap: Mapping[str, str] | None = None) -> etree._Element:
        """Build `<tag id:objectType="MEMBER|SUBSYSTEM">` (identifiers.xsd XRoadClientIdentifierType)."""
        slots = (
            (_INSTANCE, self.instance),
            (_CLASS, self.member_class),
            (_MEMBER, self.member_code),
            (_SUBSYSTEM, self.subsystem_code),
        )
        return _build_xml(tag, self.object_type, slots, nsmap)

    @classmethod
    def from_xml(cls, el: etree._Element) -> ClientId:
        object_type, values = _read_xml(el)
        instance, member_class, member_code = _expect(el, values, (_INSTANCE, _CLASS, _MEMBER), (_SUBSYSTEM,))
        subsystem = values[_SUBSYSTEM]
        if object_type is not ObjectType.MEMBER and object_type is not ObjectType.SUBSYSTEM:
            raise IdentifierError(cls.FAULT_CODE, f"a client is a MEMBER or a SUBSYSTEM, not {object_type}")
        # PROTOCOL.md "Identifiers": a MEMBER with a subsystemCode, or a SUBSYSTEM without one.
        if object_type is ObjectType.MEMBER and subsystem is not None:
            raise IdentifierError(cls.FAULT_CODE, "a MEMBER identifier must not have a subsystemCode")
        if object_type is ObjectType.SUBSYSTEM and subsystem is None:
            raise IdentifierError(cls.FAULT_CODE, "a SUBSYSTEM identifier needs a subsystemCode")
        return cls(instance, member_class, member_code, subsystem)


@dataclass(frozen=True, slots=True)
class ServiceId(_Identifier):
    """A service (SOAP operation or REST API) of a member or subsystem, with an optional version."""

    instance: str
    member_class: str
    member_code: str
    subsystem_code: str | None
    service_code: str
    service_version: str | None = None

    FAULT_CODE: ClassVar[str] = INVALID_SERVICE_IDENTIFIER
    object_type: ClassVar[ObjectType] = ObjectType.SERVICE

    def __post_init__(self) -> None:
        validate_code(self.instance, "xRoadInstance", fault_code=self.FAULT_CODE)
        validate_code(self.member_class, "memberClass", fault_code=self.FAULT_CODE)
        validate_code(self.member_code, "memberCode", fault_code=self.FAULT_CODE)
        _validate_optional(self.subsystem_code, "subsystemCode", self.FAULT_CODE)
        validate_code(self.service_code, "serviceCode", fault_code=self.FAULT_CODE)
        _validate_optional(self.service_version, "serviceVersion", self.FAULT_CODE)

    @property
    def provider(self) -> ClientId:
        return ClientId(self.instance, self.member_class, self.member_code, self.subsystem_code)

    def _sort_key(self) -> tuple[str, ...]:
        return (
            self.instance,
            self.member_class,
            self.member_code,
            self.subsystem_code or "",
            self.service_code,
            self.service_version or "",
        )

    def to_text(self) -> str:
        """`INSTANCE/CLASS/MEMBER[/SUBSYSTEM]/SERVICE[/VERSION]` (the `X-Road-Service` header).

        Whether the fourth part is a subsystem cannot be read back from the text alone;
        :meth:`from_text` is told.
        """
        return _join(
            (
                self.instance,
                self.member_class,
                self.member_code,
                self.subsystem_code,
                self.service_code,
                self.service_version,
            )
        )

    @classmethod
    def from_text(cls, text: str, has_subsystem: bool = True) -> ServiceId:
        if has_subsystem:
            shape = "INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE[/VERSION]"
            parts = _split(text, (5, 6), cls.FAULT_CODE, "service", shape)
            return cls(*parts)
        shape = "INSTANCE/CLASS/MEMBER/SERVICE[/VERSION]"
        parts = _split(text, (4, 5), cls.FAULT_CODE, "service", shape)
        version = parts[4] if len(parts) == 5 else None
        return cls(parts[0], parts[1], parts[2], None, parts[3], version)

    @classmethod
    def from_rest_path(cls, path: str) -> tuple[ServiceId, str]:
        """Split a raw (still percent-encoded) REST r1 path, without its query, into the
        service and the path to pass on to it (`""` or starting with `/`).

        PROTOCOL.md "REST protocol r1": `/r1/INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE[/path]`,
        each segment percent-encoded on its own; REST services always belong to a subsystem
        and carry no version. Dot-segments and encoded separators anywhere in the path are
        refused (Client.InvalidRequest), so neither our routing nor the service's can be
        walked out of by `..`, `%2e%2e`, `%2f` or `%5c`.
        """
        if not path.startswith(REST_PREFIX):
            raise IdentifierError(INVALID_REQUEST, f"a REST request path starts with {REST_PREFIX}")
        if "?" in path or "#" in path:
            raise IdentifierError(INVALID_REQUEST, "the REST path must be given without query or fragment")
        parts = path[len(REST_PREFIX) :].split("/", 5)
        if len(parts) < 5:
            raise IdentifierError(
                cls.FAULT_CODE,
                f"REST path {_shorten(path)} is not {REST_PREFIX}INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE",
            )
        codes = [_rest_identifier_segment(p) for p in parts[:5]]
        rest = "/" + parts[5] if len(parts) == 6 else ""
        _refuse_dot_segments(rest)
        return cls(codes[0], codes[1], codes[2], codes[3], codes[4]), rest

    def to_rest_path(self, rest: str = "") -> str:
        """The REST r1 path calling this service, followed by `rest` ("" or "/..."), for from_rest_path."""
        if self.subsystem_code is None:
            raise ValueError("a REST service belongs to a subsystem")
        if self.service_version is not None:
            raise ValueError("a REST service identifier has no version")
        if rest and not rest.startswith("/"):
            raise ValueError("the rest of a REST path starts with '/'")
        return REST_PREFIX + self.to_text() + rest

    def to_xml(self, tag: XmlTag, *, nsmap: Mapping[str, str] | None = None) -> etree._Element:
        """Build `<tag id:objectType="SERVICE">` (identifiers.xsd XRoadServiceIdentifierType)."""
        slots = (
            (_INSTANCE, self.instance),
            (_CLASS, self.member_class),
            (_MEMBER, self.member_code),
            (_SUBSYSTEM, self.subsystem_code),
            (_SERVICE, self.service_code),
            (_VERSION, self.service_version),
        )
        return _build_xml(tag, ObjectType.SERVICE, slots, nsmap)

    @classmethod
    def from_xml(cls, el: etree._Element) -> ServiceId:
        values = _read_typed_xml(el, ObjectType.SERVICE)
        instance, member_class, member_code, service_code = _expect(
            el, values, (_INSTANCE, _CLASS, _MEMBER, _SERVICE), (_SUBSYSTEM, _VERSION)
        )
        return cls(instance, member_class, member_code, values[_SUBSYSTEM], service_code, values[_VERSION])


def _rest_identifier_segment(raw: str) -> str:
    if not raw:
        raise IdentifierError(INVALID_SERVICE_IDENTIFIER, "empty identifier segment in the REST path")
    if "%" not in raw:
        if raw in _DOT_SEGMENTS:
            raise IdentifierError(INVALID_REQUEST, f"dot-segment {raw!r} in the REST path")
        return raw
    decoded = unquote(raw)
    if decoded in _DOT_SEGMENTS or "/" in decoded or "\\" in decoded:
        raise IdentifierError(INVALID_REQUEST, f"encoded path separator or dot-segment {_shorten(raw)}")
    return decoded


def _refuse_dot_segments(rest: str) -> None:
    """Refuse `.`/`..` in the part passed on to the service, raw or hidden behind encoding.

    PROTOCOL.md "REST protocol r1": `..` segments are rejected. A segment is also split on
    decoded `/` and `\\`, since services differ in whether they decode before splitting.
    """
    for segment in rest.split("/"):
        if "." not in segment and "%" not in segment:
            continue
        decoded = unquote(segment)
        for piece in _PATH_SEPARATORS_RE.split(decoded):
            if piece in _DOT_SEGMENTS:
                raise IdentifierError(INVALID_REQUEST, f"dot-segment in the REST path: {_shorten(segment)}")


@dataclass(frozen=True, slots=True)
class SecurityServerId(_Identifier):
    """A gateway (security server), named by its owner member and a server code."""

    instance: str
    member_class: str
    member_code: str
    server_code: str

    FAULT_CODE: ClassVar[str] = INVALID_SECURITY_SERVER
    object_type: ClassVar[ObjectType] = ObjectType.SERVER

    def __post_init__(self) -> None:
        validate_code(self.instance, "xRoadInstance", fault_code=self.FAULT_CODE)
        validate_code(self.member_class, "memberClass", fault_code=self.FAULT_CODE)
        validate_code(self.member_code, "memberCode", fault_code=self.FAULT_CODE)
        validate_code(self.server_code, "serverCode", fault_code=self.FAULT_CODE)

    @property
    def owner(self) -> ClientId:
        return ClientId(self.instance, self.member_class, self.member_code)

    def _sort_key(self) -> tuple[str, ...]:
        return (self.instance, self.member_class, self.member_code, self.server_code)

    def to_text(self) -> str:
        return _join((self.instance, self.member_class, self.member_code, self.server_code))

    @classmethod
    def from_text(cls, text: str) -> SecurityServerId:
        """Parse `INSTANCE/CLASS/MEMBER/SERVER` (the `X-Road-Security-Server` header)."""
        parts = _split(text, (4,), cls.FAULT_CODE, "security server", "INSTANCE/CLASS/MEMBER/SERVER")
        return cls(*parts)

    def to_xml(self, tag: XmlTag, *, nsmap: Mapping[str, str] | None = None) -> etree._Element:
        slots = (
            (_INSTANCE, self.instance),
            (_CLASS, self.member_class),
            (_MEMBER, self.member_code),
            (_SERVER, self.server_code),
        )
        return _build_xml(tag, ObjectType.SERVER, slots, nsmap)

    @classmethod
    def from_xml(cls, el: etree._Element) -> SecurityServerId:
        values = _read_typed_xml(el, ObjectType.SERVER)
        return cls(*_expect(el, values, (_INSTANCE, _CLASS, _MEMBER, _SERVER), ()))


# A group stands where a client does (the subject of an access right), so a bad one is
# reported as a bad client identifier.
@dataclass(frozen=True, slots=True)
class GlobalGroupId(_Identifier):
    """A group of clients defined in the central registry for a whole instance."""

    instance: str
    group_code: str

    FAULT_CODE: ClassVar[str] = INVALID_CLIENT_IDENTIFIER
    object_type: ClassVar[ObjectType] = ObjectType.GLOBALGROUP

    def __post_init__(self) -> None:
        validate_code(self.instance, "xRoadInstance", fault_code=self.FAULT_CODE)
        validate_code(self.group_code, "groupCode", fault_code=self.FAULT_CODE)

    def _sort_key(self) -> tuple[str, ...]:
        return (self.instance, self.group_code)

    def to_text(self) -> str:
        return _join((self.instance, self.group_code))

    @classmethod
    def from_text(cls, text: str) -> GlobalGroupId:
        parts = _split(text, (2,), cls.FAULT_CODE, "global group", "INSTANCE/GROUP")
        return cls(*parts)

    def to_xml(self, tag: XmlTag, *, nsmap: Mapping[str, str] | None = None) -> etree._Element:
        return _build_xml(
            tag, ObjectType.GLOBALGROUP, ((_INSTANCE, self.instance), (_GROUP, self.group_code)), nsmap
        )

    @classmethod
    def from_xml(cls, el: etree._Element) -> GlobalGroupId:
        values = _read_typed_xml(el, ObjectType.GLOBALGROUP)
        instance, group_code = _expect(el, values, (_INSTANCE, _GROUP), ())
        return cls(instance, group_code)


@dataclass(frozen=True, slots=True)
class LocalGroupId(_Identifier):
    """A group of clients defined on one gateway, meaningful only there."""

    group_code: str

    FAULT_CODE: ClassVar[str] = INVALID_CLIENT_IDENTIFIER
    object_type: ClassVar[ObjectType] = ObjectType.LOCALGROUP

    def __post_init__(self) -> None:
        validate_code(self.group_code, "groupCode", fault_code=self.FAULT_CODE)

    def _sort_key(self) -> tuple[str, ...]:
        return (self.group_code,)

    def to_text(self) -> str:
        return _join((self.group_code,))

    @classmethod
    def from_text(cls, text: str) -> LocalGroupId:
        parts = _split(text, (1,), cls.FAULT_CODE, "local group", "GROUP")
        return cls(parts[0])

    def to_xml(self, tag: XmlTag, *, nsmap: Mapping[str, str] | None = None) -> etree._Element:
        return _build_xml(tag, ObjectType.LOCALGROUP, ((_GROUP, self.group_code),), nsmap)

    @classmethod
    def from_xml(cls, el: etree._Element) -> LocalGroupId:
        values = _read_typed_xml(el, ObjectType.LOCALGROUP)
        (group_code,) = _expect(el, values, (_GROUP,), ())
        return cls(group_code)


XRoadId = ClientId | ServiceId | SecurityServerId | GlobalGroupId | LocalGroupId

_CLASS_BY_TYPE: Final[Mapping[ObjectType, type[XRoadId]]] = {
    ObjectType.MEMBER: ClientId,
    ObjectType.SUBSYSTEM: ClientId,
    ObjectType.SERVICE: ServiceId,
    ObjectType.SERVER: SecurityServerId,
    ObjectType.GLOBALGROUP: GlobalGroupId,
    ObjectType.LOCALGROUP: LocalGroupId,
}


def identifier_from_xml(el: etree._Element) -> XRoadId:
    """Read an identifier of whatever type its objectType names (e.g. an access right's subject)."""
    return _CLASS_BY_TYPE[_read_object_type(el)].from_xml(el)


def parse_represented_party(text: str) -> tuple[str | None, str]:
    """Parse the `X-Road-Represented-Party: [CLASS/]CODE` REST header into (class, code).

    Each part is percent-decoded on its own, like the other X-Road text identifiers.
    """
    parts = _split(text, (1, 2), INVALID_REQUEST, "represented party", "[CLASS/]CODE")
    if len(parts) == 1:
        return None, validate_code(parts[0], "partyCode")
    return validate_code(parts[0], "partyClass"), validate_code(parts[1], "partyCode")


def format_represented_party(party_class: str | None, party_code: str) -> str:
    """The `X-Road-Represented-Party` header value; inverse of :func:`parse_represented_party`."""
    return _join((party_class, party_code))
