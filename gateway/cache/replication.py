"""Replication: the interface database proper. Each `replicate` policy's declared requests are
fetched on its schedule, through the consumer's normal signed path, so the answers are there
before anyone asks (issue 10, Build 1).

:class:`Replicator` is the scheduler a node runs (gateway.proxy.runtime starts and stops it).
It does not send anything itself: a `Fetch` callable does (gateway.proxy.replicating gives the
consumer's own request path, as the policy's client subsystem), so a replicated call is
signed, logged, verified and kept exactly like a client's. While a call runs,
:data:`REPLICATING` is set: the request path then always asks the provider (no fresh copy
answers it, no stale copy hides a failure), so a run reports what the provider really did.

Runs are rows of `cache_replication_runs` (gateway.cache.tables), visible to every node sharing
the cache's database: last run, next run, calls, answers fetched and kept, failures, and the
`last_success` time a run sent for "changes since" queries. Before a run a node takes the
policy's row of `cache_replication_leases` (an atomic upsert that only replaces an expired
lease), and checks again under the lease that the run is still due: two nodes sharing one
PostgreSQL cache never run one plan at the same time, nor twice in a row.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from gateway.cache.db import begin_write, is_sqlite
from gateway.cache.marking import rfc3339
from gateway.cache.policy import CacheMode, CachePolicy, CacheSide, ReplicatedCall
from gateway.cache.tables import RunStatus, cache_replication_leases, cache_replication_runs

log = logging.getLogger(__name__)

REPLICATING: Final[contextvars.ContextVar[bool]] = contextvars.ContextVar("xgate_replicating", default=False)
"""True while a replicated call runs on the request path (set by :class:`Replicator` only)."""

TICK_SECONDS: Final = 5.0
"""How often the scheduler looks for due plans: schedules are at least 10 s apart
(gateway.cache.schedule.MIN_INTERVAL_SECONDS), cron's unit is the minute."""

LEASE_SECONDS: Final = 15 * 60.0
"""A run's lease: long enough for a large plan; a node that died mid-run frees its plan after it."""

CALL_CONCURRENCY: Final = 4
"""Calls of one run in flight at once: a partner's service sees a steady trickle, not a burst."""

MAX_KEPT_RUNS: Final = 1000
"""Runs kept per policy: at one run every ten seconds that is almost three hours, at the usual
nightly or hourly schedules months; older ones are deleted when a run finishes."""

STOPPED: Final = "the node stopped during the run"

DEFAULT_RUN_LIST: Final = 20
MAX_RUN_LIST: Final = 1000


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Fetched:
    """What one replicated call came to: the provider's answer verified, logged and kept, or not."""

    ok: bool
    error: str | None = None


Fetch = Callable[[CachePolicy, ReplicatedCall], Awaitable[Fetched]]


@dataclass(frozen=True, slots=True)
class RunInfo:
    id: int
    policy: str
    node: str
    trigger: str
    started_at: datetime
    finished_at: datetime | None
    status: RunStatus
    calls: int
    fetched: int
    failures: int
    last_success_used: str | None
    error: str | None

    def to_document(self) -> dict[str, object]:
        return {
            "id": self.id,
            "policy": self.policy,
            "node": self.node,
            "trigger": self.trigger,
            "started_at": rfc3339(self.started_at),
            "finished_at": None if self.finished_at is None else rfc3339(self.finished_at),
            "status": self.status.value,
            "calls": self.calls,
            "fetched": self.fetched,
            "failures": self.failures,
            "last_success_used": self.last_success_used,
            "error": self.error,
        }


def _run_info(row: sa.Row[tuple[object, ...]]) -> RunInfo:
    m = row._mapping
    return RunInfo(
        int(m["id"]),
        m["policy"],
        m["node"],
        m["trigger"],
        m["started_at"],
        m["finished_at"],
        RunStatus(m["status"]),
        int(m["calls"]),
        int(m["fetched"]),
        int(m["failures"]),
        m["last_success_used"],
        m["error"],
    )


class RunLog:
    """The runs and leases in the cache's database (synchronous; called through a thread)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._insert = sqlite.insert if is_sqlite(engine) else postgresql.insert

    def start(
        self, policy: str, node: str, trigger: str, started_at: datetime, calls: int, since: str | None
    ) -> int:
        with begin_write(self._engine) as connection:
            return int(
                connection.execute(
                    sa.insert(cache_replication_runs)
                    .values(
                        policy=policy,
                        node=node,
                        trigger=trigger,
                        started_at=started_at,
                        status=RunStatus.RUNNING.value,
                        calls=calls,
                        fetched=0,
                        failures=0,
                        last_success_used=since,
                    )
                    .returning(cache_replication_runs.c.id)
                ).scalar_one()
            )

    def finish(
        self,
        run: int,
        finished_at: datetime,
        status: RunStatus,
        fetched: int,
        failures: int,
        error: str | None,
    ) -> None:
        with begin_write(self._engine) as connection:
            connection.execute(
                sa.update(cache_replication_runs)
                .where(cache_replication_runs.c.id == run)
                .values(
                    finished_at=finished_at,
                    status=status.value,
                    fetched=fetched,
                    failures=failures,
                    error=error,
                )
            )
            self._forget_old_runs(connection, run)

    @staticmethod
    def _forget_old_runs(connection: sa.Connection, run: int) -> None:
        """Keep the newest MAX_KEPT_RUNS runs of the run's policy."""
        runs = cache_replication_runs
        policy = connection.execute(sa.select(runs.c.policy).where(runs.c.id == run)).scalar_one()
        oldest_kept = connection.execute(
            sa.select(runs.c.id)
            .where(runs.c.policy == policy)
            .order_by(runs.c.id.desc())
            .offset(MAX_KEPT_RUNS - 1)
            .limit(1)
        ).scalar_one_or_none()
        if oldest_kept is not None:
            connection.execute(sa.delete(runs).where(runs.c.policy == policy, runs.c.id < oldest_kept))

    def runs(self, policy: str | None = None, limit: int = DEFAULT_RUN_LIST) -> list[RunInfo]:
        """Runs newest first."""
        query = sa.select(cache_replication_runs)
        if policy is not None:
            query = query.where(cache_replication_runs.c.policy == policy)
        query = query.order_by(cache_replication_runs.c.started_at.desc(), cache_replication_runs.c.id.desc())
        with self._engine.connect() as connection:
            rows = connection.execute(query.limit(max(1, min(limit, MAX_RUN_LIST)))).all()
        return [_run_info(row) for row in rows]

    def last_run(self, policy: str) -> RunInfo | None:
        found = self.runs(policy, 1)
        return found[0] if found else None

    def last_success(self, policy: str) -> datetime | None:
        """The start of the policy's last run whose every call succeeded ("changes since")."""
        query = sa.select(sa.func.max(cache_replication_runs.c.started_at)).where(
            cache_replication_runs.c.policy == policy, cache_replication_runs.c.status == RunStatus.OK.value
        )
        with self._engine.connect() as connection:
            value = connection.execute(query).scalar_one_or_none()
        if isinstance(value, str):  # SQLite's func.max bypasses the column type
            value = datetime.fromisoformat(value)
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    def take_lease(self, policy: str, holder: str, now: datetime, seconds: float = LEASE_SECONDS) -> bool:
        """Take the policy's lease unless another holder's has not expired; whether we hold it."""
        insert = self._insert(cache_replication_leases).values(
            policy=policy, holder=holder, expires_at=now + timedelta(seconds=seconds)
        )
        upsert = insert.on_conflict_do_update(
            index_elements=[cache_replication_leases.c.policy],
            set_={"holder": insert.excluded["holder"], "expires_at": insert.excluded["expires_at"]},
            where=(cache_replication_leases.c.expires_at < now)
            | (cache_replication_leases.c.holder == holder),
        )
        with begin_write(self._engine) as connection:
            connection.execute(upsert)
            current = connection.execute(
                sa.select(cache_replication_leases.c.holder).where(
                    cache_replication_leases.c.policy == policy
                )
            ).scalar_one()
        return bool(current == holder)

    def release_lease(self, policy: str, holder: str) -> None:
        with begin_write(self._engine) as connection:
            connection.execute(
                sa.delete(cache_replication_leases).where(
                    cache_replication_leases.c.policy == policy, cache_replication_leases.c.holder == holder
                )
            )


def replicated(policies: Iterable[CachePolicy]) -> list[CachePolicy]:
    """The policies whose plans a consumer gateway runs."""
    return [
        policy
        for policy in policies
        if policy.mode is CacheMode.REPLICATE
        and policy.side is CacheSide.CONSUMER
        and policy.replication is not None
    ]


class Replicator:
    """Runs each replicate policy's plan when due, and by hand; one per node."""

    def __init__(
        self,
        engine: Engine,
        fetch: Fetch,
        policies: Callable[[], Iterable[CachePolicy]],
        node: str,
        *,
        clock: Callable[[], datetime] = _utc_now,
        tick_seconds: float = TICK_SECONDS,
    ) -> None:
        self.runs = RunLog(engine)
        self.fetch = fetch
        self.policies = policies
        self.node = node
        self.clock = clock
        self.tick_seconds = tick_seconds
        self._task: asyncio.Task[None] | None = None
        self._running: dict[str, asyncio.Task[RunInfo | None]] = {}

    # --- lifecycle

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        tasks = [task for task in (self._task, *self._running.values()) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        self._running.clear()

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # the next tick tries again
                log.exception("replication scheduling failed")
            await asyncio.sleep(self.tick_seconds)

    async def tick(self) -> None:
        """Start every due plan that is not already running on this node."""
        for policy in replicated(self.policies()):
            if policy.name in self._running:
                continue
            if await asyncio.to_thread(self._is_due, policy):
                self._spawn(policy, "schedule")

    # --- when

    def next_run(self, policy: CachePolicy, last: RunInfo | None = None) -> datetime | None:
        """When the plan runs next: at once if it never ran, else its schedule after the last start."""
        assert policy.replication is not None
        if last is None:
            last = self.runs.last_run(policy.name)
        if last is None:
            return self.clock()
        return policy.replication.schedule.next_after(last.started_at)

    def _is_due(self, policy: CachePolicy) -> bool:
        due = self.next_run(policy)
        return due is not None and due <= self.clock()

    # --- runs

    def _spawn(self, policy: CachePolicy, trigger: str) -> asyncio.Task[RunInfo | None]:
        task = asyncio.get_running_loop().create_task(self.run(policy, trigger))
        self._running[policy.name] = task
        task.add_done_callback(lambda _finished: self._running.pop(policy.name, None))
        return task

    async def trigger(self, policy: CachePolicy) -> RunInfo | None:
        """Run the plan now, by hand; None if a run of it is in progress (here or on another node)."""
        if policy.name in self._running:
            return None
        return await self._spawn(policy, "manual")

    async def run(self, policy: CachePolicy, trigger: str = "schedule") -> RunInfo | None:
        """One run under the policy's lease; None if another node holds it (or, for a scheduled
        run, another node ran the plan meanwhile)."""
        plan = policy.replication
        if plan is None:
            raise ValueError(f"policy {policy.name} has no replication plan")
        if not await asyncio.to_thread(self.runs.take_lease, policy.name, self.node, self.clock()):
            return None
        try:
            if trigger == "schedule" and not await asyncio.to_thread(self._is_due, policy):
                return None
            since = await asyncio.to_thread(self.runs.last_success, policy.name)
            calls = plan.calls(since)
            started = self.clock()
            since_text = rfc3339(since) if since is not None else None
            run_id = await asyncio.to_thread(
                self.runs.start, policy.name, self.node, trigger, started, len(calls), since_text
            )
            try:
                fetched, failures, first_error = await self._fetch_all(policy, calls)
            except asyncio.CancelledError:  # the node stops: the run must not stay "running"
                self.runs.finish(run_id, self.clock(), RunStatus.FAILED, 0, len(calls), STOPPED)
                raise
            if failures == 0:
                status = RunStatus.OK
            elif fetched == 0:
                status = RunStatus.FAILED
            else:
                status = RunStatus.PARTIAL
            await asyncio.to_thread(
                self.runs.finish, run_id, self.clock(), status, fetched, failures, first_error
            )
            log.info(
                "replication %s: %s, %d of %d calls kept", policy.name, status.value, fetched, len(calls)
            )
            return (await asyncio.to_thread(self.runs.runs, policy.name, 1))[0]
        finally:
            await asyncio.to_thread(self.runs.release_lease, policy.name, self.node)

    async def _fetch_all(
        self, policy: CachePolicy, calls: list[ReplicatedCall]
    ) -> tuple[int, int, str | None]:
        gate = asyncio.Semaphore(CALL_CONCURRENCY)
        errors: list[str] = []

        async def one(call: ReplicatedCall) -> bool:
            async with gate:
                token = REPLICATING.set(True)
                try:
                    result = await self.fetch(policy, call)
                except Exception as error:  # one bad call must not end the run
                    log.exception("replicated call %s of %s failed", call.request, policy.name)
                    result = Fetched(False, f"{type(error).__name__}: {error}")
                finally:
                    REPLICATING.reset(token)
            if not result.ok:
                errors.append(f"{call.request} {dict(call.arguments)}: {result.error}")
            return result.ok

        outcomes = await asyncio.gather(*(one(call) for call in calls))
        fetched = sum(outcomes)
        return fetched, len(outcomes) - fetched, errors[0] if errors else None
