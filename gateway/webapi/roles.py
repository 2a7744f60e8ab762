"""One roles model for the management APIs: which role holds which permission.

Sans-IO: a role and a permission in, yes or no out. Each API names its own roles (X-Road's
security server roles for a gateway, its central server roles for the registry) and its own
permissions; the matrix, the decision and the parsing of a role's name are written once here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

_R = TypeVar("_R", bound=enum.StrEnum)
_P = TypeVar("_P", bound=enum.StrEnum)


@dataclass(frozen=True)
class RoleMatrix(Generic[_R, _P]):
    """Roles (`roles`), permissions (`permissions`), and the permissions each role holds."""

    roles: type[_R]
    permissions: type[_P]
    grants: Mapping[_R, frozenset[_P]]
    """A role not listed holds no permission at all."""

    def is_permitted(self, role: _R, permission: _P) -> bool:
        """Whether a key with `role` may perform operations requiring `permission`."""
        return permission in self.grants.get(role, frozenset())

    def holders(self, permission: _P) -> list[_R]:
        """The roles holding `permission`, in the roles' order: what the API document lists."""
        return [role for role in self.roles if self.is_permitted(role, permission)]

    def parse(self, text: str) -> _R:
        """The role named `text`, or ValueError listing the roles there are."""
        try:
            return self.roles(text)
        except ValueError:
            names = ", ".join(role.value for role in self.roles)
            raise ValueError(f"unknown role {text!r}: one of {names}") from None
