"""Operations on whole service descriptions: list, refresh from the URL, move to a new URL, enable, disable.

A description is the WSDL or OpenAPI document a subsystem's services were registered from,
named by the URL it was fetched from (X-Road keeps descriptions by URL too). Refreshing
fetches it again and reconciles the services with it, as X-Road 7.8 does: new operations
are added, vanished ones removed, and the services kept keep their backend settings, their
enabled state and their access rights. Removing a service that still has access rights
needs `confirm_removal` (else 409 with those services as `warnings`); the description's
own warnings need `ignore_warnings` (else 400 `warnings_detected`). The change is one
transaction: all of it or nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Sequence
from typing import Any, Final

from pydantic import Field

from gateway.admin.context import TABLE, AdminContext, ClientPath, with_subsystem
from gateway.admin.roles import Permission as P
from gateway.admin.services import (
    WarningView,
    checked_conf,
    description_document,
    refuse_without_backend,
    service_of_provider,
    warnings_step,
)
from gateway.ids import ClientId, ServiceId
from gateway.serverconf.access import Endpoint
from gateway.serverconf.openapi import parse_openapi
from gateway.serverconf.repository import (
    BACKEND_URL_NOT_SET,
    BACKEND_URL_NOT_SET_NOTICE,
    ServerConfSnapshot,
    ServiceConf,
    ServiceDescription,
    ServiceKind,
)
from gateway.serverconf.wsdl import DescriptionError, DescriptionWarning, WsdlOperation, parse_wsdl
from gateway.webapi import CONFLICT, ApiError, Call, Outcome, invalid, not_found
from gateway.webapi.types import MAX_TEXT_LENGTH, Answer, Body, HttpUrl

UPLOAD: Final = "upload"
"""The source of a description given inline: it has no URL to refresh from."""

REMOVES_RIGHTS: Final = "removes_services_with_access_rights"
"""The 409's warning code: the refresh would remove a service whose access rights go with it."""


class DescriptionView(Answer):
    source: str = Field(description="The URL the description came from, or `upload`.")
    kind: ServiceKind
    enabled: bool = Field(description="Whether every service of the description is enabled.")
    services: list[str]


class DescriptionList(Answer):
    descriptions: list[DescriptionView]


class ServiceChange(Answer):
    id: str
    change: str = Field(description="What changed in the document; the service's settings stay.")


class RefreshReport(Answer):
    source: str = Field(description="The description's URL after the call.")
    added: list[str]
    changed: list[ServiceChange]
    removed: list[str]
    kept: list[str] = Field(description="Services in the document before and after, unchanged.")
    warnings: list[WarningView] = Field(description="The warnings the caller chose to ignore.")


class DescriptionRef(Body):
    url: HttpUrl = Field(description="The description's URL, as registered.")


class Refresh(DescriptionRef):
    ignore_warnings: bool = Field(False, description="Proceed despite the new document's warnings.")
    confirm_removal: bool = Field(
        False, description="Remove services that have access rights (which go with them)."
    )


class ChangeUrl(Refresh):
    new_url: HttpUrl = Field(description="Fetch the description from here from now on.")


class DescriptionNotice(DescriptionRef):
    notice: str | None = Field(None, max_length=MAX_TEXT_LENGTH, description="What clients are told.")


# --- finding descriptions ------------------------------------------------------------------


def _group_key(conf: ServiceConf) -> tuple[str, str]:
    """One description: by URL, or for uploads by the document itself (each upload is its own)."""
    assert conf.description is not None
    source = conf.description.source
    if source != UPLOAD:
        return conf.kind.value, source
    return conf.kind.value, UPLOAD + ":" + hashlib.sha256(conf.description.document.encode()).hexdigest()


def _descriptions(conf: ServerConfSnapshot, provider: ClientId) -> dict[tuple[str, str], list[ServiceConf]]:
    grouped: dict[tuple[str, str], list[ServiceConf]] = {}
    for service in conf.services_of(provider):
        if service.description is not None:
            grouped.setdefault(_group_key(service), []).append(service)
    return grouped


def _view(confs: Sequence[ServiceConf]) -> dict[str, Any]:
    first = confs[0]
    assert first.description is not None
    return {
        "source": first.description.source,
        "kind": first.kind.value,
        "enabled": all(conf.enabled for conf in confs),
        "services": [conf.service.to_text() for conf in confs],
    }


def _services_from(conf: ServerConfSnapshot, provider: ClientId, url: str) -> list[ServiceConf]:
    """The services registered from the description at `url` (404 if none)."""
    if url == UPLOAD:
        raise invalid("an uploaded description has no URL: register it again instead")
    found = [
        service
        for service in conf.services_of(provider)
        if service.description is not None and service.description.source == url
    ]
    if not found:
        raise not_found(f"{provider} has no service description from {url}")
    return found


@TABLE.read(
    "/subsystems/{client_id}/service-descriptions",
    "service.list_descriptions",
    P.READ_CONFIGURATION,
    DescriptionList,
)
async def list_descriptions(ctx: AdminContext, call: Call[ClientPath, None]) -> Outcome:
    """List a subsystem's service descriptions and the services registered from each."""
    conf = await with_subsystem(ctx, call.params.client_id)
    groups = _descriptions(conf, call.params.client_id)
    return Outcome({"descriptions": [_view(confs) for confs in groups.values()]})


# --- refresh and change of URL -------------------------------------------------------------


@dataclasses.dataclass
class _Plan:
    """What a refresh changes: services to add, update and remove, and the report."""

    add: list[ServiceConf] = dataclasses.field(default_factory=list)
    update: list[ServiceConf] = dataclasses.field(default_factory=list)
    remove: list[ServiceId] = dataclasses.field(default_factory=list)
    changed: list[dict[str, str]] = dataclasses.field(default_factory=list)
    kept: list[str] = dataclasses.field(default_factory=list)
    warnings: tuple[DescriptionWarning, ...] = ()


def _old_operations(confs: Sequence[ServiceConf]) -> dict[tuple[str, str | None], WsdlOperation]:
    """The operations of the document as registered (to tell what the new one changed)."""
    description = confs[0].description
    assert description is not None
    try:
        return {
            (op.service_code, op.service_version): op
            for op in parse_wsdl(description.document.encode()).operations
        }
    except DescriptionError:  # registered under older rules: every address counts as changed
        return {}


def _plan_wsdl(
    provider: ClientId, old: Sequence[ServiceConf], data: bytes, description: ServiceDescription
) -> _Plan:
    wsdl = parse_wsdl(data)
    before = {conf.service: conf for conf in old}
    old_operations = _old_operations(old)
    plan = _Plan(warnings=wsdl.warnings)
    for operation in wsdl.operations:
        service = service_of_provider(provider, operation.service_code, operation.service_version)
        conf = before.pop(service, None)
        if conf is None:
            plan.add.append(
                checked_conf(
                    service=service,
                    kind=ServiceKind.SOAP,
                    backend_url=operation.address,
                    description=description,
                )
            )
            continue
        plan.update.append(dataclasses.replace(conf, description=description))
        previous = old_operations.get((operation.service_code, operation.service_version))
        if previous is None or previous.address != operation.address:
            change = (
                f"the document's address is now {operation.address}; the backend stays {conf.backend_url}"
            )
            plan.changed.append({"id": service.to_text(), "change": change})
        else:
            plan.kept.append(service.to_text())
    plan.remove.extend(before)
    return plan


def _plan_openapi(old: Sequence[ServiceConf], data: bytes, description: ServiceDescription) -> _Plan:
    openapi = parse_openapi(data)
    try:
        endpoints = tuple(Endpoint(e.method.upper(), e.path_pattern) for e in openapi.endpoints)
    except ValueError as exc:
        raise DescriptionError(str(exc)) from None
    plan = _Plan()
    for conf in old:
        changes: dict[str, Any] = {"description": description, "endpoints": endpoints}
        notes = []
        if conf.backend_url == BACKEND_URL_NOT_SET:
            plan.warnings = openapi.warnings  # the server is what the service still waits for
            if openapi.default_url is not None:
                changes["backend_url"] = openapi.default_url
                notes.append(f"backend URL set from the document: {openapi.default_url}")
                if conf.disabled_notice == BACKEND_URL_NOT_SET_NOTICE:
                    changes.update(enabled=True, disabled_notice=None)
        updated = dataclasses.replace(conf, **changes)
        added = [f"{e.method} {e.path_pattern}" for e in updated.endpoints if e not in conf.endpoints]
        gone = [f"{e.method} {e.path_pattern}" for e in conf.endpoints if e not in updated.endpoints]
        if added:
            notes.append("endpoints added: " + ", ".join(added))
        if gone:
            notes.append("endpoints removed: " + ", ".join(gone))
        plan.update.append(updated)
        if notes:
            plan.changed.append({"id": conf.service.to_text(), "change": "; ".join(notes)})
        else:
            plan.kept.append(conf.service.to_text())
    return plan


def _removed_with_rights(conf: ServerConfSnapshot, provider: ClientId, plan: _Plan) -> list[dict[str, str]]:
    """The removed services whose access rights go with them: no other version of the code stays."""
    removed = set(plan.remove)
    staying = {c.service.service_code for c in conf.services_of(provider) if c.service not in removed}
    staying |= {c.service.service_code for c in plan.add}
    found = []
    for service in plan.remove:
        rights = conf.rights(provider, service.service_code)
        if rights and service.service_code not in staying:
            message = f"{service.to_text()}: {len(rights)} access right(s) would be removed with it"
            found.append({"code": REMOVES_RIGHTS, "message": message})
    return found


async def _reconcile(ctx: AdminContext, provider: ClientId, body: Refresh, new_url: str) -> Outcome:
    """Fetch the description from `new_url` and bring the services registered from `body.url` in line."""
    conf = await with_subsystem(ctx, provider)
    old = _services_from(conf, provider, body.url)
    if new_url != body.url and any(
        s.description is not None and s.description.source == new_url for s in conf.services_of(provider)
    ):
        raise ApiError(409, CONFLICT, f"{provider} has a service description from {new_url} already")
    data, text, source = await description_document(None, new_url)
    description = ServiceDescription(text, source)
    if old[0].kind is ServiceKind.SOAP:
        plan = await asyncio.to_thread(_plan_wsdl, provider, old, data, description)
    else:
        plan = await asyncio.to_thread(_plan_openapi, old, data, description)
    for added in plan.add:
        if conf.service(added.service) is not None:
            raise ApiError(409, CONFLICT, f"{added.service} is registered already, from another description")
    warnings = warnings_step(plan.warnings, body.ignore_warnings)
    with_rights = _removed_with_rights(conf, provider, plan)
    if with_rights and not body.confirm_removal:
        listed = "; ".join(warning["message"] for warning in with_rights)
        raise ApiError(
            409, CONFLICT, f"repeat with confirm_removal to remove: {listed}", warnings=with_rights
        )
    await asyncio.to_thread(ctx.repository.apply_description, plan.add, plan.update, plan.remove)
    report = {
        "source": source,
        "added": [c.service.to_text() for c in plan.add],
        "changed": plan.changed,
        "removed": [s.to_text() for s in plan.remove],
        "kept": plan.kept,
        "warnings": warnings,
    }
    details = {**report, "previous_source": body.url} if new_url != body.url else report
    return Outcome(report, 200, provider.to_text(), details)


@TABLE.change(
    "POST",
    "/subsystems/{client_id}/service-descriptions/refresh",
    "service.refresh_description",
    P.MANAGE_SERVICES,
    RefreshReport,
)
async def refresh_description(ctx: AdminContext, call: Call[ClientPath, Refresh]) -> Outcome:
    """Fetch a description again from its URL and add, update and remove its services to match.

    Kept services keep their backend settings, enabled state and access rights."""
    return await _reconcile(ctx, call.params.client_id, call.body, call.body.url)


@TABLE.change(
    "POST",
    "/subsystems/{client_id}/service-descriptions/change-url",
    "service.change_description_url",
    P.MANAGE_SERVICES,
    RefreshReport,
)
async def change_description_url(ctx: AdminContext, call: Call[ClientPath, ChangeUrl]) -> Outcome:
    """Move a description to a new URL: fetched from there and reconciled as a refresh is."""
    return await _reconcile(ctx, call.params.client_id, call.body, call.body.new_url)


# --- enable and disable ----------------------------------------------------------------------


async def _set_enabled(
    ctx: AdminContext, provider: ClientId, url: str, enabled: bool, notice: str | None
) -> Outcome:
    confs = _services_from(await with_subsystem(ctx, provider), provider, url)
    if enabled:
        refuse_without_backend(confs)
    await asyncio.to_thread(ctx.repository.set_services_enabled, [c.service for c in confs], enabled, notice)
    confs = _services_from(await with_subsystem(ctx, provider), provider, url)
    return Outcome(_view(confs), 200, provider.to_text(), {"source": url, "notice": notice})


@TABLE.change(
    "POST",
    "/subsystems/{client_id}/service-descriptions/enable",
    "service.enable_description",
    P.MANAGE_SERVICES,
    DescriptionView,
)
async def enable_description(ctx: AdminContext, call: Call[ClientPath, DescriptionRef]) -> Outcome:
    """Enable every service of a description."""
    return await _set_enabled(ctx, call.params.client_id, call.body.url, True, None)


@TABLE.change(
    "POST",
    "/subsystems/{client_id}/service-descriptions/disable",
    "service.disable_description",
    P.MANAGE_SERVICES,
    DescriptionView,
)
async def disable_description(ctx: AdminContext, call: Call[ClientPath, DescriptionNotice]) -> Outcome:
    """Disable every service of a description: their clients get ServiceDisabled with the notice."""
    return await _set_enabled(ctx, call.params.client_id, call.body.url, False, call.body.notice)
