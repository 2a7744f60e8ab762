"""ASiC-E containers: one logged message with everything needed to prove it, offline, years later.

A security officer who is handed a container can check, with no gateway and no database,
that the message bytes are the ones the sending gateway signed (manifest -> hash-tree proof
-> XML-DSig over the root, chained to a federation CA) and that the log held this record at
a time a TSA vouches for (record -> chain hash -> timestamp proof -> RFC 3161 token).
docs/verification.md does every step by hand with unzip, sha256sum, openssl and xmlsec1;
:func:`verify_container` does the same in code.

The zip layout follows ASiC-E (ETSI EN 319 162-1 §4.4 and Annex A): `mimetype` first, stored,
no extra field, so `file(1)`-style sniffing finds the media type at byte 38:

    mimetype                        application/vnd.etsi.asic-e+zip
    message.xml | message.bin       the message exactly as logged (absent: body logging off)
    rest-request.json | rest-response.json   the signed REST head, when there is one
    manifest.txt                    the transport manifest: its SHA-256 is the signed leaf
    META-INF/signatures0.xml        the xg:SignedRoot, byte for byte as signed
    META-INF/proof.json             leaf (manifest digest) -> signed root (PROOF_FORMAT)
    META-INF/record.json            the log record's content fields and chain hashes
    META-INF/timestamp.tsr          RFC 3161 TimeStampResp over the log batch root
    META-INF/timestamp-proof.json   record hash -> stamped root (PROOF_FORMAT)
    META-INF/ocsp.der               the signer's OCSP response, when the record has one
    META-INF/manifest.xml           every other file with its media type and SHA-256

`META-INF/manifest.xml` uses the element vocabulary of EN 319 162-1's ASiCManifest schema
(DataObjectReference with URI, MimeType, ds:DigestMethod, ds:DigestValue), because the
OpenDocument manifest has no digests. It is not a signed ASiCManifest (it has no
SigReference): it is an index, checked entry by entry. What binds the files is the chain
above, not this list. Generic ASiC validators will not understand `signatures0.xml` (it is
not XAdES); `xmlsec1` and this module do.

Sans-IO: bytes and values in, bytes and reports out.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import io
import json
import re
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from asn1crypto import cms, tsp
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from lxml import etree

from gateway.crypto.hashtree import DIGEST_SIZE, Proof, ProofStep, Side, root_from_proof
from gateway.crypto.rootsig import (
    SHA256_URI,
    SignatureVerificationError,
    VerifiedRoot,
    verify_root_signature,
)
from gateway.crypto.timestamp import (
    TimestampError,
    parse_timestamp_response,
    parse_timestamp_token,
    verify_timestamp_token,
)
from gateway.messagelog.record import OUTCOME_OK, LogRecord, chain_hash
from gateway.protocol.transport import MANIFEST_FIRST_LINE, MAX_PROOF_STEPS, PartName
from gateway.xmlsafe import UnsafeXml, XmlSyntaxError, parse_xml

MEDIA_TYPE: Final = "application/vnd.etsi.asic-e+zip"  # ETSI EN 319 162-1, ASiC-E

MIMETYPE: Final = "mimetype"
MESSAGE_XML: Final = "message.xml"
MESSAGE_BIN: Final = "message.bin"
REST_REQUEST: Final = "rest-request.json"
REST_RESPONSE: Final = "rest-response.json"
MANIFEST_TXT: Final = "manifest.txt"
SIGNATURE: Final = "META-INF/signatures0.xml"
PROOF: Final = "META-INF/proof.json"
RECORD: Final = "META-INF/record.json"
TIMESTAMP: Final = "META-INF/timestamp.tsr"
TIMESTAMP_PROOF: Final = "META-INF/timestamp-proof.json"
OCSP: Final = "META-INF/ocsp.der"
ASIC_MANIFEST: Final = "META-INF/manifest.xml"

CONTAINER_NAMES: Final = frozenset(
    {
        MIMETYPE,
        MESSAGE_XML,
        MESSAGE_BIN,
        REST_REQUEST,
        REST_RESPONSE,
        MANIFEST_TXT,
        SIGNATURE,
        PROOF,
        RECORD,
        TIMESTAMP,
        TIMESTAMP_PROOF,
        OCSP,
        ASIC_MANIFEST,
    }
)
"""The only names a container may hold: our own layout, so anything else is refused."""

_REST_HEAD_FILES: Final = {PartName.REST_REQUEST: REST_REQUEST, PartName.REST_RESPONSE: REST_RESPONSE}

_MEDIA_TYPES: Final = {
    REST_REQUEST: "application/json",
    REST_RESPONSE: "application/json",
    MANIFEST_TXT: "text/plain; charset=us-ascii",
    SIGNATURE: "application/xml",
    PROOF: "application/json",
    RECORD: "application/json",
    TIMESTAMP: "application/timestamp-reply",  # RFC 3161 §4
    TIMESTAMP_PROOF: "application/json",
    OCSP: "application/ocsp-response",  # RFC 6960 Appendix C.2
}
"""Media types of the evidence files; the message's is its own, from the manifest."""

_XML_MEDIA_TYPES: Final = frozenset({"text/xml", "application/soap+xml", "application/xml"})
"""A message of one of these types is stored as `message.xml`; anything else (SOAP with
attachments, a REST body) as `message.bin`."""

ASIC_NS: Final = "http://uri.etsi.org/02918/v1.2.1#"  # ETSI EN 319 162-1 ASiC schema namespace
DS_NS: Final = "http://www.w3.org/2000/09/xmldsig#"

PROOF_FORMAT: Final = "xgate-proof/1"
RECORD_FORMAT: Final = "xgate-container-record/1"

# --- limits: a container is read from wherever an officer found it, so it is untrusted ----

MAX_CONTAINER_BYTES: Final = 128 * 1024 * 1024
"""One message (config.DEFAULT_MAX_MESSAGE_BYTES is 10 MB, operators may raise it) plus a few
KB of evidence; 128 MB is far above any real container and bounds what we read into memory."""

MAX_MESSAGE_FILE_BYTES: Final = 96 * 1024 * 1024
"""Uncompressed message or REST head: what the gateway could have accepted, with room to spare."""

MAX_EVIDENCE_FILE_BYTES: Final = 1024 * 1024
"""Any other file: signatures are <64 KB (rootsig.MAX_SIGNED_ROOT_BYTES), proofs and tokens a few KB."""

MAX_UNCOMPRESSED_BYTES: Final = MAX_CONTAINER_BYTES
"""All files together, uncompressed: the zip-bomb bound, checked on declared and on real sizes."""

MAX_ENTRIES: Final = len(CONTAINER_NAMES)
"""We write at most every known name once; a central directory with more is not ours."""

_SIDES: Final = (Side.LEFT.value, Side.RIGHT.value)
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_MANIFEST_LINE = re.compile(rb"(rest-request|rest-response|message) ([0-9a-f]{64}) ([\x20-\x7e]+)\n")
_MANIFEST_LAYOUTS: Final = (
    [PartName.MESSAGE],
    [PartName.REST_REQUEST, PartName.MESSAGE],
    [PartName.REST_RESPONSE, PartName.MESSAGE],
)
"""The signed parts of a SOAP message, a REST request and a REST response (docs/transport.md)."""
_EPOCH_OF_ZIP: Final = dt.datetime(1980, 1, 1, tzinfo=dt.UTC)  # the earliest time a zip entry can hold


class ContainerError(ValueError):
    """A container (or archive) is unsafe or malformed; the message says which rule it broke."""


# --- hash-tree proofs as JSON --------------------------------------------------------------


@dataclass(frozen=True)
class ProofDocument:
    """A proof that `leaf` is in the tree whose root is `root` (RFC 6962 §2.1 hashing, hashtree.py)."""

    leaf: bytes
    steps: Proof
    root: bytes


def encode_proof(leaf: bytes, steps: Proof) -> str:
    """The PROOF_FORMAT text for `leaf` and its steps: what `LogRecord.proof_json` and the
    container's proof files hold.

    Canonical JSON (sorted keys, no spaces), hex digests, steps from the leaf upwards, each
    naming the side its sibling is on (docs/verification.md shows a 10-line checker):
    `{"format":"xgate-proof/1","leaf":HEX,"root":HEX,"steps":[{"side":"right","sibling":HEX},...]}`.
    """
    root = root_from_proof(leaf, steps)
    document = {
        "format": PROOF_FORMAT,
        "leaf": leaf.hex(),
        "root": root.hex(),
        "steps": [{"side": str(side), "sibling": sibling.hex()} for side, sibling in steps],
    }
    return _canonical_json(document).decode("ascii")


def decode_proof(text: str) -> ProofDocument:
    """Parse PROOF_FORMAT strictly; the steps must lead from `leaf` to the stated `root`."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ContainerError(f"proof is not JSON: {exc}") from exc
    if not isinstance(value, dict) or set(value) != {"format", "leaf", "root", "steps"}:
        raise ContainerError("proof must hold exactly format, leaf, root and steps")
    if value["format"] != PROOF_FORMAT:
        raise ContainerError(f"proof format must be {PROOF_FORMAT}, not {value['format']!r}")
    raw_steps = value["steps"]
    if not isinstance(raw_steps, list) or len(raw_steps) > MAX_PROOF_STEPS:
        raise ContainerError(f"proof steps must be a list of at most {MAX_PROOF_STEPS}")
    steps: list[ProofStep] = []
    for step in raw_steps:
        if not isinstance(step, dict) or set(step) != {"side", "sibling"} or step["side"] not in _SIDES:
            raise ContainerError('each proof step must be {"side": "left"|"right", "sibling": HEX}')
        steps.append(ProofStep(Side(step["side"]), _digest_from_hex(step["sibling"], "proof sibling")))
    document = ProofDocument(
        _digest_from_hex(value["leaf"], "proof leaf"),
        tuple(steps),
        _digest_from_hex(value["root"], "proof root"),
    )
    if not hmac.compare_digest(root_from_proof(document.leaf, document.steps), document.root):
        raise ContainerError("the proof's steps do not lead from its leaf to its root")
    if text != encode_proof(document.leaf, document.steps):
        raise ContainerError(f"the proof is not in the canonical form of {PROOF_FORMAT}")
    return document


def _digest_from_hex(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not _HEX_DIGEST.fullmatch(value):
        raise ContainerError(f"{what} must be {DIGEST_SIZE * 2} lower-case hex digits")
    return bytes.fromhex(value)


# --- the transport manifest ----------------------------------------------------------------


@dataclass(frozen=True)
class ManifestEntry:
    """One line of the transport manifest (docs/transport.md "Manifest and leaf digest")."""

    name: str
    digest: bytes
    content_type: str


def parse_manifest(text: bytes) -> tuple[ManifestEntry, ...]:
    """The entries of a transport manifest, which must be exactly in the documented form."""
    if not text.startswith(MANIFEST_FIRST_LINE):
        raise ContainerError("manifest.txt does not start with xgate-manifest/1")
    entries: list[ManifestEntry] = []
    position = len(MANIFEST_FIRST_LINE)
    while position < len(text):
        line = _MANIFEST_LINE.match(text, position)
        if line is None:
            raise ContainerError(
                f"manifest.txt line {len(entries) + 2} is not 'NAME SHA256-HEX CONTENT-TYPE'"
            )
        entries.append(ManifestEntry(line[1].decode(), bytes.fromhex(line[2].decode()), line[3].decode()))
        position = line.end()
    names = [entry.name for entry in entries]
    if names not in _MANIFEST_LAYOUTS:
        raise ContainerError(f"manifest.txt lists parts {names}, not a transport message's")
    return tuple(entries)


def message_file_name(content_type: str) -> str:
    """`message.xml` for a bare XML message, `message.bin` for anything else."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    return MESSAGE_XML if media_type in _XML_MEDIA_TYPES else MESSAGE_BIN


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


# --- reading a zip safely ------------------------------------------------------------------


@dataclass(frozen=True)
class ZipLimits:
    """Bounds on what reading an untrusted zip may cost (zip bombs, huge directories)."""

    max_bytes: int = MAX_CONTAINER_BYTES
    max_entries: int = MAX_ENTRIES
    max_entry_bytes: int = MAX_MESSAGE_FILE_BYTES
    max_total_bytes: int = MAX_UNCOMPRESSED_BYTES


def checked_entries(archive: zipfile.ZipFile, limits: ZipLimits) -> list[zipfile.ZipInfo]:
    """The entries of `archive`, once their names and declared sizes are known to be safe.

    Refuses path traversal and absolute names (zip-slip: an unzip would write outside its
    directory), duplicate names (two readers could pick different ones), directories,
    encryption, and declared sizes over the limits. Real sizes are bounded again while
    reading (:func:`read_entry`): declared sizes are only the attacker's word.
    """
    infos = archive.infolist()
    if len(infos) > limits.max_entries:
        raise ContainerError(f"zip has {len(infos)} entries, more than {limits.max_entries}")
    seen: set[str] = set()
    total = 0
    for info in infos:
        name = info.filename
        if name.startswith("/") or re.match(r"[A-Za-z]:", name) or "\\" in name:
            raise ContainerError(f"zip entry {name!r} has an absolute or non-portable path")
        if ".." in name.split("/") or "\x00" in name:
            raise ContainerError(f"zip entry {name!r} climbs out of its directory")
        if name in seen:
            raise ContainerError(f"zip entry {name!r} appears twice")
        seen.add(name)
        if info.is_dir():
            raise ContainerError(f"zip entry {name!r} is a directory")
        if info.flag_bits & 0x1:
            raise ContainerError(f"zip entry {name!r} is encrypted")
        if info.file_size > limits.max_entry_bytes:
            raise ContainerError(f"zip entry {name!r} declares {info.file_size} bytes, over the limit")
        total += info.file_size
        if total > limits.max_total_bytes:
            raise ContainerError(f"zip entries declare more than {limits.max_total_bytes} bytes in all")
    return infos


def read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, max_bytes: int) -> bytes:
    """An entry's bytes, reading at most `max_bytes` whatever its header says (zip bombs)."""
    try:
        with archive.open(info) as stream:
            data = stream.read(max_bytes + 1)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise ContainerError(f"zip entry {info.filename!r} cannot be read: {exc}") from exc
    if len(data) > max_bytes:
        raise ContainerError(f"zip entry {info.filename!r} expands beyond {max_bytes} bytes")
    return data


def read_container(data: bytes, limits: ZipLimits = ZipLimits()) -> dict[str, bytes]:
    """The files of a container, after the zip-level rules of ASiC-E and of safety are checked."""
    if len(data) > limits.max_bytes:
        raise ContainerError(f"container of {len(data)} bytes is over the {limits.max_bytes}-byte limit")
    _check_mimetype_header(data)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ContainerError(f"not a readable zip: {exc}") from exc
    with archive:
        infos = checked_entries(archive, limits)
        if not infos or infos[0].filename != MIMETYPE or infos[0].header_offset != 0:
            raise ContainerError("mimetype must be the first entry")
        unknown = sorted(info.filename for info in infos if info.filename not in CONTAINER_NAMES)
        if unknown:
            raise ContainerError(f"unexpected files in the container: {', '.join(unknown)}")
        files: dict[str, bytes] = {}
        total = 0
        for info in infos:
            limit = limits.max_entry_bytes if _is_message_file(info.filename) else MAX_EVIDENCE_FILE_BYTES
            files[info.filename] = read_entry(archive, info, min(limit, limits.max_total_bytes - total))
            total += len(files[info.filename])
    if files[MIMETYPE] != MEDIA_TYPE.encode("ascii"):
        raise ContainerError(f"mimetype must be {MEDIA_TYPE}")
    if MESSAGE_XML in files and MESSAGE_BIN in files:
        raise ContainerError("a container holds one message file, not two")
    return files


def _is_message_file(name: str) -> bool:
    return name in (MESSAGE_XML, MESSAGE_BIN, REST_REQUEST, REST_RESPONSE)


def _check_mimetype_header(data: bytes) -> None:
    """EN 319 162-1 Annex A: the first local header is `mimetype`, stored, without an extra field.

    Read from the raw bytes (offset 30 is the name, 38 the content) because that is exactly
    what sniffing tools read, and zipfile would not tell us about the local extra field.
    """
    media_type = MEDIA_TYPE.encode("ascii")
    if len(data) < 38 + len(media_type) or data[:4] != b"PK\x03\x04":
        raise ContainerError("not a zip file (no local file header at the start)")
    method = int.from_bytes(data[8:10], "little")
    name_length = int.from_bytes(data[26:28], "little")
    extra_length = int.from_bytes(data[28:30], "little")
    if data[30 : 30 + name_length] != MIMETYPE.encode("ascii"):
        raise ContainerError("mimetype must be the first entry")
    if method != zipfile.ZIP_STORED or extra_length != 0:
        raise ContainerError("mimetype must be stored uncompressed and without an extra field")
    if data[38 : 38 + len(media_type)] != media_type:
        raise ContainerError(f"mimetype must be {MEDIA_TYPE}")


# --- verifying -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One verification step's outcome: its name, whether it passed, and why (or what it found)."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class ContainerReport:
    """Everything :func:`verify_container` checked, and what a valid container proves."""

    checks: tuple[Check, ...]
    record: Mapping[str, Any] | None = field(default=None, compare=False)
    signer: str | None = None
    signed_at: dt.datetime | None = None
    timestamped_at: dt.datetime | None = None
    record_hash: bytes | None = None
    body_included: bool = False

    @property
    def valid(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    @property
    def problems(self) -> tuple[str, ...]:
        return tuple(f"{check.name}: {check.detail}" for check in self.checks if not check.passed)


class _Failed(Exception):
    """A verification step's failure, turned into a failed :class:`Check` by its caller."""


def verify_container(
    data: bytes,
    *,
    trusted_cas: Sequence[x509.Certificate],
    trusted_tsa_certs: Sequence[x509.Certificate],
    tsa_ca_certs: Sequence[x509.Certificate] | None = None,
    require_timestamp: bool = True,
    limits: ZipLimits = ZipLimits(),
) -> ContainerReport:
    """Check a container completely and offline; `report.valid` says whether all steps passed.

    The steps are those of docs/verification.md: zip safety and layout; every file against
    META-INF/manifest.xml; the message and REST head against manifest.txt; the signed root
    against `trusted_cas` (rootsig.verify_root_signature); the proof from SHA-256(manifest.txt)
    to that root; the record's fields against the files and its chain hash; and the timestamp
    proof from the record hash to a root that the token, from one of `trusted_tsa_certs`
    (issued by `tsa_ca_certs`, by default `trusted_cas`), stamps.
    """
    try:
        files = read_container(data, limits)
    except ContainerError as exc:
        return ContainerReport((Check("zip", False, str(exc)),))
    checks = [Check("zip", True, f"ASiC-E layout, {len(files)} files")]
    state = _Verification(files)
    checks.append(_run("data files", state.check_data_files))
    checks.append(_run("message", state.check_parts))
    checks.append(_run("signature", lambda: state.check_signature(trusted_cas)))
    checks.append(_run("proof", state.check_proof))
    checks.append(_run("record", state.check_record))
    tsa_cas = trusted_cas if tsa_ca_certs is None else tsa_ca_certs
    if TIMESTAMP in files or TIMESTAMP_PROOF in files or require_timestamp:
        checks.append(_run("timestamp", lambda: state.check_timestamp(trusted_tsa_certs, tsa_cas)))
    return ContainerReport(
        tuple(checks),
        record=state.content,
        signer=state.verified.signer_cert.subject.rfc4514_string() if state.verified else None,
        signed_at=state.verified.signing_time if state.verified else None,
        timestamped_at=state.timestamped_at,
        record_hash=state.record_hash,
        body_included=MESSAGE_XML in files or MESSAGE_BIN in files,
    )


def _run(name: str, step: Callable[[], str]) -> Check:
    try:
        return Check(name, True, step())
    except (_Failed, ValueError) as exc:  # ValueError: ContainerError and malformed values met while parsing
        return Check(name, False, str(exc))


class _Verification:
    """The container's files and what the steps so far established, for the steps after them."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        self.files = files
        self.listed_media_types: dict[str, str] = {}
        self.verified: VerifiedRoot | None = None
        self.content: Mapping[str, Any] | None = None
        self.record_hash: bytes | None = None
        self.timestamped_at: dt.datetime | None = None

    def check_data_files(self) -> str:
        """Every file but mimetype and the manifest itself is listed, with its SHA-256, and nothing else."""
        if ASIC_MANIFEST not in self.files:
            raise _Failed(f"{ASIC_MANIFEST} is missing")
        listed = _read_asic_manifest(self.files[ASIC_MANIFEST])
        present = set(self.files) - {MIMETYPE, ASIC_MANIFEST}
        if set(listed) != present:
            missing, unlisted = sorted(set(listed) - present), sorted(present - set(listed))
            raise _Failed(f"manifest.xml and the files differ: missing {missing}, unlisted {unlisted}")
        for name, (media_type, digest) in sorted(listed.items()):
            if not hmac.compare_digest(hashlib.sha256(self.files[name]).digest(), digest):
                raise _Failed(f"{name} does not match its digest in manifest.xml")
            if name in _MEDIA_TYPES and media_type != _MEDIA_TYPES[name]:
                raise _Failed(f"manifest.xml gives {name} the media type {media_type!r}")
        self.listed_media_types = {name: media_type for name, (media_type, _) in listed.items()}
        data_files = {name: self.files[name] for name in listed}
        if self.files[ASIC_MANIFEST] != _asic_manifest(data_files, self.listed_media_types):
            raise _Failed("manifest.xml is not in the one form this format writes")
        return f"{len(listed)} files match manifest.xml"

    def check_parts(self) -> str:
        """The message (and REST head) bytes are the ones the signed manifest lists."""
        entries = {entry.name: entry for entry in parse_manifest(self._file(MANIFEST_TXT))}
        message_entry = entries[PartName.MESSAGE]
        found: list[str] = []
        for name in (MESSAGE_XML, MESSAGE_BIN):
            if name in self.files:
                if not hmac.compare_digest(hashlib.sha256(self.files[name]).digest(), message_entry.digest):
                    raise _Failed(f"{name} is not the message manifest.txt lists (its SHA-256 differs)")
                if name != message_file_name(message_entry.content_type):
                    raise _Failed(f"{name} is the wrong file name for {message_entry.content_type!r}")
                if (
                    self.listed_media_types.get(name, message_entry.content_type)
                    != message_entry.content_type
                ):
                    raise _Failed(f"manifest.xml and manifest.txt give {name} different media types")
                found.append(name)
        for part, name in _REST_HEAD_FILES.items():
            if name in self.files:
                if part not in entries:
                    raise _Failed(f"{name} is in the container but manifest.txt lists no {part}")
                digest = hashlib.sha256(self.files[name]).digest()
                if not hmac.compare_digest(digest, entries[part].digest):
                    raise _Failed(f"{name} is not the {part} manifest.txt lists (its SHA-256 differs)")
                found.append(name)
        if not found:
            return "no body in the container (body logging off): manifest.txt alone gives its digest"
        return f"{', '.join(found)} match manifest.txt"

    def check_signature(self, trusted_cas: Sequence[x509.Certificate]) -> str:
        if SIGNATURE not in self.files and PROOF not in self.files:
            return _UNSIGNED
        signed_root = self._file(SIGNATURE)
        try:
            self.verified = verify_root_signature(signed_root, trusted_cas)
        except SignatureVerificationError as exc:
            raise _Failed(str(exc)) from exc
        except Exception as exc:
            # A corrupted certificate can surface cryptography's own parse errors (InvalidVersion,
            # DuplicateExtension, ValueError) from deep in the check; a container is hostile input,
            # so whatever the verifier raises is a failed check, never a crash.
            raise _Failed(f"the signed root does not verify: {type(exc).__name__}: {exc}") from exc
        subject = self.verified.signer_cert.subject.rfc4514_string()
        return f"signed by {subject} at {self.verified.signing_time.isoformat()}"

    def check_proof(self) -> str:
        """SHA-256(manifest.txt) is the leaf, and the proof leads from it to the signed root."""
        if SIGNATURE not in self.files and PROOF not in self.files:
            return _UNSIGNED
        proof = decode_proof(_utf8(self._file(PROOF), PROOF))
        if not hmac.compare_digest(proof.leaf, hashlib.sha256(self._file(MANIFEST_TXT)).digest()):
            raise _Failed("the proof's leaf is not SHA-256(manifest.txt)")
        if self.verified is None:
            raise _Failed("there is no verified signed root to lead to")
        if not hmac.compare_digest(proof.root, self.verified.root):
            raise _Failed("the proof does not lead to the signed root")
        return f"{len(proof.steps)} steps from SHA-256(manifest.txt) to the signed root"

    def check_record(self) -> str:
        """record.json's fields describe these files, and its chain hash is theirs."""
        data = self._file(RECORD)
        document = _json_object(data, RECORD)
        if set(document) != _RECORD_KEYS or document["format"] != RECORD_FORMAT:
            raise _Failed(f"{RECORD} is not a {RECORD_FORMAT} document")
        if data != _record_json(document):
            raise _Failed(f"{RECORD} is not in the one form this format writes")
        content = document["content"]
        if not isinstance(content, dict):
            raise _Failed("the record's content must be a JSON object")
        content_digest = hashlib.sha256(_canonical_json(content)).digest()  # LogRecord.content_digest
        if content_digest != _digest_from_hex(document["content_digest"], "content_digest"):
            raise _Failed("content_digest is not the SHA-256 of the record's content")
        prev_hash = _digest_from_hex(document["prev_hash"], "prev_hash")
        record_hash = hashlib.sha256(prev_hash + content_digest).digest()  # record.chain_hash
        if record_hash != _digest_from_hex(document["record_hash"], "record_hash"):
            raise _Failed("record_hash is not SHA-256(prev_hash || content_digest)")
        self.content = content
        self._check_fields_describe_files(content)
        self.record_hash = record_hash
        return f"record hash {record_hash.hex()} covers the files"

    def _check_fields_describe_files(self, content: Mapping[str, Any]) -> None:
        """The chained fields name these very files by digest, so the timestamp covers them too."""
        expected = {
            "manifest_sha256": _sha256_hex(self.files.get(MANIFEST_TXT)),
            "signed_root_sha256": _sha256_hex(self.files.get(SIGNATURE)),
            "ocsp_response_sha256": _sha256_hex(self.files.get(OCSP)),
        }
        for key, value in expected.items():
            if content.get(key) != value:
                raise _Failed(f"the record's {key} does not match the container's file")
        proof_file = self.files.get(PROOF)
        if content.get("proof_json") != (None if proof_file is None else _utf8(proof_file, PROOF)):
            raise _Failed(f"the record's proof_json is not {PROOF}")
        entries = {e.name: e for e in parse_manifest(self._file(MANIFEST_TXT))}
        if content.get("message_sha256") not in (None, entries[PartName.MESSAGE].digest.hex()):
            raise _Failed("the record's message_sha256 is not the manifest's message digest")
        heads = [entries[part].digest.hex() for part in _REST_HEAD_FILES if part in entries]
        if content.get("rest_head_sha256") not in (None, *heads):
            raise _Failed("the record's rest_head_sha256 is not the manifest's REST head digest")
        if proof_file is None and content.get("outcome") == OUTCOME_OK:
            raise _Failed("the record is of a signed message, but the container has no signature")

    def check_timestamp(
        self, trusted_tsa_certs: Sequence[x509.Certificate], tsa_cas: Sequence[x509.Certificate]
    ) -> str:
        """The record hash leads to a root, and a trusted TSA's token stamps that root."""
        if TIMESTAMP not in self.files and TIMESTAMP_PROOF not in self.files:
            raise _Failed("the container has no timestamp")
        proof = decode_proof(_utf8(self._file(TIMESTAMP_PROOF), TIMESTAMP_PROOF))
        if self.record_hash is None:
            raise _Failed("there is no verified record hash to start the timestamp proof from")
        if not hmac.compare_digest(proof.leaf, self.record_hash):
            raise _Failed("the timestamp proof does not start at this record's hash")
        response = self._file(TIMESTAMP)
        token = timestamp_token_of(response)
        if response != timestamp_response(token):
            raise _Failed(f"{TIMESTAMP} is not in the one form this format writes")
        try:
            self.timestamped_at = verify_timestamp_token(token, proof.root, trusted_tsa_certs, tsa_cas)
        except TimestampError as exc:
            raise _Failed(f"the timestamp token does not verify: {exc}") from exc
        except Exception as exc:  # lazy ASN.1 and certificate parsing, as above
            raise _Failed(f"the timestamp token does not verify: {type(exc).__name__}: {exc}") from exc
        _check_carried_certificates(token, [*trusted_tsa_certs, *tsa_cas])
        return f"stamped at {self.timestamped_at.isoformat()}, {len(proof.steps)} steps to the stamped root"

    def _file(self, name: str) -> bytes:
        try:
            return self.files[name]
        except KeyError:
            raise _Failed(f"{name} is missing") from None


def _check_carried_certificates(token: bytes, anchors: Sequence[x509.Certificate]) -> None:
    """Every certificate the token carries is genuine: an anchor, or issued by one or by another such.

    CMS leaves this SET unsigned (RFC 5652 §5.1) and a verifier may take the signer from our
    pinned certificates instead, but `openssl ts -verify` builds its chain from these: a
    corrupted one must fail here as it fails there.
    """
    try:
        choices = cms.ContentInfo.load(token)["content"]["certificates"]
        carried = [
            x509.load_der_x509_certificate(c.chosen.dump()) for c in choices or () if c.name == "certificate"
        ]
    except ValueError as exc:
        raise _Failed(f"the timestamp token carries a malformed certificate: {exc}") from exc
    genuine = list(anchors)
    while pending := [cert for cert in carried if cert not in genuine]:
        issued = [cert for cert in pending if any(_issued_by(cert, issuer) for issuer in genuine)]
        if not issued:
            raise _Failed("the timestamp token carries a certificate no trusted CA issued")
        genuine += issued


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


_UNSIGNED: Final = "none: the record is of a fault the gateway logged unsigned (the record check confirms)"
_RECORD_KEYS: Final = frozenset({"format", "content", "content_digest", "prev_hash", "record_hash"})


def _read_asic_manifest(xml: bytes) -> dict[str, tuple[str, bytes]]:
    """name -> (media type, SHA-256) from META-INF/manifest.xml, in the shape we write."""
    try:
        root = parse_xml(xml, max_bytes=MAX_EVIDENCE_FILE_BYTES)
    except (UnsafeXml, XmlSyntaxError) as exc:
        raise _Failed(f"manifest.xml is not acceptable XML: {exc}") from exc
    if root.tag != f"{{{ASIC_NS}}}ASiCManifest":
        raise _Failed("manifest.xml must be an asic:ASiCManifest")
    listed: dict[str, tuple[str, bytes]] = {}
    for reference in root:
        children = list(reference)
        if (
            reference.tag != f"{{{ASIC_NS}}}DataObjectReference"
            or [child.tag for child in children] != [f"{{{DS_NS}}}DigestMethod", f"{{{DS_NS}}}DigestValue"]
            or children[0].get("Algorithm") != SHA256_URI
        ):
            raise _Failed("manifest.xml entries must be DataObjectReference(DigestMethod, DigestValue)")
        name = reference.get("URI", "")
        if name in listed or name not in CONTAINER_NAMES:
            raise _Failed(f"manifest.xml lists {name!r} twice or names no container file")
        try:
            digest = base64.b64decode((children[1].text or "").strip(), validate=True)
        except binascii.Error as exc:
            raise _Failed(f"manifest.xml digest of {name} is not base64") from exc
        if len(digest) != DIGEST_SIZE:
            raise _Failed(f"manifest.xml digest of {name} is not SHA-256")
        listed[name] = (reference.get("MimeType", ""), digest)
    return listed


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_utf8(data, what))
    except ValueError as exc:
        raise _Failed(f"{what} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise _Failed(f"{what} must hold a JSON object")
    return value


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Failed(f"{what} is not UTF-8") from exc


def _sha256_hex(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def _canonical_json(value: object) -> bytes:
    """Sorted keys, no spaces, UTF-8: the form record.LogRecord.content_digest hashes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
