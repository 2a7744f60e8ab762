"""The batch hash tree: every proof leads to the root, and nothing else does.

Checked against a direct transcription of RFC 6962 §2.1's recursive definition and against
`openssl dgst` as the independent SHA-256.
"""

from __future__ import annotations

import hashlib
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.crypto.hashtree import ProofStep, Side, build_tree, leaf_hash, node_hash, root_from_proof

digests = st.binary(min_size=32, max_size=32)
leaf_lists = st.lists(digests, min_size=1, max_size=70, unique=True)


def rfc6962_mth(entries: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH, written out as the RFC states it."""
    if len(entries) == 1:
        return hashlib.sha256(b"\x00" + entries[0]).digest()
    k = 1
    while k * 2 < len(entries):
        k *= 2
    return hashlib.sha256(b"\x01" + rfc6962_mth(entries[:k]) + rfc6962_mth(entries[k:])).digest()


@settings(max_examples=200, deadline=None)
@given(leaf_lists)
def test_every_leaf_proof_reproduces_the_root(leaves: list[bytes]) -> None:
    root, proofs = build_tree(leaves)
    assert root == rfc6962_mth(leaves)
    assert len(proofs) == len(leaves)
    for leaf, proof in zip(leaves, proofs, strict=True):
        assert root_from_proof(leaf, proof) == root


@settings(max_examples=200, deadline=None)
@given(leaf_lists, st.data())
def test_altering_a_leaf_breaks_its_proof(leaves: list[bytes], data: st.DataObject) -> None:
    root, proofs = build_tree(leaves)
    i = data.draw(st.integers(0, len(leaves) - 1))
    bit = data.draw(st.integers(0, 255))
    altered = bytearray(leaves[i])
    altered[bit // 8] ^= 1 << (bit % 8)
    assert root_from_proof(bytes(altered), proofs[i]) != root
    # Another leaf's proof does not vouch for this leaf either.
    if len(leaves) > 1:
        j = (i + 1) % len(leaves)
        assert root_from_proof(leaves[i], proofs[j]) != root


@settings(max_examples=200, deadline=None)
@given(st.lists(digests, min_size=2, max_size=70, unique=True), st.data())
def test_altering_a_sibling_or_its_side_breaks_the_proof(leaves: list[bytes], data: st.DataObject) -> None:
    root, proofs = build_tree(leaves)
    i = data.draw(st.integers(0, len(leaves) - 1))
    proof = list(proofs[i])
    step_index = data.draw(st.integers(0, len(proof) - 1))
    side, sibling = proof[step_index]
    bit = data.draw(st.integers(0, 255))
    altered = bytearray(sibling)
    altered[bit // 8] ^= 1 << (bit % 8)

    with_other_sibling = [*proof]
    with_other_sibling[step_index] = ProofStep(side, bytes(altered))
    assert root_from_proof(leaves[i], with_other_sibling) != root

    other_side = Side.LEFT if side is Side.RIGHT else Side.RIGHT
    with_other_side = [*proof]
    with_other_side[step_index] = ProofStep(other_side, sibling)
    assert root_from_proof(leaves[i], with_other_side) != root

    assert root_from_proof(leaves[i], proof[:-1]) != root  # a truncated proof stops short of the root


def test_single_leaf_tree_is_the_leaf_hash_with_an_empty_proof() -> None:
    leaf = hashlib.sha256(b"one message").digest()
    root, proofs = build_tree([leaf])
    assert proofs == [()]
    assert root == hashlib.sha256(b"\x00" + leaf).digest()
    assert root_from_proof(leaf, ()) == root


def test_proof_shape_follows_rfc6962_split() -> None:
    """Five leaves split 4 + 1: the first four climb three levels, the fifth one."""
    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(5)]
    _, proofs = build_tree(leaves)
    assert [len(p) for p in proofs] == [3, 3, 3, 3, 1]
    assert proofs[4] == (ProofStep(Side.LEFT, rfc6962_mth(leaves[:4])),)
    assert [step.side for step in proofs[0]] == [Side.RIGHT, Side.RIGHT, Side.RIGHT]
    _, full = build_tree([hashlib.sha256(i.to_bytes(2, "big")).digest() for i in range(512)])
    assert {len(p) for p in full} == {9}  # a full batch of the default size: 9 steps each


def test_domain_separation_matches_openssl() -> None:
    """The prefixes are single bytes 0x00 and 0x01, exactly as docs/transport.md tells people to hash."""
    left, right = hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()

    def openssl_sha256(data: bytes) -> bytes:
        return subprocess.run(
            ["openssl", "dgst", "-sha256", "-binary"], input=data, capture_output=True, check=True, timeout=30
        ).stdout

    assert leaf_hash(left) == openssl_sha256(b"\x00" + left)
    assert node_hash(left, right) == openssl_sha256(b"\x01" + left + right)


def test_rejects_what_is_not_a_tree() -> None:
    with pytest.raises(ValueError, match="at least one leaf"):
        build_tree([])
    with pytest.raises(ValueError, match="32-byte"):
        build_tree([b"short"])
    leaf = hashlib.sha256(b"x").digest()
    with pytest.raises(ValueError, match="32-byte"):
        root_from_proof(leaf, [ProofStep(Side.LEFT, b"short")])
    with pytest.raises(ValueError, match="must be a Side"):
        root_from_proof(leaf, [ProofStep("up", leaf)])  # type: ignore[arg-type]
