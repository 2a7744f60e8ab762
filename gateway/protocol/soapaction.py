"""The SOAPAction field: checked as X-Road 7.8 checks it, then passed on exactly as received.

X-Road (SoapUtils.validateSoapActionHeader) accepts a missing field, an empty one, `""`, or a
quoted string whose inside parses as a URI reference (java.net.URI); anything else, unquoted
values included, is refused with `InvalidSoapAction`. The check here is that rule without the
JVM: the characters RFC 3986 allows in a URI reference (and, as java.net.URI does, any
non-ASCII character that is not a control or a space), `%` followed by two hex digits, at most
one `#`, and a scheme, when one is present, of a letter followed by letters, digits, `+-.`.
"""

from __future__ import annotations

import re
from typing import Final

from gateway import faults
from gateway.faults import XRoadFault

FIELD: Final = "SOAPAction"
TRANSPORT_FIELD: Final = "X-Original-SOAPAction"
"""Carries the client's SOAPAction from the consumer's gateway to the provider's, beside the
signed transport message, as X-Road's proxies carry it (`x-original-soapaction`)."""

_URI_CHARS: Final = re.compile(
    r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2}|[^\x00-\x9f\s\ud800-\udfff])+"
)
"""RFC 3986's characters, escapes, and other non-control text (no C1 controls, no lone surrogates:
aiohttp hands undecodable field bytes on as those, and they could not be sent on)."""
_SCHEME_PREFIX: Final = re.compile(r"([^:/?#]*):")
_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")


def checked_soap_action(value: str | None) -> str | None:
    """`value` itself if X-Road accepts it, else the `Client.InvalidSoapAction` fault."""
    if value is None or value in ("", '""'):
        return value
    if len(value) > 2 and value[0] == '"' and value[-1] == '"' and _is_uri_reference(value[1:-1]):
        return value
    raise XRoadFault(
        faults.INVALID_SOAP_ACTION,
        f"malformed SOAPAction {value[:80]!r}: it must be absent, empty, or a quoted URI reference",
    )


def _is_uri_reference(text: str) -> bool:
    if not _URI_CHARS.fullmatch(text) or text.count("#") > 1:
        return False
    scheme = _SCHEME_PREFIX.match(text)
    return scheme is None or bool(_SCHEME.fullmatch(scheme.group(1)))
