"""Who may do what through the registry's management API: roles and their permissions.

Sans-IO, like `gateway.admin.roles` for the gateway's API. The roles follow X-Road's central
server: the registry administrator runs the registry (trust services, settings, signing
keys, API keys); the registration officer registers members and gateways and decides their
requests; the observer reads.

The matrix (rows: permissions; ✓: granted)::

    permission              observer  registration_officer  registry_administrator
    read_registry              ✓               ✓                      ✓
    manage_members                             ✓                      ✓
    decide_requests                            ✓                      ✓
    manage_federation                                                 ✓
    manage_signing_keys                                               ✓
    read_audit_log                                                    ✓
    manage_api_keys                                                   ✓

- `manage_members`: members, subsystems, security servers and what they host, global groups.
- `manage_federation`: member classes, trusted CAs and OCSP responders, TSAs, settings.
- `read_registry` covers everything but API keys and the audit log.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

from gateway.webapi.roles import RoleMatrix


class Role(enum.StrEnum):
    OBSERVER = "observer"
    REGISTRATION_OFFICER = "registration_officer"
    REGISTRY_ADMINISTRATOR = "registry_administrator"


class Permission(enum.StrEnum):
    READ_REGISTRY = "read_registry"
    MANAGE_MEMBERS = "manage_members"
    DECIDE_REQUESTS = "decide_requests"
    MANAGE_FEDERATION = "manage_federation"
    MANAGE_SIGNING_KEYS = "manage_signing_keys"
    READ_AUDIT_LOG = "read_audit_log"
    MANAGE_API_KEYS = "manage_api_keys"


_P = Permission

PERMISSIONS: Final[Mapping[Role, frozenset[Permission]]] = {
    Role.OBSERVER: frozenset({_P.READ_REGISTRY}),
    Role.REGISTRATION_OFFICER: frozenset({_P.READ_REGISTRY, _P.MANAGE_MEMBERS, _P.DECIDE_REQUESTS}),
    Role.REGISTRY_ADMINISTRATOR: frozenset(Permission),
}
"""The matrix of the module docstring; a role not listed has no permission at all."""


MATRIX: Final = RoleMatrix(Role, Permission, PERMISSIONS)
"""The one roles model (gateway.webapi.roles) with this API's roles and permissions."""

is_permitted: Final = MATRIX.is_permitted
parse_role: Final = MATRIX.parse
