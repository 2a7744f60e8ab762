"""The message log as one gateway node uses it: write, timestamp, archive, purge, watch its disk,
and refuse traffic when the log cannot keep its promises (issue "The message log").

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
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from cryptography import x509

from gateway import faults
from gateway.crypto.timestamp import TimestampError, verify_timestamp_token
from gateway.faults import XRoadFault
from gateway.globalconf import GlobalConf
from gateway.messagelog.archive import CHAIN_HEAD_FILE, Archiver
from gateway.messagelog.crypto_at_rest import BodyCipher
from gateway.messagelog.db import create_engine, is_sqlite, migrate
from gateway.messagelog.diskspace import DiskWatch, FreeSpace, Volume, system_disk_usage
from gateway.messagelog.headkeeper import HeadKeeper, Witness
from gateway.messagelog.logsig import RecordSigner
from gateway.messagelog.record import LogRecord
from gateway.messagelog.settings import MessageLogSettings
from gateway.messagelog.store import ChainArchive, LoggingFailed, MessageLogWriter, log_size_bytes, purge
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
        disk_usage: FreeSpace = system_disk_usage,
        clock_check: ClockCheck | None = None,
    ) -> None:
        """`record_signer` holds the gateway owner's signing key: it signs each commit's records
        and the log heads (gateway.messagelog.logsig, .heads); without it neither is signed.
        `disk_usage` reads a filesystem's free space (the seam tests fill the disk through);
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
        self.disk = DiskWatch(self._volumes(), settings.disk_watermarks, usage=disk_usage)
        self._archive_lock = asyncio.Lock()
        self.archive_last_at: float = self._last_archive_time()  # wall clock, for the schedule
        self.archive_last_error: str | None = None
        self._size_at_last_archive: int | None = None

    def _volumes(self) -> list[Volume]:
        """Where the log writes: a local SQLite file's directory (which can refuse traffic when
        full) and the archive directory (which can only warn). A PostgreSQL server's disk is
        its own to watch; there a failing write still refuses the exchange."""
        volumes = []
        database = self.engine.url.database
        if is_sqlite(self.engine) and database and database != ":memory:":
            volumes.append(Volume("log", Path(database).resolve().parent, refuses=True))
        if self.settings.archive_dir is not None:
            volumes.append(Volume("archive", Path(self.settings.archive_dir), refuses=False))
        return volumes

    def _last_archive_time(self) -> float:
        """When the last archive round wrote something (its chain-head file), so that a node
        restarted more often than the interval still archives on schedule; else now."""
        if self.settings.archive_dir is not None:
            head = Path(self.settings.archive_dir) / CHAIN_HEAD_FILE
            with contextlib.suppress(OSError):
                return head.stat().st_mtime
        return time.time()

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
        self._tasks.append(asyncio.create_task(self._maintenance_loop()))

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

    def check_disk(self, fault_code: str = faults.LOGGING_FAILED) -> None:
        """Refuse new exchanges when the log's disk is below its critical watermark: its records
        could not be written whole. Below the warning watermark traffic goes on (an alarm and a
        health warning say so); an exchange already under way still logs its remaining records."""
        reason = self.disk.refusal()
        if reason is not None:
            raise XRoadFault(fault_code, reason)

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
            "disk": self.disk.health(),
            "archive": self._archive_health(),
        }

    def _archive_health(self) -> dict[str, object]:
        archive_dir = self.settings.archive_dir
        warnings = []
        if archive_dir is None:
            warnings.append("archiving is off: records are never archived or purged")
        if self.archive_last_error is not None:
            warnings.append(f"archiving failed: {self.archive_last_error}")
        return {
            "dir": str(archive_dir) if archive_dir is not None else None,
            "last_at": dt.datetime.fromtimestamp(self.archive_last_at, dt.UTC).isoformat(),
            "retention_days": self.settings.retention_days if archive_dir is not None else None,
            "warnings": warnings,
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

    async def _maintenance_loop(self) -> None:
        """Look at the disk (so an alarm is raised without traffic too) and archive when due."""
        while True:
            await asyncio.sleep(self.settings.maintenance_check_seconds)
            await self.maintain()

    async def maintain(self, now: float | None = None) -> list[Path]:
        """One round of the maintenance loop; the archives written, if it was time for some."""
        self.disk.refresh(force=True)
        if self.settings.archive_dir is None:
            return []
        try:
            if await self.archive_due(time.time() if now is None else now):
                return await self.archive_now()
        except Exception as exc:  # the loop must survive one bad round; records stay unarchived
            log.exception("archiving failed")
            self.archive_last_error = str(exc) or type(exc).__name__
        return []

    async def archive_due(self, now: float) -> bool:
        """On the schedule, or once the log has grown `archive_every_bytes` since the last round."""
        if now - self.archive_last_at >= self.settings.archive_interval_seconds:
            return True
        every = self.settings.archive_every_bytes
        if every is None:
            return False
        size = await asyncio.to_thread(log_size_bytes, self.engine)
        if self._size_at_last_archive is None:
            self._size_at_last_archive = size  # growth is counted from the first look
        return size - self._size_at_last_archive >= every

    async def archive_now(self) -> list[Path]:
        """Archive what is ready, then purge archived records past retention."""
        assert self.settings.archive_dir is not None
        archiver = Archiver(
            ChainArchive(self.engine, self.gateway, self.node, self.cipher),
            self.settings.archive_dir,
            hook=list(self.settings.archive_hook) if self.settings.archive_hook else None,
        )
        async with self._archive_lock:  # one round at a time: the loop's, or a caller's
            written: Sequence[Path] = await asyncio.to_thread(archiver.archive_pending)
            if self.settings.retention_days is not None:
                cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=self.settings.retention_days)
                await asyncio.to_thread(purge, self.engine, cutoff)
            self.archive_last_at, self.archive_last_error = time.time(), None
            if self.settings.archive_every_bytes is not None:
                self._size_at_last_archive = await asyncio.to_thread(log_size_bytes, self.engine)
        return list(written)


NODE_NAME_ENV: Final = "XGATE_NODE_NAME"
"""Names the node in its chains; nodes of one gateway sharing a database each need their own."""


def node_name() -> str:
    """This node's name in the chain: host name, unless XGATE_NODE_NAME sets one."""
    return os.environ.get(NODE_NAME_ENV) or os.uname().nodename
