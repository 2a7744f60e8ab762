"""Stored answers kept decoded in memory, so that serving one often costs little.

Serving an entry means reading its transport message (the signature document is XML) and,
for SOAP, parsing and re-serialising the envelope to mark it. Both depend only on the
stored bytes, so a node keeps the result per key (:class:`CopyMemory`, a bounded LRU) and
pays them once per stored version.

A copy is never served on memory alone: each hit still reads the entry's row
(gateway.cache.store.CacheStore.lookup, one statement, without the body when the digest of
the copy held is still the stored one). So a copy whose entry was purged, evicted or
replaced, here or by another node sharing a PostgreSQL cache, is not served; the age and
the client's confirmation are the row's, read at the hit. The store also tells this node's
memory of its own changes (:meth:`CopyMemory.changed`), which frees the memory early.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from gateway.cache.marking import CacheMark, SoapMarkTemplate, mark_soap
from gateway.cache.store import CachedAnswer, CacheStoreError, EntryInfo
from gateway.lru import BoundedLru
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


@dataclass(frozen=True, slots=True)
class ServedCopy:
    """A stored answer ready to serve: its transport message decoded, its SOAP marking prepared."""

    info: EntryInfo
    body_sha256: str
    message: TransportMessage
    """The signed transport message as the provider's gateway sent it."""
    signer_ocsp: bytes | None
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
        return cls(answer.info, body_sha256, message, answer.signer_ocsp, template)

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
        return ServedCopy(info, self.body_sha256, self.message, self.signer_ocsp, template)

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


class CopyMemory:
    """A node's decoded copies by cache key (see the module's text for when they are served)."""

    def __init__(self, size: int = MAX_COPIES) -> None:
        self._copies: BoundedLru[str, ServedCopy] = BoundedLru(size)

    def held(self, key: str) -> ServedCopy | None:
        return self._copies.get(key)

    def keep(self, key: str, copy: ServedCopy) -> None:
        if copy.info.size <= MAX_COPY_BYTES:
            self._copies.put(key, copy)

    def changed(self, key: str | None) -> None:
        """The store changed the entry under `key`, or removed entries (None): drop the copies."""
        if key is None:
            self._copies.clear()
        else:
            self._copies.discard(key)
