"""Service metadata (PROTOCOL.md "Service metadata"), built sans-IO from the configurations.

`listClients` is answered by the consumer's gateway from the global configuration; the
others by the provider's gateway, which alone knows its services and access rights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from lxml import etree

from gateway import faults
from gateway.faults import XRoadFault
from gateway.globalconf import GlobalConf
from gateway.ids import ID_NS, ClientId, ServiceId
from gateway.protocol import mime, rest, soap
from gateway.protocol.schema import XROAD_NS
from gateway.serverconf.model import ServerConfSnapshot, ServiceConf, ServiceKind
from gateway.serverconf.openapi import hide_openapi_servers
from gateway.serverconf.selfcontained import self_contained_wsdl
from gateway.serverconf.wsdl import hide_wsdl_address

LIST_METHODS: Final = "listMethods"
ALLOWED_METHODS: Final = "allowedMethods"
GET_WSDL: Final = "getWsdl"
SOAP_METADATA_SERVICES: Final = frozenset({LIST_METHODS, ALLOWED_METHODS, GET_WSDL})

WSDL_CONTENT_TYPE: Final = "text/xml; charset=UTF-8"
"""A WSDL as getWsdl attaches it and the legacy `GET /wsdl` answers it (X-Road's own tests expect
the charset, on the answer as on the attachment)."""

_X: Final = f"{{{XROAD_NS}}}"
_NSMAP: Final = {"xrd": XROAD_NS, "id": ID_NS}


# --- listClients ------------------------------------------------------------------------


def list_clients_xml(clients: Sequence[tuple[ClientId, str | None]]) -> bytes:
    root = etree.Element(f"{_X}clientList", nsmap=_NSMAP)
    for client, name in clients:
        member = etree.SubElement(root, f"{_X}member")
        member.append(client.to_xml(f"{_X}id"))
        etree.SubElement(member, f"{_X}name").text = name or ""
    return etree.tostring(root, encoding="UTF-8", xml_declaration=True)


def _client_json(client: ClientId) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "object_type": client.object_type.value,
        "xroad_instance": client.instance,
        "member_class": client.member_class,
        "member_code": client.member_code,
    }
    if client.subsystem_code is not None:
        entry["subsystem_code"] = client.subsystem_code
    return entry


def list_clients_json(clients: Sequence[tuple[ClientId, str | None]]) -> dict[str, Any]:
    return {"member": [{"id": _client_json(client), "name": name or ""} for client, name in clients]}


# --- SOAP: listMethods, allowedMethods, getWsdl ---------------------------------------------


def _soap_services(
    snapshot: ServerConfSnapshot, conf: GlobalConf, request: soap.SoapMessage
) -> list[ServiceConf]:
    provider = request.service.provider
    if request.service.service_code == LIST_METHODS:
        services = snapshot.services_of(provider)
    else:
        services = snapshot.allowed_services(request.client, provider, global_group_member=conf.is_member_of)
    return [service for service in services if service.kind is ServiceKind.SOAP]


def answer_soap_metadata(
    snapshot: ServerConfSnapshot, conf: GlobalConf, request: soap.SoapMessage
) -> tuple[bytes, str]:
    """The response body and content type for a SOAP metadata request."""
    code = request.service.service_code
    if code == GET_WSDL:
        return _get_wsdl(snapshot, request)
    wrapper = etree.Element(f"{_X}{code}Response", nsmap=_NSMAP)
    for service in _soap_services(snapshot, conf, request):
        wrapper.append(service.service.to_xml(f"{_X}service"))
    return soap.build_response(request, wrapper), "text/xml; charset=UTF-8"


def _get_wsdl(snapshot: ServerConfSnapshot, request: soap.SoapMessage) -> tuple[bytes, str]:
    """X-Road answers getWsdl with the WSDL as an attachment, its real address hidden."""
    code = request.body.findtext(f"{_X}serviceCode") or request.body.findtext("serviceCode")
    version = request.body.findtext(f"{_X}serviceVersion") or request.body.findtext("serviceVersion")
    if not code:
        raise XRoadFault(faults.INVALID_BODY, "getWsdl needs a serviceCode")
    provider = request.service.provider
    wanted = ServiceId(
        provider.instance,
        provider.member_class,
        provider.member_code,
        provider.subsystem_code,
        code,
        version or None,
    )
    service = snapshot.service(wanted)
    if service is None or service.kind is not ServiceKind.SOAP or service.description is None:
        raise XRoadFault(faults.UNKNOWN_SERVICE, f"no WSDL for service {wanted}")
    wsdl = self_contained_wsdl(hide_wsdl_address(service.description.document.encode("utf-8")))
    wrapper = etree.Element(f"{_X}getWsdlResponse", nsmap=_NSMAP)
    etree.SubElement(wrapper, f"{_X}serviceCode").text = code
    if version:
        etree.SubElement(wrapper, f"{_X}serviceVersion").text = version
    envelope = soap.build_response(request, wrapper)
    attachment = mime.Attachment("wsdl", WSDL_CONTENT_TYPE, wsdl)
    body, content_type = mime.build_multipart(envelope, [attachment])
    return body, f"{content_type}; charset=UTF-8"


# --- the legacy WSDL download: GET /wsdl?xRoadInstance=..&serviceCode=.. ---------------------

LEGACY_WSDL_PATH: Final = "/wsdl"
LEGACY_WSDL_USER: Final = "wsdl-request"
"""The request's userId, as X-Road's WsdlRequestProcessor sets it."""
_LEGACY_SERVICE_FIELDS: Final = ("xRoadInstance", "memberClass", "memberCode", "subsystemCode", "serviceCode")


def legacy_wsdl_request(
    query: Mapping[str, str], configured_client: ClientId | None, message_id: str
) -> bytes:
    """The getWsdl request a legacy `GET /wsdl?...` stands for, made for the `client` the query
    names or else the one the gateway is configured with ([internal] wsdl_client); without
    that configuration the download is off (Client.InvalidRequest)."""
    if configured_client is None:
        raise XRoadFault(
            faults.INVALID_REQUEST, "the WSDL download is off: this gateway has no [internal] wsdl_client"
        )
    client_text = query.get("client")
    client = configured_client if client_text is None else ClientId.from_text(client_text)
    missing = [name for name in _LEGACY_SERVICE_FIELDS if name != "subsystemCode" and not query.get(name)]
    if missing:
        raise XRoadFault(faults.INVALID_REQUEST, f"the WSDL request lacks {', '.join(missing)}")
    instance, member_class, member_code, subsystem, code = (query.get(n) for n in _LEGACY_SERVICE_FIELDS)
    assert instance and member_class and member_code and code
    get_wsdl = ServiceId(instance, member_class, member_code, subsystem or None, GET_WSDL)
    body = etree.Element(f"{_X}{GET_WSDL}", nsmap=_NSMAP)
    etree.SubElement(body, f"{_X}serviceCode").text = code
    version = query.get("version")
    if version:
        etree.SubElement(body, f"{_X}serviceVersion").text = version
    return soap.build_request(client, get_wsdl, body, message_id=message_id, user_id=LEGACY_WSDL_USER)


def wsdl_of_get_wsdl_answer(body: bytes, content_type: str) -> bytes | None:
    """The WSDL attached to a getWsdl answer (already checked against the request); None for a
    fault, which comes without attachments."""
    if mime.parse_content_type(content_type).media_type != mime.MULTIPART_RELATED:
        return None
    package = mime.unpack(body, content_type)
    if not package.attachments:
        raise XRoadFault(faults.INCONSISTENT_RESPONSE, "the getWsdl answer carries no WSDL")
    return package.attachments[0].data


# --- REST: listMethods, allowedMethods, getOpenAPI ------------------------------------------


def _rest_service_json(service: ServiceConf, endpoints: Sequence[Any]) -> dict[str, Any]:
    entry = _client_json(service.provider)
    entry.update(
        object_type="SERVICE",
        service_code=service.service.service_code,
        service_type="OPENAPI" if service.description is not None else "REST",
        endpoint_list=[{"method": e.method, "path": e.path_pattern} for e in endpoints],
    )
    return entry


def answer_rest_metadata(
    snapshot: ServerConfSnapshot, conf: GlobalConf, request: rest.RestMetadataRequest
) -> tuple[int, str, bytes]:
    """Status, content type and body for a REST metadata request."""
    import json

    call = request.request
    provider = request.provider
    rest_services = [s for s in snapshot.services_of(provider) if s.kind is ServiceKind.REST]
    if request.name == rest.LIST_METHODS:
        listed = [_rest_service_json(s, s.endpoints) for s in rest_services]
        return 200, "application/json", json.dumps({"service": listed}).encode()
    if request.name == rest.ALLOWED_METHODS:
        allowed = []
        for service in rest_services:
            endpoints = snapshot.allowed_endpoints(
                call.client, service.service, global_group_member=conf.is_member_of
            )
            granted = snapshot.allowed(call.client, service.service, global_group_member=conf.is_member_of)
            if endpoints or granted:
                allowed.append(_rest_service_json(service, endpoints))
        return 200, "application/json", json.dumps({"service": allowed}).encode()
    described = request.described_service
    subject = snapshot.service(described) if described is not None else None
    if subject is None or subject.kind is not ServiceKind.REST or subject.description is None:
        raise XRoadFault(faults.UNKNOWN_SERVICE, f"no OpenAPI description for {described}")
    document = hide_openapi_servers(subject.description.document.encode("utf-8"))
    content_type = "application/json" if document.lstrip().startswith(b"{") else "application/yaml"
    return 200, content_type, document
