"""The operational monitoring records in their database: batched inserts, queries, statistics, purge.

Synchronous (SQLAlchemy Core): the writer's thread inserts, the management API and the metadata
service read in worker threads. SQLite or PostgreSQL (gateway.db engines).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.db import begin_write, create_engine
from gateway.monitoring.exchange import ExchangeRecord, Role
from gateway.monitoring.operational.query import (
    Outcome,
    RecordQuery,
    ServiceStats,
    StatsQuery,
    StoredRecord,
)
from gateway.monitoring.operational.tables import records

PURGE_CHUNK: Final = 5000
"""Rows deleted per transaction when purging: short transactions, so writers never wait long."""


def _row(record: ExchangeRecord, node: str) -> dict[str, Any]:
    return {
        "node": node,
        "role": record.role.value,
        "exchange_id": record.exchange_id,
        "protocol": record.protocol,
        "request_in": record.request_in,
        "response_out": record.response_out,
        "duration": record.duration,
        "steps": dict(record.steps),
        "client": record.client,
        "service": record.service,
        "message_id": record.message_id,
        "user_id": record.user_id,
        "rest_method": record.rest_method,
        "rest_path": record.rest_path,
        "request_size": record.request_size,
        "response_size": record.response_size,
        "request_attachments": record.request_attachments,
        "response_attachments": record.response_attachments,
        "status": record.status,
        "succeeded": record.succeeded,
        "fault_code": record.fault_code,
        "fault_string": record.fault_string,
        "peer": record.peer,
        "served_from_cache": record.served_from_cache,
    }


def _stored(row: sa.Row[Any]) -> StoredRecord:
    m = row._mapping
    record = ExchangeRecord(
        role=Role(m["role"]),
        exchange_id=m["exchange_id"],
        protocol=m["protocol"],
        request_in=m["request_in"],
        response_out=m["response_out"],
        steps=dict(m["steps"] or {}),
        client=m["client"],
        service=m["service"],
        message_id=m["message_id"],
        user_id=m["user_id"],
        rest_method=m["rest_method"],
        rest_path=m["rest_path"],
        request_size=m["request_size"],
        response_size=m["response_size"],
        request_attachments=m["request_attachments"],
        response_attachments=m["response_attachments"],
        status=m["status"],
        succeeded=bool(m["succeeded"]),
        fault_code=m["fault_code"],
        fault_string=m["fault_string"],
        peer=m["peer"],
        served_from_cache=m["served_from_cache"],
    )
    return StoredRecord(m["id"], m["node"], record)


class OpMonitorStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def from_url(cls, url: str) -> OpMonitorStore:
        return cls(create_engine(url))

    def close(self) -> None:
        self.engine.dispose()

    def insert(self, batch: Sequence[ExchangeRecord], node: str) -> None:
        """One transaction for the batch (one executemany)."""
        if not batch:
            return
        with begin_write(self.engine) as connection:
            connection.execute(records.insert(), [_row(record, node) for record in batch])

    def search(self, query: RecordQuery) -> tuple[list[StoredRecord], int | None]:
        """One page of records and the next page's offset (None on the last page)."""
        order: Iterable[sa.ColumnElement[Any]] = (
            (records.c.request_in.asc(), records.c.id.asc())
            if query.oldest_first
            else (records.c.request_in.desc(), records.c.id.desc())
        )
        statement = (
            sa.select(records)
            .where(*_conditions(query))
            .order_by(*order)
            .limit(query.limit + 1)
            .offset(query.offset)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(statement).all()
        more = len(rows) > query.limit
        found = [_stored(row) for row in rows[: query.limit]]
        return found, (query.offset + query.limit if more else None)

    def count(self, query: RecordQuery) -> int:
        statement = sa.select(sa.func.count()).select_from(records).where(*_conditions(query))
        with self.engine.connect() as connection:
            return int(connection.execute(statement).scalar_one())

    def stats(self, query: StatsQuery) -> list[ServiceStats]:
        """Per (service, role), the window's counts, last times, and successful exchanges' figures."""
        ok = records.c.succeeded.is_(True)

        def when_ok(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
            return sa.case((ok, column), else_=None)

        statement = (
            sa.select(
                records.c.service,
                records.c.role,
                sa.func.sum(sa.case((ok, 1), else_=0)).label("successes"),
                sa.func.sum(sa.case((ok, 0), else_=1)).label("failures"),
                sa.func.max(when_ok(records.c.request_in)).label("last_success"),
                sa.func.max(sa.case((ok, None), else_=records.c.request_in)).label("last_failure"),
                sa.func.min(when_ok(records.c.duration)),
                sa.func.avg(when_ok(records.c.duration)),
                sa.func.max(when_ok(records.c.duration)),
                sa.func.min(when_ok(records.c.request_size)),
                sa.func.avg(when_ok(records.c.request_size)),
                sa.func.max(when_ok(records.c.request_size)),
                sa.func.min(when_ok(records.c.response_size)),
                sa.func.avg(when_ok(records.c.response_size)),
                sa.func.max(when_ok(records.c.response_size)),
            )
            .where(
                records.c.request_in >= query.since,
                records.c.request_in <= query.now,
                records.c.service.is_not(None),
                *([records.c.service == query.service] if query.service is not None else []),
                *([records.c.role == query.role.value] if query.role is not None else []),
            )
            .group_by(records.c.service, records.c.role)
            .order_by(records.c.service, records.c.role)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(statement).all()
        return [
            ServiceStats(
                row[0],
                Role(row[1]),
                int(row[2]),
                int(row[3]),
                row[4],
                row[5],
                _float(row[6]),
                _float(row[7]),
                _float(row[8]),
                _int(row[9]),
                _float(row[10]),
                _int(row[11]),
                _int(row[12]),
                _float(row[13]),
                _int(row[14]),
            )
            for row in rows
        ]

    def purge(self, before: float) -> int:
        """Delete the records whose request came before `before` (unix seconds), in chunks."""
        removed = 0
        while True:
            ids = (
                sa.select(records.c.id)
                .where(records.c.request_in < before)
                .order_by(records.c.id)
                .limit(PURGE_CHUNK)
                .scalar_subquery()
            )
            with begin_write(self.engine) as connection:
                count = connection.execute(sa.delete(records).where(records.c.id.in_(ids))).rowcount
            removed += count
            if count < PURGE_CHUNK:
                return removed


def _conditions(query: RecordQuery) -> list[sa.ColumnElement[bool]]:
    c = records.c
    conditions: list[sa.ColumnElement[bool]] = []
    if query.since is not None:
        conditions.append(c.request_in >= query.since)
    if query.until is not None:
        conditions.append(c.request_in < query.until)
    if query.client is not None:
        conditions.append(c.client == query.client)
    if query.own_client is not None:
        conditions.append(c.client == query.own_client)
    if query.service is not None:
        conditions.append(c.service == query.service)
    if query.role is not None:
        conditions.append(c.role == query.role.value)
    if query.outcome is Outcome.SUCCEEDED:
        conditions.append(c.succeeded.is_(True))
    elif query.outcome is Outcome.FAILED:
        conditions.append(c.succeeded.is_(False))
    elif query.outcome is Outcome.CACHED:
        conditions.append(c.served_from_cache.is_not(None))
    if query.fault_code is not None:
        conditions.append(c.fault_code == query.fault_code)
    if query.message_id is not None:
        conditions.append(c.message_id == query.message_id)
    return conditions


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)
