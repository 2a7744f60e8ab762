"""The shared record of signed requests already served (the replay check's storage).

One row per admitted request, keyed by its replay key (gateway.proxy.replay), kept until its
signature is too old to be accepted anyway. A batch of keys is claimed in one statement,
`INSERT ... ON CONFLICT DO NOTHING RETURNING` (PostgreSQL 9.5+, SQLite 3.35+): a key another
node (or an earlier batch) holds inserts nothing, so of two nodes sharing PostgreSQL that race
for one key exactly one wins; the other waits on the primary key until the winner commits,
then finds it taken.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from gateway.serverconf.db import is_sqlite
from gateway.serverconf.tables import seen_requests


class SeenRequests:
    """Claims and purges replay keys in the server configuration's database.

    Called from one thread at a time (gateway.proxy.replay's own), which keeps one connection.
    A claim is committed without waiting for the disk: `synchronous_commit = off` on PostgreSQL
    (for this connection only), `synchronous = NORMAL` on SQLite's WAL (for this connection
    only). A key is still unique the moment it commits, for every node; what a crash of the
    database server (not of a node) can lose is the last fraction of a second of claims, which
    reopens those requests to a replay until their window closes (docs/security.md). The cost
    of a durable commit per lone request (~0.2-0.5 ms here) is what this saves.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sqlite = is_sqlite(engine)
        insert = sqlite.insert if self._sqlite else postgresql.insert
        # Compiled once: executemany batches the rows into one INSERT (SQLAlchemy's
        # "insertmanyvalues"), and RETURNING names the rows that were inserted.
        self._insert = insert(seen_requests).on_conflict_do_nothing().returning(seen_requests.c.digest)
        self._connection: Connection | None = None

    def claim(self, keys: Sequence[tuple[bytes, datetime]]) -> set[bytes]:
        """Record `keys` (key, expiry) in one transaction; the keys that were new.

        A key repeated within `keys` is new at most once; the caller decides which waiter won.
        """
        rows = [{"digest": key, "expires_at": expires_at} for key, expires_at in dict(keys).items()]
        if not rows:
            return set()
        with self._transaction() as connection:
            return {bytes(digest) for digest in connection.scalars(self._insert, rows)}

    def purge(self, now: datetime) -> int:
        """Forget the keys whose requests are too old to be accepted again; how many went."""
        with self._transaction() as connection:
            return connection.execute(
                sa.delete(seen_requests).where(seen_requests.c.expires_at < now)
            ).rowcount

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        if self._connection is None:
            connection = self._engine.connect()
            driver = connection.connection.driver_connection
            assert driver is not None
            # This connection's own setting, outside any transaction (both drivers autocommit here).
            if self._sqlite:
                driver.execute("PRAGMA synchronous=NORMAL")
            else:
                connection.exec_driver_sql("SET synchronous_commit TO OFF")
                connection.commit()
            self._connection = connection
        try:
            with self._connection.begin():
                yield self._connection
        except Exception:
            self.close()  # a broken connection is not used again; the next claim opens another
            raise
