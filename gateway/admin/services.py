"""Operations on the services a subsystem offers: registering them from a WSDL or an OpenAPI
document, their backends, enabling and disabling them."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Final, Self
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from gateway.admin.context import (
    FETCH_FAILED,
    INVALID_DESCRIPTION,
    TABLE,
    WARNINGS_DETECTED,
    AdminContext,
    ClientPath,
    snapshot,
    with_subsystem,
)
from gateway.admin.roles import Permission as P
from gateway.crypto.certs import load_certificates
from gateway.ids import ClientId, ServiceId
from gateway.outbound import OutboundError, OutboundRequest, OutboundTimeout, ResponseTooLarge
from gateway.outbound.network import service_transport
from gateway.serverconf.access import Endpoint
from gateway.serverconf.model import BackendTls
from gateway.serverconf.openapi import parse_openapi
from gateway.serverconf.repository import (
    BACKEND_URL_NOT_SET,
    BACKEND_URL_NOT_SET_NOTICE,
    ServiceConf,
    ServiceDescription,
    ServiceKind,
)
from gateway.serverconf.wsdl import MAX_DESCRIPTION_BYTES, DescriptionWarning, parse_wsdl
from gateway.webapi import ApiError, Call, Outcome, invalid, not_found
from gateway.webapi.types import MAX_TEXT_LENGTH, Answer, Body, Code, HttpUrl

DESCRIPTION_FETCH_TIMEOUT_SECONDS: Final = 30.0
"""Fetching a WSDL or OpenAPI document by URL: an administrator waits this long at most."""

Document = Annotated[str, Field(min_length=1, max_length=MAX_DESCRIPTION_BYTES)]


class EndpointView(Answer):
    method: str
    path: str


class WarningView(Answer):
    code: str = Field(description="A stable code, e.g. soap12_only_binding, openapi_missing_servers.")
    message: str


class Service(Answer):
    id: str = Field(description="The service identifier's text form.")
    service_code: str
    service_version: str | None
    kind: ServiceKind
    backend_url: str | None = Field(
        description="null until set, for a service whose OpenAPI document names no usable server "
        "(it is disabled until then)."
    )
    timeout_seconds: float
    tls_verify: bool
    tls_ca_pem: str | None = Field(description="CA certificates (PEM) trusted for the backend.")
    tls_client_cert_path: str | None = Field(
        description="The gateway's client certificate (PEM) for a backend that requires mutual TLS."
    )
    tls_client_key_path: str | None = Field(description="Its private key, if not in the certificate's file.")
    enabled: bool
    disabled_notice: str | None
    description_source: str | None = Field(description="The URL the description came from, or `upload`.")
    endpoints: list[EndpointView]


class ServiceList(Answer):
    services: list[Service]


class RegisteredServices(ServiceList):
    warnings: list[WarningView] = Field(description="The warnings the caller chose to ignore.")


class ServicePath(ClientPath):
    service_code: Code
    version: Code | None = Field(None, description="The service version; leave out for none.")

    @property
    def service(self) -> ServiceId:
        provider = self.client_id
        return ServiceId(
            provider.instance,
            provider.member_class,
            provider.member_code,
            provider.subsystem_code,
            self.service_code,
            self.version,
        )


class _Described(Body):
    """A description given inline (the field `document_field` names) or by `url`, not both."""

    document_field: ClassVar[str]
    url: HttpUrl | None = Field(None, description="Fetch the document from here (no redirects, 30 s, 10 MB).")
    ignore_warnings: bool = Field(
        False,
        description="Register despite the description's warnings. Without it, a description with "
        "warnings is refused with `warnings_detected` and the warnings listed (X-Road's warnings step).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (getattr(self, self.document_field) is None) == (self.url is None):
            raise ValueError(f"give either {self.document_field} (the document) or url")
        return self


class WsdlDescription(_Described):
    document_field: ClassVar[str] = "wsdl"
    wsdl: Document | None = None


class OpenApiDescription(_Described):
    service_code: Code
    service_version: Code | None = None
    document: Document | None = None
    backend_url: HttpUrl | None = Field(
        None,
        description="Where the service is; default: the document's first server. Without either, the "
        "service is registered disabled (after the warnings step) until its backend URL is set.",
    )
    document_field: ClassVar[str] = "document"


class BackendSettings(Body):
    backend_url: HttpUrl | None = None
    timeout_seconds: float | None = Field(None, gt=0, allow_inf_nan=False)
    tls_verify: bool | None = None
    tls_ca_pem: str | None = Field(
        None, description="CA certificates (PEM) for the backend; null or '' clears."
    )
    tls_client_cert_path: str | None = Field(
        None,
        max_length=MAX_TEXT_LENGTH,
        description="A PEM file on the gateway's host with its client certificate for a backend that "
        "requires mutual TLS (and the key, unless tls_client_key_path is given); null or '' clears both.",
    )
    tls_client_key_path: str | None = Field(
        None, max_length=MAX_TEXT_LENGTH, description="The client certificate's private key (PEM file)."
    )


class DisableNotice(Body):
    notice: str | None = Field(None, max_length=MAX_TEXT_LENGTH, description="What clients are told.")


def service_json(conf: ServiceConf) -> dict[str, Any]:
    return {
        "id": conf.service.to_text(),
        "service_code": conf.service.service_code,
        "service_version": conf.service.service_version,
        "kind": conf.kind.value,
        "backend_url": None if conf.backend_url == BACKEND_URL_NOT_SET else conf.backend_url,
        "timeout_seconds": conf.timeout_seconds,
        "tls_verify": conf.tls.verify,
        "tls_ca_pem": conf.tls.ca_bundle_pem,
        "tls_client_cert_path": conf.tls.client_cert_path,
        "tls_client_key_path": conf.tls.client_key_path,
        "enabled": conf.enabled,
        "disabled_notice": conf.disabled_notice,
        "description_source": conf.description.source if conf.description else None,
        "endpoints": [{"method": e.method, "path": e.path_pattern} for e in conf.endpoints],
    }


@TABLE.read("/subsystems/{client_id}/services", "service.list", P.READ_CONFIGURATION, ServiceList)
async def list_services(ctx: AdminContext, call: Call[ClientPath, None]) -> Outcome:
    """List a subsystem's services."""
    conf = await with_subsystem(ctx, call.params.client_id)
    return Outcome(
        {"services": [service_json(service) for service in conf.services_of(call.params.client_id)]}
    )


# --- registering from descriptions -------------------------------------------------------------


async def _fetch_description(url: str) -> bytes:
    """A description document by URL: http(s) only, no redirects, bounded in time and size."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid(f"a description URL must be http:// or https:// with a host, not {url!r}")
    request = OutboundRequest(
        "GET",
        url,
        timeout_seconds=DESCRIPTION_FETCH_TIMEOUT_SECONDS,
        max_response_bytes=MAX_DESCRIPTION_BYTES,
    )
    transport = service_transport()
    try:
        response = await transport.send(request)
    except ResponseTooLarge:
        raise ApiError(400, FETCH_FAILED, f"{url} is larger than {MAX_DESCRIPTION_BYTES} bytes") from None
    except OutboundTimeout:
        timeout = DESCRIPTION_FETCH_TIMEOUT_SECONDS
        raise ApiError(400, FETCH_FAILED, f"could not fetch {url}: Timeout after {timeout} s") from None
    except OutboundError as exc:
        reason = str(exc) or type(exc).__name__
        raise ApiError(400, FETCH_FAILED, f"could not fetch {url}: {reason}") from None
    finally:
        await transport.aclose()
    if response.status != 200:
        redirect = 300 <= response.status < 400
        hint = " (redirects are not followed: give the final URL)" if redirect else ""
        raise ApiError(400, FETCH_FAILED, f"{url} answered HTTP {response.status}{hint}")
    return response.body


async def description_document(inline: str | None, url: str | None) -> tuple[bytes, str, str]:
    """The document given inline or fetched from `url`: its bytes, text, and where it came from."""
    if inline is not None:
        data, source = inline.encode(), "upload"
    else:
        assert url is not None  # the body model holds one of them
        data, source = await _fetch_description(url), url
    if len(data) > MAX_DESCRIPTION_BYTES:
        raise invalid(f"the description is larger than {MAX_DESCRIPTION_BYTES} bytes")
    try:
        return data, data.decode("utf-8"), source
    except UnicodeDecodeError:
        raise ApiError(400, INVALID_DESCRIPTION, "the description must be UTF-8") from None


def warnings_step(warnings: Sequence[DescriptionWarning], ignore: bool) -> list[dict[str, str]]:
    """X-Road's warnings step: the warnings as JSON, or `warnings_detected` unless `ignore`."""
    listed = [{"code": warning.code, "message": warning.message} for warning in warnings]
    if listed and not ignore:
        messages = "; ".join(warning.message for warning in warnings)
        raise ApiError(
            400,
            WARNINGS_DETECTED,
            f"the description has warnings ({messages}): repeat with ignore_warnings to proceed",
            warnings=listed,
        )
    return listed


def checked_conf(**values: Any) -> ServiceConf:
    try:
        return ServiceConf(**values)
    except ValueError as exc:
        raise invalid(str(exc)) from None


def service_of_provider(provider: ClientId, code: str, version: str | None) -> ServiceId:
    return ServiceId(
        provider.instance, provider.member_class, provider.member_code, provider.subsystem_code, code, version
    )


@TABLE.create(
    "/subsystems/{client_id}/service-descriptions/wsdl",
    "service.add_wsdl",
    P.MANAGE_SERVICES,
    RegisteredServices,
)
async def register_wsdl(ctx: AdminContext, call: Call[ClientPath, WsdlDescription]) -> Outcome:
    """Register one SOAP service per operation the WSDL binds, at the address the WSDL gives.

    Operations bound only over SOAP 1.2 are registered too, after the warnings step."""
    provider = call.params.client_id
    await with_subsystem(ctx, provider)
    data, text, source = await description_document(call.body.wsdl, call.body.url)
    wsdl = await asyncio.to_thread(parse_wsdl, data)
    warnings = warnings_step(wsdl.warnings, call.body.ignore_warnings)
    description = ServiceDescription(text, source)
    confs = [
        checked_conf(
            service=service_of_provider(provider, operation.service_code, operation.service_version),
            kind=ServiceKind.SOAP,
            backend_url=operation.address,
            description=description,
        )
        for operation in wsdl.operations
    ]
    await asyncio.to_thread(ctx.repository.apply_description, confs, (), ())
    details = {"source": source, "services": [conf.service.to_text() for conf in confs], "warnings": warnings}
    answer = {"services": [service_json(conf) for conf in confs], "warnings": warnings}
    return Outcome(answer, 201, provider.to_text(), details)


@TABLE.create(
    "/subsystems/{client_id}/service-descriptions/openapi", "service.add_openapi", P.MANAGE_SERVICES, Service
)
async def register_openapi(ctx: AdminContext, call: Call[ClientPath, OpenApiDescription]) -> Outcome:
    """Register one REST service with an endpoint per operation of the OpenAPI document.

    A document without a usable server (after the warnings step, unless backend_url is given)
    registers the service disabled, with backend_url null, until set-backend gives one."""
    provider, body = call.params.client_id, call.body
    await with_subsystem(ctx, provider)
    data, text, source = await description_document(body.document, body.url)
    openapi = await asyncio.to_thread(parse_openapi, data)
    backend_url = body.backend_url or openapi.default_url
    # The server warnings are about the default backend: moot when the caller gives one.
    warnings = warnings_step(() if body.backend_url else openapi.warnings, body.ignore_warnings)
    try:
        endpoints = tuple(Endpoint(e.method.upper(), e.path_pattern) for e in openapi.endpoints)
    except ValueError as exc:
        raise ApiError(400, INVALID_DESCRIPTION, str(exc)) from None
    service = service_of_provider(provider, body.service_code, body.service_version)
    conf = checked_conf(
        service=service,
        kind=ServiceKind.REST,
        backend_url=backend_url or BACKEND_URL_NOT_SET,
        description=ServiceDescription(text, source),
        endpoints=endpoints,
        # No server to call: disabled, so clients hear why (ServiceDisabled) until it is set.
        enabled=backend_url is not None,
        disabled_notice=None if backend_url is not None else BACKEND_URL_NOT_SET_NOTICE,
    )
    await asyncio.to_thread(ctx.repository.add_service, conf)
    details = {"source": source, "endpoints": len(conf.endpoints), "warnings": warnings}
    return Outcome(service_json(conf), 201, service.to_text(), details)


# --- one service -----------------------------------------------------------------------------


async def service_of(ctx: AdminContext, service: ServiceId) -> ServiceConf:
    conf = (await snapshot(ctx)).service(service)
    if conf is None:
        raise not_found(f"no service {service} is registered")
    return conf


@TABLE.read("/subsystems/{client_id}/services/{service_code}", "service.read", P.READ_CONFIGURATION, Service)
async def read_service(ctx: AdminContext, call: Call[ServicePath, None]) -> Outcome:
    """Show one service."""
    return Outcome(service_json(await service_of(ctx, call.params.service)))


@TABLE.change(
    "PATCH",
    "/subsystems/{client_id}/services/{service_code}",
    "service.set_backend",
    P.MANAGE_SERVICES,
    Service,
)
async def set_backend(ctx: AdminContext, call: Call[ServicePath, BackendSettings]) -> Outcome:
    """Change where and how the gateway calls the service; fields left out stay as they are.

    A service registered without a backend URL is enabled when its backend URL is set."""
    service, body = call.params.service, call.body
    conf = await service_of(ctx, service)
    given = body.model_dump(exclude_unset=True)
    changes: dict[str, Any] = {
        name: given[name] for name in ("backend_url", "timeout_seconds") if given.get(name) is not None
    }
    tls = conf.tls
    if body.tls_verify is not None:
        tls = dataclasses.replace(tls, verify=body.tls_verify)
    if "tls_ca_pem" in given:
        ca_pem = body.tls_ca_pem or None  # null or "" clears it
        if ca_pem is not None:
            load_certificates(ca_pem.encode())
        tls = dataclasses.replace(tls, ca_bundle_pem=ca_pem)
    if "tls_client_cert_path" in given or "tls_client_key_path" in given:
        tls = await _with_client_certificate(tls, body.tls_client_cert_path, body.tls_client_key_path)
    if not changes and tls == conf.tls:
        raise invalid(
            "give at least one of backend_url, timeout_seconds, tls_verify, tls_ca_pem, tls_client_cert_path"
        )
    if "backend_url" in changes and _waits_for_backend(conf):
        changes.update(enabled=True, disabled_notice=None)  # what it was disabled for is done
    try:
        updated = dataclasses.replace(conf, tls=tls, **changes)
    except ValueError as exc:
        raise invalid(str(exc)) from None
    await asyncio.to_thread(ctx.repository.update_service, updated)
    details = {name: value for name, value in given.items() if name != "tls_ca_pem"}
    if "tls_ca_pem" in given:
        details["tls_ca_pem"] = "set" if tls.ca_bundle_pem else "cleared"
    return Outcome(service_json(updated), 200, service.to_text(), details)


def _waits_for_backend(conf: ServiceConf) -> bool:
    return conf.backend_url == BACKEND_URL_NOT_SET


def refuse_without_backend(confs: Sequence[ServiceConf]) -> None:
    """Enabling a service with no backend would only turn ServiceDisabled into connection errors."""
    waiting = [conf.service.to_text() for conf in confs if _waits_for_backend(conf)]
    if waiting:
        raise invalid(f"set the backend URL first (set-backend): {', '.join(waiting)}")


async def _with_client_certificate(
    tls: BackendTls, cert_path: str | None, key_path: str | None
) -> BackendTls:
    """`tls` with the client certificate for mutual TLS toward the backend, checked to load; "" clears."""
    if not cert_path:
        if key_path:
            raise invalid("tls_client_key_path needs tls_client_cert_path")
        return dataclasses.replace(tls, client_cert_path=None, client_key_path=None)
    try:
        # The files stay where they are (the gateway reads them when it connects): check now that
        # they are there and that the key matches, rather than at the first call to the service.
        await asyncio.to_thread(ssl.create_default_context().load_cert_chain, cert_path, key_path or None)
    except ssl.SSLError as exc:
        raise invalid(f"the client certificate does not load: {exc.reason or exc}") from None
    except OSError as exc:
        raise invalid(f"the client certificate does not load: {exc.strerror or exc}") from None
    return dataclasses.replace(tls, client_cert_path=cert_path, client_key_path=key_path or None)


@TABLE.change(
    "POST",
    "/subsystems/{client_id}/services/{service_code}/enable",
    "service.enable",
    P.MANAGE_SERVICES,
    Service,
)
async def enable_service(ctx: AdminContext, call: Call[ServicePath, None]) -> Outcome:
    """Enable a service (not one whose backend URL is still to be set)."""
    service = call.params.service
    refuse_without_backend([await service_of(ctx, service)])
    await asyncio.to_thread(ctx.repository.set_service_enabled, service, True)
    return Outcome(service_json(await service_of(ctx, service)), 200, service.to_text())


@TABLE.change(
    "POST",
    "/subsystems/{client_id}/services/{service_code}/disable",
    "service.disable",
    P.MANAGE_SERVICES,
    Service,
)
async def disable_service(ctx: AdminContext, call: Call[ServicePath, DisableNotice]) -> Outcome:
    """Disable a service: its clients get ServiceDisabled with the notice (PROTOCOL.md)."""
    service, notice = call.params.service, call.body.notice
    await asyncio.to_thread(ctx.repository.set_service_enabled, service, False, notice)
    conf = await service_of(ctx, service)
    return Outcome(service_json(conf), 200, service.to_text(), {"notice": notice})


@TABLE.delete("/subsystems/{client_id}/services/{service_code}", "service.remove", P.MANAGE_SERVICES)
async def remove_service(ctx: AdminContext, call: Call[ServicePath, None]) -> Outcome:
    """Remove a service with its access rights."""
    service = call.params.service
    await asyncio.to_thread(ctx.repository.remove_service, service)
    return Outcome(None, 204, service.to_text())
