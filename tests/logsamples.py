"""A real message log for the security officer's tests (tests/test_messagelog_officer.py, _cli.py).

Exchanges are logged the way the proxy logs them: payloads signed in one batch by the
gateway's BatchSigner (a member key certified by the development CA), turned into records by
gateway.proxy.records.signed_record/fault_record, appended by the group-committing writer, and
timestamped by `openssl ts -reply` (a TSA that is not our code).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from gateway.crypto.batchsigner import BatchSigner
from gateway.faults import XRoadFault
from gateway.globalconf import GlobalConf, TimestampingAuthority, TrustedCa
from gateway.ids import ClientId, ServiceId
from gateway.messagelog.archive import ContainerTrust
from gateway.messagelog.db import create_engine, migrate
from gateway.messagelog.logsig import RecordSigner
from gateway.messagelog.record import Direction, LogRecord, MessageKind, Side
from gateway.messagelog.store import MessageLogWriter
from gateway.messagelog.timestamping import BatchTimestamper
from gateway.protocol import soap
from gateway.protocol.transport import (
    Payload,
    RestRequestPayload,
    RestResponsePayload,
    SoapPayload,
    manifest_digest,
    signed_parts,
)
from gateway.proxy.records import ExchangeIds, fault_record, signed_record
from tests.test_messagelog_store import Trust, make_trust, openssl_stamp

GATEWAY = "DEV/GOV/1001/gw-a"
NODE = "node-1"
CLIENT = "DEV/GOV/1001/benefits"
OTHER_CLIENT = "DEV/GOV/1001/tax-office"
SERVICE = "DEV/COM/2222/crm/getPerson/v1"
REST_SERVICE = "DEV/COM/2222/crm/persons"
USER = "EE38001010000"


def soap_request(exchange: ExchangeIds) -> SoapPayload:
    """A SOAP request whose X-Road header names the exchange's client, service and message id."""
    body = etree.fromstring(b"<getPerson><id>38001010000</id></getPerson>")
    message = soap.build_request(
        ClientId.from_text(exchange.client),
        ServiceId.from_text(exchange.service),
        body,
        message_id=exchange.message_id,
        user_id=exchange.user_id,
    )
    return SoapPayload("text/xml; charset=utf-8", message)


def soap_response(exchange: ExchangeIds) -> SoapPayload:
    """The provider's answer to :func:`soap_request`, echoing its header."""
    request = soap.parse_request(soap_request(exchange).body, "text/xml")
    body = etree.fromstring(b"<getPersonResponse><name>Mari Maasikas</name></getPersonResponse>")
    return SoapPayload("text/xml; charset=utf-8", soap.build_response(request, body))


REST_REQUEST = RestRequestPayload(
    "POST",
    "/r1/DEV/COM/2222/crm/persons",
    "source=register",
    (
        ("Content-Type", "application/json"),
        ("X-Road-UserId", USER),
        ("Accept", "application/json"),
        ("X-Road-Client", CLIENT),
        ("X-Road-Id", "msg-rest-1"),
    ),
    b'{"name": "Mari Maasikas"}',
)
REST_RESPONSE = RestResponsePayload(
    201,
    (
        ("Content-Type", "application/json"),
        ("X-Road-Client", CLIENT),
        ("X-Road-Service", REST_SERVICE),
        ("X-Road-Id", "msg-rest-1"),
    ),
    b'{"id": 42}',
)
FAULT_BODY = b'{"type": "Server.ServerProxy.AccessDenied", "message": "no", "detail": "f-1"}'


@dataclass(frozen=True)
class SampleLog:
    """The log's database, who may verify it, and what it holds."""

    url: str
    engine: sa.Engine
    trust: Trust
    directory: Path

    @property
    def container_trust(self) -> ContainerTrust:
        return ContainerTrust(trusted_cas=[self.trust.ca], trusted_tsa_certs=[self.trust.tsa_cert])

    @property
    def ca_pem(self) -> Path:
        return self.trust.directory / "ca.pem"

    @property
    def tsa_pem(self) -> Path:
        return self.trust.directory / "tsa.pem"

    def trust_options(self) -> list[str]:
        return ["--ca", str(self.ca_pem), "--tsa-cert", str(self.tsa_pem)]

    def globalconf(self) -> GlobalConf:
        """A global configuration listing the log's CA and TSA, as the federation's would."""
        now = dt.datetime.now(dt.UTC)
        return GlobalConf(
            instance="DEV",
            version=1,
            generated_at=now,
            expires_at=now + dt.timedelta(days=1),
            trusted_cas=(TrustedCa("test CA", _pem(self.trust.ca)),),
            timestamping_authorities=(
                TimestampingAuthority("test TSA", "http://127.0.0.1:9/", _pem(self.trust.tsa_cert)),
            ),
        )


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def ids(
    exchange_id: str, message_id: str, kind: MessageKind = MessageKind.SOAP, **changes: str
) -> ExchangeIds:
    values = {"client": CLIENT, "service": REST_SERVICE if kind is MessageKind.REST else SERVICE}
    values.update(changes)
    return ExchangeIds(
        GATEWAY, exchange_id, Side.CONSUMER, kind, message_id, values["client"], values["service"], USER
    )


async def signed(
    signer: BatchSigner,
    items: list[tuple[ExchangeIds, Direction, Payload]],
    ocsp: bytes | None = None,
    served_from_cache: tuple[str, str] | None = None,
) -> list[LogRecord]:
    """Records of messages signed together, as concurrent requests are: one batch, one root.

    `ocsp` is the signer's OCSP response, attached to each record as the proxy attaches it;
    `served_from_cache` as records.signed_record takes it."""
    signatures = await asyncio.gather(
        *(signer.sign(manifest_digest(signed_parts(payload))) for _, _, payload in items)
    )
    return [
        signed_record(
            exchange, direction, payload, signature, ocsp_response=ocsp, served_from_cache=served_from_cache
        )
        for (exchange, direction, payload), signature in zip(items, signatures, strict=True)
    ]


async def build_log(directory: Path, trust: Trust | None = None) -> SampleLog:
    """Four stamped exchanges and one unstamped request, chained in the order they were logged:

    1-4: the requests of soap-1 (SOAP), rest-1 (REST, its head logged), soap-2 (another client,
    its body not logged) and fault-1; 5-7: the responses of soap-1, rest-1 and soap-2; 8: the
    fault the gateway answered fault-1 with; 9: late-1's request, logged after the timestamp.
    """
    directory.mkdir(parents=True, exist_ok=True)
    trust = trust or make_trust(directory / "trust")
    url = f"sqlite:///{directory / 'messagelog.db'}"
    migrate(url)
    engine = create_engine(url)
    signer = BatchSigner(trust.signer_key, trust.signer_cert)
    provider = BatchSigner(trust.provider_key, trust.provider_cert)
    client_ocsp, provider_ocsp = trust.ocsp(trust.signer_cert), trust.ocsp(trust.provider_cert)
    # The owner's key signs the records too, as the node's writer does (messagelog.logsig).
    writer = MessageLogWriter(
        engine, gateway=GATEWAY, node=NODE, record_signer=RecordSigner(trust.signer_key, trust.signer_cert)
    )
    try:
        soap = ids("soap-1", "msg-soap-1")
        rest = ids("rest-1", "msg-rest-1", MessageKind.REST)
        other = ids("soap-2", "msg-soap-2", client=OTHER_CLIENT)
        fault = ids("fault-1", "msg-fault-1")
        first = await signed(
            signer,
            [
                (soap, Direction.REQUEST, soap_request(soap)),
                (rest, Direction.REQUEST, REST_REQUEST),
                (other, Direction.REQUEST, soap_request(other)),
                (fault, Direction.REQUEST, soap_request(fault)),
            ],
            client_ocsp,
        )
        first[2] = first[2].without_body()
        second = await signed(
            provider,
            [
                (soap, Direction.RESPONSE, soap_response(soap)),
                (rest, Direction.RESPONSE, REST_RESPONSE),
                (other, Direction.RESPONSE, soap_response(other)),
            ],
            provider_ocsp,
        )
        denied = XRoadFault("Server.ServerProxy.AccessDenied", "no access right", "f-1")
        refused = fault_record(fault, Direction.RESPONSE, denied, FAULT_BODY, "application/json")
        for record in (*first, *second, refused):  # in the order they were made, as a gateway logs
            await writer.append(record)
        stamper = BatchTimestamper(
            engine, gateway=GATEWAY, node=NODE, stamp=functools.partial(openssl_stamp, trust)
        )
        assert await stamper.run_once() == 8
        late_ids = ids("late-1", "msg-late-1")
        (late,) = await signed(signer, [(late_ids, Direction.REQUEST, soap_request(late_ids))], client_ocsp)
        await writer.append(late)
    finally:
        await writer.aclose()
        await signer.aclose()
        await provider.aclose()
    return SampleLog(url, engine, trust, directory)


async def with_cache_answers(log: SampleLog, directory: Path) -> SampleLog:
    """A copy of `log` in `directory` with two more exchanges, answered from the interface cache:
    10-11: cache-1's request and its `cache.stale` answer; 12-13: cache-2's and its `cache.hit`
    one (the provider's signed answer, its detail naming soap-1's response, record 5)."""
    directory.mkdir(parents=True, exist_ok=True)
    # SQLite's backup, not a file copy: the log's latest pages may still be in its WAL file.
    with (
        contextlib.closing(sqlite3.connect(log.url.removeprefix("sqlite:///"))) as source,
        contextlib.closing(sqlite3.connect(directory / "messagelog.db")) as copy,
    ):
        source.backup(copy)
    url = f"sqlite:///{directory / 'messagelog.db'}"
    engine = create_engine(url)
    signer = BatchSigner(log.trust.signer_key, log.trust.signer_cert)
    provider = BatchSigner(log.trust.provider_key, log.trust.provider_cert)
    writer = MessageLogWriter(
        engine,
        gateway=GATEWAY,
        node=NODE,
        record_signer=RecordSigner(log.trust.signer_key, log.trust.signer_cert),
    )
    try:
        for name, served in (("cache-1", "stale"), ("cache-2", "hit")):
            exchange = ids(name, f"msg-{name}")
            (request,) = await signed(signer, [(exchange, Direction.REQUEST, soap_request(exchange))])
            (answer,) = await signed(
                provider,
                [(exchange, Direction.RESPONSE, soap_response(exchange))],
                served_from_cache=(served, f"{NODE}:5"),
            )
            await writer.append(request)
            await writer.append(answer)
    finally:
        await writer.aclose()
        await signer.aclose()
        await provider.aclose()
    return SampleLog(url, engine, log.trust, directory)
