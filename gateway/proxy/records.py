"""Message-log records for what the proxy signs, receives and answers (sans-IO).

The record of a signed message keeps the transport manifest and the batch signature with
this message's proof, so it proves the message later even when its body is not stored.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway import faults
from gateway.crypto.rootsig import MessageSignature
from gateway.faults import XRoadFault
from gateway.ids import ClientId
from gateway.messagelog.asice import manifest_and_proof
from gateway.messagelog.record import (
    OUTCOME_CACHE_PREFIX,
    OUTCOME_OK,
    Direction,
    LogRecord,
    MessageKind,
    Side,
    parts_held,
)
from gateway.monitoring.exchange import Step
from gateway.protocol import rest, soap
from gateway.protocol.transport import (
    Payload,
    SoapPayload,
    TransportMessage,
    manifest,
    signed_parts,
)
from gateway.serverconf.model import ServerConfSnapshot

if TYPE_CHECKING:  # the log service is an edge (aiohttp, SQLAlchemy); records only name its type
    from gateway.messagelog.service import MessageLog
    from gateway.proxy.watching import Watch

log = logging.getLogger(__name__)

# The faults each side answers with when its log fails (PROTOCOL.md "Fault codes").
_LOGGING_FAILED = {Side.CONSUMER: faults.LOGGING_FAILED, Side.PROVIDER: faults.SERVER_PROXY_LOGGING_FAILED}
_TIMESTAMPER_FAILED = {
    Side.CONSUMER: faults.TIMESTAMPER_FAILED,
    Side.PROVIDER: faults.SERVER_PROXY_TIMESTAMPER_FAILED,
}


@dataclass(frozen=True)
class ExchangeIds:
    """What every record of one exchange repeats: who asked whom, under which ids."""

    gateway: str
    exchange_id: str
    side: Side
    kind: MessageKind
    message_id: str
    client: str
    service: str
    user_id: str | None = None
    issue: str | None = None
    represented_party: str | None = None

    @classmethod
    def of_soap(cls, gateway: str, exchange_id: str, side: Side, message: soap.SoapMessage) -> ExchangeIds:
        party = message.represented_party
        party_parts = None if party is None else (party.party_class, party.party_code)
        return cls._of(gateway, exchange_id, side, MessageKind.SOAP, message.id, message, party_parts)

    @classmethod
    def of_rest(cls, gateway: str, exchange_id: str, side: Side, call: rest.RestRequest) -> ExchangeIds:
        return cls._of(
            gateway, exchange_id, side, MessageKind.REST, call.message_id, call, call.represented_party
        )

    @classmethod
    def _of(
        cls,
        gateway: str,
        exchange_id: str,
        side: Side,
        kind: MessageKind,
        message_id: str,
        header: soap.SoapMessage | rest.RestRequest,
        party: tuple[str | None, str] | None,
    ) -> ExchangeIds:
        """The ids a SOAP message or REST request carries; the represented party as `class/code`."""
        return cls(
            gateway,
            exchange_id,
            side,
            kind,
            message_id,
            header.client.to_text(),
            header.service.to_text(),
            header.user_id,
            header.issue,
            None if party is None else "/".join(p for p in party if p),
        )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def signed_record(
    ids: ExchangeIds,
    direction: Direction,
    payload: Payload,
    signature: MessageSignature,
    *,
    ocsp_response: bytes | None = None,
    fault: XRoadFault | None = None,
    served_from_cache: tuple[str, str] | None = None,
    prepared: tuple[bytes, str] | None = None,
) -> LogRecord:
    """The record of a message this gateway signed or received with a verified signature.

    `fault`: the message is a gateway's signed fault (or a service's), whose code and detail
    id the record's outcome shows. `served_from_cache`: (`hit` or `stale`, the original
    answer's record): the stored answer this gateway gave a client from its interface cache;
    the outcome says `cache.hit`/`cache.stale` and the detail names the original record.
    `prepared`: the message's manifest and proof (`asice.manifest_and_proof`), when the
    caller has them already (a copy served from the cache computes them once).

    The record keeps each signed part as the manifest lists it (docs/transport.md): the
    `message` part as the message (SOAP as received, REST the body alone) and a REST head
    (request line and headers passed on, or status and headers) as `rest_head`.
    """
    parts = signed_parts(payload)
    *head, message = parts  # (message,) for SOAP, (rest head, message) for REST
    manifest_bytes, proof_json = prepared or manifest_and_proof(payload, signature)
    record = _record(
        ids,
        direction,
        content_type=message.content_type,
        message=message.data,
        manifest_bytes=manifest_bytes,
        signed_root_xml=signature.signed_root_xml,
        proof_json=proof_json,
        ocsp_response=ocsp_response,
        rest_head=head[0].data if head else None,
        outcome=_outcome(fault, served_from_cache),
    )
    return record


def _outcome(fault: XRoadFault | None, served_from_cache: tuple[str, str] | None) -> tuple[str, str] | None:
    """The record's (outcome, detail) where it is not "ok": served from the cache, or a fault."""
    if served_from_cache is not None:
        served, original = served_from_cache
        return OUTCOME_CACHE_PREFIX + served, original
    return None if fault is None else (fault.code, fault.detail)


def fault_record(
    ids: ExchangeIds, direction: Direction, fault: XRoadFault, body: bytes, content_type: str
) -> LogRecord:
    """The record of a fault a gateway answered with (unsigned: faults travel as they are)."""
    record = _record(
        ids,
        direction,
        content_type=content_type,
        message=body,
        manifest_bytes=manifest(signed_parts(SoapPayload(content_type, body))),
        signed_root_xml=None,
        proof_json=None,
        ocsp_response=None,
        outcome=(fault.code, fault.detail),
    )
    return record


def _record(
    ids: ExchangeIds,
    direction: Direction,
    *,
    content_type: str,
    message: bytes,
    manifest_bytes: bytes,
    signed_root_xml: bytes | None,
    proof_json: str | None,
    ocsp_response: bytes | None,
    rest_head: bytes | None = None,
    outcome: tuple[str, str | None] | None = None,
) -> LogRecord:
    """A new record of a message of the exchange `ids` names: logged now, every part it holds
    logged; `outcome` (code, detail) where it is not "ok". Built in one go: a dataclass
    `replace` per field costs more than the rest of the record."""
    return LogRecord(
        gateway=ids.gateway,
        exchange_id=ids.exchange_id,
        side=ids.side,
        direction=direction,
        kind=ids.kind,
        logged_at=_now(),
        message_id=ids.message_id,
        client=ids.client,
        service=ids.service,
        user_id=ids.user_id,
        issue=ids.issue,
        represented_party=ids.represented_party,
        content_type=content_type,
        message=message,
        manifest=manifest_bytes,
        signed_root_xml=signed_root_xml,
        proof_json=proof_json,
        ocsp_response=ocsp_response,
        rest_head=rest_head,
        outcome=OUTCOME_OK if outcome is None else outcome[0],
        fault_detail=None if outcome is None else outcome[1],
        logged_parts=parts_held(direction, rest_head, message),
    )


class ExchangeLog:
    """The log steps of one exchange on one gateway, in the order the handler meets them.

    Knows the subsystem whose policy applies (the client's on the consumer side, the
    provider's on the provider side) once the message is parsed; logs nothing when the node
    runs without a message log. Carries the exchange's `watch` (proxy/watching.py) when the node
    has exchange observers: every step that has the journal reaches it here.
    """

    def __init__(
        self,
        messagelog: MessageLog | None,
        snapshot: ServerConfSnapshot,
        side: Side,
        watch: Watch | None = None,
    ) -> None:
        self._messagelog = messagelog
        self._snapshot = snapshot
        self._side = side
        self.watch = watch
        self.ids: ExchangeIds | None = None
        self._log_bodies = True
        self._stamp_now = False

    def identify(self, ids: ExchangeIds, policy_owner: ClientId) -> None:
        self.ids = ids
        if self.watch is not None:
            self.watch.identified(ids)
        subsystem = self._snapshot.subsystem(policy_owner)
        if subsystem is not None:
            self._log_bodies = subsystem.log_bodies
            self._stamp_now = subsystem.timestamp_immediately

    def check_ready(self) -> None:
        """Refuse the exchange up front when the log could not keep its promise."""
        if self._messagelog is not None:
            self._messagelog.check_disk(_LOGGING_FAILED[self._side])
            self._messagelog.check_timestamping(_TIMESTAMPER_FAILED[self._side])

    async def signed(
        self,
        direction: Direction,
        message: TransportMessage,
        *,
        ocsp_response: bytes | None = None,
        fault: XRoadFault | None = None,
        served_from_cache: tuple[str, str] | None = None,
        prepared: tuple[bytes, str] | None = None,
    ) -> str | None:
        """Log a signed message; `ocsp_response` is its signer's, as attached (docs/transport.md).

        `fault`: the message is a signed fault; its code becomes the record's outcome.
        `served_from_cache`: see :func:`signed_record`. Returns the record's reference
        (:meth:`reference`), or None when the node logs nothing.
        """
        watch = self.watch
        if watch is not None:
            if fault is not None:
                watch.failed(fault.code, fault.message)
            if served_from_cache is not None:
                watch.served(served_from_cache[0])
        if self._messagelog is None or self.ids is None:
            return None
        started = time.perf_counter()
        record = signed_record(
            self.ids,
            direction,
            message.payload,
            message.signature,
            ocsp_response=ocsp_response,
            fault=fault,
            served_from_cache=served_from_cache,
            prepared=prepared,
        )
        seq = await self._messagelog.log(
            record,
            log_body=self._log_bodies,
            stamp_immediately=self._stamp_now,
            fault_code=_LOGGING_FAILED[self._side],
        )
        if watch is not None:
            watch.add(Step.LOG, started)
        return self.reference(seq)

    def reference(self, seq: int) -> str:
        """How another record names one of this node's: `node:seq` in the gateway's log."""
        assert self._messagelog is not None
        return f"{self._messagelog.node}:{seq}"

    async def fault(self, direction: Direction, fault: XRoadFault, body: bytes, content_type: str) -> None:
        """Best effort: the fault goes to the client even if it cannot be logged (it carries no data)."""
        if self.watch is not None:
            self.watch.failed(fault.code, fault.message)
        if self._messagelog is None:
            return
        record = fault_record(self._ids_or_blank(), direction, fault, body, content_type)
        await self._log_fault(record, fault)

    async def _log_fault(self, record: LogRecord, fault: XRoadFault) -> None:
        assert self._messagelog is not None
        started = time.perf_counter()
        try:
            await self._messagelog.log(record, log_body=True)
        except XRoadFault:
            log.warning("fault %s [%s] could not be logged", fault.code, fault.detail)
        if self.watch is not None:
            self.watch.add(Step.LOG, started)

    async def signed_fault(
        self, direction: Direction, message: TransportMessage, fault: XRoadFault, ocsp_response: bytes | None
    ) -> None:
        """A fault this gateway signed, logged as sent; best effort like `fault`."""
        if self.watch is not None:
            self.watch.failed(fault.code, fault.message)
        if self._messagelog is None:
            return
        record = signed_record(
            self._ids_or_blank(),
            direction,
            message.payload,
            message.signature,
            ocsp_response=ocsp_response,
            fault=fault,
        )
        await self._log_fault(record, fault)

    def _ids_or_blank(self) -> ExchangeIds:
        """A fault before the message could be read has no identifiers of its own."""
        assert self._messagelog is not None
        return self.ids or ExchangeIds(
            self._messagelog.gateway, str(uuid.uuid4()), self._side, MessageKind.SOAP, "", "", ""
        )
