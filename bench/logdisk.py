"""Disk the message log takes per exchange, per gateway: the figure docs/resilience.md sizes disks by.

Usage: .venv/bin/python bench/logdisk.py [--exchanges 2000] [--concurrency 16] [--dir DIR]

Starts a development federation (gateway.dev.federation), sends bench/roundtrip.py's ~1 KB
SOAP getPerson through gw-a and gw-b, waits for the batch timestamp and the next signed head,
and prints for each gateway the log database's growth in bytes in use (store.log_size_bytes:
SQLite pages minus its free list, indexes included) divided by the exchanges, and the file's
growth (with its WAL) for comparison. Nothing is archived or purged during the run; after
it, gw-a's whole log is archived (gateway.messagelog.archive) and the archives' bytes per
exchange printed: what the archive directory needs until the archives are shipped away.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.roundtrip import SOAP_REQUEST  # noqa: E402
from gateway.config import MESSAGELOG_DATABASE_FILE  # noqa: E402
from gateway.dev import federation  # noqa: E402
from gateway.messagelog.archive import Archiver  # noqa: E402
from gateway.messagelog.db import create_engine  # noqa: E402
from gateway.messagelog.service import node_name  # noqa: E402
from gateway.messagelog.store import ChainArchive, log_size_bytes  # noqa: E402

GATEWAYS = ("gw-a", "gw-b")
WARM_EXCHANGES = 20
SETTLE_SECONDS = 12.0
"""Long enough for the federation's batch timestamp (5 s) and signed head (10 s) to land."""


def sizes(fed: Path) -> dict[str, tuple[int, int]]:
    """Per gateway: bytes in use in the log database, and the files' bytes (database and WAL)."""
    found = {}
    for name in GATEWAYS:
        path = fed / name / MESSAGELOG_DATABASE_FILE
        engine = create_engine(f"sqlite:///{path}")
        try:
            used = log_size_bytes(engine)
        finally:
            engine.dispose()
        files = sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())
        found[name] = (used, files)
    return found


def archive_bytes(fed: Path, gateway: str) -> tuple[int, int]:
    """Archive gw-a's whole log into a directory beside it: (records archived, archive bytes)."""
    engine = create_engine(f"sqlite:///{fed / 'gw-a' / MESSAGELOG_DATABASE_FILE}")
    directory = fed / "gw-a-archive"
    try:
        source = ChainArchive(engine, gateway, node_name())
        paths = Archiver(source, directory).archive_pending()
    finally:
        engine.dispose()
    with_records = 0
    for path in paths:
        with zipfile.ZipFile(path) as archive:
            with_records += len(archive.namelist()) - 1  # index.json
    return with_records, sum(path.stat().st_size for path in paths)


def send(url: str, count: int, concurrency: int) -> int:
    """`count` requests from `concurrency` threads, each on its own kept-alive session."""
    headers = {"Content-Type": "text/xml; charset=UTF-8"}

    def worker(share: int) -> int:
        ok = 0
        with requests.Session() as session:
            for _ in range(share):
                # A message id of its own: identical requests signed together are one to the
                # provider's replay guard (Server.ServerProxy.DuplicateMessage).
                body = SOAP_REQUEST.replace("bench-0001", f"bench-{uuid.uuid4()}").encode()
                answer = session.post(url, data=body, headers=headers, timeout=30)
                ok += answer.ok
                if not answer.ok:
                    print(f"failed: HTTP {answer.status_code} {answer.text[:300]}", file=sys.stderr)
        return ok

    shares = [count // concurrency + (i < count % concurrency) for i in range(concurrency)]
    with ThreadPoolExecutor(concurrency) as pool:
        return sum(pool.map(worker, shares))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exchanges", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--dir", type=Path, default=None, help="federation directory (default: a temp dir)")
    args = parser.parse_args()
    fed = (args.dir or Path(tempfile.mkdtemp(prefix="xgate-logdisk-"))) / "federation"
    description = federation.up(fed)
    try:
        url = next(gw for gw in description["gateways"] if gw["name"] == "gw-a")["internal_http_url"] + "/"
        send(url, WARM_EXCHANGES, 4)  # warm: connections, OCSP responses, the first blobs
        time.sleep(SETTLE_SECONDS)
        before = sizes(fed)
        ok = send(url, args.exchanges, args.concurrency)
        time.sleep(SETTLE_SECONDS)
        after = sizes(fed)
    finally:
        federation.down(fed)
    gateway = next(gw for gw in description["gateways"] if gw["name"] == "gw-a")["server_id"]
    archived, archived_bytes = archive_bytes(fed, gateway)
    print(f"{ok} of {args.exchanges} exchanges answered; ~{len(SOAP_REQUEST)} byte SOAP request")
    for name in GATEWAYS:
        used = (after[name][0] - before[name][0]) / ok
        files = (after[name][1] - before[name][1]) / ok
        print(f"{name}: {used:,.0f} bytes in use per exchange (database file and WAL: {files:,.0f})")
    # gw-a logs two records per exchange (its request and the answer); faults may add some.
    print(f"gw-a archives: {archived_bytes / (archived / 2):,.0f} bytes per exchange ({archived} records)")


if __name__ == "__main__":
    main()
