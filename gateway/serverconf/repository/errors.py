"""The repository's refusals: each message says why, for the administrator."""

from __future__ import annotations


class ServerConfError(Exception):
    """A change the configuration refuses; the message says why, for the administrator."""


class NotFound(ServerConfError):
    """The change names something not registered."""


class AlreadyExists(ServerConfError):
    """The change would register something a second time."""


class ConfigurationChanged(ServerConfError):
    """The configuration moved on since a change was planned against it (someone else changed it)."""
