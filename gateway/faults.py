"""X-Road fault codes and the one exception that carries them.

Every place that finds a peer or a client misbehaving raises :class:`XRoadFault`
with one of the codes below (PROTOCOL.md, "Fault codes"); the edge that owns the
connection turns it into a SOAP fault or a REST error body in one place.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Final

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


def snake_case(code: str) -> str:
    """The lower snake-case spelling newer X-Road peers use.

    `Client.MissingHeader` becomes `client.missing_header`; clients may match either form.
    """
    out: list[str] = []
    for part in code.split("."):
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
