"""Rows to values, and the checks a change applies to what it is given (internal to the repository)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Final, TypeVar

import sqlalchemy as sa
from cryptography import x509
from sqlalchemy.engine import Connection, Row

from gateway.central import tables as t
from gateway.central.repository.errors import InvalidChange
from gateway.central.repository.values import RequestRecord, SigningKeyRecord
from gateway.central.requests import RequestRefused, check_address, read_signed_request
from gateway.central.tables import RequestState, SigningKeyStatus
from gateway.crypto.certs import certificate_to_pem, fingerprint_sha256, load_single_pem_certificate
from gateway.globalconf.model import GlobalConfSettings
from gateway.ids import ClientId, IdentifierError, validate_code

_SINGLE_ROW: Final = 1


def _request_record(row: Row[Any]) -> RequestRecord:
    return RequestRecord(
        row.id,
        read_signed_request(row.signed_request.encode()),
        RequestState(row.state),
        row.submitted_at,
        row.decided_at,
        row.decided_by,
        row.reason,
    )


def _signing_key_record(row: Row[Any]) -> SigningKeyRecord:
    return SigningKeyRecord(
        row.id,
        row.key_path,
        row.passphrase_env,
        x509.load_pem_x509_certificate(row.cert_pem.encode()),
        row.sha256,
        SigningKeyStatus(row.status),
        row.created_at,
        row.activated_at,
        row.retired_at,
    )


def _certificate(pem: str, what: str) -> tuple[str, str]:
    """(canonical PEM, SHA-256) of exactly one PEM certificate."""
    try:
        certificate = load_single_pem_certificate(pem)
    except ValueError as exc:
        raise InvalidChange(f"{what}: {exc}") from exc
    return certificate_to_pem(certificate).decode("ascii"), fingerprint_sha256(certificate)


def _code(value: str, what: str) -> str:
    try:
        return validate_code(value, what)
    except IdentifierError as exc:
        raise InvalidChange(exc.message) from exc


def _new_id(result: sa.CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    if key is None:
        raise RuntimeError("the database gave no id for the new row")
    return int(key[0])


def _address(address: str) -> str:
    try:
        return check_address(address)
    except RequestRefused as exc:
        raise InvalidChange(str(exc)) from exc


_T = TypeVar("_T")


def _needs(value: _T | None, name: str) -> _T:
    """A field RegistrationRequest guarantees for the request's type."""
    if value is None:
        raise InvalidChange(f"the request has no {name}")
    return value


def _settings_values(settings: GlobalConfSettings) -> dict[str, int]:
    return {item.name: getattr(settings, item.name) for item in fields(settings)}


def _read_monitoring_client(connection: Connection) -> ClientId | None:
    """The client the configuration names its monitoring client (getSecurityServerOperationalData)."""
    text = connection.scalar(sa.select(t.settings.c.monitoring_client))
    return None if text is None else ClientId.from_text(text)


def _read_settings(connection: Connection) -> GlobalConfSettings:
    row = connection.execute(sa.select(t.settings)).first()
    if row is None:
        return GlobalConfSettings()
    return GlobalConfSettings(**{item.name: getattr(row, item.name) for item in fields(GlobalConfSettings)})
