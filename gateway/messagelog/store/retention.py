"""Archiving and retention: which records go to the next archive, marking them archived,
purging them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gateway.messagelog.crypto_at_rest import BodyCipher
from gateway.messagelog.db import begin_snapshot_read, begin_write, is_sqlite
from gateway.messagelog.store.chain import chain_state, lock_chain
from gateway.messagelog.store.queries import _chunks, _load
from gateway.messagelog.stored import StoredRecord
from gateway.messagelog.tables import blobs, chains, records, timestamps

DEFAULT_PURGE_BATCH: Final = 10_000
"""Records deleted per transaction: on SQLite the log's writer waits for that lock, so a purge
holds it for a fraction of a second at a time, not for the whole backlog at once."""


_SIZED_TABLES: Final = (records, blobs, timestamps)
"""What grows with traffic; chains and heads stay small."""
_PG_RELATION_SIZE: Final = sa.text("SELECT pg_total_relation_size(CAST(:table AS regclass))")


def log_size_bytes(engine: Engine) -> int:
    """Bytes the log's data occupies in its database, for the archiver's size trigger.

    SQLite: the pages in use (the file's pages minus its free list), so space freed by a purge
    counts as free again although the file keeps its size. PostgreSQL: the log tables' total
    relation size (with indexes and TOAST); it shrinks only when VACUUM returns pages, and grows
    little while vacuumed space is reused, so there it undercounts growth after a purge.
    """
    with engine.connect() as connection:
        if is_sqlite(connection):
            page_size = connection.exec_driver_sql("PRAGMA page_size").scalar_one()
            pages = connection.exec_driver_sql("PRAGMA page_count").scalar_one()
            free = connection.exec_driver_sql("PRAGMA freelist_count").scalar_one()
            return int((pages - free) * page_size)
        sizes = (connection.scalar(_PG_RELATION_SIZE, {"table": table.name}) or 0 for table in _SIZED_TABLES)
        return int(sum(sizes))


def records_to_archive(
    engine: Engine, *, gateway: str, node: str, limit: int, cipher: BodyCipher | None = None
) -> list[StoredRecord]:
    """The oldest timestamped records not yet archived, in chain order, for the archiver.

    Only timestamped records: an archive must prove when its records existed.
    """
    with begin_snapshot_read(engine) as connection:
        state = chain_state(connection, gateway, node)
        if state is None:
            return []
        query = (
            sa.select(records)
            .where(
                records.c.gateway == gateway,
                records.c.node == node,
                records.c.seq > state.purged_seq,
                records.c.seq <= state.stamped_seq,
                records.c.archived_at.is_(None),
            )
            .order_by(records.c.seq)
            .limit(limit)
        )
        return _load(connection, connection.execute(query).all(), cipher)


def mark_archived(
    engine: Engine,
    *,
    gateway: str,
    node: str,
    seqs: Iterable[int],
    archive_name: str,
    at: datetime | None = None,
) -> int:
    """Record that these records are safely in the archive `archive_name`; returns how many.

    Only timestamped, not yet archived records are marked: an archive cannot claim others.
    """
    at = at or datetime.now(UTC)
    marked = 0
    with begin_write(engine) as connection:
        for chunk in _chunks(set(seqs)):
            result = connection.execute(
                sa.update(records)
                .where(
                    records.c.gateway == gateway,
                    records.c.node == node,
                    records.c.seq.in_(chunk),
                    records.c.archived_at.is_(None),
                    records.c.timestamp_id.is_not(None),
                )
                .values(archived_at=at, archive_id=archive_name)
            )
            marked += result.rowcount
    return marked


@dataclass(frozen=True)
class ChainArchive:
    """One chain as the archiver sees it (gateway.messagelog.archive.ArchiveSource)."""

    engine: Engine
    gateway: str
    node: str
    cipher: BodyCipher | None = None

    def records_to_archive(self, limit: int) -> list[StoredRecord]:
        return records_to_archive(
            self.engine, gateway=self.gateway, node=self.node, limit=limit, cipher=self.cipher
        )

    def mark_archived(self, seqs: Iterable[int], archive_name: str) -> int:
        return mark_archived(
            self.engine, gateway=self.gateway, node=self.node, seqs=seqs, archive_name=archive_name
        )


def purge(engine: Engine, older_than: datetime, *, max_records: int = DEFAULT_PURGE_BATCH) -> int:
    """Delete archived records logged before `older_than`; returns how many were deleted.

    Per chain only a prefix goes: records up to the first one that is not archived or not old
    enough, so an unarchived record is never deleted and the chain keeps one start. That start
    (`purged_seq`, `purged_hash`) is kept in the chain's row: verification begins there, and
    deleting more of the start without updating it shows. Signed roots, OCSP responses, signers'
    certificates and timestamp tokens that no remaining record needs go with them. Each transaction deletes at
    most `max_records`, so the writer is never held up for long.
    """
    with engine.connect() as connection:
        keys = connection.execute(sa.select(chains.c.gateway, chains.c.node)).all()
    deleted = 0
    for gateway, node in keys:
        while True:
            with begin_write(engine) as connection:
                count = _purge_chain(connection, gateway, node, older_than, max_records)
            if count == 0:
                break
            deleted += count
    return deleted


def _purge_chain(
    connection: Connection, gateway: str, node: str, older_than: datetime, max_records: int
) -> int:
    chain = lock_chain(connection, gateway, node)
    in_chain = (records.c.gateway == gateway, records.c.node == node)
    keep_from = connection.scalar(
        sa.select(records.c.seq)
        .where(
            *in_chain,
            records.c.seq > chain.purged_seq,
            sa.or_(records.c.archived_at.is_(None), records.c.logged_at >= older_than),
        )
        .order_by(records.c.seq)
        .limit(1)
    )
    upto = chain.head_seq if keep_from is None else keep_from - 1
    upto = min(upto, chain.stamped_seq, chain.purged_seq + max_records)
    if upto <= chain.purged_seq:
        return 0
    in_range = (*in_chain, records.c.seq > chain.purged_seq, records.c.seq <= upto)
    last_hash = connection.scalar(sa.select(records.c.record_hash).where(*in_chain, records.c.seq == upto))
    if last_hash is None:
        raise RuntimeError(f"record {upto} of chain {gateway}/{node} is missing: verify the log")
    referenced = connection.execute(
        sa.select(records.c.signed_root_sha256, records.c.ocsp_sha256, records.c.log_signature_sha256)
        .where(*in_range)
        .distinct()
    ).all()
    candidates = {bytes(d) for row in referenced for d in row if d is not None}
    deleted = connection.execute(sa.delete(records).where(*in_range)).rowcount
    connection.execute(
        sa.delete(timestamps).where(
            timestamps.c.gateway == gateway, timestamps.c.node == node, timestamps.c.last_seq <= upto
        )
    )
    certificates = {
        bytes(ref)
        for chunk in _chunks(candidates)
        for ref in connection.scalars(
            sa.select(blobs.c.ref_sha256).where(blobs.c.sha256.in_(chunk), blobs.c.ref_sha256.is_not(None))
        )
    }
    for chunk in _chunks(candidates):
        connection.execute(
            sa.delete(blobs).where(
                blobs.c.sha256.in_(chunk),
                ~sa.exists().where(records.c.signed_root_sha256 == blobs.c.sha256),
                ~sa.exists().where(records.c.ocsp_sha256 == blobs.c.sha256),
                ~sa.exists().where(records.c.log_signature_sha256 == blobs.c.sha256),
            )
        )
    referring = blobs.alias("referring")
    for chunk in _chunks(certificates):  # a signer's certificate, once no signed root kept names it
        connection.execute(
            sa.delete(blobs).where(
                blobs.c.sha256.in_(chunk), ~sa.exists().where(referring.c.ref_sha256 == blobs.c.sha256)
            )
        )
    connection.execute(
        sa.update(chains)
        .where(chains.c.gateway == gateway, chains.c.node == node)
        .values(purged_seq=upto, purged_hash=bytes(last_hash))
    )
    return deleted
