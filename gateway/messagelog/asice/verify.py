"""ASiC-E containers: one logged message with everything needed to prove it, offline, years later.

A security officer who is handed a container can check, with no gateway and no database,
that the message bytes are the ones the sending gateway signed (manifest -> hash-tree proof
-> XML-DSig over the root, chained to a federation CA) and that the log held this record at
a time a TSA vouches for (record -> chain hash -> timestamp proof -> RFC 3161 token).
docs/verification.md does every step by hand with unzip, sha256sum, openssl and xmlsec1;
:func:`verify_container` does the same in code.

The zip layout follows ASiC-E (ETSI EN 319 162-1 §4.4 and Annex A): `mimetype` first, stored,
no extra field, so `file(1)`-style sniffing finds the media type at byte 38:

    mimetype                        application/vnd.etsi.asic-e+zip
    message.xml | message.bin       the message exactly as logged (absent: body logging off)
    rest-request.json | rest-response.json   the signed REST head, when there is one
    manifest.txt                    the transport manifest: its SHA-256 is the signed leaf
    META-INF/signatures0.xml        the xg:SignedRoot, byte for byte as signed
    META-INF/proof.json             leaf (manifest digest) -> signed root (PROOF_FORMAT)
    META-INF/record.json            the log record's content fields and chain hashes
    META-INF/timestamp.tsr          RFC 3161 TimeStampResp over the log batch root
    META-INF/timestamp-proof.json   record hash -> stamped root (PROOF_FORMAT)
    META-INF/ocsp.der               the signer's OCSP response, when the record has one
    META-INF/manifest.xml           every other file with its media type and SHA-256

`META-INF/manifest.xml` uses the element vocabulary of EN 319 162-1's ASiCManifest schema
(DataObjectReference with URI, MimeType, ds:DigestMethod, ds:DigestValue), because the
OpenDocument manifest has no digests. It is not a signed ASiCManifest (it has no
SigReference): it is an index, checked entry by entry. What binds the files is the chain
above, not this list. Generic ASiC validators will not understand `signatures0.xml` (it is
not XAdES); `xmlsec1` and this module do.

Sans-IO: bytes and values in, bytes and reports out.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from asn1crypto import cms
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from gateway.crypto.certs import member_of
from gateway.crypto.hashtree import DIGEST_SIZE
from gateway.crypto.rootsig import SHA256_URI, SignatureVerificationError, VerifiedRoot, verify_root_signature
from gateway.crypto.timestamp import TimestampError, verify_timestamp_token
from gateway.ids import ClientId
from gateway.lru import BoundedLru
from gateway.messagelog.asice.build import (
    _asic_manifest,
    _record_json,
    timestamp_response,
    timestamp_token_of,
)
from gateway.messagelog.asice.layout import (
    _MEDIA_TYPES,
    _REST_HEAD_FILES,
    ASIC_MANIFEST,
    ASIC_NS,
    CONTAINER_NAMES,
    DS_NS,
    LOG_SIGNATURE,
    LOG_SIGNATURE_PROOF,
    MANIFEST_TXT,
    MAX_EVIDENCE_FILE_BYTES,
    MESSAGE_BIN,
    MESSAGE_XML,
    MIMETYPE,
    OCSP,
    PROOF,
    RECORD,
    RECORD_FORMAT,
    SIGNATURE,
    TIMESTAMP,
    TIMESTAMP_PROOF,
    ContainerError,
    message_file_name,
    parse_manifest,
)
from gateway.messagelog.asice.proof import _canonical_json, _digest_from_hex, decode_proof
from gateway.messagelog.asice.recordsig import check_record_signature
from gateway.messagelog.asice.zipread import DEFAULT_ZIP_LIMITS, ZipLimits, read_container
from gateway.messagelog.evidence import (
    DEFAULT_STATUS_POLICY,
    EvidenceError,
    StatusPolicy,
    check_header_ids,
    check_parts_present,
    check_signer,
    check_status,
)
from gateway.messagelog.record import OUTCOME_OK
from gateway.protocol.transport import PartName
from gateway.xmlsafe import UnsafeXml, XmlSyntaxError, parse_xml

# --- verifying -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One verification step's outcome: its name, whether it passed, and why (or what it found)."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class ContainerReport:
    """Everything :func:`verify_container` checked, and what a valid container proves."""

    checks: tuple[Check, ...]
    record: Mapping[str, Any] | None = field(default=None, compare=False)
    signer: str | None = None
    signed_at: dt.datetime | None = None
    timestamped_at: dt.datetime | None = None
    record_hash: bytes | None = None
    body_included: bool = False
    warnings: tuple[str, ...] = ()
    signer_member: str | None = None
    prev_hash: bytes | None = None

    @property
    def valid(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    @property
    def problems(self) -> tuple[str, ...]:
        return tuple(f"{check.name}: {check.detail}" for check in self.checks if not check.passed)


class _Failed(Exception):
    """A verification step's failure, turned into a failed :class:`Check` by its caller."""


def verify_container(
    data: bytes,
    *,
    trusted_cas: Sequence[x509.Certificate],
    trusted_tsa_certs: Sequence[x509.Certificate],
    tsa_ca_certs: Sequence[x509.Certificate] | None = None,
    status_policy: StatusPolicy = DEFAULT_STATUS_POLICY,
    require_timestamp: bool = True,
    limits: ZipLimits = DEFAULT_ZIP_LIMITS,
    require_record_signature: bool = False,
) -> ContainerReport:
    """Check a container completely and offline; `report.valid` says whether all steps passed.

    The steps are those of docs/verification.md: zip safety and layout; every file against
    META-INF/manifest.xml; the message and REST head against manifest.txt; the signed root
    against `trusted_cas` (rootsig.verify_root_signature); the proof from SHA-256(manifest.txt)
    to that root; the record's fields against the files and its chain hash; every part the
    record says was logged is there; the signer is the member the record says must have
    signed, and the signed message carries the record's identifiers; the signer's OCSP status
    at the signing time (gateway.messagelog.evidence, `status_policy`); and the timestamp proof
    from the record hash to a root that the token stamps. The token's signer must be one of
    `trusted_tsa_certs`, pinned: a certificate merely issued by a trusted CA is not a TSA of
    the federation. Only `tsa_ca_certs`, when given, are CAs whose TSA certificates count too.
    A report names its first failed check (`problems[0]`).
    """
    try:
        files = read_container(data, limits)
    except ContainerError as exc:
        return ContainerReport((Check("zip", False, str(exc)),))
    checks = [Check("zip", True, f"ASiC-E layout, {len(files)} files")]
    state = _Verification(files)
    checks.append(_run("data files", state.check_data_files))
    checks.append(_run("message", state.check_parts))
    checks.append(_run("signature", lambda: state.check_signature(trusted_cas)))
    checks.append(_run("proof", state.check_proof))
    checks.append(_run("record", state.check_record))
    if checks[-1].passed:  # the checks below read the record; a bad one is already the finding
        checks.append(_run("logged parts", state.check_logged_parts))
        if all(check.passed for check in checks[3:5]):  # and the verified signature
            checks.append(_run("signer", lambda: state.check_signer(status_policy.server_owners)))
            checks.append(_run("identifiers", state.check_identifiers))
            checks.append(_run("certificate status", lambda: state.check_status(trusted_cas, status_policy)))
    tsa_cas = () if tsa_ca_certs is None else tsa_ca_certs
    carried_anchors = [*trusted_cas, *tsa_cas]
    if TIMESTAMP in files or TIMESTAMP_PROOF in files or require_timestamp:
        checks.append(
            _run("timestamp", lambda: state.check_timestamp(trusted_tsa_certs, tsa_cas, carried_anchors))
        )
    if require_record_signature or LOG_SIGNATURE in files or LOG_SIGNATURE_PROOF in files:
        checks.append(
            _run(
                "record signature",
                lambda: check_record_signature(
                    files,
                    state.record_hash,
                    trusted_cas,
                    required=require_record_signature,
                    gateway=str(state.content["gateway"]) if state.content else None,
                )[0],
            )
        )
    return ContainerReport(
        tuple(checks),
        record=state.content,
        signer=state.verified.signer_cert.subject.rfc4514_string() if state.verified else None,
        signed_at=state.verified.signing_time if state.verified else None,
        timestamped_at=state.timestamped_at,
        record_hash=state.record_hash,
        body_included=MESSAGE_XML in files or MESSAGE_BIN in files,
        warnings=tuple(state.warnings),
        signer_member=state.signer_member,
        prev_hash=state.prev_hash,
    )


def _run(name: str, step: Callable[[], str]) -> Check:
    try:
        return Check(name, True, step())
    except (_Failed, ValueError) as exc:  # ValueError: ContainerError and malformed values met while parsing
        return Check(name, False, str(exc))
    except Exception as exc:  # a container is hostile input: whatever a parser raises is a failed check
        return Check(name, False, f"{type(exc).__name__}: {exc}")


class _Verification:
    """The container's files and what the steps so far established, for the steps after them."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        self.files = files
        self.listed_media_types: dict[str, str] = {}
        self.verified: VerifiedRoot | None = None
        self.content: Mapping[str, Any] | None = None
        self.record_hash: bytes | None = None
        self.timestamped_at: dt.datetime | None = None
        self.warnings: list[str] = []
        self.signer_member: str | None = None
        self.prev_hash: bytes | None = None

    def check_data_files(self) -> str:
        """Every file but mimetype and the manifest itself is listed, with its SHA-256, and nothing else."""
        if ASIC_MANIFEST not in self.files:
            raise _Failed(f"{ASIC_MANIFEST} is missing")
        listed = _read_asic_manifest(self.files[ASIC_MANIFEST])
        present = set(self.files) - {MIMETYPE, ASIC_MANIFEST}
        if set(listed) != present:
            missing, unlisted = sorted(set(listed) - present), sorted(present - set(listed))
            raise _Failed(f"manifest.xml and the files differ: missing {missing}, unlisted {unlisted}")
        for name, (media_type, digest) in sorted(listed.items()):
            if not hmac.compare_digest(hashlib.sha256(self.files[name]).digest(), digest):
                raise _Failed(f"{name} does not match its digest in manifest.xml")
            if name in _MEDIA_TYPES and media_type != _MEDIA_TYPES[name]:
                raise _Failed(f"manifest.xml gives {name} the media type {media_type!r}")
        self.listed_media_types = {name: media_type for name, (media_type, _) in listed.items()}
        data_files = {name: self.files[name] for name in listed}
        if self.files[ASIC_MANIFEST] != _asic_manifest(data_files, self.listed_media_types):
            raise _Failed("manifest.xml is not in the one form this format writes")
        return f"{len(listed)} files match manifest.xml"

    def check_parts(self) -> str:
        """The message (and REST head) bytes are the ones the signed manifest lists."""
        entries = {entry.name: entry for entry in parse_manifest(self._file(MANIFEST_TXT))}
        message_entry = entries[PartName.MESSAGE]
        found: list[str] = []
        for name in (MESSAGE_XML, MESSAGE_BIN):
            if name in self.files:
                if not hmac.compare_digest(hashlib.sha256(self.files[name]).digest(), message_entry.digest):
                    raise _Failed(f"{name} is not the message manifest.txt lists (its SHA-256 differs)")
                if name != message_file_name(message_entry.content_type):
                    raise _Failed(f"{name} is the wrong file name for {message_entry.content_type!r}")
                if (
                    self.listed_media_types.get(name, message_entry.content_type)
                    != message_entry.content_type
                ):
                    raise _Failed(f"manifest.xml and manifest.txt give {name} different media types")
                found.append(name)
        for part, name in _REST_HEAD_FILES.items():
            if name in self.files:
                if part not in entries:
                    raise _Failed(f"{name} is in the container but manifest.txt lists no {part}")
                digest = hashlib.sha256(self.files[name]).digest()
                if not hmac.compare_digest(digest, entries[part].digest):
                    raise _Failed(f"{name} is not the {part} manifest.txt lists (its SHA-256 differs)")
                found.append(name)
        if not found:
            return "no body in the container (body logging off): manifest.txt alone gives its digest"
        return f"{', '.join(found)} match manifest.txt"

    def check_signature(self, trusted_cas: Sequence[x509.Certificate]) -> str:
        if SIGNATURE not in self.files and PROOF not in self.files:
            return _UNSIGNED
        signed_root = self._file(SIGNATURE)
        try:
            self.verified = verify_root_signature(signed_root, trusted_cas)
        except SignatureVerificationError as exc:
            raise _Failed(str(exc)) from exc
        except Exception as exc:
            # A corrupted certificate can surface cryptography's own parse errors (InvalidVersion,
            # DuplicateExtension, ValueError) from deep in the check; a container is hostile input,
            # so whatever the verifier raises is a failed check, never a crash.
            raise _Failed(f"the signed root does not verify: {type(exc).__name__}: {exc}") from exc
        subject = self.verified.signer_cert.subject.rfc4514_string()
        return f"signed by {subject} at {self.verified.signing_time.isoformat()}"

    def check_proof(self) -> str:
        """SHA-256(manifest.txt) is the leaf, and the proof leads from it to the signed root."""
        if SIGNATURE not in self.files and PROOF not in self.files:
            return _UNSIGNED
        proof = decode_proof(_utf8(self._file(PROOF), PROOF))
        if not hmac.compare_digest(proof.leaf, hashlib.sha256(self._file(MANIFEST_TXT)).digest()):
            raise _Failed("the proof's leaf is not SHA-256(manifest.txt)")
        if self.verified is None:
            raise _Failed("there is no verified signed root to lead to")
        if not hmac.compare_digest(proof.root, self.verified.root):
            raise _Failed("the proof does not lead to the signed root")
        return f"{len(proof.steps)} steps from SHA-256(manifest.txt) to the signed root"

    def check_record(self) -> str:
        """record.json's fields describe these files, and its chain hash is theirs."""
        data = self._file(RECORD)
        document = _json_object(data, RECORD)
        if set(document) != _RECORD_KEYS or document["format"] != RECORD_FORMAT:
            raise _Failed(f"{RECORD} is not a {RECORD_FORMAT} document")
        if data != _record_json(document):
            raise _Failed(f"{RECORD} is not in the one form this format writes")
        content = document["content"]
        if not isinstance(content, dict):
            raise _Failed("the record's content must be a JSON object")
        content_digest = hashlib.sha256(_canonical_json(content)).digest()  # LogRecord.content_digest
        if content_digest != _digest_from_hex(document["content_digest"], "content_digest"):
            raise _Failed("content_digest is not the SHA-256 of the record's content")
        prev_hash = _digest_from_hex(document["prev_hash"], "prev_hash")
        record_hash = hashlib.sha256(prev_hash + content_digest).digest()  # record.chain_hash
        if record_hash != _digest_from_hex(document["record_hash"], "record_hash"):
            raise _Failed("record_hash is not SHA-256(prev_hash || content_digest)")
        self.content = content
        self._check_fields_describe_files(content)
        self.record_hash, self.prev_hash = record_hash, prev_hash
        return f"record hash {record_hash.hex()} covers the files"

    def _check_fields_describe_files(self, content: Mapping[str, Any]) -> None:
        """The chained fields name these very files by digest, so the timestamp covers them too."""
        expected = {
            "manifest_sha256": _sha256_hex(self.files.get(MANIFEST_TXT)),
            "signed_root_sha256": _sha256_hex(self.files.get(SIGNATURE)),
            "ocsp_response_sha256": _sha256_hex(self.files.get(OCSP)),
        }
        for key, value in expected.items():
            if content.get(key) != value:
                raise _Failed(f"the record's {key} does not match the container's file")
        proof_file = self.files.get(PROOF)
        if content.get("proof_json") != (None if proof_file is None else _utf8(proof_file, PROOF)):
            raise _Failed(f"the record's proof_json is not {PROOF}")
        entries = {e.name: e for e in parse_manifest(self._file(MANIFEST_TXT))}
        if content.get("message_sha256") not in (None, entries[PartName.MESSAGE].digest.hex()):
            raise _Failed("the record's message_sha256 is not the manifest's message digest")
        heads = [entries[part].digest.hex() for part in _REST_HEAD_FILES if part in entries]
        if content.get("rest_head_sha256") not in (None, *heads):
            raise _Failed("the record's rest_head_sha256 is not the manifest's REST head digest")
        if proof_file is None and content.get("outcome") == OUTCOME_OK:
            raise _Failed("the record is of a signed message, but the container has no signature")

    def check_logged_parts(self) -> str:
        """Every part record.json says was logged is in the container (issue 9, hole 5)."""
        content = self._content()
        present = (
            {PartName.MESSAGE.value} if (MESSAGE_XML in self.files or MESSAGE_BIN in self.files) else set()
        )
        present |= {part.value for part, name in _REST_HEAD_FILES.items() if name in self.files}
        try:
            found = check_parts_present(content.get("logged_parts", None), present)
        except EvidenceError as exc:
            raise _Failed(str(exc)) from exc
        if "logged_parts" not in content:
            self.warnings.append(found)
        return found

    def check_signer(self, server_owners: frozenset[ClientId]) -> str:
        """The signer is the client's member (a request) or the provider's (a response)."""
        if self.verified is None:
            if SIGNATURE not in self.files and PROOF not in self.files:
                return _UNSIGNED
            raise _Failed("there is no verified signature to name its signer")
        content = self._content()
        try:
            found = check_signer(
                self.verified.signer_cert,
                str(content.get("direction")),
                _text_field(content, "client"),
                _text_field(content, "service"),
                fault=content.get("outcome", OUTCOME_OK) != OUTCOME_OK,
                server_owners=server_owners,
            )
        except EvidenceError as exc:
            raise _Failed(str(exc)) from exc
        self.signer_member = str(member_of(self.verified.signer_cert))
        return found

    def check_identifiers(self) -> str:
        """The signed message's own client, service and id are the record's."""
        if SIGNATURE not in self.files and PROOF not in self.files:
            return _UNSIGNED
        content = self._content()
        entries = {e.name: e for e in parse_manifest(self._file(MANIFEST_TXT))}
        message = self.files.get(MESSAGE_XML, self.files.get(MESSAGE_BIN))
        head = next((self.files[name] for name in _REST_HEAD_FILES.values() if name in self.files), None)
        try:
            return check_header_ids(
                kind=_text_field(content, "kind"),
                direction=_text_field(content, "direction"),
                outcome=_text_field(content, "outcome"),
                content_type=entries[PartName.MESSAGE].content_type,
                message=message,
                rest_head=head,
                client=_text_field(content, "client"),
                service=_text_field(content, "service"),
                message_id=_text_field(content, "message_id"),
            )
        except EvidenceError as exc:
            raise _Failed(str(exc)) from exc

    def check_status(self, trusted_cas: Sequence[x509.Certificate], policy: StatusPolicy) -> str:
        """The OCSP response attached for the signer: its CA's responder, good, fresh when signed."""
        if self.verified is None:
            if SIGNATURE not in self.files and PROOF not in self.files:
                return _UNSIGNED
            raise _Failed("there is no verified signature whose signer's status to check")
        try:
            return check_status(
                self.files.get(OCSP),
                self.verified.signer_cert,
                trusted_cas,
                self.verified.signing_time,
                policy,
            )
        except EvidenceError as exc:
            raise _Failed(str(exc)) from exc

    def _content(self) -> Mapping[str, Any]:
        if self.content is None:
            raise _Failed("there is no verified record to check against")
        return self.content

    def check_timestamp(
        self,
        trusted_tsa_certs: Sequence[x509.Certificate],
        tsa_cas: Sequence[x509.Certificate],
        carried_anchors: Sequence[x509.Certificate],
    ) -> str:
        """The record hash leads to a root, and a trusted TSA's token stamps that root."""
        if TIMESTAMP not in self.files and TIMESTAMP_PROOF not in self.files:
            raise _Failed("the container has no timestamp")
        proof = decode_proof(_utf8(self._file(TIMESTAMP_PROOF), TIMESTAMP_PROOF))
        if self.record_hash is None:
            raise _Failed("there is no verified record hash to start the timestamp proof from")
        if not hmac.compare_digest(proof.leaf, self.record_hash):
            raise _Failed("the timestamp proof does not start at this record's hash")
        response = self._file(TIMESTAMP)
        anchors = (tuple(trusted_tsa_certs), tuple(tsa_cas), tuple(carried_anchors))
        key = (hashlib.sha256(response).digest(), proof.root, anchors)
        root = proof.root
        self.timestamped_at = _stamped_roots.remembered(
            key, lambda: _verify_timestamp_file(response, root, trusted_tsa_certs, tsa_cas, carried_anchors)
        )
        if (
            self.verified is not None
            and self.verified.signing_time > self.timestamped_at + SIGNING_CLOCK_SKEW
        ):
            raise _Failed("the signing time the signer states is after the TSA stamped the record")
        return f"stamped at {self.timestamped_at.isoformat()}, {len(proof.steps)} steps to the stamped root"

    def _file(self, name: str) -> bytes:
        try:
            return self.files[name]
        except KeyError:
            raise _Failed(f"{name} is missing") from None


def _verify_timestamp_file(
    response: bytes,
    root: bytes,
    trusted_tsa_certs: Sequence[x509.Certificate],
    tsa_cas: Sequence[x509.Certificate],
    carried_anchors: Sequence[x509.Certificate],
) -> dt.datetime:
    """The genTime timestamp.tsr proves `root` at: its form, the token, the certificates it carries."""
    token = timestamp_token_of(response)
    if response != timestamp_response(token):
        raise _Failed(f"{TIMESTAMP} is not in the one form this format writes")
    try:
        stamped_at = verify_timestamp_token(token, root, trusted_tsa_certs, tsa_cas)
    except TimestampError as exc:
        raise _Failed(f"the timestamp token does not verify: {exc}") from exc
    except Exception as exc:  # lazy ASN.1 and certificate parsing, as above
        raise _Failed(f"the timestamp token does not verify: {type(exc).__name__}: {exc}") from exc
    _check_carried_certificates(token, [*trusted_tsa_certs, *carried_anchors])
    return stamped_at


STAMPED_CACHE_SIZE: Final = 256
"""Timestamp files remembered as verified, per root and trust: one token covers a whole batch
of records (hundreds of containers), so verifying a directory checks each token once."""

_stamped_roots: BoundedLru[tuple[bytes, bytes, tuple[Any, ...]], dt.datetime] = BoundedLru(STAMPED_CACHE_SIZE)


def _check_carried_certificates(token: bytes, anchors: Sequence[x509.Certificate]) -> None:
    """Every certificate the token carries is genuine: an anchor, or issued by one or by another such.

    CMS leaves this SET unsigned (RFC 5652 §5.1) and a verifier may take the signer from our
    pinned certificates instead, but `openssl ts -verify` builds its chain from these: a
    corrupted one must fail here as it fails there.
    """
    try:
        choices = cms.ContentInfo.load(token)["content"]["certificates"]
        carried = [
            x509.load_der_x509_certificate(c.chosen.dump()) for c in choices or () if c.name == "certificate"
        ]
    except ValueError as exc:
        raise _Failed(f"the timestamp token carries a malformed certificate: {exc}") from exc
    genuine = list(anchors)
    while pending := [cert for cert in carried if cert not in genuine]:
        issued = [cert for cert in pending if any(_issued_by(cert, issuer) for issuer in genuine)]
        if not issued:
            raise _Failed("the timestamp token carries a certificate no trusted CA issued")
        genuine += issued


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _text_field(content: Mapping[str, Any], name: str) -> str:
    value = content.get(name)
    if not isinstance(value, str):
        raise _Failed(f"the record's {name} must be text, not {type(value).__name__}")
    return value


SIGNING_CLOCK_SKEW: Final = dt.timedelta(minutes=1)
"""How far a signer's stated signing time may run ahead of the TSA's clock (as ocsp.CLOCK_SKEW)."""

_UNSIGNED: Final = "none: the record is of a fault the gateway logged unsigned (the record check confirms)"
_RECORD_KEYS: Final = frozenset({"format", "content", "content_digest", "prev_hash", "record_hash"})


def _read_asic_manifest(xml: bytes) -> dict[str, tuple[str, bytes]]:
    """name -> (media type, SHA-256) from META-INF/manifest.xml, in the shape we write."""
    try:
        root = parse_xml(xml, max_bytes=MAX_EVIDENCE_FILE_BYTES)
    except (UnsafeXml, XmlSyntaxError) as exc:
        raise _Failed(f"manifest.xml is not acceptable XML: {exc}") from exc
    if root.tag != f"{{{ASIC_NS}}}ASiCManifest":
        raise _Failed("manifest.xml must be an asic:ASiCManifest")
    listed: dict[str, tuple[str, bytes]] = {}
    for reference in root:
        children = list(reference)
        if (
            reference.tag != f"{{{ASIC_NS}}}DataObjectReference"
            or [child.tag for child in children] != [f"{{{DS_NS}}}DigestMethod", f"{{{DS_NS}}}DigestValue"]
            or children[0].get("Algorithm") != SHA256_URI
        ):
            raise _Failed("manifest.xml entries must be DataObjectReference(DigestMethod, DigestValue)")
        name = reference.get("URI", "")
        if name in listed or name not in CONTAINER_NAMES:
            raise _Failed(f"manifest.xml lists {name!r} twice or names no container file")
        try:
            digest = base64.b64decode((children[1].text or "").strip(), validate=True)
        except binascii.Error as exc:
            raise _Failed(f"manifest.xml digest of {name} is not base64") from exc
        if len(digest) != DIGEST_SIZE:
            raise _Failed(f"manifest.xml digest of {name} is not SHA-256")
        listed[name] = (reference.get("MimeType", ""), digest)
    return listed


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_utf8(data, what))
    except ValueError as exc:
        raise _Failed(f"{what} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise _Failed(f"{what} must hold a JSON object")
    return value


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Failed(f"{what} is not UTF-8") from exc


def _sha256_hex(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()
