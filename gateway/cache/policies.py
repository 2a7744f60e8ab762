"""Cache policies kept in the server configuration: set, read and listed as CachePolicy values.

The server configuration stores each policy as its JSON document (it does not import the
cache: `gateway.cache` builds on `gateway.serverconf`, not the other way round); these
functions validate before storing and read documents back as :class:`CachePolicy`. The
request path reads them from the snapshot (:func:`policies_of`), so a change reaches every
node with the next configuration version, like any registration.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Container
from dataclasses import dataclass

from gateway.cache.policy import CachePolicy, CacheSide, PolicyError
from gateway.globalconf.model import GlobalConf
from gateway.ids import ServiceId
from gateway.serverconf.model import CachePolicyRecord, ServerConfSnapshot
from gateway.serverconf.repository import ServerConfRepository

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KnownServices:
    """Which services a policy may name: on the consumer side a service of a subsystem the global
    configuration knows (X-Road's global configuration lists providers, not their services), on
    the provider side a service registered here. For :meth:`CachePolicy.validate`."""

    snapshot: ServerConfSnapshot
    conf: GlobalConf | None
    side: CacheSide = CacheSide.CONSUMER

    def __contains__(self, service: object) -> bool:
        if not isinstance(service, ServiceId):
            return False
        if self.side is CacheSide.PROVIDER:
            return self.snapshot.service(service) is not None
        if self.snapshot.service(service) is not None:
            return True
        return self.conf is not None and self.conf.is_known(service.provider)


def known_services(
    policy: CachePolicy, snapshot: ServerConfSnapshot, conf: GlobalConf | None
) -> KnownServices:
    """The `known_services` to validate `policy` against, for its side."""
    return KnownServices(snapshot, conf, policy.side)


def add_policy(
    repository: ServerConfRepository, policy: CachePolicy, known_services: Container[ServiceId]
) -> None:
    """Validate and store a new policy (PolicyError, or AlreadyExists if the name is taken)."""
    policy.validate(known_services)
    repository.add_cache_policy(policy.name, policy.service, policy.to_document())


def update_policy(
    repository: ServerConfRepository, policy: CachePolicy, known_services: Container[ServiceId]
) -> None:
    """Validate and replace the stored policy of the same name (PolicyError, or NotFound)."""
    policy.validate(known_services)
    repository.update_cache_policy(policy.name, policy.service, policy.to_document())


def remove_policy(repository: ServerConfRepository, name: str) -> None:
    repository.remove_cache_policy(name)


def get_policy(repository: ServerConfRepository, name: str) -> CachePolicy | None:
    record = repository.get_cache_policy(name)
    return None if record is None else from_record(record)


def list_policies(repository: ServerConfRepository) -> list[CachePolicy]:
    return [from_record(record) for record in repository.list_cache_policies()]


def from_record(record: CachePolicyRecord) -> CachePolicy:
    return CachePolicy.from_document(record.document)


_by_snapshot: weakref.WeakKeyDictionary[ServerConfSnapshot, tuple[CachePolicy, ...]] = (
    weakref.WeakKeyDictionary()
)


def policies_of(snapshot: ServerConfSnapshot) -> tuple[CachePolicy, ...]:
    """The snapshot's policies as values, read once per snapshot (one per configuration version).

    A stored document that no longer reads (written by a newer version, say) is skipped with
    a warning: the cache then does nothing for that service, which is the safe side.
    """
    cached = _by_snapshot.get(snapshot)
    if cached is not None:
        return cached
    policies = []
    for record in snapshot.cache_policies.values():
        try:
            policies.append(from_record(record))
        except PolicyError as error:
            log.warning("cache policy %r is skipped: %s", record.name, error)
    result = tuple(policies)
    _by_snapshot[snapshot] = result  # forgotten with the snapshot
    return result
