"""A WSDL a client can load with nothing else at hand (issue 17, "Self-contained WSDLs").

X-Road WSDLs import the X-Road schemas by location: `http://x-road.eu/xsd/xroad.xsd`, or a
relative `xroad/xroad.xsd` that only made sense beside the file the agency wrote. A client that
fetched the WSDL through getWsdl has neither. So the X-Road schemas the document imports (and
those they import in turn) are copied into its `wsdl:types` from the gateway's own copies
(wsdl/xroad/, the same ones the registration check uses), and every import of a namespace the
document now defines loses its `schemaLocation`: zeep, lxml and the JDK's wsimport resolve such
an import within the document. Imports of other namespaces are left as the agency wrote them.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final, cast

from lxml import etree

from gateway.serverconf.wsdl import LOCAL_SCHEMAS, SCHEMA_DIR, WSDL_NS, XSD_NS
from gateway.xmlsafe import parse_xml

_TYPES: Final = f"{{{WSDL_NS}}}types"
_SCHEMA: Final = f"{{{XSD_NS}}}schema"
_IMPORT: Final = f"{{{XSD_NS}}}import"
_ANNOTATION: Final = f"{{{XSD_NS}}}annotation"
XML_NS: Final = "http://www.w3.org/XML/1998/namespace"


def self_contained_wsdl(data: bytes) -> bytes:
    """`data` (a WSDL the gateway accepted at registration) with the X-Road schemas it imports inlined."""
    root = parse_xml(data, max_bytes=len(data) + 1)
    types = root.find(_TYPES)
    if types is None:
        return data
    defined = {schema.get("targetNamespace") for schema in types.iter(_SCHEMA)}
    inlined: list[etree._Element] = []

    def inline(namespace: str | None) -> None:
        if namespace is None or namespace in defined or namespace not in LOCAL_SCHEMAS:
            return
        defined.add(namespace)
        for filename in LOCAL_SCHEMAS[namespace]:
            schema = etree.fromstring(_bundled_schema(filename))
            for node in schema.iter(_IMPORT):
                inline(node.get("namespace"))
            inlined.append(schema)

    for node in list(types.iter(_IMPORT)):
        inline(node.get("namespace"))
    types[0:0] = inlined  # first, and each after what it imports
    for node in list(types.iter(_IMPORT)):
        if node.get("namespace") == XML_NS and XML_NS in defined:
            # zeep fetches an import of the xml namespace without a location from w3.org
            # (zeep/xsd/visitor.py, visit_import); the schema beside it serves without one.
            parent = node.getparent()
            assert parent is not None
            parent.remove(node)
        elif node.get("namespace") in defined:
            etree.strip_attributes(node, "schemaLocation")
    encoding = root.getroottree().docinfo.encoding or "UTF-8"
    return cast(bytes, etree.tostring(root.getroottree(), xml_declaration=True, encoding=encoding))


@lru_cache(maxsize=16)
def _bundled_schema(filename: str) -> bytes:
    """One of the gateway's X-Road schemas, without its documentation (xml.xsd is mostly prose)."""
    schema = parse_xml((SCHEMA_DIR / filename).read_bytes())
    for annotation in list(schema.iter(_ANNOTATION)):
        parent = annotation.getparent()
        if parent is not None:
            parent.remove(annotation)
    serialised: bytes = etree.tostring(schema)
    return serialised
