"""Validation of the X-Road SOAP header fields against the official XSDs.

PROTOCOL.md: "the XSDs in `xsd/` are normative". The header fields (`xrd:client`,
`xrd:service`, `xrd:id`, ..., `repr:representedParty`, `xrd:securityServer`) are global
elements of `xroad.xsd`, `xroad-securityserver.xsd` and `representation.xsd`; a field that
breaks its declaration (unknown objectType, elements out of order, elements inside a string
field) is `Client.InvalidXml`. As X-Road, an attribute the schemas do not declare is ignored,
not refused (`validate_header` judges the field without it).

The schemas are compiled once, by libxml2 (lxml.etree.XMLSchema), from the copies in
`wsdl/xroad/`; imports that name a web URL are answered from those copies, never from the
network. Validation runs on every request, so the whole SOAP Header is checked in one
validator call against a small wrapper schema whose Header admits any element *laxly*:
elements with a global X-Road declaration are validated strictly, all others are skipped.
Which elements may appear at all (duplicates; unknown names are ignored) is the SOAP parser's
job, not this module's.
"""

from __future__ import annotations

from collections.abc import Iterable
from copy import deepcopy
from functools import lru_cache
from pathlib import Path
from typing import Final

from lxml import etree

from gateway.faults import INVALID_XML, XRoadFault
from gateway.ids import ID_NS
from gateway.resources import xroad_schema_dir

XSD_DIR: Final = xroad_schema_dir()

SOAP_ENV_NS: Final = "http://schemas.xmlsoap.org/soap/envelope/"
XROAD_NS: Final = "http://x-road.eu/xsd/xroad.xsd"
REPR_NS: Final = "http://x-road.eu/xsd/representation.xsd"

# The attributes identifiers.xsd and xroad.xsd declare on header fields and their children.
DECLARED_ATTRIBUTES: Final = frozenset(
    {f"{{{ID_NS}}}objectType", "algorithmId", "{http://www.w3.org/XML/1998/namespace}lang"}
)

# The web locations the X-Road XSDs import from, served from the local copies instead.
_KNOWN_LOCATIONS: Final = {
    "http://www.w3.org/2009/01/xml.xsd": "xml.xsd",
    "http://www.w3.org/2001/xml.xsd": "xml.xsd",
    "http://x-road.eu/xsd/identifiers.xsd": "identifiers.xsd",
    "http://x-road.eu/xsd/xroad.xsd": "xroad.xsd",
    "http://x-road.eu/xsd/representation.xsd": "representation.xsd",
}

# A schema for the SOAP 1.1 Header alone: any content, validated where a declaration exists.
# `xroad-securityserver.xsd` shares xroad.xsd's target namespace, so both are included into
# one schema document for that namespace (libxml2 skips a second import of a namespace).
_XROAD_WRAPPER: Final = f"""\
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="{XROAD_NS}"
    elementFormDefault="qualified">
  <xs:include schemaLocation="xroad.xsd"/>
  <xs:include schemaLocation="xroad-securityserver.xsd"/>
</xs:schema>"""
_HEADER_SCHEMA: Final = f"""\
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="{SOAP_ENV_NS}"
    elementFormDefault="qualified">
  <xs:import namespace="{XROAD_NS}" schemaLocation="xroad-wrapper.xsd"/>
  <xs:import namespace="{REPR_NS}" schemaLocation="representation.xsd"/>
  <xs:element name="Header">
    <xs:complexType>
      <xs:sequence>
        <xs:any namespace="##any" processContents="lax" minOccurs="0" maxOccurs="unbounded"/>
      </xs:sequence>
      <xs:anyAttribute namespace="##any" processContents="lax"/>
    </xs:complexType>
  </xs:element>
</xs:schema>"""


class _LocalXsdResolver(etree.Resolver):
    """Serves every schema location from `XSD_DIR`; anything else fails rather than going online."""

    # lxml-stubs omit the context argument and resolve_filename; lxml passes and has both.
    def resolve(  # type: ignore[override]
        self, system_url: str | None, public_id: str | None, context: object
    ) -> object:
        if system_url is None:
            return None
        if system_url.endswith("xroad-wrapper.xsd"):
            return self.resolve_string(_XROAD_WRAPPER, context, base_url=str(XSD_DIR / "xroad-wrapper.xsd"))
        name = _KNOWN_LOCATIONS.get(system_url)
        if name is None:
            candidate = Path(system_url.removeprefix("file://"))
            if candidate.parent != XSD_DIR:
                raise OSError(f"schema location {system_url!r} is not one of the local X-Road XSDs")
            name = candidate.name
        return self.resolve_filename(str(XSD_DIR / name), context)  # type: ignore[attr-defined]


@lru_cache(maxsize=1)
def header_schema() -> etree.XMLSchema:
    """The compiled header schema, built on first use and shared by every later call."""
    parser = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)
    parser.resolvers.add(_LocalXsdResolver())
    document = etree.fromstring(_HEADER_SCHEMA.encode(), parser, base_url=str(XSD_DIR / "header.xsd"))
    return etree.XMLSchema(document)


def validate_header(header: etree._Element, xroad_fields: Iterable[etree._Element]) -> None:
    """Raise `Client.InvalidXml` when an X-Road field of the SOAP `header` breaks the XSDs.

    `xroad_fields` are the header's children in X-Road namespaces; they are consulted only
    when the fast whole-header check fails, to tell an X-Road violation from a complaint
    about foreign header content (e.g. an `xsi:type` naming a type we do not know), which
    is not ours to judge.
    """
    schema = header_schema()
    if schema.validate(header):
        return
    for field in xroad_fields:
        if not schema.validate(field) and not schema.validate(_without_foreign_attributes(field)):
            raise XRoadFault(INVALID_XML, _describe(schema.error_log))


def _without_foreign_attributes(field: etree._Element) -> etree._Element:
    """A copy of `field` with only the attributes the XSDs declare.

    X-Road reads the header leniently: an attribute it does not know (`SOAP-ENV:mustUnderstand`,
    a vendor's own) is ignored, not refused; everything the schemas do say is still checked.
    """
    copy = deepcopy(field)
    for element in copy.iter():
        for name in [name for name in element.attrib if name not in DECLARED_ATTRIBUTES]:
            del element.attrib[name]
    return copy


def _describe(log: etree._ListErrorLog) -> str:
    # The first error names the cause; later ones are often its consequences.
    reason = log[0].message if len(log) else "unknown reason"
    return f"header field violates the X-Road schema: {reason}"
