"""The central registry's state, stored and read: members, gateways, trust services, requests, keys.

:class:`CentralRepository` makes every change in one transaction and, before it commits,
builds the global configuration the change leads to: a change that would make it
inconsistent (a gateway without certificates, a certificate registered twice, an unknown
hosted client...) is refused whole, so whatever the database holds can always be published.
Approving a registration request applies it the same way, in the same transaction that
marks it approved. Publishing (:meth:`CentralRepository.publish`) bumps the persisted version
and stores the signed bytes; the signing itself is the caller's (`publisher.py`).
"""

from __future__ import annotations

from gateway.central.repository.heads import LogHeadWitness
from gateway.central.repository.publishing import Publishing
from gateway.central.repository.registrations import RegistrationRequests
from gateway.central.repository.trust import TrustServiceChanges
from gateway.db import create_engine


class CentralRepository(RegistrationRequests, TrustServiceChanges, Publishing, LogHeadWitness):
    """The registry of one instance in one database (SQLite or PostgreSQL, migrated by db.migrate)."""

    @classmethod
    def from_url(cls, url: str, instance: str) -> CentralRepository:
        return cls(create_engine(url), instance)
