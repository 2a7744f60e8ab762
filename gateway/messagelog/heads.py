"""Signed log heads: where a node's chain stood, signed by the gateway owner and timestamped.

A chain alone cannot show that its newest records were cut away together with its row and
tokens: nothing remembers they existed. So at an interval and at shutdown each node signs its
chain's head (gateway, node, seq, record hash, the audit log's head hash, time), gets an RFC
3161 token over it, and keeps the result in three places an attacker does not control at once:
its database, a file outside it (one JSON line per head, fsync'd), and the federation's witness,
the central registry. `xgate log verify` then refuses a chain that falls short of the newest
head it is given (gateway.messagelog.verify: TRUNCATED), including a chain deleted entirely.

The document, one line of canonical JSON (sorted keys, no spaces):

    {"format": "xgate-loghead/1", "head": {...}, "signature": base64(SignedRoot XML),
     "timestamp": base64(TimeStampToken DER) or null}

The SignedRoot's Root, and the token's message imprint, are SHA-256 of the canonical JSON of
"head": checkable with Python's json and hashlib, `xmlsec1` and `openssl ts` (docs/verification.md,
"Log record signatures and heads"). Sans-IO: values and bytes in and out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from cryptography import x509

from gateway.crypto.rootsig import RootSigner, SignatureVerificationError, VerifiedRoot, verify_root_signature

HEAD_FORMAT: Final = "xgate-loghead/1"

MAX_HEAD_LINE_BYTES: Final = 64 * 1024
"""A head is a few KB (a signed root with its certificate, a token); a line beyond this is not one."""

DEFAULT_HEAD_INTERVAL_SECONDS: Final = 10.0
"""How often a head is signed: records logged since the newest head are what a truncation could
still hide, so this bounds it; a signature and a TSA request every 10 s cost nothing."""

HEAD_FILE_NAME: Final = "messagelog-heads.jsonl"
"""The default head file, beside (not inside) the node's data directory."""


class HeadError(ValueError):
    """A head document that is malformed or does not verify."""


@dataclass(frozen=True)
class LogHead:
    gateway: str
    node: str
    seq: int
    record_hash: bytes
    time: datetime
    audit_hash: bytes | None = None  # the management API audit log's head (gateway.adminstore)

    def fields(self) -> dict[str, Any]:
        return {
            "gateway": self.gateway,
            "node": self.node,
            "seq": self.seq,
            "record_hash": self.record_hash.hex(),
            "audit_hash": None if self.audit_hash is None else self.audit_hash.hex(),
            "time": self.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }

    def digest(self) -> bytes:
        """SHA-256 of the head's canonical JSON: the signed root and the stamped imprint."""
        return hashlib.sha256(_canonical(self.fields())).digest()


@dataclass(frozen=True)
class SignedHead:
    head: LogHead
    signed_root_xml: bytes
    token: bytes | None

    def to_line(self) -> str:
        """The document as one line of canonical JSON, without the newline."""
        document = {
            "format": HEAD_FORMAT,
            "head": self.head.fields(),
            "signature": base64.b64encode(self.signed_root_xml).decode("ascii"),
            "timestamp": None if self.token is None else base64.b64encode(self.token).decode("ascii"),
        }
        return _canonical(document).decode("utf-8")


def sign_head(head: LogHead, signer: RootSigner, token: bytes | None = None) -> SignedHead:
    return SignedHead(head, signer.sign(head.digest(), head.time), token)


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def parse_head(line: str | bytes) -> SignedHead:
    """A head document's values, unverified; HeadError if it is not one."""
    raw = line.encode("utf-8") if isinstance(line, str) else line
    if len(raw) > MAX_HEAD_LINE_BYTES:
        raise HeadError("a head line is too long")
    try:
        document = json.loads(raw)
        if not isinstance(document, dict) or document.get("format") != HEAD_FORMAT:
            raise HeadError(f"not a {HEAD_FORMAT} document")
        fields = document["head"]
        if set(fields) != {"gateway", "node", "seq", "record_hash", "audit_hash", "time"}:
            raise HeadError("the head's fields are not the ones this format has")
        if not isinstance(fields["seq"], int) or fields["seq"] < 0:
            raise HeadError("the head's seq is not a number")
        head = LogHead(
            gateway=str(fields["gateway"]),
            node=str(fields["node"]),
            seq=fields["seq"],
            record_hash=_digest(fields["record_hash"]),
            audit_hash=None if fields["audit_hash"] is None else _digest(fields["audit_hash"]),
            time=datetime.strptime(fields["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC),
        )
        signed_root = base64.b64decode(document["signature"], validate=True)
        token = (
            None if document["timestamp"] is None else base64.b64decode(document["timestamp"], validate=True)
        )
    except HeadError:
        raise
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise HeadError(f"malformed head document: {exc}") from exc
    return SignedHead(head, signed_root, token)


def _digest(text: Any) -> bytes:
    value = bytes.fromhex(text)
    if len(value) != 32:
        raise HeadError("a head's hashes are SHA-256")
    return value


def verify_head(
    signed: SignedHead,
    trusted_cas: Sequence[x509.Certificate],
    *,
    verify_token: Callable[[bytes, bytes], datetime] | None = None,
    is_owner_cert: Callable[[str, x509.Certificate], bool] | None = None,
) -> VerifiedRoot:
    """The head is signed over its own digest by a certificate chaining to `trusted_cas` (and,
    with `is_owner_cert`, one of its gateway's owner), and its token, if checked, stamps it."""
    try:
        verified = verify_root_signature(signed.signed_root_xml, trusted_cas)
    except SignatureVerificationError as exc:
        raise HeadError(f"the head's signature does not verify: {exc}") from exc
    if not hmac.compare_digest(verified.root, signed.head.digest()):
        raise HeadError("the head's signature is over another head")
    if is_owner_cert is not None and not is_owner_cert(signed.head.gateway, verified.signer_cert):
        raise HeadError(f"the head is not signed by the owner of {signed.head.gateway}")
    if verify_token is not None and signed.token is not None:  # a head the TSA could not stamp
        try:  # still stands on its signature
            verify_token(signed.token, signed.head.digest())
        except Exception as exc:  # the verifier's own error types
            raise HeadError(f"the head's timestamp does not verify: {exc}") from exc
    return verified


def newest_heads(
    lines: Iterable[str | bytes],
    trusted_cas: Sequence[x509.Certificate] | None,
    *,
    verify_token: Callable[[bytes, bytes], datetime] | None = None,
    is_owner_cert: Callable[[str, x509.Certificate], bool] | None = None,
) -> tuple[dict[tuple[str, str], SignedHead], list[str]]:
    """The newest verified head of each (gateway, node) among `lines`, and the problems of the
    lines refused (each named by its number). Without `trusted_cas` nothing is verified."""
    newest: dict[tuple[str, str], SignedHead] = {}
    problems: list[str] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            signed = parse_head(line)
            if trusted_cas is not None:
                verify_head(signed, trusted_cas, verify_token=verify_token, is_owner_cert=is_owner_cert)
        except HeadError as exc:
            problems.append(f"head line {number}: {exc}")
            continue
        key = (signed.head.gateway, signed.head.node)
        if key not in newest or signed.head.seq >= newest[key].head.seq:
            newest[key] = signed
    return newest, problems
