"""The security officer's reads of a message-log database: search, show, export, verify.

The I/O edge of gateway.messagelog.officer: the management API calls a node's
:class:`LogInspector` (in a worker thread), and `xgate log --database` makes one over the
database an auditor was handed. Both get the same answers, built by the officer module.
Nothing here writes to the log.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from gateway.messagelog.archive import ContainerTrust, container_entry, logged_message
from gateway.messagelog.asice import build_container
from gateway.messagelog.crypto_at_rest import BodyCipher
from gateway.messagelog.db import begin_snapshot_read
from gateway.messagelog.heads import HeadError, parse_head, verify_head
from gateway.messagelog.logsig import signed_by_owner
from gateway.messagelog.officer import (
    MAX_EXCHANGES_SHOWN,
    ExportedContainer,
    ExportFailure,
    SearchQuery,
    TrustUnavailable,
    exchange_view,
    globalconf_trust,
    next_offset,
    record_detail,
    record_status,
    record_summary,
    token_verifier,
    verification_json,
)
from gateway.messagelog.store import (
    MAX_SEARCH_LIMIT,
    ChainState,
    StoredRecord,
    chain_states,
    get_exchange,
    predecessor_hash,
    search,
)
from gateway.messagelog.verify_db import (
    Progress,
    newest_stored_head,
    save_verified_point,
    verified_point,
    verify_log,
)
from gateway.messagelog.verifyjob import VerificationJob, VerificationJobs

if TYPE_CHECKING:
    from gateway.globalconf import GlobalConf
    from gateway.messagelog.service import MessageLog


def _no_trust() -> ContainerTrust | None:
    return None


@dataclass(frozen=True)
class LogInspector:
    """Reads of one log database, restricted to one gateway's records when `gateway` is set.

    `trust` gives the federation's trust anchors when verification needs them (a node: from its
    current global configuration; an auditor: from the files named on the command line).
    """

    engine: Engine
    gateway: str | None = None
    cipher: BodyCipher | None = None
    trust: Callable[[], ContainerTrust | None] = field(default=_no_trust)
    jobs: VerificationJobs = field(default_factory=VerificationJobs, compare=False, repr=False)
    """The node's background verifications (start_verification)."""

    @classmethod
    def of_node(cls, log: MessageLog, globalconf: Callable[[], GlobalConf | None]) -> LogInspector:
        """A node's inspector: its log's database and body keys, its current global configuration's trust."""

        def trust() -> ContainerTrust | None:
            conf = globalconf()
            return None if conf is None else globalconf_trust(conf)

        return cls(log.engine, log.gateway, log.cipher, trust)

    def search(self, query: SearchQuery) -> dict[str, Any]:
        """Matching records, newest first, one page: {"records", "limit", "offset", "next_offset"}."""
        found = search(self.engine, gateway=self.gateway, cipher=self.cipher, **query.store_filters())
        return {
            "records": [record_summary(stored) for stored in found],
            "limit": query.limit,
            "offset": query.offset,
            "next_offset": next_offset(query, len(found)),
        }

    def show(self, ident: str) -> dict[str, Any]:
        """The exchanges `ident` names (an exchange id, else a message id), each record checked."""
        trust = self.trust()
        exchanges = self._exchanges(ident)
        views = []
        with begin_snapshot_read(self.engine) as connection:
            chains = {(c.gateway, c.node): c for c in chain_states(connection, self.gateway)}
            for exchange_id, stored_records in exchanges:
                details = []
                for stored in stored_records:
                    chain = chains.get((stored.record.gateway, stored.node))
                    predecessor = None if chain is None else predecessor_hash(connection, chain, stored.seq)
                    status = record_status(
                        stored, chain=chain, predecessor=predecessor, trust=trust, cipher=self.cipher
                    )
                    details.append(record_detail(stored, status))
                views.append(exchange_view(exchange_id, details))
        return {"id": ident, "verified_with_trust": trust is not None, "exchanges": views}

    def export(
        self, *, ident: str | None = None, query: SearchQuery | None = None
    ) -> tuple[list[ExportedContainer], list[ExportFailure], int | None]:
        """ASiC-E containers (asice.build_container) for the records `ident` or `query` names,
        with the records none could be built for, and the next page's offset (queries only)."""
        if (ident is None) == (query is None):
            raise ValueError("export names records by an id or by a query, not both")
        next_page = None
        if ident is not None:
            found = [stored for _, records in self._exchanges(ident) for stored in records]
        else:
            assert query is not None
            found = search(self.engine, gateway=self.gateway, cipher=self.cipher, **query.store_filters())
            next_page = next_offset(query, len(found))
        containers, failures = [], []
        for stored in found:
            try:
                message = logged_message(stored)
                data = build_container(message)
            except ValueError as exc:  # evidence that does not fit together: no container claims it
                failures.append(ExportFailure(stored.node, stored.seq, stored.record.message_id, str(exc)))
                continue
            entry = container_entry(stored.seq, message, data)
            fields = {
                **dataclasses.asdict(entry),
                "node": stored.node,
                "side": stored.record.side.value,
                "timestamped": message.timestamp_token is not None,
            }
            containers.append(ExportedContainer(entry.name, data, fields))
        return containers, failures, next_page

    def verify(
        self,
        node: str | None = None,
        *,
        heads: Mapping[tuple[str, str], tuple[int, bytes, str]] | None = None,
        require_record_signatures: bool = False,
        resume: bool = False,
        remember: bool = False,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """verify_log over every chain (of this gateway; of `node` only, when given).

        `heads` are the newest signed heads by (gateway, node) (gateway.messagelog.heads): each
        chain must reach its head, and a chain with a head but no row (deleted) is verified too.
        With `remember` (a node's own verification job) each chain is also checked against the
        newest signed head its database keeps, and where a good verification reached is kept;
        with `resume` as well, each chain goes on from there. Without, nothing is written.
        `progress(checked, total)` follows all chains together.
        """
        trust = self.trust()
        if trust is None:
            raise TrustUnavailable("no trust anchors to verify the log with")
        with begin_snapshot_read(self.engine) as connection:
            states = {
                (c.gateway, c.node): c
                for c in chain_states(connection, self.gateway)
                if node is None or c.node == node
            }
        chains = list(states)
        for key in heads or {}:
            if (
                key not in chains
                and (self.gateway is None or key[0] == self.gateway)
                and node in (None, key[1])
            ):
                chains.append(key)
        problems: list[str] = []
        expected = dict(heads or {})
        points: dict[tuple[str, str], tuple[int, bytes] | None] = {}
        for key in chains:
            points[key] = verified_point(self.engine, *key) if resume else None
            if remember and key not in expected:
                found = self._stored_head(key, trust, problems)
                if found is not None:
                    expected[key] = found
        tally = _Tally(progress, {key: _to_check(states.get(key), points[key]) for key in chains})
        reports = []
        for gateway, chain_node in chains:
            key = (gateway, chain_node)
            report = verify_log(
                self.engine,
                gateway,
                chain_node,
                trusted_cas=trust.trusted_cas,
                verify_token=token_verifier(trust),
                cipher=self.cipher,
                status_policy=trust.status,
                require_record_signatures=require_record_signatures,
                expect_head=expected.get(key),
                resume_after=points[key],
                progress=tally,
            )
            tally.chain_done(key, report.checked)
            if remember and report.ok and report.settled is not None:
                save_verified_point(self.engine, gateway, chain_node, report.settled)
            reports.append(report)
        return verification_json(reports, problems)

    def start_verification(
        self, node: str | None = None, *, full: bool = False
    ) -> tuple[VerificationJob, bool]:
        """A background verification of the node's chains (:meth:`verify` resumed, unless `full`),
        and True; or the one already running, and False. TrustUnavailable before any job starts."""
        if self.trust() is None:
            raise TrustUnavailable("no trust anchors to verify the log with")

        def work(progress: Progress) -> dict[str, Any]:
            return self.verify(node, resume=not full, remember=True, progress=progress)

        return self.jobs.start(work, node=node, full=full)

    def _stored_head(
        self, key: tuple[str, str], trust: ContainerTrust, problems: list[str]
    ) -> tuple[int, bytes, str] | None:
        """The newest signed head the database keeps for the chain, once it verifies; a head that
        does not is a problem, named."""
        document = newest_stored_head(self.engine, *key)
        if document is None:
            return None
        try:
            signed = parse_head(document)
            verify_head(
                signed, trust.trusted_cas, verify_token=token_verifier(trust), is_owner_cert=signed_by_owner
            )
        except HeadError as exc:
            problems.append(f"{key[0]} node {key[1]}: the newest stored head: {exc}")
            return None
        source = f"the database's heads ({signed.head.time:%Y-%m-%dT%H:%M:%SZ})"
        return signed.head.seq, signed.head.record_hash, source

    def _exchanges(self, ident: str) -> list[tuple[str, Sequence[StoredRecord]]]:
        """The exchange whose id is `ident`; failing that, those of messages with that id."""
        exchange = self._exchange(ident)
        if exchange:
            return [(ident, exchange)]
        found = search(
            self.engine, gateway=self.gateway, message_id=ident, limit=MAX_SEARCH_LIMIT, cipher=self.cipher
        )
        exchange_ids = list(dict.fromkeys(stored.record.exchange_id for stored in reversed(found)))
        return [
            (exchange_id, self._exchange(exchange_id)) for exchange_id in exchange_ids[:MAX_EXCHANGES_SHOWN]
        ]

    def _exchange(self, exchange_id: str) -> list[StoredRecord]:
        found = get_exchange(self.engine, exchange_id, cipher=self.cipher)
        return [stored for stored in found if self.gateway is None or stored.record.gateway == self.gateway]


def _to_check(state: ChainState | None, resume_after: tuple[int, bytes] | None) -> int:
    """How many records a chain's verification will check: from its start (or resume point) to its head."""
    if state is None:
        return 0
    start = max(state.purged_seq, resume_after[0] if resume_after is not None else 0)
    return max(0, state.head_seq - start)


class _Tally:
    """Progress over several chains verified one after another, as one count."""

    def __init__(self, progress: Progress | None, totals: dict[tuple[str, str], int]) -> None:
        self._progress = progress
        self._totals = totals
        self._done = 0

    def __call__(self, checked: int, _total: int) -> None:
        if self._progress is not None:
            self._progress(self._done + checked, sum(self._totals.values()))

    def chain_done(self, key: tuple[str, str], checked: int) -> None:
        """A chain is finished: it counts what it did check (a bad record ends it early)."""
        self._done += checked
        self._totals[key] = checked
        self(0, 0)
