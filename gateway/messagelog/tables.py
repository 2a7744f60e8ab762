"""The message log's tables (SQLAlchemy Core), the schema its migrations build.

Every name starts with `messagelog_` so the log can share a database with the server
configuration, or live in a file of its own. A chain is per (gateway, node): several nodes of
one gateway sharing one PostgreSQL each append to their own chain, so no node ever waits for
another's lock and a chain never depends on how two nodes' commits interleaved. The
`messagelog_chains` row of a chain holds its head (serialising writers of that chain), how far
it is timestamped, and where purging left its start.

Signed roots and OCSP responses are shared by many records (a batch, an hour of traffic), so
they are stored once, content-addressed, in `messagelog_blobs`; records name them by SHA-256,
which is also what the record hash covers.

Records are stored lean (issue 16; gateway.messagelog.packing says how each form reads back to
the record's own bytes): bodies compressed (`body_codec`) before encryption; proofs as binary
steps (`proof_steps`, `log_signature_steps`) rather than JSON; a timestamp batch's proofs
rebuilt from its leaves, stored once in its `messagelog_timestamps` row; a one-part manifest as
its digest. Rows stored before revision 0005 keep the full forms, and reading takes either:
`proof_json` NULL with `proof_steps` set, `log_signature_proof` or `timestamp_proof` empty (""),
and a `manifest` starting with NUL mean "rebuild it".
"""

from __future__ import annotations

from typing import Final

import sqlalchemy as sa

from gateway.db import NAMING_CONVENTION, BigId, UtcDateTime, one_of
from gateway.messagelog.record import Direction, MessageKind, Side

# xgate's naming convention: constraint names stay predictable for migrations.
metadata: Final = sa.MetaData(naming_convention=NAMING_CONVENTION)

_Digest = sa.LargeBinary(32)


chains: Final = sa.Table(
    "messagelog_chains",
    metadata,
    sa.Column("gateway", sa.Text, primary_key=True),
    sa.Column("node", sa.Text, primary_key=True),
    sa.Column("head_seq", sa.BigInteger, nullable=False),  # 0: nothing logged yet
    sa.Column("head_hash", _Digest, nullable=False),
    sa.Column("stamped_seq", sa.BigInteger, nullable=False),  # records up to here are timestamped
    sa.Column("purged_seq", sa.BigInteger, nullable=False),  # records up to here were purged
    sa.Column("purged_hash", _Digest, nullable=False),  # the last purged record's hash
    sa.CheckConstraint("0 <= purged_seq AND purged_seq <= stamped_seq AND stamped_seq <= head_seq", "order"),
)
"""One row per chain: its head, timestamping watermark and purge anchor."""

blobs: Final = sa.Table(
    "messagelog_blobs",
    metadata,
    sa.Column("sha256", _Digest, primary_key=True),  # of the blob itself, not of its stored form
    sa.Column("data", sa.LargeBinary, nullable=False),
    # packing.pack_blob: NULL as it is, "zstd" compressed, "zstd-c" a signed root compressed
    # without its certificate, which is the blob `ref_sha256` (stored once for all its batches).
    sa.Column("codec", sa.String(8), nullable=True),
    sa.Column("ref_sha256", _Digest, nullable=True),
    sa.Index("ix_messagelog_blobs_ref", "ref_sha256"),  # purge: is a certificate still named?
)
"""Signed roots, OCSP responses and signers' certificates, once each, by their SHA-256."""

timestamps: Final = sa.Table(
    "messagelog_timestamps",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("gateway", sa.Text, nullable=False),
    sa.Column("node", sa.Text, nullable=False),
    sa.Column("first_seq", sa.BigInteger, nullable=False),
    sa.Column("last_seq", sa.BigInteger, nullable=False),
    sa.Column("root", _Digest, nullable=False),  # the hash-tree root over the records' hashes
    sa.Column("token", sa.LargeBinary, nullable=False),  # RFC 3161 TimeStampToken, DER
    sa.Column("stamped_at", UtcDateTime, nullable=False),  # our clock when stored
    # The batch's leaves (its records' hashes, in seq order; packing.pack_leaves), from which each
    # record's proof is rebuilt; NULL for batches stamped before 0005 (proofs kept per record).
    sa.Column("leaves", sa.LargeBinary, nullable=True),
    sa.CheckConstraint("first_seq <= last_seq", "range"),
    sa.Index("ix_messagelog_timestamps_chain", "gateway", "node", "last_seq"),
)
"""One RFC 3161 token per batch of records (DESIGN.md "One signer": the same idea timestamps)."""

records: Final = sa.Table(
    "messagelog_records",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("gateway", sa.Text, nullable=False),
    sa.Column("node", sa.Text, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),  # 1, 2, 3... within the chain
    sa.Column("prev_hash", _Digest, nullable=False),
    sa.Column("record_hash", _Digest, nullable=False),
    sa.Column("exchange_id", sa.Text, nullable=False),
    sa.Column("side", sa.String(8), nullable=False),
    sa.Column("direction", sa.String(8), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("logged_at", UtcDateTime, nullable=False),
    sa.Column("message_id", sa.Text, nullable=False),
    sa.Column("client", sa.Text, nullable=False),
    sa.Column("service", sa.Text, nullable=False),
    sa.Column("user_id", sa.Text, nullable=True),
    sa.Column("issue", sa.Text, nullable=True),
    sa.Column("represented_party", sa.Text, nullable=True),
    sa.Column("content_type", sa.Text, nullable=False),
    sa.Column("message", sa.LargeBinary, nullable=True),  # plaintext, or ciphertext when body_key_id
    sa.Column("body_key_id", sa.String(64), nullable=True),
    sa.Column("body_nonce", sa.LargeBinary, nullable=True),
    sa.Column("message_sha256", sa.String(64), nullable=True),  # of the plaintext
    sa.Column("rest_head", sa.LargeBinary, nullable=True),  # the signed REST head (record.LogRecord)
    # record.LogRecord.logged_parts, comma-separated ("" none); NULL: stored before the field existed
    sa.Column("logged_parts", sa.Text, nullable=True),
    sa.Column("manifest", sa.LargeBinary, nullable=False),
    sa.Column("signed_root_sha256", _Digest, sa.ForeignKey("messagelog_blobs.sha256"), nullable=True),
    sa.Column("proof_json", sa.Text, nullable=True),
    sa.Column("ocsp_sha256", _Digest, sa.ForeignKey("messagelog_blobs.sha256"), nullable=True),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("fault_detail", sa.Text, nullable=True),
    sa.Column("timestamp_id", sa.BigInteger, sa.ForeignKey("messagelog_timestamps.id"), nullable=True),
    sa.Column("timestamp_proof", sa.Text, nullable=True),
    sa.Column("archived_at", UtcDateTime, nullable=True),
    sa.Column("archive_id", sa.Text, nullable=True),
    # The gateway owner's signature over the record hashes of the record's commit batch
    # (gateway.messagelog.logsig), and this record's path to its signed root.
    sa.Column("log_signature_sha256", _Digest, sa.ForeignKey("messagelog_blobs.sha256"), nullable=True),
    sa.Column("log_signature_proof", sa.Text, nullable=True),  # "": rebuilt from log_signature_steps
    sa.Column("body_codec", sa.String(8), nullable=True),  # packing.ZSTD, or NULL: stored as it came
    sa.Column("proof_steps", sa.LargeBinary, nullable=True),  # packing.pack_steps of proof_json
    sa.Column("log_signature_steps", sa.LargeBinary, nullable=True),  # of log_signature_proof
    sa.UniqueConstraint("gateway", "node", "seq"),
    sa.CheckConstraint(one_of("side", Side), "side"),
    sa.CheckConstraint(one_of("direction", Direction), "direction"),
    sa.CheckConstraint(one_of("kind", MessageKind), "kind"),
    sa.CheckConstraint("(body_key_id IS NULL) = (body_nonce IS NULL)", "body_key_whole"),
    sa.CheckConstraint("(timestamp_id IS NULL) = (timestamp_proof IS NULL)", "timestamp_whole"),
    sa.CheckConstraint("(archived_at IS NULL) = (archive_id IS NULL)", "archive_whole"),
    sa.CheckConstraint(
        "(log_signature_sha256 IS NULL) = (log_signature_proof IS NULL)", "log_signature_whole"
    ),
    # The security officer's searches (store.search) and the purge's reference checks.
    sa.Index("ix_messagelog_records_message_id", "message_id"),
    sa.Index("ix_messagelog_records_exchange_id", "exchange_id"),
    sa.Index("ix_messagelog_records_client", "client", "logged_at"),
    sa.Index("ix_messagelog_records_service", "service", "logged_at"),
    sa.Index("ix_messagelog_records_user_id", "user_id", "logged_at"),
    sa.Index("ix_messagelog_records_logged_at", "logged_at"),
    sa.Index("ix_messagelog_records_outcome", "outcome", "logged_at"),
    sa.Index("ix_messagelog_records_signed_root", "signed_root_sha256"),
    sa.Index("ix_messagelog_records_ocsp", "ocsp_sha256"),
    sa.Index("ix_messagelog_records_timestamp", "timestamp_id"),
)
"""One row per logged message, in its chain's order."""

heads: Final = sa.Table(
    "messagelog_heads",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("gateway", sa.Text, nullable=False),
    sa.Column("node", sa.Text, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),  # the chain's head when the head was signed
    sa.Column("record_hash", _Digest, nullable=False),
    sa.Column("signed_at", UtcDateTime, nullable=False),
    sa.Column(
        "document", sa.Text, nullable=False
    ),  # the signed head, one JSON line (gateway.messagelog.heads)
    sa.Index("ix_messagelog_heads_chain", "gateway", "node", "seq"),
)
"""Signed, timestamped log heads (gateway.messagelog.heads): copies of what the head file and the
witness keep, so the database alone shows when they were last written."""

verified: Final = sa.Table(
    "messagelog_verified",
    metadata,
    sa.Column("gateway", sa.Text, primary_key=True),
    sa.Column("node", sa.Text, primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),  # records up to here checked out
    sa.Column("record_hash", _Digest, nullable=False),  # record `seq`'s hash: the next one's prev_hash
    sa.Column("verified_at", UtcDateTime, nullable=False),
)
"""Where each chain was last verified up to (gateway.messagelog.verify_db): an incremental
verification starts after it; a full one (`xgate log verify --full`) ignores it."""
