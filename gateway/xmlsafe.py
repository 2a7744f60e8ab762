"""The one XML parser configuration xgate uses for anything that came from outside.

DESIGN.md "Security rules": no DTD loading, no entities, no network, size and depth
limits. Every module parses untrusted XML through :func:`parse_xml`; a document that
breaks a rule raises :class:`UnsafeXml` (or :class:`XmlSyntaxError`) and the caller maps
it to its protocol's fault code.
"""

from __future__ import annotations

import codecs
from functools import lru_cache
from typing import Final, TypedDict

from lxml import etree

# A SOAP message with a few attachments inline stays well under this; larger bodies
# belong in attachments, which are never parsed as XML.  X-Road's own default is 10 MB.
MAX_XML_BYTES: Final = 10 * 1024 * 1024

# libxml2 itself stops at 256 levels without XML_PARSE_HUGE; real SOAP messages rarely
# exceed 30.  We keep libxml2's limit (we never pass huge_tree) and state it here.
MAX_XML_DEPTH: Final = 256


class XmlSyntaxError(ValueError):
    """The bytes are not well-formed XML."""


class UnsafeXml(ValueError):
    """The document uses a construct we refuse: a DTD, entities, or it is too large or deep."""


class ParserSettings(TypedDict):
    resolve_entities: bool
    no_network: bool
    load_dtd: bool
    dtd_validation: bool
    huge_tree: bool
    remove_comments: bool
    remove_pis: bool
    collect_ids: bool


SAFE_PARSER_SETTINGS: Final = ParserSettings(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_comments=False,
    remove_pis=False,
    collect_ids=False,
)
"""The parser settings for untrusted XML, for a parser of another kind (gateway.protocol.soap's
pull parser) to be as safe as :func:`parse_xml`'s. remove_blank_text stays False: signatures
and the log need the bytes' own structure."""


@lru_cache(maxsize=16)
def _parser(encoding: str | None) -> etree.XMLParser:
    return etree.XMLParser(encoding=encoding, **SAFE_PARSER_SETTINGS)


def normalise_encoding(charset: str | None) -> str | None:
    if not charset:
        return None
    try:
        return codecs.lookup(charset.strip().strip('"')).name
    except LookupError as exc:
        raise UnsafeXml(f"unknown character encoding {charset!r}") from exc


def declares_encoding(data: bytes) -> bool:
    head = data[:200].lstrip()
    return head.startswith(b"<?xml") and b"encoding" in head.split(b"?>", 1)[0]


def parse_xml(data: bytes, *, charset: str | None = None, max_bytes: int = MAX_XML_BYTES) -> etree._Element:
    """Parse untrusted bytes into an element tree, or raise UnsafeXml / XmlSyntaxError.

    `charset` is the one from the Content-Type; an encoding in the XML prolog wins over it
    (XML 1.0 appendix F: the declaration is authoritative once read).
    """
    if len(data) > max_bytes:
        raise UnsafeXml(f"document of {len(data)} bytes exceeds the limit of {max_bytes}")
    if not data.strip():
        raise XmlSyntaxError("empty document")
    encoding = None if declares_encoding(data) else normalise_encoding(charset)
    parser = _parser(encoding)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        message = str(exc)
        lowered = message.lower()
        if "excessive depth" in lowered or ("depth" in lowered and "exceed" in lowered):
            raise UnsafeXml(f"document nested deeper than {MAX_XML_DEPTH} levels") from exc
        if "amplification" in lowered or "entity" in lowered:
            # libxml2's own guard against entity expansion (billion laughs) fired first.
            raise UnsafeXml(f"entity expansion refused: {message}") from exc
        raise XmlSyntaxError(message) from exc
    except (ValueError, LookupError) as exc:
        raise XmlSyntaxError(str(exc)) from exc
    if root is None:
        raise XmlSyntaxError("empty document")
    if has_dtd(root):
        raise UnsafeXml("document type declarations are not allowed")
    if _has_entity_reference(root):
        raise UnsafeXml("entity references are not allowed")
    return root


def has_dtd(root: etree._Element) -> bool:
    """Whether the document holding `root` has a document type declaration."""
    docinfo = root.getroottree().docinfo
    # lxml-stubs lack DocInfo.doctype; it is the whole "<!DOCTYPE ...>" text, or "".
    doctype: str = getattr(docinfo, "doctype", "")
    return bool(doctype) or docinfo.internalDTD is not None or docinfo.externalDTD is not None


def _has_entity_reference(root: etree._Element) -> bool:
    # Without a DTD no entity can be declared, but a stray reference would survive as a node.
    return any(isinstance(node, etree._Entity) for node in root.iter(etree.Entity))
