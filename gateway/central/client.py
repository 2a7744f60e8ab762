"""The gateway's side of registration: build signed requests, submit them, read their state.

Used by `xgate gateway register | add-subsystem | status` (gateway_cli.py) and by scripts.
Each function signs with the keys it is given (`requests.py` says which), posts to the
registry's public ``POST /requests`` (no API key: the signatures authenticate the request)
and answers the request's state as the registry reports it. An administrator then approves
or rejects it; :func:`request_status` shows the decision, who made it and why.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import requests
from cryptography import x509

from gateway.apicli import ApiCallError, json_answer
from gateway.central.requests import RequestType, build_signed_request, new_request
from gateway.crypto.certs import certificate_to_pem
from gateway.crypto.keys import PrivateKey
from gateway.ids import ClientId, SecurityServerId

DEFAULT_TIMEOUT_SECONDS: Final = 30.0
"""Submitting is one signature check and one transaction at the registry; 30 s rides out a busy one."""


class RegistryRequestError(ApiCallError):
    """The registry refused the request (or something that is not the registry answered)."""


@dataclass(frozen=True)
class RequestStatus:
    """A request's state as the registry reports it (`pending`, `approved`, `rejected`)."""

    id: str
    type: str
    state: str
    submitted_at: str
    decided_at: str | None
    decided_by: str | None
    reason: str | None
    details: dict[str, Any]

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> RequestStatus:
        return cls(
            str(value["id"]),
            str(value["type"]),
            str(value["state"]),
            str(value["submitted_at"]),
            value.get("decided_at"),
            value.get("decided_by"),
            value.get("reason"),
            value,
        )


def _base(registry_url: str) -> str:
    return registry_url.rstrip("/")


def _answer(response: requests.Response) -> RequestStatus:
    body = json_answer(response, RegistryRequestError)
    if not isinstance(body, dict):
        raise RegistryRequestError(response.status_code, "error", str(body))
    return RequestStatus.from_json(body)


def submit_request(
    registry_url: str, signed: bytes, *, timeout: float = DEFAULT_TIMEOUT_SECONDS
) -> RequestStatus:
    """POST a signed request to the registry; the pending request as stored, or RegistryRequestError."""
    response = requests.post(
        _base(registry_url) + "/requests",
        data=signed,
        headers={"Content-Type": "application/json"},
        timeout=timeout,
        allow_redirects=False,
    )
    return _answer(response)


def request_status(
    registry_url: str, request_id: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS
) -> RequestStatus:
    response = requests.get(
        f"{_base(registry_url)}/requests/{quote(request_id, safe='')}", timeout=timeout, allow_redirects=False
    )
    return _answer(response)


def _now(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else dt.datetime.now(dt.UTC)


def register_server(
    registry_url: str,
    server_id: SecurityServerId,
    address: str,
    auth_cert: x509.Certificate,
    auth_key: PrivateKey,
    sign_cert: x509.Certificate,
    sign_key: PrivateKey,
    *,
    replaces: str | None = None,
    now: dt.datetime | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> RequestStatus:
    """Ask to register `auth_cert` for the gateway (creating it when new), at `address`.

    `replaces` (SHA-256 hex) names a certificate of the same gateway to drop on approval:
    how an expiring authentication certificate is renewed without a gap.
    """
    request = new_request(
        RequestType.AUTH_CERT_REGISTRATION,
        server_id.owner,
        _now(now),
        server=server_id,
        address=address,
        auth_certificate=certificate_to_pem(auth_cert).decode("ascii"),
        replaces=replaces.lower() if replaces else None,
    )
    signed = build_signed_request(request, sign_key, sign_cert, auth_key=auth_key)
    return submit_request(registry_url, signed, timeout=timeout)


def request_subsystem(
    registry_url: str,
    server_id: SecurityServerId,
    subsystem: ClientId,
    sign_cert: x509.Certificate,
    sign_key: PrivateKey,
    *,
    member_cert: x509.Certificate | None = None,
    member_key: PrivateKey | None = None,
    now: dt.datetime | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> RequestStatus:
    """Ask for the gateway to host `subsystem`, signed by the gateway's owner member (`sign_*`)
    and, as its consent, by the subsystem's member (`member_*`).

    For the owner's own subsystems the owner's pair signs as both when `member_*` is not given;
    another member's subsystem needs that member's signing key (docs/central.md).
    """
    if (member_cert is None) != (member_key is None):
        raise ValueError("give the subsystem's member's signing certificate and key together")
    if member_cert is None or member_key is None:
        if subsystem.member != server_id.owner:
            raise ValueError(f"hosting {subsystem} needs the signing key of its member {subsystem.member}")
        member_cert, member_key = sign_cert, sign_key
    request = new_request(
        RequestType.CLIENT_REGISTRATION, server_id.owner, _now(now), server=server_id, client=subsystem
    )
    signed = build_signed_request(
        request, sign_key, sign_cert, client_key=member_key, client_cert=member_cert
    )
    return submit_request(registry_url, signed, timeout=timeout)


def request_address_change(
    registry_url: str,
    server_id: SecurityServerId,
    address: str,
    sign_cert: x509.Certificate,
    sign_key: PrivateKey,
    *,
    now: dt.datetime | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> RequestStatus:
    request = new_request(
        RequestType.ADDRESS_CHANGE, server_id.owner, _now(now), server=server_id, address=address
    )
    return submit_request(registry_url, build_signed_request(request, sign_key, sign_cert), timeout=timeout)


def request_deletion(
    registry_url: str,
    request_type: RequestType,
    member: ClientId,
    sign_cert: x509.Certificate,
    sign_key: PrivateKey,
    *,
    server_id: SecurityServerId | None = None,
    client: ClientId | None = None,
    now: dt.datetime | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> RequestStatus:
    """Ask to delete: a hosting (client_deletion), a gateway, a subsystem, or the member itself."""
    deletions = {
        RequestType.CLIENT_DELETION,
        RequestType.SERVER_DELETION,
        RequestType.SUBSYSTEM_DELETION,
        RequestType.MEMBER_DELETION,
    }
    if request_type not in deletions:
        raise ValueError(f"{request_type} is not a deletion")
    fields: dict[str, Any] = {}
    if server_id is not None:
        fields["server"] = server_id
    if client is not None:
        fields["client"] = client
    request = new_request(request_type, member, _now(now), **fields)
    return submit_request(registry_url, build_signed_request(request, sign_key, sign_cert), timeout=timeout)
