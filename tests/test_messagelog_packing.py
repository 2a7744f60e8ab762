"""The lean storage forms of log records (gateway.messagelog.packing): each reads back to exactly
what was packed, so a record's hash, proofs and containers do not change with its storage."""

from __future__ import annotations

import hashlib
import os

import pytest
import zstandard

from gateway.crypto.hashtree import build_tree
from gateway.crypto.rootsig import sign_root
from gateway.messagelog import packing
from gateway.messagelog.asice import encode_proof
from gateway.messagelog.crypto_at_rest import BodyCipher, BodyDecryptionError
from gateway.protocol.transport import RestResponsePayload, SoapPayload, manifest, signed_parts
from tests import test_messagelog_store as store_tests
from tests.test_messagelog_store import NOW, Trust, soap_payload

trust = store_tests.trust


@pytest.mark.parametrize("size", [*range(1, 40), 64, 65, 100, 1000, 1025])
def test_a_batch_tree_gives_every_leaf_the_proof_build_tree_gave(size: int) -> None:
    leaves = [os.urandom(32) for _ in range(size)]
    root, proofs = build_tree(leaves)
    tree = packing.BatchTree(leaves)
    assert tree.root == root
    for index in range(size):
        assert tree.proof(index) == proofs[index]
        assert tree.proof_text(index) == encode_proof(leaves[index], proofs[index])
    stored = packing.pack_leaves(leaves)
    assert len(stored) == 32 * size
    assert packing.batch_tree(stored).proof_text(size - 1) == tree.proof_text(size - 1)
    with pytest.raises(ValueError):
        tree.proof_text(size)
    with pytest.raises(ValueError):
        tree.proof(-1)


def test_proofs_pack_to_their_steps_and_back_to_the_same_text() -> None:
    leaves = [os.urandom(32) for _ in range(13)]
    _, proofs = build_tree(leaves)
    for leaf, proof in zip(leaves, proofs, strict=True):
        text = encode_proof(leaf, proof)
        packed = packing.pack_proof(leaf, text)
        assert packed is not None and len(packed) == 1 + 1 + 32 * len(proof)
        assert packing.unpack_steps(packed) == proof
        assert packing.unpack_proof(leaf, packed) == text
    text = encode_proof(leaves[0], proofs[0])
    assert packing.pack_proof(leaves[1], text) is None  # not this leaf's: kept as it came
    assert packing.pack_proof(leaves[0], text.replace(":", ": ")) is None  # not canonical
    assert packing.pack_proof(leaves[0], "not a proof") is None
    assert packing.pack_proof(None, text) is None
    for damaged in (b"", b"\x02\x00" + bytes(32), bytes([255]) + bytes(40)):
        with pytest.raises(ValueError):
            packing.unpack_steps(damaged)


def test_a_one_part_manifest_packs_to_its_digest() -> None:
    soap = SoapPayload("text/xml; charset=UTF-8", b"<x/>")
    text = manifest(signed_parts(soap))
    packed = packing.pack_manifest(text, soap.content_type)
    assert len(packed) == 33 and packed[1:] == hashlib.sha256(b"<x/>").digest()
    assert packing.unpack_manifest(packed, soap.content_type) == text
    assert packing.pack_manifest(text, "application/xml") == text  # not the record's content type
    rest = manifest(signed_parts(RestResponsePayload(200, (("Content-Type", "application/json"),), b"{}")))
    assert packing.pack_manifest(rest, "application/json") == rest  # two parts: kept
    with pytest.raises(ValueError):
        packing.unpack_manifest(b"\x00short", "text/xml")


def test_a_signed_root_is_stored_without_its_certificate(trust: Trust) -> None:
    xml = sign_root(bytes(32), trust.signer_key, trust.signer_cert, NOW)
    packed = packing.pack_blob(xml)
    assert packed.codec == packing.BLOB_ZSTD_CERT and packed.ref_data is not None
    assert packed.ref == hashlib.sha256(packed.ref_data).digest()
    assert len(packed.data) < len(xml) // 4
    assert packing.unpack_blob(packed.codec, packed.data, packed.ref_data) == xml
    with pytest.raises(ValueError):
        packing.unpack_blob(packed.codec, packed.data, None)
    other = os.urandom(300)  # an OCSP response or such: compressed only if that helps
    plain = packing.pack_blob(other)
    assert plain.codec is None and plain.data == other and plain.ref is None
    assert packing.unpack_blob(None, other, None) == other


def test_bodies_compress_and_a_damaged_or_inflated_one_is_refused() -> None:
    body = soap_payload(1).body
    codec, stored = packing.compress_body(body)
    assert codec == packing.ZSTD and len(stored) < len(body) // 2
    assert packing.decompress_body(codec, stored) == body
    random_bytes = os.urandom(64)  # incompressible: stored as it came
    assert packing.compress_body(random_bytes) == (None, random_bytes)
    with pytest.raises(ValueError):
        packing.decompress_body(codec, stored[:-3])
    with pytest.raises(ValueError):
        packing.decompress_body("gzip", stored)
    bomb = zstandard.ZstdCompressor().compress(bytes(packing.MAX_DECOMPRESSED_BYTES + 1))
    with pytest.raises(ValueError, match="claims"):
        packing.decompress_body(codec, bomb)


def test_the_dictionary_never_changes() -> None:
    """Every body and blob stored under ZSTD needs these exact bytes to be read again."""
    assert hashlib.sha256(packing.DICTIONARY_1).hexdigest() == packing.SHA256_DICTIONARY_1


def test_encrypted_bodies_are_compressed_first() -> None:
    cipher = BodyCipher({"k": os.urandom(32)}, "k")
    body = soap_payload(2).body
    sealed = cipher.encrypt(body, compress=True)
    assert sealed.codec == packing.ZSTD and len(sealed.ciphertext) < len(body) // 2
    assert cipher.decrypt(sealed, hashlib.sha256(body).hexdigest()) == body
    plain = cipher.encrypt(body)
    assert plain.codec is None and cipher.decrypt(plain, None) == body
    with pytest.raises(BodyDecryptionError):  # the codec is not what the plaintext was made with
        cipher.decrypt(type(plain)(plain.key_id, plain.nonce, plain.ciphertext, packing.ZSTD), None)
