"""Cache policies: which answers of which provider service the gateway may keep and serve (sans-IO).

One :class:`CachePolicy` per provider service, or per REST endpoint of one (method + path
template, matched as access rights match them: `gateway.serverconf.access.Endpoint`),
optionally narrowed to some client subsystems. Its mode says what the cache does:

- `off`: nothing (a stored policy can be switched off without losing its settings);
- `fallback`: answer from the last good response only when the provider cannot answer (the
  failures :data:`DEFAULT_FAULT_CODES` names, or the policy's own list);
- `refresh`: answer from a copy younger than `ttl_seconds` without asking the provider,
  revalidate in the background, and fall back as above;
- `replicate`: fetch a declared set of requests on a schedule (:class:`ReplicationPlan`)
  so the answers are there before anyone asks; served like `refresh`.

Whatever the mode, nothing older than `max_age_seconds` is served. The same model is used on
both sides (`side`): the consumer gateway caches its partner's signed answers; a provider
gateway may cache its own backend's answers and sign them afresh when the backend is down.

Policies are values: they travel as JSON documents (:meth:`CachePolicy.to_document`,
:meth:`CachePolicy.from_document`) through the management API, the CLI, declarative
configuration and the server configuration's database, and are checked by
:meth:`CachePolicy.validate`, whose errors say what to fix.
"""

from __future__ import annotations

import enum
import itertools
import re
import string
from collections.abc import Collection, Container, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import quote
from xml.sax.saxutils import escape as xml_escape

from gateway import faults
from gateway.cache.marking import rfc3339
from gateway.cache.schedule import Schedule, ScheduleError
from gateway.ids import ClientId, IdentifierError, ServiceId
from gateway.serverconf.access import Endpoint

# --- defaults, each with its reason -------------------------------------------------------

DEFAULT_MAX_AGE_SECONDS: Final = 24 * 3600.0
"""A day: the source article's interface database is refreshed nightly; an answer older than
that is no longer "the partner's data, slightly late" but a different truth."""

MAX_MAX_AGE_SECONDS: Final = 366 * 24 * 3600.0
"""A year and a day. Keeping personal data longer than that "just in case" is a retention
decision for the data protection officer, not a cache setting."""

DEFAULT_TTL_SECONDS: Final = 300.0
"""Five minutes for `refresh` when none is given: long enough to spare a busy partner most
calls, short enough that a changed record shows within a coffee break."""

DEFAULT_MAX_ENTRY_BYTES: Final = 4 * 1024 * 1024
"""Most X-Road answers are a few kilobytes; 4 MiB keeps a document-sized answer cacheable while
one runaway answer cannot fill the store. Never above the node's message limit (10 MiB)."""

DEFAULT_MAX_TOTAL_BYTES: Final = 256 * 1024 * 1024
"""Per policy: 256 MiB holds ~100,000 typical answers, and fits SQLite on a small node."""

MAX_NAME_LENGTH: Final = 64
"""A policy name is a handle for administrators (`xgate admin cache ... NAME`), not a text."""

DEFAULT_CONSECUTIVE_FAILURES: Final = 5
"""Five failures in a row: one or two are a blip (a restart, a lost packet), five are an outage."""

DEFAULT_FAILURE_RATE: Final = 0.5
"""Half the calls in the window failing means the partner is not serving, even if some pass."""

DEFAULT_WINDOW_SECONDS: Final = 60.0
"""A minute of calls to judge the failure rate on: long enough for a rate, short enough to react."""

DEFAULT_MIN_CALLS_IN_WINDOW: Final = 20
"""A rate over fewer calls is noise: two failures of three calls must not open the circuit."""

DEFAULT_OPEN_SECONDS: Final = 30.0
"""How long the circuit stays open before a probe: a restarting gateway is back within ~30 s."""

DEFAULT_HALF_OPEN_SUCCESSES: Final = 2
"""Probes that must succeed before the circuit closes: one success can be luck."""

DEFAULT_RETRY_ATTEMPTS: Final = 2
"""Retries after the first try, for idempotent calls only: enough to ride out a reset connection."""

DEFAULT_RETRY_BACKOFF_SECONDS: Final = 0.2
"""First wait before a retry, doubled each time: the partner gets room, the client little delay."""

MAX_RETRY_ATTEMPTS: Final = 5
"""More retries only multiply load on a partner that is struggling (retry storms)."""

MAX_REPLICATED_CALLS: Final = 100_000
"""One run's calls after list parameters are expanded: a plan past that is a bulk export."""

LAST_SUCCESS_DEFAULT: Final = "1970-01-01T00:00:00Z"
"""What a `last_success` parameter holds before the first successful run: "everything"."""

# --- failures a policy applies to -------------------------------------------------------------

CIRCUIT_OPEN: Final = "Server.ClientProxy.CircuitOpen"
"""Not a fault anyone receives: the name under which "the circuit breaker is open" appears in
a policy's fault codes. While open, the cache serves or the client gets the fault that
opened the circuit."""

DEFAULT_FAULT_CODES: Final = frozenset(
    {
        # Connection refused or reset, timeout (exchange.py).
        faults.NETWORK_ERROR,
        # TLS failure towards the provider's gateway.
        faults.SSL_AUTHENTICATION_FAILED,
        # An answer that is not a valid signed message (garbage, a proxy's error page).
        faults.CLIENT_PROXY_INVALID_SIGNATURE,
        faults.CLIENT_PROXY_INVALID_CONTENT_TYPE,
        # The provider's backend failed: refused, timed out, HTTP 5xx, garbage (provider.py).
        faults.SERVICE_FAILED,
        # The provider gateway itself failed.
        faults.SERVER_PROXY_INTERNAL_ERROR,
        CIRCUIT_OPEN,
    }
)
"""What "the provider cannot answer" means when a policy lists no codes. A code covers itself
and every code beneath it (`Server.ServerProxy.ServiceFailed` covers `...ServiceFailed.Timeout`).
Access refusals, unknown services and the client's own faults are never in it: the cache must
not hide an answer the provider did give."""

HTTP_5XX: Final = faults.SERVICE_FAILED_HTTP_ERROR
"""A REST service's own 5xx answer, passed on signed by the provider's gateway, counts as this."""

_FAULT_CODE_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*")
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_PLACEHOLDER_RE: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class PolicyError(ValueError):
    """A policy that cannot be set; `problems` lists every reason, for the administrator."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


class CacheMode(enum.StrEnum):
    OFF = "off"
    FALLBACK = "fallback"
    REFRESH = "refresh"
    REPLICATE = "replicate"


class CacheSide(enum.StrEnum):
    """Which gateway keeps the cache: the client's (default) or the service's own, for its backend."""

    CONSUMER = "consumer"
    PROVIDER = "provider"


def code_covers(listed: str, code: str) -> bool:
    """Whether the fault code `listed` in a policy covers `code` (itself and its sub-codes)."""
    return code == listed or code.startswith(listed + ".")


# --- breaker and retries ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """When the circuit to a provider service opens and closes (breaker.CircuitBreaker)."""

    consecutive_failures: int = DEFAULT_CONSECUTIVE_FAILURES
    failure_rate: float = DEFAULT_FAILURE_RATE
    window_seconds: float = DEFAULT_WINDOW_SECONDS
    min_calls_in_window: int = DEFAULT_MIN_CALLS_IN_WINDOW
    open_seconds: float = DEFAULT_OPEN_SECONDS
    half_open_successes: int = DEFAULT_HALF_OPEN_SUCCESSES

    def problems(self) -> list[str]:
        found = []
        if self.consecutive_failures < 1:
            found.append("breaker.consecutive_failures must be at least 1")
        if not 0.0 < self.failure_rate <= 1.0:
            found.append("breaker.failure_rate must be above 0 and at most 1")
        if self.window_seconds <= 0 or self.open_seconds <= 0:
            found.append("breaker.window_seconds and breaker.open_seconds must be positive")
        if self.min_calls_in_window < 1 or self.half_open_successes < 1:
            found.append("breaker.min_calls_in_window and breaker.half_open_successes must be at least 1")
        return found


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """Retries with exponential backoff, used only when the policy says the call is idempotent."""

    attempts: int = DEFAULT_RETRY_ATTEMPTS
    backoff_seconds: float = DEFAULT_RETRY_BACKOFF_SECONDS

    def delays(self) -> tuple[float, ...]:
        """The waits before each retry: backoff, 2x backoff, 4x ..."""
        return tuple(self.backoff_seconds * 2**attempt for attempt in range(self.attempts))

    def problems(self) -> list[str]:
        found = []
        if not 0 <= self.attempts <= MAX_RETRY_ATTEMPTS:
            found.append(f"retry.attempts must be 0-{MAX_RETRY_ATTEMPTS}")
        if self.backoff_seconds < 0:
            found.append("retry.backoff_seconds must not be negative")
        return found


# --- replication ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListParameter:
    """A parameter taking each of `values` in turn (person ids, say): one call per value."""

    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LastSuccessParameter:
    """The last successful run's start time (RFC 3339, UTC), for "changes since" queries;
    `default` before the first success."""

    default: str = LAST_SUCCESS_DEFAULT


Parameter = ListParameter | LastSuccessParameter


@dataclass(frozen=True, slots=True)
class ReplicatedCall:
    """One concrete request of a run, parameters filled in: SOAP body, or REST method/path/query/body."""

    request: str  # the ReplicatedRequest's name
    arguments: Mapping[str, str]
    soap_body: str | None = None
    method: str | None = None
    path: str | None = None
    query: str = ""
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class ReplicatedRequest:
    """A declared request: a SOAP body element (XML text) or a REST method + path + query.

    Templates name parameters as `${name}`; a value is XML-escaped in a SOAP body and
    percent-encoded in a REST path or query, so a person id cannot change the request's shape.
    """

    name: str
    soap_body: str | None = None
    method: str | None = None
    path: str | None = None
    query: str = ""
    body: str = ""
    parameters: Mapping[str, Parameter] = field(default_factory=lambda: MappingProxyType({}))

    def placeholders(self) -> set[str]:
        texts = (self.soap_body or "", self.path or "", self.query, self.body)
        return {match.group(1) for text in texts for match in _PLACEHOLDER_RE.finditer(text)}

    def problems(self) -> list[str]:
        where = f"replication request {self.name!r}"
        found = []
        if not _NAME_RE.fullmatch(self.name) or len(self.name) > MAX_NAME_LENGTH:
            found.append(f"{where}: a name is 1-{MAX_NAME_LENGTH} of [A-Za-z0-9._-]")
        is_soap = self.soap_body is not None
        is_rest = self.method is not None or self.path is not None
        if is_soap == is_rest:
            found.append(f"{where}: give either soap_body or method and path")
        if is_rest and (self.method is None or self.path is None or not self.path.startswith("/")):
            found.append(f"{where}: a REST request needs a method and a path starting with '/'")
        missing = self.placeholders() - set(self.parameters)
        if missing:
            found.append(f"{where}: no parameter for {', '.join(sorted(missing))}")
        unused = set(self.parameters) - self.placeholders()
        if unused:
            found.append(f"{where}: parameters not used in any template: {', '.join(sorted(unused))}")
        for name, parameter in self.parameters.items():
            if isinstance(parameter, ListParameter) and not parameter.values:
                found.append(f"{where}: list parameter {name!r} is empty")
        return found

    def expand(self, last_success: datetime | None) -> list[ReplicatedCall]:
        """Every concrete call of one run: the product of the list parameters' values."""
        names = sorted(self.parameters)
        choices: list[tuple[str, ...]] = []
        for name in names:
            parameter = self.parameters[name]
            if isinstance(parameter, ListParameter):
                choices.append(parameter.values)
            else:
                choices.append((rfc3339(last_success) if last_success is not None else parameter.default,))
        calls = []
        for combination in itertools.product(*choices):
            arguments = dict(zip(names, combination, strict=True))
            if self.soap_body is not None:
                xml = {k: xml_escape(v, {'"': "&quot;"}) for k, v in arguments.items()}
                calls.append(
                    ReplicatedCall(
                        self.name, MappingProxyType(arguments), soap_body=_fill(self.soap_body, xml)
                    )
                )
                continue
            assert self.method is not None and self.path is not None
            in_path = {k: quote(v, safe="") for k, v in arguments.items()}
            in_query = {k: quote(v, safe="") for k, v in arguments.items()}
            calls.append(
                ReplicatedCall(
                    self.name,
                    MappingProxyType(arguments),
                    method=self.method.upper(),
                    path=_fill(self.path, in_path),
                    query=_fill(self.query, in_query),
                    body=_fill(self.body, arguments).encode(),
                )
            )
        return calls


def _fill(template: str, values: Mapping[str, str]) -> str:
    return string.Template(template).substitute(values)


@dataclass(frozen=True, slots=True)
class ReplicationPlan:
    """What a `replicate` policy fetches, as which client, and when."""

    client: ClientId
    requests: tuple[ReplicatedRequest, ...]
    schedule: Schedule

    def problems(self) -> list[str]:
        found: list[str] = []
        if not self.requests:
            found.append("a replication plan needs at least one request")
        names = [request.name for request in self.requests]
        if len(names) != len(set(names)):
            found.append("replication request names must be unique")
        for request in self.requests:
            found.extend(request.problems())
        if not found and self.call_count() > MAX_REPLICATED_CALLS:
            found.append(f"one run would make {self.call_count()} calls, more than {MAX_REPLICATED_CALLS}")
        return found

    def call_count(self) -> int:
        total = 0
        for request in self.requests:
            count = 1
            for parameter in request.parameters.values():
                if isinstance(parameter, ListParameter):
                    count *= len(parameter.values)
            total += count
        return total

    def calls(self, last_success: datetime | None) -> list[ReplicatedCall]:
        """Every concrete call of one run, in declaration order."""
        return [call for request in self.requests for call in request.expand(last_success)]


# --- the policy -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """The cache rules for one provider service (or one REST endpoint of it), as set by the
    consumer gateway's service administrator (or, `side` provider, the provider's)."""

    name: str
    service: ServiceId
    mode: CacheMode = CacheMode.OFF
    side: CacheSide = CacheSide.CONSUMER
    endpoint: Endpoint | None = None
    clients: frozenset[ClientId] = frozenset()
    """Empty: every client of this gateway."""
    ttl_seconds: float | None = None
    max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS
    max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES
    fault_codes: frozenset[str] = frozenset()
    """Empty: DEFAULT_FAULT_CODES."""
    shared: bool = False
    """The answers are the same whoever asks: the key leaves the client out."""
    idempotent: bool = False
    """Calling twice does no harm: failures are retried (`retry`)."""
    retry: RetrySettings = RetrySettings()
    breaker: BreakerSettings | None = BreakerSettings()
    """None: no circuit breaker for this service."""
    replication: ReplicationPlan | None = None

    # --- decisions on the request path

    @property
    def active(self) -> bool:
        return self.mode is not CacheMode.OFF

    @property
    def effective_fault_codes(self) -> frozenset[str]:
        return self.fault_codes or DEFAULT_FAULT_CODES

    @property
    def effective_ttl_seconds(self) -> float:
        """How young a copy must be to be served without asking the provider (0 for `fallback`)."""
        if self.mode in (CacheMode.REFRESH, CacheMode.REPLICATE):
            return self.ttl_seconds if self.ttl_seconds is not None else DEFAULT_TTL_SECONDS
        return 0.0

    def matches(
        self, service: ServiceId, client: ClientId, method: str | None = None, path: str | None = None
    ) -> bool:
        """Whether this policy is about this request (service, client, and for REST its endpoint)."""
        if service != self.service:
            return False
        if self.clients and client not in self.clients:
            return False
        if self.endpoint is None:
            return True
        return method is not None and path is not None and self.endpoint.matches(method, path)

    def applies_to_fault(self, code: str) -> bool:
        """Whether the failure with this fault code lets the cache answer."""
        return any(code_covers(listed, code) for listed in self.effective_fault_codes)

    def is_fresh(self, age_seconds: float) -> bool:
        """Young enough to answer without asking the provider (`refresh`, `replicate`)."""
        return age_seconds < self.effective_ttl_seconds

    def may_serve(self, age_seconds: float) -> bool:
        """Not past the maximum age: beyond it nothing is served, whatever happened."""
        return 0.0 <= age_seconds <= self.max_age_seconds

    def specificity(self) -> tuple[int, int]:
        """Higher wins when several policies match one request: an endpoint, then named clients."""
        return (self.endpoint is not None, bool(self.clients))

    # --- validation

    def validate(self, known_services: Container[ServiceId]) -> None:
        """Raise PolicyError listing every problem; `known_services` says which services exist
        (the global configuration's or, on the provider side, this gateway's registrations)."""
        found: list[str] = []
        if not _NAME_RE.fullmatch(self.name) or len(self.name) > MAX_NAME_LENGTH:
            found.append(f"policy name {self.name!r} must be 1-{MAX_NAME_LENGTH} of [A-Za-z0-9._-]")
        if self.service not in known_services:
            found.append(f"unknown service {self.service}")
        if not 0 < self.max_age_seconds <= MAX_MAX_AGE_SECONDS:
            found.append(f"max_age_seconds must be above 0 and at most {MAX_MAX_AGE_SECONDS:g}")
        if self.ttl_seconds is not None:
            if self.ttl_seconds <= 0:
                found.append("ttl_seconds must be positive")
            elif self.ttl_seconds > self.max_age_seconds:
                found.append(
                    f"ttl_seconds ({self.ttl_seconds:g}) exceeds max_age_seconds ({self.max_age_seconds:g}):"
                    " a copy would be fresh after it may no longer be served"
                )
        elif self.mode is CacheMode.REFRESH and self.max_age_seconds < DEFAULT_TTL_SECONDS:
            found.append(f"give ttl_seconds: the default ({DEFAULT_TTL_SECONDS:g}) exceeds max_age_seconds")
        if self.max_entry_bytes <= 0 or self.max_total_bytes <= 0:
            found.append("max_entry_bytes and max_total_bytes must be positive")
        elif self.max_entry_bytes > self.max_total_bytes:
            found.append("max_entry_bytes exceeds max_total_bytes")
        for code in sorted(self.fault_codes):
            if not _FAULT_CODE_RE.fullmatch(code):
                found.append(f"fault code {code!r} is not a dotted code like Server.ClientProxy.NetworkError")
        if self.mode is CacheMode.REPLICATE and self.replication is None:
            found.append("mode replicate needs a replication plan")
        if self.replication is not None:
            found.extend(self.replication.problems())
            if self.clients and self.replication.client not in self.clients:
                found.append(
                    f"the replication client {self.replication.client} is not among the policy's clients"
                )
            if self.side is CacheSide.PROVIDER:
                found.append("replication runs on the consumer side")
        if self.side is CacheSide.PROVIDER and self.mode is CacheMode.REPLICATE:
            found.append("mode replicate is for the consumer side")
        found.extend(self.retry.problems())
        if self.breaker is not None:
            found.extend(self.breaker.problems())
        if found:
            raise PolicyError(found)

    # --- documents (JSON-safe dicts)

    def to_document(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "name": self.name,
            "service": service_to_document(self.service),
            "mode": self.mode.value,
            "side": self.side.value,
            "endpoint": (
                {"method": self.endpoint.method, "path": self.endpoint.path_pattern}
                if self.endpoint
                else None
            ),
            "clients": sorted(client.to_text() for client in self.clients),
            "ttl_seconds": self.ttl_seconds,
            "max_age_seconds": self.max_age_seconds,
            "max_entry_bytes": self.max_entry_bytes,
            "max_total_bytes": self.max_total_bytes,
            "fault_codes": sorted(self.fault_codes),
            "shared": self.shared,
            "idempotent": self.idempotent,
            "retry": {"attempts": self.retry.attempts, "backoff_seconds": self.retry.backoff_seconds},
            "breaker": None
            if self.breaker is None
            else {
                "consecutive_failures": self.breaker.consecutive_failures,
                "failure_rate": self.breaker.failure_rate,
                "window_seconds": self.breaker.window_seconds,
                "min_calls_in_window": self.breaker.min_calls_in_window,
                "open_seconds": self.breaker.open_seconds,
                "half_open_successes": self.breaker.half_open_successes,
            },
            "replication": None if self.replication is None else _plan_to_document(self.replication),
        }
        return document

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> CachePolicy:
        """The policy a document describes; PolicyError naming what is malformed (not yet validated)."""
        try:
            return _policy_from_document(document)
        except PolicyError:
            raise
        except (KeyError, TypeError, ValueError, IdentifierError) as error:
            detail = f"missing field {error}" if isinstance(error, KeyError) else str(error)
            raise PolicyError([f"malformed cache policy: {detail}"]) from error


def choose_policy(
    policies: Iterable[CachePolicy],
    service: ServiceId,
    client: ClientId,
    method: str | None = None,
    path: str | None = None,
    *,
    side: CacheSide = CacheSide.CONSUMER,
) -> CachePolicy | None:
    """The active policy for a request: the most specific that matches (endpoint before whole
    service, named clients before everyone), ties broken by name so every node picks the same."""
    matching = [
        policy
        for policy in policies
        if policy.active and policy.side is side and policy.matches(service, client, method, path)
    ]
    if not matching:
        return None
    return max(matching, key=lambda policy: (policy.specificity(), _reverse_name(policy.name)))


def _reverse_name(name: str) -> tuple[int, ...]:
    return tuple(-ord(char) for char in name)


# --- document helpers ---------------------------------------------------------------------------

_POLICY_FIELDS: Final = frozenset(CachePolicy.__dataclass_fields__) - {"__weakref__"}


def service_to_document(service: ServiceId) -> dict[str, str | None]:
    return {
        "instance": service.instance,
        "member_class": service.member_class,
        "member_code": service.member_code,
        "subsystem_code": service.subsystem_code,
        "service_code": service.service_code,
        "service_version": service.service_version,
    }


def service_from_document(document: Mapping[str, Any]) -> ServiceId:
    if isinstance(document, str):
        return ServiceId.from_text(document)
    return ServiceId(
        document["instance"],
        document["member_class"],
        document["member_code"],
        document.get("subsystem_code"),
        document["service_code"],
        document.get("service_version"),
    )


def _plan_to_document(plan: ReplicationPlan) -> dict[str, Any]:
    return {
        "client": plan.client.to_text(),
        "schedule": plan.schedule.to_document(),
        "requests": [
            {
                "name": request.name,
                "soap_body": request.soap_body,
                "method": request.method,
                "path": request.path,
                "query": request.query,
                "body": request.body,
                "parameters": {
                    name: (
                        {"list": list(parameter.values)}
                        if isinstance(parameter, ListParameter)
                        else {"last_success": {"default": parameter.default}}
                    )
                    for name, parameter in request.parameters.items()
                },
            }
            for request in plan.requests
        ],
    }


def _parameter_from_document(name: str, document: Mapping[str, Any]) -> Parameter:
    if "list" in document:
        values = document["list"]
        if not isinstance(values, list) or not all(isinstance(v, str | int) for v in values):
            raise PolicyError([f"parameter {name!r}: list must be a list of strings"])
        return ListParameter(tuple(str(v) for v in values))
    if "last_success" in document:
        inner = document["last_success"] or {}
        return LastSuccessParameter(str(inner.get("default", LAST_SUCCESS_DEFAULT)))
    raise PolicyError([f"parameter {name!r} must be {{'list': [...]}} or {{'last_success': {{...}}}}"])


def _plan_from_document(document: Mapping[str, Any]) -> ReplicationPlan:
    try:
        schedule = Schedule.from_document(dict(document["schedule"]))
    except ScheduleError as error:
        raise PolicyError([f"replication schedule: {error}"]) from error
    requests = tuple(
        ReplicatedRequest(
            name=str(item["name"]),
            soap_body=item.get("soap_body"),
            method=item.get("method"),
            path=item.get("path"),
            query=item.get("query") or "",
            body=item.get("body") or "",
            parameters=MappingProxyType(
                {
                    str(k): _parameter_from_document(str(k), v)
                    for k, v in (item.get("parameters") or {}).items()
                }
            ),
        )
        for item in document["requests"]
    )
    return ReplicationPlan(ClientId.from_text(document["client"]), requests, schedule)


def _policy_from_document(document: Mapping[str, Any]) -> CachePolicy:
    unknown = set(document) - _POLICY_FIELDS
    if unknown:
        raise PolicyError([f"unknown cache policy fields: {', '.join(sorted(unknown))}"])
    endpoint_doc = document.get("endpoint")
    breaker_doc = document.get("breaker", {})
    retry_doc = document.get("retry") or {}
    replication_doc = document.get("replication")
    defaults = CachePolicy.__dataclass_fields__
    return CachePolicy(
        name=str(document["name"]),
        service=service_from_document(document["service"]),
        mode=CacheMode(document.get("mode", CacheMode.OFF.value)),
        side=CacheSide(document.get("side", CacheSide.CONSUMER.value)),
        endpoint=Endpoint(endpoint_doc["method"], endpoint_doc["path"]) if endpoint_doc else None,
        clients=frozenset(ClientId.from_text(text) for text in document.get("clients") or ()),
        ttl_seconds=_optional_float(document.get("ttl_seconds")),
        max_age_seconds=float(document.get("max_age_seconds", defaults["max_age_seconds"].default)),
        max_entry_bytes=int(document.get("max_entry_bytes", defaults["max_entry_bytes"].default)),
        max_total_bytes=int(document.get("max_total_bytes", defaults["max_total_bytes"].default)),
        fault_codes=frozenset(str(code) for code in document.get("fault_codes") or ()),
        shared=_bool(document.get("shared", False), "shared"),
        idempotent=_bool(document.get("idempotent", False), "idempotent"),
        retry=RetrySettings(**{k: v for k, v in retry_doc.items()}),
        breaker=None if breaker_doc is None else BreakerSettings(**dict(breaker_doc)),
        replication=None if replication_doc is None else _plan_from_document(replication_doc),
    )


def _optional_float(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError([f"expected a number, not {value!r}"])
    return float(value)


def _bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise PolicyError([f"{name} must be true or false"])
    return value


def known(services: Collection[ServiceId]) -> Container[ServiceId]:
    """A `known_services` argument for :meth:`CachePolicy.validate` from a collection."""
    return frozenset(services)
