"""The compact forms a record's evidence is stored in (issue 16, "lean log records"), sans-IO.

What the log proves is unchanged: every form here is read back to exactly the bytes and text
the record had before (`LogRecord`, `StoredRecord`), so its content digest, chain hash,
containers and verification are those of a record stored in full. Only the storage shrinks:

- a hash-tree proof (asice.encode_proof's JSON, ~90 bytes a step) is stored as its steps in
  binary (33 bytes a step); its leaf is known from the record and its root follows from them.
  A proof is packed only when re-encoding the packed form gives its text back byte for byte.
- a timestamp batch's proofs are not stored per record at all: the batch's leaves (its records'
  chain hashes, in order) are stored once with its token, and each record's path to the root is
  rebuilt from them (:class:`BatchTree`), the same path hashtree.build_tree gave when stamping.
- a manifest that says only "this one message part" (docs/transport.md "Manifest") is stored as
  that part's raw digest and rebuilt with the record's content type.
- bodies are compressed (zstd) before encryption at rest (crypto_at_rest).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import zstandard

from gateway.crypto.hashtree import DIGEST_SIZE, Proof, ProofStep, Side, leaf_hash, node_hash
from gateway.lru import BoundedLru
from gateway.messagelog.logsig import proof_text, steps_text
from gateway.protocol.transport import MANIFEST_FIRST_LINE, MAX_PROOF_STEPS

# --- proofs ----------------------------------------------------------------------------------

PACKED_PROOF_HEADER: Final = 1
"""One byte: the number of steps (at most MAX_PROOF_STEPS, well under 256)."""


def pack_steps(steps: Proof) -> bytes:
    """`n`, then a bitmap of the sides (bit i set: step i's sibling is on the left), then the siblings."""
    if len(steps) > MAX_PROOF_STEPS:
        raise ValueError(f"a proof has at most {MAX_PROOF_STEPS} steps")
    sides = 0
    for i, (side, _) in enumerate(steps):
        if side is Side.LEFT:
            sides |= 1 << i
    bitmap = sides.to_bytes((len(steps) + 7) // 8, "big")
    return bytes([len(steps)]) + bitmap + b"".join(sibling for _, sibling in steps)


def unpack_steps(packed: bytes) -> Proof:
    """The steps of :func:`pack_steps`; ValueError when the bytes are not of that form."""
    count, sides, siblings = read_packed_steps(packed)
    return tuple(
        ProofStep(
            Side.LEFT if sides >> i & 1 else Side.RIGHT, siblings[i * DIGEST_SIZE : (i + 1) * DIGEST_SIZE]
        )
        for i in range(count)
    )


def read_packed_steps(packed: bytes) -> tuple[int, int, bytes]:
    """(number of steps, sides bitmap: bit i set when step i's sibling is on the left, the siblings
    one after another) of :func:`pack_steps`' bytes; ValueError when they are not of that form."""
    if not packed or packed[0] > MAX_PROOF_STEPS:
        raise ValueError("a packed proof starts with its number of steps")
    count = packed[0]
    bitmap_bytes = (count + 7) // 8
    if len(packed) != PACKED_PROOF_HEADER + bitmap_bytes + count * DIGEST_SIZE:
        raise ValueError("a packed proof's length does not match its number of steps")
    start = PACKED_PROOF_HEADER + bitmap_bytes
    return count, int.from_bytes(packed[1:start], "big"), packed[start:]


def packed_steps_text(leaf: bytes, count: int, sides: int, siblings: bytes, root: bytes) -> str:
    """The proof text (asice.encode_proof's) of steps read by :func:`read_packed_steps`, whose
    root the caller knows: :func:`unpack_proof`'s text when `root` is where the steps lead."""
    hexed = siblings.hex()
    pairs = [(hexed[i * 64 : i * 64 + 64], "left" if sides >> i & 1 else "right") for i in range(count)]
    return steps_text(leaf.hex(), root.hex(), pairs)


_CANONICAL_PROOF: Final = re.compile(
    r'\{"format":"xgate-proof/1","leaf":"[0-9a-f]{64}","root":"[0-9a-f]{64}","steps":\[(.*)\]\}'
)
_STEP: Final = re.compile(r'\{"sibling":"([0-9a-f]{64})","side":"(left|right)"\}')


def pack_proof(leaf: bytes | None, proof_json: str | None) -> bytes | None:
    """The packed steps of `proof_json` when its text is exactly the proof of `leaf` with those
    steps (asice.encode_proof's canonical text, its root the one they lead to); None when it is
    not: an odd or damaged proof is kept as it came, for verification to judge.

    Read with two regular expressions and checked by encoding back, on the writer's thread:
    asice.decode_proof's JSON parse and checks cost several times as much for the same answer."""
    if leaf is None or proof_json is None or len(leaf) != DIGEST_SIZE:
        return None
    found = _CANONICAL_PROOF.fullmatch(proof_json)
    if found is None:
        return None
    steps = tuple(
        ProofStep(Side(side), bytes.fromhex(sibling)) for sibling, side in _STEP.findall(found.group(1))
    )
    if len(steps) > MAX_PROOF_STEPS or _proof_text(leaf, steps) != proof_json:
        return None
    return pack_steps(steps)


def unpack_proof(leaf: bytes, packed: bytes) -> str:
    """The proof text a packed proof stands for (asice.encode_proof's canonical JSON)."""
    return _proof_text(leaf, unpack_steps(packed))


def _proof_text(leaf: bytes, steps: Proof, root: bytes | None = None) -> str:
    """asice.encode_proof's text for steps known to be digests (unpacked, or from a BatchTree):
    the same bytes (the tests hold them equal) at a tenth of its cost, which every record a
    search or a verification reads pays up to three times."""
    if root is None:
        root = leaf_hash(leaf)
        for side, sibling in steps:
            root = node_hash(sibling, root) if side is Side.LEFT else node_hash(root, sibling)
    return proof_text(leaf, steps, root.hex())


# --- a batch's tree from its leaves ----------------------------------------------------------


class BatchTree:
    """The hash tree over a batch's leaves, level by level, to give any leaf its proof.

    RFC 6962 §2.1's tree (hashtree.build_tree) is the one built bottom-up by pairing neighbours
    and carrying a level's odd last node up unchanged; its proofs are read off the levels.
    """

    def __init__(self, leaves: Sequence[bytes]) -> None:
        if not leaves:
            raise ValueError("a hash tree needs at least one leaf")
        level = [leaf_hash(leaf) for leaf in leaves]
        self.levels = [level]
        while len(level) > 1:
            level = [
                node_hash(level[i], level[i + 1]) if i + 1 < len(level) else level[i]
                for i in range(0, len(level), 2)
            ]
            self.levels.append(level)
        self.leaves = tuple(leaves)

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    def proof(self, index: int) -> Proof:
        """Leaf `index`'s path to the root: the steps hashtree.build_tree gives it."""
        if not 0 <= index < len(self.leaves):
            raise ValueError(f"leaf {index} is not in a tree of {len(self.leaves)}")
        steps = []
        for level in self.levels[:-1]:
            if index % 2 == 1:
                steps.append(ProofStep(Side.LEFT, level[index - 1]))
            elif index + 1 < len(level):
                steps.append(ProofStep(Side.RIGHT, level[index + 1]))
            index //= 2
        return tuple(steps)

    def proof_text(self, index: int) -> str:
        steps = self.proof(index)  # first: it refuses an index outside the tree
        return _proof_text(self.leaves[index], steps, self.root)


def pack_leaves(leaves: Sequence[bytes]) -> bytes:
    """A batch's leaves as stored: the digests one after another."""
    for leaf in leaves:
        if len(leaf) != DIGEST_SIZE:
            raise ValueError("leaves are SHA-256 digests")
    return b"".join(leaves)


_TREES: Final = BoundedLru[bytes, BatchTree](8)
"""Recent batches' trees, by the digest of their stored leaves: reading a chain in pages meets
the same timestamp batch (up to timestamping.DEFAULT_MAX_BATCH records, ~1.4 MB of tree) again
and again, and rebuilding it costs two hashes a leaf."""


def batch_tree(packed_leaves: bytes) -> BatchTree:
    """The tree over stored leaves (:func:`pack_leaves`); ValueError when they are not digests."""
    if not packed_leaves or len(packed_leaves) % DIGEST_SIZE:
        raise ValueError("stored leaves must be whole SHA-256 digests")
    leaves = range(0, len(packed_leaves), DIGEST_SIZE)
    return _TREES.remembered(
        hashlib.sha256(packed_leaves).digest(),
        lambda: BatchTree([packed_leaves[i : i + DIGEST_SIZE] for i in leaves]),
    )


# --- manifests -------------------------------------------------------------------------------


_PACKED_MANIFEST: Final = b"\x00"
"""Starts a packed manifest; a manifest itself starts with MANIFEST_FIRST_LINE."""


def pack_manifest(manifest: bytes, content_type: str) -> bytes:
    """A manifest that lists only the `message` part (a SOAP message's) as NUL and that part's raw
    digest (33 bytes, not ~115); any other manifest as it is.

    The digest is kept, not taken from the record's `message_sha256`, so a digest edited in the
    record still disagrees with what was signed (verification's "manifest" finding)."""
    prefix = MANIFEST_FIRST_LINE + b"message "
    suffix = f" {content_type}\n".encode("ascii", "replace")
    if not (manifest.startswith(prefix) and manifest.endswith(suffix)):
        return manifest
    digest_hex = manifest[len(prefix) : len(manifest) - len(suffix)]
    if len(digest_hex) != 2 * DIGEST_SIZE or digest_hex.lower() != digest_hex:
        return manifest
    try:
        digest = bytes.fromhex(digest_hex.decode("ascii"))
    except ValueError:
        return manifest
    packed = _PACKED_MANIFEST + digest
    return packed if unpack_manifest(packed, content_type) == manifest else manifest


def unpack_manifest(stored: bytes, content_type: str) -> bytes:
    """The manifest :func:`pack_manifest` was given (the record's content type is the part's)."""
    if not stored.startswith(_PACKED_MANIFEST):
        return stored
    if len(stored) != 1 + DIGEST_SIZE:
        raise ValueError("a packed manifest is NUL and a 32-byte digest")
    return MANIFEST_FIRST_LINE + f"message {stored[1:].hex()} {content_type}\n".encode("ascii")


# --- bodies ----------------------------------------------------------------------------------

ZSTD: Final = "zstd/d1"
"""The one codec: zstd with DICTIONARY_1. A body's `body_codec` is this or NULL (stored as it came)."""

ZSTD_LEVEL: Final = 3
"""zstd's default: a 1.3 KB SOAP message to ~40% in ~6 µs; higher levels gain a few percent
at several times the CPU on the writer's path."""

MAX_DECOMPRESSED_BYTES: Final = 64 * 1024 * 1024
"""Far above any message the gateway accepts: a stored body claiming more is refused, not inflated."""

DICTIONARY_1: Final = (
    b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><?xml version='1.0' encoding='UTF-8'?>"
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
    b'<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" '
    b'xmlns:xrd="http://x-road.eu/xsd/xroad.xsd" xmlns:id="http://x-road.eu/xsd/identifiers">'
    b'<SOAP-ENV:Header><xrd:client id:objectType="SUBSYSTEM"><id:xRoadInstance></id:xRoadInstance>'
    b"<id:memberClass>GOV</id:memberClass><id:memberCode></id:memberCode><id:subsystemCode>"
    b'</id:subsystemCode></xrd:client><xrd:service id:objectType="SERVICE"><id:xRoadInstance>'
    b"</id:xRoadInstance><id:memberClass></id:memberClass><id:memberCode></id:memberCode>"
    b"<id:subsystemCode></id:subsystemCode><id:serviceCode></id:serviceCode><id:serviceVersion>"
    b"</id:serviceVersion></xrd:service><xrd:id></xrd:id><xrd:userId></xrd:userId><xrd:issue>"
    b"</xrd:issue><xrd:protocolVersion>4.0</xrd:protocolVersion><xrd:requestHash algorithmId="
    b'"http://www.w3.org/2001/04/xmlenc#sha512"></xrd:requestHash></SOAP-ENV:Header><SOAP-ENV:Body>'
    b"<SOAP-ENV:Fault><faultcode></faultcode><faultstring></faultstring><detail></detail>"
    b"</SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>"
    b'<xg:SignedRoot xmlns:xg="urn:xgate:signature:1" Id="root"><xg:HashAlgorithm>'
    b"http://www.w3.org/2001/04/xmlenc#sha256</xg:HashAlgorithm><xg:Root></xg:Root><xg:SigningTime>"
    b'</xg:SigningTime><ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#">\n<ds:SignedInfo>\n'
    b'<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>\n'
    b'<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>\n'
    b'<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"/>\n'
    b'<ds:Reference URI="#root">\n<ds:Transforms>\n'
    b'<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>\n'
    b'<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>\n</ds:Transforms>\n'
    b'<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>\n<ds:DigestValue>'
    b"</ds:DigestValue>\n</ds:Reference>\n</ds:SignedInfo>\n<ds:SignatureValue></ds:SignatureValue>\n"
    b"<ds:KeyInfo>\n<ds:X509Data>\n<ds:X509Certificate>\n</ds:X509Certificate>\n</ds:X509Data>\n"
    b"</ds:KeyInfo>\n</ds:Signature></xg:SignedRoot>"
)
"""What X-Road messages and xgate's signed roots all repeat (the envelope, the X-Road header's
element names and namespaces, XML-DSig's algorithm URIs), as a zstd raw-content dictionary: a
1 KB message alone gives zstd too little to learn them from. Frozen: every body and blob stored
under ZSTD needs exactly these bytes to read back, so a better dictionary is a new codec."""

SHA256_DICTIONARY_1: Final = "23a5a247db6c0b916f65f09a2ed805023bb8cb1de6ecc1a982d5054726855c1e"
"""The tests hold DICTIONARY_1 to this digest: its bytes must never change."""

_DICTIONARY: Final = zstandard.ZstdCompressionDict(DICTIONARY_1, dict_type=zstandard.DICT_TYPE_RAWCONTENT)

_CODECS: Final = threading.local()
"""One compressor and decompressor per thread: zstandard's are not safe to share between threads,
and making one costs ~50 µs, ten times compressing a message."""


def _compressor() -> zstandard.ZstdCompressor:
    found: zstandard.ZstdCompressor | None = getattr(_CODECS, "compressor", None)
    if found is None:
        found = _CODECS.compressor = zstandard.ZstdCompressor(
            level=ZSTD_LEVEL, dict_data=_DICTIONARY, write_checksum=False, write_dict_id=False
        )
    return found


def _decompressor() -> zstandard.ZstdDecompressor:
    found: zstandard.ZstdDecompressor | None = getattr(_CODECS, "decompressor", None)
    if found is None:
        found = _CODECS.decompressor = zstandard.ZstdDecompressor(dict_data=_DICTIONARY)
    return found


def compress_body(body: bytes) -> tuple[str | None, bytes]:
    """(codec, stored bytes): zstd when that is smaller, else the body as it is."""
    compressed = _compressor().compress(body)
    if len(compressed) < len(body):
        return ZSTD, compressed
    return None, body


def decompress_body(codec: str | None, stored: bytes) -> bytes:
    """The body :func:`compress_body` was given; ValueError for an unknown codec or damaged bytes."""
    if codec is None:
        return stored
    if codec != ZSTD:
        raise ValueError(f"unknown body codec {codec!r}")
    try:
        declared = zstandard.frame_content_size(stored)  # a frame may state a size it would allocate
        if declared > MAX_DECOMPRESSED_BYTES:
            raise ValueError(f"stored body claims {declared} bytes, more than a message can be")
        return _decompressor().decompress(stored, max_output_size=MAX_DECOMPRESSED_BYTES)
    except zstandard.ZstdError as exc:
        raise ValueError(f"stored body does not decompress: {exc}") from exc


# --- shared blobs: signed roots without their certificate ------------------------------------

BLOB_ZSTD: Final = ZSTD
"""A blob stored compressed."""

BLOB_ZSTD_CERT: Final = "zstd/d1c"
"""A signed root stored compressed without its certificate, which is a blob of its own (`ref`)."""

_CERT_START: Final = b"<ds:X509Certificate>"
_CERT_END: Final = b"\n</ds:X509Certificate>"


@dataclass(frozen=True)
class PackedBlob:
    """How one shared blob is stored: its bytes in `codec`, and the blob it refers to, if any."""

    codec: str | None
    data: bytes
    ref: bytes | None = None  # the SHA-256 of the certificate text taken out
    ref_data: bytes | None = None  # that text, stored as a blob of its own (codec None)


def pack_blob(data: bytes) -> PackedBlob:
    """A signed root (gateway.crypto.rootsig: one fixed shape, its signer's certificate inside)
    loses its certificate, which every batch the signer signs repeats (~900 bytes of ~1.8 KB),
    to a blob stored once; the rest, and any other blob, is compressed when that is smaller."""
    start = data.find(_CERT_START)
    end = data.find(_CERT_END, start)
    if start >= 0 and end > start and data.count(_CERT_START) == 1:
        cert_text = data[start + len(_CERT_START) : end]
        rest = data[: start + len(_CERT_START)] + data[end:]
        return PackedBlob(
            BLOB_ZSTD_CERT, _compressor().compress(rest), hashlib.sha256(cert_text).digest(), cert_text
        )
    codec, stored = compress_body(data)
    return PackedBlob(None if codec is None else BLOB_ZSTD, stored)


def unpack_blob(codec: str | None, stored: bytes, ref_data: bytes | None) -> bytes:
    """The blob :func:`pack_blob` was given (`ref_data`: the referred blob's bytes, when it has one).

    ValueError when the stored form cannot be read; a blob that reads back to other bytes than
    its digest's is the reader's to notice (the record hash covers the digest)."""
    if codec is None:
        return stored
    if codec == BLOB_ZSTD:
        return decompress_body(ZSTD, stored)
    if codec != BLOB_ZSTD_CERT or ref_data is None:
        raise ValueError(
            f"blob codec {codec!r} cannot be read" + (" without its certificate" if ref_data is None else "")
        )
    rest = decompress_body(ZSTD, stored)
    at = rest.find(_CERT_START)
    if at < 0:
        raise ValueError("a packed signed root has no certificate element")
    at += len(_CERT_START)
    return rest[:at] + ref_data + rest[at:]
