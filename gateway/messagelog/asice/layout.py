"""What a container holds: its files' names and media types, the limits a reader holds it to,
and the transport manifest inside it."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Final

from gateway.crypto.hashtree import Side
from gateway.protocol.transport import MANIFEST_FIRST_LINE, PartName

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
LOG_SIGNATURE: Final = "META-INF/log-signature.xml"  # the gateway's signature over the record hash
LOG_SIGNATURE_PROOF: Final = "META-INF/log-signature-proof.json"  # record hash -> its signed root
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
        LOG_SIGNATURE,
        LOG_SIGNATURE_PROOF,
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
    LOG_SIGNATURE: "application/xml",
    LOG_SIGNATURE_PROOF: "application/json",
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
