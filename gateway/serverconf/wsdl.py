"""SOAP service descriptions: which X-Road services a WSDL offers, and the copy getWsdl may publish.

An agency registers a SOAP service by handing over its WSDL 1.1 document. Each operation of a
binding that speaks SOAP over HTTP is one X-Road service: the operation name is the service
code, the binding operation's ``xrd:version`` child its version, and the port's ``soap:address``
is where the provider's gateway calls it (DESIGN.md step 6). getWsdl (PROTOCOL.md "Service
metadata") hands the document to consumers with that address hidden.

What X-Road registers with a warning (an operation bound only over SOAP 1.2, a binding no port
uses) comes back in :attr:`WsdlDescription.warnings`: the management API refuses to register
until the administrator repeats the call with ``ignore_warnings`` (X-Road's warnings step).

Everything here is sans-IO: bytes in, values out. The document is untrusted, so it is parsed
only through :func:`gateway.xmlsafe.parse_xml`; zeep, which must also be able to load it (it is
what many agency clients use), sees it only after that parser accepted it, and never reaches the
network: schemas the document imports are served from the copies in ``wsdl/xroad/``, or as
opaque stand-ins (see :func:`_check_zeep_loads`).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, cast
from urllib.parse import quote, unquote

import zeep
from lxml import etree

from gateway.ids import IdentifierError, validate_code
from gateway.resources import xroad_schema_dir
from gateway.xmlsafe import UnsafeXml, XmlSyntaxError, parse_xml

WSDL_NS: Final = "http://schemas.xmlsoap.org/wsdl/"
SOAP_NS: Final = "http://schemas.xmlsoap.org/wsdl/soap/"
SOAP12_NS: Final = "http://schemas.xmlsoap.org/wsdl/soap12/"
HTTP_BINDING_NS: Final = "http://schemas.xmlsoap.org/wsdl/http/"
XSD_NS: Final = "http://www.w3.org/2001/XMLSchema"
XROAD_NS: Final = "http://x-road.eu/xsd/xroad.xsd"
# The X-Road 5 namespace: older descriptions (samples/valid.wsdl) still carry their version in it,
# and X-Road itself reads a `version` child in any namespace.
LEGACY_XROAD_NS: Final = "http://x-road.ee/xsd/x-road.xsd"
VERSION_NAMESPACES: Final = frozenset({XROAD_NS, LEGACY_XROAD_NS})

# X-Road's own management API refuses descriptions above 10 MB; a WSDL of that size is already
# far beyond anything hand-written.
MAX_DESCRIPTION_BYTES: Final = 10 * 1024 * 1024

# PROTOCOL.md "Service metadata": these names are the gateway's own; no agency may register them.
RESERVED_SERVICE_CODES: Final = frozenset(
    {"listClients", "listMethods", "allowedMethods", "getWsdl", "getOpenAPI"}
)

# PROTOCOL.md "SOAP message protocol 4.0": X-Road messages are SOAP 1.1. X-Road 7.8 still registers
# an operation bound only over SOAP 1.2 (the gateway then sends it SOAP 1.1), with a warning.
_SOAP_HTTP_TRANSPORT: Final = "http://schemas.xmlsoap.org/soap/http"

_ADDRESS_TAGS: Final = (
    f"{{{SOAP_NS}}}address",
    f"{{{SOAP12_NS}}}address",
    f"{{{HTTP_BINDING_NS}}}address",
)

DEFAULT_HIDDEN_ADDRESS: Final = "http://example.invalid/"


class DescriptionError(ValueError):
    """A service description (WSDL or OpenAPI) that cannot be registered; `message` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# Warning codes: registration stops on any of them until the caller repeats with ignore_warnings.
SOAP12_ONLY: Final = "soap12_only_binding"
VALIDATOR_WARNINGS: Final = "wsdl_validator_warnings"


@dataclass(frozen=True)
class DescriptionWarning:
    """Something X-Road registers anyway but the administrator should know first; `code` is stable."""

    code: str
    message: str


@dataclass(frozen=True)
class WsdlOperation:
    """One X-Road service a WSDL offers: its code, optional version, and the service's real address."""

    service_code: str
    service_version: str | None
    address: str


@dataclass(frozen=True)
class WsdlDescription:
    """The X-Road services of one WSDL document, in document order."""

    target_namespace: str | None
    operations: tuple[WsdlOperation, ...]
    warnings: tuple[DescriptionWarning, ...] = ()

    def find(self, service_code: str, service_version: str | None) -> WsdlOperation | None:
        """The operation registered under this code and version, if the document offers it."""
        for operation in self.operations:
            if operation.service_code == service_code and operation.service_version == service_version:
                return operation
        return None


def check_service_code(value: str, what: str = "service code") -> None:
    """Refuse a service code or version X-Road cannot carry, or a reserved metadata name."""
    try:
        validate_code(value, what)  # PROTOCOL.md "Identifiers"
    except IdentifierError as exc:
        raise DescriptionError(exc.message) from exc
    if value in RESERVED_SERVICE_CODES:
        raise DescriptionError(f"{what} {value!r} is reserved for the gateway's metadata services")


def parse_wsdl(data: bytes) -> WsdlDescription:
    """The X-Road services `data` offers, or DescriptionError saying why it cannot be registered."""
    root = _parse_definitions(data)
    operations, warnings = _bound_operations(root)
    if not operations:
        raise DescriptionError("the WSDL binds no operation over SOAP/HTTP at a soap:address")
    _check_zeep_loads(root)
    return WsdlDescription(root.get("targetNamespace"), operations, warnings)


def hide_wsdl_address(data: bytes, replacement: str = DEFAULT_HIDDEN_ADDRESS) -> bytes:
    """The document with every port address replaced: getWsdl must not reveal where the service runs."""
    root = _parse_definitions(data)
    for address in root.iter(*_ADDRESS_TAGS):
        address.set("location", replacement)
    encoding = root.getroottree().docinfo.encoding or "UTF-8"
    return cast(bytes, etree.tostring(root.getroottree(), xml_declaration=True, encoding=encoding))


def _parse_definitions(data: bytes) -> etree._Element:
    try:
        root = parse_xml(data, max_bytes=MAX_DESCRIPTION_BYTES)
    except UnsafeXml as exc:
        raise DescriptionError(f"the WSDL is refused: {exc}") from exc
    except XmlSyntaxError as exc:
        raise DescriptionError(f"the WSDL is not well-formed XML: {exc}") from exc
    if root.tag != f"{{{WSDL_NS}}}definitions":
        raise DescriptionError(
            f"not a WSDL 1.1 document: the root element is {root.tag}, not wsdl:definitions"
        )
    return root


def _qname(element: etree._Element, value: str) -> str:
    """Clark notation for a prefixed name in an attribute value, resolved where it appears."""
    prefix, _, local = value.strip().rpartition(":")
    namespace = element.nsmap.get(prefix or None)
    return f"{{{namespace}}}{local}" if namespace else local


def _bound_operations(
    root: etree._Element,
) -> tuple[tuple[WsdlOperation, ...], tuple[DescriptionWarning, ...]]:
    """The services the ports offer, SOAP 1.1 first; every invalid code is named in one error."""
    target = root.get("targetNamespace")
    bindings = {
        (f"{{{target}}}{binding.get('name')}" if target else str(binding.get("name"))): binding
        for binding in root.iterchildren(f"{{{WSDL_NS}}}binding")
    }
    used: set[str] = set()
    found: dict[tuple[str, str | None], WsdlOperation] = {}
    soap12_only: dict[tuple[str, str | None], WsdlOperation] = {}
    invalid: list[str] = []
    for soap_ns, offered in ((SOAP_NS, found), (SOAP12_NS, soap12_only)):
        for port in root.iterfind(f"{{{WSDL_NS}}}service/{{{WSDL_NS}}}port"):
            address = port.find(f"{{{soap_ns}}}address")
            binding_name = _qname(port, port.get("binding", ""))
            binding = bindings.get(binding_name)
            if binding is not None:
                used.add(binding_name)
            if address is None or binding is None or not _is_soap_over_http(binding, soap_ns):
                continue
            location = (address.get("location") or "").strip()
            if not location:
                raise DescriptionError(f"port {port.get('name')!r} has a soap:address without a location")
            for operation in _binding_operations(binding, location, invalid):
                key = (operation.service_code, operation.service_version)
                if soap_ns == SOAP12_NS and key in found:
                    continue  # also bound over SOAP 1.1: that port is the one the gateway calls
                earlier = offered.get(key)
                if earlier is not None and earlier != operation:
                    raise DescriptionError(
                        f"service {_display(operation)} is defined twice "
                        f"(at {earlier.address} and {location})"
                    )
                offered[key] = operation
    if invalid:
        raise DescriptionError(f"{len(invalid)} invalid service code(s): " + "; ".join(invalid))
    warnings: list[DescriptionWarning] = []
    if soap12_only:
        names = ", ".join(_display(operation) for operation in soap12_only.values())
        warnings.append(
            DescriptionWarning(
                SOAP12_ONLY,
                f"bound only over SOAP 1.2: {names}; X-Road messages are SOAP 1.1, so the service "
                "must also accept SOAP 1.1 requests at that address",
            )
        )
    unused = [name for name in bindings if name not in used]
    if unused:
        shown = ", ".join(repr(etree.QName(name).localname) for name in unused)
        warnings.append(
            DescriptionWarning(
                VALIDATOR_WARNINGS, f"binding(s) {shown} used by no port: they offer no service"
            )
        )
    return (*found.values(), *soap12_only.values()), tuple(warnings)


def _is_soap_over_http(binding: etree._Element, soap_ns: str) -> bool:
    soap_binding = binding.find(f"{{{soap_ns}}}binding")
    return soap_binding is not None and soap_binding.get("transport", "").strip() == _SOAP_HTTP_TRANSPORT


def _checked(value: str, what: str, invalid: list[str]) -> bool:
    """Whether `value` is a valid code; if not, the reason is added to `invalid` (reported together)."""
    try:
        check_service_code(value, what)
    except DescriptionError as exc:
        if exc.message not in invalid:
            invalid.append(exc.message)
        return False
    return True


def _binding_operations(
    binding: etree._Element, location: str, invalid: list[str]
) -> Iterable[WsdlOperation]:
    for operation in binding.iterchildren(f"{{{WSDL_NS}}}operation"):
        code = operation.get("name") or ""
        valid = _checked(code, "service code", invalid)
        versions = [
            child
            for child in operation.iterchildren(etree.Element)
            if etree.QName(child).localname == "version"
            and etree.QName(child).namespace in VERSION_NAMESPACES
        ]
        if len(versions) > 1:
            raise DescriptionError(
                f"operation {code!r} has {len(versions)} xrd:version elements, at most one"
            )
        version = (versions[0].text or "").strip() if versions else None
        if version is not None:
            valid = _checked(version, f"version of {code!r}", invalid) and valid
        if valid:
            yield WsdlOperation(service_code=code, service_version=version, address=location)


def _display(operation: WsdlOperation) -> str:
    if operation.service_version is None:
        return repr(operation.service_code)
    return repr(f"{operation.service_code}/{operation.service_version}")


# --- the zeep check -------------------------------------------------------------------------
#
# zeep resolves every xs:import by URL. Offline, that would refuse nearly every real X-Road WSDL
# (they import http://x-road.eu/xsd/xroad.xsd), so imports are re-pointed by namespace to URLs
# under a reserved .invalid host (RFC 2606: it never resolves) that the transport below answers
# from memory: the X-Road schemas from the copies in wsdl/xroad/, any other namespace with a
# stand-in that declares, as "anything", exactly the elements and types the document names in it.
# Everything the agency wrote itself (inline schemas, messages, port types, bindings) is checked
# for real; only schemas we cannot fetch are taken on trust. wsdl:import and xs:include of other
# documents are refused: the description must be self-contained.

SCHEMA_DIR: Final = xroad_schema_dir()

_OFFLINE_BASE: Final = "http://description.invalid/"
_DOCUMENT_URL: Final = _OFFLINE_BASE + "service.wsdl"
_NAMESPACE_URL: Final = _OFFLINE_BASE + "namespace/"
_FILE_URL: Final = _OFFLINE_BASE + "file/"

# Namespace → the local schema files that define it (PROTOCOL.md: the XSDs in xsd/ are normative).
LOCAL_SCHEMAS: Final[Mapping[str, tuple[str, ...]]] = {
    XROAD_NS: ("xroad.xsd", "xroad-securityserver.xsd"),
    "http://x-road.eu/xsd/identifiers": ("identifiers.xsd",),
    "http://x-road.eu/xsd/representation.xsd": ("representation.xsd",),
    "http://x-road.eu/xsd/security-token.xsd": ("security-token.xsd",),
    "http://www.w3.org/XML/1998/namespace": ("xml.xsd",),
}

_XS_IMPORT: Final = f"{{{XSD_NS}}}import"
_XS_SCHEMA: Final = f"{{{XSD_NS}}}schema"
_SIMPLE_CONTEXTS: Final = frozenset(
    {f"{{{XSD_NS}}}attribute", f"{{{XSD_NS}}}simpleType", f"{{{XSD_NS}}}simpleContent", f"{{{XSD_NS}}}list"}
)


@dataclass(frozen=True)
class _StandIn:
    """What the document names in a namespace we cannot load: enough for zeep to resolve it."""

    elements: frozenset[str] = frozenset()
    attributes: frozenset[str] = frozenset()
    complex_types: frozenset[str] = frozenset()
    simple_types: frozenset[str] = frozenset()


def _check_zeep_loads(root: etree._Element) -> None:
    document = copy.deepcopy(root)
    # Inline schemas are resolved within the document, XML Schema's own types are zeep's built-ins.
    known = {schema.get("targetNamespace") for schema in document.iter(_XS_SCHEMA)} | {XSD_NS}
    _repoint_imports(document, keep=known)
    foreign = _imported_namespaces(document) - known - LOCAL_SCHEMAS.keys()
    stand_ins = {namespace: _stand_in(document, namespace) for namespace in foreign}
    transport = _OfflineTransport(etree.tostring(document), stand_ins)
    settings = zeep.Settings(strict=True, forbid_dtd=True, forbid_entities=True, xml_huge_tree=False)
    try:
        with warnings.catch_warnings():
            # zeep only warns about a message part it cannot resolve, then fails later on a
            # confusing lookup; the warning is the better message, so make it the error.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("error", UserWarning)
            zeep.Client(_DOCUMENT_URL, transport=transport, settings=settings)
    except DescriptionError:
        raise
    except Exception as exc:  # any failure to load is the verdict, whatever zeep raises it as
        reason = str(exc).replace(_DOCUMENT_URL, "the WSDL").replace(_OFFLINE_BASE, "")
        raise DescriptionError(f"zeep cannot load the WSDL: {reason}") from exc


def _repoint_imports(tree: etree._Element, keep: set[str | None]) -> None:
    """Point every xs:import at its namespace's offline URL (or at nothing, for `keep`)."""
    for node in tree.iter(_XS_IMPORT):
        namespace = node.get("namespace")
        if namespace is None:
            continue  # a no-namespace import keeps its location, which the transport refuses
        if namespace in keep:
            etree.strip_attributes(node, "schemaLocation")
        else:
            node.set("schemaLocation", _NAMESPACE_URL + quote(namespace, safe=""))


def _imported_namespaces(tree: etree._Element) -> set[str]:
    return {str(node.get("namespace")) for node in tree.iter(_XS_IMPORT) if node.get("namespace") is not None}


def _stand_in(document: etree._Element, namespace: str) -> _StandIn:
    """The names `document` refers to in `namespace`, by kind (element, attribute, complex or simple type)."""
    elements: set[str] = set()
    attributes: set[str] = set()
    complex_types: set[str] = set()
    simple_types: set[str] = set()
    prefix = f"{{{namespace}}}"
    for node in document.iter(etree.Element):
        parent = node.getparent()
        for attribute in ("element", "type", "ref", "base", "itemType", "memberTypes"):
            for value in (node.get(attribute) or "").split():
                name = _qname(node, value)
                if not name.startswith(prefix):
                    continue
                local = name[len(prefix) :]
                if attribute == "element" or (attribute == "ref" and node.tag == f"{{{XSD_NS}}}element"):
                    elements.add(local)
                elif attribute == "ref" and node.tag == f"{{{XSD_NS}}}attribute":
                    attributes.add(local)
                elif attribute in ("type", "base", "itemType", "memberTypes"):
                    context = node.tag if attribute == "type" else (parent.tag if parent is not None else "")
                    in_simple = attribute in ("itemType", "memberTypes") or context in _SIMPLE_CONTEXTS
                    (simple_types if in_simple else complex_types).add(local)
    return _StandIn(
        frozenset(elements),
        frozenset(attributes),
        frozenset(complex_types - simple_types),
        frozenset(simple_types),
    )


def _stand_in_schema(namespace: str, stand_in: _StandIn) -> bytes:
    xs = f"{{{XSD_NS}}}"
    schema = etree.Element(_XS_SCHEMA, nsmap={"xs": XSD_NS})
    schema.set("targetNamespace", namespace)
    schema.set("elementFormDefault", "qualified")
    for name in sorted(stand_in.elements):
        etree.SubElement(schema, xs + "element", name=name)  # no type: xs:anyType
    for name in sorted(stand_in.attributes):
        etree.SubElement(schema, xs + "attribute", name=name, type="xs:string")
    for name in sorted(stand_in.complex_types):
        complex_type = etree.SubElement(schema, xs + "complexType", name=name, mixed="true")
        sequence = etree.SubElement(complex_type, xs + "sequence")
        etree.SubElement(sequence, xs + "any", minOccurs="0", maxOccurs="unbounded", processContents="lax")
        etree.SubElement(complex_type, xs + "anyAttribute", processContents="lax")
    for name in sorted(stand_in.simple_types):
        simple_type = etree.SubElement(schema, xs + "simpleType", name=name)
        etree.SubElement(simple_type, xs + "restriction", base="xs:string")
    serialised: bytes = etree.tostring(schema)
    return serialised


@lru_cache(maxsize=32)
def _local_schema(filename: str) -> bytes:
    """A bundled X-Road schema, with its own imports re-pointed the same way as the document's."""
    tree = parse_xml((SCHEMA_DIR / filename).read_bytes())
    _repoint_imports(tree, keep=set())
    serialised: bytes = etree.tostring(tree)
    return serialised


def _local_namespace_schema(namespace: str) -> bytes:
    """One schema for a namespace spread over several files (xroad.xsd, xroad-securityserver.xsd)."""
    schema = etree.Element(_XS_SCHEMA, nsmap={"xs": XSD_NS})
    schema.set("targetNamespace", namespace)
    for filename in LOCAL_SCHEMAS[namespace]:
        etree.SubElement(schema, f"{{{XSD_NS}}}include", schemaLocation=_FILE_URL + filename)
    serialised: bytes = etree.tostring(schema)
    return serialised


class _OfflineTransport(zeep.Transport):
    """Answers zeep's loads from memory; anything else is refused, never fetched."""

    def __init__(self, document: bytes, stand_ins: Mapping[str, _StandIn]) -> None:
        super().__init__()
        self._document = document
        self._stand_ins = stand_ins

    def load(self, url: str) -> bytes:
        if url == _DOCUMENT_URL:
            return self._document
        if url.startswith(_NAMESPACE_URL):
            namespace = unquote(url[len(_NAMESPACE_URL) :])
            if namespace in LOCAL_SCHEMAS:
                return _local_namespace_schema(namespace)
            return _stand_in_schema(namespace, self._stand_ins.get(namespace, _StandIn()))
        if url.startswith(_FILE_URL) and url[len(_FILE_URL) :] in _bundled_files():
            return _local_schema(url[len(_FILE_URL) :])
        shown = url.removeprefix(_OFFLINE_BASE)
        raise DescriptionError(
            f"the WSDL refers to {shown!r}, which is not fetched: a description must be one document "
            "(schema imports by namespace are fine)"
        )

    def _load_remote_data(self, url: str) -> bytes:
        raise DescriptionError(f"refusing to fetch {url!r} while checking a description")


@lru_cache(maxsize=1)
def _bundled_files() -> frozenset[str]:
    return frozenset(name for names in LOCAL_SCHEMAS.values() for name in names)
