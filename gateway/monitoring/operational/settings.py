"""How a node keeps its operational monitoring records: the `[monitoring]` table, as a value.

Beside the records' code rather than in gateway.config, so that the monitoring modules need not
import the node's configuration (the pattern of gateway.cache.settings).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DEFAULT_RETENTION_DAYS: Final = 7
"""As X-Road's op-monitor daemon keeps records (`keep-records-for-days`)."""

DEFAULT_QUEUE_SIZE: Final = 20_000
"""Records waiting for the writer before new ones are dropped (and counted): seconds of traffic
at thousands of exchanges a second, a few MB of memory."""

DEFAULT_PURGE_INTERVAL_SECONDS: Final = 3600.0

DEFAULT_FLUSH_INTERVAL_SECONDS: Final = 0.5
"""How often the writer's thread takes what queued: records reach the database within it."""


@dataclass(frozen=True)
class MonitoringSettings:
    database_url: str
    enabled: bool = True
    retention_days: float = DEFAULT_RETENTION_DAYS
    queue_size: int = DEFAULT_QUEUE_SIZE
    purge_interval_seconds: float = DEFAULT_PURGE_INTERVAL_SECONDS
    flush_interval_seconds: float = DEFAULT_FLUSH_INTERVAL_SECONDS
