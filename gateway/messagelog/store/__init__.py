"""The message log's storage: the group-committing writer, reads, search, archiving and purge.

The package's face. Modules: `writer` (group commit on the request path), `chain` (appending
to a chain under its row's lock; a chain's head), `queries` (reads and search), `retention`
(archiving and purge), `stored` (what reads return).
"""

from __future__ import annotations

from gateway.messagelog.store.chain import (
    DriverParameters,
    DriverStatement,
    chain_state,
    chain_states,
    lock_chain,
    predecessor_hash,
)
from gateway.messagelog.store.queries import (
    MAX_SEARCH_LIMIT,
    get_exchange,
    get_record,
    read_chain,
    read_chain_page,
    search,
)
from gateway.messagelog.store.retention import (
    DEFAULT_PURGE_BATCH,
    ChainArchive,
    log_size_bytes,
    mark_archived,
    purge,
    records_to_archive,
)
from gateway.messagelog.store.writer import (
    DEFAULT_MAX_BATCH,
    DEFAULT_WINDOW_SECONDS,
    LoggingFailed,
    MessageLogWriter,
)
from gateway.messagelog.stored import (
    ChainPage,
    ChainState,
    RecordRow,
    StoredRecord,
    StoredTimestamp,
    UnreadableRecord,
)

__all__ = [
    "DEFAULT_MAX_BATCH",
    "DEFAULT_PURGE_BATCH",
    "DEFAULT_WINDOW_SECONDS",
    "MAX_SEARCH_LIMIT",
    "ChainArchive",
    "ChainPage",
    "ChainState",
    "DriverParameters",
    "DriverStatement",
    "LoggingFailed",
    "MessageLogWriter",
    "RecordRow",
    "StoredRecord",
    "StoredTimestamp",
    "UnreadableRecord",
    "chain_state",
    "chain_states",
    "get_exchange",
    "get_record",
    "lock_chain",
    "log_size_bytes",
    "mark_archived",
    "predecessor_hash",
    "purge",
    "read_chain",
    "read_chain_page",
    "records_to_archive",
    "search",
]
