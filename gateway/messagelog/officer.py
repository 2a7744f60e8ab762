"""What the security officer sees of the message log: queries, views, verdicts (sans-IO).

The management API (gateway.admin.api) and `xgate log` (gateway.messagelog.cli) answer the
same questions, one over HTTP and one straight from a database an auditor was handed: find
records (:class:`SearchQuery`), show an exchange's request and response with each record's
verification status (:func:`record_status`), export records as ASiC-E containers, verify
whole chains. The answers are JSON-ready dictionaries built here, so both paths give the
same fields, and the CLI renders either the same way.

Nothing here reads a database or a file: gateway.messagelog.inspector does, with these.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from cryptography import x509

from gateway.crypto.timestamp import verify_timestamp_token
from gateway.db import MAX_SQL_INTEGER
from gateway.globalconf import GlobalConf
from gateway.ids import ClientId, IdentifierError, ServiceId, slash_form
from gateway.messagelog.archive import ContainerTrust
from gateway.messagelog.crypto_at_rest import BodyCipher
from gateway.messagelog.evidence import DEFAULT_STATUS_POLICY, status_policy
from gateway.messagelog.record import (
    OUTCOME_BENEATH,
    OUTCOME_CACHE_HIT,
    OUTCOME_CACHE_PREFIX,
    OUTCOME_CACHE_STALE,
    OUTCOME_OK,
    Direction,
)
from gateway.messagelog.store import MAX_SEARCH_LIMIT, ChainState, StoredRecord
from gateway.messagelog.verify import BadRecord, ChainVerifier, Problem, TokenVerifier, VerificationReport
from gateway.timetext import TimeTextError, parse_when

DEFAULT_SEARCH_LIMIT: Final = 100
"""The management APIs' default page (gateway.webapi.types.DEFAULT_PAGE); the officer pages on
with --offset."""

MAX_PREVIEW_BYTES: Final = 4096
"""Of a body shown by `show`: enough to recognise a message; the whole body is in its export."""

MAX_EXPORT_PER_CALL: Final = 20
"""Containers in one API answer: each carries a body of up to config.DEFAULT_MAX_MESSAGE_BYTES
(10 MB) in base64, so an answer stays a few hundred MB at worst; the CLI pages on."""

MAX_EXCHANGES_SHOWN: Final = 20
"""Exchanges `show` lists for one message id (ids are the client's, so they may repeat)."""

SEARCH_FILTERS: Final = ("message_id", "client", "service", "user_id", "since", "until", "outcome")
PAGING: Final = ("limit", "offset")

OUTCOME_CACHE_ANY: Final = OUTCOME_CACHE_PREFIX.rstrip(".") + OUTCOME_BENEATH
"""`cache.*`: every answer served from the cache, whether `cache.hit` or `cache.stale`."""
NAMED_OUTCOMES: Final = (OUTCOME_OK, OUTCOME_CACHE_HIT, OUTCOME_CACHE_STALE, OUTCOME_CACHE_ANY)
OUTCOME_CHOICES: Final = (
    *NAMED_OUTCOMES,
    "a fault code (Server.ServerProxy.AccessDenied, ...)",
    "a fault code's start and .* (Server.ServerProxy.ServiceFailed.*, Client.*)",
)
"""What `outcome` may be: said whole when the officer gives anything else."""
_FAULT_CODE: Final = r"(?:[Cc]lient|[Ss]erver)(?:\.[A-Za-z][A-Za-z0-9_]*)"
_FAULT_CODE_RE: Final = re.compile(_FAULT_CODE + "+")
_FAULT_CODE_START_RE: Final = re.compile(_FAULT_CODE + "*" + re.escape(OUTCOME_BENEATH))


class QueryError(ValueError):
    """A query the officer wrote wrongly; the message says which parameter and why."""


def check_outcome(outcome: str) -> str:
    """The outcome filter if the log could hold what it asks for, else QueryError listing the choices.

    A record's outcome is `ok`, `cache.hit`, `cache.stale`, or the X-Road fault code the
    gateway logged, its own or a peer's (so the set of codes is open: any `Client.`/`Server.`
    code is accepted). What can match nothing (`stale`, `cache.miss`, `OK`) is refused rather
    than answered with an empty page the officer would take for "nothing happened".
    """
    if (
        outcome in NAMED_OUTCOMES
        or _FAULT_CODE_RE.fullmatch(outcome)
        or _FAULT_CODE_START_RE.fullmatch(outcome)
    ):
        return outcome
    raise QueryError(f"outcome {outcome[:80]!r} is not one the log records: use {'; '.join(OUTCOME_CHOICES)}")


class TrustUnavailable(Exception):
    """No trust anchors to verify with (the node has no global configuration yet, or none were given)."""


# --- queries ---------------------------------------------------------------------------------


def parse_time(text: str, name: str = "time", now: dt.datetime | None = None) -> dt.datetime:
    """ISO 8601 (`Z` allowed; a time without a zone is UTC, the log's own zone) or relative to
    `now` (`2h`, `yesterday`: gateway.timetext)."""
    try:
        return parse_when(text, now or dt.datetime.now(dt.UTC))
    except TimeTextError as exc:
        raise QueryError(f"{name}: {exc}") from None


def format_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class SearchQuery:
    """The security officer's search (store.search): every given filter must match.

    `client` and `service` are identifiers' text forms (INSTANCE/CLASS/MEMBER[/SUB]; the colon
    form is read too), checked and normalised: a malformed one is a QueryError, never a search
    that finds nothing. A member matches its subsystems too, a service without its version
    every version. Identifiers are case-sensitive. `since` is inclusive, `until` exclusive;
    `outcome` is one of OUTCOME_CHOICES (:func:`check_outcome`).
    """

    message_id: str | None = None
    client: str | None = None
    service: str | None = None
    user_id: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    outcome: str | None = None
    limit: int = DEFAULT_SEARCH_LIMIT
    offset: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_SEARCH_LIMIT:
            raise QueryError(f"limit must be 1..{MAX_SEARCH_LIMIT}")
        if not 0 <= self.offset <= MAX_SQL_INTEGER:
            raise QueryError(f"offset must be 0..{MAX_SQL_INTEGER}")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise QueryError(f"{name} must carry a time zone")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise QueryError("since must be before until")
        if self.outcome is not None:
            check_outcome(self.outcome)
        if self.client is not None:
            object.__setattr__(self, "client", client_filter(self.client))
        if self.service is not None:
            object.__setattr__(self, "service", service_filter(self.service))

    @classmethod
    def from_params(
        cls,
        params: Mapping[str, str],
        *,
        allowed: Iterable[str] = (),
        default_limit: int = DEFAULT_SEARCH_LIMIT,
        max_limit: int = MAX_SEARCH_LIMIT,
    ) -> SearchQuery:
        """The query in URL parameters (or CLI options); unknown names are refused, not ignored:
        a misspelt filter must not silently widen a search over personal data."""
        unknown = set(params) - set(SEARCH_FILTERS) - set(PAGING) - set(allowed)
        if unknown:
            raise QueryError(f"unknown parameters {sorted(unknown)}: use {[*SEARCH_FILTERS, *PAGING]}")
        texts = {name: params[name] for name in SEARCH_FILTERS if params.get(name)}
        limit = _integer(params, "limit", default_limit)
        if limit > max_limit:
            raise QueryError(f"limit must be 1..{max_limit}")
        return cls(
            message_id=texts.get("message_id"),
            client=texts.get("client"),
            service=texts.get("service"),
            user_id=texts.get("user_id"),
            since=parse_time(texts["since"], "since") if "since" in texts else None,
            until=parse_time(texts["until"], "until") if "until" in texts else None,
            outcome=texts.get("outcome"),
            limit=limit,
            offset=_integer(params, "offset", 0),
        )

    @property
    def has_filters(self) -> bool:
        return any(getattr(self, name) is not None for name in SEARCH_FILTERS)

    def to_params(self) -> dict[str, str]:
        """The query as URL parameters: what the client sends and the audit log keeps."""
        params: dict[str, str] = {}
        for name in SEARCH_FILTERS:
            value = getattr(self, name)
            if value is not None:
                params[name] = format_time(value) if isinstance(value, dt.datetime) else str(value)
        return {**params, "limit": str(self.limit), "offset": str(self.offset)}

    def store_filters(self) -> dict[str, Any]:
        """Keyword arguments for store.search."""
        return {name: getattr(self, name) for name in (*SEARCH_FILTERS, *PAGING)}


CASE_RULE: Final = "identifiers are case-sensitive, as X-Road's are: DEV/GOV/1001 is not dev/gov/1001"

CLIENT_FORM: Final = "INSTANCE/CLASS/MEMBER[/SUBSYSTEM]"
SERVICE_FORM: Final = "INSTANCE/CLASS/MEMBER[/SUBSYSTEM]/SERVICE[/VERSION]"


def client_filter(text: str) -> str:
    """The client filter in the one text form (X-Road's colon form is read too). A member's
    identifier matches the member and each of its subsystems (store.search)."""
    try:
        return ClientId.from_text(slash_form(text)).to_text()
    except IdentifierError as exc:
        raise QueryError(f"client: {exc.message} ({CASE_RULE})") from None


def service_filter(text: str) -> str:
    """The service filter in the one text form. Without its version it matches every version
    (store.search): REST services have none, SOAP services usually do."""
    spelled = slash_form(text)
    parts = spelled.count("/") + 1
    if parts < 4:
        raise QueryError(f"service: {text!r} is not of the form {SERVICE_FORM} ({CASE_RULE})")
    try:
        return ServiceId.from_text(spelled, has_subsystem=parts >= 5).to_text()
    except IdentifierError as exc:
        raise QueryError(f"service: {exc.message}; write {SERVICE_FORM} ({CASE_RULE})") from None


def _integer(params: Mapping[str, str], name: str, default: int) -> int:
    text = params.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise QueryError(f"{name} must be an integer") from None


def next_offset(query: SearchQuery, found: int) -> int | None:
    """Where the next page starts, or None when this page was the last."""
    return query.offset + found if found == query.limit else None


# --- trust -----------------------------------------------------------------------------------


def token_verifier(trust: ContainerTrust) -> TokenVerifier:
    """RFC 3161 verification (gateway.crypto.timestamp) with the federation's TSAs and CAs."""
    # The federation's TSAs are pinned: a certificate a member CA issued is not a TSA (issue 9).
    cas = trust.tsa_ca_certs or ()
    return partial(verify_timestamp_token, trusted_tsa_certs=trust.trusted_tsa_certs, ca_certs=cas)


def globalconf_trust(conf: GlobalConf) -> ContainerTrust:
    """The trust anchors a global configuration lists: its CAs, and its TSAs' certificates."""
    tsas = [
        x509.load_pem_x509_certificate(t.certificate.encode("ascii")) for t in conf.timestamping_authorities
    ]
    return ContainerTrust(
        trusted_cas=conf.trusted_ca_certs(), trusted_tsa_certs=tsas, status=status_policy(conf)
    )


# --- one record's verification status --------------------------------------------------------

STEPS: Final = ("chain", "content", "signature", "timestamp")
"""The verdict's parts, in the order gateway.messagelog.verify checks them."""
_UNREACHED: Final = ("",) * len(STEPS)

_STEP_OF: Final = {
    Problem.MISSING: "chain",
    Problem.BEYOND_HEAD: "chain",
    Problem.NOT_LINKED: "chain",
    Problem.MODIFIED: "content",
    Problem.BODY: "content",
    Problem.MANIFEST: "signature",
    Problem.SIGNATURE: "signature",
    Problem.TIMESTAMP: "timestamp",
    Problem.NOT_STAMPED: "timestamp",
    Problem.SIGNER: "signature",
    Problem.IDENTIFIERS: "signature",
    Problem.STATUS: "signature",
    Problem.INCOMPLETE: "content",
    Problem.UNREADABLE: "content",
}


@dataclass(frozen=True)
class RecordStatus:
    """What checking one record found, step by step (STEPS), and its first problem if any."""

    chain: str
    content: str
    signature: str
    timestamp: str
    problem: BadRecord | None = None

    @property
    def valid(self) -> bool:
        return self.problem is None

    def to_json(self) -> dict[str, Any]:
        problem = self.problem
        return {
            "valid": self.valid,
            "problem": None if problem is None else bad_record_json(problem),
            **{step: getattr(self, step) for step in STEPS},
        }


def bad_record_json(bad: BadRecord) -> dict[str, Any]:
    return {"seq": bad.seq, "problem": bad.problem.value, "reason": bad.reason}


def record_status(
    stored: StoredRecord,
    *,
    chain: ChainState | None,
    predecessor: bytes | None,
    trust: ContainerTrust | None,
    cipher: BodyCipher | None = None,
) -> RecordStatus:
    """Check one record as gateway.messagelog.verify checks a chain, and say what each step found.

    `predecessor` is the hash its prev_hash must be (store.predecessor_hash; None: the record
    before it is gone). Without `trust` the signatures and tokens are not checked, and the
    status says so: the chain and the digests still are.
    """
    seq = stored.seq
    if chain is None:
        return _status(_UNREACHED, BadRecord(seq, Problem.BEYOND_HEAD, "no chain row records its chain"))
    if predecessor is None:
        return _status(_UNREACHED, BadRecord(seq - 1, Problem.MISSING, f"record {seq - 1} is missing"))
    if predecessor != stored.prev_hash:
        reason = f"prev_hash is not the hash of record {seq - 1}"
        return _status(_UNREACHED, BadRecord(seq, Problem.NOT_LINKED, reason))
    verifier = ChainVerifier(
        start_seq=seq,
        start_hash=stored.prev_hash,
        head_seq=chain.head_seq,
        stamped_seq=chain.stamped_seq,
        trusted_cas=None if trust is None else trust.trusted_cas,
        verify_token=None if trust is None else token_verifier(trust),
        cipher=cipher,
        status_policy=DEFAULT_STATUS_POLICY if trust is None else trust.status,
    )
    bad = verifier.check(stored)  # first: the texts below read what it verified
    found = (
        _chain_text(stored, chain),
        _content_text(stored, cipher),
        _signature_text(stored, verifier, trust),
        _timestamp_text(stored, verifier, trust),
    )
    return _status(found, bad)


def _status(found: Sequence[str], bad: BadRecord | None) -> RecordStatus:
    """Steps before a failed one keep what they found; the ones after it were not reached."""
    texts = list(found)
    if bad is not None:
        failed_at = STEPS.index(_STEP_OF[bad.problem])
        texts[failed_at] = f"FAILED ({bad.problem.value}): {bad.reason}"
        texts[failed_at + 1 :] = ["not checked"] * (len(STEPS) - failed_at - 1)
    chain, content, signature, timestamp = texts
    return RecordStatus(chain, content, signature, timestamp, bad)


def _chain_text(stored: StoredRecord, chain: ChainState) -> str:
    if stored.seq == 1:
        where = "the chain's first record"
    elif stored.seq - 1 == chain.purged_seq:
        where = f"the first record kept (1-{chain.purged_seq} purged)"
    else:
        where = f"linked to record {stored.seq - 1}"
    return f"record {stored.seq} of node {stored.node} (head {chain.head_seq}), {where}"


def _content_text(stored: StoredRecord, cipher: BodyCipher | None) -> str:
    if stored.record.message is not None:
        body = "the body matches its digest"
    elif stored.encrypted_body is not None:
        body = "the body is encrypted at rest" + ("" if cipher else " (no key given: not decrypted)")
    else:
        body = "no body stored (body logging off)"
    return f"the content matches the record hash; {body}"


def _signature_text(stored: StoredRecord, verifier: ChainVerifier, trust: ContainerTrust | None) -> str:
    signed_root = stored.record.signed_root_xml
    if signed_root is None:
        return "none: a fault the gateway logged unsigned"
    verified = verifier.verified_root(signed_root)
    if verified is None:
        reason = "no trust anchors given" if trust is None else "not reached"
        return f"the manifest lists the message and the proof starts at it; signature not checked ({reason})"
    subject = verified.signer_cert.subject.rfc4514_string()
    return f"signed by {subject} at {format_time(verified.signing_time)}"


def _timestamp_text(stored: StoredRecord, verifier: ChainVerifier, trust: ContainerTrust | None) -> str:
    timestamp = stored.timestamp
    if stored.timestamp_proof_json is None or timestamp is None:
        return "not timestamped yet"
    stamped_at = verifier.stamped_at(timestamp.id)
    if stamped_at is None:
        reason = "no TSA certificates given" if trust is None else "not reached"
        return f"leads to the root of timestamp {timestamp.id}; token not checked ({reason})"
    batch = f"timestamp {timestamp.id}, records {timestamp.first_seq}-{timestamp.last_seq}"
    return f"stamped at {format_time(stamped_at)} ({batch})"


# --- views -----------------------------------------------------------------------------------


def record_summary(stored: StoredRecord) -> dict[str, Any]:
    """One row of a search answer."""
    record = stored.record
    return {
        "node": stored.node,
        "seq": stored.seq,
        "exchange_id": record.exchange_id,
        "message_id": record.message_id,
        "gateway": record.gateway,
        "side": record.side.value,
        "direction": record.direction.value,
        "kind": record.kind.value,
        "logged_at": format_time(record.logged_at),
        "client": record.client,
        "service": record.service,
        "user_id": record.user_id,
        "outcome": record.outcome,
        "fault_detail": record.fault_detail,
        "body_logged": record.message is not None or stored.encrypted_body is not None,
        "timestamped": stored.timestamp_proof_json is not None,
        "archive": stored.archive_id,
    }


def record_detail(stored: StoredRecord, status: RecordStatus) -> dict[str, Any]:
    """Everything `show` tells of one record: identifiers, times, digests, body, verification."""
    record = stored.record
    return {
        **record_summary(stored),
        "issue": record.issue,
        "represented_party": record.represented_party,
        "content_type": record.content_type,
        "message_sha256": record.message_sha256,
        "manifest_sha256": record.content_fields()["manifest_sha256"],
        "prev_hash": stored.prev_hash.hex(),
        "record_hash": stored.record_hash.hex(),
        "rest_head": _rest_head(record.rest_head),
        "body": _body(stored),
        "verification": status.to_json(),
    }


def _rest_head(head: bytes | None) -> Any:
    """The signed REST head as the JSON it is (docs/transport.md "REST head"), or its text."""
    if head is None:
        return None
    try:
        return json.loads(head)
    except ValueError:
        return head.decode("utf-8", "replace")


def _body(stored: StoredRecord) -> dict[str, Any]:
    message = stored.record.message
    if message is None:
        state = "encrypted" if stored.encrypted_body is not None else "not_logged"
        return {"state": state, "size": None, "preview": None, "truncated": False}
    preview = message[:MAX_PREVIEW_BYTES].decode("utf-8", "replace")
    return {
        "state": "logged",
        "size": len(message),
        "preview": preview,
        "truncated": len(message) > MAX_PREVIEW_BYTES,
    }


def exchange_view(exchange_id: str, details: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """An exchange's records (record_detail, in logged order): the request, the response, the rest."""
    requests = [d for d in details if d["direction"] == Direction.REQUEST.value]
    responses = [d for d in details if d["direction"] == Direction.RESPONSE.value]
    request = requests[0] if requests else None
    response = responses[-1] if responses else None
    return {
        "exchange_id": exchange_id,
        "request": request,
        "response": response,
        "other": [d for d in details if d is not request and d is not response],
    }


def verification_json(reports: Sequence[VerificationReport], problems: Sequence[str] = ()) -> dict[str, Any]:
    """The answer of a live verification: one entry per chain, valid only if all are and there are
    no other `problems` (a signed head that does not verify)."""
    chains = [
        {
            "gateway": report.gateway,
            "node": report.node,
            "valid": report.ok,
            "checked": report.checked,
            "signatures_verified": report.signatures_verified,
            "tokens_verified": report.tokens_verified,
            "unstamped": report.unstamped,
            "legacy_records": report.legacy_records,
            "first_seq": report.first_seq,
            "first_bad": None if report.first_bad is None else bad_record_json(report.first_bad),
        }
        for report in reports
    ]
    valid = all(chain["valid"] for chain in chains) and not problems
    return {"valid": valid, "chains": chains, "problems": list(problems)}


# --- exported containers ---------------------------------------------------------------------


@dataclass(frozen=True)
class ExportedContainer:
    """One record's ASiC-E container and what identifies it (archive.container_entry's fields)."""

    name: str
    data: bytes
    entry: Mapping[str, Any]


@dataclass(frozen=True)
class ExportFailure:
    """A record no container could be built for: its evidence does not fit together."""

    node: str
    seq: int
    message_id: str
    error: str


def export_json(
    containers: Sequence[ExportedContainer], failures: Sequence[ExportFailure], next_page: int | None
) -> dict[str, Any]:
    return {
        "containers": [
            {**container.entry, "name": container.name, "data": base64.b64encode(container.data).decode()}
            for container in containers
        ],
        "failures": [
            {"node": f.node, "seq": f.seq, "message_id": f.message_id, "error": f.error} for f in failures
        ],
        "next_offset": next_page,
    }


def export_from_json(answer: Mapping[str, Any]) -> tuple[list[ExportedContainer], list[ExportFailure]]:
    """The containers and failures of an API export answer (:func:`export_json`)."""
    containers = []
    for item in answer["containers"]:
        entry = {key: value for key, value in item.items() if key not in ("name", "data")}
        containers.append(ExportedContainer(str(item["name"]), base64.b64decode(item["data"]), entry))
    failures = [
        ExportFailure(str(f["node"]), int(f["seq"]), str(f["message_id"]), str(f["error"]))
        for f in answer["failures"]
    ]
    return containers, failures


def problem_lines(answer: Mapping[str, Any]) -> list[str]:
    """The problems of a verification answer (verification_json), one line each: each chain's
    first bad record, then the others (signed heads that do not verify)."""
    lines = []
    for chain in answer["chains"]:
        bad = chain["first_bad"]
        if bad is not None:
            where = f"{chain['gateway']} node {chain['node']}, record {bad['seq']}"
            lines.append(f"{where}: {bad['problem']}: {bad['reason']}")
    return lines + [str(problem) for problem in answer.get("problems") or ()]


def first_problem(answer: Mapping[str, Any]) -> str | None:
    """The first problem of a verification answer (verification_json), as one line; None if valid."""
    lines = problem_lines(answer)
    return lines[0] if lines else None
