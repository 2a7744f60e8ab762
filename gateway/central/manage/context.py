"""What every operation of the registry's management API shares: the registry's context, the
operation table, domain errors as JSON errors, and the views of what is registered."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Final, TypeVar

from pydantic import Field

from gateway.central.publisher import ConfigurationPublisher
from gateway.central.repository import CentralRepository, Conflict, NotFound, RegistryError
from gateway.central.requests import RequestRefused
from gateway.crypto.certs import CertificateError
from gateway.globalconf import GlobalConf, GlobalConfError
from gateway.globalconf.signed import format_time
from gateway.ids import ClientId, IdentifierError, SecurityServerId
from gateway.webapi import CONFLICT, NOT_FOUND, VALIDATION_ERROR, OperationTable, not_found
from gateway.webapi.certificates import CertificateSummary as CertificateSummary  # the operations' import
from gateway.webapi.certificates import certificate_summary as certificate_summary
from gateway.webapi.errors import domain_errors
from gateway.webapi.types import MAX_TEXT_LENGTH, Params, RecordId

_T = TypeVar("_T")


@dataclass(frozen=True)
class RegistryContext:
    """What the management and distribution applications share."""

    repository: CentralRepository
    publisher: ConfigurationPublisher
    configuration_urls: tuple[str, ...]
    """Where gateways fetch the configuration (the anchor's URLs)."""


TABLE: Final = OperationTable()
"""Every operation of /api/v1, filled as the operation modules load (gateway.central.api)."""

Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_LENGTH)]
"""Names, descriptions and reasons are for people; longer ones are mistakes."""
OptionalText = Annotated[str, Field(max_length=MAX_TEXT_LENGTH)]


domain_error: Final = domain_errors(
    (NotFound, 404, NOT_FOUND),
    (Conflict, 409, CONFLICT),
    (
        (IdentifierError, RegistryError, GlobalConfError, CertificateError, RequestRefused, ValueError),
        400,
        VALIDATION_ERROR,
    ),
)
"""The JSON error a domain error becomes; None for anything unforeseen (a 500)."""


class KeyPath(Params):
    key_id: RecordId


def time_text(value: dt.datetime | None) -> str | None:
    return format_time(value) if value is not None else None


_Id = TypeVar("_Id", ClientId, SecurityServerId)


def here(ctx: RegistryContext, identifier: _Id) -> _Id:
    """`identifier`, if it is of this registry's instance: one of another is registered nowhere
    here, so it is not found (404), like any unknown one of ours."""
    if identifier.instance != ctx.repository.instance:
        raise not_found(
            f"{identifier} is not registered: this registry is instance {ctx.repository.instance!r}"
        )
    return identifier


async def configuration(ctx: RegistryContext) -> GlobalConf:
    return await asyncio.to_thread(ctx.repository.configuration)


async def run(function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """`function` in a worker thread: the repository is synchronous, the event loop is not."""
    return await asyncio.to_thread(function, *args, **kwargs)
