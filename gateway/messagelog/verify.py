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

import contextlib
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

from gateway.crypto.hashtree import DIGEST_SIZE, LEAF_PREFIX, NODE_PREFIX, leaf_hash, node_hash
from gateway.crypto.rootsig import SignatureVerificationError, VerifiedRoot, verify_root_signature
from gateway.lru import BoundedLru
from gateway.messagelog.asice import PROOF_FORMAT, ContainerError, parse_manifest
from gateway.messagelog.crypto_at_rest import BodyCipher, BodyDecryptionError, EncryptedBody
from gateway.messagelog.evidence import (
    DEFAULT_STATUS_POLICY,
    EvidenceError,
    StatusPolicy,
    check_header_ids,
    check_parts_present,
    check_signer,
    check_status,
    soap_header_names,
)
from gateway.messagelog.logsig import is_rightmost, signed_by_owner
from gateway.messagelog.packing import (
    BatchTree,
    decompress_body,
    packed_steps_text,
    read_packed_steps,
    unpack_manifest,
)
from gateway.messagelog.record import (
    OUTCOME_CACHE_PREFIX,
    OUTCOME_OK,
    Direction,
    LoggedPart,
    MessageKind,
    Side,
    chain_hash,
    content_json,
    log_time,
)
from gateway.messagelog.stored import ChainPage, RecordRow, StoredRecord, StoredTimestamp
from gateway.protocol.soap import HeaderIdsReader
from gateway.protocol.transport import MANIFEST_FIRST_LINE, MAX_PROOF_STEPS, PartName

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
        self._last: StoredRecord | _RowEnds | None = None  # the last good record, or its row's ends
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
        self._message_paths = _PathMemo()
        self._headers = HeaderIdsReader()  # a batch's messages mostly repeat a few Headers
        self._record_paths = _PathMemo()
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
        seq = last[0] if isinstance(last, tuple) else last.seq
        ends = _row_ends(last) if isinstance(last, tuple) else _stored_ends(last)
        for what, rightmost in ends:
            if rightmost is False:
                return BadRecord(
                    seq + 1,
                    Problem.TRUNCATED,
                    f"the chain ends inside a {what} batch: record {seq} is not the last of its "
                    "batch, so records after it were removed",
                )
        return None

    # --- the fast way: a row checked against its page's shared parts ---------------------------

    def check_row(self, row: RecordRow, page: ChainPage) -> bool:
        """True when `row` (of `page`) is a good record, which then becomes the predecessor of
        the next as with :meth:`check`; False when this cannot tell, and :meth:`check` must judge
        the row's StoredRecord (`page.stored(row)`), which also names what is wrong.

        The same checks as :meth:`check`, for a record in the lean layout (gateway.messagelog.
        packing) whose evidence is all there: a SOAP record, its body in clear or encrypted (decrypted
        when a cipher is given, else left to its GCM tag as by :meth:`check`), its signature
        and record signature as packed steps, its timestamp proof rebuilt from its batch's
        tree. What a page's records share is checked once for the page or the batch: a blob's
        digest, a signed root's signature, a tree's root; each record then costs its own parts
        only (its body's digest, its record hash, its header's identifiers, a hash or two of its
        proofs). Anything else (another layout, an odd value, any check failing) says False.
        """
        try:
            found = self._fast(row, page)
        except (
            _Bad,
            BodyDecryptionError,
            TypeError,
            ValueError,
            AttributeError,
            KeyError,
            IndexError,
            OverflowError,
        ):
            return False
        if found is None:
            return False
        self._next_seq += 1
        self._prev_hash = found[1]
        self._last = found
        self.checked += 1
        self.unstamped += found[5]
        return True

    def _fast(self, row: RecordRow, page: ChainPage) -> _RowEnds | None:
        (
            gateway,
            _node,
            seq,
            prev_hash,
            record_hash,
            exchange_id,
            side,
            direction,
            kind,
            logged_at,
            message_id,
            client,
            service,
            user_id,
            issue,
            represented_party,
            content_type,
            message,
            body_key_id,
            body_nonce,
            message_sha256,
            rest_head,
            logged_parts,
            manifest,
            signed_root_sha256,
            proof_json,
            ocsp_sha256,
            outcome,
            fault_detail,
            timestamp_id,
            timestamp_proof,
            _archived_at,
            _archive_id,
            log_signature_sha256,
            log_signature_proof,
            body_codec,
            proof_steps,
            log_signature_steps,
        ) = row
        trusted = self._trusted_cas
        prev_hash, record_hash = bytes(prev_hash), bytes(record_hash)
        if (
            trusted is None
            or seq != self._next_seq
            or seq > self._head_seq
            or prev_hash != self._prev_hash
            or kind != _SOAP
            or rest_head is not None
            or side not in _SIDES
            or direction not in _DIRECTIONS
            or message_sha256 is None
            or logged_parts not in _FAST_PARTS
            or (logged_parts and message is None)
        ):
            return None
        head = self._expect_head
        if head is not None and seq == head[0] and record_hash != head[1]:
            return None
        # 4. the body (in clear or encrypted at rest, maybe compressed) is the one its digest names
        body = None
        if message is not None:
            if body_key_id is None:
                body = decompress_body(body_codec, bytes(message))
            elif self._cipher is not None:
                encrypted = EncryptedBody(body_key_id, bytes(body_nonce), bytes(message), body_codec)
                body = self._cipher.decrypt(encrypted, None)
            if body is not None and hashlib.sha256(body).hexdigest() != message_sha256:
                return None
        manifest = unpack_manifest(bytes(manifest), content_type)
        manifest_digest = hashlib.sha256(manifest).digest()
        blobs, blob_hex = page.blobs, page.blob_sha256_hex
        # 5. the signature: manifest, proof, signed root, evidence
        ocsp = signed_root = None
        proof_text = None
        if signed_root_sha256 is not None or proof_steps is not None or proof_json is not None:
            if signed_root_sha256 is None or proof_steps is None:
                return None  # a signed record needs both; a proof kept as text: the full way
            signed_root = blobs.get(bytes(signed_root_sha256), b"")
            if _listed_message(manifest, content_type) != message_sha256:
                return None
            verified = self._roots.get(signed_root) or self._verified_root(
                self._roots, signed_root, trusted, Problem.SIGNATURE
            )
            count, sides, siblings = read_packed_steps(bytes(proof_steps))
            if not self._message_paths.leads_to(verified.root, manifest_digest, count, sides, siblings):
                return None
            proof_text = packed_steps_text(manifest_digest, count, sides, siblings, verified.root)
            ocsp = None if ocsp_sha256 is None else blobs.get(bytes(ocsp_sha256), b"")
            self._check_evidence(
                signed_root,
                verified,
                direction=direction,
                kind=kind,
                outcome=outcome,
                client=client,
                service=service,
                content_type=content_type,
                message=body,
                rest_head=None,
                message_id=message_id,
                ocsp=ocsp,
            )
        elif ocsp_sha256 is not None:
            ocsp = blobs.get(bytes(ocsp_sha256), b"")
        # 3. the record hash, from the content as checked
        text = content_json(
            client,
            content_type,
            direction,
            exchange_id,
            fault_detail,
            gateway,
            issue,
            kind,
            log_time(logged_at),
            _PARTS_LISTED[logged_parts],
            manifest_digest.hex(),
            message_id,
            message_sha256,
            _blob_hex(blob_hex, ocsp),
            outcome,
            proof_text,
            represented_party,
            None,
            service,
            side,
            _blob_hex(blob_hex, signed_root),
            user_id,
        )
        content_digest = hashlib.sha256(text.encode("utf-8")).digest()
        if hashlib.sha256(prev_hash + content_digest).digest() != record_hash:
            return None
        # 6. the timestamp: the record is its batch tree's leaf, the tree's root the stamped one
        unstamped = 0
        tree = None
        index = 0
        if timestamp_proof is None:
            if timestamp_id is not None or seq <= self._stamped_seq:
                return None
            unstamped = 1
        else:
            timestamp = page.timestamps.get(timestamp_id)
            tree = page.trees.get(timestamp_id)
            if timestamp_proof != "" or timestamp is None or tree is None:
                return None
            index = seq - timestamp.first_seq
            if (
                not timestamp.first_seq <= seq <= timestamp.last_seq
                or not 0 <= index < len(tree.leaves)
                or tree.leaves[index] != record_hash
                or tree.root != timestamp.root
            ):
                return None
            self._check_token(timestamp)
        # 7. the record signature
        log_rightmost = None
        if log_signature_sha256 is None or log_signature_proof is None:
            if self._require_record_signatures:
                return None
        else:
            if log_signature_proof != "" or log_signature_steps is None:
                return None
            record_root = blobs.get(bytes(log_signature_sha256), b"")
            verified = self._record_roots.get(record_root) or self._verified_root(
                self._record_roots, record_root, trusted, Problem.RECORD_SIGNATURE, owner_of=gateway
            )
            count, sides, siblings = read_packed_steps(bytes(log_signature_steps))
            if not self._record_paths.leads_to(verified.root, record_hash, count, sides, siblings):
                return None
            log_rightmost = sides == (1 << count) - 1
        return seq, record_hash, log_rightmost, tree, index, unstamped

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
            self._check_evidence(
                record.signed_root_xml,
                verified,
                direction=record.direction.value,
                kind=record.kind.value,
                outcome=record.outcome,
                client=record.client,
                service=record.service,
                content_type=record.content_type,
                message=self._body,
                rest_head=record.rest_head,
                message_id=record.message_id,
                ocsp=record.ocsp_response,
            )

    def _check_evidence(
        self,
        signed_root_xml: bytes,
        verified: VerifiedRoot,
        *,
        direction: str,
        kind: str,
        outcome: str,
        client: str,
        service: str,
        content_type: str,
        message: bytes | None,
        rest_head: bytes | None,
        message_id: str,
        ocsp: bytes | None,
    ) -> None:
        """Who signed, which identifiers the signed message names, the signer's status then."""
        assert self._trusted_cas is not None
        fault = outcome != OUTCOME_OK
        # The same signer, for the same parties: a batch's records mostly repeat one verdict.
        signer_key = (signed_root_xml, direction, client, service, fault)
        if self._signers.get(signer_key) is None:
            try:
                verdict = check_signer(
                    verified.signer_cert,
                    direction,
                    client,
                    service,
                    fault=fault,
                    server_owners=self._status_policy.server_owners,
                )
            except EvidenceError as exc:
                raise _Bad(Problem.SIGNER, str(exc)) from exc
            self._signers.put(signer_key, verdict)
        try:
            if (
                kind != _SOAP
                or message is None
                or outcome.startswith(OUTCOME_CACHE_PREFIX)
                or not soap_header_names(
                    self._headers.read, content_type, message, client, service, message_id
                )
            ):
                check_header_ids(
                    kind=kind,
                    direction=direction,
                    outcome=outcome,
                    content_type=content_type,
                    message=message,
                    rest_head=rest_head,
                    client=client,
                    service=service,
                    message_id=message_id,
                    header_ids=self._headers.read,
                )
        except EvidenceError as exc:
            raise _Bad(Problem.IDENTIFIERS, str(exc)) from exc
        key = (ocsp, signed_root_xml)  # bytes keys: their hash is computed once per object
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


# --- the fast way's parts --------------------------------------------------------------------

_SOAP: Final = MessageKind.SOAP.value
_SIDES: Final = frozenset(side.value for side in Side)
_DIRECTIONS: Final = frozenset(direction.value for direction in Direction)
_PARTS_LISTED: Final = {LoggedPart.MESSAGE.value: [LoggedPart.MESSAGE.value], "": []}
"""The stored `logged_parts` the fast way takes (the body logged, or body logging off), as the
record hash lists them."""
_FAST_PARTS: Final = frozenset(_PARTS_LISTED)

_ONE_PART_MANIFEST: Final = re.compile(
    re.escape(MANIFEST_FIRST_LINE) + rb"message ([0-9a-f]{64}) [\x20-\x7e]+\n"
)
"""A manifest of the message part alone (a SOAP message's), which asice.parse_manifest reads as
that one entry: its digest is read here without building the entries."""


def _listed_message(manifest: bytes, content_type: str) -> str | None:
    """The digest (hex) a manifest lists for the `message` part; ContainerError when malformed."""
    one = _ONE_PART_MANIFEST.fullmatch(manifest)
    if one is not None:
        return one[1].decode("ascii")
    listed = {entry.name: entry.digest.hex() for entry in parse_manifest(manifest)}
    return listed.get(PartName.MESSAGE)


def _blob_hex(hashed: dict[bytes, str], blob: bytes | None) -> str | None:
    """The SHA-256 (hex) of a blob as read, as the record hash covers it; hashed once per page."""
    if blob is None:
        return None
    found = hashed.get(blob)
    if found is None:
        found = hashed[blob] = hashlib.sha256(blob).hexdigest()
    return found


_RowEnds = tuple[int, bytes, bool | None, BatchTree | None, int, int]
"""What check_row keeps of the last record it verified, for :meth:`ChainVerifier.finish`: its seq
and hash, whether it is the last leaf of its signing batch, its timestamp batch's tree and its
place there, and whether it is unstamped (1) or not (0)."""


def _row_ends(ends: _RowEnds) -> list[tuple[str, bool | None]]:
    """Whether a row's record is the last leaf of its signing and timestamp batches (None: none)."""
    _, _, log_rightmost, tree, index, _ = ends
    stamped = None if tree is None else is_rightmost(tree.proof(index))
    return [("signing", log_rightmost), ("timestamp", stamped)]


def _stored_ends(stored: StoredRecord) -> list[tuple[str, bool | None]]:
    """Whether a record's signing and timestamp proofs are their tree's last leaf's (None: no
    proof, or one its own checks already refused)."""
    ends: list[tuple[str, bool | None]] = []
    for what, proof_json in (
        ("signing", stored.log_signature_proof_json),
        ("timestamp", stored.timestamp_proof_json),
    ):
        rightmost = None
        if proof_json is not None:
            with contextlib.suppress(ValueError):
                rightmost = is_rightmost(_read_proof(proof_json).steps)
        ends.append((what, rightmost))
    return ends


class _PathMemo:
    """The path the last proof climbed to its root, so the next proof of the same tree climbs
    only until it meets it: a node met with the same steps above it leads to the same root.

    Exactly a full climb's answer (every step of the proof counts, as in the text the record
    hash covers), at a hash or two a record for consecutive leaves of a batch, not one a level.
    Proofs of one tree meet at the same distance below its root, so a node is looked for at
    one place of the last path only.
    """

    def __init__(self) -> None:
        self._root = b""
        self._count = 0
        self._sides = 0
        self._siblings = b""
        self._path: list[bytes] = []  # the last path's values from its leaf's hash to the root

    def leads_to(self, root: bytes, leaf: bytes, count: int, sides: int, siblings: bytes) -> bool:
        """Whether the steps (packing.read_packed_steps) climb from `leaf` to `root`."""
        last = self._path if root == self._root else []
        shift = self._count - count  # the last path's place for this path's step
        sha256 = hashlib.sha256  # hashtree.leaf_hash and node_hash, without a call each
        value = sha256(LEAF_PREFIX + leaf).digest()
        path = [value]
        for step in range(count):
            seen = step + shift
            if (
                0 <= seen < len(last)
                and last[seen] == value
                and sides >> step == self._sides >> seen
                and siblings[step * DIGEST_SIZE :] == self._siblings[seen * DIGEST_SIZE :]
            ):
                path += last[seen + 1 :]
                break
            sibling = siblings[step * DIGEST_SIZE : (step + 1) * DIGEST_SIZE]
            pair = sibling + value if sides >> step & 1 else value + sibling
            value = sha256(NODE_PREFIX + pair).digest()
            path.append(value)
        else:
            if value != root:
                return False
        self._root, self._count, self._sides, self._siblings, self._path = root, count, sides, siblings, path
        return True


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
