"""Verifying a message log: is every record there, unaltered, signed and timestamped?

:class:`ChainVerifier` is the sans-IO core: it takes a chain's records in order and says which
is the first bad one and why. `gateway.messagelog.verify_db.verify_log` reads a chain from the
database in one consistent snapshot (so it can run while the gateway keeps logging) and feeds
the verifier.

Per record, in this order (the first failure ends verification; everything after a bad record
is suspect anyway):
  1. sequence numbers are contiguous from where purging left the chain: a deleted record
     leaves a gap (MISSING); a record after the chain's recorded head is BEYOND_HEAD;
  2. `prev_hash` is the previous record's hash: an inserted or reordered record breaks it;
  3. `record_hash` is recomputed from the content (gateway.messagelog.record.chain_hash):
     any edited field shows;
  4. the stored body's SHA-256 is `message_sha256` (decrypting first, when a cipher is given),
     and every part `logged_parts` names is stored (INCOMPLETE: a body or REST head removed;
     a record older than the field is counted in `legacy_records`, and only warned about);
  5. a signed record's manifest lists that body digest as its `message` part (and a REST
     record's head digest as its `rest-request`/`rest-response` part), the manifest's
     SHA-256 is the signature's leaf, the proof leads to the SignedRoot's root, and the
     SignedRoot's XML signature verifies with a certificate chaining to `trusted_cas`
     (checked once per signed root); for a record that states its logged parts, the signer is
     the member the record names (client's for a request, provider's for a response), the
     signed message carries the record's identifiers, and the attached OCSP response shows
     the signer's certificate good when it signed (gateway.messagelog.evidence; SIGNER,
     IDENTIFIERS, STATUS). Records older than `logged_parts` are verified as before;
  6. a timestamped record's proof leads from its record hash to the stamped root, and the
     token verifies over that root (`verify_token`, once per token); records up to the
     chain's stamped watermark must have one;
  7. the record's hash is signed by its gateway (gateway.messagelog.logsig): its proof leads
     from the record hash to a root signed by a certificate chaining to `trusted_cas`; a
     record without one is refused when `require_record_signatures`.
At the end (:meth:`ChainVerifier.finish`): the chain reaches the head its row records, and
the newest signed head (gateway.messagelog.heads) given with `expect_head`; its last record is
the last leaf of its signing batch and of its timestamp batch (gateway.messagelog.logsig.
is_rightmost), so records cut from inside a batch show as TRUNCATED.

What the chain alone cannot see, because it has no secret, the record signatures and heads
do: an edited record needs the owner's key to be signed again, and a chain cut at its end (with
its row and tokens) falls short of the signed head kept in the head file and by the witness.
What remains: records logged after the newest head and cut at a batch boundary, bounded by the
head interval; and an attacker holding the node's signing key (docs/security.md).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, TypeVar

from cryptography import x509

from gateway.crypto.hashtree import leaf_hash, node_hash
from gateway.crypto.rootsig import SignatureVerificationError, VerifiedRoot, verify_root_signature
from gateway.lru import BoundedLru
from gateway.messagelog.asice import PROOF_FORMAT, ContainerError, parse_manifest
from gateway.messagelog.crypto_at_rest import BodyCipher, BodyDecryptionError
from gateway.messagelog.evidence import (
    DEFAULT_STATUS_POLICY,
    EvidenceError,
    StatusPolicy,
    check_header_ids,
    check_parts_present,
    check_signer,
    check_status,
)
from gateway.messagelog.logsig import is_rightmost, signed_by_owner
from gateway.messagelog.record import OUTCOME_OK, LoggedPart, LogRecord, chain_hash
from gateway.messagelog.stored import StoredRecord, StoredTimestamp
from gateway.protocol.transport import MAX_PROOF_STEPS, PartName

PAGE_SIZE: Final = 2000
"""Records read per query: large enough that round trips do not count, small enough for memory."""

KNOWN_TREES: Final = 64
"""Trees whose proven nodes are kept: records arrive grouped by signing batch and timestamp
batch, so only the last few trees see more records."""

KNOWN_VERDICTS: Final = 256
"""Signed roots, tokens, OCSP verdicts and signer checks remembered: records arrive grouped by
batch, so a batch's signature is checked once while its records pass; the oldest are forgotten,
so memory stays flat however long the chain (a root met again later is simply checked again)."""

TokenVerifier = Callable[[bytes, bytes], datetime]
"""`verify_token(token_der, digest) -> genTime`: raises when the token is not a valid RFC 3161
token over `digest` from a trusted TSA (gateway.crypto.timestamp provides one)."""


class Problem(enum.StrEnum):
    """Why a record is bad."""

    MISSING = "missing"  # a sequence number is absent: the record was deleted
    BEYOND_HEAD = "beyond-head"  # a record after the head the chain's row records
    NOT_LINKED = "not-linked"  # prev_hash is not the previous record's hash: inserted or reordered
    MODIFIED = "modified"  # the record's content does not hash to its record_hash
    BODY = "body"  # the stored body does not match its digest, or does not decrypt
    MANIFEST = "manifest"  # the signed manifest does not list this body
    SIGNATURE = "signature"  # the batch signature does not verify
    TIMESTAMP = "timestamp"  # the timestamp proof or token does not verify
    NOT_STAMPED = "not-stamped"  # the chain says it is stamped, the record has no timestamp
    SIGNER = "signer"  # signed by another member than the record's client (request) or provider (response)
    IDENTIFIERS = "identifiers"  # the signed message names other identifiers than the record
    STATUS = "status"  # the signer's OCSP status is missing, not good, not fresh, or not its CA's
    INCOMPLETE = "incomplete"  # a part the record says was logged is not stored
    UNREADABLE = "unreadable"  # the row does not read back as a record (a column of the wrong type)
    RECORD_SIGNATURE = "record-signature"  # the gateway's signature over the record hash is absent or bad
    TRUNCATED = "truncated"  # records a signed head or a batch's tree proves were logged are gone


@dataclass(frozen=True)
class BadRecord:
    seq: int
    problem: Problem
    reason: str


@dataclass(frozen=True)
class VerificationReport:
    """What a verification found: how many records passed, and the first bad one if any."""

    gateway: str
    node: str
    checked: int  # records that passed every check, from the chain's start
    first_bad: BadRecord | None
    signatures_verified: int  # distinct signed roots whose signature was checked
    tokens_verified: int  # distinct timestamp tokens checked with verify_token
    unstamped: int  # good records not (yet) timestamped
    legacy_records: int = 0  # good records stored before `logged_parts`: completeness not checkable
    first_seq: int = 1  # where this verification started (after a previous one's point when resumed)
    settled: tuple[int, bytes] | None = None  # (seq, hash) of the last good timestamped record

    @property
    def ok(self) -> bool:
        return self.first_bad is None


class _Bad(Exception):
    def __init__(self, problem: Problem, reason: str) -> None:
        super().__init__(reason)
        self.problem = problem
        self.reason = reason


class ChainVerifier:
    """Checks one chain's records fed in order, from `start_seq` whose predecessor hashed to `start_hash`.

    With `trusted_cas` None the signed roots' signatures are not checked (everything else is):
    what a security officer's quick look without the federation's trust anchors can still say.
    """

    def __init__(
        self,
        *,
        start_seq: int,
        start_hash: bytes,
        head_seq: int,
        stamped_seq: int,
        trusted_cas: Sequence[x509.Certificate] | None,
        verify_token: TokenVerifier | None = None,
        cipher: BodyCipher | None = None,
        status_policy: StatusPolicy = DEFAULT_STATUS_POLICY,
        require_record_signatures: bool = False,
        expect_head: tuple[int, bytes, str] | None = None,
    ) -> None:
        """`expect_head` is (seq, record hash, where it comes from) of the newest signed head:
        the chain must reach it, through a record of that hash."""
        self._require_record_signatures = require_record_signatures
        self._expect_head = expect_head
        self._last: StoredRecord | None = None
        self._record_roots: _Recent[bytes, VerifiedRoot] = _Recent(KNOWN_VERDICTS)
        self._next_seq = start_seq
        self._status_policy = status_policy
        self._statuses: _Recent[tuple[bytes | None, bytes], str] = _Recent(KNOWN_VERDICTS)  # (OCSP, root)
        self._signers: _Recent[tuple[bytes, str, str, str, bool], str] = _Recent(KNOWN_VERDICTS)
        self._body: bytes | None = None
        self._prev_hash = start_hash
        self._head_seq = head_seq
        self._stamped_seq = stamped_seq
        self._trusted_cas = None if trusted_cas is None else tuple(trusted_cas)
        self._verify_token = verify_token
        self._cipher = cipher
        self._roots: _Recent[bytes, VerifiedRoot] = _Recent(KNOWN_VERDICTS)
        self._tokens: _Recent[int, datetime] = _Recent(KNOWN_VERDICTS)  # timestamp id -> its genTime
        self._trees = _KnownNodes(KNOWN_TREES)
        self.checked = 0
        self.unstamped = 0
        self.legacy_records = 0

    @property
    def signatures_verified(self) -> int:
        """Distinct message-batch signatures checked (a root forgotten and met again counts again)."""
        return self._roots.added

    @property
    def tokens_verified(self) -> int:
        return self._tokens.added

    @property
    def last_verified(self) -> tuple[int, bytes]:
        """(seq, record hash) of the last good record; the start's predecessor before any."""
        return self._next_seq - 1, self._prev_hash

    def verified_root(self, signed_root_xml: bytes) -> VerifiedRoot | None:
        """What a signed root checked so far proved (signer, signing time); None if not checked."""
        return self._roots.get(signed_root_xml)

    def stamped_at(self, timestamp_id: int) -> datetime | None:
        """The time a token checked so far proves; None if its token was not verified."""
        return self._tokens.get(timestamp_id)

    def check(self, stored: StoredRecord) -> BadRecord | None:
        """None if `stored` is good (and it becomes the predecessor of the next), else why not."""
        if stored.seq != self._next_seq:
            return BadRecord(
                self._next_seq,
                Problem.MISSING,
                f"record {self._next_seq} is missing: the chain continues at {stored.seq}",
            )
        try:
            self._check(stored)
        except _Bad as bad:
            return BadRecord(stored.seq, bad.problem, bad.reason)
        self._next_seq += 1
        self._prev_hash = stored.record_hash
        self._last = stored
        self.checked += 1
        return None

    def finish(self) -> BadRecord | None:
        """After the last record: the chain must reach the head its row records and the signed
        head, and must not end inside a signing or timestamp batch."""
        if self._next_seq <= self._head_seq:
            return BadRecord(
                self._next_seq,
                Problem.MISSING,
                f"record {self._next_seq} is missing: the chain's head is {self._head_seq}",
            )
        return self._check_head() or self._check_batch_ends()

    def _check_head(self) -> BadRecord | None:
        """The chain reaches the newest signed head: fewer records are a truncation."""
        if self._expect_head is None:
            return None
        seq, _, source = self._expect_head
        if self._next_seq <= seq:
            return BadRecord(
                self._next_seq,
                Problem.TRUNCATED,
                f"records {self._next_seq} to {seq} are missing: the signed head from {source} "
                f"says the chain reached {seq}",
            )
        return None

    def _check_batch_ends(self) -> BadRecord | None:
        """The last record is the last leaf of its signing and timestamp trees (logsig.is_rightmost)."""
        last = self._last
        if last is None:
            return None
        for what, proof_json in (
            ("signing", last.log_signature_proof_json),
            ("timestamp", last.timestamp_proof_json),
        ):
            if proof_json is None:
                continue
            try:
                steps = _read_proof(proof_json).steps
            except ValueError:
                continue  # already refused by the record's own checks
            if not is_rightmost(steps):
                return BadRecord(
                    last.seq + 1,
                    Problem.TRUNCATED,
                    f"the chain ends inside a {what} batch: record {last.seq} is not the last of its "
                    "batch, so records after it were removed",
                )
        return None

    def _check(self, stored: StoredRecord) -> None:
        if stored.seq > self._head_seq:
            raise _Bad(Problem.BEYOND_HEAD, f"the chain's head is {self._head_seq}")
        if not hmac.compare_digest(stored.prev_hash, self._prev_hash):
            raise _Bad(Problem.NOT_LINKED, f"prev_hash is not the hash of record {stored.seq - 1}")
        self._check_parts(stored)  # before the hash: a part removed is named as such, not as an edit
        if not hmac.compare_digest(chain_hash(stored.prev_hash, stored.record), stored.record_hash):
            raise _Bad(Problem.MODIFIED, "the record's content does not match its record_hash")
        self._check_body(stored)
        self._check_signature(stored)
        self._check_timestamp(stored)
        self._check_record_signature(stored)
        head = self._expect_head
        if (
            head is not None
            and stored.seq == head[0]
            and not hmac.compare_digest(stored.record_hash, head[1])
        ):
            raise _Bad(Problem.MODIFIED, f"the record is not the one the signed head from {head[2]} names")

    def _check_record_signature(self, stored: StoredRecord) -> None:
        """Step 7: the gateway's signature over this record's hash (gateway.messagelog.logsig)."""
        if stored.log_signature is None or stored.log_signature_proof_json is None:
            if self._require_record_signatures:
                raise _Bad(Problem.RECORD_SIGNATURE, "the record is not signed by its gateway")
            return
        proof = _proof_from_record(
            stored.record_hash,
            stored.log_signature_proof_json,
            Problem.RECORD_SIGNATURE,
            "record signature",
            "the record signature is for another record hash",
        )
        if self._trusted_cas is None:
            return
        verified = self._verified_root(
            self._record_roots,
            stored.log_signature,
            self._trusted_cas,
            Problem.RECORD_SIGNATURE,
            owner_of=stored.record.gateway,
        )
        if not self._leads_to(proof, verified.root):
            raise _Bad(
                Problem.RECORD_SIGNATURE, "the record signature's proof does not lead to the signed root"
            )

    @staticmethod
    def _verified_root(
        cache: _Recent[bytes, VerifiedRoot],
        signed_root_xml: bytes,
        trusted_cas: Sequence[x509.Certificate],
        problem: Problem,
        *,
        owner_of: str | None = None,
    ) -> VerifiedRoot:
        """A signed root's verification, done once per signature (a batch of records shares one) and
        kept in `cache`; with `owner_of`, the signer must also be that gateway's owner."""
        verified = cache.get(signed_root_xml)
        if verified is None:
            try:
                verified = verify_root_signature(signed_root_xml, trusted_cas)
            except SignatureVerificationError as exc:
                raise _Bad(problem, str(exc)) from exc
            if owner_of is not None and not signed_by_owner(owner_of, verified.signer_cert):
                raise _Bad(problem, f"the record is not signed by the owner of {owner_of}")
            cache.put(signed_root_xml, verified)
        return verified

    def _leads_to(self, proof: _Proof, root: bytes) -> bool:
        """Whether `proof` climbs from its leaf to `root` (each climb is remembered in the trees)."""
        return proof.root == root and self._trees.contains(root, proof.leaf, proof.climb())

    def _check_body(self, stored: StoredRecord) -> None:
        record = stored.record
        body = record.message
        if body is None and stored.encrypted_body is not None and self._cipher is not None:
            try:
                body = self._cipher.decrypt(stored.encrypted_body, None)
            except BodyDecryptionError as exc:
                raise _Bad(Problem.BODY, str(exc)) from exc
        if body is not None and hashlib.sha256(body).hexdigest() != record.message_sha256:
            raise _Bad(Problem.BODY, "the stored body does not match message_sha256")
        self._body = body

    def _check_parts(self, stored: StoredRecord) -> None:
        """Every part the record says was logged is stored (issue 9, hole 5)."""
        record = stored.record
        if record.logged_parts is None:
            self.legacy_records += 1
            return
        present = set()
        if record.message is not None or stored.encrypted_body is not None:
            present.add(LoggedPart.MESSAGE.value)
        if record.rest_head is not None:
            present.update(part.value for part in record.parts_present() if part is not LoggedPart.MESSAGE)
        try:
            check_parts_present([part.value for part in record.logged_parts], present)
        except EvidenceError as exc:
            raise _Bad(Problem.INCOMPLETE, str(exc)) from exc

    def _check_signature(self, stored: StoredRecord) -> None:
        record = stored.record
        if record.signed_root_xml is None and record.proof_json is None:
            return  # an unsigned gateway fault
        if record.signed_root_xml is None or record.proof_json is None:
            raise _Bad(Problem.SIGNATURE, "a signed record needs both its signed root and its proof")
        try:
            entries = parse_manifest(record.manifest)
            proof = _read_proof(record.proof_json)
        except (ContainerError, ValueError) as exc:
            raise _Bad(Problem.SIGNATURE, f"malformed manifest or proof: {exc}") from exc
        listed = {entry.name: entry.digest.hex() for entry in entries}
        if record.message_sha256 is not None and listed.get(PartName.MESSAGE) != record.message_sha256:
            raise _Bad(Problem.MANIFEST, "the signed manifest does not list this message's digest")
        if record.rest_head is not None:
            head = listed.get(PartName.REST_REQUEST) or listed.get(PartName.REST_RESPONSE)
            if head != hashlib.sha256(record.rest_head).hexdigest():
                raise _Bad(Problem.MANIFEST, "the signed manifest does not list this REST head's digest")
        if not hmac.compare_digest(hashlib.sha256(record.manifest).digest(), proof.leaf):
            raise _Bad(Problem.SIGNATURE, "the proof's leaf is not the manifest's digest")
        if self._trusted_cas is None:
            return  # no trust anchors given: a look at the log's structure, not a verification
        verified = self._verified_root(
            self._roots, record.signed_root_xml, self._trusted_cas, Problem.SIGNATURE
        )
        if not self._leads_to(proof, verified.root):
            raise _Bad(Problem.SIGNATURE, "the proof does not lead to the signed root")
        if record.logged_parts is not None:  # records older than the field verify as before
            self._check_evidence(record, verified)

    def _check_evidence(self, record: LogRecord, verified: VerifiedRoot) -> None:
        """Who signed, which identifiers the signed message names, the signer's status then."""
        assert self._trusted_cas is not None
        assert record.signed_root_xml is not None
        direction = record.direction.value
        fault = record.outcome != OUTCOME_OK
        # The same signer, for the same parties: a batch's records mostly repeat one verdict.
        signer_key = (record.signed_root_xml, direction, record.client, record.service, fault)
        if self._signers.get(signer_key) is None:
            try:
                verdict = check_signer(
                    verified.signer_cert,
                    direction,
                    record.client,
                    record.service,
                    fault=fault,
                    server_owners=self._status_policy.server_owners,
                )
            except EvidenceError as exc:
                raise _Bad(Problem.SIGNER, str(exc)) from exc
            self._signers.put(signer_key, verdict)
        try:
            check_header_ids(
                kind=record.kind.value,
                direction=direction,
                outcome=record.outcome,
                content_type=record.content_type,
                message=self._body,
                rest_head=record.rest_head,
                client=record.client,
                service=record.service,
                message_id=record.message_id,
            )
        except EvidenceError as exc:
            raise _Bad(Problem.IDENTIFIERS, str(exc)) from exc
        ocsp = record.ocsp_response
        key = (ocsp, record.signed_root_xml)  # bytes keys: their hash is computed once per object
        if self._statuses.get(key) is not None:
            return
        try:
            verdict = check_status(
                ocsp, verified.signer_cert, self._trusted_cas, verified.signing_time, self._status_policy
            )
        except EvidenceError as exc:
            raise _Bad(Problem.STATUS, str(exc)) from exc
        self._statuses.put(key, verdict)

    def _check_timestamp(self, stored: StoredRecord) -> None:
        if stored.timestamp_proof_json is None:
            if stored.seq <= self._stamped_seq:
                raise _Bad(Problem.NOT_STAMPED, f"records up to {self._stamped_seq} are timestamped")
            self.unstamped += 1
            return
        timestamp = stored.timestamp
        if timestamp is None:
            raise _Bad(Problem.TIMESTAMP, "the record's timestamp token is missing")
        if not timestamp.first_seq <= stored.seq <= timestamp.last_seq:
            raise _Bad(Problem.TIMESTAMP, f"timestamp {timestamp.id} does not cover this record")
        proof = _proof_from_record(
            stored.record_hash,
            stored.timestamp_proof_json,
            Problem.TIMESTAMP,
            "timestamp",
            "the timestamp proof is for another record",
        )
        if not self._leads_to(proof, timestamp.root):
            raise _Bad(Problem.TIMESTAMP, "the timestamp proof does not lead to the stamped root")
        self._check_token(timestamp)

    def _check_token(self, timestamp: StoredTimestamp) -> None:
        if self._verify_token is None or self._tokens.get(timestamp.id) is not None:
            return
        try:
            gen_time = self._verify_token(timestamp.token, timestamp.root)
        except Exception as exc:  # the verifier's own error types; any failure is a bad token
            raise _Bad(Problem.TIMESTAMP, f"timestamp token does not verify: {exc}") from exc
        self._tokens.put(timestamp.id, gen_time)


# --- proofs, read and checked fast -----------------------------------------------------------


@dataclass(frozen=True)
class _Proof:
    """A proof read from its canonical text; its steps are decoded only as far as they are climbed
    (a climb usually stops at a node an earlier record of the batch proved, after a step or two)."""

    leaf: bytes
    root: bytes
    text: str
    steps_at: int  # where the first step starts in `text`
    step_count: int

    def climb(self) -> Iterator[tuple[str, str]]:
        """(sibling hex, "left"|"right"), leaf upwards. The text matched _PROOF_TEXT, so every step
        is `{"sibling":"<64 hex>","side":"left"}` or `..."right"}`, one after another."""
        text, at = self.text, self.steps_at
        for _ in range(self.step_count):
            sibling = text[at + _SIBLING_AT : at + _SIBLING_AT + 64]
            if text[at + _SIDE_AT] == "l":
                yield sibling, "left"
                at += _STEP_LENGTH + 1  # and the comma
            else:
                yield sibling, "right"
                at += _STEP_LENGTH + 2

    @property
    def steps(self) -> list[tuple[str, str]]:
        return list(self.climb())


def _proof_from_record(record_hash: bytes, text: str, problem: Problem, what: str, elsewhere: str) -> _Proof:
    """A record's proof of `what` (its signature, its timestamp), which must climb from its own hash;
    `elsewhere` says what is wrong when it climbs from another."""
    try:
        proof = _read_proof(text)
    except ValueError as exc:
        raise _Bad(problem, f"malformed {what} proof: {exc}") from exc
    if proof.leaf != record_hash:
        raise _Bad(problem, elsewhere)
    return proof


def _read_proof(text: str) -> _Proof:
    """A PROOF_FORMAT text (gateway.messagelog.asice) in its canonical form, read fast.

    `asice.decode_proof` parses the JSON, then re-encodes it to insist on the canonical text:
    more work than all the rest of a record's verification. A pattern of the canonical text
    accepts exactly the same proofs in a fraction of the time.
    """
    match = _PROOF_TEXT.fullmatch(text)
    if match is None:
        raise ValueError(f"not a {PROOF_FORMAT} proof in canonical form")
    leaf, root, steps_text = match.groups()
    count = steps_text.count("{")
    if count > MAX_PROOF_STEPS:
        raise ValueError(f"a proof has at most {MAX_PROOF_STEPS} steps")
    return _Proof(bytes.fromhex(leaf), bytes.fromhex(root), text, match.start(3), count)


_HEX64: Final = "[0-9a-f]{64}"
_STEP_TEXT: Final = rf'\{{"sibling":"({_HEX64})","side":"(left|right)"\}}'
_SIBLING_AT: Final = len('{"sibling":"')
_SIDE_AT: Final = _SIBLING_AT + len("0" * 64 + '","side":"')
_STEP_LENGTH: Final = _SIDE_AT + len('left"}')  # a "right" step is one longer
_ANY_STEP: Final = _STEP_TEXT.replace("(", "(?:")
_PROOF_TEXT: Final = re.compile(
    rf'\{{"format":"{re.escape(PROOF_FORMAT)}","leaf":"({_HEX64})","root":"({_HEX64})",'
    rf'"steps":\[((?:{_ANY_STEP}(?:,{_ANY_STEP})*)?)\]\}}'
)
"""asice.encode_proof's output exactly: sorted keys, no spaces, lower-case hex, steps from the leaf."""


_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class _Recent(BoundedLru[_K, _V]):
    """The last verdicts, by key (gateway.lru): a batch's records find their batch's verdict
    here, and memory stays bounded however long the chain. `added` counts every verdict put.

    The verdict found last is kept beside the map: consecutive records mostly share it (the
    same signed root, OCSP response, token), and comparing with one key (for the blobs read
    in one page, the same object) costs less than the map's lock and reordering."""

    added = 0
    _last: tuple[_K, _V] | None = None

    def get(self, key: _K) -> _V | None:
        last = self._last
        if last is not None and (last[0] is key or last[0] == key):
            return last[1]
        found = super().get(key)
        if found is not None:
            self._last = (key, found)
        return found

    def put(self, key: _K, value: _V) -> None:
        super().put(key, value)
        self.added += 1


class _KnownNodes:
    """Tree nodes already proven to lie under a trusted root, for the last few roots.

    Once one record's path to a root checks out, every node on it and every sibling it used
    is a genuine part of that tree (SHA-256 is collision resistant); a later proof in the same
    tree can stop climbing at the first such node. A batch of n records then costs about 2n
    hashes instead of n log n, which is what keeps verification fast.
    """

    def __init__(self, roots_kept: int) -> None:
        self._roots_kept = roots_kept
        self._known: OrderedDict[bytes, set[bytes]] = OrderedDict()

    def contains(self, root: bytes, leaf: bytes, steps: Iterable[tuple[str, str]]) -> bool:
        known = self._known.get(root)
        if known is None:
            known = self._known[root] = {root}
            if len(self._known) > self._roots_kept:
                self._known.popitem(last=False)
        value = leaf_hash(leaf)
        path = [value]
        for sibling_hex, side in steps:
            if value in known:
                break
            sibling = bytes.fromhex(sibling_hex)
            value = node_hash(sibling, value) if side == "left" else node_hash(value, sibling)
            path += (sibling, value)
        if value not in known:
            return False
        known.update(path)
        return True
