"""The container's record signature: the gateway's signature over the record hash (issue 9, hole 2).

record.json's fields are chained into the record hash, and a timestamp proves when that hash
existed, but anyone can recompute a hash and ask a TSA for a new token. The gateway's owner
signs its records' hashes in batches (gateway.messagelog.logsig), and the container carries
that signed root (`META-INF/log-signature.xml`) and the record hash's path to it
(`META-INF/log-signature-proof.json`): a rewritten record.json no longer leads to a root the
owner signed. Kept apart from `verify` so its steps read on their own.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence

from cryptography import x509

from gateway.crypto.certs import CertificateError, member_of
from gateway.crypto.hashtree import root_from_proof
from gateway.crypto.rootsig import SignatureVerificationError, VerifiedRoot, verify_root_signature
from gateway.ids import SecurityServerId
from gateway.messagelog.asice.layout import LOG_SIGNATURE, LOG_SIGNATURE_PROOF, ContainerError
from gateway.messagelog.asice.proof import decode_proof


def check_record_signature(
    files: Mapping[str, bytes],
    record_hash: bytes | None,
    trusted_cas: Sequence[x509.Certificate],
    *,
    required: bool,
    gateway: str | None = None,
) -> tuple[str, VerifiedRoot | None]:
    """What the check found, and the verified root; ContainerError when it fails. `gateway`, the
    record's, must be named by the signer's certificate as its owner (when given)."""
    if LOG_SIGNATURE not in files and LOG_SIGNATURE_PROOF not in files:
        if required:
            raise ContainerError("the record is not signed by its gateway (no log-signature.xml)")
        return "no record signature (a log from before record signing)", None
    if LOG_SIGNATURE not in files or LOG_SIGNATURE_PROOF not in files:
        raise ContainerError("a record signature needs both log-signature.xml and its proof")
    if record_hash is None:
        raise ContainerError("there is no verified record hash for the record signature to cover")
    try:
        proof = decode_proof(files[LOG_SIGNATURE_PROOF].decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ContainerError(f"{LOG_SIGNATURE_PROOF} is malformed: {exc}") from exc
    if not hmac.compare_digest(proof.leaf, record_hash):
        raise ContainerError("the record signature's proof does not start at this record's hash")
    root = root_from_proof(record_hash, proof.steps)
    try:
        verified = verify_root_signature(files[LOG_SIGNATURE], trusted_cas)
    except SignatureVerificationError as exc:
        raise ContainerError(f"the record signature does not verify: {exc}") from exc
    except Exception as exc:  # hostile input: whatever the verifier raises is a failed check
        raise ContainerError(f"the record signature does not verify: {type(exc).__name__}: {exc}") from exc
    if not hmac.compare_digest(root, verified.root) or not hmac.compare_digest(proof.root, root):
        raise ContainerError("the record signature's proof does not lead to the signed root")
    if gateway is not None and not _names_owner(gateway, verified.signer_cert):
        raise ContainerError(f"the record is not signed by the owner of {gateway}")
    subject = verified.signer_cert.subject.rfc4514_string()
    return f"record hash signed by {subject} at {verified.signing_time.isoformat()}", verified


def _names_owner(gateway: str, certificate: x509.Certificate) -> bool:
    try:
        return member_of(certificate) == SecurityServerId.from_text(gateway).owner
    except (CertificateError, ValueError):
        return False
