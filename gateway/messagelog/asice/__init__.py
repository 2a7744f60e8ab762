"""ASiC-E containers: one logged message with everything needed to prove it, offline, years later.

The package's face; docs/verification.md walks through a container by hand. Modules: `layout`
(file names, media types, limits, the transport manifest), `proof` (hash-tree proofs as JSON),
`build` (a container from a logged message; RFC 3161 token forms), `zipread` (reading an
untrusted zip safely), `verify` (every check, offline). Sans-IO: bytes and values in, bytes
and reports out.
"""

from __future__ import annotations

from gateway.messagelog.asice.build import (
    LoggedMessage,
    build_container,
    stamped_imprint,
    timestamp_response,
    timestamp_token_of,
    zip_date_time,
)
from gateway.messagelog.asice.layout import (
    ASIC_MANIFEST,
    ASIC_NS,
    CONTAINER_NAMES,
    DS_NS,
    MANIFEST_TXT,
    MAX_CONTAINER_BYTES,
    MAX_ENTRIES,
    MAX_EVIDENCE_FILE_BYTES,
    MAX_MESSAGE_FILE_BYTES,
    MAX_UNCOMPRESSED_BYTES,
    MEDIA_TYPE,
    MESSAGE_BIN,
    MESSAGE_XML,
    MIMETYPE,
    OCSP,
    PROOF,
    PROOF_FORMAT,
    RECORD,
    RECORD_FORMAT,
    REST_REQUEST,
    REST_RESPONSE,
    SIGNATURE,
    TIMESTAMP,
    TIMESTAMP_PROOF,
    ContainerError,
    ManifestEntry,
    message_file_name,
    parse_manifest,
)
from gateway.messagelog.asice.proof import (
    ProofDocument,
    decode_proof,
    encode_proof,
    manifest_and_proof,
)
from gateway.messagelog.asice.verify import (
    Check,
    ContainerReport,
    verify_container,
)
from gateway.messagelog.asice.zipread import (
    ZipLimits,
    checked_entries,
    read_container,
    read_entry,
)

__all__ = [
    "ASIC_MANIFEST",
    "ASIC_NS",
    "CONTAINER_NAMES",
    "DS_NS",
    "MANIFEST_TXT",
    "MAX_CONTAINER_BYTES",
    "MAX_ENTRIES",
    "MAX_EVIDENCE_FILE_BYTES",
    "MAX_MESSAGE_FILE_BYTES",
    "MAX_UNCOMPRESSED_BYTES",
    "MEDIA_TYPE",
    "MESSAGE_BIN",
    "MESSAGE_XML",
    "MIMETYPE",
    "OCSP",
    "PROOF",
    "PROOF_FORMAT",
    "RECORD",
    "RECORD_FORMAT",
    "REST_REQUEST",
    "REST_RESPONSE",
    "SIGNATURE",
    "TIMESTAMP",
    "TIMESTAMP_PROOF",
    "Check",
    "ContainerError",
    "ContainerReport",
    "LoggedMessage",
    "ManifestEntry",
    "ProofDocument",
    "ZipLimits",
    "build_container",
    "checked_entries",
    "decode_proof",
    "encode_proof",
    "manifest_and_proof",
    "message_file_name",
    "parse_manifest",
    "read_container",
    "read_entry",
    "stamped_imprint",
    "timestamp_response",
    "timestamp_token_of",
    "verify_container",
    "zip_date_time",
]
