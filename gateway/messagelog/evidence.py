"""What logged evidence must show beyond a valid signature: who signed, for which identifiers,
with what certificate status, and which parts the log kept (sans-IO).

A signature that chains to a federation CA says only that *someone* the CA knows signed. A
security officer needs more (DESIGN.md "Evidence is complete"; in the spirit of sigstore's
verification policies, STYLE.md): the signer must be the member the record says — the
client's member for a request, the provider's member for a response —, the signed message's
own header identifiers must be the record's, the signer's certificate must have been good at
the signing time by an OCSP response its CA's responder signed, and every part the record
says was logged must be there. Both the container verifier (gateway.messagelog.asice.verify)
and the live-log verifier (gateway.messagelog.verify) apply these checks; each raises
:class:`EvidenceError` naming what failed.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final, NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.x509 import ocsp

from gateway.crypto.certs import CertificateError, fingerprint_sha256, member_of
from gateway.crypto.ocsp import OcspError, verify_ocsp_response
from gateway.faults import XRoadFault
from gateway.globalconf.model import DEFAULT_OCSP_FRESHNESS_SECONDS, GlobalConf
from gateway.ids import ClientId, IdentifierError, ServiceId
from gateway.lru import BoundedLru
from gateway.messagelog.record import OUTCOME_CACHE_PREFIX, OUTCOME_OK, Direction, LoggedPart, MessageKind
from gateway.protocol import rest, soap

REQUEST: Final = Direction.REQUEST.value
RESPONSE: Final = Direction.RESPONSE.value
IDENTIFIER_TEXTS: Final = 1024
"""Identifiers whose text form is remembered: a gateway's clients and services are a few hundred."""
MAX_HEAD_BYTES: Final = 1024 * 1024
"""A REST head is a request line and headers: aiohttp refuses more than ~8 KB per field; 1 MB is ample."""


class EvidenceError(ValueError):
    """The evidence does not show what it must; the message says which check and why."""


# --- who must have signed --------------------------------------------------------------------


def expected_signer(direction: str, client: str, service: str) -> ClientId:
    """The member whose key must have signed: the client's for a request, the provider's for a
    response (X-Road: signing keys belong to members, certs.py)."""
    if direction not in (REQUEST, RESPONSE):
        raise EvidenceError(f"the record's direction {direction!r} is neither request nor response")
    whose, text = ("client", client) if direction == REQUEST else ("service", service)
    try:
        if direction == REQUEST:
            return ClientId.from_text(text).member
        return ServiceId.from_text(text).provider.member
    except (IdentifierError, TypeError, AttributeError) as exc:
        raise EvidenceError(
            f"the record's {whose} {text!r} is not an identifier to check the signer against"
        ) from exc


def check_signer(
    certificate: x509.Certificate,
    direction: str,
    client: str,
    service: str,
    *,
    fault: bool = False,
    server_owners: frozenset[ClientId] = frozenset(),
) -> str:
    """The signing certificate's member (SAN URI `xroad:member:...`) is the expected one.

    A provider gateway signs its own fault with its owner's key when it holds no key of the
    provider (gateway.proxy.provider): for a `fault` response the owner of a security server
    the global configuration lists (`server_owners`) is accepted too, and named as such.
    """
    expected = expected_signer(direction, client, service)
    try:
        member = member_of(certificate)
    except CertificateError as exc:
        raise EvidenceError(f"the signer's certificate names no usable member: {exc}") from exc
    if member is None:
        raise EvidenceError("the signer's certificate names no member (no xroad:member: SAN URI)")
    if member != expected and fault and direction == RESPONSE and member in server_owners:
        return f"signed by {member}, the owner of a security server (a gateway's own fault)"
    if member != expected:
        whose = "the client's" if direction == REQUEST else "the provider's"
        raise EvidenceError(
            f"signed by {member}, but a {direction} must be signed by {whose} member {expected}"
        )
    return f"signed by {member}, {'the client' if direction == REQUEST else 'the provider'}'s member"


# --- the signed message's own identifiers ----------------------------------------------------


def check_header_ids(
    *,
    kind: str,
    direction: str,
    outcome: str,
    content_type: str,
    message: bytes | None,
    rest_head: bytes | None,
    client: str,
    service: str,
    message_id: str,
    header_ids: HeaderIdsReading = soap.parse_header_ids,
) -> str:
    """The identifiers inside the signed message (SOAP header; REST X-Road-* fields and the
    service path) are the record's: a record cannot claim another exchange's message.

    An answer served from the interface cache (outcome `cache.hit`/`cache.stale`) is the
    original exchange's signed answer, kept intact so that it stays verifiable: its id (and, for
    data the policy shares between clients, its client) are the original's, which the record's
    detail names; only the service must be the record's. `header_ids` reads a SOAP message's
    (soap.parse_header_ids, or a soap.HeaderIdsReader's `read` over a run of records).
    """
    if kind not in (MessageKind.SOAP.value, MessageKind.REST.value):
        raise EvidenceError(f"the record's kind {kind!r} is neither soap nor rest")
    ids = _Recorded(client, service, message_id, outcome.startswith(OUTCOME_CACHE_PREFIX))
    if kind == MessageKind.SOAP.value:
        return _soap_ids(direction, content_type, message, ids, header_ids)
    return _rest_ids(direction, outcome, rest_head, ids)


class _Recorded(NamedTuple):
    """The record's identifiers, and whether its answer came from the interface cache."""

    client: str
    service: str
    message_id: str
    from_cache: bool

    def compare(self, client: str, service: str, message_id: str, fields: tuple[str, str, str]) -> str:
        _same(fields[1], service, self.service)
        if self.from_cache:
            return f"served from the interface cache: the original answer's {fields[1]} is the record's"
        _same(fields[0], client, self.client)
        _same(fields[2], message_id, self.message_id)
        return ""


HeaderIdsReading = Callable[[bytes, str | None], soap.HeaderIds]
"""How a SOAP message's header identifiers are read: soap.parse_header_ids' signature."""


def _soap_ids(
    direction: str, content_type: str, message: bytes | None, ids: _Recorded, header_ids: HeaderIdsReading
) -> str:
    if message is None:
        return "the body was not logged: the SOAP header cannot be compared (its digest is signed)"
    agreed = _header_agrees(content_type, message, ids, header_ids)
    if agreed is not None:
        return agreed
    # Otherwise the whole message, as the gateway parsed it: a fault response carries no header
    # to compare, and a message that is refused or disagrees is named as before.
    try:
        if direction == REQUEST:
            parsed = soap.parse_request(message, content_type)
        else:
            parsed = soap.parse_response(message, content_type)
    except soap.ServiceFault:
        return "a SOAP fault: it carries no X-Road header to compare"
    except XRoadFault as exc:
        raise EvidenceError(f"the signed message is not an X-Road SOAP message: {exc.message}") from exc
    said = ids.compare(_text(parsed.client), _text(parsed.service), parsed.id, ("client", "service", "id"))
    return said or "the SOAP header's client, service and id are the record's"


def _header_agrees(
    content_type: str, message: bytes, ids: _Recorded, header_ids: HeaderIdsReading
) -> str | None:
    """What the header alone shows when it names the record's identifiers (soap.parse_header_ids:
    the same identifiers parse_request reads, without parsing the Body); None when it cannot say."""
    try:
        header = header_ids(message, content_type)
        said = ids.compare(
            _text(header.client), _text(header.service), header.id, ("client", "service", "id")
        )
    except (XRoadFault, EvidenceError):
        return None
    return said or "the SOAP header's client, service and id are the record's"


def soap_header_names(
    header_ids: HeaderIdsReading,
    content_type: str,
    message: bytes,
    client: str,
    service: str,
    message_id: str,
) -> bool:
    """Whether a SOAP message's header names exactly these client, service and id: the common
    case of :func:`check_header_ids` for a record not served from the cache, which it accepts
    (log verification asks this first, and check_header_ids for anything else)."""
    try:
        header = header_ids(message, content_type)
    except XRoadFault:
        return False
    return header.id == message_id and _text(header.client) == client and _text(header.service) == service


@lru_cache(maxsize=IDENTIFIER_TEXTS)
def _text(identifier: ClientId | ServiceId) -> str:
    """An identifier's text form: the same few clients and services recur on every record, and
    writing one out (percent-escaping each part) costs more than finding it here."""
    return identifier.to_text()


def _rest_ids(direction: str, outcome: str, head: bytes | None, ids: _Recorded) -> str:
    if head is None:
        raise EvidenceError("a REST message's signed head is not in the evidence")
    if len(head) > MAX_HEAD_BYTES:
        raise EvidenceError("the REST head is too large to be one")
    try:
        document = json.loads(head)
        headers = [(str(name), str(value)) for name, value in document["headers"]]
    except (ValueError, TypeError, KeyError) as exc:
        raise EvidenceError(f"the REST head is not the documented JSON: {exc}") from exc
    if direction == REQUEST:
        try:
            parsed = rest.parse_rest_request(
                str(document["method"]), str(document["path"]), str(document["query"]), headers, b""
            )
        except (XRoadFault, KeyError) as exc:
            raise EvidenceError(f"the signed REST request is not an X-Road request: {exc}") from exc
        call = parsed.request if isinstance(parsed, rest.RestMetadataRequest) else parsed
        said = ids.compare(
            call.client.to_text(),
            call.service.to_text(),
            call.message_id,
            ("X-Road-Client", "service path", "X-Road-Id"),
        )
        return said or "the REST request's X-Road-Client, service path and X-Road-Id are the record's"
    fields = {name.lower(): value for name, value in headers}
    if rest.HEADER_CLIENT.lower() not in fields and (outcome != OUTCOME_OK or _status(document) >= 400):
        return "a REST error answer without X-Road fields: nothing to compare"
    try:
        said = ids.compare(
            ClientId.from_text(fields[rest.HEADER_CLIENT.lower()]).to_text(),
            ServiceId.from_text(fields[rest.HEADER_SERVICE.lower()]).to_text(),
            fields[rest.HEADER_ID.lower()],
            ("X-Road-Client", "X-Road-Service", "X-Road-Id"),
        )
    except KeyError as exc:
        raise EvidenceError(f"the signed REST response has no {exc} field") from exc
    except IdentifierError as exc:
        raise EvidenceError(f"the signed REST response's identifiers do not parse: {exc}") from exc
    return said or "the REST response's X-Road-Client, X-Road-Service and X-Road-Id are the record's"


def _status(document: Mapping[str, Any]) -> int:
    status = document.get("status")
    return status if isinstance(status, int) else 0


def _same(what: str, signed: str, recorded: str) -> None:
    if signed != recorded:
        raise EvidenceError(f"the signed message's {what} is {signed!r}, the record's {recorded!r}")


# --- the signer's certificate status ---------------------------------------------------------


@dataclass(frozen=True)
class StatusPolicy:
    """How a signer's certificate status must be shown (RFC 6960 OCSP, attached to the message).

    `responders` maps a CA's SHA-256 fingerprint to the responder certificates the global
    configuration lists for it: a response for that CA's certificates must be signed by the CA
    itself or one of them. For a CA not in `responders` (its responders are listed by URL only,
    or trust was given as bare `--ca` files), any responder RFC 6960 §4.2.2.2 authorises (the
    CA, or a certificate it issued for OCSP signing) is accepted, as the gateways accept it.
    A CA in `without_responder` runs no OCSP service (the configuration lists none): its
    certificates need no status. Every other CA's do.
    """

    freshness_seconds: float = DEFAULT_OCSP_FRESHNESS_SECONDS
    responders: Mapping[str, tuple[x509.Certificate, ...]] = field(default_factory=dict)
    without_responder: frozenset[str] = frozenset()
    server_owners: frozenset[ClientId] = frozenset()
    """Owners of the configuration's security servers: who may sign a gateway's own fault."""


def status_policy(conf: GlobalConf) -> StatusPolicy:
    """The status rules a global configuration sets: its CAs' listed responders, its freshness."""
    responders: dict[str, tuple[x509.Certificate, ...]] = {}
    without: set[str] = set()
    for ca, certificate in zip(conf.trusted_cas, conf.trusted_ca_certs(), strict=True):
        ca_id = fingerprint_sha256(certificate)
        if not ca.ocsp_responders:
            without.add(ca_id)
        listed = tuple(
            x509.load_pem_x509_certificate(responder.certificate.encode("ascii"))
            for responder in ca.ocsp_responders
            if responder.certificate is not None
        )
        if listed:  # pinned; a responder listed by URL alone may be any the CA delegates to
            responders[ca_id] = listed
    owners = frozenset(server.id.owner for server in conf.security_servers)
    return StatusPolicy(conf.settings.ocsp_freshness_seconds, responders, frozenset(without), owners)


DEFAULT_STATUS_POLICY: Final = StatusPolicy()
"""Every CA's signers need a status, from any responder RFC 6960 authorises; X-Road's freshness."""


def issuing_ca(certificate: x509.Certificate, cas: Sequence[x509.Certificate]) -> x509.Certificate:
    """The CA among `cas` that signed `certificate`; remembered, since a member's certificate
    signs every batch it sends and checking its signature costs as much as a batch's."""
    return _ISSUERS.remembered((certificate, tuple(cas)), lambda: _issuing_ca(certificate, cas))


ISSUERS_KEPT: Final = 256
"""Signers whose issuing CA is remembered: the members signing through a gateway."""
_ISSUERS: Final[BoundedLru[tuple[x509.Certificate, tuple[x509.Certificate, ...]], x509.Certificate]] = (
    BoundedLru(ISSUERS_KEPT)
)


def _issuing_ca(certificate: x509.Certificate, cas: Sequence[x509.Certificate]) -> x509.Certificate:
    for ca in cas:
        if certificate.issuer != ca.subject:
            continue
        try:
            certificate.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            continue
        return ca
    raise EvidenceError("no trusted CA issued the signer's certificate directly")


def check_status(
    response_der: bytes | None,
    certificate: x509.Certificate,
    cas: Sequence[x509.Certificate],
    signed_at: dt.datetime,
    policy: StatusPolicy,
) -> str:
    """The attached OCSP response is about `certificate`, from its CA's responder, good, and
    fresh at `signed_at` (RFC 6960 §3.2; freshness as the global configuration's
    `ocsp_freshness_seconds`, which the gateways themselves apply)."""
    ca = issuing_ca(certificate, cas)
    ca_id = fingerprint_sha256(ca)
    if response_der is None:
        if ca_id in policy.without_responder:
            return "its CA runs no OCSP responder: no status to check"
        raise EvidenceError("no OCSP response for the signer's certificate is attached")
    listed = policy.responders.get(ca_id)
    try:
        status = verify_ocsp_response(
            response_der, certificate, ca, signed_at, policy.freshness_seconds, listed or ()
        )
    except OcspError as exc:
        raise EvidenceError(f"the OCSP response is refused ({exc.problem}): {exc}") from exc
    if listed is not None and not _signed_by_one_of(response_der, (ca, *listed)):
        raise EvidenceError("the OCSP response is signed by a responder the configuration does not list")
    if not status.is_good:
        raise EvidenceError(
            f"the OCSP response says the signer's certificate is {status.status.name.lower()}"
        )
    age = (signed_at - status.this_update).total_seconds()
    return f"good (OCSP of {status.this_update.isoformat()}, {age:.0f} s before signing)"


def _signed_by_one_of(response_der: bytes, candidates: Sequence[x509.Certificate]) -> bool:
    """Whether the ResponderID (RFC 6960 §4.2.2.3) names one of `candidates`; the signature itself
    was checked by verify_ocsp_response against the certificate so named."""
    response = ocsp.load_der_ocsp_response(response_der)
    for candidate in candidates:
        if response.responder_name is not None:
            if response.responder_name == candidate.subject:
                return True
        else:
            key_hash = x509.SubjectKeyIdentifier.from_public_key(candidate.public_key()).digest
            if response.responder_key_hash is not None and hmac.compare_digest(
                response.responder_key_hash, key_hash
            ):
                return True
    return False


# --- the parts the log kept --------------------------------------------------------------------


def check_parts_present(logged_parts: object, present: set[str]) -> str:
    """Every part the record says was logged is at hand (`present`: the part names found).

    `logged_parts` is the record's field as read (a list of part names, or None for a record
    stored before the field existed: nothing to check, and the answer says so)."""
    if logged_parts is None:
        return LEGACY_WARNING
    if not isinstance(logged_parts, list | tuple) or not all(isinstance(p, str) for p in logged_parts):
        raise EvidenceError("the record's logged_parts is not a list of part names")
    unknown = sorted(set(logged_parts) - _PART_NAMES)
    if unknown:
        raise EvidenceError(f"the record's logged_parts names unknown parts {unknown}")
    missing = [part for part in logged_parts if part not in present]
    if missing:
        raise EvidenceError(f"the record says {', '.join(missing)} was logged, but it is not there")
    return f"all logged parts present ({', '.join(logged_parts) or 'none: body logging off'})"


_PART_NAMES: Final = frozenset(part.value for part in LoggedPart)

LEGACY_WARNING: Final = (
    "warning: the record predates logged_parts (xgate-logrecord/2): whether a part was removed cannot be told"
)
