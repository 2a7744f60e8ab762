"""The central registry's state, stored and read (the package face)."""

from __future__ import annotations

from gateway.central.repository.base import (
    DEFAULT_REQUEST_PAGE,
    MAX_REQUEST_PAGE,
    REQUEST_ID_BYTES,
    AlreadyExists,
    CentralRepository,
    Conflict,
    InvalidChange,
    MemberClass,
    NotFound,
    PublishedConf,
    RegistryError,
    RequestRecord,
    Signer,
    SigningKeyRecord,
)

__all__ = [
    "DEFAULT_REQUEST_PAGE",
    "MAX_REQUEST_PAGE",
    "REQUEST_ID_BYTES",
    "AlreadyExists",
    "CentralRepository",
    "Conflict",
    "InvalidChange",
    "MemberClass",
    "NotFound",
    "PublishedConf",
    "RegistryError",
    "RequestRecord",
    "Signer",
    "SigningKeyRecord",
]
