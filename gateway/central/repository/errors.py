"""The registry's refusals: each message says why, for the administrator."""

from __future__ import annotations


class RegistryError(Exception):
    """A change the registry refuses; the message says why, for the administrator."""


class NotFound(RegistryError):
    """The change names something not registered."""


class Conflict(RegistryError):
    """The change clashes with what is stored (a duplicate, a decided request, a key in use)."""


class AlreadyExists(Conflict):
    """The change would register something a second time."""


class InvalidChange(RegistryError):
    """The change breaks a rule, or would make the published configuration inconsistent."""
