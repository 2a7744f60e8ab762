"""The message log as one gateway node uses it: write, timestamp, archive, and refuse traffic
when the log cannot keep its promises (issue "The message log").

The proxy calls :meth:`MessageLog.log` for every message it signs, receives or answers with a
fault, and answers its client only after that returns: a record that cannot be written ends
the exchange with `Server.ClientProxy.LoggingFailed` (or the provider's equivalent).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from cryptography import x509

from gateway import faults
from gateway.crypto.timestamp import TimestampError, verify_timestamp_token
from gateway.faults import XRoadFault
from gateway.globalconf import GlobalConf
from gateway.messagelog.crypto_at_rest import BodyCipher
from gateway.messagelog.db import create_engine, migrate
from gateway.messagelog.headkeeper import HeadKeeper, Witness
from gateway.messagelog.logsig import RecordSigner
from gateway.messagelog.record import LogRecord
from gateway.messagelog.settings import MessageLogSettings
from gateway.messagelog.store import ChainArchive, LoggingFailed, MessageLogWriter, purge
from gateway.messagelog.timestamping import (
    MAX_RETRY_DELAY_SECONDS,
    NO_AUTHORITY,
    BatchTimestamper,
    TimestampingFailed,
)
from gateway.outbound import OutboundError, Transport
from gateway.outbound.clockcheck import ClockCheck
from gateway.outbound.failover import Failover
from gateway.outbound.interface import post_for
from gateway.outbound.network import service_transport
from gateway.outbound.tsa import request_timestamp

log = logging.getLogger(__name__)

# One TSA round trip; the timestamper tries the next TSA after this.
TSA_TIMEOUT_SECONDS: Final = 10.0
# One POST of a head to the registry; a missed head is sent again with the next.
WITNESS_TIMEOUT_SECONDS: Final = 10.0
WITNESS_ANSWER_BYTES: Final = 4096  # {"gateway", "node", "seq"}
# While stamping fails the timestamper backs off, but never beyond this share of the failure
# allowance: once traffic is refused, every second a returned TSA goes unasked is refused traffic.
RETRY_SHARE_OF_FAILURE_ALLOWANCE: Final = 0.1


def load_body_keys(path: Path) -> tuple[dict[str, bytes], str]:
    """A key file: JSON `{"current": ID, "keys": {ID: base64 of 32 bytes}}`, mode 0600.

    Rotation: add a new id, make it current; old ids stay so old bodies stay readable.
    """
    if path.stat().st_mode & 0o077:
        raise ValueError(f"{path} must be readable by its owner only (chmod 600)")
    document = json.loads(path.read_text(encoding="utf-8"))
    keys = {key_id: base64.b64decode(value) for key_id, value in document["keys"].items()}
    return keys, str(document["current"])


class MessageLog:
    """One node's log: a writer, a batch timestamper over the federation's TSAs, an archiver."""

    def __init__(
        self,
        settings: MessageLogSettings,
        *,
        gateway: str,
        node: str,
        globalconf: Callable[[], GlobalConf | None],
        record_signer: RecordSigner | None = None,
        audit_head: Callable[[], bytes | None] | None = None,
        clock_check: ClockCheck | None = None,
    ) -> None:
        """`record_signer` holds the gateway owner's signing key: it signs each commit's records
        and the log heads (gateway.messagelog.logsig, .heads); without it neither is signed.
        `clock_check` hears each TSA's genTime (gateway.outbound.clockcheck)."""
        self.settings = settings
        self.clock_check = clock_check if clock_check is not None else ClockCheck()
        self.tsa_failover = Failover()
        """The TSAs in the configuration's order, one that failed asked after the others for a while."""
        self.gateway = gateway
        self.node = node
        self._globalconf = globalconf
        migrate(settings.database_url)
        self.engine = create_engine(settings.database_url)
        cipher = None
        if settings.body_key_file is not None:
            cipher = BodyCipher(*load_body_keys(settings.body_key_file))
        self.cipher = cipher
        self.writer = MessageLogWriter(
            self.engine,
            gateway=gateway,
            node=node,
            cipher=cipher,
            window_seconds=settings.window_seconds,
            record_signer=record_signer,
        )
        self._record_signer = record_signer
        self._audit_head = audit_head
        self.heads: HeadKeeper | None = None
        self.timestamper = BatchTimestamper(
            self.engine,
            gateway=gateway,
            node=node,
            stamp=self._stamp,
            interval_seconds=settings.timestamp_interval_seconds,
            has_authority=self._has_authority,
            max_retry_delay_seconds=min(
                MAX_RETRY_DELAY_SECONDS,
                settings.max_timestamp_failure_seconds * RETRY_SHARE_OF_FAILURE_ALLOWANCE,
            ),
        )
        self._tsa: Transport | None = None
        self._owns_tsa = False
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, tsa: Transport | None = None, witness: Witness | None = None) -> None:
        """`tsa` reaches the timestamping authorities and the registry (the node's trust-service
        transport), else its own; `witness` sends a signed head to the witness, by default a POST
        to the registry's /heads when `settings.witness_url` is set."""
        self._tsa, self._owns_tsa = (tsa, False) if tsa is not None else (service_transport(), True)
        self.timestamper.start()
        if self._record_signer is not None:
            self.heads = HeadKeeper(
                self.engine,
                gateway=self.gateway,
                node=self.node,
                signer=self._record_signer.root_signer,
                head_file=self.settings.head_file,
                interval_seconds=self.settings.head_interval_seconds,
                stamp=self._stamp_head,
                witness=(witness or self._post_head) if self.settings.witness else None,
                audit_head=self._audit_head,
            )
            self.heads.start()
        if self.settings.archive_dir is not None:
            self._tasks.append(asyncio.create_task(self._archive_loop()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.writer.aclose()
        await self.timestamper.aclose()
        if self.heads is not None:
            try:
                await self.heads.aclose()  # the shutdown head, after the last record
            except Exception:
                log.exception("the shutdown log head could not be written")
        if self._tsa is not None and self._owns_tsa:
            await self._tsa.aclose()
        self.engine.dispose()

    def check_timestamping(self, fault_code: str = faults.TIMESTAMPER_FAILED) -> None:
        """Refuse new exchanges once timestamping has failed for longer than allowed."""
        now = dt.datetime.now(dt.UTC)
        if self.timestamper.is_overdue(now, self.settings.max_timestamp_failure_seconds):
            raise XRoadFault(
                fault_code,
                f"timestamping has failed since {self.timestamper.failing_since}: "
                f"{self.timestamper.last_error}",
            )

    async def log(
        self,
        record: LogRecord,
        *,
        log_body: bool = True,
        stamp_immediately: bool = False,
        fault_code: str = faults.LOGGING_FAILED,
    ) -> int:
        """Write `record` durably (bodies per the subsystem's policy); XRoadFault if it cannot be."""
        try:
            seq = await self.writer.append(record if log_body else record.without_body())
            if stamp_immediately:
                await self.timestamper.stamp_now(seq)
        except (LoggingFailed, TimestampingFailed, OSError) as exc:
            raise XRoadFault(fault_code, f"the message could not be logged: {exc}") from exc
        return seq

    def health(self) -> dict[str, object]:
        return {
            "timestamping_failing_since": (
                self.timestamper.failing_since.isoformat() if self.timestamper.failing_since else None
            ),
            "timestamping_last_error": self.timestamper.last_error,
            "commits": self.writer.commits,
            "records_signed": self._record_signer is not None,
            "heads_last_error": self.heads.last_error if self.heads is not None else None,
            "tsa_failing": self.tsa_failover.failures(),
        }

    # --- timestamping over the federation's TSAs, in order ----------------------------------

    def _has_authority(self) -> bool:
        conf = self._globalconf()
        return conf is not None and bool(conf.timestamping_authorities)

    async def _post_head(self, line: str) -> None:
        """The head to the registry's witness endpoint (gateway.central.distribution)."""
        if self.settings.witness_url is None:
            return
        assert self._tsa is not None
        await post_for(
            self._tsa,
            self.settings.witness_url.rstrip("/") + "/heads",
            line.encode("utf-8"),
            content_type="application/json",
            answer_type="application/json",
            timeout=WITNESS_TIMEOUT_SECONDS,
            max_bytes=WITNESS_ANSWER_BYTES,
        )

    async def _stamp_head(self, digest: bytes) -> bytes:
        if not self._has_authority():
            raise TimestampingFailed(NO_AUTHORITY)
        return await self._stamp(digest)

    async def _stamp(self, digest: bytes) -> bytes:
        conf = self._globalconf()
        if conf is None or not conf.timestamping_authorities:
            raise TimestampingFailed(NO_AUTHORITY)
        assert self._tsa is not None
        problems = []
        ca_certs = conf.trusted_ca_certs()
        by_url = {tsa.url: tsa for tsa in conf.timestamping_authorities}
        for url in self.tsa_failover.order(list(by_url)):
            tsa = by_url[url]
            try:
                token = await request_timestamp(self._tsa, tsa.url, digest, TSA_TIMEOUT_SECONDS)
                received = dt.datetime.now(dt.UTC)
                tsa_cert = x509.load_pem_x509_certificate(tsa.certificate.encode("ascii"))
                gen_time = verify_timestamp_token(token, digest, [tsa_cert], ca_certs)
            except (TimestampError, OutboundError, OSError, ValueError) as exc:
                self.tsa_failover.failed(url, f"{tsa.name}: {exc}")
                problems.append(f"{tsa.name}: {exc}")
                continue
            self.tsa_failover.succeeded(url)
            self.clock_check.observe(f"TSA {tsa.name}", gen_time, received, two_sided=True)
            return token
        raise TimestampingFailed("; ".join(problems))

    # --- archiving and retention ------------------------------------------------------------

    async def _archive_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.archive_interval_seconds)
            try:
                await self.archive_now()
            except Exception:  # the loop must survive one bad round; records stay unarchived
                log.exception("archiving failed")

    async def archive_now(self) -> list[Path]:
        """Archive what is ready, then purge archived records past retention."""
        from gateway.messagelog.archive import Archiver

        assert self.settings.archive_dir is not None
        archiver = Archiver(
            ChainArchive(self.engine, self.gateway, self.node, self.cipher),
            self.settings.archive_dir,
            hook=list(self.settings.archive_hook) if self.settings.archive_hook else None,
        )
        written: Sequence[Path] = await asyncio.to_thread(archiver.archive_pending)
        if self.settings.retention_days is not None:
            cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=self.settings.retention_days)
            await asyncio.to_thread(purge, self.engine, cutoff)
        return list(written)


def node_name() -> str:
    """This node's name in the chain: host name, unless XGATE_NODE_NAME sets one."""
    return os.environ.get("XGATE_NODE_NAME") or os.uname().nodename
