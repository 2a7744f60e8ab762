"""Hash-tree proofs as JSON (PROOF_FORMAT): written into containers and the log, read back."""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass

from gateway.crypto.hashtree import DIGEST_SIZE, Proof, ProofStep, Side, root_from_proof
from gateway.crypto.rootsig import MessageSignature
from gateway.messagelog.asice.layout import _HEX_DIGEST, _SIDES, PROOF_FORMAT, ContainerError
from gateway.protocol.transport import MAX_PROOF_STEPS, Payload, manifest, signed_parts

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


def manifest_and_proof(payload: Payload, signature: MessageSignature) -> tuple[bytes, str]:
    """What a log record (and so its container) keeps of a signed message besides its parts:
    the manifest the signature covers and the proof in PROOF_FORMAT."""
    return manifest(signed_parts(payload)), encode_proof(signature.leaf, signature.proof)


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


def _canonical_json(value: object) -> bytes:
    """Sorted keys, no spaces, UTF-8: the form record.LogRecord.content_digest hashes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
