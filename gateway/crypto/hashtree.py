"""The hash tree that lets one signature cover a whole batch of messages (DESIGN.md "One signer").

The batch signer puts the leaf digests of concurrent messages into a Merkle tree and signs its
root once; each message keeps the short path from its leaf to the root. The tree is RFC 6962
§2.1's Merkle Tree Hash, with its domain separation so a leaf can never be passed off as an
inner node (second-preimage attack on unprefixed trees):

    leaf hash  = SHA-256(0x00 || leaf)
    node hash  = SHA-256(0x01 || left || right)
    MTH({d0})  = leaf hash(d0)
    MTH(D[n])  = node hash(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two < n

Unlike RFC 6962's audit paths, each proof step names the side its sibling is on, so the path
can be checked by hand without knowing the leaf's index or the tree size (docs/transport.md).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence
from typing import Final, NamedTuple

DIGEST_SIZE: Final = 32
"""Leaves and all tree nodes are SHA-256 digests."""

LEAF_PREFIX: Final = b"\x00"
NODE_PREFIX: Final = b"\x01"


class Side(enum.StrEnum):
    """Where a proof step's sibling sits relative to the path being climbed."""

    LEFT = "left"
    RIGHT = "right"


class ProofStep(NamedTuple):
    """One level of an inclusion proof: hash the sibling with the running value, sibling on `side`."""

    side: Side
    sibling: bytes


Proof = tuple[ProofStep, ...]
"""Steps from the leaf up to (not including) the root."""


def leaf_hash(leaf: bytes) -> bytes:
    """RFC 6962 §2.1: MTH of a single entry."""
    return hashlib.sha256(LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 §2.1: an inner node over two subtree hashes."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def build_tree(leaves: Sequence[bytes]) -> tuple[bytes, list[Proof]]:
    """The root over `leaves` (in order) and, for each leaf, its proof; one leaf gives an empty proof."""
    if not leaves:
        raise ValueError("a hash tree needs at least one leaf")
    for leaf in leaves:
        _check_digest(leaf)
    root, paths = _subtree([leaf_hash(leaf) for leaf in leaves])
    return root, [tuple(path) for path in paths]


def _subtree(hashes: list[bytes]) -> tuple[bytes, list[list[ProofStep]]]:
    """MTH over already leaf-hashed entries, with each entry's path so far (leaf upwards)."""
    if len(hashes) == 1:
        return hashes[0], [[]]
    split = 1 << ((len(hashes) - 1).bit_length() - 1)  # largest power of two < n (RFC 6962 §2.1)
    left, left_paths = _subtree(hashes[:split])
    right, right_paths = _subtree(hashes[split:])
    for path in left_paths:
        path.append(ProofStep(Side.RIGHT, right))
    for path in right_paths:
        path.append(ProofStep(Side.LEFT, left))
    return node_hash(left, right), left_paths + right_paths


def root_from_proof(leaf: bytes, proof: Sequence[ProofStep]) -> bytes:
    """The root that `proof` leads to from `leaf`; the caller compares it with the signed root."""
    _check_digest(leaf)
    value = leaf_hash(leaf)
    for side, sibling in proof:
        _check_digest(sibling)
        if side is Side.LEFT:
            value = node_hash(sibling, value)
        elif side is Side.RIGHT:
            value = node_hash(value, sibling)
        else:
            raise ValueError(f"proof step side must be a Side, not {side!r}")
    return value


def _check_digest(value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != DIGEST_SIZE:
        raise ValueError(f"hash tree values are {DIGEST_SIZE}-byte SHA-256 digests")
