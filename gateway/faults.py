"""X-Road fault codes and the one exception that carries them.

Every place that finds a peer or a client misbehaving raises :class:`XRoadFault`
with one of the codes below (PROTOCOL.md, "Fault codes"); the edge that owns the
connection turns it into a SOAP fault or a REST error body in one place.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final, Literal

# Client.* : the client's message is wrong (PROTOCOL.md "Fault codes").
INVALID_SOAP: Final = "Client.InvalidSoap"
MISSING_SOAP: Final = "Client.MissingSoap"
MISSING_HEADER: Final = "Client.MissingHeader"
MISSING_HEADER_FIELD: Final = "Client.MissingHeaderField"
DUPLICATE_HEADER_FIELD: Final = "Client.DuplicateHeaderField"
INVALID_PROTOCOL_VERSION: Final = "Client.InvalidProtocolVersion"
MISSING_BODY: Final = "Client.MissingBody"
INVALID_BODY: Final = "Client.InvalidBody"
INCONSISTENT_HEADERS: Final = "Client.InconsistentHeaders"
INVALID_XML: Final = "Client.InvalidXml"
INVALID_CLIENT_IDENTIFIER: Final = "Client.InvalidClientIdentifier"
INVALID_SERVICE_IDENTIFIER: Final = "Client.InvalidServiceIdentifier"
INVALID_SECURITY_SERVER: Final = "Client.InvalidSecurityServer"
INVALID_CONTENT_TYPE: Final = "Client.InvalidContentType"
INVALID_HTTP_METHOD: Final = "Client.InvalidHttpMethod"
INVALID_SOAP_ACTION: Final = "Client.InvalidSoapAction"
"""X-Road's X_INVALID_SOAPACTION: a SOAPAction field that is not absent, empty or a quoted URI."""
INVALID_REQUEST: Final = "Client.InvalidRequest"
REQUEST_TOO_LARGE: Final = "Client.RequestTooLarge"
MISSING_SIGNATURE: Final = "Client.MissingSignature"

# Server.ClientProxy.* : the consumer's gateway failed.
UNKNOWN_MEMBER: Final = "Server.ClientProxy.UnknownMember"
SSL_AUTHENTICATION_FAILED: Final = "Server.ClientProxy.SslAuthenticationFailed"
NETWORK_ERROR: Final = "Server.ClientProxy.NetworkError"
OUTDATED_GLOBALCONF: Final = "Server.ClientProxy.OutdatedGlobalConf"
INCONSISTENT_RESPONSE: Final = "Server.ClientProxy.InconsistentResponse"
TIMESTAMPER_FAILED: Final = "Server.ClientProxy.LoggingFailed.TimestamperFailed"
LOGGING_FAILED: Final = "Server.ClientProxy.LoggingFailed"
CLIENT_PROXY_INTERNAL_ERROR: Final = "Server.ClientProxy.InternalError"
CLIENT_PROXY_INVALID_SIGNATURE: Final = "Server.ClientProxy.InvalidSignatureValue"
CLIENT_PROXY_INVALID_CONTENT_TYPE: Final = "Server.ClientProxy.InvalidContentType"
CLIENT_PROXY_RESPONSE_TOO_LARGE: Final = "Server.ClientProxy.ResponseTooLarge"
OCSP_RESPONSE_STALE: Final = "Server.ClientProxy.IncorrectValidationInfo.OcspResponseStale"
"""This gateway holds no fresh OCSP response for its own certificate (responders unreachable, or
its clock off), so it cannot send: X-Road's IncorrectValidationInfo ("OCSP response is too old"),
narrowed as LoggingFailed.TimestamperFailed is; the message names the age, the responders, the clock."""
CLIENT_PROXY_OVERLOADED: Final = "Server.ClientProxy.Overloaded"
"""xgate's own (X-Road's proxies queue in Jetty instead): no room for the request within the
bounded wait (gateway/admission.py); the request was not read or not processed. Retry later."""

# Server.ServerProxy.* : the provider's gateway failed.
ACCESS_DENIED: Final = "Server.ServerProxy.AccessDenied"
UNKNOWN_SERVICE: Final = "Server.ServerProxy.UnknownService"
SERVICE_DISABLED: Final = "Server.ServerProxy.ServiceDisabled"
SERVER_PROXY_SSL_AUTHENTICATION_FAILED: Final = "Server.ServerProxy.SslAuthenticationFailed"
SERVER_PROXY_INVALID_SIGNATURE: Final = "Server.ServerProxy.InvalidSignatureValue"
SERVER_PROXY_INTERNAL_ERROR: Final = "Server.ServerProxy.InternalError"
SERVER_PROXY_UNKNOWN_MEMBER: Final = "Server.ServerProxy.UnknownMember"
SERVER_PROXY_OUTDATED_GLOBALCONF: Final = "Server.ServerProxy.OutdatedGlobalConf"
SERVER_PROXY_LOGGING_FAILED: Final = "Server.ServerProxy.LoggingFailed"
SERVER_PROXY_TIMESTAMPER_FAILED: Final = "Server.ServerProxy.LoggingFailed.TimestamperFailed"
SERVER_PROXY_OCSP_RESPONSE_STALE: Final = "Server.ServerProxy.IncorrectValidationInfo.OcspResponseStale"
SERVER_PROXY_OVERLOADED: Final = "Server.ServerProxy.Overloaded"
"""xgate's own: the provider's gateway had no room for the request; it did not process it."""
SERVER_PROXY_DUPLICATE_MESSAGE: Final = "Server.ServerProxy.DuplicateMessage"
"""xgate's own (X-Road has none): a signed request already served within its freshness window."""

# Server.ServerProxy.ServiceFailed.* : the provider's own service failed.
SERVICE_FAILED: Final = "Server.ServerProxy.ServiceFailed"
SERVICE_FAILED_HTTP_ERROR: Final = "Server.ServerProxy.ServiceFailed.HttpError"
SERVICE_FAILED_INVALID_SOAP: Final = "Server.ServerProxy.ServiceFailed.InvalidSoap"
SERVICE_FAILED_MISSING_BODY: Final = "Server.ServerProxy.ServiceFailed.MissingBody"
SERVICE_FAILED_INVALID_CONTENT_TYPE: Final = "Server.ServerProxy.ServiceFailed.InvalidContentType"
SERVICE_FAILED_NETWORK_ERROR: Final = "Server.ServerProxy.ServiceFailed.NetworkError"
SERVICE_FAILED_TIMEOUT: Final = "Server.ServerProxy.ServiceFailed.Timeout"
SERVICE_FAILED_INCONSISTENT_HEADERS: Final = "Server.ServerProxy.ServiceFailed.InconsistentHeaders"
SERVICE_FAILED_RESPONSE_TOO_LARGE: Final = "Server.ServerProxy.ServiceFailed.ResponseTooLarge"


def service_failed(code: str) -> str:
    """The ServiceFailed fault for a service answer that fails the check `code` names.

    A service's answer is checked like a client's message: `Client.InvalidSoap` found in it
    becomes `Server.ServerProxy.ServiceFailed.InvalidSoap`.
    """
    return f"{SERVICE_FAILED}.{code.rsplit('.', 1)[-1]}"


def fault_detail_id() -> str:
    """A fresh id for `detail/faultDetail`; the same id goes into the gateway's own log."""
    return str(uuid.uuid4())


@dataclass
class XRoadFault(Exception):
    """A protocol error with its X-Road fault code; turned into a SOAP fault or REST error at the edge."""

    code: str
    message: str
    detail: str = field(default_factory=fault_detail_id)

    def __post_init__(self) -> None:
        super().__init__(f"{self.code}: {self.message}")

    @property
    def is_client_error(self) -> bool:
        """`Client.*` faults are the caller's fault (HTTP 4xx for REST); everything else is 5xx."""
        return self.code.startswith("Client.")

    def prefixed(self, prefix: str) -> XRoadFault:
        """The same fault reported from further up the chain (e.g. a backend fault seen by a gateway)."""
        return XRoadFault(f"{prefix}.{self.code}", self.message, self.detail)


FaultStyle = Literal["xroad-7.8", "legacy"]
"""How fault codes are spelled to clients: X-Road 7.8's lower snake case, or the CamelCase of
X-Road 6 and 7 before 7.8 (PROTOCOL.md "Fault codes"), which is also xgate's canonical form."""

XROAD_78: Final = "xroad-7.8"
LEGACY: Final = "legacy"
DEFAULT_FAULT_STYLE: Final[FaultStyle] = "xroad-7.8"
DEFAULT_SOAP_FAULT_STATUS: Final = 200
"""X-Road's client proxy answers a SOAP fault with HTTP 200 (`text/xml; charset=UTF-8`)."""

# Where X-Road 7.8's own name for a code is not the snake case of the CamelCase one
# (its ErrorCode enum: GLOBAL_CONF_OUTDATED is "global_conf_outdated").
_XROAD_78_NAMES: Final = {"OutdatedGlobalConf": "global_conf_outdated"}
# The origin prefixes X-Road 7.8 lowercases without separating words.
_PREFIXES: Final = frozenset({"Client", "Server", "ClientProxy", "ServerProxy"})


@dataclass(frozen=True)
class FaultCompat:
    """A gateway's fault settings (config `[compatibility]`): SOAP fault status and code style."""

    soap_fault_status: int = DEFAULT_SOAP_FAULT_STATUS
    fault_code_style: FaultStyle = DEFAULT_FAULT_STYLE

    def code(self, code: str) -> str:
        """`code` (canonical) as this gateway writes it to its callers."""
        return styled(code, self.fault_code_style)


LEGACY_COMPAT: Final = FaultCompat(500, "legacy")
"""xgate before the setting: HTTP 500 (SOAP 1.1 §6.2) and CamelCase codes."""


def snake_case(code: str) -> str:
    """The lower snake-case spelling X-Road 7.8 writes.

    `Client.MissingHeader` becomes `client.missing_header`, `Server.ClientProxy.UnknownMember`
    `server.clientproxy.unknown_member`: the origin prefixes are lowercased as one word.
    """
    out: list[str] = []
    for part in code.split("."):
        if part in _PREFIXES:
            out.append(part.lower())
            continue
        named = _XROAD_78_NAMES.get(part)
        if named is not None:
            out.append(named)
            continue
        chars: list[str] = []
        for i, ch in enumerate(part):
            if (
                ch.isupper()
                and i > 0
                and (part[i - 1].islower() or (i + 1 < len(part) and part[i + 1].islower()))
            ):
                chars.append("_")
            chars.append(ch.lower())
        out.append("".join(chars))
    return ".".join(out)


def styled(code: str, style: FaultStyle) -> str:
    """A canonical (CamelCase) code in `style`; codes of other origins (a service's) unchanged."""
    if style == LEGACY or not code.startswith(("Client.", "Server.")):
        return code
    return snake_case(code)


def _key(code: str) -> str:
    return code.replace("_", "").lower()


def all_codes() -> dict[str, str]:
    """Every fault code this module names, by constant name (docs/compatibility.md's table)."""
    return {
        name: value
        for name, value in globals().items()
        if name.isupper() and isinstance(value, str) and value.startswith(("Client.", "Server."))
    }


@lru_cache(maxsize=1)
def _canonical_by_key() -> dict[str, str]:
    known = {_key(code): code for code in all_codes().values()}
    known.update({_key(snake_case(code)): code for code in all_codes().values()})
    return known


def canonical(code: str) -> str:
    """A peer's code in xgate's canonical CamelCase form, whichever style the peer wrote.

    Known codes map exactly; an unknown code in X-Road 7.8 style gets its segments CamelCased
    (`server.serverproxy.foo_bar` becomes `Server.ServerProxy.FooBar`), so comparisons,
    the message log and `is_client_error` see one form.
    """
    known = _canonical_by_key().get(_key(code))
    if known is not None:
        return known
    if code.startswith(("client.", "server.")):
        return ".".join(_camel(part) for part in code.split("."))
    return code


_CAMEL_PREFIXES: Final = {
    "client": "Client",
    "server": "Server",
    "clientproxy": "ClientProxy",
    "serverproxy": "ServerProxy",
}


def _camel(part: str) -> str:
    return _CAMEL_PREFIXES.get(part) or "".join(word[:1].upper() + word[1:] for word in part.split("_"))
