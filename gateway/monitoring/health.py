"""Whether a node can serve: named checks, one verdict, cached briefly, answered in bounded time.

A load balancer asks often and acts on one bit; an operator needs to know which check failed.
Each check is a plain function returning a :class:`CheckResult` (ok or failing, with a detail
and, when ok, possibly a warning); :func:`verdict` turns them and the maintenance switch into
one :class:`Verdict`: ``ok`` (200), ``failing`` (503, the failing checks named) or
``maintenance`` (503 while requests are still served, so the node drains).
:class:`HealthCache` keeps a verdict's checks for a second or two so the endpoint is cheap,
and :class:`BoundedProbe` runs a check that may hang (a database ping) in a thread of its
own and calls it failing once it has taken too long, without ever starting a second one
beside a hung one.

No aiohttp here; the node's checks are in gateway.proxy.health.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

Status = Literal["ok", "failing", "maintenance"]

OK: Final = "ok"
FAILING: Final = "failing"
MAINTENANCE: Final = "maintenance"

DEFAULT_CACHE_SECONDS: Final = 1.0
"""A load balancer probing every second, and several of them, cost one evaluation a second."""
DEFAULT_PROBE_TIMEOUT_SECONDS: Final = 2.0
"""A check that may block (a database ping) is failing after this. Load balancers' probe
timeouts are a few seconds (nginx plus and HAProxy default to 2 s, AWS's ALB to 5 s), and the
endpoint must answer within them."""


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome: `detail` says what was seen; `warning` something to look at that
    does not stop the node serving (yet)."""

    ok: bool
    detail: object = None
    warning: str | None = None

    def as_json(self) -> dict[str, object]:
        body: dict[str, object] = {"ok": self.ok, "detail": self.detail}
        if self.warning is not None:
            body["warning"] = self.warning
        return body


def passing(detail: object = None, warning: str | None = None) -> CheckResult:
    return CheckResult(True, detail, warning)


def failing(detail: object) -> CheckResult:
    return CheckResult(False, detail)


Check = Callable[[], CheckResult]


@dataclass(frozen=True)
class Verdict:
    """The node's health as a load balancer reads it (`http_status`) and an operator (`as_json`)."""

    status: Status
    checks: Mapping[str, CheckResult]
    maintenance: Mapping[str, object] | None = None
    checked_at: float = 0.0
    """When the checks ran (time.time()): up to the cache's TTL before the answer."""

    @property
    def http_status(self) -> int:
        return 200 if self.status == OK else 503

    @property
    def failing_checks(self) -> list[str]:
        return [name for name, result in self.checks.items() if not result.ok]

    def as_json(self) -> dict[str, object]:
        body: dict[str, object] = {
            "status": self.status,
            "checks": {name: result.as_json() for name, result in self.checks.items()},
            "checked_at": dt.datetime.fromtimestamp(self.checked_at, dt.UTC).isoformat(timespec="seconds"),
        }
        if self.status == FAILING:
            body["failing"] = self.failing_checks
        if self.maintenance is not None:
            body["maintenance"] = dict(self.maintenance)
        return body


def run_checks(checks: Mapping[str, Check]) -> dict[str, CheckResult]:
    """Each check's result; one that raises is failing with its error, never the whole answer."""
    results = {}
    for name, check in checks.items():
        try:
            results[name] = check()
        except Exception as exc:  # a broken check must say so, not take the endpoint down
            results[name] = failing(f"the check itself failed: {type(exc).__name__}: {exc}")
    return results


def verdict(
    results: Mapping[str, CheckResult], maintenance: Mapping[str, object] | None, checked_at: float
) -> Verdict:
    """Maintenance wins (the operator asked the node out), then any failing check, else ok."""
    if maintenance is not None:
        status: Status = MAINTENANCE
    elif any(not result.ok for result in results.values()):
        status = FAILING
    else:
        status = OK
    return Verdict(status, dict(results), maintenance, checked_at)


@dataclass
class HealthCache:
    """The checks' results, reused for `ttl_seconds`; one evaluation at a time (others wait for it)."""

    checks: Mapping[str, Check]
    ttl_seconds: float = DEFAULT_CACHE_SECONDS
    clock: Callable[[], float] = time.monotonic
    _results: dict[str, CheckResult] | None = None
    _at: float = 0.0
    _wall: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def results(self) -> tuple[dict[str, CheckResult], float]:
        """The cached results and when they were taken (time.time()), refreshed when older than the TTL."""
        with self._lock:
            now = self.clock()
            if self._results is None or now - self._at >= self.ttl_seconds:
                self._results = run_checks(self.checks)
                self._at = now
                self._wall = time.time()
            return self._results, self._wall

    def invalidate(self) -> None:
        with self._lock:
            self._results = None


class BoundedProbe:
    """Runs a blocking `probe` in a daemon thread and waits at most `timeout_seconds` for it.

    A probe still running when asked again is not started twice: the answer is that it has
    hung for so long. A thread that never returns (a database that never answers) thus costs
    one thread, not one per health request.
    """

    def __init__(self, name: str, probe: Callable[[], object], timeout_seconds: float) -> None:
        self.name = name
        self._probe = probe
        self.timeout_seconds = timeout_seconds
        self._lock = threading.Lock()
        self._running: threading.Thread | None = None
        self._started = 0.0
        self._done = threading.Event()
        self._error: BaseException | None = None

    def __call__(self) -> CheckResult:
        with self._lock:
            if self._running is None or not self._running.is_alive():
                self._done = threading.Event()
                self._error = None
                self._started = time.monotonic()
                self._running = threading.Thread(
                    target=self._run, args=(self._done,), name=f"health-{self.name}", daemon=True
                )
                self._running.start()
            done, started = self._done, self._started
        remaining = self.timeout_seconds - (time.monotonic() - started)
        if not done.wait(max(0.0, remaining)):
            waited = time.monotonic() - started
            return failing(f"timed out: no answer after {waited:.1f} s (limit {self.timeout_seconds:g} s)")
        error = self._error
        if error is not None:
            return failing(f"{type(error).__name__}: {error}")
        return passing("reachable")

    def _run(self, done: threading.Event) -> None:
        try:
            self._probe()
        except BaseException as exc:  # reported as the check's failure
            self._error = exc
        finally:
            done.set()


def combine(results: Sequence[tuple[str, CheckResult]]) -> CheckResult:
    """Several parts of one check (two databases): failing if any part is, each part's detail named."""
    detail = {name: result.detail for name, result in results}
    warnings = [f"{name}: {result.warning}" for name, result in results if result.warning]
    if all(result.ok for _, result in results):
        return passing(detail, "; ".join(warnings) or None)
    return failing(detail)
