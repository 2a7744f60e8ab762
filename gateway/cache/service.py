"""The interface cache as a node runs it: the store, the circuit breakers, background work.

One :class:`CacheService` per node (gateway.proxy.runtime holds it). The request path
(gateway.proxy.cached) asks it for the policy of a request, the breaker of a provider service,
the store through a thread, and the answers it keeps decoded; the node's maintenance loop
evicts, purges the entries of clients no longer registered, and adds the counters to the
database.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Final

from gateway.cache.breaker import BreakerStatus, CircuitBreaker
from gateway.cache.copies import CopyMemory
from gateway.cache.db import create_engine, migrate
from gateway.cache.policies import policies_of
from gateway.cache.policy import CachePolicy, CacheSide, choose_policy
from gateway.cache.settings import CacheSettings
from gateway.cache.store import CacheStore, subject_secrets
from gateway.ids import ClientId, ServiceId
from gateway.messagelog.crypto_at_rest import BodyCipher
from gateway.serverconf.model import ServerConfSnapshot

log = logging.getLogger(__name__)

BACKGROUND_DRAIN_SECONDS: Final = 5.0
"""At stop, revalidations in flight get this long to finish (they are logged exchanges)."""


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class CacheService:
    """A node's interface cache: policies from the configuration, breakers, the store."""

    def __init__(
        self,
        store: CacheStore,
        *,
        maintenance_interval_seconds: float = 60.0,
        clock: Callable[[], dt.datetime] = _utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.maintenance_interval_seconds = maintenance_interval_seconds
        self.clock = clock
        self.monotonic = monotonic
        self.copies = CopyMemory(monotonic=lambda: self.monotonic())
        """Decoded answers served often (gateway.cache.copies); the store tells it what changes."""
        store.watch(self.copies.changed)
        self._breakers: dict[tuple[ServiceId, CacheSide], CircuitBreaker] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._revalidating: set[str] = set()

    @classmethod
    def from_settings(cls, settings: CacheSettings) -> CacheService:
        """The node's cache at its configured place, migrated; keys read from their file."""
        migrate(settings.database_url)
        cipher = None
        secrets = subject_secrets(None, None)
        if settings.body_key_file is not None:
            from gateway.messagelog.service import load_body_keys  # the log's key handling, reused

            keys, current = load_body_keys(settings.body_key_file)
            cipher = BodyCipher(keys, current)
            secrets = subject_secrets(keys, current)
        store = CacheStore(create_engine(settings.database_url), cipher=cipher, secrets=secrets)
        return cls(store, maintenance_interval_seconds=settings.maintenance_interval_seconds)

    # --- policies and breakers

    def policy_for(
        self,
        snapshot: ServerConfSnapshot,
        service: ServiceId,
        client: ClientId,
        method: str | None = None,
        path: str | None = None,
        *,
        side: CacheSide = CacheSide.CONSUMER,
    ) -> CachePolicy | None:
        """The active policy for a request, or None (the request path then skips the cache)."""
        if not snapshot.cache_policies:
            return None
        return choose_policy(policies_of(snapshot), service, client, method, path, side=side)

    def breaker(self, policy: CachePolicy) -> CircuitBreaker | None:
        """The breaker of the policy's provider service on this node (None: the policy has none)."""
        if policy.breaker is None:
            return None
        key = (policy.service, policy.side)
        breaker = self._breakers.get(key)
        if breaker is None or breaker.settings != policy.breaker:
            breaker = CircuitBreaker(policy.breaker, lambda: self.monotonic())
            self._breakers[key] = breaker
        return breaker

    def breaker_states(self) -> dict[str, BreakerStatus]:
        """Each provider service's circuit on this node, by service text (and side if provider)."""
        states = {}
        for (service, side), breaker in self._breakers.items():
            name = service.to_text() if side is CacheSide.CONSUMER else f"{service.to_text()} ({side.value})"
            states[name] = breaker.status()
        return states

    # --- background work

    def spawn(self, work: Coroutine[Any, Any, None], *, key: str | None = None) -> bool:
        """Run `work` in the background (a revalidation); False if one for `key` already runs."""
        if key is not None:
            if key in self._revalidating:
                work.close()
                return False
            self._revalidating.add(key)
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)

        def done(finished: asyncio.Task[Any]) -> None:
            self._background.discard(finished)
            if key is not None:
                self._revalidating.discard(key)
            if not finished.cancelled() and finished.exception() is not None:
                log.warning("cache revalidation failed: %s", finished.exception())

        task.add_done_callback(done)
        return True

    async def maintain(self, snapshot: ServerConfSnapshot) -> None:
        """Evict, purge the clients no longer registered here, add the counters to the database."""
        registered = {client.to_text() for client in snapshot.subsystems}
        policies = policies_of(snapshot)
        await asyncio.to_thread(self._maintain, policies, registered)

    def _maintain(self, policies: Iterable[CachePolicy], registered: set[str]) -> None:
        self.store.evict(policies)
        for client in self.store.clients() - registered:
            removed = self.store.revoke_client(ClientId.from_text(client))
            log.info("cache: %d entries of %s purged: it is no longer registered here", removed, client)
        self.store.flush_stats()

    async def drain(self, timeout_seconds: float = BACKGROUND_DRAIN_SECONDS) -> None:
        """Wait for background revalidations to finish; cancel those still running after the timeout."""
        pending = list(self._background)
        if not pending:
            return
        _done, still = await asyncio.wait(pending, timeout=timeout_seconds)
        for task in still:
            task.cancel()
        await asyncio.gather(*still, return_exceptions=True)

    async def close(self) -> None:
        await self.drain()
        await asyncio.to_thread(self.store.close)
