"""A gateway node's health checks, and the small listener a load balancer probes.

Each check asks what the request path itself asks before it serves, so that health and
traffic never disagree: the global configuration (`GatewayRuntime.valid_globalconf`), the
own certificates' OCSP responses (`OwnCertificateStatus.response_for`), the message log's
disk and timestamping (`MessageLog.check_disk`, `check_timestamping`). The verdict and the
payload are gateway.monitoring.health's; docs/operations.md names every check.

The health listener (`[health]` in the node's file) serves only `GET /health` and may bind a
non-loopback address; the management API stays on the loopback admin listener, whose own
`/health` answers the same verdict with the node's details.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from aiohttp import web
from cryptography import x509

from gateway.crypto.certs import serial_hex
from gateway.faults import XRoadFault
from gateway.messagelog.db import ALEMBIC_VERSION_TABLE as MESSAGELOG_VERSION_TABLE
from gateway.monitoring.health import (
    BoundedProbe,
    Check,
    CheckResult,
    HealthCache,
    Verdict,
    combine,
    failing,
    passing,
    verdict,
)
from gateway.proxy.ownstatus import OwnStatusUnavailable
from gateway.serverconf.db import ALEMBIC_VERSION_TABLE as SERVERCONF_VERSION_TABLE

if TYPE_CHECKING:
    from gateway.proxy.runtime import GatewayRuntime

log = logging.getLogger(__name__)

DATABASE: Final = "database"
SIGNING_KEYS: Final = "signing_keys"
GLOBALCONF: Final = "globalconf"
OCSP: Final = "ocsp"
TIMESTAMPING: Final = "timestamping"
MESSAGELOG: Final = "messagelog"
CLOCK: Final = "clock"
CHECK_NAMES: Final = (DATABASE, SIGNING_KEYS, GLOBALCONF, OCSP, TIMESTAMPING, MESSAGELOG, CLOCK)
"""In the order an operator reads them; docs/operations.md explains each."""

ANSWER_MARGIN_SECONDS: Final = 1.0
"""Beyond the slowest probe's limit, what the listener allows the other checks before it
answers 503 "timed out" itself: the endpoint's answer is bounded even if a check is not."""


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def ping_database(engine: sa.Engine, version_table: str) -> None:
    """One read of the schema's version row: the database answers, and it is this one, migrated
    (a `SELECT 1` on SQLite would not even open the file)."""
    with engine.connect() as connection:
        connection.execute(sa.text(f"SELECT version_num FROM {version_table}")).one()  # noqa: S608 - a constant


class NodeHealth:
    """The checks of one node, their cache, and the maintenance switch over them."""

    def __init__(
        self, runtime: GatewayRuntime, *, cache_seconds: float, probe_timeout_seconds: float
    ) -> None:
        self.runtime = runtime
        self.probe_timeout_seconds = probe_timeout_seconds
        self._probes = [
            ("serverconf", BoundedProbe("serverconf-db", self._ping_serverconf, probe_timeout_seconds))
        ]
        if runtime.messagelog is not None:
            self._probes.append(
                ("messagelog", BoundedProbe("messagelog-db", self._ping_messagelog, probe_timeout_seconds))
            )
        checks: dict[str, Check] = {
            DATABASE: self.database,
            SIGNING_KEYS: self.signing_keys,
            GLOBALCONF: self.globalconf,
            OCSP: self.ocsp,
            TIMESTAMPING: self.timestamping,
            MESSAGELOG: self.messagelog,
            CLOCK: self.clock,
        }
        self.cache = HealthCache(checks, cache_seconds)

    @classmethod
    def of_node(cls, runtime: GatewayRuntime) -> NodeHealth:
        settings = runtime.config.health
        return cls(
            runtime,
            cache_seconds=settings.cache_seconds,
            probe_timeout_seconds=settings.probe_timeout_seconds,
        )

    # --- the verdict ---------------------------------------------------------------------------

    def detail(self) -> dict[str, object]:
        """The admin listener's /health: the same verdict, with the node's details (blocking)."""
        return {**self.runtime.health(), **self.verdict().as_json()}

    def verdict(self) -> Verdict:
        """The cached checks' verdict (blocking: call from a thread), with the maintenance switch now."""
        results, checked_at = self.cache.results()
        maintenance = self.runtime.maintenance.state if self.runtime.maintenance is not None else None
        if maintenance is not None:
            maintenance = {**maintenance, "in_flight": self.runtime.in_flight()}
        return verdict(results, maintenance, checked_at)

    async def verdict_within(self, seconds: float | None = None) -> Verdict:
        """The verdict, or 503 "timed out" after `seconds` (default: the probe limit plus a margin)."""
        limit = seconds if seconds is not None else self.probe_timeout_seconds + ANSWER_MARGIN_SECONDS
        try:
            return await asyncio.wait_for(asyncio.to_thread(self.verdict), limit)
        except TimeoutError:
            timed_out = failing(f"timed out: the checks took longer than {limit:g} s")
            return verdict({"health": timed_out}, None, time.time())

    # --- the checks ----------------------------------------------------------------------------

    def _ping_serverconf(self) -> None:
        ping_database(self.runtime.repository.engine, SERVERCONF_VERSION_TABLE)

    def _ping_messagelog(self) -> None:
        assert self.runtime.messagelog is not None
        ping_database(self.runtime.messagelog.engine, MESSAGELOG_VERSION_TABLE)

    def database(self) -> CheckResult:
        """The server configuration's database and the message log's answer a query in time."""
        return combine([(name, probe()) for name, probe in self._probes])

    def signing_keys(self) -> CheckResult:
        """A signing key, and every own certificate (signing and TLS) valid now and not revoked by
        a fresh OCSP response (a stale one is the `ocsp` check's); a hosted member without a key
        is a warning."""
        runtime = self.runtime
        now = _utc_now()
        conf = runtime.globalconf_source.current
        if not runtime.signers:
            return failing("this node holds no signing key: it can neither send nor answer")
        problems: list[str] = []
        detail: dict[str, object] = {}
        certificates: list[tuple[str, x509.Certificate]] = [
            (member.to_text(), cert) for member, cert in sorted(runtime.signing_certs.items())
        ]
        certificates.append(("tls", runtime.auth_cert))
        for name, cert in certificates:
            problem = _validity_problem(cert, now)
            if problem is None and conf is not None and runtime.own_status is not None:
                try:
                    runtime.own_status.response_for(cert, conf, now)
                except OwnStatusUnavailable as exc:
                    if not exc.stale:
                        problem = str(exc)
            detail[name] = {
                "serial": serial_hex(cert),
                "not_after": cert.not_valid_after_utc.isoformat(),
                "usable": problem is None,
            }
            if problem is not None:
                problems.append(f"{name}: {problem}")
        if problems:
            return failing({"problems": problems, "certificates": detail})
        hosted = {client.member for client in runtime.snapshot.subsystems}
        keyless = sorted(member.to_text() for member in hosted - runtime.signers.keys())
        # Every node of the gateway lacks the same key: a registration to fix, not a node to take
        # out of the pool (the other members' traffic is served), so a warning.
        warning = f"no signing key for hosted member(s) {', '.join(keyless)}" if keyless else None
        return passing(detail, warning)

    def globalconf(self) -> CheckResult:
        """A verified global configuration that has not expired: without it every exchange is refused."""
        runtime = self.runtime
        source = runtime.globalconf_source
        error = str(source.last_error) if source.last_error else None
        try:
            conf = runtime.valid_globalconf()
        except XRoadFault as fault:
            return failing({"problem": fault.message, "last_error": error})
        detail = {"version": conf.version, "expires_at": conf.expires_at.isoformat()}
        return passing(detail, f"the last refresh failed: {error}" if error else None)

    def ocsp(self) -> CheckResult:
        """A fresh, good OCSP response for each own certificate whose CA has a responder."""
        runtime = self.runtime
        conf = runtime.globalconf_source.current
        if runtime.own_status is None:
            return failing("the node is not started")
        if conf is None:
            return failing("no global configuration names the responders")
        now = _utc_now()
        problems, fresh, unchecked = [], 0, 0
        for cert in runtime.own_status.certificates:
            try:
                response = runtime.own_status.response_for(cert, conf, now)
            except OwnStatusUnavailable as exc:
                problems.append(str(exc))
                continue
            if response is None:
                unchecked += 1  # its CA names no responder: nothing to attach
            else:
                fresh += 1
        if problems:
            return failing(problems)
        return passing({"fresh": fresh, "no_responder": unchecked})

    def timestamping(self) -> CheckResult:
        """Within the allowed failure period (messagelog.max_timestamp_failure_seconds): after it
        the log refuses new exchanges; within it a warning."""
        messagelog = self.runtime.messagelog
        if messagelog is None:
            return passing("no message log on this node")
        try:
            messagelog.check_timestamping()
        except XRoadFault as fault:
            return failing(fault.message)
        stamper = messagelog.timestamper
        if stamper.failing_since is None:
            return passing("stamping")
        allowed = messagelog.settings.max_timestamp_failure_seconds
        return passing(
            {"failing_since": stamper.failing_since.isoformat(), "allowed_seconds": allowed},
            f"timestamping failing since {stamper.failing_since.isoformat()} ({stamper.last_error}); "
            f"new exchanges are refused after {allowed:g} s",
        )

    def messagelog(self) -> CheckResult:
        """The log's disk above its critical watermark (below it the log refuses exchanges)."""
        messagelog = self.runtime.messagelog
        if messagelog is None:
            return passing("no message log on this node")
        try:
            messagelog.check_disk()
        except XRoadFault as fault:
            return failing(fault.message)
        warnings = messagelog.disk.warnings()
        return passing("writable", "; ".join(warnings) or None)

    def clock(self) -> CheckResult:
        """The trust services' signed times against this node's clock: a warning only, as a skewed
        clock shows first as stale OCSP responses (the `ocsp` check) when it stops serving."""
        problems = self.runtime.clock_check.problems()
        return passing(
            {"tolerance_seconds": self.runtime.clock_check.tolerance_seconds}, "; ".join(problems) or None
        )


def _validity_problem(cert: x509.Certificate, now: dt.datetime) -> str | None:
    if now < cert.not_valid_before_utc:
        return f"certificate {serial_hex(cert)} is not valid before {cert.not_valid_before_utc.isoformat()}"
    if now > cert.not_valid_after_utc:
        return f"certificate {serial_hex(cert)} expired at {cert.not_valid_after_utc.isoformat()}"
    return None


# --- the listener --------------------------------------------------------------------------------


def json_verdict(found: Verdict, extra: dict[str, Any] | None = None) -> web.Response:
    from gateway.webapi import dumps

    return web.json_response({**found.as_json(), **(extra or {})}, status=found.http_status, dumps=dumps)


def make_health_app(health: NodeHealth) -> web.Application:
    """`GET /health` only: 200 when the node can serve, else 503 naming why (no secrets, no key)."""

    async def answer(request: web.Request) -> web.Response:
        return json_verdict(await health.verdict_within())

    app = web.Application()
    app.router.add_get("/health", answer)
    return app
