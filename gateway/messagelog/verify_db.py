"""Verifying a stored message log: the chain read from the database, fed to the verifier.

The checks themselves are `gateway.messagelog.verify` (sans-IO); this is the edge that reads a
(gateway, node) chain in one consistent snapshot, page by page, so it can run while the gateway
keeps logging.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from sqlalchemy.engine import Connection, Engine

from gateway.messagelog.crypto_at_rest import BodyCipher
from gateway.messagelog.db import begin_snapshot_read
from gateway.messagelog.evidence import DEFAULT_STATUS_POLICY, StatusPolicy
from gateway.messagelog.record import GENESIS_HASH
from gateway.messagelog.store import UnreadableRecord, chain_state, read_chain
from gateway.messagelog.verify import (
    PAGE_SIZE,
    BadRecord,
    ChainVerifier,
    Problem,
    TokenVerifier,
    VerificationReport,
)


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
) -> VerificationReport:
    """Verify the (gateway, node) chain from where purging left it to its head.

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
        bad = _feed(connection, verifier, gateway, node, after_seq=start_seq - 1, page_size=page_size)
    return VerificationReport(
        gateway,
        node,
        verifier.checked,
        bad,
        verifier.signatures_verified,
        verifier.tokens_verified,
        verifier.unstamped,
        verifier.legacy_records,
    )


def _feed(
    connection: Connection,
    verifier: ChainVerifier,
    gateway: str,
    node: str,
    *,
    after_seq: int,
    page_size: int,
) -> BadRecord | None:
    while True:
        try:
            page = read_chain(connection, gateway, node, after_seq=after_seq, limit=page_size)
        except UnreadableRecord as exc:  # a finding about that record, never a traceback (hole 10)
            seq = exc.seq if isinstance(exc.seq, int) else after_seq + 1
            return BadRecord(seq, Problem.UNREADABLE, str(exc))
        for stored in page:
            bad = verifier.check(stored)
            if bad is not None:
                return bad
        if len(page) < page_size:
            return verifier.finish()
        after_seq = page[-1].seq
