"""Who calls a management API: the holder of an API key, their role, and what the audit log keeps.

The caller presents an API key (``Authorization: X-Road-ApiKey token=KEY``, X-Road's own scheme,
or ``X-API-Key: KEY``); its role is checked against the operation's permission; every change and
every refusal is written to the audit log (DESIGN.md, security rules).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, Protocol, TypeVar

from aiohttp import web

from gateway.adminstore import ApiKey, AuditChainReport, AuditEntry, AuditResult
from gateway.webapi.errors import AUTH_SCHEME, FORBIDDEN, UNAUTHORIZED, ApiError

log = logging.getLogger(__name__)

API_KEY_HEADER: Final = "X-API-Key"
ANONYMOUS: Final = "anonymous"
"""The audit log's actor for a caller without a valid key."""

_R = TypeVar("_R", bound=enum.Enum)
_P = TypeVar("_P")


Details = Mapping[str, Any] | None


class KeyStore(Protocol):
    """Where an API's keys and audit log live (gateway.adminstore.AdminStore, or a repository
    that holds one); the API-key and audit-log operations (gateway.webapi.keys) use the rest."""

    def verify_api_key(self, key: str) -> ApiKey | None: ...
    def audit(
        self, actor: str, action: str, target: str, details: Details, result: AuditResult
    ) -> object: ...
    def list_api_keys(self) -> list[ApiKey]: ...
    def create_api_key(self, name: str, role: str) -> tuple[ApiKey, str]: ...
    def revoke_api_key(self, key_id: int) -> bool | None: ...
    def verify_audit_chain(self) -> AuditChainReport: ...
    @property
    def audit_entries(self) -> Callable[..., list[AuditEntry]]: ...


@dataclass(frozen=True)
class Caller(Generic[_R]):
    """The holder of a valid API key."""

    key_id: int
    name: str
    role: _R | None  # None: a role this version does not know, which grants nothing

    @property
    def actor(self) -> str:
        """How the audit log names the caller: the key's name and id (names need not be unique)."""
        return f"{self.name}#{self.key_id}"


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The API key in the request headers, if one is given in a form we accept."""
    authorization = headers.get("Authorization")
    if authorization is not None:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() == AUTH_SCHEME.lower():
            name, equals, token = credentials.strip().partition("=")
            return token.strip() if equals and name.strip().lower() == "token" and token.strip() else None
    key = headers.get(API_KEY_HEADER)
    return key.strip() if key and key.strip() else None


async def authenticate(
    request: web.Request, verify: Callable[[str], ApiKey | None], roles: type[_R]
) -> Caller[_R]:
    """The caller behind the request's API key (checked by `verify` in a worker thread), or 401."""
    key = presented_key(request.headers)
    if key is None:
        raise ApiError(401, UNAUTHORIZED, f"an API key is required: Authorization: {AUTH_SCHEME} token=KEY")
    record = await asyncio.to_thread(verify, key)
    if record is None:
        raise ApiError(401, UNAUTHORIZED, "the API key is not valid or has been revoked")
    role: _R | None
    try:
        role = roles(record.role)
    except ValueError:
        role = None
    return Caller(record.id, record.name, role)


def authorize(caller: Caller[_R], permission: _P, is_permitted: Callable[[_R, _P], bool]) -> None:
    """403 unless the caller's role holds `permission`."""
    if caller.role is None or not is_permitted(caller.role, permission):
        raise ApiError(403, FORBIDDEN, f"role {caller.role or 'unknown'} lacks permission {permission}")


def refusal_details(error: ApiError) -> tuple[dict[str, Any], AuditResult]:
    """What the audit log keeps of an error answer: refused below 500, failed from 500 on."""
    details = {"status": error.status, "error": error.code, "message": error.message}
    return details, AuditResult.REFUSED if error.status < 500 else AuditResult.ERROR


async def audit_quietly(
    write: Callable[[str, str, str, Mapping[str, Any] | None, AuditResult], object],
    actor: str,
    action: str,
    target: str,
    details: Mapping[str, Any] | None,
    result: AuditResult,
) -> None:
    """Write one audit entry in a worker thread; a failure to write is logged, never hides the answer."""
    try:
        await asyncio.to_thread(write, actor, action, target, details, result)
    except Exception:
        log.exception("could not audit %s %s by %s (%s)", action, target, actor, result)
