"""The security officer's reads of the message log: search, show, export, verify.

The message log holds personal data, so every call is audited like a change, with its query
parameters, whatever its result; verification runs as a background job (gateway.messagelog.
verifyjob) whose start is audited, and whose progress the caller polls. The answers are built
by gateway.messagelog.officer, the same ones `xgate log` prints from a database.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final, Literal

from pydantic import Field

from gateway.admin.context import TABLE, UNAVAILABLE, AdminContext
from gateway.admin.roles import Permission as P
from gateway.messagelog.inspector import LogInspector
from gateway.messagelog.officer import (
    MAX_EXPORT_PER_CALL,
    QueryError,
    SearchQuery,
    TrustUnavailable,
    export_json,
)
from gateway.messagelog.verifyjob import MAX_PROBLEMS
from gateway.webapi import ApiError, Call, Outcome, invalid, not_found
from gateway.webapi.types import (
    DEFAULT_PAGE,
    MAX_IDENTIFIER_LENGTH,
    MAX_TEXT_LENGTH,
    Answer,
    Body,
    Limit,
    Offset,
    Params,
    Time,
    utc,
)

_TEXT = Field(None, min_length=1, max_length=MAX_TEXT_LENGTH)
_IDENT = Field(min_length=1, max_length=MAX_TEXT_LENGTH, description="An exchange id, or else a message id.")

Side = Literal["consumer", "provider"]
ProblemKind = Literal[
    "missing",
    "beyond-head",
    "not-linked",
    "modified",
    "body",
    "manifest",
    "signature",
    "timestamp",
    "not-stamped",
    "signer",
    "identifiers",
    "status",
    "incomplete",
    "unreadable",
    "record-signature",
    "truncated",
]


class LogFilters(Params):
    """Every filter given must match."""

    message_id: str | None = _TEXT
    client: str | None = Field(
        None, min_length=1, max_length=MAX_IDENTIFIER_LENGTH, description="INSTANCE/CLASS/MEMBER[/SUBSYSTEM]."
    )
    service: str | None = Field(
        None, min_length=1, max_length=MAX_IDENTIFIER_LENGTH, description="The service's text form."
    )
    user_id: str | None = _TEXT
    since: Time | None = None
    until: Time | None = None
    outcome: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_TEXT_LENGTH,
        description=(
            "`ok`; `cache.hit` or `cache.stale` (answers served from the interface cache), `cache.*`"
            " for both; a fault code such as `Server.ServerProxy.AccessDenied`; or a code's start and"
            " `.*` (`Server.ServerProxy.ServiceFailed.*`: that code and every code beneath it)."
            " Anything else is refused (400) with the list."
        ),
    )
    offset: Offset = 0

    def query(self, limit: int) -> SearchQuery:
        try:
            return SearchQuery(
                message_id=self.message_id,
                client=self.client,
                service=self.service,
                user_id=self.user_id,
                since=utc(self.since),
                until=utc(self.until),
                outcome=self.outcome,
                limit=limit,
                offset=self.offset,
            )
        except QueryError as exc:
            raise invalid(str(exc)) from None


class LogSearch(LogFilters):
    limit: Limit = DEFAULT_PAGE


class LogExport(LogFilters):
    id: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_TEXT_LENGTH,
        description="An exchange or message id; no filters with it.",
    )
    limit: int = Field(
        MAX_EXPORT_PER_CALL,
        ge=1,
        le=MAX_EXPORT_PER_CALL,
        description=f"Containers per page, 1..{MAX_EXPORT_PER_CALL}.",
    )


class LogShow(Params):
    id: str = _IDENT


class LogVerify(Body):
    node: str | None = Field(
        None, min_length=1, max_length=MAX_TEXT_LENGTH, description="Only this node's chain."
    )
    full: bool = Field(
        False,
        description="Verify every chain from its start; by default each goes on from where its last "
        "verification reached.",
    )


class JobPath(Params):
    job_id: str = Field(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")


class LogRecord(Answer):
    node: str = Field(description="The gateway node whose chain holds the record.")
    seq: int = Field(description="The record's place in its node's chain.")
    exchange_id: str
    message_id: str
    gateway: str
    side: Side
    direction: Literal["request", "response"]
    kind: Literal["soap", "rest"]
    logged_at: str = Field(json_schema_extra={"format": "date-time"})
    client: str
    service: str
    user_id: str | None
    outcome: str = Field(description="`ok`, or the fault code the gateway answered with.")
    fault_detail: str | None
    body_logged: bool
    timestamped: bool
    archive: str | None


class LogPage(Answer):
    records: list[LogRecord]
    limit: int
    offset: int
    next_offset: int | None


class LogProblem(Answer):
    seq: int
    problem: ProblemKind
    reason: str


class LogRecordStatus(Answer):
    valid: bool
    problem: LogProblem | None
    chain: str
    content: str
    signature: str
    timestamp: str


class LogBody(Answer):
    state: Literal["logged", "not_logged", "encrypted"]
    size: int | None
    preview: str | None
    truncated: bool


class LogRecordDetail(LogRecord):
    issue: str | None
    represented_party: str | None
    content_type: str
    message_sha256: str | None
    manifest_sha256: str
    prev_hash: str
    record_hash: str
    rest_head: dict[str, Any] | None
    body: LogBody
    verification: LogRecordStatus


class LogExchange(Answer):
    exchange_id: str
    request: LogRecordDetail | None
    response: LogRecordDetail | None
    other: list[LogRecordDetail]


class LogExchanges(Answer):
    id: str
    verified_with_trust: bool
    exchanges: list[LogExchange]


class LogContainer(Answer):
    name: str = Field(description="A file name for the container: SEQ-RECORDHASH.asice.")
    node: str
    seq: int
    side: Side
    gateway: str
    message_id: str
    exchange_id: str
    direction: str
    logged_at: str
    record_hash: str
    timestamped: bool
    sha256: str
    size: int
    data: str = Field(description="The ASiC-E container, base64.", json_schema_extra={"format": "byte"})


class ExportFailure(Answer):
    node: str
    seq: int
    message_id: str | None = None
    error: str


class LogContainers(Answer):
    containers: list[LogContainer]
    failures: list[ExportFailure]
    next_offset: int | None


class ChainVerification(Answer):
    gateway: str
    node: str
    valid: bool
    checked: int
    signatures_verified: int
    tokens_verified: int
    unstamped: int
    legacy_records: int
    first_seq: int = Field(description="Where this verification started in the chain.")
    first_bad: LogProblem | None


class LogVerification(Answer):
    valid: bool
    chains: list[ChainVerification]
    problems: list[str] = Field(
        description="Problems beyond the chains': a signed head that does not verify."
    )


class LogVerificationJob(Answer):
    id: str
    state: Literal["running", "done", "failed"]
    node: str | None
    full: bool
    started_at: str = Field(json_schema_extra={"format": "date-time"})
    finished_at: str | None = Field(json_schema_extra={"format": "date-time"})
    records_verified: int
    records_total: int
    records_per_second: int
    valid: bool | None = Field(description="Once done: whether every chain verified.")
    result: LogVerification | None
    problems: list[str] = Field(description=f"The first {MAX_PROBLEMS} problems, one line each.")
    problem_count: int
    error: str | None = Field(description="Why a failed job could not finish.")


def _message_log(ctx: AdminContext) -> LogInspector:
    if ctx.message_log is None:
        raise not_found("this node keeps no message log")
    return ctx.message_log


_RANGE: Final = "`since` must be before `until`."


@TABLE.read(
    "/message-log/records",
    "message_log.search",
    P.READ_MESSAGE_LOG,
    LogPage,
    audit_reads=True,
    description=_RANGE,
)
async def search_message_log(ctx: AdminContext, call: Call[LogSearch, None]) -> Outcome:
    """Search the message log, newest first, one page."""
    inspector = _message_log(ctx)
    answer = await asyncio.to_thread(inspector.search, call.params.query(call.params.limit))
    return Outcome(answer, target="message-log", details={"found": len(answer["records"])})


@TABLE.read("/message-log/exchange", "message_log.show", P.READ_MESSAGE_LOG, LogExchanges, audit_reads=True)
async def show_message_log(ctx: AdminContext, call: Call[LogShow, None]) -> Outcome:
    """Show an exchange's request and response (or the exchanges of a message id), each verified."""
    inspector = _message_log(ctx)
    ident = call.params.id
    answer = await asyncio.to_thread(inspector.show, ident)
    if not answer["exchanges"]:
        raise not_found(f"no record of {ident!r} in the message log")
    return Outcome(answer, target=ident, details={"exchanges": len(answer["exchanges"])})


@TABLE.read(
    "/message-log/containers",
    "message_log.export",
    P.READ_MESSAGE_LOG,
    LogContainers,
    audit_reads=True,
    description="Give `id` alone, or at least one search filter (the whole log is not one request). "
    + _RANGE
    + " Each container verifies offline (docs/verification.md).",
)
async def export_message_log(ctx: AdminContext, call: Call[LogExport, None]) -> Outcome:
    """Export records as ASiC-E containers, for an id or a page of a search."""
    inspector = _message_log(ctx)
    params = call.params
    ident = params.id
    if ident is not None:
        if set(call.request.query) != {"id"}:
            raise invalid("give id alone, or search filters without id")
        containers, failures, next_page = await asyncio.to_thread(inspector.export, ident=ident)
        if not containers and not failures:
            raise not_found(f"no record of {ident!r} in the message log")
    else:
        query = params.query(params.limit)
        if not query.has_filters:
            raise invalid("name the records to export: give id, or at least one search filter")
        containers, failures, next_page = await asyncio.to_thread(inspector.export, query=query)
    details = {"containers": [c.name for c in containers], "failures": len(failures)}
    return Outcome(
        export_json(containers, failures, next_page), target=ident or "message-log", details=details
    )


@TABLE.operation(
    "POST",
    "/message-log/verification-jobs",
    "message_log.verify",
    P.READ_MESSAGE_LOG,
    LogVerificationJob,
    status=202,
    reconfigures=False,
    errors=(400, 401, 403, 404, 503),
    description="Starts verifying this gateway's log chains in the background, with the global "
    "configuration's trust anchors, and answers at once; poll the job for progress and the result. "
    "One job runs at a time: while one runs, this answers with it.",
)
async def start_log_verification(ctx: AdminContext, call: Call[None, LogVerify]) -> Outcome:
    """Start verifying the message log (a background job)."""
    inspector = _message_log(ctx)
    try:
        job, started = inspector.start_verification(call.body.node, full=call.body.full)
    except TrustUnavailable as exc:
        raise ApiError(503, UNAVAILABLE, str(exc)) from None
    details = {"job": job.id, "started": started, "node": call.body.node, "full": call.body.full}
    return Outcome(job.to_json(), 202, target="message-log", details=details)


@TABLE.read(
    "/message-log/verification-jobs/{job_id}",
    "message_log.verify_progress",
    P.READ_MESSAGE_LOG,
    LogVerificationJob,
    description="Not audited: the start of the job is, and polling it would flood the audit log.",
)
async def log_verification_job(ctx: AdminContext, call: Call[JobPath, None]) -> Outcome:
    """A log verification job's progress, and its result once done."""
    job = _message_log(ctx).jobs.get(call.params.job_id)
    if job is None:
        raise not_found(f"no verification job {call.params.job_id} (a node keeps its last few)")
    return Outcome(job.to_json())
