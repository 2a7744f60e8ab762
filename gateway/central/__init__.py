"""The central registry: the federation's members, gateways and trust services, published signed.

Modules (docs/central.md describes the whole):

* `requests` — signed registration requests (sans-IO): build and verify;
* `client`, `gateway_cli` — a gateway's side: submit requests, follow their state;
* `repository`, `tables`, `db`, `migrations/` — what the registry stores, in one transaction per change;
* `publisher` — signs each new configuration version, on change and on a timer;
* `api`, `openapi`, `roles`, `distribution` — the management API and the public endpoints;
* `config`, `server`, `bootstrap`, `cli`, `api_client` — running and operating a registry.

The names below are what a gateway needs; the registry's own parts are imported from their
modules (they pull in aiohttp and SQLAlchemy, which a gateway's CLI need not load).
"""

from gateway.central.client import (
    RegistryRequestError,
    RequestStatus,
    register_server,
    request_address_change,
    request_deletion,
    request_status,
    request_subsystem,
    submit_request,
)
from gateway.central.requests import (
    MalformedRequest,
    RegistrationRequest,
    RequestRefused,
    RequestType,
    UntrustedRequest,
    VerifiedRequest,
    build_signed_request,
    new_request,
    verify_signed_request,
)

__all__ = [
    "MalformedRequest",
    "RegistrationRequest",
    "RegistryRequestError",
    "RequestRefused",
    "RequestStatus",
    "RequestType",
    "UntrustedRequest",
    "VerifiedRequest",
    "build_signed_request",
    "new_request",
    "register_server",
    "request_address_change",
    "request_deletion",
    "request_status",
    "request_subsystem",
    "submit_request",
    "verify_signed_request",
]
