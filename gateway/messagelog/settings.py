"""How a node keeps its message log: the `[messagelog]` table of its TOML file, as a value.

It lives beside the log rather than in gateway.config so that the log's modules need not
import the node's configuration; gateway.config reads the table into this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from gateway.messagelog.diskspace import DiskWatermarks
from gateway.messagelog.heads import DEFAULT_HEAD_INTERVAL_SECONDS
from gateway.messagelog.store import DEFAULT_WINDOW_SECONDS
from gateway.messagelog.timestamping import DEFAULT_INTERVAL_SECONDS

# How long timestamping may keep failing before new requests are refused (X-Road's default
# for "timestamp records within" is 14400 s; a gateway that promises timestamped logs should
# say so sooner).
DEFAULT_MAX_TIMESTAMP_FAILURE_SECONDS: Final = 600.0
# Archives are written hourly: small enough to ship, few enough to list.
DEFAULT_ARCHIVE_INTERVAL_SECONDS: Final = 3600.0
# ...and as soon as the log has grown this much since the last round, so a busy gateway's
# unarchived backlog (what no archive holds yet, and retention cannot purge) stays small: at
# the log's bytes per exchange (docs/resilience.md) some 20,000 exchanges, minutes at 100/s.
DEFAULT_ARCHIVE_EVERY_BYTES: Final = 256 * 1024 * 1024
# Archived records stay searchable in the database this long, then only the archives hold them.
# X-Road's default (message-log keep-records-for) is 30 days too: officers' queries span a
# month of recent traffic, older evidence is read from archives (docs/resilience.md).
DEFAULT_RETENTION_DAYS: Final = 30.0
# How often the node looks at its disk and at the log's size between archive rounds.
DEFAULT_MAINTENANCE_CHECK_SECONDS: Final = 30.0
ARCHIVE_DIR_NAME: Final = "archive"
"""The archive directory's default name, under the node's data directory."""


@dataclass(frozen=True)
class MessageLogSettings:
    """Where and how this node keeps its message log."""

    database_url: str
    enabled: bool = True
    # Group commit: the writer commits everything that arrived while its previous commit ran,
    # so no extra wait is needed; a positive window trades latency for fewer transactions, and
    # is waited only while appends overlap (store.DEFAULT_WINDOW_SECONDS says what was measured).
    window_seconds: float = DEFAULT_WINDOW_SECONDS
    timestamp_interval_seconds: float = DEFAULT_INTERVAL_SECONDS  # one RFC 3161 request per batch
    max_timestamp_failure_seconds: float = DEFAULT_MAX_TIMESTAMP_FAILURE_SECONDS
    body_key_file: Path | None = None  # AES-GCM keys for bodies at rest (service.load_body_keys)
    # Archiving and retention: None switches archiving off, and with it purging (only archived
    # records are ever purged). The node's file defaults it to data_dir/archive (gateway.config).
    archive_dir: Path | None = None
    archive_interval_seconds: float = DEFAULT_ARCHIVE_INTERVAL_SECONDS
    archive_every_bytes: int | None = DEFAULT_ARCHIVE_EVERY_BYTES  # None: on the schedule only
    retention_days: float | None = DEFAULT_RETENTION_DAYS  # purge archived records older than this
    archive_hook: tuple[str, ...] | None = None  # command run with each finished archive's path
    # Signed log heads (gateway.messagelog.heads): how often, and the file outside the database
    # they are appended to (None: the database and the witness only).
    head_interval_seconds: float = DEFAULT_HEAD_INTERVAL_SECONDS
    head_file: Path | None = None
    witness: bool = True  # send each head to the central registry
    witness_url: str | None = None  # the registry's distribution URL (POST /heads)
    # Free disk space of the log database's filesystem and the archive directory's
    # (gateway.messagelog.diskspace): warn below one watermark, refuse new exchanges below the other.
    disk_watermarks: DiskWatermarks = field(default_factory=DiskWatermarks)
    maintenance_check_seconds: float = DEFAULT_MAINTENANCE_CHECK_SECONDS
