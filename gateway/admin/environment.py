"""The node's environment through the management API (gateway.monitoring.environment): the
machine, the process, the disks the node writes to, versions and certificates' expiry.

Every role may read it (`read_environment`): it is what an operator on duty checks first, and it
holds no personal data and no secret (certificates are public; their PEM is not shown).
"""

from __future__ import annotations

import asyncio

from pydantic import Field

from gateway.admin.context import TABLE, AdminContext
from gateway.admin.roles import Permission as P
from gateway.webapi import Call, Outcome, not_found
from gateway.webapi.types import Answer


class SystemView(Answer):
    os: str = Field(description="platform.system(): Linux, Darwin, ...")
    os_release: str
    distribution: str | None = Field(description="/etc/os-release PRETTY_NAME.")
    machine: str
    hostname: str
    cpu_count: int | None
    load_average: list[float] | None = Field(description="1, 5 and 15 minutes; runnable tasks, not %.")
    memory_total_bytes: int | None
    memory_available_bytes: int | None = Field(description="What new work can use without swapping.")
    swap_total_bytes: int | None
    swap_free_bytes: int | None
    uptime_seconds: float | None = Field(description="Since the machine booted.")


class ProcessView(Answer):
    pid: int
    uptime_seconds: float = Field(description="Since this node started.")
    started_at: str = Field(json_schema_extra={"format": "date-time"})
    memory_rss_bytes: int | None
    memory_peak_rss_bytes: int | None
    cpu_user_seconds: float
    cpu_system_seconds: float
    threads: int | None
    open_files: int | None = Field(description="Descriptors open: files, sockets, pipes.")
    open_files_limit: int | None = Field(description="The soft limit (ulimit -n); None: unlimited.")
    open_files_hard_limit: int | None


class DiskView(Answer):
    role: str = Field(description="data, serverconf, messagelog, archive, cache, ...")
    path: str
    total_bytes: int | None
    used_bytes: int | None
    free_bytes: int | None = Field(description="What the node (unprivileged) may still write.")
    free_percent: float | None
    error: str | None = Field(description="Why the filesystem could not be read.")


class VersionsView(Answer):
    xgate: str | None
    python: str
    python_implementation: str
    openssl: str
    sqlite: str
    dependencies: dict[str, str | None] = Field(description="xgate's pinned dependencies as installed.")


class CertificateView(Answer):
    role: str = Field(description="auth (TLS toward peers), signing (a hosted member's), internal_tls.")
    member: str | None = Field(description="The member a signing certificate speaks for.")
    subject: str
    issuer: str
    serial: str = Field(description="Lower-case hex.")
    sha256: str
    not_before: str = Field(json_schema_extra={"format": "date-time"})
    not_after: str = Field(json_schema_extra={"format": "date-time"})
    days_left: int = Field(description="Whole days until not_after; negative once expired.")
    expired: bool
    ocsp_status: str | None = Field(description="The node's newest OCSP response: good, revoked since ...")
    ocsp_required: bool | None = Field(description="Whether the federation checks this certificate's status.")


class EnvironmentView(Answer):
    time: str = Field(json_schema_extra={"format": "date-time"})
    system: SystemView
    process: ProcessView
    disks: list[DiskView]
    versions: VersionsView
    certificates: list[CertificateView]


@TABLE.read("/environment", "environment.read", P.READ_ENVIRONMENT, EnvironmentView)
async def read_environment(ctx: AdminContext, call: Call[None, None]) -> Outcome:
    """The node's environment: OS, load, memory, disks, open files, uptime, versions, certificates."""
    if ctx.environment is None:
        raise not_found("this node reports no environment")
    return Outcome(await asyncio.to_thread(ctx.environment))
