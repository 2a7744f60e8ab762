"""The cache's storage: entries kept, found, listed, evicted and purged (SQLAlchemy Core).

One :class:`CacheStore` per node, on SQLite by default or PostgreSQL when several nodes of
one gateway share their cache (they then see each other's entries at once: every read asks
the database). Synchronous, like the other repositories: the request path calls it through a
thread (`asyncio.to_thread`), and each call is one short transaction.

What an entry holds (gateway.cache.tables): the whole signed transport message as the
provider's gateway sent it, so that it verifies for as long as it is kept, encrypted with
AES-256-GCM under the node's current key when one is configured (the message log's
`BodyCipher` and key handling, docs/messagelog.md), and the keyed hashes of the person
identifiers in its request (gateway.cache.key) for erasure requests. The keys that hash
subject identifiers are derived from the same configured keys, one per key id, so a purge
after a key rotation still finds entries stored under the old key.

What a hit reads (:meth:`CacheStore.lookup`) is one statement: the entry's listing columns,
whether its client is confirmed, and the answer itself only when the caller does not already
hold this version of it (the request path keeps decoded answers in memory,
gateway.cache.copies, and says which body digest it holds). Whoever keeps such copies can
:meth:`CacheStore.watch` what this node changes, to drop them early; the digest check is what
keeps them right when another node sharing a PostgreSQL cache changes an entry.

Counters (hits, misses, stale answers per service) are counted in memory and added to the
database by :meth:`CacheStore.flush_stats` (the runtime calls it every few seconds and at
stop): a write per request would cost the cache-hit path what it is meant to save.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from gateway.cache.db import begin_write, create_engine, is_sqlite
from gateway.cache.key import CacheKey, subject_tokens
from gateway.cache.policy import CachePolicy
from gateway.cache.tables import (
    EntryKind,
    Outcome,
    cache_clients,
    cache_entries,
    cache_entry_subjects,
    cache_stats,
)
from gateway.ids import ClientId, ServiceId
from gateway.messagelog.crypto_at_rest import BodyCipher, BodyDecryptionError, EncryptedBody

UNKEYED_SUBJECT_SECRET: Final = b"xgate-cache-subject-unkeyed"
"""The subject-hash key when the node has no encryption key: the bodies are in clear then too,
so the tokens protect nothing more; they still let erasure find entries."""

SUBJECT_KEY_CONTEXT: Final = b"xgate-cache-subject-key/1"
"""Derives a subject-hash key from an encryption key (HMAC as a KDF, RFC 5869's extract step),
so the encryption key itself is never used for two purposes."""

DEFAULT_LIST_LIMIT: Final = 100
MAX_LIST_LIMIT: Final = 1000
"""A listing is for a person at a terminal; past a thousand rows they want a purge or a filter."""

MAX_PURGE_BATCH: Final = 500
"""Rows deleted per statement when evicting by size: keeps each transaction short on a shared PG."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class CacheStoreError(Exception):
    """The store cannot do what was asked (an entry that does not decrypt, say)."""


@dataclass(frozen=True, slots=True)
class NewEntry:
    """A verified, logged answer to keep: what :meth:`CacheStore.put` takes."""

    key: CacheKey
    kind: EntryKind
    original_message_id: str
    log_record: str | None
    """The message-log record of the answer as it arrived (its reference for the officer)."""
    transport_content_type: str
    transport: bytes
    """The signed transport message (gateway.protocol.transport.encode_transport)."""
    signer_ocsp: bytes | None = None
    identifiers: tuple[str, ...] = ()
    """The request's values that may name a person (gateway.cache.key.*_identifiers)."""


@dataclass(frozen=True, slots=True)
class EntryInfo:
    """An entry as listed: everything but the answer itself."""

    id: int
    key: str
    policy: str
    service: str
    client: str | None
    kind: EntryKind
    stored_at: datetime
    original_message_id: str
    log_record: str | None
    size: int
    encrypted: bool

    def age_seconds(self, now: datetime) -> float:
        return (now - self.stored_at).total_seconds()


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """An entry with its answer: the signed transport message as stored, decrypted."""

    info: EntryInfo
    transport_content_type: str
    transport: bytes
    signer_ocsp: bytes | None


@dataclass(frozen=True, slots=True)
class Lookup:
    """What one read of an entry gives the request path (:meth:`CacheStore.lookup`)."""

    info: EntryInfo
    body_sha256: str
    """The stored answer's digest: the version a copy in memory must match."""
    confirmed: bool
    """Whether the provider last answered this client for this service (cache_clients)."""
    answer: CachedAnswer | None
    """The answer, decrypted and checked; None when the caller holds this version already."""


Changed = Callable[[str | None], None]
"""Told of this node's changes: an entry's key (stored anew), or None (entries went)."""


def subject_secrets(keys: Mapping[str, bytes] | None, current: str | None) -> list[bytes]:
    """The subject-hash keys for the configured encryption keys, the current one first."""
    if not keys or current is None:
        return [UNKEYED_SUBJECT_SECRET]
    ordered = [current, *sorted(k for k in keys if k != current)]
    return [hmac.new(keys[key_id], SUBJECT_KEY_CONTEXT, hashlib.sha256).digest() for key_id in ordered]


class CacheStore:
    """Keeps, finds, lists, evicts and purges cached answers in one database."""

    def __init__(
        self,
        engine: Engine,
        *,
        cipher: BodyCipher | None = None,
        secrets: Sequence[bytes] = (UNKEYED_SUBJECT_SECRET,),
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if not secrets:
            raise ValueError("give at least one subject secret")
        self._engine = engine
        self._cipher = cipher
        self._secrets = tuple(secrets)
        self._clock = clock
        self._counts: Counter[tuple[str, Outcome]] = Counter()
        self._totals: Counter[tuple[str, Outcome]] = Counter()
        self._counts_lock = threading.Lock()
        insert = sqlite.insert if is_sqlite(engine) else postgresql.insert
        self._insert = insert
        self._watchers: list[Changed] = []

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        cipher: BodyCipher | None = None,
        secrets: Sequence[bytes] = (UNKEYED_SUBJECT_SECRET,),
    ) -> CacheStore:
        """A store on its own engine (the database must be migrated: gateway.cache.db.migrate)."""
        return cls(create_engine(url), cipher=cipher, secrets=secrets)

    @property
    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        self.flush_stats()
        self._engine.dispose()

    def watch(self, changed: Changed) -> None:
        """Call `changed` after each change this store makes (see :data:`Changed`)."""
        self._watchers.append(changed)

    def _changed(self, key: str | None) -> None:
        for watcher in self._watchers:
            watcher(key)

    def _removed(self, count: int) -> int:
        if count:
            self._changed(None)
        return count

    # --- keeping and finding

    def put(self, policy: CachePolicy, entry: NewEntry) -> EntryInfo | None:
        """Keep `entry` under its key (replacing an older answer), within the policy's sizes.

        An answer larger than the policy's max_entry_bytes is not kept (None); after keeping,
        the policy's oldest entries go until its total is within max_total_bytes.
        """
        size = len(entry.transport)
        service = entry.key.service.to_text()
        if size > policy.max_entry_bytes:
            self.count(service, Outcome.REFUSED)
            return None
        now = self._clock()
        body, key_id, nonce = self._seal(entry.transport)
        values = {
            "key": entry.key.digest,
            "policy": policy.name,
            "service": service,
            "client": entry.key.client.to_text() if entry.key.client is not None else None,
            "kind": EntryKind(entry.kind).value,
            "stored_at": now,
            "original_message_id": entry.original_message_id,
            "log_record": entry.log_record,
            "size": size,
            "content_type": entry.transport_content_type,
            "body": body,
            "body_sha256": hashlib.sha256(entry.transport).hexdigest(),
            "body_key_id": key_id,
            "body_nonce": nonce,
            "signer_ocsp": entry.signer_ocsp,
        }
        insert = self._insert(cache_entries).values(**values)
        upsert = insert.on_conflict_do_update(
            index_elements=[cache_entries.c.key],
            set_={name: insert.excluded[name] for name in values if name != "key"},
        ).returning(cache_entries.c.id)
        tokens = subject_tokens(entry.identifiers, self._secrets[0])
        with begin_write(self._engine) as connection:
            entry_id = int(connection.execute(upsert).scalar_one())
            connection.execute(
                sa.delete(cache_entry_subjects).where(cache_entry_subjects.c.entry_id == entry_id)
            )
            if tokens:
                connection.execute(
                    sa.insert(cache_entry_subjects),
                    [{"entry_id": entry_id, "token": token} for token in tokens],
                )
            evicted = self._evict_over_size(connection, policy)
        self._changed(entry.key.digest)
        self._removed(evicted)
        self.count(service, Outcome.STORED)
        return EntryInfo(
            entry_id,
            entry.key.digest,
            policy.name,
            service,
            entry.key.client.to_text() if entry.key.client is not None else None,
            EntryKind(entry.kind),
            now,
            entry.original_message_id,
            entry.log_record,
            size,
            key_id is not None,
        )

    def get(self, key: str) -> CachedAnswer | None:
        """The answer kept under `key`, decrypted and checked against its digest, or None."""
        with self._engine.connect() as connection:
            row = connection.execute(sa.select(cache_entries).where(cache_entries.c.key == key)).first()
        if row is None:
            return None
        return CachedAnswer(_info(row), row.content_type, self._open(row), row.signer_ocsp)

    def lookup(
        self, key: str, service: ServiceId, client: ClientId, *, held_sha256: str | None = None
    ) -> Lookup | None:
        """The entry under `key` and whether `client` is confirmed for `service`, in one read.

        `held_sha256`: the digest of the answer the caller holds decoded; when the entry still
        has it, its body is not read (nor decrypted) again and `answer` is None.
        """
        confirmed = (
            sa.select(cache_clients.c.client)
            .where(cache_clients.c.service == service.to_text(), cache_clients.c.client == client.to_text())
            .exists()
        )
        held = cache_entries.c.body_sha256 == (held_sha256 or "")
        query = sa.select(
            *(column for column in cache_entries.c if column.name not in ("body", "signer_ocsp")),
            sa.case((held, sa.null()), else_=cache_entries.c.body).label("body"),
            sa.case((held, sa.null()), else_=cache_entries.c.signer_ocsp).label("signer_ocsp"),
            confirmed.label("confirmed"),
        ).where(cache_entries.c.key == key)
        with self._engine.connect() as connection:
            row = cast("sa.Row[tuple[object, ...]] | None", connection.execute(query).first())
        if row is None:
            return None
        info = _info(row)
        answer = None
        if row.body is not None:
            answer = CachedAnswer(info, row.content_type, self._open(row), row.signer_ocsp)
        return Lookup(info, row.body_sha256, bool(row.confirmed), answer)

    def _seal(self, plaintext: bytes) -> tuple[bytes, str | None, bytes | None]:
        if self._cipher is None:
            return plaintext, None, None
        sealed = self._cipher.encrypt(plaintext)
        return sealed.ciphertext, sealed.key_id, sealed.nonce

    def _open(self, row: sa.Row[tuple[object, ...]]) -> bytes:
        mapping = row._mapping
        if mapping["body_key_id"] is None:
            body = bytes(mapping["body"])
            if hashlib.sha256(body).hexdigest() != mapping["body_sha256"]:
                raise CacheStoreError(f"entry {mapping['id']}: the stored answer does not match its digest")
            return body
        if self._cipher is None:
            raise CacheStoreError(f"entry {mapping['id']} is encrypted and this node has no cache key")
        sealed = EncryptedBody(mapping["body_key_id"], bytes(mapping["body_nonce"]), bytes(mapping["body"]))
        try:
            return self._cipher.decrypt(sealed, mapping["body_sha256"])
        except BodyDecryptionError as error:
            raise CacheStoreError(f"entry {mapping['id']}: {error}") from error

    # --- listing

    def list_entries(
        self,
        *,
        service: ServiceId | None = None,
        client: ClientId | None = None,
        policy: str | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
        offset: int = 0,
    ) -> list[EntryInfo]:
        """Entries newest first, without their answers."""
        limit = max(1, min(limit, MAX_LIST_LIMIT))
        columns = [column for column in cache_entries.c if column.name not in ("body", "signer_ocsp")]
        query = sa.select(*columns).where(*self._filters(service, client, policy, None))
        query = query.order_by(cache_entries.c.stored_at.desc(), cache_entries.c.id.desc())
        with self._engine.connect() as connection:
            rows = connection.execute(query.limit(limit).offset(max(0, offset))).all()
        return [_info(row) for row in rows]

    def total_bytes(self, policy: str | None = None) -> int:
        query = sa.select(sa.func.coalesce(sa.func.sum(cache_entries.c.size), 0))
        if policy is not None:
            query = query.where(cache_entries.c.policy == policy)
        with self._engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def count_entries(self, policy: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(cache_entries)
        if policy is not None:
            query = query.where(cache_entries.c.policy == policy)
        with self._engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    # --- purging and eviction

    def purge(
        self,
        *,
        service: ServiceId | None = None,
        client: ClientId | None = None,
        key: str | None = None,
        policy: str | None = None,
        subject: str | None = None,
        everything: bool = False,
    ) -> int:
        """Delete the entries matching every filter given; how many went.

        `subject` is a person identifier (as the request held it, any spelling the
        normalisation equates). Without any filter nothing is deleted unless `everything`.
        """
        conditions = self._filters(service, client, policy, key)
        if subject is not None:
            tokens = [
                token
                for secret in self._secrets
                if (token := next(iter(subject_tokens([subject], secret)), None))
            ]
            if not tokens:
                return 0  # not an identifier (too short or long): it is in no entry's tokens
            conditions.append(
                cache_entries.c.id.in_(
                    sa.select(cache_entry_subjects.c.entry_id).where(cache_entry_subjects.c.token.in_(tokens))
                )
            )
        if not conditions and not everything:
            raise ValueError("say what to purge (service, client, key, policy, subject) or everything")
        with begin_write(self._engine) as connection:
            removed = int(connection.execute(sa.delete(cache_entries).where(*conditions)).rowcount)
        return self._removed(removed)

    def purge_clients(self, clients: Iterable[ClientId], service: ServiceId | None = None) -> int:
        """Delete the entries of these clients (for `service` only, if given): access revoked."""
        texts = [client.to_text() for client in clients]
        if not texts:
            return 0
        conditions: list[sa.ColumnElement[bool]] = [cache_entries.c.client.in_(texts)]
        if service is not None:
            conditions.append(cache_entries.c.service == service.to_text())
        with begin_write(self._engine) as connection:
            removed = int(connection.execute(sa.delete(cache_entries).where(*conditions)).rowcount)
        return self._removed(removed)

    def evict(self, policies: Iterable[CachePolicy]) -> int:
        """Delete what no policy may serve any more: past max age, over size, of a client the
        policy no longer names, or of no policy."""
        now = self._clock()
        by_name = {policy.name: policy for policy in policies}
        removed = 0
        with begin_write(self._engine) as connection:
            orphans = sa.delete(cache_entries).where(cache_entries.c.policy.not_in(list(by_name)))
            removed += connection.execute(orphans).rowcount
            for policy in by_name.values():
                limit = now - timedelta(seconds=policy.max_age_seconds)
                removed += connection.execute(
                    sa.delete(cache_entries).where(
                        cache_entries.c.policy == policy.name, cache_entries.c.stored_at < limit
                    )
                ).rowcount
                if policy.clients:  # a client taken off the policy's list loses its entries
                    removed += connection.execute(
                        sa.delete(cache_entries).where(
                            cache_entries.c.policy == policy.name,
                            cache_entries.c.client.is_not(None),
                            cache_entries.c.client.not_in(sorted(c.to_text() for c in policy.clients)),
                        )
                    ).rowcount
                removed += self._evict_over_size(connection, policy)
        return self._removed(removed)

    def _evict_over_size(self, connection: Connection, policy: CachePolicy) -> int:
        """Oldest entries of the policy go until its total is within max_total_bytes."""
        total = int(
            connection.execute(
                sa.select(sa.func.coalesce(sa.func.sum(cache_entries.c.size), 0)).where(
                    cache_entries.c.policy == policy.name
                )
            ).scalar_one()
        )
        removed = 0
        while total > policy.max_total_bytes:
            rows = connection.execute(
                sa.select(cache_entries.c.id, cache_entries.c.size)
                .where(cache_entries.c.policy == policy.name)
                .order_by(cache_entries.c.stored_at, cache_entries.c.id)
                .limit(MAX_PURGE_BATCH)
            ).all()
            doomed: list[int] = []
            for row in rows:
                if total <= policy.max_total_bytes:
                    break
                doomed.append(row.id)
                total -= row.size
            if not doomed:
                break
            connection.execute(sa.delete(cache_entries).where(cache_entries.c.id.in_(doomed)))
            removed += len(doomed)
        return removed

    @staticmethod
    def _filters(
        service: ServiceId | None, client: ClientId | None, policy: str | None, key: str | None
    ) -> list[sa.ColumnElement[bool]]:
        conditions: list[sa.ColumnElement[bool]] = []
        if service is not None:
            conditions.append(cache_entries.c.service == service.to_text())
        if client is not None:
            conditions.append(cache_entries.c.client == client.to_text())
        if policy is not None:
            conditions.append(cache_entries.c.policy == policy)
        if key is not None:
            conditions.append(cache_entries.c.key == key)
        return conditions

    # --- the clients the provider answered

    def confirm_client(self, service: ServiceId, client: ClientId) -> None:
        """The provider answered `client` for `service`: it may be served from the cache."""
        insert = self._insert(cache_clients).values(
            service=service.to_text(), client=client.to_text(), confirmed_at=self._clock()
        )
        upsert = insert.on_conflict_do_update(
            index_elements=[cache_clients.c.service, cache_clients.c.client],
            set_={"confirmed_at": insert.excluded["confirmed_at"]},
        )
        with begin_write(self._engine) as connection:
            connection.execute(upsert)

    def is_confirmed(self, service: ServiceId, client: ClientId) -> bool:
        with self._engine.connect() as connection:
            found = connection.execute(
                sa.select(cache_clients.c.client).where(
                    cache_clients.c.service == service.to_text(), cache_clients.c.client == client.to_text()
                )
            ).first()
        return found is not None

    def revoke_client(self, client: ClientId, service: ServiceId | None = None) -> int:
        """The provider refused `client` (or it is no longer registered): forget it and purge its
        entries, for `service` or every service. How many entries went."""
        conditions: list[sa.ColumnElement[bool]] = [cache_clients.c.client == client.to_text()]
        if service is not None:
            conditions.append(cache_clients.c.service == service.to_text())
        with begin_write(self._engine) as connection:
            connection.execute(sa.delete(cache_clients).where(*conditions))
        self._changed(None)  # copies held for this client may no longer be served
        return self.purge_clients([client], service)

    def clients(self) -> set[str]:
        """Every client the cache holds anything for (entries or confirmations)."""
        with self._engine.connect() as connection:
            entries = connection.execute(sa.select(cache_entries.c.client).distinct()).scalars().all()
            confirmed = connection.execute(sa.select(cache_clients.c.client).distinct()).scalars().all()
        return {client for client in (*entries, *confirmed) if client is not None}

    # --- counters

    def count(self, service: str, outcome: Outcome) -> None:
        """Count one outcome for a service (in memory until flush_stats)."""
        with self._counts_lock:
            self._counts[(service, outcome)] += 1
            self._totals[(service, outcome)] += 1

    def totals(self) -> dict[tuple[str, Outcome], int]:
        """This process's counts since it started, never flushed: what its metrics report."""
        with self._counts_lock:
            return dict(self._totals)

    def flush_stats(self) -> None:
        """Add the counts made since the last flush to the database's."""
        with self._counts_lock:
            pending, self._counts = self._counts, Counter()
        if not pending:
            return
        rows = [
            {"service": service, "outcome": outcome.value, "count": count}
            for (service, outcome), count in sorted(pending.items())
        ]
        upsert = self._insert(cache_stats)
        upsert = upsert.on_conflict_do_update(
            index_elements=[cache_stats.c.service, cache_stats.c.outcome],
            set_={"count": cache_stats.c.count + upsert.excluded["count"]},
        )
        try:
            with begin_write(self._engine) as connection:
                connection.execute(upsert, rows)
        except Exception:
            with self._counts_lock:
                self._counts.update(pending)  # counted again at the next flush
            raise

    def stats(self, service: ServiceId | None = None) -> dict[str, dict[str, int]]:
        """Counts per service and outcome: the database's (all nodes) plus this node's unflushed."""
        query = sa.select(cache_stats)
        if service is not None:
            query = query.where(cache_stats.c.service == service.to_text())
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        result: dict[str, dict[str, int]] = {}
        for row in rows:
            result.setdefault(row.service, {})[row.outcome] = int(row._mapping["count"])
        with self._counts_lock:
            pending = dict(self._counts)
        for (name, outcome), count in pending.items():
            if service is None or name == service.to_text():
                bucket = result.setdefault(name, {})
                bucket[outcome.value] = bucket.get(outcome.value, 0) + count
        return result


def _info(row: sa.Row[tuple[object, ...]]) -> EntryInfo:
    m = row._mapping
    return EntryInfo(
        id=int(m["id"]),
        key=m["key"],
        policy=m["policy"],
        service=m["service"],
        client=m["client"],
        kind=EntryKind(m["kind"]),
        stored_at=m["stored_at"],
        original_message_id=m["original_message_id"],
        log_record=m["log_record"],
        size=int(m["size"]),
        encrypted=m["body_key_id"] is not None,
    )
