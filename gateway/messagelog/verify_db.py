"""Verifying a stored message log: the chain read from the database, fed to the verifier.

The checks themselves are `gateway.messagelog.verify` (sans-IO); this is the edge that reads a
(gateway, node) chain in one consistent snapshot, page by page, so it can run while the gateway
keeps logging. Memory stays flat however long the chain: each page is dropped once checked, the
verifier keeps only bounded caches, and the report holds counts and the first bad record.

Incremental verification starts after the point a previous run reached (`messagelog_verified`,
:func:`verified_point`): that record's hash must be the next one's prev_hash, so a chain cut or
re-chained across it still shows; what it cannot see is an edit before it that leaves the rest
alone, which is what a full verification (from the chain's start) is for.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from cryptography import x509
from sqlalchemy.engine import Connection, Engine

from gateway.messagelog.crypto_at_rest import BodyCipher
from gateway.messagelog.db import begin_snapshot_read, begin_write
from gateway.messagelog.evidence import DEFAULT_STATUS_POLICY, StatusPolicy
from gateway.messagelog.record import GENESIS_HASH
from gateway.messagelog.store import ChainPage, UnreadableRecord, chain_state, read_chain_page
from gateway.messagelog.tables import heads, verified
from gateway.messagelog.verify import (
    PAGE_SIZE,
    BadRecord,
    ChainVerifier,
    Problem,
    TokenVerifier,
    VerificationReport,
)

Progress = Callable[[int, int], None]
"""`progress(records checked, records to check)`, after each page; it may raise to stop."""


def verify_log(
    engine: Engine,
    gateway: str,
    node: str,
    *,
    trusted_cas: Sequence[x509.Certificate],
    verify_token: TokenVerifier | None = None,
    cipher: BodyCipher | None = None,
    page_size: int = PAGE_SIZE,
    status_policy: StatusPolicy = DEFAULT_STATUS_POLICY,
    require_record_signatures: bool = False,
    expect_head: tuple[int, bytes, str] | None = None,
    resume_after: tuple[int, bytes] | None = None,
    progress: Progress | None = None,
) -> VerificationReport:
    """Verify the (gateway, node) chain from where purging left it (or after `resume_after`, the
    (seq, record hash) a previous verification reached) to its head.

    Without `verify_token` the timestamp proofs are still checked against the stored roots, but
    not the tokens themselves; without `cipher` encrypted bodies are left to their GCM tags and
    the chain (which covers their digests). `expect_head` is the newest signed head's (seq,
    record hash, source) (gateway.messagelog.heads): a chain falling short of it is truncated.
    """
    with begin_snapshot_read(engine) as connection:
        state = chain_state(connection, gateway, node)
        start_seq, start_hash, head, stamped = 1, GENESIS_HASH, 0, 0
        if state is not None:
            start_seq, start_hash = state.purged_seq + 1, state.purged_hash
            head, stamped = state.head_seq, state.stamped_seq
        if resume_after is not None and resume_after[0] > head:
            reason = (
                f"records up to {resume_after[0]} were verified before, the chain now ends at {head}: "
                "records were removed"
            )
            cut = BadRecord(head + 1, Problem.TRUNCATED, reason)
            return VerificationReport(gateway, node, 0, cut, 0, 0, 0, first_seq=head + 1)
        if resume_after is not None and resume_after[0] >= start_seq:
            start_seq, start_hash = resume_after[0] + 1, resume_after[1]
        verifier = ChainVerifier(
            start_seq=start_seq,
            start_hash=start_hash,
            head_seq=head,
            stamped_seq=stamped,
            trusted_cas=trusted_cas,
            verify_token=verify_token,
            cipher=cipher,
            status_policy=status_policy,
            require_record_signatures=require_record_signatures,
            expect_head=expect_head,
        )
        feed = _Feed(connection, verifier, gateway, node, stamped_seq=stamped, progress=progress)
        bad = feed.run(after_seq=start_seq - 1, total=max(0, head - start_seq + 1), page_size=page_size)
    return VerificationReport(
        gateway,
        node,
        verifier.checked,
        bad,
        verifier.signatures_verified,
        verifier.tokens_verified,
        verifier.unstamped,
        verifier.legacy_records,
        first_seq=start_seq,
        settled=feed.settled,
    )


class _Feed:
    """Pages of the chain to the verifier, in order; remembers the last good stamped record."""

    def __init__(
        self,
        connection: Connection,
        verifier: ChainVerifier,
        gateway: str,
        node: str,
        *,
        stamped_seq: int,
        progress: Progress | None,
    ) -> None:
        self._connection = connection
        self._verifier = verifier
        self._gateway, self._node = gateway, node
        self._stamped_seq = stamped_seq
        self._progress = progress
        self.settled: tuple[int, bytes] | None = None
        """(seq, hash) of the last good record that was timestamped: where a later verification
        may resume (a record not yet stamped is checked again once its token exists)."""

    def run(self, *, after_seq: int, total: int, page_size: int) -> BadRecord | None:
        verifier = self._verifier
        while True:
            page = read_chain_page(
                self._connection,
                self._gateway,
                self._node,
                after_seq=after_seq,
                limit=page_size,
            )
            before = verifier.last_verified[0]
            for row in page.rows:
                if not verifier.check_row(row, page):  # the fast way could not tell: the full one
                    try:
                        stored = page.stored(row)
                    except UnreadableRecord as exc:  # a finding about the record, never a traceback
                        self._settle(page, before)
                        seq = exc.seq if isinstance(exc.seq, int) else verifier.last_verified[0] + 1
                        return BadRecord(seq, Problem.UNREADABLE, str(exc))
                    bad = verifier.check(stored)
                    if bad is not None:
                        self._settle(page, before)
                        return bad
            self._settle(page, before)
            if self._progress is not None:
                self._progress(verifier.checked, total)
            if len(page.rows) < page_size:
                return verifier.finish()
            after_seq = page.rows[-1].seq
            del page  # the next page replaces it, not joins it

    def _settle(self, page: ChainPage, before: int) -> None:
        """`settled` after the page's good records (`before`: the last good seq before the page):
        the last of them, or the record at the stamped watermark among them."""
        seq, record_hash = self._verifier.last_verified
        if seq == before:
            return  # none of the page's records verified
        if seq <= self._stamped_seq:
            self.settled = (seq, record_hash)
            return
        for row in page.rows:  # records up to `seq` verified, the watermark's among them
            if row.seq == self._stamped_seq:
                self.settled = (row.seq, bytes(row.record_hash))
                return


# --- where verification reached --------------------------------------------------------------


def verified_point(engine: Engine, gateway: str, node: str) -> tuple[int, bytes] | None:
    """(seq, record hash) up to which the chain last verified; None if never (or not since a full run)."""
    query = sa.select(verified.c.seq, verified.c.record_hash).where(
        verified.c.gateway == gateway, verified.c.node == node
    )
    with engine.connect() as connection:
        row = connection.execute(query).one_or_none()
    return None if row is None else (int(row.seq), bytes(row.record_hash))


def save_verified_point(engine: Engine, gateway: str, node: str, point: tuple[int, bytes]) -> None:
    """Remember where the chain verified up to. Only after a verification found nothing: after a
    failed one the old point stays, so the next incremental run finds the same problem."""
    with begin_write(engine) as connection:
        connection.execute(sa.delete(verified).where(verified.c.gateway == gateway, verified.c.node == node))
        connection.execute(
            sa.insert(verified).values(
                gateway=gateway,
                node=node,
                seq=point[0],
                record_hash=point[1],
                verified_at=dt.datetime.now(dt.UTC),
            )
        )


def newest_stored_head(engine: Engine, gateway: str, node: str) -> str | None:
    """The newest signed head document the database keeps for the chain (gateway.messagelog.heads)."""
    query = (
        sa.select(heads.c.document)
        .where(heads.c.gateway == gateway, heads.c.node == node)
        .order_by(heads.c.seq.desc(), heads.c.id.desc())
        .limit(1)
    )
    with engine.connect() as connection:
        document = connection.scalar(query)
    return None if document is None else str(document)
