"""Operations on who may call a subsystem's services: access rights and local groups."""

from __future__ import annotations

import asyncio
import enum
import re
from typing import Any, Final

from pydantic import ConfigDict, Field, model_validator

from gateway.admin.context import TABLE, AdminContext, ClientPath, snapshot, with_subsystem
from gateway.admin.roles import Permission as P
from gateway.globalconf.model import GlobalConf
from gateway.ids import ClientId, GlobalGroupId, LocalGroupId, ObjectType, slash_form
from gateway.serverconf.access import (
    MAX_PATH_PATTERN_LENGTH,
    AccessRight,
    AccessSubject,
    Endpoint,
    subject_from_text,
)
from gateway.serverconf.repository import LocalGroup
from gateway.webapi import ApiError, Call, Outcome, invalid, not_found
from gateway.webapi.types import (
    CODE_PATTERN,
    GLOBAL_GROUP_PATTERN,
    MAX_IDENTIFIER_LENGTH,
    MEMBER_PATTERN,
    PATTERN_MEANINGS,
    SUBSYSTEM_PATTERN,
    Answer,
    Body,
    ClientIdField,
    Code,
    Description,
)

UNKNOWN_SUBJECT: Final = "unknown_subject"
"""The error code of a grant to a subject no caller can be."""


class SubjectType(enum.StrEnum):
    """What an access right is granted to."""

    MEMBER = "member"
    SUBSYSTEM = "subsystem"
    GLOBALGROUP = "globalgroup"
    LOCALGROUP = "localgroup"


_METHOD = Field(
    None,
    pattern=r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,32}$",
    description="HTTP method or `*`; none for the whole service.",
)
_PATH = Field(
    None,
    pattern="^/",
    max_length=MAX_PATH_PATTERN_LENGTH,
    description="Path pattern with `*` wildcards; none for the whole service.",
)


class AccessRightView(Answer):
    subject: str = Field(
        description="Client text form, INSTANCE/GROUP for a global group, GROUP for a local one."
    )
    subject_type: SubjectType
    service_code: str
    method: str | None
    path: str | None


class AccessRightList(Answer):
    access_rights: list[AccessRightView]


class ServiceCodePath(ClientPath):
    service_code: Code


def _both_or_neither(method: str | None, path: str | None) -> None:
    if (method is None) != (path is None):
        raise invalid("give both method and path for an endpoint, or neither for the whole service")


_SUBJECT_PATTERNS: Final = {
    SubjectType.MEMBER: MEMBER_PATTERN,
    SubjectType.SUBSYSTEM: SUBSYSTEM_PATTERN,
    SubjectType.GLOBALGROUP: GLOBAL_GROUP_PATTERN,
    SubjectType.LOCALGROUP: CODE_PATTERN,
}


def _subject_by_type(schema: dict[str, Any]) -> None:
    """In the document as in the check: the subject's form follows its type; an endpoint is a
    method and a path, or neither (none may be null)."""
    for name in ("method", "path"):
        options = schema["properties"][name].pop("anyOf")
        schema["properties"][name].update(next(option for option in options if option != {"type": "null"}))
        schema["properties"][name].pop("default", None)
    by_type = [
        {"properties": {"subject_type": {"enum": [kind.value]}, "subject": {"pattern": pattern}}}
        for kind, pattern in _SUBJECT_PATTERNS.items()
    ]
    endpoint = [
        {"required": ["method", "path"]},
        {"not": {"anyOf": [{"required": ["method"]}, {"required": ["path"]}]}},
    ]
    schema["allOf"] = [{"oneOf": by_type}, {"oneOf": endpoint}]


class NewAccessRight(Body):
    model_config = ConfigDict(json_schema_extra=_subject_by_type)
    subject: str = Field(min_length=1, max_length=MAX_IDENTIFIER_LENGTH)
    subject_type: SubjectType
    method: str | None = _METHOD
    path: str | None = _PATH
    force: bool = Field(
        False,
        description="Grant even to a subject the global configuration does not list "
        "(yet): a typo otherwise grants nobody, silently.",
    )

    @model_validator(mode="after")
    def _endpoint(self) -> NewAccessRight:
        if (self.method is None) != (self.path is None):
            raise ValueError("give both method and path for an endpoint, or neither for the whole service")
        if re.fullmatch(_SUBJECT_PATTERNS[self.subject_type], self.subject) is None:
            raise ValueError(f"subject must be {PATTERN_MEANINGS[_SUBJECT_PATTERNS[self.subject_type]]}")
        return self


class RevokedAccessRight(ServiceCodePath):
    """The right to revoke, named by query parameters."""

    subject: str = Field(min_length=1, max_length=MAX_IDENTIFIER_LENGTH)
    subject_type: SubjectType
    method: str | None = _METHOD
    path: str | None = _PATH


_SUBJECT_TYPE_BY_PARTS: Final = {
    1: SubjectType.LOCALGROUP,
    2: SubjectType.GLOBALGROUP,
    3: SubjectType.MEMBER,
    4: SubjectType.SUBSYSTEM,
}


def read_subject(text: str) -> tuple[SubjectType, str]:
    """A subject's type and text form from how it is written: by its number of parts, GROUP (a
    local group), INSTANCE/GROUP (a global group), INSTANCE/CLASS/MEMBER or .../SUBSYSTEM; or
    with its type in front, as X-Road writes it (`GLOBALGROUP:DEV/partners`, any case)."""
    written_type, colon, rest = text.partition(":")
    if colon and written_type.lower() in set(SubjectType):
        kind = SubjectType(written_type.lower())
        return kind, slash_form(rest)
    spelled = slash_form(text)
    found = _SUBJECT_TYPE_BY_PARTS.get(spelled.count("/") + 1)
    if found is None:
        raise ValueError(
            f"subject {text!r} is none of GROUP (local group), INSTANCE/GROUP (global group), "
            "INSTANCE/CLASS/MEMBER or INSTANCE/CLASS/MEMBER/SUBSYSTEM"
        )
    return found, spelled


def unknown_subject(subject: AccessSubject, conf: GlobalConf) -> str | None:
    """Why no caller can ever be `subject`, or None: a member, subsystem or global group the
    global configuration does not list. (A local group must exist to be granted anything.)"""
    if isinstance(subject, ClientId):
        known = conf.is_known(subject)
    elif isinstance(subject, GlobalGroupId):
        known = any(group.id == subject for group in conf.global_groups)
    else:
        return None
    where = f"the global configuration (version {conf.version})"
    return None if known else f"{subject} is not registered in {where}"


def access_subject(text: str, subject_type: str) -> AccessSubject:
    """The subject of a right from its text form and type (member, subsystem, globalgroup, localgroup)."""
    kind = ObjectType(SubjectType(subject_type.lower()).value.upper())
    return subject_from_text(kind, slash_form(text))


def _access_right(service_code: str, values: NewAccessRight | RevokedAccessRight) -> AccessRight:
    _both_or_neither(values.method, values.path)
    subject = access_subject(values.subject, values.subject_type)
    endpoint = None
    if values.method is not None and values.path is not None:
        try:
            endpoint = Endpoint(values.method, values.path)
        except ValueError as exc:
            raise invalid(str(exc)) from None
    return AccessRight(subject, service_code, endpoint)


def right_json(right: AccessRight) -> dict[str, Any]:
    return {
        "subject": right.subject.to_text(),
        "subject_type": right.subject.object_type.value.lower(),
        "service_code": right.service_code,
        "method": right.endpoint.method if right.endpoint else None,
        "path": right.endpoint.path_pattern if right.endpoint else None,
    }


async def _check_service(ctx: AdminContext, params: ServiceCodePath) -> None:
    """404 unless the provider has a service of this code (whatever its version)."""
    provider, code = params.client_id, params.service_code
    conf = await with_subsystem(ctx, provider)
    if not any(service.service.service_code == code for service in conf.services_of(provider)):
        raise not_found(f"{provider} has no service {code!r}")


_RIGHTS: Final = "/subsystems/{client_id}/services/{service_code}/access-rights"


@TABLE.read(_RIGHTS, "access.list", P.READ_CONFIGURATION, AccessRightList)
async def list_access_rights(ctx: AdminContext, call: Call[ServiceCodePath, None]) -> Outcome:
    """List the rights to a service code, whatever its version (X-Road grants per code)."""
    await _check_service(ctx, call.params)
    conf = await snapshot(ctx)
    rights = conf.rights(call.params.client_id, call.params.service_code)
    return Outcome({"access_rights": [right_json(right) for right in rights]})


@TABLE.create(_RIGHTS, "access.grant", P.MANAGE_ACCESS_RIGHTS, AccessRightView)
async def grant_access(ctx: AdminContext, call: Call[ServiceCodePath, NewAccessRight]) -> Outcome:
    """Grant a member, subsystem or group the right to call a service (or one endpoint of it)."""
    await _check_service(ctx, call.params)
    provider = call.params.client_id
    right = _access_right(call.params.service_code, call.body)
    if not call.body.force:
        refuse_unknown_subject(ctx, right.subject)
    await asyncio.to_thread(ctx.repository.grant, provider, right)
    body = right_json(right)
    return Outcome(body, 201, f"{provider}/{right.service_code}", body)


def refuse_unknown_subject(ctx: AdminContext, subject: AccessSubject) -> None:
    """A 404 naming a subject no caller can be (a typo would grant nobody, silently); unchecked
    while the node has no global configuration yet."""
    conf = ctx.globalconf() if ctx.globalconf is not None else None
    reason = None if conf is None else unknown_subject(subject, conf)
    if reason is not None:
        hint = "check its spelling (identifiers are case-sensitive), or grant with force"
        raise ApiError(404, UNKNOWN_SUBJECT, f"{reason}: {hint}")


@TABLE.delete(
    "/subsystems/{client_id}/services/{service_code}/access-rights", "access.revoke", P.MANAGE_ACCESS_RIGHTS
)
async def revoke_access(ctx: AdminContext, call: Call[RevokedAccessRight, None]) -> Outcome:
    """Revoke a right, named by the query parameters subject, subject_type, method, path."""
    await _check_service(ctx, call.params)
    provider = call.params.client_id
    right = _access_right(call.params.service_code, call.params)
    await asyncio.to_thread(ctx.repository.revoke, provider, right)
    return Outcome(None, 204, f"{provider}/{right.service_code}", right_json(right))


# --- local groups --------------------------------------------------------------------------


class LocalGroupView(Answer):
    code: str
    description: str
    members: list[str] = Field(description="Clients, INSTANCE/CLASS/MEMBER[/SUBSYSTEM].")


class LocalGroupList(Answer):
    local_groups: list[LocalGroupView]


class NewLocalGroup(Body):
    code: Code
    description: Description = ""


class GroupPath(ClientPath):
    group_code: Code


class NewGroupMember(Body):
    client_id: ClientIdField


class GroupMemberPath(GroupPath):
    member_id: ClientIdField


def group_json(group: LocalGroup) -> dict[str, Any]:
    return {
        "code": group.group.group_code,
        "description": group.description,
        "members": [member.to_text() for member in sorted(group.members)],
    }


@TABLE.read("/subsystems/{client_id}/local-groups", "local_group.list", P.READ_CONFIGURATION, LocalGroupList)
async def list_local_groups(ctx: AdminContext, call: Call[ClientPath, None]) -> Outcome:
    """List a subsystem's local groups."""
    conf = await with_subsystem(ctx, call.params.client_id)
    groups = conf.local_groups_of(call.params.client_id)
    return Outcome({"local_groups": [group_json(group) for group in groups]})


@TABLE.create(
    "/subsystems/{client_id}/local-groups", "local_group.add", P.MANAGE_LOCAL_GROUPS, LocalGroupView
)
async def add_local_group(ctx: AdminContext, call: Call[ClientPath, NewLocalGroup]) -> Outcome:
    """Create a local group of a subsystem."""
    owner, group, description = call.params.client_id, LocalGroupId(call.body.code), call.body.description
    await asyncio.to_thread(ctx.repository.add_local_group, owner, group, description)
    result = group_json(LocalGroup(owner, group, description, frozenset()))
    return Outcome(result, 201, f"{owner}/{group}", {"description": description})


@TABLE.delete(
    "/subsystems/{client_id}/local-groups/{group_code}", "local_group.remove", P.MANAGE_LOCAL_GROUPS
)
async def remove_local_group(ctx: AdminContext, call: Call[GroupPath, None]) -> Outcome:
    """Delete a local group with its members and the access rights granted to it."""
    owner, group = call.params.client_id, LocalGroupId(call.params.group_code)
    await asyncio.to_thread(ctx.repository.remove_local_group, owner, group)
    return Outcome(None, 204, f"{owner}/{group}")


@TABLE.create(
    "/subsystems/{client_id}/local-groups/{group_code}/members",
    "local_group.add_member",
    P.MANAGE_LOCAL_GROUPS,
    NewGroupMember,
)
async def add_group_member(ctx: AdminContext, call: Call[GroupPath, NewGroupMember]) -> Outcome:
    """Add a client to a local group."""
    owner, group = call.params.client_id, LocalGroupId(call.params.group_code)
    member = call.body.client_id
    await asyncio.to_thread(ctx.repository.add_local_group_member, owner, group, member)
    body = {"client_id": member.to_text()}
    return Outcome(body, 201, f"{owner}/{group}", body)


@TABLE.delete(
    "/subsystems/{client_id}/local-groups/{group_code}/members/{member_id}",
    "local_group.remove_member",
    P.MANAGE_LOCAL_GROUPS,
)
async def remove_group_member(ctx: AdminContext, call: Call[GroupMemberPath, None]) -> Outcome:
    """Remove a client from a local group."""
    owner, group = call.params.client_id, LocalGroupId(call.params.group_code)
    member = call.params.member_id
    await asyncio.to_thread(ctx.repository.remove_local_group_member, owner, group, member)
    return Outcome(None, 204, f"{owner}/{group}", {"client_id": member.to_text()})
