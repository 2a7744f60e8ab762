"""Archiving and retention on by default, and the disk watermarks (issue 16, item 2).

The log is real (tests/logsamples.py: the proxy's own records, signed, stamped by `openssl ts`,
in SQLite files under tmp_path), archives are real files, and the node's own maintenance round
(`MessageLog.maintain`) decides when to archive. The one thing not real is how full the disk
is: a nearly full filesystem cannot be made here (no loop mounts), so the tests give the log a
free-space function (the `disk_usage` seam of gateway.messagelog.diskspace) that reports one.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import os
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from gateway import faults
from gateway.crypto.batchsigner import BatchSigner
from gateway.faults import XRoadFault
from gateway.messagelog import tables
from gateway.messagelog.archive import CHAIN_HEAD_FILE, verify_archive_chain
from gateway.messagelog.cli import cli
from gateway.messagelog.db import create_engine, is_sqlite, migrate
from gateway.messagelog.diskspace import (
    GIB,
    MIB,
    DiskUsage,
    DiskWatch,
    DiskWatermarks,
    Volume,
    Watermark,
)
from gateway.messagelog.record import Direction, LogRecord
from gateway.messagelog.service import MessageLog
from gateway.messagelog.settings import MessageLogSettings
from gateway.messagelog.store import ChainArchive, chain_states, log_size_bytes, mark_archived, purge
from gateway.messagelog.timestamping import BatchTimestamper
from gateway.messagelog.verify_db import verify_log
from tests.conftest import (
    KNOWN_PERSON,
    assert_soap_fault,
    empty_tables,
    get_person_request,
    migrated_url_fixture,
)
from tests.inprocess import Gateway, InProcessFederation
from tests.logsamples import GATEWAY, NODE, SampleLog, build_log, ids, signed, soap_request, soap_response
from tests.test_messagelog_store import GATEWAY as STORE_GATEWAY
from tests.test_messagelog_store import NODE as STORE_NODE
from tests.test_messagelog_store import append_all, make_record, make_trust, openssl_stamp, stamp_all

SOAP_HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
DISK = 100 * GIB


class FullerDisk:
    """The free-space seam: a 100 GiB filesystem per path prefix, as full as the test says."""

    def __init__(self, free: int = DISK // 2) -> None:
        self.default = free
        self.free: dict[Path, int] = {}
        self.reads = 0

    def __call__(self, path: Path) -> DiskUsage:
        self.reads += 1
        free = next((f for prefix, f in self.free.items() if path.is_relative_to(prefix)), self.default)
        return DiskUsage(DISK, DISK - free, free)


@pytest.fixture
def sample(tmp_path: Path) -> Iterator[SampleLog]:
    log = asyncio.run(build_log(tmp_path / "log"))
    yield log
    log.engine.dispose()


def node_log(
    sample: SampleLog, archive_dir: Path | None, disk: FullerDisk | None = None, **options: object
) -> MessageLog:
    settings = MessageLogSettings(sample.url, archive_dir=archive_dir, **options)  # type: ignore[arg-type]
    return MessageLog(
        settings,
        gateway=GATEWAY,
        node=NODE,
        globalconf=sample.globalconf,
        disk_usage=disk or FullerDisk(),
    )


async def log_exchanges(log: MessageLog, sample: SampleLog, count: int, prefix: str) -> None:
    """`count` SOAP exchanges, requests signed by the client's member and responses by the
    provider's, each side in one batch as concurrent messages are signed."""
    trust = sample.trust
    client = BatchSigner(trust.signer_key, trust.signer_cert)
    provider = BatchSigner(trust.provider_key, trust.provider_cert)
    exchanges = [ids(f"{prefix}-{i}", f"msg-{prefix}-{i}") for i in range(count)]
    try:
        requests = await signed(
            client,
            [(e, Direction.REQUEST, soap_request(e)) for e in exchanges],
            trust.ocsp(trust.signer_cert),
        )
        responses = await signed(
            provider,
            [(e, Direction.RESPONSE, soap_response(e)) for e in exchanges],
            trust.ocsp(trust.provider_cert),
        )
    finally:
        await client.aclose()
        await provider.aclose()
    records: list[LogRecord] = [r for pair in zip(requests, responses, strict=True) for r in pair]
    await asyncio.gather(*(log.log(record) for record in records))


async def stamp(sample: SampleLog) -> None:
    stamper = BatchTimestamper(
        sample.engine, gateway=GATEWAY, node=NODE, stamp=functools.partial(openssl_stamp, sample.trust)
    )
    await stamper.run_once()


def record_count(sample: SampleLog) -> int:
    with sample.engine.connect() as connection:
        return int(connection.scalar(sa.select(sa.func.count()).select_from(tables.records)) or 0)


def archived_message_ids(paths: list[Path]) -> set[str]:
    found: set[str] = set()
    for path in paths:
        with zipfile.ZipFile(path) as archive:
            found |= {
                line for line in archive.read("index.json").decode().split('"') if line.startswith("msg-")
            }
    return found


# --- archiving: on a schedule and when the log grows ----------------------------------------------


async def test_the_log_growing_past_its_size_archives_before_the_schedule(
    sample: SampleLog, tmp_path: Path
) -> None:
    archives = tmp_path / "archive"
    log = node_log(sample, archives, archive_every_bytes=64 * 1024, archive_interval_seconds=3600)
    try:
        assert await log.maintain() == [], "an hour has not passed and the log has not grown"
        await log_exchanges(log, sample, 60, "busy")
        await stamp(sample)

        written = await log.maintain()

        assert written, "the log grew past archive_every_bytes: archived at once"
        assert ChainArchive(sample.engine, GATEWAY, NODE).records_to_archive(10) == []
        assert {"msg-soap-1", "msg-busy-0", "msg-busy-59"} <= archived_message_ids(written)
        report = verify_archive_chain(
            sorted(archives.glob("xgate-archive-*.zip")), trust=sample.container_trust
        )
        assert report.valid, report.problems
        assert record_count(sample) == 9 + 120, "retention (30 days by default) purged nothing yet"
        assert await log.maintain() == [], "the growth is counted again from the last round"
        archive: dict[str, object] = log.health()["archive"]  # type: ignore[assignment]
        assert (archive["dir"], archive["retention_days"], archive["warnings"]) == (str(archives), 30.0, [])
    finally:
        await log.close()


async def test_the_schedule_archives_without_growth(sample: SampleLog, tmp_path: Path) -> None:
    log = node_log(sample, tmp_path / "archive", archive_every_bytes=None, archive_interval_seconds=3600)
    try:
        assert await log.maintain() == []
        written = await log.maintain(now=time.time() + 3601)
        assert len(written) == 1 and "msg-soap-1" in archived_message_ids(written)
    finally:
        await log.close()


async def test_a_restarted_node_keeps_the_schedule_of_its_last_archive(
    sample: SampleLog, tmp_path: Path
) -> None:
    """A node restarted more often than the interval still archives: the schedule runs from the
    last archive written (its chain-head file), not from the start."""
    archives = tmp_path / "archive"
    first = node_log(sample, archives, archive_every_bytes=None)
    try:
        assert await first.archive_now()
    finally:
        await first.close()
    hour_ago = time.time() - 3601
    os.utime(archives / CHAIN_HEAD_FILE, (hour_ago, hour_ago))
    async with contextlib.AsyncExitStack() as stack:
        restarted = node_log(sample, archives, archive_every_bytes=None)
        stack.push_async_callback(restarted.close)
        await log_exchanges(restarted, sample, 1, "after-restart")
        await stamp(sample)
        written = await restarted.maintain()
        assert archived_message_ids(written) == {"msg-late-1", "msg-after-restart-0"}


async def test_a_failing_archive_round_is_a_health_warning_and_the_records_stay(
    sample: SampleLog, tmp_path: Path
) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the archive directory should be")
    log = node_log(sample, blocked, archive_interval_seconds=1)
    try:
        assert await log.maintain(now=time.time() + 2) == []
        warnings = log.health()["archive"]["warnings"]  # type: ignore[index]
        assert len(warnings) == 1 and warnings[0].startswith("archiving failed")
        assert ChainArchive(sample.engine, GATEWAY, NODE).records_to_archive(10), "nothing marked archived"
    finally:
        await log.close()


log_url = migrated_url_fixture("retention", "messagelog.db", migrate, "xgate_retention")


async def test_the_logs_size_grows_with_records_and_on_sqlite_shrinks_with_a_purge(
    log_url: str, tmp_path: Path
) -> None:
    """What the size trigger reads, on both backends: the log's tables, not the file's length."""
    engine = create_engine(log_url)
    try:
        empty = log_size_bytes(engine)
        seqs = await append_all(engine, [make_record(i) for i in range(300)])
        full = log_size_bytes(engine)
        assert full - empty > 300 * 1024 // 2, (empty, full)
        await stamp_all(engine, make_trust(tmp_path / "trust"))
        mark_archived(engine, gateway=STORE_GATEWAY, node=STORE_NODE, seqs=seqs, archive_name="a.zip")
        assert purge(engine, dt.datetime.now(dt.UTC) + dt.timedelta(days=1)) == 300
        if is_sqlite(engine):  # PostgreSQL returns the space only when VACUUM does
            assert log_size_bytes(engine) < full - 300 * 1024 // 2
    finally:
        with engine.begin() as connection:
            empty_tables(connection, tables.metadata)
        engine.dispose()


# --- retention ---------------------------------------------------------------------------------------


async def test_retention_purges_only_archived_records_and_the_chain_verifies_from_the_purge_point(
    sample: SampleLog, tmp_path: Path
) -> None:
    archives = tmp_path / "archive"
    log = node_log(sample, archives, retention_days=0)
    try:
        written = await log.archive_now()
    finally:
        await log.close()

    # Records 1-8 were stamped, so archived, so purged; record 9 was not stamped: it stays.
    assert record_count(sample) == 1
    with sample.engine.connect() as connection:
        (state,) = chain_states(connection)
    assert (state.purged_seq, state.head_seq) == (8, 9)
    assert verify_archive_chain(written, trust=sample.container_trust).valid
    report = verify_log(
        sample.engine, GATEWAY, NODE, trusted_cas=[sample.trust.ca], verify_token=sample.trust.verify_token()
    )
    assert report.ok and report.checked == 1, report
    result = CliRunner().invoke(
        cli, ["--database", sample.url, "--gateway", GATEWAY, "verify", *sample.trust_options()]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{GATEWAY} node {NODE}: valid (1 records"), result.stdout


async def test_within_retention_archived_records_stay_searchable(sample: SampleLog, tmp_path: Path) -> None:
    log = node_log(sample, tmp_path / "archive")  # retention_days: the default, 30
    try:
        assert await log.archive_now()
    finally:
        await log.close()
    assert record_count(sample) == 9
    assert ChainArchive(sample.engine, GATEWAY, NODE).records_to_archive(10) == []


# --- the disk watermarks -----------------------------------------------------------------------------


async def test_below_the_warning_watermark_an_alarm_once_and_a_health_warning_but_traffic_goes_on(
    sample: SampleLog, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    disk = FullerDisk()
    log = node_log(sample, tmp_path / "archive", disk)
    caplog.set_level(logging.WARNING, logger="gateway.messagelog.diskspace")
    try:
        assert log.health()["disk"]["warnings"] == []  # type: ignore[index]

        disk.default = 5 * GIB  # 5 % of the disk: below the 10 % warning, far above critical
        for _ in range(5):
            await log.maintain()
            log.check_disk()  # no refusal
        await log_exchanges(log, sample, 1, "warned")  # and the log still writes

        alarms = [r for r in caplog.records if "DISK ALARM (warning)" in r.getMessage()]
        assert len(alarms) == 2, "once per volume (log, archive) per crossing, not per check"
        health = log.health()["disk"]
        assert health["refusing"] is False  # type: ignore[index]
        assert len(health["warnings"]) == 2 and "below the warning watermark" in health["warnings"][0]  # type: ignore[index]
        assert health["volumes"]["log"]["level"] == "warning"  # type: ignore[index]

        disk.default = DISK // 2
        await log.maintain()
        assert log.health()["disk"]["warnings"] == []  # type: ignore[index]
        assert sum("disk alarm cleared" in r.getMessage() for r in caplog.records) == 2
        disk.default = 5 * GIB
        await log.maintain()
        assert sum("DISK ALARM (warning)" in r.getMessage() for r in caplog.records) == 4, "a new crossing"
    finally:
        await log.close()


async def test_below_the_critical_watermark_new_exchanges_are_refused_and_nothing_is_lost(
    sample: SampleLog, tmp_path: Path
) -> None:
    disk = FullerDisk()
    log = node_log(sample, tmp_path / "archive", disk)
    try:
        await log_exchanges(log, sample, 1, "before")
        disk.free[Path(sample.directory)] = 100 * MIB  # the database's filesystem: below 256 MiB
        await log.maintain()

        for code in (faults.LOGGING_FAILED, faults.SERVER_PROXY_LOGGING_FAILED):
            with pytest.raises(XRoadFault) as refused:
                log.check_disk(code)
            assert refused.value.code == code and "disk is full" in refused.value.message
        assert log.health()["disk"]["refusing"] is True  # type: ignore[index]
        # An exchange already under way still logs its answer into the space that is left.
        await log_exchanges(log, sample, 1, "under-way")
        assert record_count(sample) == 9 + 4

        disk.free.clear()  # space freed: traffic resumes by itself
        await log.maintain()
        log.check_disk()
    finally:
        await log.close()
    report = verify_log(sample.engine, GATEWAY, NODE, trusted_cas=[sample.trust.ca])
    assert report.ok and report.checked == 13, report


async def test_a_full_archive_disk_warns_but_never_refuses(sample: SampleLog, tmp_path: Path) -> None:
    disk = FullerDisk()
    archives = tmp_path / "archive"
    archives.mkdir()
    disk.free[archives] = 10 * MIB
    log = node_log(sample, archives, disk)
    try:
        await log.maintain()
        log.check_disk()
        health = log.health()["disk"]
        assert health["volumes"]["archive"]["level"] == "critical"  # type: ignore[index]
        assert health["volumes"]["log"]["level"] == "ok"  # type: ignore[index]
        assert health["refusing"] is False and len(health["warnings"]) == 1  # type: ignore[index]
    finally:
        await log.close()


def test_watermarks_cross_on_percent_or_bytes_whichever_comes_first() -> None:
    marks = DiskWatermarks(warning=Watermark(10, 2 * GIB), critical=Watermark(0, 256 * MIB))
    big, small = 10_000 * GIB, 10 * GIB
    assert marks.level(DiskUsage(big, 0, 900 * GIB)).name == "WARNING"  # 9 %, though 900 GiB free
    assert marks.level(DiskUsage(small, 0, 3 * GIB)).name == "OK"  # 30 % and over 2 GiB
    assert marks.level(DiskUsage(small, 0, GIB)).name == "WARNING"  # 10 %, but under 2 GiB
    assert marks.level(DiskUsage(small, 0, 200 * MIB)).name == "CRITICAL"
    with pytest.raises(ValueError, match="below the warning"):
        DiskWatermarks(warning=Watermark(5, GIB), critical=Watermark(10, 0))


def test_the_request_path_reads_the_disk_at_most_once_a_second() -> None:
    disk, now = FullerDisk(), [0.0]
    watch = DiskWatch([Volume("log", Path("/"), refuses=True)], usage=disk, clock=lambda: now[0])
    for _ in range(100):
        assert watch.refusal() is None
    now[0] = 1.5
    watch.refusal()
    assert disk.reads == 2


# --- through the gateways, in one process --------------------------------------------------------------


def fill_disk(gateway: Gateway, free: int) -> FullerDisk:
    """Give the running node's log the seam, reporting `free` bytes everywhere from now on
    (a new watch: the node's own reads the disk at most once a second)."""
    messagelog = gateway.runtime.messagelog
    assert messagelog is not None
    disk = FullerDisk(free)
    messagelog.disk = DiskWatch(messagelog.disk.volumes, messagelog.disk.watermarks, usage=disk)
    return disk


def log_size(gateway: Gateway) -> int:
    assert gateway.runtime.messagelog is not None
    with gateway.runtime.messagelog.engine.connect() as connection:
        return int(connection.scalar(sa.select(sa.func.count()).select_from(tables.records)) or 0)


async def test_a_gateway_whose_log_disk_is_full_refuses_with_logging_failed(
    local: InProcessFederation,
) -> None:
    gw_a, gw_b = local["gw-a"], local["gw-b"]
    request = get_person_request(KNOWN_PERSON)
    assert (await gw_a.post("/", request, SOAP_HEADERS)).status_code == 200

    fill_disk(gw_a, 5 * GIB)  # a warning: still served
    assert (await gw_a.post("/", request, SOAP_HEADERS)).status_code == 200
    health = gw_a.runtime.health()["messagelog"]
    assert health["disk"]["warnings"] and not health["disk"]["refusing"]  # type: ignore[index]

    fill_disk(gw_a, 100 * MIB)  # critical on the consumer: refused before anything is signed or sent
    provider_records = log_size(gw_b)
    assert_soap_fault(await gw_a.post("/", request, SOAP_HEADERS), faults.LOGGING_FAILED)
    assert log_size(gw_b) == provider_records, "the provider never saw it"

    fill_disk(gw_a, 5 * GIB)
    fill_disk(gw_b, 100 * MIB)  # critical on the provider: its own LoggingFailed
    assert_soap_fault(await gw_a.post("/", request, SOAP_HEADERS), faults.SERVER_PROXY_LOGGING_FAILED)

    fill_disk(gw_b, 50 * GIB)
    assert (await gw_a.post("/", request, SOAP_HEADERS)).status_code == 200
