"""What the provider's replay check costs a request: claims per second, wall and CPU time.

Usage: .venv/bin/python bench/replay.py [--requests 4000] [--url postgresql://...]

Claims fresh keys through `gateway.proxy.replay.ReplayGuard` on the server configuration's
database (a migrated SQLite file in a temp dir by default, or the PostgreSQL at --url, in a
schema of its own that is dropped afterwards), one at a time (concurrency 1: every request pays
its own commit) and 32 at a time (the claims of concurrent requests share a transaction).
Prints µs of wall and of this process's CPU per request, and requests per commit.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import sqlalchemy as sa  # noqa: E402

from gateway.proxy.replay import ReplayGuard  # noqa: E402
from gateway.serverconf.db import create_engine, migrate  # noqa: E402
from gateway.serverconf.seen import SeenRequests  # noqa: E402


class Counting(SeenRequests):
    commits = 0

    def claim(self, keys: list[tuple[bytes, dt.datetime]]) -> set[bytes]:  # type: ignore[override]
        self.commits += 1
        return super().claim(keys)


async def run(url: str, requests: int, concurrency: int) -> tuple[float, float, float]:
    engine = create_engine(url)
    store = Counting(engine)
    guard = ReplayGuard(store)
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=6)
    semaphore = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with semaphore:
            await guard.admit(os.urandom(32), expires)

    try:
        await asyncio.gather(*(one() for _ in range(min(200, requests))))  # warm up
        store.commits = 0
        wall, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one() for _ in range(requests)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        guard.close()
        engine.dispose()
    return wall / requests * 1e6, cpu / requests * 1e6, requests / max(store.commits, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--url", default=None, help="a PostgreSQL URL (default: SQLite in a temp dir)")
    args = parser.parse_args()
    schema = None
    if args.url is None:
        url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='xgate-replay-')) / 'serverconf.db'}"
    else:
        schema = f"xgate_bench_{uuid.uuid4().hex[:12]}"
        admin = create_engine(args.url)
        with admin.begin() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        url = sa.make_url(args.url).update_query_dict({"options": f"-csearch_path={schema}"})
        url = url.render_as_string(hide_password=False)
    try:
        migrate(url)
        print(f"{'concurrency':>11} {'wall µs/req':>11} {'CPU µs/req':>11} {'req/commit':>11}")
        for concurrency in (1, 32):
            wall, cpu, per_commit = asyncio.run(run(url, args.requests, concurrency))
            print(f"{concurrency:>11} {wall:>11.0f} {cpu:>11.0f} {per_commit:>11.1f}")
    finally:
        if schema is not None:
            with admin.begin() as connection:
                connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
            admin.dispose()


if __name__ == "__main__":
    main()
