"""Operations on the interface cache (gateway.cache): policies, entries, counters, circuits,
purges and replication runs (issue 10, Build 8).

Who may do what (gateway.admin.roles): every role reads the policies, the counters and circuit
states and the replication runs (they are configuration and health); the service administrator
sets and removes policies, purges and starts runs (`manage_cache`); the entries list names
which client asked which service when, so it is for the service administrator and the security
officer (`read_cache_entries`), audited like the message log's reads; the security officer may
also purge by data subject (`purge_cache_subject`, for erasure requests). The person identifier
of such a purge is never written to the audit log: keeping it there would keep what was erased.

Policies are validated when set (gateway.cache.policy.CachePolicy.validate): the provider must
be a member the global configuration knows (a provider-side policy: a service registered here),
the TTL within the maximum age, and so on; every problem is named in one 400 answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Container, Mapping
from typing import Annotated, Any, Final, Literal, Self

from pydantic import Field, model_validator

from gateway.admin.context import TABLE, AdminContext
from gateway.admin.roles import Permission as P
from gateway.cache import policies
from gateway.cache.marking import rfc3339
from gateway.cache.policy import (
    MAX_MAX_AGE_SECONDS,
    MAX_NAME_LENGTH,
    MAX_RETRY_ATTEMPTS,
    CacheMode,
    CachePolicy,
    CacheSide,
    PolicyError,
)
from gateway.cache.schedule import MAX_INTERVAL_SECONDS, MIN_INTERVAL_SECONDS
from gateway.cache.store import EntryInfo
from gateway.ids import ClientId, IdentifierError, ServiceId, slash_form
from gateway.serverconf.access import MAX_PATH_PATTERN_LENGTH
from gateway.serverconf.model import ServerConfSnapshot
from gateway.webapi import CONFLICT, ApiError, Call, Outcome, invalid, not_found
from gateway.webapi.types import (
    CLIENT_PATTERN,
    DEFAULT_PAGE,
    MAX_TEXT_LENGTH,
    SUBSYSTEM_PATTERN,
    Answer,
    Body,
    Limit,
    Offset,
    Params,
    _identifier,
)

log = logging.getLogger(__name__)

SERVICE_PATTERN: Final = _identifier(5, 1)
NAME_PATTERN: Final = rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_NAME_LENGTH - 1}}}$"
MAX_REQUEST_TEMPLATE_LENGTH: Final = 64 * 1024
"""A declared SOAP body or REST body: a request, not a document."""
MAX_LIST_VALUES: Final = 100_000
"""gateway.cache.policy.MAX_REPLICATED_CALLS: one run's calls at most."""

PolicyName = Annotated[
    str, Field(pattern=NAME_PATTERN, description="The policy's name: 1-64 of A-Z a-z 0-9 . _ -")
]
ServiceText = Annotated[
    str,
    Field(
        pattern=SERVICE_PATTERN, description="A service INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE[/VERSION]."
    ),
]
ClientText = Annotated[
    str, Field(pattern=CLIENT_PATTERN, description="A client INSTANCE/CLASS/MEMBER[/SUBSYSTEM].")
]
SubsystemText = Annotated[
    str, Field(pattern=SUBSYSTEM_PATTERN, description="A subsystem INSTANCE/CLASS/MEMBER/SUBSYSTEM.")
]
Seconds = Annotated[float, Field(gt=0, le=MAX_MAX_AGE_SECONDS, allow_inf_nan=False)]
Bytes = Annotated[int, Field(ge=1, le=2**40)]
Template = Annotated[str, Field(max_length=MAX_REQUEST_TEMPLATE_LENGTH)]


# --- the policy document ----------------------------------------------------------------------


class EndpointDoc(Body):
    method: str = Field(pattern=r"^(\*|[A-Z]{1,16})$", description="HTTP method, or `*`.")
    path: str = Field(
        pattern="^/", max_length=MAX_PATH_PATTERN_LENGTH, description="Path template with `*` wildcards."
    )


class RetryDoc(Body):
    attempts: int = Field(2, ge=0, le=MAX_RETRY_ATTEMPTS)
    backoff_seconds: float = Field(0.2, ge=0, le=60, allow_inf_nan=False)


class BreakerDoc(Body):
    consecutive_failures: int = Field(5, ge=1, le=1000)
    failure_rate: float = Field(0.5, gt=0, le=1, allow_inf_nan=False)
    window_seconds: float = Field(60.0, gt=0, le=86400, allow_inf_nan=False)
    min_calls_in_window: int = Field(20, ge=1, le=100_000)
    open_seconds: float = Field(30.0, gt=0, le=86400, allow_inf_nan=False)
    half_open_successes: int = Field(2, ge=1, le=100)


class ScheduleDoc(Body):
    """Exactly one of `interval_seconds` and `cron` (five fields, UTC)."""

    interval_seconds: float | None = Field(
        None, ge=MIN_INTERVAL_SECONDS, le=MAX_INTERVAL_SECONDS, allow_inf_nan=False
    )
    cron: str | None = Field(None, min_length=9, max_length=200, description="minute hour day month weekday")

    @model_validator(mode="after")
    def _one(self) -> Self:
        if (self.interval_seconds is None) == (self.cron is None):
            raise ValueError("give either interval_seconds or cron")
        return self


class LastSuccessDoc(Body):
    default: str = Field(
        "1970-01-01T00:00:00Z", max_length=64, description="Sent before the first successful run."
    )


ListValues = list[Annotated[str, Field(max_length=MAX_TEXT_LENGTH)]]


class ParameterDoc(Body):
    """A list of values (one call each), or the last successful run's start (`last_success`)."""

    list: ListValues | None = Field(None, min_length=1, max_length=MAX_LIST_VALUES)
    last_success: LastSuccessDoc | None = None

    @model_validator(mode="after")
    def _one(self) -> Self:
        if (self.list is None) == (self.last_success is None):
            raise ValueError("a parameter is either list or last_success")
        return self


class RequestDoc(Body):
    """A SOAP body element (XML), or a REST method + path (+ query, body); `${name}` names a parameter."""

    name: PolicyName
    soap_body: Template | None = None
    method: str | None = Field(None, pattern=r"^[A-Z]{1,16}$")
    path: str | None = Field(None, pattern="^/", max_length=MAX_PATH_PATTERN_LENGTH)
    query: Template = ""
    body: Template = ""
    parameters: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")], ParameterDoc] = Field(
        default_factory=dict
    )


class PlanDoc(Body):
    client: SubsystemText = Field(description="The client subsystem the calls are made as (registered here).")
    schedule: ScheduleDoc
    requests: list[RequestDoc] = Field(min_length=1, max_length=1000)


class PolicyDoc(Body):
    """A cache policy, as set (the name is the path's)."""

    service: ServiceText
    mode: CacheMode = CacheMode.OFF
    side: CacheSide = CacheSide.CONSUMER
    endpoint: EndpointDoc | None = None
    clients: list[ClientText] = Field(
        default_factory=list, max_length=1000, description="Empty: every client."
    )
    ttl_seconds: Seconds | None = None
    max_age_seconds: Seconds = 86400.0
    max_entry_bytes: Bytes = 4 * 1024 * 1024
    max_total_bytes: Bytes = 256 * 1024 * 1024
    fault_codes: list[
        Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$", max_length=200)]
    ] = Field(
        default_factory=list, max_length=100, description="Empty: the provider failures of docs/cache.md."
    )
    shared: bool = False
    idempotent: bool = False
    retry: RetryDoc = Field(default_factory=lambda: RetryDoc.model_validate({}))
    breaker: BreakerDoc | None = Field(default_factory=lambda: BreakerDoc.model_validate({}))
    replication: PlanDoc | None = None


class PolicyView(Answer):
    name: str
    service: str
    mode: str
    side: str
    endpoint: dict[str, str] | None
    clients: list[str]
    ttl_seconds: float | None
    max_age_seconds: float
    max_entry_bytes: int
    max_total_bytes: int
    fault_codes: list[str]
    shared: bool
    idempotent: bool
    retry: dict[str, Any]
    breaker: dict[str, Any] | None
    replication: dict[str, Any] | None


class PolicyList(Answer):
    policies: list[PolicyView]


class PolicyPath(Params):
    name: PolicyName


def policy_document(policy: CachePolicy) -> dict[str, Any]:
    """A policy as the API, the CLI and declarative files write it: the service as text."""
    document = policy.to_document()
    document["service"] = policy.service.to_text()
    return document


def policy_from_body(name: str, body: Mapping[str, Any]) -> CachePolicy:
    """The policy a (schema-valid) document describes; PolicyError if it cannot be one."""
    return CachePolicy.from_document({**body, "name": name})


def _known(ctx: AdminContext, conf: ServerConfSnapshot, policy: CachePolicy) -> policies.KnownServices:
    globalconf = ctx.globalconf() if ctx.globalconf is not None else None
    if policy.side is CacheSide.CONSUMER and globalconf is None:
        raise invalid("no global configuration is available yet: the service cannot be checked; try again")
    return policies.known_services(policy, conf, globalconf)


def validated_policy(ctx: AdminContext, conf: ServerConfSnapshot, policy: CachePolicy) -> CachePolicy:
    policy.validate(_known(ctx, conf, policy))
    plan = policy.replication
    if plan is not None and conf.subsystem(plan.client) is None:
        raise PolicyError([f"the replication client {plan.client} is not a subsystem registered here"])
    return policy


def _policy_error(error: PolicyError) -> ApiError:
    return invalid("; ".join(error.problems))


# --- policies -------------------------------------------------------------------------------


@TABLE.read("/cache/policies", "cache_policy.list", P.READ_CONFIGURATION, PolicyList)
async def list_policies(ctx: AdminContext, call: Call[None, None]) -> Outcome:
    """List the cache policies."""
    found = await asyncio.to_thread(policies.list_policies, ctx.repository)
    return Outcome({"policies": [policy_document(policy) for policy in found]})


async def _policy(ctx: AdminContext, name: str) -> CachePolicy:
    policy = await asyncio.to_thread(policies.get_policy, ctx.repository, name)
    if policy is None:
        raise not_found(f"no cache policy {name!r}")
    return policy


@TABLE.read("/cache/policies/{name}", "cache_policy.read", P.READ_CONFIGURATION, PolicyView)
async def read_policy(ctx: AdminContext, call: Call[PolicyPath, None]) -> Outcome:
    """Show one cache policy."""
    return Outcome(policy_document(await _policy(ctx, call.params.name)))


def set_policy_now(ctx: AdminContext, policy: CachePolicy) -> bool:
    """Validate and store `policy` (replacing one of its name); whether it is new."""
    conf = ctx.repository.snapshot()
    validated_policy(ctx, conf, policy)
    known = _known(ctx, conf, policy)
    if ctx.repository.get_cache_policy(policy.name) is None:
        policies.add_policy(ctx.repository, policy, known)
        return True
    policies.update_policy(ctx.repository, policy, known)
    return False


@TABLE.change("PUT", "/cache/policies/{name}", "cache_policy.set", P.MANAGE_CACHE, PolicyView)
async def set_policy(ctx: AdminContext, call: Call[PolicyPath, PolicyDoc]) -> Outcome:
    """Set a cache policy (created, or replaced whole), validated first."""
    name = call.params.name
    try:
        policy = policy_from_body(name, call.body.model_dump(mode="json"))
        created = await asyncio.to_thread(set_policy_now, ctx, policy)
    except PolicyError as error:
        raise _policy_error(error) from None
    details = {"mode": policy.mode.value, "service": policy.service.to_text(), "created": created}
    return Outcome(policy_document(policy), 200, name, details)


@TABLE.delete("/cache/policies/{name}", "cache_policy.remove", P.MANAGE_CACHE)
async def remove_policy(ctx: AdminContext, call: Call[PolicyPath, None]) -> Outcome:
    """Remove a cache policy; its entries go at the next maintenance (or purge them now)."""
    await asyncio.to_thread(policies.remove_policy, ctx.repository, call.params.name)
    return Outcome(None, 204, call.params.name)


# --- entries, counters, circuits ------------------------------------------------------------------


class EntryFilter(Params):
    service: ServiceText | None = None
    client: ClientText | None = None
    policy: PolicyName | None = None
    limit: Limit = DEFAULT_PAGE
    offset: Offset = 0


class EntryView(Answer):
    id: int
    key: str
    policy: str
    service: str
    client: str | None
    kind: str
    stored_at: str
    age_seconds: float
    original_message_id: str
    log_record: str | None
    size: int
    encrypted: bool


class EntryList(Answer):
    entries: list[EntryView]


def entry_json(info: EntryInfo, now: Any) -> dict[str, Any]:
    document = dataclasses.asdict(info)
    document["kind"] = info.kind.value
    document["stored_at"] = rfc3339(info.stored_at)
    document["age_seconds"] = round(info.age_seconds(now), 3)
    return document


def _ids(service: str | None, client: str | None) -> tuple[ServiceId | None, ClientId | None]:
    try:
        return (
            ServiceId.from_text(slash_form(service)) if service else None,
            ClientId.from_text(slash_form(client)) if client else None,
        )
    except IdentifierError as error:
        raise invalid(str(error)) from None


@TABLE.read("/cache/entries", "cache_entry.list", P.READ_CACHE_ENTRIES, EntryList, audit_reads=True)
async def list_entries(ctx: AdminContext, call: Call[EntryFilter, None]) -> Outcome:
    """List cached entries, newest first, without their answers."""
    if ctx.cache is None:
        raise not_found("this node keeps no cache")
    params = call.params
    service, client = _ids(params.service, params.client)
    found = await asyncio.to_thread(
        ctx.cache.store.list_entries,
        service=service,
        client=client,
        policy=params.policy,
        limit=params.limit,
        offset=params.offset,
    )
    now = ctx.cache.clock()
    return Outcome({"entries": [entry_json(info, now) for info in found]})


class ServiceStats(Answer):
    service: str
    hit: int
    stale: int
    miss: int
    stored: int
    refused: int
    circuit: dict[str, Any] | None = Field(
        description="This node's circuit breaker, if it has called the service."
    )


class StatsView(Answer):
    enabled: bool
    entries: int
    total_bytes: int
    services: list[ServiceStats]


@TABLE.read("/cache/stats", "cache_stats.read", P.READ_CONFIGURATION, StatsView)
async def read_stats(ctx: AdminContext, call: Call[None, None]) -> Outcome:
    """Hit, miss and stale counts per service (all nodes) and this node's circuit states."""
    if ctx.cache is None:
        return Outcome({"enabled": False, "entries": 0, "total_bytes": 0, "services": []})
    cache = ctx.cache
    counts, entries, total = await asyncio.to_thread(
        lambda: (cache.store.stats(), cache.store.count_entries(), cache.store.total_bytes())
    )
    circuits = cache.breaker_states()
    names = sorted(set(counts) | set(circuits))
    services = []
    for name in names:
        row: dict[str, Any] = {"service": name, "hit": 0, "stale": 0, "miss": 0, "stored": 0, "refused": 0}
        row.update(counts.get(name, {}))
        status = circuits.get(name)
        row["circuit"] = None if status is None else _jsonable(status)
        services.append(row)
    return Outcome({"enabled": True, "entries": entries, "total_bytes": total, "services": services})


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {key: _jsonable(item) for key, item in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if hasattr(value, "value") and isinstance(value.value, str):
        return value.value
    if hasattr(value, "isoformat"):
        return rfc3339(value)
    return value


# --- purges ---------------------------------------------------------------------------------


class PurgeBody(Body):
    """What to purge: the entries matching every filter given, or `everything`."""

    service: ServiceText | None = None
    client: ClientText | None = None
    key: str | None = Field(None, pattern="^[0-9a-f]{64}$", description="An entry's key (hex SHA-256).")
    policy: PolicyName | None = None
    everything: bool = Field(False, description="Purge every entry; only without filters.")

    @model_validator(mode="after")
    def _something(self) -> Self:
        filters = [self.service, self.client, self.key, self.policy]
        if self.everything and any(value is not None for value in filters):
            raise ValueError("everything takes no filters")
        if not self.everything and all(value is None for value in filters):
            raise ValueError("say what to purge (service, client, key, policy) or everything: true")
        return self


class SubjectPurgeBody(Body):
    subject: str = Field(
        min_length=1,
        max_length=200,
        description="A person identifier as requests hold it (e.g. a personal code).",
    )


class Purged(Answer):
    purged: int


def _cache(ctx: AdminContext) -> Any:
    if ctx.cache is None:
        raise ApiError(409, CONFLICT, "this node keeps no cache ([cache] is not enabled)")
    return ctx.cache


@TABLE.change("POST", "/cache/purge", "cache.purge", P.MANAGE_CACHE, Purged, reconfigures=False)
async def purge(ctx: AdminContext, call: Call[None, PurgeBody]) -> Outcome:
    """Purge cached entries by service, client, key or policy, or everything."""
    cache, body = _cache(ctx), call.body
    service, client = _ids(body.service, body.client)
    count = await asyncio.to_thread(
        cache.store.purge,
        service=service,
        client=client,
        key=body.key,
        policy=body.policy,
        everything=body.everything,
    )
    details = {**body.model_dump(exclude_none=True, exclude_defaults=True), "purged": count}
    return Outcome({"purged": count}, 200, "cache", details)


@TABLE.change(
    "POST", "/cache/purge-subject", "cache.purge_subject", P.PURGE_CACHE_SUBJECT, Purged, reconfigures=False
)
async def purge_subject(ctx: AdminContext, call: Call[None, SubjectPurgeBody]) -> Outcome:
    """Purge every entry whose request names a data subject (erasure requests)."""
    cache = _cache(ctx)
    count = await asyncio.to_thread(cache.store.purge, subject=call.body.subject)
    return Outcome({"purged": count}, 200, "cache", {"by": "data subject", "purged": count})


# --- replication runs ----------------------------------------------------------------------


class RunView(Answer):
    id: int
    policy: str
    node: str
    trigger: Literal["schedule", "manual"]
    started_at: str
    finished_at: str | None
    status: str
    calls: int
    fetched: int
    failures: int
    last_success_used: str | None
    error: str | None


class PlanStatus(Answer):
    policy: str
    next_run: str | None
    last_run: RunView | None


class RunList(Answer):
    plans: list[PlanStatus]
    runs: list[RunView]


class RunFilter(Params):
    policy: PolicyName | None = None
    limit: Limit = DEFAULT_PAGE


@TABLE.read("/cache/runs", "cache_run.list", P.READ_CONFIGURATION, RunList)
async def list_runs(ctx: AdminContext, call: Call[RunFilter, None]) -> Outcome:
    """Replication plans (last run, next run) and their runs, newest first."""
    replicator = ctx.replicator() if ctx.replicator is not None else None
    if replicator is None:
        return Outcome({"plans": [], "runs": []})
    from gateway.cache.replication import replicated

    found = await asyncio.to_thread(policies.list_policies, ctx.repository)
    plans = []
    for policy in replicated(found):
        if call.params.policy is not None and policy.name != call.params.policy:
            continue
        last = await asyncio.to_thread(replicator.runs.last_run, policy.name)
        due = await asyncio.to_thread(replicator.next_run, policy, last)
        plans.append(
            {
                "policy": policy.name,
                "next_run": None if due is None else rfc3339(due),
                "last_run": None if last is None else last.to_document(),
            }
        )
    runs = await asyncio.to_thread(replicator.runs.runs, call.params.policy, call.params.limit)
    return Outcome({"plans": plans, "runs": [run.to_document() for run in runs]})


@TABLE.create("/cache/policies/{name}/runs", "cache_run.start", P.MANAGE_CACHE, RunView, reconfigures=False)
async def start_run(ctx: AdminContext, call: Call[PolicyPath, None]) -> Outcome:
    """Run a replicate policy's plan now and answer the run when it has finished."""
    policy = await _policy(ctx, call.params.name)
    replicator = ctx.replicator() if ctx.replicator is not None else None
    if replicator is None:
        raise ApiError(409, CONFLICT, "this node keeps no cache ([cache] is not enabled)")
    if policy.mode is not CacheMode.REPLICATE or policy.replication is None:
        raise ApiError(409, CONFLICT, f"policy {policy.name!r} is not a replicate policy")
    run = await replicator.trigger(policy)
    if run is None:
        raise ApiError(409, CONFLICT, f"a run of {policy.name!r} is in progress")
    document = run.to_document()
    return Outcome(document, 201, policy.name, {"run": run.id, "status": run.status.value})


# --- declarative configuration: the whole set at once -------------------------------------------


class PolicySet(Body):
    """Every cache policy of this gateway, by name (`xgate admin cache apply FILE.yaml`)."""

    policies: dict[PolicyName, PolicyDoc] = Field(max_length=1000)


class AppliedSet(Answer):
    policies: list[PolicyView]
    added: list[str]
    changed: list[str]
    removed: list[str]
    unchanged: list[str]


def apply_policies_now(ctx: AdminContext, wanted: list[CachePolicy]) -> dict[str, list[str]]:
    """Make the stored policies exactly `wanted`: every one validated before anything is stored,
    and what was stored put back if a write fails, so the set changes all or not at all."""
    conf = ctx.repository.snapshot()
    problems: list[str] = []
    for policy in wanted:
        try:
            validated_policy(ctx, conf, policy)
        except PolicyError as error:
            problems.extend(f"{policy.name}: {problem}" for problem in error.problems)
    if problems:
        raise PolicyError(problems)
    before = {policy.name: policy for policy in policies.list_policies(ctx.repository)}
    after = {policy.name: policy for policy in wanted}
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(name for name in set(after) & set(before) if after[name] != before[name])
    unchanged = sorted(name for name in set(after) & set(before) if after[name] == before[name])
    everything = _AlreadyChecked()
    done: list[tuple[str, CachePolicy | None]] = []  # (name, what it was before)
    try:
        for name in removed:
            policies.remove_policy(ctx.repository, name)
            done.append((name, before[name]))
        for name in changed:
            policies.update_policy(ctx.repository, after[name], everything)
            done.append((name, before[name]))
        for name in added:
            policies.add_policy(ctx.repository, after[name], everything)
            done.append((name, None))
    except BaseException:
        for name, previous in reversed(done):
            try:
                if ctx.repository.get_cache_policy(name) is not None:
                    ctx.repository.remove_cache_policy(name)
                if previous is not None:
                    policies.add_policy(ctx.repository, previous, everything)
            except Exception:  # put back what can be; the original error is what matters
                log.exception("cache policy %r could not be put back", name)
        raise
    return {"added": added, "changed": changed, "removed": removed, "unchanged": unchanged}


class _AlreadyChecked(Container[ServiceId]):
    """Every service: the set was validated against the real ones before any write."""

    def __contains__(self, service: object) -> bool:
        return True


@TABLE.change("PUT", "/cache/policies", "cache_policy.apply", P.MANAGE_CACHE, AppliedSet)
async def apply_policies(ctx: AdminContext, call: Call[None, PolicySet]) -> Outcome:
    """Replace every cache policy with the set given: all validated first, applied all or nothing."""
    try:
        wanted = [
            policy_from_body(name, document.model_dump(mode="json"))
            for name, document in call.body.policies.items()
        ]
        result = await asyncio.to_thread(apply_policies_now, ctx, wanted)
    except PolicyError as error:
        raise _policy_error(error) from None
    found = await asyncio.to_thread(policies.list_policies, ctx.repository)
    body = {"policies": [policy_document(policy) for policy in found], **result}
    return Outcome(body, 200, "cache policies", result)
