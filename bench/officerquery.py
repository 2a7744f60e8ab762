"""How fast the security officer's searches and exports answer over a large log (issue 16, build
4: with 1 million records, each search filter under 200 ms at p95; exporting 1,000 records as
containers under 10 s).

Run: `.venv/bin/python bench/officerquery.py [--records 1000000] [--url postgresql://...]`
(default: SQLite in a temporary directory; with --url, PostgreSQL in a schema of its own,
dropped after).

The log is filled in two parts. First, genuine exchanges through the log's own writer (record
signatures, batch-signed messages, the provider's OCSP response, timestamps: bench/logsize.py's
records), enough to export. Then the rest of the million as rows inserted directly in bulk
(not through the network or the writer): copies of those stored rows with their own chain
positions, exchange and message ids, clients (20), services (50), users (10,000), outcomes
(1% faults) and times spread over the past 30 days, as a month of a busy gateway's traffic.
They are filler for the searches: their hashes do not chain, and nothing verifies them.

Then it times, through the officer's own read path (gateway.messagelog.inspector.LogInspector:
the store's search and the summaries the API returns), each search filter with varied values,
and prints p50/p95 in ms; and exports the genuine records matching a query, 1,000 at a time, as
ASiC-E containers (every container built and its evidence checked as the API's export does).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa

from bench.logsize import CLIENT, GATEWAY, Federation, database, fill
from gateway.messagelog.db import create_engine, migrate
from gateway.messagelog.inspector import LogInspector
from gateway.messagelog.officer import SearchQuery
from gateway.messagelog.store import DriverStatement
from gateway.messagelog.tables import records

CLIENTS: Final = [f"DEV/GOV/{2000 + i}/system-{i}" for i in range(20)]
SERVICES: Final = [f"DEV/GOV/{3000 + i % 25}/registry-{i}/query{i}/v1" for i in range(50)]
USERS: Final = 10_000
FAULTS: Final = (
    "server.serverproxy.service_failed",
    "server.clientproxy.network_error",
    "client.bad_request",
)
DAYS: Final = 30
CHUNK: Final = 10_000  # rows per bulk insert transaction
SEARCHES: Final = 30  # timed searches per filter, with varied values
EXPORT: Final = 1_000  # records per export: the API's page
TARGET_P95_MS: Final = 200
TARGET_EXPORT_SECONDS: Final = 10
NOW: Final = dt.datetime.now(dt.UTC)


def genuine(url: str, exchanges: int) -> None:
    """Exchanges logged as a gateway logs them (bench/logsize.py), timestamped: what gets exported."""
    asyncio.run(fill(url, Federation(), exchanges, signing_batch=4, stamp_every=1_400))


def filler_rows(templates: list[dict[str, Any]], count: int, seed: int = 16) -> Iterator[dict[str, Any]]:
    """`count` rows copied from stored records, each with its own ids, parties, outcome and time."""
    rng = random.Random(seed)
    step = dt.timedelta(days=DAYS) / max(count, 1)
    start = NOW - dt.timedelta(days=DAYS, hours=1)
    for i in range(count):
        template = templates[i % len(templates)]
        digest = hashlib.sha256(i.to_bytes(8, "big")).digest()
        fault = rng.random() < 0.01
        yield {
            **template,
            "node": "filler",
            "seq": i + 1,
            "prev_hash": digest,
            "record_hash": hashlib.sha256(digest).digest(),
            "exchange_id": f"filler-exchange-{i // 2}",
            "message_id": f"filler-message-{i // 2}",
            "client": rng.choice(CLIENTS) if rng.random() < 0.95 else CLIENT.to_text(),
            "service": rng.choice(SERVICES),
            "user_id": f"EE{rng.randrange(USERS):011d}" if rng.random() < 0.9 else None,
            "logged_at": start + i * step,
            "outcome": rng.choice(FAULTS) if fault else "ok",
            "fault_detail": "filler" if fault else None,
            "timestamp_id": None,
            "timestamp_proof": None,
        }


def bulk_fill(url: str, total: int) -> float:
    """Insert `total` filler rows in transactions of CHUNK straight through the driver (the log
    writer's compiled statement, gateway.messagelog.store.DriverStatement), then ANALYZE (and on
    PostgreSQL VACUUM: `settle`); returns the seconds. On SQLite without fsync per commit: a bulk
    load, not a gateway's commits."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            stored = connection.execute(sa.select(records).order_by(records.c.seq)).mappings().all()
        templates = [{k: v for k, v in row.items() if k != "id"} for row in stored]
        columns = list(templates[0])
        insert = DriverStatement(records.insert(), engine.dialect, columns)
        began = time.perf_counter()
        rows = filler_rows(templates, total)
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            if engine.dialect.name == "sqlite":
                cursor.execute("PRAGMA synchronous=OFF")
                cursor.execute("PRAGMA cache_size=-262144")  # 256 MB: twelve indexes take random keys
            while True:
                chunk = [row for _, row in zip(range(CHUNK), rows, strict=False)]
                if not chunk:
                    break
                insert.executemany(cursor, chunk)
                raw.commit()
            if engine.dialect.name == "sqlite":
                cursor.execute("ANALYZE")
                raw.commit()
        finally:
            raw.close()
        if engine.dialect.name == "postgresql":
            settle(url)
        return time.perf_counter() - began
    finally:
        engine.dispose()


def settle(url: str) -> None:
    """PostgreSQL: what autovacuum does to a live log's table, now, after the bulk load: the
    planner's statistics, and every row marked visible to all, so that the timed searches do not
    pay for setting the million rows' hint bits on their first read (a first search after the bare
    bulk load wrote ~800 pages back; a live gateway's autovacuum has done that long before)."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("VACUUM (ANALYZE) messagelog_records")
    finally:
        engine.dispose()


def searches(rng: random.Random) -> dict[str, Callable[[], SearchQuery]]:
    """Each filter the officer has (officer.SEARCH_FILTERS), alone and in the usual pairs."""

    def window() -> tuple[dt.datetime, dt.datetime]:
        since = NOW - dt.timedelta(days=rng.uniform(0, DAYS))
        return since, since + dt.timedelta(hours=1)

    def since_until() -> SearchQuery:
        since, until = window()
        return SearchQuery(since=since, until=until)

    def client_in_window() -> SearchQuery:
        since, until = window()
        return SearchQuery(client=rng.choice(CLIENTS), since=since, until=until)

    return {
        "newest (no filter)": lambda: SearchQuery(),
        "message_id": lambda: SearchQuery(message_id=f"filler-message-{rng.randrange(400_000)}"),
        "client": lambda: SearchQuery(client=rng.choice(CLIENTS)),
        "service": lambda: SearchQuery(service=rng.choice(SERVICES)),
        "user_id": lambda: SearchQuery(user_id=f"EE{rng.randrange(USERS):011d}"),
        "since+until (1 h)": since_until,
        "outcome (a fault)": lambda: SearchQuery(outcome=rng.choice(FAULTS)),
        "outcome ok": lambda: SearchQuery(outcome="ok"),
        "client+service": lambda: SearchQuery(client=rng.choice(CLIENTS), service=rng.choice(SERVICES)),
        "client+since+until": client_in_window,
        "user_id, page 3": lambda: SearchQuery(user_id=f"EE{rng.randrange(USERS):011d}", offset=100),
    }


def time_searches(inspector: LogInspector, rounds: int = SEARCHES) -> dict[str, tuple[float, float]]:
    """p50 and p95 in ms per filter, over `rounds` searches with varied values."""
    rng = random.Random(4)
    figures = {}
    for name, make in searches(rng).items():
        inspector.search(make())  # warm: the first query also loads the pages it needs
        times = []
        for _ in range(rounds):
            query = make()
            began = time.perf_counter()
            inspector.search(query)
            times.append((time.perf_counter() - began) * 1000)
        times.sort()
        figures[name] = (statistics.median(times), times[min(len(times) - 1, round(0.95 * len(times)) - 1)])
    return figures


def time_export(inspector: LogInspector, count: int) -> tuple[float, int, int]:
    """Seconds to export `count` records of the genuine client as containers; containers, failures."""
    began = time.perf_counter()
    containers, failures, _ = inspector.export(query=SearchQuery(client=CLIENT.to_text(), limit=count))
    return time.perf_counter() - began, len(containers), len(failures)


def run(url: str | None, total: int, export: int, rounds: int = SEARCHES) -> dict[str, Any]:
    """Fill a log with `total` records and time the officer's searches and one export."""
    with database(url) as scoped:
        migrate(scoped)
        genuine_exchanges = max(export // 2 + 50, 60)
        began = time.perf_counter()
        genuine(scoped, genuine_exchanges)
        written = time.perf_counter() - began
        filler = max(total - 2 * genuine_exchanges, 0)
        filled = bulk_fill(scoped, filler)
        engine = create_engine(scoped)
        try:
            inspector = LogInspector(engine, gateway=GATEWAY)
            figures = time_searches(inspector, rounds)
            export_seconds, containers, failures = time_export(inspector, export)
        finally:
            engine.dispose()
    return {
        "records": 2 * genuine_exchanges + filler,
        "genuine_seconds": written,
        "filler": filler,
        "filler_seconds": filled,
        "searches": figures,
        "export_seconds": export_seconds,
        "containers": containers,
        "failures": failures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--url", default=None, help="a PostgreSQL URL (default: SQLite in a temp dir)")
    parser.add_argument("--export", type=int, default=EXPORT, help="records per export (at most 1,000)")
    args = parser.parse_args()
    backend = "SQLite" if args.url is None else "PostgreSQL"
    result = run(args.url, args.records, args.export)
    print(
        f"{backend}: {result['records']:,} records ({result['filler']:,} bulk-inserted in "
        f"{result['filler_seconds']:.0f} s, {result['filler'] / max(result['filler_seconds'], 1e-9):,.0f}/s)"
    )
    print(f"  {'search':<22} {'p50 ms':>8} {'p95 ms':>8}   (target p95 < {TARGET_P95_MS} ms)")
    for name, (p50, p95) in result["searches"].items():
        mark = "" if p95 < TARGET_P95_MS else "  over target"
        print(f"  {name:<22} {p50:>8.1f} {p95:>8.1f}{mark}")
    print(
        f"  export: {result['containers']:,} containers ({result['failures']} failures) in "
        f"{result['export_seconds']:.2f} s (target < {TARGET_EXPORT_SECONDS} s)"
    )


if __name__ == "__main__":
    main()
