"""The shared record of signed requests already served (the replay check's storage).

One row per admitted request, keyed by its replay key (gateway.proxy.replay), kept until its
signature is too old to be accepted anyway. A batch of keys is claimed in one statement,
`INSERT ... ON CONFLICT DO NOTHING RETURNING` (PostgreSQL 9.5+, SQLite 3.35+): a key another
node (or an earlier batch) holds inserts nothing, so of two nodes sharing PostgreSQL that race
for one key exactly one wins; the other waits on the primary key until the winner commits,
then finds it taken.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from gateway.serverconf.db import begin_write, is_sqlite
from gateway.serverconf.tables import seen_requests


class SeenRequests:
    """Claims and purges replay keys in the server configuration's database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._insert = (sqlite.insert if is_sqlite(engine) else postgresql.insert)(seen_requests)

    def claim(self, keys: Sequence[tuple[bytes, datetime]]) -> set[bytes]:
        """Record `keys` (key, expiry) in one transaction; the keys that were new.

        A key repeated within `keys` is new at most once; the caller decides which waiter won.
        """
        rows = [{"digest": key, "expires_at": expires_at} for key, expires_at in dict(keys).items()]
        if not rows:
            return set()
        statement = self._insert.values(rows).on_conflict_do_nothing().returning(seen_requests.c.digest)
        with begin_write(self._engine) as connection:
            return {bytes(digest) for digest in connection.scalars(statement)}

    def purge(self, now: datetime) -> int:
        """Forget the keys whose requests are too old to be accepted again; how many went."""
        with begin_write(self._engine) as connection:
            return connection.execute(
                sa.delete(seen_requests).where(seen_requests.c.expires_at < now)
            ).rowcount
