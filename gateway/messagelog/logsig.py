"""Log record signatures: each commit batch's record hashes signed once by the gateway's owner.

A record's hash covers its fields and its predecessor (gateway.messagelog.record), but a hash
has no secret: whoever can rewrite the database, or a container's record.json, can recompute
it and get a fresh RFC 3161 token over the result. So every node signs its records' hashes
with a key of the gateway's owner member, in the writer's group commit (the records of one
commit share one signature, the tree and signed root of gateway.crypto.hashtree and
gateway.crypto.rootsig, exactly as messages are signed), inside the transaction that inserts
them: signing adds no write of its own to the request path.

The tree's leaves are the records' chain hashes, in chain order; each record keeps its path
to the signed root (asice.encode_proof's form). The last record of a batch is the tree's
rightmost leaf, whose path has only left siblings (RFC 6962 §2.1's shape): a chain whose last
record's path names a right sibling was cut inside a batch (:func:`is_rightmost`).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from cryptography import x509

from gateway.crypto.certs import CertificateError, member_of
from gateway.crypto.hashtree import Proof, ProofStep, Side, build_tree, root_from_proof
from gateway.crypto.keys import PrivateKey
from gateway.crypto.rootsig import (
    RootSigner,
    SignatureVerificationError,
    VerifiedRoot,
    verify_root_signature,
)
from gateway.ids import SecurityServerId
from gateway.messagelog.asice.layout import PROOF_FORMAT
from gateway.messagelog.asice.proof import decode_proof


class RecordSigner:
    """Signs one commit batch of record hashes: one signed root, one proof per record.

    Runs in the log writer's thread; an EC key's signature costs ~25 µs a batch.
    """

    def __init__(self, key: PrivateKey, cert: x509.Certificate) -> None:
        self.root_signer = RootSigner(key, cert)
        """Also signs the node's log heads (gateway.messagelog.heads): the same owner key."""
        self.certificate = cert

    def sign(self, record_hashes: Sequence[bytes], at: datetime | None = None) -> tuple[bytes, list[str]]:
        """The signed root XML and, per record hash in order, its proof (asice.encode_proof text)."""
        root, proofs = build_tree(record_hashes)
        signed_root_xml = self.root_signer.sign(root, at or datetime.now(UTC))
        root_hex = root.hex()
        return signed_root_xml, [
            proof_text(h, p, root_hex) for h, p in zip(record_hashes, proofs, strict=True)
        ]

    def sign_steps(
        self, record_hashes: Sequence[bytes], at: datetime | None = None
    ) -> tuple[bytes, list[Proof]]:
        """As :meth:`sign`, the proofs as steps: what the log stores (gateway.messagelog.packing),
        the text being the record hash, these steps and the signed root, encoded."""
        root, proofs = build_tree(record_hashes)
        return self.root_signer.sign(root, at or datetime.now(UTC)), proofs


def proof_text(leaf: bytes, steps: Proof, root_hex: str) -> str:
    """asice.encode_proof's canonical text for a proof whose root is known: the same bytes
    (tests hold the two equal) without re-hashing the path and encoding JSON, which cost ~17 µs a
    record, on the writer's thread under the chain's lock."""
    return steps_text(leaf.hex(), root_hex, [(sibling.hex(), side) for side, sibling in steps])


def steps_text(leaf_hex: str, root_hex: str, steps: Iterable[tuple[str, str]]) -> str:
    """The canonical text of a proof given as (sibling hex, "left"|"right") pairs, leaf upwards:
    the one place it is written (a Side is its own value, a str)."""
    encoded = ",".join([f'{{"sibling":"{sibling}","side":"{side}"}}' for sibling, side in steps])
    return f'{{"format":"{PROOF_FORMAT}","leaf":"{leaf_hex}","root":"{root_hex}","steps":[{encoded}]}}'


def verify_record_signature(
    record_hash: bytes, signed_root_xml: bytes, proof_json: str, trusted_cas: Sequence[x509.Certificate]
) -> tuple[VerifiedRoot, Proof]:
    """Check that `record_hash` is a leaf of a root signed by a certificate chaining to `trusted_cas`.

    Raises SignatureVerificationError. Whose certificate it is (the gateway owner's) is the
    caller's check, against the global configuration.
    """
    try:
        proof = decode_proof(proof_json)
        root = root_from_proof(record_hash, proof.steps)
    except ValueError as exc:
        raise SignatureVerificationError(f"malformed record signature proof: {exc}") from exc
    if not hmac.compare_digest(proof.leaf, record_hash):
        raise SignatureVerificationError("the record signature's proof is for another record")
    verified = verify_root_signature(signed_root_xml, trusted_cas)
    if not hmac.compare_digest(root, verified.root) or not hmac.compare_digest(proof.root, root):
        raise SignatureVerificationError("the record signature's proof does not lead to the signed root")
    return verified, proof.steps


def signed_by_owner(gateway: str, certificate: x509.Certificate) -> bool:
    """Whether `certificate` is a signing certificate of `gateway`'s owner member: only the
    owner's key may sign its gateway's records and heads (a member's key of another would do
    for a forger otherwise)."""
    try:
        return member_of(certificate) == SecurityServerId.from_text(gateway).owner
    except (CertificateError, ValueError):
        return False


def is_rightmost(steps: Sequence[ProofStep] | Sequence[tuple[str, str]]) -> bool:
    """Whether a proof is the last leaf's: every sibling on its left (RFC 6962 §2.1 tree shape).

    Accepts hashtree proof steps or the verifier's (sibling hex, side) pairs.
    """
    for step in steps:
        side = step.side if isinstance(step, ProofStep) else step[1]
        if side != Side.LEFT:
            return False
    return True
