"""Stored answers kept decoded in memory, so that serving one often costs little.

Serving an entry means reading its transport message (the signature document is XML),
writing its proof for the log record, and, for SOAP, parsing and re-serialising the envelope
to mark it. All depend only on the stored bytes, so a node keeps the result per key
(:class:`CopyMemory`, a bounded LRU) and pays them once per stored version.

Which copy may be served is still the database's answer: a copy is served only while its
entry's row was read, with this client confirmed, less than :data:`RECHECK_SECONDS` ago
(gateway.cache.store.CacheStore.lookup: one statement, without the body when the copy's
digest is still the stored one). This node's own stores, purges, evictions and revocations
drop the copies at once (the store tells :meth:`CopyMemory.changed`); another node's, on a
shared PostgreSQL cache, are seen at the next read, within that bound. The age served (and
the max-age refusal) is computed at each hit from the entry's stored-at time, and the
configuration checks (the client registered, known to the federation, under a policy) run
on every request before the cache is asked.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from gateway.cache.marking import CacheMark, SoapMarkTemplate, mark_soap
from gateway.cache.store import CachedAnswer, CacheStoreError, EntryInfo
from gateway.lru import BoundedLru
from gateway.messagelog.asice import manifest_and_proof
from gateway.protocol.transport import (
    Direction,
    RestResponsePayload,
    SoapPayload,
    TransportMessage,
    decode_transport,
)

MAX_COPIES: Final = 256
"""Entries kept decoded per node: the answers a node serves often are few (a partner's
handful of popular queries); the rest are decoded when served."""

MAX_COPY_BYTES: Final = 64 * 1024
"""Larger answers are not kept decoded (the memory stays under ~50 MB whatever the policies'
sizes); for them the decoding is small beside moving their bytes."""

RECHECK_SECONDS: Final = 1.0
"""How long a copy whose row was read (entry there, same digest, client confirmed) is served
without reading the row again. It is how long another node's purge, revocation or newer
answer may take to reach this node when they share a PostgreSQL cache; this node's own
changes reach its memory at once. A read per hit costs a thread hop and a statement, as much
CPU as the rest of the hit; once a second per key costs nothing measurable."""


@dataclass(frozen=True, slots=True)
class ServedCopy:
    """A stored answer ready to serve: its transport message decoded, its SOAP marking prepared."""

    info: EntryInfo
    body_sha256: str
    message: TransportMessage
    """The signed transport message as the provider's gateway sent it."""
    signer_ocsp: bytes | None
    record_parts: tuple[bytes, str]
    """The manifest and the proof each serving's log record holds (asice.manifest_and_proof)."""
    soap_template: SoapMarkTemplate | None = None

    @classmethod
    def of(cls, answer: CachedAnswer, body_sha256: str, max_bytes: int) -> ServedCopy:
        """Decode a stored answer (held to the node's message size); CacheStoreError if it does not."""
        message = stored_message(answer, max_bytes)
        template = None
        if isinstance(message.payload, SoapPayload):
            template = SoapMarkTemplate.of(
                message.payload.body,
                message.payload.content_type,
                answer.info.original_message_id,
                answer.info.stored_at,
            )
        elif not isinstance(message.payload, RestResponsePayload):
            raise CacheStoreError(f"entry {answer.info.id} holds neither a SOAP nor a REST answer")
        parts = manifest_and_proof(message.payload, message.signature)
        return cls(answer.info, body_sha256, message, answer.signer_ocsp, parts, template)

    def with_info(self, info: EntryInfo) -> ServedCopy:
        """The same answer under a newer listing (the entry was stored again with these bytes)."""
        if info == self.info:
            return self
        template = self.soap_template
        if template is not None and (
            template.original_id != info.original_message_id or template.stored_at != info.stored_at
        ):
            assert isinstance(self.message.payload, SoapPayload)
            payload = self.message.payload
            template = SoapMarkTemplate.of(
                payload.body, payload.content_type, info.original_message_id, info.stored_at
            )
        return ServedCopy(info, self.body_sha256, self.message, self.signer_ocsp, self.record_parts, template)

    def marked_soap(self, mark: CacheMark) -> bytes:
        """The SOAP answer with the cache block in its Header (gateway.cache.marking)."""
        payload = self.message.payload
        if not isinstance(payload, SoapPayload):
            raise CacheStoreError(f"entry {self.info.id} is not a SOAP answer")
        if self.soap_template is not None:
            return self.soap_template.fill(mark)
        return mark_soap(payload.body, payload.content_type, mark)


def stored_message(entry: CachedAnswer, max_bytes: int) -> TransportMessage:
    """The signed transport message kept for an entry, as the provider's gateway sent it."""
    return decode_transport(
        entry.transport_content_type, entry.transport, max_bytes=max_bytes, direction=Direction.RESPONSE
    )


@dataclass(slots=True)
class _Held:
    copy: ServedCopy
    checked: dict[str, float]
    """The clients confirmed for this copy's entry, with when that was read (monotonic seconds)."""


class CopyMemory:
    """A node's decoded copies by cache key (see the module's text for when they are served)."""

    def __init__(
        self,
        size: int = MAX_COPIES,
        *,
        recheck_seconds: float = RECHECK_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._held: BoundedLru[str, _Held] = BoundedLru(size)
        self._recheck_seconds = recheck_seconds
        self._monotonic = monotonic

    def current(self, key: str, client: str) -> ServedCopy | None:
        """The copy under `key` if its row, with `client` confirmed, was read less than
        :data:`RECHECK_SECONDS` ago: it may be served without reading the row again."""
        held = self._held.get(key)
        if held is None:
            return None
        checked = held.checked.get(client)
        if checked is None or self._monotonic() - checked >= self._recheck_seconds:
            return None
        return held.copy

    def held(self, key: str) -> ServedCopy | None:
        """The copy under `key`, however long ago it was checked (its digest spares a body read)."""
        held = self._held.get(key)
        return None if held is None else held.copy

    def keep(self, key: str, copy: ServedCopy, confirmed_client: str | None) -> None:
        """Keep `copy` as its row was just read, noting `confirmed_client` (None: the client was
        not confirmed, which is not remembered: the next request reads again)."""
        if copy.info.size > MAX_COPY_BYTES:
            return
        held = self._held.get(key)
        if held is None or held.copy is not copy:
            held = _Held(copy, {})
            self._held.put(key, held)
        if confirmed_client is not None:
            held.checked[confirmed_client] = self._monotonic()

    def changed(self, key: str | None) -> None:
        """The store changed the entry under `key`, or removed entries (None): drop the copies."""
        if key is None:
            self._held.clear()
        else:
            self._held.discard(key)
