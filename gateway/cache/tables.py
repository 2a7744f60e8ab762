"""The cache's tables (SQLAlchemy Core), the schema its migrations build.

`cache_entries` holds one answer per cache key: the whole signed transport message as the
provider's gateway sent it (so it still verifies), encrypted at rest when the node has a key,
with what lists and purges it (service, client, policy, original message id, message-log
record). `cache_entry_subjects` holds the keyed hashes of the person identifiers in each
entry's request (gateway.cache.key), for erasure requests. `cache_clients` says which clients the
provider last answered for each service. `cache_stats` counts hits, misses
and stale answers per service, summed over every node sharing the database.
"""

from __future__ import annotations

import enum
from typing import Final

import sqlalchemy as sa

from gateway.db import NAMING_CONVENTION, BigId, UtcDateTime, one_of


class EntryKind(enum.StrEnum):
    SOAP = "soap"
    REST = "rest"


class Outcome(enum.StrEnum):
    """What the cache did for one request it was asked about (the counters operators see)."""

    HIT = "hit"  # served a fresh copy without asking the provider
    STALE = "stale"  # served a copy because the provider could not answer
    MISS = "miss"  # had nothing to serve (or nothing young enough)
    STORED = "stored"  # kept a new verified answer
    REFUSED = "refused"  # an answer too large for the policy, not kept


metadata: Final = sa.MetaData(naming_convention=NAMING_CONVENTION)

cache_entries: Final = sa.Table(
    "cache_entries",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(64), nullable=False, unique=True),  # gateway.cache.key, hex SHA-256
    sa.Column("policy", sa.Text, nullable=False),
    sa.Column("service", sa.Text, nullable=False),  # ServiceId.to_text()
    sa.Column("client", sa.Text, nullable=True),  # ClientId.to_text(); NULL for shared data
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("stored_at", UtcDateTime, nullable=False),
    sa.Column("original_message_id", sa.Text, nullable=False),
    sa.Column("log_record", sa.Text, nullable=True),  # the message-log record of the answer
    sa.Column("size", sa.Integer, nullable=False),  # bytes of the transport message (plaintext)
    sa.Column("content_type", sa.Text, nullable=False),  # the transport message's Content-Type
    sa.Column("body", sa.LargeBinary, nullable=False),  # the transport message, or its ciphertext
    sa.Column("body_sha256", sa.String(64), nullable=False),  # of the plaintext
    sa.Column("body_key_id", sa.String(64), nullable=True),  # NULL: stored in clear
    sa.Column("body_nonce", sa.LargeBinary(12), nullable=True),
    sa.Column("signer_ocsp", sa.LargeBinary, nullable=True),  # the provider's, as checked
    sa.CheckConstraint(one_of("kind", EntryKind), name="kind"),
    sa.CheckConstraint("(body_key_id IS NULL) = (body_nonce IS NULL)", name="encryption_whole"),
    sa.Index("ix_cache_entries_policy_stored_at", "policy", "stored_at"),
    sa.Index("ix_cache_entries_service", "service"),
    sa.Index("ix_cache_entries_client", "client"),
)

cache_entry_subjects: Final = sa.Table(
    "cache_entry_subjects",
    metadata,
    sa.Column("entry_id", BigId, sa.ForeignKey("cache_entries.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("token", sa.LargeBinary(32), primary_key=True),
    sa.Index("ix_cache_entry_subjects_token", "token"),
)

cache_clients: Final = sa.Table(
    "cache_clients",
    metadata,
    sa.Column("service", sa.Text, primary_key=True),
    sa.Column("client", sa.Text, primary_key=True),
    sa.Column("confirmed_at", UtcDateTime, nullable=False),
)
"""Clients the provider last answered for a service: only they are served from the cache (shared
entries included). The provider's refusal (AccessDenied) removes the row and the client's entries."""

cache_stats: Final = sa.Table(
    "cache_stats",
    metadata,
    sa.Column("service", sa.Text, primary_key=True),
    sa.Column("outcome", sa.String(16), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.CheckConstraint(one_of("outcome", Outcome), name="outcome"),
)
