"""getSecurityServerOperationalData: the records as X-Road's op-monitoring protocol serves them (sans-IO).

X-Road's PR-OPMON: the gateway owner's member-level service `getSecurityServerOperationalData`,
asked through the federation like any service. The request's `searchCriteria` gives
`recordsFrom` and `recordsTo` (unix seconds, both inclusive) and optionally a `client`;
`outputSpec` may name the fields wanted. The answer is a multipart message: the SOAP part says
`recordsCount`, `records` (a `cid:` reference to the attachment) and, when the answer does not
reach `recordsTo`, `nextRecordsFrom`; the attachment is the records as gzipped JSON
(`{"records": [...]}`, X-Road's field names).

Who sees what: the federation's monitoring client (global configuration `monitoring_client`)
and the gateway owner's own clients see every record; any other client only the records where
it is the client. The last `OFFSET_SECONDS` are not answered (they may still be in the writer's
queue): `recordsTo` is moved back and `nextRecordsFrom` says where to go on.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from lxml import etree

from gateway import faults
from gateway.faults import XRoadFault
from gateway.ids import ClientId, IdentifierError, ServiceId
from gateway.monitoring.exchange import Role
from gateway.monitoring.operational.query import RecordQuery, StoredRecord
from gateway.protocol import mime, soap

OPERATIONAL_DATA: Final = "getSecurityServerOperationalData"
OPM_NS: Final = "http://x-road.eu/xsd/op-monitoring.xsd"
_O: Final = f"{{{OPM_NS}}}"

MAX_RECORDS: Final = 10_000
"""Records in one answer at most (X-Road's op-monitor `max-records-in-payload` default)."""

OFFSET_SECONDS: Final = 2
"""The youngest records not answered: a flush interval of the writer and a second to spare
(X-Road waits 60 s for its daemon's)."""

PAYLOAD_CONTENT_ID: Final = "operational-monitoring-data.json.gz"

FIELDS: Final = (
    "monitoringDataTs",
    "securityServerType",
    "requestInTs",
    "responseOutTs",
    "clientXRoadInstance",
    "clientMemberClass",
    "clientMemberCode",
    "clientSubsystemCode",
    "serviceXRoadInstance",
    "serviceMemberClass",
    "serviceMemberCode",
    "serviceSubsystemCode",
    "serviceCode",
    "serviceVersion",
    "restMethod",
    "restPath",
    "messageId",
    "messageUserId",
    "messageProtocolVersion",
    "clientSecurityServerAddress",
    "serviceSecurityServerAddress",
    "requestSize",
    "requestAttachmentCount",
    "responseSize",
    "responseAttachmentCount",
    "succeeded",
    "serviceType",
    "faultCode",
    "faultString",
    "statusCode",
    "xgateSteps",
    "xgateServedFromCache",
)
"""The fields a record may have (X-Road's names; `xgate*` are this gateway's own additions)."""


@dataclass(frozen=True)
class Criteria:
    records_from: int
    records_to: int
    client: ClientId | None = None
    fields: tuple[str, ...] = ()


def is_request(request: soap.SoapMessage, owner: ClientId) -> bool:
    """The owner's operational data service (a member-level service of this gateway's owner)."""
    service = request.service
    return service.service_code == OPERATIONAL_DATA and service.provider == owner


def parse_criteria(body: etree._Element) -> Criteria:
    """The request's `searchCriteria` and `outputSpec`; Client.InvalidBody when malformed."""
    criteria = body.find(f"{_O}searchCriteria")
    if criteria is None:
        raise XRoadFault(faults.INVALID_BODY, f"{OPERATIONAL_DATA} needs searchCriteria")
    records_from, records_to = (_seconds(criteria, name) for name in ("recordsFrom", "recordsTo"))
    if records_from > records_to:
        raise XRoadFault(faults.INVALID_BODY, "recordsFrom must not be after recordsTo")
    client_element = criteria.find(f"{_O}client")
    client = None
    if client_element is not None:
        try:
            client = ClientId.from_xml(client_element)
        except IdentifierError as exc:
            raise XRoadFault(faults.INVALID_BODY, f"searchCriteria client: {exc.message}") from exc
    wanted = tuple((field.text or "").strip() for field in body.iterfind(f"{_O}outputSpec/{_O}outputField"))
    unknown = [name for name in wanted if name not in FIELDS]
    if unknown:
        raise XRoadFault(faults.INVALID_BODY, f"unknown outputField(s): {', '.join(unknown)}")
    return Criteria(records_from, records_to, client, wanted)


def _seconds(criteria: etree._Element, name: str) -> int:
    text = criteria.findtext(f"{_O}{name}")
    try:
        value = int((text or "").strip())
    except ValueError:
        raise XRoadFault(faults.INVALID_BODY, f"searchCriteria {name} must be unix seconds") from None
    if value < 0:
        raise XRoadFault(faults.INVALID_BODY, f"searchCriteria {name} must not be negative")
    return value


@dataclass(frozen=True)
class Plan:
    """The query to run for one request, and where its answer's time range ends."""

    query: RecordQuery
    records_to: int
    """The last second answered (`recordsTo`, moved back from the present if need be)."""
    shifted: bool


def plan(criteria: Criteria, now: float, sees_all: bool, requester: ClientId) -> Plan:
    """The records the requester may have: all (`sees_all`), or only where it is the client."""
    latest = math.floor(now) - OFFSET_SECONDS - 1
    records_to = min(criteria.records_to, latest)
    shifted = records_to < criteria.records_to
    query = RecordQuery(  # a range wholly too recent runs empty (`answer` sends nothing of it)
        since=float(criteria.records_from),
        until=float(max(records_to, criteria.records_from) + 1),
        client=None if criteria.client is None else criteria.client.to_text(),
        own_client=None if sees_all else requester.to_text(),
        limit=MAX_RECORDS + 1,
        oldest_first=True,
    )
    return Plan(query, records_to, shifted)


def answer(
    request: soap.SoapMessage, plan: Plan, criteria: Criteria, found: Sequence[StoredRecord]
) -> tuple[bytes, str]:
    """The multipart answer: the SOAP part and the gzipped JSON records."""
    records = list(found)
    next_from: int | None = plan.records_to + 1 if plan.shifted else None
    if plan.records_to < criteria.records_from:
        records = []  # the whole range is too recent to answer yet
        next_from = criteria.records_from
    elif len(records) > MAX_RECORDS:
        # Cut at a whole second, so that the next query (from that second) repeats nothing.
        cut = math.floor(records[MAX_RECORDS].record.request_in)
        kept = [stored for stored in records[:MAX_RECORDS] if math.floor(stored.record.request_in) < cut]
        records, next_from = (kept, cut) if kept else (records[:MAX_RECORDS], cut + 1)
    payload = {"records": [xroad_record(stored, criteria.fields) for stored in records]}
    data = gzip.compress(json.dumps(payload, separators=(",", ":")).encode("utf-8"), mtime=0)
    wrapper = etree.Element(f"{_O}{OPERATIONAL_DATA}Response", nsmap={"om": OPM_NS})
    etree.SubElement(wrapper, f"{_O}recordsCount").text = str(len(records))
    etree.SubElement(wrapper, f"{_O}records").text = f"cid:{PAYLOAD_CONTENT_ID}"
    if next_from is not None:
        etree.SubElement(wrapper, f"{_O}nextRecordsFrom").text = str(next_from)
    envelope = soap.build_response(request, wrapper)
    body, content_type = mime.build_multipart(
        envelope, [mime.Attachment(PAYLOAD_CONTENT_ID, "application/gzip", data)]
    )
    return body, f"{content_type}; charset=UTF-8"


def records_of_answer(data: bytes) -> list[dict[str, Any]]:
    """The records of an answer's attachment (for clients and tests)."""
    records: list[dict[str, Any]] = json.loads(gzip.decompress(data))["records"]
    return records


def xroad_record(stored: StoredRecord, fields: Sequence[str] = ()) -> dict[str, Any]:
    """One record in X-Road's JSON form; only `fields` when given."""
    r = stored.record
    record: dict[str, Any] = {
        "monitoringDataTs": int(r.response_out),
        "securityServerType": r.role.value,
        "requestInTs": round(r.request_in * 1000),
        "responseOutTs": round(r.response_out * 1000),
        "requestSize": r.request_size,
        "requestAttachmentCount": r.request_attachments,
        "responseSize": r.response_size,
        "responseAttachmentCount": r.response_attachments,
        "succeeded": r.succeeded,
        "serviceType": "REST" if r.protocol == "rest" else "WSDL",
        "statusCode": r.status,
        "xgateSteps": {step: round(seconds * 1000, 3) for step, seconds in r.steps.items()},
    }
    _put_client(record, r.client)
    _put_service(record, r.service)
    optional = {
        "messageId": r.message_id,
        "messageUserId": r.user_id,
        "messageProtocolVersion": "4.0" if r.protocol == "soap" and r.message_id else None,
        "restMethod": r.rest_method,
        "restPath": r.rest_path,
        "faultCode": r.fault_code,
        "faultString": r.fault_string,
        "xgateServedFromCache": r.served_from_cache,
    }
    record.update((name, value) for name, value in optional.items() if value is not None)
    address = None if r.peer is None else r.peer.rpartition("@")[2] if "@" in r.peer else None
    if address is not None:
        side = "serviceSecurityServerAddress" if r.role is Role.CLIENT else "clientSecurityServerAddress"
        record[side] = address
    if fields:
        return {name: record[name] for name in fields if name in record}
    return record


def _put_client(record: dict[str, Any], text: str | None) -> None:
    if text is None:
        return
    try:
        client = ClientId.from_text(text)
    except IdentifierError:
        return
    record.update(
        clientXRoadInstance=client.instance,
        clientMemberClass=client.member_class,
        clientMemberCode=client.member_code,
    )
    if client.subsystem_code is not None:
        record["clientSubsystemCode"] = client.subsystem_code


def _put_service(record: dict[str, Any], text: str | None) -> None:
    """Five parts are read as a subsystem's service without a version, as everywhere in xgate."""
    if text is None:
        return
    try:
        service = ServiceId.from_text(text, has_subsystem=text.count("/") >= 4)
    except IdentifierError:
        return
    record.update(
        serviceXRoadInstance=service.instance,
        serviceMemberClass=service.member_class,
        serviceMemberCode=service.member_code,
        serviceCode=service.service_code,
    )
    if service.subsystem_code is not None:
        record["serviceSubsystemCode"] = service.subsystem_code
    if service.service_version is not None:
        record["serviceVersion"] = service.service_version
