"""A gateway's registrations as declared in one file, and the changes that make the stored ones so (sans-IO).

`xgate config apply` (issue 12 item 4) reads a declarative file into a :class:`DeclaredConfig`
of domain values; :func:`plan` compares it with the stored :class:`ServerConfSnapshot` and
lists the :class:`Step` s that make the database equal to it: each one call of a
`ServerConfRepository` change method, by name, so the apply goes through the same checks as
the management API's operations, and in one transaction (`ServerConfRepository.batch`).
Nothing here touches the database; `gateway.admin.declarative` reads files, fetches
descriptions, validates and runs the steps.

The file is the whole configuration: what it leaves out is removed. An unchanged entry plans
nothing, so a second apply of the same file plans no step at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from gateway.ids import ClientId, LocalGroupId, ServiceId
from gateway.serverconf.access import AccessRight
from gateway.serverconf.model import (
    LocalGroup,
    RightsKey,
    ServerConfSnapshot,
    ServiceConf,
    SubsystemConf,
)

ADDED = "+"
REMOVED = "-"
CHANGED = "~"


@dataclass(frozen=True)
class DeclaredPolicy:
    """A cache policy as declared: the service it names and its normalised document."""

    service: ServiceId
    document: Mapping[str, Any]


@dataclass(frozen=True)
class DeclaredConfig:
    """Every registration the file declares, as the domain's values."""

    subsystems: Mapping[ClientId, SubsystemConf]
    services: Mapping[ServiceId, ServiceConf]
    access_rights: Mapping[ClientId, frozenset[AccessRight]]  # by provider
    local_groups: Mapping[ClientId, Mapping[LocalGroupId, LocalGroup]]
    cache_policies: Mapping[str, DeclaredPolicy] = field(default_factory=dict)

    def problems(self) -> list[str]:
        """What makes the declaration impossible to store: names that point at nothing."""
        found: list[str] = []
        for service in self.services:
            if service.provider not in self.subsystems:
                found.append(f"service {service}: its subsystem is not declared")
        for provider, rights in self.access_rights.items():
            codes = {s.service_code for s in self.services if s.provider == provider}
            groups = self.local_groups.get(provider, {})
            for right in sorted(rights, key=_right_key):
                if right.service_code not in codes:
                    found.append(
                        f"{provider}: access right to {right.service_code!r}, a service not declared"
                    )
                if isinstance(right.subject, LocalGroupId) and right.subject not in groups:
                    found.append(f"{provider}: access right for local group {right.subject}, not declared")
        return found

    def snapshot(self) -> ServerConfSnapshot:
        """The registrations as a snapshot, to validate against what will be, not what is
        (a cache policy naming a service the same file adds)."""
        rights: dict[RightsKey, list[AccessRight]] = {}
        for provider, granted in self.access_rights.items():
            for right in sorted(granted, key=_right_key):
                rights.setdefault((provider, right.service_code), []).append(right)
        return ServerConfSnapshot(
            -1,
            MappingProxyType(dict(self.subsystems)),
            MappingProxyType(dict(self.services)),
            MappingProxyType({key: tuple(value) for key, value in rights.items()}),
            MappingProxyType({owner: MappingProxyType(dict(g)) for owner, g in self.local_groups.items()}),
        )


@dataclass(frozen=True)
class Step:
    """One change: `ServerConfRepository.<method>(*args)`, shown as `sign action target: detail`."""

    sign: str
    action: str
    target: str
    method: str
    args: tuple[Any, ...]
    detail: str = ""
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, str]:
        """The step as the diff and the audit log show it (no document bodies, no certificates)."""
        return {"change": self.sign, "action": self.action, "target": self.target, "detail": self.detail}


def _right_key(right: AccessRight) -> tuple[str, str, str, str]:
    endpoint = right.endpoint
    return (
        right.service_code,
        right.subject.to_text(),
        endpoint.method if endpoint else "",
        endpoint.path_pattern if endpoint else "",
    )


def right_text(right: AccessRight) -> str:
    endpoint = f" {right.endpoint.method} {right.endpoint.path_pattern}" if right.endpoint else ""
    subject = f"{right.subject.object_type.value.lower()} {right.subject.to_text()}"
    return f"{subject} → {right.service_code}{endpoint}"


def service_changes(old: ServiceConf, new: ServiceConf) -> list[str]:
    """The names of the settings that differ (endpoints compared as a set: order means nothing)."""
    changed = [
        name
        for name in ("kind", "backend_url", "timeout_seconds", "tls", "enabled", "disabled_notice")
        if getattr(old, name) != getattr(new, name)
    ]
    if old.description != new.description:
        changed.append("description")
    if set(old.endpoints) != set(new.endpoints):
        changed.append("endpoints")
    return changed


def _subsystem_steps(old: SubsystemConf | None, new: SubsystemConf) -> list[Step]:
    client = new.client
    target = client.to_text()
    steps: list[Step] = []
    if old is None:
        steps.append(Step(ADDED, "subsystem.add", target, "add_subsystem", (client, new.auth_mode)))
        old = SubsystemConf(client, new.auth_mode)
    elif old.auth_mode != new.auth_mode:
        detail = f"auth_mode {old.auth_mode.value} → {new.auth_mode.value}"
        steps.append(
            Step(CHANGED, "subsystem.set_auth_mode", target, "set_auth_mode", (client, new.auth_mode), detail)
        )
    if (old.log_bodies, old.timestamp_immediately) != (new.log_bodies, new.timestamp_immediately):
        detail = f"log_bodies {new.log_bodies}, timestamp_immediately {new.timestamp_immediately}"
        policy = {"log_bodies": new.log_bodies, "timestamp_immediately": new.timestamp_immediately}
        steps.append(
            Step(
                CHANGED,
                "subsystem.set_logging_policy",
                target,
                "set_logging_policy",
                (client,),
                detail,
                policy,
            )
        )
    pinned = {c.sha256: c for c in old.certificates}
    wanted = {c.sha256: c for c in new.certificates}
    for sha256 in sorted(wanted.keys() - pinned.keys()):
        steps.append(
            Step(
                ADDED,
                "subsystem.pin_certificate",
                target,
                "pin_certificate",
                (client, wanted[sha256].pem),
                sha256,
            )
        )
    for sha256 in sorted(pinned.keys() - wanted.keys()):
        steps.append(
            Step(
                REMOVED, "subsystem.unpin_certificate", target, "unpin_certificate", (client, sha256), sha256
            )
        )
    return steps


def _group_steps(
    owner: ClientId, old: Mapping[LocalGroupId, LocalGroup], new: Mapping[LocalGroupId, LocalGroup]
) -> tuple[list[Step], list[Step]]:
    """(removals, additions and changes) of one owner's local groups."""
    removals: list[Step] = []
    additions: list[Step] = []
    for code in sorted(old.keys() - new.keys(), key=str):
        target = f"{owner}/{code}"
        removals.append(Step(REMOVED, "local_group.remove", target, "remove_local_group", (owner, code)))
    for code in sorted(new, key=str):
        group, target = new[code], f"{owner}/{code}"
        before = old.get(code)
        if before is None:
            additions.append(
                Step(ADDED, "local_group.add", target, "add_local_group", (owner, code, group.description))
            )
            members: frozenset[ClientId] = frozenset()
        else:
            members = before.members
            if before.description != group.description:
                args = (owner, code, group.description)
                additions.append(
                    Step(CHANGED, "local_group.set_description", target, "set_local_group_description", args)
                )
            for member in sorted(members - group.members):
                removals.append(
                    Step(
                        REMOVED,
                        "local_group.remove_member",
                        target,
                        "remove_local_group_member",
                        (owner, code, member),
                        member.to_text(),
                    )
                )
        for member in sorted(group.members - members):
            additions.append(
                Step(
                    ADDED,
                    "local_group.add_member",
                    target,
                    "add_local_group_member",
                    (owner, code, member),
                    member.to_text(),
                )
            )
    return removals, additions


def plan(
    current: ServerConfSnapshot,
    declared: DeclaredConfig,
    current_policies: Mapping[str, Mapping[str, Any]],
) -> list[Step]:
    """The steps, in an order each one's checks accept, that make `current` into `declared`.

    `current_policies` are the stored cache policies' documents, normalised as the declared
    ones are. Services are added before stale ones go, so a service moving to a new version
    keeps its code's access rights (X-Road removes them with the code's last version).
    """
    kept = [client for client in sorted(declared.subsystems) if client in current.subsystems]
    subsystems: list[Step] = []
    for client in sorted(declared.subsystems):
        subsystems.extend(_subsystem_steps(current.subsystems.get(client), declared.subsystems[client]))

    stale_policies = [
        Step(REMOVED, "cache_policy.remove", name, "remove_cache_policy", (name,))
        for name in sorted(current_policies.keys() - declared.cache_policies.keys())
    ]
    new_policies: list[Step] = []
    for name in sorted(declared.cache_policies):
        policy = declared.cache_policies[name]
        args = (name, policy.service, dict(policy.document))
        if name not in current_policies:
            new_policies.append(Step(ADDED, "cache_policy.add", name, "add_cache_policy", args))
        elif dict(current_policies[name]) != dict(policy.document):
            new_policies.append(Step(CHANGED, "cache_policy.set", name, "update_cache_policy", args))

    revokes: list[Step] = []
    grants: list[Step] = []
    for provider in sorted(declared.subsystems):
        old_rights = set(current.rights(provider)) if provider in kept else set()
        new_rights = declared.access_rights.get(provider, frozenset())
        for right in sorted(old_rights - new_rights, key=_right_key):
            revokes.append(
                Step(
                    REMOVED,
                    "access.revoke",
                    provider.to_text(),
                    "revoke",
                    (provider, right),
                    right_text(right),
                )
            )
        for right in sorted(new_rights - old_rights, key=_right_key):
            grants.append(
                Step(ADDED, "access.grant", provider.to_text(), "grant", (provider, right), right_text(right))
            )

    group_removals: list[Step] = []
    group_additions: list[Step] = []
    for owner in sorted(declared.subsystems):
        old_groups = current.local_groups.get(owner, {}) if owner in kept else {}
        removals, additions = _group_steps(owner, old_groups, declared.local_groups.get(owner, {}))
        group_removals.extend(removals)
        group_additions.extend(additions)

    services: list[Step] = []
    stale_services: list[Step] = []
    for service in sorted(declared.services):
        conf, before = declared.services[service], current.services.get(service)
        if before is None:
            services.append(Step(ADDED, "service.add", service.to_text(), "add_service", (conf,)))
        elif changes := service_changes(before, conf):
            services.append(
                Step(
                    CHANGED,
                    "service.update",
                    service.to_text(),
                    "update_service",
                    (conf,),
                    ", ".join(changes),
                )
            )
    for service in sorted(current.services):
        if service not in declared.services and service.provider in declared.subsystems:
            stale_services.append(
                Step(REMOVED, "service.remove", service.to_text(), "remove_service", (service,))
            )

    stale_subsystems = [
        Step(REMOVED, "subsystem.remove", client.to_text(), "remove_subsystem", (client,))
        for client in sorted(current.subsystems)
        if client not in declared.subsystems
    ]
    return [
        *subsystems,
        *stale_policies,
        *revokes,
        *group_removals,
        *group_additions,
        *services,
        *stale_services,
        *grants,
        *new_policies,
        *stale_subsystems,
    ]


def declared_from_snapshot(
    snapshot: ServerConfSnapshot, policies: Mapping[str, DeclaredPolicy]
) -> DeclaredConfig:
    """What a snapshot declares: the file `export` writes, as values (its apply plans nothing)."""
    return DeclaredConfig(
        subsystems=dict(snapshot.subsystems),
        services=dict(snapshot.services),
        access_rights={client: frozenset(snapshot.rights(client)) for client in snapshot.subsystems},
        local_groups={owner: dict(groups) for owner, groups in snapshot.local_groups.items()},
        cache_policies=dict(policies),
    )
