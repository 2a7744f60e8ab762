"""How a node keeps its interface cache: the `[cache]` table of its TOML file, as a value.

It lives beside the cache rather than in gateway.config so that the cache's modules need not
import the node's configuration; gateway.config reads the table into this. The policies
themselves are registrations (server configuration database), not node settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

DEFAULT_MAINTENANCE_INTERVAL_SECONDS: Final = 60.0
"""How often a node evicts what no policy may serve, purges entries of clients no longer
registered, and adds its counters to the database: a minute keeps the store within its
limits without a background load worth measuring."""


@dataclass(frozen=True)
class CacheSettings:
    """Where and how this node keeps its interface cache."""

    database_url: str
    enabled: bool = True
    body_key_file: Path | None = None
    """AES-GCM keys for answers at rest, in the message log's key-file format
    (gateway.messagelog.service.load_body_keys); None keeps answers in clear."""
    maintenance_interval_seconds: float = DEFAULT_MAINTENANCE_INTERVAL_SECONDS
