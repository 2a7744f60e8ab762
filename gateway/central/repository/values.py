"""What the registry's reads return: member classes, requests and their decisions, signing
keys, published versions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from gateway.central.requests import RegistrationRequest
from gateway.central.tables import RequestState, SigningKeyStatus
from gateway.globalconf.model import GlobalConf


@dataclass(frozen=True)
class MemberClass:
    code: str
    description: str


@dataclass(frozen=True)
class RequestRecord:
    """A registration request and its decision, as both the registry and the gateway see it."""

    id: str
    request: RegistrationRequest
    state: RequestState
    submitted_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    reason: str | None


@dataclass(frozen=True)
class SigningKeyRecord:
    """A configuration-signing key: where its private key is, its certificate, its place in a rotation."""

    id: int
    key_path: str
    passphrase_env: str | None
    certificate: x509.Certificate
    sha256: str
    status: SigningKeyStatus
    created_at: datetime
    activated_at: datetime | None
    retired_at: datetime | None


@dataclass(frozen=True)
class PublishedConf:
    """The configuration last published: its version and the signed container's bytes."""

    version: int
    generated_at: datetime
    expires_at: datetime
    signed: bytes
    signer_sha256: str


Signer = Callable[[GlobalConf, SigningKeyRecord], bytes]
"""Signs a configuration with a key record: the publisher's, which reads private keys."""
