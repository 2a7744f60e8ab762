"""How a node keeps its message log: the `[messagelog]` table of its TOML file, as a value.

It lives beside the log rather than in gateway.config so that the log's modules need not
import the node's configuration; gateway.config reads the table into this.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gateway.messagelog.heads import DEFAULT_HEAD_INTERVAL_SECONDS
from gateway.messagelog.store import DEFAULT_WINDOW_SECONDS
from gateway.messagelog.timestamping import DEFAULT_INTERVAL_SECONDS

# How long timestamping may keep failing before new requests are refused (X-Road's default
# for "timestamp records within" is 14400 s; a gateway that promises timestamped logs should
# say so sooner).
DEFAULT_MAX_TIMESTAMP_FAILURE_SECONDS: Final = 600.0
# Archives are written hourly: small enough to ship, few enough to list.
DEFAULT_ARCHIVE_INTERVAL_SECONDS: Final = 3600.0


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
    archive_dir: Path | None = None
    archive_interval_seconds: float = DEFAULT_ARCHIVE_INTERVAL_SECONDS
    retention_days: float | None = None  # purge archived records older than this
    archive_hook: tuple[str, ...] | None = None  # command run with each finished archive's path
    # Signed log heads (gateway.messagelog.heads): how often, and the file outside the database
    # they are appended to (None: the database and the witness only).
    head_interval_seconds: float = DEFAULT_HEAD_INTERVAL_SECONDS
    head_file: Path | None = None
    witness: bool = True  # send each head to the central registry
    witness_url: str | None = None  # the registry's distribution URL (POST /heads)
