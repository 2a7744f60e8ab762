"""The central registry's state, stored and read.

The package's face. `store.CentralRepository` is the whole registry, composed of one part per
concern: `base` (transactions, lookups, reading the configuration), `members`, `servers`,
`trust`, `registrations` (requests from gateways), `publishing` (settings, signing keys,
signed versions); `values` and `errors` are what callers handle; `_rows` is internal.
"""

from __future__ import annotations

from gateway.central.repository.errors import AlreadyExists, Conflict, InvalidChange, NotFound, RegistryError
from gateway.central.repository.registrations import DEFAULT_REQUEST_PAGE, MAX_REQUEST_PAGE, REQUEST_ID_BYTES
from gateway.central.repository.store import CentralRepository
from gateway.central.repository.values import (
    MemberClass,
    PublishedConf,
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
