"""Operations on who belongs to the federation: member classes, members, subsystems, global groups."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from gateway.central.manage.context import (
    TABLE,
    OptionalText,
    RegistryContext,
    Text,
    configuration,
    here,
    run,
)
from gateway.central.roles import Permission as P
from gateway.globalconf import GlobalConf
from gateway.ids import ClientId
from gateway.webapi import Call, Outcome, not_found
from gateway.webapi.types import Answer, Body, ClientIdField, Code, MemberIdField, Params, SubsystemIdField

# --- member classes -------------------------------------------------------------------------


class MemberClass(Answer):
    code: str
    description: str


class MemberClassList(Answer):
    member_classes: list[MemberClass]


class NewMemberClass(Body):
    code: Code
    description: OptionalText = ""


class DescriptionChange(Body):
    description: OptionalText


class CodePath(Params):
    code: Code


@TABLE.read("/member-classes", "member_class.list", P.READ_REGISTRY, MemberClassList)
async def list_member_classes(ctx: RegistryContext, call: Call[None, None]) -> Outcome:
    """List the member classes."""
    classes = await run(ctx.repository.member_classes)
    return Outcome({"member_classes": [{"code": c.code, "description": c.description} for c in classes]})


@TABLE.create("/member-classes", "member_class.add", P.MANAGE_FEDERATION, MemberClass)
async def add_member_class(ctx: RegistryContext, call: Call[None, NewMemberClass]) -> Outcome:
    """Add a member class."""
    code, description = call.body.code, call.body.description
    await run(ctx.repository.add_member_class, code, description)
    return Outcome({"code": code, "description": description}, 201, f"member class {code}")


@TABLE.change("PUT", "/member-classes/{code}", "member_class.update", P.MANAGE_FEDERATION, MemberClass)
async def update_member_class(ctx: RegistryContext, call: Call[CodePath, DescriptionChange]) -> Outcome:
    """Change a member class's description."""
    code, description = call.params.code, call.body.description
    await run(ctx.repository.set_member_class_description, code, description)
    return Outcome({"code": code, "description": description}, 200, f"member class {code}")


@TABLE.delete("/member-classes/{code}", "member_class.remove", P.MANAGE_FEDERATION)
async def remove_member_class(ctx: RegistryContext, call: Call[CodePath, None]) -> Outcome:
    """Delete a member class no member belongs to."""
    await run(ctx.repository.remove_member_class, call.params.code)
    return Outcome(None, 204, f"member class {call.params.code}")


# --- members and subsystems -----------------------------------------------------------------


class Member(Answer):
    member_id: str = Field(description="INSTANCE/CLASS/MEMBER")
    member_class: str
    member_code: str
    name: str
    subsystems: list[str]
    security_servers: list[str]


class MemberList(Answer):
    members: list[Member]


class NewMember(Body):
    member_class: Code
    member_code: Code
    name: Text


class MemberName(Body):
    name: Text


class MemberPath(Params):
    member_id: MemberIdField


class Subsystem(Answer):
    client_id: str
    servers: list[str] = Field(description="The security servers hosting it.")


class SubsystemList(Answer):
    subsystems: list[Subsystem]


class NewSubsystem(Body):
    client_id: SubsystemIdField


class SubsystemPath(Params):
    client_id: SubsystemIdField


def member_json(conf: GlobalConf, member: ClientId) -> dict[str, Any]:
    key = (member.member_class, member.member_code)
    found = next((m for m in conf.members if (m.member_class, m.member_code) == key), None)
    if found is None:
        raise not_found(f"no member {member} is registered")
    return {
        "member_id": member.to_text(),
        "member_class": found.member_class,
        "member_code": found.member_code,
        "name": found.name,
        "subsystems": [client.to_text() for client in found.subsystem_ids(conf.instance)],
        "security_servers": [s.id.to_text() for s in conf.security_servers if s.id.owner == member],
    }


@TABLE.read("/members", "member.list", P.READ_REGISTRY, MemberList)
async def list_members(ctx: RegistryContext, call: Call[None, None]) -> Outcome:
    """List the members with their subsystems and security servers."""
    conf = await configuration(ctx)
    return Outcome({"members": [member_json(conf, m.client_id(conf.instance)) for m in conf.members]})


@TABLE.create("/members", "member.add", P.MANAGE_MEMBERS, Member)
async def add_member(ctx: RegistryContext, call: Call[None, NewMember]) -> Outcome:
    """Register a member."""
    body = call.body
    member = ClientId(ctx.repository.instance, body.member_class, body.member_code)
    await run(ctx.repository.add_member, member, body.name)
    return Outcome(
        member_json(await configuration(ctx), member), 201, f"member {member}", {"name": body.name}
    )


@TABLE.read("/members/{member_id}", "member.read", P.READ_REGISTRY, Member)
async def read_member(ctx: RegistryContext, call: Call[MemberPath, None]) -> Outcome:
    """Show one member."""
    return Outcome(member_json(await configuration(ctx), here(ctx, call.params.member_id)))


@TABLE.change("PUT", "/members/{member_id}", "member.rename", P.MANAGE_MEMBERS, Member)
async def rename_member(ctx: RegistryContext, call: Call[MemberPath, MemberName]) -> Outcome:
    """Change a member's name."""
    member, name = here(ctx, call.params.member_id), call.body.name
    await run(ctx.repository.rename_member, member, name)
    return Outcome(member_json(await configuration(ctx), member), 200, f"member {member}", {"name": name})


@TABLE.delete("/members/{member_id}", "member.remove", P.MANAGE_MEMBERS)
async def remove_member(ctx: RegistryContext, call: Call[MemberPath, None]) -> Outcome:
    """Delete a member with its subsystems and security servers."""
    member = here(ctx, call.params.member_id)
    await run(ctx.repository.remove_member, member)
    return Outcome(None, 204, f"member {member}")


@TABLE.read("/subsystems", "subsystem.list", P.READ_REGISTRY, SubsystemList)
async def list_subsystems(ctx: RegistryContext, call: Call[None, None]) -> Outcome:
    """List the subsystems and the security servers hosting each."""
    conf = await configuration(ctx)
    subsystems = [client for member in conf.members for client in member.subsystem_ids(conf.instance)]
    answer = [
        {"client_id": client.to_text(), "servers": [s.id.to_text() for s in conf.servers_for(client)]}
        for client in subsystems
    ]
    return Outcome({"subsystems": answer})


@TABLE.create("/subsystems", "subsystem.add", P.MANAGE_MEMBERS, Subsystem)
async def add_subsystem(ctx: RegistryContext, call: Call[None, NewSubsystem]) -> Outcome:
    """Register a subsystem of a registered member."""
    client = here(ctx, call.body.client_id)
    await run(ctx.repository.add_subsystem, client)
    return Outcome({"client_id": client.to_text(), "servers": []}, 201, f"subsystem {client}")


@TABLE.delete("/subsystems/{client_id}", "subsystem.remove", P.MANAGE_MEMBERS)
async def remove_subsystem(ctx: RegistryContext, call: Call[SubsystemPath, None]) -> Outcome:
    """Delete a subsystem; no gateway hosts it afterwards."""
    client = here(ctx, call.params.client_id)
    await run(ctx.repository.remove_subsystem, client)
    return Outcome(None, 204, f"subsystem {client}")


# --- global groups --------------------------------------------------------------------------


class GlobalGroup(Answer):
    code: str
    group_id: str = Field(description="INSTANCE/GROUP")
    description: str
    members: list[str]


class GlobalGroupList(Answer):
    global_groups: list[GlobalGroup]


class NewGlobalGroup(Body):
    code: Code
    description: OptionalText = ""


class NewGroupMember(Body):
    client_id: ClientIdField


class GroupMemberPath(CodePath):
    client_id: ClientIdField


def group_json(conf: GlobalConf, code: str) -> dict[str, Any]:
    group = next((g for g in conf.global_groups if g.id.group_code == code), None)
    if group is None:
        raise not_found(f"no global group {code!r}")
    return {
        "code": code,
        "group_id": group.id.to_text(),
        "description": group.description,
        "members": [c.to_text() for c in group.members],
    }


@TABLE.read("/global-groups", "global_group.list", P.READ_REGISTRY, GlobalGroupList)
async def list_global_groups(ctx: RegistryContext, call: Call[None, None]) -> Outcome:
    """List the global groups and their members."""
    conf = await configuration(ctx)
    return Outcome({"global_groups": [group_json(conf, g.id.group_code) for g in conf.global_groups]})


@TABLE.create("/global-groups", "global_group.add", P.MANAGE_MEMBERS, GlobalGroup)
async def add_global_group(ctx: RegistryContext, call: Call[None, NewGlobalGroup]) -> Outcome:
    """Create a global group."""
    code = call.body.code
    await run(ctx.repository.add_global_group, code, call.body.description)
    return Outcome(group_json(await configuration(ctx), code), 201, f"global group {code}")


@TABLE.change("PUT", "/global-groups/{code}", "global_group.update", P.MANAGE_MEMBERS, GlobalGroup)
async def update_global_group(ctx: RegistryContext, call: Call[CodePath, DescriptionChange]) -> Outcome:
    """Change a global group's description."""
    code = call.params.code
    await run(ctx.repository.set_global_group_description, code, call.body.description)
    return Outcome(group_json(await configuration(ctx), code), 200, f"global group {code}")


@TABLE.delete("/global-groups/{code}", "global_group.remove", P.MANAGE_MEMBERS)
async def remove_global_group(ctx: RegistryContext, call: Call[CodePath, None]) -> Outcome:
    """Delete a global group."""
    await run(ctx.repository.remove_global_group, call.params.code)
    return Outcome(None, 204, f"global group {call.params.code}")


@TABLE.create("/global-groups/{code}/members", "global_group.add_member", P.MANAGE_MEMBERS, GlobalGroup)
async def add_global_group_member(ctx: RegistryContext, call: Call[CodePath, NewGroupMember]) -> Outcome:
    """Add a member or subsystem to a global group."""
    code, client = call.params.code, here(ctx, call.body.client_id)
    await run(ctx.repository.add_global_group_member, code, client)
    conf = await configuration(ctx)
    return Outcome(group_json(conf, code), 201, f"global group {code}", {"client": client.to_text()})


@TABLE.delete("/global-groups/{code}/members/{client_id}", "global_group.remove_member", P.MANAGE_MEMBERS)
async def remove_global_group_member(ctx: RegistryContext, call: Call[GroupMemberPath, None]) -> Outcome:
    """Remove a member or subsystem from a global group."""
    code, client = call.params.code, here(ctx, call.params.client_id)
    await run(ctx.repository.remove_global_group_member, code, client)
    return Outcome(None, 204, f"global group {code}", {"client": client.to_text()})
