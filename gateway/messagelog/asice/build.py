"""Building a container from one logged message, and the RFC 3161 token forms it carries."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from asn1crypto import cms, tsp
from lxml import etree

from gateway.crypto.hashtree import Proof, root_from_proof
from gateway.crypto.rootsig import SHA256_URI
from gateway.crypto.timestamp import TimestampError, parse_timestamp_response, parse_timestamp_token
from gateway.messagelog.asice.layout import (
    _EPOCH_OF_ZIP,
    _MEDIA_TYPES,
    _REST_HEAD_FILES,
    ASIC_MANIFEST,
    ASIC_NS,
    DS_NS,
    LOG_SIGNATURE,
    LOG_SIGNATURE_PROOF,
    MANIFEST_TXT,
    MEDIA_TYPE,
    MIMETYPE,
    OCSP,
    PROOF,
    RECORD,
    RECORD_FORMAT,
    SIGNATURE,
    TIMESTAMP,
    TIMESTAMP_PROOF,
    ContainerError,
    message_file_name,
    parse_manifest,
)
from gateway.messagelog.asice.proof import decode_proof, encode_proof
from gateway.messagelog.record import OUTCOME_OK, LoggedPart, LogRecord, chain_hash
from gateway.protocol.transport import PartName

# --- building ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoggedMessage:
    """One log record with the evidence around it: everything a container is made of.

    `prev_hash` is the chain hash of the record before it (record.GENESIS_HASH for the first);
    `timestamp_token` is the RFC 3161 TimeStampToken (DER; a whole TimeStampResp is accepted
    too) whose message imprint is the root of the log batch that held this record, and
    `timestamp_proof` the path from this record's chain hash to that root. `rest_head` is the
    signed REST head part: by default the record's own (`LogRecord.rest_head`); given here
    for a record that does not keep it, it must not contradict one the record keeps.
    """

    record: LogRecord
    prev_hash: bytes
    timestamp_token: bytes | None = None
    timestamp_proof: Proof | None = None
    rest_head: bytes | None = None
    log_signature: bytes | None = None  # the gateway's signed root over the record hash (logsig)
    log_signature_proof: str | None = None  # asice.encode_proof text: record hash -> that root

    def __post_init__(self) -> None:
        if self.rest_head is None:
            object.__setattr__(self, "rest_head", self.record.rest_head)
        elif self.record.rest_head is not None and self.rest_head != self.record.rest_head:
            raise ValueError("the REST head given is not the one the record keeps")

    @property
    def record_hash(self) -> bytes:
        return chain_hash(self.prev_hash, self.record)


def build_container(message: LoggedMessage) -> bytes:
    """The ASiC-E container for one logged message (module docstring has the layout).

    Refuses (ValueError) evidence that does not fit together, so no container is written that
    could never verify: a body or REST head whose digest is not the manifest's, a proof for
    another leaf, a token that stamps something other than the proof's root.
    """
    record = message.record
    entries = {entry.name: entry for entry in parse_manifest(record.manifest)}
    files: dict[str, bytes] = {}
    media_types: dict[str, str] = {}

    message_entry = entries[PartName.MESSAGE]
    if (
        record.logged_parts is not None
        and LoggedPart.MESSAGE in record.logged_parts
        and record.message is None
    ):
        raise ValueError(
            "the record's body was logged but is not at hand (encrypted at rest: give the body keys)"
        )
    if record.message is not None:
        _expect_digest(record.message, message_entry.digest, "the logged message")
        name = message_file_name(message_entry.content_type)
        files[name] = record.message
        media_types[name] = message_entry.content_type
    for part, file_name in _REST_HEAD_FILES.items():
        if part in entries and message.rest_head is not None:
            _expect_digest(message.rest_head, entries[part].digest, f"the {part} head")
            files[file_name] = message.rest_head
    if message.rest_head is not None and not any(part in entries for part in _REST_HEAD_FILES):
        raise ValueError("a REST head was given but the manifest lists none")
    files[MANIFEST_TXT] = record.manifest

    if (record.signed_root_xml is None) != (record.proof_json is None):
        raise ValueError("a record must have both a signed root and its proof, or neither")
    if record.signed_root_xml is None and record.outcome == OUTCOME_OK:
        raise ValueError("only a fault is logged unsigned (record.py), yet this record's outcome is ok")
    if record.signed_root_xml is not None and record.proof_json is not None:
        proof = decode_proof(record.proof_json)
        if proof.leaf != hashlib.sha256(record.manifest).digest():
            raise ValueError("the record's proof is not for its manifest")
        files[SIGNATURE] = record.signed_root_xml
        files[PROOF] = record.proof_json.encode("utf-8")
    if record.ocsp_response is not None:
        files[OCSP] = record.ocsp_response

    record_hash = message.record_hash
    files[RECORD] = _record_document(message, record_hash)
    if (message.timestamp_token is None) != (message.timestamp_proof is None):
        raise ValueError("a timestamp token comes with its proof, or neither is given")
    if message.timestamp_token is not None and message.timestamp_proof is not None:
        token = timestamp_token_of(message.timestamp_token)
        stamped_root = root_from_proof(record_hash, message.timestamp_proof)
        if stamped_imprint(token) != stamped_root:
            raise ValueError("the timestamp token does not stamp the root the record's proof leads to")
        files[TIMESTAMP] = timestamp_response(token)
        files[TIMESTAMP_PROOF] = encode_proof(record_hash, message.timestamp_proof).encode("ascii")

    if (message.log_signature is None) != (message.log_signature_proof is None):
        raise ValueError("a record signature comes with its proof, or neither is given")
    if message.log_signature is not None and message.log_signature_proof is not None:
        if decode_proof(message.log_signature_proof).leaf != record_hash:
            raise ValueError("the record signature's proof is not for this record's hash")
        files[LOG_SIGNATURE] = message.log_signature
        files[LOG_SIGNATURE_PROOF] = message.log_signature_proof.encode("ascii")

    media_types.update((name, _MEDIA_TYPES[name]) for name in files if name not in media_types)
    files[ASIC_MANIFEST] = _asic_manifest(files, media_types)
    return _zip(files, record.logged_at)


def _expect_digest(data: bytes, digest: bytes, what: str) -> None:
    if hashlib.sha256(data).digest() != digest:
        raise ValueError(f"{what} does not have the digest the manifest lists")


def _record_document(message: LoggedMessage, record_hash: bytes) -> bytes:
    """record.json: the chained fields as record.py defines them, and how they chain.

    Indented for reading; the content digest is over the canonical re-encoding of `content`
    (record.LogRecord.content_digest). The layout is still fixed, and checked, so that every
    byte of a container is accounted for.
    """
    document = {
        "format": RECORD_FORMAT,
        "content": message.record.content_fields(),
        "content_digest": message.record.content_digest().hex(),
        "prev_hash": message.prev_hash.hex(),
        "record_hash": record_hash.hex(),
    }
    return _record_json(document)


def _record_json(document: Mapping[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _asic_manifest(files: Mapping[str, bytes], media_types: Mapping[str, str]) -> bytes:
    """META-INF/manifest.xml: ASiCManifest-style DataObjectReferences, one per file (module docstring)."""
    root = etree.Element(f"{{{ASIC_NS}}}ASiCManifest", nsmap={"asic": ASIC_NS, "ds": DS_NS})
    for name in sorted(files):
        reference = etree.SubElement(root, f"{{{ASIC_NS}}}DataObjectReference")
        reference.set("URI", name)
        reference.set("MimeType", media_types[name])
        etree.SubElement(reference, f"{{{DS_NS}}}DigestMethod").set("Algorithm", SHA256_URI)
        digest = base64.b64encode(hashlib.sha256(files[name]).digest()).decode("ascii")
        etree.SubElement(reference, f"{{{DS_NS}}}DigestValue").text = digest
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8") + b"\n"


def _zip(files: Mapping[str, bytes], logged_at: dt.datetime) -> bytes:
    """The zip: `mimetype` first and stored (EN 319 162-1 Annex A), then the files in a fixed order.

    Entries carry the log time, so the same record always gives the same bytes.
    """
    date_time = zip_date_time(logged_at)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.comment = f"mimetype={MEDIA_TYPE}".encode("ascii")  # EN 319 162-1 Annex A, optional
        archive.writestr(zipfile.ZipInfo(MIMETYPE, date_time), MEDIA_TYPE, zipfile.ZIP_STORED)
        for name in sorted(files, key=lambda n: (n.startswith("META-INF/"), n)):
            info = zipfile.ZipInfo(name, date_time)
            info.external_attr = 0o644 << 16
            archive.writestr(info, files[name], zipfile.ZIP_DEFLATED, compresslevel=6)
    return buffer.getvalue()


def zip_date_time(moment: dt.datetime) -> tuple[int, int, int, int, int, int]:
    """A zip entry's time: UTC, since zip has no zone, and nothing before 1980, which it cannot hold."""
    utc = max(moment.astimezone(dt.UTC), _EPOCH_OF_ZIP)
    return (utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second)


# --- RFC 3161 tokens -----------------------------------------------------------------------


def timestamp_token_of(der: bytes) -> bytes:
    """The TimeStampToken (RFC 3161 §2.4.2) in `der`, which is either the token or a granted TimeStampResp."""
    try:
        return parse_timestamp_token(der).der
    except TimestampError:
        pass
    try:
        return parse_timestamp_response(der).der
    except (TimestampError, ValueError) as exc:  # asn1crypto parses lazily: ValueError can surface late
        raise ContainerError(f"not an RFC 3161 token or granted response: {exc}") from exc


def timestamp_response(token: bytes) -> bytes:
    """A granted TimeStampResp around `token`, the form `openssl ts -verify -in` reads.

    The status is unsigned in RFC 3161 (§2.4.2); the token inside, which is signed, is kept
    byte for byte.
    """
    response = bytes(
        tsp.TimeStampResp(
            {"status": {"status": "granted"}, "time_stamp_token": cms.ContentInfo.load(token)}
        ).dump()
    )
    if token not in response:  # asn1crypto re-emits a parsed value as read; make sure of it
        raise ContainerError("the token did not survive wrapping unchanged")
    return response


def stamped_imprint(token: bytes) -> bytes:
    """The SHA-256 digest a token stamps (RFC 3161 §2.4.2 TSTInfo.messageImprint), unverified."""
    try:
        parsed = parse_timestamp_token(token)
    except TimestampError as exc:
        raise ContainerError(str(exc)) from exc
    if parsed.hash_algorithm != "sha256":
        raise ContainerError(f"timestamp token's imprint uses {parsed.hash_algorithm}, not sha256")
    return parsed.hashed_message
