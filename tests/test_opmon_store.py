"""Operational monitoring's store and writer on SQLite and PostgreSQL (XGATE_TEST_PG_DSN).

Records in, pages and filters out, per-service statistics over a window, retention; the writer
queues on the event loop and writes from its thread, drops (and counts) beyond its queue, and
writes everything queued when it closes.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata

from gateway.db import create_engine
from gateway.monitoring.exchange import ExchangeRecord, Role
from gateway.monitoring.operational import tables
from gateway.monitoring.operational.db import ALEMBIC_VERSION_TABLE, migrate
from gateway.monitoring.operational.query import Outcome, RecordQuery, StatsQuery, record_json, stats_json
from gateway.monitoring.operational.service import OperationalMonitor
from gateway.monitoring.operational.settings import MonitoringSettings
from gateway.monitoring.operational.store import OpMonitorStore
from tests.conftest import empty_tables, migrated_url_fixture, own_tables_context

migrated_url = migrated_url_fixture("opmon", "opmonitor.sqlite", migrate, "xgate_opmon")

CLIENT = "DEV/GOV/1001/benefits-office"
OTHER_CLIENT = "DEV/GOV/1003/benefits"
SERVICE = "DEV/GOV/1002/population/getPerson/v1"
OTHER_SERVICE = "DEV/GOV/1003/benefits/benefits"
T0 = 1_800_000_000.0


def record(at: float, **changes: object) -> ExchangeRecord:
    values: dict[str, object] = {
        "role": Role.PRODUCER,
        "exchange_id": f"x-{at}",
        "protocol": "soap",
        "request_in": at,
        "response_out": at + 0.1,
        "steps": {"parse": 0.001, "backend": 0.05},
        "client": CLIENT,
        "service": SERVICE,
        "message_id": f"m-{at}",
        "request_size": 500,
        "response_size": 1500,
        "status": 200,
        "succeeded": True,
    }
    values.update(changes)
    return ExchangeRecord(**values)  # type: ignore[arg-type]


@pytest.fixture
def store(migrated_url: str) -> Iterator[OpMonitorStore]:
    store = OpMonitorStore.from_url(migrated_url)
    with store.engine.begin() as connection:
        empty_tables(connection, tables.metadata)
    yield store
    store.close()


def test_the_migration_builds_exactly_the_tables_module(migrated_url: str) -> None:
    engine = create_engine(migrated_url)
    try:
        with engine.connect() as connection:
            context = own_tables_context(connection, ALEMBIC_VERSION_TABLE, tables.metadata)
            assert compare_metadata(context, tables.metadata) == []
            assert context.get_current_revision() == "0001"
    finally:
        engine.dispose()


def test_records_come_back_as_written_newest_first_in_pages(store: OpMonitorStore) -> None:
    written = [record(T0 + i, user_id="EE123" if i == 0 else None) for i in range(5)]
    store.insert(written, "node-1")

    page, next_offset = store.search(RecordQuery(limit=2))
    assert [found.record for found in page] == written[4:2:-1] and next_offset == 2
    page, next_offset = store.search(RecordQuery(limit=2, offset=4))
    assert [found.record for found in page] == [written[0]] and next_offset is None
    assert page[0].node == "node-1" and page[0].record.user_id == "EE123"
    assert page[0].record.steps == {"parse": 0.001, "backend": 0.05}
    oldest, _ = store.search(RecordQuery(limit=5, oldest_first=True))
    assert [found.record for found in oldest] == written
    shown = record_json(page[0])
    assert shown["duration_ms"] == 100.0 and shown["steps_ms"] == {"parse": 1.0, "backend": 50.0}
    assert shown["request_in"] == "2027-01-15T08:00:00.000+00:00"


def test_filters_by_time_range_identifiers_role_and_outcome(store: OpMonitorStore) -> None:
    store.insert(
        [
            record(T0, role=Role.CLIENT),
            record(T0 + 10, client=OTHER_CLIENT),
            record(T0 + 20, service=OTHER_SERVICE, protocol="rest", rest_method="GET", rest_path="/x/*"),
            record(T0 + 30, succeeded=False, fault_code="Server.ServerProxy.AccessDenied", status=500),
            record(T0 + 40, served_from_cache="stale"),
        ],
        "node-1",
    )

    def times(query: RecordQuery) -> list[float]:
        return sorted(found.record.request_in - T0 for found in store.search(query)[0])

    assert times(RecordQuery(since=T0 + 10, until=T0 + 30)) == [10, 20]
    assert times(RecordQuery(client=OTHER_CLIENT)) == [10]
    assert times(RecordQuery(own_client=CLIENT, since=T0 + 5)) == [20, 30, 40]
    assert times(RecordQuery(service=OTHER_SERVICE)) == [20]
    assert times(RecordQuery(role=Role.CLIENT)) == [0]
    assert times(RecordQuery(outcome=Outcome.FAILED)) == [30]
    assert times(RecordQuery(outcome=Outcome.SUCCEEDED)) == [0, 10, 20, 40]
    assert times(RecordQuery(outcome=Outcome.CACHED)) == [40]
    assert times(RecordQuery(fault_code="Server.ServerProxy.AccessDenied")) == [30]
    assert times(RecordQuery(message_id=f"m-{T0 + 20}")) == [20]
    assert store.count(RecordQuery(since=T0 + 10)) == 4
    with pytest.raises(ValueError, match="before"):
        RecordQuery(since=T0, until=T0)


def test_statistics_per_service_over_the_window(store: OpMonitorStore) -> None:
    store.insert(
        [
            record(T0 - 4000),  # before the window
            record(T0 - 100, response_out=T0 - 99.9, response_size=1000, request_size=100),
            record(T0 - 50, response_out=T0 - 49.7, response_size=3000, request_size=300),
            record(T0 - 40, succeeded=False, fault_code="Server.ServerProxy.ServiceFailed.Timeout"),
            record(T0 - 30, service=OTHER_SERVICE, role=Role.CLIENT),
        ],
        "node-1",
    )

    stats = {(s.service, s.role): s for s in store.stats(StatsQuery(now=T0, window_seconds=3600))}

    person = stats[(SERVICE, Role.PRODUCER)]
    assert (person.successes, person.failures) == (2, 1)
    assert person.last_success == T0 - 50 and person.last_failure == T0 - 40
    assert person.duration_min == pytest.approx(0.1) and person.duration_max == pytest.approx(0.3)
    assert person.duration_avg == pytest.approx(0.2)
    assert (person.response_size_min, person.response_size_max) == (1000, 3000)
    assert person.response_size_avg == pytest.approx(2000)
    assert (person.request_size_min, person.request_size_max) == (100, 300)
    other = stats[(OTHER_SERVICE, Role.CLIENT)]
    assert (other.successes, other.failures, other.last_failure) == (1, 0, None)
    assert stats_json(person)["duration_ms"] == {"min": 100.0, "avg": 200.0, "max": 300.0}
    assert len(store.stats(StatsQuery(now=T0, window_seconds=45))) == 2
    only = store.stats(StatsQuery(now=T0, window_seconds=3600, service=SERVICE, role=Role.PRODUCER))
    assert len(only) == 1 and only[0].failures == 1


def test_purge_removes_what_is_older_than_the_cutoff_in_chunks(
    store: OpMonitorStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.monitoring.operational.store.PURGE_CHUNK", 3)
    store.insert([record(T0 + i) for i in range(10)], "node-1")

    assert store.purge(T0 + 7) == 7
    assert [found.record.request_in - T0 for found in store.search(RecordQuery(oldest_first=True))[0]] == [
        7,
        8,
        9,
    ]


def settings(url: str, **changes: object) -> MonitoringSettings:
    return dataclasses.replace(MonitoringSettings(url), **changes)  # type: ignore[arg-type]


async def test_the_writer_writes_from_its_thread_and_everything_at_close(migrated_url: str) -> None:
    monitor = OperationalMonitor(
        OpMonitorStore.from_url(migrated_url), settings(migrated_url, flush_interval_seconds=0.05), "n1"
    )
    with monitor.store.engine.begin() as connection:
        empty_tables(connection, tables.metadata)
    monitor.start()
    for i in range(10):
        monitor.exchange_done(record(T0 + i))
    for _ in range(200):
        if monitor.written == 10:
            break
        await asyncio.sleep(0.01)
    assert monitor.written == 10 and monitor.health()["queued"] == 0

    for i in range(2500):  # more than a batch, queued right before the close
        monitor.exchange_done(record(T0 + 100 + i))
    await monitor.close()
    assert monitor.written == 2510 and monitor.dropped == 0
    monitor.exchange_done(record(T0 + 5000))  # after the close: counted, not kept
    assert monitor.dropped == 1
    check = OpMonitorStore.from_url(migrated_url)
    assert check.count(RecordQuery()) == 2510
    check.close()


async def test_a_full_queue_drops_and_counts_instead_of_waiting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'opmonitor.sqlite'}"
    migrate(url)
    monitor = OperationalMonitor(OpMonitorStore.from_url(url), settings(url, queue_size=3), "n1")
    for i in range(5):  # the thread is not started: nothing leaves the queue
        monitor.exchange_done(record(T0 + i))
    assert monitor.dropped == 2 and monitor.health()["queued"] == 3
    assert "dropped 1 record(s) so far: the queue is full" in caplog.text
    await monitor.close()  # without a thread, close writes what is queued itself
    assert monitor.written == 3


async def test_retention_purges_records_older_than_the_configured_days(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'opmonitor.sqlite'}"
    migrate(url)
    monitor = OperationalMonitor(OpMonitorStore.from_url(url), settings(url, retention_days=2), "n1")
    day = 86400.0
    monitor.store.insert([record(T0 - 3 * day), record(T0 - 1.9 * day), record(T0)], "n1")

    assert await monitor.purge(T0) == 1
    assert monitor.store.count(RecordQuery()) == 2 and monitor.health()["last_purge"] == T0
    await monitor.close()
