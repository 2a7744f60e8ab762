"""Who may do what through the management API: the roles an API key carries and their permissions.

Sans-IO: a role and a permission in, yes or no out. The API's handlers each name one
permission; the one decision lives here so the matrix can be read, reviewed and tested in
one place. The roles are X-Road's own (security server user roles), so that an operator who
knows X-Road knows who does what here.

The matrix (rows: permissions; ✓: granted)::

    permission                 observer  service_  registration_  security_  system_
                                         admin     officer        officer    admin
    read_configuration            ✓         ✓          ✓             ✓          ✓
    manage_subsystems                                  ✓                        ✓
    manage_client_auth                                 ✓                        ✓
    manage_services                         ✓                                   ✓
    manage_access_rights                    ✓                                   ✓
    manage_local_groups                     ✓                                   ✓
    manage_keys                                                      ✓          ✓
    read_audit_log                                                   ✓          ✓
    read_message_log                                                 ✓          ✓
    manage_cache                            ✓                                   ✓
    read_cache_entries                      ✓                        ✓          ✓
    purge_cache_subject                     ✓                        ✓          ✓
    manage_maintenance                                                          ✓
    read_monitoring                         ✓                        ✓          ✓
    manage_api_keys                                                             ✓
    read_environment              ✓         ✓          ✓             ✓          ✓
    apply_configuration                                                         ✓

- `read_configuration` covers subsystems, services, access rights, local groups, keys and
  certificates: everything but the API keys and the logs. Every role has it (the observer has
  nothing else), because one cannot manage what one cannot see.
- `manage_api_keys` covers reading the list of keys too: names and roles tell an attacker
  whose key to steal.
- `manage_cache` sets and removes the interface cache's policies, purges its entries and starts
  replication runs: the service administrator decides which partners' answers are kept, as
  they decide access rights. The entries list (who asked what, when) is personal data's
  metadata: `read_cache_entries`, also the security officer's, who may purge by data subject
  (`purge_cache_subject`) for an erasure request.
- `manage_maintenance` takes the node out of its load balancer's pool and back (health 503
  while it still serves): a node operation, like stopping it, so the system administrator's.
  Every role reads the switch and what is in flight (`read_configuration`): it is health.
- `read_monitoring` reads the operational monitoring records (who called which service when,
  with what outcome; no bodies) and the per-service statistics: the service administrator, who
  runs the services, and the security officer, who answers for the exchanges.
- `read_environment` (the node's machine, disks, versions, certificates' expiry) is every
  role's: it is what whoever is on duty checks first, and holds no personal data or secret.
- `apply_configuration` replaces every registration at once from a declarative file (subsystems,
  services, rights, groups, cache policies): what no other single role may do piece by piece.
  Exporting the file needs only `read_configuration`: it holds no secrets.
- The audit and message logs are read only by those who answer for security; nobody writes
  them through the API.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

from gateway.webapi.roles import RoleMatrix


class Role(enum.StrEnum):
    """A role an API key carries (X-Road's security server user roles)."""

    OBSERVER = "observer"
    SERVICE_ADMINISTRATOR = "service_administrator"
    REGISTRATION_OFFICER = "registration_officer"
    SECURITY_OFFICER = "security_officer"
    SYSTEM_ADMINISTRATOR = "system_administrator"


class Permission(enum.StrEnum):
    """One kind of operation of the management API; each endpoint requires exactly one."""

    READ_CONFIGURATION = "read_configuration"
    MANAGE_SUBSYSTEMS = "manage_subsystems"  # client registration: add and remove subsystems
    MANAGE_CLIENT_AUTH = "manage_client_auth"  # auth mode and pinned client certificates
    MANAGE_SERVICES = "manage_services"
    MANAGE_ACCESS_RIGHTS = "manage_access_rights"
    MANAGE_LOCAL_GROUPS = "manage_local_groups"
    MANAGE_KEYS = "manage_keys"  # keys, CSRs, certificates
    READ_AUDIT_LOG = "read_audit_log"
    READ_MESSAGE_LOG = "read_message_log"
    MANAGE_CACHE = "manage_cache"  # cache policies, purges, replication runs
    READ_CACHE_ENTRIES = "read_cache_entries"
    PURGE_CACHE_SUBJECT = "purge_cache_subject"  # erasure requests
    MANAGE_MAINTENANCE = "manage_maintenance"  # health 503 while the node drains
    MANAGE_API_KEYS = "manage_api_keys"  # list, create, revoke
    READ_MONITORING = "read_monitoring"  # operational monitoring records and statistics
    READ_ENVIRONMENT = "read_environment"  # OS, load, memory, disks, versions, certificates
    APPLY_CONFIGURATION = "apply_configuration"  # a whole declarative file at once


_P = Permission

PERMISSIONS: Final[Mapping[Role, frozenset[Permission]]] = {
    Role.OBSERVER: frozenset({_P.READ_CONFIGURATION, _P.READ_ENVIRONMENT}),
    Role.SERVICE_ADMINISTRATOR: frozenset(
        {
            _P.READ_CONFIGURATION,
            _P.READ_ENVIRONMENT,
            _P.MANAGE_SERVICES,
            _P.MANAGE_ACCESS_RIGHTS,
            _P.MANAGE_LOCAL_GROUPS,
            _P.MANAGE_CACHE,
            _P.READ_CACHE_ENTRIES,
            _P.PURGE_CACHE_SUBJECT,
            _P.READ_MONITORING,
        }
    ),
    Role.REGISTRATION_OFFICER: frozenset(
        {_P.READ_CONFIGURATION, _P.READ_ENVIRONMENT, _P.MANAGE_SUBSYSTEMS, _P.MANAGE_CLIENT_AUTH}
    ),
    Role.SECURITY_OFFICER: frozenset(
        {
            _P.READ_CONFIGURATION,
            _P.READ_ENVIRONMENT,
            _P.MANAGE_KEYS,
            _P.READ_AUDIT_LOG,
            _P.READ_MESSAGE_LOG,
            _P.READ_CACHE_ENTRIES,
            _P.PURGE_CACHE_SUBJECT,
            _P.READ_MONITORING,
        }
    ),
    Role.SYSTEM_ADMINISTRATOR: frozenset(Permission),
}
"""The matrix of the module docstring; a role not listed has no permission at all."""


MATRIX: Final = RoleMatrix(Role, Permission, PERMISSIONS)
"""The one roles model (gateway.webapi.roles) with this API's roles and permissions."""

is_permitted: Final = MATRIX.is_permitted
parse_role: Final = MATRIX.parse
